/*
 * test_text.c - text.c: UTF-8 validation at its edges, hex digits,
 * percent-decoding, the cut of a partial UTF-8 sequence, log-line escapes
 * and string vectors.
 */
#include "testutil.h"

#include <stdlib.h>
#include <string.h>

#include "faas_int.h"

#define U8(s) ((const unsigned char *)(s))

static void test_utf8_seq(void **state)
{
    (void)state;
    assert_int_equal(faas_utf8_seq(U8("A"), 1), 1);
    assert_int_equal(faas_utf8_seq(U8("\xc3\xa9"), 2), 2);          /* é */
    assert_int_equal(faas_utf8_seq(U8("\xe2\x82\xac"), 3), 3);      /* € */
    assert_int_equal(faas_utf8_seq(U8("\xf0\x9f\x98\x80"), 4), 4);  /* U+1F600 */
    assert_int_equal(faas_utf8_seq(U8("\xf4\x8f\xbf\xbf"), 4), 4);  /* U+10FFFF */
    assert_int_equal(faas_utf8_seq(U8("\xed\x9f\xbf"), 3), 3);      /* U+D7FF */
    assert_int_equal(faas_utf8_seq(U8("\xee\x80\x80"), 3), 3);      /* U+E000 */
    /* Overlong forms. */
    assert_int_equal(faas_utf8_seq(U8("\xc0\x80"), 2), 0);
    assert_int_equal(faas_utf8_seq(U8("\xc1\xbf"), 2), 0);
    assert_int_equal(faas_utf8_seq(U8("\xe0\x9f\xbf"), 3), 0);
    assert_int_equal(faas_utf8_seq(U8("\xf0\x8f\xbf\xbf"), 4), 0);
    /* Surrogates, and past U+10FFFF. */
    assert_int_equal(faas_utf8_seq(U8("\xed\xa0\x80"), 3), 0);
    assert_int_equal(faas_utf8_seq(U8("\xed\xbf\xbf"), 3), 0);
    assert_int_equal(faas_utf8_seq(U8("\xf4\x90\x80\x80"), 4), 0);
    assert_int_equal(faas_utf8_seq(U8("\xf5\x80\x80\x80"), 4), 0);
    /* Lone continuation, bad continuation, truncated. */
    assert_int_equal(faas_utf8_seq(U8("\x80"), 1), 0);
    assert_int_equal(faas_utf8_seq(U8("\xc3\x28"), 2), 0);
    assert_int_equal(faas_utf8_seq(U8("\xe2\x82\xac"), 2), 0);
    assert_int_equal(faas_utf8_seq(U8("\xff"), 1), 0);
}

static void test_utf8_valid(void **state)
{
    (void)state;
    assert_true(faas_utf8_valid("", 0));
    assert_true(faas_utf8_valid("plain ascii", 11));
    assert_true(faas_utf8_valid("a\0b", 3)); /* NUL is UTF-8 */
    assert_true(faas_utf8_valid("caf\xc3\xa9 \xe2\x82\xac", 9));
    assert_false(faas_utf8_valid("caf\xc3", 4));
    assert_false(faas_utf8_valid("\xed\xa0\x80", 3));
    assert_false(faas_utf8_valid("ok\x80", 3));
}

static void test_utf8_whole(void **state)
{
    (void)state;
    assert_int_equal(faas_utf8_whole("abc", 3), 3);
    assert_int_equal(faas_utf8_whole("a\xe2\x82\xac", 4), 4);
    assert_int_equal(faas_utf8_whole("a\xe2\x82", 3), 1);   /* € cut: dropped */
    assert_int_equal(faas_utf8_whole("a\xe2", 2), 1);
    assert_int_equal(faas_utf8_whole("a\xf0\x9f\x98", 4), 1);
    assert_int_equal(faas_utf8_whole("\x80\x80", 2), 2);    /* no lead: as is */
    assert_int_equal(faas_utf8_whole("", 0), 0);
}

static void test_hexval(void **state)
{
    int c;
    (void)state;
    for (c = 0; c < 256; c++) {
        int want = c >= '0' && c <= '9' ? c - '0'
                   : c >= 'a' && c <= 'f' ? c - 'a' + 10
                   : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                          : -1;
        assert_int_equal(faas_hexval((unsigned char)c), want);
    }
}

static void check_pct(const char *in, int plus, const char *want, size_t wantlen)
{
    char out[64];
    size_t n = faas_pct_decode(out, in, strlen(in), plus);
    assert_int_equal(n, wantlen);
    assert_memory_equal(out, want, wantlen);
}

static void test_pct_decode(void **state)
{
    size_t i = 0;
    (void)state;
    check_pct("", 0, "", 0);
    check_pct("abc", 0, "abc", 3);
    check_pct("a%20b", 0, "a b", 3);
    check_pct("%41%4a%4A", 0, "AJJ", 3);
    check_pct("%e2%82%AC", 0, "\xe2\x82\xac", 3);
    check_pct("%00x", 0, "\0x", 2);
    check_pct("a+b", 0, "a+b", 3);
    check_pct("a+b", 1, "a b", 3);
    check_pct("%2B", 1, "+", 1);   /* an escaped '+' stays a '+' */
    check_pct("100%", 0, "100%", 4); /* '%' without two hex digits: itself */
    check_pct("%4", 0, "%4", 2);
    check_pct("%4g", 0, "%4g", 3);
    check_pct("%%41", 0, "%A", 2);
    check_pct("%zz%41", 0, "%zzA", 4);
    /* faas_pct_next reads one byte and says how far it went. */
    assert_int_equal(faas_pct_next("%41b", 4, &i, 0), 'A');
    assert_int_equal(i, 3);
    assert_int_equal(faas_pct_next("%41b", 4, &i, 0), 'b');
    assert_int_equal(i, 4);
}

static void test_log_escape(void **state)
{
    char out[16];
    (void)state;
    assert_int_equal(faas_log_escape(out, sizeof out, "a\nb\tc", 5), 7);
    assert_string_equal(out, "a\\nb\\tc");
    assert_int_equal(faas_log_escape(out, sizeof out, "\x01\x7f", 2), 12);
    assert_string_equal(out, "\\u0001\\u007f");
    /* Never half an escape: 10 bytes then "\u0001" does not fit in 15. */
    assert_int_equal(faas_log_escape(out, sizeof out, "0123456789\x01", 11), 10);
    assert_string_equal(out, "0123456789");
    /* Never half a UTF-8 sequence. */
    assert_int_equal(faas_log_escape(out, sizeof out, "01234567890123\xe2\x82\xac", 17), 14);
    assert_string_equal(out, "01234567890123");
    assert_int_equal(faas_log_escape(out, 0, "x", 1), 0);
}

static void test_strv(void **state)
{
    const char *src[] = { "A=1", "", "B=two", NULL };
    char **v;
    (void)state;
    v = faas_strv_dup(src);
    assert_non_null(v);
    assert_string_equal(v[0], "A=1");
    assert_string_equal(v[1], "");
    assert_string_equal(v[2], "B=two");
    assert_null(v[3]);
    assert_ptr_not_equal(v[0], src[0]);
    faas_strv_free(v);
    v = faas_strv_dup(NULL);
    assert_non_null(v);
    assert_null(v[0]);
    faas_strv_free(v);
    faas_strv_free(NULL);
    /* Out of memory on the second string: NULL, nothing leaked. */
    atomic_store(&faas_alloc_fail_countdown, 2);
    assert_null(faas_strv_dup(src));
    atomic_store(&faas_alloc_fail_countdown, -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_utf8_seq),   cmocka_unit_test(test_utf8_valid),
        cmocka_unit_test(test_utf8_whole), cmocka_unit_test(test_hexval),
        cmocka_unit_test(test_pct_decode), cmocka_unit_test(test_log_escape),
        cmocka_unit_test(test_strv),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
