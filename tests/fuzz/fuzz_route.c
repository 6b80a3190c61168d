/*
 * fuzz_route.c - libFuzzer target for the HTTP gateway's route patterns and
 * matching (lib/route.h).
 *
 * The input is lines: those before the first empty line are route patterns
 * (added to one table; parse errors and duplicates are fine), the rest are
 * requests "METHOD /path". For every match the target checks, with a
 * separate segment-by-segment reference, that the route it got does match
 * the request, that captures lie inside the path, and that a route of the
 * request's own method was preferred to ANY at the same node. Then every
 * route is removed again, in reverse order, and the table must be empty.
 *
 * Build: clang -fsanitize=fuzzer,address -Iinclude -Ilib, this file and every
 * .c of lib/, then $(pkg-config --cflags --libs libevent jansson libsodium)
 * -lpthread -ldl. Seeds: any text, e.g. routes "GET /a/{b}" and "/a/{p+}", an
 * empty line, then requests "GET /a/x".
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "faas_int.h"
#include "route.h"

#define MAX_ROUTES 256

/* Decoded segment equals literal? */
static int seg_eq(const char *lit, const char *raw, size_t n)
{
    size_t i = 0, j = 0, l = strlen(lit);
    while (j < n) {
        unsigned char c = (unsigned char)raw[j];
        int hi, lo;
        if (c == '%' && j + 2 < n && (hi = faas_hexval((unsigned char)raw[j + 1])) >= 0 &&
            (lo = faas_hexval((unsigned char)raw[j + 2])) >= 0) {
            c = (unsigned char)(hi * 16 + lo);
            j += 3;
        } else {
            j++;
        }
        if (i >= l || (unsigned char)lit[i] != c)
            return 0;
        i++;
    }
    return i == l;
}

/* Reference: does r match path (ignoring the method)? */
static int ref_match(const struct faas_route *r, const char *path, size_t len)
{
    size_t pos = 0;
    unsigned i;
    if (len == 1 && r->nsegs == 0 && !r->greedy)
        return 1;
    for (i = 0; i < r->nsegs; i++) {
        const char *slash;
        size_t s, e;
        if (pos >= len || path[pos] != '/')
            return 0;
        s = pos + 1;
        slash = memchr(path + s, '/', len - s);
        e = slash ? (size_t)(slash - path) : len;
        if (e == s)
            return 0;
        if (r->seg[i] && !seg_eq(r->seg[i], path + s, e - s))
            return 0;
        pos = e;
    }
    if (r->greedy)
        return pos < len && len - pos > 1;
    return pos == len || (len == 1 && r->nsegs == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct faas_route_table *t;
    struct faas_route *routes[MAX_ROUTES];
    size_t nroutes = 0, i = 0;
    int patterns = 1;
    char *buf = malloc(size + 1);

    if (!buf)
        return 0;
    memcpy(buf, data, size);
    buf[size] = '\0';
    if (faas_route_table_new(&t) != 0) {
        free(buf);
        return 0;
    }
    while (i <= size) {
        char *line = buf + i, *nl = memchr(line, '\n', size - i);
        size_t n = nl ? (size_t)(nl - line) : size - i;
        line[n] = '\0';
        i += n + 1;
        if (n == 0 && patterns) {
            patterns = 0;
            continue;
        }
        if (patterns) {
            struct faas_route *r;
            int rc;
            if (strlen(line) != n)
                continue; /* a NUL inside: not a C string pattern */
            rc = faas_route_parse(line, &r);
            if (rc == 0) {
                if (nroutes < MAX_ROUTES && faas_route_table_add(t, r) == 0)
                    routes[nroutes++] = r;
                else
                    faas_route_free(r);
            } else if (rc != FAAS_EPARSE) {
                abort();
            }
        } else {
            char *sp = memchr(line, ' ', n);
            struct faas_route_match m;
            const struct faas_route *r;
            int method;
            size_t plen;
            unsigned k;
            if (!sp)
                continue;
            method = faas_http_method_parse(line, (size_t)(sp - line));
            if (method <= 0)
                method = FAAS_HTTP_OTHER;
            plen = n - (size_t)(sp + 1 - line);
            r = faas_route_match(t, (enum faas_http_method)method, sp + 1, plen, &m);
            if (!r)
                continue;
            if (!ref_match(r, sp + 1, plen))
                abort();
            if (r->method != FAAS_HTTP_ANY && (int)r->method != method)
                abort();
            for (k = 0; k < r->nsegs; k++)
                if (!r->seg[k] && (m.off[k] + m.len[k] > plen || m.len[k] == 0))
                    abort();
            if (r->greedy && (m.tail_len == 0 || m.tail_off + m.tail_len != plen))
                abort();
        }
    }
    while (nroutes > 0) {
        struct faas_route *r = routes[--nroutes];
        faas_route_table_remove(t, r);
        faas_route_free(r);
    }
    if (faas_route_table_count(t) != 0)
        abort();
    faas_route_table_free(t);
    free(buf);
    return 0;
}
