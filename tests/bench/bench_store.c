/*
 * bench_store.c - the memory idempotency store: O(1) operations and bytes
 * per record (see bench.h for the method).
 *
 *   get, 1M live records                 vs get, 1k records        target <= 3x
 *   put_if_absent+remove, 1M records     vs the same, 1k records   target <= 3x
 *   bytes per record besides the payload, 1M records               target < 150
 *
 * and, for reference, the floors: a call through a function pointer, a
 * plain hash of 32 bytes (what a lookup must do at the least) next to the
 * 1k figures, and one dependent random read in 128 MB (a pointer chase: a
 * cache and TLB miss, what a record out of cache costs at the least) next
 * to the 1M figures. At 1M records the table and the nodes are far larger
 * than the caches, so a get costs a few such misses (bucket, node, and the
 * node's LRU neighbours it relinks) whatever the table does: the 1M/1k
 * ratio measures the memory hierarchy as much as the algorithm.
 *
 * Keys are 64 hex characters of random bytes, as idem.c makes them. The
 * store is filled in a shuffled order and read in key order, so successive
 * operations touch nodes scattered over the heap as real traffic would,
 * while the key strings themselves stream. Bytes per record are the heap
 * in use (mallinfo2: small blocks plus mmapped ones, chunk headers
 * included) after filling the store minus before, over the record count,
 * with a shared json_null() payload that costs nothing.
 *
 * Run with `make bench`. Exits 0 whatever the ratios (shared machines drift);
 * a missed target prints OVER. BENCH_ROUNDS, BENCH_ROUND_MS and
 * BENCH_VERBOSE in the environment tune the method (bench.h).
 */
#include "bench.h"

#include <malloc.h>

#include "faas.h"

#define SMALL 1000u
#define LARGE 1000000u
/* Keys never stored, for put_if_absent + remove: the store keeps its size. */
#define FRESH (1u << 20)
/* The random-read floor chases pointers through this many bytes. */
#define CHASE_BYTES (128u << 20)
#define NOW_MS 1000
#define FAR_MS (INT64_C(1) << 62)

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

/* n keys of 64 hex characters (65 bytes with the NUL), from a seed. */
static char *make_keys(size_t n, uint64_t seed)
{
    static const char digits[] = "0123456789abcdef";
    char *keys = malloc(n * 65);
    size_t i;
    int w, b;
    if (keys == NULL)
        bench_die("malloc keys");
    for (i = 0; i < n; i++) {
        char *k = keys + i * 65;
        for (w = 0; w < 4; w++) {
            uint64_t v = splitmix(&seed);
            for (b = 0; b < 16; b++)
                k[w * 16 + b] = digits[(v >> (60 - 4 * b)) & 15u];
        }
        k[64] = '\0';
    }
    return keys;
}

static void count_cb(int rc, const struct faas_store_record *rec, void *arg)
{
    uint64_t *bad = arg;
    (void)rec;
    if (rc != 0)
        (*bad)++;
}

/* A memory store holding n live records, and what the bodies use. */
struct fixture {
    struct faas_store *st;
    char *keys;  /* the n stored keys */
    char *fresh; /* FRESH keys never stored */
    size_t n;
    size_t next, next_fresh;
    uint64_t bad; /* answers that were not 0: a broken figure */
    double bytes_per_record;
    double rss_per_record;
};

static size_t heap_in_use(void)
{
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd;
}

static size_t rss_bytes(void)
{
    unsigned long size = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f == NULL)
        return 0;
    if (fscanf(f, "%lu %lu", &size, &resident) != 2)
        resident = 0;
    fclose(f);
    return (size_t)resident * (size_t)sysconf(_SC_PAGESIZE);
}

static void fixture_init(struct fixture *f, size_t n, uint64_t seed)
{
    struct faas_store_record rec;
    size_t *order, i, heap0, rss0;
    uint64_t s = seed ^ 0x5555u;
    int rc;

    memset(f, 0, sizeof *f);
    f->n = n;
    f->keys = make_keys(n, seed);
    f->fresh = make_keys(FRESH, seed + 1);
    order = malloc(n * sizeof *order);
    if (order == NULL)
        bench_die("malloc order");
    for (i = 0; i < n; i++)
        order[i] = i;
    for (i = n - 1; i > 0; i--) {
        size_t j = (size_t)(splitmix(&s) % (i + 1)), t = order[i];
        order[i] = order[j];
        order[j] = t;
    }

    rec.state = FAAS_STORE_COMPLETED;
    rec.status = 0;
    rec.payload = json_null();
    rec.validation = NULL;
    rec.owner = NULL;
    rec.expires_ms = FAR_MS;

    heap0 = heap_in_use();
    rss0 = rss_bytes();
    rc = faas_store_memory_new(&f->st, 0);
    /* A million records pass the default byte bound (64 MiB): the figures
     * are of the table, so the bound is lifted out of the way. */
    if (rc == 0)
        rc = faas_store_memory_set_max_bytes(f->st, (size_t)-1 / 2);
    if (rc != 0) {
        fprintf(stderr, "bench: faas_store_memory_new: %s\n", faas_strerror(rc));
        exit(2);
    }
    for (i = 0; i < n; i++) {
        rc = faas_store_put_if_absent(f->st, f->keys + order[i] * 65, &rec, NOW_MS, count_cb,
                                      &f->bad);
        if (rc != 0) {
            fprintf(stderr, "bench: faas_store_put_if_absent: %s\n", faas_strerror(rc));
            exit(2);
        }
    }
    f->bytes_per_record = (double)(heap_in_use() - heap0) / (double)n;
    f->rss_per_record = (double)(rss_bytes() - rss0) / (double)n;
    if (faas_store_memory_count(f->st) != n || f->bad != 0)
        bench_die("filling the store");
    free(order);
}

static void fixture_free(struct fixture *f)
{
    faas_store_free(f->st);
    free(f->keys);
    free(f->fresh);
}

static void fixture_report(const struct fixture *f, const char *what)
{
    if (f->bad > 0)
        printf("    WARNING: %s: %llu operations did not answer 0\n", what,
               (unsigned long long)f->bad);
}

/* get of a stored key, the keys in turn. */
static void get_body(void *arg, uint64_t k)
{
    struct fixture *f = arg;
    uint64_t i;
    for (i = 0; i < k; i++) {
        if (faas_store_get(f->st, f->keys + f->next * 65, NOW_MS, count_cb, &f->bad) != 0)
            f->bad++;
        if (++f->next == f->n)
            f->next = 0;
    }
}

/* put_if_absent of a new key, then its remove: one operation of each. */
static void put_remove_body(void *arg, uint64_t k)
{
    struct fixture *f = arg;
    struct faas_store_record rec;
    uint64_t i;

    rec.state = FAAS_STORE_INPROGRESS;
    rec.status = 0;
    rec.payload = NULL;
    rec.validation = NULL;
    rec.owner = NULL;
    rec.expires_ms = FAR_MS;
    for (i = 0; i < k; i++) {
        const char *key = f->fresh + f->next_fresh * 65;
        if (faas_store_put_if_absent(f->st, key, &rec, NOW_MS, count_cb, &f->bad) != 0 ||
            faas_store_remove(f->st, key, NULL, NOW_MS, count_cb, &f->bad) != 0)
            f->bad++;
        if (++f->next_fresh == FRESH)
            f->next_fresh = 0;
    }
}

/* Floor: one dependent random read in CHASE_BYTES (a single-cycle permutation). */
struct chase {
    uint64_t *next;
    uint64_t pos;
};

static void chase_init(struct chase *c)
{
    size_t n = CHASE_BYTES / sizeof(uint64_t), i;
    uint64_t s = 42;
    c->next = malloc(CHASE_BYTES);
    if (c->next == NULL)
        bench_die("malloc chase");
    for (i = 0; i < n; i++)
        c->next[i] = i;
    /* Sattolo: one cycle through every slot. */
    for (i = n - 1; i > 0; i--) {
        size_t j = (size_t)(splitmix(&s) % i);
        uint64_t t = c->next[i];
        c->next[i] = c->next[j];
        c->next[j] = t;
    }
    c->pos = 0;
}

static void chase_body(void *arg, uint64_t k)
{
    struct chase *c = arg;
    uint64_t pos = c->pos, i;
    for (i = 0; i < k; i++)
        pos = c->next[pos];
    c->pos = pos;
}

/* Floor: a plain hash of 32 bytes (four splitmix rounds), one per op. */
static void hash_body(void *arg, uint64_t k)
{
    volatile uint64_t sink;
    uint64_t w[4] = { 1, 2, 3, 4 }, h = 0;
    uint64_t i;
    int j;
    (void)arg;
    for (i = 0; i < k; i++) {
        w[0] ^= h; /* each hash depends on the last: no overlap, no hoisting */
        h = 0;
        for (j = 0; j < 4; j++) {
            uint64_t z = h ^ w[j];
            z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
            z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
            h = z ^ (z >> 31);
        }
    }
    sink = h;
    (void)sink;
}

int main(void)
{
    struct bench_stat raw, hash, st, fig, flo;
    struct bench_side figure, ref;
    struct fixture small, large;
    struct chase chase;
    char extra[96];
    int over = 0;

    /* A hang in the library must not hang `make bench`: SIGALRM ends it. */
    alarm(300);
    snprintf(extra, sizeof extra, "libfaas %s", faas_version());
    bench_header("bench_store", extra);

    raw = bench_floor_raw_call();
    bench_floor_line("raw call", raw.median_ns);
    hash = bench_measure(hash_body, NULL, 1u << 16, 1u << 30);
    bench_floor_line("hash 32 bytes", hash.median_ns);

    chase_init(&chase);
    st = bench_measure(chase_body, &chase, 1u << 12, 1u << 26);
    bench_floor_line("random read in 128 MB", st.median_ns);

    fixture_init(&small, SMALL, 1);
    fixture_init(&large, LARGE, 2);

    printf("-- figures; each floor is measured again in rounds alternating with its figure\n");

    /* get */
    figure = (struct bench_side){ get_body, &small, 1024, 1u << 26 };
    ref = (struct bench_side){ hash_body, NULL, 1u << 16, 1u << 30 };
    bench_measure_pair(&figure, &fig, &ref, &flo);
    bench_line("store get, 1k records", fig.median_ns, "hash 32 bytes", flo.median_ns, 0);
    figure = (struct bench_side){ get_body, &large, 1024, 1u << 26 };
    ref = (struct bench_side){ get_body, &small, 1024, 1u << 26 };
    bench_measure_pair(&figure, &fig, &ref, &flo);
    over += bench_line("store get, 1M records", fig.median_ns, "store get, 1k records",
                       flo.median_ns, 3.0);
    ref = (struct bench_side){ chase_body, &chase, 1u << 12, 1u << 26 };
    bench_measure_pair(&figure, &fig, &ref, &flo);
    bench_line("store get, 1M records", fig.median_ns, "random read in 128 MB", flo.median_ns,
               0);

    /* put_if_absent + remove */
    figure = (struct bench_side){ put_remove_body, &small, 1024, 1u << 26 };
    ref = (struct bench_side){ hash_body, NULL, 1u << 16, 1u << 30 };
    bench_measure_pair(&figure, &fig, &ref, &flo);
    bench_line("store put+remove, 1k records", fig.median_ns, "hash 32 bytes", flo.median_ns,
               0);
    figure = (struct bench_side){ put_remove_body, &large, 1024, 1u << 26 };
    ref = (struct bench_side){ put_remove_body, &small, 1024, 1u << 26 };
    bench_measure_pair(&figure, &fig, &ref, &flo);
    over += bench_line("store put+remove, 1M records", fig.median_ns,
                       "store put+remove, 1k records", flo.median_ns, 3.0);
    ref = (struct bench_side){ chase_body, &chase, 1u << 12, 1u << 26 };
    bench_measure_pair(&figure, &fig, &ref, &flo);
    bench_line("store put+remove, 1M records", fig.median_ns, "random read in 128 MB",
               flo.median_ns, 0);

    /* Bytes per record: the heap, then RSS for reference. */
    over += large.bytes_per_record >= 150.0;
    printf(BENCH_FMT_NAME " %12.1f  " BENCH_FMT_FLOOR " %12s  %8s  [target < 150: %s]\n",
           "store bytes/record, 1M records", large.bytes_per_record, "(heap in use, B)", "-",
           "-", large.bytes_per_record < 150.0 ? "ok" : "OVER");
    printf("    (RSS grew %.1f B per record while filling; 1k records: %.1f B heap each)\n",
           large.rss_per_record, small.bytes_per_record);

    fixture_report(&small, "1k records");
    fixture_report(&large, "1M records");
    fixture_free(&large);
    fixture_free(&small);
    free(chase.next);
    printf("bench_store: %d target%s over (reported, not enforced)\n", over,
           over == 1 ? "" : "s");
    return 0;
}
