/*
 * isolation - where a handler runs, and what PROCESS isolation survives.
 *
 * It shows:
 *  - one handler, "greet", registered three times: INLINE (on the loop
 *    thread), THREAD (on a worker thread of the runtime) and PROCESS (in a
 *    worker process forked from the runtime's zygote). Each is invoked twice:
 *    a cold start (its init runs: Init Duration in the REPORT line) and a
 *    warm start (the same instance, the state its init made). The handler
 *    returns the pid it ran in: the host's for INLINE and THREAD, another
 *    for PROCESS;
 *  - a PROCESS handler with a real bug, a write through a null pointer: the
 *    invocation fails with FAAS_ECRASHED ("signal: segmentation fault"), the
 *    line it printed just before reaches the log with its request id, and
 *    the host carries on: the next invocation runs on a fresh worker;
 *  - a PROCESS handler that never returns, killed at its 200 ms deadline
 *    (FAAS_ETIMEDOUT, "Task timed out after 0.20 seconds") although it never
 *    looks at faas_ctx_cancelled();
 *  - a PROCESS handler that allocates without end, stopped by its 64 MB
 *    memory limit (FAAS_EMEMLIMIT, errorType Runtime.OutOfMemory).
 *
 * The runtime is created first thing in main(), before any thread exists:
 * faas_runtime_new() forks the zygote then, and every worker is a copy of
 * it. The handlers are functions of this program, so they exist in the
 * workers too.
 *
 * Every result is checked; the program exits 0 only if all checks pass.
 * Run it from the top of the source tree:
 *
 *   make examples && ./build/examples/isolation
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "faas.h"

static int failures;

static void check(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "CHECK FAILED: %s\n", what);
        failures++;
    }
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ------------------------------------------------------------------ */
/* The functions                                                       */
/* ------------------------------------------------------------------ */

/* greet's state: made by init at a cold start, found again when warm. */
struct greeter {
    int calls;
};

static int greet_init(struct faas_ctx *ctx, void **state)
{
    struct greeter *g = calloc(1, sizeof *g);
    if (!g)
        return faas_ctx_fail(ctx, "OutOfMemory", "no memory for the greeter");
    faas_ctx_log(ctx, "init in pid %d", (int)getpid());
    *state = g;
    return 0;
}

static void greet_fini(void *state)
{
    free(state);
}

/* {"name": s} -> {"greeting": "hello, s", "pid": ..., "calls": ...}. */
static int greet(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    struct greeter *g = faas_ctx_state(ctx);
    const char *name = json_string_value(json_object_get(event, "name"));

    if (!name)
        return faas_ctx_fail(ctx, "InvalidInput", "name must be a string");
    g->calls++;
    faas_ctx_log(ctx, "greeting %s, call %d of this instance", name, g->calls);
    *result = json_pack("{s:s+,s:i,s:i}", "greeting", "hello, ", name, "pid", (int)getpid(),
                        "calls", g->calls);
    return *result ? 0 : -1;
}

/* {"crash": true} writes through a null pointer; otherwise returns its pid. */
static int fragile(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    (void)ctx;
    if (json_is_true(json_object_get(event, "crash"))) {
        /* volatile: the compiler may neither assume the pointer null nor
         * drop the write. */
        volatile int *volatile nowhere = NULL;
        /* stdout of a worker is a log pipe, line-buffered: this line is out
         * before the crash. */
        printf("about to write through %p\n", (const volatile void *)nowhere);
        *nowhere = 42;
    }
    *result = json_pack("{s:i}", "pid", (int)getpid());
    return *result ? 0 : -1;
}

/* Spins and never returns: only a hard deadline stops it. */
static int hang(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    volatile unsigned long spins = 0;
    (void)ctx;
    (void)event;
    (void)result;
    for (;;)
        spins++;
    return 0;
}

/* Every block hog allocated, chained: memory kept in use, as by a leak (and
 * so the compiler cannot leave the allocations out). */
static void *volatile hoard;

/* Allocates and touches 1 MiB at a time until allocation fails, and then
 * does what most programs do when out of memory: abort. */
static int hog(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    (void)ctx;
    (void)event;
    (void)result;
    for (;;) {
        void **block = malloc(1u << 20);
        if (!block)
            abort();
        memset(block, 1, 1u << 20);
        block[0] = hoard;
        hoard = block;
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* Logs and results                                                    */
/* ------------------------------------------------------------------ */

/* The request id whose log held the line fragile printed before dying. */
static char crash_line_request[FAAS_REQUEST_ID_SIZE];

/* Lines from faas_ctx_log() and, for PROCESS, the worker's stdout and
 * stderr: each tagged with the request id of the invocation that wrote it. */
static void on_log(const struct faas_log_record *rec, void *arg)
{
    (void)arg;
    if (rec->kind != FAAS_LOG_LINE)
        return;
    printf("    log %-14s %.8s  %s\n", rec->function, rec->request_id, rec->line);
    if (strncmp(rec->line, "about to write through", 22) == 0)
        snprintf(crash_line_request, sizeof crash_line_request, "%s", rec->request_id);
}

/* Invokes and waits (faas_invoke_sync runs the loop). NULL on failure. */
static struct faas_result *call(struct faas_runtime *rt, const char *function, json_t *event)
{
    struct faas_result *res = NULL;
    int rc = faas_invoke_sync(rt, function, event, NULL, &res);
    char report[512], *text;

    json_decref(event); /* borrowed by the call: ours to drop */
    if (rc != 0) {
        fprintf(stderr, "faas_invoke_sync(%s): %s\n", function, faas_strerror(rc));
        check(0, "faas_invoke_sync");
        return NULL;
    }
    text = json_dumps(faas_result_payload(res), JSON_COMPACT | JSON_ENCODE_ANY);
    printf("  %-14s %s -> %s\n", function, faas_result_cold_start(res) ? "cold" : "warm",
           text ? text : "?");
    free(text);
    if (faas_result_status(res) != 0)
        printf("    error %s (%s): %s\n", faas_strerror_name(faas_result_status(res)),
               faas_result_error_type(res), faas_result_error_message(res));
    if (faas_result_report(res, report, sizeof report) > 0)
        printf("    %s\n", report);
    return res;
}

static int payload_int(const struct faas_result *res, const char *key)
{
    return (int)json_integer_value(json_object_get(faas_result_payload(res), key));
}

/* ------------------------------------------------------------------ */
/* The parts                                                           */
/* ------------------------------------------------------------------ */

/* greet, cold then warm, in one isolation mode. */
static void run_greet(struct faas_runtime *rt, const char *name, enum faas_isolation iso)
{
    struct faas_function_opts o = FAAS_FUNCTION_OPTS_INIT;
    struct faas_result *cold, *warm;
    char what[96];
    int pid, in_host = iso != FAAS_ISOLATION_PROCESS;

    o.isolation = iso;
    o.init = greet_init;
    o.fini = greet_fini;
    check(faas_register(rt, name, greet, &o) == 0, "register greet");

    cold = call(rt, name, json_pack("{s:s}", "name", "cold"));
    warm = call(rt, name, json_pack("{s:s}", "name", "warm"));
    if (!cold || !warm)
        goto out;
    pid = payload_int(cold, "pid");
    snprintf(what, sizeof what, "%s: both succeed", name);
    check(faas_result_status(cold) == 0 && faas_result_status(warm) == 0, what);
    snprintf(what, sizeof what, "%s: cold, then warm on the same instance", name);
    check(faas_result_cold_start(cold) && !faas_result_cold_start(warm) &&
              payload_int(cold, "calls") == 1 && payload_int(warm, "calls") == 2 &&
              payload_int(warm, "pid") == pid,
          what);
    snprintf(what, sizeof what, "%s: runs %s the host process", name,
             in_host ? "in" : "outside");
    check((pid == (int)getpid()) == in_host, what);
    snprintf(what, sizeof what, "%s: Init Duration only when cold", name);
    check(faas_result_init_duration_us(cold) > 0 && faas_result_init_duration_us(warm) == 0,
          what);
out:
    faas_result_free(cold);
    faas_result_free(warm);
}

/* A segfault in a PROCESS handler costs one invocation, not the host. */
static void run_crash(struct faas_runtime *rt)
{
    struct faas_function_opts o = FAAS_FUNCTION_OPTS_INIT;
    struct faas_result *before, *crash, *after;
    const char *msg;

    o.isolation = FAAS_ISOLATION_PROCESS;
    check(faas_register(rt, "fragile", fragile, &o) == 0, "register fragile");

    before = call(rt, "fragile", json_pack("{s:b}", "crash", 0));
    crash = call(rt, "fragile", json_pack("{s:b}", "crash", 1));
    printf("    (the host is still running: invoking fragile again)\n");
    after = call(rt, "fragile", json_pack("{s:b}", "crash", 0));
    if (!before || !crash || !after)
        goto out;
    msg = faas_result_error_message(crash);
    check(faas_result_status(crash) == FAAS_ECRASHED, "crash: FAAS_ECRASHED");
    check(faas_result_error_type(crash) &&
              strcmp(faas_result_error_type(crash), "Runtime.ExitError") == 0,
          "crash: errorType Runtime.ExitError");
    check(msg && strstr(msg, "signal: segmentation fault") != NULL,
          "crash: the message names the signal");
    check(strcmp(crash_line_request, faas_result_request_id(crash)) == 0,
          "crash: what it printed first is logged with its request id");
    /* The host is still here, and the function still serves. */
    check(faas_result_status(after) == 0 && faas_result_cold_start(after),
          "after the crash: a cold start that works");
    check(payload_int(after, "pid") != payload_int(before, "pid"),
          "after the crash: a fresh worker process");
out:
    faas_result_free(before);
    faas_result_free(crash);
    faas_result_free(after);
}

/* A handler that never returns is killed at its deadline. */
static void run_hang(struct faas_runtime *rt)
{
    struct faas_function_opts o = FAAS_FUNCTION_OPTS_INIT;
    struct faas_result *res;
    uint64_t t0, took;
    const char *msg;

    o.isolation = FAAS_ISOLATION_PROCESS;
    o.timeout_ms = 200;
    check(faas_register(rt, "hang", hang, &o) == 0, "register hang");

    t0 = now_ms();
    res = call(rt, "hang", json_pack("{}"));
    took = now_ms() - t0;
    printf("    (the caller had its answer after %llu ms)\n", (unsigned long long)took);
    if (!res)
        return;
    msg = faas_result_error_message(res);
    check(faas_result_status(res) == FAAS_ETIMEDOUT, "hang: FAAS_ETIMEDOUT");
    check(msg && strcmp(msg, "Task timed out after 0.20 seconds") == 0,
          "hang: Lambda's timeout message");
    /* The cold start's init has a bound of its own; the 200 ms start when
     * the handler does. A second is plenty for both on a loaded machine. */
    check(took >= 200 && took < 1200, "hang: answered at the deadline");
    faas_result_free(res);
}

/* A handler that allocates without end meets its memory limit. */
static void run_hog(struct faas_runtime *rt)
{
    struct faas_function_opts o = FAAS_FUNCTION_OPTS_INIT;
    struct faas_result *res;

    o.isolation = FAAS_ISOLATION_PROCESS;
    o.memory_mb = 64;
    check(faas_register(rt, "hog", hog, &o) == 0, "register hog");

    res = call(rt, "hog", json_pack("{}"));
    if (!res)
        return;
    check(faas_result_status(res) == FAAS_EMEMLIMIT, "hog: FAAS_EMEMLIMIT");
    check(faas_result_error_type(res) &&
              strcmp(faas_result_error_type(res), "Runtime.OutOfMemory") == 0,
          "hog: errorType Runtime.OutOfMemory");
    /* Max Memory Used is the worker's own peak: about its limit. */
    check(faas_result_max_memory_kb(res) >= 32u * 1024u, "hog: Max Memory Used near 64 MB");
    faas_result_free(res);
}

int main(void)
{
    struct faas_runtime_opts ro = FAAS_RUNTIME_OPTS_INIT;
    struct faas_runtime *rt = NULL;
    struct event_base *base;
    struct rlimit core;
    int rc;

    printf("libfaas %s, host pid %d\n", faas_version(), (int)getpid());
    /* Workers crash on purpose below: no core files. They inherit this. */
    if (getrlimit(RLIMIT_CORE, &core) == 0) {
        core.rlim_cur = 0;
        setrlimit(RLIMIT_CORE, &core);
    }
    base = event_base_new();
    if (!base) {
        fprintf(stderr, "event_base_new failed\n");
        return 1;
    }
    /* First, before any thread: this forks the zygote. */
    ro.log = on_log;
    rc = faas_runtime_new(&rt, base, &ro);
    if (rc != 0) {
        fprintf(stderr, "faas_runtime_new: %s\n", faas_strerror(rc));
        event_base_free(base);
        return 1;
    }

    printf("\n1. one handler, three isolation modes\n");
    run_greet(rt, "greet-inline", FAAS_ISOLATION_INLINE);
    run_greet(rt, "greet-thread", FAAS_ISOLATION_THREAD);
    run_greet(rt, "greet-process", FAAS_ISOLATION_PROCESS);

    printf("\n2. a crash in a PROCESS handler\n");
    run_crash(rt);

    printf("\n3. a PROCESS handler that never returns (timeout 200 ms)\n");
    run_hang(rt);

    printf("\n4. a PROCESS handler that allocates without end (memory 64 MB)\n");
    run_hog(rt);

    /* Idle workers run their fini and exit; the zygote goes with them. */
    faas_runtime_free(rt);
    event_base_free(base);

    if (failures) {
        fprintf(stderr, "isolation: %d check(s) failed\n", failures);
        return 1;
    }
    printf("\nisolation: all checks passed\n");
    return 0;
}
