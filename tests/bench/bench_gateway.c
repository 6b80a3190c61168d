/*
 * bench_gateway.c - the reference gateway's idle memory.
 *
 * Starts build/examples/faas-gateway on a small config (an HTTP route to a
 * PROCESS function from a shared object, the Invoke API, /metrics), waits
 * until it listens, serves it a few hundred requests, and reads the
 * gateway process's resident set (VmRSS; RssAnon is its own memory, the
 * rest is shared library pages). The floor, measured the same way in the
 * same run: a bare evhttp server process (libevent, nothing else) that
 * served the same requests. The target is an absolute one: under 4 MiB.
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>

#include "bench.h"

#define GATEWAY "build/examples/faas-gateway"
#define HELLO_SO "build/examples/faas-gateway-functions/hello.so"
#define REQUESTS 300

struct mem {
    long rss_kb, anon_kb;
};

static long status_field(pid_t pid, const char *key)
{
    char path[64], line[256];
    size_t klen = strlen(key);
    long v = -1;
    FILE *f;

    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    f = fopen(path, "r");
    if (!f)
        return -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, key, klen) == 0)
            v = strtol(line + klen, NULL, 10);
    fclose(f);
    return v;
}

static struct mem read_mem(pid_t pid)
{
    struct mem m;
    m.rss_kb = status_field(pid, "VmRSS:");
    m.anon_kb = status_field(pid, "RssAnon:");
    return m;
}

/* One GET over a new connection; 0 when a 200 came back. */
static int get(uint16_t port, const char *path)
{
    struct sockaddr_in sa;
    char req[256], buf[4096];
    int fd = socket(AF_INET, SOCK_STREAM, 0), ok = -1;
    ssize_t n;
    size_t got = 0;

    if (fd < 0)
        return -1;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0) {
        int len = snprintf(req, sizeof req,
                           "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n", path);
        if (write(fd, req, (size_t)len) == len) {
            while (got < sizeof buf - 1 && (n = read(fd, buf + got, sizeof buf - 1 - got)) > 0)
                got += (size_t)n;
            buf[got] = '\0';
            ok = strncmp(buf, "HTTP/1.1 200", 12) == 0 ? 0 : -1;
        }
    }
    close(fd);
    return ok;
}

/* Reads the child's stdout until "listening on http://127.0.0.1:PORT". */
static uint16_t wait_port(int fd)
{
    char buf[8192];
    size_t got = 0;
    ssize_t n;
    char *p;

    while (got < sizeof buf - 1 && (n = read(fd, buf + got, sizeof buf - 1 - got)) > 0) {
        got += (size_t)n;
        buf[got] = '\0';
        if ((p = strstr(buf, "listening on http://127.0.0.1:")) != NULL && strchr(p, ' '))
            return (uint16_t)atoi(p + strlen("listening on http://127.0.0.1:"));
    }
    return 0;
}

static void ok_cb(struct evhttp_request *req, void *arg)
{
    struct evbuffer *b = evbuffer_new();
    (void)arg;
    evbuffer_add(b, "{\"ok\":true}", 11);
    evhttp_send_reply(req, 200, "OK", b);
    evbuffer_free(b);
}

/* The floor: a bare evhttp server; prints "listening on ..." like the
 * gateway. */
static void bare_server(int out)
{
    struct event_base *base = event_base_new();
    struct evhttp *http = evhttp_new(base);
    struct evhttp_bound_socket *s;
    struct sockaddr_in sa;
    socklen_t sl = sizeof sa;
    char line[128];
    int n;

    evhttp_set_gencb(http, ok_cb, NULL);
    s = evhttp_bind_socket_with_handle(http, "127.0.0.1", 0);
    if (!s || getsockname(evhttp_bound_socket_get_fd(s), (struct sockaddr *)&sa, &sl) != 0)
        _exit(1);
    n = snprintf(line, sizeof line, "listening on http://127.0.0.1:%u ok\n",
                 (unsigned)ntohs(sa.sin_port));
    if (write(out, line, (size_t)n) != n)
        _exit(1);
    event_base_dispatch(base);
    _exit(0);
}

/* Starts the gateway (gateway != 0) or the bare server, serves REQUESTS
 * requests, and measures its memory. */
static int measure(int gateway, const char *config, struct mem *m)
{
    int p[2], i, failed = 0;
    uint16_t port;
    pid_t pid;

    if (pipe(p) != 0)
        return -1;
    pid = fork();
    if (pid == 0) {
        close(p[0]);
        if (!gateway)
            bare_server(p[1]);
        dup2(p[1], 1);
        if (p[1] != 1)
            close(p[1]);
        {
            int null = open("/dev/null", O_WRONLY); /* its log lines */
            if (null >= 0)
                dup2(null, 2);
        }
        execl(GATEWAY, GATEWAY, config, (char *)NULL);
        _exit(127);
    }
    close(p[1]);
    port = pid > 0 ? wait_port(p[0]) : 0;
    for (i = 0; port && i < REQUESTS; i++)
        failed += get(port, gateway ? "/hello" : "/") != 0;
    if (port) {
        /* Idle again: let it settle before reading. */
        struct timespec ts = { 0, 200000000 };
        nanosleep(&ts, NULL);
        *m = read_mem(pid);
    }
    if (pid > 0) {
        kill(pid, SIGTERM);
        waitpid(pid, NULL, 0);
    }
    close(p[0]);
    return port && !failed && m->rss_kb > 0 ? 0 : -1;
}

int main(void)
{
    char config[] = "/tmp/faas-bench-gw-XXXXXX";
    char so[4096];
    struct mem gw = { 0, 0 }, bare = { 0, 0 };
    FILE *f;
    int fd;

    if (access(GATEWAY, X_OK) != 0 || !realpath(HELLO_SO, so)) {
        fprintf(stderr, "bench_gateway: build %s first (make examples)\n", GATEWAY);
        return 1;
    }
    fd = mkstemp(config);
    if (fd < 0 || !(f = fdopen(fd, "w")))
        return 1;
    fprintf(f,
            "{ \"listen\": \"127.0.0.1:0\",\n"
            "  \"runtime\": { \"invoke_api\": true },\n"
            "  \"functions\": { \"hello\": { \"library\": \"%s\", \"symbol\": \"hello\",\n"
            "                  \"isolation\": \"process\", \"min_warm\": 1 } },\n"
            "  \"mappings\": [ { \"source\": \"api:GET /hello\", \"function\": \"hello\" } ] }\n",
            so);
    fclose(f);
    if (measure(1, config, &gw) != 0 || measure(0, NULL, &bare) != 0) {
        fprintf(stderr, "bench_gateway: a server did not start or answer\n");
        unlink(config);
        return 1;
    }
    unlink(config);
    printf("gateway idle memory after %d requests (target < 4096 kB)\n", REQUESTS);
    printf("  %-34s %8ld kB resident, %6ld kB its own (RssAnon)\n", "faas-gateway", gw.rss_kb,
           gw.anon_kb);
    printf("  %-34s %8ld kB resident, %6ld kB its own (RssAnon)\n", "floor: bare evhttp server",
           bare.rss_kb, bare.anon_kb);
    printf("  ratio %.2fx resident; %s", (double)gw.rss_kb / (double)bare.rss_kb,
           gw.rss_kb < 4096 ? "under the target\n" : "OVER the target\n");
    return 0;
}
