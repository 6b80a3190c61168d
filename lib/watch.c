/*
 * watch.c - the directory watcher: a built-in producer of S3-shaped events
 * ("s3:ObjectCreated:Put", "s3:ObjectRemoved:Delete") for a directory tree,
 * fed to faas_emit() like any host-fed record.
 *
 * Each watch owns one inotify instance, read by one persistent EV_READ event
 * on the host's base, and a watch descriptor per directory of the tree.
 * An object appears when a file is closed after writing (IN_CLOSE_WRITE) or
 * moved in (IN_MOVED_TO): never at IN_CREATE, so a file still being written
 * is not emitted half-written. It disappears when deleted or moved out.
 * A directory created or moved in gets its watch first and is scanned after,
 * so a file made inside it is seen by the scan, by an event, or by both;
 * the set of known files below makes "both" emit once.
 *
 * Known files: every regular file of the tree with the inode, mtime, size
 * (and the eTag once computed) we last saw. It makes emission idempotent
 * (a close that changed nothing, a scan racing an event) and lets a rescan
 * after an inotify queue overflow (IN_Q_OVERFLOW: events were lost) emit
 * only what is new or changed, and ObjectRemoved for what went away.
 * Files present when the watch starts are known but not emitted: like S3,
 * notifications start with the subscription.
 *
 * eTag: S3 uses the MD5 of the object; ours is the hex BLAKE2b-128 of the
 * content (libsodium's crypto_generichash, streamed in 64 KiB chunks). It
 * changes when the content does, which is what a handler may rely on; it is
 * not comparable with an S3 eTag.
 *
 * Keys are paths relative to the watched directory with '/' separators.
 * Symbolic links are neither followed nor emitted; names that are not
 * UTF-8 cannot be carried by JSON and are skipped.
 *
 * A scan (of a new directory, or after an overflow) cannot see a close
 * that happened before the watch existed, so it must decide whether a file
 * it finds is complete. It asks the kernel: a read lease (F_SETLEASE) is
 * refused with EAGAIN while anyone has the file open for writing; such a
 * file is left to its coming IN_CLOSE_WRITE. The lease is dropped at once;
 * a writer opening the file in between would send this fd's lease-break
 * signal, set to SIGURG (ignored by default) rather than SIGIO (which
 * terminates). Where leases are refused for other reasons (a file owned by
 * another user without CAP_LEASE, a file system without leases) the file is
 * emitted as found, and again at its close if it was still being written.
 * A rescan compares inode, mtime and size only.
 *
 * Everything runs on the loop thread. The read callback is an entry from
 * the loop: it brackets its work with faas_rt_enter/faas_rt_leave and stops
 * as soon as a faas_runtime_free was requested inside. faas_unwatch called
 * from inside that callback (a handler of an emitted record) takes the
 * watch off the runtime at once and leaves the free to the callback, which
 * stops reading.
 *
 * Owns the watches (struct faas_watch on rt->watches) and, per watch, the
 * inotify descriptor, its event and the tables of directories and known
 * files (hash.c). Called by the host (faas_watch, faas_unwatch) and
 * source.c (faas_watch_free_all at teardown). Calls faas_emit (source.c's
 * public entry, as any producer would), hash.c, metrics.c's log records,
 * error.c, runtime.c's callback guard; inotify(7), fcntl leases, libsodium,
 * libevent.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/event.h>
#include <sodium.h>

#include "faas_int.h"

#define WATCH_MASK                                                                  \
    (IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE | IN_CREATE |         \
     IN_DELETE_SELF | IN_EXCL_UNLINK | IN_ONLYDIR)
#define WATCH_CHUNK (64u * 1024u)    /* hashing reads */
#define WATCH_INBUF (16u * 1024u)    /* one read(2) of inotify events */
#define WATCH_READS 8                /* reads per callback: others get a turn */
#define WATCH_ETAG_BYTES 16u         /* BLAKE2b-128 */

/* One watched directory. */
struct wdir {
    struct faas_hnode hnode; /* w->dirs, by wd */
    int wd;
    unsigned gen;      /* the last scan that saw it */
    char rel[];        /* "" for the root, else "a/b" */
};

/* One known regular file. */
struct wfile {
    struct faas_hnode hnode; /* w->files, by key */
    unsigned gen;
    int has_etag;
    ino_t ino;
    int64_t mtime_ns;
    int64_t size;
    unsigned char etag[WATCH_ETAG_BYTES];
    char key[];
};

struct faas_watch {
    struct faas_list link; /* rt->watches */
    struct faas_runtime *rt;
    int id;
    int fd;
    struct event *ev;
    char *bucket;
    char *root;            /* no trailing '/'; "" for "/" */
    unsigned gen;
    int in_read;           /* watch_read_cb runs: a faas_unwatch defers */
    int unwatched;         /* faas_unwatch ran inside: the callback frees */

    struct faas_htable dirs;  /* struct wdir by wd */
    struct faas_htable files; /* struct wfile by key */

    unsigned char chunk[WATCH_CHUNK];
    union {
        struct inotify_event ev; /* alignment */
        char bytes[WATCH_INBUF];
    } in;
};

/* What a directory scan does with the regular files it finds. */
enum scan_mode {
    SCAN_QUIET, /* remember them: the watch is starting */
    SCAN_EMIT   /* emit those new or changed since last seen */
};

/* ---- tables ---------------------------------------------------------- */

#define DIR_OF(n) FAAS_CONTAINER_OF(n, struct wdir, hnode)
#define FILE_OF(n) FAAS_CONTAINER_OF(n, struct wfile, hnode)

static int dir_wd_eq(const struct faas_hnode *n, const void *wd)
{
    return DIR_OF(n)->wd == *(const int *)wd;
}

static struct wdir *dir_find(const struct faas_watch *w, int wd)
{
    struct faas_hnode *n = faas_htable_find(&w->dirs, (uint32_t)wd, dir_wd_eq, &wd);
    return n ? DIR_OF(n) : NULL;
}

/* Unlinks the record of wd (if any) and frees it. */
static void dir_forget(struct faas_watch *w, int wd)
{
    struct wdir *d = dir_find(w, wd);
    if (d) {
        faas_htable_remove(&w->dirs, &d->hnode);
        free(d);
    }
}

/* Records wd -> rel; a wd already known under another path (a directory
 * moved while events were lost) takes the new one. */
static int dir_set(struct faas_watch *w, int wd, const char *rel)
{
    struct wdir *d = dir_find(w, wd);
    size_t len = strlen(rel);

    if (d && strcmp(d->rel, rel) == 0) {
        d->gen = w->gen;
        return 0;
    }
    if (d)
        dir_forget(w, wd);
    if (faas_htable_reserve(&w->dirs) != 0)
        return FAAS_ENOMEM;
    d = faas_malloc(sizeof *d + len + 1);
    if (!d)
        return FAAS_ENOMEM;
    d->wd = wd;
    d->gen = w->gen;
    memcpy(d->rel, rel, len + 1);
    faas_htable_insert(&w->dirs, &d->hnode, (uint32_t)wd);
    return 0;
}

static int file_key_eq(const struct faas_hnode *n, const void *key)
{
    return strcmp(FILE_OF(n)->key, key) == 0;
}

static struct wfile *file_find(const struct faas_watch *w, const char *key)
{
    struct faas_hnode *n = faas_htable_find(&w->files, faas_hash_str(key), file_key_eq, key);
    return n ? FILE_OF(n) : NULL;
}

static void file_forget(struct faas_watch *w, const char *key)
{
    struct wfile *f = file_find(w, key);
    if (f) {
        faas_htable_remove(&w->files, &f->hnode);
        free(f);
    }
}

/* The record of key, created if needed; NULL when out of memory. */
static struct wfile *file_get(struct faas_watch *w, const char *key)
{
    struct wfile *f = file_find(w, key);
    size_t len;

    if (f)
        return f;
    if (faas_htable_reserve(&w->files) != 0)
        return NULL;
    len = strlen(key);
    f = faas_calloc(1, sizeof *f + len + 1);
    if (!f)
        return NULL;
    memcpy(f->key, key, len + 1);
    faas_htable_insert(&w->files, &f->hnode, faas_hash_str(key));
    return f;
}

static int64_t mtime_ns(const struct stat *st)
{
    return (int64_t)st->st_mtim.tv_sec * 1000000000 + (int64_t)st->st_mtim.tv_nsec;
}

static int same_meta(const struct wfile *f, const struct stat *st)
{
    return f->ino == st->st_ino && f->mtime_ns == mtime_ns(st) && f->size == (int64_t)st->st_size;
}

static void file_note(struct wfile *f, const struct stat *st, unsigned gen)
{
    f->ino = st->st_ino;
    f->mtime_ns = mtime_ns(st);
    f->size = (int64_t)st->st_size;
    f->gen = gen;
}

/* ---- paths ----------------------------------------------------------- */

/* "a" + "/" + "b", or the one that is not empty. Returns -1 when too long. */
static int path_join(char *out, size_t size, const char *a, const char *b)
{
    int n;
    if (!*a)
        n = snprintf(out, size, "%s", b);
    else if (!*b)
        n = snprintf(out, size, "%s", a);
    else
        n = snprintf(out, size, "%s/%s", a, b);
    return n < 0 || (size_t)n >= size ? -1 : 0;
}

/* The file system path of a key (or of a directory's rel). */
static int path_of(const struct faas_watch *w, const char *key, char out[PATH_MAX])
{
    int n;
    if (!*key)
        n = snprintf(out, PATH_MAX, "%s", *w->root ? w->root : "/");
    else
        n = snprintf(out, PATH_MAX, "%s/%s", w->root, key);
    return n < 0 || n >= PATH_MAX ? -1 : 0;
}

/* 1 when key is prefix itself or lies below it. */
static int under(const char *key, const char *prefix, size_t plen)
{
    return strncmp(key, prefix, plen) == 0 && (key[plen] == '\0' || key[plen] == '/');
}

/* ---- emission -------------------------------------------------------- */

static void emit_created(struct faas_watch *w, const char *key, int64_t size,
                         const unsigned char etag[WATCH_ETAG_BYTES])
{
    char hex[2 * WATCH_ETAG_BYTES + 1];
    json_t *parts;

    sodium_bin2hex(hex, sizeof hex, etag, WATCH_ETAG_BYTES);
    parts = json_pack("{s:s, s:s, s:I, s:s}", "bucket", w->bucket, "key", key, "size",
                      (json_int_t)size, "eTag", hex);
    if (!parts)
        return; /* a key that is not UTF-8, or no memory */
    faas_emit(w->rt, "s3:ObjectCreated:Put", parts);
    json_decref(parts);
}

static void emit_removed(struct faas_watch *w, const char *key)
{
    json_t *parts = json_pack("{s:s, s:s}", "bucket", w->bucket, "key", key);
    if (!parts)
        return;
    faas_emit(w->rt, "s3:ObjectRemoved:Delete", parts);
    json_decref(parts);
}

/* 1 when someone has the file open for writing (see the top comment). */
static int being_written(int fd)
{
    if (fcntl(fd, F_SETSIG, SIGURG) != 0)
        return 0;
    if (fcntl(fd, F_SETLEASE, F_RDLCK) == 0) {
        fcntl(fd, F_SETLEASE, F_UNLCK);
        return 0;
    }
    return errno == EAGAIN;
}

/*
 * Opens a regular file without blocking (a FIFO would) or following a
 * link, and hashes its content. `probe`: first check that nobody is still
 * writing it. Returns 0 with *st and the bytes hashed, 1 when it is being
 * written, or -1 when it is gone, not a regular file or unreadable.
 */
static int file_digest(struct faas_watch *w, const char *path, int probe, struct stat *st,
                       int64_t *nbytes, unsigned char etag[WATCH_ETAG_BYTES])
{
    crypto_generichash_state hs;
    int64_t total = 0;
    ssize_t n;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY);

    if (fd < 0)
        return -1;
    if (fstat(fd, st) != 0 || !S_ISREG(st->st_mode)) {
        close(fd);
        return -1;
    }
    if (probe && being_written(fd)) {
        close(fd);
        return 1;
    }
    crypto_generichash_init(&hs, NULL, 0, WATCH_ETAG_BYTES);
    for (;;) {
        n = read(fd, w->chunk, sizeof w->chunk);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        crypto_generichash_update(&hs, w->chunk, (unsigned long long)n);
        total += n;
    }
    close(fd);
    if (n < 0)
        return -1;
    crypto_generichash_final(&hs, etag, WATCH_ETAG_BYTES);
    *nbytes = total;
    return 0;
}

/*
 * A complete file at key (closed after writing, moved in, or found by a
 * scan): emits ObjectCreated unless it is exactly what was last seen.
 * `seen` is its stat from a scan (which must also check that nobody is
 * writing it), NULL for an event.
 */
static void file_ready(struct faas_watch *w, const char *key, const struct stat *seen)
{
    char path[PATH_MAX];
    unsigned char etag[WATCH_ETAG_BYTES];
    struct wfile *f = file_find(w, key);
    struct stat st;
    int64_t size;
    int rc;

    if (f && seen && same_meta(f, seen)) {
        f->gen = w->gen;
        return;
    }
    if (path_of(w, key, path) != 0)
        return;
    rc = file_digest(w, path, seen != NULL, &st, &size, etag);
    if (rc == 1 && f)
        f->gen = w->gen; /* still there: its close will tell */
    if (rc != 0)
        return;
    if (f && same_meta(f, &st) && (!f->has_etag || memcmp(f->etag, etag, sizeof etag) == 0)) {
        f->gen = w->gen; /* opened for writing and closed, nothing changed */
        return;
    }
    f = file_get(w, key);
    if (f) {
        file_note(f, &st, w->gen);
        memcpy(f->etag, etag, sizeof etag);
        f->has_etag = 1;
    }
    emit_created(w, key, size, etag);
}

/* key was deleted or moved out: ObjectRemoved if it was an object. */
static void file_gone(struct faas_watch *w, const char *key)
{
    if (!file_find(w, key))
        return;
    file_forget(w, key);
    emit_removed(w, key);
}

/* ---- directories ----------------------------------------------------- */

/*
 * Watches the directory rel and everything below it, then scans it: the
 * watch comes first, so what is made during the scan has an event too.
 * Returns 0 (a directory that vanished meanwhile is not an error),
 * FAAS_ESYS (inotify refused: the watch limit) or FAAS_ENOMEM.
 */
static int dir_add_tree(struct faas_watch *w, const char *rel, enum scan_mode mode)
{
    char path[PATH_MAX], child[PATH_MAX];
    uint32_t mask = WATCH_MASK;
    struct dirent *de;
    struct stat st;
    DIR *dir;
    int wd, fd, rc = 0;

    if (path_of(w, rel, path) != 0)
        return 0; /* too deep to name: not watched */
    if (*rel)
        mask |= IN_DONT_FOLLOW; /* the root may be given through a link */
    wd = inotify_add_watch(w->fd, path, mask);
    if (wd < 0 && !*rel)
        return errno == ENOENT || errno == ENOTDIR ? FAAS_ENOENT : FAAS_ESYS;
    if (wd < 0)
        return errno == ENOSPC || errno == ENOMEM ? FAAS_ESYS : 0; /* or vanished */
    if ((rc = dir_set(w, wd, rel)) != 0)
        return rc;

    fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC | (*rel ? O_NOFOLLOW : 0));
    if (fd < 0)
        return 0;
    dir = fdopendir(fd);
    if (!dir) {
        close(fd);
        return 0;
    }
    while (rc == 0 && (de = readdir(dir)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (path_join(child, sizeof child, rel, de->d_name) != 0)
            continue;
        if (fstatat(dirfd(dir), de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0)
            continue; /* gone already */
        if (S_ISDIR(st.st_mode)) {
            rc = dir_add_tree(w, child, mode);
        } else if (S_ISREG(st.st_mode)) {
            if (mode == SCAN_EMIT) {
                file_ready(w, child, &st);
            } else {
                struct wfile *f = file_get(w, child);
                if (!f)
                    rc = FAAS_ENOMEM;
                else
                    file_note(f, &st, w->gen);
            }
        }
    }
    closedir(dir);
    return rc;
}

/*
 * The directory rel was deleted or moved out (or elsewhere in the tree,
 * where IN_MOVED_TO adds it again): its watches go, and every known file
 * below it is removed.
 */
static void dir_drop_tree(struct faas_watch *w, const char *rel)
{
    size_t len = strlen(rel);
    struct faas_hnode *n, *next;

    for (n = faas_htable_first(&w->dirs); n; n = next) {
        struct wdir *d = DIR_OF(n);
        next = faas_htable_next(&w->dirs, n);
        if (under(d->rel, rel, len)) {
            inotify_rm_watch(w->fd, d->wd); /* its IN_IGNORED finds no record */
            faas_htable_remove(&w->dirs, n);
            free(d);
        }
    }
    for (n = faas_htable_first(&w->files); n; n = next) {
        struct wfile *f = FILE_OF(n);
        next = faas_htable_next(&w->files, n);
        if (under(f->key, rel, len)) {
            faas_htable_remove(&w->files, n);
            emit_removed(w, f->key);
            free(f);
        }
    }
}

/* ---- overflow -------------------------------------------------------- */

/*
 * Events were lost: walk the tree again. Files new or changed since last
 * seen are emitted, known files the walk did not meet are removed, and
 * watches of directories that are gone (or moved away) are dropped.
 */
static void rescan(struct faas_watch *w)
{
    size_t removed = 0;
    struct faas_hnode *n, *next;

    w->gen++;
    dir_add_tree(w, "", SCAN_EMIT);
    for (n = faas_htable_first(&w->files); n; n = next) {
        struct wfile *f = FILE_OF(n);
        next = faas_htable_next(&w->files, n);
        if (f->gen != w->gen) {
            faas_htable_remove(&w->files, n);
            emit_removed(w, f->key);
            free(f);
            removed++;
        }
    }
    for (n = faas_htable_first(&w->dirs); n; n = next) {
        struct wdir *d = DIR_OF(n);
        next = faas_htable_next(&w->dirs, n);
        if (d->gen != w->gen) {
            inotify_rm_watch(w->fd, d->wd);
            faas_htable_remove(&w->dirs, n);
            free(d);
        }
    }
    faas_log_event(w->rt, FAAS_LOG_ASYNC, NULL, NULL, "overflow", NULL,
                   "watch %d (bucket %s): inotify queue overflowed; rescanned %s: %zu files, "
                   "%zu removed",
                   w->id, w->bucket, *w->root ? w->root : "/", w->files.count, removed);
}

/* ---- the read callback ----------------------------------------------- */

static void handle_event(struct faas_watch *w, const struct inotify_event *ev)
{
    char key[PATH_MAX];
    struct wdir *d;

    if (ev->mask & IN_Q_OVERFLOW) {
        rescan(w);
        return;
    }
    d = dir_find(w, ev->wd);
    if (!d)
        return; /* a watch dropped earlier: its last events */
    if (ev->mask & IN_IGNORED) {
        dir_forget(w, ev->wd); /* deleted, unmounted: the kernel removed it */
        return;
    }
    if (ev->len == 0 || !ev->name[0] || path_join(key, sizeof key, d->rel, ev->name) != 0)
        return;
    if (ev->mask & IN_ISDIR) {
        if (ev->mask & (IN_CREATE | IN_MOVED_TO))
            dir_add_tree(w, key, SCAN_EMIT);
        else if (ev->mask & (IN_DELETE | IN_MOVED_FROM))
            dir_drop_tree(w, key);
    } else if (ev->mask & (IN_CLOSE_WRITE | IN_MOVED_TO)) {
        file_ready(w, key, NULL);
    } else if (ev->mask & (IN_DELETE | IN_MOVED_FROM)) {
        file_gone(w, key);
    }
}

static void watch_free(struct faas_watch *w);

static void watch_read_cb(evutil_socket_t fd, short what, void *arg)
{
    struct faas_watch *w = arg;
    struct faas_runtime *rt = w->rt;
    int reads;

    (void)fd;
    (void)what;
    faas_rt_enter(rt);
    w->in_read = 1;
    for (reads = 0; reads < WATCH_READS && !rt->free_requested && !w->unwatched; reads++) {
        ssize_t n = read(w->fd, w->in.bytes, sizeof w->in.bytes);
        size_t off = 0;

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break; /* EAGAIN: drained */
        while (off + sizeof(struct inotify_event) <= (size_t)n && !rt->free_requested &&
               !w->unwatched) {
            const struct inotify_event *ev = (const void *)(w->in.bytes + off);
            handle_event(w, ev);
            off += sizeof(struct inotify_event) + ev->len;
        }
    }
    w->in_read = 0;
    if (w->unwatched)
        watch_free(w); /* off rt->watches already: the runtime's free skips it */
    faas_rt_leave(rt); /* may free the runtime, and this watch with it */
}

/* ---- public ---------------------------------------------------------- */

/* S3's rules, loosely: 3-63 characters of [a-z0-9.-]. */
static int bucket_valid(const char *b)
{
    size_t n = 0;
    for (; b[n]; n++) {
        char c = b[n];
        if (n >= 63)
            return 0;
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-'))
            return 0;
    }
    return n >= 3;
}

static void watch_free(struct faas_watch *w)
{
    struct faas_hnode *n, *next;

    if (w->ev)
        event_free(w->ev);
    if (w->fd >= 0)
        close(w->fd);
    for (n = faas_htable_first(&w->dirs); n; n = next) {
        next = faas_htable_next(&w->dirs, n);
        free(DIR_OF(n));
    }
    for (n = faas_htable_first(&w->files); n; n = next) {
        next = faas_htable_next(&w->files, n);
        free(FILE_OF(n));
    }
    faas_htable_fini(&w->dirs);
    faas_htable_fini(&w->files);
    free(w->bucket);
    free(w->root);
    free(w);
}

static int watch_dir(struct faas_runtime *rt, const char *bucket, const char *dir)
{
    struct faas_watch *w;
    struct stat st;
    size_t len;
    int rc;

    if (!rt || !bucket || !dir || !*dir || rt->closing || rt->free_requested)
        return FAAS_EINVAL;
    if (!bucket_valid(bucket))
        return FAAS_EINVAL;
    if (stat(dir, &st) != 0)
        return errno == ENOENT || errno == ENOTDIR ? FAAS_ENOENT : FAAS_ESYS;
    if (!S_ISDIR(st.st_mode))
        return FAAS_ENOENT;
    if (sodium_init() < 0)
        return FAAS_ESYS;

    w = faas_calloc(1, sizeof *w);
    if (!w)
        return FAAS_ENOMEM;
    w->rt = rt;
    w->fd = -1;
    faas_htable_init(&w->dirs, 16);
    faas_htable_init(&w->files, 64);
    w->bucket = faas_strdup(bucket);
    w->root = faas_strdup(dir);
    if (!w->dirs.buckets || !w->files.buckets || !w->bucket || !w->root) {
        watch_free(w);
        return FAAS_ENOMEM;
    }
    len = strlen(w->root);
    while (len > 0 && w->root[len - 1] == '/')
        w->root[--len] = '\0';

    w->fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (w->fd < 0) {
        watch_free(w);
        return FAAS_ESYS;
    }
    rc = dir_add_tree(w, "", SCAN_QUIET);
    if (rc == 0) {
        w->ev = event_new(rt->base, w->fd, EV_READ | EV_PERSIST, watch_read_cb, w);
        if (!w->ev || event_add(w->ev, NULL) != 0)
            rc = w->ev ? FAAS_ESYS : FAAS_ENOMEM;
    }
    if (rc != 0) {
        watch_free(w);
        return rc;
    }
    w->id = rt->next_watch_id++;
    faas_list_insert_tail(&rt->watches, &w->link);
    return w->id;
}

int faas_watch_dir(struct faas_runtime *rt, const char *bucket, const char *dir)
{
    return faas_rt_sys_error(rt, watch_dir(rt, bucket, dir));
}

int faas_unwatch(struct faas_runtime *rt, int watch_id)
{
    struct faas_list *e;

    if (!rt || watch_id < 0)
        return FAAS_EINVAL;
    for (e = rt->watches.next; e != &rt->watches; e = e->next) {
        struct faas_watch *w = FAAS_CONTAINER_OF(e, struct faas_watch, link);
        if (w->id != watch_id)
            continue;
        faas_list_remove(&w->link);
        if (w->in_read) {
            event_del(w->ev); /* no more reads; the callback frees it */
            w->unwatched = 1;
        } else {
            watch_free(w);
        }
        return 0;
    }
    return FAAS_ENOENT;
}

void faas_watch_free_all(struct faas_runtime *rt)
{
    struct faas_list *e;

    while ((e = faas_list_pop_head(&rt->watches)) != NULL)
        watch_free(FAAS_CONTAINER_OF(e, struct faas_watch, link));
}
