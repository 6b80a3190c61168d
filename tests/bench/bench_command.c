/*
 * bench_command.c - a warm invocation of a COMMAND function through the
 * Lambda Runtime API, next to a floor measured in the same run (see bench.h
 * for the method).
 *
 *   COMMAND warm invoke, 64-byte event   vs 2 raw HTTP exchanges   target <= 1.5x
 *   faas-bootstrap warm invoke           vs 2 raw HTTP exchanges   target <= 1.5x
 *
 * The runtime is build/.../tests/runtimes/crt, a C Runtime API client on one
 * keep-alive connection that posts each event back (_HANDLER "echo"). One
 * invocation is two HTTP request/response exchanges on that connection: the
 * answer to its GET /2018-06-01/runtime/invocation/next (the event, with
 * the Lambda-Runtime-* headers) and the answer to its POST .../response
 * (202). The figure: one invocation in flight, the next faas_invoke issued
 * from the result callback, timed from faas_invoke to the result callback
 * per operation.
 *
 * The floor: the same client, in a child process, against a bare evhttp
 * server on a base of its own in this process that answers at once - the
 * GET with the event and a request id header, the POST with 202 - the same
 * two exchanges per operation, on the same kind of connection. So the ratio
 * is what libfaas adds to the HTTP the protocol costs anyway: the Runtime
 * API's headers and parsing, the invocation record, deadline, pool, result
 * and report.
 *
 * The second figure is the same invocation with faas-bootstrap as the
 * runtime (build/.../faas-bootstrap, the handler "boot_fns.so:echo" of
 * tests/runtimes/boot_fns.c): a native handler run as it runs on Lambda,
 * against the same floor, measured again beside it.
 *
 * Both run with the runtime on the loop's CPU and on the other one (the
 * client pins itself: CRT_CPU; faas-bootstrap is started through taskset
 * where there is one). Run with `make bench` from the top of the tree;
 * BENCH_CRT names another client. Exits 0 whatever the ratio; a missed
 * target prints OVER.
 */
#include "bench.h"

#include <arpa/inet.h>
#include <libgen.h>
#include <limits.h>
#include <netinet/in.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>

#include "faas.h"

#define FLOOR_ID "8476a536-e9f4-11e8-9739-2dfe598c3fcd"

static char crt_path[PATH_MAX];
static char boot_path[PATH_MAX];  /* faas-bootstrap */
static char boot_root[PATH_MAX];  /* its task root: boot_fns.so's directory */
#define TASKSET "/usr/bin/taskset"

/* ------------------------------------------------------------------ */
/* The figure: faas_invoke of the COMMAND function                     */
/* ------------------------------------------------------------------ */

struct host {
    const char *fn;
    struct event_base *base;
    struct faas_runtime *rt;
    json_t *event;
    uint64_t left;
    unsigned errors, wrong;
};

static void host_result(const struct faas_result *res, void *arg)
{
    struct host *h = arg;
    if (faas_result_status(res) != 0)
        h->errors++;
    else if (!json_equal(faas_result_payload(res), h->event))
        h->wrong++;
    if (--h->left == 0 || h->errors) {
        event_base_loopbreak(h->base);
        return;
    }
    if (faas_invoke(h->rt, h->fn, h->event, NULL, host_result, h) != 0) {
        h->errors++;
        event_base_loopbreak(h->base);
    }
}

static void warm_body(void *arg, uint64_t k)
{
    struct host *h = arg;
    h->left = k;
    if (faas_invoke(h->rt, h->fn, h->event, NULL, host_result, h) != 0)
        bench_die("faas_invoke");
    event_base_dispatch(h->base);
    if (h->errors || h->wrong)
        bench_die("COMMAND echo: wrong result");
}

/* A host with one COMMAND function, `fn`: the C client ("crt") or
 * faas-bootstrap ("boot"), its runtime on CPU cpu (-1: anywhere). */
static void host_open(struct host *h, const char *fn, int cpu)
{
    struct faas_function_opts fo = FAAS_FUNCTION_OPTS_INIT;
    char pin[32], cpus[16];
    const char *env[] = { pin, NULL };
    const char *argv[5] = { crt_path, NULL };

    memset(h, 0, sizeof *h);
    h->fn = fn;
    h->base = event_base_new();
    if (!h->base || faas_runtime_new(&h->rt, h->base, NULL) != 0)
        bench_die("runtime");
    snprintf(pin, sizeof pin, "CRT_CPU=%d", cpu);
    snprintf(cpus, sizeof cpus, "%d", cpu);
    if (cpu < 0)
        env[0] = NULL;
    fo.handler = "echo";
    if (strcmp(fn, "boot") == 0) {
        int i = 0;
        if (cpu >= 0 && access(TASKSET, X_OK) == 0) {
            argv[i++] = TASKSET;
            argv[i++] = "-c";
            argv[i++] = cpus;
        }
        argv[i++] = boot_path;
        argv[i] = NULL;
        fo.handler = "boot_fns.so:echo";
        fo.task_root = boot_root;
        env[0] = NULL;
    }
    fo.env = env;
    fo.max_concurrency = 1;
    fo.min_warm = 1;
    if (faas_register_command(h->rt, fn, argv, &fo) != 0)
        bench_die("faas_register_command");
    h->event = bench_event_64();
    warm_body(h, 64); /* the cold start, then warm */
}

static void host_close(struct host *h)
{
    faas_runtime_free(h->rt);
    event_base_free(h->base);
    json_decref(h->event);
}

/* ------------------------------------------------------------------ */
/* The floor: the same client against a bare evhttp server             */
/* ------------------------------------------------------------------ */

struct floor {
    struct event_base *base;
    struct evhttp *http;
    char *event;
    size_t event_len;
    pid_t child;
    uint64_t left;
};

static void floor_cb(struct evhttp_request *req, void *arg)
{
    struct floor *f = arg;
    struct evkeyvalq *oh = evhttp_request_get_output_headers(req);

    evhttp_add_header(oh, "Content-Type", "application/json");
    if (evhttp_request_get_command(req) == EVHTTP_REQ_GET) {
        evhttp_add_header(oh, "Lambda-Runtime-Aws-Request-Id", FLOOR_ID);
        evbuffer_add(evhttp_request_get_output_buffer(req), f->event, f->event_len);
        evhttp_send_reply(req, 200, "OK", NULL);
        return;
    }
    evbuffer_add(evhttp_request_get_output_buffer(req), "{\"status\":\"OK\"}", 15);
    evhttp_send_reply(req, 202, "Accepted", NULL);
    if (--f->left == 0)
        event_base_loopbreak(f->base);
}

static void floor_body(void *arg, uint64_t k)
{
    struct floor *f = arg;
    f->left = k;
    event_base_dispatch(f->base);
}

static void floor_open(struct floor *f, const json_t *event, int cpu)
{
    struct evhttp_bound_socket *sock;
    struct sockaddr_in sa;
    socklen_t sl = sizeof sa;
    char api[64], pin[32];

    memset(f, 0, sizeof *f);
    f->base = event_base_new();
    f->http = f->base ? evhttp_new(f->base) : NULL;
    if (!f->http || !(sock = evhttp_bind_socket_with_handle(f->http, "127.0.0.1", 0)) ||
        getsockname(evhttp_bound_socket_get_fd(sock), (struct sockaddr *)&sa, &sl) != 0)
        bench_die("floor server");
    evhttp_set_gencb(f->http, floor_cb, f);
    f->event = json_dumps(event, JSON_COMPACT);
    f->event_len = strlen(f->event);
    snprintf(api, sizeof api, "AWS_LAMBDA_RUNTIME_API=127.0.0.1:%u", ntohs(sa.sin_port));
    snprintf(pin, sizeof pin, "CRT_CPU=%d", cpu);
    fflush(NULL);
    f->child = fork();
    if (f->child < 0)
        bench_die("fork");
    if (f->child == 0) {
        char *const argv[] = { crt_path, NULL };
        char *const envp[] = { api, "_HANDLER=echo", cpu >= 0 ? pin : NULL, NULL };
        execve(crt_path, argv, envp);
        _exit(127);
    }
    floor_body(f, 64);
}

static void floor_close(struct floor *f)
{
    /* The client sees its connection end and exits. */
    evhttp_free(f->http);
    event_base_free(f->base);
    while (waitpid(f->child, NULL, 0) < 0 && errno == EINTR)
        ;
    free(f->event);
}

/* ------------------------------------------------------------------ */

/* The figure of `fn` (see host_open) next to its floor; 1 when over. */
static int warm_figure(const struct bench_place *pl, const char *fn, const char *what)
{
    struct bench_stat fig, flo;
    struct bench_side figure, ref;
    struct floor f;
    struct host h;
    char name[64], floor_name[64];

    host_open(&h, fn, pl->worker_cpu);
    floor_open(&f, h.event, pl->worker_cpu);
    figure = (struct bench_side){ warm_body, &h, 16, 1u << 20 };
    ref = (struct bench_side){ floor_body, &f, 16, 1u << 20 };
    bench_measure_pair(&figure, &fig, &ref, &flo);
    snprintf(name, sizeof name, "%s warm invoke, %s", what, pl->name);
    snprintf(floor_name, sizeof floor_name, "2 raw HTTP exchanges, %s", pl->name);
    floor_close(&f);
    host_close(&h);
    return bench_line(name, fig.median_ns, floor_name, flo.median_ns, 1.5);
}

int main(void)
{
    struct bench_place pl[2];
    const char *crt = getenv("BENCH_CRT");
    char exe[PATH_MAX], *dir;
    ssize_t n;
    int npl, i, over = 0;

    /* A hang in the library must not hang `make bench`: SIGALRM ends it. */
    alarm(180);
    if (crt && *crt) {
        snprintf(crt_path, sizeof crt_path, "%s", crt);
    } else {
        n = readlink("/proc/self/exe", exe, sizeof exe - 1);
        if (n <= 0)
            bench_die("readlink /proc/self/exe");
        exe[n] = '\0';
        snprintf(crt_path, sizeof crt_path, "%s/../tests/runtimes/crt", dirname(exe));
    }
    n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0)
        bench_die("readlink /proc/self/exe");
    exe[n] = '\0';
    dir = dirname(exe);
    snprintf(boot_path, sizeof boot_path, "%s/../faas-bootstrap", dir);
    snprintf(boot_root, sizeof boot_root, "%s/../tests/runtimes", dir);
    if (access(crt_path, X_OK) != 0 || access(boot_path, X_OK) != 0) {
        fprintf(stderr, "bench: %s or %s: %s (make bench builds them)\n", crt_path, boot_path,
                strerror(errno));
        return 2;
    }
    npl = bench_start("bench_command", pl);
    printf("-- figures, ns per invocation; each floor is measured in rounds alternating with "
           "its figure\n");
    for (i = 0; i < npl; i++) {
        over += warm_figure(&pl[i], "crt", "COMMAND");
        over += warm_figure(&pl[i], "boot", "faas-bootstrap");
    }
    printf("bench_command: %d target%s over (reported, not enforced)\n", over,
           over == 1 ? "" : "s");
    return 0;
}
