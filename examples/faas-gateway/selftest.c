/*
 * selftest.c - faas-gateway --self-test (see selftest.h).
 *
 * The probes, in order, each a request and what its answer must be:
 *   GET /healthz                   200 {"status":"ok","functions":N}
 *   each api: mapping              its example's status (200), with the
 *                                  example's path (or the route with each
 *                                  parameter filled in), method, headers
 *                                  and body; a route of an idempotent
 *                                  function is sent twice and the second
 *                                  answer must be the first one, replayed
 *   each function, Invoke API      200 without X-Amz-Function-Error, a
 *                                  JSON body (the function's example event)
 *   an unknown function            404 ResourceNotFoundException
 *   (Invoke API off) a function    404 from no route, not from the API
 *   GET /metrics                   200 text/plain; version=0.0.4 with the
 *                                  counters of every function
 * then the drain: the config's self_test.drain invocation is sent on a
 * connection of its own, SIGTERM is raised as soon as faas_stats() shows
 * it running, and its answer must still come back (200). Without it,
 * SIGTERM is raised at once. The Invoke API probes are skipped when the
 * config requires signed requests; when it turns the API off, one request
 * to it must find nothing (404 without the API's error type), unless a
 * route of the config could take that path.
 *
 * A probe runs when the previous one is answered; a safety timer bounds
 * the whole test.
 */
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "selftest.h"
#include "gw_text.h"

#define ST_LIMIT_S 45       /* the whole self-test, under CI's 60 s */
#define ST_REQ_TIMEOUT_S 20 /* one request */
#define ST_BODY_MAX (256u * 1024u)

enum probe_kind {
    P_HEALTHZ, P_ROUTE, P_REPLAY, P_INVOKE, P_MISSING, P_INVOKE_OFF, P_METRICS, P_DRAIN
};

struct probe {
    struct gw_selftest *st;
    enum probe_kind kind;
    const char *function;    /* borrowed from the config */
    enum evhttp_cmd_type method;
    const char *method_name;
    char *uri;
    char *body;              /* NULL: none */
    json_t *headers;         /* borrowed: the example's */
    int want;                /* the status it must answer */
    size_t twin;             /* P_REPLAY: the probe it repeats */
    /* the answer */
    int done, code;
    char *ctype, *fnerror, *errtype;
    char *resp;
    size_t resp_len;
};

struct gw_selftest {
    struct event_base *base;
    struct faas_runtime *rt;
    const struct gw_config *cfg;
    char host[300];          /* for Host: and the connection */
    uint16_t port;
    struct evhttp_connection *conn, *drain_conn;
    struct event *deadline, *poll;
    struct probe *probes;
    size_t nprobes, cap, next;
    struct probe drain;
    int has_drain, raised, in_flight_at_signal, gave_up;
    int failures;
};

static void check(struct gw_selftest *st, int ok, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* A failed check: one line, escaped (it quotes answers). */
static void check(struct gw_selftest *st, int ok, const char *fmt, ...)
{
    char msg[1024];
    int n;
    va_list ap;

    if (ok)
        return;
    st->failures++;
    n = snprintf(msg, sizeof msg, "self-test: FAIL ");
    va_start(ap, fmt);
    vsnprintf(msg + n, sizeof msg - (size_t)n, fmt, ap);
    va_end(ap);
    gw_text_puts(stdout, msg);
}

/* For printing: a string that may be missing. */
static const char *or_none(const char *s)
{
    return s ? s : "(none)";
}

/* ------------------------------------------------------------------ */
/* Building the probes                                                 */
/* ------------------------------------------------------------------ */

static struct probe *probe_add(struct gw_selftest *st, enum probe_kind kind, const char *fn)
{
    struct probe *v;

    if (st->nprobes == st->cap) {
        size_t cap = st->cap ? st->cap * 2 : 16;
        if (!(v = realloc(st->probes, cap * sizeof *v)))
            return NULL;
        st->probes = v;
        st->cap = cap;
    }
    v = &st->probes[st->nprobes++];
    memset(v, 0, sizeof *v);
    v->st = st;
    v->kind = kind;
    v->function = fn;
    v->method = EVHTTP_REQ_GET;
    v->method_name = "GET";
    v->want = 200;
    return v;
}

static void probe_free(struct probe *p)
{
    free(p->uri);
    free(p->body);
    free(p->ctype);
    free(p->fnerror);
    free(p->errtype);
    free(p->resp);
}

static int set_method(struct probe *p, const char *name)
{
    static const struct {
        const char *name;
        enum evhttp_cmd_type type;
    } methods[] = { { "GET", EVHTTP_REQ_GET },       { "POST", EVHTTP_REQ_POST },
                    { "PUT", EVHTTP_REQ_PUT },       { "PATCH", EVHTTP_REQ_PATCH },
                    { "DELETE", EVHTTP_REQ_DELETE }, { "HEAD", EVHTTP_REQ_HEAD },
                    { "OPTIONS", EVHTTP_REQ_OPTIONS } };
    size_t i;

    for (i = 0; i < sizeof methods / sizeof methods[0]; i++) {
        if (strcmp(methods[i].name, name) == 0) {
            p->method = methods[i].type;
            p->method_name = methods[i].name;
            return 0;
        }
    }
    return -1;
}

/* A JSON value as a request body: a string as it is, anything else as
 * JSON text. */
static char *body_of(json_t *v)
{
    if (json_is_string(v))
        return strdup(json_string_value(v));
    return json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
}

/* The same request as probes[twin] again: its answer must be replayed. */
static int add_replay(struct gw_selftest *st, size_t twin)
{
    struct probe *r = probe_add(st, P_REPLAY, st->probes[twin].function), *p;

    if (!r)
        return FAAS_ENOMEM;
    p = &st->probes[twin]; /* after probe_add: it may have moved */
    r->twin = twin;
    r->method = p->method;
    r->method_name = p->method_name;
    r->headers = p->headers;
    r->want = p->want;
    if (!(r->uri = strdup(p->uri)) || (p->body && !(r->body = strdup(p->body))))
        return FAAS_ENOMEM;
    return 0;
}

static int add_route(struct gw_selftest *st, const struct gw_mapping *m, int idempotent)
{
    json_t *ex = m->example, *v;
    struct probe *p = probe_add(st, P_ROUTE, m->function);
    const char *method = gw_route_example_method(m);

    if (!p || !(p->uri = gw_route_example_path(m)))
        return FAAS_ENOMEM;
    if ((v = json_object_get(ex, "body")) != NULL && !(p->body = body_of(v)))
        return FAAS_ENOMEM;
    p->headers = json_object_get(ex, "headers");
    if ((v = json_object_get(ex, "status")) != NULL)
        p->want = (int)json_integer_value(v);
    if (set_method(p, method) != 0) {
        check(st, 0, "%s: no HTTP client method %s", m->source, method);
        st->nprobes--;
        probe_free(p);
        return 0;
    }
    return idempotent ? add_replay(st, st->nprobes - 1) : 0;
}

static int invoke_uri(struct probe *p, const char *fn)
{
    size_t n = strlen(fn) + 48;

    if (!(p->uri = malloc(n)))
        return FAAS_ENOMEM;
    snprintf(p->uri, n, "/2015-03-31/functions/%s/invocations", fn);
    p->method = EVHTTP_REQ_POST;
    p->method_name = "POST";
    return 0;
}

static int add_invoke(struct gw_selftest *st, const struct gw_function *f)
{
    struct probe *p = probe_add(st, P_INVOKE, f->name);

    if (!p || invoke_uri(p, f->name) != 0)
        return FAAS_ENOMEM;
    p->body = f->example ? body_of(f->example) : strdup("{}");
    return p->body ? 0 : FAAS_ENOMEM;
}

/* Could an api: route of the config take an Invoke API request (POST
 * /2015-03-31/...)? Then a 404 for it proves nothing. */
static int route_may_catch_invoke(const struct gw_config *cfg)
{
    const struct gw_mapping *m;
    size_t i;

    for (i = 0; i < cfg->nmappings; i++) {
        m = &cfg->mappings[i];
        if (!m->api || (strcmp(m->method, "ANY") != 0 && strcmp(m->method, "POST") != 0))
            continue;
        if (m->route[1] == '{' || m->route[1] == '*' || m->route[1] == '\0' ||
            strncmp(m->route, "/2015-03-31", 11) == 0)
            return 1;
    }
    return 0;
}

/* The Invoke API is off: a request to it must find nothing (404, not the
 * API's ResourceNotFoundException nor an invocation). */
static int add_invoke_off(struct gw_selftest *st)
{
    const struct gw_config *cfg = st->cfg;
    struct probe *p;

    if (cfg->nfunctions == 0 || route_may_catch_invoke(cfg))
        return 0;
    if (!(p = probe_add(st, P_INVOKE_OFF, cfg->functions[0].name)) ||
        invoke_uri(p, cfg->functions[0].name) != 0 || !(p->body = strdup("{}")))
        return FAAS_ENOMEM;
    p->want = 404;
    return 0;
}

static int build_probes(struct gw_selftest *st)
{
    const struct gw_config *cfg = st->cfg;
    int invoke_api = cfg->ro.invoke_api && !cfg->ro.access_key_id;
    struct probe *p;
    size_t i, j;
    int rc, idem;

    if (!(p = probe_add(st, P_HEALTHZ, NULL)) || !(p->uri = strdup("/healthz")))
        return FAAS_ENOMEM;
    for (i = 0; i < cfg->nmappings; i++) {
        if (!cfg->mappings[i].api)
            continue;
        for (idem = 0, j = 0; j < cfg->nfunctions; j++)
            if (strcmp(cfg->functions[j].name, cfg->mappings[i].function) == 0)
                idem = cfg->functions[j].idempotent;
        if ((rc = add_route(st, &cfg->mappings[i], idem)) != 0)
            return rc;
    }
    if (!cfg->ro.invoke_api) {
        printf("self-test: the Invoke API is off: it must not answer\n");
        if ((rc = add_invoke_off(st)) != 0)
            return rc;
    } else if (!invoke_api) {
        printf("self-test: the Invoke API is signed-only: not tried\n");
    } else {
        for (i = 0; i < cfg->nfunctions; i++)
            if ((rc = add_invoke(st, &cfg->functions[i])) != 0)
                return rc;
        if (!(p = probe_add(st, P_MISSING, "no-such-function")) ||
            invoke_uri(p, "no-such-function") != 0 || !(p->body = strdup("{}")))
            return FAAS_ENOMEM;
        p->want = 404;
    }
    if (!(p = probe_add(st, P_METRICS, NULL)) || !(p->uri = strdup("/metrics")))
        return FAAS_ENOMEM;
    if (cfg->drain_function && invoke_api) {
        st->has_drain = 1;
        st->drain.st = st;
        st->drain.kind = P_DRAIN;
        st->drain.function = cfg->drain_function;
        st->drain.want = 200;
        if (invoke_uri(&st->drain, cfg->drain_function) != 0 ||
            !(st->drain.body = cfg->drain_event ? body_of(cfg->drain_event) : strdup("{}")))
            return FAAS_ENOMEM;
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* Checking the answers                                                */
/* ------------------------------------------------------------------ */

static int ctype_is(const struct probe *p, const char *want)
{
    return p->ctype && strncmp(p->ctype, want, strlen(want)) == 0;
}

static void check_healthz(struct gw_selftest *st, struct probe *p)
{
    json_t *doc = json_loadb(p->resp ? p->resp : "", p->resp_len, 0, NULL);
    json_t *n = json_object_get(doc, "functions");
    const char *status = json_string_value(json_object_get(doc, "status"));

    check(st, ctype_is(p, "application/json"), "/healthz: content-type %s", or_none(p->ctype));
    check(st, status && strcmp(status, "ok") == 0 && json_is_integer(n) &&
                  json_integer_value(n) == (json_int_t)st->cfg->nfunctions,
          "/healthz: body %s", or_none(p->resp));
    json_decref(doc);
}

static void check_invoke(struct gw_selftest *st, struct probe *p)
{
    json_t *doc = json_loadb(p->resp ? p->resp : "", p->resp_len, JSON_DECODE_ANY, NULL);

    check(st, !p->fnerror, "%s: X-Amz-Function-Error: %s: %.300s", p->uri, or_none(p->fnerror),
          or_none(p->resp));
    check(st, doc != NULL, "%s: the payload is not JSON: %.300s", p->uri, or_none(p->resp));
    json_decref(doc);
}

static void check_metrics(struct gw_selftest *st, struct probe *p)
{
    char want[FAAS_NAME_MAX + 64];
    size_t i;

    check(st, ctype_is(p, "text/plain; version=0.0.4"), "/metrics: content-type %s",
          or_none(p->ctype));
    for (i = 0; i < st->cfg->nfunctions; i++) {
        snprintf(want, sizeof want, "faas_invocations_total{function=\"%s\"}",
                 st->cfg->functions[i].name);
        check(st, p->resp && strstr(p->resp, want), "/metrics: no %s", want);
    }
}

static void check_answer(struct gw_selftest *st, struct probe *p)
{
    struct probe *twin;
    char what[64], line[400];

    snprintf(what, sizeof what, "%d, want %d", p->code, p->want);
    if (p->code != p->want) {
        check(st, 0, "%s: status %s", p->uri, what);
        if (p->resp) {
            snprintf(line, sizeof line, "self-test:      body: %.300s", p->resp);
            gw_text_puts(stdout, line);
        }
        return;
    }
    switch (p->kind) {
    case P_HEALTHZ:
        check_healthz(st, p);
        break;
    case P_INVOKE:
    case P_DRAIN:
        check_invoke(st, p);
        break;
    case P_MISSING:
        check(st, p->errtype && strcmp(p->errtype, "ResourceNotFoundException") == 0,
              "%s: x-amzn-ErrorType %s", p->uri, or_none(p->errtype));
        break;
    case P_INVOKE_OFF:
        check(st, !p->errtype, "%s: answered by the Invoke API (x-amzn-ErrorType %s), which "
                               "the config turns off", p->uri, or_none(p->errtype));
        break;
    case P_METRICS:
        check_metrics(st, p);
        break;
    case P_REPLAY:
        twin = &st->probes[p->twin];
        check(st, p->resp_len == twin->resp_len && p->resp && twin->resp &&
                      memcmp(p->resp, twin->resp, p->resp_len) == 0,
              "%s: a duplicate got another answer: %.300s", p->uri, or_none(p->resp));
        break;
    case P_ROUTE:
        break;
    }
}

/* ------------------------------------------------------------------ */
/* Requests                                                            */
/* ------------------------------------------------------------------ */

static char *header_dup(struct evkeyvalq *h, const char *name)
{
    const char *v = evhttp_find_header(h, name);
    return v ? strdup(v) : NULL;
}

static void read_answer(struct probe *p, struct evhttp_request *req)
{
    struct evkeyvalq *h = evhttp_request_get_input_headers(req);
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t n = evbuffer_get_length(in);

    p->code = evhttp_request_get_response_code(req);
    p->ctype = header_dup(h, "Content-Type");
    p->fnerror = header_dup(h, "X-Amz-Function-Error");
    p->errtype = header_dup(h, "x-amzn-ErrorType");
    if (n > ST_BODY_MAX)
        n = ST_BODY_MAX;
    if ((p->resp = malloc(n + 1)) != NULL) {
        evbuffer_copyout(in, p->resp, n);
        p->resp[n] = '\0';
        p->resp_len = n;
    }
}

static void run_next(struct gw_selftest *st);
static void start_drain(struct gw_selftest *st);

static void raise_term(struct gw_selftest *st, int in_flight)
{
    if (st->raised)
        return;
    st->raised = 1;
    st->in_flight_at_signal = in_flight;
    if (st->poll)
        event_del(st->poll);
    printf("self-test: raising SIGTERM (%s in flight)\n", in_flight ? "one invocation" : "nothing");
    raise(SIGTERM);
}

static void on_answer(struct evhttp_request *req, void *arg)
{
    struct probe *p = arg;
    struct gw_selftest *st = p->st;
    char line[400];

    p->done = 1;
    if (req && evhttp_request_get_response_code(req) > 0)
        read_answer(p, req);
    snprintf(line, sizeof line, "self-test: %-7s %-48s -> %d", p->method_name, p->uri, p->code);
    gw_text_puts(stdout, line);
    check_answer(st, p);
    if (p->kind == P_DRAIN) {
        raise_term(st, 0);
        return;
    }
    st->next++;
    run_next(st);
}

static int send_probe(struct gw_selftest *st, struct evhttp_connection *conn, struct probe *p)
{
    struct evhttp_request *req = evhttp_request_new(on_answer, p);
    struct evkeyvalq *out;
    const char *key;
    char host[320];
    json_t *v;

    if (!req)
        return -1;
    out = evhttp_request_get_output_headers(req);
    snprintf(host, sizeof host, strchr(st->host, ':') ? "[%s]:%u" : "%s:%u", st->host,
             st->port);
    if (evhttp_add_header(out, "Host", host) != 0 ||
        evhttp_add_header(out, "User-Agent", "faas-gateway-self-test") != 0)
        goto fail;
    json_object_foreach(p->headers, key, v)
        if (evhttp_add_header(out, key, json_string_value(v)) != 0)
            goto fail;
    if (p->body && (evhttp_add_header(out, "Content-Type", "application/json") != 0 ||
                    evbuffer_add(evhttp_request_get_output_buffer(req), p->body,
                                 strlen(p->body)) != 0))
        goto fail;
    /* On failure libevent frees the request. */
    return evhttp_make_request(conn, req, p->method, p->uri);
fail:
    evhttp_request_free(req);
    return -1;
}

static void run_next(struct gw_selftest *st)
{
    struct probe *p;

    if (st->next >= st->nprobes) {
        start_drain(st);
        return;
    }
    p = &st->probes[st->next];
    if (send_probe(st, st->conn, p) != 0) {
        check(st, 0, "%s: the request could not be sent", p->uri);
        p->done = 1;
        st->next++;
        run_next(st);
    }
}

/* Polls until the drain probe's invocation runs, then signals. */
static void on_poll(evutil_socket_t fd, short what, void *arg)
{
    struct gw_selftest *st = arg;
    struct faas_stats s;
    (void)fd;
    (void)what;

    if (faas_stats(st->rt, st->drain.function, &s) == 0 && s.concurrency + s.queued > 0)
        raise_term(st, 1);
}

static void start_drain(struct gw_selftest *st)
{
    struct timeval tick = { 0, 1000 };

    if (!st->has_drain) {
        raise_term(st, 0);
        return;
    }
    /* A connection of its own: it is open before the listener closes. */
    st->drain_conn = evhttp_connection_base_new(st->base, NULL, st->host, st->port);
    st->poll = event_new(st->base, -1, EV_PERSIST, on_poll, st);
    if (!st->drain_conn || !st->poll || event_add(st->poll, &tick) != 0 ||
        send_probe(st, st->drain_conn, &st->drain) != 0) {
        check(st, 0, "the drain probe could not be sent");
        st->drain.done = 1;
        raise_term(st, 0);
    }
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
    struct gw_selftest *st = arg;
    (void)fd;
    (void)what;
    st->gave_up = 1;
    printf("self-test: FAIL gave up after %d s at probe %zu of %zu\n", ST_LIMIT_S, st->next,
           st->nprobes);
    st->failures++;
    event_base_loopexit(st->base, NULL);
}

/* ------------------------------------------------------------------ */
/* Start, finish                                                       */
/* ------------------------------------------------------------------ */

int gw_selftest_start(struct gw_selftest **out, struct event_base *base,
                      struct faas_runtime *rt, const struct gw_config *cfg, const char *host,
                      uint16_t port)
{
    struct gw_selftest *st = calloc(1, sizeof *st);
    struct timeval limit = { ST_LIMIT_S, 0 };

    if (!st)
        return FAAS_ENOMEM;
    st->base = base;
    st->rt = rt;
    st->cfg = cfg;
    st->port = port;
    /* A wildcard address is reached on the loopback. */
    snprintf(st->host, sizeof st->host, "%s",
             strcmp(host, "0.0.0.0") == 0 ? "127.0.0.1" : strcmp(host, "::") == 0 ? "::1"
                                                                                 : host);
    st->conn = evhttp_connection_base_new(base, NULL, st->host, port);
    st->deadline = evtimer_new(base, on_deadline, st);
    if (!st->conn || !st->deadline || event_add(st->deadline, &limit) != 0 ||
        build_probes(st) != 0) {
        st->gave_up = 1;
        gw_selftest_finish(st, 0);
        return FAAS_ENOMEM;
    }
    evhttp_connection_set_timeout(st->conn, ST_REQ_TIMEOUT_S);
    printf("self-test: %zu requests to http://%s:%u\n", st->nprobes + (size_t)st->has_drain,
           st->host, port);
    run_next(st);
    *out = st;
    return 0;
}

int gw_selftest_busy(const struct gw_selftest *st)
{
    return st && ((st->next < st->nprobes && !st->gave_up) || (st->has_drain && !st->drain.done));
}

/* Idempotent routes answered 2xx twice: the second was a replay. */
static void check_replays(struct gw_selftest *st)
{
    struct faas_stats s;
    size_t i;

    for (i = 0; i < st->nprobes; i++) {
        struct probe *p = &st->probes[i];
        if (p->kind != P_REPLAY || p->code < 200 || p->code > 299)
            continue;
        check(st, faas_stats(st->rt, p->function, &s) == 0 && s.replays >= 1,
              "%s: no idempotent replay counted for %s", p->uri, p->function);
    }
}

int gw_selftest_finish(struct gw_selftest *st, int drained)
{
    int failures;
    size_t i;

    if (!st)
        return 0;
    if (!st->gave_up) {
        check_replays(st);
        check(st, st->raised && drained, "the gateway did not drain after SIGTERM");
        check(st, !st->has_drain || st->drain.done, "the drain probe got no answer");
        if (st->has_drain && !st->in_flight_at_signal)
            printf("self-test: note: the drain invocation ended before SIGTERM; give it a "
                   "longer one (self_test.drain.event)\n");
    }
    failures = st->failures;
    printf("self-test: %s (%d failed)\n", failures ? "FAILED" : "all checks passed", failures);
    if (st->conn)
        evhttp_connection_free(st->conn);
    if (st->drain_conn)
        evhttp_connection_free(st->drain_conn);
    if (st->deadline)
        event_free(st->deadline);
    if (st->poll)
        event_free(st->poll);
    for (i = 0; i < st->nprobes; i++)
        probe_free(&st->probes[i]);
    free(st->probes);
    probe_free(&st->drain);
    free(st);
    return failures;
}
