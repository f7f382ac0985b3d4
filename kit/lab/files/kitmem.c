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
 *   kitmem dirty PERCENT MIB_S  hold PERCENT % of MemAvailable as a working set,
 *                             write all of it once, then keep writing one byte
 *                             in pages picked at random at MIB_S MiB/s, forever
 *                             (in the background: /init goes on to KIT-READY).
 *                             A program that dirties memory while it migrates,
 *                             like Wei Wang's kernel-compile case.
 *   kitmem stress [key=value...]  a migration-test style memory check that
 *                             reuses hinted pages; see stress_main() and
 *                             kit/lab/verify.py (issue 7).
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

static int dirty_main(int argc, char **argv)
{
    long percent = argc > 2 ? strtol(argv[2], NULL, 10) : 25;
    long rate = argc > 3 ? strtol(argv[3], NULL, 10) : 100;
    long avail = meminfo_kib("MemAvailable");
    size_t bytes, pages, i;
    unsigned char *p;
    uint64_t x = 0x9e3779b97f4a7c15ULL, written = 0;
    struct timespec t0, now;
    pid_t pid;

    if (percent <= 0 || percent > 90 || rate <= 0 || avail <= 0) {
        fprintf(stderr, "kitmem dirty: need a PERCENT in 1..90, a rate in MiB/s and /proc/meminfo\n");
        return 2;
    }
    bytes = (size_t)avail * 1024 / 100 * percent / PAGE * PAGE;
    pages = bytes / PAGE;
    p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        perror("kitmem dirty: mmap");
        return 1;
    }
    for (i = 0; i < bytes; i += PAGE)
        p[i] = 1;
    printf("KIT-DIRTY working_set_kib=%zu rate_mib_s=%ld\n", bytes / 1024, rate);
    fflush(stdout);
    pid = fork();
    if (pid < 0) {
        perror("kitmem dirty: fork");
        return 1;
    }
    if (pid > 0)
        return 0;                       /* the parent returns to /init; the child writes */
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        double s;
        uint64_t due;
        clock_gettime(CLOCK_MONOTONIC, &now);
        s = (now.tv_sec - t0.tv_sec) + (now.tv_nsec - t0.tv_nsec) / 1e9;
        due = (uint64_t)(s * rate * 256);   /* pages of 4 KiB due by now at MIB_S MiB/s */
        if (written >= due) {
            usleep(1000);
            continue;
        }
        while (written < due) {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;     /* xorshift64 */
            p[(x % pages) * PAGE + (written & 63)] += 1;
            written++;
        }
    }
}

int stress_main(int argc, char **argv);

int main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "hog"))
        return hog_main(argc, argv);
    if (argc > 1 && !strcmp(argv[1], "dirty"))
        return dirty_main(argc, argv);
    if (argc > 1 && !strcmp(argv[1], "stress"))
        return stress_main(argc, argv);
    fprintf(stderr, "usage: kitmem hog PERCENT | kitmem dirty PERCENT MIB_S | kitmem stress ...\n");
    return 2;
}

/* ------------------------------------------------------------------------
 * kitmem stress: a migration-test style memory check that reuses hinted pages
 * (issue 7).  The host checks a dump of the destination's RAM with
 * kit/lab/verify.py, which mirrors the layout and the schedule below: change
 * one, change the other.
 *
 * Why it is built this way:
 *  - N slots of one page each, all in ONE anonymous mapping (slot i = page i).
 *    A slot is freed with madvise(MADV_DONTNEED), which hands the page straight
 *    back to the guest's buddy allocator; touching it again faults in a fresh
 *    zeroed page (Linux zeroes user pages whatever init_on_alloc says).  One
 *    mapping instead of one mmap per slot: munmap in the middle of a region
 *    splits it, and 250k slots would pass vm.max_map_count.
 *  - Every live page starts with a header (struct slot_hdr) and ends with a tail
 *    word: a signature, a per-boot nonce, the slot and N, the allocation
 *    sequence number and the pass it was allocated in, a check word over those,
 *    and the generation.  The generation is INCREMENTED IN PLACE (read, +1,
 *    write) as in QEMU's migration-test: a page that arrives stale on the
 *    destination stays behind for ever, so a loss is still visible when the
 *    host dumps memory seconds after switch-over.
 *  - Passes walk the slots in order.  Pass G decides for each slot whether it
 *    is live or free by a hash of (nonce, G, slot) alone (free_in_pass()), not
 *    by history, so the host can recompute from the control page which slots
 *    the guest holds at the instant it was stopped.  Slots before the cursor
 *    are in pass G's state with generation G, slots after it in pass G-1's
 *    with G-1: exactly one edge (the slot AT the cursor may be half done).
 *  - Memory moves in whole 4 MiB segments (1024 slots): even passes keep ~95%
 *    of the segments live, odd passes free ~60% of them; a few single slots
 *    churn every pass.  Freed segments coalesce into the 4 MiB blocks that
 *    Linux's free page hinting reports; the next growth pass needs them back.
 *    While QEMU hints, virtio_balloon takes every free 4 MiB block out of the
 *    buddy allocator (down to the low watermark) and holds it until QEMU says
 *    DONE; only its shrinker gives blocks back earlier.  Measured in the lab,
 *    the guest's MemFree never came near the low watermark (~5 MiB at 1 GiB)
 *    without risking the OOM panic of PID 1, so growth passes run the
 *    shrinkers through drop_caches every `drop` steps (see the loop): the
 *    balloon returns its hinted blocks and the pass allocates from them while
 *    migration runs -- the dangerous case, whose safety rests on the dirty log
 *    alone.  The heartbeat shows it: returned_kib, slabs_scanned.
 *  - Arguments, all key=value: pct (peak live, % of MemAvailable, 80), grow and
 *    shrink (% of segments free in even/odd passes, 5/60), churn (% of single
 *    slots, 3), seg (1024), pass_ms (pacing of a pass, 3000; 0 = flat out),
 *    ready (print KIT-READY after this pass, 1: a shrink pass, so migration
 *    starts early in a growth pass), drop (2048), nonce.
 *  - Before a slot is freed its signature becomes DEAD, so stale copies in free
 *    memory are recognisable and never counted as a live page.
 *  - THP off for the region (and for the guest) and proactive compaction off,
 *    so the kernel does not move pages and leave stale duplicate copies.
 *  - Each step also checks the page in the guest before using it (the header,
 *    the tail, gen == G-1, the sequence number the program remembers) and
 *    prints KIT-VERIFY-FAIL on a mismatch, so a page lost and freed again
 *    before the host looks is still reported.
 *  - This program is PID 1 (init.sh execs it): it must never exit, and the OOM
 *    killer cannot help, so the peak stays at pct% of MemAvailable.
 * ------------------------------------------------------------------------ */

/* Signatures: the 8 ASCII bytes read as a little-endian 64-bit word. */
#define SIG_LIVE 0x544f4c532d54494bULL /* "KIT-SLOT" */
#define SIG_DEAD 0x444145442d54494bULL /* "KIT-DEAD" */
#define SIG_CTRL 0x4c5254432d54494bULL /* "KIT-CTRL" */
#define LAYOUT_VERSION 1
#define TAIL_WORD (PAGE / 8 - 1)       /* last 64-bit word of a slot page */

/* The first 64 bytes of a slot page.  Mirrored in kit/lab/verify.py (SLOT_*). */
struct slot_hdr {
    uint64_t sig;        /* SIG_LIVE, or SIG_DEAD once freed */
    uint64_t nonce;      /* per boot */
    uint64_t slot_n;     /* slot | (uint64_t)N << 32 */
    uint64_t seq;        /* allocation sequence number, 1, 2, ... over the run */
    uint64_t alloc_gen;  /* the pass that allocated this page */
    uint64_t gen;        /* the generation: +1 in place at every pass */
    uint64_t check;      /* page_check(nonce, slot_n, seq, alloc_gen); tail = ~check */
    uint64_t zero;
};

/* The control page: where the guest is.  Mirrored in kit/lab/verify.py (CTRL_*). */
struct ctrl_page {
    uint64_t sig;        /* SIG_CTRL */
    uint64_t nonce;
    uint64_t nslots_version; /* N | LAYOUT_VERSION << 32 */
    uint64_t seg;        /* slots per segment */
    uint64_t thr;        /* free if hash >> 48 < threshold: grow | shrink << 20 | churn << 40 */
    uint64_t check;      /* mix64 over the five words above */
    uint64_t pos;        /* slot steps done: pass G = pos / N, cursor = pos % N */
    uint64_t seq;        /* allocations so far (the last seq used) */
    uint64_t bad;        /* checks that failed in the guest (a bad page fails at every pass) */
    uint64_t bad_freed;  /* bad pages the guest has freed since: gone from memory, still lost */
    uint64_t frees;
    uint64_t base;       /* virtual address of slot 0 (for the console only) */
};

static uint64_t mix64(uint64_t z)   /* splitmix64's finaliser */
{
    z += 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t page_check(uint64_t nonce, uint64_t slot_n, uint64_t seq, uint64_t alloc_gen)
{
    return mix64(nonce ^ mix64(slot_n ^ mix64(seq ^ mix64(alloc_gen))));
}

static uint64_t ctrl_check(const struct ctrl_page *c)
{
    return mix64(c->sig ^ mix64(c->nonce ^ mix64(c->nslots_version ^ mix64(c->seg ^ mix64(c->thr)))));
}

/* Is slot i free in pass g?  Everything is free before pass 0. */
static int free_in_pass(const struct ctrl_page *c, uint64_t i, int64_t g)
{
    uint64_t grow = c->thr & 0xfffff, shrink = (c->thr >> 20) & 0xfffff;
    uint64_t churn = (c->thr >> 40) & 0xfffff;
    uint64_t seg_thr = (g & 1) ? shrink : grow;
    if (g < 0)
        return 1;
    if ((mix64(c->nonce ^ ((uint64_t)g << 33 | (i / c->seg) << 1)) >> 48) < seg_thr)
        return 1;
    return (mix64(c->nonce ^ ((uint64_t)g << 33 | i << 1 | 1)) >> 48) < churn;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

static unsigned long arg_ul(int argc, char **argv, const char *key, unsigned long dflt)
{
    size_t n = strlen(key);
    for (int k = 2; k < argc; k++)
        if (!strncmp(argv[k], key, n) && argv[k][n] == '=')
            return strtoul(argv[k] + n + 1, NULL, 0);
    return dflt;
}

/* Sum of the /proc/vmstat counters whose name starts with `prefix`.  The
   heartbeat shows reclaim: slabs_scanned counts objects the shrinkers were asked
   to scan (virtio_balloon's returns hinted 4 MiB blocks, counted in pages), and
   allocstall_* counts direct reclaims.  With no swap and no page cache to speak
   of, reclaim in this guest is almost only that shrinker. */
static long vmstat_sum(const char *prefix)
{
    FILE *f = fopen("/proc/vmstat", "r");
    char name[64];
    long v, sum = 0;
    size_t n = strlen(prefix);
    if (!f)
        return -1;
    while (fscanf(f, "%63s %ld", name, &v) == 2)
        if (!strncmp(name, prefix, n))
            sum += v;
    fclose(f);
    return sum;
}

static uint64_t pct_thr(unsigned long pct)   /* a percent as a threshold out of 65536 */
{
    return pct * 65536 / 100;
}

int stress_main(int argc, char **argv)
{
    unsigned long pct = arg_ul(argc, argv, "pct", 80);       /* peak live, % of MemAvailable */
    unsigned long grow = arg_ul(argc, argv, "grow", 5);      /* % segments free in even passes */
    unsigned long shrink = arg_ul(argc, argv, "shrink", 60); /* % segments free in odd passes */
    unsigned long churn = arg_ul(argc, argv, "churn", 3);    /* % single slots free, any pass */
    unsigned long seg = arg_ul(argc, argv, "seg", 1024);     /* slots per segment (4 MiB) */
    unsigned long pass_ms = arg_ul(argc, argv, "pass_ms", 3000); /* pacing; 0 = flat out */
    unsigned long ready = arg_ul(argc, argv, "ready", 1);    /* KIT-READY after this pass */
    unsigned long drop = arg_ul(argc, argv, "drop", 2048);   /* growth: run the shrinkers every
                                                                 `drop` steps (0 = never) */
    uint64_t nonce = arg_ul(argc, argv, "nonce", 0);
    long avail = meminfo_kib("MemAvailable");
    struct ctrl_page *c;
    volatile uint64_t *slots;
    uint64_t *seqs, n, g, i, hb = 0, fails_shown = 0, live = 0;
    long returned_kib = 0;
    double t_hb, t_pass;

    setvbuf(stdout, NULL, _IOLBF, 0);
    /* No huge pages and no proactive compaction: the kernel must not move our
       pages (a moved page leaves its old copy behind in free memory). */
    if (getpid() == 1) {   /* only in the lab guest, never on a host */
        write_file("/sys/kernel/mm/transparent_hugepage/enabled", "never");
        write_file("/sys/kernel/mm/transparent_hugepage/defrag", "never");
        write_file("/proc/sys/vm/compaction_proactiveness", "0");
    }
    if (!nonce)
        nonce = mix64((uint64_t)time(NULL) ^ ((uint64_t)getpid() << 40) ^ (uint64_t)(now_s() * 1e9));
    if (avail <= 0 || pct < 1 || pct > 95 || grow > 100 || shrink > 100 || churn > 100 || !seg) {
        printf("KIT-ERROR kitmem stress: bad arguments (pct 1..95, percents 0..100, seg>0)\n");
        for (;;)
            pause();   /* PID 1 must not exit */
    }
    /* Peak live ~ N * (1 - grow) * (1 - churn) = pct% of MemAvailable. */
    n = (uint64_t)avail * 1024 / 100 * pct / PAGE;
    n = n * 10000 / ((100 - (grow < 100 ? grow : 99)) * (100 - (churn < 100 ? churn : 99)));
    c = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    slots = mmap(NULL, n * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    seqs = calloc(n, sizeof *seqs);
    if (c == MAP_FAILED || slots == MAP_FAILED || !seqs) {
        printf("KIT-ERROR kitmem stress: cannot map %llu slots\n", (unsigned long long)n);
        for (;;)
            pause();
    }
    madvise((void *)slots, n * PAGE, MADV_NOHUGEPAGE);
    madvise(c, PAGE, MADV_NOHUGEPAGE);
    c->nonce = nonce;
    c->nslots_version = n | (uint64_t)LAYOUT_VERSION << 32;
    c->seg = seg;
    c->thr = pct_thr(grow) | pct_thr(shrink) << 20 | pct_thr(churn) << 40;
    c->sig = SIG_CTRL;
    c->check = ctrl_check(c);
    c->base = (uint64_t)(uintptr_t)slots;
    printf("KIT-STRESS slots=%llu seg=%lu pct=%lu grow=%lu shrink=%lu churn=%lu pass_ms=%lu ready=%lu "
           "drop=%lu nonce=%016llx memavailable_kib=%ld\n", (unsigned long long)n, seg, pct, grow, shrink,
           churn, pass_ms, ready, drop, (unsigned long long)nonce, avail);

    t_hb = t_pass = now_s();
    for (g = 0;; g++) {
        double step_s = pass_ms ? pass_ms / 1000.0 / n : 0;
        t_pass = now_s();
        for (i = 0; i < n; i++) {
            volatile uint64_t *w = slots + i * (PAGE / 8);
            int was = !free_in_pass(c, i, (int64_t)g - 1), now = !free_in_pass(c, i, (int64_t)g);
            if (was) {
                uint64_t slot_n = i | n << 32;
                uint64_t chk = page_check(nonce, slot_n, seqs[i], w[4]);
                if (w[0] != SIG_LIVE || w[1] != nonce || w[2] != slot_n || w[3] != seqs[i]
                    || w[5] != g - 1 || w[6] != chk || w[TAIL_WORD] != ~chk) {
                    c->bad++;
                    if (fails_shown++ < 8)
                        printf("KIT-VERIFY-FAIL slot=%llu pass=%llu sig=%016llx seq=%llu/%llu gen=%llu "
                               "want=%llu\n", (unsigned long long)i, (unsigned long long)g,
                               (unsigned long long)w[0], (unsigned long long)w[3],
                               (unsigned long long)seqs[i], (unsigned long long)w[5],
                               (unsigned long long)(g - 1));
                    if (!now)
                        c->bad_freed++;
                }
                if (now) {
                    w[5] = w[5] + 1;          /* in place, as migration-test does */
                } else {
                    w[0] = SIG_DEAD;
                    madvise((void *)w, PAGE, MADV_DONTNEED);
                    c->frees++;
                    live--;
                }
            } else if (now) {
                uint64_t slot_n = i | n << 32, seq = c->seq + 1, chk = page_check(nonce, slot_n, seq, g);
                w[1] = nonce;                 /* the fault gives a zeroed page */
                w[2] = slot_n;
                w[3] = seq;
                w[4] = g;
                w[5] = g;
                w[6] = chk;
                w[TAIL_WORD] = ~chk;
                w[0] = SIG_LIVE;
                seqs[i] = seq;
                c->seq = seq;
                live++;
            }
            /* Publish the step after the page is done (one 8-byte store). */
            __atomic_store_n(&c->pos, g * n + i + 1, __ATOMIC_RELEASE);
            /* Growth passes take hinted memory back.  virtio_balloon holds every
               block it hinted until QEMU says DONE; only its shrinker returns them
               earlier.  Real pressure would need the guest at its low watermark
               (a few MiB), which as PID 1 risks an OOM panic, so we run the same
               shrinkers through drop_caches (drop_slab -> shrink_slab ->
               virtio_balloon_shrinker_scan) and count how much MemFree jumps:
               those are hinted blocks back in the buddy allocator, which this
               pass then allocates, stamps and relies on the dirty log for. */
            if (drop && !(g & 1) && getpid() == 1 && i % drop == drop - 1) {
                long before = meminfo_kib("MemFree");
                write_file("/proc/sys/vm/drop_caches", "2");
                long after = meminfo_kib("MemFree");
                if (after - before >= 4096)
                    returned_kib += after - before;
            }
            if ((i & 255) == 255 || i == n - 1) {
                double t = now_s();
                if (t - t_hb >= 1.0) {
                    printf("KIT-HB %llu pass=%llu cursor=%llu live=%llu bad=%llu memfree_kib=%ld "
                           "slabs_scanned=%ld allocstall=%ld returned_kib=%ld\n",
                           (unsigned long long)hb++, (unsigned long long)g, (unsigned long long)i + 1,
                           (unsigned long long)live, (unsigned long long)c->bad, meminfo_kib("MemFree"),
                           vmstat_sum("slabs_scanned"), vmstat_sum("allocstall_"), returned_kib);
                    t_hb = t;
                }
                if (step_s > 0 && t < t_pass + step_s * (i + 1)) {
                    double d = t_pass + step_s * (i + 1) - t;
                    struct timespec ts = {(time_t)d, (long)((d - (time_t)d) * 1e9)};
                    nanosleep(&ts, NULL);
                }
            }
        }
        if (g == ready)
            printf("KIT-READY workload=stress pass=%llu slots=%llu live=%llu pass_s=%.2f "
                   "memfree_kib=%ld\n", (unsigned long long)g, (unsigned long long)n,
                   (unsigned long long)live, now_s() - t_pass, meminfo_kib("MemFree"));
    }
}
