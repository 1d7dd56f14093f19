/* cloudlab-measure: small fixed workloads, timed from the inside.
 *
 * The same static binary runs in a guest (it is on the image's disk), in a
 * container (the container image is that same root) and on the host, so the
 * three can be compared with nothing else different.  Each command prints one
 * line, "<what> <amount> <seconds> [mode]", timed with CLOCK_MONOTONIC around
 * the work only (process start-up is not counted).
 *
 *   cloudlab-measure cpu N                 N rounds of an integer loop (xorshift and a table)
 *   cloudlab-measure write FILE MIB [KIB]  MIB MiB written sequentially in blocks of KIB KiB
 *                                          (default 1024) with O_DIRECT (past the page cache),
 *                                          then fsync
 *   cloudlab-measure read FILE [KIB]       FILE read sequentially with O_DIRECT
 *   cloudlab-measure send ADDR PORT MIB    TCP: send MIB MiB, then wait until the receiver
 *                                          answers how many bytes it got
 *   cloudlab-measure sink ADDR PORT [N]    TCP server on ADDR:PORT (0: any free port; the
 *                                          first line says which): read each connection to its
 *                                          end and answer the byte count; exit after N
 *                                          connections (default: serve until killed)
 *
 * "mode" is "direct" or, where the file system refuses O_DIRECT (tmpfs), "buffered".
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define BLOCK (1 << 20)     /* the largest block; writes and reads take a smaller one too */

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int fail(const char *what) {
    fprintf(stderr, "cloudlab-measure: %s: %s\n", what, strerror(errno));
    return 1;
}

static volatile uint64_t sink_value;   /* keeps the loop from being optimised away */

static int cpu(uint64_t rounds) {
    /* arithmetic and memory, as ordinary programs mix them: a pseudo-random
     * number per round, counted into a 64 KiB table (it stays in the caches) */
    static uint32_t table[1 << 14];
    uint64_t x = 88172645463325252ULL, acc = 0;
    double t0 = now();
    for (uint64_t i = 0; i < rounds; i++) {
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        acc += ++table[x & ((1 << 14) - 1)];
    }
    double t = now() - t0;
    sink_value = acc;
    printf("cpu %llu %.6f\n", (unsigned long long)rounds, t);
    return 0;
}

static void *block_buffer(void) {
    void *buf;
    if (posix_memalign(&buf, 4096, BLOCK) != 0) return NULL;
    /* not zeros: nothing on the way may skip or compress a block of zeros */
    uint64_t x = 2463534242ULL, *p = buf;
    for (size_t i = 0; i < BLOCK / sizeof *p; i++) { x ^= x << 13; x ^= x >> 7; x ^= x << 17; p[i] = x; }
    return buf;
}

static int disk_write(const char *path, long mib, long block) {
    void *buf = block_buffer();
    if (!buf) return fail("memory");
    if (block <= 0 || block > BLOCK || block % 4096) block = BLOCK;
    const char *mode = "direct";
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_DIRECT, 0644);
    if (fd < 0 && errno == EINVAL) {
        mode = "buffered";
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    }
    if (fd < 0) return fail(path);
    long long total = (long long)mib * BLOCK;
    double t0 = now();
    for (long long done = 0; done < total; done += block)
        if (write(fd, buf, block) != block) return fail("write");
    if (fsync(fd) != 0) return fail("fsync");
    double t = now() - t0;
    close(fd);
    printf("write %lld %.6f %s\n", total, t, mode);
    return 0;
}

static int disk_read(const char *path, long block) {
    void *buf = block_buffer();
    if (!buf) return fail("memory");
    if (block <= 0 || block > BLOCK || block % 4096) block = BLOCK;
    const char *mode = "direct";
    int fd = open(path, O_RDONLY | O_DIRECT);
    if (fd < 0 && errno == EINVAL) {
        mode = "buffered";
        fd = open(path, O_RDONLY);
    }
    if (fd < 0) return fail(path);
    long long total = 0;
    ssize_t n;
    double t0 = now();
    while ((n = read(fd, buf, block)) > 0) total += n;
    if (n < 0) return fail("read");
    double t = now() - t0;
    close(fd);
    printf("read %lld %.6f %s\n", total, t, mode);
    return 0;
}

static int address(const char *host, const char *port, struct sockaddr_in *sa) {
    memset(sa, 0, sizeof *sa);
    sa->sin_family = AF_INET;
    sa->sin_port = htons(atoi(port));
    if (inet_pton(AF_INET, host, &sa->sin_addr) != 1) {
        fprintf(stderr, "cloudlab-measure: %s is not an IPv4 address\n", host);
        return -1;
    }
    return 0;
}

static int net_send(const char *host, const char *port, long mib) {
    struct sockaddr_in sa;
    if (address(host, port, &sa) < 0) return 2;
    void *buf = block_buffer();
    if (!buf) return fail("memory");
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    double t0 = now();
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) return fail("connect");
    for (long i = 0; i < mib; i++) {
        size_t off = 0;
        while (off < BLOCK) {
            ssize_t n = write(fd, (char *)buf + off, BLOCK - off);
            if (n <= 0) return fail("send");
            off += n;
        }
    }
    shutdown(fd, SHUT_WR);
    char reply[64] = {0};
    ssize_t n = read(fd, reply, sizeof reply - 1);
    double t = now() - t0;
    close(fd);
    if (n <= 0 || atoll(reply) != (long long)mib * BLOCK) {
        fprintf(stderr, "cloudlab-measure: the receiver got %s bytes, not %lld\n", n > 0 ? reply : "no answer",
                (long long)mib * BLOCK);
        return 1;
    }
    printf("send %lld %.6f\n", (long long)mib * BLOCK, t);
    return 0;
}

static int net_sink(const char *host, const char *port, long count) {
    struct sockaddr_in sa;
    if (address(host, port, &sa) < 0) return 2;
    int lfd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(lfd, (struct sockaddr *)&sa, sizeof sa) != 0) return fail("bind");
    if (listen(lfd, 8) != 0) return fail("listen");
    socklen_t len = sizeof sa;
    getsockname(lfd, (struct sockaddr *)&sa, &len);      /* port 0: the kernel chose one */
    printf("listening %s:%d\n", host, ntohs(sa.sin_port));
    fflush(stdout);
    char *buf = malloc(BLOCK);
    for (long served = 0; count <= 0 || served < count; served++) {
        int fd = accept(lfd, NULL, NULL);
        if (fd < 0) return fail("accept");
        long long total = 0;
        ssize_t n;
        while ((n = read(fd, buf, BLOCK)) > 0) total += n;
        char reply[64];
        int len = snprintf(reply, sizeof reply, "%lld\n", total);
        if (write(fd, reply, len) != len) perror("cloudlab-measure: reply");
        close(fd);
    }
    return 0;
}

static int usage(void) {
    fprintf(stderr, "usage: cloudlab-measure cpu N | write FILE MIB [KIB] | read FILE [KIB] | send ADDR PORT MIB | "
                    "sink ADDR PORT [N]\n");
    return 2;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc == 3 && !strcmp(argv[1], "cpu")) return cpu(strtoull(argv[2], NULL, 10));
    if ((argc == 4 || argc == 5) && !strcmp(argv[1], "write"))
        return disk_write(argv[2], atol(argv[3]), argc == 5 ? atol(argv[4]) * 1024 : BLOCK);
    if ((argc == 3 || argc == 4) && !strcmp(argv[1], "read"))
        return disk_read(argv[2], argc == 4 ? atol(argv[3]) * 1024 : BLOCK);
    if (argc == 5 && !strcmp(argv[1], "send")) return net_send(argv[2], argv[3], atol(argv[4]));
    if ((argc == 4 || argc == 5) && !strcmp(argv[1], "sink"))
        return net_sink(argv[2], argv[3], argc == 5 ? atol(argv[4]) : 0);
    return usage();
}
