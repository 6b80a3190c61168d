/*
 * json_bytes.c - the exact size of a value's compact serialisation
 * (JSON_COMPACT | JSON_ENCODE_ANY, jansson's escaping), without making it.
 *
 * The byte bounds of queues (async events, batched records) count what a
 * value would take as JSON text. Serialising each value only to measure it
 * would double the cost of a small event; a walk that counts is a fraction
 * of the deep copy the queue makes anyway. Strings are counted as jansson
 * writes them: '"' and '\\' and \b \f \n \r \t take two bytes, other
 * control characters six (\u00XX), everything else (UTF-8 included) one.
 * Reals, rare in events, are formatted by jansson itself to get its digits.
 *
 * Used by async.c (faas_invoke_async, destinations) and batch.c
 * (faas_batcher_add).
 */
#include <stdio.h>
#include <string.h>

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
