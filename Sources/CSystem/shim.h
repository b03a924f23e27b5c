// The C library as slotctl uses it, for both builds. The normal build also has Swift's
// Glibc overlay; the Embedded build has none (no overlay is shipped for it), so the
// pieces Swift cannot import from the headers alone (errno, variadic open/fcntl/ioctl,
// the SIG_DFL/SIG_IGN casts) are small inline functions here, and all of slotctl calls
// these, so both builds run the same calls.
#ifndef SLOTCTL_CSYSTEM_SHIM_H
#define SLOTCTL_CSYSTEM_SHIM_H
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
#include <dirent.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <syslog.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <sys/syscall.h>
#include <sys/reboot.h>
#include <linux/openat2.h>

static inline int slotctl_errno(void) { return errno; }

/* The I/O watchdog's fork starts its worker on the CPU the supervisor runs on: the
 * supervisor only sleeps from then on, and a worker placed on another, idle CPU (the
 * kernel's fork balancing) costs a wake-up of that CPU at the start and another of the
 * supervisor's at the end. Pinning the supervisor to its current CPU across the fork
 * (the worker inherits the mask) and restoring the mask in both right after does it
 * without cpu_set_t's _GNU_SOURCE macros: raw syscalls and a 1024-CPU mask. */
typedef struct { unsigned long bits[16]; } slotctl_cpu_mask;
static inline int slotctl_pin_to_this_cpu(slotctl_cpu_mask *saved) {
    unsigned int cpu = 0;
    if (syscall(SYS_sched_getaffinity, 0, sizeof saved->bits, saved->bits) <= 0) return -1;
    if (syscall(SYS_getcpu, &cpu, NULL, NULL) != 0 || cpu >= 8 * sizeof saved->bits) return -1;
    slotctl_cpu_mask one = {{0}};
    one.bits[cpu / (8 * sizeof one.bits[0])] = 1UL << (cpu % (8 * sizeof one.bits[0]));
    return syscall(SYS_sched_setaffinity, 0, sizeof one.bits, one.bits) == 0 ? 0 : -1;
}
static inline void slotctl_restore_affinity(const slotctl_cpu_mask *saved) {
    syscall(SYS_sched_setaffinity, 0, sizeof saved->bits, saved->bits);
}
static inline void slotctl_set_errno(int value) { errno = value; }

static inline int slotctl_openat(int directory, const char *path, int flags, unsigned int mode) {
    return openat(directory, path, flags, (mode_t)mode);
}
static inline int slotctl_open(const char *path, int flags) { return open(path, flags); }
static inline int slotctl_fcntl(int fd, int command) { return fcntl(fd, command); }
static inline int slotctl_fcntl_int(int fd, int command, int argument) { return fcntl(fd, command, argument); }
static inline int slotctl_ioctl_pointer(int fd, unsigned long request, void *argument) {
    return ioctl(fd, request, argument);
}
static inline __sighandler_t slotctl_sig_dfl(void) { return SIG_DFL; }
static inline __sighandler_t slotctl_sig_ign(void) { return SIG_IGN; }
static inline int slotctl_wifexited(int status) { return WIFEXITED(status); }
static inline int slotctl_wexitstatus(int status) { return WEXITSTATUS(status); }
static inline int slotctl_wifsignaled(int status) { return WIFSIGNALED(status); }
static inline int slotctl_wtermsig(int status) { return WTERMSIG(status); }
// S_IWGRP and S_IWOTH are macro expressions Swift does not import.
static const int slotctl_S_IWGRP = S_IWGRP;
static const int slotctl_S_IWOTH = S_IWOTH;
static inline void *slotctl_map_failed(void) { return MAP_FAILED; }

// The kexec step (spec/kexec.md). glibc has no wrappers for these three system calls.
// A file of a slot's root, opened with the root as "/": symlinks resolve inside it, /proc
// magic links are refused, and no other mount is entered (openat2, Linux 5.6). Non-blocking,
// so that a FIFO planted at the path is found not to be a file instead of hanging the boot.
static inline int slotctl_open_in_root(int root, const char *path) {
    struct open_how how = { .flags = O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK,
                            .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV };
    return (int)syscall(SYS_openat2, root, path, &how, sizeof how);
}
// kexec_file_load(2): the running kernel reads (and, under lockdown, checks the signature
// of) the kernel and initramfs from the descriptors. initrd -1: none.
static inline long slotctl_kexec_file_load(int kernel, int initrd, const char *cmdline, unsigned long length) {
    return syscall(SYS_kexec_file_load, kernel, initrd < 0 ? -1 : initrd, length, cmdline,
                   initrd < 0 ? 4UL /* KEXEC_FILE_NO_INITRAMFS */ : 0UL);
}
// reboot(LINUX_REBOOT_CMD_KEXEC): jumps into the loaded kernel; returns only on failure.
static inline int slotctl_reboot_into_loaded_kernel(void) { return reboot(0x45584543); }
#endif
