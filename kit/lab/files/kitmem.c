/*
 * kitmem: the lab guest's memory workloads (pv-migration-kit).
 *
 * Built on the host with `cc -static -O2` and put into the guest's initramfs.
 * It runs as a program of the guest's /init, with output on the serial console.
 *
 *   kitmem hog PERCENT        fill PERCENT % of MemAvailable with a non-zero
 *                             pattern, then give it all back to the kernel.
 *                             The pages are free afterwards but not zero: the
 *                             seed's "workload" case.
 *   kitmem stress ...         see stress_main() (the memory check of issue 7).
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096UL

static long meminfo_kib(const char *key)
{
    FILE *f = fopen("/proc/meminfo", "r");
    char line[256];
    long v = -1;
    size_t n = strlen(key);
    if (!f)
        return -1;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, key, n) && line[n] == ':') {
            v = strtol(line + n + 1, NULL, 10);
            break;
        }
    fclose(f);
    return v;
}

static int hog_main(int argc, char **argv)
{
    long percent = argc > 2 ? strtol(argv[2], NULL, 10) : 90;
    long avail = meminfo_kib("MemAvailable");
    size_t bytes, i;
    unsigned char *p;

    if (percent <= 0 || percent > 100 || avail <= 0) {
        fprintf(stderr, "kitmem hog: need a PERCENT in 1..100 and /proc/meminfo\n");
        return 2;
    }
    bytes = (size_t)avail * 1024 / 100 * percent / PAGE * PAGE;
    p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        perror("kitmem hog: mmap");
        return 1;
    }
    /* One pattern byte every 64 bytes is enough to make every page non-zero
       and keeps the emulated CPU's work small. */
    for (i = 0; i < bytes; i += 64)
        p[i] = (unsigned char)(0x5a ^ (i >> 12));
    munmap(p, bytes);
    printf("KIT-HOG filled_kib=%zu memavailable_kib=%ld\n", bytes / 1024, avail);
    fflush(stdout);
    return 0;
}

int stress_main(int argc, char **argv);

int main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "hog"))
        return hog_main(argc, argv);
    if (argc > 1 && !strcmp(argv[1], "stress"))
        return stress_main(argc, argv);
    fprintf(stderr, "usage: kitmem hog PERCENT | kitmem stress ...\n");
    return 2;
}

int stress_main(int argc, char **argv)
{
    (void)argc; (void)argv;
    fprintf(stderr, "kitmem stress: not built yet\n");
    return 2;
}
