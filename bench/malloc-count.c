// make bench: counts the heap allocations of a dynamically linked program by who asked
// for them (LD_PRELOAD=malloc-count.so). Each malloc/calloc/realloc/posix_memalign/
// aligned_alloc/memalign is attributed to the object its caller's return address lies in
// (dladdr): libcrypto, the program itself, or anything else (libc, libblkid, the loader).
// At exit one line is appended to $MALLOC_COUNT_OUT:
//   total N libcrypto N program N other N
// A forked child (slotctl's I/O watchdog worker) starts its counts at zero, so that the
// lines of both processes add up to the allocations made, each counted once.
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <pthread.h>

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);

static unsigned long total, crypto, program, other;
static void *program_base;
static __thread int inside;

static void count(void *caller) {
    if (inside) return;
    inside = 1;
    total++;
    Dl_info info;
    if (dladdr(caller, &info) && info.dli_fname) {
        if (strstr(info.dli_fname, "libcrypto")) crypto++;
        else if (program_base && info.dli_fbase == program_base) program++;
        else other++;
    } else {
        other++;
    }
    inside = 0;
}

static void forked_child(void) { total = crypto = program = other = 0; }

__attribute__((constructor)) static void start(void) {
    pthread_atfork(NULL, NULL, forked_child);
    Dl_info info;
    inside = 1;
    if (dladdr((void *)getauxval(AT_PHDR), &info)) program_base = info.dli_fbase;
    inside = 0;
}

__attribute__((destructor)) static void report(void) {
    const char *path = getenv("MALLOC_COUNT_OUT");
    if (!path) return;
    inside = 1;
    FILE *out = fopen(path, "a");
    if (!out) return;
    fprintf(out, "total %lu libcrypto %lu program %lu other %lu\n", total, crypto, program, other);
    fclose(out);
}

void *malloc(size_t size) { count(__builtin_return_address(0)); return __libc_malloc(size); }
void *calloc(size_t n, size_t size) { count(__builtin_return_address(0)); return __libc_calloc(n, size); }
void *realloc(void *p, size_t size) { count(__builtin_return_address(0)); return __libc_realloc(p, size); }
void *memalign(size_t alignment, size_t size) { count(__builtin_return_address(0)); return __libc_memalign(alignment, size); }
void *aligned_alloc(size_t alignment, size_t size) { count(__builtin_return_address(0)); return __libc_memalign(alignment, size); }
int posix_memalign(void **out, size_t alignment, size_t size) {
    count(__builtin_return_address(0));
    void *p = __libc_memalign(alignment, size);
    if (!p) return 12; // ENOMEM
    *out = p;
    return 0;
}
