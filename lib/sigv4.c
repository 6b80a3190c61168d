/*
 * sigv4.c - AWS Signature Version 4, pure (no libevent, no runtime): the
 * signature of a request as it arrived (faas_sigv4_signature, with its
 * input struct faas_sigv4_in in faas_int.h) and the parts of a SigV4
 * Authorization header and X-Amz-Date (sigv4.h).
 *
 * The canonical request is hashed as it is made, through a small buffer
 * (struct sink), so no copy of it is kept; its parts follow the rules
 * faas_int.h states. The signing key is an HMAC-SHA256 chain over the
 * scope's parts, and the secret and the keys derived from it are wiped
 * from the stack once used.
 *
 * Callers: lambda_api.c (the Invoke API checks every request's signature
 * when a key pair is configured), the Invoke API's tests (AWS's published
 * vectors). It calls libsodium (SHA-256, HMAC-SHA256, hex, memzero),
 * faas_pct_next (text.h), faas_days_from_civil (clock.h) and the
 * allocators. Any thread.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <sodium.h>

#include "faas_int.h"
#include "http_event.h" /* struct faas_http_header */
#include "sigv4.h"

/* Bytes into the canonical request's hash, through a small buffer. */
struct sink {
    crypto_hash_sha256_state h;
    size_t n;
    unsigned char buf[256];
};

static void sink_put(struct sink *s, const void *data, size_t len)
{
    if (s->n + len > sizeof s->buf) {
        crypto_hash_sha256_update(&s->h, s->buf, s->n);
        s->n = 0;
        if (len > sizeof s->buf) {
            crypto_hash_sha256_update(&s->h, data, len);
            return;
        }
    }
    memcpy(s->buf + s->n, data, len);
    s->n += len;
}

static void sink_str(struct sink *s, const char *str)
{
    sink_put(s, str, strlen(str));
}

static void sink_byte(struct sink *s, char c)
{
    sink_put(s, &c, 1);
}

static int unreserved(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '_' || c == '.' || c == '~';
}

/* AWS's URI encoding of one byte into out (1 or 3 bytes); returns the count. */
static size_t uri_encode_byte(unsigned char c, char *out)
{
    static const char hex[] = "0123456789ABCDEF";
    if (unreserved(c)) {
        out[0] = (char)c;
        return 1;
    }
    out[0] = '%';
    out[1] = hex[c >> 4];
    out[2] = hex[c & 15];
    return 3;
}

/* The raw path encoded once more, '/' kept: the canonical URI. */
static void canon_uri(struct sink *s, const char *path)
{
    char e[3];
    if (!path || !*path) {
        sink_byte(s, '/');
        return;
    }
    for (; *path; path++) {
        if (*path == '/')
            sink_byte(s, '/');
        else
            sink_put(s, e, uri_encode_byte((unsigned char)*path, e));
    }
}

struct qparam {
    const char *name, *value; /* encoded, into the arena */
    size_t nlen, vlen;
};

/* Decodes raw[0..n) and encodes it again into *o; returns its start. */
static const char *recode(const char *raw, size_t n, char **o, size_t *len)
{
    const char *start = *o;
    size_t i = 0;
    while (i < n)
        *o += uri_encode_byte(faas_pct_next(raw, n, &i, 0), *o);
    *len = (size_t)(*o - start);
    return start;
}

static int qparam_cmp(const void *x, const void *y)
{
    const struct qparam *a = x, *b = y;
    size_t n = a->nlen < b->nlen ? a->nlen : b->nlen;
    int c = memcmp(a->name, b->name, n);
    if (c || a->nlen != b->nlen)
        return c ? c : (a->nlen < b->nlen ? -1 : 1);
    n = a->vlen < b->vlen ? a->vlen : b->vlen;
    c = memcmp(a->value, b->value, n);
    if (c || a->vlen != b->vlen)
        return c ? c : (a->vlen < b->vlen ? -1 : 1);
    return 0;
}

/* The canonical query string: parameters re-encoded, sorted by name then
 * value, "name=value" joined by '&'. 0 or FAAS_ENOMEM. */
static int canon_query(struct sink *s, const char *q)
{
    struct qparam small_p[16], *ps = small_p;
    char small_a[1024], *arena = small_a, *o;
    size_t qlen = q ? strlen(q) : 0, np = 1, i, k = 0;

    if (qlen == 0)
        return 0;
    for (i = 0; i < qlen; i++)
        np += q[i] == '&';
    if (np > sizeof small_p / sizeof small_p[0] && !(ps = faas_malloc(np * sizeof *ps)))
        return FAAS_ENOMEM;
    if (qlen * 3 + 1 > sizeof small_a && !(arena = faas_malloc(qlen * 3 + 1))) {
        if (ps != small_p)
            free(ps);
        return FAAS_ENOMEM;
    }
    o = arena;
    while (*q) {
        size_t n = strcspn(q, "&");
        const char *eq = memchr(q, '=', n);
        if (n > 0) {
            size_t nl = eq ? (size_t)(eq - q) : n;
            ps[k].name = recode(q, nl, &o, &ps[k].nlen);
            ps[k].vlen = 0;
            ps[k].value = eq ? recode(eq + 1, n - nl - 1, &o, &ps[k].vlen) : o;
            k++;
        }
        q += n;
        if (*q == '&')
            q++;
    }
    qsort(ps, k, sizeof *ps, qparam_cmp);
    for (i = 0; i < k; i++) {
        if (i)
            sink_byte(s, '&');
        sink_put(s, ps[i].name, ps[i].nlen);
        sink_byte(s, '=');
        sink_put(s, ps[i].value, ps[i].vlen);
    }
    if (ps != small_p)
        free(ps);
    if (arena != small_a)
        free(arena);
    return 0;
}

static int blank(char c)
{
    return c == ' ' || c == '\t';
}

/* One value, trimmed, inner runs of blanks made one space. */
static void canon_value(struct sink *s, const char *v, size_t n)
{
    size_t i = 0, end = n;
    int space = 0;
    while (i < end && blank(v[i]))
        i++;
    while (end > i && blank(v[end - 1]))
        end--;
    for (; i < end; i++) {
        if (blank(v[i])) {
            space = 1;
            continue;
        }
        if (space)
            sink_byte(s, ' ');
        space = 0;
        sink_byte(s, v[i]);
    }
}

/* "name:value[,value...]\n" for each name in signed_headers. */
static void canon_headers(struct sink *s, const struct faas_sigv4_in *in)
{
    const char *p = in->signed_headers;
    while (*p) {
        size_t n = strcspn(p, ";"), i, j;
        int first = 1;
        for (j = 0; j < n; j++) {
            char c = p[j];
            sink_byte(s, (char)(c >= 'A' && c <= 'Z' ? c + 32 : c));
        }
        sink_byte(s, ':');
        for (i = 0; i < in->nheaders; i++) {
            const struct faas_http_header *h = &in->headers[i];
            if (h->name_len != n || strncasecmp(h->name, p, n) != 0)
                continue;
            if (!first)
                sink_byte(s, ',');
            first = 0;
            canon_value(s, h->value, h->value_len);
        }
        sink_byte(s, '\n');
        p += n;
        if (*p == ';')
            p++;
    }
}

static void hmac(unsigned char out[32], const unsigned char *key, size_t keylen,
                 const char *msg, size_t len)
{
    crypto_auth_hmacsha256_state st;
    crypto_auth_hmacsha256_init(&st, key, keylen);
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)msg, len);
    crypto_auth_hmacsha256_final(&st, out);
}

int faas_sigv4_signature(const struct faas_sigv4_in *in, const char *secret, char out[65])
{
    const char *part[4], *p;
    size_t plen[4], i, sl;
    unsigned char digest[32], k[32], kkey[4 + 256];
    char hex[65];
    struct sink s;
    crypto_auth_hmacsha256_state st;
    int rc;

    if (!in || !secret || !out || !in->method || !in->signed_headers || !in->amz_date ||
        !in->scope || !in->payload_hash || (sl = strlen(secret)) > 256)
        return FAAS_EINVAL;
    /* scope: DATE/REGION/SERVICE/aws4_request */
    for (p = in->scope, i = 0; i < 4; i++) {
        part[i] = p;
        plen[i] = strcspn(p, "/");
        if (plen[i] == 0 || (i < 3 && p[plen[i]] != '/') || (i == 3 && p[plen[i]] != '\0'))
            return FAAS_EINVAL;
        p += plen[i] + (i < 3);
    }
    crypto_hash_sha256_init(&s.h);
    s.n = 0;
    sink_str(&s, in->method);
    sink_byte(&s, '\n');
    canon_uri(&s, in->path);
    sink_byte(&s, '\n');
    if ((rc = canon_query(&s, in->query)) != 0)
        return rc;
    sink_byte(&s, '\n');
    canon_headers(&s, in);
    sink_byte(&s, '\n');
    sink_str(&s, in->signed_headers);
    sink_byte(&s, '\n');
    sink_str(&s, in->payload_hash);
    crypto_hash_sha256_update(&s.h, s.buf, s.n);
    crypto_hash_sha256_final(&s.h, digest);
    sodium_bin2hex(hex, sizeof hex, digest, sizeof digest);

    /* the signing key: HMAC chain over the scope's parts */
    memcpy(kkey, "AWS4", 4);
    memcpy(kkey + 4, secret, sl);
    hmac(k, kkey, 4 + sl, part[0], plen[0]);
    for (i = 1; i < 4; i++)
        hmac(k, k, sizeof k, part[i], plen[i]);
    sodium_memzero(kkey, sizeof kkey);

    /* the string to sign, straight into the last HMAC */
    crypto_auth_hmacsha256_init(&st, k, sizeof k);
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)"AWS4-HMAC-SHA256\n", 17);
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)in->amz_date,
                                  strlen(in->amz_date));
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)"\n", 1);
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)in->scope, strlen(in->scope));
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)"\n", 1);
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)hex, 64);
    crypto_auth_hmacsha256_final(&st, digest);
    sodium_memzero(k, sizeof k);
    sodium_bin2hex(out, 2 * sizeof digest + 1, digest, sizeof digest);
    return 0;
}

/* Copies the value of "key=" in the Authorization header's parameter list
 * (comma-separated, blanks around); 0, or -1 when absent or too long. */
int faas_sigv4_auth_param(const char *params, const char *key, char *out, size_t size)
{
    size_t kl = strlen(key);
    const char *p = params;
    while (*p) {
        size_t n;
        while (*p == ' ' || *p == ',')
            p++;
        n = strcspn(p, ",");
        if (n > kl && strncmp(p, key, kl) == 0 && p[kl] == '=') {
            size_t vl = n - kl - 1;
            while (vl > 0 && blank(p[kl + 1 + vl - 1]))
                vl--;
            if (vl == 0 || vl >= size)
                return -1;
            memcpy(out, p + kl + 1, vl);
            out[vl] = '\0';
            return 0;
        }
        p += n;
    }
    return -1;
}

/* "YYYYMMDDTHHMMSSZ" to seconds since the epoch; 0, or -1 when malformed. */
int faas_sigv4_parse_date(const char *s, int64_t *out)
{
    unsigned v[6], i, k = 0;
    static const unsigned width[6] = { 4, 2, 2, 2, 2, 2 };

    if (strlen(s) != 16 || s[8] != 'T' || s[15] != 'Z')
        return -1;
    for (i = 0; i < 6; i++) {
        unsigned j;
        v[i] = 0;
        if (i == 3)
            k++; /* the 'T' */
        for (j = 0; j < width[i]; j++, k++) {
            if (s[k] < '0' || s[k] > '9')
                return -1;
            v[i] = v[i] * 10 + (unsigned)(s[k] - '0');
        }
    }
    if (v[1] < 1 || v[1] > 12 || v[2] < 1 || v[2] > 31 || v[3] > 23 || v[4] > 59 || v[5] > 60)
        return -1;
    *out = faas_days_from_civil(v[0], v[1], v[2]) * 86400 + v[3] * 3600 + v[4] * 60 + v[5];
    return 0;
}

void faas_sigv4_format_date(int64_t t, char out[17])
{
    struct tm tm;
    time_t tt = (time_t)t;
    gmtime_r(&tt, &tm);
    strftime(out, 17, "%Y%m%dT%H%M%SZ", &tm);
}
