/*
 * fuzz_filter.c - libFuzzer target for EventBridge filter patterns
 * (lib/filter.c): the input is compiled as a pattern; when it compiles, it
 * is matched against a few fixed records that exercise every branch of the
 * matcher (nested objects, arrays of objects, SQS "body" and Kinesis "data"
 * holding JSON, numbers, null, booleans, IP addresses). A failed compile
 * must leave the out-parameter untouched and say why.
 *
 *   clang -fsanitize=fuzzer,address -Iinclude -Ilib tests/fuzz/fuzz_filter.c lib/\*.c \
 *       $(pkg-config --cflags --libs libevent jansson libsodium) -lpthread -ldl
 *   ./a.out -max_total_time=30
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "faas_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const record_texts[] = {
    "{\"source\":\"aws.s3\",\"detail-type\":\"Object Created\",\"detail\":{\"price\":5,"
    "\"name\":\"A.png\",\"tags\":[\"x\",\"y\",1,null,true],\"ip\":\"10.0.0.7\","
    "\"items\":[{\"a\":\"1\",\"b\":2.5},{\"a\":\"2\",\"b\":-3}],\"empty\":[],\"nul\":null}}",
    "{\"messageId\":\"m\",\"body\":\"{\\\"temp\\\":35,\\\"city\\\":\\\"Oslo\\\","
    "\\\"list\\\":[1,2,{\\\"k\\\":\\\"v\\\"}]}\",\"attributes\":{\"SenderId\":\"s\"}}",
    "{\"eventSource\":\"aws:kinesis\",\"kinesis\":{\"partitionKey\":\"p\","
    "\"data\":\"eyJ0ZW1wIjozNSwiY2l0eSI6Ik9zbG8ifQ==\"}}",
    "{\"data\":\"bm90IGpzb24=\",\"body\":\"not json\",\"n\":-0.0,\"big\":9007199254740993,"
    "\"ip6\":\"2001:db8::1\"}",
    "[{\"a\":1},{\"a\":[\"x\",{\"b\":\"c\"}]},\"str\",5]",
    "null",
};

#define NRECORDS (sizeof record_texts / sizeof record_texts[0])

static json_t *records[NRECORDS];

static void load_records(void)
{
    size_t i;
    for (i = 0; i < NRECORDS; i++) {
        records[i] = json_loads(record_texts[i], JSON_DECODE_ANY, NULL);
        if (!records[i])
            abort(); /* a broken fixture, not a finding */
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct faas_filter *sentinel = (struct faas_filter *)(uintptr_t)&records[0];
    struct faas_filter *f = sentinel;
    char err[256];
    char *text;
    size_t i;
    int rc;

    if (!records[0])
        load_records();
    text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';

    rc = faas_filter_compile(text, &f, err, sizeof err);
    if (rc == 0) {
        if (f == sentinel || !f)
            abort();
        for (i = 0; i < NRECORDS; i++) {
            int m = faas_filter_match(f, records[i]);
            if (m != 0 && m != 1)
                abort();
        }
        faas_filter_free(f);
    } else if (rc != FAAS_EPARSE || f != sentinel || err[0] == '\0' ||
               memchr(err, '\0', sizeof err) == NULL) {
        abort();
    }
    free(text);
    return 0;
}
