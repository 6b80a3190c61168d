/*
 * test_shapes.c - the records of host-fed sources (shapes.c): every field
 * of the S3, DynamoDB Streams, Kinesis and SQS shapes built from parts,
 * validation of the parts, complete records passed through unchanged, MD5
 * of SQS bodies against RFC 1321's test vectors, sequence numbers that
 * increase. The wall clock is the fake one: times are exact.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "faas_int.h" /* faas_shape_record */
#include "testutil.h"

#define MS 1000000ull

static struct event_base *g_base;
static struct faas_runtime *g_rt;
static struct tu_clock g_clock;

static int setup_region(const char *region)
{
    struct faas_runtime_opts o = FAAS_RUNTIME_OPTS_INIT;
    g_clock.ns = 1234 * MS; /* wall: 1700000001.234 */
    o.clock.now_ns = tu_clock_now;
    o.clock.wall_ns = tu_clock_wall;
    o.clock.arg = &g_clock;
    o.region = region;
    g_base = event_base_new();
    if (!g_base || faas_runtime_new(&g_rt, g_base, &o) != 0)
        return -1;
    return 0;
}

static int setup(void **state)
{
    (void)state;
    return setup_region(NULL);
}

static int setup_eu(void **state)
{
    (void)state;
    return setup_region("eu-west-1");
}

static int teardown(void **state)
{
    (void)state;
    faas_runtime_free(g_rt);
    event_base_free(g_base);
    return 0;
}

static json_t *shape(enum faas_src_kind kind, const char *name, const char *parts_text, int *err)
{
    json_error_t je;
    json_t *parts = json_loads(parts_text, 0, &je), *rec;
    assert_non_null(parts);
    rec = faas_shape_record(g_rt, kind, name, parts, err);
    json_decref(parts);
    return rec;
}

static const char *sget(json_t *j, const char *a, const char *b, const char *c)
{
    json_t *v = json_object_get(j, a);
    if (b)
        v = json_object_get(v, b);
    if (c)
        v = json_object_get(v, c);
    return json_string_value(v);
}

static void assert_keys(json_t *obj, const char *const *keys)
{
    size_t n = 0;
    for (; keys[n]; n++)
        assert_non_null(json_object_get(obj, keys[n]));
    assert_int_equal(json_object_size(obj), n);
}

static int all_digits(const char *s)
{
    if (!s || !*s)
        return 0;
    for (; *s; s++)
        if (*s < '0' || *s > '9')
            return 0;
    return 1;
}

/* ---- S3 ------------------------------------------------------------- */

static void test_s3_fields(void **state)
{
    static const char *const top[] = { "eventVersion", "eventSource", "awsRegion", "eventTime",
                                       "eventName", "userIdentity", "requestParameters",
                                       "responseElements", "s3", NULL };
    static const char *const objk[] = { "key", "size", "eTag", "sequencer", NULL };
    int err = 1;
    json_t *r = shape(FAAS_SRC_S3, "ObjectCreated:Put",
                      "{\"bucket\":\"photos\",\"key\":\"dir/red flower (1).jpg\",\"size\":1024,"
                      "\"eTag\":\"abc123\"}",
                      &err);
    json_t *s3, *re;
    (void)state;
    assert_non_null(r);
    assert_int_equal(err, 0);
    assert_keys(r, top);
    assert_string_equal(sget(r, "eventVersion", NULL, NULL), "2.1");
    assert_string_equal(sget(r, "eventSource", NULL, NULL), "aws:s3");
    assert_string_equal(sget(r, "awsRegion", NULL, NULL), "local");
    assert_string_equal(sget(r, "eventTime", NULL, NULL), "2023-11-14T22:13:21.234Z");
    assert_string_equal(sget(r, "eventName", NULL, NULL), "ObjectCreated:Put");
    assert_string_equal(sget(r, "userIdentity", "principalId", NULL), "local");
    assert_string_equal(sget(r, "requestParameters", "sourceIPAddress", NULL), "127.0.0.1");
    re = json_object_get(r, "responseElements");
    assert_true(json_is_string(json_object_get(re, "x-amz-request-id")));
    assert_true(json_is_string(json_object_get(re, "x-amz-id-2")));
    s3 = json_object_get(r, "s3");
    assert_int_equal(json_object_size(s3), 4);
    assert_string_equal(sget(s3, "s3SchemaVersion", NULL, NULL), "1.0");
    assert_string_equal(sget(s3, "configurationId", NULL, NULL), "libfaas");
    assert_string_equal(sget(s3, "bucket", "name", NULL), "photos");
    assert_string_equal(sget(s3, "bucket", "ownerIdentity", "principalId"), "local");
    assert_string_equal(sget(s3, "bucket", "arn", NULL), "arn:aws:s3:::photos");
    assert_keys(json_object_get(s3, "object"), objk);
    /* form-urlencoded as S3 writes keys: space '+', '/' kept, '(' %28 */
    assert_string_equal(sget(s3, "object", "key", NULL), "dir/red+flower+%281%29.jpg");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(s3, "object"), "size")),
                     1024);
    assert_string_equal(sget(s3, "object", "eTag", NULL), "abc123");
    assert_int_equal(strlen(sget(s3, "object", "sequencer", NULL)), 16);
    json_decref(r);
}

static void test_s3_defaults_and_sequencer(void **state)
{
    int err;
    json_t *a = shape(FAAS_SRC_S3, "ObjectCreated:Copy", "{\"bucket\":\"b\",\"key\":\"k\"}", &err);
    json_t *b = shape(FAAS_SRC_S3, "ObjectRemoved:Delete", "{\"bucket\":\"b\",\"key\":\"k\"}",
                      &err);
    json_t *obj;
    (void)state;
    assert_non_null(a);
    assert_non_null(b);
    obj = json_object_get(json_object_get(a, "s3"), "object");
    assert_int_equal(json_integer_value(json_object_get(obj, "size")), 0);
    assert_null(json_object_get(obj, "eTag"));
    /* a removal carries neither size nor eTag unless given */
    obj = json_object_get(json_object_get(b, "s3"), "object");
    assert_null(json_object_get(obj, "size"));
    assert_null(json_object_get(obj, "eTag"));
    /* sequencers: fixed-width hex, later is greater */
    assert_true(strcmp(sget(a, "s3", "object", "sequencer"),
                       sget(b, "s3", "object", "sequencer")) < 0);
    json_decref(a);
    json_decref(b);
}

static void test_s3_invalid(void **state)
{
    static const char *const bad[] = {
        "{\"key\":\"k\"}",
        "{\"bucket\":\"b\"}",
        "{\"bucket\":\"\",\"key\":\"k\"}",
        "{\"bucket\":\"b\",\"key\":\"\"}",
        "{\"bucket\":7,\"key\":\"k\"}",
        "{\"bucket\":\"b\",\"key\":\"k\",\"size\":-1}",
        "{\"bucket\":\"b\",\"key\":\"k\",\"size\":\"12\"}",
        "{\"bucket\":\"b\",\"key\":\"k\",\"eTag\":5}",
    };
    size_t i;
    int err;
    (void)state;
    for (i = 0; i < sizeof bad / sizeof *bad; i++) {
        err = 0;
        assert_null(shape(FAAS_SRC_S3, "ObjectCreated:Put", bad[i], &err));
        assert_int_equal(err, FAAS_EINVAL);
    }
}

/* ---- DynamoDB ------------------------------------------------------- */

static void test_dynamodb_fields(void **state)
{
    static const char *const top[] = { "eventID", "eventName", "eventVersion", "eventSource",
                                       "awsRegion", "dynamodb", "eventSourceARN", NULL };
    static const char *const ddbk[] = { "ApproximateCreationDateTime", "Keys", "NewImage",
                                        "OldImage", "SequenceNumber", "SizeBytes",
                                        "StreamViewType", NULL };
    const char *parts = "{\"Keys\":{\"id\":{\"S\":\"1\"}},\"NewImage\":{\"id\":{\"S\":\"1\"},"
                        "\"n\":{\"N\":\"2\"}},\"OldImage\":{\"id\":{\"S\":\"1\"}}}";
    int err;
    json_t *r = shape(FAAS_SRC_DYNAMODB, "MODIFY", parts, &err), *d, *r2;
    const char *seq;
    (void)state;
    assert_non_null(r);
    assert_keys(r, top);
    assert_int_equal(strlen(sget(r, "eventID", NULL, NULL)), 36);
    assert_string_equal(sget(r, "eventName", NULL, NULL), "MODIFY");
    assert_string_equal(sget(r, "eventVersion", NULL, NULL), "1.1");
    assert_string_equal(sget(r, "eventSource", NULL, NULL), "aws:dynamodb");
    assert_string_equal(sget(r, "awsRegion", NULL, NULL), "eu-west-1");
    assert_string_equal(sget(r, "eventSourceARN", NULL, NULL),
                        "arn:aws:dynamodb:eu-west-1:000000000000:table/local/stream/local");
    d = json_object_get(r, "dynamodb");
    assert_keys(d, ddbk);
    assert_int_equal(json_integer_value(json_object_get(d, "ApproximateCreationDateTime")),
                     1700000001);
    assert_string_equal(sget(d, "Keys", "id", "S"), "1");
    assert_string_equal(sget(d, "NewImage", "n", "N"), "2");
    assert_string_equal(sget(d, "OldImage", "id", "S"), "1");
    assert_string_equal(sget(d, "StreamViewType", NULL, NULL), "NEW_AND_OLD_IMAGES");
    /* compact sizes: {"id":{"S":"1"}} 16 + 30 + 16 */
    assert_int_equal(json_integer_value(json_object_get(d, "SizeBytes")), 16 + 30 + 16);
    seq = sget(d, "SequenceNumber", NULL, NULL);
    assert_true(all_digits(seq));
    tu_clock_advance(&g_clock, 1);
    r2 = shape(FAAS_SRC_DYNAMODB, "INSERT", "{\"Keys\":{\"id\":{\"S\":\"2\"}}}", &err);
    assert_non_null(r2);
    d = json_object_get(r2, "dynamodb");
    assert_null(json_object_get(d, "OldImage"));
    assert_null(json_object_get(d, "NewImage"));
    assert_int_equal(strlen(sget(d, "SequenceNumber", NULL, NULL)), strlen(seq));
    assert_true(strcmp(sget(d, "SequenceNumber", NULL, NULL), seq) > 0);
    assert_string_not_equal(sget(r2, "eventID", NULL, NULL), sget(r, "eventID", NULL, NULL));
    json_decref(r);
    json_decref(r2);
}

static void test_dynamodb_invalid(void **state)
{
    int err = 0;
    (void)state;
    assert_null(shape(FAAS_SRC_DYNAMODB, "INSERT", "{\"NewImage\":{}}", &err));
    assert_int_equal(err, FAAS_EINVAL);
    err = 0;
    assert_null(shape(FAAS_SRC_DYNAMODB, "INSERT", "{\"Keys\":{}}", &err));
    assert_int_equal(err, FAAS_EINVAL);
    err = 0;
    assert_null(shape(FAAS_SRC_DYNAMODB, "INSERT", "{\"Keys\":[1]}", &err));
    assert_int_equal(err, FAAS_EINVAL);
    err = 0;
    assert_null(shape(FAAS_SRC_DYNAMODB, "INSERT", "{\"Keys\":{\"a\":1},\"NewImage\":3}", &err));
    assert_int_equal(err, FAAS_EINVAL);
    err = 0;
    assert_null(shape(FAAS_SRC_DYNAMODB, "UPSERT", "{\"Keys\":{\"a\":1}}", &err));
    assert_int_equal(err, FAAS_EINVAL);
}

/* A DynamoDB Streams record as the AWS docs' examples write it, without
 * "eventSource": completed like the parts form, its own fields kept. */
static void test_dynamodb_record_without_event_source(void **state)
{
    static const char *const top[] = { "eventID", "eventName", "eventVersion", "eventSource",
                                       "awsRegion", "dynamodb", "eventSourceARN", NULL };
    const char *text = "{\"eventName\":\"INSERT\",\"eventID\":\"e-1\",\"dynamodb\":"
                       "{\"Keys\":{\"id\":{\"S\":\"1\"}},\"NewImage\":{\"id\":{\"S\":\"1\"}},"
                       "\"SequenceNumber\":\"111\",\"StreamViewType\":\"NEW_IMAGE\"}}";
    char why[128];
    json_error_t jerr;
    json_t *parts, *r, *d;
    int err = 1;

    (void)state;
    r = shape(FAAS_SRC_DYNAMODB, "INSERT", text, &err);
    assert_non_null(r);
    assert_int_equal(err, 0);
    assert_keys(r, top);
    assert_string_equal(sget(r, "eventSource", NULL, NULL), "aws:dynamodb");
    assert_string_equal(sget(r, "eventName", NULL, NULL), "INSERT");
    assert_string_equal(sget(r, "eventID", NULL, NULL), "e-1"); /* kept */
    assert_string_equal(sget(r, "awsRegion", NULL, NULL), "local");
    d = json_object_get(r, "dynamodb");
    assert_string_equal(sget(d, "Keys", "id", "S"), "1");
    assert_string_equal(sget(d, "NewImage", "id", "S"), "1");
    assert_string_equal(sget(d, "SequenceNumber", NULL, NULL), "111");
    assert_string_equal(sget(d, "StreamViewType", NULL, NULL), "NEW_IMAGE");
    assert_int_equal(json_integer_value(json_object_get(d, "SizeBytes")), 16 + 16);
    assert_non_null(json_object_get(d, "ApproximateCreationDateTime"));
    json_decref(r);

    /* Emitted as another event than it says: refused, and why. */
    parts = json_loads(text, 0, &jerr);
    assert_non_null(parts);
    r = faas_shape_record_why(g_rt, FAAS_SRC_DYNAMODB, "MODIFY", parts, &err, why, sizeof why);
    assert_null(r);
    assert_int_equal(err, FAAS_EINVAL);
    assert_non_null(strstr(why, "eventName"));
    json_decref(parts);
    /* Without keys: refused, and why. */
    parts = json_pack("{s:s, s:{s:{}}}", "eventName", "INSERT", "dynamodb", "NewImage");
    r = faas_shape_record_why(g_rt, FAAS_SRC_DYNAMODB, "INSERT", parts, &err, why, sizeof why);
    assert_null(r);
    assert_int_equal(err, FAAS_EINVAL);
    assert_non_null(strstr(why, "Keys"));
    json_decref(parts);
}

/* ---- Kinesis -------------------------------------------------------- */

static void test_kinesis_fields(void **state)
{
    static const char *const top[] = { "kinesis", "eventSource", "eventVersion", "eventID",
                                       "eventName", "invokeIdentityArn", "awsRegion",
                                       "eventSourceARN", NULL };
    static const char *const kk[] = { "kinesisSchemaVersion", "partitionKey", "sequenceNumber",
                                      "data", "approximateArrivalTimestamp", NULL };
    int err;
    json_t *r = shape(FAAS_SRC_STREAM, "orders",
                      "{\"partitionKey\":\"cust-1\",\"data\":{\"a\":1,\"b\":[true,null]}}", &err);
    json_t *k, *r2;
    char evid[128];
    (void)state;
    assert_non_null(r);
    assert_keys(r, top);
    k = json_object_get(r, "kinesis");
    assert_keys(k, kk);
    assert_string_equal(sget(k, "kinesisSchemaVersion", NULL, NULL), "1.0");
    assert_string_equal(sget(k, "partitionKey", NULL, NULL), "cust-1");
    /* base64 of the compact JSON {"a":1,"b":[true,null]} */
    assert_string_equal(sget(k, "data", NULL, NULL), "eyJhIjoxLCJiIjpbdHJ1ZSxudWxsXX0=");
    assert_true(json_is_real(json_object_get(k, "approximateArrivalTimestamp")));
    assert_true(json_real_value(json_object_get(k, "approximateArrivalTimestamp")) >
                1700000001.2335);
    assert_true(json_real_value(json_object_get(k, "approximateArrivalTimestamp")) <
                1700000001.2345);
    assert_true(all_digits(sget(k, "sequenceNumber", NULL, NULL)));
    assert_string_equal(sget(r, "eventSource", NULL, NULL), "aws:kinesis");
    assert_string_equal(sget(r, "eventVersion", NULL, NULL), "1.0");
    snprintf(evid, sizeof evid, "shardId-000000000000:%s", sget(k, "sequenceNumber", NULL, NULL));
    assert_string_equal(sget(r, "eventID", NULL, NULL), evid);
    assert_string_equal(sget(r, "eventName", NULL, NULL), "aws:kinesis:record");
    assert_string_equal(sget(r, "invokeIdentityArn", NULL, NULL),
                        "arn:aws:iam::000000000000:role/local");
    assert_string_equal(sget(r, "awsRegion", NULL, NULL), "local");
    assert_string_equal(sget(r, "eventSourceARN", NULL, NULL),
                        "arn:aws:kinesis:local:000000000000:stream/orders");
    /* a string's bytes as they are; the same clock still gives a greater
     * sequence number */
    r2 = shape(FAAS_SRC_STREAM, "orders", "{\"partitionKey\":\"p\",\"data\":\"hello\"}", &err);
    assert_non_null(r2);
    assert_string_equal(sget(r2, "kinesis", "data", NULL), "aGVsbG8=");
    assert_true(strcmp(sget(r2, "kinesis", "sequenceNumber", NULL),
                       sget(k, "sequenceNumber", NULL, NULL)) > 0);
    json_decref(r);
    json_decref(r2);
}

static void test_kinesis_invalid(void **state)
{
    int err = 0;
    (void)state;
    assert_null(shape(FAAS_SRC_STREAM, "s", "{\"data\":1}", &err));
    assert_int_equal(err, FAAS_EINVAL);
    err = 0;
    assert_null(shape(FAAS_SRC_STREAM, "s", "{\"partitionKey\":\"\",\"data\":1}", &err));
    assert_int_equal(err, FAAS_EINVAL);
    err = 0;
    assert_null(shape(FAAS_SRC_STREAM, "s", "{\"partitionKey\":5}", &err));
    assert_int_equal(err, FAAS_EINVAL);
}

/* ---- SQS ------------------------------------------------------------ */

static void test_sqs_fields(void **state)
{
    static const char *const top[] = { "messageId", "receiptHandle", "body", "attributes",
                                       "messageAttributes", "md5OfBody", "eventSource",
                                       "eventSourceARN", "awsRegion", NULL };
    int err;
    json_t *r = shape(FAAS_SRC_QUEUE, "jobs",
                      "{\"body\":\"hello\",\"attributes\":{\"MessageGroupId\":\"g\","
                      "\"SenderId\":\"me\"},\"messageAttributes\":{\"t\":{\"stringValue\":"
                      "\"x\",\"dataType\":\"String\"}}}",
                      &err);
    json_t *a, *r2;
    (void)state;
    assert_non_null(r);
    assert_keys(r, top);
    assert_int_equal(strlen(sget(r, "messageId", NULL, NULL)), 36);
    assert_true(json_string_length(json_object_get(r, "receiptHandle")) > 0);
    assert_string_equal(sget(r, "body", NULL, NULL), "hello");
    a = json_object_get(r, "attributes");
    assert_int_equal(json_object_size(a), 5);
    assert_string_equal(sget(a, "ApproximateReceiveCount", NULL, NULL), "1");
    assert_string_equal(sget(a, "SentTimestamp", NULL, NULL), "1700000001234");
    assert_string_equal(sget(a, "ApproximateFirstReceiveTimestamp", NULL, NULL),
                        "1700000001234");
    assert_string_equal(sget(a, "SenderId", NULL, NULL), "me"); /* merged over */
    assert_string_equal(sget(a, "MessageGroupId", NULL, NULL), "g");
    assert_string_equal(sget(r, "messageAttributes", "t", "stringValue"), "x");
    assert_string_equal(sget(r, "md5OfBody", NULL, NULL), "5d41402abc4b2a76b9719d911017c592");
    assert_string_equal(sget(r, "eventSource", NULL, NULL), "aws:sqs");
    assert_string_equal(sget(r, "eventSourceARN", NULL, NULL),
                        "arn:aws:sqs:local:000000000000:jobs");
    assert_string_equal(sget(r, "awsRegion", NULL, NULL), "local");
    /* JSON bodies are serialised compactly; no attributes: the defaults */
    r2 = shape(FAAS_SRC_QUEUE, "jobs", "{\"body\":{\"order\": 7}}", &err);
    assert_non_null(r2);
    assert_string_equal(sget(r2, "body", NULL, NULL), "{\"order\":7}");
    assert_string_equal(sget(r2, "attributes", "SenderId", NULL), "local");
    assert_int_equal(json_object_size(json_object_get(r2, "messageAttributes")), 0);
    assert_string_not_equal(sget(r2, "messageId", NULL, NULL), sget(r, "messageId", NULL, NULL));
    assert_string_not_equal(sget(r2, "receiptHandle", NULL, NULL),
                            sget(r, "receiptHandle", NULL, NULL));
    json_decref(r);
    json_decref(r2);
}

static void test_sqs_invalid(void **state)
{
    int err = 0;
    (void)state;
    assert_null(shape(FAAS_SRC_QUEUE, "q", "{}", &err));
    assert_int_equal(err, FAAS_EINVAL);
    err = 0;
    assert_null(shape(FAAS_SRC_QUEUE, "q", "{\"body\":\"x\",\"attributes\":[]}", &err));
    assert_int_equal(err, FAAS_EINVAL);
    err = 0;
    assert_null(shape(FAAS_SRC_QUEUE, "q", "{\"body\":\"x\",\"messageAttributes\":1}", &err));
    assert_int_equal(err, FAAS_EINVAL);
}

/* RFC 1321 appendix A.5, plus lengths around the 56- and 64-byte edges. */
static void test_md5_vectors(void **state)
{
    static const struct {
        const char *in;
        const char *md5;
    } v[] = {
        { "", "d41d8cd98f00b204e9800998ecf8427e" },
        { "a", "0cc175b9c0f1b6a831c399e269772661" },
        { "abc", "900150983cd24fb0d6963f7d28e17f72" },
        { "message digest", "f96b697d7cb7938d525a2f31aaf161d0" },
        { "abcdefghijklmnopqrstuvwxyz", "c3fcd3d76192e4007dfb496cca67e13b" },
        { "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
          "d174ab98d277d9f5a5611c2c9f419d9f" },
        { "1234567890123456789012345678901234567890123456789012345678901234567890123456"
          "7890",
          "57edf4a22be3c955ac49da2e2107b67a" },
        { "The quick brown fox jumps over the lazy dog", "9e107d9d372bb6826bd81d3542a419d6" },
    };
    size_t i;
    int err;
    (void)state;
    for (i = 0; i < sizeof v / sizeof *v; i++) {
        json_t *parts = json_pack("{s:s}", "body", v[i].in);
        json_t *r = faas_shape_record(g_rt, FAAS_SRC_QUEUE, "q", parts, &err);
        assert_non_null(r);
        assert_string_equal(sget(r, "md5OfBody", NULL, NULL), v[i].md5);
        json_decref(r);
        json_decref(parts);
    }
}

/* ---- pass-through and arguments -------------------------------------- */

static void test_complete_records_pass_through(void **state)
{
    json_error_t je;
    json_t *in = json_loads("{\"eventSource\":\"aws:sqs\",\"messageId\":\"m1\",\"body\":\"b\"}", 0,
                            &je);
    int err = 1;
    json_t *out;
    (void)state;
    out = faas_shape_record(g_rt, FAAS_SRC_QUEUE, "q", in, &err);
    /* kept as it is, but a copy: the caller may change its own afterwards */
    assert_ptr_not_equal(out, in);
    assert_true(json_equal(out, in));
    assert_int_equal(err, 0);
    assert_int_equal(in->refcount, 1);
    json_object_set_new(in, "body", json_string("changed"));
    assert_string_equal(json_string_value(json_object_get(out, "body")), "b");
    json_decref(out);
    /* a complete record of any kind, even one this kind would reject */
    out = faas_shape_record(g_rt, FAAS_SRC_S3, "ObjectCreated:Put", in, &err);
    assert_true(json_equal(out, in));
    json_decref(out);
    json_decref(in);
}

static void test_parts_are_copied(void **state)
{
    json_error_t je;
    json_t *parts = json_loads("{\"Keys\":{\"id\":{\"S\":\"1\"}}}", 0, &je);
    int err;
    json_t *r = faas_shape_record(g_rt, FAAS_SRC_DYNAMODB, "INSERT", parts, &err);
    (void)state;
    assert_non_null(r);
    json_object_set_new(json_object_get(parts, "Keys"), "id", json_string("changed"));
    assert_string_equal(sget(json_object_get(r, "dynamodb"), "Keys", "id", "S"), "1");
    json_decref(r);
    json_decref(parts);
}

static void test_bad_arguments(void **state)
{
    json_t *parts = json_pack("{s:s}", "body", "x"), *arr = json_array();
    int err = 0;
    (void)state;
    assert_null(faas_shape_record(g_rt, FAAS_SRC_QUEUE, "q", NULL, &err));
    assert_int_equal(err, FAAS_EINVAL);
    err = 0;
    assert_null(faas_shape_record(g_rt, FAAS_SRC_QUEUE, "q", arr, &err));
    assert_int_equal(err, FAAS_EINVAL);
    err = 0;
    assert_null(faas_shape_record(g_rt, FAAS_SRC_QUEUE, NULL, parts, &err));
    assert_int_equal(err, FAAS_EINVAL);
    err = 0;
    assert_null(faas_shape_record(g_rt, FAAS_SRC_API, "x", parts, &err));
    assert_int_equal(err, FAAS_EINVAL);
    err = 0;
    assert_null(faas_shape_record(g_rt, FAAS_SRC_SCHEDULE, "x", parts, &err));
    assert_int_equal(err, FAAS_EINVAL);
    json_decref(parts);
    json_decref(arr);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_s3_fields, setup, teardown),
        cmocka_unit_test_setup_teardown(test_s3_defaults_and_sequencer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_s3_invalid, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dynamodb_fields, setup_eu, teardown),
        cmocka_unit_test_setup_teardown(test_dynamodb_invalid, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dynamodb_record_without_event_source, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_kinesis_fields, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kinesis_invalid, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sqs_fields, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sqs_invalid, setup, teardown),
        cmocka_unit_test_setup_teardown(test_md5_vectors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_complete_records_pass_through, setup, teardown),
        cmocka_unit_test_setup_teardown(test_parts_are_copied, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_arguments, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
