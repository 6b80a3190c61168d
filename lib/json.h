/*
 * json.h - JSON sizes, text as JSON strings, the error object and compact
 * output to an evbuffer (json.c).
 *
 * Included by every file through faas_int.h.
 */
#ifndef FAAS_JSON_H
#define FAAS_JSON_H

#include <stddef.h>

#include <jansson.h>

struct evbuffer;

/* Exact bytes of the compact serialisation of j (NULL: null), as jansson
 * writes it with JSON_COMPACT | JSON_ENCODE_ANY, without serialising. */
size_t faas_json_bytes(const json_t *j);
/* The same for one string, quotes and escapes included. */
size_t faas_json_string_bytes(const char *s, size_t len);
/* Bytes of the compact serialisation if it is <= limit, else > limit. */
size_t faas_json_size(const json_t *json, size_t limit);

/* s[0..n) as a JSON string; each byte that is not part of valid UTF-8
 * becomes U+FFFD. New reference, or NULL when out of memory. */
json_t *faas_json_text(const char *s, size_t n);
/* {"errorType": type ("Error" when NULL), "errorMessage": msg ("" when
 * NULL)}. New reference; json_null() when out of memory. */
json_t *faas_error_object(const char *type, const char *msg);

/* Appends j's compact JSON text (any value) to out. 0 or -1. */
int faas_json_dump_evbuffer(struct evbuffer *out, json_t *j);

#endif /* FAAS_JSON_H */
