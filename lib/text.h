/*
 * text.h - bytes as text: UTF-8, hex digits, percent-decoding, log-line
 * escaping and string vectors (text.c).
 *
 * Included by every file through faas_int.h.
 */
#ifndef FAAS_TEXT_H
#define FAAS_TEXT_H

#include <stddef.h>

/* Length of the valid UTF-8 sequence at s (n bytes there, n >= 1), or 0:
 * no overlong forms, no surrogates, nothing over U+10FFFF. */
size_t faas_utf8_seq(const unsigned char *s, size_t n);
/* The length of s[0..len) without a UTF-8 sequence cut at its end (a
 * lead byte whose continuation bytes are missing); other bytes count as
 * they are. */
size_t faas_utf8_whole(const char *s, size_t len);
/* 1 when s[0..n) is valid UTF-8 (NUL bytes included), else 0. */
int faas_utf8_valid(const char *s, size_t n);

/* The value of a hexadecimal digit (either case), or -1. */
int faas_hexval(unsigned char c);

/* One byte of s[0..n) from *i, percent-decoded: "%XX" with two hex digits
 * is that byte, any other '%' is itself; '+' is a space when plus.
 * Advances *i past what it read (*i < n). */
unsigned char faas_pct_next(const char *s, size_t n, size_t *i, int plus);
/* Percent-decodes src (n bytes) into dst (n bytes at least; no NUL added),
 * as faas_pct_next reads it. Returns the decoded length. */
size_t faas_pct_decode(char *dst, const char *src, size_t n, int plus);

/* Handler text as one log line: \n, \r, \t as those two characters, other
 * bytes below 0x20 and 0x7f as \u00XX, everything else (UTF-8) as it is.
 * Writes at most size - 1 bytes and a NUL to out, never half an escape or a
 * UTF-8 sequence; returns the bytes written. Every path from a handler's
 * text to the log callback goes through it. */
size_t faas_log_escape(char *out, size_t size, const char *in, size_t len);

/* Frees a NULL-terminated array of owned strings (NULL ok). */
void faas_strv_free(char **v);
/* A copy of a NULL-terminated array of strings (NULL: an empty one), or
 * NULL when out of memory. */
char **faas_strv_dup(const char *const *v);

#endif /* FAAS_TEXT_H */
