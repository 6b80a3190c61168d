/*
 * runtime_body.h - a Lambda runtime's posted bodies made into results
 * (runtime_body.c): pure, shared by the Runtime API (runtime_api.c) and
 * its tests.
 */
#ifndef FAAS_RUNTIME_BODY_H
#define FAAS_RUNTIME_BODY_H

#include <stddef.h>

#include <jansson.h>

/* A response body as the result payload: its JSON, else a JSON string of
 * the text; empty: null. New reference, NULL when out of memory. */
json_t *faas_runtime_body_payload(const char *p, size_t n);

/*
 * An error object from a runtime's error body: {errorMessage, errorType,
 * stackTrace} when it is a JSON object, else the text as the message.
 * `type` (a header or trailer) wins over the body's errorType; then dflt.
 * New reference, NULL when out of memory.
 */
json_t *faas_runtime_body_error(const char *p, size_t n, const char *type, const char *dflt);

/* The error a streaming response reported in its trailers: the type, and
 * the body in base64 (or as text when it is not base64). */
json_t *faas_runtime_body_trailers(const char *type, const char *b64);

#endif /* FAAS_RUNTIME_BODY_H */
