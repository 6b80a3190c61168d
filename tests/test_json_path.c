/*
 * test_json_path.c - the one dotted-path walker (json_path.c) behind an
 * idempotency key_path and a mapping's partition_key_path: objects (exact
 * name first, then ignoring case), arrays, strings holding JSON, what ends
 * a walk, well-formed paths; and faas_map refusing a malformed
 * partition_key_path as faas_register refuses a malformed key_path.
 */
#include <string.h>

#include "json_path.h"
#include "testutil.h"

static json_t *doc(const char *text)
{
    json_t *j = json_loads(text, JSON_DECODE_ANY, NULL);
    assert_non_null(j);
    return j;
}

/* The string at path, or NULL; the reference the walk returns is dropped
 * after the text is compared. */
static void path_is(json_t *root, const char *path, const char *want)
{
    json_t *v = faas_json_path(root, path);
    if (!want) {
        assert_null(v);
        return;
    }
    assert_non_null(v);
    assert_string_equal(json_string_value(v), want);
    json_decref(v);
}

static void test_objects_and_arrays(void **state)
{
    json_t *j = doc("{\"a\": {\"b\": [\"x\", {\"c\": \"y\"}]}, \"Key\": \"upper\","
                    " \"key\": \"lower\", \"Other\": \"o\", \"n\": null}");
    json_t *v;
    (void)state;

    path_is(j, "a.b.0", "x");
    path_is(j, "a.b.1.c", "y");
    path_is(j, "a.b.2", NULL);          /* past the end */
    path_is(j, "a.b.x", NULL);          /* not an index */
    path_is(j, "a.b.-1", NULL);
    path_is(j, "a.b.0123456789", NULL); /* ten digits */
    path_is(j, "Key", "upper");         /* the exact name wins */
    path_is(j, "key", "lower");
    path_is(j, "other", "o");           /* then ignoring case */
    path_is(j, "OTHER", "o");
    path_is(j, "missing", NULL);
    path_is(j, "Key.deeper", NULL);     /* a string that is not JSON */
    v = faas_json_path(j, "n");
    assert_true(json_is_null(v));              /* null is returned as found */
    json_decref(v);
    v = faas_json_path(j, "a");
    assert_ptr_equal(v, json_object_get(j, "a")); /* in place, a new reference */
    assert_int_equal(v->refcount, 2);
    json_decref(v);
    assert_null(faas_json_path(NULL, "a"));
    assert_null(faas_json_path(j, NULL));
    json_decref(j);
}

/* A string holding JSON is walked into; what is found there outlives the
 * parsed text. */
static void test_strings_holding_json(void **state)
{
    json_t *j = doc("{\"body\": \"{\\\"order\\\": {\\\"id\\\": \\\"o-1\\\"},"
                    " \\\"inner\\\": \\\"{\\\\\\\"deep\\\\\\\": \\\\\\\"d\\\\\\\"}\\\"}\","
                    " \"list\": \"[1, \\\"two\\\"]\"}");
    json_t *v;
    (void)state;

    path_is(j, "body.order.id", "o-1");
    path_is(j, "body.inner.deep", "d"); /* two strings deep */
    path_is(j, "list.1", "two");
    v = faas_json_path(j, "body.order");
    assert_true(json_is_object(v));
    assert_int_equal(v->refcount, 1);         /* ours alone: the text is gone */
    path_is(v, "id", "o-1");
    json_decref(v);
    v = faas_json_path(j, "body"); /* the path ends at the string: itself */
    assert_true(json_is_string(v));
    json_decref(v);
    json_decref(j);
}

static void test_valid(void **state)
{
    (void)state;
    assert_true(faas_json_path_valid("a"));
    assert_true(faas_json_path_valid("a.b.0"));
    assert_false(faas_json_path_valid(""));
    assert_false(faas_json_path_valid(NULL));
    assert_false(faas_json_path_valid(".a"));
    assert_false(faas_json_path_valid("a."));
    assert_false(faas_json_path_valid("a..b"));
}

static int h_ok(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    (void)ctx;
    (void)event;
    (void)result;
    return 0;
}

/* Both options take the same paths: malformed ones are refused alike. */
static void test_options_refuse_alike(void **state)
{
    static const char *const bad[] = { ".a", "a.", "a..b", "" };
    struct faas_runtime_opts ro = FAAS_RUNTIME_OPTS_INIT;
    struct faas_function_opts fo = FAAS_FUNCTION_OPTS_INIT;
    struct faas_idempotency_opts io = FAAS_IDEMPOTENCY_OPTS_INIT;
    struct faas_map_opts mo = FAAS_MAP_OPTS_INIT;
    struct event_base *base = event_base_new();
    struct faas_runtime *rt = NULL;
    size_t i;
    (void)state;

    ro.zygote = 0;
    assert_int_equal(faas_runtime_new(&rt, base, &ro), 0);
    fo.isolation = FAAS_ISOLATION_INLINE;
    assert_int_equal(faas_register(rt, "fn", h_ok, &fo), 0);
    fo.idempotency = &io;
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        io.key_path = bad[i];
        assert_int_equal(faas_register(rt, "idem", h_ok, &fo), FAAS_EINVAL);
        mo.partition_key_path = bad[i];
        assert_int_equal(faas_map(rt, "stream:s", "fn", &mo), FAAS_EINVAL);
    }
    mo.partition_key_path = "body.group";
    assert_true(faas_map(rt, "stream:s", "fn", &mo) >= 0);
    faas_runtime_free(rt);
    event_base_free(base);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_objects_and_arrays),
        cmocka_unit_test(test_strings_holding_json),
        cmocka_unit_test(test_valid),
        cmocka_unit_test(test_options_refuse_alike),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
