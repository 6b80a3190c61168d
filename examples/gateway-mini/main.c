/*
 * gateway-mini - event-source mappings in one host program to copy from:
 * an HTTP route, a schedule, object events from a watched directory and
 * table-stream records, each reaching a function in the shape a Lambda
 * function would receive, so handlers written for Lambda read them
 * unchanged.
 *
 * It shows:
 *  - the api: route "/users/" with a trailing "*" -> "users", an INLINE
 *    function behind the runtime's own HTTP server (faas_http_bind on
 *    127.0.0.1, port 0: a free one). It reads the id from the API Gateway
 *    payload 2.0 event (pathParameters.proxy) and answers with a payload
 *    2.0 response:
 *      {"statusCode":200,"headers":{"content-type":"application/json"},
 *       "body":"{\"user\":\"<id>\"}"}
 *  - "schedule:rate(5 minutes)" -> "health", an EventBridge Scheduled Event
 *    every five minutes (faas_schedule_next says when the first fire is
 *    due), and "schedule:at(...)" -> "health" two seconds ahead, to see a
 *    fire without waiting five minutes;
 *  - "s3:ObjectCreated" -> "images", fed by faas_watch_dir() on a temporary
 *    directory: a file closed after writing becomes an S3 event notification
 *    record (bucket, key, size, eTag). The mapping's filter lets only keys
 *    ending in ".jpg" through;
 *  - "dynamodb:INSERT" -> "stream", fed by the host with faas_emit(): a
 *    DynamoDB Streams record, delivered in a {"Records": [...]} batch. A
 *    MODIFY record is emitted too: no mapping takes it.
 *
 * With no argument (as CI runs it) it tests itself and exits: it sends
 * GET /users/42 (and GET /nope, which is 404) to its own server with
 * libevent's HTTP client, writes notes.txt and cat.jpg into the watched
 * directory, emits a DynamoDB INSERT, and waits for every answer and the
 * at() fire, bounded by a safety timer. It exits 0 only if every check
 * passed. With a number of seconds it serves that long instead, for curl.
 *
 * Run it from the top of the source tree:
 *
 *   make examples && ./build/examples/gateway-mini [seconds]
 */
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>

#include "faas.h"

#define SELFTEST_LIMIT_S 10 /* the safety timer of the self-test */
#define AT_AHEAD_S 2        /* the one-time schedule fires this far ahead */
#define BUCKET "uploads"    /* the watched directory's bucket name */
#define CAT_JPG "not really a JPEG\n" /* what the self-test writes to cat.jpg */

/* One HTTP request of the self-test and what came back. */
struct probe {
    struct app *app;
    const char *path;
    int done;
    int code;         /* 0: no response */
    char ctype[64];
    char body[256];
};

struct app {
    struct event_base *base;
    struct faas_runtime *rt;
    int failures;                /* checks that failed */
    int selftest;                /* 0: serve for a while instead */
    int at_mapping;              /* the at() schedule's mapping id */
    char dir[256];               /* the watched directory */
    struct evhttp_connection *client;
    struct probe users, missing; /* GET /users/42, GET /nope */
};

/*
 * A handler has no user argument, so what the handlers share with main()
 * lives here. Every function is INLINE: they run on the loop thread, like
 * every callback, and plain variables are enough.
 */
static struct app *g_app;
static unsigned users_runs;
static unsigned health_runs, health_at_fires; /* every fire; fires of the at() */
static unsigned image_records;                /* records "images" got */
static char image_key[128];                   /* the key of the first one */
static json_int_t image_size = -1;
static size_t image_etag_len;
static unsigned stream_batches, stream_inserts;

static void check(struct app *app, int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "CHECK FAILED: %s\n", what);
        app->failures++;
    }
}

static const char *jstr(json_t *obj, const char *key)
{
    return json_string_value(json_object_get(obj, key));
}

/* For printing: a string that may be missing. */
static const char *or_dash(const char *s)
{
    return s ? s : "-";
}

static int selftest_done(const struct app *app)
{
    return app->users.done && app->missing.done && health_at_fires >= 1 &&
           image_records >= 1 && stream_inserts >= 1;
}

static void maybe_stop(struct app *app)
{
    if (app->selftest && selftest_done(app))
        event_base_loopexit(app->base, NULL);
}

/* ------------------------------------------------------------------ */
/* The functions                                                       */
/* ------------------------------------------------------------------ */

/*
 * The api: route "/users/" + "*": a trailing "*" is a greedy {proxy+} tail,
 * so the user id is pathParameters.proxy ("42" for /users/42). The body of a payload 2.0
 * response is a string: the JSON is serialised here.
 */
static int users(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    const char *id = jstr(json_object_get(event, "pathParameters"), "proxy");
    json_t *doc;
    char *body;

    users_runs++;
    if (!id)
        return faas_ctx_fail(ctx, "BadRequest", "no user id in the path");
    faas_ctx_log(ctx, "%s %s -> user %s", or_dash(jstr(event, "routeKey")),
                 or_dash(jstr(event, "rawPath")), id);
    doc = json_pack("{s:s}", "user", id);
    body = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    if (!body)
        return faas_ctx_fail(ctx, "OutOfMemory", "cannot build the body");
    *result = json_pack("{s:i, s:{s:s}, s:s}", "statusCode", 200, "headers", "content-type",
                        "application/json", "body", body);
    free(body);
    return *result ? 0 : -1;
}

/*
 * schedule: - an EventBridge Scheduled Event. resources[0] names the rule,
 * "arn:aws:events:<region>:000000000000:rule/libfaas-<mapping id>", which
 * tells the two schedules apart.
 */
static int health(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    const char *rule = json_string_value(json_array_get(json_object_get(event, "resources"), 0));
    const char *type = jstr(event, "detail-type"), *source = jstr(event, "source");
    char at_rule[32];

    health_runs++;
    if (!type || strcmp(type, "Scheduled Event") != 0 || !source ||
        strcmp(source, "aws.events") != 0 || !rule ||
        !json_is_object(json_object_get(event, "detail")))
        return faas_ctx_fail(ctx, "InvalidEvent", "not a Scheduled Event");
    snprintf(at_rule, sizeof at_rule, "rule/libfaas-%d", g_app->at_mapping);
    if (strstr(rule, at_rule) && strcmp(strstr(rule, at_rule), at_rule) == 0)
        health_at_fires++;
    faas_ctx_log(ctx, "health check at %s (%s)", or_dash(jstr(event, "time")), rule);
    *result = json_pack("{s:s}", "status", "ok");
    maybe_stop(g_app);
    return *result ? 0 : -1;
}

/* s3:ObjectCreated - S3 event notification records, one batch at a time. */
static int images(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    json_t *records = json_object_get(event, "Records"), *rec;
    size_t i;

    if (!json_is_array(records))
        return faas_ctx_fail(ctx, "InvalidEvent", "no Records");
    json_array_foreach(records, i, rec) {
        json_t *s3 = json_object_get(rec, "s3");
        json_t *object = json_object_get(s3, "object");
        const char *bucket = jstr(json_object_get(s3, "bucket"), "name");
        const char *key = jstr(object, "key"), *etag = jstr(object, "eTag");
        json_int_t size = json_integer_value(json_object_get(object, "size"));

        faas_ctx_log(ctx, "%s s3://%s/%s, %lld bytes, eTag %s", or_dash(jstr(rec, "eventName")),
                     or_dash(bucket), or_dash(key), (long long)size, or_dash(etag));
        if (image_records++ == 0) {
            snprintf(image_key, sizeof image_key, "%s", key ? key : "");
            image_size = size;
            image_etag_len = etag ? strlen(etag) : 0;
        }
    }
    *result = json_pack("{s:I}", "processed", (json_int_t)json_array_size(records));
    maybe_stop(g_app);
    return *result ? 0 : -1;
}

/* dynamodb:INSERT - DynamoDB Streams records, in order per item key. */
static int stream(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    json_t *records = json_object_get(event, "Records"), *rec;
    size_t i;

    if (!json_is_array(records))
        return faas_ctx_fail(ctx, "InvalidEvent", "no Records");
    stream_batches++;
    json_array_foreach(records, i, rec) {
        json_t *ddb = json_object_get(rec, "dynamodb");
        json_t *name = json_object_get(json_object_get(ddb, "NewImage"), "name");
        const char *ev = jstr(rec, "eventName");

        faas_ctx_log(ctx, "%s id=%s name=%s seq=%s", or_dash(ev),
                     or_dash(jstr(json_object_get(json_object_get(ddb, "Keys"), "id"), "S")),
                     or_dash(jstr(name, "S")), or_dash(jstr(ddb, "SequenceNumber")));
        if (ev && strcmp(ev, "INSERT") == 0)
            stream_inserts++;
    }
    *result = json_pack("{s:I}", "processed", (json_int_t)json_array_size(records));
    maybe_stop(g_app);
    return *result ? 0 : -1;
}

/* ------------------------------------------------------------------ */
/* Logs, timers and the HTTP client                                    */
/* ------------------------------------------------------------------ */

static void on_log(const struct faas_log_record *rec, void *arg)
{
    (void)arg;
    switch (rec->kind) {
    case FAAS_LOG_LINE:
        printf("  [%s] %s\n", rec->function, rec->line);
        break;
    case FAAS_LOG_ASYNC: /* a schedule's or a mapping's failure, a retry */
        printf("  [async] %s %s: %s\n", rec->function ? rec->function : "-", rec->action,
               rec->line ? rec->line : "");
        break;
    case FAAS_LOG_WARNING: /* a refused record, a connection limit */
        printf("  [warning] %s: %s\n", rec->action, rec->line ? rec->line : "");
        break;
    case FAAS_LOG_IDEMPOTENCY:
    case FAAS_LOG_REPORT:
        break;
    }
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
    struct app *app = arg;
    (void)fd;
    (void)what;
    if (app->selftest) {
        fprintf(stderr,
                "gave up after %d s: users %d, 404 %d, at() fires %u, images %u, "
                "inserts %u\n",
                SELFTEST_LIMIT_S, app->users.done, app->missing.done, health_at_fires,
                image_records, stream_inserts);
        app->failures++;
    }
    event_base_loopexit(app->base, NULL);
}

/* A response of the self-test's client (req NULL: the request failed). */
static void on_response(struct evhttp_request *req, void *arg)
{
    struct probe *p = arg;
    struct evbuffer *in;
    const char *ct;
    size_t n;

    p->done = 1;
    if (req && evhttp_request_get_response_code(req) > 0) {
        p->code = evhttp_request_get_response_code(req);
        ct = evhttp_find_header(evhttp_request_get_input_headers(req), "Content-Type");
        snprintf(p->ctype, sizeof p->ctype, "%s", ct ? ct : "");
        in = evhttp_request_get_input_buffer(req);
        n = evbuffer_get_length(in);
        if (n >= sizeof p->body)
            n = sizeof p->body - 1;
        evbuffer_copyout(in, p->body, n);
        p->body[n] = '\0';
    }
    printf("GET %s -> %d %s %s\n", p->path, p->code, p->ctype, p->body);
    maybe_stop(p->app);
}

static int send_get(struct app *app, struct probe *p, const char *path)
{
    struct evhttp_request *req = evhttp_request_new(on_response, p);

    p->app = app;
    p->path = path;
    if (!req)
        return -1;
    evhttp_add_header(evhttp_request_get_output_headers(req), "Host", "127.0.0.1");
    evhttp_add_header(evhttp_request_get_output_headers(req), "User-Agent", "gateway-mini");
    /* On failure libevent frees the request. */
    return evhttp_make_request(app->client, req, EVHTTP_REQ_GET, path);
}

/* ------------------------------------------------------------------ */
/* Steps                                                               */
/* ------------------------------------------------------------------ */

static int write_file(struct app *app, const char *name, const char *content)
{
    char path[320];
    FILE *f;
    int ok;

    snprintf(path, sizeof path, "%s/%s", app->dir, name);
    f = fopen(path, "w");
    if (!f)
        return -1;
    ok = fputs(content, f) >= 0;
    /* The record is emitted at this close, never while the file is open. */
    return fclose(f) == 0 && ok ? 0 : -1;
}

/* The DynamoDB Streams parts of a record; the runtime completes it. */
static int emit_item(struct app *app, const char *event_name, const char *id, const char *name)
{
    json_t *rec = json_pack("{s:{s:{s:s}}, s:{s:{s:s}, s:{s:s}}}", "Keys", "id", "S", id,
                            "NewImage", "id", "S", id, "name", "S", name);
    char source[32];
    int rc;

    if (!rec)
        return FAAS_ENOMEM;
    snprintf(source, sizeof source, "dynamodb:%s", event_name);
    rc = faas_emit(app->rt, source, rec);
    json_decref(rec);
    printf("faas_emit(%s) -> %d mapping(s)\n", source, rc);
    return rc;
}

/* Starts every self-test probe; the loop delivers the results. */
static void selftest_start(struct app *app, uint16_t port)
{
    app->client = evhttp_connection_base_new(app->base, NULL, "127.0.0.1", port);
    check(app, app->client != NULL, "the HTTP client connection");
    if (app->client) {
        check(app, send_get(app, &app->users, "/users/42") == 0, "send GET /users/42");
        check(app, send_get(app, &app->missing, "/nope") == 0, "send GET /nope");
    }
    /* notes.txt first: the filter drops it, so cat.jpg is the first and only
     * record "images" gets. */
    check(app, write_file(app, "notes.txt", "not an image\n") == 0, "write notes.txt");
    check(app, write_file(app, "cat.jpg", CAT_JPG) == 0, "write cat.jpg");
    check(app, emit_item(app, "INSERT", "42", "Ada") == 1, "dynamodb:INSERT taken by 1");
    check(app, emit_item(app, "MODIFY", "42", "Ada L.") == 0, "dynamodb:MODIFY taken by none");
}

static void selftest_check(struct app *app)
{
    check(app, app->users.code == 200, "GET /users/42: 200");
    check(app, strcmp(app->users.ctype, "application/json") == 0,
          "GET /users/42: content-type application/json");
    check(app, strcmp(app->users.body, "{\"user\":\"42\"}") == 0,
          "GET /users/42: body {\"user\":\"42\"}");
    check(app, users_runs == 1, "users ran once (404 is the gateway's own)");
    check(app, app->missing.code == 404, "GET /nope: 404");
    check(app, strcmp(app->missing.body, "{\"message\":\"Not Found\"}") == 0,
          "GET /nope: the JSON message");
    check(app, health_at_fires == 1 && health_runs == 1, "health: the at() fired once");
    check(app, image_records == 1, "images: one record (notes.txt filtered out)");
    check(app, strcmp(image_key, "cat.jpg") == 0, "images: key cat.jpg");
    check(app, image_size == (json_int_t)strlen(CAT_JPG), "images: the size written");
    check(app, image_etag_len == 32, "images: a 32-hex-digit eTag");
    check(app, stream_batches == 1 && stream_inserts == 1, "stream: one batch, one INSERT");
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* ------------------------------------------------------------------ */
/* main                                                                */
/* ------------------------------------------------------------------ */

static int map(struct app *app, const char *source, const char *function,
               const struct faas_map_opts *opts)
{
    int id = faas_map(app->rt, source, function, opts);
    if (id < 0)
        fprintf(stderr, "faas_map(%s): %s\n", source, faas_strerror(id));
    else
        printf("mapping %d: %-28s -> %s\n", id, source, function);
    check(app, id >= 0, "faas_map");
    return id;
}

int main(int argc, char **argv)
{
    static const char *const names[] = { "users", "health", "images", "stream" };
    static const faas_handler_fn fns[] = { users, health, images, stream };
    struct app app;
    struct event *deadline = NULL;
    struct timeval limit;
    char at_key[64];
    const char *tmp;
    time_t now = time(NULL), next = 0, at;
    struct tm tm;
    long serve_s = 0;
    uint16_t port = 0;
    size_t i;
    int rc;

    setvbuf(stdout, NULL, _IOLBF, 0); /* lines appear as they happen, piped too */
    memset(&app, 0, sizeof app);
    app.at_mapping = -1;
    g_app = &app;
    if (argc > 1) {
        char *end;
        serve_s = strtol(argv[1], &end, 10);
        if (*end || serve_s <= 0 || serve_s > 86400) {
            fprintf(stderr, "usage: %s [seconds to serve, 1..86400]\n", argv[0]);
            return 2;
        }
    }
    app.selftest = serve_s == 0;

    app.base = event_base_new();
    if (!app.base) {
        fprintf(stderr, "event_base_new failed\n");
        return 1;
    }
    struct faas_runtime_opts ro = FAAS_RUNTIME_OPTS_INIT;
    ro.log = on_log;
    ro.http_max_body = 64 * 1024; /* a larger body is 413 */
    rc = faas_runtime_new(&app.rt, app.base, &ro);
    if (rc != 0) {
        fprintf(stderr, "faas_runtime_new: %s\n", faas_strerror(rc));
        event_base_free(app.base);
        return 1;
    }
    /* An HTTP server writing to a client that has gone gets SIGPIPE: a
     * server ignores it (after faas_runtime_new: the zygote keeps the
     * default). */
    signal(SIGPIPE, SIG_IGN);

    struct faas_function_opts fo = FAAS_FUNCTION_OPTS_INIT;
    fo.isolation = FAAS_ISOLATION_INLINE;
    for (i = 0; i < sizeof names / sizeof names[0]; i++) {
        rc = faas_register(app.rt, names[i], fns[i], &fo);
        if (rc != 0)
            fprintf(stderr, "faas_register(%s): %s\n", names[i], faas_strerror(rc));
        check(&app, rc == 0, "faas_register");
    }
    if (app.failures)
        goto out;

    /* The four seed mappings. */
    map(&app, "api:/users/*", "users", NULL);
    map(&app, "schedule:rate(5 minutes)", "health", NULL);
    struct faas_map_opts image_opts = FAAS_MAP_OPTS_INIT;
    image_opts.filter = "{\"s3\": {\"object\": {\"key\": [{\"suffix\": \".jpg\"}]}}}";
    map(&app, "s3:ObjectCreated", "images", &image_opts);
    struct faas_map_opts stream_opts = FAAS_MAP_OPTS_INIT;
    stream_opts.batch_size = 10;       /* up to 10 records per invocation */
    stream_opts.batch_window_ms = 100; /* or what came within 100 ms */
    stream_opts.max_retries = 2;
    stream_opts.bisect_on_error = 1;
    map(&app, "dynamodb:INSERT", "stream", &stream_opts);

    /* rate(5 minutes) first fires five minutes after it was mapped. */
    rc = faas_schedule_next("rate(5 minutes)", now, &next);
    check(&app, rc == 0 && next == now + 300, "faas_schedule_next rate(5 minutes)");
    gmtime_r(&next, &tm);
    strftime(at_key, sizeof at_key, "%Y-%m-%dT%H:%M:%SZ", &tm);
    printf("rate(5 minutes): the first health check is due at %s\n", at_key);

    /* A one-time schedule, AT_AHEAD_S seconds from now (UTC). */
    at = now + AT_AHEAD_S;
    gmtime_r(&at, &tm);
    strftime(at_key, sizeof at_key, "schedule:at(%Y-%m-%dT%H:%M:%S)", &tm);
    app.at_mapping = map(&app, at_key, "health", NULL);

    /* The watched directory: files closed in it become s3:ObjectCreated:Put. */
    tmp = getenv("TMPDIR");
    if (!tmp || !*tmp || strlen(tmp) > sizeof app.dir - 24)
        tmp = "/tmp";
    snprintf(app.dir, sizeof app.dir, "%s/gateway-mini-XXXXXX", tmp);
    if (!mkdtemp(app.dir)) {
        perror("mkdtemp");
        app.dir[0] = '\0';
        check(&app, 0, "mkdtemp");
        goto out;
    }
    rc = faas_watch_dir(app.rt, BUCKET, app.dir);
    if (rc < 0)
        fprintf(stderr, "faas_watch_dir: %s\n", faas_strerror(rc));
    check(&app, rc >= 0, "faas_watch_dir");

    rc = faas_http_bind(app.rt, "127.0.0.1", 0);
    if (rc != 0)
        fprintf(stderr, "faas_http_bind: %s\n", faas_strerror(rc));
    check(&app, rc == 0, "faas_http_bind");
    port = faas_http_port(app.rt);
    check(&app, port != 0, "faas_http_port");
    if (app.failures)
        goto out;

    printf("\nserving http://127.0.0.1:%u/users/{id}\n", port);
    printf("  curl -i http://127.0.0.1:%u/users/42\n", port);
    printf("watching %s as bucket \"%s\" (only *.jpg reach images)\n", app.dir, BUCKET);
    printf("  cp picture.jpg %s/\n\n", app.dir);

    deadline = evtimer_new(app.base, on_deadline, &app);
    limit.tv_sec = app.selftest ? SELFTEST_LIMIT_S : (time_t)serve_s;
    limit.tv_usec = 0;
    if (!deadline || event_add(deadline, &limit) != 0) {
        check(&app, 0, "the deadline timer");
        goto out;
    }
    if (app.selftest)
        selftest_start(&app, port);
    else
        printf("serving for %ld s\n", serve_s);
    event_base_dispatch(app.base);
    if (app.selftest)
        selftest_check(&app);

out:
    /* The client, then the runtime: it closes its server (a request still
     * waiting for a result would be answered 503) and its watches. */
    if (app.client)
        evhttp_connection_free(app.client);
    faas_runtime_free(app.rt);
    if (deadline)
        event_free(deadline);
    event_base_free(app.base);
    if (app.dir[0] && nftw(app.dir, remove_entry, 8, FTW_DEPTH | FTW_PHYS) != 0)
        perror("removing the watched directory");

    if (app.failures) {
        fprintf(stderr, "gateway-mini: %d check(s) failed\n", app.failures);
        return 1;
    }
    printf("\ngateway-mini: %s\n", app.selftest ? "all checks passed" : "done");
    return 0;
}
