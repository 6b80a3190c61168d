/*
 * test_hash.c - hash.c: the intrusive table that the registry, the
 * batchers and the watches share. Insert, find, remove and grow with many
 * keys; records that share a hash; removal while walking; a grow that runs
 * out of memory leaves the table as it was.
 */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "faas_int.h"

struct rec {
    struct faas_hnode hnode;
    int seen;
    char key[16];
};

#define REC_OF(n) FAAS_CONTAINER_OF(n, struct rec, hnode)

static int key_eq(const struct faas_hnode *n, const void *key)
{
    return strcmp(REC_OF(n)->key, key) == 0;
}

static struct rec *find(const struct faas_htable *t, const char *key)
{
    struct faas_hnode *n = faas_htable_find(t, faas_hash_str(key), key_eq, key);
    return n ? REC_OF(n) : NULL;
}

static void test_fnv1a(void **state)
{
    (void)state;
    /* The FNV-1a 32-bit test vectors. */
    assert_int_equal(faas_hash_str(""), 0x811c9dc5u);
    assert_int_equal(faas_hash_str("a"), 0xe40c292cu);
    assert_int_equal(faas_hash_str("foobar"), 0xbf9cf968u);
}

static void test_many(void **state)
{
    enum { N = 20000 };
    struct faas_htable t;
    struct rec *r = calloc(N, sizeof *r);
    struct faas_hnode *n, *next;
    size_t i, walked = 0;
    char key[16];
    (void)state;

    assert_non_null(r);
    assert_int_equal(faas_htable_init(&t, 5), 0);
    assert_int_equal(t.nbuckets, 8); /* rounded up to a power of two */
    for (i = 0; i < N; i++) {
        snprintf(r[i].key, sizeof r[i].key, "k%zu", i);
        assert_int_equal(faas_htable_reserve(&t), 0);
        faas_htable_insert(&t, &r[i].hnode, faas_hash_str(r[i].key));
        assert_true(t.count <= t.nbuckets); /* grown before it got full */
    }
    assert_int_equal(t.count, N);
    assert_true(t.nbuckets >= N && t.nbuckets < 4 * (size_t)N);
    for (i = 0; i < N; i++) {
        snprintf(key, sizeof key, "k%zu", i);
        assert_ptr_equal(find(&t, key), &r[i]);
    }
    assert_null(find(&t, "k20000"));
    assert_null(find(&t, "nope"));
    /* Every record once in a walk. */
    for (n = faas_htable_first(&t); n; n = faas_htable_next(&t, n)) {
        REC_OF(n)->seen++;
        walked++;
    }
    assert_int_equal(walked, N);
    for (i = 0; i < N; i++)
        assert_int_equal(r[i].seen, 1);
    /* Remove the odd ones while walking. */
    for (n = faas_htable_first(&t); n; n = next) {
        next = faas_htable_next(&t, n);
        if ((REC_OF(n) - r) % 2)
            faas_htable_remove(&t, n);
    }
    assert_int_equal(t.count, N / 2);
    for (i = 0; i < N; i++) {
        snprintf(key, sizeof key, "k%zu", i);
        if (i % 2)
            assert_null(find(&t, key));
        else
            assert_ptr_equal(find(&t, key), &r[i]);
    }
    /* Removing twice is harmless; a removed record can go in again. */
    faas_htable_remove(&t, &r[1].hnode);
    assert_int_equal(t.count, N / 2);
    faas_htable_insert(&t, &r[1].hnode, faas_hash_str(r[1].key));
    assert_ptr_equal(find(&t, "k1"), &r[1]);
    assert_int_equal(t.count, N / 2 + 1);
    faas_htable_fini(&t);
    assert_null(t.buckets);
    free(r);
}

/* Records with the same hash: told apart by the callback, removed from the
 * middle of a chain. */
static void test_same_hash(void **state)
{
    struct faas_htable t;
    struct rec a = { .key = "a" }, b = { .key = "b" }, c = { .key = "c" };
    (void)state;
    assert_int_equal(faas_htable_init(&t, 16), 0);
    faas_htable_insert(&t, &a.hnode, 7);
    faas_htable_insert(&t, &b.hnode, 7);
    faas_htable_insert(&t, &c.hnode, 7 + 16); /* same bucket, other hash */
    assert_ptr_equal(faas_htable_find(&t, 7, key_eq, "a"), &a.hnode);
    assert_ptr_equal(faas_htable_find(&t, 7, key_eq, "b"), &b.hnode);
    assert_null(faas_htable_find(&t, 7, key_eq, "c")); /* the hash must match too */
    assert_ptr_equal(faas_htable_find(&t, 23, key_eq, "c"), &c.hnode);
    faas_htable_remove(&t, &b.hnode);
    assert_null(faas_htable_find(&t, 7, key_eq, "b"));
    assert_ptr_equal(faas_htable_find(&t, 7, key_eq, "a"), &a.hnode);
    assert_ptr_equal(faas_htable_find(&t, 23, key_eq, "c"), &c.hnode);
    faas_htable_remove(&t, &c.hnode);
    faas_htable_remove(&t, &a.hnode);
    assert_int_equal(t.count, 0);
    assert_null(faas_htable_first(&t));
    faas_htable_fini(&t);
}

static void test_grow_fails(void **state)
{
    struct faas_htable t;
    struct rec r[4] = { { .key = "w" }, { .key = "x" }, { .key = "y" }, { .key = "z" } };
    int i;
    (void)state;
    assert_int_equal(faas_htable_init(&t, 2), 0);
    for (i = 0; i < 2; i++) {
        assert_int_equal(faas_htable_reserve(&t), 0);
        faas_htable_insert(&t, &r[i].hnode, faas_hash_str(r[i].key));
    }
    assert_int_equal(t.nbuckets, 2);
    atomic_store(&faas_alloc_fail_countdown, 0);
    assert_int_equal(faas_htable_reserve(&t), FAAS_ENOMEM);
    atomic_store(&faas_alloc_fail_countdown, -1);
    assert_int_equal(t.nbuckets, 2);
    assert_ptr_equal(find(&t, "w"), &r[0]);
    assert_ptr_equal(find(&t, "x"), &r[1]);
    /* Without the room, an insert still works: the chains grow. */
    faas_htable_insert(&t, &r[2].hnode, faas_hash_str(r[2].key));
    assert_int_equal(faas_htable_reserve(&t), 0);
    assert_int_equal(t.nbuckets, 4);
    faas_htable_insert(&t, &r[3].hnode, faas_hash_str(r[3].key));
    for (i = 0; i < 4; i++)
        assert_ptr_equal(find(&t, r[i].key), &r[i]);
    faas_htable_fini(&t);
    /* An init that runs out of memory leaves an empty, finishable table. */
    atomic_store(&faas_alloc_fail_countdown, 0);
    assert_int_equal(faas_htable_init(&t, 8), FAAS_ENOMEM);
    atomic_store(&faas_alloc_fail_countdown, -1);
    assert_null(faas_htable_first(&t));
    faas_htable_fini(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fnv1a),
        cmocka_unit_test(test_many),
        cmocka_unit_test(test_same_hash),
        cmocka_unit_test(test_grow_fails),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
