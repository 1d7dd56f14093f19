/* cloudlab-sntp: a small SNTP client (RFC 4330) for the lab's guests.
 *
 * Debian's busybox is built without ntpd, so the guest image carries this
 * instead, compiled statically when the image is built.  It sends one mode-3
 * request, reads the four timestamps of the exchange,
 *     t1 client transmit, t2 server receive, t3 server transmit, t4 client receive,
 * and computes offset = ((t2 - t1) + (t3 - t4)) / 2 and delay = (t4 - t1) - (t3 - t2).
 *
 *   cloudlab-sntp [-s] [-i SECONDS] SERVER[:PORT]
 *     -s  set the clock: step it with settimeofday (the guest has no other clock discipline)
 *     -i  repeat every SECONDS (stay in the foreground); after a failure, retry in 2 s
 */
#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define NTP_UNIX_DELTA 2208988800.0   /* seconds from 1900 to 1970 */

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double ntp_time(const unsigned char *p) {
    uint32_t sec = ((uint32_t)p[0] << 24) | (p[1] << 16) | (p[2] << 8) | p[3];
    uint32_t frac = ((uint32_t)p[4] << 24) | (p[5] << 16) | (p[6] << 8) | p[7];
    return sec - NTP_UNIX_DELTA + frac / 4294967296.0;
}

static void put_ntp_time(unsigned char *p, double t) {
    double ntp = t + NTP_UNIX_DELTA;
    uint32_t sec = (uint32_t)ntp, frac = (uint32_t)((ntp - sec) * 4294967296.0);
    p[0] = sec >> 24; p[1] = sec >> 16; p[2] = sec >> 8; p[3] = sec;
    p[4] = frac >> 24; p[5] = frac >> 16; p[6] = frac >> 8; p[7] = frac;
}

static int query(const char *host, const char *port, int set_clock) {
    /* an address, not a name: the guest has no resolver worth trusting at boot */
    struct sockaddr_in sa = {0};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(atoi(port));
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
        fprintf(stderr, "cloudlab-sntp: %s is not an IPv4 address\n", host);
        return 2;
    }
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct timeval tv = {2, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    unsigned char req[48] = {0}, rep[68];
    req[0] = (0 << 6) | (4 << 3) | 3;          /* LI 0, version 4, mode 3 (client) */
    double t1 = now();
    put_ntp_time(req + 40, t1);
    if (sendto(fd, req, sizeof req, 0, (struct sockaddr *)&sa, sizeof sa) != sizeof req) {
        perror("cloudlab-sntp: send");
        return 2;
    }
    ssize_t n = recv(fd, rep, sizeof rep, 0);
    double t4 = now();
    close(fd);
    if (n < 48) {
        fprintf(stderr, "cloudlab-sntp: no answer from %s:%s\n", host, port);
        return 1;
    }
    int mode = rep[0] & 7, stratum = rep[1], leap = rep[0] >> 6;
    if (mode != 4 || memcmp(rep + 24, req + 40, 8) != 0) {
        fprintf(stderr, "cloudlab-sntp: not a reply to our request\n");
        return 1;
    }
    if (stratum == 0 || leap == 3) {
        fprintf(stderr, "cloudlab-sntp: server %s is unsynchronised (stratum %d, leap %d)\n",
                host, stratum, leap);
        return 1;
    }
    double t2 = ntp_time(rep + 32), t3 = ntp_time(rep + 40);
    double offset = ((t2 - t1) + (t3 - t4)) / 2, delay = (t4 - t1) - (t3 - t2);
    printf("cloudlab-sntp: server %s stratum %d offset %+.6f s delay %.6f s\n",
           host, stratum, offset, delay);
    if (set_clock) {
        double t = now() + offset;
        struct timeval set = {(time_t)t, (suseconds_t)((t - (time_t)t) * 1e6)};
        if (settimeofday(&set, NULL) != 0) {
            perror("cloudlab-sntp: settimeofday");
            return 2;
        }
    }
    fflush(stdout);
    return 0;
}

int main(int argc, char **argv) {
    int set_clock = 0, interval = 0, opt;
    while ((opt = getopt(argc, argv, "si:")) != -1) {
        if (opt == 's') set_clock = 1;
        else if (opt == 'i') interval = atoi(optarg);
        else break;
    }
    if (optind != argc - 1) {
        fprintf(stderr, "usage: cloudlab-sntp [-s] [-i SECONDS] SERVER[:PORT]\n");
        return 2;
    }
    char host[256], port[16] = "123";
    snprintf(host, sizeof host, "%s", argv[optind]);
    char *colon = strchr(host, ':');
    if (colon) { *colon = 0; snprintf(port, sizeof port, "%s", colon + 1); }
    for (;;) {
        int rc = query(host, port, set_clock);
        if (!interval) return rc;
        /* until the first answer (the network may still be coming up) retry soon */
        sleep(rc == 0 ? interval : 2);
    }
}
