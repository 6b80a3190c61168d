/*
 * filter.c - event filter patterns for host-fed sources, with the semantics
 * of Amazon EventBridge event patterns as Lambda event filtering applies
 * them.
 *
 * faas_filter_compile() parses the pattern text once (jansson) and turns it
 * into a tree of `struct fnode`: an object node per pattern object, a leaf
 * node per field with its array of conditions. Operand strings are copied
 * (lower-cased once for the equals-ignore-case forms), numbers are kept both
 * as doubles and, when integral, as integers, CIDR blocks as address bytes.
 * faas_filter_match() then walks the record with json_object_get() and plain
 * comparisons: no pattern parsing and no allocation, except to decode an SQS
 * "body" or Kinesis "data" string that a nested pattern looks inside.
 *
 * Semantics (EventBridge's, as event-ruler implements them):
 *   - every field of a pattern object must match (AND); a field matches when
 *     any condition of its array does (OR); up to 5 patterns are OR'ed;
 *   - a record value that is an array matches when any element does, and an
 *     empty array, an object or a missing field has no leaf value: only
 *     {"exists": false} matches it; anything-but needs a value;
 *   - a nested pattern object applied to an array of objects matches when
 *     one element matches all of it (fields of one element, not a mix);
 *   - a nested pattern object under a field named "body" (a string holding
 *     JSON) or "data" (base64 of JSON) looks inside the decoded value; a
 *     string that does not decode does not match. At the top level, the
 *     Kinesis metadata fields ("data", "partitionKey", ...) are looked up
 *     in the record's "kinesis" object when absent from the record itself,
 *     so Lambda's Kinesis patterns work on the shaped record;
 *   - numbers compare numerically (5 matches 5.0), never with strings;
 *     equals-ignore-case folds ASCII letters only.
 *
 * Used by source.c: one compiled filter per mapping, matched once per record
 * on the loop thread. A compiled filter is immutable, so it could be shared.
 *
 * Owns the compiled filters (struct faas_filter and its nodes), freed by
 * faas_filter_free. Calls jansson, libsodium's base64 decoder (Kinesis
 * "data"), inet_pton for CIDR operands and alloc.c; nothing else of lib/
 * and no runtime state, so the fuzz target calls it as source.c does.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "faas_int.h"

#define FILTER_MAX_PATTERNS 5
#define FILTER_PATH_MAX 256
#define FILTER_DECODE_STACK 1024

enum cond_kind {
    C_STRING = 1,   /* exact string */
    C_NUMBER,       /* numeric equality */
    C_TRUE,
    C_FALSE,
    C_NULL,
    C_PREFIX,
    C_PREFIX_IC,    /* s is lower-cased */
    C_SUFFIX,
    C_SUFFIX_IC,
    C_EQ_IC,
    C_NUMERIC,      /* a range, one or two bounds */
    C_EXISTS,       /* flag: true / false */
    C_WILDCARD,     /* s as given, escapes kept */
    C_CIDR,
    C_ANYBUT        /* matches a value none of `sub` matches */
};

struct fcond {
    enum cond_kind kind;
    int flag;               /* C_EXISTS: exists; C_NUMBER: integral */
    char *s;                /* owned, NUL-terminated */
    size_t len;
    double num;             /* C_NUMBER */
    json_int_t inum;        /* C_NUMBER when flag */
    /* C_NUMERIC */
    double lo, hi;
    unsigned char has_lo, lo_incl, has_hi, hi_incl;
    /* C_CIDR */
    unsigned char net[16];
    int family;
    unsigned bits;
    /* C_ANYBUT */
    struct fcond *sub;
    size_t nsub;
};

enum decode_kind { DEC_NONE = 0, DEC_BODY, DEC_DATA };

struct fnode {
    char *key;              /* owned; NULL for a pattern's root */
    int leaf;
    enum decode_kind decode;
    /* leaf */
    struct fcond *conds;
    size_t nconds;
    int exists_false;       /* a condition is {"exists": false} */
    /* object */
    struct fnode *kids;
    size_t nkids;
};

struct faas_filter {
    size_t n;
    struct fnode roots[FILTER_MAX_PATTERNS];
};

/* ---- freeing ------------------------------------------------------------ */

static void cond_clear(struct fcond *c)
{
    size_t i;
    free(c->s);
    for (i = 0; i < c->nsub; i++)
        cond_clear(&c->sub[i]);
    free(c->sub);
}

static void node_clear(struct fnode *n)
{
    size_t i;
    free(n->key);
    for (i = 0; i < n->nconds; i++)
        cond_clear(&n->conds[i]);
    free(n->conds);
    for (i = 0; i < n->nkids; i++)
        node_clear(&n->kids[i]);
    free(n->kids);
}

void faas_filter_free(struct faas_filter *f)
{
    size_t i;
    if (!f)
        return;
    for (i = 0; i < f->n; i++)
        node_clear(&f->roots[i]);
    free(f);
}

/* ---- compiling ---------------------------------------------------------- */

struct cctx {
    char *err;
    size_t errlen;
    int pattern;            /* 1-based, for messages */
    char path[FILTER_PATH_MAX];
    int rc;                 /* FAAS_EPARSE or FAAS_ENOMEM once failed */
};

static void cerr(struct cctx *cc, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Records the first failure: "pattern N: field "a.b": <message>". */
static void cerr(struct cctx *cc, const char *fmt, ...)
{
    char msg[256];
    va_list ap;

    if (cc->rc)
        return;
    cc->rc = FAAS_EPARSE;
    if (!cc->err || cc->errlen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (cc->path[0])
        snprintf(cc->err, cc->errlen, "pattern %d: field \"%s\": %s", cc->pattern, cc->path,
                 msg);
    else
        snprintf(cc->err, cc->errlen, "pattern %d: %s", cc->pattern, msg);
}

static int cnomem(struct cctx *cc)
{
    if (!cc->rc) {
        cc->rc = FAAS_ENOMEM;
        if (cc->err && cc->errlen)
            snprintf(cc->err, cc->errlen, "out of memory");
    }
    return -1;
}

static char *dup_lower(const char *s, size_t len, int lower)
{
    char *d = faas_malloc(len + 1);
    size_t i;
    if (!d)
        return NULL;
    for (i = 0; i < len; i++) {
        char ch = s[i];
        d[i] = (lower && ch >= 'A' && ch <= 'Z') ? (char)(ch - 'A' + 'a') : ch;
    }
    d[len] = '\0';
    return d;
}

static int set_string(struct cctx *cc, struct fcond *c, enum cond_kind kind, const json_t *v,
                      int lower)
{
    size_t len = json_string_length(v);
    c->kind = kind;
    c->len = len;
    c->s = dup_lower(json_string_value(v), len, lower);
    return c->s ? 0 : cnomem(cc);
}

static void set_number(struct fcond *c, const json_t *v)
{
    c->kind = C_NUMBER;
    c->num = json_number_value(v);
    if (json_is_integer(v)) {
        c->flag = 1;
        c->inum = json_integer_value(v);
    }
}

/* Wildcards: '*' matches any run, "\*" and "\\" are literal; "**" and any
 * other escape are errors (as in EventBridge). */
static int check_wildcard(struct cctx *cc, const char *op, const char *s, size_t len)
{
    size_t i;
    for (i = 0; i < len; i++) {
        if (s[i] == '\\') {
            if (i + 1 >= len || (s[i + 1] != '*' && s[i + 1] != '\\')) {
                cerr(cc, "%s: invalid escape at offset %zu (only \\* and \\\\)", op, i);
                return -1;
            }
            i++;
        } else if (s[i] == '*' && i + 1 < len && s[i + 1] == '*') {
            cerr(cc, "%s: consecutive '*' at offset %zu", op, i);
            return -1;
        }
    }
    return 0;
}

static int compile_cidr(struct cctx *cc, struct fcond *c, const json_t *v)
{
    char addr[64];
    const char *s, *slash;
    char *end;
    unsigned long bits;
    size_t alen, i;
    unsigned maxbits;

    if (!json_is_string(v)) {
        cerr(cc, "cidr: expected a string like \"10.0.0.0/24\"");
        return -1;
    }
    s = json_string_value(v);
    slash = strchr(s, '/');
    alen = slash ? (size_t)(slash - s) : 0;
    if (!slash || alen == 0 || alen >= sizeof addr || slash[1] < '0' || slash[1] > '9' ||
        strlen(s) != json_string_length(v)) {
        cerr(cc, "cidr: expected \"address/bits\", got \"%.64s\"", s);
        return -1;
    }
    memcpy(addr, s, alen);
    addr[alen] = '\0';
    memset(c->net, 0, sizeof c->net);
    if (inet_pton(AF_INET, addr, c->net) == 1) {
        c->family = AF_INET;
        maxbits = 32;
    } else if (inet_pton(AF_INET6, addr, c->net) == 1) {
        c->family = AF_INET6;
        maxbits = 128;
    } else {
        cerr(cc, "cidr: invalid address \"%s\"", addr);
        return -1;
    }
    errno = 0;
    bits = strtoul(slash + 1, &end, 10);
    if (errno || *end != '\0' || bits > maxbits || end - (slash + 1) > 3) {
        cerr(cc, "cidr: invalid prefix length in \"%.64s\"", s);
        return -1;
    }
    c->kind = C_CIDR;
    c->bits = (unsigned)bits;
    /* Keep only the network bits, so matching compares whole bytes. */
    for (i = 0; i < 16; i++) {
        unsigned from = (unsigned)i * 8u;
        if (from >= c->bits)
            c->net[i] = 0;
        else if (c->bits - from < 8)
            c->net[i] &= (unsigned char)(0xffu << (8u - (c->bits - from)));
    }
    return 0;
}

/* {"numeric": ["<", 10]} or [">=", 0, "<", 100]: one lower and/or one upper
 * bound, or "=" alone. */
static int compile_numeric(struct cctx *cc, struct fcond *c, const json_t *v)
{
    static const char shape[] = "numeric: expected [\"<\", 10, ...]";
    size_t n, i;

    c->kind = C_NUMERIC;
    n = json_is_array(v) ? json_array_size(v) : 0;
    if (n != 2 && n != 4) {
        cerr(cc, "%s", shape);
        return -1;
    }
    for (i = 0; i < n; i += 2) {
        const json_t *op = json_array_get(v, i), *arg = json_array_get(v, i + 1);
        const char *o;
        double d;
        if (!json_is_string(op) || !json_is_number(arg)) {
            cerr(cc, "%s", shape);
            return -1;
        }
        o = json_string_value(op);
        d = json_number_value(arg);
        if (strcmp(o, "=") == 0) {
            if (n != 2) {
                cerr(cc, "numeric: \"=\" cannot be combined with another comparison");
                return -1;
            }
            c->has_lo = c->has_hi = c->lo_incl = c->hi_incl = 1;
            c->lo = c->hi = d;
        } else if (strcmp(o, ">") == 0 || strcmp(o, ">=") == 0) {
            if (c->has_lo) {
                cerr(cc, "numeric: two lower bounds");
                return -1;
            }
            c->has_lo = 1;
            c->lo_incl = o[1] == '=';
            c->lo = d;
        } else if (strcmp(o, "<") == 0 || strcmp(o, "<=") == 0) {
            if (c->has_hi) {
                cerr(cc, "numeric: two upper bounds");
                return -1;
            }
            c->has_hi = 1;
            c->hi_incl = o[1] == '=';
            c->hi = d;
        } else {
            cerr(cc, "numeric: unknown operator \"%.16s\" (= < <= > >=)", o);
            return -1;
        }
    }
    if (c->has_lo && c->has_hi &&
        (c->lo > c->hi || (c->lo == c->hi && (!c->lo_incl || !c->hi_incl)))) {
        cerr(cc, "numeric: empty range");
        return -1;
    }
    return 0;
}

/* The {"equals-ignore-case": "x"} form inside prefix / suffix. */
static const json_t *ignore_case_operand(const json_t *v)
{
    const json_t *s;
    if (!json_is_object(v) || json_object_size(v) != 1)
        return NULL;
    s = json_object_get(v, "equals-ignore-case");
    return json_is_string(s) ? s : NULL;
}

static int compile_anybut(struct cctx *cc, struct fcond *c, const json_t *v)
{
    size_t i, n;

    c->kind = C_ANYBUT;
    if (json_is_string(v) || json_is_number(v)) {
        c->sub = faas_calloc(1, sizeof *c->sub);
        if (!c->sub)
            return cnomem(cc);
        c->nsub = 1;
        if (json_is_string(v))
            return set_string(cc, &c->sub[0], C_STRING, v, 0);
        set_number(&c->sub[0], v);
        return 0;
    }
    if (json_is_array(v)) {
        n = json_array_size(v);
        if (n == 0) {
            cerr(cc, "anything-but: empty array");
            return -1;
        }
        for (i = 0; i < n; i++) {
            const json_t *e = json_array_get(v, i);
            if (!json_is_string(e) && !json_is_number(e)) {
                cerr(cc, "anything-but: array element %zu must be a string or a number",
                     i + 1);
                return -1;
            }
        }
        c->sub = faas_calloc(n, sizeof *c->sub);
        if (!c->sub)
            return cnomem(cc);
        c->nsub = n;
        for (i = 0; i < n; i++) {
            const json_t *e = json_array_get(v, i);
            if (json_is_string(e)) {
                if (set_string(cc, &c->sub[i], C_STRING, e, 0) != 0)
                    return -1;
            } else {
                set_number(&c->sub[i], e);
            }
        }
        return 0;
    }
    if (json_is_object(v) && json_object_size(v) == 1) {
        const char *op = json_object_iter_key(json_object_iter((json_t *)v));
        const json_t *arg = json_object_get(v, op);
        enum cond_kind k;
        int lower = 0;

        if (strcmp(op, "prefix") == 0)
            k = C_PREFIX;
        else if (strcmp(op, "suffix") == 0)
            k = C_SUFFIX;
        else if (strcmp(op, "wildcard") == 0)
            k = C_WILDCARD;
        else if (strcmp(op, "equals-ignore-case") == 0) {
            k = C_EQ_IC;
            lower = 1;
        } else {
            cerr(cc, "anything-but: unsupported operator \"%.32s\"", op);
            return -1;
        }
        if (k == C_EQ_IC && json_is_array(arg)) {
            n = json_array_size(arg);
            if (n == 0) {
                cerr(cc, "anything-but: equals-ignore-case: empty array");
                return -1;
            }
            for (i = 0; i < n; i++) {
                if (!json_is_string(json_array_get(arg, i))) {
                    cerr(cc, "anything-but: equals-ignore-case: expected strings");
                    return -1;
                }
            }
        } else if (!json_is_string(arg)) {
            cerr(cc, "anything-but: %s: expected a string", op);
            return -1;
        } else {
            n = 1;
        }
        if (k == C_WILDCARD &&
            check_wildcard(cc, "anything-but: wildcard", json_string_value(arg),
                           json_string_length(arg)) != 0)
            return -1;
        c->sub = faas_calloc(n, sizeof *c->sub);
        if (!c->sub)
            return cnomem(cc);
        c->nsub = n;
        for (i = 0; i < n; i++) {
            const json_t *s = json_is_array(arg) ? json_array_get(arg, i) : arg;
            if (set_string(cc, &c->sub[i], k, s, lower) != 0)
                return -1;
        }
        return 0;
    }
    cerr(cc, "anything-but: expected a string, a number, an array of them, or "
             "{\"prefix\"|\"suffix\"|\"wildcard\"|\"equals-ignore-case\": ...}");
    return -1;
}

/* One element of a field's condition array. */
static int compile_cond(struct cctx *cc, struct fcond *c, const json_t *v)
{
    const char *op;
    const json_t *arg, *ic;

    switch (json_typeof(v)) {
    case JSON_STRING:
        return set_string(cc, c, C_STRING, v, 0);
    case JSON_INTEGER:
    case JSON_REAL:
        set_number(c, v);
        return 0;
    case JSON_TRUE:
        c->kind = C_TRUE;
        return 0;
    case JSON_FALSE:
        c->kind = C_FALSE;
        return 0;
    case JSON_NULL:
        c->kind = C_NULL;
        return 0;
    case JSON_ARRAY:
        cerr(cc, "a condition cannot be an array");
        return -1;
    case JSON_OBJECT:
        break;
    }
    if (json_object_size(v) != 1) {
        cerr(cc, "a condition object needs exactly one operator, got %zu",
             json_object_size(v));
        return -1;
    }
    op = json_object_iter_key(json_object_iter((json_t *)v));
    arg = json_object_get(v, op);

    if (strcmp(op, "prefix") == 0 || strcmp(op, "suffix") == 0) {
        int pre = op[0] == 'p';
        if (json_is_string(arg))
            return set_string(cc, c, pre ? C_PREFIX : C_SUFFIX, arg, 0);
        ic = ignore_case_operand(arg);
        if (ic)
            return set_string(cc, c, pre ? C_PREFIX_IC : C_SUFFIX_IC, ic, 1);
        cerr(cc, "%s: expected a string or {\"equals-ignore-case\": \"...\"}", op);
        return -1;
    }
    if (strcmp(op, "equals-ignore-case") == 0) {
        if (json_is_string(arg))
            return set_string(cc, c, C_EQ_IC, arg, 1);
        cerr(cc, "equals-ignore-case: expected a string");
        return -1;
    }
    if (strcmp(op, "anything-but") == 0)
        return compile_anybut(cc, c, arg);
    if (strcmp(op, "numeric") == 0)
        return compile_numeric(cc, c, arg);
    if (strcmp(op, "exists") == 0) {
        if (!json_is_boolean(arg)) {
            cerr(cc, "exists: expected true or false");
            return -1;
        }
        c->kind = C_EXISTS;
        c->flag = json_is_true(arg);
        return 0;
    }
    if (strcmp(op, "wildcard") == 0) {
        if (!json_is_string(arg)) {
            cerr(cc, "wildcard: expected a string");
            return -1;
        }
        if (check_wildcard(cc, "wildcard", json_string_value(arg), json_string_length(arg)))
            return -1;
        return set_string(cc, c, C_WILDCARD, arg, 0);
    }
    if (strcmp(op, "cidr") == 0)
        return compile_cidr(cc, c, arg);
    cerr(cc, "unknown operator \"%.32s\"", op);
    return -1;
}

static int compile_object(struct cctx *cc, struct fnode *n, const json_t *obj, int top);

/* Appends ".key" to the path for messages; returns the old length. */
static size_t path_push(struct cctx *cc, const char *key)
{
    size_t old = strlen(cc->path);
    if (old)
        snprintf(cc->path + old, sizeof cc->path - old, ".%s", key);
    else
        snprintf(cc->path, sizeof cc->path, "%s", key);
    return old;
}

static int compile_field(struct cctx *cc, struct fnode *n, const char *key, const json_t *v)
{
    size_t i, cnt, old = path_push(cc, key);
    int rc = -1;

    n->key = faas_strdup(key);
    if (!n->key) {
        cnomem(cc);
        goto out;
    }
    if (strcmp(key, "body") == 0)
        n->decode = DEC_BODY;
    else if (strcmp(key, "data") == 0)
        n->decode = DEC_DATA;
    if (json_is_object(v)) {
        rc = compile_object(cc, n, v, 0);
        goto out;
    }
    if (!json_is_array(v)) {
        cerr(cc, "expected an array of conditions or an object, got %s",
             json_is_string(v) ? "a string" : json_is_number(v) ? "a number" : "a literal");
        goto out;
    }
    cnt = json_array_size(v);
    if (cnt == 0) {
        cerr(cc, "empty array of conditions");
        goto out;
    }
    n->leaf = 1;
    n->conds = faas_calloc(cnt, sizeof *n->conds);
    if (!n->conds) {
        cnomem(cc);
        goto out;
    }
    for (i = 0; i < cnt; i++) {
        n->nconds = i + 1;
        if (compile_cond(cc, &n->conds[i], json_array_get(v, i)) != 0)
            goto out;
        if (n->conds[i].kind == C_EXISTS && !n->conds[i].flag)
            n->exists_false = 1;
    }
    rc = 0;
out:
    cc->path[old] = '\0';
    return rc;
}

static int compile_object(struct cctx *cc, struct fnode *n, const json_t *obj, int top)
{
    const char *key;
    const json_t *v;
    size_t cnt = json_object_size(obj), i = 0;

    if (cnt == 0) {
        cerr(cc, "%s", top ? "empty pattern object" : "empty object");
        return -1;
    }
    n->kids = faas_calloc(cnt, sizeof *n->kids);
    if (!n->kids)
        return cnomem(cc);
    json_object_foreach((json_t *)obj, key, v) {
        n->nkids = i + 1;
        if (compile_field(cc, &n->kids[i], key, v) != 0)
            return -1;
        i++;
    }
    return 0;
}

int faas_filter_compile(const char *json_text, struct faas_filter **out, char *err,
                        size_t errlen)
{
    struct faas_filter *f;
    struct cctx cc;
    json_error_t jerr;
    json_t *root;
    size_t n, i;

    if (err && errlen)
        err[0] = '\0';
    if (!json_text || !out) {
        if (err && errlen)
            snprintf(err, errlen, "no pattern");
        return FAAS_EINVAL;
    }
    root = json_loads(json_text, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL | JSON_DECODE_ANY, &jerr);
    if (!root) {
        if (err && errlen)
            snprintf(err, errlen, "invalid JSON at line %d column %d: %s", jerr.line,
                     jerr.column, jerr.text);
        return FAAS_EPARSE;
    }
    if (json_is_object(root)) {
        n = 1;
    } else if (json_is_array(root)) {
        n = json_array_size(root);
        if (n == 0 || n > FILTER_MAX_PATTERNS) {
            if (err && errlen)
                snprintf(err, errlen, "expected 1 to %d patterns, got %zu",
                         FILTER_MAX_PATTERNS, n);
            json_decref(root);
            return FAAS_EPARSE;
        }
    } else {
        if (err && errlen)
            snprintf(err, errlen, "expected a pattern object or an array of 1 to %d",
                     FILTER_MAX_PATTERNS);
        json_decref(root);
        return FAAS_EPARSE;
    }

    memset(&cc, 0, sizeof cc);
    cc.err = err;
    cc.errlen = errlen;
    f = faas_calloc(1, sizeof *f);
    if (!f) {
        json_decref(root);
        cnomem(&cc);
        return FAAS_ENOMEM;
    }
    for (i = 0; i < n; i++) {
        const json_t *p = json_is_array(root) ? json_array_get(root, i) : root;
        cc.pattern = (int)i + 1;
        f->n = i + 1;
        if (!json_is_object(p)) {
            cerr(&cc, "expected a JSON object");
            break;
        }
        if (compile_object(&cc, &f->roots[i], p, 1) != 0)
            break;
    }
    json_decref(root);
    if (cc.rc) {
        faas_filter_free(f);
        return cc.rc;
    }
    *out = f;
    return 0;
}

/* ---- matching ----------------------------------------------------------- */

static int ascii_lower(int ch)
{
    return (ch >= 'A' && ch <= 'Z') ? ch - 'A' + 'a' : ch;
}

/* s (any case) equals the lower-cased l, n bytes. */
static int eq_ic(const char *s, const char *l, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++)
        if (ascii_lower((unsigned char)s[i]) != (unsigned char)l[i])
            return 0;
    return 1;
}

/* Glob with '*' and the escapes "\*" "\\": iterative, backtracking only to
 * the last star, so O(len * plen) at worst. */
static int wildcard_match(const char *p, size_t plen, const char *s, size_t slen)
{
    size_t pi = 0, si = 0, star_p = (size_t)-1, star_s = 0;

    while (si < slen) {
        if (pi < plen && p[pi] == '*') {
            star_p = ++pi;
            star_s = si;
            continue;
        }
        if (pi < plen) {
            char want = p[pi];
            size_t step = 1;
            if (want == '\\' && pi + 1 < plen) {
                want = p[pi + 1];
                step = 2;
            }
            if (want == s[si]) {
                pi += step;
                si++;
                continue;
            }
        }
        if (star_p == (size_t)-1)
            return 0;
        pi = star_p;
        si = ++star_s;
    }
    while (pi < plen && p[pi] == '*')
        pi++;
    return pi == plen;
}

static int cidr_match(const struct fcond *c, const char *s)
{
    unsigned char a[16];
    unsigned full = c->bits / 8u, rest = c->bits % 8u;

    memset(a, 0, sizeof a);
    if (inet_pton(c->family, s, a) != 1)
        return 0;
    if (memcmp(a, c->net, full) != 0)
        return 0;
    if (rest && (a[full] & (unsigned char)(0xffu << (8u - rest))) != c->net[full])
        return 0;
    return 1;
}

static int number_eq(const struct fcond *c, const json_t *v)
{
    if (c->flag && json_is_integer(v))
        return c->inum == json_integer_value(v);
    return c->num == json_number_value(v);
}

/* One condition against one leaf value (not an array, not an object). */
static int cond_match(const struct fcond *c, const json_t *v)
{
    const char *s = NULL;
    size_t len = 0, i;

    if (json_is_string(v)) {
        s = json_string_value(v);
        len = json_string_length(v);
    }
    switch (c->kind) {
    case C_STRING:
        return s && len == c->len && memcmp(s, c->s, len) == 0;
    case C_NUMBER:
        return json_is_number(v) && number_eq(c, v);
    case C_TRUE:
        return json_is_true(v);
    case C_FALSE:
        return json_is_false(v);
    case C_NULL:
        return json_is_null(v);
    case C_PREFIX:
        return s && len >= c->len && memcmp(s, c->s, c->len) == 0;
    case C_PREFIX_IC:
        return s && len >= c->len && eq_ic(s, c->s, c->len);
    case C_SUFFIX:
        return s && len >= c->len && memcmp(s + len - c->len, c->s, c->len) == 0;
    case C_SUFFIX_IC:
        return s && len >= c->len && eq_ic(s + len - c->len, c->s, c->len);
    case C_EQ_IC:
        return s && len == c->len && eq_ic(s, c->s, len);
    case C_NUMERIC: {
        double d;
        if (!json_is_number(v))
            return 0;
        d = json_number_value(v);
        if (c->has_lo && (c->lo_incl ? d < c->lo : d <= c->lo))
            return 0;
        if (c->has_hi && (c->hi_incl ? d > c->hi : d >= c->hi))
            return 0;
        return 1;
    }
    case C_EXISTS:
        return c->flag; /* a leaf value is there */
    case C_WILDCARD:
        return s && wildcard_match(c->s, c->len, s, len);
    case C_CIDR:
        return s && strlen(s) == len && cidr_match(c, s);
    case C_ANYBUT:
        for (i = 0; i < c->nsub; i++)
            if (cond_match(&c->sub[i], v))
                return 0;
        return 1;
    }
    return 0;
}

/* Any element (flattening nested arrays) matches any condition. *leaves
 * counts the leaf values seen. */
static int leaf_any(const struct fnode *n, const json_t *v, size_t *leaves)
{
    size_t i;
    if (json_is_array(v)) {
        for (i = 0; i < json_array_size(v); i++)
            if (leaf_any(n, json_array_get(v, i), leaves))
                return 1;
        return 0;
    }
    if (json_is_object(v))
        return 0;
    (*leaves)++;
    for (i = 0; i < n->nconds; i++)
        if (cond_match(&n->conds[i], v))
            return 1;
    return 0;
}

static int leaf_match(const struct fnode *n, const json_t *v)
{
    size_t leaves = 0;
    if (v && leaf_any(n, v, &leaves))
        return 1;
    /* No leaf value at this path: only {"exists": false} matches. */
    return leaves == 0 && n->exists_false;
}

/* node_match flags */
#define M_TOP 1       /* the record itself: Kinesis fields fall back */
#define M_DECODED 2   /* inside a decoded body/data: never decode again */

static int node_match(const struct fnode *n, const json_t *v, int flags);

/* The JSON inside a "body" string or base64 "data"; NULL if it is not.
 * Kept out of line so its buffer is not in every frame of the recursion. */
static json_t *decode_value(const struct fnode *n, const json_t *v) __attribute__((noinline));

static json_t *decode_value(const struct fnode *n, const json_t *v)
{
    const char *s = json_string_value(v);
    size_t len = json_string_length(v), blen;
    unsigned char stack[FILTER_DECODE_STACK], *buf = stack;
    json_t *j;

    if (n->decode == DEC_BODY)
        return json_loadb(s, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
    if (len / 4 * 3 + 3 > sizeof stack) {
        buf = faas_malloc(len / 4 * 3 + 3);
        if (!buf)
            return NULL;
    }
    if (sodium_base642bin(buf, len / 4 * 3 + 3, s, len, " \r\n", &blen, NULL,
                          sodium_base64_VARIANT_ORIGINAL) != 0)
        j = NULL;
    else
        j = json_loadb((const char *)buf, blen, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
    if (buf != stack)
        free(buf);
    return j;
}

/* Lambda filters Kinesis records on these fields at the top level; the
 * shaped record keeps them under "kinesis". */
static const json_t *top_get(const json_t *rec, const char *key)
{
    static const char *const kinesis_fields[] = { "data", "partitionKey", "sequenceNumber",
                                                  "kinesisSchemaVersion",
                                                  "approximateArrivalTimestamp" };
    const json_t *v = json_object_get(rec, key), *k;
    size_t i;

    if (v)
        return v;
    k = json_object_get(rec, "kinesis");
    if (!json_is_object(k))
        return NULL;
    for (i = 0; i < sizeof kinesis_fields / sizeof kinesis_fields[0]; i++)
        if (strcmp(key, kinesis_fields[i]) == 0)
            return json_object_get(k, key);
    return NULL;
}

/* Every field of an object node against an object (or nothing). */
static int fields_match(const struct fnode *n, const json_t *obj, int flags)
{
    size_t i;
    for (i = 0; i < n->nkids; i++) {
        const struct fnode *k = &n->kids[i];
        const json_t *v = NULL;
        if (obj)
            v = (flags & M_TOP) ? top_get(obj, k->key) : json_object_get(obj, k->key);
        if (!node_match(k, v, 0))
            return 0;
    }
    return 1;
}

static int node_match(const struct fnode *n, const json_t *v, int flags)
{
    size_t i, cnt;

    if (n->leaf)
        return leaf_match(n, v);
    if (json_is_object(v))
        return fields_match(n, v, flags);
    if (json_is_array(v) && (cnt = json_array_size(v)) > 0) {
        for (i = 0; i < cnt; i++)
            if (node_match(n, json_array_get(v, i), flags & M_DECODED))
                return 1;
        return 0;
    }
    if (json_is_string(v) && n->decode != DEC_NONE && !(flags & M_DECODED)) {
        json_t *inner = decode_value(n, v);
        int m;
        if (!inner)
            return 0;
        m = node_match(n, inner, M_DECODED);
        json_decref(inner);
        return m;
    }
    /* Nothing inside: each field sees a missing value. */
    return fields_match(n, NULL, 0);
}

int faas_filter_match(const struct faas_filter *f, json_t *record)
{
    size_t i;
    if (!f)
        return 1;
    for (i = 0; i < f->n; i++)
        if (node_match(&f->roots[i], record, M_TOP))
            return 1;
    return 0;
}
