/*
 * route.c - the HTTP gateway's route patterns and the route table (route.h):
 * parsing "[METHOD ]/path" patterns, and a trie of path segments that finds
 * the most specific route for a request.
 *
 * Pure: no libevent, no runtime. At each node of the trie its literal
 * children are sorted for binary search (by memcmp of their bytes), beside
 * one parameter child and, per method, the routes that end there and the
 * greedy routes whose tail starts there. Matching is a depth-first walk,
 * literal before parameter before greedy, so the first route found is the
 * most specific one from the left; it allocates nothing. Invariants: a
 * route the table holds has `node` set to where it sits, at most one route
 * per method and shape, and a node without children or routes (other than
 * the root) is freed as soon as it becomes empty.
 *
 * Callers: http.c (the gateway: a route per HTTP mapping, a match per
 * request), source.c (a mapping's pattern checked at faas_map), the route
 * fuzz target. It calls only the allocators (faas_int.h), faas_json_text
 * (json.h) and faas_pct_next (text.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "faas_int.h"
#include "route.h"

/* ==== methods ========================================================= */

static const char *const method_names[FAAS_HTTP_NMETHODS] = {
    "ANY", "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"
};

int faas_http_method_parse(const char *s, size_t len)
{
    int i;
    for (i = 0; i < (int)FAAS_HTTP_NMETHODS; i++)
        if (strlen(method_names[i]) == len && memcmp(method_names[i], s, len) == 0)
            return i;
    return -1;
}

const char *faas_http_method_name(enum faas_http_method m)
{
    return (unsigned)m < FAAS_HTTP_NMETHODS ? method_names[m] : "OTHER";
}

/* ==== route patterns ================================================== */

static int name_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '_' || c == '-';
}

static int literal_char(unsigned char c)
{
    if (c >= 0x80)
        return 1; /* UTF-8 */
    if (c <= 0x20 || c == 0x7f)
        return 0;
    return !strchr("{}*%?#/", c);
}

void faas_route_free(struct faas_route *r)
{
    if (!r)
        return;
    json_decref(r->key_json);
    free(r->key);
    free(r->text);
    free(r);
}

/* Splits and checks the path in r->text; 0 or FAAS_EPARSE. */
static int parse_path(struct faas_route *r)
{
    char *p = r->text + 1, *end, *names[FAAS_ROUTE_MAX_SEGS + 1];
    unsigned nnames = 0, i, j;

    if (*p == '\0')
        return 0; /* the root */
    for (;;) {
        size_t n, k;
        int last;
        end = strchr(p, '/');
        last = end == NULL;
        if (end)
            *end = '\0';
        n = strlen(p);
        if (n == 0)
            return FAAS_EPARSE; /* "//" or a trailing slash */
        if (strcmp(p, "*") == 0) {
            if (!last)
                return FAAS_EPARSE;
            r->greedy = 1;
            r->greedy_name = "proxy";
            names[nnames++] = (char *)r->greedy_name;
        } else if (p[0] == '{') {
            int plus;
            if (n < 3 || p[n - 1] != '}')
                return FAAS_EPARSE;
            p[n - 1] = '\0';
            p++;
            n -= 2;
            plus = p[n - 1] == '+';
            if (plus) {
                p[--n] = '\0';
                if (!last || n == 0)
                    return FAAS_EPARSE;
            }
            for (k = 0; k < n; k++)
                if (!name_char((unsigned char)p[k]))
                    return FAAS_EPARSE;
            if (plus) {
                r->greedy = 1;
                r->greedy_name = p;
            } else {
                if (r->nsegs == FAAS_ROUTE_MAX_SEGS)
                    return FAAS_EPARSE;
                r->seg[r->nsegs] = NULL;
                r->name[r->nsegs++] = p;
            }
            names[nnames++] = p;
        } else {
            for (k = 0; k < n; k++)
                if (!literal_char((unsigned char)p[k]))
                    return FAAS_EPARSE;
            if (r->nsegs == FAAS_ROUTE_MAX_SEGS)
                return FAAS_EPARSE;
            r->seg[r->nsegs] = p;
            r->name[r->nsegs++] = NULL;
        }
        if (last)
            break;
        p = end + 1;
    }
    /* pathParameters keys must not collide. */
    for (i = 0; i < nnames; i++)
        for (j = i + 1; j < nnames; j++)
            if (strcmp(names[i], names[j]) == 0)
                return FAAS_EPARSE;
    return 0;
}

int faas_route_parse(const char *pattern, struct faas_route **out)
{
    const char *path = pattern, *sp;
    struct faas_route *r;
    size_t len, plen;
    int method = FAAS_HTTP_ANY, rc;

    if (!pattern || !out)
        return FAAS_EINVAL;
    len = strnlen(pattern, FAAS_ROUTE_MAX_PATTERN + 1);
    if (len == 0 || len > FAAS_ROUTE_MAX_PATTERN)
        return FAAS_EPARSE;
    if (pattern[0] != '/') {
        sp = memchr(pattern, ' ', len);
        if (!sp || (method = faas_http_method_parse(pattern, (size_t)(sp - pattern))) < 0)
            return FAAS_EPARSE;
        path = sp + 1;
    }
    if (path[0] != '/')
        return FAAS_EPARSE;
    plen = len - (size_t)(path - pattern);
    r = faas_calloc(1, sizeof *r);
    if (!r)
        return FAAS_ENOMEM;
    r->method = (enum faas_http_method)method;
    r->text = faas_malloc(plen + 1);
    r->key = faas_malloc(strlen(method_names[method]) + 1 + plen + 1);
    if (!r->text || !r->key) {
        faas_route_free(r);
        return FAAS_ENOMEM;
    }
    memcpy(r->text, path, plen + 1);
    sprintf(r->key, "%s %s", method_names[method], path);
    r->path = r->key + strlen(method_names[method]) + 1;
    if ((rc = parse_path(r)) != 0) {
        faas_route_free(r);
        return rc;
    }
    /* Literals may hold any byte over 0x7f: faas_json_text() makes it UTF-8. */
    if (!(r->key_json = faas_json_text(r->key, strlen(r->key)))) {
        faas_route_free(r);
        return FAAS_ENOMEM;
    }
    *out = r;
    return 0;
}

/* ==== the route table ================================================= */

struct faas_rnode {
    struct faas_rnode *parent;
    char *lit;                   /* its literal under the parent; NULL: param */
    size_t litlen;
    struct faas_rnode **kids;    /* literal children, sorted by memcmp */
    size_t nkids, capkids;
    struct faas_rnode *param;
    struct faas_route *exact[FAAS_HTTP_NMETHODS]; /* routes ending here */
    struct faas_route *tail[FAAS_HTTP_NMETHODS];  /* greedy tails from here */
};

struct faas_route_table {
    struct faas_rnode root;
    size_t count;
};

int faas_route_table_new(struct faas_route_table **out)
{
    struct faas_route_table *t = faas_calloc(1, sizeof *t);
    if (!t)
        return FAAS_ENOMEM;
    *out = t;
    return 0;
}

static void node_free_tree(struct faas_rnode *n, void (*each)(struct faas_route *, void *),
                           void *arg, int is_root)
{
    size_t i;
    for (i = 0; i < n->nkids; i++)
        node_free_tree(n->kids[i], each, arg, 0);
    if (n->param)
        node_free_tree(n->param, each, arg, 0);
    for (i = 0; i < FAAS_HTTP_NMETHODS; i++) {
        if (n->exact[i]) {
            n->exact[i]->node = NULL;
            if (each)
                each(n->exact[i], arg);
        }
        if (n->tail[i]) {
            n->tail[i]->node = NULL;
            if (each)
                each(n->tail[i], arg);
        }
    }
    free(n->kids);
    free(n->lit);
    if (!is_root)
        free(n);
}

/* Frees the table; `each` sees every route it still holds (may free it). */
void faas_route_table_free_each(struct faas_route_table *t,
                                void (*each)(struct faas_route *, void *), void *arg)
{
    if (!t)
        return;
    node_free_tree(&t->root, each, arg, 1);
    free(t);
}

static void route_free_cb(struct faas_route *r, void *arg)
{
    (void)arg;
    faas_route_free(r);
}

void faas_route_table_free(struct faas_route_table *t)
{
    faas_route_table_free_each(t, route_free_cb, NULL);
}

size_t faas_route_table_count(const struct faas_route_table *t)
{
    return t ? t->count : 0;
}

static int bytes_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
    int c = memcmp(a, b, alen < blen ? alen : blen);
    if (c)
        return c;
    return alen < blen ? -1 : alen > blen;
}

/* A literal against a raw request segment, the latter percent-decoded: the
 * order of memcmp on the decoded bytes. */
static int lit_cmp_raw(const char *lit, size_t litlen, const char *raw, size_t rawlen)
{
    size_t i = 0, j = 0;
    while (i < litlen && j < rawlen) {
        unsigned char a = (unsigned char)lit[i++];
        unsigned char b = faas_pct_next(raw, rawlen, &j, 0);
        if (a != b)
            return a < b ? -1 : 1;
    }
    if (i < litlen)
        return 1;
    return j < rawlen ? -1 : 0;
}

/* Index of the literal child, or of where it would go (*found = 0). */
static size_t kid_find(const struct faas_rnode *n, const char *lit, size_t len, int *found)
{
    size_t lo = 0, hi = n->nkids;
    *found = 0;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = bytes_cmp(n->kids[mid]->lit, n->kids[mid]->litlen, lit, len);
        if (c == 0) {
            *found = 1;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static const struct faas_rnode *kid_find_raw(const struct faas_rnode *n, const char *raw,
                                             size_t len)
{
    size_t lo = 0, hi = n->nkids;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = lit_cmp_raw(n->kids[mid]->lit, n->kids[mid]->litlen, raw, len);
        if (c == 0)
            return n->kids[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

static int node_empty(const struct faas_rnode *n)
{
    size_t i;
    if (n->nkids || n->param)
        return 0;
    for (i = 0; i < FAAS_HTTP_NMETHODS; i++)
        if (n->exact[i] || n->tail[i])
            return 0;
    return 1;
}

/* Frees empty nodes from n up to (not including) the root. */
static void prune(struct faas_route_table *t, struct faas_rnode *n)
{
    while (n != &t->root && node_empty(n)) {
        struct faas_rnode *p = n->parent;
        if (n->lit) {
            int found;
            size_t i = kid_find(p, n->lit, n->litlen, &found);
            if (found) {
                memmove(&p->kids[i], &p->kids[i + 1], (p->nkids - i - 1) * sizeof *p->kids);
                p->nkids--;
            }
        } else {
            p->param = NULL;
        }
        free(n->kids);
        free(n->lit);
        free(n);
        n = p;
    }
}

static struct faas_rnode *kid_get(struct faas_rnode *n, const char *lit)
{
    size_t len = strlen(lit), i;
    int found;
    struct faas_rnode *k;

    i = kid_find(n, lit, len, &found);
    if (found)
        return n->kids[i];
    if (n->nkids == n->capkids) {
        size_t cap = n->capkids ? n->capkids * 2 : 4;
        struct faas_rnode **kids = faas_malloc(cap * sizeof *kids);
        if (!kids)
            return NULL;
        if (n->nkids)
            memcpy(kids, n->kids, n->nkids * sizeof *kids);
        free(n->kids);
        n->kids = kids;
        n->capkids = cap;
    }
    k = faas_calloc(1, sizeof *k);
    if (!k || !(k->lit = faas_strdup(lit))) {
        free(k);
        return NULL;
    }
    k->litlen = len;
    k->parent = n;
    memmove(&n->kids[i + 1], &n->kids[i], (n->nkids - i) * sizeof *n->kids);
    n->kids[i] = k;
    n->nkids++;
    return k;
}

static struct faas_rnode *param_get(struct faas_rnode *n)
{
    if (!n->param) {
        n->param = faas_calloc(1, sizeof *n->param);
        if (n->param)
            n->param->parent = n;
    }
    return n->param;
}

int faas_route_table_add(struct faas_route_table *t, struct faas_route *r)
{
    struct faas_rnode *n = &t->root, *next;
    struct faas_route **slot;
    unsigned i;

    for (i = 0; i < r->nsegs; i++) {
        next = r->seg[i] ? kid_get(n, r->seg[i]) : param_get(n);
        if (!next) {
            prune(t, n);
            return FAAS_ENOMEM;
        }
        n = next;
    }
    slot = r->greedy ? &n->tail[r->method] : &n->exact[r->method];
    if (*slot)
        return FAAS_EEXIST; /* its path existed: nothing was created */
    *slot = r;
    r->node = n;
    t->count++;
    return 0;
}

void faas_route_table_remove(struct faas_route_table *t, struct faas_route *r)
{
    struct faas_rnode *n = r->node;
    if (!n)
        return;
    if (r->greedy && n->tail[r->method] == r)
        n->tail[r->method] = NULL;
    else if (!r->greedy && n->exact[r->method] == r)
        n->exact[r->method] = NULL;
    r->node = NULL;
    t->count--;
    prune(t, n);
}

static const struct faas_route *pick(struct faas_route *const *slots,
                                     enum faas_http_method method)
{
    if ((unsigned)method < FAAS_HTTP_NMETHODS && method != FAAS_HTTP_ANY && slots[method])
        return slots[method];
    return slots[FAAS_HTTP_ANY];
}

/* pos: the '/' that starts the next segment, or len when there is none. */
static const struct faas_route *walk(const struct faas_rnode *n, const char *path, size_t len,
                                     size_t pos, unsigned depth, enum faas_http_method method,
                                     struct faas_route_match *m)
{
    const struct faas_route *r;
    const char *slash;
    size_t s, e;

    if (pos >= len)
        return pick(n->exact, method);
    s = pos + 1;
    slash = memchr(path + s, '/', len - s);
    e = slash ? (size_t)(slash - path) : len;
    if (e > s && depth < FAAS_ROUTE_MAX_SEGS) {
        const struct faas_rnode *k = n->nkids ? kid_find_raw(n, path + s, e - s) : NULL;
        if (k && (r = walk(k, path, len, e, depth + 1, method, m)) != NULL)
            return r;
        if (n->param) {
            m->off[depth] = s;
            m->len[depth] = e - s;
            if ((r = walk(n->param, path, len, e, depth + 1, method, m)) != NULL)
                return r;
        }
    }
    if (len > s && (r = pick(n->tail, method)) != NULL) {
        m->tail_off = s;
        m->tail_len = len - s;
        return r;
    }
    return NULL;
}

const struct faas_route *faas_route_match(const struct faas_route_table *t,
                                          enum faas_http_method method, const char *path,
                                          size_t len, struct faas_route_match *m)
{
    const struct faas_route *r;
    if (!t || !path || len == 0 || path[0] != '/')
        return NULL;
    /* "/" has no segment: pos = len. */
    r = walk(&t->root, path, len, len == 1 ? len : 0, 0, method, m);
    m->route = r;
    return r;
}
