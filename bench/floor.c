// make bench: the floor under slotctl's signed decision. Reads one PEM public key and
// verifies one Ed25519 signature over a file with libcrypto, nothing else; linked
// statically like an initramfs binary. Two ways, as issue 19 measured them:
//   floor KEY.pem MESSAGE SIGNATURE          PEM_read_bio_PUBKEY, OpenSSL's defaults
//   floor --lean KEY.pem MESSAGE SIGNATURE   no config file, raw key import
// Exit 0 when the signature verifies.
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <string.h>

static long slurp(const char *path, unsigned char *buffer, long size) {
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    long n = (long)fread(buffer, 1, (size_t)size, f);
    fclose(f);
    return n;
}

int main(int argc, char **argv) {
    int lean = argc == 5 && strcmp(argv[1], "--lean") == 0;
    if (argc != 4 + lean) return 2;
    static unsigned char pem[4096], message[65536], signature[64];
    long pemLength = slurp(argv[1 + lean], pem, sizeof pem);
    long messageLength = slurp(argv[2 + lean], message, sizeof message);
    if (pemLength <= 0 || messageLength < 0 || slurp(argv[3 + lean], signature, 64) != 64) return 2;
    EVP_PKEY *key = NULL;
    if (lean) {
        OPENSSL_init_crypto(OPENSSL_INIT_NO_LOAD_CONFIG | OPENSSL_INIT_NO_ATEXIT, NULL);
        // The last 32 bytes of the 44-byte DER: decoded by hand from the PEM's one line.
        unsigned char der[64];
        const char *begin = strstr((char *)pem, "\n"), *end = begin ? strstr(begin + 1, "\n") : NULL;
        if (!begin || !end || EVP_DecodeBlock(der, (const unsigned char *)begin + 1, (int)(end - begin - 1)) < 44) return 2;
        key = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, der + 12, 32);
    } else {
        BIO *bio = BIO_new_mem_buf(pem, (int)pemLength);
        key = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
        BIO_free(bio);
    }
    if (!key) return 2;
    EVP_MD_CTX *context = EVP_MD_CTX_new();
    int ok = EVP_DigestVerifyInit(context, NULL, NULL, NULL, key) == 1
        && EVP_DigestVerify(context, signature, 64, message, (size_t)messageLength) == 1;
    EVP_MD_CTX_free(context);
    EVP_PKEY_free(key);
    return ok ? 0 : 1;
}
