/*
 * worker.c - what a process libfaas starts does between fork and its work:
 * the set-up of a new child (faas_child_run: its session, descriptors,
 * signals and memory limit, then exec or the native worker), and the
 * native worker's loop. The zygote that forks these children is zygote.c.
 *
 * A native worker reads its HELLO (which handler, which limits), runs init
 * once, and then serves INVOKE frames one at a time with the same code
 * INLINE and THREAD instances use (faas_inv_execute), on a runtime and a
 * function record of its own. Lines from faas_ctx_log leave at once, so
 * what a handler logged before it crashed still reaches the host. A fatal
 * signal sends a DYING frame first, saying whether memory had run out; an
 * exit() in a handler leaves without running the host's atexit handlers.
 *
 * May call: the invocation code a worker runs (faas_inv_execute, ctx.c).
 * Called by zygote.c, and by exec_process.c when the host forks itself.
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "exec_process.h"
#include "faas_int.h"

/* ---- frames ---------------------------------------------------------- */

static int write_all(int fd, struct iovec *iov, int n)
{
    while (n > 0) {
        ssize_t w = writev(fd, iov, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        while (n > 0 && (size_t)w >= iov->iov_len) {
            w -= (ssize_t)iov->iov_len;
            iov++;
            n--;
        }
        if (n > 0) {
            iov->iov_base = (char *)iov->iov_base + w;
            iov->iov_len -= (size_t)w;
        }
    }
    return 0;
}

int faas_frame_write(int fd, uint32_t type, const void *fixed, size_t flen,
                     const char *const *strs, size_t nstrs)
{
    struct iovec iov[8];
    struct faas_frame_hdr h;
    size_t i, total = flen;
    int n = 0;

    if (nstrs > 6)
        return -1;
    for (i = 0; i < nstrs; i++)
        total += strlen(strs[i]) + 1;
    if (total > UINT32_MAX)
        return -1;
    h.len = (uint32_t)total;
    h.type = type;
    iov[n].iov_base = &h;
    iov[n++].iov_len = sizeof h;
    if (flen) {
        iov[n].iov_base = (void *)(uintptr_t)fixed;
        iov[n++].iov_len = flen;
    }
    for (i = 0; i < nstrs; i++) {
        iov[n].iov_base = (void *)(uintptr_t)strs[i];
        iov[n++].iov_len = strlen(strs[i]) + 1;
    }
    return write_all(fd, iov, n);
}


/* ---- memory figures (async-signal-safe) ------------------------------ */

/* The data segment in KiB, from /proc/self/statm (6th field, pages). */
uint64_t faas_child_data_kb(void)
{
    char buf[128];
    ssize_t n;
    int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC), field = 0;
    uint64_t v = 0;
    ssize_t i;

    if (fd < 0)
        return 0;
    n = read(fd, buf, sizeof buf - 1);
    close(fd);
    for (i = 0; i < n; i++) {
        if (buf[i] == ' ') {
            if (++field == 6)
                break;
            v = 0;
        } else if (buf[i] >= '0' && buf[i] <= '9') {
            v = v * 10 + (uint64_t)(buf[i] - '0');
        }
    }
    return field >= 5 ? v * (uint64_t)(sysconf(_SC_PAGESIZE) / 1024) : 0;
}

static uint64_t maxrss_kb(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0)
        return 0;
    return (uint64_t)ru.ru_maxrss;
}

/* The peak for a RESULT: read again at most every 50 ms of the monotonic
 * clock (a vDSO call, no system call), or when the handler ran 0.1 ms or
 * longer: time enough to grow. */
static uint64_t maxrss_sampled(uint64_t duration_ns)
{
    static uint64_t kb, at_ns;
    struct timespec ts;
    uint64_t now;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    now = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
    if (!kb || now - at_ns >= 50000000u || duration_ns >= 100000u) {
        kb = maxrss_kb();
        at_ns = now;
    }
    return kb;
}

/* ---- the new child --------------------------------------------------- */

/* Moves fd above the descriptors the child will use (0..3). */
static int lift(int fd)
{
    int n;
    if (fd < 0)
        return fd;
    n = fcntl(fd, F_DUPFD, 10);
    return n < 0 ? fd : n;
}

void faas_child_close_from(int first)
{
    long i, max;
    if (syscall(SYS_close_range, (unsigned)first, ~0u, 0u) == 0)
        return;
    max = sysconf(_SC_OPEN_MAX);
    if (max < 0 || max > 65536)
        max = 65536;
    for (i = first; i < max; i++)
        close((int)i);
}

static void die_msg(const char *what, const char *arg) __attribute__((noreturn));

static void die_msg(const char *what, const char *arg)
{
    const char *e = strerror(errno);
    struct iovec iov[5];
    iov[0].iov_base = (void *)(uintptr_t)what;
    iov[0].iov_len = strlen(what);
    iov[1].iov_base = (void *)(uintptr_t)" ";
    iov[1].iov_len = 1;
    iov[2].iov_base = (void *)(uintptr_t)(arg ? arg : "");
    iov[2].iov_len = arg ? strlen(arg) : 0;
    iov[3].iov_base = (void *)(uintptr_t)": ";
    iov[3].iov_len = 2;
    iov[4].iov_base = (void *)(uintptr_t)e;
    iov[4].iov_len = strlen(e);
    if (write_all(2, iov, 5) == 0)
        (void)!write(2, "\n", 1);
    _exit(127);
}

void faas_child_run(const struct faas_child_spec *spec, pid_t parent)
{
    struct rlimit rl;
    sigset_t none;
    int sig, chan, chan_out, logfd, devnull;
    uint64_t base_kb = 0;

    /* A session of its own, not only a process group: its id is this pid
     * for good, as no other process can join a session, while any process
     * of a shared session could join this one's group (setpgid). The
     * Runtime API's peer check counts the reaper's children of this
     * session as the instance's (peer.c); killing the group (pgid = pid
     * too) ends what the handler started. */
    setsid();
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(1);
    atomic_store(&faas_alloc_fail_countdown, -1); /* a test's, not ours */
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    if (spec->from_zygote) {
        /* The zygote reset every disposition when it started and installed
         * the native worker's fatal-signal handlers (a command's exec drops
         * them); it ignores SIGPIPE for itself only. */
        if (spec->command)
            signal(SIGPIPE, SIG_DFL);
    } else {
        for (sig = 1; sig < NSIG; sig++)
            if (sig != SIGKILL && sig != SIGSTOP)
                signal(sig, SIG_DFL);
    }

    chan = spec->command ? -1 : spec->chan_fd;
    chan_out = spec->command ? -1 : spec->chan_out_fd;
    logfd = spec->log_fd;
    if (logfd < 0 || (!spec->command && (chan < 0 || chan_out < 0)))
        _exit(126);
    if (spec->from_zygote && logfd > 4 && (spec->command || (chan > 4 && chan_out > 4))) {
        /* The zygote's 0 is /dev/null already, and what it received sits
         * above the places the child fills. */
        devnull = 0;
    } else {
        chan = lift(chan);
        chan_out = lift(chan_out);
        logfd = lift(logfd);
        devnull = lift(open("/dev/null", O_RDWR));
        if (devnull < 0 || dup2(devnull, 0) < 0)
            _exit(126);
    }
    (void)devnull;
    if (dup2(logfd, 1) < 0 || dup2(logfd, 2) < 0 ||
        (!spec->command && (dup2(chan, 3) < 0 || dup2(chan_out, 4) < 0)))
        _exit(126);
    faas_child_close_from(spec->command ? 3 : 5);

    if (!spec->command)
        base_kb = spec->base_data_kb ? spec->base_data_kb : faas_child_data_kb();
    rl.rlim_cur = rl.rlim_max = (rlim_t)(base_kb * 1024u + ((uint64_t)spec->memory_mb << 20));
    if (spec->memory_mb)
        setrlimit(RLIMIT_DATA, &rl);

    if (!spec->command)
        faas_worker_main(3, 4);
    if (spec->cwd && spec->cwd[0] && chdir(spec->cwd) != 0)
        die_msg("cannot enter", spec->cwd);
    execvpe(spec->argv[0], spec->argv, spec->env);
    die_msg("cannot execute", spec->argv[0]);
}

/* ---- the native worker ----------------------------------------------- */

static int worker_handlers_installed; /* by the zygote, for its workers */
static int worker_chan = -1; /* frames in */
static int worker_out = -1;  /* frames out */
static uint64_t worker_limit_kb;
static struct faas_runtime worker_rt;
static struct faas_fn worker_fn;
static struct faas_instance worker_inst;

static void fatal_handler(int sig)
{
    int saved = errno;
    struct {
        struct faas_frame_hdr h;
        struct faas_frame_dying d;
    } m;

    memset(&m, 0, sizeof m);
    m.h.len = sizeof m.d;
    m.h.type = FAAS_FRAME_DYING;
    m.d.signo = sig;
    m.d.enomem = saved == ENOMEM;
    m.d.data_kb = faas_child_data_kb();
    m.d.limit_kb = worker_limit_kb;
    m.d.maxrss_kb = maxrss_kb();
    (void)!write(worker_out, &m, sizeof m);
    signal(sig, SIG_DFL);
    raise(sig);
}

/* exit() in a handler: the worker's own output is flushed, not the copies
 * of the host's open files it inherited (their data is the host's). */
static void exit_now(int status, void *arg)
{
    (void)arg;
    fflush(stdout);
    fflush(stderr);
    _exit(status);
}

static void install_fatal_handlers(void)
{
    static char altstack[64 * 1024];
    static const int sigs[] = { SIGSEGV, SIGBUS, SIGABRT, SIGFPE, SIGILL, SIGSYS, SIGTRAP };
    struct sigaction sa;
    stack_t ss;
    size_t i;

    ss.ss_sp = altstack;
    ss.ss_size = sizeof altstack;
    ss.ss_flags = 0;
    sigaltstack(&ss, NULL);
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = fatal_handler;
    sa.sa_flags = (int)(SA_ONSTACK | SA_RESETHAND);
    sigemptyset(&sa.sa_mask);
    for (i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
        sigaction(sigs[i], &sa, NULL);
    /* A broken channel is an error to see, not a signal to die of. */
    signal(SIGPIPE, SIG_IGN);
}

void faas_worker_install_handlers(void)
{
    install_fatal_handlers();
    worker_handlers_installed = 1;
}

/*
 * stdout and stderr of a worker are streams of its own that note when they
 * write (to descriptors 1 and 2, the log pipe, as before): a RESULT then
 * tells the host that lines are on their way in the pipe, and the host
 * reads them before it ends the invocation, so they carry its request id.
 * Only what bypasses stdio (write(1, ...)) may come too late for that.
 */
static int worker_wrote;

static ssize_t stdio_write(void *cookie, const char *buf, size_t n)
{
    int fd = (int)(intptr_t)cookie;
    size_t done = 0;
    worker_wrote = 1;
    while (done < n) {
        ssize_t w = write(fd, buf + done, n - done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return done ? (ssize_t)done : -1;
        done += (size_t)w;
    }
    return (ssize_t)n;
}

static FILE *watched_stream(int fd, int mode)
{
    cookie_io_functions_t io = { NULL, stdio_write, NULL, NULL };
    FILE *f = fopencookie((void *)(intptr_t)fd, "w", io);
    if (f)
        setvbuf(f, NULL, mode, 0);
    return f;
}

static void watch_stdio(void)
{
    FILE *out = watched_stream(1, _IOLBF), *err = watched_stream(2, _IONBF);
    if (out)
        stdout = out;
    else
        setvbuf(stdout, NULL, _IOLBF, 0);
    if (err)
        stderr = err;
}

static void send_log(struct faas_ctx *ctx, const char *line, size_t len)
{
    struct iovec iov[3];
    struct faas_frame_hdr h;
    (void)ctx;
    h.len = (uint32_t)len + 1;
    h.type = FAAS_FRAME_LOG;
    iov[0].iov_base = &h;
    iov[0].iov_len = sizeof h;
    iov[1].iov_base = (void *)(uintptr_t)line;
    iov[1].iov_len = len;
    iov[2].iov_base = (void *)(uintptr_t)"";
    iov[2].iov_len = 1;
    if (write_all(worker_out, iov, 3) != 0)
        _exit(70); /* the channel is gone: nobody waits for this worker */
}

/*
 * The channel's input: one buffer, read in large pieces, so a small frame
 * costs one read(). A frame is used in place, until the next read_frame().
 */
static char *worker_in;
static size_t worker_in_cap, worker_in_len, worker_in_off;

/* Makes `need` bytes from worker_in_off available. */
static void in_fill(size_t need)
{
    ssize_t n;
    if (worker_in_off == worker_in_len)
        worker_in_off = worker_in_len = 0;
    if (worker_in_off && worker_in_cap - worker_in_off < need) {
        memmove(worker_in, worker_in + worker_in_off, worker_in_len - worker_in_off);
        worker_in_len -= worker_in_off;
        worker_in_off = 0;
    }
    if (worker_in_cap < need) {
        char *p = realloc(worker_in, need + 65536);
        if (!p)
            _exit(72);
        worker_in = p;
        worker_in_cap = need + 65536;
    }
    while (worker_in_len - worker_in_off < need) {
        n = read(worker_chan, worker_in + worker_in_len, worker_in_cap - worker_in_len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            _exit(0); /* the host closed the channel */
        worker_in_len += (size_t)n;
    }
}

/* The next frame's payload, valid until the next call; its strings carry
 * their own NULs (frame_str stays inside the frame). */
static char *read_frame(struct faas_frame_hdr *h, size_t max)
{
    char *p;
    in_fill(sizeof *h);
    memcpy(h, worker_in + worker_in_off, sizeof *h);
    if (h->len > max)
        _exit(71);
    in_fill(sizeof *h + (size_t)h->len);
    p = worker_in + worker_in_off + sizeof *h;
    worker_in_off += sizeof *h + h->len;
    return p;
}

/* The i-th NUL-terminated string after `skip` bytes, or "" past the end. */
static const char *frame_str(const char *p, uint32_t len, size_t skip, int i)
{
    size_t o = skip;
    for (; i > 0 && o < len; i--)
        o += strnlen(p + o, len - o) + 1;
    return o < len && memchr(p + o, '\0', len - o) ? p + o : "";
}

/*
 * Streamed bytes: STREAM frames, written at once (the pipe's back-pressure
 * is the host's reading). The host may have said that nobody takes them
 * (STREAM_CLOSED): the only frame it sends while an invocation runs, so a
 * look at the channel before each write finds it; any other frame stays
 * for the main loop.
 */
static int stream_closed;

static void look_for_stream_closed(void)
{
    struct pollfd pf = { worker_chan, POLLIN, 0 };
    struct faas_frame_hdr h;

    while (!stream_closed) {
        if (worker_in_len - worker_in_off < sizeof h) {
            if (poll(&pf, 1, 0) != 1)
                return;
            in_fill(worker_in_len - worker_in_off + 1); /* one read: it is readable */
            continue;
        }
        memcpy(&h, worker_in + worker_in_off, sizeof h);
        if (h.type != FAAS_FRAME_STREAM_CLOSED)
            return;
        stream_closed = 1;
        if (h.len > FAAS_FRAME_SLACK)
            _exit(71);
        in_fill(sizeof h + (size_t)h.len); /* none has a payload: skipped all the same */
        worker_in_off += sizeof h + h.len;
    }
}

static int worker_stream(void *arg, const void *data, size_t len)
{
    const char *p = data;
    (void)arg;

    look_for_stream_closed();
    if (stream_closed)
        return FAAS_ECANCELED;
    do {
        size_t n = len < FAAS_STREAM_PIECE ? len : FAAS_STREAM_PIECE;
        struct faas_frame_hdr h = { (uint32_t)n, FAAS_FRAME_STREAM };
        struct iovec iov[2] = { { &h, sizeof h }, { (void *)(uintptr_t)p, n } };
        if (write_all(worker_out, iov, n ? 2 : 1) != 0)
            _exit(70); /* the channel is gone: nobody waits for this worker */
        p += n;
        len -= n;
    } while (len > 0);
    return 0;
}

static void send_result(int32_t status, const char *payload, uint64_t duration_ns, uint32_t type)
{
    const char *strs[1] = { payload };
    fflush(stdout);
    fflush(stderr);
    if (type == FAAS_FRAME_READY) {
        struct faas_frame_ready r;
        memset(&r, 0, sizeof r);
        r.status = status;
        r.init_ns = duration_ns;
        if (faas_frame_write(worker_out, type, &r, sizeof r, strs, payload ? 1 : 0) != 0)
            _exit(70);
    } else {
        struct faas_frame_result r;
        memset(&r, 0, sizeof r);
        r.status = status;
        r.duration_ns = duration_ns;
        r.maxrss_kb = maxrss_sampled(duration_ns);
        r.logged = (uint32_t)worker_wrote;
        worker_wrote = 0;
        if (faas_frame_write(worker_out, type, &r, sizeof r, strs, 1) != 0)
            _exit(70);
    }
}

static void send_init_error(const char *type, const char *msg, uint64_t init_ns)
{
    json_t *e = faas_error_object(type, msg);
    char *s = json_dumps(e, JSON_COMPACT | JSON_ENCODE_ANY);
    send_result(FAAS_EINIT, s ? s : "null", init_ns, FAAS_FRAME_READY);
    free(s);
    json_decref(e);
}

/* Finds the handler (and init, fini) as HELLO says. 0, or an init error sent. */
static int resolve(const struct faas_frame_hello *hi, const char *so_path, const char *symbol)
{
    char name[FAAS_NAME_MAX + 64], msg[512];
    void *dl;

    worker_fn.handler = (faas_handler_fn)(uintptr_t)hi->handler;
    worker_fn.opts.init = (faas_init_fn)(uintptr_t)hi->init;
    worker_fn.opts.fini = (faas_fini_fn)(uintptr_t)hi->fini;
    if (!so_path[0])
        return 0;
    dl = dlopen(so_path, RTLD_NOW | RTLD_LOCAL);
    if (!dl) {
        snprintf(msg, sizeof msg, "Error: cannot load %s", dlerror());
        send_init_error("Runtime.ImportModuleError", msg, 0);
        return -1;
    }
    *(void **)&worker_fn.handler = dlsym(dl, symbol);
    if (!worker_fn.handler) {
        snprintf(msg, sizeof msg, "%s is undefined or not exported in %s", symbol, so_path);
        send_init_error("Runtime.HandlerNotFound", msg, 0);
        return -1;
    }
    if (!worker_fn.opts.init) {
        snprintf(name, sizeof name, "%s_init", symbol);
        *(void **)&worker_fn.opts.init = dlsym(dl, name);
    }
    if (!worker_fn.opts.fini) {
        snprintf(name, sizeof name, "%s_fini", symbol);
        *(void **)&worker_fn.opts.fini = dlsym(dl, name);
    }
    return 0;
}

static void run_init(void)
{
    struct faas_ctx ctx;
    uint64_t ns = 0;

    memset(&ctx, 0, sizeof ctx);
    ctx.rt = &worker_rt;
    ctx.fn = &worker_fn;
    ctx.request_id = "";
    ctx.log_tail = &ctx.log_head;
    ctx.log_hook = send_log;
    worker_inst.fn = &worker_fn;
    worker_inst.initialized = worker_fn.opts.init == NULL;
    if (!worker_inst.initialized && faas_instance_init(&worker_inst, &ctx, &ns) != 0) {
        send_init_error(ctx.error_type, ctx.error_message, ns);
        _exit(0);
    }
    free(ctx.error_type);
    free(ctx.error_message);
    send_result(0, NULL, ns, FAAS_FRAME_READY);
}

static void run_invoke(const char *p, uint32_t len)
{
    struct faas_frame_invoke fi;
    const char *reqid, *trace, *cc, *evtext;
    struct faas_inv inv;
    json_error_t jerr;
    char *out;

    memcpy(&fi, p, sizeof fi);
    reqid = frame_str(p, len, sizeof fi, 0);
    trace = frame_str(p, len, sizeof fi, 1);
    cc = frame_str(p, len, sizeof fi, 2);
    evtext = frame_str(p, len, sizeof fi, 3);

    memset(&inv, 0, sizeof inv);
    inv.rt = &worker_rt;
    inv.fn = &worker_fn;
    inv.inst = &worker_inst;
    inv.timeout_ms = fi.timeout_ms;
    snprintf(inv.res.request_id, sizeof inv.res.request_id, "%s", reqid);
    inv.ctx.rt = &worker_rt;
    inv.ctx.fn = &worker_fn;
    inv.ctx.request_id = inv.res.request_id;
    /* A copy: the frame's buffer moves when a write looks at the channel. */
    inv.ctx.trace_id = trace[0] ? strdup(trace) : NULL;
    inv.ctx.log_tail = &inv.ctx.log_head;
    inv.ctx.log_hook = send_log;
    inv.ctx.stream = worker_stream;
    stream_closed = 0;
    /* JSON_ALLOW_NUL: a string may hold \u0000 in every isolation mode. */
    inv.event = json_loads(evtext, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
    if (cc[0])
        inv.ctx.client_context = json_loads(cc, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
    if (!inv.event) {
        send_result(errno == ENOMEM ? FAAS_EMEMLIMIT : FAAS_EINVAL, "null", 0, FAAS_FRAME_RESULT);
        json_decref(inv.ctx.client_context);
        free((char *)(uintptr_t)inv.ctx.trace_id);
        return;
    }
    faas_inv_execute(&inv);
    out = json_dumps(inv.exec_payload ? inv.exec_payload : json_null(),
                     JSON_COMPACT | JSON_ENCODE_ANY);
    if (out) {
        send_result(inv.exec_status, out, inv.duration_ns, FAAS_FRAME_RESULT);
        free(out);
    } else {
        send_result(FAAS_EMEMLIMIT, "null", inv.duration_ns, FAAS_FRAME_RESULT);
    }
    json_decref(inv.event);
    json_decref(inv.ctx.client_context);
    json_decref(inv.exec_payload);
    free(inv.ctx.error_type);
    free(inv.ctx.error_message);
    free((char *)(uintptr_t)inv.ctx.trace_id);
}

void faas_worker_main(int in, int out)
{
    static const struct faas_runtime_opts defaults = FAAS_RUNTIME_OPTS_INIT;
    struct faas_frame_hdr h;
    struct faas_frame_hello hi;
    struct rlimit rl;
    size_t max;
    char *p;

    worker_chan = in;
    worker_out = out;
    on_exit(exit_now, NULL);
    if (!worker_handlers_installed)
        install_fatal_handlers();
    watch_stdio();
    prctl(PR_SET_NAME, "faas-worker");
    if (getrlimit(RLIMIT_DATA, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
        worker_limit_kb = (uint64_t)rl.rlim_cur / 1024u;

    p = read_frame(&h, 64u * 1024u);
    if (h.type != FAAS_FRAME_HELLO || h.len < sizeof hi)
        _exit(71);
    memcpy(&hi, p, sizeof hi);
    worker_rt.opts = defaults;
    worker_rt.opts.max_sync_payload = (size_t)hi.max_payload;
    worker_fn.rt = &worker_rt;
    snprintf(worker_fn.name, sizeof worker_fn.name, "%s", frame_str(p, h.len, sizeof hi, 0));
    worker_fn.opts.memory_mb = hi.memory_mb;
    worker_fn.opts.init_timeout_ms = hi.init_timeout_ms;
    worker_fn.refs = 1;
    if (resolve(&hi, frame_str(p, h.len, sizeof hi, 1), frame_str(p, h.len, sizeof hi, 2)) != 0)
        _exit(0);
    run_init();

    max = (size_t)hi.max_payload * 2 + FAAS_FRAME_SLACK;
    for (;;) {
        p = read_frame(&h, max);
        if (h.type == FAAS_FRAME_INVOKE && h.len >= sizeof(struct faas_frame_invoke)) {
            run_invoke(p, h.len);
        } else if (h.type == FAAS_FRAME_EXIT) {
            if (worker_inst.initialized && worker_fn.opts.fini)
                worker_fn.opts.fini(worker_inst.state);
            fflush(stdout);
            fflush(stderr);
            _exit(0);
        }
    }
}
