/*
 * faas-gateway - the reference host of libfaas: one binary, one JSON
 * config, and functions served the way AWS Lambda serves them.
 *
 *   faas-gateway [--self-test] CONFIG.json
 *
 * It reads the config (config.c: functions from shared objects or
 * external commands, their pool, timeout, idempotency and async policies,
 * event-source mappings, directory watches), creates a runtime on its own
 * event_base and serves on the config's "listen" address (127.0.0.1:8080
 * by default) with one evhttp server of its own:
 *
 *   GET /metrics    every function's counters and histograms, Prometheus
 *                   text (faas_metrics_write)
 *   GET /healthz    {"status":"ok","functions":N} (503 "draining" after a
 *                   signal)
 *   everything else the runtime's HTTP gateway (faas_http_attach): the
 *                   api: routes, and, when the config turns it on
 *                   (runtime.invoke_api; off by default), Lambda's Invoke
 *                   API, POST /2015-03-31/functions/NAME/invocations
 *
 * Every log record of the runtime goes to stderr in Lambda's words: the
 * function's log lines tagged with their request id, an error line for a
 * failed invocation, END and REPORT lines, idempotency and async events,
 * warnings. Each is one line: control characters in it are escaped
 * (gw_text.c).
 *
 * SIGINT or SIGTERM drains with faas_drain: the listening socket closes,
 * requests on connections already open are answered 503 (those already
 * running finish), schedules stop, records waiting in batch windows leave
 * at once, and the loop runs until no invocation, async event or record is
 * left, at most as long as the longest function may take (init timeout
 * plus timeout). Then the runtime is freed and the gateway exits 0. A
 * second signal stops at once.
 *
 * --self-test listens on a free port instead, sends a request to every
 * route and every function over loopback HTTP, checks /healthz and
 * /metrics, raises SIGTERM and drains (selftest.c); it exits 0 only if
 * every check passed.
 *
 * Exit status: 0; 1 on a failure at run time (or a failed self-test); 2
 * for a usage or config error.
 *
 * Run the demo from the top of the source tree:
 *
 *   make run
 *
 * (or `make examples && ./build/examples/faas-gateway examples/faas-gateway/demo.json`).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>

#include "config.h"
#include "faas.h"
#include "selftest.h"
#include "gw_text.h"

#define DRAIN_TICK_MS 10 /* how often the drain looks at what is in flight */

struct gw {
    struct event_base *base;
    struct gw_config *cfg;
    struct faas_runtime *rt;
    struct evhttp *http;
    struct evhttp_bound_socket *sock; /* NULL once draining */
    uint16_t port;
    struct event *sigint, *sigterm, *drain_tick;
    int draining;       /* a signal came */
    int drained;        /* the drain ended with nothing in flight */
    int runtime_drained; /* faas_drain called back */
    int idle_ticks;     /* drain ticks in a row with nothing in flight */
    uint64_t drain_end_ms;
    struct gw_selftest *st;
    struct evbuffer *logbuf; /* the log record being written */
};

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ------------------------------------------------------------------ */
/* Logs                                                                */
/* ------------------------------------------------------------------ */

/* "2025-01-31T12:00:00.123Z", as Lambda stamps its log lines. */
static void timestamp(char *buf, size_t size)
{
    struct timespec ts;
    struct tm tm;
    size_t n;

    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    n = strftime(buf, size, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, size - n, ".%03ldZ", ts.tv_nsec / 1000000L);
}

/* For printing: a string that may be missing (an instance's init has no
 * request id). */
static const char *or_dash(const char *s)
{
    return s && *s ? s : "-";
}

/* An invocation's end: its error (as Lambda logs an unhandled one), END,
 * REPORT. Each is a record of its own line. */
static void log_report(struct evbuffer *b, const char *ts, const struct faas_log_record *rec)
{
    const struct faas_result *res = rec->result;
    char line[512];

    if (faas_result_status(res) != 0) {
        gw_text_printf(b, "%s [%s] %s\tERROR\t%s: %s", ts, or_dash(rec->function),
                       or_dash(rec->request_id), or_dash(faas_result_error_type(res)),
                       or_dash(faas_result_error_message(res)));
        gw_text_flush(b, stderr);
    }
    if (faas_result_report(res, line, sizeof line) < 0)
        snprintf(line, sizeof line, "REPORT RequestId: %s", or_dash(rec->request_id));
    gw_text_printf(b, "%s [%s] END RequestId: %s", ts, or_dash(rec->function),
                   or_dash(rec->request_id));
    gw_text_flush(b, stderr);
    /* REPORT's fields are tab-separated, as Lambda writes them: its own
     * tabs stay, the text in it is escaped. */
    gw_text_printf(b, "%s [%s] ", ts, or_dash(rec->function));
    for (char *f = line, *tab; f; f = tab ? tab + 1 : NULL) {
        if ((tab = strchr(f, '\t')) != NULL)
            *tab = '\0';
        gw_text_escape(b, f);
        if (tab)
            evbuffer_add(b, "\t", 1);
    }
    if (faas_result_replayed(res))
        evbuffer_add_printf(b, "\t(idempotent replay)");
    gw_text_flush(b, stderr);
}

/*
 * The runtime's log callback: on the loop thread, for every function. A
 * record is assembled whole and written with one write, escaped (gw_text.h):
 * whatever a handler logs stays one line.
 */
static void on_log(const struct faas_log_record *rec, void *arg)
{
    struct gw *gw = arg;
    struct evbuffer *b = gw->logbuf;
    char ts[40];

    timestamp(ts, sizeof ts);
    switch (rec->kind) {
    case FAAS_LOG_LINE:
        gw_text_printf(b, "%s [%s] %s\t%s", ts, or_dash(rec->function),
                       or_dash(rec->request_id), or_dash(rec->line));
        break;
    case FAAS_LOG_REPORT:
        log_report(b, ts, rec);
        return;
    case FAAS_LOG_IDEMPOTENCY:
        gw_text_printf(b, "%s [%s] %s\tIDEMPOTENCY %s key ", ts, or_dash(rec->function),
                       or_dash(rec->request_id), or_dash(rec->action));
        evbuffer_add_printf(b, "%.16s", or_dash(rec->key));
        break;
    case FAAS_LOG_ASYNC:
        gw_text_printf(b, "%s [%s] %s\tASYNC %s%s%s", ts, or_dash(rec->function),
                       or_dash(rec->request_id), or_dash(rec->action), rec->line ? ": " : "",
                       rec->line ? rec->line : "");
        break;
    case FAAS_LOG_WARNING:
        gw_text_printf(b, "%s [%s] %s\tWARNING %s%s%s", ts, or_dash(rec->function),
                       or_dash(rec->request_id), or_dash(rec->action), rec->line ? ": " : "",
                       rec->line ? rec->line : "");
        break;
    }
    gw_text_flush(b, stderr);
}

/* ------------------------------------------------------------------ */
/* /metrics and /healthz                                               */
/* ------------------------------------------------------------------ */

static int get_or_head(struct evhttp_request *req)
{
    enum evhttp_cmd_type m = evhttp_request_get_command(req);

    if (m == EVHTTP_REQ_GET || m == EVHTTP_REQ_HEAD)
        return 1;
    evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "GET, HEAD");
    evhttp_send_error(req, 405, "Method Not Allowed");
    return 0;
}

static void on_metrics(struct evhttp_request *req, void *arg)
{
    struct gw *gw = arg;
    struct evbuffer *out;

    if (!get_or_head(req))
        return;
    if (!(out = evbuffer_new()) || faas_metrics_write(gw->rt, out) != 0) {
        if (out)
            evbuffer_free(out);
        evhttp_send_error(req, 500, "Internal Server Error");
        return;
    }
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                      "text/plain; version=0.0.4");
    evhttp_send_reply(req, 200, "OK", out);
    evbuffer_free(out);
}

static void on_healthz(struct evhttp_request *req, void *arg)
{
    struct gw *gw = arg;
    struct evbuffer *out;

    if (!get_or_head(req))
        return;
    if (!(out = evbuffer_new()) ||
        evbuffer_add_printf(out, "{\"status\":\"%s\",\"functions\":%zu}",
                            gw->draining ? "draining" : "ok", gw->cfg->nfunctions) < 0) {
        if (out)
            evbuffer_free(out);
        evhttp_send_error(req, 500, "Internal Server Error");
        return;
    }
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                      "application/json");
    evhttp_send_reply(req, gw->draining ? 503 : 200, gw->draining ? "Draining" : "OK", out);
    evbuffer_free(out);
}

/* ------------------------------------------------------------------ */
/* The server                                                          */
/* ------------------------------------------------------------------ */

static uint16_t bound_port(struct evhttp_bound_socket *sock)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;

    if (getsockname(evhttp_bound_socket_get_fd(sock), (struct sockaddr *)&ss, &len) != 0)
        return 0;
    if (ss.ss_family == AF_INET)
        return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return 0;
}

/* A limit of libevent's own, twice ours: beyond it, it stops reading (the
 * runtime answers 413/431 under it), as faas_http_bind does. */
static ev_ssize_t twice(size_t n)
{
    return n > (size_t)INT64_MAX / 2 ? -1 : (ev_ssize_t)(n * 2);
}

static int serve(struct gw *gw)
{
    const struct faas_runtime_opts *ro = &gw->cfg->ro;
    int rc;

    if (!(gw->http = evhttp_new(gw->base)))
        return FAAS_ENOMEM;
    evhttp_set_allowed_methods(gw->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_PUT |
                                             EVHTTP_REQ_PATCH | EVHTTP_REQ_DELETE |
                                             EVHTTP_REQ_HEAD | EVHTTP_REQ_OPTIONS);
    evhttp_set_max_body_size(gw->http, twice(ro->http_max_body ? ro->http_max_body
                                                               : ro->max_sync_payload));
    evhttp_set_max_headers_size(gw->http, twice(ro->http_max_headers));
    if (evhttp_set_cb(gw->http, "/metrics", on_metrics, gw) != 0 ||
        evhttp_set_cb(gw->http, "/healthz", on_healthz, gw) != 0)
        return FAAS_ENOMEM;
    if ((rc = faas_http_attach(gw->rt, gw->http)) != 0)
        return rc;
    gw->sock = evhttp_bind_socket_with_handle(gw->http, gw->cfg->host, gw->cfg->port);
    if (!gw->sock) {
        fprintf(stderr, "faas-gateway: cannot listen on %s port %u: %s\n", gw->cfg->host,
                gw->cfg->port, strerror(errno));
        return FAAS_ESYS;
    }
    gw->port = bound_port(gw->sock);
    return 0;
}

/* ------------------------------------------------------------------ */
/* The banner                                                          */
/* ------------------------------------------------------------------ */

/* `s` between single quotes for a shell. */
static void print_quoted(const char *s)
{
    putchar('\'');
    for (; *s; s++) {
        if (*s == '\'')
            fputs("'\\''", stdout);
        else
            putchar(*s);
    }
    putchar('\'');
}

/* JSON (or a string as it is), single-quoted; "{}" for NULL. */
static void print_json_arg(json_t *v)
{
    char *text = NULL;

    if (json_is_string(v))
        print_quoted(json_string_value(v));
    else if (v && (text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY)) != NULL)
        print_quoted(text);
    else
        print_quoted("{}");
    free(text);
}

/* "  # source -> function", escaped: a source is the config's text. */
static void print_comment(const struct gw_mapping *m)
{
    struct evbuffer *b = evbuffer_new();

    if (b && gw_text_printf(b, "  # %s -> %s", m->source, m->function) == 0)
        gw_text_flush(b, stdout);
    if (b)
        evbuffer_free(b);
}

static void print_route(const char *url, const struct gw_mapping *m)
{
    json_t *ex = m->example, *hdrs = json_object_get(ex, "headers"), *v;
    const char *method = gw_route_example_method(m), *key;
    char *path = gw_route_example_path(m), *arg;
    json_t *body = json_object_get(ex, "body");
    size_t n;

    print_comment(m);
    printf("  curl -s");
    if (strcmp(method, "GET") != 0)
        printf(" -X %s", method);
    n = strlen(url) + (path ? strlen(path) : 0) + 1;
    if ((arg = malloc(n)) != NULL) {
        snprintf(arg, n, "%s%s", url, path ? path : "");
        putchar(' ');
        print_quoted(arg);
        free(arg);
    }
    free(path);
    json_object_foreach(hdrs, key, v) {
        n = strlen(key) + strlen(json_string_value(v)) + 3;
        if ((arg = malloc(n)) != NULL) {
            snprintf(arg, n, "%s: %s", key, json_string_value(v));
            printf(" -H ");
            print_quoted(arg);
            free(arg);
        }
    }
    if (body) {
        printf(" -H 'content-type: application/json' -d ");
        print_json_arg(body);
    }
    printf("\n");
}

static void print_banner(const struct gw *gw)
{
    const struct gw_config *cfg = gw->cfg;
    const char *host = cfg->host;
    char url[300];
    size_t i;

    if (strcmp(host, "0.0.0.0") == 0)
        host = "127.0.0.1";
    else if (strcmp(host, "::") == 0)
        host = "::1";
    snprintf(url, sizeof url, strchr(host, ':') ? "http://[%s]:%u" : "http://%s:%u", host,
             gw->port);
    printf("faas-gateway (libfaas %s): %zu functions, %zu mappings, %zu watches from %s\n",
           faas_version(), cfg->nfunctions, cfg->nmappings, cfg->nwatches, cfg->path);
    printf("listening on %s  (metrics: %s/metrics, health: %s/healthz)\n\n", url, url, url);
    for (i = 0; i < cfg->nmappings; i++) {
        if (cfg->mappings[i].api)
            print_route(url, &cfg->mappings[i]);
        else
            print_comment(&cfg->mappings[i]);
    }
    if (!cfg->ro.invoke_api || cfg->nfunctions == 0) {
        printf("\n");
        return;
    }
    printf("\nInvoke API (Lambda's; any AWS SDK or the aws CLI pointed at %s):\n", url);
    for (i = 0; i < cfg->nfunctions; i++) {
        const struct gw_function *f = &cfg->functions[i];
        printf("  curl -s -X POST '%s/2015-03-31/functions/%s/invocations' -d ", url, f->name);
        print_json_arg(f->example);
        printf("\n");
    }
    {
        const struct gw_function *f = &cfg->functions[0];
        printf("  %saws lambda invoke --endpoint-url %s %s--region %s --function-name %s "
               "--cli-binary-format raw-in-base64-out --payload ",
               cfg->ro.access_key_id ? "AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=... " : "",
               url, cfg->ro.access_key_id ? "" : "--no-sign-request ",
               cfg->ro.region ? cfg->ro.region : "local", f->name);
        print_json_arg(f->example);
        printf(" /dev/stdout\n");
    }
    printf("\n");
}

/* ------------------------------------------------------------------ */
/* Signals and the drain                                               */
/* ------------------------------------------------------------------ */

/* faas_drain's answer: the runtime has nothing left, or the deadline came. */
static void on_drained(int rc, uint64_t remaining, void *arg)
{
    struct gw *gw = arg;

    gw->runtime_drained = 1;
    if (rc != 0) {
        fprintf(stderr, "faas-gateway: drain gave up after %llu ms with %llu left: %s\n",
                (unsigned long long)gw->cfg->drain_ms, (unsigned long long)remaining,
                faas_strerror(rc));
        event_base_loopexit(gw->base, NULL);
    }
}

/* After the runtime's drain: the self-test's client, and the last answers. */
static void on_drain_tick(evutil_socket_t fd, short what, void *arg)
{
    struct gw *gw = arg;
    int busy = !gw->runtime_drained || gw_selftest_busy(gw->st);
    (void)fd;
    (void)what;

    /* Two quiet ticks: the last answers had a whole loop turn to leave. */
    gw->idle_ticks = busy ? 0 : gw->idle_ticks + 1;
    if (gw->idle_ticks >= 2) {
        gw->drained = 1;
        fprintf(stderr, "faas-gateway: drained\n");
        event_base_loopexit(gw->base, NULL);
    } else if (now_ms() >= gw->drain_end_ms + 1000) {
        fprintf(stderr, "faas-gateway: drain gave up after %llu ms\n",
                (unsigned long long)gw->cfg->drain_ms);
        event_base_loopexit(gw->base, NULL);
    }
}

/* New work stops: no new connections. faas_drain refuses the rest (503 on
 * connections already open, no schedule fires) and flushes batch windows. */
static void stop_intake(struct gw *gw)
{
    if (gw->sock) {
        evhttp_del_accept_socket(gw->http, gw->sock);
        gw->sock = NULL;
    }
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    struct gw *gw = arg;
    struct timeval tick = { 0, DRAIN_TICK_MS * 1000 };
    uint64_t ms = gw->cfg->drain_ms;
    (void)what;

    if (gw->draining) {
        fprintf(stderr, "faas-gateway: %s again: stopping now\n", strsignal((int)sig));
        event_base_loopexit(gw->base, NULL);
        return;
    }
    gw->draining = 1;
    fprintf(stderr, "faas-gateway: %s: draining (at most %llu ms; again to stop now)\n",
            strsignal((int)sig), (unsigned long long)ms);
    stop_intake(gw);
    gw->drain_end_ms = now_ms() + ms;
    if (faas_drain(gw->rt, ms > UINT32_MAX ? UINT32_MAX : (uint32_t)(ms ? ms : 1), on_drained,
                   gw) != 0 ||
        event_add(gw->drain_tick, &tick) != 0)
        event_base_loopexit(gw->base, NULL);
}

static int watch_signals(struct gw *gw)
{
    struct sigaction sa;

    /* A client gone mid-reply must not kill the host: EPIPE will do. Set
     * after faas_runtime_new, so the zygote keeps the default. */
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_IGN;
    if (sigaction(SIGPIPE, &sa, NULL) != 0)
        return FAAS_ESYS;
    gw->sigint = evsignal_new(gw->base, SIGINT, on_signal, gw);
    gw->sigterm = evsignal_new(gw->base, SIGTERM, on_signal, gw);
    gw->drain_tick = event_new(gw->base, -1, EV_PERSIST, on_drain_tick, gw);
    if (!gw->sigint || !gw->sigterm || !gw->drain_tick || event_add(gw->sigint, NULL) != 0 ||
        event_add(gw->sigterm, NULL) != 0)
        return FAAS_ENOMEM;
    return 0;
}

/* ------------------------------------------------------------------ */
/* main                                                                */
/* ------------------------------------------------------------------ */

static int usage(const char *argv0)
{
    fprintf(stderr, "usage: %s [--self-test] CONFIG.json\n", argv0);
    return 2;
}

/* Creates the runtime and everything the config asks for. 0, or the exit
 * status. */
static int start(struct gw *gw, int selftest)
{
    struct faas_runtime_opts ro = gw->cfg->ro;
    char err[1024];
    int rc;

    if (!(gw->base = event_base_new()) || !(gw->logbuf = evbuffer_new())) {
        fprintf(stderr, "faas-gateway: out of memory\n");
        return 1;
    }
    ro.log = on_log;
    ro.log_arg = gw;
    /* Before any thread: the runtime may fork its zygote here. */
    if ((rc = faas_runtime_new(&gw->rt, gw->base, &ro)) != 0) {
        fprintf(stderr, "faas-gateway: faas_runtime_new: %s\n", faas_strerror(rc));
        return rc == FAAS_EINVAL ? 2 : 1;
    }
    if ((rc = gw_config_apply(gw->cfg, gw->rt, err, sizeof err)) != 0) {
        gw_text_puts(stderr, err);
        return rc == GW_ECONFIG ? 2 : 1;
    }
    if ((rc = watch_signals(gw)) != 0 || (rc = serve(gw)) != 0) {
        if (rc != FAAS_ESYS)
            fprintf(stderr, "faas-gateway: setting up: %s\n", faas_strerror(rc));
        return 1;
    }
    print_banner(gw);
    if (selftest && (rc = gw_selftest_start(&gw->st, gw->base, gw->rt, gw->cfg, gw->cfg->host,
                                            gw->port)) != 0) {
        fprintf(stderr, "faas-gateway: self-test: %s\n", faas_strerror(rc));
        return 1;
    }
    return 0;
}

/* In the order that lets each part outlive its users: our events (they
 * call the runtime), the runtime (it answers what still waits with 503),
 * the server once those answers had a loop turn to leave, the base, the
 * config. The self-test's client is gone already. */
static void stop(struct gw *gw)
{
    if (gw->sigint)
        event_free(gw->sigint);
    if (gw->sigterm)
        event_free(gw->sigterm);
    if (gw->drain_tick)
        event_free(gw->drain_tick);
    faas_runtime_free(gw->rt);
    if (gw->http) {
        if (gw->draining && !gw->drained)
            event_base_loop(gw->base, EVLOOP_NONBLOCK);
        evhttp_free(gw->http);
    }
    if (gw->base)
        event_base_free(gw->base);
    if (gw->logbuf)
        evbuffer_free(gw->logbuf);
    gw_config_free(gw->cfg);
}

int main(int argc, char **argv)
{
    struct gw gw;
    char err[1024];
    int selftest = 0, status, rc;
    const char *path;

    setvbuf(stdout, NULL, _IOLBF, 0); /* lines appear as they happen, piped too */
    memset(&gw, 0, sizeof gw);
    if (argc == 3 && strcmp(argv[1], "--self-test") == 0)
        selftest = 1;
    else if (argc != 2 || argv[1][0] == '-')
        return usage(argv[0]);
    path = argv[argc - 1];

    if ((rc = gw_config_open(&gw.cfg, path, err, sizeof err)) != 0) {
        gw_text_puts(stderr, err);
        return rc == GW_ECONFIG ? 2 : 1;
    }
    if (selftest)
        gw.cfg->port = 0; /* a free port: never in the way of a running gateway */

    status = start(&gw, selftest);
    if (status == 0) {
        if (event_base_dispatch(gw.base) != 0) {
            fprintf(stderr, "faas-gateway: event_base_dispatch failed\n");
            status = 1;
        }
        if (selftest && gw_selftest_finish(gw.st, gw.drained) != 0)
            status = 1;
        gw.st = NULL;
        if (!selftest && !gw.drained && gw.draining)
            fprintf(stderr, "faas-gateway: stopped with invocations in flight\n");
    } else if (gw.st) {
        gw_selftest_finish(gw.st, 0);
    }
    stop(&gw);
    return status;
}
