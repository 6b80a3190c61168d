/*
 * test_json.c - json.c: text as JSON strings, the error object, compact
 * output to an evbuffer (small and past the gathering buffer), and the
 * sizes against what jansson writes.
 */
#include "testutil.h"

#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "faas_int.h"

static void test_text(void **state)
{
    json_t *j;
    char big[1000];
    (void)state;
    j = faas_json_text("caf\xc3\xa9", 5); /* valid UTF-8 stays */
    assert_non_null(j);
    assert_string_equal(json_string_value(j), "caf\xc3\xa9");
    json_decref(j);
    j = faas_json_text("a\xff" "b\xc3", 4); /* each stray byte: U+FFFD */
    assert_non_null(j);
    assert_int_equal(json_string_length(j), 8);
    assert_memory_equal(json_string_value(j), "a\xef\xbf\xbd" "b\xef\xbf\xbd", 8);
    json_decref(j);
    j = faas_json_text("a\0b", 3); /* NUL kept */
    assert_int_equal(json_string_length(j), 3);
    json_decref(j);
    j = faas_json_text("", 0);
    assert_string_equal(json_string_value(j), "");
    json_decref(j);
    memset(big, 0x80, sizeof big); /* past the stack buffer */
    j = faas_json_text(big, sizeof big);
    assert_non_null(j);
    assert_int_equal(json_string_length(j), 3 * sizeof big);
    json_decref(j);
}

static void test_error_object(void **state)
{
    json_t *o;
    (void)state;
    o = faas_error_object("Boom", "it broke");
    assert_string_equal(json_string_value(json_object_get(o, "errorType")), "Boom");
    assert_string_equal(json_string_value(json_object_get(o, "errorMessage")), "it broke");
    json_decref(o);
    o = faas_error_object(NULL, NULL);
    assert_string_equal(json_string_value(json_object_get(o, "errorType")), "Error");
    assert_string_equal(json_string_value(json_object_get(o, "errorMessage")), "");
    json_decref(o);
}

/* out's text equals json_dumps of j. */
static void check_dump(json_t *j)
{
    struct evbuffer *out = evbuffer_new();
    char *want = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
    size_t n;
    assert_non_null(out);
    assert_non_null(want);
    assert_int_equal(evbuffer_add(out, "<", 1), 0);
    assert_int_equal(faas_json_dump_evbuffer(out, j), 0);
    n = evbuffer_get_length(out);
    assert_int_equal(n, 1 + strlen(want));
    assert_memory_equal((char *)evbuffer_pullup(out, -1) + 1, want, n - 1);
    free(want);
    evbuffer_free(out);
}

static void test_dump(void **state)
{
    json_t *arr = json_array(), *num = json_integer(-42);
    char *s = malloc(10000);
    int i;
    (void)state;
    check_dump(json_null());
    check_dump(num);
    json_decref(num);
    for (i = 0; i < 2000; i++) /* many small tokens, over 4 KiB in all */
        json_array_append_new(arr, json_integer(i));
    memset(s, 'x', 9999);
    s[9999] = '\0';
    json_array_append_new(arr, json_string(s)); /* one token over 4 KiB */
    json_array_append_new(arr, json_pack("{s:s}", "k", "v\n\"\\"));
    check_dump(arr);
    json_decref(arr);
    free(s);
}

static void test_sizes(void **state)
{
    const char *docs[] = { "null", "\"\"", "\"a\\u0001\\n\\\"\"", "[1,-20,300000,true,false]",
                           "{\"k\":[{},[]],\"\\u00e9\":1.5}", "[\"\\u20ac\", 0.1]" };
    size_t i;
    (void)state;
    for (i = 0; i < sizeof docs / sizeof *docs; i++) {
        json_t *j = json_loads(docs[i], JSON_DECODE_ANY, NULL);
        size_t n = json_dumpb(j, NULL, 0, JSON_COMPACT | JSON_ENCODE_ANY);
        assert_non_null(j);
        assert_int_equal(faas_json_bytes(j), n);
        assert_true(faas_json_size(j, 1 << 20) >= n); /* a bound under the limit */
        assert_true(faas_json_size(j, n - 1) > n - 1); /* over: says so */
        assert_int_equal(faas_json_size(j, n), n);     /* at the limit: exact */
        json_decref(j);
    }
    assert_int_equal(faas_json_size(NULL, 10), 4);
    assert_int_equal(faas_json_bytes(NULL), 4);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_text),
        cmocka_unit_test(test_error_object),
        cmocka_unit_test(test_dump),
        cmocka_unit_test(test_sizes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
