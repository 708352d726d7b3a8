/* spawn: runs one command and reports its wall time and wait4() rusage.
 *
 * Why not os.wait4 in the Python runner directly: on exec, Linux folds the
 * RSS high-water mark of the *old* address space into the new process's
 * ru_maxrss (exec_mmap -> setmax_mm_hiwater_rss). A child spawned from the
 * Python runner (vfork shares its ~30 MiB address space) therefore reports
 * at least the runner's RSS: `true` showed 13 MiB, 218 MiB after the runner
 * allocated 200 MiB. This helper is small (~1 MiB): its child's ru_maxrss
 * is the command's own peak RSS.
 *
 * Usage: spawn CMD [ARGS...]   (stdin/stdout/stderr are passed through)
 * Writes to fd 3, if open: "<wait status> <user us> <sys us> <maxrss KiB> <wall ns>\n".
 * Exit: 0 after reporting; 125..127 when it could not run the command.
 * Built by tools/bench/run with `cc -O2` into its temporary directory.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long long us(struct timeval tv) { return (long long)tv.tv_sec * 1000000LL + tv.tv_usec; }

int main(int argc, char **argv) {
    if (argc < 2)
        return 127;
    /* The report fd must not leak into the measured command. */
    int report = fcntl(3, F_GETFD) == -1 ? -1 : 3;
    if (report == 3)
        fcntl(3, F_SETFD, FD_CLOEXEC);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    pid_t pid = fork();
    if (pid == 0) {
        execvp(argv[1], argv + 1);
        _exit(127);
    }
    if (pid < 0)
        return 126;
    int status;
    struct rusage ru;
    while (wait4(pid, &status, 0, &ru) < 0) {
        if (errno != EINTR)
            return 125;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    long long wall = (long long)(t1.tv_sec - t0.tv_sec) * 1000000000LL + (t1.tv_nsec - t0.tv_nsec);
    if (report == 3)
        dprintf(3, "%d %lld %lld %ld %lld\n", status, us(ru.ru_utime), us(ru.ru_stime), ru.ru_maxrss, wall);
    return 0;
}
