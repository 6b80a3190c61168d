/*
 * text.c - bytes as text: UTF-8 validation, hex digits, percent-decoding,
 * log-line escaping and NULL-terminated string vectors.
 *
 * Owns the byte-level rules every text path of lib/ shares, so that the
 * gateway's router, the API Gateway event, the Invoke API and the log agree
 * on them: what counts as UTF-8 (RFC 3629: no overlong forms, no
 * surrogates, nothing over U+10FFFF), what a percent escape is (two hex
 * digits; a '%' without them is itself), and how handler text becomes one
 * log line (faas_log_escape never cuts an escape or a UTF-8 sequence).
 *
 * Pure functions of their arguments; they allocate only in faas_strv_dup.
 * Called by json.c, route.c, http_event.c, sigv4.c, lambda_api.c,
 * runtime_api.c, exec_process.c, exec_process_io.c, ctx.c, metrics.c and
 * runtime.c. Calls only libc and alloc.c. Hex encoding is libsodium's
 * sodium_bin2hex.
 */
#include <stdlib.h>
#include <string.h>

#include "faas_int.h"

/* ---- UTF-8 ------------------------------------------------------------ */

size_t faas_utf8_seq(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    size_t len, i;
    unsigned cp;

    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        len = 2, cp = c & 0x1f;
    else if (c >= 0xe0 && c <= 0xef)
        len = 3, cp = c & 0x0f;
    else if (c >= 0xf0 && c <= 0xf4)
        len = 4, cp = c & 0x07;
    else
        return 0;
    if (n < len)
        return 0;
    for (i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3fu);
    }
    if ((len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
        (len == 4 && (cp < 0x10000 || cp > 0x10ffff)))
        return 0;
    return len;
}

int faas_utf8_valid(const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0, k;
    while (i < n) {
        if (u[i] < 0x80) {
            i++;
            continue;
        }
        if ((k = faas_utf8_seq(u + i, n - i)) == 0)
            return 0;
        i += k;
    }
    return 1;
}

size_t faas_utf8_whole(const char *s, size_t len)
{
    size_t i = len, back = 0, need;
    unsigned char lead;

    while (i > 0 && back < 4 && ((unsigned char)s[i - 1] & 0xc0u) == 0x80u) {
        i--;
        back++;
    }
    if (i == 0)
        return len;
    lead = (unsigned char)s[i - 1];
    if (lead < 0xc0u)
        return len; /* ASCII, or continuation bytes without a lead: as they are */
    need = lead >= 0xf0u ? 4 : lead >= 0xe0u ? 3 : 2;
    return back + 1 < need ? i - 1 : len;
}

/* ---- hex and percent escapes ---------------------------------------- */

int faas_hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

unsigned char faas_pct_next(const char *s, size_t n, size_t *i, int plus)
{
    unsigned char c = (unsigned char)s[*i];
    int hi, lo;
    if (c == '%' && *i + 2 < n && (hi = faas_hexval((unsigned char)s[*i + 1])) >= 0 &&
        (lo = faas_hexval((unsigned char)s[*i + 2])) >= 0) {
        *i += 3;
        return (unsigned char)(hi * 16 + lo);
    }
    (*i)++;
    return plus && c == '+' ? ' ' : c;
}

size_t faas_pct_decode(char *dst, const char *src, size_t n, int plus)
{
    size_t i = 0, o = 0;
    while (i < n)
        dst[o++] = (char)faas_pct_next(src, n, &i, plus);
    return o;
}

/* ---- log lines -------------------------------------------------------- */

size_t faas_log_escape(char *out, size_t size, const char *in, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    size_t i, o = 0;
    int cut = 0;

    if (size == 0)
        return 0;
    /* Callers cut their input at their own bounds (a line's, a format
     * buffer's) before it comes here: a sequence cut at its end goes, as
     * one cut at the end of out does below. */
    len = faas_utf8_whole(in, len);
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)in[i];
        char esc[6];
        size_t n = 0;

        if (c == '\n' || c == '\r' || c == '\t') {
            esc[0] = '\\';
            esc[1] = c == '\n' ? 'n' : c == '\r' ? 'r' : 't';
            n = 2;
        } else if (c < 0x20u || c == 0x7fu) {
            memcpy(esc, "\\u00", 4);
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15u];
            n = 6;
        }
        if (o + (n ? n : 1) > size - 1) {
            cut = 1;
            break; /* never half an escape */
        }
        if (n) {
            memcpy(out + o, esc, n);
            o += n;
        } else {
            out[o++] = (char)c;
        }
    }
    if (cut)
        o = faas_utf8_whole(out, o);
    out[o] = '\0';
    return o;
}

/* ---- string vectors --------------------------------------------------- */

void faas_strv_free(char **v)
{
    size_t i;
    if (!v)
        return;
    for (i = 0; v[i]; i++)
        free(v[i]);
    free(v);
}

char **faas_strv_dup(const char *const *v)
{
    size_t n = 0, i;
    char **out;
    while (v && v[n])
        n++;
    out = faas_calloc(n + 1, sizeof *out);
    if (!out)
        return NULL;
    for (i = 0; i < n; i++) {
        if (!(out[i] = faas_strdup(v[i]))) {
            faas_strv_free(out);
            return NULL;
        }
    }
    return out;
}
