/*
 * test_process.c - PROCESS isolation: native workers forked from the zygote,
 * functions from the host image and from shared objects, the context inside
 * a worker, log lines, payload limits, the warm pool of processes, teardown.
 * The crash, hang and memory cases are in test_process_faults.c.
 *
 * Handlers here run in worker processes: they share nothing with the test
 * but what crosses the channel (and files, which some use as markers the
 * test waits for, with a bound).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/event.h>

#include "faas.h"
#include "faas_int.h"
#include "testutil.h"

#ifndef TEST_B
#define TEST_B "build"
#endif
#define SO_PATH TEST_B "/tests/so/fns.so"

static struct event_base *g_base;
static struct faas_runtime *g_rt;
static char g_dir[64];

struct logged {
    char request_id[FAAS_REQUEST_ID_SIZE];
    char line[256];
};
static struct logged g_lines[64];
static int g_nlines;
static int g_reports;

static void on_log(const struct faas_log_record *r, void *arg)
{
    (void)arg;
    if (r->kind == FAAS_LOG_REPORT)
        g_reports++;
    if (r->kind != FAAS_LOG_LINE || g_nlines >= 64)
        return;
    snprintf(g_lines[g_nlines].request_id, sizeof g_lines[0].request_id, "%s",
             r->request_id ? r->request_id : "");
    snprintf(g_lines[g_nlines].line, sizeof g_lines[0].line, "%s", r->line);
    g_nlines++;
}

static struct faas_runtime *new_runtime(int zygote)
{
    struct faas_runtime_opts ro = FAAS_RUNTIME_OPTS_INIT;
    struct faas_runtime *rt = NULL;
    ro.log = on_log;
    ro.zygote = zygote;
    assert_int_equal(faas_runtime_new(&rt, g_base, &ro), 0);
    return rt;
}

static int setup(void **state)
{
    (void)state;
    g_base = event_base_new();
    g_rt = new_runtime(1);
    g_nlines = 0;
    g_reports = 0;
    snprintf(g_dir, sizeof g_dir, "/tmp/faas-proc-XXXXXX");
    assert_non_null(mkdtemp(g_dir));
    return 0;
}

static int teardown(void **state)
{
    char cmd[128];
    (void)state;
    faas_runtime_free(g_rt);
    g_rt = NULL;
    event_base_free(g_base);
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
    assert_int_equal(system(cmd), 0);
    return 0;
}

static struct faas_function_opts proc_opts(void)
{
    struct faas_function_opts o = FAAS_FUNCTION_OPTS_INIT;
    o.isolation = FAAS_ISOLATION_PROCESS;
    return o;
}

/* Invokes and waits; the result is the caller's to free. */
static struct faas_result *call(const char *name, json_t *event)
{
    struct faas_result *res = NULL;
    assert_int_equal(faas_invoke_sync(g_rt, name, event, NULL, &res), 0);
    assert_non_null(res);
    return res;
}

static json_int_t payload_int(const struct faas_result *res, const char *key)
{
    return json_integer_value(json_object_get(faas_result_payload(res), key));
}

/* ---- handlers (they run in workers) ----------------------------------- */

static int h_info(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    const char *st = faas_ctx_state(ctx);
    faas_ctx_log(ctx, "info for %s", faas_ctx_request_id(ctx));
    printf("printed by the handler\n");
    *result = json_pack("{s:i,s:s,s:s,s:I,s:i,s:s,s:s,s:O,s:b}", "pid", (int)getpid(), "request_id",
                        faas_ctx_request_id(ctx), "function", faas_ctx_function_name(ctx),
                        "remaining", (json_int_t)faas_ctx_remaining_ms(ctx), "memory",
                        (int)faas_ctx_memory_limit_mb(ctx), "state", st ? st : "", "trace",
                        faas_ctx_trace_id(ctx) ? faas_ctx_trace_id(ctx) : "", "event",
                        event ? event : json_null(), "cancelled", faas_ctx_cancelled(ctx));
    return 0;
}

static int init_state(struct faas_ctx *ctx, void **state)
{
    faas_ctx_log(ctx, "init ran");
    *state = (void *)"from init";
    return 0;
}

static int h_fail(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    (void)event;
    (void)result;
    return faas_ctx_fail(ctx, "ValidationError", "bad order %d", 7);
}

static int h_rc(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    (void)ctx;
    (void)event;
    (void)result;
    return 3;
}

/* Returns a string of the length the event asks for. */
static int h_big(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    size_t n = (size_t)json_integer_value(json_object_get(event, "n"));
    char *s = malloc(n + 1);
    (void)ctx;
    if (!s)
        return -1;
    memset(s, 'x', n);
    s[n] = '\0';
    *result = json_string(s);
    free(s);
    return 0;
}

/* Counts the event's "data" string. */
static int h_len(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    (void)ctx;
    *result = json_integer((json_int_t)json_string_length(json_object_get(event, "data")));
    return 0;
}

/* Lists the worker's open descriptors. */
static int h_fds(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    json_t *a = json_array();
    (void)ctx;
    (void)event;
    if (!d)
        return -1;
    while ((e = readdir(d)) != NULL) {
        /* Above the descriptor limit: a tool's own (valgrind keeps some). */
        if (e->d_name[0] != '.' && atoi(e->d_name) != dirfd(d) &&
            atoi(e->d_name) < getdtablesize())
            json_array_append_new(a, json_integer(atoi(e->d_name)));
    }
    closedir(d);
    *result = a;
    return 0;
}

/* Writes the marker file the event names, then waits to be stopped. */
static int h_block(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    const char *path = json_string_value(json_object_get(event, "marker"));
    (void)ctx;
    (void)result;
    if (path) {
        int fd = open(path, O_CREAT | O_WRONLY, 0600);
        if (fd >= 0)
            close(fd);
    }
    for (;;)
        pause();
    return 0;
}

/* ---- helpers ---------------------------------------------------------- */

struct res_box {
    int done;
    int status;
    char error_type[64];
};

static void on_result(const struct faas_result *res, void *arg)
{
    struct res_box *b = arg;
    b->done++;
    b->status = faas_result_status(res);
    snprintf(b->error_type, sizeof b->error_type, "%s",
             faas_result_error_type(res) ? faas_result_error_type(res) : "");
}

static int pred_exists(const void *arg)
{
    return access((const char *)arg, F_OK) == 0;
}

struct stat_want {
    const char *name;
    uint32_t instances;
};

static int pred_instances(const void *arg)
{
    const struct stat_want *w = arg;
    struct faas_stats st;
    return faas_stats(g_rt, w->name, &st) == 0 && st.instances == w->instances;
}

/* As many idle instances as w->instances: min_warm workers are ready. Their
 * "init ran" line can come before the ready message on a slow machine (or
 * under emulation), so the pool itself is asked. */
static int pred_idle(const void *arg)
{
    const struct stat_want *w = arg;
    struct faas_fn *fn = faas_fn_lookup(g_rt, w->name);
    struct faas_list *e;
    uint32_t n = 0;
    if (!fn)
        return 0;
    for (e = fn->idle.next; e != &fn->idle; e = e->next)
        n++;
    return n == w->instances;
}

/* As many "init ran" lines as w->instances: min_warm workers are ready. */
static int pred_inits(const void *arg)
{
    const struct stat_want *w = arg;
    int i, n = 0;
    for (i = 0; i < g_nlines; i++)
        n += strcmp(g_lines[i].line, "init ran") == 0 && g_lines[i].request_id[0] == '\0';
    return n >= (int)w->instances;
}

static json_t *marker_event(const char *name, char *path, size_t size)
{
    snprintf(path, size, "%s/%s", g_dir, name);
    return json_pack("{s:s}", "marker", path);
}

/* ---- tests ------------------------------------------------------------ */

/* A handler of the host image runs in another process, warm the second
 * time (the same worker), with the context of its invocation. */
static void test_runs_in_a_worker(void **state)
{
    struct faas_function_opts o = proc_opts();
    struct faas_result *r1, *r2;
    json_t *ev = json_pack("{s:s}", "hello", "world");
    struct faas_invoke_opts io = FAAS_INVOKE_OPTS_INIT;
    (void)state;

    o.init = init_state;
    o.memory_mb = 192;
    o.timeout_ms = 5000;
    assert_int_equal(faas_register(g_rt, "info", h_info, &o), 0);
    r1 = call("info", ev);
    assert_int_equal(faas_result_status(r1), 0);
    assert_true(payload_int(r1, "pid") != getpid());
    assert_true(faas_result_cold_start(r1));
    assert_true(faas_result_init_duration_us(r1) > 0);
    assert_string_equal(json_string_value(json_object_get(faas_result_payload(r1), "request_id")),
                        faas_result_request_id(r1));
    assert_string_equal(json_string_value(json_object_get(faas_result_payload(r1), "function")),
                        "info");
    assert_string_equal(json_string_value(json_object_get(faas_result_payload(r1), "state")),
                        "from init");
    assert_int_equal(payload_int(r1, "memory"), 192);
    assert_true(payload_int(r1, "remaining") > 0 && payload_int(r1, "remaining") <= 5000);
    assert_true(json_equal(json_object_get(faas_result_payload(r1), "event"), ev));
    assert_true(faas_result_max_memory_kb(r1) > 0);

    io.trace_id = "Root=1-abc";
    assert_int_equal(faas_invoke_sync(g_rt, "info", ev, &io, &r2), 0);
    assert_int_equal(faas_result_status(r2), 0);
    assert_false(faas_result_cold_start(r2));
    assert_int_equal(faas_result_init_duration_us(r2), 0);
    assert_int_equal(payload_int(r2, "pid"), payload_int(r1, "pid"));
    assert_string_equal(json_string_value(json_object_get(faas_result_payload(r2), "trace")),
                        "Root=1-abc");
    faas_result_free(r1);
    faas_result_free(r2);
    json_decref(ev);
}

/* faas_ctx_log lines and stdout reach the log callback with the request id,
 * before the REPORT; init's lines with the cold start's id. */
static void test_log_lines(void **state)
{
    struct faas_function_opts o = proc_opts();
    struct faas_result *r;
    int i, info = 0, printed = 0, init = 0;
    (void)state;

    o.init = init_state;
    assert_int_equal(faas_register(g_rt, "info", h_info, &o), 0);
    r = call("info", NULL);
    assert_int_equal(faas_result_status(r), 0);
    for (i = 0; i < g_nlines; i++) {
        if (strcmp(g_lines[i].request_id, faas_result_request_id(r)) != 0)
            continue;
        info += strncmp(g_lines[i].line, "info for ", 9) == 0;
        printed += strcmp(g_lines[i].line, "printed by the handler") == 0;
        init += strcmp(g_lines[i].line, "init ran") == 0;
    }
    assert_int_equal(info, 1);
    assert_int_equal(printed, 1);
    assert_int_equal(init, 1);
    assert_int_equal(g_reports, 1);
    faas_result_free(r);
}

static int h_chatty(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    char line[1001];
    int i;
    (void)ctx;
    (void)event;
    memset(line, 'y', sizeof line - 1);
    line[sizeof line - 1] = '\0';
    for (i = 0; i < 3000; i++)
        printf("%s\n", line);
    *result = json_true();
    return 0;
}

static int g_chatty_lines, g_chatty_cut;

static void on_log_count(const struct faas_log_record *r, void *arg)
{
    (void)arg;
    if (r->kind != FAAS_LOG_LINE)
        return;
    g_chatty_lines++;
    g_chatty_cut += strncmp(r->line, "[log truncated", 14) == 0;
}

/* A handler that prints without end costs the host a bounded amount: 1 MiB
 * of its lines is kept, then one line says the rest was dropped. */
static void test_log_bound(void **state)
{
    struct faas_runtime_opts ro = FAAS_RUNTIME_OPTS_INIT;
    struct faas_function_opts o = proc_opts();
    struct faas_result *r;
    (void)state;

    faas_runtime_free(g_rt);
    ro.log = on_log_count;
    assert_int_equal(faas_runtime_new(&g_rt, g_base, &ro), 0);
    o.timeout_ms = 60000;
    assert_int_equal(faas_register(g_rt, "chatty", h_chatty, &o), 0);
    r = call("chatty", NULL);
    assert_int_equal(faas_result_status(r), 0);
    faas_result_free(r);
    assert_int_equal(g_chatty_cut, 1);
    assert_true(g_chatty_lines > 1000 && g_chatty_lines < 1100); /* 1 MiB of 1001-byte lines */
}


static int h_forge(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    (void)event;
    faas_ctx_log(ctx, "a\nREPORT RequestId: forged");
    printf("out\tx\x01\n");
    fflush(stdout);
    *result = json_null();
    return 0;
}

/* One faas_ctx_log call is one LINE record in a worker too, and its
 * stdout lines reach the host escaped. */
static void test_log_escaped(void **state)
{
    struct faas_function_opts o = proc_opts();
    struct faas_result *r;
    int i, forged = 0, printed = 0;
    (void)state;

    assert_int_equal(faas_register(g_rt, "forge", h_forge, &o), 0);
    r = call("forge", NULL);
    assert_int_equal(faas_result_status(r), 0);
    for (i = 0; i < g_nlines; i++) {
        assert_null(strchr(g_lines[i].line, '\n'));
        if (strcmp(g_lines[i].request_id, faas_result_request_id(r)) != 0)
            continue;
        forged += strcmp(g_lines[i].line, "a\\nREPORT RequestId: forged") == 0;
        printed += strcmp(g_lines[i].line, "out\\tx\\u0001") == 0;
        assert_int_not_equal(strncmp(g_lines[i].line, "REPORT", 6), 0);
    }
    assert_int_equal(g_nlines, 2);
    assert_int_equal(forged, 1);
    assert_int_equal(printed, 1);
    assert_int_equal(g_reports, 1);
    faas_result_free(r);
}

static int h_wide(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    char s[3000 * 2 + 1];
    int i;
    (void)event;
    for (i = 0; i < 3000; i++)
        memcpy(s + 2 * i, "\xc3\xa9", 2);
    s[6000] = '\0';
    faas_ctx_log(ctx, "%s", s);
    printf("%s\n", s);
    fflush(stdout);
    *result = json_null();
    return 0;
}

static int g_wide_lines, g_wide_bad;

/* Counts LINE records, and those over 4095 bytes or not ending in a whole
 * "é" (the lines are nothing else). */
static void on_log_wide(const struct faas_log_record *r, void *arg)
{
    size_t n;
    (void)arg;
    if (r->kind != FAAS_LOG_LINE)
        return;
    n = strlen(r->line);
    g_wide_lines++;
    if (n > 4095 || n % 2 != 0 || (n > 0 && memcmp(r->line + n - 2, "\xc3\xa9", 2) != 0))
        g_wide_bad++;
}

/* Lines cut at their bound in the middle of a character, from
 * faas_ctx_log in a worker and from its stdout: whole characters only. */
static void test_log_multibyte_cut(void **state)
{
    struct faas_runtime_opts ro = FAAS_RUNTIME_OPTS_INIT;
    struct faas_function_opts o = proc_opts();
    struct faas_result *r;
    (void)state;

    faas_runtime_free(g_rt);
    ro.log = on_log_wide;
    g_wide_lines = g_wide_bad = 0;
    assert_int_equal(faas_runtime_new(&g_rt, g_base, &ro), 0);
    assert_int_equal(faas_register(g_rt, "wide", h_wide, &o), 0);
    r = call("wide", NULL);
    assert_int_equal(faas_result_status(r), 0);
    faas_result_free(r);
    assert_int_equal(g_wide_lines, 2);
    assert_int_equal(g_wide_bad, 0);
}

static int h_echo(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    (void)ctx;
    *result = json_incref(event);
    return 0;
}

/* A string holding NUL crosses the channel both ways unchanged. */
static void test_nul_in_strings(void **state)
{
    struct faas_function_opts o = proc_opts();
    struct faas_result *r;
    json_error_t err;
    json_t *ev = json_loads("{\"s\":\"a\\u0000b\"}", JSON_ALLOW_NUL, &err);
    (void)state;

    assert_non_null(ev);
    assert_int_equal(faas_register(g_rt, "echo", h_echo, &o), 0);
    r = call("echo", ev);
    assert_int_equal(faas_result_status(r), 0);
    assert_true(json_equal(faas_result_payload(r), ev));
    assert_int_equal(json_string_length(json_object_get(faas_result_payload(r), "s")), 3);
    faas_result_free(r);
    json_decref(ev);
}

/* Errors a handler reports are results like THREAD ones. */
static void test_handler_errors(void **state)
{
    struct faas_function_opts o = proc_opts();
    struct faas_result *r;
    (void)state;

    assert_int_equal(faas_register(g_rt, "fail", h_fail, &o), 0);
    assert_int_equal(faas_register(g_rt, "rc", h_rc, &o), 0);
    r = call("fail", NULL);
    assert_int_equal(faas_result_status(r), FAAS_EHANDLER);
    assert_string_equal(faas_result_error_type(r), "ValidationError");
    assert_string_equal(faas_result_error_message(r), "bad order 7");
    faas_result_free(r);
    r = call("rc", NULL);
    assert_int_equal(faas_result_status(r), FAAS_EHANDLER);
    assert_string_equal(faas_result_error_message(r), "handler returned 3");
    faas_result_free(r);
    /* The worker survives its handler's errors: warm next time. */
    r = call("fail", NULL);
    assert_false(faas_result_cold_start(r));
    faas_result_free(r);
}

/* Payloads up to the 6 MiB limit cross the channel both ways; a result
 * over it is refused. */
static void test_large_payloads(void **state)
{
    struct faas_function_opts o = proc_opts();
    struct faas_result *r;
    size_t n = 6u * 1024u * 1024u - 64u;
    char *s = malloc(n + 1);
    json_t *ev;
    (void)state;

    assert_non_null(s);
    memset(s, 'a', n);
    s[n] = '\0';
    o.timeout_ms = 120000; /* megabytes of JSON, also under valgrind */
    assert_int_equal(faas_register(g_rt, "len", h_len, &o), 0);
    assert_int_equal(faas_register(g_rt, "big", h_big, &o), 0);
    ev = json_pack("{s:s}", "data", s);
    free(s);
    r = call("len", ev);
    assert_int_equal(faas_result_status(r), 0);
    assert_int_equal(json_integer_value(faas_result_payload(r)), (json_int_t)n);
    faas_result_free(r);
    json_decref(ev);

    ev = json_pack("{s:I}", "n", (json_int_t)(6u * 1024u * 1024u - 16u));
    r = call("big", ev);
    assert_int_equal(faas_result_status(r), 0);
    assert_int_equal(json_string_length(faas_result_payload(r)), 6u * 1024u * 1024u - 16u);
    faas_result_free(r);
    json_decref(ev);

    ev = json_pack("{s:I}", "n", (json_int_t)(7u * 1024u * 1024u));
    r = call("big", ev);
    assert_int_equal(faas_result_status(r), FAAS_ETOOBIG);
    assert_string_equal(faas_result_error_type(r), "Function.ResponseSizeTooLarge");
    faas_result_free(r);
    json_decref(ev);
}

/* A worker holds its channel, its log pipe and the standard descriptors,
 * nothing of the host's. */
static void test_no_descriptor_leaks(void **state)
{
    struct faas_function_opts o = proc_opts();
    struct faas_result *r;
    int fds[200], i;
    size_t k;
    (void)state;

    for (i = 0; i < 200; i++)
        assert_true((fds[i] = open("/dev/null", O_RDONLY)) >= 0); /* no O_CLOEXEC */
    assert_int_equal(faas_register(g_rt, "fds", h_fds, &o), 0);
    r = call("fds", NULL);
    assert_int_equal(faas_result_status(r), 0);
    /* 0 /dev/null, 1 and 2 the log pipe, 3 and 4 the channel. */
    assert_int_equal(json_array_size(faas_result_payload(r)), 5);
    for (k = 0; k < 5; k++)
        assert_int_equal(json_integer_value(json_array_get(faas_result_payload(r), k)),
                         (json_int_t)k);
    faas_result_free(r);
    for (i = 0; i < 200; i++)
        close(fds[i]);
}

/* faas_register_library: the object is opened in the worker, with its
 * <symbol>_init and <symbol>_fini. */
static void test_library_function(void **state)
{
    struct faas_function_opts o = proc_opts();
    struct faas_result *r;
    (void)state;

    assert_int_equal(faas_register_library(g_rt, "echo", SO_PATH, "echo", &o), 0);
    r = call("echo", NULL);
    assert_int_equal(faas_result_status(r), 0);
    assert_string_equal(json_string_value(json_object_get(faas_result_payload(r), "state")),
                        "initialised");
    assert_true(payload_int(r, "pid") != getpid());
    faas_result_free(r);

    /* The same object in the host, for THREAD. */
    o.isolation = FAAS_ISOLATION_THREAD;
    assert_int_equal(faas_register_library(g_rt, "echo-t", SO_PATH, "echo", &o), 0);
    r = call("echo-t", NULL);
    assert_int_equal(faas_result_status(r), 0);
    assert_int_equal(payload_int(r, "pid"), getpid());
    assert_string_equal(json_string_value(json_object_get(faas_result_payload(r), "state")),
                        "initialised");
    faas_result_free(r);
}

static void test_library_errors(void **state)
{
    struct faas_function_opts o = proc_opts();
    struct faas_result *r;
    (void)state;

    assert_int_equal(faas_register_library(g_rt, "x", "/nonexistent/x.so", "echo", &o),
                     FAAS_ENOENT);
    assert_int_equal(faas_register_library(g_rt, "x", SO_PATH, NULL, &o), FAAS_EINVAL);
    assert_int_equal(faas_register_library(g_rt, "x", NULL, "echo", &o), FAAS_EINVAL);
    /* In the host (THREAD) a missing symbol is known at once. */
    o.isolation = FAAS_ISOLATION_THREAD;
    assert_int_equal(faas_register_library(g_rt, "x", SO_PATH, "nope", &o), FAAS_ENOENT);
    /* In a worker, at its first cold start: an init error. */
    o.isolation = FAAS_ISOLATION_PROCESS;
    assert_int_equal(faas_register_library(g_rt, "nope", SO_PATH, "nope", &o), 0);
    r = call("nope", NULL);
    assert_int_equal(faas_result_status(r), FAAS_EINIT);
    assert_string_equal(faas_result_error_type(r), "Runtime.HandlerNotFound");
    faas_result_free(r);
    /* An init that fails with faas_ctx_fail. */
    assert_int_equal(faas_register_library(g_rt, "fi", SO_PATH, "fail_init", &o), 0);
    r = call("fi", NULL);
    assert_int_equal(faas_result_status(r), FAAS_EINIT);
    assert_string_equal(faas_result_error_type(r), "ConfigError");
    assert_string_equal(faas_result_error_message(r), "no configuration");
    faas_result_free(r);
    /* Nothing of it stays: a new process tries again next time. */
    r = call("fi", NULL);
    assert_int_equal(faas_result_status(r), FAAS_EINIT);
    assert_true(faas_result_cold_start(r));
    faas_result_free(r);
}

/* min_warm workers start at registration; the first invocation is warm;
 * max_uses recycles; idle ones above min_warm are reaped (scale to zero). */
static void test_pool_of_processes(void **state)
{
    struct faas_function_opts o = proc_opts();
    struct stat_want w = { "warm", 2 };
    struct faas_result *r1, *r2, *r3;
    (void)state;

    o.min_warm = 2;
    o.init = init_state;
    assert_int_equal(faas_register(g_rt, "warm", h_info, &o), 0);
    assert_true(tu_run_until_pred(g_base, pred_inits, &w, 5000)); /* both ran init */
    assert_true(tu_run_until_pred(g_base, pred_idle, &w, 5000));  /* both ready */
    assert_true(pred_instances(&w));
    r1 = call("warm", NULL);
    assert_int_equal(faas_result_status(r1), 0);
    assert_false(faas_result_cold_start(r1));
    faas_result_free(r1);

    o.min_warm = 0;
    o.max_uses = 2;
    assert_int_equal(faas_register(g_rt, "recycled", h_info, &o), 0);
    r1 = call("recycled", NULL);
    r2 = call("recycled", NULL);
    r3 = call("recycled", NULL);
    assert_int_equal(payload_int(r1, "pid"), payload_int(r2, "pid"));
    assert_true(payload_int(r3, "pid") != payload_int(r2, "pid"));
    assert_true(faas_result_cold_start(r3));
    faas_result_free(r1);
    faas_result_free(r2);
    faas_result_free(r3);

    o.max_uses = 0;
    o.idle_timeout_ms = 50;
    assert_int_equal(faas_register(g_rt, "reaped", h_info, &o), 0);
    r1 = call("reaped", NULL);
    faas_result_free(r1);
    w.name = "reaped";
    w.instances = 0;
    assert_true(tu_run_until_pred(g_base, pred_instances, &w, 5000));
}

/* max_concurrency workers at most; max_queue waiting; the rest throttled. */
static void test_throttle(void **state)
{
    struct faas_function_opts o = proc_opts();
    struct res_box b1 = { 0, 0, "" }, b2 = { 0, 0, "" };
    char m1[128];
    json_t *ev = marker_event("m1", m1, sizeof m1);
    (void)state;

    o.max_concurrency = 1;
    o.max_queue = 1;
    o.timeout_ms = 300;
    assert_int_equal(faas_register(g_rt, "one", h_block, &o), 0);
    assert_int_equal(faas_invoke(g_rt, "one", ev, NULL, on_result, &b1), 0);
    assert_int_equal(faas_invoke(g_rt, "one", ev, NULL, on_result, &b2), 0);
    assert_int_equal(faas_invoke(g_rt, "one", ev, NULL, on_result, &b2), FAAS_ETHROTTLED);
    assert_true(tu_run_until(g_base, &b2.done, 1, 10000));
    assert_int_equal(b1.status, FAAS_ETIMEDOUT);
    assert_int_equal(b2.status, FAAS_ETIMEDOUT);
    json_decref(ev);
}

/* Unregistering a function whose handler runs: the caller gets
 * FAAS_ECANCELED from the loop and the worker is killed. */
static void test_unregister_running(void **state)
{
    struct faas_function_opts o = proc_opts();
    struct res_box b = { 0, 0, "" };
    char m[128];
    json_t *ev = marker_event("m", m, sizeof m);
    (void)state;

    o.timeout_ms = 0;
    assert_int_equal(faas_register(g_rt, "blk", h_block, &o), 0);
    assert_int_equal(faas_invoke(g_rt, "blk", ev, NULL, on_result, &b), 0);
    assert_true(tu_run_until_pred(g_base, pred_exists, m, 5000));
    assert_int_equal(faas_unregister(g_rt, "blk"), 0);
    assert_int_equal(b.done, 0); /* from the loop, not inside the call */
    assert_true(tu_run_until(g_base, &b.done, 1, 5000));
    assert_int_equal(b.status, FAAS_ECANCELED);
    json_decref(ev);
}

/* faas_runtime_free with a handler running: its callback runs once with
 * FAAS_ECANCELED before the call returns. */
static void test_free_running(void **state)
{
    struct faas_function_opts o = proc_opts();
    struct res_box b = { 0, 0, "" };
    char m[128];
    json_t *ev = marker_event("m", m, sizeof m);
    (void)state;

    o.timeout_ms = 0;
    o.min_warm = 1;
    assert_int_equal(faas_register(g_rt, "blk", h_block, &o), 0);
    assert_int_equal(faas_register_library(g_rt, "echo", SO_PATH, "echo", &o), 0);
    assert_int_equal(faas_invoke(g_rt, "blk", ev, NULL, on_result, &b), 0);
    assert_true(tu_run_until_pred(g_base, pred_exists, m, 5000));
    faas_runtime_free(g_rt);
    g_rt = NULL;
    assert_int_equal(b.done, 1);
    assert_int_equal(b.status, FAAS_ECANCELED);
    json_decref(ev);
}

/* Without a zygote the host forks its workers itself; all else is alike. */
static void test_without_zygote(void **state)
{
    struct faas_function_opts o = proc_opts();
    struct faas_result *r;
    int i;
    (void)state;

    faas_runtime_free(g_rt);
    g_rt = new_runtime(0);
    o.init = init_state;
    assert_int_equal(faas_register(g_rt, "info", h_info, &o), 0);
    /* Output the host has not flushed stays the host's, written once. */
    printf("unflushed-by-the-host");
    r = call("info", NULL);
    printf("\n");
    for (i = 0; i < g_nlines; i++)
        assert_null(strstr(g_lines[i].line, "unflushed-by-the-host"));
    assert_int_equal(faas_result_status(r), 0);
    assert_string_equal(json_string_value(json_object_get(faas_result_payload(r), "state")),
                        "from init");
    faas_result_free(r);
    r = call("info", NULL);
    assert_false(faas_result_cold_start(r));
    faas_result_free(r);
}

static int pred_pids_gone(const void *arg)
{
    const pid_t *p = arg;
    /* Orphans come to the test (a subreaper here): reap them. */
    while (waitpid(-1, NULL, WNOHANG) > 0)
        ;
    return kill(p[0], 0) != 0 && errno == ESRCH && kill(p[1], 0) != 0 && errno == ESRCH;
}

/* A host killed with SIGKILL (no teardown at all): its zygote and its
 * workers go with it. The host here is a child of the test. */
static void test_zygote_dies_with_host(void **state)
{
    int pfd[2];
    pid_t host, pids[2] = { 0, 0 };
    (void)state;

    SKIP_EMULATED("qemu-user refuses PR_SET_CHILD_SUBREAPER, which this test needs to see the "
                  "orphaned zygote and workers end");
    assert_int_equal(pipe(pfd), 0);
    /* Whatever init this machine has, the orphaned zygote is reaped here. */
    assert_int_equal(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
    host = fork();
    assert_true(host >= 0);
    if (host == 0) {
        struct event_base *b = event_base_new();
        struct faas_runtime *rt = NULL;
        struct faas_function_opts o = proc_opts();
        struct faas_result *r = NULL;
        pid_t out[2];
        close(pfd[0]);
        if (faas_runtime_new(&rt, b, NULL) != 0 || faas_register(rt, "info", h_info, &o) != 0 ||
            faas_invoke_sync(rt, "info", NULL, NULL, &r) != 0 || faas_result_status(r) != 0)
            _exit(1);
        out[0] = faas_proc_zygote_pid(rt);
        out[1] = (pid_t)json_integer_value(json_object_get(faas_result_payload(r), "pid"));
        if (write(pfd[1], out, sizeof out) != (ssize_t)sizeof out)
            _exit(1);
        for (;;)
            pause();
    }
    close(pfd[1]);
    assert_int_equal(read(pfd[0], pids, sizeof pids), (ssize_t)sizeof pids);
    close(pfd[0]);
    assert_true(pids[0] > 0 && pids[1] > 0);
    assert_int_equal(kill(pids[0], 0), 0);
    assert_int_equal(kill(pids[1], 0), 0);
    assert_int_equal(kill(host, SIGKILL), 0);
    assert_int_equal(waitpid(host, NULL, 0), host);
    /* The zygote is reparented and reaped by init; the worker dies with it. */
    assert_true(tu_run_until_pred(g_base, pred_pids_gone, pids, 10000));
    assert_int_equal(prctl(PR_SET_CHILD_SUBREAPER, 0), 0);
}

/* Bad arguments. */
static void test_register_command_errors(void **state)
{
    struct faas_function_opts o = FAAS_FUNCTION_OPTS_INIT;
    const char *none[] = { NULL };
    const char *missing[] = { "/nonexistent/bootstrap", NULL };
    const char *ok[] = { "/bin/true", NULL };
    (void)state;

    assert_int_equal(faas_register_command(g_rt, "c", NULL, NULL), FAAS_EINVAL);
    assert_int_equal(faas_register_command(g_rt, "c", none, NULL), FAAS_EINVAL);
    assert_int_equal(faas_register_command(g_rt, "c", missing, NULL), FAAS_ENOENT);
    o.init = init_state;
    assert_int_equal(faas_register_command(g_rt, "c", ok, &o), FAAS_EINVAL);
    assert_int_equal(faas_register_command(NULL, "c", ok, NULL), FAAS_EINVAL);
    assert_int_equal(faas_register_command(g_rt, "bad name", ok, NULL), FAAS_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_runs_in_a_worker, setup, teardown),
        cmocka_unit_test_setup_teardown(test_log_lines, setup, teardown),
        cmocka_unit_test_setup_teardown(test_handler_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_log_bound, setup, teardown),
        cmocka_unit_test_setup_teardown(test_log_escaped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_log_multibyte_cut, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nul_in_strings, setup, teardown),
        cmocka_unit_test_setup_teardown(test_large_payloads, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_descriptor_leaks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_library_function, setup, teardown),
        cmocka_unit_test_setup_teardown(test_library_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pool_of_processes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_throttle, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unregister_running, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_running, setup, teardown),
        cmocka_unit_test_setup_teardown(test_without_zygote, setup, teardown),
        cmocka_unit_test_setup_teardown(test_zygote_dies_with_host, setup, teardown),
        cmocka_unit_test_setup_teardown(test_register_command_errors, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
