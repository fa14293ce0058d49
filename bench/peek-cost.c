/* bench/peek-cost.c: what it costs to check the chunk lines of 1 MiB of a
 * chunked body held in a TCP receive queue (loopback), the two ways a
 * splicing relay can: per chunk, a setsockopt(SO_PEEK_OFF) to the next
 * line and a 28-byte MSG_PEEK there (what src/relay/chunked.rs does), or
 * one MSG_PEEK copying all of it, every line then found in user space. A
 * third row skips with MSG_PEEK|MSG_TRUNC instead of the setsockopt (the
 * peek offset moves, nothing is copied): the same count of calls.
 * Needs Linux 6.10+ (SO_PEEK_OFF on TCP); see
 * bench/journal/2026-12-08-chunked.md.
 *
 *   cc -O2 bench/peek-cost.c -o /tmp/peek-cost && /tmp/peek-cost
 *
 * Bounded: 2,000 rounds of each (200 of the 1 MiB copy). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define WINDOW (1 << 20)
#define CHUNK 65536
#define LINE 28

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static void set_off(int s, int off) {
    if (setsockopt(s, SOL_SOCKET, SO_PEEK_OFF, &off, sizeof off) != 0) {
        perror("SO_PEEK_OFF (TCP needs Linux 6.10+)");
        exit(1);
    }
}

int main(void) {
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001)};
    socklen_t al = sizeof a;
    int big = 8 << 20, l = socket(AF_INET, SOCK_STREAM, 0);
    setsockopt(l, SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
    if (bind(l, (void *)&a, sizeof a) || listen(l, 1) || getsockname(l, (void *)&a, &al)) return 1;
    int c = socket(AF_INET, SOCK_STREAM, 0);
    setsockopt(c, SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
    if (connect(c, (void *)&a, sizeof a)) return 1;
    int s = accept(l, 0, 0);
    char *buf = calloc(1, WINDOW), *dst = calloc(1, WINDOW), line[LINE];
    /* The window in writes of one chunk, as curl sends them. */
    for (size_t sent = 0; sent < WINDOW;) {
        ssize_t n = send(c, buf + sent, CHUNK, 0);
        if (n <= 0) return 1;
        sent += n;
    }
    usleep(100000);
    int rounds = 2000, chunks = WINDOW / CHUNK;
    double t0 = now();
    for (int i = 0; i < rounds; i++)
        for (int k = 0; k < chunks; k++) {
            set_off(s, k * CHUNK);
            recv(s, line, LINE, MSG_PEEK | MSG_DONTWAIT);
        }
    double pairs = (now() - t0) / rounds * 1e6;
    t0 = now();
    for (int i = 0; i < rounds; i++) {
        set_off(s, 0);
        for (int k = 0; k < chunks; k++) {
            if (k) recv(s, line, CHUNK - LINE, MSG_PEEK | MSG_TRUNC | MSG_DONTWAIT);
            recv(s, line, LINE, MSG_PEEK | MSG_DONTWAIT);
        }
    }
    double truncs = (now() - t0) / rounds * 1e6;
    t0 = now();
    for (int i = 0; i < rounds; i++)
        for (int k = 0; k < chunks; k++) {
            set_off(s, k * CHUNK);
            recv(s, dst, CHUNK, MSG_PEEK | MSG_DONTWAIT);
        }
    double chunk_copies = (now() - t0) / rounds * 1e6;
    t0 = now();
    for (int i = 0; i < rounds / 10; i++) {
        set_off(s, 0);
        if (recv(s, dst, WINDOW, MSG_PEEK | MSG_DONTWAIT) != WINDOW) return 1;
    }
    double copy = (now() - t0) / (rounds / 10) * 1e6;
    printf("per MiB of 64 KiB chunks in the receive queue:\n");
    printf("  16 x (setsockopt + %d-byte peek)    %7.1f us\n", LINE, pairs);
    printf("  16 x (MSG_TRUNC skip + %d-byte peek) %7.1f us\n", LINE, truncs);
    printf("  16 x 64 KiB peek (copy)             %7.1f us\n", chunk_copies);
    printf("  one 1 MiB peek (copy)               %7.1f us\n", copy);
    return 0;
}
