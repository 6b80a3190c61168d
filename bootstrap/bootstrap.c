/*
 * bootstrap.c - faas-bootstrap: a Lambda custom runtime for native libfaas
 * handlers. Zipped as `bootstrap` with a handler's shared object it runs on
 * AWS Lambda (provided.al2023); registered as a COMMAND function it runs
 * under libfaas the same way.
 *
 *   _HANDLER=LIBRARY.so:SYMBOL   LIBRARY relative to LAMBDA_TASK_ROOT
 *                                (an absolute path is taken as it is)
 *   AWS_LAMBDA_RUNTIME_API       host:port of the Runtime API
 *
 * It loads the object as a PROCESS worker does (worker.c): SYMBOL is the
 * faas_handler_fn, SYMBOL_init and SYMBOL_fini the optional init and fini.
 * Init runs once, before the first GET /next; a failure there is POSTed to
 * /runtime/init/error with its errorType (Runtime.ImportModuleError: the
 * object does not load; Runtime.HandlerNotFound: no SYMBOL;
 * Runtime.MalformedHandlerName: _HANDLER is not LIBRARY:SYMBOL; the init's
 * own type from faas_ctx_fail) and the process exits with status 1.
 *
 * Then, one invocation at a time: GET /next; the handler runs through
 * faas_inv_execute, the same code INLINE, THREAD and PROCESS run, on a
 * context built as a worker builds it: the request id, a deadline from
 * Lambda-Runtime-Deadline-Ms (wall-clock epoch milliseconds, turned into
 * the remaining time), the trace id (also in _X_AMZN_TRACE_ID), the whole
 * client context, the function name and memory size from
 * AWS_LAMBDA_FUNCTION_NAME and AWS_LAMBDA_FUNCTION_MEMORY_SIZE. A result
 * is POSTed to /response; a failure (faas_ctx_fail, a non-zero return, a
 * late return, a result over 6 MiB) to /error with Lambda's error object
 * and its type in Lambda-Runtime-Function-Error-Type. faas_ctx_log lines
 * go to stdout, one line per call (escaped as the host escapes them).
 *
 * Streaming: the first faas_ctx_stream_write opens the response POST in
 * Lambda's streaming mode (chunked) and sends its bytes as one chunk; each
 * later write is one more chunk. When the handler returns, the body ends;
 * what it returned is dropped (the body is exactly the bytes written), and
 * a failure goes in the trailers. A write whose connection failed returns
 * FAAS_ECANCELED: nobody reads the stream any more.
 *
 * Failures of the API itself are handled as aws-lambda-cpp handles them: a
 * GET /next that gets no answer, or an answer that is not 2xx, is tried
 * again, up to three times in a row, and then the process exits with
 * status 1, after fini; so does it when a result cannot be posted at all
 * (no answer, even on a new connection). On SIGTERM (Lambda's shutdown) it
 * runs fini and exits 0.
 *
 * Built with libfaas linked in statically and its public symbols exported
 * (-rdynamic, --whole-archive): the handler's object resolves faas_ctx_*
 * from this executable, so it runs as installed, without LD_LIBRARY_PATH.
 *
 * May call: rapi.c, lib/ (faas_inv_execute, faas_instance_init, the
 * escaping of log lines), libc's dynamic loader.
 */
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "faas_int.h"
#include "rapi.h"

/* GET /next is tried this many times in a row before the process gives up
 * (aws-lambda-cpp's max_retries). */
#define NEXT_TRIES 3
/* Longest request id taken into a path. */
#define REQUEST_ID_MAX 128

static struct faas_runtime boot_rt;
static struct faas_fn boot_fn;
static struct faas_instance boot_inst;
static struct rapi boot_api;

/* The invocation running, for the stream writer. */
struct boot_inv {
    const char *request_id;
    int stream;   /* 0: not streamed, 1: the POST is open, -1: it broke */
};

/* ---- output ----------------------------------------------------------- */

static void log_line(struct faas_ctx *ctx, const char *line, size_t len)
{
    char esc[FAAS_LOGLINE_MAX];
    (void)ctx;
    len = faas_log_escape(esc, sizeof esc, line, len);
    esc[len] = '\n';
    fwrite(esc, 1, len + 1, stdout);
}

static void say(const char *fmt, ...) FAAS_PRINTF(1, 2);

/* A line of the runtime's own on stderr (a log line under libfaas and in
 * CloudWatch). */
static void say(const char *fmt, ...)
{
    va_list ap;
    fputs("faas-bootstrap: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

/* The error object's compact text; NULL when out of memory. */
static char *error_text(json_t *err)
{
    return json_dumps(err, JSON_COMPACT | JSON_ENCODE_ANY);
}

static void fini_and_exit(int status)
{
    if (boot_inst.initialized && boot_fn.opts.fini)
        boot_fn.opts.fini(boot_inst.state);
    boot_inst.initialized = 0;
    fflush(stdout);
    rapi_free(&boot_api);
    exit(status);
}

/* ---- init ------------------------------------------------------------- */

static void init_failed(const char *type, const char *msg) __attribute__((noreturn));

/* POSTs /init/error and exits 1. */
static void init_failed(const char *type, const char *msg)
{
    json_t *err = faas_error_object(type, msg);
    char *body = error_text(err);
    struct rapi_resp r;

    say("init failed: %s: %s", type, msg);
    memset(&r, 0, sizeof r);
    if (rapi_post(&boot_api, "init/error", type, body ? body : "{}", body ? strlen(body) : 2,
                  &r) != 0)
        say("cannot post the init error to the Runtime API at %s:%s", boot_api.host,
            boot_api.port);
    rapi_resp_clear(&r);
    free(body);
    json_decref(err);
    fflush(stdout);
    rapi_free(&boot_api);
    exit(1);
}

/* Loads LIBRARY:SYMBOL (and SYMBOL_init, SYMBOL_fini) into boot_fn. */
static void load_handler(const char *handler, const char *task_root)
{
    char path[PATH_MAX], name[FAAS_NAME_MAX + 256], msg[PATH_MAX + 512];
    const char *colon = handler ? strrchr(handler, ':') : NULL;
    const char *symbol;
    size_t liblen;
    void *dl;

    if (!colon || colon == handler || !colon[1] || strlen(colon + 1) > FAAS_NAME_MAX + 128) {
        snprintf(msg, sizeof msg, "Bad handler '%s': expected LIBRARY.so:SYMBOL",
                 handler ? handler : "");
        init_failed("Runtime.MalformedHandlerName", msg);
    }
    symbol = colon + 1;
    liblen = (size_t)(colon - handler);
    if (handler[0] == '/')
        snprintf(path, sizeof path, "%.*s", (int)liblen, handler);
    else
        snprintf(path, sizeof path, "%s/%.*s", task_root, (int)liblen, handler);
    dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!dl) {
        snprintf(msg, sizeof msg, "Error: cannot load %s", dlerror());
        init_failed("Runtime.ImportModuleError", msg);
    }
    *(void **)&boot_fn.handler = dlsym(dl, symbol);
    if (!boot_fn.handler) {
        snprintf(msg, sizeof msg, "%s is undefined or not exported in %s", symbol, path);
        init_failed("Runtime.HandlerNotFound", msg);
    }
    snprintf(name, sizeof name, "%s_init", symbol);
    *(void **)&boot_fn.opts.init = dlsym(dl, name);
    snprintf(name, sizeof name, "%s_fini", symbol);
    *(void **)&boot_fn.opts.fini = dlsym(dl, name);
}

static void run_init(void)
{
    struct faas_ctx ctx;
    uint64_t ns = 0;

    memset(&ctx, 0, sizeof ctx);
    ctx.rt = &boot_rt;
    ctx.fn = &boot_fn;
    ctx.request_id = "";
    ctx.log_tail = &ctx.log_head;
    ctx.log_hook = log_line;
    boot_inst.fn = &boot_fn;
    boot_inst.initialized = boot_fn.opts.init == NULL;
    if (!boot_inst.initialized && faas_instance_init(&boot_inst, &ctx, &ns) != 0)
        init_failed(ctx.error_type ? ctx.error_type : "Runtime.InitError",
                    ctx.error_message ? ctx.error_message : "init failed");
    free(ctx.error_type);
    free(ctx.error_message);
}

/* ---- one invocation ---------------------------------------------------- */

static int stream_write(void *arg, const void *data, size_t len)
{
    struct boot_inv *bi = arg;
    char path[REQUEST_ID_MAX + 32];

    if (bi->stream < 0)
        return FAAS_ECANCELED;
    if (bi->stream == 0) {
        snprintf(path, sizeof path, "invocation/%s/response", bi->request_id);
        if (rapi_stream_begin(&boot_api, path) != 0) {
            bi->stream = -1;
            return FAAS_ECANCELED;
        }
        bi->stream = 1;
    }
    if (rapi_stream_chunk(&boot_api, data, len) != 0) {
        bi->stream = -1;
        return FAAS_ECANCELED;
    }
    return 0;
}

/* Milliseconds until Lambda-Runtime-Deadline-Ms (epoch ms), at least 1;
 * 0 (no deadline) without the header. */
static uint32_t timeout_of(const char *deadline_ms)
{
    struct timespec ts;
    unsigned long long deadline, now;
    char *end;

    if (!deadline_ms || !deadline_ms[0])
        return 0;
    errno = 0;
    deadline = strtoull(deadline_ms, &end, 10);
    if (errno || *end)
        return 0;
    clock_gettime(CLOCK_REALTIME, &ts);
    now = (unsigned long long)ts.tv_sec * 1000u + (unsigned long long)ts.tv_nsec / 1000000u;
    if (deadline <= now)
        return 1;
    return deadline - now > UINT32_MAX ? UINT32_MAX : (uint32_t)(deadline - now);
}

static int request_id_ok(const char *id)
{
    size_t i, n = id ? strlen(id) : 0;
    if (n == 0 || n > REQUEST_ID_MAX)
        return 0;
    for (i = 0; i < n; i++) {
        char ch = id[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
              (ch >= '0' && ch <= '9') || ch == '-' || ch == '_' || ch == '.'))
            return 0;
    }
    return 1;
}

/* The errorType of an error object, for the header. */
static const char *error_type_of(json_t *err)
{
    const char *t = json_string_value(json_object_get(err, "errorType"));
    return t && t[0] && !strpbrk(t, "\r\n") ? t : "Unhandled";
}

/* Posts the outcome of inv; 0, or -1 when the API could not be reached. */
static int post_outcome(struct faas_inv *inv, struct boot_inv *bi)
{
    char path[REQUEST_ID_MAX + 32];
    json_t *payload = inv->exec_payload ? inv->exec_payload : json_null();
    char *body = NULL;
    struct rapi_resp r;
    int rc;

    memset(&r, 0, sizeof r);
    if (bi->stream < 0)
        return 0; /* the stream's connection broke: nothing to post on */
    if (bi->stream > 0) {
        if (inv->exec_status != 0)
            body = error_text(payload);
        rc = rapi_stream_end(&boot_api, inv->exec_status ? error_type_of(payload) : NULL,
                             body ? body : "", &r);
    } else {
        body = error_text(payload);
        if (!body) {
            json_t *err = faas_error_object("Runtime.OutOfMemory", "out of memory");
            json_decref(inv->exec_payload);
            inv->exec_payload = err;
            inv->exec_status = FAAS_ENOMEM;
            payload = err;
            body = error_text(err);
        }
        snprintf(path, sizeof path, "invocation/%s/%s", bi->request_id,
                 inv->exec_status ? "error" : "response");
        rc = rapi_post(&boot_api, path, inv->exec_status ? error_type_of(payload) : NULL,
                       body ? body : "{}", body ? strlen(body) : 2, &r);
    }
    if (rc == 0 && (r.status < 200 || r.status > 299))
        say("the Runtime API answered %d to the result of %s: %s", r.status, bi->request_id,
            r.body ? r.body : "");
    rapi_resp_clear(&r);
    free(body);
    return rc;
}

/*
 * _X_AMZN_TRACE_ID, as Lambda's own runtimes set it. Its text is rewritten
 * in place, in a buffer put into the environment once: setenv would keep
 * a copy of every value it was ever given (one per invocation) and search
 * them all each time.
 */
#define TRACE_ENV "_X_AMZN_TRACE_ID"
static char trace_env[sizeof TRACE_ENV "=" + 1024];

static void set_trace_env(const char *trace)
{
    if (!trace) {
        unsetenv(TRACE_ENV);
        return;
    }
    snprintf(trace_env, sizeof trace_env, TRACE_ENV "=%s", trace);
    /* Not ours any more when unset, or replaced by the handler. */
    if (getenv(TRACE_ENV) != trace_env + sizeof TRACE_ENV)
        putenv(trace_env);
}

static void invoke(struct rapi_resp *next)
{
    struct boot_inv bi = { next->request_id, 0 };
    struct faas_inv inv;
    json_error_t jerr;

    set_trace_env(next->trace_id);
    memset(&inv, 0, sizeof inv);
    inv.rt = &boot_rt;
    inv.fn = &boot_fn;
    inv.inst = &boot_inst;
    inv.timeout_ms = timeout_of(next->deadline_ms);
    inv.ctx.rt = &boot_rt;
    inv.ctx.fn = &boot_fn;
    inv.ctx.request_id = next->request_id;
    inv.ctx.trace_id = next->trace_id;
    inv.ctx.log_tail = &inv.ctx.log_head;
    inv.ctx.log_hook = log_line;
    inv.ctx.stream = stream_write;
    inv.ctx.stream_arg = &bi;
    /* JSON_ALLOW_NUL: a string may hold \u0000, as in every isolation. */
    if (next->client_context && next->client_context[0])
        inv.ctx.client_context = json_loads(next->client_context,
                                            JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
    inv.event = json_loadb(next->body, next->body_len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
    if (!inv.event) {
        inv.exec_status = FAAS_EINVAL;
        inv.exec_payload = faas_error_object("Runtime.UnmarshalError", jerr.text);
    } else {
        faas_inv_execute(&inv);
    }
    fflush(stdout);
    fflush(stderr);
    if (post_outcome(&inv, &bi) != 0) {
        say("cannot post the result of %s to the Runtime API at %s:%s", bi.request_id,
            boot_api.host, boot_api.port);
        fini_and_exit(1);
    }
    json_decref(inv.event);
    json_decref(inv.ctx.client_context);
    json_decref(inv.exec_payload);
    free(inv.ctx.error_type);
    free(inv.ctx.error_message);
}

/* ---- the loop ---------------------------------------------------------- */

static void on_term(int sig)
{
    (void)sig;
    rapi_interrupt();
}

static void serve(void)
{
    int failures = 0;

    while (failures < NEXT_TRIES) {
        struct rapi_resp next;
        int rc = rapi_next(&boot_api, &next);
        if (rapi_stop)
            break;
        if (rc != 0 || next.status < 200 || next.status > 299 ||
            !request_id_ok(next.request_id)) {
            if (rc != 0)
                say("no answer from the Runtime API at %s:%s", boot_api.host, boot_api.port);
            else if (next.status < 200 || next.status > 299)
                say("GET /next: status %d", next.status);
            else
                say("GET /next: no usable request id");
            rapi_resp_clear(&next);
            failures++;
            continue;
        }
        failures = 0;
        invoke(&next);
        rapi_resp_clear(&next);
        if (rapi_stop)
            break;
    }
    if (!rapi_stop) {
        say("the Runtime API at %s:%s failed %d times in a row: exiting", boot_api.host,
            boot_api.port, NEXT_TRIES);
        fini_and_exit(1);
    }
    fini_and_exit(0);
}

int main(void)
{
    static const struct faas_runtime_opts defaults = FAAS_RUNTIME_OPTS_INIT;
    const char *api = getenv("AWS_LAMBDA_RUNTIME_API");
    const char *root = getenv("LAMBDA_TASK_ROOT");
    const char *name = getenv("AWS_LAMBDA_FUNCTION_NAME");
    const char *memory = getenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE");
    char agent[64];
    struct sigaction sa;

    setvbuf(stdout, NULL, _IOLBF, 0);
    snprintf(agent, sizeof agent, "faas-bootstrap/%s", faas_version());
    if (rapi_init(&boot_api, api, agent) != 0) {
        say("AWS_LAMBDA_RUNTIME_API is %s%s%s: expected host:port", api ? "'" : "unset",
            api ? api : "", api ? "'" : "");
        return 2;
    }
    memset(&sa, 0, sizeof sa);
    /* SA_RESTART: a post goes on; a waiting /next is ended by on_term. */
    sa.sa_handler = on_term;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    boot_rt.opts = defaults;
    boot_fn.rt = &boot_rt;
    boot_fn.refs = 1;
    snprintf(boot_fn.name, sizeof boot_fn.name, "%s", name ? name : "");
    boot_fn.opts.memory_mb = memory ? (uint32_t)strtoul(memory, NULL, 10) : 0;
    /* Lambda (or the libfaas host) bounds init; the runtime does not. */
    boot_fn.opts.init_timeout_ms = 0;
    load_handler(getenv("_HANDLER"), root && root[0] ? root : ".");
    run_init();
    serve();
    return 0;
}
