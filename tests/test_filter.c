/*
 * test_filter.c - EventBridge filter patterns (lib/filter.c).
 *
 * Two tables in tests/data/filter/ (read at run time, so the suite runs from
 * the repository root, as `make test` does):
 *   match.txt    pattern, record, 1 or 0: whether the record matches;
 *   invalid.txt  pattern and text its error message must contain.
 * The C tests below cover what a table cannot: exact error messages and
 * truncation, the out-of-memory pass over a complex pattern (every
 * allocation of faas_filter_compile failed in turn), that matching does not
 * allocate in the common case, and the heap path of a large Kinesis "data".
 */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "faas_int.h"

#define DATA_DIR "tests/data/filter/"

/* ---- reading the tables ------------------------------------------------- */

static json_t *parse_record(const char *text, int lineno)
{
    json_error_t jerr;
    json_t *j = json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
    if (!j)
        fail_msg("line %d: bad record JSON: %s", lineno, jerr.text);
    return j;
}

/* ---- the tables --------------------------------------------------------- */

static void test_match_table(void **state)
{
    FILE *fp = tu_open_data(DATA_DIR, "match.txt");
    struct tu_row r;
    int cases = 0, bad = 0, yes = 0;

    (void)state;
    memset(&r, 0, sizeof r);
    while (tu_read_row(fp, &r, 3)) {
        struct faas_filter *f = NULL;
        char err[256];
        json_t *rec;
        int want, got, rc;

        if (r.nf != 3 || (strcmp(r.f[2], "1") != 0 && strcmp(r.f[2], "0") != 0))
            fail_msg("line %d: want pattern<TAB>record<TAB>1|0", r.lineno);
        want = r.f[2][0] == '1';
        cases++;
        yes += want;
        rc = faas_filter_compile(r.f[0], &f, err, sizeof err);
        if (rc != 0) {
            print_message("match.txt:%d: compile failed (%d): %s\n", r.lineno, rc, err);
            bad++;
            continue;
        }
        rec = parse_record(r.f[1], r.lineno);
        got = faas_filter_match(f, rec);
        if (got != want) {
            print_message("match.txt:%d: %s on %s: got %d, want %d\n", r.lineno, r.f[0],
                          r.f[1], got, want);
            bad++;
        }
        json_decref(rec);
        faas_filter_free(f);
    }
    fclose(fp);
    print_message("match.txt: %d cases (%d matching, %d not)\n", cases, yes, cases - yes);
    assert_int_equal(bad, 0);
    assert_true(cases >= 120);
    assert_true(yes >= 40 && cases - yes >= 40);
}

static void test_invalid_table(void **state)
{
    FILE *fp = tu_open_data(DATA_DIR, "invalid.txt");
    struct tu_row r;
    int cases = 0, bad = 0;

    (void)state;
    memset(&r, 0, sizeof r);
    while (tu_read_row(fp, &r, 3)) {
        struct faas_filter *sentinel = (struct faas_filter *)&r, *f = sentinel;
        char err[256];
        int rc;

        if (r.nf != 2 || r.f[1][0] == '\0')
            fail_msg("line %d: want pattern<TAB>message", r.lineno);
        cases++;
        memset(err, 'X', sizeof err);
        rc = faas_filter_compile(r.f[0], &f, err, sizeof err);
        if (rc != FAAS_EPARSE || f != sentinel || !strstr(err, r.f[1])) {
            print_message("invalid.txt:%d: %s: rc %d, out %s, err \"%.*s\" (want \"%s\")\n",
                          r.lineno, r.f[0], rc, f == sentinel ? "untouched" : "WRITTEN",
                          (int)strnlen(err, sizeof err), err, r.f[1]);
            bad++;
            if (rc == 0)
                faas_filter_free(f);
        }
    }
    fclose(fp);
    print_message("invalid.txt: %d cases\n", cases);
    assert_int_equal(bad, 0);
    assert_true(cases >= 40);
}

/* ---- messages ----------------------------------------------------------- */

static void expect_error(const char *pattern, const char *msg)
{
    struct faas_filter *f = NULL;
    char err[256];
    assert_int_equal(faas_filter_compile(pattern, &f, err, sizeof err), FAAS_EPARSE);
    assert_null(f);
    assert_string_equal(err, msg);
}

static void test_error_messages(void **state)
{
    struct faas_filter *f = NULL;
    char small[12];
    (void)state;

    expect_error("[{\"source\":[\"a\"]},{\"detail\":{\"price\":[{\"numeric\":[\"<\"]}]}}]",
                 "pattern 2: field \"detail.price\": numeric: expected [\"<\", 10, ...]");
    expect_error("{\"a\":[{\"frob\":1}]}", "pattern 1: field \"a\": unknown operator \"frob\"");
    expect_error("{\"a\":{\"b\":[]}}", "pattern 1: field \"a.b\": empty array of conditions");
    expect_error("{}", "pattern 1: empty pattern object");
    expect_error("[]", "expected 1 to 5 patterns, got 0");
    expect_error("{\"a\":", "invalid JSON at line 1 column 5: unexpected token near end of file");

    /* The message is cut to the buffer, always terminated. */
    memset(small, 'X', sizeof small);
    assert_int_equal(faas_filter_compile("{}", &f, small, sizeof small), FAAS_EPARSE);
    assert_string_equal(small, "pattern 1: ");
    /* No buffer at all is fine. */
    assert_int_equal(faas_filter_compile("{}", &f, NULL, 0), FAAS_EPARSE);
    assert_int_equal(faas_filter_compile("{\"a\":[1]}", &f, small, 0), 0);
    faas_filter_free(f);
    f = NULL;
    /* A good pattern clears the buffer. */
    memset(small, 'X', sizeof small);
    assert_int_equal(faas_filter_compile("{\"a\":[1]}", &f, small, sizeof small), 0);
    assert_string_equal(small, "");
    faas_filter_free(f);
}

static void test_null_arguments(void **state)
{
    struct faas_filter *f = NULL;
    json_t *rec = json_pack("{s:s}", "a", "x");
    char err[64];
    (void)state;

    assert_int_equal(faas_filter_compile(NULL, &f, err, sizeof err), FAAS_EINVAL);
    assert_int_equal(faas_filter_compile("{\"a\":[\"x\"]}", NULL, err, sizeof err), FAAS_EINVAL);
    /* No filter: every record. */
    assert_int_equal(faas_filter_match(NULL, rec), 1);
    faas_filter_free(NULL);
    json_decref(rec);
}

/* ---- allocation --------------------------------------------------------- */

static const char complex_pattern[] =
    "[{\"source\":[\"aws.s3\",{\"prefix\":\"aws.\"},{\"anything-but\":[\"x\",1,\"y\"]}],"
    "  \"detail\":{\"price\":[{\"numeric\":[\">=\",0,\"<\",100]},5],"
    "             \"name\":[{\"suffix\":{\"equals-ignore-case\":\".PNG\"}},null,true],"
    "             \"deep\":{\"er\":{\"est\":[{\"exists\":false}]}}}},"
    " {\"body\":{\"temp\":[{\"numeric\":[\">\",30]}],\"city\":[{\"equals-ignore-case\":\"Oslo\"}]}},"
    " {\"ip\":[{\"cidr\":\"10.0.0.0/8\"}],\"k\":[{\"wildcard\":\"a*b\"}],"
    "  \"n\":[{\"anything-but\":{\"equals-ignore-case\":[\"A\",\"B\"]}}]},"
    " {\"data\":{\"x\":[{\"anything-but\":{\"prefix\":\"p\"}}]}},"
    " {\"z\":[{\"prefix\":{\"equals-ignore-case\":\"Zz\"}},{\"anything-but\":\"q\"}]}]";

static void check_complex(const struct faas_filter *f)
{
    static const char *const yes[] = {
        "{\"source\":\"aws.ec2\",\"detail\":{\"price\":5.0,\"name\":\"A.png\"}}",
        "{\"body\":\"{\\\"temp\\\":31,\\\"city\\\":\\\"OSLO\\\"}\"}",
        "{\"ip\":\"10.1.2.3\",\"k\":\"axxb\",\"n\":\"c\"}",
        "{\"data\":\"eyJ4IjoicSJ9\"}",
        "{\"z\":\"zZtop\"}",
    };
    static const char *const no[] = {
        "{\"source\":\"x\",\"detail\":{\"price\":5,\"name\":\"a.png\"}}",
        "{\"source\":\"aws.s3\",\"detail\":{\"price\":5,\"name\":\"a.png\",\"deep\":{\"er\":{\"est\":1}}}}",
        "{\"body\":\"{\\\"temp\\\":30,\\\"city\\\":\\\"Oslo\\\"}\"}",
        "{\"ip\":\"11.1.2.3\",\"k\":\"ab\",\"n\":\"c\"}",
        "{\"ip\":\"10.1.2.3\",\"k\":\"ab\",\"n\":\"b\"}",
        "{\"data\":\"eyJ4IjoicCJ9\"}",
        "{\"z\":\"q\"}",
    };
    size_t i;
    for (i = 0; i < sizeof yes / sizeof yes[0]; i++) {
        json_t *rec = parse_record(yes[i], (int)i);
        if (faas_filter_match(f, rec) != 1)
            fail_msg("should match: %s", yes[i]);
        json_decref(rec);
    }
    for (i = 0; i < sizeof no / sizeof no[0]; i++) {
        json_t *rec = parse_record(no[i], (int)i);
        if (faas_filter_match(f, rec) != 0)
            fail_msg("should not match: %s", no[i]);
        json_decref(rec);
    }
}

/* Every allocation of a complex compile fails in turn: FAAS_ENOMEM, *out
 * untouched, nothing leaked (the suite runs under valgrind and ASan). */
static void test_alloc_failures(void **state)
{
    long k;
    int failures = 0;
    (void)state;

    for (k = 0;; k++) {
        struct faas_filter *sentinel = (struct faas_filter *)&k, *f = sentinel;
        char err[128];
        int rc;

        atomic_store(&faas_alloc_fail_countdown, k);
        rc = faas_filter_compile(complex_pattern, &f, err, sizeof err);
        atomic_store(&faas_alloc_fail_countdown, -1);
        if (rc == 0) {
            assert_true(f != sentinel);
            check_complex(f);
            faas_filter_free(f);
            break;
        }
        assert_int_equal(rc, FAAS_ENOMEM);
        assert_ptr_equal(f, sentinel);
        assert_string_equal(err, "out of memory");
        failures++;
        assert_true(k < 1000);
    }
    print_message("alloc failures: %d allocations failed in turn\n", failures);
    /* Root, nodes, keys, condition arrays, strings: well over 30. */
    assert_true(failures > 30);
}

/* Matching allocates nothing through faas_malloc in the common case: with
 * the next allocation set to fail, results are right and the countdown is
 * still armed afterwards. */
static void test_match_does_not_allocate(void **state)
{
    struct faas_filter *f = NULL;
    char err[128];
    (void)state;

    assert_int_equal(faas_filter_compile(complex_pattern, &f, err, sizeof err), 0);
    atomic_store(&faas_alloc_fail_countdown, 0);
    check_complex(f);
    assert_int_equal(atomic_load(&faas_alloc_fail_countdown), 0);
    atomic_store(&faas_alloc_fail_countdown, -1);
    faas_filter_free(f);
}

/* A Kinesis "data" over the decoder's stack buffer goes to the heap; if that
 * allocation fails the record does not match (it never matches wrongly). */
static void test_large_data(void **state)
{
    struct faas_filter *f = NULL;
    char err[128];
    size_t n = 5000, blen;
    char *doc = malloc(n + 64), *b64;
    json_t *rec;
    (void)state;

    assert_non_null(doc);
    memcpy(doc, "{\"pad\":\"", 8);
    memset(doc + 8, 'p', n);
    strcpy(doc + 8 + n, "\",\"v\":42}");
    blen = sodium_base64_ENCODED_LEN(strlen(doc), sodium_base64_VARIANT_ORIGINAL);
    b64 = malloc(blen);
    assert_non_null(b64);
    sodium_bin2base64(b64, blen, (const unsigned char *)doc, strlen(doc),
                      sodium_base64_VARIANT_ORIGINAL);
    rec = json_pack("{s:{s:s}}", "kinesis", "data", b64);
    assert_non_null(rec);

    assert_int_equal(faas_filter_compile("{\"data\":{\"v\":[42]}}", &f, err, sizeof err), 0);
    assert_int_equal(faas_filter_match(f, rec), 1);
    atomic_store(&faas_alloc_fail_countdown, 0);
    assert_int_equal(faas_filter_match(f, rec), 0);
    atomic_store(&faas_alloc_fail_countdown, -1);
    assert_int_equal(faas_filter_match(f, rec), 1);

    faas_filter_free(f);
    json_decref(rec);
    free(b64);
    free(doc);
}

/* A compiled filter does not depend on the text it came from. */
static void test_pattern_text_not_kept(void **state)
{
    struct faas_filter *f = NULL;
    char text[] = "{\"a\":[{\"prefix\":\"xy\"}],\"b\":{\"c\":[\"d\"]}}";
    json_t *rec = parse_record("{\"a\":\"xyz\",\"b\":{\"c\":\"d\"}}", 0);
    (void)state;

    assert_int_equal(faas_filter_compile(text, &f, NULL, 0), 0);
    memset(text, ' ', sizeof text - 1);
    assert_int_equal(faas_filter_match(f, rec), 1);
    json_decref(rec);
    faas_filter_free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_match_table),
        cmocka_unit_test(test_invalid_table),
        cmocka_unit_test(test_error_messages),
        cmocka_unit_test(test_null_arguments),
        cmocka_unit_test(test_alloc_failures),
        cmocka_unit_test(test_match_does_not_allocate),
        cmocka_unit_test(test_large_data),
        cmocka_unit_test(test_pattern_text_not_kept),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
