/*
 * test_random.c - random.c: request ids are UUIDv4 strings and do not
 * repeat; two seeds differ; the generator is xoshiro256** (its reference
 * output for a known state).
 */
#include "testutil.h"

#include <stdlib.h>
#include <string.h>

#include "faas_int.h"

static int cmp_id(const void *a, const void *b)
{
    return strcmp(a, b);
}

static void test_request_ids(void **state)
{
    enum { N = 5000 };
    struct event_base *base = event_base_new();
    struct faas_runtime *rt = NULL;
    char(*ids)[FAAS_REQUEST_ID_SIZE] = calloc(N, sizeof *ids);
    size_t i, k;
    (void)state;

    assert_non_null(base);
    assert_non_null(ids);
    assert_int_equal(faas_runtime_new(&rt, base, NULL), 0);
    for (i = 0; i < N; i++) {
        const char *id = ids[i];
        faas_request_id(rt, ids[i]);
        assert_int_equal(strlen(id), 36);
        for (k = 0; k < 36; k++) {
            if (k == 8 || k == 13 || k == 18 || k == 23)
                assert_int_equal(id[k], '-');
            else
                assert_true(faas_hexval((unsigned char)id[k]) >= 0 &&
                            !(id[k] >= 'A' && id[k] <= 'F'));
        }
        assert_int_equal(id[14], '4');                   /* version 4 */
        assert_non_null(strchr("89ab", id[19]));         /* RFC 4122 variant */
    }
    qsort(ids, N, sizeof *ids, cmp_id);
    for (i = 1; i < N; i++)
        assert_int_not_equal(strcmp(ids[i - 1], ids[i]), 0);
    free(ids);
    faas_runtime_free(rt);
    event_base_free(base);
}

static void test_generator(void **state)
{
    uint64_t a[4] = { 0 }, b[4] = { 0 };
    uint64_t s[4] = { 1, 2, 3, 4 };
    (void)state;
    faas_rng_seed(a, a);
    faas_rng_seed(b, b);
    assert_memory_not_equal(a, b, sizeof a);
    /* xoshiro256** from {1, 2, 3, 4}: the reference implementation's first
     * outputs. */
    assert_true(faas_rng_next(s) == UINT64_C(11520));
    assert_true(faas_rng_next(s) == UINT64_C(0));
    assert_true(faas_rng_next(s) == UINT64_C(1509978240));
    assert_true(faas_rng_next(s) == UINT64_C(1215971899390074240));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_request_ids),
        cmocka_unit_test(test_generator),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
