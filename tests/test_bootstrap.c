/*
 * test_bootstrap.c - faas-bootstrap, the Lambda custom runtime for native
 * handlers, both ways it runs.
 *
 * Under libfaas: registered as a COMMAND function (argv the built
 * faas-bootstrap, opts.handler "boot_fns.so:SYMBOL", opts.task_root the
 * directory of tests/runtimes/boot_fns.c's object), invoked through
 * faas_invoke like any function: success with the whole context (request
 * id, deadline, function name, memory size, trace id, client context, the
 * state init made), handler errors, init errors, a symbol or library that
 * is not there, a timeout, log lines.
 *
 * Against a Runtime API played by the test itself, on a loopback socket,
 * so the wire is seen as the bootstrap writes it: the headers, keep-alive,
 * a new connection when the old one closed, retries of /next, the exit
 * status after an init error or when the API is gone, fini on SIGTERM,
 * LIBRARY found under LAMBDA_TASK_ROOT and not the working directory.
 * The bootstrap runs as a child process; every wait on it (its requests,
 * its exit, seen as the end of a pipe it holds) has a bound.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <sodium.h>

#include "testutil.h"

#define BOUND_MS 20000u

static struct event_base *g_base;
static struct faas_runtime *g_rt;
static char g_boot[PATH_MAX];   /* the faas-bootstrap under test */
static char g_root[PATH_MAX];   /* LAMBDA_TASK_ROOT: boot_fns.so's directory */
static json_t *g_lines;         /* [[request_id, line], ...] */

/* ==== fixture ========================================================== */

static void on_log(const struct faas_log_record *rec, void *arg)
{
    (void)arg;
    if (rec->kind == FAAS_LOG_LINE)
        json_array_append_new(g_lines, json_pack("[ss]", rec->request_id ? rec->request_id : "",
                                                 rec->line ? rec->line : ""));
}

static int setup(void **state)
{
    struct faas_runtime_opts o = FAAS_RUNTIME_OPTS_INIT;
    (void)state;

    if (!realpath(TEST_B "/faas-bootstrap", g_boot) ||
        !realpath(TEST_B "/tests/runtimes", g_root))
        fail_msg("build %s/faas-bootstrap and its handlers first (make tests-build)", TEST_B);
    g_lines = json_array();
    g_base = event_base_new();
    assert_non_null(g_base);
    o.log = on_log;
    assert_int_equal(faas_runtime_new(&g_rt, g_base, &o), 0);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    faas_runtime_free(g_rt);
    g_rt = NULL;
    event_base_free(g_base);
    g_base = NULL;
    json_decref(g_lines);
    g_lines = NULL;
    return 0;
}

/* Registers `name` as faas-bootstrap running `handler`. */
static void reg(const char *name, const char *handler, const struct faas_function_opts *extra)
{
    struct faas_function_opts o = FAAS_FUNCTION_OPTS_INIT;
    const char *argv[] = { g_boot, NULL };

    if (extra)
        o = *extra;
    o.handler = handler;
    o.task_root = g_root;
    assert_int_equal(faas_register_command(g_rt, name, argv, &o), 0);
}

struct tres {
    int done;
    int status;
    int cold;
    json_t *payload;
    char rid[FAAS_REQUEST_ID_SIZE];
};

static void res_cb(const struct faas_result *res, void *arg)
{
    struct tres *r = arg;
    r->done++;
    r->status = faas_result_status(res);
    r->cold = faas_result_cold_start(res);
    r->payload = json_incref(faas_result_payload(res));
    snprintf(r->rid, sizeof r->rid, "%s", faas_result_request_id(res));
}

static void tres_clear(struct tres *r)
{
    json_decref(r->payload);
    memset(r, 0, sizeof *r);
}

static void invoke_wait(const char *fn, const char *event, const struct faas_invoke_opts *io,
                        struct tres *r)
{
    json_t *ev = json_loads(event, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
    assert_non_null(ev);
    memset(r, 0, sizeof *r);
    assert_int_equal(faas_invoke(g_rt, fn, ev, io, res_cb, r), 0);
    json_decref(ev);
    assert_true(tu_run_until(g_base, &r->done, 1, BOUND_MS));
    assert_int_equal(r->done, 1);
}

static const char *pstr(const struct tres *r, const char *key)
{
    return json_string_value(json_object_get(r->payload, key));
}

static json_int_t pint(const struct tres *r, const char *key)
{
    return json_integer_value(json_object_get(r->payload, key));
}

static void expect_error(const struct tres *r, int status, const char *type, const char *msg)
{
    if (r->status != status) {
        char *p = json_dumps(r->payload, JSON_ENCODE_ANY);
        fail_msg("status %d (%s), payload %s", r->status, faas_strerror(r->status), p);
    }
    assert_string_equal(pstr(r, "errorType"), type);
    if (msg)
        assert_string_equal(pstr(r, "errorMessage"), msg);
}

/* 1 when `text` was logged with request id rid. */
static int logged(const char *rid, const char *text)
{
    size_t i;
    json_t *l;
    json_array_foreach(g_lines, i, l) {
        if (strcmp(json_string_value(json_array_get(l, 0)), rid) == 0 &&
            strcmp(json_string_value(json_array_get(l, 1)), text) == 0)
            return 1;
    }
    return 0;
}

/* ==== under libfaas, as a COMMAND function ============================== */

static void test_success_context(void **state)
{
    struct faas_function_opts o = FAAS_FUNCTION_OPTS_INIT;
    struct faas_invoke_opts io = FAAS_INVOKE_OPTS_INIT;
    json_t *cc = json_pack("{s:{s:s},s:{s:s},s:[i,i]}", "custom", "tenant", "acme", "env",
                           "platform", "test", "list", 1, 2);
    struct tres r;
    json_int_t pid;
    (void)state;
    SKIP_EMULATED("faas-bootstrap is a program of the target, which the kernel cannot run");

    o.memory_mb = 256;
    o.timeout_ms = 5000;
    reg("orders", "boot_fns.so:info", &o);
    io.trace_id = "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1";
    io.client_context = cc;
    invoke_wait("orders", "{\"id\":\"42\",\"nul\":\"a\\u0000b\"}", &io, &r);
    assert_int_equal(r.status, 0);
    assert_true(r.cold);
    assert_string_equal(pstr(&r, "request_id"), r.rid);
    assert_string_equal(pstr(&r, "function"), "orders");
    assert_int_equal(pint(&r, "memory"), 256);
    assert_true(pint(&r, "remaining") > 0 && pint(&r, "remaining") <= 5000);
    assert_string_equal(pstr(&r, "trace"), io.trace_id);
    assert_string_equal(pstr(&r, "trace_env"), io.trace_id);
    assert_true(json_equal(json_object_get(r.payload, "client_context"), cc));
    assert_string_equal(pstr(&r, "state"), "initialised");
    assert_int_equal(json_string_length(json_object_get(json_object_get(r.payload, "event"),
                                                        "nul")), 3);
    pid = pint(&r, "pid");
    assert_true(pid > 0);
    tres_clear(&r);

    /* Warm: the same process; no client context, no trace id given. */
    invoke_wait("orders", "[1,2]", NULL, &r);
    assert_int_equal(r.status, 0);
    assert_false(r.cold);
    assert_int_equal(pint(&r, "pid"), pid);
    assert_true(json_is_null(json_object_get(r.payload, "client_context")));
    assert_string_equal(pstr(&r, "request_id"), r.rid);
    tres_clear(&r);
    json_decref(cc);
}

static void test_handler_errors(void **state)
{
    struct tres r;
    json_int_t pid;
    (void)state;
    SKIP_EMULATED("faas-bootstrap is a program of the target, which the kernel cannot run");

    reg("fail", "boot_fns.so:fail", NULL);
    invoke_wait("fail", "{\"id\":\"42\"}", NULL, &r);
    expect_error(&r, FAAS_EHANDLER, "OrderError", "order 42 refused");
    tres_clear(&r);

    reg("nonzero", "boot_fns.so:nonzero", NULL);
    invoke_wait("nonzero", "{}", NULL, &r);
    expect_error(&r, FAAS_EHANDLER, "Runtime.HandlerError", "handler returned 3");
    tres_clear(&r);

    /* A handler error keeps the instance. */
    reg("info", "boot_fns.so:info", NULL);
    invoke_wait("info", "{}", NULL, &r);
    pid = pint(&r, "pid");
    tres_clear(&r);
    invoke_wait("info", "{}", NULL, &r);
    assert_false(r.cold);
    assert_int_equal(pint(&r, "pid"), pid);
    tres_clear(&r);
}

static void test_init_errors(void **state)
{
    struct tres r;
    (void)state;
    SKIP_EMULATED("faas-bootstrap is a program of the target, which the kernel cannot run");

    reg("badinit", "boot_fns.so:badinit", NULL);
    invoke_wait("badinit", "{}", NULL, &r);
    expect_error(&r, FAAS_EINIT, "ConfigError", "no configuration");
    tres_clear(&r);

    reg("nosym", "boot_fns.so:no_such_symbol", NULL);
    invoke_wait("nosym", "{}", NULL, &r);
    expect_error(&r, FAAS_EINIT, "Runtime.HandlerNotFound", NULL);
    assert_non_null(strstr(pstr(&r, "errorMessage"), "no_such_symbol"));
    tres_clear(&r);

    reg("nolib", "no_such_lib.so:info", NULL);
    invoke_wait("nolib", "{}", NULL, &r);
    expect_error(&r, FAAS_EINIT, "Runtime.ImportModuleError", NULL);
    assert_non_null(strstr(pstr(&r, "errorMessage"), "no_such_lib.so"));
    tres_clear(&r);

    reg("nocolon", "boot_fns.so", NULL);
    invoke_wait("nocolon", "{}", NULL, &r);
    expect_error(&r, FAAS_EINIT, "Runtime.MalformedHandlerName", NULL);
    tres_clear(&r);
}

static void test_timeout(void **state)
{
    struct faas_function_opts o = FAAS_FUNCTION_OPTS_INIT;
    struct tres r;
    json_int_t pid;
    (void)state;
    SKIP_EMULATED("faas-bootstrap is a program of the target, which the kernel cannot run");

    o.timeout_ms = 500;
    reg("nap", "boot_fns.so:nap", &o);
    invoke_wait("nap", "{\"ms\":1}", NULL, &r);
    assert_int_equal(r.status, 0);
    assert_int_equal(pint(&r, "slept"), 1);
    tres_clear(&r);
    reg("napinfo", "boot_fns.so:info", &o);
    invoke_wait("napinfo", "{}", NULL, &r);
    pid = pint(&r, "pid");
    assert_true(pint(&r, "remaining") <= 500);
    tres_clear(&r);

    invoke_wait("nap", "{\"ms\":30000}", NULL, &r);
    expect_error(&r, FAAS_ETIMEDOUT, "Sandbox.Timedout", "Task timed out after 0.50 seconds");
    tres_clear(&r);
    /* The other function's process is untouched. */
    invoke_wait("napinfo", "{}", NULL, &r);
    assert_int_equal(pint(&r, "pid"), pid);
    tres_clear(&r);
}

static void test_log_lines(void **state)
{
    struct tres r;
    char line[128];
    (void)state;
    SKIP_EMULATED("faas-bootstrap is a program of the target, which the kernel cannot run");

    reg("logs", "boot_fns.so:logs", NULL);
    invoke_wait("logs", "{}", NULL, &r);
    assert_int_equal(r.status, 0);
    assert_true(logged(r.rid, "first line"));
    assert_true(logged(r.rid, "second\\nline")); /* one call, one line */
    assert_true(logged(r.rid, "third line 3"));
    tres_clear(&r);

    reg("loginit", "boot_fns.so:info", NULL);
    invoke_wait("loginit", "{}", NULL, &r);
    snprintf(line, sizeof line, "info_init in %s", "loginit");
    assert_true(logged(r.rid, line));
    tres_clear(&r);
}

/* ==== against a Runtime API played by the test ========================== */

/* The API's listening socket and the bootstrap child. */
struct fake {
    int lfd;
    uint16_t port;
    int conn;          /* the connection being served, -1 */
    int conns;         /* connections accepted */
    pid_t pid;
    int gone;          /* a pipe's read end: at its end when the child is */
    int out;           /* the read end of the child's stdout */
};

/* A request as the bootstrap sent it. */
struct req {
    char method[8];
    char path[256];
    char head[8192];   /* the header lines, as sent */
    char body[65536];
    size_t body_len;
    int chunks;        /* chunks of a chunked body */
    char trailers[4096];
};

static void fake_listen(struct fake *f)
{
    struct sockaddr_in a;
    socklen_t len = sizeof a;
    memset(f, 0, sizeof *f);
    f->conn = -1;
    f->gone = -1;
    f->out = -1;
    f->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(f->lfd >= 0);
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(f->lfd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(f->lfd, 8), 0);
    assert_int_equal(getsockname(f->lfd, (struct sockaddr *)&a, &len), 0);
    f->port = ntohs(a.sin_port);
}

/* Starts faas-bootstrap with `handler`, in directory `cwd`, with
 * LAMBDA_TASK_ROOT g_root and `extra` ("K=V" or NULL) in its environment. */
static void fake_spawn(struct fake *f, const char *handler, const char *cwd, const char *extra)
{
    char api[64];
    int out[2], gone[2];
    snprintf(api, sizeof api, "127.0.0.1:%u", f->port);
    assert_int_equal(pipe2(out, O_CLOEXEC), 0);
    assert_int_equal(pipe2(gone, O_CLOEXEC), 0);
    f->pid = fork();
    assert_true(f->pid >= 0);
    if (f->pid == 0) {
        /* stdout is read by the test; its own complaints are not. */
        int null = open("/dev/null", O_WRONLY);
        if (null < 0 || dup2(null, 2) < 0 || dup2(out[1], 1) < 0 || chdir(cwd) != 0 ||
            fcntl(gone[1], F_SETFD, 0) != 0) /* held until it exits */
            _exit(120);
        setenv("AWS_LAMBDA_RUNTIME_API", api, 1);
        setenv("LAMBDA_TASK_ROOT", g_root, 1);
        setenv("_HANDLER", handler, 1);
        setenv("AWS_LAMBDA_FUNCTION_NAME", "fake-fn", 1);
        setenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512", 1);
        if (extra)
            putenv((char *)(uintptr_t)extra);
        execl(g_boot, g_boot, (char *)NULL);
        _exit(121);
    }
    close(out[1]);
    close(gone[1]);
    f->out = out[0];
    f->gone = gone[0];
}

/* What the child wrote to stdout, once it has exited (the pipe is at its
 * end then). */
static void fake_stdout(struct fake *f, char *buf, size_t cap)
{
    size_t n = 0;
    ssize_t r;
    while (n + 1 < cap && (r = read(f->out, buf + n, cap - 1 - n)) > 0)
        n += (size_t)r;
    buf[n] = '\0';
}

/* Waits for the child's exit; returns its wait status. */
static int fake_exit_status(struct fake *f)
{
    struct pollfd p = { f->gone, POLLIN, 0 };
    int st = 0;
    assert_int_equal(poll(&p, 1, (int)BOUND_MS), 1);
    assert_int_equal(waitpid(f->pid, &st, 0), f->pid);
    close(f->gone);
    f->gone = -1;
    f->pid = 0;
    return st;
}

static void fake_close(struct fake *f)
{
    if (f->conn >= 0)
        close(f->conn);
    if (f->lfd >= 0)
        close(f->lfd);
    if (f->pid > 0) {
        kill(f->pid, SIGKILL);
        waitpid(f->pid, NULL, 0);
    }
    if (f->gone >= 0)
        close(f->gone);
    if (f->out >= 0)
        close(f->out);
    f->conn = f->lfd = f->gone = f->out = -1;
}

/* Bytes from the connection into buf, with the bound; 0 when it closed. */
static size_t conn_read(int fd, char *buf, size_t cap)
{
    struct pollfd p = { fd, POLLIN, 0 };
    ssize_t n;
    assert_int_equal(poll(&p, 1, (int)BOUND_MS), 1);
    n = recv(fd, buf, cap, 0);
    assert_true(n >= 0);
    return (size_t)n;
}

/* The connection's unread bytes, kept between requests. */
static char g_in[1 << 17];
static size_t g_in_len;

/* A line from the connection, without its CRLF. */
static void read_line(int fd, char *out, size_t cap)
{
    char *nl;
    while (!(nl = memchr(g_in, '\n', g_in_len))) {
        size_t n = conn_read(fd, g_in + g_in_len, sizeof g_in - g_in_len);
        if (n == 0)
            fail_msg("the connection closed in a request");
        g_in_len += n;
    }
    assert_true((size_t)(nl - g_in) < cap);
    memcpy(out, g_in, (size_t)(nl - g_in));
    out[nl - g_in - (nl > g_in && nl[-1] == '\r')] = '\0';
    g_in_len -= (size_t)(nl - g_in) + 1;
    memmove(g_in, nl + 1, g_in_len);
}

static void read_bytes(int fd, char *out, size_t n)
{
    while (g_in_len < n) {
        size_t got = conn_read(fd, g_in + g_in_len, sizeof g_in - g_in_len);
        if (got == 0)
            fail_msg("the connection closed in a body");
        g_in_len += got;
    }
    memcpy(out, g_in, n);
    g_in_len -= n;
    memmove(g_in, g_in + n, g_in_len);
}

/* The value of field `name` (case-insensitive) in text, lines of
 * "Name: value\n", copied to out; or NULL. */
static const char *field(const char *text, const char *name, char *out, size_t cap)
{
    const char *p = text;
    size_t nlen = strlen(name);
    while (*p) {
        const char *eol = strchr(p, '\n');
        if (strncasecmp(p, name, nlen) == 0 && p[nlen] == ':') {
            const char *v = p + nlen + 1;
            size_t len;
            while (*v == ' ')
                v++;
            len = (size_t)(eol - v);
            assert_true(len < cap);
            memcpy(out, v, len);
            out[len] = '\0';
            return out;
        }
        p = eol + 1;
    }
    return NULL;
}

static const char *header(const struct req *r, const char *name, char *out, size_t cap)
{
    return field(r->head, name, out, cap);
}

/* Accepts a connection when none is open (counting it), then reads a
 * request's line and headers; fails the test if none comes within the
 * bound. */
static void read_head(struct fake *f, struct req *r)
{
    char line[8192];
    size_t hl = 0;

    memset(r, 0, sizeof *r);
    if (f->conn < 0) {
        struct pollfd p = { f->lfd, POLLIN, 0 };
        assert_int_equal(poll(&p, 1, (int)BOUND_MS), 1);
        f->conn = accept4(f->lfd, NULL, NULL, SOCK_CLOEXEC);
        assert_true(f->conn >= 0);
        f->conns++;
        g_in_len = 0;
    }
    read_line(f->conn, line, sizeof line);
    assert_int_equal(sscanf(line, "%7s %255s HTTP/1.1", r->method, r->path), 2);
    for (;;) {
        read_line(f->conn, line, sizeof line);
        if (!line[0])
            break;
        hl += (size_t)snprintf(r->head + hl, sizeof r->head - hl, "%s\n", line);
        assert_true(hl < sizeof r->head);
    }
}

/* One chunk of a chunked body appended to r->body; its size, 0 for the
 * last one (the trailers are then in r->trailers). */
static size_t read_chunk(struct fake *f, struct req *r)
{
    char line[8192];
    size_t n, tl = 0;

    read_line(f->conn, line, sizeof line);
    n = strtoul(line, NULL, 16);
    if (n == 0) {
        for (;;) {
            read_line(f->conn, line, sizeof line);
            if (!line[0])
                break;
            tl += (size_t)snprintf(r->trailers + tl, sizeof r->trailers - tl, "%s\n", line);
        }
        return 0;
    }
    assert_true(r->body_len + n < sizeof r->body);
    read_bytes(f->conn, r->body + r->body_len, n);
    r->body_len += n;
    r->body[r->body_len] = '\0';
    r->chunks++;
    read_line(f->conn, line, sizeof line);
    assert_string_equal(line, "");
    return n;
}

/* A whole request. */
static void next_request(struct fake *f, struct req *r)
{
    char v[64];

    read_head(f, r);
    if (header(r, "Content-Length", v, sizeof v)) {
        r->body_len = strtoul(v, NULL, 10);
        assert_true(r->body_len < sizeof r->body);
        read_bytes(f->conn, r->body, r->body_len);
    } else if (header(r, "Transfer-Encoding", v, sizeof v)) {
        assert_string_equal(v, "chunked");
        while (read_chunk(f, r) > 0)
            ;
    }
    r->body[r->body_len] = '\0';
}

static void reply(struct fake *f, const char *status, const char *headers, const char *body)
{
    char buf[16384];
    int n = snprintf(buf, sizeof buf, "HTTP/1.1 %s\r\nContent-Length: %zu\r\n%s\r\n%s", status,
                     strlen(body), headers, body);
    assert_true(n > 0 && (size_t)n < sizeof buf);
    assert_int_equal(send(f->conn, buf, (size_t)n, MSG_NOSIGNAL), n);
}

/* Answers a GET /next with an event for request id rid. */
static void give_event(struct fake *f, const char *rid, const char *event, int64_t in_ms)
{
    char h[1024];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(h, sizeof h,
             "Content-Type: application/json\r\nLambda-Runtime-Aws-Request-Id: %s\r\n"
             "Lambda-Runtime-Deadline-Ms: %lld\r\n"
             "Lambda-Runtime-Invoked-Function-Arn: arn:aws:lambda:us-east-1:1:function:x\r\n"
             "Lambda-Runtime-Trace-Id: Root=1-fake\r\n"
             "Lambda-Runtime-Client-Context: {\"custom\":{\"k\":\"v\"}}\r\n",
             rid, (long long)(ts.tv_sec * 1000 + ts.tv_nsec / 1000000 + in_ms));
    reply(f, "200 OK", h, event);
}

static void expect_next(struct fake *f, struct req *r)
{
    char v[256];
    next_request(f, r);
    assert_string_equal(r->method, "GET");
    assert_string_equal(r->path, "/2018-06-01/runtime/invocation/next");
    assert_non_null(header(r, "User-Agent", v, sizeof v));
    assert_true(strncmp(v, "faas-bootstrap/", 15) == 0);
    assert_non_null(header(r, "Host", v, sizeof v));
}

static void test_wire(void **state)
{
    struct fake f;
    struct req r;
    char v[256];
    json_t *j;
    (void)state;
    SKIP_EMULATED("faas-bootstrap is a program of the target, which the kernel cannot run");

    fake_listen(&f);
    /* The working directory is not the task root: LIBRARY is found in
     * LAMBDA_TASK_ROOT all the same. */
    fake_spawn(&f, "boot_fns.so:info", "/", NULL);
    expect_next(&f, &r);
    give_event(&f, "rid-1", "{\"n\":1}", 3000);
    next_request(&f, &r);
    assert_string_equal(r.method, "POST");
    assert_string_equal(r.path, "/2018-06-01/runtime/invocation/rid-1/response");
    assert_non_null(header(&r, "Content-Type", v, sizeof v));
    assert_string_equal(v, "application/json");
    assert_null(header(&r, "Lambda-Runtime-Function-Response-Mode", v, sizeof v));
    assert_non_null(header(&r, "User-Agent", v, sizeof v));
    j = json_loads(r.body, 0, NULL);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "request_id")), "rid-1");
    assert_string_equal(json_string_value(json_object_get(j, "function")), "fake-fn");
    assert_int_equal(json_integer_value(json_object_get(j, "memory")), 512);
    assert_true(json_integer_value(json_object_get(j, "remaining")) > 1000);
    assert_true(json_integer_value(json_object_get(j, "remaining")) <= 3000);
    assert_string_equal(json_string_value(json_object_get(j, "trace_env")), "Root=1-fake");
    assert_string_equal(json_string_value(json_object_get(json_object_get(json_object_get(
                            j, "client_context"), "custom"), "k")), "v");
    json_decref(j);
    reply(&f, "202 Accepted", "Content-Type: application/json\r\n", "{\"status\":\"OK\"}");

    /* Keep-alive: the next /next on the same connection. */
    expect_next(&f, &r);
    assert_int_equal(f.conns, 1);
    /* The API closes it after this event: the result comes on a new one. */
    give_event(&f, "rid-2", "{}", 3000);
    shutdown(f.conn, SHUT_WR);
    close(f.conn);
    f.conn = -1;
    next_request(&f, &r);
    assert_int_equal(f.conns, 2);
    assert_string_equal(r.path, "/2018-06-01/runtime/invocation/rid-2/response");
    reply(&f, "202 Accepted", "", "{}");
    /* The API is gone: three tries of /next, then exit status 1. */
    expect_next(&f, &r);
    close(f.conn);
    f.conn = -1;
    close(f.lfd);
    f.lfd = -1;
    {
        char out[4096];
        int st = fake_exit_status(&f);
        assert_true(WIFEXITED(st));
        assert_int_equal(WEXITSTATUS(st), 1);
        /* faas_ctx_log lines went to stdout, one line each. */
        fake_stdout(&f, out, sizeof out);
        assert_string_equal(out, "info_init in fake-fn\n");
    }
    fake_close(&f);
}

static void test_wire_errors(void **state)
{
    struct fake f;
    struct req r;
    char v[256];
    json_t *j;
    (void)state;
    SKIP_EMULATED("faas-bootstrap is a program of the target, which the kernel cannot run");

    fake_listen(&f);
    fake_spawn(&f, "boot_fns.so:fail", "/", NULL);
    /* /next answered 500 twice: tried again, on. */
    expect_next(&f, &r);
    reply(&f, "500 Internal Server Error", "", "{}");
    expect_next(&f, &r);
    reply(&f, "500 Internal Server Error", "", "{}");
    expect_next(&f, &r);
    give_event(&f, "rid-e", "{\"id\":\"7\"}", 3000);
    next_request(&f, &r);
    assert_string_equal(r.method, "POST");
    assert_string_equal(r.path, "/2018-06-01/runtime/invocation/rid-e/error");
    assert_non_null(header(&r, "Lambda-Runtime-Function-Error-Type", v, sizeof v));
    assert_string_equal(v, "OrderError");
    j = json_loads(r.body, 0, NULL);
    assert_string_equal(json_string_value(json_object_get(j, "errorType")), "OrderError");
    assert_string_equal(json_string_value(json_object_get(j, "errorMessage")),
                        "order 7 refused");
    json_decref(j);
    reply(&f, "202 Accepted", "", "{}");

    /* An event that is not JSON: an error of its own, the loop goes on. */
    expect_next(&f, &r);
    give_event(&f, "rid-x", "{not json", 3000);
    next_request(&f, &r);
    assert_string_equal(r.path, "/2018-06-01/runtime/invocation/rid-x/error");
    assert_non_null(header(&r, "Lambda-Runtime-Function-Error-Type", v, sizeof v));
    assert_string_equal(v, "Runtime.UnmarshalError");
    reply(&f, "202 Accepted", "", "{}");
    expect_next(&f, &r);
    assert_int_equal(f.conns, 1);
    fake_close(&f);
}

static void test_wire_init_error(void **state)
{
    static const char *const cases[][2] = {
        { "boot_fns.so:badinit", "ConfigError" },
        { "boot_fns.so:nothere", "Runtime.HandlerNotFound" },
        { "nothere.so:info", "Runtime.ImportModuleError" },
        { "no-colon", "Runtime.MalformedHandlerName" },
    };
    size_t i;
    (void)state;
    SKIP_EMULATED("faas-bootstrap is a program of the target, which the kernel cannot run");

    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct fake f;
        struct req r;
        char v[256];
        json_t *j;
        int st;

        fake_listen(&f);
        fake_spawn(&f, cases[i][0], "/", NULL);
        next_request(&f, &r);
        assert_string_equal(r.method, "POST");
        assert_string_equal(r.path, "/2018-06-01/runtime/init/error");
        assert_non_null(header(&r, "Lambda-Runtime-Function-Error-Type", v, sizeof v));
        assert_string_equal(v, cases[i][1]);
        j = json_loads(r.body, 0, NULL);
        assert_string_equal(json_string_value(json_object_get(j, "errorType")), cases[i][1]);
        json_decref(j);
        reply(&f, "202 Accepted", "", "{}");
        st = fake_exit_status(&f);
        assert_true(WIFEXITED(st));
        assert_int_equal(WEXITSTATUS(st), 1);
        fake_close(&f);
    }
}

static void test_sigterm_runs_fini(void **state)
{
    char dir[] = "/tmp/faas-boot-XXXXXX", file[64], env[96], got[16] = "";
    struct fake f;
    struct req r;
    FILE *fp;
    int st;
    (void)state;
    SKIP_EMULATED("faas-bootstrap is a program of the target, which the kernel cannot run");

    assert_non_null(mkdtemp(dir));
    snprintf(file, sizeof file, "%s/fini", dir);
    snprintf(env, sizeof env, "BOOT_FINI_FILE=%s", file);
    fake_listen(&f);
    fake_spawn(&f, "boot_fns.so:info", "/", env);
    expect_next(&f, &r);
    give_event(&f, "rid-t", "{}", 3000);
    next_request(&f, &r);
    reply(&f, "202 Accepted", "", "{}");
    expect_next(&f, &r); /* it waits in /next */
    kill(f.pid, SIGTERM);
    st = fake_exit_status(&f);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    fp = fopen(file, "r");
    assert_non_null(fp);
    assert_non_null(fgets(got, sizeof got, fp));
    fclose(fp);
    assert_string_equal(got, "fini");
    unlink(file);
    rmdir(dir);
    fake_close(&f);
}

/* Answers that are not answers: each counts as a failed /next, and the
 * third in a row ends the process (status 1). */
static void test_wire_hostile_answers(void **state)
{
    static const char garbage[] = "NOT HTTP AT ALL\r\n\r\n";
    static const char huge[] = "HTTP/1.1 200 OK\r\nLambda-Runtime-Aws-Request-Id: r\r\n"
                               "Content-Length: 99999999999\r\n\r\n{}";
    struct fake f;
    struct req r;
    int st;
    (void)state;
    SKIP_EMULATED("faas-bootstrap is a program of the target, which the kernel cannot run");

    fake_listen(&f);
    fake_spawn(&f, "boot_fns.so:info", "/", NULL);
    /* 200 without a request id: nothing to answer to. */
    expect_next(&f, &r);
    reply(&f, "200 OK", "Content-Type: application/json\r\n", "{}");
    /* Not HTTP: the connection is dropped. */
    expect_next(&f, &r);
    assert_int_equal(send(f.conn, garbage, sizeof garbage - 1, MSG_NOSIGNAL),
                     (ssize_t)(sizeof garbage - 1));
    close(f.conn);
    f.conn = -1;
    /* A body over the bound: not read. */
    expect_next(&f, &r);
    assert_int_equal(f.conns, 2);
    assert_int_equal(send(f.conn, huge, sizeof huge - 1, MSG_NOSIGNAL),
                     (ssize_t)(sizeof huge - 1));
    st = fake_exit_status(&f);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 1);
    fake_close(&f);
}

/* A streamed response on the wire: its head, the first chunk before the
 * handler has returned, the exact bytes, the error trailers; a response
 * that is not streamed has none of it; a stream whose reader went away
 * makes the handler's next write FAAS_ECANCELED. */
static void test_wire_streaming(void **state)
{
    char dir[] = "/tmp/faas-boot-XXXXXX", gate[64], gate2[64], ev[256], v[512], out[4096],
        want[64];
    unsigned char bin[512];
    size_t binlen = 0;
    struct fake f;
    struct req r;
    json_t *j;
    FILE *fp;
    (void)state;
    SKIP_EMULATED("faas-bootstrap is a program of the target, which the kernel cannot run");

    assert_non_null(mkdtemp(dir));
    snprintf(gate, sizeof gate, "%s/gate", dir);
    snprintf(gate2, sizeof gate2, "%s/gate2", dir);
    fake_listen(&f);
    fake_spawn(&f, "boot_fns.so:chunks", "/", NULL);

    expect_next(&f, &r);
    snprintf(ev, sizeof ev, "{\"parts\":[\"hello \",\"streamed \",\"world\"],\"gate\":\"%s\"}",
             gate);
    give_event(&f, "rid-s1", ev, 10000);
    read_head(&f, &r);
    assert_string_equal(r.method, "POST");
    assert_string_equal(r.path, "/2018-06-01/runtime/invocation/rid-s1/response");
    assert_non_null(header(&r, "Lambda-Runtime-Function-Response-Mode", v, sizeof v));
    assert_string_equal(v, "streaming");
    assert_non_null(header(&r, "Transfer-Encoding", v, sizeof v));
    assert_string_equal(v, "chunked");
    assert_null(header(&r, "Content-Length", v, sizeof v));
    assert_non_null(header(&r, "Trailer", v, sizeof v));
    assert_non_null(strstr(v, "Lambda-Runtime-Function-Error-Type"));
    /* The first chunk comes while the handler still waits at its gate. */
    assert_int_equal(read_chunk(&f, &r), 6);
    assert_string_equal(r.body, "hello ");
    assert_int_equal(access(gate, F_OK), -1);
    fp = fopen(gate, "w");
    assert_non_null(fp);
    fclose(fp);
    while (read_chunk(&f, &r) > 0)
        ;
    assert_int_equal(r.chunks, 3);
    assert_string_equal(r.body, "hello streamed world"); /* nothing appended */
    assert_string_equal(r.trailers, "");
    reply(&f, "202 Accepted", "", "{}");

    /* A failure after the first bytes: in the trailers. */
    expect_next(&f, &r);
    give_event(&f, "rid-s2", "{\"parts\":[\"partial\"],\"fail\":true}", 10000);
    next_request(&f, &r);
    assert_string_equal(r.body, "partial");
    assert_non_null(field(r.trailers, "Lambda-Runtime-Function-Error-Type", v, sizeof v));
    assert_string_equal(v, "StreamError");
    assert_non_null(field(r.trailers, "Lambda-Runtime-Function-Error-Body", v, sizeof v));
    assert_int_equal(sodium_base642bin(bin, sizeof bin - 1, v, strlen(v), NULL, &binlen, NULL,
                                       sodium_base64_VARIANT_ORIGINAL), 0);
    bin[binlen] = '\0';
    j = json_loads((const char *)bin, 0, NULL);
    assert_string_equal(json_string_value(json_object_get(j, "errorType")), "StreamError");
    assert_string_equal(json_string_value(json_object_get(j, "errorMessage")),
                        "broke after 1 chunks");
    json_decref(j);
    reply(&f, "202 Accepted", "", "{}");

    /* Nothing written: an ordinary response, without the streaming mode. */
    expect_next(&f, &r);
    give_event(&f, "rid-s3", "{\"parts\":[]}", 10000);
    next_request(&f, &r);
    assert_string_equal(r.path, "/2018-06-01/runtime/invocation/rid-s3/response");
    assert_null(header(&r, "Lambda-Runtime-Function-Response-Mode", v, sizeof v));
    assert_non_null(header(&r, "Content-Length", v, sizeof v));
    assert_string_equal(r.body, "{\"dropped\":true}");
    reply(&f, "202 Accepted", "", "{}");

    /* The reader goes after the first chunk: the next write is cancelled,
     * and the runtime asks for the next event on a new connection. */
    expect_next(&f, &r);
    snprintf(ev, sizeof ev, "{\"parts\":[\"one\",\"two\"],\"gate\":\"%s\"}", gate2);
    give_event(&f, "rid-s4", ev, 10000);
    read_head(&f, &r);
    assert_int_equal(read_chunk(&f, &r), 3);
    close(f.conn);
    f.conn = -1;
    fp = fopen(gate2, "w");
    assert_non_null(fp);
    fclose(fp);
    expect_next(&f, &r);
    assert_int_equal(f.conns, 2);
    kill(f.pid, SIGKILL);
    fake_exit_status(&f);
    fake_stdout(&f, out, sizeof out);
    assert_non_null(strstr(out, "write 0: 0\nwrite 1: 0\nwrite 2: 0\n"));
    snprintf(want, sizeof want, "write 0: 0\nwrite 1: %d\n", FAAS_ECANCELED);
    assert_non_null(strstr(out, want));
    unlink(gate);
    unlink(gate2);
    rmdir(dir);
    fake_close(&f);
}

/* Streaming under libfaas: the host's caller gets the chunks as they come,
 * a failure after them is the result's error. */
struct chunks {
    char buf[256];
    size_t len;
    int calls;
};

static void on_chunk(const void *data, size_t len, void *arg)
{
    struct chunks *c = arg;
    assert_true(c->len + len < sizeof c->buf);
    memcpy(c->buf + c->len, data, len);
    c->len += len;
    c->buf[c->len] = '\0';
    c->calls++;
}

static void test_streaming(void **state)
{
    struct faas_invoke_opts io = FAAS_INVOKE_OPTS_INIT;
    struct chunks c;
    struct tres r;
    (void)state;
    SKIP_EMULATED("faas-bootstrap is a program of the target, which the kernel cannot run");

    memset(&c, 0, sizeof c);
    io.on_chunk = on_chunk;
    io.chunk_arg = &c;
    reg("chunks", "boot_fns.so:chunks", NULL);
    invoke_wait("chunks", "{\"parts\":[\"hello \",\"streamed \",\"world\"]}", &io, &r);
    assert_int_equal(r.status, 0);
    assert_string_equal(c.buf, "hello streamed world");
    assert_true(c.calls >= 1);
    assert_true(json_is_null(r.payload));
    tres_clear(&r);

    /* No on_chunk: the bytes, whole, are the payload. */
    invoke_wait("chunks", "{\"parts\":[\"a\",\"b\"]}", NULL, &r);
    assert_int_equal(r.status, 0);
    assert_string_equal(json_string_value(r.payload), "ab");
    tres_clear(&r);

    memset(&c, 0, sizeof c);
    invoke_wait("chunks", "{\"parts\":[\"partial\"],\"fail\":true}", &io, &r);
    expect_error(&r, FAAS_EHANDLER, "StreamError", "broke after 1 chunks");
    assert_string_equal(c.buf, "partial");
    tres_clear(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_success_context, setup, teardown),
        cmocka_unit_test_setup_teardown(test_handler_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_init_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_log_lines, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wire, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wire_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wire_init_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sigterm_runs_fini, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wire_hostile_answers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wire_streaming, setup, teardown),
        cmocka_unit_test_setup_teardown(test_streaming, setup, teardown),
    };
    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
