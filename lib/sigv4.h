/*
 * sigv4.h - the parts of AWS Signature Version 4 that read a request's
 * Authorization and X-Amz-Date headers (sigv4.c; pure). The signer itself,
 * faas_sigv4_signature, and its input are declared in faas_int.h.
 */
#ifndef FAAS_SIGV4_H
#define FAAS_SIGV4_H

#include <stddef.h>
#include <stdint.h>

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
