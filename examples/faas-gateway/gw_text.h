/*
 * gw_text.h - the faas-gateway's printing of text it did not write itself:
 * log lines of functions, error messages, request paths, answers.
 *
 * Each record the gateway prints is one line: control characters in such
 * text are escaped (\n, \r, \t, \xHH, and \u0080..\u009f for the C1
 * controls in UTF-8), so a handler cannot forge a line or move a
 * terminal's cursor. The library escapes log lines too; this is the
 * printer's own guarantee, whatever reaches it.
 */
#ifndef GW_TEXT_H
#define GW_TEXT_H

#include <stdio.h>

struct evbuffer;

/* Appends `s` (NULL: nothing) to `out`, escaped. Returns 0 or -1 (out of
 * memory). */
int gw_text_escape(struct evbuffer *out, const char *s);

/* Appends `fmt` to `out`: `fmt` has only %s conversions (and %%), and
 * each argument is appended escaped. Returns 0 or -1. */
int gw_text_printf(struct evbuffer *out, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Writes what `out` holds and a newline to `f` in one write, and empties
 * `out`. */
void gw_text_flush(struct evbuffer *out, FILE *f);

/* Writes `line` escaped and a newline to `f` in one write. */
void gw_text_puts(FILE *f, const char *line);

#endif /* GW_TEXT_H */
