/*
 * sigv4.h - AWS Signature Version 4 (sigv4.c; pure): the signer, and the
 * parts that read a request's Authorization and X-Amz-Date headers.
 */
#ifndef FAAS_SIGV4_H
#define FAAS_SIGV4_H

#include <stddef.h>
#include <stdint.h>

struct faas_http_header; /* http_event.h */

/*
 * The signer's input, for the Invoke API and its tests. The canonical request is built from the request as it
 * arrived: the raw path with each byte that is not unreserved (or '/')
 * percent-encoded again, as AWS does for every service but S3; the raw
 * query's parameters decoded, encoded again and sorted; the headers named
 * in signed_headers, each name's values trimmed, inner runs of blanks made
 * one space, and joined by ','.
 */
struct faas_sigv4_in {
    const char *method;                     /* "POST" */
    const char *path;                       /* raw, as sent */
    const char *query;                      /* raw, without '?'; NULL: none */
    const struct faas_http_header *headers; /* as received (http_event.h) */
    size_t nheaders;
    const char *signed_headers;             /* "host;x-amz-date" */
    const char *amz_date;                   /* "20150830T123600Z" */
    const char *scope;                      /* "20150830/us-east-1/lambda/aws4_request" */
    const char *payload_hash;               /* 64 lowercase hex digits */
};
/* Writes the signature (64 hex digits and a NUL) made with `secret`.
 * Returns 0, FAAS_EINVAL (a malformed scope) or FAAS_ENOMEM. */
int faas_sigv4_signature(const struct faas_sigv4_in *in, const char *secret, char out[65]);

/* Copies the value of "key=" in the Authorization header's parameter list
 * (comma-separated, blanks around) into out (size bytes, NUL-terminated).
 * Returns 0, or -1 when it is absent, empty or too long. */
int faas_sigv4_auth_param(const char *params, const char *key, char *out, size_t size);

/* X-Amz-Date's "YYYYMMDDTHHMMSSZ" to seconds since the epoch in *out.
 * Returns 0, or -1 when it is malformed. */
int faas_sigv4_parse_date(const char *s, int64_t *out);

/* Seconds since the epoch as "YYYYMMDDTHHMMSSZ" (16 characters and a NUL). */
void faas_sigv4_format_date(int64_t t, char out[17]);

#endif /* FAAS_SIGV4_H */
