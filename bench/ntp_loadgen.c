/* NTP load generator for bench/ntp.py: keeps INFLIGHT client requests (mode 3)
 * outstanding against one server on loopback and counts valid mode 4 replies.
 *
 * Usage: ntp_loadgen HOST PORT SECONDS [INFLIGHT] [SOCKETS]
 * Prints: "replies N seconds S rps R resets K".
 *
 * Requests are spread over SOCKETS sockets (each its own source port), so a
 * server that fans out by 4-tuple sees several flows.  Every reply is answered
 * by a new request on the same socket; a socket that hears nothing for 20 ms is
 * refilled to its share ("reset": requests counted as lost), so a drop never
 * stalls the run.  Batches use recvmmsg/sendmmsg so that the generator costs far
 * less CPU per request than any server it measures.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAXSOCK 64
#define BATCH 64

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s HOST PORT SECONDS [INFLIGHT] [SOCKETS]\n", argv[0]);
        return 2;
    }
    const char *host = argv[1];
    int port = atoi(argv[2]);
    double seconds = atof(argv[3]);
    int inflight = argc > 4 ? atoi(argv[4]) : 64;
    int nsock = argc > 5 ? atoi(argv[5]) : 4;
    if (nsock < 1 || nsock > MAXSOCK || inflight < nsock) {
        fprintf(stderr, "need 1 <= SOCKETS <= %d and INFLIGHT >= SOCKETS\n", MAXSOCK);
        return 2;
    }
    struct sockaddr_in dst = {0};
    dst.sin_family = AF_INET;
    dst.sin_port = htons(port);
    if (inet_pton(AF_INET, host, &dst.sin_addr) != 1) {
        fprintf(stderr, "bad IPv4 address %s\n", host);
        return 2;
    }
    int fds[MAXSOCK], share[MAXSOCK], outstanding[MAXSOCK];
    double last_heard[MAXSOCK];
    struct pollfd pfd[MAXSOCK];
    unsigned char req[48] = {0};
    req[0] = (0 << 6) | (4 << 3) | 3; /* LI 0, version 4, mode 3 (client) */
    static unsigned char rbuf[BATCH][64];
    struct mmsghdr rmsg[BATCH], smsg[BATCH];
    struct iovec riov[BATCH], siov[BATCH];
    memset(rmsg, 0, sizeof rmsg);
    memset(smsg, 0, sizeof smsg);
    for (int i = 0; i < BATCH; i++) {
        riov[i].iov_base = rbuf[i];
        riov[i].iov_len = sizeof rbuf[i];
        rmsg[i].msg_hdr.msg_iov = &riov[i];
        rmsg[i].msg_hdr.msg_iovlen = 1;
        siov[i].iov_base = req;
        siov[i].iov_len = sizeof req;
        smsg[i].msg_hdr.msg_iov = &siov[i];
        smsg[i].msg_hdr.msg_iovlen = 1;
    }
    for (int s = 0; s < nsock; s++) {
        fds[s] = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
        if (fds[s] < 0 || connect(fds[s], (struct sockaddr *)&dst, sizeof dst) < 0) {
            perror("socket/connect");
            return 1;
        }
        int rcv = 1 << 20;
        setsockopt(fds[s], SOL_SOCKET, SO_RCVBUF, &rcv, sizeof rcv);
        share[s] = inflight / nsock + (s < inflight % nsock);
        outstanding[s] = 0;
        pfd[s].fd = fds[s];
        pfd[s].events = POLLIN;
    }
    long replies = 0, resets = 0;
    double start = now(), end = start + seconds;
    for (int s = 0; s < nsock; s++) {
        sendmmsg(fds[s], smsg, share[s], 0);
        outstanding[s] = share[s];
        last_heard[s] = start;
    }
    double t = start;
    while (t < end) {
        int n = poll(pfd, nsock, 5);
        t = now();
        for (int s = 0; s < nsock; s++) {
            int got = 0;
            if (n > 0 && (pfd[s].revents & POLLIN)) {
                int r;
                while ((r = recvmmsg(fds[s], rmsg, BATCH, MSG_DONTWAIT, NULL)) > 0) {
                    for (int i = 0; i < r; i++)
                        if (rmsg[i].msg_len >= 48 && (rbuf[i][0] & 7) == 4 && rbuf[i][1] != 0)
                            replies++;
                    got += r;
                    if (r < BATCH)
                        break;
                }
            }
            if (got) {
                outstanding[s] -= got;
                if (outstanding[s] < 0)
                    outstanding[s] = 0;
                last_heard[s] = t;
            } else if (t - last_heard[s] > 0.020) {
                resets += outstanding[s];
                outstanding[s] = 0;
                last_heard[s] = t;
            }
            int want = share[s] - outstanding[s];
            if (want > 0 && t < end) {
                int sent = sendmmsg(fds[s], smsg, want, 0);
                if (sent > 0)
                    outstanding[s] += sent;
            }
        }
    }
    double elapsed = now() - start;
    printf("replies %ld seconds %.3f rps %.0f resets %ld\n", replies, elapsed, replies / elapsed, resets);
    return 0;
}
