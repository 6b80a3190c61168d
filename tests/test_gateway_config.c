/*
 * test_gateway_config.c - the faas-gateway's config loader
 * (examples/faas-gateway/config.c), on its own: a valid config registers
 * its functions, mappings and watches on a runtime the test owns (checked
 * with faas_stats and faas_invoke_sync); relative paths resolve against
 * the config's directory; each kind of error gives "file:line: key path:
 * message" with the right line and path (nested keys, array indexes,
 * syntax errors, errors the library returns at registration).
 *
 * Each test writes its config into a temporary directory under /tmp, with
 * lib/ holding symbolic links to the demo's function objects (built by the
 * Makefile under GW_FUNCTIONS_DIR) and bin/ a script, so that relative
 * paths are exercised. Runtimes are made without a zygote (process
 * functions are registered, never invoked here).
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/buffer.h>

#include "config.h"
#include "testutil.h"
/* The gateway's escaped printing, tested here with the loader: the test
 * program links config.c only. */
#include "gw_text.c"

#ifndef GW_FUNCTIONS_DIR
#error "GW_FUNCTIONS_DIR: where the gateway's function objects are built"
#endif

#define BOUND_MS 5000u

static char g_tmp[PATH_MAX];  /* the test's directory, absolute */
static char g_path[PATH_MAX]; /* its config file */
static struct event_base *g_base;

/* ---- fixtures ---- */

static void write_text(const char *path, const char *text, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
    size_t n = strlen(text);

    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, n), (ssize_t)n);
    assert_int_equal(close(fd), 0);
}

static void sub(char *out, size_t n, const char *name)
{
    assert_true((size_t)snprintf(out, n, "%s/%s", g_tmp, name) < n);
}

static int setup(void **state)
{
    char fns[PATH_MAX], p[PATH_MAX], q[PATH_MAX + 16];
    static const char *const objs[] = { "hello", "tick", "orders" };
    size_t i;
    (void)state;

    assert_non_null(realpath(GW_FUNCTIONS_DIR, fns));
    assert_non_null(realpath("/tmp", g_tmp));
    strcat(g_tmp, "/gwconf-XXXXXX");
    assert_non_null(mkdtemp(g_tmp));
    sub(p, sizeof p, "lib");
    assert_int_equal(mkdir(p, 0700), 0);
    sub(p, sizeof p, "bin");
    assert_int_equal(mkdir(p, 0700), 0);
    sub(p, sizeof p, "up");
    assert_int_equal(mkdir(p, 0700), 0);
    for (i = 0; i < sizeof objs / sizeof objs[0]; i++) {
        assert_true((size_t)snprintf(q, sizeof q, "%s/%s.so", fns, objs[i]) < sizeof q);
        assert_true((size_t)snprintf(p, sizeof p, "%s/lib/%s.so", g_tmp, objs[i]) < sizeof p);
        assert_int_equal(symlink(q, p), 0);
    }
    sub(p, sizeof p, "lib/not-elf.so");
    write_text(p, "not a shared object\n", 0644);
    sub(p, sizeof p, "bin/run.sh");
    write_text(p, "#!/bin/sh\nexit 0\n", 0755);
    sub(p, sizeof p, "bin/not-exec.sh");
    write_text(p, "#!/bin/sh\nexit 0\n", 0644);
    sub(g_path, sizeof g_path, "c.json");
    g_base = event_base_new();
    assert_non_null(g_base);
    return 0;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int teardown(void **state)
{
    (void)state;
    event_base_free(g_base);
    assert_int_equal(nftw(g_tmp, remove_entry, 8, FTW_DEPTH | FTW_PHYS), 0);
    return 0;
}

/* A runtime for a config: its options, without a zygote. */
static struct faas_runtime *runtime_for(const struct gw_config *cfg)
{
    struct faas_runtime_opts ro = cfg->ro;
    struct faas_runtime *rt = NULL;

    ro.zygote = 0;
    assert_int_equal(faas_runtime_new(&rt, g_base, &ro), 0);
    return rt;
}

/*
 * Loads `text` as the config (open, then apply on a fresh runtime) and
 * returns the first error's code, with the message in err ("" on success).
 */
static int load(const char *text, char *err, size_t errlen)
{
    struct gw_config *cfg = NULL;
    struct faas_runtime *rt;
    int rc;

    write_text(g_path, text, 0644);
    err[0] = '\0';
    rc = gw_config_open(&cfg, g_path, err, errlen);
    if (rc != 0) {
        assert_null(cfg);
        return rc;
    }
    rt = runtime_for(cfg);
    rc = gw_config_apply(cfg, rt, err, errlen);
    faas_runtime_free(rt);
    gw_config_free(cfg);
    return rc;
}

/* The config `text` fails with "<file>:<line>: <rest>" (or, with
 * prefix, a message that starts so). */
static void expect_error_at(const char *text, int line, const char *rest, int prefix)
{
    char err[1024], want[PATH_MAX + 1200];

    assert_int_equal(load(text, err, sizeof err), GW_ECONFIG);
    snprintf(want, sizeof want, "%s:%d: %s", g_path, line, rest);
    if (prefix ? strncmp(err, want, strlen(want)) != 0 : strcmp(err, want) != 0)
        fail_msg("got  \"%s\"\nwant \"%s\"%s", err, want, prefix ? "..." : "");
}

static void expect_error(const char *text, int line, const char *rest)
{
    expect_error_at(text, line, rest, 0);
}

static void expect_error_prefix(const char *text, int line, const char *rest)
{
    expect_error_at(text, line, rest, 1);
}

/* ---- a valid config ---- */

static const char valid_config[] =
    "{\n"
    "  \"listen\": \"127.0.0.2:0\",\n"
    "  \"runtime\": { \"thread_workers\": 2, \"region\": \"eu-test-1\",\n"
    "               \"max_async_payload\": 65536, \"invoke_api\": false },\n"
    "  \"functions\": {\n"
    "    \"hello\": { \"library\": \"lib/hello.so\", \"symbol\": \"hello\",\n"
    "               \"isolation\": \"thread\", \"timeout_ms\": 2000,\n"
    "               \"max_concurrency\": 2, \"max_queue\": 4, \"example\": {\"name\": \"x\"} },\n"
    "    \"tick\": { \"library\": \"lib/tick.so\", \"symbol\": \"tick\",\n"
    "              \"isolation\": \"inline\", \"timeout_ms\": 0,\n"
    "              \"async\": { \"max_retries\": 0, \"overflow\": \"drop_oldest\",\n"
    "                         \"on_failure\": \"hello\" } },\n"
    "    \"orders\": { \"library\": \"lib/orders.so\", \"symbol\": \"orders\",\n"
    "                \"isolation\": \"process\", \"memory_mb\": 64,\n"
    "                \"idempotency\": { \"key_path\": \"body.order_id\", \"ttl_s\": 60,\n"
    "                                 \"required\": true } },\n"
    "    \"cmd\": { \"command\": [\"bin/run.sh\", \"--flag\"], \"handler\": \"x.y\",\n"
    "             \"env\": { \"A\": \"1\", \"B\": \"two words\" } }\n"
    "  },\n"
    "  \"mappings\": [\n"
    "    { \"source\": \"api:GET /hello/{who}\", \"function\": \"hello\",\n"
    "      \"example\": { \"path\": \"/hello/you\", \"status\": 200 } },\n"
    "    { \"source\": \"schedule:rate(5 minutes)\", \"function\": \"tick\" },\n"
    "    { \"source\": \"s3:ObjectCreated:*\", \"function\": \"tick\", \"batch_size\": 1,\n"
    "      \"filter\": { \"s3\": { \"object\": { \"key\": [ { \"suffix\": \".jpg\" } ] } } } },\n"
    "    { \"source\": \"api:/any/*\", \"function\": \"orders\" }\n"
    "  ],\n"
    "  \"watch\": [ { \"bucket\": \"uploads\", \"dir\": \"up\" } ]\n"
    "}\n";

static int tick_ran(const void *arg)
{
    struct faas_stats st;
    return faas_stats((struct faas_runtime *)(uintptr_t)arg, "tick", &st) == 0 &&
           st.invocations >= 1;
}

static void test_valid_registers_everything(void **state)
{
    struct gw_config *cfg = NULL;
    struct faas_runtime *rt;
    struct faas_result *res = NULL;
    struct faas_stats st;
    char err[1024], p[PATH_MAX];
    json_t *ev;
    size_t i;
    (void)state;

    write_text(g_path, valid_config, 0644);
    assert_int_equal(gw_config_open(&cfg, g_path, err, sizeof err), 0);
    assert_string_equal(cfg->host, "127.0.0.2");
    assert_int_equal(cfg->port, 0);
    assert_int_equal(cfg->ro.thread_workers, 2);
    assert_string_equal(cfg->ro.region, "eu-test-1");
    assert_int_equal(cfg->ro.max_async_payload, 65536);
    assert_int_equal(cfg->ro.max_sync_payload, 6u * 1024u * 1024u); /* the default */
    assert_int_equal(cfg->ro.invoke_api, 0);
    assert_int_equal(cfg->nfunctions, 4);
    assert_string_equal(cfg->functions[0].name, "hello");
    assert_int_equal(cfg->functions[0].timeout_ms, 2000);
    assert_non_null(cfg->functions[0].example);
    assert_int_equal(cfg->functions[2].idempotent, 1);
    assert_int_equal(cfg->functions[3].command, 1);
    /* tick has no timeout: the drain allows it 15 minutes, plus its init */
    assert_int_equal(cfg->drain_ms, 900000u + 10000u + 1000u);
    assert_int_equal(cfg->nmappings, 4);
    assert_int_equal(cfg->mappings[0].api, 1);
    assert_string_equal(cfg->mappings[0].method, "GET");
    assert_string_equal(cfg->mappings[0].route, "/hello/{who}");
    assert_int_equal(cfg->mappings[1].api, 0);
    assert_string_equal(cfg->mappings[3].method, "ANY");
    assert_string_equal(cfg->mappings[3].route, "/any/*");
    assert_int_equal(cfg->nwatches, 1);

    rt = runtime_for(cfg);
    assert_int_equal(gw_config_apply(cfg, rt, err, sizeof err), 0);
    for (i = 0; i < cfg->nfunctions; i++)
        assert_int_equal(faas_stats(rt, cfg->functions[i].name, &st), 0);
    for (i = 0; i < cfg->nmappings; i++)
        assert_true(cfg->mappings[i].id >= 0);
    /* the same mapping again: the library says it exists, so it was made */
    assert_int_equal(faas_map(rt, "api:GET /hello/{who}", "hello", NULL), FAAS_EEXIST);

    /* hello, from lib/hello.so relative to the config, with its init */
    ev = json_pack("{s:s}", "name", "config");
    assert_int_equal(faas_invoke_sync(rt, "hello", ev, NULL, &res), 0);
    json_decref(ev);
    assert_int_equal(faas_result_status(res), 0);
    assert_string_equal(json_string_value(json_object_get(faas_result_payload(res), "message")),
                        "Hello, config!");
    assert_int_equal(faas_result_cold_start(res), 1);
    faas_result_free(res);

    /* the idempotency policy came through: no key, no invocation */
    ev = json_pack("{s:s}", "other", "x");
    assert_int_equal(faas_invoke_sync(rt, "orders", ev, NULL, &res), FAAS_ENOKEY);
    json_decref(ev);

    /* the watch on "up" (relative) feeds s3:ObjectCreated:* through the filter */
    sub(p, sizeof p, "up/cat.jpg");
    write_text(p, "meow\n", 0644);
    assert_true(tu_run_until_pred(g_base, tick_ran, (const void *)(uintptr_t)rt, BOUND_MS));

    faas_runtime_free(rt);
    gw_config_free(cfg);
}

static void test_resolve_and_lines(void **state)
{
    struct gw_config *cfg = NULL;
    char err[1024], want[PATH_MAX + 32];
    char *r;
    (void)state;

    write_text(g_path, valid_config, 0644);
    assert_int_equal(gw_config_open(&cfg, g_path, err, sizeof err), 0);
    assert_string_equal(cfg->dir, g_tmp);
    r = gw_config_resolve(cfg, "lib/x.so");
    snprintf(want, sizeof want, "%s/lib/x.so", g_tmp);
    assert_string_equal(r, want);
    free(r);
    r = gw_config_resolve(cfg, "/abs/x.so");
    assert_string_equal(r, "/abs/x.so");
    free(r);

    assert_int_equal(gw_config_line(cfg, ""), 1);
    assert_int_equal(gw_config_line(cfg, "listen"), 2);
    assert_int_equal(gw_config_line(cfg, "runtime.max_async_payload"), 4);
    assert_int_equal(gw_config_line(cfg, "functions.hello.timeout_ms"), 7);
    assert_int_equal(gw_config_line(cfg, "functions.tick.timeout_ms"), 10);
    assert_int_equal(gw_config_line(cfg, "functions.tick.async.on_failure"), 12);
    assert_int_equal(gw_config_line(cfg, "functions.cmd.command[1]"), 17);
    assert_int_equal(gw_config_line(cfg, "mappings[0]"), 21);
    assert_int_equal(gw_config_line(cfg, "mappings[0].example.status"), 22);
    assert_int_equal(gw_config_line(cfg, "mappings[2].filter.s3.object.key[0].suffix"), 25);
    assert_int_equal(gw_config_line(cfg, "mappings[3].function"), 26);
    assert_int_equal(gw_config_line(cfg, "watch[0].dir"), 28);
    /* the requests the self-test and the banner make for api: routes */
    r = gw_route_example_path(&cfg->mappings[0]);
    assert_string_equal(r, "/hello/you");
    free(r);
    assert_string_equal(gw_route_example_method(&cfg->mappings[0]), "GET");
    r = gw_route_example_path(&cfg->mappings[3]);
    assert_string_equal(r, "/any/example");
    free(r);
    assert_string_equal(gw_route_example_method(&cfg->mappings[3]), "GET");

    /* not in the file: the closest ancestor's line */
    assert_int_equal(gw_config_line(cfg, "functions.hello.memory_mb"), 6);
    assert_int_equal(gw_config_line(cfg, "mappings[1].batch_size"), 23);
    gw_config_free(cfg);
}

static void test_command_relative(void **state)
{
    char err[1024];
    (void)state;

    /* bin/run.sh is found under the config's directory, not the cwd */
    assert_int_equal(load("{\"functions\": {\"c\": {\"command\": [\"bin/run.sh\"]}}}", err,
                          sizeof err),
                     0);
    assert_string_equal(err, "");
}

/* ---- errors ---- */

static void test_syntax_errors(void **state)
{
    char err[1024];
    (void)state;

    expect_error("{\n  \"functions\": {\n    \"a\": {,\n  }\n}\n", 3,
                 "string or '}' expected near ','");
    expect_error("{\n  \"functions\": {},\n  \"functions\": {}\n}\n", 3,
                 "duplicate object key near '\"functions\"'");
    expect_error("{\"functions\": {}}\n\n  x\n", 3, "end of file expected near 'x'");
    expect_error("[1, 2]\n", 1, "expected an object at the top level");
    /* a file that is not there */
    assert_int_equal(unlink(g_path), 0);
    assert_int_equal(gw_config_open(&(struct gw_config *){ NULL }, g_path, err, sizeof err),
                     GW_ECONFIG);
    assert_non_null(strstr(err, "cannot read it: No such file or directory"));
}

static void test_type_and_range_errors(void **state)
{
    (void)state;

    expect_error("{\n"
                 "  \"functions\": {\n"
                 "    \"a\": { \"library\": \"lib/hello.so\", \"symbol\": \"hello\",\n"
                 "           \"timeout_ms\": 10 },\n"
                 "    \"b\": { \"library\": \"lib/hello.so\", \"symbol\": \"hello\",\n"
                 "           \"timeout_ms\": -1 }\n"
                 "  }\n"
                 "}\n",
                 6, "functions.b.timeout_ms: expected a non-negative integer");
    expect_error("{\"functions\": {\"a\": {\"library\": \"lib/hello.so\", \"symbol\": \"hello\",\n"
                 "  \"memory_mb\": 0}}}",
                 2, "functions.a.memory_mb: expected a positive integer");
    expect_error("{\"functions\": {\"a\": {\"library\": \"lib/hello.so\", \"symbol\": \"hello\",\n"
                 "  \"max_uses\": 4294967296}}}",
                 2, "functions.a.max_uses: expected a non-negative integer up to 4294967295");
    expect_error("{\"functions\": {\"a\": {\"library\": \"lib/hello.so\", \"symbol\": \"hello\",\n"
                 "  \"timeout_ms\": 1.5}}}",
                 2, "functions.a.timeout_ms: expected a non-negative integer");
    expect_error("{\"functions\": {\"a\": {\"library\": \"lib/hello.so\", \"symbol\": \"hello\",\n"
                 "  \"isolation\": \"fork\"}}}",
                 2, "functions.a.isolation: expected \"inline\", \"thread\" or \"process\"");
    expect_error("{\"functions\": {\"a\": {\"library\": \"lib/hello.so\", \"symbol\": \"hello\",\n"
                 "  \"min_warm\": 3, \"max_concurrency\": 2}}}",
                 2, "functions.a.min_warm: more than max_concurrency (2)");
    expect_error("{\"functions\": {},\n \"runtime\": {\"zygote\": 1}}", 2,
                 "runtime.zygote: expected true or false");
    expect_error("{\"functions\": {},\n \"runtime\": {\"access_key_id\": \"AK\"}}", 2,
                 "runtime.access_key_id: give access_key_id and secret_access_key together");
    expect_error("{\"functions\": {},\n \"listen\": \"localhost\"}", 2,
                 "listen: expected \"host:port\", such as \"127.0.0.1:8080\"");
    expect_error("{\"functions\": {},\n \"listen\": \"127.0.0.1:65536\"}", 2,
                 "listen: expected \"host:port\", such as \"127.0.0.1:8080\"");
    expect_error("{\"functions\": {\"a\": {\"library\": \"lib/hello.so\", \"symbol\": \"hello\",\n"
                 "  \"idempotency\": {\"key_path\": \"body..id\"}}}}",
                 2, "functions.a.idempotency.key_path: expected a dotted path such as "
                    "\"body.order_id\"");
    expect_error("{\"functions\": {\"a\": {\"library\": \"lib/hello.so\", \"symbol\": \"hello\",\n"
                 "  \"async\": {\n   \"overflow\": \"block\"}}}}",
                 3, "functions.a.async.overflow: expected \"reject\" or \"drop_oldest\"");
    expect_error("{\"functions\": {\"c\": {\"command\": [\"bin/run.sh\"],\n"
                 "  \"env\": {\"OK\": \"1\",\n \"N\": 2}}}}",
                 3, "functions.c.env.N: expected a string");
    expect_error("{\"functions\": {\"c\": {\"command\": [\"bin/run.sh\", 7]}}}", 1,
                 "functions.c.command[1]: expected a string");
    expect_error("{\"functions\": {\"c\": {\"command\": []}}}", 1,
                 "functions.c.command: expected a non-empty array of strings");
    expect_error("{\"functions\": {},\n \"mappings\": [{\"source\": \"api:GET /a\",\n"
                 " \"function\": \"x\", \"batch_size\": 10001}]}",
                 3, "mappings[0].function: no function named \"x\"");
}

static void test_key_errors(void **state)
{
    (void)state;

    expect_error("{\n  \"functions\": {},\n  \"mapping\": []\n}\n", 3, "mapping: unknown key");
    expect_error("{\"functions\": {\n  \"a\": {\"library\": \"lib/hello.so\", \"symbol\": \"hello\",\n"
                 "    \"idempotency\": {\"key_path\": \"x\",\n      \"ttl\": 5}}}}",
                 4, "functions.a.idempotency.ttl: unknown key");
    expect_error("{\"functions\": {\n  \"a\": {\"symbol\": \"hello\"}}}", 2,
                 "functions.a: missing key \"library\" or \"command\"");
    expect_error("{\"functions\": {\n  \"a\": {\"library\": \"lib/hello.so\"}}}", 2,
                 "functions.a: missing key \"symbol\"");
    expect_error("{\"functions\": {\n  \"a\": {\"library\": \"lib/hello.so\", \"symbol\": \"s\",\n"
                 "  \"command\": [\"bin/run.sh\"]}}}",
                 3, "functions.a.command: give either \"library\" or \"command\", not both");
    expect_error("{\"functions\": {\n  \"a\": {\"library\": \"lib/hello.so\", \"symbol\": \"s\",\n"
                 "  \"env\": {}}}}",
                 3, "functions.a.env: only for command functions");
    expect_error("{\"functions\": {\n  \"a\": {\"command\": [\"bin/run.sh\"],\n"
                 "  \"isolation\": \"thread\"}}}",
                 3, "functions.a.isolation: only for library functions (a command runs in a "
                    "process of its own)");
    expect_error("{\"functions\": {\n  \"a b\": {}}}", 2,
                 "functions[\"a b\"]: a function's name is 1 to 64 letters, digits, '-' or '_'");
    expect_error("{\"functions\": {\n  \"a\": 5}}", 2, "functions.a: expected an object");
    expect_error("{\"mappings\": []}", 1, "missing key \"functions\"");
}

static const char map_prefix[] =
    "{\n"
    "  \"functions\": {\n"
    "    \"f\": { \"library\": \"lib/hello.so\", \"symbol\": \"hello\" }\n"
    "  },\n"
    "  \"mappings\": [\n"
    "    { \"source\": \"api:GET /one\", \"function\": \"f\" },\n"
    "    { \"source\": \"schedule:rate(1 minute)\", \"function\": \"f\" },\n";

static void expect_map_error(const char *third, int line, const char *rest)
{
    char text[2048];

    snprintf(text, sizeof text, "%s%s\n  ]\n}\n", map_prefix, third);
    expect_error(text, line, rest);
}

static void test_mapping_errors(void **state)
{
    (void)state;

    expect_map_error("    { \"source\": \"api:GET /two\",\n      \"function\": \"nope\" }", 9,
                     "mappings[2].function: no function named \"nope\"");
    expect_map_error("    { \"source\": \"api:GET /two\", \"function\": \"f\",\n"
                     "      \"on_failure\": \"gone\" }",
                     9, "mappings[2].on_failure: no function named \"gone\"");
    expect_map_error("    { \"function\": \"f\" }", 8, "mappings[2]: missing key \"source\"");
    expect_map_error("    { \"source\": \"sqs:jobs\", \"function\": \"f\" }", 8,
                     "mappings[2].source: expected a source key: api:, schedule:, s3:, "
                     "dynamodb:, stream: or queue:");
    expect_map_error("    { \"source\": \"schedule:rate(5 minute)\", \"function\": \"f\" }", 8,
                     "mappings[2].source: not a schedule expression: rate(...), cron(...) or "
                     "at(...)");
    expect_map_error("    { \"source\": \"queue:jobs\", \"function\": \"f\",\n"
                     "      \"parallelization\": 11 }",
                     9, "mappings[2].parallelization: expected an integer from 0 to 10");
    expect_map_error("    { \"source\": \"queue:jobs\", \"function\": \"f\",\n"
                     "      \"max_retries\": -2 }",
                     9, "mappings[2].max_retries: expected an integer from -1 to 2147483647");
    expect_map_error("    { \"source\": \"queue:jobs\", \"function\": \"f\",\n"
                     "      \"filter\": \"body\" }",
                     9, "mappings[2].filter: expected an EventBridge pattern (an object) or an "
                        "array of them");
    expect_map_error("    { \"source\": \"queue:jobs\", \"function\": \"f\",\n"
                     "      \"example\": {} }",
                     9, "mappings[2].example: only for api: mappings");
    expect_map_error("    { \"source\": \"api:GET /two\", \"function\": \"f\",\n"
                     "      \"example\": { \"status\": 99 } }",
                     9, "mappings[2].example.status: expected an integer from 100 to 599");
    expect_map_error("    { \"source\": \"api:GET /two\", \"function\": \"f\",\n"
                     "      \"example\": { \"headers\": { \"X-A\": 1 } } }",
                     9, "mappings[2].example.headers.X-A: expected a string");
    /* what faas_map itself refuses, at apply */
    expect_map_error("    { \"source\": \"api:GET /one\", \"function\": \"f\" }", 8,
                     "mappings[2].source: the same route is mapped already");
    expect_map_error("    { \"source\": \"schedule:rate(1 minute)\", \"function\": \"f\" }", 8,
                     "mappings[2].source: this source is mapped to this function already (give "
                     "one of them a \"name\")");
    expect_map_error("    { \"source\": \"queue:jobs\", \"function\": \"f\",\n"
                     "      \"name\": \"schedule:rate(1 minute) f\" }",
                     9, "mappings[2].name: a mapping named \"schedule:rate(1 minute) f\" exists "
                        "already");
    expect_map_error("    { \"source\": \"queue:jobs\", \"function\": \"f\",\n"
                     "      \"name\": \"\" }",
                     9, "mappings[2].name: expected a non-empty string");
    {
        char entry[1200], name[1026];
        memset(name, 'n', sizeof name - 1);
        name[sizeof name - 1] = '\0';
        snprintf(entry, sizeof entry,
                 "    { \"source\": \"queue:jobs\", \"function\": \"f\",\n"
                 "      \"name\": \"%s\" }",
                 name);
        expect_map_error(entry, 9, "mappings[2].name: expected at most 1024 bytes");
    }
    expect_map_error("    { \"source\": \"queue:jobs\", \"function\": \"f\",\n"
                     "      \"name\": 7 }",
                     9, "mappings[2].name: expected a non-empty string");
    expect_map_error("    { \"source\": \"api:GET /a//b\", \"function\": \"f\" }", 8,
                     "mappings[2].source: cannot map: parse error (a bad route, schedule or "
                     "event name)");
    expect_map_error("    { \"source\": \"queue:jobs\", \"function\": \"f\",\n"
                     "      \"filter\": { \"a\": 5 } }",
                     9, "mappings[2].filter: not a valid EventBridge filter pattern");
    expect_map_error("    { \"source\": \"queue:jobs\", \"function\": \"f\",\n"
                     "      \"batch_size\": 10001 }",
                     9, "mappings[2].batch_size: expected an integer from 0 to 10000");
}

static void test_file_errors(void **state)
{
    char want[PATH_MAX + 128];
    (void)state;

    snprintf(want, sizeof want, "functions.a.library: %s/lib/none.so: No such file or directory",
             g_tmp);
    expect_error("{\"functions\": {\n  \"a\": {\"library\": \"lib/none.so\", \"symbol\": \"s\"}}}",
                 2, want);
    snprintf(want, sizeof want,
             "functions.a.command[0]: %s/bin/not-exec.sh: not an executable file (Permission "
             "denied)",
             g_tmp);
    expect_error("{\"functions\": {\n  \"a\": {\"command\": [\"bin/not-exec.sh\"]}}}", 2, want);
    snprintf(want, sizeof want, "watch[0].dir: %s/nowhere: not a directory", g_tmp);
    expect_error("{\"functions\": {},\n \"watch\": [{\"bucket\": \"b\",\n  \"dir\": \"nowhere\"}]}",
                 3, want);
    snprintf(want, sizeof want, "functions.a.task_root: %s/bin/run.sh: not a directory", g_tmp);
    expect_error("{\"functions\": {\n  \"a\": {\"command\": [\"bin/run.sh\"],\n"
                 "   \"task_root\": \"bin/run.sh\"}}}",
                 3, want);
}

static void test_registration_errors(void **state)
{
    char want[PATH_MAX + 128];
    (void)state;

    /* the symbol is not in the object (dlerror() says so) */
    snprintf(want, sizeof want,
             "functions.a.symbol: no symbol \"nope\": %s/lib/hello.so: undefined symbol: nope",
             g_tmp);
    expect_error("{\"functions\": {\n  \"a\": {\"library\": \"lib/hello.so\",\n"
                 "   \"symbol\": \"nope\", \"isolation\": \"thread\"}}}",
                 3, want);
    /* not a shared object (dlerror() says why) */
    snprintf(want, sizeof want, "functions.a.library: cannot load it: %s/lib/not-elf.so: ",
             g_tmp);
    expect_error_prefix("{\"functions\": {\n  \"a\": {\"library\": \"lib/not-elf.so\",\n"
                        "   \"symbol\": \"s\", \"isolation\": \"inline\"}}}",
                        2, want);
}


/* ---- what cannot work ---- */

static const char lib_fn[] = "\"library\": \"lib/tick.so\", \"symbol\": \"tick\"";

static void test_destination_cycles(void **state)
{
    char text[2048], err[1024];
    (void)state;

    /* a function that is its own destination */
    snprintf(text, sizeof text,
             "{\"functions\": {\n"
             "  \"a\": {%s,\n"
             "    \"async\": {\"on_success\": \"a\"}}}}",
             lib_fn);
    expect_error(text, 3, "functions.a.async.on_success: its events would come back to \"a\" "
                          "without end (a -> a)");
    /* through a chain of other functions' destinations, failure and success */
    snprintf(text, sizeof text,
             "{\"functions\": {\n"
             "  \"x\": {%s, \"async\": {\"on_success\": \"a\"}},\n"
             "  \"a\": {%s,\n"
             "    \"async\": {\"on_success\": \"x\", \"on_failure\": \"b\"}},\n"
             "  \"b\": {%s, \"async\": {\"on_success\": \"c\"}},\n"
             "  \"c\": {%s, \"async\": {\"on_failure\": \"a\"}}}}",
             lib_fn, lib_fn, lib_fn, lib_fn);
    /* x -> a -> x is the first cycle of the file (x is first) */
    expect_error(text, 2, "functions.x.async.on_success: its events would come back to \"x\" "
                          "without end (x -> a -> x)");
    snprintf(text, sizeof text,
             "{\"functions\": {\n"
             "  \"x\": {%s},\n"
             "  \"a\": {%s,\n"
             "    \"async\": {\"on_success\": \"x\", \"on_failure\": \"b\"}},\n"
             "  \"b\": {%s, \"async\": {\"on_success\": \"c\"}},\n"
             "  \"c\": {%s, \"async\": {\"on_failure\": \"a\"}}}}",
             lib_fn, lib_fn, lib_fn, lib_fn);
    expect_error(text, 4, "functions.a.async.on_failure: its events would come back to \"a\" "
                          "without end (a -> b -> c -> a)");
    /* a chain that ends, and two functions sharing a destination: fine */
    snprintf(text, sizeof text,
             "{\"functions\": {\n"
             "  \"a\": {%s, \"async\": {\"on_success\": \"b\", \"on_failure\": \"c\"}},\n"
             "  \"b\": {%s, \"async\": {\"on_success\": \"c\", \"on_failure\": \"c\"}},\n"
             "  \"c\": {%s}},\n"
             " \"mappings\": [{\"source\": \"queue:q\", \"function\": \"c\",\n"
             "                \"on_failure\": \"c\"}]}",
             lib_fn, lib_fn, lib_fn);
    assert_int_equal(load(text, err, sizeof err), 0);
}

static void test_min_warm_bounds(void **state)
{
    struct rlimit saved, low;
    char err[1024];
    (void)state;

    expect_error("{\"functions\": {\"a\": {\"library\": \"lib/hello.so\", \"symbol\": \"hello\",\n"
                 "  \"min_warm\": 4294967295}}}",
                 2, "functions.a.min_warm: more than 1024, the gateway's bound on instances "
                    "kept warm");
    expect_error("{\"functions\": {\"a\": {\"library\": \"lib/hello.so\", \"symbol\": \"hello\",\n"
                 "  \"isolation\": \"inline\", \"min_warm\": 1025}}}",
                 2, "functions.a.min_warm: more than 1024, the gateway's bound on instances "
                    "kept warm");
    expect_error("{\"functions\": {\"a\": {\"library\": \"lib/hello.so\", \"symbol\": \"hello\",\n"
                 "  \"min_warm\": 5000, \"max_concurrency\": 10}}}",
                 2, "functions.a.min_warm: more than max_concurrency (10)");
    /* processes: no more than the user may have (only the soft limit is
     * lowered, and nothing forks before the check refuses) */
    assert_int_equal(getrlimit(RLIMIT_NPROC, &saved), 0);
    low = saved;
    low.rlim_cur = 40;
    if (saved.rlim_max != RLIM_INFINITY && saved.rlim_max < 40)
        low.rlim_cur = saved.rlim_max;
    assert_int_equal(setrlimit(RLIMIT_NPROC, &low), 0);
    snprintf(err, sizeof err, "functions.c.min_warm: more processes than RLIMIT_NPROC allows "
                              "(%llu)",
             (unsigned long long)low.rlim_cur);
    expect_error("{\"functions\": {\"c\": {\"command\": [\"bin/run.sh\"],\n"
                 "  \"min_warm\": 1000}}}",
                 2, err);
    assert_int_equal(setrlimit(RLIMIT_NPROC, &saved), 0);
}

/* Is `so` (resolved) mapped into this process? */
static int mapped_here(const char *so)
{
    char real[PATH_MAX], line[PATH_MAX + 256];
    FILE *f;
    int found = 0;

    assert_non_null(realpath(so, real));
    f = fopen("/proc/self/maps", "r");
    assert_non_null(f);
    while (!found && fgets(line, sizeof line, f))
        found = strstr(line, real) != NULL;
    fclose(f);
    return found;
}

static void test_library_checked_in_a_worker(void **state)
{
    char want[PATH_MAX + 128], so[PATH_MAX], err[1024];
    struct gw_config *cfg = NULL;
    (void)state;

    /* a process function: the symbol is checked at load, not at its first
     * cold start, and the check does not load the object here */
    sub(so, sizeof so, "lib/orders.so");
    snprintf(want, sizeof want,
             "functions.a.symbol: no symbol \"ordrs\": %s: undefined symbol: ordrs", so);
    expect_error("{\"functions\": {\n  \"a\": {\"library\": \"lib/orders.so\",\n"
                 "   \"symbol\": \"ordrs\", \"isolation\": \"process\"}}}",
                 3, want);
    snprintf(want, sizeof want, "functions.a.library: cannot load it: %s/lib/not-elf.so: ",
             g_tmp);
    expect_error_prefix("{\"functions\": {\n  \"a\": {\"library\": \"lib/not-elf.so\",\n"
                        "   \"symbol\": \"s\", \"isolation\": \"process\"}}}",
                        2, want);
    assert_false(mapped_here(so));
    write_text(g_path,
               "{\"functions\": {\"a\": {\"library\": \"lib/orders.so\", \"symbol\": \"orders\","
               " \"isolation\": \"process\"}}}",
               0644);
    assert_int_equal(gw_config_open(&cfg, g_path, err, sizeof err), 0);
    assert_false(mapped_here(so));
    gw_config_free(cfg);
}

static void test_command_not_executable_file(void **state)
{
    char want[PATH_MAX + 128];
    (void)state;

    snprintf(want, sizeof want,
             "functions.a.command[0]: %s/bin: not an executable file (a directory)", g_tmp);
    expect_error("{\"functions\": {\n  \"a\": {\"command\": [\"bin\"]}}}", 2, want);
    snprintf(want, sizeof want, "functions.a.command[0]: %s/bin/none: No such file or directory",
             g_tmp);
    expect_error("{\"functions\": {\n  \"a\": {\"command\": [\"bin/none\"]}}}", 2, want);
}

static void test_addresses(void **state)
{
    struct gw_config *cfg = NULL;
    char err[1024];
    (void)state;

    expect_error("{\"functions\": {},\n \"listen\": \"localhost:8080\"}", 2,
                 "listen: \"localhost:8080\" is not a numeric IPv4 address or a bracketed IPv6 "
                 "one, such as \"127.0.0.1:8080\" or \"[::1]:8080\"");
    expect_error("{\"functions\": {},\n \"listen\": \"127.0.0.256:80\"}", 2,
                 "listen: \"127.0.0.256:80\" is not a numeric IPv4 address or a bracketed IPv6 "
                 "one, such as \"127.0.0.1:8080\" or \"[::1]:8080\"");
    expect_error("{\"functions\": {},\n \"listen\": \"::1:8080\"}", 2,
                 "listen: \"::1:8080\" is not a numeric IPv4 address or a bracketed IPv6 "
                 "one, such as \"127.0.0.1:8080\" or \"[::1]:8080\"");
    expect_error("{\"functions\": {},\n \"runtime\": {\n  \"runtime_api_address\": \"lo\"}}", 3,
                 "runtime.runtime_api_address: \"lo\" is not a numeric IPv4 or IPv6 address, "
                 "such as \"127.0.0.1\"");
    expect_error("{\"functions\": {},\n \"runtime\": {\n  \"runtime_api_address\": \"10.1.2.3\"}}",
                 3, "runtime.runtime_api_address: 10.1.2.3 is not a loopback address: its "
                    "endpoints could not tell which process connects (set "
                    "runtime_api_allow_remote to allow it)");

    write_text(g_path,
               "{\"functions\": {}, \"listen\": \"[::1]:0\",\n"
               " \"runtime\": {\"runtime_api_address\": \"10.1.2.3\",\n"
               "             \"runtime_api_allow_remote\": true}}",
               0644);
    assert_int_equal(gw_config_open(&cfg, g_path, err, sizeof err), 0);
    assert_string_equal(cfg->host, "::1");
    assert_int_equal(cfg->ro.runtime_api_allow_remote, 1);
    assert_string_equal(cfg->ro.runtime_api_address, "10.1.2.3");
    gw_config_free(cfg);
    write_text(g_path, "{\"functions\": {}, \"runtime\": {\"runtime_api_address\": \"::1\"}}",
               0644);
    assert_int_equal(gw_config_open(&cfg, g_path, err, sizeof err), 0);
    gw_config_free(cfg);
}

static void test_durable_keys(void **state)
{
    struct gw_config *cfg = NULL;
    char err[1024], want[512];
    (void)state;

    expect_error("{\"functions\": {},\n \"runtime\": {\"durable\": \"postgres://x\"}}", 2,
                 "runtime.durable: expected \"sqlite:PATH\" or \"redis://HOST:PORT[/DB]\", not "
                 "\"postgres://x\"");
    expect_error("{\"functions\": {},\n \"runtime\": {\"durable\": \"sqlite:\"}}", 2,
                 "runtime.durable: expected \"sqlite:PATH\" or \"redis://HOST:PORT[/DB]\", not "
                 "\"sqlite:\"");
    expect_error("{\"functions\": {},\n \"runtime\": {\"durable_sync\": 2}}", 2,
                 "runtime.durable_sync: expected true or false");

    /* A relative file is the config directory's; the rest passes through. */
    write_text(g_path,
               "{\"functions\": {}, \"runtime\": {\"durable\": \"sqlite:state/faas.db\",\n"
               " \"durable_sync\": false, \"node_id\": \"gw-1\"}}",
               0644);
    assert_int_equal(gw_config_open(&cfg, g_path, err, sizeof err), 0);
    snprintf(want, sizeof want, "sqlite:%s/state/faas.db", cfg->dir);
    assert_string_equal(cfg->ro.durable, want);
    assert_int_equal(cfg->ro.durable_sync, 0);
    assert_string_equal(cfg->ro.node_id, "gw-1");
    gw_config_free(cfg);
    write_text(g_path,
               "{\"functions\": {}, \"runtime\": {\"durable\": \"redis://127.0.0.1:6379/2\",\n"
               " \"durable_prefix\": \"gw\"}}",
               0644);
    assert_int_equal(gw_config_open(&cfg, g_path, err, sizeof err), 0);
    assert_string_equal(cfg->ro.durable, "redis://127.0.0.1:6379/2");
    assert_string_equal(cfg->ro.durable_prefix, "gw");
    assert_int_equal(cfg->ro.durable_sync, 1); /* the default */
    gw_config_free(cfg);
}

static void test_event_names(void **state)
{
    static const char *const good[] = { "s3:ObjectCreated:*", "s3:ObjectCreated",
                                        "s3:ObjectRemoved:Delete", "s3:*", "s3:*:Put",
                                        "s3:LifecycleTransition", "dynamodb:INSERT",
                                        "dynamodb:*", NULL };
    char text[1024], err[1024];
    size_t i;
    (void)state;

    expect_map_error("    { \"source\": \"s3:Nope\", \"function\": \"f\" }", 8,
                     "mappings[2].source: no S3 event is named \"Nope\": expected "
                     "ObjectCreated, ObjectRemoved, ObjectRestore, ObjectTagging, ObjectAcl, "
                     "LifecycleExpiration, LifecycleTransition, IntelligentTiering, "
                     "ReducedRedundancyLostObject or Replication, with \":*\" or \":Name\" "
                     "(see docs/event-sources.md)");
    expect_map_error("    { \"source\": \"s3:ObjectCreated:Nope\", \"function\": \"f\" }", 8,
                     "mappings[2].source: no S3 event is named \"ObjectCreated:Nope\": "
                     "expected ObjectCreated, ObjectRemoved, ObjectRestore, ObjectTagging, "
                     "ObjectAcl, LifecycleExpiration, LifecycleTransition, IntelligentTiering, "
                     "ReducedRedundancyLostObject or Replication, with \":*\" or \":Name\" "
                     "(see docs/event-sources.md)");
    expect_map_error("    { \"source\": \"dynamodb:UPSERT\", \"function\": \"f\" }", 8,
                     "mappings[2].source: no DynamoDB event is named \"UPSERT\": expected "
                     "INSERT, MODIFY, REMOVE or *");
    for (i = 0; good[i]; i++) {
        snprintf(text, sizeof text,
                 "{\"functions\": {\"f\": {%s}},\n"
                 " \"mappings\": [{\"source\": \"%s\", \"function\": \"f\"}]}",
                 lib_fn, good[i]);
        if (load(text, err, sizeof err) != 0)
            fail_msg("%s: %s", good[i], err);
    }
}

static void test_new_keys_and_defaults(void **state)
{
    struct gw_config *cfg = NULL;
    char err[1024], text[2048];
    (void)state;

    /* the Invoke API is off unless the config turns it on */
    write_text(g_path, "{\"functions\": {}}", 0644);
    assert_int_equal(gw_config_open(&cfg, g_path, err, sizeof err), 0);
    assert_int_equal(cfg->ro.invoke_api, 0);
    assert_int_equal(cfg->ro.runtime_api_allow_remote, 0);
    assert_int_equal(cfg->ro.http_max_connections, 1024);
    gw_config_free(cfg);

    snprintf(text, sizeof text,
             "{\"runtime\": {\"invoke_api\": true, \"http_read_timeout_ms\": 1500,\n"
             "  \"http_idle_timeout_ms\": 2500, \"http_max_connections\": 64},\n"
             " \"functions\": {\"a\": {%s,\n"
             "  \"idempotency\": {\"key_path\": \"id\", \"max_bytes\": 1048576},\n"
             "  \"async\": {\"max_queue_bytes\": 65536}}}}",
             lib_fn);
    write_text(g_path, text, 0644);
    assert_int_equal(gw_config_open(&cfg, g_path, err, sizeof err), 0);
    assert_int_equal(cfg->ro.invoke_api, 1);
    assert_int_equal(cfg->ro.http_read_timeout_ms, 1500);
    assert_int_equal(cfg->ro.http_idle_timeout_ms, 2500);
    assert_int_equal(cfg->ro.http_max_connections, 64);
    assert_int_equal(cfg->functions[0].idempotent, 1);
    gw_config_free(cfg);
    assert_int_equal(load(text, err, sizeof err), 0);

    expect_error("{\"functions\": {},\n \"runtime\": {\"http_max_connections\": -1}}", 2,
                 "runtime.http_max_connections: expected a non-negative integer");
    expect_error("{\"functions\": {},\n \"runtime\": {\"runtime_api_allow_remote\": 1}}", 2,
                 "runtime.runtime_api_allow_remote: expected true or false");
    snprintf(text, sizeof text,
             "{\"functions\": {\"a\": {%s,\n"
             "  \"idempotency\": {\"key_path\": \"id\",\n   \"max_bytes\": -5}}}}",
             lib_fn);
    expect_error(text, 3, "functions.a.idempotency.max_bytes: expected a non-negative integer");
    snprintf(text, sizeof text,
             "{\"functions\": {\"a\": {%s,\n  \"async\": {\"max_queue_bytes\": \"big\"}}}}",
             lib_fn);
    expect_error(text, 2, "functions.a.async.max_queue_bytes: expected a non-negative integer");
}

/* ---- printing (gw_text.c) ---- */

static char *escaped(const char *s)
{
    struct evbuffer *b = evbuffer_new();
    size_t n;
    char *out;

    assert_non_null(b);
    assert_int_equal(gw_text_escape(b, s), 0);
    n = evbuffer_get_length(b);
    out = malloc(n + 1);
    assert_non_null(out);
    evbuffer_remove(b, out, n);
    out[n] = '\0';
    evbuffer_free(b);
    return out;
}

static void test_text_one_line(void **state)
{
    struct evbuffer *b;
    char *e, buf[128];
    size_t n;
    (void)state;

    e = escaped("ok \\n stays; line\nforged\r\tx\x1b[2J\x7f end \xc2\x85 caf\xc3\xa9");
    assert_string_equal(e, "ok \\n stays; line\\nforged\\r\\tx\\x1b[2J\\x7f end \\u0085 "
                           "caf\xc3\xa9");
    free(e);
    e = escaped("");
    assert_string_equal(e, "");
    free(e);

    b = evbuffer_new();
    assert_non_null(b);
    assert_int_equal(gw_text_printf(b, "[%s]\t%s 100%%", "fn\n", "a\tb"), 0);
    n = evbuffer_get_length(b);
    assert_true(n < sizeof buf);
    evbuffer_remove(b, buf, n);
    buf[n] = '\0';
    /* the format's own tab stays, the arguments' are escaped */
    assert_string_equal(buf, "[fn\\n]\ta\\tb 100%");
    evbuffer_free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_valid_registers_everything, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resolve_and_lines, setup, teardown),
        cmocka_unit_test_setup_teardown(test_command_relative, setup, teardown),
        cmocka_unit_test_setup_teardown(test_syntax_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_type_and_range_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_key_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mapping_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_registration_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_destination_cycles, setup, teardown),
        cmocka_unit_test_setup_teardown(test_min_warm_bounds, setup, teardown),
        cmocka_unit_test_setup_teardown(test_library_checked_in_a_worker, setup, teardown),
        cmocka_unit_test_setup_teardown(test_command_not_executable_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_addresses, setup, teardown),
        cmocka_unit_test_setup_teardown(test_durable_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_event_names, setup, teardown),
        cmocka_unit_test_setup_teardown(test_new_keys_and_defaults, setup, teardown),
        cmocka_unit_test(test_text_one_line),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
