/*
 * cutter N PROGRAM ARGS...: run PROGRAM under ptrace and "cut the power" at the entry of
 * its N-th mutating system call (pwrite64, fsync, fdatasync, rename, renameat,
 * renameat2): that call and everything after it never happen, everything before it
 * has reached the file (the page cache outlives a killed process). N = 0: never cut;
 * the number of mutating calls is written to stderr as "cutter: N calls".
 * Exit status: PROGRAM's, or 137 when cut. For Tests/model/replay.sh.
 * With CUTTER_SYSCALLS=send in the environment the calls counted are sendto and sendmsg
 * instead: each TPM command slotctl sends to a software TPM over TCP (KeyPinTests).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/ptrace.h>

static int sending;

static int mutating(long nr) {
	if (sending) return nr == SYS_sendto || nr == SYS_sendmsg;
	return nr == SYS_pwrite64 || nr == SYS_fsync || nr == SYS_fdatasync || nr == SYS_rename
		|| nr == SYS_renameat || nr == SYS_renameat2 || nr == SYS_pwritev || nr == SYS_pwritev2
		|| nr == SYS_sync_file_range || nr == SYS_msync;
}

int main(int argc, char **argv) {
	if (argc < 3) { fprintf(stderr, "usage: cutter N PROGRAM ARGS...\n"); return 64; }
	long cut = atol(argv[1]);
	const char *which = getenv("CUTTER_SYSCALLS");
	sending = which != NULL && which[0] == 's';
	pid_t child = fork();
	if (child < 0) { perror("fork"); return 70; }
	if (child == 0) {
		setpgid(0, 0);
		ptrace(PTRACE_TRACEME, 0, 0, 0);
		raise(SIGSTOP);
		execv(argv[2], argv + 2);
		perror("execv");
		_exit(127);
	}
	int status;
	waitpid(child, &status, 0);
	ptrace(PTRACE_SETOPTIONS, child, 0, PTRACE_O_TRACESYSGOOD | PTRACE_O_TRACECLONE | PTRACE_O_TRACEFORK
		| PTRACE_O_TRACEVFORK | PTRACE_O_EXITKILL);
	ptrace(PTRACE_SYSCALL, child, 0, 0);
	long count = 0;
	int result = 70;
	for (;;) {
		pid_t pid = waitpid(-1, &status, __WALL);
		if (pid < 0) { if (errno == ECHILD) break; if (errno == EINTR) continue; perror("waitpid"); return 70; }
		if (WIFEXITED(status) || WIFSIGNALED(status)) {
			if (pid == child) result = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
			continue;
		}
		int sig = 0;
		if (WIFSTOPPED(status)) {
			int s = WSTOPSIG(status);
			if (s == (SIGTRAP | 0x80)) {
				struct ptrace_syscall_info info;
				if (ptrace(PTRACE_GET_SYSCALL_INFO, pid, sizeof info, &info) > 0
					&& info.op == PTRACE_SYSCALL_INFO_ENTRY && mutating((long)info.entry.nr)) {
					count++;
					if (cut > 0 && count == cut) {
						/* the whole process group: slotctl's helper processes too */
						kill(-child, SIGKILL);
						kill(child, SIGKILL);
						while (waitpid(-1, &status, __WALL) > 0 || errno == EINTR) {}
						return 137;
					}
				}
			} else if (s == SIGTRAP || (status >> 16) != 0) {
				sig = 0; /* exec / clone events */
			} else if (s == SIGSTOP && pid != child) {
				sig = 0; /* a new thread's first stop */
			} else {
				sig = s;
			}
		}
		ptrace(PTRACE_SYSCALL, pid, 0, sig);
	}
	if (cut == 0) fprintf(stderr, "cutter: %ld calls\n", count);
	return result;
}
