/*
 * test_error.c - error codes and strings: faas_strerror(), faas_strerror_name()
 * over the whole FAAS_ERRNO_MAP table, unknown codes, 0, faas_version().
 */
#include "testutil.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>

struct err_entry {
    const char *name;
    int value;
    const char *msg;
    int enum_value;
};

#define TE_ENTRY_(n, v, m) { #n, (v), (m), (int)FAAS_##n },
static const struct err_entry entries[] = { FAAS_ERRNO_MAP(TE_ENTRY_) };
#undef TE_ENTRY_

#define N_ENTRIES (sizeof entries / sizeof entries[0])

static int in_table(int code)
{
    for (size_t i = 0; i < N_ENTRIES; i++)
        if (entries[i].value == code)
            return 1;
    return 0;
}

/* Every code of the table: its message, its name, its enum value. */
static void test_strerror_every_code(void **state)
{
    (void)state;
    assert_true(N_ENTRIES > 0);
    for (size_t i = 0; i < N_ENTRIES; i++) {
        const struct err_entry *e = &entries[i];
        const char *msg = faas_strerror(e->value);
        const char *name = faas_strerror_name(e->value);
        assert_true(e->value < 0);
        assert_int_equal(e->value, e->enum_value);
        assert_non_null(msg);
        assert_string_equal(msg, e->msg);
        assert_non_null(name);
        assert_string_equal(name, e->name);
        /* A static string: the same text on every call. */
        assert_string_equal(faas_strerror(e->value), msg);
    }
}

/* The table itself: distinct values, names and messages. */
static void test_table_distinct(void **state)
{
    (void)state;
    for (size_t i = 0; i < N_ENTRIES; i++) {
        for (size_t j = i + 1; j < N_ENTRIES; j++) {
            assert_int_not_equal(entries[i].value, entries[j].value);
            assert_string_not_equal(entries[i].name, entries[j].name);
            assert_string_not_equal(entries[i].msg, entries[j].msg);
        }
    }
}

/* A few named codes by their enum, to catch a table/enum mismatch. */
static void test_named_codes(void **state)
{
    (void)state;
    assert_string_equal(faas_strerror(FAAS_EINVAL), "invalid argument");
    assert_string_equal(faas_strerror_name(FAAS_EINVAL), "EINVAL");
    assert_string_equal(faas_strerror(FAAS_ETIMEDOUT), "task timed out");
    assert_string_equal(faas_strerror_name(FAAS_ETIMEDOUT), "ETIMEDOUT");
    assert_string_equal(faas_strerror_name(FAAS_ESYS), "ESYS");
    assert_string_equal(faas_strerror_name(FAAS_EIDEMPOTENCY_MISMATCH), "EIDEMPOTENCY_MISMATCH");
    assert_string_equal(faas_strerror(FAAS_ECANCELED),
                        "cancelled: runtime freed or function unregistered");
}

static void test_success(void **state)
{
    (void)state;
    assert_int_equal(FAAS_OK, 0);
    assert_non_null(faas_strerror(0));
    assert_string_equal(faas_strerror(0), "success");
}

static void test_unknown_codes(void **state)
{
    (void)state;
    const int probes[] = { 1, 2, 5, 100, -19, -100, -1000, INT_MIN, INT_MAX, INT_MIN + 1,
                           -(int)N_ENTRIES - 1 };
    for (size_t i = 0; i < sizeof probes / sizeof probes[0]; i++) {
        if (in_table(probes[i]))
            continue;
        const char *msg = faas_strerror(probes[i]);
        assert_non_null(msg);
        assert_string_equal(msg, "unknown error");
        assert_null(faas_strerror_name(probes[i]));
    }
}

/* Every int in a range: never NULL; table codes give their message,
 * everything else but 0 gives "unknown error". */
static void test_range_sweep(void **state)
{
    (void)state;
    int known = 0;
    for (int code = -2000; code <= 2000; code++) {
        const char *msg = faas_strerror(code);
        assert_non_null(msg);
        if (code == 0) {
            assert_string_equal(msg, "success");
        } else if (in_table(code)) {
            known++;
            assert_string_not_equal(msg, "unknown error");
            assert_non_null(faas_strerror_name(code));
        } else {
            assert_string_equal(msg, "unknown error");
            assert_null(faas_strerror_name(code));
        }
    }
    assert_int_equal(known, (int)N_ENTRIES);
}

static void test_version(void **state)
{
    (void)state;
    char want[32];
    const char *v = faas_version();
    assert_non_null(v);
    assert_string_equal(v, FAAS_VERSION_STRING);
    snprintf(want, sizeof want, "%d.%d.%d", FAAS_VERSION_MAJOR, FAAS_VERSION_MINOR,
             FAAS_VERSION_PATCH);
    assert_string_equal(v, want);
    assert_ptr_equal(faas_version(), v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_strerror_every_code),
        cmocka_unit_test(test_table_distinct),
        cmocka_unit_test(test_named_codes),
        cmocka_unit_test(test_success),
        cmocka_unit_test(test_unknown_codes),
        cmocka_unit_test(test_range_sweep),
        cmocka_unit_test(test_version),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
