/*
 * test_process_faults.c - fault injection for PROCESS isolation: handlers
 * that crash, abort, exit, hang, eat memory, fork, close their channel;
 * inits that fail or hang. Each must give its error code while the host
 * keeps serving and the pool refills to min_warm; a thousand crashes must
 * leave the host with no more descriptors, heap or child processes than
 * before.
 */
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/event.h>

#include "faas.h"
#include "faas_int.h"
#include "testutil.h"

static struct event_base *g_base;
static struct faas_runtime *g_rt;
static int g_ready_lines; /* "ready" lines of min_warm inits */

static void on_log(const struct faas_log_record *r, void *arg)
{
    (void)arg;
    /* min_warm starts only: a cold start's lines carry its request id. */
    if (r->kind == FAAS_LOG_LINE && strcmp(r->line, "ready") == 0 && !r->request_id[0])
        g_ready_lines++;
}

/* Valgrind preloads its own libraries into the program it runs. */
static int under_valgrind(void)
{
    const char *p = getenv("LD_PRELOAD");
    return p && strstr(p, "vgpreload") != NULL;
}

static int setup(void **state)
{
    struct faas_runtime_opts ro = FAAS_RUNTIME_OPTS_INIT;
    (void)state;
    ro.log = on_log;
    g_ready_lines = 0;
    g_base = event_base_new();
    assert_int_equal(faas_runtime_new(&g_rt, g_base, &ro), 0);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    tu_rt_free(&g_rt, &g_base);
    return 0;
}

/* ---- the faulty function (runs in workers) ---------------------------- */

static int ready_init(struct faas_ctx *ctx, void **state)
{
    (void)state;
    faas_ctx_log(ctx, "ready");
    return 0;
}

static volatile char *g_sink;

static int h_fault(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    const char *what = json_string_value(json_object_get(event, "do"));
    (void)ctx;
    if (!what)
        what = "ok";
    if (strcmp(what, "segv") == 0) {
        g_sink = NULL;
        g_sink[0] = 1; /* a real invalid write */
    } else if (strcmp(what, "abort") == 0) {
        abort();
    } else if (strcmp(what, "exit") == 0) {
        exit(3);
    } else if (strcmp(what, "loop") == 0) {
        for (;;)
            g_sink = (volatile char *)&what;
    } else if (strcmp(what, "eat") == 0) {
        for (;;) {
            char *p = malloc(1u << 20);
            memset(p, 1, 1u << 20); /* crashes once malloc fails */
            g_sink = p;
        }
    } else if (strcmp(what, "fork") == 0) {
        pid_t pid = fork();
        if (pid == 0) {
            for (;;)
                pause();
        }
        *result = json_pack("{s:i}", "child", (int)pid);
        return 0;
    } else if (strcmp(what, "daemon") == 0) {
        /* A double fork into a session of its own: out of the worker's
         * process group, adopted by the zygote. */
        int p[2];
        pid_t mid, d = 0;
        if (pipe(p) != 0)
            return -1;
        mid = fork();
        if (mid == 0) {
            setsid();
            if (fork() == 0) {
                pid_t me = getpid();
                if (write(p[1], &me, sizeof me) != (ssize_t)sizeof me)
                    _exit(1);
                for (;;)
                    pause();
            }
            _exit(0);
        }
        if (read(p[0], &d, sizeof d) != (ssize_t)sizeof d)
            d = 0;
        waitpid(mid, NULL, 0);
        close(p[0]);
        close(p[1]);
        *result = json_pack("{s:i}", "daemon", (int)d);
        return 0;
    } else if (strcmp(what, "close") == 0) {
        close(3); /* the worker's channel, both ways */
        close(4);
        *result = json_true();
        return 0;
    }
    *result = json_pack("{s:i}", "pid", (int)getpid());
    return 0;
}

static int init_fails(struct faas_ctx *ctx, void **state)
{
    (void)state;
    return faas_ctx_fail(ctx, "InitBroken", "cannot start");
}

static int init_hangs(struct faas_ctx *ctx, void **state)
{
    (void)ctx;
    (void)state;
    for (;;)
        pause();
    return 0;
}

/* ---- helpers ---------------------------------------------------------- */

static struct faas_result *invoke_do(const char *name, const char *what)
{
    struct faas_result *res = NULL;
    json_t *ev = json_pack("{s:s}", "do", what);
    assert_int_equal(faas_invoke_sync(g_rt, name, ev, NULL, &res), 0);
    json_decref(ev);
    assert_non_null(res);
    return res;
}

static void register_fault(const char *name, uint32_t min_warm, uint32_t memory_mb)
{
    struct faas_function_opts o = FAAS_FUNCTION_OPTS_INIT;
    o.isolation = FAAS_ISOLATION_PROCESS;
    /* 300 ms for the hang; crashes get time to be reported (a sanitizer
     * symbolising a crash's stack can take longer than that). */
    o.timeout_ms = strcmp(name, "hang") == 0 ? 300 : 30000;
    o.min_warm = min_warm;
    /* One worker at a time: an invocation waits for the replacement of a
     * crashed one instead of starting a second. */
    o.max_concurrency = min_warm ? min_warm : 0;
    o.max_queue = 1;
    o.memory_mb = memory_mb;
    o.init = ready_init;
    assert_int_equal(faas_register(g_rt, name, h_fault, &o), 0);
}

static int pred_ready(const void *arg)
{
    return g_ready_lines >= *(const int *)arg;
}

/* Waits until n min_warm workers have said "ready" in all. */
static void wait_ready(int n)
{
    assert_true(tu_run_until_pred(g_base, pred_ready, &n, 10000));
}

static void assert_serves(const char *name)
{
    struct faas_result *r = invoke_do(name, "ok");
    assert_int_equal(faas_result_status(r), 0);
    assert_true(json_integer_value(json_object_get(faas_result_payload(r), "pid")) != getpid());
    faas_result_free(r);
}

static void expect(const char *what, int status, const char *etype, const char *msg_part)
{
    struct faas_result *r = invoke_do("f", what);
    assert_int_equal(faas_result_status(r), status);
    if (etype)
        assert_string_equal(faas_result_error_type(r), etype);
    if (msg_part && !strstr(faas_result_error_message(r), msg_part))
        fail_msg("\"%s\" does not contain \"%s\"", faas_result_error_message(r), msg_part);
    faas_result_free(r);
}

static int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    int n = 0;
    assert_non_null(d);
    while ((e = readdir(d)) != NULL)
        n += e->d_name[0] != '.';
    closedir(d);
    return n - 1; /* the directory's own */
}

/* Workers among the zygote's children, alive or zombies (the zygote's
 * standby, forked ahead of need, is named faas-zygote until it becomes
 * one, and comes and goes: not counted). */
static int zygote_children(void)
{
    char path[96], buf[4096], comm[64];
    pid_t z = faas_proc_zygote_pid(g_rt);
    int fd, n = 0;
    ssize_t len;
    char *p, *end;

    snprintf(path, sizeof path, "/proc/%d/task/%d/children", (int)z, (int)z);
    fd = open(path, O_RDONLY);
    if (fd < 0)
        return -1;
    len = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (len < 0)
        return -1;
    buf[len] = '\0';
    for (p = buf; *p; p = end) {
        long pid = strtol(p, &end, 10);
        ssize_t c;
        if (end == p)
            break;
        snprintf(path, sizeof path, "/proc/%ld/comm", pid);
        fd = open(path, O_RDONLY);
        if (fd < 0)
            continue;
        c = read(fd, comm, sizeof comm - 1);
        close(fd);
        comm[c > 0 ? c : 0] = '\0';
        n += strncmp(comm, "faas-worker", 11) == 0;
    }
    return n;
}

/* ---- tests ------------------------------------------------------------ */

/* AddressSanitizer reports an invalid access itself and exits with 1,
 * before any signal; its allocator reports running out of memory the same
 * way. */
#if defined(__SANITIZE_ADDRESS__)
#define SEGV_MSG "Runtime exited with error"
#else
#define SEGV_MSG "signal: segmentation fault"
#endif
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define UNDER_SANITIZER 1
#else
#define UNDER_SANITIZER 0
#endif

static void test_crashes(void **state)
{
    (void)state;
    register_fault("f", 1, 128);
    wait_ready(1);
    expect("segv", FAAS_ECRASHED, "Runtime.ExitError", SEGV_MSG);
    wait_ready(2); /* replaced */
    assert_serves("f");
    expect("abort", FAAS_ECRASHED, "Runtime.ExitError", "signal: aborted");
    expect("exit", FAAS_ECRASHED, "Runtime.ExitError", "exit status");
    expect("close", FAAS_ECRASHED, "Runtime.ExitError", "Runtime exited");
    assert_serves("f");
}

static void test_hang_killed_at_deadline(void **state)
{
    struct faas_result *r, *r2;
    uint64_t t0;
    (void)state;
    register_fault("hang", 0, 128);
    r = invoke_do("hang", "ok");
    t0 = tu_now_ms();
    faas_result_free(r);
    r = invoke_do("hang", "loop");
    assert_int_equal(faas_result_status(r), FAAS_ETIMEDOUT);
    assert_string_equal(faas_result_error_message(r), "Task timed out after 0.30 seconds");
    assert_true(tu_now_ms() - t0 < 5000);
    faas_result_free(r);
    /* The looping worker is gone: the next invocation is a cold start. */
    r2 = invoke_do("hang", "ok");
    assert_int_equal(faas_result_status(r2), 0);
    assert_true(faas_result_cold_start(r2));
    faas_result_free(r2);
}

static void test_memory_limit(void **state)
{
    struct faas_result *r;
    (void)state;
    if (UNDER_SANITIZER || under_valgrind())
        skip(); /* their allocators reserve memory of their own */
    SKIP_EMULATED("qemu-user does not apply RLIMIT_DATA/RLIMIT_AS (they would bind the emulator), so no memory limit is enforced");
    register_fault("f", 0, 64);
    r = invoke_do("f", "eat");
    assert_int_equal(faas_result_status(r), FAAS_EMEMLIMIT);
    assert_string_equal(faas_result_error_type(r), "Runtime.OutOfMemory");
    /* The peak reported is the worker's own, near its limit. */
    assert_true(faas_result_max_memory_kb(r) > 32u * 1024u);
    faas_result_free(r);
    assert_serves("f");
}

static int pred_gone(const void *arg)
{
    return kill(*(const pid_t *)arg, 0) != 0 && errno == ESRCH;
}

/* A handler that forks: its answer is fine, and what it forked dies with
 * its worker. */
static void test_fork_in_handler(void **state)
{
    struct faas_result *r;
    pid_t child;
    (void)state;
    register_fault("f", 0, 128);
    r = invoke_do("f", "fork");
    assert_int_equal(faas_result_status(r), 0);
    child = (pid_t)json_integer_value(json_object_get(faas_result_payload(r), "child"));
    faas_result_free(r);
    assert_true(child > 0);
    assert_int_equal(kill(child, 0), 0);
    assert_int_equal(faas_unregister(g_rt, "f"), 0);
    assert_true(tu_run_until_pred(g_base, pred_gone, &child, 10000));
}

struct burst {
    int done, ok;
};

static void burst_cb(const struct faas_result *res, void *arg)
{
    struct burst *b = arg;
    b->done++;
    b->ok += faas_result_status(res) == 0;
}

/* Hundreds of cold starts asked for in one turn of the loop: the requests
 * to the zygote outrun its replies, and the host queues them rather than
 * block (a blocked host and a blocked zygote would wait for each other). */
static void test_burst_of_cold_starts(void **state)
{
    struct faas_function_opts o = FAAS_FUNCTION_OPTS_INIT;
    struct burst b = { 0, 0 };
    json_t *ev;
    int i, n = 500;
    (void)state;

    if (UNDER_SANITIZER || under_valgrind())
        skip(); /* 500 workers under a sanitizer's or valgrind's memory */
    ev = json_pack("{s:s}", "do", "ok");
    o.isolation = FAAS_ISOLATION_PROCESS;
    o.memory_mb = 16;
    assert_int_equal(faas_register(g_rt, "f", h_fault, &o), 0);
    for (i = 0; i < n; i++)
        assert_int_equal(faas_invoke(g_rt, "f", ev, NULL, burst_cb, &b), 0);
    assert_true(tu_run_until(g_base, &b.done, n, 60000));
    assert_int_equal(b.ok, n);
    json_decref(ev);
}

static pid_t invoke_daemon(void)
{
    struct faas_result *r = invoke_do("f", "daemon");
    pid_t d;
    assert_int_equal(faas_result_status(r), 0);
    d = (pid_t)json_integer_value(json_object_get(faas_result_payload(r), "daemon"));
    faas_result_free(r);
    assert_true(d > 0);
    assert_int_equal(kill(d, 0), 0);
    return d;
}

/* What escapes a worker's process group dies when a worker ends, and at
 * faas_runtime_free, which does not wait for it. */
static void test_daemons(void **state)
{
    pid_t d;
    uint64_t t0;
    (void)state;
    SKIP_EMULATED("qemu-user refuses PR_SET_CHILD_SUBREAPER, so a daemon that leaves its worker "
                  "is not the zygote's to kill");
    register_fault("f", 0, 128);
    d = invoke_daemon();
    assert_int_equal(faas_unregister(g_rt, "f"), 0);
    assert_true(tu_run_until_pred(g_base, pred_gone, &d, 10000));

    register_fault("f", 0, 128);
    d = invoke_daemon();
    t0 = tu_now_ms();
    faas_runtime_free(g_rt);
    g_rt = NULL;
    assert_true(tu_now_ms() - t0 < 5000);
    assert_true(tu_run_until_pred(g_base, pred_gone, &d, 10000));
}

static void test_init_faults(void **state)
{
    struct faas_function_opts o = FAAS_FUNCTION_OPTS_INIT;
    struct faas_result *r;
    (void)state;
    o.isolation = FAAS_ISOLATION_PROCESS;
    o.init = init_fails;
    assert_int_equal(faas_register(g_rt, "badinit", h_fault, &o), 0);
    o.init = init_hangs;
    o.init_timeout_ms = 200;
    assert_int_equal(faas_register(g_rt, "slowinit", h_fault, &o), 0);

    r = invoke_do("badinit", "ok");
    assert_int_equal(faas_result_status(r), FAAS_EINIT);
    assert_string_equal(faas_result_error_type(r), "InitBroken");
    faas_result_free(r);
    r = invoke_do("slowinit", "ok");
    assert_int_equal(faas_result_status(r), FAAS_EINIT);
    assert_string_equal(faas_result_error_message(r), "Init timed out after 0.20 seconds");
    assert_true(faas_result_cold_start(r));
    faas_result_free(r);
    register_fault("f", 0, 128);
    assert_serves("f");
}

/* With 200 descriptors open in the host, 1,000 crashes and replacements:
 * no descriptor, heap or child process more than before. */
static void test_crash_cycles(void **state)
{
    int fds[200], i, fds_before, kids_before;
    size_t heap_before, heap_after;
    const char *cycles_env = getenv("FAAS_CRASH_CYCLES");
    int cycles = cycles_env ? atoi(cycles_env) : 1000;
    (void)state;

    for (i = 0; i < 200; i++)
        assert_true((fds[i] = open("/dev/null", O_RDONLY)) >= 0);
    register_fault("f", 1, 128);
    wait_ready(1);
    assert_serves("f");
    fds_before = count_fds();
    kids_before = zygote_children();
    assert_true(kids_before >= 1);
    heap_before = mallinfo2().uordblks;
    for (i = 0; i < cycles; i++) {
        struct faas_result *r = invoke_do("f", (i & 1) ? "segv" : "exit");
        assert_int_equal(faas_result_status(r), FAAS_ECRASHED);
        faas_result_free(r);
    }
    wait_ready(cycles + 1);
    assert_serves("f");
    heap_after = mallinfo2().uordblks;
    assert_int_equal(count_fds(), fds_before);
    assert_int_equal(zygote_children(), kids_before);
    assert_true(heap_after <= heap_before + 64u * 1024u);
    for (i = 0; i < 200; i++)
        close(fds[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_crashes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hang_killed_at_deadline, setup, teardown),
        cmocka_unit_test_setup_teardown(test_memory_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fork_in_handler, setup, teardown),
        cmocka_unit_test_setup_teardown(test_daemons, setup, teardown),
        cmocka_unit_test_setup_teardown(test_burst_of_cold_starts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_init_faults, setup, teardown),
        cmocka_unit_test_setup_teardown(test_crash_cycles, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
