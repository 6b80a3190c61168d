/*
 * json.c - JSON helpers every subsystem shares: the exact and the bounded
 * size of a value's compact text, text as a JSON string, the runtime's
 * error object, and compact text appended to an evbuffer.
 *
 * Sizes. The byte bounds of queues (async events, batched records) count
 * what a value would take as JSON text (JSON_COMPACT | JSON_ENCODE_ANY,
 * jansson's escaping). Serialising each value only to measure it would
 * double the cost of a small event; a walk that counts (faas_json_bytes) is
 * a fraction of the deep copy the queue makes anyway. Strings are counted
 * as jansson writes them: '"' and '\\' and \b \f \n \r \t take two bytes,
 * other control characters six (\u00XX), everything else (UTF-8 included)
 * one. Reals, rare in events, are formatted by jansson itself to get its
 * digits. faas_json_size is the payload limit's cheaper question: only
 * whether the text fits, exact only near the limit.
 *
 * Text. Bytes from outside (HTTP requests, a process's output) need not be
 * UTF-8; faas_json_text makes them a JSON string with U+FFFD for each byte
 * that is not, and every JSON string built from such bytes goes through it.
 *
 * Called by invoke.c, pool.c, idem.c, async.c, batch.c, source.c, store.c,
 * http.c, http_event.c, route.c, lambda_api.c, runtime_api.c and the
 * executors. Calls jansson, libevent's evbuffer, text.c and alloc.c;
 * nothing above them.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "faas_int.h"

/* Bytes an escape adds to each byte value: 1 for the two-byte escapes, 5
 * for \u00XX, 0 for bytes written as they are (all from 0x20 up). */
static const unsigned char escape_extra[256] = {
    5, 5, 5, 5, 5, 5, 5, 5, 1, 1, 1, 5, 1, 1, 5, 5, /* \b \t \n, \f \r */
    5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5,
    0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* '"' */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, /* '\\' */
};

size_t faas_json_string_bytes(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t n = len + 2, i;
    for (i = 0; i < len; i++)
        n += escape_extra[p[i]];
    return n;
}

/* Digits of an integer, with its sign. */
static size_t integer_bytes(json_int_t v)
{
    unsigned long long u;
    size_t n = 1;

    if (v < 0) {
        n++;
        u = (unsigned long long)(-(v + 1)) + 1u;
    } else {
        u = (unsigned long long)v;
    }
    while (u >= 10u) {
        u /= 10u;
        n++;
    }
    return n;
}

size_t faas_json_bytes(const json_t *j)
{
    const char *key;
    size_t n, i, key_len;
    json_t *v;

    if (!j)
        return 4; /* null */
    switch (json_typeof(j)) {
    case JSON_OBJECT:
        n = 2;
        json_object_keylen_foreach((json_t *)j, key, key_len, v) {
            n += faas_json_string_bytes(key, key_len) + 1 + faas_json_bytes(v);
        }
        if (json_object_size(j) > 1)
            n += json_object_size(j) - 1; /* commas */
        return n;
    case JSON_ARRAY:
        n = 2;
        for (i = 0; i < json_array_size(j); i++)
            n += faas_json_bytes(json_array_get(j, i));
        if (json_array_size(j) > 1)
            n += json_array_size(j) - 1;
        return n;
    case JSON_STRING:
        return faas_json_string_bytes(json_string_value(j), json_string_length(j));
    case JSON_INTEGER:
        return integer_bytes(json_integer_value(j));
    case JSON_REAL:
        return json_dumpb(j, NULL, 0, JSON_COMPACT | JSON_ENCODE_ANY);
    case JSON_TRUE:
        return 4;
    case JSON_FALSE:
        return 5;
    case JSON_NULL:
        return 4;
    }
    return 4;
}

/* ---- payload size --------------------------------------------------- */

/*
 * An upper bound of the compact serialisation, cheap to compute: every string
 * byte counted as a worst-case \uXXXX escape. Stops once over `limit`.
 */
static size_t size_bound(const json_t *j, size_t limit)
{
    size_t n, i;
    const char *key;
    json_t *v;

    switch (json_typeof(j)) {
    case JSON_OBJECT:
        n = 2;
        json_object_foreach((json_t *)j, key, v) {
            n += 6 * strlen(key) + 4 + size_bound(v, limit);
            if (n > limit)
                return n;
        }
        return n;
    case JSON_ARRAY:
        n = 2;
        for (i = 0; i < json_array_size(j); i++) {
            n += 1 + size_bound(json_array_get(j, i), limit);
            if (n > limit)
                return n;
        }
        return n;
    case JSON_STRING:
        return 2 + 6 * json_string_length(j);
    case JSON_INTEGER:
        return 21;
    case JSON_REAL:
        return 32;
    default:
        return 5;
    }
}

size_t faas_json_size(const json_t *json, size_t limit)
{
    size_t n;
    if (!json)
        return 4;
    n = size_bound(json, limit);
    if (n <= limit)
        return n;
    n = json_dumpb(json, NULL, 0, JSON_COMPACT | JSON_ENCODE_ANY);
    return n ? n : limit + 1; /* unserialisable (NaN, bad UTF-8): refuse */
}

/* ---- text and errors ------------------------------------------------- */

json_t *faas_json_text(const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    char small[256], *buf;
    size_t i = 0, o = 0, k;
    json_t *j;

    if (faas_utf8_valid(s, n))
        return json_stringn_nocheck(s, n);
    buf = n < sizeof small / 3 ? small : n > (SIZE_MAX - 1) / 3 ? NULL : faas_malloc(n * 3 + 1);
    if (!buf)
        return NULL;
    while (i < n) {
        k = faas_utf8_seq(u + i, n - i);
        if (k == 0) {
            memcpy(buf + o, "\xef\xbf\xbd", 3);
            o += 3;
            i++;
        } else {
            memcpy(buf + o, s + i, k);
            o += k;
            i += k;
        }
    }
    j = json_stringn_nocheck(buf, o);
    if (buf != small)
        free(buf);
    return j;
}

json_t *faas_error_object(const char *type, const char *msg)
{
    json_t *o = json_object();
    if (!o)
        return json_null();
    json_object_set_new(o, "errorType", json_string(type ? type : "Error"));
    json_object_set_new(o, "errorMessage", json_string(msg ? msg : ""));
    return o;
}

/* ---- output ---------------------------------------------------------- */

/* Small pieces are gathered into one evbuffer_add: jansson calls back once
 * per token. */
struct dump_buf {
    struct evbuffer *out;
    size_t n;
    char buf[4096];
};

static int dump_cb(const char *s, size_t size, void *arg)
{
    struct dump_buf *d = arg;
    if (d->n + size > sizeof d->buf) {
        if (d->n && evbuffer_add(d->out, d->buf, d->n) != 0)
            return -1;
        d->n = 0;
        if (size > sizeof d->buf)
            return evbuffer_add(d->out, s, size);
    }
    memcpy(d->buf + d->n, s, size);
    d->n += size;
    return 0;
}

int faas_json_dump_evbuffer(struct evbuffer *out, json_t *j)
{
    struct dump_buf d;
    d.out = out;
    d.n = 0;
    if (json_dump_callback(j, dump_cb, &d, JSON_COMPACT | JSON_ENCODE_ANY) != 0)
        return -1;
    return d.n ? evbuffer_add(out, d.buf, d.n) : 0;
}
