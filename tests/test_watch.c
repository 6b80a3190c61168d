/*
 * test_watch.c - the directory watcher: files closed after writing or moved
 * in become exactly one s3:ObjectCreated:Put record (bucket, key relative to
 * the watched directory, size, BLAKE2b-128 eTag), never before the close;
 * deletes and moves out become s3:ObjectRemoved:Delete; new subdirectories
 * are watched and scanned; directories renamed inside the tree; two watches;
 * an inotify queue overflow rescans and emits each file once; teardown with
 * watches open leaks no descriptor; faas_unwatch, also from inside the
 * watch's own callback; argument errors.
 *
 * Everything happens on a temporary directory under /tmp (mkdtemp), removed
 * at the end. INLINE functions mapped to "s3:ObjectCreated:*" and
 * "s3:ObjectRemoved:*" record what they get; the loop is driven with a bound
 * until the expected count, then for a while longer to see that nothing
 * more arrives.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "faas_int.h" /* faas_watch_free_all */
#include "testutil.h"

#define BOUND_MS 5000u
#define QUIET_MS 150u
#define NREC 64

struct rec {
    char name[32]; /* eventName */
    char bucket[64];
    char key[256];
    json_int_t size;
    char etag[40];
};

static struct event_base *g_base;
static struct faas_runtime *g_rt;
static char g_dir[64];   /* the watched directory */
static char g_out[64];   /* a directory outside it */
static struct rec g_recs[NREC];
static int g_nrec;       /* records received (all kinds) */
static int g_created;
static int g_removed;
static int g_overflow_logs;

/* ---- helpers ---- */

static void record(json_t *r)
{
    const char *name = NULL, *bucket = NULL, *key = NULL, *etag = NULL;
    json_int_t size = -1;
    struct rec *dst;

    assert_int_equal(json_unpack(r, "{s:s, s:{s:{s:s}, s:{s:s, s?I, s?s}}}", "eventName", &name,
                                 "s3", "bucket", "name", &bucket, "object", "key", &key, "size",
                                 &size, "eTag", &etag),
                     0);
    if (strncmp(name, "ObjectCreated:", 14) == 0)
        g_created++;
    else if (strncmp(name, "ObjectRemoved:", 14) == 0)
        g_removed++;
    if (g_nrec < NREC) {
        dst = &g_recs[g_nrec];
        snprintf(dst->name, sizeof dst->name, "%s", name);
        snprintf(dst->bucket, sizeof dst->bucket, "%s", bucket);
        snprintf(dst->key, sizeof dst->key, "%s", key);
        snprintf(dst->etag, sizeof dst->etag, "%s", etag ? etag : "");
        dst->size = size;
    }
    g_nrec++;
}

static int on_s3(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    json_t *records = json_object_get(event, "Records"), *r;
    size_t i;

    (void)ctx;
    (void)result;
    assert_true(json_is_array(records));
    json_array_foreach(records, i, r)
        record(r);
    return 0;
}

static int g_free_in_log; /* the overflow log record frees the runtime */
static int g_unwatch_in_log = -1; /* >= 0: the overflow log record ends this watch */
static int g_unwatch_rc;

static void on_log(const struct faas_log_record *rec, void *arg)
{
    (void)arg;
    if (rec->kind == FAAS_LOG_ASYNC && rec->action && strcmp(rec->action, "overflow") == 0) {
        g_overflow_logs++;
        if (g_unwatch_in_log >= 0) {
            g_unwatch_rc = faas_unwatch(g_rt, g_unwatch_in_log);
            g_unwatch_in_log = -1;
        }
        if (g_free_in_log) {
            faas_runtime_free(g_rt); /* deferred until the watcher's callback returns */
            g_rt = NULL;
        }
    }
}

static void path_in(char *out, size_t size, const char *dir, const char *rel)
{
    int n = snprintf(out, size, "%s/%s", dir, rel);
    assert_true(n > 0 && (size_t)n < size);
}

static void write_all(int fd, const char *s)
{
    size_t len = strlen(s);
    assert_int_equal(write(fd, s, len), (ssize_t)len);
}

/* Writes a whole file in one go (create, write, close). */
static void put_file(const char *dir, const char *rel, const char *content)
{
    char path[512];
    int fd;

    path_in(path, sizeof path, dir, rel);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    assert_true(fd >= 0);
    write_all(fd, content);
    assert_int_equal(close(fd), 0);
}

static void make_dir(const char *dir, const char *rel)
{
    char path[512];
    path_in(path, sizeof path, dir, rel);
    assert_int_equal(mkdir(path, 0755), 0);
}

static void etag_of(const char *content, char hex[33])
{
    unsigned char h[16];
    crypto_generichash(h, sizeof h, (const unsigned char *)content, strlen(content), NULL, 0);
    sodium_bin2hex(hex, 33, h, sizeof h);
}

/* The first record for key of the kind ("ObjectCreated:Put"), or NULL. */
static const struct rec *find_rec(const char *name, const char *key)
{
    int i;
    for (i = 0; i < g_nrec && i < NREC; i++)
        if (strcmp(g_recs[i].name, name) == 0 && strcmp(g_recs[i].key, key) == 0)
            return &g_recs[i];
    return NULL;
}

static void assert_created(const char *bucket, const char *key, const char *content)
{
    const struct rec *r = find_rec("ObjectCreated:Put", key);
    char hex[33];

    assert_non_null(r);
    assert_string_equal(r->bucket, bucket);
    assert_int_equal(r->size, (json_int_t)strlen(content));
    etag_of(content, hex);
    assert_string_equal(r->etag, hex);
}

static void assert_removed(const char *bucket, const char *key)
{
    const struct rec *r = find_rec("ObjectRemoved:Delete", key);
    assert_non_null(r);
    assert_string_equal(r->bucket, bucket);
}

static int wait_created(int want)
{
    return tu_run_until(g_base, &g_created, want, BOUND_MS);
}

static int wait_removed(int want)
{
    return tu_run_until(g_base, &g_removed, want, BOUND_MS);
}

static int rm_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void rm_tree(const char *dir)
{
    if (dir[0])
        nftw(dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

static int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *de;
    int n = 0;

    assert_non_null(d);
    while ((de = readdir(d)) != NULL)
        if (de->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

static struct faas_runtime *new_runtime(void)
{
    struct faas_runtime_opts ro = FAAS_RUNTIME_OPTS_INIT;
    struct faas_function_opts fo = FAAS_FUNCTION_OPTS_INIT;
    struct faas_runtime *rt = NULL;

    ro.log = on_log;
    fo.isolation = FAAS_ISOLATION_INLINE;
    assert_int_equal(faas_runtime_new(&rt, g_base, &ro), 0);
    assert_int_equal(faas_register(rt, "created", on_s3, &fo), 0);
    assert_int_equal(faas_register(rt, "removed", on_s3, &fo), 0);
    assert_true(faas_map(rt, "s3:ObjectCreated:*", "created", NULL) >= 0);
    assert_true(faas_map(rt, "s3:ObjectRemoved:*", "removed", NULL) >= 0);
    return rt;
}

static int setup(void **state)
{
    (void)state;
    assert_true(sodium_init() >= 0);
    g_nrec = g_created = g_removed = g_overflow_logs = 0;
    memset(g_recs, 0, sizeof g_recs);
    strcpy(g_dir, "/tmp/faas-watch-XXXXXX");
    strcpy(g_out, "/tmp/faas-watch-out-XXXXXX");
    assert_non_null(mkdtemp(g_dir));
    assert_non_null(mkdtemp(g_out));
    g_base = event_base_new();
    assert_non_null(g_base);
    g_rt = new_runtime();
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    tu_rt_free(&g_rt, &g_base);
    rm_tree(g_dir);
    rm_tree(g_out);
    return 0;
}

/* ---- tests ---- */

static int flood(const char *prefix);

/* A file written in several writes is emitted once, at its close. */
static void test_write_then_close(void **state)
{
    char path[512];
    int fd;

    (void)state;
    assert_true(faas_watch_dir(g_rt, "photos", g_dir) >= 0);
    path_in(path, sizeof path, g_dir, "a.txt");
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    assert_true(fd >= 0);
    write_all(fd, "hello ");
    tu_run_for(g_base, QUIET_MS);
    write_all(fd, "wide ");
    tu_run_for(g_base, QUIET_MS);
    write_all(fd, "world");
    tu_run_for(g_base, QUIET_MS);
    assert_int_equal(g_nrec, 0); /* created and written, not closed */

    assert_int_equal(close(fd), 0);
    assert_true(wait_created(1));
    tu_run_for(g_base, QUIET_MS);
    assert_int_equal(g_nrec, 1);
    assert_created("photos", "a.txt", "hello wide world");

    /* Rewritten: a new object version. */
    put_file(g_dir, "a.txt", "v2");
    assert_true(wait_created(2));
    tu_run_for(g_base, QUIET_MS);
    assert_int_equal(g_nrec, 2);
    assert_string_equal(g_recs[1].key, "a.txt");
    assert_int_equal(g_recs[1].size, 2);
}

/* Opened for writing and closed without a change: no new object. */
static void test_close_without_change(void **state)
{
    char path[512];
    int fd;

    (void)state;
    put_file(g_dir, "old.txt", "before the watch");
    assert_true(faas_watch_dir(g_rt, "photos", g_dir) >= 0);
    path_in(path, sizeof path, g_dir, "old.txt");
    fd = open(path, O_WRONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    assert_int_equal(close(fd), 0);
    tu_run_for(g_base, QUIET_MS);
    assert_int_equal(g_nrec, 0); /* files present at the start are not emitted */
}

/* An empty file closed after creation is an object of size 0. */
static void test_empty_file(void **state)
{
    (void)state;
    assert_true(faas_watch_dir(g_rt, "photos", g_dir) >= 0);
    put_file(g_dir, "empty", "");
    assert_true(wait_created(1));
    tu_run_for(g_base, QUIET_MS);
    assert_int_equal(g_nrec, 1);
    assert_created("photos", "empty", "");
}

/* A file renamed in from outside the tree: created; moved out: removed. */
static void test_move_in_and_out(void **state)
{
    char from[512], to[512];

    (void)state;
    assert_true(faas_watch_dir(g_rt, "uploads", g_dir) >= 0);
    put_file(g_out, "staged.bin", "complete content");
    tu_run_for(g_base, QUIET_MS);
    assert_int_equal(g_nrec, 0); /* outside the watched tree */

    path_in(from, sizeof from, g_out, "staged.bin");
    path_in(to, sizeof to, g_dir, "final.bin");
    assert_int_equal(rename(from, to), 0);
    assert_true(wait_created(1));
    assert_created("uploads", "final.bin", "complete content");

    assert_int_equal(rename(to, from), 0);
    assert_true(wait_removed(1));
    tu_run_for(g_base, QUIET_MS);
    assert_int_equal(g_nrec, 2);
    assert_int_equal(g_created, 1);
    assert_removed("uploads", "final.bin");
}

/* Deletes: a file present before the watch, and one made after. */
static void test_delete(void **state)
{
    char path[512];

    (void)state;
    put_file(g_dir, "early.txt", "x");
    assert_true(faas_watch_dir(g_rt, "logs", g_dir) >= 0);
    path_in(path, sizeof path, g_dir, "early.txt");
    assert_int_equal(unlink(path), 0);
    assert_true(wait_removed(1));
    assert_removed("logs", "early.txt");

    put_file(g_dir, "late.txt", "yy");
    assert_true(wait_created(1));
    path_in(path, sizeof path, g_dir, "late.txt");
    assert_int_equal(unlink(path), 0);
    assert_true(wait_removed(2));
    tu_run_for(g_base, QUIET_MS);
    assert_int_equal(g_created, 1);
    assert_int_equal(g_removed, 2);
    assert_removed("logs", "late.txt");
}

/* A file created and deleted before anyone closed it was never an object. */
static void test_delete_unfinished(void **state)
{
    char path[512];
    int fd;

    (void)state;
    assert_true(faas_watch_dir(g_rt, "logs", g_dir) >= 0);
    path_in(path, sizeof path, g_dir, "tmp.part");
    fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    assert_true(fd >= 0);
    write_all(fd, "partial");
    assert_int_equal(unlink(path), 0);
    tu_run_for(g_base, QUIET_MS);
    assert_int_equal(close(fd), 0); /* after the unlink: IN_EXCL_UNLINK */
    tu_run_for(g_base, QUIET_MS);
    assert_int_equal(g_nrec, 0);
}

/* New subdirectories are watched; what was written into them before their
 * watch existed is found by the scan, once. */
static void test_subdirectory(void **state)
{
    (void)state;
    make_dir(g_dir, "pre");
    assert_true(faas_watch_dir(g_rt, "media", g_dir) >= 0);
    put_file(g_dir, "pre/inner.txt", "in a directory watched from the start");
    assert_true(wait_created(1));
    assert_created("media", "pre/inner.txt", "in a directory watched from the start");

    /* mkdir and write with no loop turn between: the scan must find it. */
    make_dir(g_dir, "sub");
    put_file(g_dir, "sub/file", "abc");
    make_dir(g_dir, "sub/deep");
    make_dir(g_dir, "sub/deep/er");
    put_file(g_dir, "sub/deep/er/leaf", "leafy");
    assert_true(wait_created(3));
    tu_run_for(g_base, QUIET_MS);
    assert_int_equal(g_created, 3);
    assert_created("media", "sub/file", "abc");
    assert_created("media", "sub/deep/er/leaf", "leafy");

    /* Later files in the new directories come from their own watches. */
    put_file(g_dir, "sub/deep/later", "later!");
    assert_true(wait_created(4));
    tu_run_for(g_base, QUIET_MS);
    assert_int_equal(g_created, 4);
    assert_created("media", "sub/deep/later", "later!");
    assert_int_equal(g_removed, 0);
}

/* A file still being written in a new directory: the scan that finds it
 * leaves it to its close (never half-written). */
static void test_subdirectory_unfinished(void **state)
{
    char path[512];
    int fd;

    (void)state;
    assert_true(faas_watch_dir(g_rt, "media", g_dir) >= 0);
    make_dir(g_dir, "new");
    path_in(path, sizeof path, g_dir, "new/big");
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    assert_true(fd >= 0);
    write_all(fd, "first half, ");
    tu_run_for(g_base, QUIET_MS); /* the watch of "new" and its scan */
    assert_int_equal(g_nrec, 0);
    write_all(fd, "second half");
    tu_run_for(g_base, QUIET_MS);
    assert_int_equal(g_nrec, 0);
    assert_int_equal(close(fd), 0);
    assert_true(wait_created(1));
    tu_run_for(g_base, QUIET_MS);
    assert_int_equal(g_nrec, 1);
    assert_created("media", "new/big", "first half, second half");
}

/* A directory renamed inside the tree: its objects move (removed, created);
 * moved out: removed; a directory moved in: its files are created. */
static void test_directory_moves(void **state)
{
    char from[512], to[512];

    (void)state;
    make_dir(g_dir, "d1");
    put_file(g_dir, "d1/f", "ff");
    assert_true(faas_watch_dir(g_rt, "media", g_dir) >= 0);

    path_in(from, sizeof from, g_dir, "d1");
    path_in(to, sizeof to, g_dir, "d2");
    assert_int_equal(rename(from, to), 0);
    assert_true(wait_removed(1));
    assert_true(wait_created(1));
    assert_removed("media", "d1/f");
    assert_created("media", "d2/f", "ff");

    /* The watch of the moved directory follows it under its new name. */
    put_file(g_dir, "d2/g", "gg");
    assert_true(wait_created(2));
    assert_created("media", "d2/g", "gg");

    path_in(from, sizeof from, g_out, "away");
    assert_int_equal(rename(to, from), 0);
    assert_true(wait_removed(3));
    assert_removed("media", "d2/g");
    /* Gone from the tree: writing there emits nothing. */
    put_file(g_out, "away/h", "hh");
    tu_run_for(g_base, QUIET_MS);
    assert_int_equal(g_created, 2);
    assert_int_equal(g_removed, 3);

    path_in(to, sizeof to, g_dir, "back");
    assert_int_equal(rename(from, to), 0);
    assert_true(wait_created(5));
    tu_run_for(g_base, QUIET_MS);
    assert_int_equal(g_created, 5);
    assert_created("media", "back/h", "hh");
    assert_created("media", "back/g", "gg");
}

/* Deleting a directory tree: one removal per file, nothing else. */
static void test_rmdir_tree(void **state)
{
    char path[512];

    (void)state;
    make_dir(g_dir, "t");
    make_dir(g_dir, "t/u");
    put_file(g_dir, "t/u/one", "1");
    put_file(g_dir, "t/two", "2");
    assert_true(faas_watch_dir(g_rt, "media", g_dir) >= 0);
    path_in(path, sizeof path, g_dir, "t");
    rm_tree(path);
    assert_true(wait_removed(2));
    tu_run_for(g_base, QUIET_MS);
    assert_int_equal(g_removed, 2);
    assert_int_equal(g_created, 0);
    assert_removed("media", "t/u/one");
    assert_removed("media", "t/two");
}

/* Two watches: each emits with its own bucket; ids differ. */
static void test_two_watches(void **state)
{
    char second[64] = "/tmp/faas-watch-2-XXXXXX";
    int a, b;

    (void)state;
    assert_non_null(mkdtemp(second));
    a = faas_watch_dir(g_rt, "bucket-one", g_dir);
    b = faas_watch_dir(g_rt, "bucket.two", second);
    assert_true(a >= 0);
    assert_true(b >= 0);
    assert_int_not_equal(a, b);

    put_file(g_dir, "x", "one");
    put_file(second, "y", "two");
    assert_true(wait_created(2));
    tu_run_for(g_base, QUIET_MS);
    assert_int_equal(g_nrec, 2);
    assert_created("bucket-one", "x", "one");
    assert_created("bucket.two", "y", "two");
    rm_tree(second);
}

/* The same directory under two buckets: each close is two records. */
static void test_same_dir_twice(void **state)
{
    (void)state;
    assert_true(faas_watch_dir(g_rt, "first", g_dir) >= 0);
    assert_true(faas_watch_dir(g_rt, "second", g_dir) >= 0);
    put_file(g_dir, "f", "both");
    assert_true(wait_created(2));
    tu_run_for(g_base, QUIET_MS);
    assert_int_equal(g_nrec, 2);
    assert_true((strcmp(g_recs[0].bucket, "first") == 0 &&
                 strcmp(g_recs[1].bucket, "second") == 0) ||
                (strcmp(g_recs[0].bucket, "second") == 0 &&
                 strcmp(g_recs[1].bucket, "first") == 0));
}

/* faas_runtime_free with watches open and events unread: every descriptor
 * the watches opened is closed. */
static void test_free_with_watches(void **state)
{
    int before;

    (void)state;
    faas_runtime_free(g_rt);
    before = count_fds();
    g_rt = new_runtime(); /* its zygote's control channel: one descriptor */
    assert_int_equal(count_fds(), before + 1);
    make_dir(g_dir, "s");
    assert_true(faas_watch_dir(g_rt, "one-bucket", g_dir) >= 0);
    assert_true(faas_watch_dir(g_rt, "two-bucket", g_out) >= 0);
    assert_int_equal(count_fds(), before + 3);
    put_file(g_dir, "s/pending", "never read");
    put_file(g_out, "pending", "never read");
    faas_runtime_free(g_rt);
    g_rt = NULL;
    assert_int_equal(count_fds(), before);
    g_rt = new_runtime(); /* for teardown */
}

/* faas_watch_free_all on its own (what teardown calls), then again. */
static void test_free_all(void **state)
{
    int before = count_fds();

    (void)state;
    assert_true(faas_watch_dir(g_rt, "abc", g_dir) >= 0);
    faas_watch_free_all(g_rt);
    faas_watch_free_all(g_rt);
    assert_int_equal(count_fds(), before);
    put_file(g_dir, "f", "nobody watches");
    tu_run_for(g_base, QUIET_MS);
    assert_int_equal(g_nrec, 0);
}

/* The queue overflows: the rescan emits each file exactly once, and a
 * delete whose event was lost is found too. */
static void test_overflow(void **state)
{
    char path[512];
    int n;

    (void)state;
    put_file(g_dir, "old.txt", "present at the start");
    assert_true(faas_watch_dir(g_rt, "flood", g_dir) >= 0);
    n = flood("f");
    if (n < 0) {
        skip();
        return;
    }
    path_in(path, sizeof path, g_dir, "old.txt");
    assert_int_equal(unlink(path), 0); /* its event is lost */
    assert_true(tu_run_until(g_base, &g_created, n, 60000u));
    assert_true(wait_removed(1));
    tu_run_for(g_base, QUIET_MS);
    assert_int_equal(g_created, n);
    assert_int_equal(g_removed, 1);
    assert_int_equal(g_overflow_logs, 1);

    /* Back to normal afterwards. */
    put_file(g_dir, "after", "ok");
    assert_true(wait_created(n + 1));
    tu_run_for(g_base, QUIET_MS);
    assert_int_equal(g_created, n + 1);
}

/* Floods the watched directory until its inotify queue overflows. */
static int flood(const char *prefix)
{
    FILE *f = fopen("/proc/sys/fs/inotify/max_queued_events", "r");
    char name[64];
    long max = 0;
    int i, n;

    assert_non_null(f);
    assert_int_equal(fscanf(f, "%ld", &max), 1);
    fclose(f);
    if (max <= 0 || max > 100000)
        return -1;
    /* Two events per file (IN_CREATE, IN_CLOSE_WRITE): max/2 + 64 files
     * overflow the queue. */
    n = (int)(max / 2 + 64);
    for (i = 0; i < n; i++) {
        snprintf(name, sizeof name, "%s%05d", prefix, i);
        put_file(g_dir, name, name);
    }
    return n;
}

/* The host frees the runtime from the log callback the overflow calls,
 * inside the watcher's read callback: the watcher stops there. */
static void test_free_inside_callback(void **state)
{
    int before, n;

    (void)state;
    faas_runtime_free(g_rt);
    before = count_fds();
    g_rt = new_runtime();
    assert_true(faas_watch_dir(g_rt, "flood", g_dir) >= 0);
    n = flood("g");
    if (n < 0) {
        skip();
        return;
    }
    g_free_in_log = 1;
    assert_true(tu_run_until(g_base, &g_overflow_logs, 1, 60000u));
    g_free_in_log = 0;
    assert_null(g_rt);
    assert_int_equal(count_fds(), before);
    tu_run_for(g_base, QUIET_MS);
    g_rt = new_runtime(); /* for teardown */
}

/* faas_unwatch ends one watch: its descriptor closes at once, its
 * directory emits nothing more, the other watch goes on; the id is gone. */
static void test_unwatch(void **state)
{
    int before, a, b;

    (void)state;
    before = count_fds();
    a = faas_watch_dir(g_rt, "one-bucket", g_dir);
    b = faas_watch_dir(g_rt, "two-bucket", g_out);
    assert_true(a >= 0 && b >= 0);
    assert_int_equal(count_fds(), before + 2);
    put_file(g_dir, "first", "seen");
    assert_true(wait_created(1));

    assert_int_equal(faas_unwatch(g_rt, a), 0);
    assert_int_equal(count_fds(), before + 1);
    put_file(g_dir, "second", "not seen");
    put_file(g_out, "other", "seen");
    assert_true(wait_created(2));
    tu_run_for(g_base, QUIET_MS);
    assert_int_equal(g_created, 2);
    assert_created("one-bucket", "first", "seen");
    assert_created("two-bucket", "other", "seen");
    assert_null(find_rec("ObjectCreated:Put", "second"));

    assert_int_equal(faas_unwatch(g_rt, a), FAAS_ENOENT);
    assert_int_equal(faas_unwatch(g_rt, 999), FAAS_ENOENT);
    assert_int_equal(faas_unwatch(g_rt, -1), FAAS_EINVAL);
    assert_int_equal(faas_unwatch(NULL, b), FAAS_EINVAL);
    assert_int_equal(faas_unwatch(g_rt, b), 0);
    assert_int_equal(count_fds(), before);
}

/* faas_unwatch from a log callback that runs inside the watch's own read
 * callback (the overflow record): the callback stops reading and frees the
 * watch when it returns; nothing more is emitted for the directory. */
static void test_unwatch_inside_callback(void **state)
{
    int before, id, n, created;

    (void)state;
    before = count_fds();
    id = faas_watch_dir(g_rt, "flood", g_dir);
    assert_true(id >= 0);
    n = flood("u");
    if (n < 0) {
        skip();
        return;
    }
    g_unwatch_rc = 1;
    g_unwatch_in_log = id;
    assert_true(tu_run_until(g_base, &g_overflow_logs, 1, 60000u));
    assert_int_equal(g_unwatch_rc, 0);
    assert_int_equal(count_fds(), before);
    tu_run_for(g_base, QUIET_MS);
    created = g_created;
    assert_true(created <= n);
    put_file(g_dir, "after", "nobody watches");
    tu_run_for(g_base, QUIET_MS);
    assert_int_equal(g_created, created);
    assert_int_equal(faas_unwatch(g_rt, id), FAAS_ENOENT);
}

/* A watch on a runtime with no mapping: emitting is harmless. */
static void test_no_mapping(void **state)
{
    struct faas_runtime *rt = NULL;

    (void)state;
    assert_int_equal(faas_runtime_new(&rt, g_base, NULL), 0);
    assert_true(faas_watch_dir(rt, "quiet", g_dir) >= 0);
    put_file(g_dir, "f", "nobody listens");
    make_dir(g_dir, "d");
    put_file(g_dir, "d/g", "nobody");
    tu_run_for(g_base, QUIET_MS);
    faas_runtime_free(rt);
    assert_int_equal(g_nrec, 0);
}

static void test_errors(void **state)
{
    char file[512], longb[80];
    int a, b;

    (void)state;
    assert_int_equal(faas_watch_dir(NULL, "bucket", g_dir), FAAS_EINVAL);
    assert_int_equal(faas_watch_dir(g_rt, NULL, g_dir), FAAS_EINVAL);
    assert_int_equal(faas_watch_dir(g_rt, "bucket", NULL), FAAS_EINVAL);
    assert_int_equal(faas_watch_dir(g_rt, "", g_dir), FAAS_EINVAL);
    assert_int_equal(faas_watch_dir(g_rt, "ab", g_dir), FAAS_EINVAL);
    assert_int_equal(faas_watch_dir(g_rt, "Bucket", g_dir), FAAS_EINVAL);
    assert_int_equal(faas_watch_dir(g_rt, "my_bucket", g_dir), FAAS_EINVAL);
    assert_int_equal(faas_watch_dir(g_rt, "my bucket", g_dir), FAAS_EINVAL);
    memset(longb, 'a', 64);
    longb[64] = '\0';
    assert_int_equal(faas_watch_dir(g_rt, longb, g_dir), FAAS_EINVAL);
    longb[63] = '\0';
    assert_int_equal(faas_watch_dir(g_rt, "abc", "/nonexistent/faas-watch"), FAAS_ENOENT);
    put_file(g_dir, "plain", "not a directory");
    path_in(file, sizeof file, g_dir, "plain");
    assert_int_equal(faas_watch_dir(g_rt, "abc", file), FAAS_ENOENT);
    assert_int_equal(faas_watch_dir(g_rt, "abc", ""), FAAS_EINVAL);
    assert_int_equal(g_rt->next_watch_id, 0); /* no failed call took an id */

    a = faas_watch_dir(g_rt, longb, g_dir); /* 63 characters: the limit */
    b = faas_watch_dir(g_rt, "a.b", g_dir); /* 3: the other limit */
    assert_int_equal(a, 0);
    assert_int_equal(b, 1);
    tu_run_for(g_base, QUIET_MS);
    assert_int_equal(g_nrec, 0); /* "plain" existed before: no event */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_write_then_close, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_without_change, setup, teardown),
        cmocka_unit_test_setup_teardown(test_empty_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_move_in_and_out, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delete_unfinished, setup, teardown),
        cmocka_unit_test_setup_teardown(test_subdirectory, setup, teardown),
        cmocka_unit_test_setup_teardown(test_subdirectory_unfinished, setup, teardown),
        cmocka_unit_test_setup_teardown(test_directory_moves, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rmdir_tree, setup, teardown),
        cmocka_unit_test_setup_teardown(test_two_watches, setup, teardown),
        cmocka_unit_test_setup_teardown(test_same_dir_twice, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_with_watches, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_all, setup, teardown),
        cmocka_unit_test_setup_teardown(test_overflow, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_inside_callback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_mapping, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unwatch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unwatch_inside_callback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_errors, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
