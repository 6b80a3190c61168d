/*
 * test_sigv4.c - AWS Signature Version 4's pure parts (sigv4.c): the
 * signer against a vector of AWS's SigV4 test suite and its refusals, the
 * Authorization header's parameters, and X-Amz-Date both ways. The Invoke
 * API's checks of whole signed requests are test_invoke_api.c's.
 */
#include <string.h>

#include "faas_int.h"
#include "http_event.h"
#include "sigv4.h"
#include "testutil.h"

#define SECRET "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
#define VANILLA_SIG "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
#define EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

/* get-vanilla, from the headers as sent (mixed-case names). */
static void vanilla(struct faas_sigv4_in *in, struct faas_http_header h[2])
{
    h[0].name = "Host";
    h[0].name_len = 4;
    h[0].value = "example.amazonaws.com";
    h[0].value_len = strlen(h[0].value);
    h[1].name = "X-Amz-Date";
    h[1].name_len = 10;
    h[1].value = "20150830T123600Z";
    h[1].value_len = 16;
    memset(in, 0, sizeof *in);
    in->method = "GET";
    in->path = "/";
    in->headers = h;
    in->nheaders = 2;
    in->signed_headers = "host;x-amz-date";
    in->amz_date = "20150830T123600Z";
    in->scope = "20150830/us-east-1/service/aws4_request";
    in->payload_hash = EMPTY_SHA256;
}

static void test_signature(void **state)
{
    struct faas_http_header h[2];
    struct faas_sigv4_in in;
    char sig[65], long_secret[300];
    (void)state;

    vanilla(&in, h);
    assert_int_equal(faas_sigv4_signature(&in, SECRET, sig), 0);
    assert_string_equal(sig, VANILLA_SIG);
    /* Another secret, another signature. */
    assert_int_equal(faas_sigv4_signature(&in, "other", sig), 0);
    assert_string_not_equal(sig, VANILLA_SIG);
    /* A scope of three parts, an empty part, a fifth part. */
    in.scope = "20150830/us-east-1/service";
    assert_int_equal(faas_sigv4_signature(&in, SECRET, sig), FAAS_EINVAL);
    in.scope = "20150830//service/aws4_request";
    assert_int_equal(faas_sigv4_signature(&in, SECRET, sig), FAAS_EINVAL);
    in.scope = "20150830/us-east-1/service/aws4_request/x";
    assert_int_equal(faas_sigv4_signature(&in, SECRET, sig), FAAS_EINVAL);
    /* A secret longer than the signing key's buffer. */
    vanilla(&in, h);
    memset(long_secret, 'k', sizeof long_secret - 1);
    long_secret[sizeof long_secret - 1] = '\0';
    assert_int_equal(faas_sigv4_signature(&in, long_secret, sig), FAAS_EINVAL);
    in.method = NULL;
    assert_int_equal(faas_sigv4_signature(&in, SECRET, sig), FAAS_EINVAL);
}

static void test_auth_param(void **state)
{
    const char *params = "Credential=AKIDEXAMPLE/20150830/us-east-1/lambda/aws4_request, "
                         "SignedHeaders=host;x-amz-date,Signature=abc123  ";
    char out[64], tiny[4];
    (void)state;

    assert_int_equal(faas_sigv4_auth_param(params, "Credential", out, sizeof out), 0);
    assert_string_equal(out, "AKIDEXAMPLE/20150830/us-east-1/lambda/aws4_request");
    assert_int_equal(faas_sigv4_auth_param(params, "SignedHeaders", out, sizeof out), 0);
    assert_string_equal(out, "host;x-amz-date");
    /* Trailing blanks are not part of the value. */
    assert_int_equal(faas_sigv4_auth_param(params, "Signature", out, sizeof out), 0);
    assert_string_equal(out, "abc123");
    /* A prefix of a parameter's name is not that parameter. */
    assert_int_equal(faas_sigv4_auth_param(params, "Signed", out, sizeof out), -1);
    assert_int_equal(faas_sigv4_auth_param(params, "Missing", out, sizeof out), -1);
    /* Too long for out, and empty. */
    assert_int_equal(faas_sigv4_auth_param(params, "Signature", tiny, sizeof tiny), -1);
    assert_int_equal(faas_sigv4_auth_param("Signature=, Credential=x", "Signature", out,
                                           sizeof out),
                     -1);
}

static void test_dates(void **state)
{
    static const char *const bad[] = {
        "20150830T12360Z",  "20150830 123600Z", "20150830T123600",  "20151330T123600Z",
        "20150800T123600Z", "20150830T243600Z", "20150830T126000Z", "2015083OT123600Z",
        "",
    };
    char out[17];
    int64_t t = 0;
    size_t i;
    (void)state;

    assert_int_equal(faas_sigv4_parse_date("20150830T123600Z", &t), 0);
    assert_int_equal(t, 1440938160);
    assert_int_equal(faas_sigv4_parse_date("20000229T235959Z", &t), 0);
    assert_int_equal(t, 951868799);
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(faas_sigv4_parse_date(bad[i], &t), -1);
    faas_sigv4_format_date(1440938160, out);
    assert_string_equal(out, "20150830T123600Z");
    faas_sigv4_format_date(951868799, out);
    assert_string_equal(out, "20000229T235959Z");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_signature),
        cmocka_unit_test(test_auth_param),
        cmocka_unit_test(test_dates),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
