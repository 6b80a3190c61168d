/*
 * countdown.c - a function that streams its response, for the faas-gateway
 * demo: "3\n2\n1\nliftoff\n", one line per faas_ctx_stream_write, a pause
 * between lines.
 *
 * The count is "n" (query string or event, 1..100, default 3), the pause
 * "pause_ms" (0..1000, default 100). With "fail" set it fails after its
 * first line, as a function that breaks mid-stream does.
 *
 * Callers see each line as it is written: an api: route answers 200 with
 * the lines as a chunked body, InvokeWithResponseStream with one
 * PayloadChunk event per line then InvokeComplete, and the plain Invoke
 * API, which does not stream, with the whole text as a JSON string.
 *
 * Build: cc -std=c11 -fPIC -shared -Iinclude -o countdown.so countdown.c
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "faas.h"

int countdown(struct faas_ctx *ctx, json_t *event, json_t **result);

/* A number from the query string (HTTP) or the event (direct), bounded. */
static long param(json_t *event, const char *key, long dflt, long lo, long hi)
{
    json_t *qs = json_object_get(event, "queryStringParameters");
    const char *s = json_string_value(json_object_get(qs, key));
    json_t *v = json_object_get(event, key);
    long n = s ? strtol(s, NULL, 10) : json_is_integer(v) ? (long)json_integer_value(v) : dflt;
    return n < lo ? lo : n > hi ? hi : n;
}

int countdown(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    long n = param(event, "n", 3, 1, 100), ms = param(event, "pause_ms", 100, 0, 1000);
    int fail = param(event, "fail", 0, 0, 1) != 0;
    struct timespec pause = { ms / 1000, (ms % 1000) * 1000000L };
    char line[32];
    int len, rc;

    (void)result; /* a streamed response is the bytes written */
    for (; n > 0; n--) {
        len = snprintf(line, sizeof line, "%ld\n", n);
        if ((rc = faas_ctx_stream_write(ctx, line, (size_t)len)) != 0)
            return rc; /* the caller went away */
        if (fail)
            return faas_ctx_fail(ctx, "Countdown.Aborted", "stopped at %ld", n);
        nanosleep(&pause, NULL);
    }
    return faas_ctx_stream_write(ctx, "liftoff\n", 8);
}
