/* bench/memcpy-aliasing.c: the C library's memcpy speed for a 16 KiB copy
 * (one TLS record) against the distance from source to destination modulo
 * 4 KiB. On AMD Zen 4 with glibc before 2.39 (REP MOVSB, glibc bug 30994)
 * distances 1 to 15 are about 25 times slower than the rest; see
 * src/sys/malloc.rs (BulkAligned) and bench/journal/2026-11-29-rep-movsb-page-aliasing.md.
 *
 *   cc -O2 bench/memcpy-aliasing.c -o /tmp/memcpy-aliasing && /tmp/memcpy-aliasing
 *
 * Prints the median over all distances and every distance slower than half
 * of it. Bounded: 4,096 distances x 1,000 copies. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define COPY 16384
#define REPS 1000

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(void) {
    char *a = aligned_alloc(4096, 1 << 20), *b = aligned_alloc(4096, 1 << 20);
    static double gbs[4096], sorted[4096];
    memset(a, 1, 1 << 20);
    memset(b, 2, 1 << 20);
    /* The source 5 bytes into a page, as a record's payload after its header. */
    char *src = a + 4096 + 5;
    for (int d = 0; d < 4096; d++) {
        char *dst = b + 4096 + (5 + d) % 4096;
        double t0 = now();
        for (int i = 0; i < REPS; i++) {
            memcpy(dst, src, COPY);
            __asm__ volatile("" : : "r"(dst) : "memory");
        }
        gbs[d] = (double)REPS * COPY / (now() - t0) / 1e9;
    }
    memcpy(sorted, gbs, sizeof gbs);
    qsort(sorted, 4096, sizeof *sorted, cmp);
    double median = sorted[2048];
    printf("16 KiB memcpy, median over 4096 distances: %.1f GB/s\n", median);
    int slow = 0;
    for (int d = 0; d < 4096; d++)
        if (gbs[d] < median / 2) {
            printf("  distance %4d mod 4096: %.1f GB/s\n", d, gbs[d]);
            slow++;
        }
    printf("%d distances slower than half the median\n", slow);
    return 0;
}
