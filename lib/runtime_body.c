/*
 * runtime_body.c - what a Lambda runtime posts, made into a result: a
 * response body as the payload, and an error body, header or trailers as
 * Lambda's error object (runtime_body.h).
 *
 * Pure: bytes in, JSON out; no loop, no runtime. Called by runtime_api.c
 * (the Runtime API's /response, /error and /init/error). Calls jansson,
 * json.c's text helper, libsodium's base64 and the allocators.
 */
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "faas_int.h"
#include "runtime_body.h"

/* A JSON string of j's compact text, or NULL. */
static json_t *json_text(const json_t *j)
{
    size_t n = json_dumpb(j, NULL, 0, JSON_COMPACT | JSON_ENCODE_ANY);
    char *buf;
    json_t *s;

    if (n == 0 || !(buf = faas_malloc(n)))
        return NULL;
    json_dumpb(j, buf, n, JSON_COMPACT | JSON_ENCODE_ANY);
    s = faas_json_text(buf, n);
    free(buf);
    return s;
}

/* The body as a result payload: JSON, else a JSON string of the text;
 * empty: null. NULL when out of memory. */
json_t *faas_runtime_body_payload(const char *p, size_t n)
{
    json_t *j;
    if (n == 0)
        return json_null();
    if ((j = json_loadb(p, n, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL)) != NULL)
        return j;
    return faas_json_text(p, n);
}

/*
 * An error object from a runtime's error body: {errorMessage, errorType,
 * stackTrace} when it is a JSON object, else the text as the message.
 * `type` (a header or trailer) wins over the body's errorType; then dflt.
 */
json_t *faas_runtime_body_error(const char *p, size_t n, const char *type, const char *dflt)
{
    json_t *body = n ? json_loadb(p, n, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL) : NULL;
    json_t *err = json_object(), *msg = NULL, *t;

    if (!err) {
        json_decref(body);
        return NULL;
    }
    if (json_is_object(body)) {
        if (!type && json_is_string(t = json_object_get(body, "errorType")))
            type = json_string_value(t);
        if (json_is_string(t = json_object_get(body, "errorMessage")))
            msg = json_incref(t);
        else if (t && !json_is_null(t))
            msg = json_text(t);
    } else if (json_is_string(body)) {
        msg = json_incref(body);
    } else if (n) {
        msg = faas_json_text(p, n);
    }
    if (json_object_set_new(err, "errorType", json_string(type ? type : dflt)) != 0 ||
        json_object_set_new(err, "errorMessage", msg ? msg : json_string("")) != 0 ||
        (json_is_object(body) && (t = json_object_get(body, "stackTrace")) != NULL &&
         json_object_set(err, "stackTrace", t) != 0)) {
        json_decref(err);
        err = NULL;
    }
    json_decref(body);
    return err;
}

/* The error a streaming response reported in its trailers. */
json_t *faas_runtime_body_trailers(const char *type, const char *b64)
{
    size_t n = b64 ? strlen(b64) : 0, len = 0;
    unsigned char *bin;
    json_t *err;

    if (n == 0)
        return faas_runtime_body_error(NULL, 0, type, "Unhandled");
    if (!(bin = faas_malloc(n / 4 * 3 + 3)))
        return NULL;
    if (sodium_base642bin(bin, n / 4 * 3 + 3, b64, n, " \t", &len, NULL,
                          sodium_base64_VARIANT_ORIGINAL) != 0)
        err = faas_runtime_body_error(b64, n, type, "Unhandled"); /* not base64: the text */
    else
        err = faas_runtime_body_error((const char *)bin, len, type, "Unhandled");
    free(bin);
    return err;
}
