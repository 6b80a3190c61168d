/*
 * test_command.c - COMMAND functions over the Lambda Runtime API.
 *
 * First the trailer tap, pure: request streams fed whole and byte by byte.
 * Then real runtimes, spawned through faas_register_command: bash
 * bootstraps in tests/data/runtimes/ written as AWS's custom-runtime
 * tutorial writes them (curl against $AWS_LAMBDA_RUNTIME_API, the handler
 * file sourced through $_HANDLER), and the small C runtime
 * build/.../tests/runtimes/crt (one keep-alive connection, streaming with
 * error trailers). The bash function (tests/data/runtimes/bash/function.sh)
 * picks what to do from the event: echo, fail, sleep past the timeout,
 * crash, print the environment or the Lambda-Runtime-* headers, wait at a
 * gate, log, answer text or nothing.
 *
 * Nothing sleeps to synchronise: the loop runs until a result, a file a
 * runtime writes, or a state of the runtime, each with a generous bound.
 * Functions that wait (the gate, the dropped poll) poll a file the test
 * creates, with their own bound.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <libgen.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/queue.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <event2/http.h>

#include "exec_command.h"
#include "faas_int.h"
#include "http_tap.h"
#include "peer.h"
#include "runtime_api.h"
#include "testutil.h"

#include "tu_http.h"

#define BOUND_MS 20000u

static struct event_base *g_base;
static struct faas_runtime *g_rt;
static char g_tmp[PATH_MAX];  /* the test's own directory: TMPDIR, gates */
static char g_data[PATH_MAX]; /* tests/data/runtimes, absolute */
static char g_crt[PATH_MAX];  /* the C runtime */
static json_t *g_lines;       /* [[request_id, line], ...] */
static int g_reports;
static int g_peer_warnings;   /* FAAS_LOG_WARNING "runtime-api-peer" */
static char g_peer_line[320]; /* the last one's line */
static int g_free_on_peer;    /* the log frees g_rt on a peer warning */

/* ==== the trailer tap (pure) =========================================== */

static const char tap_stream[] =
    "GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: x\r\n\r\n"
    "POST /2018-06-01/runtime/invocation/abc-1/response HTTP/1.1\r\n"
    "Host: x\r\nContent-Length: 5\r\n\r\n0\r\n\r\n"
    "POST /2018-06-01/runtime/invocation/abc-2/response HTTP/1.1\r\n"
    "Host: x\r\nTransfer-Encoding: chunked\r\n"
    "Lambda-Runtime-Function-Response-Mode: streaming\r\n\r\n"
    "3\r\nabc\r\n10;ext=1\r\n0123456789abcdef\r\n0\r\n"
    "Lambda-Runtime-Function-Error-Type: Function.Oops\r\n"
    "Lambda-Runtime-Function-Error-Body: eyJlcnJvck1lc3NhZ2UiOiJvb3BzIn0=\r\n\r\n"
    "POST /2018-06-01/runtime/invocation/abc-3/response HTTP/1.1\r\n"
    "Transfer-Encoding: gzip, chunked\r\n\r\n"
    "2\r\n{}\r\n0\r\n\r\n"
    "HEAD /x HTTP/1.1\r\nContent-Length: 10\r\n\r\n"
    "GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\n\r\n";

static void tap_check(struct faas_http_tap *t)
{
    struct faas_http_tap_req *r;

    assert_int_equal(t->seq, 6);
    assert_int_equal(t->state, 0); /* between requests */
    assert_null(faas_http_tap_take(t, 0));
    assert_null(faas_http_tap_take(t, 1));
    r = faas_http_tap_take(t, 2);
    assert_non_null(r);
    assert_int_equal(r->seq, 2);
    assert_string_equal(r->id, "abc-2");
    assert_string_equal(r->error_type, "Function.Oops");
    assert_string_equal(r->error_body, "eyJlcnJvck1lc3NhZ2UiOiJvb3BzIn0=");
    faas_http_tap_req_free(r);
    assert_null(faas_http_tap_take(t, 3));
    assert_null(t->done);
}

static void test_tap_whole_and_bytewise(void **state)
{
    struct faas_http_tap t;
    size_t i;
    (void)state;

    faas_http_tap_init(&t);
    faas_http_tap_feed(&t, tap_stream, sizeof tap_stream - 1);
    tap_check(&t);
    faas_http_tap_clear(&t);

    faas_http_tap_init(&t);
    for (i = 0; i < sizeof tap_stream - 1; i++)
        faas_http_tap_feed(&t, tap_stream + i, 1);
    tap_check(&t);
    faas_http_tap_clear(&t);
}

static void test_tap_long_trailer_and_take(void **state)
{
    static const char head[] = "POST /2018-06-01/runtime/invocation/id-9/response HTTP/1.1\r\n"
                               "Transfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n"
                               "Lambda-Runtime-Function-Error-Body: ";
    char *stream, *big = malloc(5001);
    struct faas_http_tap t;
    struct faas_http_tap_req *r;
    size_t n;
    (void)state;

    memset(big, 'A', 5000);
    big[5000] = '\0';
    n = strlen(head) + 5000 + 4 + 2 * (sizeof tap_stream - 1);
    stream = malloc(n + 1);
    snprintf(stream, n + 1, "%s%s\r\n\r\n%s%s", head, big, tap_stream, tap_stream);
    faas_http_tap_init(&t);
    faas_http_tap_feed(&t, stream, strlen(stream));
    assert_int_equal(t.seq, 13);
    r = faas_http_tap_take(&t, 0);
    assert_non_null(r);
    assert_string_equal(r->id, "id-9");
    assert_null(r->error_type);
    assert_int_equal(strlen(r->error_body), 5000);
    faas_http_tap_req_free(r);
    /* Taking a later one drops the older ones. */
    r = faas_http_tap_take(&t, 9);
    assert_non_null(r);
    assert_string_equal(r->error_type, "Function.Oops");
    faas_http_tap_req_free(r);
    assert_null(t.done);
    faas_http_tap_clear(&t);
    free(stream);
    free(big);
}

static void test_tap_oversize_and_bad(void **state)
{
    static const char cl[] = "POST /2018-06-01/runtime/invocation/r1/response HTTP/1.1\r\n"
                             "Content-Length: 5000\r\n\r\nxx";
    static const char ch[] = "POST /2018-06-01/runtime/invocation/r2/error HTTP/1.1\r\n"
                             "Transfer-Encoding: chunked\r\n\r\n800\r\nxx";
    static const char bad[] = "POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"
                              "GET /y HTTP/1.1\r\n\r\n";
    struct faas_http_tap t;
    const char *id = NULL;
    (void)state;

    faas_http_tap_init(&t);
    faas_http_tap_feed(&t, cl, sizeof cl - 1);
    assert_true(faas_http_tap_oversize(&t, 1024, &id));
    assert_string_equal(id, "r1");
    assert_false(faas_http_tap_oversize(&t, 5000, &id));
    faas_http_tap_clear(&t);

    faas_http_tap_init(&t);
    faas_http_tap_feed(&t, ch, sizeof ch - 1);
    assert_true(faas_http_tap_oversize(&t, 2047, &id)); /* 0x800 counted */
    assert_string_equal(id, "r2");
    assert_false(faas_http_tap_oversize(&t, 2048, &id));
    faas_http_tap_clear(&t);

    /* A next request is not a result: never oversize. */
    faas_http_tap_init(&t);
    faas_http_tap_feed(&t, "GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\n"
                          "Content-Length: 99999\r\n\r\n", 77);
    assert_false(faas_http_tap_oversize(&t, 10, &id));
    faas_http_tap_clear(&t);

    /* A chunk size that is not hex: the tap stops (evhttp refuses it). */
    faas_http_tap_init(&t);
    faas_http_tap_feed(&t, bad, sizeof bad - 1);
    assert_int_equal(t.seq, 0);
    assert_false(faas_http_tap_oversize(&t, 0, &id));
    faas_http_tap_clear(&t);
}

/* ==== the peer check (peer.c), on a connection of this process ========= */

/* A loopback connection: *srv accepted, *cli connected. */
static void tcp_pair(int *srv, int *cli)
{
    struct sockaddr_in a;
    socklen_t al = sizeof a;
    int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_true(l >= 0);
    assert_int_equal(bind(l, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(l, 4), 0);
    assert_int_equal(getsockname(l, (struct sockaddr *)&a, &al), 0);
    *cli = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_int_equal(connect(*cli, (struct sockaddr *)&a, sizeof a), 0);
    *srv = accept4(l, NULL, NULL, SOCK_CLOEXEC);
    assert_true(*srv >= 0);
    close(l);
}

static void test_peer_socket(void **state)
{
    struct faas_peer_sock nl, pr;
    struct sockaddr_in ca;
    socklen_t cl = sizeof ca;
    struct stat st;
    char want[64];
    int srv, cli, rc;
    (void)state;

    tcp_pair(&srv, &cli);
    assert_int_equal(fstat(cli, &st), 0);
    assert_int_equal(getsockname(cli, (struct sockaddr *)&ca, &cl), 0);
    snprintf(want, sizeof want, "127.0.0.1:%u", (unsigned)ntohs(ca.sin_port));
    /* The peer of the accepted end is the connecting socket: by sock_diag
     * (where the kernel has it) and by /proc/net/tcp alike. */
    rc = faas_peer_socket(srv, 0, &nl);
    assert_int_equal(rc, 0);
    assert_int_equal(nl.inode, (uint64_t)st.st_ino);
    assert_int_equal(nl.uid, getuid());
    assert_string_equal(nl.addr, want);
    assert_int_equal(faas_peer_socket(srv, 1, &pr), 0);
    assert_int_equal(pr.inode, (uint64_t)st.st_ino);
    assert_int_equal(pr.uid, getuid());
    /* And the other way round. */
    assert_int_equal(fstat(srv, &st), 0);
    assert_int_equal(faas_peer_socket(cli, 0, &nl), 0);
    assert_int_equal(nl.inode, (uint64_t)st.st_ino);

    /* Held: by this process, and so within the tree of its parent. */
    assert_int_equal(faas_peer_socket(srv, 0, &nl), 0);
    assert_int_equal(faas_peer_held(nl.inode, getpid(), 0), 1);
    assert_int_equal(faas_peer_held(nl.inode, getppid(), 0), 1);
    /* Not by a process that is gone, nor for a socket no one holds. */
    assert_int_equal(faas_peer_held(nl.inode, 0, 0), 0);
    assert_int_equal(faas_peer_held(0, getpid(), 0), 0);
    close(cli);
    /* A closed peer: its socket has no holder (inode 0) or is gone. */
    rc = faas_peer_socket(srv, 0, &nl);
    assert_true(rc == FAAS_ENOENT || (rc == 0 && nl.inode == 0));
    close(srv);
}

/* The parent of p, from /proc/p/stat (after its comm's last ')'). */
static pid_t ppid_of(pid_t p)
{
    char path[64], buf[512], *rp;
    int ppid = -1, fd;
    ssize_t n;

    snprintf(path, sizeof path, "/proc/%d/stat", (int)p);
    fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    n = read(fd, buf, sizeof buf - 1);
    close(fd);
    assert_true(n > 0);
    buf[n] = '\0';
    rp = strrchr(buf, ')');
    assert_non_null(rp);
    assert_int_equal(sscanf(rp + 1, " %*c %d", &ppid), 1);
    return (pid_t)ppid;
}

/* Reads a pid_t a child wrote on fd. */
static pid_t read_pid(int fd)
{
    pid_t p = 0;
    assert_int_equal(read(fd, &p, sizeof p), (ssize_t)sizeof p);
    assert_true(p > 0);
    return p;
}

/* An instance leads a session of its own (as workers do): a process that
 * is not its descendant, but a child of the reaper still in its session,
 * counts; outside it, not. Another session's processes cannot join its
 * process group. */
static void test_peer_held_tree(void **state)
{
    struct faas_peer_sock ps;
    int srv, cli, p[2], q[2];
    pid_t leader, member, outsider;
    char c;
    int st;
    (void)state;

    tcp_pair(&srv, &cli);
    assert_int_equal(faas_peer_socket(srv, 0, &ps), 0);
    assert_int_equal(pipe(p), 0);
    assert_int_equal(pipe(q), 0);
    SKIP_EMULATED("qemu-user refuses PR_SET_CHILD_SUBREAPER, which this test needs to play the "
                  "zygote that adopts an instance's orphans");
    /* This process plays the zygote: it adopts what the leader's tree
     * leaves behind. */
    assert_int_equal(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
    leader = fork();
    assert_true(leader >= 0);
    if (leader == 0) {
        pid_t mid;
        if (setsid() < 0)
            _exit(1);
        close(srv);
        mid = fork();
        if (mid == 0) {
            /* A member of its session that its parent leaves: adopted by
             * the reaper, holding the socket. */
            pid_t m = fork();
            if (m == 0) {
                pid_t me = getpid();
                (void)!write(p[1], &me, sizeof me);
                pause();
                _exit(0);
            }
            _exit(m > 0 ? 0 : 1);
        }
        close(cli);
        waitpid(mid, NULL, 0);
        (void)!write(q[1], "l", 1);
        pause();
        _exit(0);
    }
    member = read_pid(p[0]);
    assert_int_equal(read(q[0], &c, 1), 1);
    close(cli); /* now only the member holds it */
    assert_int_equal(getsid(member), leader);
    assert_int_equal(ppid_of(member), getpid());
    assert_int_equal(faas_peer_held(ps.inode, member, 0), 1);
    assert_int_equal(faas_peer_held(ps.inode, leader, 0), 0);
    assert_int_equal(faas_peer_held(ps.inode, leader, getpid()), 1);

    /* Another session's process cannot join the leader's process group. */
    outsider = fork();
    assert_true(outsider >= 0);
    if (outsider == 0)
        _exit(setpgid(0, leader) == -1 && errno == EPERM ? 0 : 1);
    assert_int_equal(waitpid(outsider, &st, 0), outsider);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);

    kill(member, SIGKILL);
    waitpid(member, NULL, 0);
    assert_int_equal(faas_peer_held(ps.inode, leader, getpid()), 0);
    kill(leader, SIGKILL);
    waitpid(leader, NULL, 0);
    assert_int_equal(faas_peer_held(ps.inode, leader, getpid()), 0);
    assert_int_equal(prctl(PR_SET_CHILD_SUBREAPER, 0), 0);
    close(p[0]);
    close(p[1]);
    close(q[0]);
    close(q[1]);
    close(srv);
}

/* A process in the instance's process group but not in its session is not
 * the instance's: a leader that only made a group of its own (setpgid)
 * shares this process's session, and any of its processes can join that
 * group and take the instance's connections for its own. */
static void test_peer_group_not_session(void **state)
{
    struct faas_peer_sock ps;
    int srv, cli, p[2];
    pid_t leader, intruder;
    char c;
    (void)state;

    tcp_pair(&srv, &cli);
    assert_int_equal(faas_peer_socket(srv, 0, &ps), 0);
    assert_int_equal(pipe(p), 0);
    leader = fork();
    assert_true(leader >= 0);
    if (leader == 0) {
        setpgid(0, 0);
        close(cli);
        close(srv);
        (void)!write(p[1], "l", 1);
        pause();
        _exit(0);
    }
    assert_int_equal(read(p[0], &c, 1), 1);
    /* Another instance's process, a child of the reaper (this process),
     * joins the leader's group and connects. */
    intruder = fork();
    assert_true(intruder >= 0);
    if (intruder == 0) {
        char ok = setpgid(0, leader) == 0 ? 'y' : 'n';
        (void)!write(p[1], &ok, 1);
        pause();
        _exit(0);
    }
    assert_int_equal(read(p[0], &c, 1), 1);
    assert_int_equal(c, 'y');
    close(cli); /* now only the intruder holds it */
    assert_int_equal(getpgid(intruder), leader);
    assert_int_not_equal(getsid(intruder), leader);
    assert_int_equal(faas_peer_held(ps.inode, leader, getpid()), 0);
    assert_int_equal(faas_peer_held(ps.inode, intruder, 0), 1);
    kill(intruder, SIGKILL);
    waitpid(intruder, NULL, 0);
    kill(leader, SIGKILL);
    waitpid(leader, NULL, 0);
    close(p[0]);
    close(p[1]);
    close(srv);
}

/* A runtime with more descriptors than one check looks at: past the bound
 * the answer is "cannot tell", never a walk without end; a socket among
 * the first descriptors is still found. */
static void test_peer_fd_budget(void **state)
{
    struct faas_peer_sock ps;
    struct rlimit rl;
    int srv, cli, p[2], i, st;
    const int many = FAAS_PEER_FD_MAX + 100;
    pid_t holder;
    char c;
    (void)state;

    assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
    if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < (rlim_t)many + 64) {
        skip();
        return;
    }
    for (i = 0; i < 2; i++) {
        tcp_pair(&srv, &cli);
        assert_int_equal(faas_peer_socket(srv, 0, &ps), 0);
        assert_int_equal(pipe(p), 0);
        holder = fork();
        assert_true(holder >= 0);
        if (holder == 0) {
            int k, high = many + 10;
            rl.rlim_cur = (rlim_t)many + 64;
            if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
                _exit(1);
            close(srv);
            close(p[0]);
            /* The socket among the first descriptors (i == 0), or after
             * all the others. */
            if (i == 1 && (dup2(cli, high) != high || close(cli) != 0))
                _exit(1);
            for (k = 0; k < many; k++)
                if (open("/dev/null", O_RDONLY) < 0)
                    _exit(1);
            (void)!write(p[1], "h", 1);
            pause();
            _exit(0);
        }
        assert_int_equal(read(p[0], &c, 1), 1);
        close(cli);
        assert_int_equal(faas_peer_held(ps.inode, holder, 0), i == 0 ? 1 : FAAS_ESYS);
        kill(holder, SIGKILL);
        assert_int_equal(waitpid(holder, &st, 0), holder);
        assert_true(WIFSIGNALED(st));
        close(p[0]);
        close(p[1]);
        close(srv);
    }
}

/* ==== fixture ========================================================== */

static void on_log(const struct faas_log_record *rec, void *arg)
{
    (void)arg;
    if (rec->kind == FAAS_LOG_REPORT) {
        g_reports++;
    } else if (rec->kind == FAAS_LOG_WARNING && strcmp(rec->action, "runtime-api-peer") == 0) {
        g_peer_warnings++;
        snprintf(g_peer_line, sizeof g_peer_line, "%s", rec->line ? rec->line : "");
        if (g_free_on_peer && g_rt) {
            faas_runtime_free(g_rt);
            g_rt = NULL;
        }
    }
    else if (rec->kind == FAAS_LOG_LINE)
        json_array_append_new(g_lines, json_pack("[ss]", rec->request_id ? rec->request_id : "",
                                                 rec->line ? rec->line : ""));
}

static void rt_start(const struct faas_runtime_opts *extra)
{
    struct faas_runtime_opts o = FAAS_RUNTIME_OPTS_INIT;
    if (extra)
        o = *extra;
    o.log = on_log;
    o.thread_workers = 1;
    assert_int_equal(faas_runtime_new(&g_rt, g_base, &o), 0);
}

static int rm_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

static int setup(void **state)
{
    char exe[PATH_MAX];
    ssize_t n;
    (void)state;

    g_base = event_base_new();
    assert_non_null(g_base);
    snprintf(g_tmp, sizeof g_tmp, "%s/faas-cmd-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR")
                                                                          : "/tmp");
    assert_non_null(mkdtemp(g_tmp));
    assert_non_null(realpath("tests/data/runtimes", g_data));
    n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    assert_true(n > 0);
    exe[n] = '\0';
    snprintf(g_crt, sizeof g_crt, "%s/runtimes/crt", dirname(exe));
    g_lines = json_array();
    g_reports = 0;
    g_peer_warnings = 0;
    g_peer_line[0] = '\0';
    g_rt = NULL;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    faas_runtime_api_test_hold_pid = 0;
    g_free_on_peer = 0;
    faas_runtime_free(g_rt);
    g_rt = NULL;
    json_decref(g_lines);
    g_lines = NULL;
    event_base_free(g_base);
    g_base = NULL;
    nftw(g_tmp, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    return 0;
}

/* Registers a runtime of tests/data/runtimes (or the C one, "crt"). */
static void reg_env(const char *name, const char *runtime, const char *handler,
                    const struct faas_function_opts *extra, const char *more_env)
{
    struct faas_function_opts o = FAAS_FUNCTION_OPTS_INIT;
    char boot[PATH_MAX + 64], root[PATH_MAX + 64], tmp[PATH_MAX + 16], gate[PATH_MAX + 16],
        mark[PATH_MAX + 16];
    const char *env[] = { tmp, gate, mark, "CUSTOM_VAR=custom value", more_env, NULL };
    const char *argv[] = { boot, NULL };

    if (extra)
        o = *extra;
    if (strcmp(runtime, "crt") == 0) {
        snprintf(boot, sizeof boot, "%s", g_crt);
        snprintf(root, sizeof root, "%s", g_tmp);
    } else {
        snprintf(boot, sizeof boot, "%s/%s/bootstrap", g_data, runtime);
        snprintf(root, sizeof root, "%s/%s", g_data, runtime);
    }
    snprintf(tmp, sizeof tmp, "TMPDIR=%s", g_tmp);
    snprintf(gate, sizeof gate, "GATE_DIR=%s", g_tmp);
    snprintf(mark, sizeof mark, "MARK_DIR=%s", g_tmp);
    o.handler = handler;
    o.task_root = root;
    o.env = env;
    assert_int_equal(faas_register_command(g_rt, name, argv, &o), 0);
}

static void reg(const char *name, const char *runtime, const char *handler,
                const struct faas_function_opts *extra)
{
    reg_env(name, runtime, handler, extra, NULL);
}

/* ==== invoking ========================================================== */

struct tres {
    int done;
    int status;
    json_t *payload;
    char rid[FAAS_REQUEST_ID_SIZE];
    int cold;
};

static void res_cb(const struct faas_result *res, void *arg)
{
    struct tres *r = arg;
    r->done++;
    r->status = faas_result_status(res);
    r->payload = json_incref(faas_result_payload(res));
    snprintf(r->rid, sizeof r->rid, "%s", faas_result_request_id(res));
    r->cold = faas_result_cold_start(res);
}

static void tres_clear(struct tres *r)
{
    json_decref(r->payload);
    memset(r, 0, sizeof *r);
}

static void invoke_start(const char *fn, const char *event, const struct faas_invoke_opts *io,
                         struct tres *r)
{
    json_t *ev = json_loads(event, JSON_DECODE_ANY, NULL);
    assert_non_null(ev);
    memset(r, 0, sizeof *r);
    assert_int_equal(faas_invoke(g_rt, fn, ev, io, res_cb, r), 0);
    json_decref(ev);
}

static void invoke_wait(const char *fn, const char *event, const struct faas_invoke_opts *io,
                        struct tres *r)
{
    invoke_start(fn, event, io, r);
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
    if (r->status != status)
        fail_msg("status %d (%s), payload %s", r->status, faas_strerror(r->status),
                 json_dumps(r->payload, JSON_ENCODE_ANY));
    assert_string_equal(pstr(r, "errorType"), type);
    if (msg)
        assert_string_equal(pstr(r, "errorMessage"), msg);
}

/* The line logged with request id rid, or NULL. */
static const char *logged(const char *rid, const char *text)
{
    size_t i;
    json_t *l;
    json_array_foreach(g_lines, i, l) {
        if (strcmp(json_string_value(json_array_get(l, 0)), rid) == 0 &&
            strcmp(json_string_value(json_array_get(l, 1)), text) == 0)
            return text;
    }
    return NULL;
}

static uint32_t instances(const char *fn)
{
    struct faas_stats st;
    assert_int_equal(faas_stats(g_rt, fn, &st), 0);
    return st.instances;
}

struct file_count {
    const char *prefix;
    int want;
};

static int count_files(const char *prefix)
{
    DIR *d = opendir(g_tmp);
    struct dirent *e;
    int n = 0;
    if (!d)
        return 0;
    while ((e = readdir(d)) != NULL)
        n += strncmp(e->d_name, prefix, strlen(prefix)) == 0;
    closedir(d);
    return n;
}

static int pred_files(const void *arg)
{
    const struct file_count *fc = arg;
    return count_files(fc->prefix) >= fc->want;
}

static void touch(const char *name)
{
    char p[PATH_MAX + 64];
    int fd;
    snprintf(p, sizeof p, "%s/%s", g_tmp, name);
    fd = open(p, O_CREAT | O_WRONLY, 0644);
    assert_true(fd >= 0);
    close(fd);
}

static int pred_no_instances(const void *arg)
{
    return instances(arg) == 0;
}

static int pred_gone(const void *arg)
{
    pid_t pid = *(const pid_t *)arg;
    return kill(pid, 0) != 0 && errno == ESRCH;
}

/* Invokes fn with {}, which must succeed; returns the pid of its process. */
static pid_t invoke_pid(const char *fn)
{
    struct tres r;
    pid_t pid;
    invoke_wait(fn, "{}", NULL, &r);
    assert_int_equal(r.status, 0);
    pid = (pid_t)pint(&r, "pid");
    tres_clear(&r);
    return pid;
}

/* The process pid is gone, and the next invocation of fn starts a new one. */
static void expect_replaced(const char *fn, pid_t pid)
{
    struct tres r;
    assert_true(tu_run_until_pred(g_base, pred_gone, &pid, BOUND_MS));
    invoke_wait(fn, "{}", NULL, &r);
    assert_int_equal(r.status, 0);
    assert_true(r.cold);
    assert_true(pint(&r, "pid") != pid);
    tres_clear(&r);
}

/* ==== results ========================================================= */

static void test_success(void **state)
{
    struct faas_result *res = NULL;
    json_t *ev = json_pack("{s:i,s:s}", "a", 1, "b", "x y");
    struct tres r;
    char line[128];
    json_int_t pid;
    (void)state;

    rt_start(NULL);
    reg("echo", "bash", "function.handler", NULL);
    assert_int_equal(faas_invoke_sync(g_rt, "echo", ev, NULL, &res), 0);
    assert_int_equal(faas_result_status(res), 0);
    assert_true(faas_result_cold_start(res));
    assert_true(json_equal(json_object_get(faas_result_payload(res), "echo"), ev));
    assert_int_equal(json_integer_value(json_object_get(faas_result_payload(res), "bytes")),
                     17); /* {"a":1,"b":"x y"} as the runtime got it */
    pid = json_integer_value(json_object_get(faas_result_payload(res), "pid"));
    assert_true(pid > 0);
    snprintf(line, sizeof line, "transforming %s", faas_result_request_id(res));
    assert_non_null(logged(faas_result_request_id(res), line));
    faas_result_free(res);
    json_decref(ev);

    /* Warm: the same process, its next event. */
    invoke_wait("echo", "[1,2,3]", NULL, &r);
    assert_int_equal(r.status, 0);
    assert_false(r.cold);
    assert_int_equal(pint(&r, "pid"), pid);
    assert_int_equal(pint(&r, "bytes"), 7);
    tres_clear(&r);
    assert_int_equal(g_reports, 2);
}

static void test_text_and_empty(void **state)
{
    struct tres r;
    (void)state;

    rt_start(NULL);
    reg("echo", "bash", "function.handler", NULL);
    invoke_wait("echo", "\"text\"", NULL, &r);
    assert_int_equal(r.status, 0);
    assert_string_equal(json_string_value(r.payload), "not json at all");
    tres_clear(&r);
    invoke_wait("echo", "\"empty\"", NULL, &r);
    assert_int_equal(r.status, 0);
    assert_true(json_is_null(r.payload));
    tres_clear(&r);
}

static void test_handler_error(void **state)
{
    struct tres r;
    json_int_t pid;
    char line[128];
    (void)state;

    rt_start(NULL);
    reg("echo", "bash", "function.handler", NULL);
    invoke_wait("echo", "{}", NULL, &r);
    pid = pint(&r, "pid");
    tres_clear(&r);

    invoke_wait("echo", "\"fail\"", NULL, &r);
    expect_error(&r, FAAS_EHANDLER, "MyError", "something broke");
    assert_string_equal(json_string_value(json_array_get(json_object_get(r.payload,
                                                                         "stackTrace"), 0)),
                        "handler at function.sh");
    snprintf(line, sizeof line, "failing %s", r.rid);
    assert_non_null(logged(r.rid, line));
    tres_clear(&r);

    /* A handler error keeps the instance. */
    invoke_wait("echo", "{}", NULL, &r);
    assert_int_equal(r.status, 0);
    assert_false(r.cold);
    assert_int_equal(pint(&r, "pid"), pid);
    tres_clear(&r);
}

static void test_init_error(void **state)
{
    struct tres r;
    (void)state;

    rt_start(NULL);
    reg("broken", "initerr", "function.handler", NULL);
    invoke_wait("broken", "{}", NULL, &r);
    expect_error(&r, FAAS_EINIT, "Runtime.ConfigError", "missing setting: TABLE_NAME");
    tres_clear(&r);
    /* The instance is dropped; the next invocation tries a new one. */
    assert_true(tu_run_until_pred(g_base, pred_no_instances, "broken", BOUND_MS));
    invoke_wait("broken", "{}", NULL, &r);
    expect_error(&r, FAAS_EINIT, "Runtime.ConfigError", NULL);
    assert_true(r.cold);
    tres_clear(&r);
}

static void test_timeout(void **state)
{
    struct faas_function_opts o = FAAS_FUNCTION_OPTS_INIT;
    struct tres r;
    pid_t first;
    (void)state;

    rt_start(NULL);
    o.timeout_ms = 500;
    reg("slow", "bash", "function.handler", &o);
    first = invoke_pid("slow");

    invoke_wait("slow", "\"sleep\"", NULL, &r);
    expect_error(&r, FAAS_ETIMEDOUT, "Sandbox.Timedout", "Task timed out after 0.50 seconds");
    tres_clear(&r);
    /* The process was killed, and the next invocation starts a new one. */
    expect_replaced("slow", first);
}

static void test_crash(void **state)
{
    struct tres r;
    pid_t first;
    (void)state;

    rt_start(NULL);
    reg("crashy", "bash", "function.handler", NULL);
    invoke_wait("crashy", "{}", NULL, &r);
    first = (pid_t)pint(&r, "pid");
    tres_clear(&r);

    invoke_wait("crashy", "\"crash\"", NULL, &r);
    expect_error(&r, FAAS_ECRASHED, "Runtime.ExitError", NULL);
    assert_non_null(strstr(pstr(&r, "errorMessage"), "Runtime exited with error"));
    tres_clear(&r);
    expect_replaced("crashy", first);
}

/* A runtime that outgrows memory_mb dies of it: FAAS_EMEMLIMIT, replaced. */
static void test_memory_limit(void **state)
{
    struct faas_function_opts o = FAAS_FUNCTION_OPTS_INIT;
    const char *preload = getenv("LD_PRELOAD");
    struct tres r;
    (void)state;

    /* Under valgrind the limit is set while valgrind still runs the child,
     * before exec, and leaves it no room of its own. */
    if (preload && strstr(preload, "vgpreload"))
        skip();
    SKIP_EMULATED("qemu-user does not apply RLIMIT_DATA/RLIMIT_AS (they would bind the emulator), so no memory limit is enforced");

    rt_start(NULL);
    o.memory_mb = 48;
    o.timeout_ms = 20000;
    reg("hungry", "crt", "info", &o);
    invoke_wait("hungry", "{\"mode\":\"eat-memory\"}", NULL, &r);
    expect_error(&r, FAAS_EMEMLIMIT, "Runtime.OutOfMemory", NULL);
    assert_non_null(strstr(pstr(&r, "errorMessage"), "memory limit of 48 MB"));
    tres_clear(&r);
    /* A new runtime serves the next one. */
    invoke_wait("hungry", "{}", NULL, &r);
    assert_int_equal(r.status, 0);
    assert_true(r.cold);
    tres_clear(&r);
}

static void test_four_at_once(void **state)
{
    struct faas_function_opts o = FAAS_FUNCTION_OPTS_INIT;
    struct file_count fc = { "started.", 4 };
    struct faas_stats st;
    struct tres r[4], extra;
    json_t *pids = json_object();
    int i;
    (void)state;

    rt_start(NULL);
    o.max_concurrency = 4;
    o.timeout_ms = 0;
    reg("gated", "bash", "function.handler", &o);
    for (i = 0; i < 4; i++)
        invoke_start("gated", "\"gate\"", NULL, &r[i]);
    /* A fifth is throttled: all four instances are busy. */
    {
        json_t *ev = json_string("gate");
        assert_int_equal(faas_invoke(g_rt, "gated", ev, NULL, res_cb, &extra),
                         FAAS_ETHROTTLED);
        json_decref(ev);
    }
    /* Four processes run the handler at the same time ... */
    assert_true(tu_run_until_pred(g_base, pred_files, &fc, BOUND_MS));
    assert_int_equal(faas_stats(g_rt, "gated", &st), 0);
    assert_int_equal(st.instances, 4);
    assert_int_equal(st.concurrency, 4);
    for (i = 0; i < 4; i++)
        assert_int_equal(r[i].done, 0);
    /* ... until the gate opens. */
    touch("open");
    for (i = 0; i < 4; i++) {
        assert_true(tu_run_until(g_base, &r[i].done, 1, BOUND_MS));
        assert_int_equal(r[i].status, 0);
        assert_non_null(strstr(json_string_value(r[i].payload), "released "));
        json_object_set_new(pids, json_string_value(r[i].payload), json_true());
        tres_clear(&r[i]);
    }
    assert_int_equal(json_object_size(pids), 4);
    json_decref(pids);
}

static void test_logs(void **state)
{
    struct tres r;
    char line[128];
    (void)state;

    rt_start(NULL);
    reg("loud", "bash", "function.handler", NULL);
    invoke_wait("loud", "\"logs\"", NULL, &r);
    assert_int_equal(r.status, 0);
    assert_string_equal(json_string_value(r.payload), "logged");
    snprintf(line, sizeof line, "to stderr %s", r.rid);
    assert_non_null(logged(r.rid, line));
    snprintf(line, sizeof line, "to stdout %s", r.rid);
    assert_non_null(logged(r.rid, line));
    tres_clear(&r);
}

/* A line longer than 4 KiB is one log line, cut; the next is its own. */
static void test_long_line(void **state)
{
    struct tres r;
    char line[128];
    size_t i, mine = 0, cut = 0;
    json_t *l;
    (void)state;

    rt_start(NULL);
    reg("loud", "bash", "function.handler", NULL);
    invoke_wait("loud", "\"longline\"", NULL, &r);
    assert_int_equal(r.status, 0);
    json_array_foreach(g_lines, i, l) {
        const char *text = json_string_value(json_array_get(l, 1));
        if (strcmp(json_string_value(json_array_get(l, 0)), r.rid) != 0)
            continue;
        mine++;
        if (text[0] == 'y') {
            assert_int_equal(strlen(text), FAAS_LOGLINE_MAX - 1);
            assert_int_equal(strspn(text, "y"), FAAS_LOGLINE_MAX - 1);
            cut++;
        }
    }
    assert_int_equal(cut, 1);
    assert_int_equal(mine, 2);
    snprintf(line, sizeof line, "after %s", r.rid);
    assert_non_null(logged(r.rid, line));
    tres_clear(&r);
}

static void test_environment(void **state)
{
    struct faas_runtime_opts ro = FAAS_RUNTIME_OPTS_INIT;
    struct faas_function_opts o = FAAS_FUNCTION_OPTS_INIT;
    struct tres r;
    char root[PATH_MAX + 16];
    const char *stream, *path = getenv("PATH");
    int y, m, d, k = 0;
    char hex[40];
    (void)state;

    ro.region = "eu-central-1";
    rt_start(&ro);
    o.memory_mb = 256;
    reg_env("env-fn", "bash", "function.handler", &o, "LANG=en_US.UTF-8");
    invoke_wait("env-fn", "\"env\"", NULL, &r);
    assert_int_equal(r.status, 0);
    snprintf(root, sizeof root, "%s/bash", g_data);
    assert_true(strncmp(pstr(&r, "api"), "127.0.0.1:", 10) == 0);
    assert_true(atoi(pstr(&r, "api") + 10) > 0);
    assert_string_equal(pstr(&r, "handler"), "function.handler");
    assert_string_equal(pstr(&r, "task_root"), root);
    assert_string_equal(pstr(&r, "cwd"), root);
    assert_string_equal(pstr(&r, "name"), "env-fn");
    assert_string_equal(pstr(&r, "version"), "$LATEST");
    assert_string_equal(pstr(&r, "memory"), "256");
    assert_string_equal(pstr(&r, "group"), "/aws/lambda/env-fn");
    stream = pstr(&r, "stream");
    assert_int_equal(sscanf(stream, "%4d/%2d/%2d/[$LATEST]%39s%n", &y, &m, &d, hex, &k), 4);
    assert_int_equal(strlen(hex), 32);
    assert_int_equal(strspn(hex, "0123456789abcdef"), 32);
    assert_true(y >= 2024 && m >= 1 && m <= 12 && d >= 1 && d <= 31);
    assert_string_equal(pstr(&r, "region"), "eu-central-1");
    assert_string_equal(pstr(&r, "default_region"), "eu-central-1");
    assert_string_equal(pstr(&r, "tz"), ":UTC");
    assert_string_equal(pstr(&r, "path"), path && path[0] ? path : "/usr/local/bin:/usr/bin:/bin");
    assert_string_equal(pstr(&r, "lang"), "en_US.UTF-8"); /* the function's env wins */
    assert_string_equal(pstr(&r, "exec_env"), "AWS_Lambda_provided");
    assert_string_equal(pstr(&r, "custom"), "custom value");
    tres_clear(&r);
}

static void test_headers(void **state)
{
    static const char trace[] = "Root=1-5759e988-bd862e3fe1be46a994272793;"
                                "Parent=53995c3f42cd8ad8;Sampled=1";
    struct faas_invoke_opts io = FAAS_INVOKE_OPTS_INIT;
    struct faas_function_opts o = FAAS_FUNCTION_OPTS_INIT;
    json_t *cc = json_pack("{s:{s:s},s:{s:s}}", "custom", "k", "v \"quoted\"", "env", "x",
                           "y"), *got;
    struct timeval now;
    int64_t now_ms, deadline;
    unsigned a;
    char root[40], parent[40];
    struct tres r;
    int n = 0;
    (void)state;

    rt_start(NULL);
    o.timeout_ms = 5000;
    reg("hdr", "bash", "function.handler", &o);
    io.trace_id = trace;
    io.client_context = cc;
    gettimeofday(&now, NULL);
    now_ms = (int64_t)now.tv_sec * 1000 + now.tv_usec / 1000;
    invoke_wait("hdr", "\"headers\"", &io, &r);
    assert_int_equal(r.status, 0);
    assert_string_equal(pstr(&r, "rid"), r.rid);
    deadline = pint(&r, "deadline");
    assert_true(deadline > now_ms);
    assert_true(deadline <= now_ms + 5000 + 1000);
    assert_string_equal(pstr(&r, "arn"), "arn:aws:lambda:local:000000000000:function:hdr");
    assert_string_equal(pstr(&r, "trace"), trace);
    got = json_loads(pstr(&r, "cc"), 0, NULL);
    assert_non_null(got);
    assert_true(json_equal(got, cc));
    json_decref(got);
    assert_string_equal(pstr(&r, "ctype"), "application/json");
    tres_clear(&r);
    json_decref(cc);

    /* No trace id given: one is made, in X-Ray's form; no client context;
     * no timeout: 15 minutes from now. */
    assert_int_equal(faas_unregister(g_rt, "hdr"), 0);
    o.timeout_ms = 0;
    reg("hdr", "bash", "function.handler", &o);
    gettimeofday(&now, NULL);
    now_ms = (int64_t)now.tv_sec * 1000 + now.tv_usec / 1000;
    invoke_wait("hdr", "\"headers\"", NULL, &r);
    assert_int_equal(r.status, 0);
    assert_int_equal(sscanf(pstr(&r, "trace"), "Root=1-%8x-%24[0-9a-f];Parent=%16[0-9a-f];%n",
                            &a, root, parent, &n),
                     3);
    assert_int_equal(strlen(root), 24);
    assert_int_equal(strlen(parent), 16);
    assert_string_equal(pstr(&r, "trace") + n, "Sampled=0");
    assert_string_equal(pstr(&r, "cc"), "");
    deadline = pint(&r, "deadline");
    assert_true(deadline >= now_ms + 15 * 60 * 1000 - 2000);
    assert_true(deadline <= now_ms + 15 * 60 * 1000 + 5000);
    tres_clear(&r);
}

/* ==== the endpoint from inside and outside ============================= */

static struct faas_instance *only_instance(const char *name)
{
    struct faas_fn *fn = faas_fn_lookup(g_rt, name);
    assert_non_null(fn);
    assert_false(faas_list_empty(&fn->idle));
    return FAAS_CONTAINER_OF(fn->idle.next, struct faas_instance, link);
}

static int pred_not_waiting(const void *arg)
{
    return !faas_runtime_api_waiting(only_instance(arg));
}


/* One request to a runtime's API from this process, whose reply must be
 * its error: the status, a JSON {"errorType": type, "errorMessage": ...}. */
static void expect_api_error(uint16_t port, enum evhttp_cmd_type method, const char *uri,
                             const char *body, int code, const char *type)
{
    struct tu_resp r;
    const char *ct;
    json_t *j;

    tu_http_request(g_base, port, method, uri, NULL, body, body ? strlen(body) : 0, &r,
                    BOUND_MS);
    ct = tu_resp_header(&r, "content-type");
    j = json_loadb(r.body, r.len, JSON_DECODE_ANY, NULL);
    assert_int_equal(r.code, code);
    assert_string_equal(ct ? ct : "", "application/json");
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "errorType")), type);
    assert_non_null(json_string_value(json_object_get(j, "errorMessage")));
    json_decref(j);
    tu_resp_clear(&r);
}

struct probe {
    const char *method, *path, *body; /* path: {id} is the answered request id */
    int code;
    const char *type;
};

/* The API's errors as the runtime itself meets them: the bash function
 * sends each request of the probes file from inside the instance. */
static void test_api_errors(void **state)
{
    static const struct probe probes[] = {
        { "POST", "/2018-06-01/runtime/invocation/bogus-id/response", "{}", 400,
          "InvalidRequestID" },
        /* A second response, and an error, for an answered id. */
        { "POST", "/2018-06-01/runtime/invocation/{id}/response", "{}", 400, "InvalidRequestID" },
        { "POST", "/2018-06-01/runtime/invocation/{id}/error", "{}", 400, "InvalidRequestID" },
        /* Init is over. */
        { "POST", "/2018-06-01/runtime/init/error", "{}", 403, "InvalidStateTransition" },
        { "GET", "/2018-06-01/runtime/nope", NULL, 404, "NotFound" },
        { "GET", "/2015-03-31/functions/echo/invocations", NULL, 404, "NotFound" },
        { "POST", "/2018-06-01/runtime/invocation/next", "{}", 405, "MethodNotAllowed" },
        { "GET", "/2018-06-01/runtime/invocation/{id}/response", NULL, 405, "MethodNotAllowed" },
        { "PUT", "/2018-06-01/runtime/init/error", "{}", 405, "MethodNotAllowed" },
    };
    const size_t n = sizeof probes / sizeof probes[0];
    struct tres r;
    char path[PATH_MAX + 16], uri[160], rid[FAAS_REQUEST_ID_SIZE];
    FILE *f;
    size_t i;
    (void)state;

    rt_start(NULL);
    reg("echo", "bash", "function.handler", NULL);
    invoke_wait("echo", "{}", NULL, &r);
    assert_int_equal(r.status, 0);
    snprintf(rid, sizeof rid, "%s", r.rid);
    tres_clear(&r);

    snprintf(path, sizeof path, "%s/probes", g_tmp);
    f = fopen(path, "w");
    assert_non_null(f);
    for (i = 0; i < n; i++) {
        const char *at = strstr(probes[i].path, "{id}");
        if (at)
            snprintf(uri, sizeof uri, "%.*s%s%s", (int)(at - probes[i].path), probes[i].path,
                     rid, at + 4);
        else
            snprintf(uri, sizeof uri, "%s", probes[i].path);
        fprintf(f, "%s %s %s\n", probes[i].method, uri, probes[i].body ? probes[i].body : "");
    }
    fclose(f);
    invoke_wait("echo", "\"probe\"", NULL, &r);
    assert_int_equal(r.status, 0);
    assert_true(json_is_array(r.payload));
    assert_int_equal(json_array_size(r.payload), n);
    for (i = 0; i < n; i++) {
        json_t *got = json_array_get(r.payload, i), *body = json_object_get(got, "body");
        if (json_integer_value(json_object_get(got, "code")) != probes[i].code)
            fail_msg("%s %s: %s", probes[i].method, probes[i].path,
                     json_dumps(got, JSON_ENCODE_ANY));
        assert_string_equal(json_string_value(json_object_get(got, "ctype")),
                            "application/json");
        assert_string_equal(json_string_value(json_object_get(body, "errorType")),
                            probes[i].type);
        assert_non_null(json_string_value(json_object_get(body, "errorMessage")));
    }
    tres_clear(&r);

    /* This process is not the instance's: whatever it asks, 403. */
    snprintf(uri, sizeof uri, "/2018-06-01/runtime/invocation/%s/response", rid);
    expect_api_error(faas_runtime_api_port(only_instance("echo")), EVHTTP_REQ_POST, uri, "{}", 403,
                     "AccessDeniedException");

    /* The runtime still works. */
    invoke_wait("echo", "{\"after\":true}", NULL, &r);
    assert_int_equal(r.status, 0);
    assert_false(r.cold);
    tres_clear(&r);
}

/* An outside process: a child of this one, not of the instance. */
struct outsider {
    pid_t pid;
    int status;        /* its wait status, once reaped */
    int reaped;
    char file[PATH_MAX + 32];
};

/*
 * Starts a process that connects to 127.0.0.1:port, sends req, and keeps
 * what comes back in its file until the endpoint closes the connection
 * (exit 0) or 10 s pass (exit 4). half_close: it ends its side after
 * sending (a body it never finishes).
 */
static void outsider_start(struct outsider *o, uint16_t port, const char *req, int half_close)
{
    static int seq;

    memset(o, 0, sizeof *o);
    snprintf(o->file, sizeof o->file, "%s/outsider.%d", g_tmp, ++seq);
    o->pid = fork();
    assert_true(o->pid >= 0);
    if (o->pid == 0) {
        struct sockaddr_in a;
        struct timeval tv = { 10, 0 };
        size_t len = strlen(req), off = 0;
        char buf[4096];
        ssize_t k;
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        int out = open(o->file, O_CREAT | O_WRONLY | O_TRUNC | O_CLOEXEC, 0644);

        memset(&a, 0, sizeof a);
        a.sin_family = AF_INET;
        a.sin_port = htons(port);
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (fd < 0 || out < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0)
            _exit(2);
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        while (off < len) {
            k = write(fd, req + off, len - off);
            if (k <= 0)
                _exit(3);
            off += (size_t)k;
        }
        if (half_close)
            shutdown(fd, SHUT_WR);
        while ((k = read(fd, buf, sizeof buf)) > 0)
            if (write(out, buf, (size_t)k) != k)
                _exit(3);
        _exit(k == 0 ? 0 : 4);
    }
}

static int pred_reaped(const void *arg)
{
    struct outsider *o = (struct outsider *)(uintptr_t)arg;
    if (!o->reaped && waitpid(o->pid, &o->status, WNOHANG) == o->pid)
        o->reaped = 1;
    return o->reaped;
}

/* Waits for the outsider; returns what it got (malloc'd, NUL-terminated). */
static char *outsider_wait(struct outsider *o)
{
    char *buf = malloc(65536);
    ssize_t n;
    int fd;

    assert_true(tu_run_until_pred(g_base, pred_reaped, o, BOUND_MS));
    assert_true(WIFEXITED(o->status));
    assert_int_equal(WEXITSTATUS(o->status), 0); /* the endpoint closed it */
    fd = open(o->file, O_RDONLY);
    assert_true(fd >= 0);
    n = read(fd, buf, 65535);
    close(fd);
    assert_true(n >= 0);
    buf[n] = '\0';
    return buf;
}

/* The outsider was refused: a 403, and nothing of an event. */
static void expect_refused(char *got, const char *secret)
{
    if (strncmp(got, "HTTP/1.1 403 ", 13) != 0)
        fail_msg("the outsider got: %s", got);
    assert_null(strcasestr(got, "Lambda-Runtime-Aws-Request-Id"));
    assert_null(strcasestr(got, "Lambda-Runtime-Deadline-Ms"));
    assert_non_null(strstr(got, "AccessDeniedException"));
    if (secret)
        assert_null(strstr(got, secret));
    free(got);
}

static int pred_waiting(const void *arg)
{
    return faas_runtime_api_waiting(only_instance(arg));
}

static int pred_queued(const void *arg)
{
    return faas_runtime_api_queued(arg);
}

static int pred_parked(const void *arg)
{
    return faas_runtime_api_test_parks > *(const unsigned long *)arg;
}

/* An outsider's GET /next while the runtime's own waits: refused, and the
 * runtime's poll is not replaced; the next event goes to the runtime. */
static void test_outsider_next_idle(void **state)
{
    static const char next[] = "GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\n"
                               "Host: x\r\n\r\n";
    struct outsider o;
    struct tres r;
    pid_t pid;
    (void)state;

    rt_start(NULL);
    reg("echo", "bash", "function.handler", NULL);
    pid = invoke_pid("echo");
    assert_true(tu_run_until_pred(g_base, pred_waiting, "echo", BOUND_MS));
    outsider_start(&o, faas_runtime_api_port(only_instance("echo")), next, 0);
    expect_refused(outsider_wait(&o), NULL);
    assert_int_equal(g_peer_warnings, 1);
    assert_non_null(strstr(g_peer_line, "refused a Runtime API connection from 127.0.0.1:"));
    assert_true(faas_runtime_api_waiting(only_instance("echo")));

    invoke_wait("echo", "{\"secret\":\"s3\"}", NULL, &r);
    assert_int_equal(r.status, 0);
    assert_false(r.cold);
    assert_int_equal(pint(&r, "pid"), pid);
    assert_string_equal(json_string_value(json_object_get(json_object_get(r.payload, "echo"),
                                                          "secret")),
                        "s3");
    tres_clear(&r);
    assert_int_equal(g_peer_warnings, 1);
}

/* An outsider's GET /next while an event waits for the runtime's next
 * poll: refused without the event, which the runtime then gets. */
static void test_outsider_next_pending(void **state)
{
    static const char next[] = "GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\n"
                               "Host: x\r\n\r\n";
    struct file_count fc = { "dropped", 1 };
    struct faas_instance *inst;
    struct outsider o;
    struct tres r;
    (void)state;

    rt_start(NULL);
    reg("dropper", "dropnext", "function.handler", NULL);
    invoke_wait("dropper", "\"one\"", NULL, &r);
    assert_int_equal(r.status, 0);
    tres_clear(&r);
    assert_true(tu_run_until_pred(g_base, pred_files, &fc, BOUND_MS));
    assert_true(tu_run_until_pred(g_base, pred_not_waiting, "dropper", BOUND_MS));
    inst = only_instance("dropper");
    invoke_start("dropper", "\"top-secret-event\"", NULL, &r);
    assert_true(tu_run_until_pred(g_base, pred_queued, inst, BOUND_MS));

    outsider_start(&o, faas_runtime_api_port(inst), next, 0);
    expect_refused(outsider_wait(&o), "top-secret-event");
    assert_int_equal(r.done, 0);
    assert_true(faas_runtime_api_queued(inst));
    assert_int_equal(g_peer_warnings, 1);

    touch("go");
    assert_true(tu_run_until(g_base, &r.done, 1, BOUND_MS));
    assert_int_equal(r.status, 0);
    assert_int_equal(pint(&r, "n"), 1);
    assert_string_equal(json_string_value(json_object_get(r.payload, "event")),
                        "top-secret-event");
    tres_clear(&r);
}

/* The log callback frees the runtime on the warning of a refused
 * outsider: what reads the outsider's bytes touches nothing afterwards,
 * and its connection closes with the endpoint. */
static void test_outsider_free_in_log(void **state)
{
    static const char next[] = "GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\n"
                               "Host: x\r\n\r\n";
    struct outsider o;
    (void)state;

    rt_start(NULL);
    reg("echo", "bash", "function.handler", NULL);
    invoke_pid("echo");
    assert_true(tu_run_until_pred(g_base, pred_waiting, "echo", BOUND_MS));
    g_free_on_peer = 1;
    outsider_start(&o, faas_runtime_api_port(only_instance("echo")), next, 0);
    assert_true(tu_run_until(g_base, &g_peer_warnings, 1, BOUND_MS));
    assert_null(g_rt);
    assert_true(tu_run_until_pred(g_base, pred_reaped, &o, BOUND_MS));
    assert_true(WIFEXITED(o.status));
    tu_run_for(g_base, 50); /* nothing of the runtime runs any more */
    assert_int_equal(g_peer_warnings, 1);
}

/* Forged results with the real request id, while the runtime works on it:
 * refused, and the caller gets the runtime's. */
static void test_outsider_forged_result(void **state)
{
    struct faas_function_opts fo = FAAS_FUNCTION_OPTS_INIT;
    struct file_count fc = { "started.", 1 };
    char path[PATH_MAX + 64], rid[FAAS_REQUEST_ID_SIZE], req[512], *name;
    struct outsider o;
    struct tres r;
    uint16_t port;
    DIR *d;
    struct dirent *e;
    int fd;
    ssize_t n;
    (void)state;

    rt_start(NULL);
    fo.timeout_ms = 0;
    reg("gated", "bash", "function.handler", &fo);
    invoke_wait("gated", "{}", NULL, &r);
    assert_int_equal(r.status, 0);
    tres_clear(&r);
    port = faas_runtime_api_port(only_instance("gated"));

    invoke_start("gated", "\"gate\"", NULL, &r);
    assert_true(tu_run_until_pred(g_base, pred_files, &fc, BOUND_MS));
    d = opendir(g_tmp);
    assert_non_null(d);
    name = NULL;
    while ((e = readdir(d)) != NULL)
        if (strncmp(e->d_name, "started.", 8) == 0)
            name = strdup(e->d_name);
    closedir(d);
    assert_non_null(name);
    snprintf(path, sizeof path, "%s/%s", g_tmp, name);
    free(name);
    fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    n = read(fd, rid, sizeof rid - 1);
    close(fd);
    assert_true(n > 0);
    rid[n] = '\0';

    /* A response declared far over the limit, never finished: it must not
     * fail the invocation as too large. */
    snprintf(req, sizeof req,
             "POST /2018-06-01/runtime/invocation/%s/response HTTP/1.1\r\nHost: x\r\n"
             "Content-Length: 99999999\r\n\r\n{\"forged\":",
             rid);
    outsider_start(&o, port, req, 1);
    free(outsider_wait(&o)); /* closed, answered or not */
    assert_int_equal(r.done, 0);

    snprintf(req, sizeof req,
             "POST /2018-06-01/runtime/invocation/%s/response HTTP/1.1\r\nHost: x\r\n"
             "Content-Length: 15\r\n\r\n{\"forged\":true}",
             rid);
    outsider_start(&o, port, req, 0);
    expect_refused(outsider_wait(&o), NULL);
    assert_int_equal(r.done, 0);

    snprintf(req, sizeof req,
             "POST /2018-06-01/runtime/invocation/%s/error HTTP/1.1\r\nHost: x\r\n"
             "Content-Length: 2\r\n\r\n{}",
             rid);
    outsider_start(&o, port, req, 0);
    expect_refused(outsider_wait(&o), NULL);
    assert_int_equal(r.done, 0);
    assert_int_equal(g_peer_warnings, 3);

    touch("open");
    assert_true(tu_run_until(g_base, &r.done, 1, BOUND_MS));
    assert_int_equal(r.status, 0);
    assert_string_equal(r.rid, rid);
    assert_non_null(strstr(json_string_value(r.payload), "released "));
    tres_clear(&r);
}

/* Without a zygote the host forks the runtime: its curl children are
 * served, the host itself (their ancestor) is not. */
static void test_no_zygote(void **state)
{
    struct faas_runtime_opts ro = FAAS_RUNTIME_OPTS_INIT;
    struct tres r;
    (void)state;

    ro.zygote = 0;
    rt_start(&ro);
    reg("echo", "bash", "function.handler", NULL);
    invoke_wait("echo", "{\"a\":1}", NULL, &r);
    assert_int_equal(r.status, 0);
    tres_clear(&r);
    expect_api_error(faas_runtime_api_port(only_instance("echo")), EVHTTP_REQ_GET,
                     "/2018-06-01/runtime/invocation/next", NULL, 403, "AccessDeniedException");
    assert_int_equal(g_peer_warnings, 1);
    invoke_wait("echo", "{\"a\":2}", NULL, &r);
    assert_int_equal(r.status, 0);
    assert_false(r.cold);
    tres_clear(&r);
}

/* A runtime whose first request comes before its pid is known: the
 * request waits for it, then is served. */
static void test_pid_not_yet_known(void **state)
{
    unsigned long parks = faas_runtime_api_test_parks;
    struct tres r;
    (void)state;

    rt_start(NULL);
    reg("echo", "crt", "echo", NULL);
    faas_runtime_api_test_hold_pid = 1;
    invoke_start("echo", "{\"k\":1}", NULL, &r);
    assert_true(tu_run_until_pred(g_base, pred_parked, &parks, BOUND_MS));
    assert_int_equal(r.done, 0);
    faas_runtime_api_test_hold_pid = 0;
    assert_true(tu_run_until(g_base, &r.done, 1, BOUND_MS));
    assert_int_equal(r.status, 0);
    assert_int_equal(json_integer_value(json_object_get(r.payload, "k")), 1);
    tres_clear(&r);
    assert_int_equal(g_peer_warnings, 0);
}

static void test_runtime_api_address(void **state)
{
    static const char *refused[] = { "0.0.0.0", "::", "10.1.2.3", "192.0.2.1", "localhost",
                                     "::ffff:10.0.0.1", "not an address" };
    struct faas_runtime_opts ro = FAAS_RUNTIME_OPTS_INIT;
    struct faas_runtime *rt = NULL;
    struct tres r;
    size_t i;
    (void)state;

    for (i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        ro.runtime_api_address = refused[i];
        ro.runtime_api_allow_remote = 0;
        assert_int_equal(faas_runtime_new(&rt, g_base, &ro), FAAS_EINVAL);
        assert_null(rt);
        ro.runtime_api_allow_remote = 1;
        assert_int_equal(faas_runtime_new(&rt, g_base, &ro), 0);
        faas_runtime_free(rt);
        rt = NULL;
    }
    /* Any loopback address is fine; the runtime's connections from it are
     * checked as any. */
    ro.runtime_api_allow_remote = 0;
    ro.runtime_api_address = "::ffff:127.0.0.1";
    assert_int_equal(faas_runtime_new(&rt, g_base, &ro), 0);
    faas_runtime_free(rt);
    ro.runtime_api_address = "127.0.0.2";
    rt_start(&ro);
    reg("echo", "bash", "function.handler", NULL);
    invoke_wait("echo", "\"env\"", NULL, &r);
    assert_int_equal(r.status, 0);
    assert_true(strncmp(pstr(&r, "api"), "127.0.0.2:", 10) == 0);
    tres_clear(&r);
    assert_int_equal(g_peer_warnings, 0);
}

/* JSON strings with U+0000 go to the runtime and come back whole. */
static void test_nul_round_trip(void **state)
{
    json_t *ev = json_pack("{s:s%}", "s", "a\0b", (size_t)3), *echo;
    struct faas_result *res = NULL;
    const char *runtimes[2][2] = { { "bash", "function.handler" }, { "crt", "echo" } };
    int i;
    (void)state;

    rt_start(NULL);
    for (i = 0; i < 2; i++) {
        const char *name = runtimes[i][0];
        reg(name, runtimes[i][0], runtimes[i][1], NULL);
        assert_int_equal(faas_invoke_sync(g_rt, name, ev, NULL, &res), 0);
        assert_int_equal(faas_result_status(res), 0);
        echo = faas_result_payload(res);
        if (i == 0)
            echo = json_object_get(echo, "echo");
        assert_true(json_equal(echo, ev));
        assert_int_equal(json_string_length(json_object_get(echo, "s")), 3);
        faas_result_free(res);
        res = NULL;
    }
    json_decref(ev);

    /* And in an error the runtime posts. */
    ev = json_string("failnul");
    assert_int_equal(faas_invoke_sync(g_rt, "bash", ev, NULL, &res), 0);
    assert_int_equal(faas_result_status(res), FAAS_EHANDLER);
    echo = json_object_get(faas_result_payload(res), "errorMessage");
    assert_int_equal(json_string_length(echo), 3);
    assert_memory_equal(json_string_value(echo), "a\0b", 3);
    assert_string_equal(json_string_value(json_object_get(faas_result_payload(res),
                                                          "errorType")),
                        "Nul.Error");
    faas_result_free(res);
    json_decref(ev);
}

static void test_too_big(void **state)
{
    struct faas_runtime_opts ro = FAAS_RUNTIME_OPTS_INIT;
    struct tres r;
    (void)state;

    ro.max_sync_payload = 1024;
    rt_start(&ro);
    reg("big", "bash", "function.handler", NULL);
    /* Over the limit: the 413 of our own. */
    invoke_wait("big", "{\"big\":2000}", NULL, &r);
    expect_error(&r, FAAS_ETOOBIG, "Function.ResponseSizeTooLarge",
                 "Response payload size (2002 bytes) exceeded maximum allowed payload size "
                 "(1024 bytes).");
    tres_clear(&r);
    /* Far over: libevent stops reading it, the close tells. */
    invoke_wait("big", "{\"big\":100000}", NULL, &r);
    expect_error(&r, FAAS_ETOOBIG, "Function.ResponseSizeTooLarge", NULL);
    tres_clear(&r);
    /* At the limit: fine. */
    invoke_wait("big", "{\"big\":1022}", NULL, &r);
    assert_int_equal(r.status, 0);
    assert_int_equal(json_string_length(r.payload), 1022);
    tres_clear(&r);
}

static int streamed_json_equal(json_t *payload, json_t *want);

static void test_streaming(void **state)
{
    struct tres r;
    json_t *want = json_pack("{s:{s:i},s:i}", "streamed", "n", 7, "parts", 3);
    (void)state;

    rt_start(NULL);
    reg("streamer", "stream", "function.handler", NULL);
    /* Without on_chunk the bytes streamed are the payload, as a string. */
    invoke_wait("streamer", "{\"n\":7}", NULL, &r);
    assert_int_equal(r.status, 0);
    assert_true(json_is_string(r.payload));
    assert_true(streamed_json_equal(r.payload, want));
    tres_clear(&r);
    json_decref(want);
}

/* Whether a streamed payload (a string) holds the JSON text of want. */
static int streamed_json_equal(json_t *payload, json_t *want)
{
    json_t *j = json_loads(json_string_value(payload), 0, NULL);
    int eq = j && json_equal(j, want);
    json_decref(j);
    return eq;
}

struct chunks {
    struct evbuffer *bytes;
    int n;
    int at_result; /* chunks seen when the result came */
    struct tres *r;
};

static void chunk_cb(const void *data, size_t len, void *arg)
{
    struct chunks *c = arg;
    c->n++;
    evbuffer_add(c->bytes, data, len);
}

static void chunk_res_cb(const struct faas_result *res, void *arg)
{
    struct chunks *c = arg;
    c->at_result = c->n;
    res_cb(res, c->r);
}

/* The Runtime API's streaming mode, to a caller with on_chunk: the bytes
 * as they were posted, before the result, whose payload is null; error
 * trailers fail it after its first bytes. */
static void test_streaming_chunks(void **state)
{
    struct faas_invoke_opts io = FAAS_INVOKE_OPTS_INIT;
    struct chunks c;
    struct tres r;
    json_t *ev;
    (void)state;

    rt_start(NULL);
    reg("crt", "crt", "info", NULL);
    memset(&c, 0, sizeof c);
    memset(&r, 0, sizeof r);
    c.bytes = evbuffer_new();
    c.r = &r;
    io.on_chunk = chunk_cb;
    io.chunk_arg = &c;
    ev = json_pack("{s:s}", "mode", "stream-ok");
    assert_int_equal(faas_invoke(g_rt, "crt", ev, &io, chunk_res_cb, &c), 0);
    assert_true(tu_run_until(g_base, &r.done, 1, BOUND_MS));
    assert_int_equal(r.status, 0);
    assert_true(json_is_null(r.payload));
    assert_true(c.at_result >= 1);
    assert_int_equal(c.at_result, c.n);
    assert_int_equal(evbuffer_get_length(c.bytes), 32);
    assert_memory_equal(evbuffer_pullup(c.bytes, -1), "{\"part\":1,\"part2\":2,\"done\":true}", 32);
    tres_clear(&r);
    json_decref(ev);

    evbuffer_drain(c.bytes, evbuffer_get_length(c.bytes));
    c.n = 0;
    ev = json_pack("{s:s}", "mode", "stream-error");
    assert_int_equal(faas_invoke(g_rt, "crt", ev, &io, chunk_res_cb, &c), 0);
    assert_true(tu_run_until(g_base, &r.done, 1, BOUND_MS));
    expect_error(&r, FAAS_EHANDLER, "Function.StreamError", "stream broke");
    assert_true(c.at_result >= 1);
    assert_memory_equal(evbuffer_pullup(c.bytes, -1), "{\"part\":1,", 10);
    tres_clear(&r);
    json_decref(ev);
    evbuffer_free(c.bytes);
}

/* ==== the C runtime: keep-alive, trailers ============================== */

static void test_keepalive(void **state)
{
    struct tres r;
    int i;
    (void)state;

    rt_start(NULL);
    reg("crt", "crt", "info", NULL);
    for (i = 1; i <= 3; i++) {
        invoke_wait("crt", "{\"i\":1}", NULL, &r);
        assert_int_equal(r.status, 0);
        assert_int_equal(pint(&r, "connects"), 1);
        assert_int_equal(pint(&r, "count"), i);
        assert_int_equal(json_integer_value(json_object_get(json_object_get(r.payload, "event"),
                                                            "i")),
                         1);
        tres_clear(&r);
    }
}

static void test_trailers(void **state)
{
    struct tres r;
    json_t *want = json_pack("{s:i,s:i,s:b}", "part", 1, "part2", 2, "done", 1);
    (void)state;

    rt_start(NULL);
    reg("crt", "crt", "info", NULL);
    invoke_wait("crt", "{\"mode\":\"stream-error\"}", NULL, &r);
    expect_error(&r, FAAS_EHANDLER, "Function.StreamError", "stream broke");
    assert_string_equal(json_string_value(json_array_get(json_object_get(r.payload,
                                                                         "stackTrace"), 0)),
                        "crt.c");
    tres_clear(&r);

    invoke_wait("crt", "{\"mode\":\"stream-ok\"}", NULL, &r);
    assert_int_equal(r.status, 0);
    assert_true(streamed_json_equal(r.payload, want));
    tres_clear(&r);

    /* The type from the header, a body that is not JSON as the message. */
    invoke_wait("crt", "{\"mode\":\"error-header\"}", NULL, &r);
    expect_error(&r, FAAS_EHANDLER, "Header.Type", "plain text, not JSON");
    tres_clear(&r);

    /* No type anywhere: Unhandled. */
    invoke_wait("crt", "{\"mode\":\"error-plain\"}", NULL, &r);
    expect_error(&r, FAAS_EHANDLER, "Unhandled", "plain failure");
    tres_clear(&r);
    /* A message that is not a string: its JSON text. */
    invoke_wait("crt", "{\"mode\":\"error-object\"}", NULL, &r);
    expect_error(&r, FAAS_EHANDLER, "Obj.Type", "{\"code\":7}");
    tres_clear(&r);

    /* All of it on one connection, still in step. */
    invoke_wait("crt", "{}", NULL, &r);
    assert_int_equal(r.status, 0);
    assert_int_equal(pint(&r, "connects"), 1);
    assert_int_equal(pint(&r, "count"), 6);
    tres_clear(&r);
    json_decref(want);
}

/* ==== lifetimes ========================================================= */

static void test_dropped_poll(void **state)
{
    struct file_count fc = { "dropped", 1 };
    struct tres r;
    (void)state;

    rt_start(NULL);
    reg("dropper", "dropnext", "function.handler", NULL);
    invoke_wait("dropper", "\"one\"", NULL, &r);
    assert_int_equal(r.status, 0);
    assert_int_equal(pint(&r, "n"), 0);
    tres_clear(&r);
    /* The runtime gave up a long poll: its /next is dropped at once. */
    assert_true(tu_run_until_pred(g_base, pred_files, &fc, BOUND_MS));
    assert_true(tu_run_until_pred(g_base, pred_not_waiting, "dropper", BOUND_MS));
    /* The next event waits for the runtime's next poll. */
    invoke_start("dropper", "\"two\"", NULL, &r);
    touch("go");
    assert_true(tu_run_until(g_base, &r.done, 1, BOUND_MS));
    assert_int_equal(r.status, 0);
    assert_int_equal(pint(&r, "n"), 1);
    assert_string_equal(json_string_value(json_object_get(r.payload, "event")), "two");
    assert_false(r.cold);
    tres_clear(&r);
}

static void test_scale_to_zero(void **state)
{
    struct faas_function_opts o = FAAS_FUNCTION_OPTS_INIT;
    struct tres r;
    pid_t pid;
    (void)state;

    rt_start(NULL);
    o.idle_timeout_ms = 200;
    reg("idle", "bash", "function.handler", &o);
    pid = invoke_pid("idle");
    assert_int_equal(instances("idle"), 1);
    assert_true(tu_run_until_pred(g_base, pred_no_instances, "idle", BOUND_MS));
    assert_true(tu_run_until_pred(g_base, pred_gone, &pid, BOUND_MS));
    invoke_wait("idle", "{}", NULL, &r);
    assert_int_equal(r.status, 0);
    assert_true(r.cold);
    tres_clear(&r);
}

static void test_free_in_flight(void **state)
{
    struct faas_function_opts o = FAAS_FUNCTION_OPTS_INIT;
    struct file_count fc = { "started.", 1 };
    struct tres r;
    (void)state;

    rt_start(NULL);
    o.timeout_ms = 0;
    reg("gated", "bash", "function.handler", &o);
    invoke_start("gated", "\"gate\"", NULL, &r);
    assert_true(tu_run_until_pred(g_base, pred_files, &fc, BOUND_MS));
    faas_runtime_free(g_rt);
    g_rt = NULL;
    assert_int_equal(r.done, 1);
    assert_int_equal(r.status, FAAS_ECANCELED);
    tres_clear(&r);
}

/* Every allocation of a cold COMMAND invocation fails in turn (max_uses 1:
 * each invocation is a new instance, endpoint and process): the result
 * callback still runs once, with success or an error, and nothing leaks
 * (under valgrind). */
static void test_alloc_failures(void **state)
{
    struct faas_function_opts o = FAAS_FUNCTION_OPTS_INIT;
    struct tres r;
    json_t *ev = json_pack("{s:i}", "n", 1);
    long i;
    int untouched = 0, ok = 0;
    (void)state;

    rt_start(NULL);
    o.max_uses = 1;
    reg("crt", "crt", "echo", &o);
    for (i = 0; !untouched && i < 400; i++) {
        memset(&r, 0, sizeof r);
        atomic_store(&faas_alloc_fail_countdown, i);
        if (faas_invoke(g_rt, "crt", ev, NULL, res_cb, &r) == 0) {
            if (!tu_run_until(g_base, &r.done, 1, BOUND_MS))
                fail_msg("no result with allocation %ld failing", i);
            assert_int_equal(r.done, 1);
            if (r.status == 0) {
                assert_true(json_equal(r.payload, ev));
                ok++;
            }
        }
        untouched = atomic_load(&faas_alloc_fail_countdown) >= 0;
        atomic_store(&faas_alloc_fail_countdown, -1);
        tres_clear(&r);
    }
    assert_true(untouched);
    assert_true(ok >= 1);
    assert_true(i > 10); /* it did fail something */
    /* And it still works. */
    invoke_wait("crt", "{\"n\":1}", NULL, &r);
    assert_int_equal(r.status, 0);
    tres_clear(&r);
    json_decref(ev);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tap_whole_and_bytewise),
        cmocka_unit_test(test_tap_long_trailer_and_take),
        cmocka_unit_test(test_tap_oversize_and_bad),
        cmocka_unit_test(test_peer_socket),
        cmocka_unit_test(test_peer_held_tree),
        cmocka_unit_test(test_peer_group_not_session),
        cmocka_unit_test(test_peer_fd_budget),
        cmocka_unit_test_setup_teardown(test_success, setup, teardown),
        cmocka_unit_test_setup_teardown(test_text_and_empty, setup, teardown),
        cmocka_unit_test_setup_teardown(test_handler_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_init_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_crash, setup, teardown),
cmocka_unit_test_setup_teardown(test_memory_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_four_at_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_logs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_long_line, setup, teardown),
        cmocka_unit_test_setup_teardown(test_environment, setup, teardown),
        cmocka_unit_test_setup_teardown(test_headers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_api_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_outsider_next_idle, setup, teardown),
        cmocka_unit_test_setup_teardown(test_outsider_next_pending, setup, teardown),
        cmocka_unit_test_setup_teardown(test_outsider_forged_result, setup, teardown),
        cmocka_unit_test_setup_teardown(test_outsider_free_in_log, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_zygote, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pid_not_yet_known, setup, teardown),
        cmocka_unit_test_setup_teardown(test_runtime_api_address, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nul_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_too_big, setup, teardown),
        cmocka_unit_test_setup_teardown(test_streaming_chunks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_streaming, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keepalive, setup, teardown),
        cmocka_unit_test_setup_teardown(test_trailers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dropped_poll, setup, teardown),
        cmocka_unit_test_setup_teardown(test_scale_to_zero, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_in_flight, setup, teardown),
        cmocka_unit_test_setup_teardown(test_alloc_failures, setup, teardown),
    };
    /* An HTTP server's writes to a client that has gone raise SIGPIPE, as
     * for any evhttp server: the host ignores it (docs/threading.md). */
    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
