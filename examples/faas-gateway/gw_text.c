/*
 * gw_text.c - escaped printing for the faas-gateway (see gw_text.h).
 *
 * Backslashes are left as they are: the library's own escapes (a log line
 * it already escaped) then print once, not doubled.
 */
#include <stdarg.h>
#include <string.h>

#include <event2/buffer.h>

#include "gw_text.h"

int gw_text_escape(struct evbuffer *out, const char *s)
{
    const unsigned char *u = (const unsigned char *)s, *run;

    if (!s)
        return 0;
    while (*u) {
        /* the longest run that needs nothing */
        for (run = u; *u >= 0x20 && *u != 0x7f && !(u[0] == 0xc2 && u[1] >= 0x80 &&
                                                     u[1] <= 0x9f);
             u++)
            ;
        if (u > run && evbuffer_add(out, run, (size_t)(u - run)) != 0)
            return -1;
        if (!*u)
            break;
        if (*u == '\n' || *u == '\r' || *u == '\t') {
            if (evbuffer_add_printf(out, "\\%c", *u == '\n' ? 'n' : *u == '\r' ? 'r' : 't') < 0)
                return -1;
            u++;
        } else if (*u == 0xc2) {
            if (evbuffer_add_printf(out, "\\u%04x", (unsigned)u[1]) < 0)
                return -1;
            u += 2;
        } else {
            if (evbuffer_add_printf(out, "\\x%02x", (unsigned)*u) < 0)
                return -1;
            u++;
        }
    }
    return 0;
}

int gw_text_printf(struct evbuffer *out, const char *fmt, ...)
{
    const char *f = fmt, *pct;
    va_list ap;
    int rc = 0;

    va_start(ap, fmt);
    while (rc == 0 && *f) {
        pct = strchr(f, '%');
        if (!pct) {
            rc = evbuffer_add(out, f, strlen(f));
            break;
        }
        if (pct > f && (rc = evbuffer_add(out, f, (size_t)(pct - f))) != 0)
            break;
        if (pct[1] == 's')
            rc = gw_text_escape(out, va_arg(ap, const char *));
        else if (pct[1] == '%')
            rc = evbuffer_add(out, "%", 1);
        else
            rc = -1; /* not a conversion this printer has */
        f = pct[1] ? pct + 2 : pct + 1;
    }
    va_end(ap);
    return rc;
}

void gw_text_flush(struct evbuffer *out, FILE *f)
{
    size_t n;

    evbuffer_add(out, "\n", 1);
    n = evbuffer_get_length(out);
    fwrite(evbuffer_pullup(out, -1), 1, n, f);
    fflush(f);
    evbuffer_drain(out, n);
}

void gw_text_puts(FILE *f, const char *line)
{
    struct evbuffer *b = evbuffer_new();

    if (!b || gw_text_escape(b, line) != 0) {
        /* out of memory: the line is lost rather than printed raw */
        fputs("(a line could not be printed: out of memory)\n", f);
    } else {
        gw_text_flush(b, f);
    }
    if (b)
        evbuffer_free(b);
}
