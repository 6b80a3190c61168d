/*
 * config.c - the faas-gateway's configuration loader.
 *
 * jansson parses the file (JSON_REJECT_DUPLICATES) and gives the line of a
 * syntax error. For the line of a key that breaks the schema, a small
 * scanner walks the same text once, after jansson accepted it, and records
 * the line of every key path ("functions.hello.timeout_ms",
 * "mappings[2].filter.source[0]"): an object member's line is the line of
 * its key, an array element's the line where it starts. The checks build
 * their key paths with the same two functions, so a lookup is a string
 * compare.
 *
 * One code path per section both checks and builds: fn_build() turns a
 * function's object into the faas_function_opts it stands for (paths
 * resolved, files checked), map_build() does the same for a mapping.
 * gw_config_open() runs them over the whole file and throws the result
 * away, so every schema error is found before anything is registered;
 * gw_config_apply() runs them again and registers. Loading stops at the
 * first problem: sections in the order listen, runtime, functions,
 * mappings, watch, self_test; entries in file order; in an entry, unknown
 * keys first.
 *
 * Besides the schema, open refuses what could only fail at run time:
 * async destinations that lead back to their function (check_destinations),
 * min_warm beyond what the host can give (fn_min_warm), a library that
 * does not load or lacks its symbol (lib_check: in a child process, so the
 * gateway never loads a process function's object), a command that is not
 * an executable file, addresses that are not numeric, S3 and DynamoDB event
 * names that no event has.
 *
 * Nothing here prints: messages go to the caller's buffer.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "config.h"

#define GW_PATH_MAX 512                 /* a key path, as messages show it */
#define GW_FILE_MAX (4u * 1024u * 1024u) /* a config larger than this is a mistake */
#define GW_NO_TIMEOUT_MS 900000u        /* what "no timeout" counts for the drain */
#define GW_MIN_WARM_MAX 1024u           /* instances one function may keep warm */
#define GW_LIB_CHECK_MS 10000           /* loading a library in the check's worker */

struct gw_keyline {
    char *path;
    int line;
};

/* The state of one load or apply: where messages go. */
struct pctx {
    struct gw_config *cfg;
    char *err;
    size_t errlen;
};

/* ------------------------------------------------------------------ */
/* Messages and key paths                                              */
/* ------------------------------------------------------------------ */

static int simple_key(const char *key)
{
    const char *c;

    if (!*key)
        return 0;
    for (c = key; *c; c++)
        if (!isalnum((unsigned char)*c) && *c != '_' && *c != '-')
            return 0;
    return 1;
}

/* Key paths longer than GW_PATH_MAX are cut, the same way everywhere. */
static void path_put(char *out, size_t n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void path_put(char *out, size_t n, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(out, n, fmt, ap);
    va_end(ap);
}

/* parent.key, or parent["key"] (JSON-escaped) for a key that needs it. */
static void path_key(char *out, size_t n, const char *parent, const char *key)
{
    json_t *s;
    char *q;

    if (simple_key(key)) {
        path_put(out, n, "%s%s%s", parent, *parent ? "." : "", key);
        return;
    }
    s = json_string(key);
    q = s ? json_dumps(s, JSON_ENCODE_ANY) : NULL;
    path_put(out, n, "%s[%s]", parent, q ? q : "\"?\"");
    free(q);
    json_decref(s);
}

static void path_index(char *out, size_t n, const char *parent, size_t i)
{
    path_put(out, n, "%s[%zu]", parent, i);
}

int gw_config_line(const struct gw_config *cfg, const char *path)
{
    char buf[GW_PATH_MAX];
    size_t i, len;

    snprintf(buf, sizeof buf, "%s", path ? path : "");
    for (;;) {
        for (i = 0; i < cfg->nlines; i++)
            if (strcmp(cfg->lines[i].path, buf) == 0)
                return cfg->lines[i].line;
        /* Not in the file (a missing key): its parent's line. */
        len = strlen(buf);
        if (len == 0)
            return 1;
        while (len > 0 && buf[len - 1] != '.' && buf[len - 1] != '[')
            len--;
        buf[len > 0 ? len - 1 : 0] = '\0';
    }
}

/* Writes "file:line: path: message" and returns GW_ECONFIG. */
static int fail(struct pctx *p, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(struct pctx *p, const char *path, const char *fmt, ...)
{
    char msg[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (path && *path)
        snprintf(p->err, p->errlen, "%s:%d: %s: %s", p->cfg->path,
                 gw_config_line(p->cfg, path), path, msg);
    else
        snprintf(p->err, p->errlen, "%s:%d: %s", p->cfg->path, gw_config_line(p->cfg, ""),
                 msg);
    return GW_ECONFIG;
}

static int oom(struct pctx *p)
{
    snprintf(p->err, p->errlen, "%s: out of memory", p->cfg->path);
    return FAAS_ENOMEM;
}

/* ------------------------------------------------------------------ */
/* The key-line scanner                                                */
/* ------------------------------------------------------------------ */

struct scan {
    const char *s, *end;
    int line;
    struct gw_config *cfg;
    size_t cap;
};

static int add_line(struct scan *sc, const char *path)
{
    struct gw_config *cfg = sc->cfg;
    struct gw_keyline *v;

    if (cfg->nlines == sc->cap) {
        size_t cap = sc->cap ? sc->cap * 2 : 64;
        v = realloc(cfg->lines, cap * sizeof *v);
        if (!v)
            return FAAS_ENOMEM;
        cfg->lines = v;
        sc->cap = cap;
    }
    cfg->lines[cfg->nlines].path = strdup(path);
    if (!cfg->lines[cfg->nlines].path)
        return FAAS_ENOMEM;
    cfg->lines[cfg->nlines++].line = sc->line;
    return 0;
}

static void scan_ws(struct scan *sc)
{
    while (sc->s < sc->end && isspace((unsigned char)*sc->s)) {
        if (*sc->s == '\n')
            sc->line++;
        sc->s++;
    }
}

/* At a '"': moves past the string, which [*start, *start + *len) covers,
 * quotes included. */
static int scan_string(struct scan *sc, const char **start, size_t *len)
{
    const char *s = sc->s + 1;

    while (s < sc->end && *s != '"')
        s += *s == '\\' && s + 1 < sc->end ? 2 : 1;
    if (s >= sc->end)
        return FAAS_EPARSE;
    *start = sc->s;
    *len = (size_t)(s + 1 - sc->s);
    sc->s = s + 1;
    return 0;
}

static int scan_value(struct scan *sc, const char *path);

static int scan_object(struct scan *sc, const char *path)
{
    char child[GW_PATH_MAX];
    const char *start;
    json_t *key;
    size_t len;
    int rc;

    sc->s++; /* '{' */
    for (;;) {
        scan_ws(sc);
        if (sc->s < sc->end && *sc->s == '}')
            break;
        if (sc->s >= sc->end || *sc->s != '"' || scan_string(sc, &start, &len) != 0)
            return FAAS_EPARSE;
        /* jansson decodes the key, escapes and all, as it did for the tree */
        key = json_loadb(start, len, JSON_DECODE_ANY, NULL);
        if (!json_is_string(key)) {
            json_decref(key);
            return FAAS_EPARSE;
        }
        path_key(child, sizeof child, path, json_string_value(key));
        json_decref(key);
        if ((rc = add_line(sc, child)) != 0)
            return rc;
        scan_ws(sc);
        if (sc->s >= sc->end || *sc->s != ':')
            return FAAS_EPARSE;
        sc->s++;
        if ((rc = scan_value(sc, child)) != 0)
            return rc;
        scan_ws(sc);
        if (sc->s < sc->end && *sc->s == ',') {
            sc->s++;
            continue;
        }
        if (sc->s >= sc->end || *sc->s != '}')
            return FAAS_EPARSE;
        break;
    }
    sc->s++;
    return 0;
}

static int scan_array(struct scan *sc, const char *path)
{
    char child[GW_PATH_MAX];
    size_t i;
    int rc;

    sc->s++; /* '[' */
    for (i = 0;; i++) {
        scan_ws(sc);
        if (sc->s < sc->end && *sc->s == ']')
            break;
        path_index(child, sizeof child, path, i);
        if ((rc = add_line(sc, child)) != 0 || (rc = scan_value(sc, child)) != 0)
            return rc;
        scan_ws(sc);
        if (sc->s < sc->end && *sc->s == ',') {
            sc->s++;
            continue;
        }
        if (sc->s >= sc->end || *sc->s != ']')
            return FAAS_EPARSE;
        break;
    }
    sc->s++;
    return 0;
}

static int scan_value(struct scan *sc, const char *path)
{
    const char *start;
    size_t len;

    scan_ws(sc);
    if (sc->s >= sc->end)
        return FAAS_EPARSE;
    switch (*sc->s) {
    case '{':
        return scan_object(sc, path);
    case '[':
        return scan_array(sc, path);
    case '"':
        return scan_string(sc, &start, &len);
    default: /* a number, true, false or null */
        while (sc->s < sc->end && !strchr(",]} \t\r\n", *sc->s))
            sc->s++;
        return 0;
    }
}

/* Records the line of every key path of `text`, which jansson accepted. */
static int scan_lines(struct gw_config *cfg, const char *text, size_t len)
{
    struct scan sc = { text, text + len, 1, cfg, 0 };
    int rc;

    scan_ws(&sc);
    if ((rc = add_line(&sc, "")) != 0)
        return rc;
    return scan_value(&sc, "");
}

/* ------------------------------------------------------------------ */
/* Typed members                                                       */
/* ------------------------------------------------------------------ */

/* The first member of `obj` whose key is not in `allowed` is an error. */
static int check_keys(struct pctx *p, json_t *obj, const char *path,
                      const char *const *allowed)
{
    char child[GW_PATH_MAX];
    const char *key;
    json_t *v;
    size_t i;

    json_object_foreach(obj, key, v) {
        for (i = 0; allowed[i]; i++)
            if (strcmp(allowed[i], key) == 0)
                break;
        if (!allowed[i]) {
            path_key(child, sizeof child, path, key);
            return fail(p, child, "unknown key");
        }
    }
    return 0;
}

static int bad_int(struct pctx *p, const char *path, json_t *v, int64_t min, int64_t max)
{
    int wide = max >= (int64_t)UINT32_MAX;

    if (json_is_integer(v) && json_integer_value(v) > max && wide)
        return fail(p, path, "expected %s integer up to %" PRId64,
                    min == 0 ? "a non-negative" : "a positive", max);
    if (wide && min == 0)
        return fail(p, path, "expected a non-negative integer");
    if (wide && min == 1)
        return fail(p, path, "expected a positive integer");
    return fail(p, path, "expected an integer from %" PRId64 " to %" PRId64, min, max);
}

/* An optional integer member in [min, max]; absent leaves *out as it is. */
static int get_int(struct pctx *p, json_t *obj, const char *path, const char *key,
                   int64_t min, int64_t max, int64_t *out)
{
    char child[GW_PATH_MAX];
    json_t *v = json_object_get(obj, key);

    if (!v)
        return 0;
    path_key(child, sizeof child, path, key);
    if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max)
        return bad_int(p, child, v, min, max);
    *out = json_integer_value(v);
    return 0;
}

static int get_u32(struct pctx *p, json_t *obj, const char *path, const char *key,
                   uint32_t min, uint32_t *out)
{
    int64_t v = *out;
    int rc = get_int(p, obj, path, key, min, UINT32_MAX, &v);
    *out = (uint32_t)v;
    return rc;
}

static int get_size(struct pctx *p, json_t *obj, const char *path, const char *key,
                    int64_t min, size_t *out)
{
    int64_t v = (int64_t)*out;
    int rc = get_int(p, obj, path, key, min, INT64_MAX, &v);
    *out = (size_t)v;
    return rc;
}

/* An optional boolean member, as 0 or 1. */
static int get_bool(struct pctx *p, json_t *obj, const char *path, const char *key, int *out)
{
    char child[GW_PATH_MAX];
    json_t *v = json_object_get(obj, key);

    if (!v)
        return 0;
    if (!json_is_boolean(v)) {
        path_key(child, sizeof child, path, key);
        return fail(p, child, "expected true or false");
    }
    *out = json_is_true(v);
    return 0;
}

/* An optional non-empty string member; absent leaves *out as it is. */
static int get_str(struct pctx *p, json_t *obj, const char *path, const char *key,
                   const char **out)
{
    char child[GW_PATH_MAX];
    json_t *v = json_object_get(obj, key);

    if (!v)
        return 0;
    if (!json_is_string(v) || json_string_length(v) == 0 ||
        strlen(json_string_value(v)) != json_string_length(v)) {
        path_key(child, sizeof child, path, key);
        return fail(p, child, "expected a non-empty string");
    }
    *out = json_string_value(v);
    return 0;
}

/* An optional member that must be an object; *out NULL when absent. */
static int get_obj(struct pctx *p, json_t *obj, const char *path, const char *key,
                   json_t **out)
{
    char child[GW_PATH_MAX];
    json_t *v = json_object_get(obj, key);

    *out = NULL;
    if (!v)
        return 0;
    if (!json_is_object(v)) {
        path_key(child, sizeof child, path, key);
        return fail(p, child, "expected an object");
    }
    *out = v;
    return 0;
}

static int require(struct pctx *p, json_t *obj, const char *path, const char *key)
{
    if (json_object_get(obj, key))
        return 0;
    return fail(p, path, "missing key \"%s\"", key);
}

/* A dotted JSON path, as idempotency and partition keys take. */
static int get_dotted(struct pctx *p, json_t *obj, const char *path, const char *key,
                      const char **out)
{
    char child[GW_PATH_MAX];
    const char *s = NULL;
    size_t n;
    int rc;

    if ((rc = get_str(p, obj, path, key, &s)) != 0 || !s)
        return rc;
    n = strlen(s);
    if (s[0] == '.' || s[n - 1] == '.' || strstr(s, "..")) {
        path_key(child, sizeof child, path, key);
        return fail(p, child, "expected a dotted path such as \"body.order_id\"");
    }
    *out = s;
    return 0;
}

/* A member naming a function of the file. */
static int get_fn_ref(struct pctx *p, json_t *obj, const char *path, const char *key,
                      const char **out)
{
    char child[GW_PATH_MAX];
    const char *s = NULL;
    int rc;

    if ((rc = get_str(p, obj, path, key, &s)) != 0 || !s)
        return rc;
    if (!json_object_get(json_object_get(p->cfg->root, "functions"), s)) {
        path_key(child, sizeof child, path, key);
        return fail(p, child, "no function named \"%s\"", s);
    }
    *out = s;
    return 0;
}

static int is_dir_ok(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

char *gw_config_resolve(const struct gw_config *cfg, const char *rel)
{
    size_t n;
    char *out;

    if (rel[0] == '/')
        return strdup(rel);
    n = strlen(cfg->dir) + strlen(rel) + 2;
    out = malloc(n);
    if (out)
        snprintf(out, n, "%s/%s", cfg->dir, rel);
    return out;
}

/* ------------------------------------------------------------------ */
/* listen, runtime                                                     */
/* ------------------------------------------------------------------ */

/* A numeric IPv4 or IPv6 address (names are not resolved: a config means
 * one address, not whatever a resolver answers today). */
static int numeric_address(const char *s, int *loopback)
{
    struct in6_addr a6;
    struct in_addr a4;

    if (inet_pton(AF_INET, s, &a4) == 1) {
        *loopback = (ntohl(a4.s_addr) >> 24) == 127;
        return 1;
    }
    if (inet_pton(AF_INET6, s, &a6) == 1) {
        *loopback = IN6_IS_ADDR_LOOPBACK(&a6);
        return 1;
    }
    return 0;
}

/* "host:port", "[v6]:port"; the host a numeric address. */
static int parse_listen(struct pctx *p, json_t *root)
{
    struct gw_config *cfg = p->cfg;
    const char *s = NULL, *colon, *h;
    int bracketed = 0, loopback;
    size_t hlen;
    char *end;
    long port;
    int rc;

    if ((rc = get_str(p, root, "", "listen", &s)) != 0)
        return rc;
    if (!s)
        return 0; /* the defaults, set by open */
    colon = strrchr(s, ':');
    h = s;
    hlen = colon ? (size_t)(colon - s) : 0;
    if (hlen >= 2 && h[0] == '[' && h[hlen - 1] == ']') {
        h++;
        hlen -= 2;
        bracketed = 1;
    }
    errno = 0;
    port = colon && colon[1] ? strtol(colon + 1, &end, 10) : -1;
    if (!colon || hlen == 0 || hlen >= sizeof cfg->host || port < 0 || port > 65535 ||
        errno || *end || !isdigit((unsigned char)colon[1]))
        return fail(p, "listen", "expected \"host:port\", such as \"127.0.0.1:8080\"");
    memcpy(cfg->host, h, hlen);
    cfg->host[hlen] = '\0';
    /* An IPv6 address without brackets would make the port ambiguous. */
    if (!numeric_address(cfg->host, &loopback) || bracketed != !!strchr(cfg->host, ':'))
        return fail(p, "listen", "\"%s\" is not a numeric IPv4 address or a bracketed IPv6 "
                                 "one, such as \"127.0.0.1:8080\" or \"[::1]:8080\"", s);
    cfg->port = (uint16_t)port;
    return 0;
}

/* The address of command functions' Runtime API endpoints: numeric, and
 * loopback unless the config allows remote ones, as the library does. */
static int check_runtime_api_address(struct pctx *p, const struct faas_runtime_opts *ro)
{
    static const char key[] = "runtime.runtime_api_address";
    int loopback = 1;

    if (!ro->runtime_api_address)
        return 0;
    if (!numeric_address(ro->runtime_api_address, &loopback))
        return fail(p, key, "\"%s\" is not a numeric IPv4 or IPv6 address, such as "
                            "\"127.0.0.1\"", ro->runtime_api_address);
    if (!loopback && !ro->runtime_api_allow_remote)
        return fail(p, key, "%s is not a loopback address: its endpoints could not tell "
                            "which process connects (set runtime_api_allow_remote to allow it)",
                    ro->runtime_api_address);
    return 0;
}

/* "durable": "sqlite:PATH" (PATH relative to the config's directory) or
 * "redis://HOST:PORT[/DB]"; the runtime checks the rest when it opens it. */
static int parse_durable(struct pctx *p, json_t *rt)
{
    static const char key[] = "runtime.durable";
    const char *url = NULL;
    char *path;
    size_t n;
    int rc;

    if ((rc = get_str(p, rt, "runtime", "durable", &url)) != 0 || !url)
        return rc;
    if (strncmp(url, "redis://", 8) == 0) {
        p->cfg->ro.durable = url;
        return 0;
    }
    if (strncmp(url, "sqlite:", 7) != 0 || !url[7])
        return fail(p, key, "expected \"sqlite:PATH\" or \"redis://HOST:PORT[/DB]\", not \"%s\"",
                    url);
    if (!(path = gw_config_resolve(p->cfg, url + 7)))
        return fail(p, key, "%s", strerror(ENOMEM));
    n = strlen(path) + 8;
    free(p->cfg->durable_url);
    if ((p->cfg->durable_url = malloc(n)) != NULL)
        snprintf(p->cfg->durable_url, n, "sqlite:%s", path);
    free(path);
    if (!p->cfg->durable_url)
        return fail(p, key, "%s", strerror(ENOMEM));
    p->cfg->ro.durable = p->cfg->durable_url;
    return 0;
}

static int parse_runtime(struct pctx *p, json_t *root)
{
    static const char *const keys[] = { "thread_workers", "zygote", "max_sync_payload",
                                        "max_async_payload", "http_max_body",
                                        "http_max_headers", "region", "invoke_api",
                                        "runtime_api_address", "access_key_id",
                                        "secret_access_key", "http_read_timeout_ms",
                                        "http_idle_timeout_ms", "http_max_connections",
                                        "runtime_api_allow_remote", "durable",
                                        "durable_sync", "durable_prefix", "node_id",
                                        NULL };
    struct faas_runtime_opts *ro = &p->cfg->ro;
    json_t *rt;
    int rc;

    if ((rc = get_obj(p, root, "", "runtime", &rt)) != 0 || !rt)
        return rc;
    if ((rc = check_keys(p, rt, "runtime", keys)) != 0 ||
        (rc = get_u32(p, rt, "runtime", "thread_workers", 0, &ro->thread_workers)) != 0 ||
        (rc = get_bool(p, rt, "runtime", "zygote", &ro->zygote)) != 0 ||
        (rc = get_size(p, rt, "runtime", "max_sync_payload", 1, &ro->max_sync_payload)) != 0 ||
        (rc = get_size(p, rt, "runtime", "max_async_payload", 1, &ro->max_async_payload)) !=
            0 ||
        (rc = get_size(p, rt, "runtime", "http_max_body", 0, &ro->http_max_body)) != 0 ||
        (rc = get_size(p, rt, "runtime", "http_max_headers", 1, &ro->http_max_headers)) != 0 ||
        (rc = get_u32(p, rt, "runtime", "http_read_timeout_ms", 0,
                      &ro->http_read_timeout_ms)) != 0 ||
        (rc = get_u32(p, rt, "runtime", "http_idle_timeout_ms", 0,
                      &ro->http_idle_timeout_ms)) != 0 ||
        (rc = get_u32(p, rt, "runtime", "http_max_connections", 0,
                      &ro->http_max_connections)) != 0 ||
        (rc = get_str(p, rt, "runtime", "region", &ro->region)) != 0 ||
        (rc = get_bool(p, rt, "runtime", "invoke_api", &ro->invoke_api)) != 0 ||
        (rc = get_str(p, rt, "runtime", "runtime_api_address", &ro->runtime_api_address)) !=
            0 ||
        (rc = get_bool(p, rt, "runtime", "runtime_api_allow_remote",
                       &ro->runtime_api_allow_remote)) != 0 ||
        (rc = get_str(p, rt, "runtime", "access_key_id", &ro->access_key_id)) != 0 ||
        (rc = get_str(p, rt, "runtime", "secret_access_key", &ro->secret_access_key)) != 0 ||
        (rc = get_bool(p, rt, "runtime", "durable_sync", &ro->durable_sync)) != 0 ||
        (rc = get_str(p, rt, "runtime", "durable_prefix", &ro->durable_prefix)) != 0 ||
        (rc = get_str(p, rt, "runtime", "node_id", &ro->node_id)) != 0 ||
        (rc = parse_durable(p, rt)) != 0 ||
        (rc = check_runtime_api_address(p, ro)) != 0)
        return rc;
    if (!ro->access_key_id != !ro->secret_access_key)
        return fail(p, ro->access_key_id ? "runtime.access_key_id" : "runtime.secret_access_key",
                    "give access_key_id and secret_access_key together");
    return 0;
}

/* ------------------------------------------------------------------ */
/* Functions                                                           */
/* ------------------------------------------------------------------ */

/* A function's options, built from its object; owns what it allocated. */
struct fn_build {
    struct faas_function_opts fo;
    struct faas_idempotency_opts idem;
    struct faas_async_opts async;
    char *so_path;        /* library: resolved */
    const char *symbol;
    const char **argv;    /* command: NULL-terminated; argv[0] is argv0 */
    char *argv0;          /* resolved */
    char *task_root;      /* resolved */
    char **env;           /* "KEY=VALUE", NULL-terminated */
};

static void fn_build_free(struct fn_build *b)
{
    size_t i;

    free(b->so_path);
    free(b->argv);
    free(b->argv0);
    free(b->task_root);
    for (i = 0; b->env && b->env[i]; i++)
        free(b->env[i]);
    free(b->env);
    memset(b, 0, sizeof *b);
}

static int fn_isolation(struct pctx *p, json_t *obj, const char *path,
                        enum faas_isolation *out)
{
    static const char *const names[] = { "inline", "thread", "process" };
    static const enum faas_isolation values[] = { FAAS_ISOLATION_INLINE, FAAS_ISOLATION_THREAD,
                                                  FAAS_ISOLATION_PROCESS };
    char child[GW_PATH_MAX];
    const char *s = NULL;
    size_t i;
    int rc;

    if ((rc = get_str(p, obj, path, "isolation", &s)) != 0 || !s)
        return rc;
    for (i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (strcmp(s, names[i]) == 0) {
            *out = values[i];
            return 0;
        }
    }
    path_key(child, sizeof child, path, "isolation");
    return fail(p, child, "expected \"inline\", \"thread\" or \"process\"");
}

/* What loading a library in a worker found (lib_check). */
enum lib_verdict { LIB_OK, LIB_NOLOAD, LIB_NOSYMBOL, LIB_CRASHED, LIB_HUNG };

/*
 * Loads `so_path` and looks `symbol` up in a child process, as a PROCESS
 * worker would (dlopen RTLD_NOW | RTLD_LOCAL, dlsym): the gateway never
 * loads the object itself, so a constructor that crashes, hangs or takes
 * over the process costs only the child. The child writes a verdict byte
 * and dlerror()'s text to a pipe and _exits; the wait is bounded. `why`
 * gets dlerror()'s text or what became of the child. Returns the verdict,
 * or FAAS_ESYS when no child could be made (errno set).
 */
static int lib_check(const char *so_path, const char *symbol, char *why, size_t whylen)
{
    char buf[1024];
    const char *e;
    struct pollfd pfd;
    size_t got = 0;
    ssize_t n;
    int fds[2], status = 0, verdict, timed_out = 0;
    pid_t pid;
    void *h;

    why[0] = '\0';
    if (pipe2(fds, O_CLOEXEC) != 0)
        return FAAS_ESYS;
    if ((pid = fork()) < 0) {
        close(fds[0]);
        close(fds[1]);
        return FAAS_ESYS;
    }
    if (pid == 0) {
        close(fds[0]);
        h = dlopen(so_path, RTLD_NOW | RTLD_LOCAL);
        if (!h) {
            e = dlerror();
            buf[0] = (char)LIB_NOLOAD;
        } else {
            dlerror();
            e = dlsym(h, symbol) ? NULL : dlerror();
            buf[0] = (char)(e ? LIB_NOSYMBOL : LIB_OK);
        }
        snprintf(buf + 1, sizeof buf - 1, "%s", e ? e : "");
        n = write(fds[1], buf, strlen(buf + 1) + 1);
        _exit(n > 0 ? 0 : 1);
    }
    close(fds[1]);
    pfd.fd = fds[0];
    pfd.events = POLLIN;
    for (;;) {
        n = poll(&pfd, 1, GW_LIB_CHECK_MS);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            timed_out = 1;
            break;
        }
        n = read(fds[0], buf + got, sizeof buf - 1 - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0 || (got += (size_t)n) == sizeof buf - 1)
            break;
    }
    close(fds[0]);
    if (timed_out)
        kill(pid, SIGKILL);
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    buf[got] = '\0';
    if (timed_out) {
        snprintf(why, whylen, "loading it took more than %d ms", GW_LIB_CHECK_MS);
        return LIB_HUNG;
    }
    if (got == 0 || (unsigned char)buf[0] > LIB_NOSYMBOL) {
        if (WIFSIGNALED(status))
            snprintf(why, whylen, "loading it killed the process (%s)",
                     strsignal(WTERMSIG(status)));
        else
            snprintf(why, whylen, "loading it ended the process (exit status %d)",
                     WIFEXITED(status) ? WEXITSTATUS(status) : -1);
        return LIB_CRASHED;
    }
    verdict = buf[0];
    snprintf(why, whylen, "%s", buf + 1);
    return verdict;
}

/* The library loads and has the symbol, else the key to blame and why. */
static int check_library(struct pctx *p, const char *path, const struct fn_build *b)
{
    char child[GW_PATH_MAX], why[1024];
    int v = lib_check(b->so_path, b->symbol, why, sizeof why), err = errno;

    path_key(child, sizeof child, path, v == LIB_NOSYMBOL ? "symbol" : "library");
    switch (v) {
    case LIB_OK:
        return 0;
    case LIB_NOLOAD:
        return fail(p, child, "cannot load it: %s", why);
    case LIB_NOSYMBOL:
        return fail(p, child, "no symbol \"%s\": %s", b->symbol, why);
    case LIB_CRASHED:
    case LIB_HUNG:
        return fail(p, child, "%s: %s", b->so_path, why);
    default:
        return fail(p, child, "cannot check it: %s", strerror(err));
    }
}

static int fn_library(struct pctx *p, json_t *obj, const char *path, struct fn_build *b)
{
    static const char *const command_only[] = { "handler", "task_root", "env", NULL };
    char child[GW_PATH_MAX];
    const char *lib = NULL;
    size_t i;
    int rc;

    for (i = 0; command_only[i]; i++) {
        if (json_object_get(obj, command_only[i])) {
            path_key(child, sizeof child, path, command_only[i]);
            return fail(p, child, "only for command functions");
        }
    }
    if ((rc = get_str(p, obj, path, "library", &lib)) != 0 ||
        (rc = require(p, obj, path, "symbol")) != 0 ||
        (rc = get_str(p, obj, path, "symbol", &b->symbol)) != 0)
        return rc;
    if (!(b->so_path = gw_config_resolve(p->cfg, lib)))
        return oom(p);
    if (access(b->so_path, R_OK) != 0) {
        path_key(child, sizeof child, path, "library");
        return fail(p, child, "%s: %s", b->so_path, strerror(errno));
    }
    return fn_isolation(p, obj, path, &b->fo.isolation);
}

static int fn_env(struct pctx *p, json_t *obj, const char *path, struct fn_build *b)
{
    char epath[GW_PATH_MAX], child[GW_PATH_MAX];
    const char *key;
    json_t *env, *v;
    size_t n = 0, len;
    int rc;

    if ((rc = get_obj(p, obj, path, "env", &env)) != 0 || !env)
        return rc;
    path_key(epath, sizeof epath, path, "env");
    if (!(b->env = calloc(json_object_size(env) + 1, sizeof *b->env)))
        return oom(p);
    json_object_foreach(env, key, v) {
        path_key(child, sizeof child, epath, key);
        if (!*key || strchr(key, '='))
            return fail(p, child, "an environment variable's name is not empty and has no '='");
        if (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v))
            return fail(p, child, "expected a string");
        len = strlen(key) + json_string_length(v) + 2;
        if (!(b->env[n] = malloc(len)))
            return oom(p);
        snprintf(b->env[n++], len, "%s=%s", key, json_string_value(v));
    }
    b->fo.env = (const char *const *)b->env;
    return 0;
}

static int fn_command(struct pctx *p, json_t *obj, const char *path, struct fn_build *b)
{
    static const char *const library_only[] = { "symbol", "isolation", NULL };
    char cpath[GW_PATH_MAX], child[GW_PATH_MAX];
    json_t *argv = json_object_get(obj, "command"), *v;
    const char *root = NULL;
    size_t i, n = json_array_size(argv);
    struct stat st;
    char *slash;
    int rc;

    path_key(cpath, sizeof cpath, path, "command");
    for (i = 0; library_only[i]; i++) {
        if (json_object_get(obj, library_only[i])) {
            path_key(child, sizeof child, path, library_only[i]);
            return fail(p, child, "only for library functions (a command runs in a process of "
                                  "its own)");
        }
    }
    if (!json_is_array(argv) || n == 0)
        return fail(p, cpath, "expected a non-empty array of strings");
    if (!(b->argv = calloc(n + 1, sizeof *b->argv)))
        return oom(p);
    json_array_foreach(argv, i, v) {
        path_index(child, sizeof child, cpath, i);
        if (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v) ||
            (i == 0 && json_string_length(v) == 0))
            return fail(p, child, i == 0 ? "expected a non-empty string" : "expected a string");
        b->argv[i] = json_string_value(v);
    }
    if (!(b->argv0 = gw_config_resolve(p->cfg, b->argv[0])))
        return oom(p);
    b->argv[0] = b->argv0;
    path_index(child, sizeof child, cpath, 0);
    if (stat(b->argv0, &st) != 0)
        return fail(p, child, "%s: %s", b->argv0, strerror(errno));
    if (!S_ISREG(st.st_mode))
        return fail(p, child, "%s: not an executable file (%s)", b->argv0,
                    S_ISDIR(st.st_mode) ? "a directory" : "not a regular file");
    if (access(b->argv0, X_OK) != 0)
        return fail(p, child, "%s: not an executable file (%s)", b->argv0, strerror(errno));
    if ((rc = get_str(p, obj, path, "handler", &b->fo.handler)) != 0 ||
        (rc = get_str(p, obj, path, "task_root", &root)) != 0 ||
        (rc = fn_env(p, obj, path, b)) != 0)
        return rc;
    /* LAMBDA_TASK_ROOT: given, or the directory of the command. */
    b->task_root = root ? gw_config_resolve(p->cfg, root) : strdup(b->argv0);
    if (!b->task_root)
        return oom(p);
    if (!root && (slash = strrchr(b->task_root, '/')) != NULL)
        *(slash == b->task_root ? slash + 1 : slash) = '\0';
    if (root && !is_dir_ok(b->task_root)) {
        path_key(child, sizeof child, path, "task_root");
        return fail(p, child, "%s: not a directory", b->task_root);
    }
    b->fo.task_root = b->task_root;
    return 0;
}

static int fn_idempotency(struct pctx *p, json_t *obj, const char *path, struct fn_build *b)
{
    static const char *const keys[] = { "key_path", "validate_path", "ttl_s", "max_entries",
                                        "max_bytes", "required", NULL };
    char ipath[GW_PATH_MAX];
    json_t *idem;
    int rc;

    if ((rc = get_obj(p, obj, path, "idempotency", &idem)) != 0 || !idem)
        return rc;
    path_key(ipath, sizeof ipath, path, "idempotency");
    if ((rc = check_keys(p, idem, ipath, keys)) != 0 ||
        (rc = require(p, idem, ipath, "key_path")) != 0 ||
        (rc = get_dotted(p, idem, ipath, "key_path", &b->idem.key_path)) != 0 ||
        (rc = get_dotted(p, idem, ipath, "validate_path", &b->idem.validate_path)) != 0 ||
        (rc = get_u32(p, idem, ipath, "ttl_s", 1, &b->idem.ttl_s)) != 0 ||
        (rc = get_u32(p, idem, ipath, "max_entries", 0, &b->idem.max_entries)) != 0 ||
        (rc = get_size(p, idem, ipath, "max_bytes", 0, &b->idem.max_bytes)) != 0 ||
        (rc = get_bool(p, idem, ipath, "required", &b->idem.required)) != 0)
        return rc;
    b->fo.idempotency = &b->idem;
    return 0;
}

static int fn_async(struct pctx *p, json_t *obj, const char *path, struct fn_build *b)
{
    static const char *const keys[] = { "max_retries", "retry_base_ms", "max_event_age_ms",
                                        "max_queue", "max_queue_bytes", "overflow",
                                        "on_success", "on_failure", NULL };
    char apath[GW_PATH_MAX], child[GW_PATH_MAX];
    const char *overflow = NULL;
    int64_t age = (int64_t)b->async.max_event_age_ms;
    json_t *async;
    int rc;

    if ((rc = get_obj(p, obj, path, "async", &async)) != 0 || !async)
        return rc;
    path_key(apath, sizeof apath, path, "async");
    if ((rc = check_keys(p, async, apath, keys)) != 0 ||
        (rc = get_u32(p, async, apath, "max_retries", 0, &b->async.max_retries)) != 0 ||
        (rc = get_u32(p, async, apath, "retry_base_ms", 0, &b->async.retry_base_ms)) != 0 ||
        (rc = get_int(p, async, apath, "max_event_age_ms", 0, INT64_MAX, &age)) != 0 ||
        (rc = get_u32(p, async, apath, "max_queue", 0, &b->async.max_queue)) != 0 ||
        (rc = get_size(p, async, apath, "max_queue_bytes", 0, &b->async.max_queue_bytes)) != 0 ||
        (rc = get_str(p, async, apath, "overflow", &overflow)) != 0 ||
        (rc = get_fn_ref(p, async, apath, "on_success", &b->async.on_success)) != 0 ||
        (rc = get_fn_ref(p, async, apath, "on_failure", &b->async.on_failure)) != 0)
        return rc;
    b->async.max_event_age_ms = (uint64_t)age;
    if (overflow && strcmp(overflow, "reject") == 0) {
        b->async.overflow = FAAS_OVERFLOW_REJECT;
    } else if (overflow && strcmp(overflow, "drop_oldest") == 0) {
        b->async.overflow = FAAS_OVERFLOW_DROP_OLDEST;
    } else if (overflow) {
        path_key(child, sizeof child, apath, "overflow");
        return fail(p, child, "expected \"reject\" or \"drop_oldest\"");
    }
    b->fo.async = &b->async;
    return 0;
}

/*
 * min_warm instances are made at start, each a process for process and
 * command functions: a number no host can give (4294967295 forked until
 * fork failed) is refused. At most max_concurrency, GW_MIN_WARM_MAX, and
 * for processes the user's process limit (RLIMIT_NPROC).
 */
static int fn_min_warm(struct pctx *p, const char *path, const struct fn_build *b)
{
    char child[GW_PATH_MAX];
    uint32_t n = b->fo.min_warm;
    struct rlimit rl;

    if (n == 0)
        return 0;
    path_key(child, sizeof child, path, "min_warm");
    if (b->fo.max_concurrency && n > b->fo.max_concurrency)
        return fail(p, child, "more than max_concurrency (%" PRIu32 ")", b->fo.max_concurrency);
    if (n > GW_MIN_WARM_MAX)
        return fail(p, child, "more than %u, the gateway's bound on instances kept warm",
                    GW_MIN_WARM_MAX);
    if ((b->argv || b->fo.isolation == FAAS_ISOLATION_PROCESS) &&
        getrlimit(RLIMIT_NPROC, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && n > rl.rlim_cur)
        return fail(p, child, "more processes than RLIMIT_NPROC allows (%llu)",
                    (unsigned long long)rl.rlim_cur);
    return 0;
}

/* Checks a function's object and builds its options into *b. */
static int fn_build(struct pctx *p, const char *name, json_t *obj, const char *path,
                    struct fn_build *b)
{
    static const struct faas_function_opts fo = FAAS_FUNCTION_OPTS_INIT;
    static const struct faas_idempotency_opts idem = FAAS_IDEMPOTENCY_OPTS_INIT;
    static const struct faas_async_opts async = FAAS_ASYNC_OPTS_INIT;
    static const char *const keys[] = {
        "library",        "symbol",          "command",   "handler",   "task_root",
        "env",            "isolation",       "timeout_ms", "init_timeout_ms", "memory_mb",
        "min_warm",       "max_concurrency", "max_queue", "idle_timeout_ms", "max_uses",
        "idempotency",    "async",           "example",   NULL
    };
    int has_lib, has_cmd, rc;
    char child[GW_PATH_MAX];
    size_t len = strlen(name), i;

    memset(b, 0, sizeof *b);
    b->fo = fo;
    b->idem = idem;
    b->async = async;
    for (i = 0; i < len && (isalnum((unsigned char)name[i]) || name[i] == '-' ||
                            name[i] == '_');
         i++)
        ;
    if (len == 0 || len > FAAS_NAME_MAX || i < len)
        return fail(p, path, "a function's name is 1 to %d letters, digits, '-' or '_'",
                    FAAS_NAME_MAX);
    if (!json_is_object(obj))
        return fail(p, path, "expected an object");
    if ((rc = check_keys(p, obj, path, keys)) != 0)
        return rc;
    has_lib = json_object_get(obj, "library") != NULL;
    has_cmd = json_object_get(obj, "command") != NULL;
    if (has_lib && has_cmd) {
        path_key(child, sizeof child, path, "command");
        return fail(p, child, "give either \"library\" or \"command\", not both");
    }
    if (!has_lib && !has_cmd)
        return fail(p, path, "missing key \"library\" or \"command\"");
    if ((rc = has_lib ? fn_library(p, obj, path, b) : fn_command(p, obj, path, b)) != 0 ||
        (rc = get_u32(p, obj, path, "timeout_ms", 0, &b->fo.timeout_ms)) != 0 ||
        (rc = get_u32(p, obj, path, "init_timeout_ms", 0, &b->fo.init_timeout_ms)) != 0 ||
        (rc = get_u32(p, obj, path, "memory_mb", 1, &b->fo.memory_mb)) != 0 ||
        (rc = get_u32(p, obj, path, "min_warm", 0, &b->fo.min_warm)) != 0 ||
        (rc = get_u32(p, obj, path, "max_concurrency", 0, &b->fo.max_concurrency)) != 0 ||
        (rc = get_u32(p, obj, path, "max_queue", 0, &b->fo.max_queue)) != 0 ||
        (rc = get_u32(p, obj, path, "idle_timeout_ms", 0, &b->fo.idle_timeout_ms)) != 0 ||
        (rc = get_u32(p, obj, path, "max_uses", 0, &b->fo.max_uses)) != 0 ||
        (rc = fn_idempotency(p, obj, path, b)) != 0 || (rc = fn_async(p, obj, path, b)) != 0)
        return rc;
    return fn_min_warm(p, path, b);
}

/* Why faas_register_library said FAAS_ENOENT: the object changed since
 * the check, which a worker runs again to say how. */
static int library_enoent(struct pctx *p, const char *path, const struct fn_build *b)
{
    char child[GW_PATH_MAX];
    int rc = check_library(p, path, b);

    if (rc != 0)
        return rc;
    path_key(child, sizeof child, path, "library");
    return fail(p, child, "cannot register: %s", faas_strerror(FAAS_ENOENT));
}

static int fn_register(struct pctx *p, struct faas_runtime *rt, const char *name,
                       const char *path, const struct fn_build *b)
{
    int rc;

    if (b->so_path)
        rc = faas_register_library(rt, name, b->so_path, b->symbol, &b->fo);
    else
        rc = faas_register_command(rt, name, b->argv, &b->fo);
    if (rc == 0)
        return 0;
    if (rc == FAAS_ENOMEM)
        return oom(p);
    if (rc == FAAS_ENOENT && b->so_path)
        return library_enoent(p, path, b);
    return fail(p, path, "cannot register: %s", faas_strerror(rc));
}

/*
 * The async destinations (on_success, on_failure) of the functions, as a
 * graph: a function whose destinations lead back to it would invoke itself
 * forever, each result the next event. The first function of the file on
 * such a cycle is the error, with the cycle's shortest chain (breadth
 * first from its destinations; each function has at most two).
 */
static int check_destinations(struct pctx *p)
{
    static const char *const which[2] = { "on_success", "on_failure" };
    struct gw_config *cfg = p->cfg;
    json_t *fns = json_object_get(cfg->root, "functions"), *index = json_object();
    size_t n = cfg->nfunctions, i, k, head, tail, v, w;
    size_t *dest = calloc(2 * n + 1, sizeof *dest), *from = calloc(n + 1, sizeof *from);
    size_t *queue = calloc(n + 1, sizeof *queue);
    char fpath[GW_PATH_MAX], apath[GW_PATH_MAX], path[GW_PATH_MAX], chain[GW_PATH_MAX], *c;
    const char *d;
    int rc = 0, full;

    if (!index || !dest || !from || !queue) {
        rc = oom(p);
        goto out;
    }
    /* dest[2i + k]: the index of function i's destination k, or n (none) */
    for (i = 0; i < n; i++)
        if (json_object_set_new(index, cfg->functions[i].name, json_integer((json_int_t)i))) {
            rc = oom(p);
            goto out;
        }
    for (i = 0; i < n; i++) {
        json_t *async = json_object_get(json_object_get(fns, cfg->functions[i].name), "async");
        for (k = 0; k < 2; k++) {
            d = json_string_value(json_object_get(async, which[k]));
            dest[2 * i + k] = d ? (size_t)json_integer_value(json_object_get(index, d)) : n;
        }
    }
    for (i = 0; i < n && rc == 0; i++) {
        /* from[v]: the function v was reached from, n + k for i's own
         * destination k, SIZE_MAX for not yet; queue: to visit */
        for (v = 0; v < n; v++)
            from[v] = SIZE_MAX;
        head = tail = 0;
        for (k = 0; k < 2; k++) {
            w = dest[2 * i + k];
            if (w < n && from[w] == SIZE_MAX) {
                from[w] = n + k; /* reached from i through destination k */
                queue[tail++] = w;
            }
        }
        while (head < tail && from[i] == SIZE_MAX) {
            v = queue[head++];
            for (k = 0; k < 2; k++) {
                w = dest[2 * v + k];
                if (w < n && from[w] == SIZE_MAX) {
                    from[w] = v;
                    queue[tail++] = w;
                }
            }
        }
        if (from[i] == SIZE_MAX)
            continue;
        /* The chain, written backwards from i to i's first step (cut
         * short, from its end, if it does not fit). */
        c = chain + sizeof chain - 1;
        *c = '\0';
        for (full = 0, v = i;; v = from[v]) {
            size_t len = strlen(cfg->functions[v].name);
            if (!full && (size_t)(c - chain) >= len + 4 + 8) {
                c -= len;
                memcpy(c, cfg->functions[v].name, len);
                c -= 4;
                memcpy(c, " -> ", 4);
            } else if (!full) {
                full = 1;
                c -= 7;
                memcpy(c, " -> ...", 7);
            }
            if (from[v] >= n)
                break;
        }
        path_key(fpath, sizeof fpath, "functions", cfg->functions[i].name);
        path_key(apath, sizeof apath, fpath, "async");
        path_key(path, sizeof path, apath, which[from[v] - n]);
        rc = fail(p, path, "its events would come back to \"%s\" without end (%s%s)",
                  cfg->functions[i].name, cfg->functions[i].name, c);
    }
out:
    json_decref(index);
    free(dest);
    free(from);
    free(queue);
    return rc;
}

/* Checks every function; with `rt`, registers each too. */
static int do_functions(struct pctx *p, struct faas_runtime *rt)
{
    struct gw_config *cfg = p->cfg;
    char path[GW_PATH_MAX];
    struct fn_build b;
    const char *name;
    json_t *fns, *obj;
    size_t i = 0;
    uint64_t t;
    int rc;

    fns = json_object_get(cfg->root, "functions");
    if (!rt) {
        if ((rc = require(p, cfg->root, "", "functions")) != 0)
            return rc;
        if (!json_is_object(fns))
            return fail(p, "functions", "expected an object");
        cfg->functions = calloc(json_object_size(fns) + 1, sizeof *cfg->functions);
        if (!cfg->functions)
            return oom(p);
    }
    json_object_foreach(fns, name, obj) {
        path_key(path, sizeof path, "functions", name);
        rc = fn_build(p, name, obj, path, &b);
        if (rc == 0 && !rt && b.so_path)
            rc = check_library(p, path, &b);
        if (rc == 0 && rt)
            rc = fn_register(p, rt, name, path, &b);
        if (rc == 0 && !rt) {
            struct gw_function *f = &cfg->functions[i++];
            f->name = name;
            f->command = b.argv != NULL;
            f->idempotent = b.fo.idempotency != NULL;
            f->example = json_object_get(obj, "example");
            f->timeout_ms = b.fo.timeout_ms;
            f->init_timeout_ms = b.fo.init_timeout_ms;
            t = (uint64_t)(b.fo.timeout_ms ? b.fo.timeout_ms : GW_NO_TIMEOUT_MS) +
                (b.fo.init_timeout_ms ? b.fo.init_timeout_ms : GW_NO_TIMEOUT_MS);
            if (t > cfg->drain_ms)
                cfg->drain_ms = t;
            cfg->nfunctions = i;
        }
        fn_build_free(&b);
        if (rc)
            return rc;
    }
    return rt ? 0 : check_destinations(p);
}

/* ------------------------------------------------------------------ */
/* Mappings                                                            */
/* ------------------------------------------------------------------ */

struct map_build {
    struct faas_map_opts mo;
    char *filter; /* the filter's JSON text */
};

static int map_example(struct pctx *p, json_t *m, const char *path, int api)
{
    static const char *const keys[] = { "path", "method", "headers", "body", "status", NULL };
    char epath[GW_PATH_MAX], hpath[GW_PATH_MAX], child[GW_PATH_MAX];
    const char *s = NULL, *key;
    json_t *ex, *hdrs, *v;
    int64_t status = 200;
    int rc;

    if ((rc = get_obj(p, m, path, "example", &ex)) != 0 || !ex)
        return rc;
    path_key(epath, sizeof epath, path, "example");
    if (!api)
        return fail(p, epath, "only for api: mappings");
    if ((rc = check_keys(p, ex, epath, keys)) != 0 ||
        (rc = get_str(p, ex, epath, "path", &s)) != 0)
        return rc;
    if (s && s[0] != '/') {
        path_key(child, sizeof child, epath, "path");
        return fail(p, child, "expected a path that starts with '/'");
    }
    if ((rc = get_str(p, ex, epath, "method", &s)) != 0 ||
        (rc = get_int(p, ex, epath, "status", 100, 599, &status)) != 0 ||
        (rc = get_obj(p, ex, epath, "headers", &hdrs)) != 0)
        return rc;
    path_key(hpath, sizeof hpath, epath, "headers");
    json_object_foreach(hdrs, key, v) {
        if (!json_is_string(v)) {
            path_key(child, sizeof child, hpath, key);
            return fail(p, child, "expected a string");
        }
    }
    return 0;
}

/* The kind of a source key, checked; the api: route split into the entry. */
static int map_source(struct pctx *p, const char *src, const char *path, struct gw_mapping *gm)
{
    static const char *const kinds[] = { "api:", "schedule:", "s3:", "dynamodb:",
                                         "stream:", "queue:", NULL };
    char child[GW_PATH_MAX];
    const char *rest, *sp;
    time_t next;
    size_t i, n;

    path_key(child, sizeof child, path, "source");
    for (i = 0; kinds[i] && strncmp(src, kinds[i], strlen(kinds[i])) != 0; i++)
        ;
    if (!kinds[i])
        return fail(p, child, "expected a source key: api:, schedule:, s3:, dynamodb:, "
                              "stream: or queue:");
    rest = src + strlen(kinds[i]);
    if (i == 1 && faas_schedule_next(rest, time(NULL), &next) == FAAS_EPARSE)
        return fail(p, child, "not a schedule expression: rate(...), cron(...) or at(...)");
    /* The library's own check, so the config says no before anything runs. */
    if (i == 2 && faas_source_check(src) == FAAS_EPARSE)
        return fail(p, child, "no S3 event is named \"%s\": expected ObjectCreated, "
                              "ObjectRemoved, ObjectRestore, ObjectTagging, ObjectAcl, "
                              "LifecycleExpiration, LifecycleTransition, IntelligentTiering, "
                              "ReducedRedundancyLostObject or Replication, with \":*\" or "
                              "\":Name\" (see docs/event-sources.md)", rest);
    if (i == 3 && faas_source_check(src) == FAAS_EPARSE)
        return fail(p, child, "no DynamoDB event is named \"%s\": expected INSERT, MODIFY, "
                              "REMOVE or *", rest);
    if (i >= 4 && faas_source_check(src) == FAAS_EPARSE)
        return fail(p, child, "not a %s name: letters, digits, '-', '_' and '.', at most "
                              "128", i == 4 ? "stream" : "queue");
    if (i != 0)
        return 0;
    gm->api = 1;
    sp = strchr(rest, ' ');
    n = sp ? (size_t)(sp - rest) : 0;
    if (rest[0] == '/') {
        snprintf(gm->method, sizeof gm->method, "ANY");
        gm->route = rest;
    } else if (sp && n > 0 && n < sizeof gm->method && sp[1] == '/') {
        memcpy(gm->method, rest, n);
        gm->method[n] = '\0';
        gm->route = sp + 1;
    } else {
        return fail(p, child, "expected an HTTP route: api:[METHOD ]/path");
    }
    return 0;
}

static int map_build(struct pctx *p, json_t *m, const char *path, struct gw_mapping *gm,
                     struct map_build *b)
{
    static const struct faas_map_opts mo = FAAS_MAP_OPTS_INIT;
    static const char *const keys[] = {
        "source",          "function",        "batch_size",
        "batch_window_ms", "filter",          "max_retries",
        "max_record_age_ms", "bisect_on_error", "report_batch_item_failures",
        "parallelization", "partition_key_path", "on_failure",
        "example",         "name",            NULL
    };
    char child[GW_PATH_MAX];
    int64_t retries = -1, age = 0;
    json_t *filter;
    int rc;

    memset(b, 0, sizeof *b);
    b->mo = mo;
    memset(gm, 0, sizeof *gm);
    gm->id = -1;
    if (!json_is_object(m))
        return fail(p, path, "expected an object");
    if ((rc = check_keys(p, m, path, keys)) != 0 || (rc = require(p, m, path, "source")) != 0 ||
        (rc = require(p, m, path, "function")) != 0 ||
        (rc = get_str(p, m, path, "source", &gm->source)) != 0 ||
        (rc = get_fn_ref(p, m, path, "function", &gm->function)) != 0 ||
        (rc = map_source(p, gm->source, path, gm)) != 0 ||
        (rc = get_u32(p, m, path, "batch_size", 0, &b->mo.batch_size)) != 0 ||
        (rc = get_u32(p, m, path, "batch_window_ms", 0, &b->mo.batch_window_ms)) != 0 ||
        (rc = get_int(p, m, path, "max_retries", -1, INT32_MAX, &retries)) != 0 ||
        (rc = get_int(p, m, path, "max_record_age_ms", 0, INT64_MAX, &age)) != 0 ||
        (rc = get_bool(p, m, path, "bisect_on_error", &b->mo.bisect_on_error)) != 0 ||
        (rc = get_bool(p, m, path, "report_batch_item_failures",
                       &b->mo.report_batch_item_failures)) != 0 ||
        (rc = get_u32(p, m, path, "parallelization", 0, &b->mo.parallelization)) != 0 ||
        (rc = get_dotted(p, m, path, "partition_key_path", &b->mo.partition_key_path)) != 0 ||
        (rc = get_fn_ref(p, m, path, "on_failure", &b->mo.on_failure)) != 0 ||
        (rc = get_str(p, m, path, "name", &b->mo.name)) != 0 ||
        (rc = map_example(p, m, path, gm->api)) != 0)
        return rc;
    if (b->mo.batch_size > 10000) {
        path_key(child, sizeof child, path, "batch_size");
        return fail(p, child, "expected an integer from 0 to 10000");
    }
    if (b->mo.parallelization > 10) {
        path_key(child, sizeof child, path, "parallelization");
        return fail(p, child, "expected an integer from 0 to 10");
    }
    b->mo.max_retries = (int32_t)retries;
    b->mo.max_record_age_ms = (uint64_t)age;
    if ((filter = json_object_get(m, "filter")) != NULL) {
        if (!json_is_object(filter) && !json_is_array(filter)) {
            path_key(child, sizeof child, path, "filter");
            return fail(p, child, "expected an EventBridge pattern (an object) or an array "
                                  "of them");
        }
        if (!(b->filter = json_dumps(filter, JSON_COMPACT)))
            return oom(p);
        b->mo.filter = b->filter;
    }
    gm->example = json_object_get(m, "example");
    return 0;
}

/* faas_map refused the mapping: say which key is wrong. */
static int map_error(struct pctx *p, struct faas_runtime *rt, int rc, const char *path,
                     const struct gw_mapping *gm, const struct map_build *b)
{
    struct faas_map_opts plain = b->mo;
    char child[GW_PATH_MAX];
    int id;

    if (rc == FAAS_ENOMEM)
        return oom(p);
    path_key(child, sizeof child, path, "source");
    if (rc == FAAS_EEXIST && gm->api)
        return fail(p, child, b->mo.name ? "the same route, or a mapping of the same name, is "
                                           "mapped already"
                                         : "the same route is mapped already");
    if (rc == FAAS_EEXIST && b->mo.name) {
        path_key(child, sizeof child, path, "name");
        return fail(p, child, "a mapping named \"%s\" exists already", b->mo.name);
    }
    if (rc == FAAS_EEXIST)
        return fail(p, child, "this source is mapped to this function already (give one of "
                              "them a \"name\")");
    if (rc == FAAS_EINVAL && b->mo.name && strlen(b->mo.name) > 1024) {
        path_key(child, sizeof child, path, "name");
        return fail(p, child, "expected at most 1024 bytes");
    }
    if (rc != FAAS_EPARSE)
        return fail(p, path, "cannot map: %s", faas_strerror(rc));
    if (b->filter) {
        /* The source or the filter: map it without the filter to know. */
        plain.filter = NULL;
        id = faas_map(rt, gm->source, gm->function, &plain);
        if (id >= 0) {
            faas_unmap(rt, id);
            path_key(child, sizeof child, path, "filter");
            return fail(p, child, "not a valid EventBridge filter pattern");
        }
    }
    return fail(p, child, "cannot map: %s (a bad route, schedule or event name)",
                faas_strerror(rc));
}

static int do_mappings(struct pctx *p, struct faas_runtime *rt)
{
    struct gw_config *cfg = p->cfg;
    json_t *maps = json_object_get(cfg->root, "mappings"), *m;
    char path[GW_PATH_MAX];
    struct gw_mapping gm;
    struct map_build b;
    size_t i;
    int rc, id;

    if (!maps)
        return 0;
    if (!json_is_array(maps))
        return fail(p, "mappings", "expected an array");
    if (!rt && !(cfg->mappings = calloc(json_array_size(maps) + 1, sizeof *cfg->mappings)))
        return oom(p);
    json_array_foreach(maps, i, m) {
        path_index(path, sizeof path, "mappings", i);
        rc = map_build(p, m, path, &gm, &b);
        if (rc == 0 && rt) {
            id = faas_map(rt, gm.source, gm.function, &b.mo);
            if (id < 0)
                rc = map_error(p, rt, id, path, &gm, &b);
            else
                cfg->mappings[i].id = id;
        }
        if (rc == 0 && !rt)
            cfg->mappings[cfg->nmappings++] = gm;
        free(b.filter);
        if (rc)
            return rc;
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* Watches, self_test                                                  */
/* ------------------------------------------------------------------ */

static int do_watches(struct pctx *p, struct faas_runtime *rt)
{
    static const char *const keys[] = { "bucket", "dir", NULL };
    json_t *ws = json_object_get(p->cfg->root, "watch"), *w;
    char path[GW_PATH_MAX], child[GW_PATH_MAX];
    const char *bucket = NULL, *dir = NULL;
    char *abs;
    size_t i;
    int rc;

    if (!ws)
        return 0;
    if (!json_is_array(ws))
        return fail(p, "watch", "expected an array");
    json_array_foreach(ws, i, w) {
        path_index(path, sizeof path, "watch", i);
        if (!json_is_object(w))
            return fail(p, path, "expected an object");
        if ((rc = check_keys(p, w, path, keys)) != 0 ||
            (rc = require(p, w, path, "bucket")) != 0 ||
            (rc = require(p, w, path, "dir")) != 0 ||
            (rc = get_str(p, w, path, "bucket", &bucket)) != 0 ||
            (rc = get_str(p, w, path, "dir", &dir)) != 0)
            return rc;
        if (!(abs = gw_config_resolve(p->cfg, dir)))
            return oom(p);
        path_key(child, sizeof child, path, "dir");
        if (!is_dir_ok(abs))
            rc = fail(p, child, "%s: not a directory", abs);
        else if (rt && (rc = faas_watch_dir(rt, bucket, abs)) < 0)
            rc = rc == FAAS_ENOMEM ? oom(p) : fail(p, child, "cannot watch %s: %s", abs,
                                                    faas_strerror(rc));
        else
            rc = 0;
        free(abs);
        if (rc)
            return rc;
        p->cfg->nwatches = i + 1;
    }
    return 0;
}

static int parse_self_test(struct pctx *p, json_t *root)
{
    static const char *const keys[] = { "drain", NULL };
    static const char *const dkeys[] = { "function", "event", NULL };
    json_t *st, *drain;
    int rc;

    if ((rc = get_obj(p, root, "", "self_test", &st)) != 0 || !st)
        return rc;
    if ((rc = check_keys(p, st, "self_test", keys)) != 0 ||
        (rc = get_obj(p, st, "self_test", "drain", &drain)) != 0 || !drain)
        return rc;
    if ((rc = check_keys(p, drain, "self_test.drain", dkeys)) != 0 ||
        (rc = require(p, drain, "self_test.drain", "function")) != 0 ||
        (rc = get_fn_ref(p, drain, "self_test.drain", "function", &p->cfg->drain_function)) !=
            0)
        return rc;
    p->cfg->drain_event = json_object_get(drain, "event");
    return 0;
}

/* ------------------------------------------------------------------ */
/* Example requests                                                    */
/* ------------------------------------------------------------------ */

char *gw_route_example_path(const struct gw_mapping *m)
{
    const char *given = json_string_value(json_object_get(m->example, "path"));
    const char *r = m->route;
    size_t n = strlen(r), i = 0, o = 0;
    char *out;

    if (given)
        return strdup(given);
    if (!(out = malloc(n * 7 + 2)))
        return NULL;
    while (i < n) {
        if (r[i] == '{' && strchr(r + i, '}')) {
            i = (size_t)(strchr(r + i, '}') - r) + 1;
            memcpy(out + o, "example", 7);
            o += 7;
        } else if (r[i] == '*' && i + 1 == n) {
            memcpy(out + o, "example", 7);
            o += 7;
            i++;
        } else {
            out[o++] = r[i++];
        }
    }
    out[o] = '\0';
    return out;
}

const char *gw_route_example_method(const struct gw_mapping *m)
{
    const char *given = json_string_value(json_object_get(m->example, "method"));

    if (given)
        return given;
    if (strcmp(m->method, "ANY") != 0)
        return m->method;
    return json_object_get(m->example, "body") ? "POST" : "GET";
}

/* ------------------------------------------------------------------ */
/* Open, apply, free                                                   */
/* ------------------------------------------------------------------ */

/* The whole file, NUL-terminated, or NULL with errno set. */
static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t n = 0;
    long size;

    if (!f)
        return NULL;
    if (fseek(f, 0, SEEK_END) == 0 && (size = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0) {
        if ((unsigned long)size > GW_FILE_MAX) {
            errno = EFBIG;
        } else if ((buf = malloc((size_t)size + 1)) != NULL) {
            n = fread(buf, 1, (size_t)size, f);
            if (n != (size_t)size || ferror(f)) {
                free(buf);
                buf = NULL;
                errno = EIO;
            } else {
                buf[n] = '\0';
            }
        }
    }
    fclose(f);
    *len = n;
    return buf;
}

/* The absolute directory of the file. */
static char *file_dir(const char *path)
{
    char *copy = strdup(path), *slash, *dir;

    if (!copy)
        return NULL;
    slash = strrchr(copy, '/');
    if (!slash)
        snprintf(copy, strlen(copy) + 1, ".");
    else if (slash == copy)
        slash[1] = '\0';
    else
        *slash = '\0';
    dir = realpath(copy, NULL);
    free(copy);
    return dir;
}

static int parse_text(struct pctx *p, const char *text, size_t len)
{
    struct gw_config *cfg = p->cfg;
    json_error_t jerr;

    cfg->root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!cfg->root) {
        snprintf(p->err, p->errlen, "%s:%d: %s", cfg->path, jerr.line > 0 ? jerr.line : 1,
                 jerr.text);
        return GW_ECONFIG;
    }
    if (scan_lines(cfg, text, len) == FAAS_ENOMEM)
        return oom(p);
    /* A scanner that disagrees with jansson only costs precision: the
     * lines it did not record fall back to their parents'. */
    return 0;
}

static int check_all(struct pctx *p)
{
    static const char *const keys[] = { "listen", "runtime", "functions", "mappings",
                                        "watch",  "self_test", NULL };
    json_t *root = p->cfg->root;
    int rc;

    if (!json_is_object(root))
        return fail(p, "", "expected an object at the top level");
    if ((rc = check_keys(p, root, "", keys)) != 0 || (rc = parse_listen(p, root)) != 0 ||
        (rc = parse_runtime(p, root)) != 0 || (rc = do_functions(p, NULL)) != 0 ||
        (rc = do_mappings(p, NULL)) != 0 || (rc = do_watches(p, NULL)) != 0 ||
        (rc = parse_self_test(p, root)) != 0)
        return rc;
    p->cfg->drain_ms += 1000; /* the replies' way out */
    return 0;
}

int gw_config_open(struct gw_config **out, const char *path, char *err, size_t errlen)
{
    static const struct faas_runtime_opts ro = FAAS_RUNTIME_OPTS_INIT;
    struct gw_config *cfg = calloc(1, sizeof *cfg);
    struct pctx p = { cfg, err, errlen };
    char *text = NULL;
    size_t len = 0;
    int rc;

    if (!cfg || !(cfg->path = strdup(path))) {
        free(cfg);
        snprintf(err, errlen, "%s: out of memory", path);
        return FAAS_ENOMEM;
    }
    cfg->ro = ro;
    snprintf(cfg->host, sizeof cfg->host, "127.0.0.1");
    cfg->port = 8080;
    if (!(text = read_file(path, &len)) || !(cfg->dir = file_dir(path))) {
        snprintf(err, errlen, "%s: cannot read it: %s", path, strerror(errno));
        rc = errno == ENOMEM ? FAAS_ENOMEM : GW_ECONFIG;
    } else if ((rc = parse_text(&p, text, len)) == 0) {
        rc = check_all(&p);
    }
    free(text);
    if (rc) {
        gw_config_free(cfg);
        return rc;
    }
    *out = cfg;
    return 0;
}

int gw_config_apply(struct gw_config *cfg, struct faas_runtime *rt, char *err, size_t errlen)
{
    struct pctx p = { cfg, err, errlen };
    int rc;

    if (!cfg || !rt) {
        snprintf(err, errlen, "gw_config_apply: %s", faas_strerror(FAAS_EINVAL));
        return FAAS_EINVAL;
    }
    if ((rc = do_functions(&p, rt)) != 0 || (rc = do_mappings(&p, rt)) != 0 ||
        (rc = do_watches(&p, rt)) != 0)
        return rc;
    return 0;
}

void gw_config_free(struct gw_config *cfg)
{
    size_t i;

    if (!cfg)
        return;
    free(cfg->durable_url);
    for (i = 0; i < cfg->nlines; i++)
        free(cfg->lines[i].path);
    free(cfg->lines);
    free(cfg->functions);
    free(cfg->mappings);
    json_decref(cfg->root);
    free(cfg->dir);
    free(cfg->path);
    free(cfg);
}
