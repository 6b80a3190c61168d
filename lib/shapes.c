/*
 * shapes.c - the records of host-fed sources, shaped as Lambda delivers
 * them: S3 event notification records, DynamoDB Streams records, Kinesis
 * records and SQS messages.
 *
 * faas_emit() calls faas_shape_record() once per emitted record, before any
 * filter runs, so filters and handlers see the same record. A record that
 * already has "eventSource" is taken as complete and kept as it is; anything
 * else is the parts of one (see faas_emit in faas.h), completed here with
 * the fields Lambda's own records carry: times from the runtime's wall
 * clock, the region of the runtime (or "local"), account 000000000000.
 * Values taken from the parts are deep copies: the caller keeps its record
 * and may change it once faas_emit returns.
 *
 * Sequence numbers (Kinesis sequenceNumber, DynamoDB SequenceNumber, the S3
 * sequencer) come from one process-wide atomic counter, combined with the
 * runtime's monotonic clock for the decimal ones. A file-static counter is
 * acceptable here because nothing needs more than what it gives: every
 * number is unique in the process and numbers made later compare greater
 * (fixed-width decimal, so as strings too), for every runtime at once. The
 * batcher matches batchItemFailures against these numbers within one
 * mapping, where uniqueness is all that counts.
 *
 * A DynamoDB Streams record written without "eventSource" (as in the
 * examples of AWS's documentation: {"eventName": "INSERT", "dynamodb":
 * {"Keys": ..., "NewImage": ...}}) is completed like the parts form, the
 * fields it has kept as given.
 *
 * What is wrong with a record that cannot be shaped is said in `why`, which
 * faas_emit logs (FAAS_LOG_WARNING, "record-refused").
 *
 * md5OfBody needs MD5 (RFC 1321), which libsodium does not offer; clients
 * check it, so a compact implementation lives at the end of this file.
 *
 * Called by source.c (faas_emit, through faas_shape_record_why) only. Calls
 * jansson, libsodium (base64 of Kinesis data), clock.c, random.c (message
 * and event ids) and alloc.c; it owns no state but the sequence counter.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "faas_int.h"

static _Atomic uint64_t shape_seq;

/* faas_runtime_new decided the default ("local"): the one value. */
static const char *region_of(const struct faas_runtime *rt)
{
    return rt->opts.region;
}

/* ---- MD5 (RFC 1321) ------------------------------------------------- */

struct md5 {
    uint32_t h[4];
    uint64_t len;
    unsigned char buf[64];
};

static uint32_t rol32(uint32_t x, unsigned s)
{
    return (x << s) | (x >> (32u - s));
}

static void md5_block(struct md5 *c, const unsigned char *p)
{
    static const uint32_t k[64] = {
        0xd76aa478, 0xe8c7b756, 0x242070db, 0xc1bdceee, 0xf57c0faf, 0x4787c62a, 0xa8304613,
        0xfd469501, 0x698098d8, 0x8b44f7af, 0xffff5bb1, 0x895cd7be, 0x6b901122, 0xfd987193,
        0xa679438e, 0x49b40821, 0xf61e2562, 0xc040b340, 0x265e5a51, 0xe9b6c7aa, 0xd62f105d,
        0x02441453, 0xd8a1e681, 0xe7d3fbc8, 0x21e1cde6, 0xc33707d6, 0xf4d50d87, 0x455a14ed,
        0xa9e3e905, 0xfcefa3f8, 0x676f02d9, 0x8d2a4c8a, 0xfffa3942, 0x8771f681, 0x6d9d6122,
        0xfde5380c, 0xa4beea44, 0x4bdecfa9, 0xf6bb4b60, 0xbebfbc70, 0x289b7ec6, 0xeaa127fa,
        0xd4ef3085, 0x04881d05, 0xd9d4d039, 0xe6db99e5, 0x1fa27cf8, 0xc4ac5665, 0xf4292244,
        0x432aff97, 0xab9423a7, 0xfc93a039, 0x655b59c3, 0x8f0ccc92, 0xffeff47d, 0x85845dd1,
        0x6fa87e4f, 0xfe2ce6e0, 0xa3014314, 0x4e0811a1, 0xf7537e82, 0xbd3af235, 0x2ad7d2bb,
        0xeb86d391
    };
    static const unsigned char r[16] = {7, 12, 17, 22, 5, 9, 14, 20, 4, 11, 16, 23, 6, 10, 15, 21};
    uint32_t w[16], a = c->h[0], b = c->h[1], cc = c->h[2], d = c->h[3], f, t;
    unsigned i, g;

    for (i = 0; i < 16; i++)
        w[i] = (uint32_t)p[i * 4] | (uint32_t)p[i * 4 + 1] << 8 | (uint32_t)p[i * 4 + 2] << 16 |
               (uint32_t)p[i * 4 + 3] << 24;
    for (i = 0; i < 64; i++) {
        if (i < 16) {
            f = (b & cc) | (~b & d);
            g = i;
        } else if (i < 32) {
            f = (d & b) | (~d & cc);
            g = (5 * i + 1) & 15;
        } else if (i < 48) {
            f = b ^ cc ^ d;
            g = (3 * i + 5) & 15;
        } else {
            f = cc ^ (b | ~d);
            g = (7 * i) & 15;
        }
        t = d;
        d = cc;
        cc = b;
        b = b + rol32(a + f + k[i] + w[g], r[(i / 16) * 4 + (i & 3)]);
        a = t;
    }
    c->h[0] += a;
    c->h[1] += b;
    c->h[2] += cc;
    c->h[3] += d;
}

static void md5_update(struct md5 *c, const unsigned char *p, size_t n)
{
    size_t have = (size_t)(c->len & 63u), take;
    c->len += n;
    while (n > 0) {
        take = 64 - have < n ? 64 - have : n;
        memcpy(c->buf + have, p, take);
        have += take;
        p += take;
        n -= take;
        if (have == 64) {
            md5_block(c, c->buf);
            have = 0;
        }
    }
}

/* The hex digest of p[0..n) into out (33 bytes). */
static void md5_hex(const void *p, size_t n, char out[33])
{
    static const char hex[] = "0123456789abcdef";
    struct md5 c = { { 0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476 }, 0, { 0 } };
    unsigned char pad[72] = { 0x80 }, digest[16];
    uint64_t bits;
    size_t padlen;
    int i;

    md5_update(&c, p, n);
    bits = c.len * 8u;
    padlen = (size_t)((c.len & 63u) < 56u ? 56u - (c.len & 63u) : 120u - (c.len & 63u));
    for (i = 0; i < 8; i++)
        pad[padlen + (size_t)i] = (unsigned char)(bits >> (8 * i));
    md5_update(&c, pad, padlen + 8);
    for (i = 0; i < 16; i++)
        digest[i] = (unsigned char)(c.h[i / 4] >> (8 * (i % 4)));
    for (i = 0; i < 16; i++) {
        out[2 * i] = hex[digest[i] >> 4];
        out[2 * i + 1] = hex[digest[i] & 15];
    }
    out[32] = '\0';
}

/* ---- helpers -------------------------------------------------------- */

/* Where a refusal is explained: `why` (NULL: nowhere) of `len` bytes. */
struct why {
    char *buf;
    size_t len;
};

/* Sets *err to FAAS_EINVAL and writes the reason. Returns NULL. */
static json_t *invalid(int *err, const struct why *w, const char *fmt, ...) FAAS_PRINTF(3, 4);

static json_t *invalid(int *err, const struct why *w, const char *fmt, ...)
{
    va_list ap;
    *err = FAAS_EINVAL;
    if (w->buf && w->len) {
        va_start(ap, fmt);
        vsnprintf(w->buf, w->len, fmt, ap);
        va_end(ap);
    }
    return NULL;
}

static uint64_t next_seq(void)
{
    return atomic_fetch_add(&shape_seq, 1) + 1;
}

/* A decimal sequence number: 20 digits of the clock, 10 of the counter. */
static void seq_decimal(struct faas_runtime *rt, uint64_t seq, char out[48])
{
    snprintf(out, 48, "%020llu%010llu", (unsigned long long)faas_now_ns(rt),
             (unsigned long long)(seq % 10000000000u));
}

/* Sets key to a deep copy of v (NULL: nothing). Returns 0 or -1. */
static int set_copy(json_t *obj, const char *key, json_t *v)
{
    json_t *c;
    if (!v)
        return 0;
    c = json_deep_copy(v);
    return c ? json_object_set_new(obj, key, c) : -1;
}

/* Base64 of n bytes as a JSON string. New reference or NULL. */
static json_t *base64_string(const void *p, size_t n)
{
    size_t len = sodium_base64_ENCODED_LEN(n, sodium_base64_VARIANT_ORIGINAL);
    char *buf = faas_malloc(len);
    json_t *s;
    if (!buf)
        return NULL;
    sodium_bin2base64(buf, len, p, n, sodium_base64_VARIANT_ORIGINAL);
    s = json_string(buf);
    free(buf);
    return s;
}

/*
 * An object key URL-encoded as S3 writes it in event notifications
 * (application/x-www-form-urlencoded, '/' kept): "red flower.jpg" becomes
 * "red+flower.jpg". New reference or NULL.
 */
static json_t *s3_key_encode(const char *key)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = strlen(key), o = 0, i;
    char *buf = faas_malloc(n * 3 + 1);
    json_t *s;

    if (!buf)
        return NULL;
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)key[i];
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '_' || c == '.' || c == '*' || c == '/') {
            buf[o++] = (char)c;
        } else if (c == ' ') {
            buf[o++] = '+';
        } else {
            buf[o++] = '%';
            buf[o++] = hex[c >> 4];
            buf[o++] = hex[c & 15];
        }
    }
    buf[o] = '\0';
    s = json_string(buf);
    free(buf);
    return s;
}

static int nonempty_string(json_t *v)
{
    return json_is_string(v) && json_string_length(v) > 0;
}

/* ---- the shapes ----------------------------------------------------- */

static json_t *shape_s3(struct faas_runtime *rt, const char *name, json_t *parts, int *err,
                        const struct why *w)
{
    json_t *bucket = json_object_get(parts, "bucket"), *key = json_object_get(parts, "key");
    json_t *size = json_object_get(parts, "size"), *etag = json_object_get(parts, "eTag");
    json_t *rec, *object;
    char when[96], arn[1100], seqhex[24], reqid[24], id2[FAAS_REQUEST_ID_SIZE];
    uint64_t seq;

    if (!nonempty_string(bucket) || json_string_length(bucket) > 1000)
        return invalid(err, w, "\"bucket\" must be a string of 1 to 1000 bytes");
    if (!nonempty_string(key))
        return invalid(err, w, "\"key\" must be a non-empty string");
    if (size && (!json_is_integer(size) || json_integer_value(size) < 0))
        return invalid(err, w, "\"size\" must be an integer >= 0");
    if (etag && !json_is_string(etag))
        return invalid(err, w, "\"eTag\" must be a string");
    seq = next_seq();
    faas_iso_time_ms(faas_wall_ns(rt), when, sizeof when);
    snprintf(arn, sizeof arn, "arn:aws:s3:::%s", json_string_value(bucket));
    snprintf(seqhex, sizeof seqhex, "%016llX", (unsigned long long)seq);
    snprintf(reqid, sizeof reqid, "%016llX",
             (unsigned long long)(seq * UINT64_C(0x9E3779B97F4A7C15)));
    faas_request_id(rt, id2);
    object = json_pack("{s:o}", "key", s3_key_encode(json_string_value(key)));
    /* Removals carry no size or eTag in S3's records unless given. */
    if (object && (size || strncmp(name, "ObjectRemoved", 13) != 0))
        json_object_set_new(object, "size", json_integer(size ? json_integer_value(size) : 0));
    if (object && etag && set_copy(object, "eTag", etag) != 0) {
        json_decref(object);
        object = NULL;
    }
    if (object)
        json_object_set_new(object, "sequencer", json_string(seqhex));
    rec = object ? json_pack("{s:s, s:s, s:s, s:s, s:s, s:{s:s}, s:{s:s}, s:{s:s, s:s},"
                             " s:{s:s, s:s, s:{s:s, s:{s:s}, s:s}, s:o}}",
                             "eventVersion", "2.1", "eventSource", "aws:s3", "awsRegion",
                             region_of(rt), "eventTime", when, "eventName", name,
                             "userIdentity", "principalId", "local", "requestParameters",
                             "sourceIPAddress", "127.0.0.1", "responseElements",
                             "x-amz-request-id", reqid, "x-amz-id-2", id2, "s3",
                             "s3SchemaVersion", "1.0", "configurationId", "libfaas", "bucket",
                             "name", json_string_value(bucket), "ownerIdentity", "principalId",
                             "local", "arn", arn, "object", object)
                 : NULL;
    if (!rec)
        *err = FAAS_ENOMEM;
    return rec;
}

static json_t *shape_dynamodb(struct faas_runtime *rt, const char *name, json_t *parts, int *err,
                              const struct why *w)
{
    json_t *keys = json_object_get(parts, "Keys"), *newimg = json_object_get(parts, "NewImage");
    json_t *oldimg = json_object_get(parts, "OldImage"), *ddb, *rec;
    char id[FAAS_REQUEST_ID_SIZE], seq[48], arn[160];
    size_t bytes;

    if (strcmp(name, "INSERT") != 0 && strcmp(name, "MODIFY") != 0 &&
        strcmp(name, "REMOVE") != 0)
        return invalid(err, w, "the event name must be INSERT, MODIFY or REMOVE");
    if (!json_is_object(keys) || json_object_size(keys) == 0)
        return invalid(err, w, "\"Keys\" must be a non-empty object");
    if ((newimg && !json_is_object(newimg)) || (oldimg && !json_is_object(oldimg)))
        return invalid(err, w, "\"NewImage\" and \"OldImage\" must be objects");
    faas_request_id(rt, id);
    seq_decimal(rt, next_seq(), seq);
    snprintf(arn, sizeof arn, "arn:aws:dynamodb:%s:000000000000:table/local/stream/local",
             region_of(rt));
    bytes = json_dumpb(keys, NULL, 0, JSON_COMPACT) +
            (newimg ? json_dumpb(newimg, NULL, 0, JSON_COMPACT) : 0) +
            (oldimg ? json_dumpb(oldimg, NULL, 0, JSON_COMPACT) : 0);
    ddb = json_pack("{s:I}", "ApproximateCreationDateTime",
                    (json_int_t)(faas_wall_ns(rt) / 1000000000));
    if (!ddb || set_copy(ddb, "Keys", keys) != 0 || set_copy(ddb, "NewImage", newimg) != 0 ||
        set_copy(ddb, "OldImage", oldimg) != 0 ||
        json_object_set_new(ddb, "SequenceNumber", json_string(seq)) != 0 ||
        json_object_set_new(ddb, "SizeBytes", json_integer((json_int_t)bytes)) != 0 ||
        json_object_set_new(ddb, "StreamViewType", json_string("NEW_AND_OLD_IMAGES")) != 0) {
        json_decref(ddb);
        *err = FAAS_ENOMEM;
        return NULL;
    }
    rec = json_pack("{s:s, s:s, s:s, s:s, s:s, s:o, s:s}", "eventID", id, "eventName", name,
                    "eventVersion", "1.1", "eventSource", "aws:dynamodb", "awsRegion",
                    region_of(rt), "dynamodb", ddb, "eventSourceARN", arn);
    if (!rec)
        *err = FAAS_ENOMEM;
    return rec;
}

static json_t *shape_kinesis(struct faas_runtime *rt, const char *name, json_t *parts, int *err,
                             const struct why *w)
{
    json_t *pk = json_object_get(parts, "partitionKey"), *data = json_object_get(parts, "data");
    json_t *b64, *rec;
    char seq[48], evid[80], arn[FAAS_NAME_MAX + 512];
    char *text = NULL;
    int64_t wall;

    if (!name[0])
        return invalid(err, w, "the stream has no name");
    if (!nonempty_string(pk) || json_string_length(pk) > 256)
        return invalid(err, w, "\"partitionKey\" must be a string of 1 to 256 bytes");
    if (!data)
        b64 = json_string("");
    else if (json_is_string(data))
        b64 = base64_string(json_string_value(data), json_string_length(data));
    else if ((text = json_dumps(data, JSON_COMPACT | JSON_ENCODE_ANY)) != NULL)
        b64 = base64_string(text, strlen(text));
    else
        b64 = NULL;
    free(text);
    if (!b64) {
        if (data && !json_is_string(data) && json_dumpb(data, NULL, 0, JSON_ENCODE_ANY) == 0)
            return invalid(err, w, "\"data\" cannot be serialised as JSON");
        *err = FAAS_ENOMEM;
        return NULL;
    }
    seq_decimal(rt, next_seq(), seq);
    snprintf(evid, sizeof evid, "shardId-000000000000:%s", seq);
    snprintf(arn, sizeof arn, "arn:aws:kinesis:%s:000000000000:stream/%s", region_of(rt), name);
    wall = faas_wall_ns(rt);
    rec = json_pack("{s:{s:s, s:O, s:s, s:o, s:f}, s:s, s:s, s:s, s:s, s:s, s:s, s:s}",
                    "kinesis", "kinesisSchemaVersion", "1.0", "partitionKey", pk,
                    "sequenceNumber", seq, "data", b64, "approximateArrivalTimestamp",
                    (double)(wall / 1000000) / 1000.0, "eventSource", "aws:kinesis",
                    "eventVersion", "1.0", "eventID", evid, "eventName", "aws:kinesis:record",
                    "invokeIdentityArn", "arn:aws:iam::000000000000:role/local", "awsRegion",
                    region_of(rt), "eventSourceARN", arn);
    if (!rec)
        *err = FAAS_ENOMEM;
    return rec;
}

static json_t *shape_sqs(struct faas_runtime *rt, const char *name, json_t *parts, int *err,
                         const struct why *w)
{
    json_t *body = json_object_get(parts, "body"), *attrs = json_object_get(parts, "attributes");
    json_t *mattrs = json_object_get(parts, "messageAttributes"), *rec, *a;
    char id[FAAS_REQUEST_ID_SIZE], ms[32], md5[33], arn[FAAS_NAME_MAX + 512], handle[96];
    char *text = NULL;
    const char *btext;
    size_t blen;

    if (!name[0])
        return invalid(err, w, "the queue has no name");
    if (!body)
        return invalid(err, w, "\"body\" is missing");
    if ((attrs && !json_is_object(attrs)) || (mattrs && !json_is_object(mattrs)))
        return invalid(err, w, "\"attributes\" and \"messageAttributes\" must be objects");
    if (json_is_string(body)) {
        btext = json_string_value(body);
        blen = json_string_length(body);
    } else {
        text = json_dumps(body, JSON_COMPACT | JSON_ENCODE_ANY);
        if (!text) {
            if (json_dumpb(body, NULL, 0, JSON_ENCODE_ANY) == 0)
                return invalid(err, w, "\"body\" cannot be serialised as JSON");
            *err = FAAS_ENOMEM;
            return NULL;
        }
        btext = text;
        blen = strlen(text);
    }
    faas_request_id(rt, id);
    md5_hex(btext, blen, md5);
    snprintf(ms, sizeof ms, "%lld", (long long)(faas_wall_ns(rt) / 1000000));
    snprintf(arn, sizeof arn, "arn:aws:sqs:%s:000000000000:%s", region_of(rt), name);
    snprintf(handle, sizeof handle, "AQEB%s%016llx", id, (unsigned long long)next_seq());
    a = json_pack("{s:s, s:s, s:s, s:s}", "ApproximateReceiveCount", "1", "SentTimestamp", ms,
                  "SenderId", "local", "ApproximateFirstReceiveTimestamp", ms);
    if (a && attrs) {
        json_t *copy = json_deep_copy(attrs);
        if (!copy || json_object_update(a, copy) != 0) {
            json_decref(a);
            a = NULL;
        }
        json_decref(copy);
    }
    rec = a ? json_pack("{s:s, s:s, s:s%, s:o, s:o, s:s, s:s, s:s, s:s}", "messageId", id,
                        "receiptHandle", handle, "body", btext, blen, "attributes", a,
                        "messageAttributes",
                        mattrs ? json_deep_copy(mattrs) : json_object(), "md5OfBody", md5,
                        "eventSource", "aws:sqs", "eventSourceARN", arn, "awsRegion",
                        region_of(rt))
            : NULL;
    free(text);
    if (!rec)
        *err = FAAS_ENOMEM;
    return rec;
}

/*
 * A DynamoDB Streams record without "eventSource": its "dynamodb" object is
 * the parts; what the record and its "dynamodb" give is kept over what is
 * made.
 */
static json_t *complete_dynamodb(struct faas_runtime *rt, const char *name, json_t *record,
                                 int *err, const struct why *w)
{
    json_t *given = json_object_get(record, "dynamodb");
    json_t *en = json_object_get(record, "eventName"), *rec, *ddb, *v;
    const char *key;

    if (!json_is_object(given))
        return invalid(err, w, "\"dynamodb\" must be an object");
    if (en && (!json_is_string(en) || strcmp(json_string_value(en), name) != 0))
        return invalid(err, w, "\"eventName\" is not %s, the event the record is emitted as",
                       name);
    rec = shape_dynamodb(rt, name, given, err, w);
    if (!rec)
        return NULL;
    ddb = json_object_get(rec, "dynamodb");
    json_object_foreach(given, key, v) {
        if (strcmp(key, "Keys") != 0 && strcmp(key, "NewImage") != 0 &&
            strcmp(key, "OldImage") != 0 && set_copy(ddb, key, v) != 0)
            goto nomem;
    }
    json_object_foreach(record, key, v) {
        if (strcmp(key, "dynamodb") != 0 && set_copy(rec, key, v) != 0)
            goto nomem;
    }
    return rec;
nomem:
    json_decref(rec);
    *err = FAAS_ENOMEM;
    return NULL;
}

json_t *faas_shape_record(struct faas_runtime *rt, enum faas_src_kind kind, const char *name,
                          json_t *parts, int *err)
{
    return faas_shape_record_why(rt, kind, name, parts, err, NULL, 0);
}

json_t *faas_shape_record_why(struct faas_runtime *rt, enum faas_src_kind kind, const char *name,
                              json_t *parts, int *err, char *why, size_t whylen)
{
    const struct why w = { why, whylen };
    int dummy;

    if (!err)
        err = &dummy;
    *err = 0;
    if (why && whylen)
        why[0] = '\0';
    if (!rt || !name)
        return invalid(err, &w, "no runtime or event name");
    if (!json_is_object(parts))
        return invalid(err, &w, "the record is not a JSON object");
    if (json_object_get(parts, "eventSource")) {
        /* The caller keeps its record and may change it: a copy. */
        json_t *copy = json_deep_copy(parts);
        if (!copy)
            *err = FAAS_ENOMEM;
        return copy;
    }
    switch (kind) {
    case FAAS_SRC_S3:
        if (!name[0])
            return invalid(err, &w, "the S3 event has no name");
        return shape_s3(rt, name, parts, err, &w);
    case FAAS_SRC_DYNAMODB:
        if (!json_object_get(parts, "Keys") && json_object_get(parts, "dynamodb"))
            return complete_dynamodb(rt, name, parts, err, &w);
        return shape_dynamodb(rt, name, parts, err, &w);
    case FAAS_SRC_STREAM:
        return shape_kinesis(rt, name, parts, err, &w);
    case FAAS_SRC_QUEUE:
        return shape_sqs(rt, name, parts, err, &w);
    case FAAS_SRC_API:
    case FAAS_SRC_SCHEDULE:
        break;
    }
    return invalid(err, &w, "this kind of source is not fed by the host");
}
