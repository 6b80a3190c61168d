/*
 * exec_process.c - instances that are processes: PROCESS functions (native
 * workers forked from the zygote) and COMMAND functions (external runtimes
 * speaking the Lambda Runtime API, exec_command.c).
 *
 * One record per process (struct faas_xinst), linked to its pool instance
 * while the pool uses it. Its life on the host's loop:
 *
 *   spawn ──> starting ──READY──> ready ──INVOKE──> busy ──RESULT──> ready
 *     │          │                  │                 │
 *     └──────────┴── exit, deadline (SIGKILL), channel lost ──> dead
 *
 * Spawning asks the zygote over its control channel (or forks here when
 * the runtime has none) and passes the new process's descriptors along; a
 * native worker's HELLO is written at once, so the worker starts without
 * waiting for the host to learn its pid. The init phase is bounded by
 * init_timeout_ms (spawn to READY, what Lambda reports as Init Duration),
 * an invocation by its timeout: either deadline kills the process group
 * with SIGKILL and the caller gets FAAS_EINIT or FAAS_ETIMEDOUT at once.
 *
 * A process's end is known from its exit status — the zygote's EXITED
 * report, or a pidfd when the host forked it — never from SIGCHLD, which
 * stays the host's. The status, the DYING frame a native worker sends from
 * its fatal-signal handler, and the peak memory tell FAAS_ECRASHED from
 * FAAS_EMEMLIMIT. A record lives until its process is reaped, even after
 * its instance is gone; the pool's instance never waits for that.
 *
 * stdout and stderr of every process are one pipe, read on the loop and cut
 * into lines: each line belongs to the invocation running then (so it
 * carries its request id), before its REPORT — the pipe is drained when a
 * result arrives. *
 * It is the executor faas_exec_process (exec.h): the pool reaches it only
 * through that table, and it reports outcomes, ready instances and dead
 * idle ones through rt->exec_report, never by calling the pool or
 * invoke.c by name.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <event2/event.h>

#include "exec_process.h"
#include "faas_int.h"

/* Bytes of channel buffer an idle process keeps; above, a buffer grown
 * for one large payload is given back once it is empty. */
#define BUF_KEEP ((size_t)1024 * 1024)

struct faas_xrt {
    struct faas_runtime *rt;
    pid_t zpid;              /* 0: no zygote, the host forks */
    int zfd;                 /* control channel, -1 when none */
    struct event *zev;
    struct faas_list spawning; /* records waiting for SPAWNED, in order */
    struct faas_list procs;  /* every record whose process may be alive */
    uint32_t next_tag;
    /* SPAWN requests the control socket did not take yet (a burst of cold
     * starts while the zygote's replies wait to be read): sent in order
     * from a write event, never by blocking the loop. */
    struct faas_list zqueue;
    struct event *zwev;
};

struct zqueued {
    struct faas_list link;
    char *msg;
    size_t len;
    int fds[3];
    int nfds;
};

struct faas_xinst {
    struct faas_list link;   /* xrt->procs */
    struct faas_list slink;  /* xrt->spawning until SPAWNED */
    struct faas_xrt *xrt;
    struct faas_instance *inst; /* NULL once the pool dropped it */
    struct faas_inv *inv;    /* the invocation it runs or starts for */
    int command;
    uint32_t tag;
    pid_t pid;               /* 0 until known */
    int pidfd;
    struct event *pid_ev;    /* no zygote: the pidfd */
    int chan;                /* native: the channel's read end, -1 once closed */
    int chanw;               /* its write end (to the worker) */
    int chank;               /* the worker's read end, kept open here so a
                                write to a dead worker is EAGAIN at worst,
                                never SIGPIPE */
    struct event *rev, *wev;
    char *rbuf;
    size_t rlen, rcap;
    char *wbuf;
    size_t wlen, woff, wcap;
    int logfd;
    struct event *log_ev;
    char line[FAAS_LOGLINE_MAX];
    size_t linelen;
    int line_over;           /* the line read is longer: the rest is dropped */
    struct event *timer;
    uint64_t spawn_ns;
    uint64_t init_ns;
    uint32_t memory_mb;
    int ready;               /* init done */
    int killed;              /* SIGKILL sent by us */
    int exited;              /* reaped */
    int dying_seen;
    int lost;                /* the zygote died, and the process with it */
    int chan_lost;           /* it closed its channel: we killed it */
    int sent;                /* inv's INVOKE is written (a cold start's) */
    int exit_sent;           /* asked to run fini and exit */
    int res_status;
    int res_logged;          /* with it: lines in the log pipe to read first */
    json_t *res_payload;     /* a RESULT came: finished on the next pass */
    struct event *done_ev;
    int reap_poll;           /* no zygote and no pidfd: wait4 on a timer */
    uint64_t hwm_kb;         /* a command's peak memory, sampled */
    uint64_t hwm_at_ns;
    struct faas_fr_dying dying;
    unsigned busy;           /* inside one of its callbacks */
};

static void x_maybe_free(struct faas_xinst *xi);
static void x_reap_soon(struct faas_xinst *xi);
static int x_read_chan(struct faas_xinst *xi);

static void x_disarm(struct faas_xinst *xi)
{
    if (xi->timer)
        event_del(xi->timer);
}

/* Forgets a RESULT kept for the next pass. */
static void x_drop_result(struct faas_xinst *xi)
{
    json_decref(xi->res_payload);
    xi->res_payload = NULL;
}

/* ---- small helpers --------------------------------------------------- */

/* A pipe end just made: its only status flag is the one set here. */
static void set_nonblock(int fd)
{
    fcntl(fd, F_SETFL, O_NONBLOCK);
}

static void close_fd(int *fd)
{
    if (*fd >= 0) {
        close(*fd);
        *fd = -1;
    }
}

static void free_ev(struct event **ev)
{
    if (*ev) {
        event_free(*ev);
        *ev = NULL;
    }
}

/* Peak resident memory of a live process, from /proc (0 if unknown). */
static uint64_t proc_hwm_kb(pid_t pid)
{
    char path[64], buf[4096];
    ssize_t n;
    int fd;
    char *p;

    if (pid <= 0)
        return 0;
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    p = strstr(buf, "VmHWM:");
    return p ? strtoull(p + 6, NULL, 10) : 0;
}

/* ---- log lines ------------------------------------------------------- */

static void x_line(struct faas_xinst *xi, const char *text, size_t len)
{
    struct faas_inv *inv = xi->inv;
    struct faas_runtime *rt = xi->xrt->rt;

    if (len >= FAAS_LOGLINE_MAX)
        len = FAAS_LOGLINE_MAX - 1;
    if (!inv) {
        /* Between invocations (a min_warm init, a fini): no request id. */
        struct faas_log_record rec;
        char buf[FAAS_LOGLINE_MAX];
        if (!rt->opts.log || !xi->inst)
            return;
        faas_log_escape(buf, sizeof buf, text, len);
        memset(&rec, 0, sizeof rec);
        rec.kind = FAAS_LOG_LINE;
        rec.function = xi->inst->fn->name;
        rec.request_id = "";
        rec.line = buf;
        rt->opts.log(&rec, rt->opts.log_arg);
        return;
    }
    faas_ctx_add_line(&inv->ctx, text, len);
}

/* Reads what the pipe holds, cutting lines. Returns 0 at end-of-file. */
static int x_read_log(struct faas_xinst *xi)
{
    char buf[8192];
    for (;;) {
        ssize_t n = read(xi->logfd, buf, sizeof buf), i;
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return 1;
        if (n == 0) {
            if (xi->linelen && !xi->line_over)
                x_line(xi, xi->line, xi->linelen);
            xi->linelen = 0;
            return 0;
        }
        for (i = 0; i < n; i++) {
            char c = buf[i];
            if (c == '\n') {
                if (!xi->line_over)
                    x_line(xi, xi->line, xi->linelen);
                xi->linelen = 0;
                xi->line_over = 0;
            } else if (xi->linelen == sizeof xi->line - 1) {
                /* One line is one log line: what does not fit is cut. */
                if (!xi->line_over)
                    x_line(xi, xi->line, xi->linelen);
                xi->line_over = 1;
            } else {
                xi->line[xi->linelen++] = c;
            }
        }
        if ((size_t)n < sizeof buf)
            return 1;
    }
}

/* Reads what is in the log pipe now: lines written before an end belong
 * to the invocation that ends. */
static void x_drain_log(struct faas_xinst *xi)
{
    if (xi->logfd >= 0 && !x_read_log(xi)) {
        free_ev(&xi->log_ev);
        close_fd(&xi->logfd);
        x_reap_soon(xi); /* its output ended: so, probably, has it */
    }
}

static void log_cb(evutil_socket_t fd, short what, void *arg)
{
    struct faas_xinst *xi = arg;
    struct faas_runtime *rt = xi->xrt->rt;
    (void)fd;
    (void)what;
    faas_rt_enter(rt);
    xi->busy++;
    x_drain_log(xi);
    xi->busy--;
    x_maybe_free(xi);
    faas_rt_leave(rt);
}

/* ---- killing and ending ---------------------------------------------- */

/* Without a pidfd, a process that closed its output or was killed is
 * looked for with wait4 every 10 ms until it is gone. */
static void x_reap_soon(struct faas_xinst *xi)
{
    struct timeval tv = { 0, 10000 };
    if (xi->reap_poll && xi->pid_ev && !xi->exited && !event_pending(xi->pid_ev, EV_TIMEOUT, NULL))
        event_add(xi->pid_ev, &tv);
}

static void x_kill(struct faas_xinst *xi)
{
    if (xi->exited || xi->killed)
        return;
    xi->killed = 1;
    if (xi->pid <= 0)
        return; /* SPAWNED will tell the pid: killed then */
    if (xi->pidfd >= 0) {
        /* ESRCH: already reaped by the zygote; the pid may be another's
         * by now, so nothing is sent by number. */
        if (syscall(SYS_pidfd_send_signal, xi->pidfd, SIGKILL, NULL, 0) != 0)
            return;
    } else {
        kill(xi->pid, SIGKILL);
    }
    kill(-xi->pid, SIGKILL); /* what it forked */
    x_reap_soon(xi);
}

/* Whether the process still runs, as far as its pidfd tells (1 without
 * one). */
static int x_alive(const struct faas_xinst *xi)
{
    struct pollfd p;
    if (xi->pidfd < 0)
        return 1;
    p.fd = xi->pidfd;
    p.events = POLLIN;
    return poll(&p, 1, 0) == 0;
}

/* The process can serve no more: its instance is not handed to anyone;
 * idle, it leaves the pool now (min_warm refilled), not at its exit report. */
static void x_retire(struct faas_xinst *xi)
{
    struct faas_instance *inst = xi->inst;

    if (!inst)
        return;
    inst->retire = 1;
    if (xi->inv || !xi->ready || faas_list_empty(&inst->link))
        return; /* busy or starting: its end comes through the invocation */
    xi->xrt->rt->exec_report->retired(inst);
}

/* Closes the channel and stops reading it. */
static void x_close_chan(struct faas_xinst *xi)
{
    free_ev(&xi->rev);
    free_ev(&xi->wev);
    close_fd(&xi->chan);
    close_fd(&xi->chanw);
    close_fd(&xi->chank);
    free(xi->rbuf);
    free(xi->wbuf);
    xi->rbuf = xi->wbuf = NULL;
    xi->rlen = xi->rcap = xi->wlen = xi->woff = xi->wcap = 0;
}

static void x_free(struct faas_xinst *xi)
{
    json_decref(xi->res_payload);
    free_ev(&xi->done_ev);
    x_close_chan(xi);
    free_ev(&xi->log_ev);
    close_fd(&xi->logfd);
    free_ev(&xi->timer);
    free_ev(&xi->pid_ev);
    close_fd(&xi->pidfd);
    faas_list_remove(&xi->link);
    faas_list_remove(&xi->slink);
    free(xi);
}

/* Frees a record nobody needs: detached from its instance, its process
 * reaped (or never started), and not inside one of its callbacks. */
static void x_maybe_free(struct faas_xinst *xi)
{
    if (xi->busy == 0 && !xi->inst && (xi->exited || xi->pid < 0))
        x_free(xi);
}


/* The invocation ends with this outcome (payload taken over). */
static void x_finish_inv(struct faas_xinst *xi, int status, json_t *payload)
{
    struct faas_inv *inv = xi->inv;
    struct faas_runtime *rt = xi->xrt->rt;

    x_disarm(xi);
    x_drop_result(xi); /* a RESULT waiting for the next pass loses to this */
    xi->inv = NULL;
    inv->exec_status = status;
    json_decref(inv->exec_payload);
    inv->exec_payload = payload ? payload : json_null();
    inv->end_ns = faas_now_ns(rt);
    if (inv->run_start_ns && status != FAAS_ETIMEDOUT && !inv->duration_ns)
        inv->duration_ns = inv->end_ns - inv->run_start_ns;
    if (status != 0 && xi->inst && (status == FAAS_ECRASHED || status == FAAS_EMEMLIMIT ||
                                    status == FAAS_ETIMEDOUT || status == FAAS_EINIT ||
                                    status == FAAS_ECANCELED))
        xi->inst->retire = 1;
    atomic_store(&inv->phase, FAAS_PHASE_DONE);
    rt->exec_report->finished(inv);
}

/* The RESULT kept for the next pass: ends its invocation now. */
static void x_finish_result(struct faas_xinst *xi)
{
    json_t *payload = xi->res_payload;
    xi->res_payload = NULL;
    x_finish_inv(xi, xi->res_status, payload);
}

static json_t *error_obj(const char *type, const char *fmt, ...) FAAS_PRINTF(2, 3);

static json_t *error_obj(const char *type, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return faas_error_object(type, msg);
}

/* The instance failed to become ready: the waiting invocation or the pool's
 * min_warm job hears it. */
static void x_init_failed(struct faas_xinst *xi, json_t *error)
{
    struct faas_instance *inst = xi->inst;

    x_drain_log(xi); /* what init printed belongs to the invocation */
    /* Its peak, while /proc still has it (0 once reaped: known then). */
    if (inst && xi->inv && !xi->inv->x_maxrss_kb && !xi->exited)
        xi->inv->x_maxrss_kb = proc_hwm_kb(xi->pid);
    x_kill(xi);
    if (!inst) {
        json_decref(error);
        return;
    }
    inst->initialized = 0;
    if (xi->inv) {
        xi->inv->init_ns = faas_now_ns(xi->xrt->rt) - xi->spawn_ns;
        x_finish_inv(xi, FAAS_EINIT, error);
        return;
    }
    json_decref(error);
    x_disarm(xi);
    xi->xrt->rt->exec_report->job_done(&inst->job); /* a min_warm start that failed */
}

static void lower_first(char *s)
{
    if (s[0] >= 'A' && s[0] <= 'Z')
        s[0] = (char)(s[0] - 'A' + 'a');
}

/* What an exit means for the invocation it interrupted. */
static int x_classify(struct faas_xinst *xi, int wstatus, uint64_t maxrss_kb, json_t **err)
{
    uint64_t mem_kb = (uint64_t)xi->memory_mb * 1024u;
    char how[96];
    int memory = 0;

    if (xi->lost) {
        *err = error_obj("Runtime.ExitError", "Runtime exited: the zygote is gone");
        return FAAS_ECRASHED;
    }
    if (WIFSIGNALED(wstatus)) {
        snprintf(how, sizeof how, "signal: %s", strsignal(WTERMSIG(wstatus)));
        lower_first(how + 8);
    } else {
        snprintf(how, sizeof how, "exit status %d", WEXITSTATUS(wstatus));
    }
    if (xi->chan_lost && WIFSIGNALED(wstatus) && WTERMSIG(wstatus) == SIGKILL) {
        *err = error_obj("Runtime.ExitError",
                         "Runtime exited without providing a reason (it closed its channel)");
        return FAAS_ECRASHED;
    }
    if (xi->dying_seen && xi->dying.limit_kb && mem_kb) {
        /* Less than a tenth of memory_mb left under the limit (half, when
         * an allocation had just failed): it died of its memory. */
        uint64_t left = xi->dying.limit_kb > xi->dying.data_kb
                            ? xi->dying.limit_kb - xi->dying.data_kb : 0;
        memory = left * 10 < mem_kb || (xi->dying.enomem && left * 2 < mem_kb);
    } else if (mem_kb) {
        /* An outside SIGKILL of a process that had used half its memory or
         * more is taken for the kernel's (cgroup) OOM killer. A native
         * worker says itself when memory ran out; of a command's end at
         * its limit (a runtime aborting on a failed allocation) only the
         * peak tells. */
        memory = (WIFSIGNALED(wstatus) && WTERMSIG(wstatus) == SIGKILL &&
                  maxrss_kb * 2 >= mem_kb) ||
                 (xi->command && maxrss_kb * 10 >= mem_kb * 8);
    }
    if (memory) {
        *err = error_obj("Runtime.OutOfMemory",
                         "Runtime exited with error: %s (memory limit of %u MB reached)", how,
                         xi->memory_mb);
        return FAAS_EMEMLIMIT;
    }
    *err = error_obj("Runtime.ExitError", "Runtime exited with error: %s", how);
    return FAAS_ECRASHED;
}

/* The process is gone (reaped). */
static void x_exited(struct faas_xinst *xi, int wstatus, uint64_t maxrss_kb)
{
    struct faas_instance *inst = xi->inst;
    json_t *err = NULL;
    int status;

    xi->exited = 1;
    xi->busy++;
    /* Dead: whatever finishes below must not hand it to anyone. */
    if (inst)
        inst->retire = 1;
    x_drain_log(xi);
    /* What it wrote before it ended is all in the pipe: READY, its
     * RESULT, a DYING frame. They come first. */
    while (xi->chan >= 0 && x_read_chan(xi) > 0)
        ;
    inst = xi->inst; /* a READY with an error may have dropped it */
    if (xi->res_payload && xi->inv) {
        x_finish_result(xi); /* it answered, then ended: the answer stands */
        inst = xi->inst;
    }
    if (inst) {
        if (!maxrss_kb && xi->dying_seen)
            maxrss_kb = xi->dying.maxrss_kb;
        if (xi->killed)
            status = FAAS_ECRASHED, err = error_obj("Runtime.ExitError", "Runtime was killed");
        else
            status = x_classify(xi, wstatus, maxrss_kb, &err);
        if (!xi->ready) {
            if (xi->inv)
                xi->inv->x_maxrss_kb = maxrss_kb;
            x_init_failed(xi, err);
        } else if (xi->inv) {
            xi->inv->x_maxrss_kb = maxrss_kb;
            x_finish_inv(xi, status, err);
        } else {
            json_decref(err);
            x_retire(xi); /* died idle: out of the pool, min_warm refilled */
        }
    }
    xi->busy--;
    x_maybe_free(xi);
}

/* ---- the channel (native workers) ------------------------------------ */

static void x_flush(struct faas_xinst *xi)
{
    while (xi->woff < xi->wlen) {
        ssize_t n = write(xi->chanw, xi->wbuf + xi->woff, xi->wlen - xi->woff);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            if (errno == EAGAIN)
                event_add(xi->wev, NULL);
            return; /* EPIPE: the read side sees the end */
        }
        xi->woff += (size_t)n;
    }
    xi->woff = xi->wlen = 0;
    /* One large event must not keep its buffer for the process's life. */
    if (xi->wcap > BUF_KEEP) {
        free(xi->wbuf);
        xi->wbuf = NULL;
        xi->wcap = 0;
    }
}

static void write_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    x_flush(arg);
}

/* Appends to the output buffer. 0 or -1 (out of memory). */
static int wb_put(struct faas_xinst *xi, const void *p, size_t n)
{
    if (xi->wlen + n > xi->wcap) {
        size_t cap = xi->wcap ? xi->wcap : 4096;
        char *q;
        while (cap < xi->wlen + n)
            cap *= 2;
        if (!(q = realloc(xi->wbuf, cap)))
            return -1;
        xi->wbuf = q;
        xi->wcap = cap;
    }
    memcpy(xi->wbuf + xi->wlen, p, n);
    xi->wlen += n;
    return 0;
}

static int wb_dump_cb(const char *buf, size_t size, void *arg)
{
    return wb_put(arg, buf, size);
}

/* Starts a frame: its header, completed by frame_end. */
static size_t frame_begin(struct faas_xinst *xi, uint32_t type, const void *fixed, size_t flen,
                          int *err)
{
    struct faas_frame_hdr h = { 0, type };
    size_t start = xi->wlen;
    if (wb_put(xi, &h, sizeof h) != 0 || (flen && wb_put(xi, fixed, flen) != 0))
        *err = 1;
    return start;
}

/* A string and its NUL. */
static void frame_str_put(struct faas_xinst *xi, const char *str, size_t len, int *err)
{
    if (!*err && (wb_put(xi, str, len) != 0 || wb_put(xi, "", 1) != 0))
        *err = 1;
}

/* JSON text (compact) and its NUL, straight into the buffer. */
static void frame_json_put(struct faas_xinst *xi, json_t *j, int *err)
{
    if (!*err && (json_dump_callback(j ? j : json_null(), wb_dump_cb, xi,
                                     JSON_COMPACT | JSON_ENCODE_ANY) != 0 ||
                  wb_put(xi, "", 1) != 0))
        *err = 1;
}

/* Completes the frame begun at `start` and writes what the socket takes
 * now; after an error the frame is taken back. 0 or FAAS_ENOMEM. */
static int frame_end(struct faas_xinst *xi, size_t start, int err)
{
    uint32_t len;
    if (err || xi->wlen - start - sizeof(struct faas_frame_hdr) > UINT32_MAX) {
        xi->wlen = start;
        return FAAS_ENOMEM;
    }
    len = (uint32_t)(xi->wlen - start - sizeof(struct faas_frame_hdr));
    memcpy(xi->wbuf + start, &len, sizeof len);
    if (xi->woff == 0 || !event_pending(xi->wev, EV_WRITE, NULL))
        x_flush(xi);
    return 0;
}

/* Queues a frame of strings and writes what the socket takes now. */
static int x_send_frame(struct faas_xinst *xi, uint32_t type, const void *fixed, size_t flen,
                        const char *const *strs, const size_t *lens, size_t nstrs)
{
    size_t i, start;
    int err = 0;

    if (xi->chan < 0)
        return FAAS_ECRASHED;
    start = frame_begin(xi, type, fixed, flen, &err);
    for (i = 0; i < nstrs; i++)
        frame_str_put(xi, strs[i], lens[i], &err);
    return frame_end(xi, start, err);
}

static const char *nth_str(const char *p, uint32_t len, size_t skip, int i)
{
    size_t o = skip;
    for (; i > 0 && o < len; i--)
        o += strnlen(p + o, len - o) + 1;
    return o < len ? p + o : "";
}

static json_t *parse_json(const char *s, size_t len)
{
    json_error_t e;
    json_t *j = json_loadb(s, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &e);
    return j ? j : json_null();
}

static void x_ready(struct faas_xinst *xi, int status, json_t *error);

/* One frame from the worker. */
static void x_frame(struct faas_xinst *xi, uint32_t type, const char *p, uint32_t len)
{
    struct faas_runtime *rt = xi->xrt->rt;

    switch (type) {
    case FAAS_FR_LOG:
        x_line(xi, p, strnlen(p, len));
        break;
    case FAAS_FR_READY: {
        struct faas_fr_ready r;
        if (len < sizeof r || xi->ready)
            break;
        memcpy(&r, p, sizeof r);
        if (r.status != 0) {
            const char *e = nth_str(p, len, sizeof r, 0);
            x_ready(xi, FAAS_EINIT, parse_json(e, strnlen(e, len - (size_t)(e - p))));
        } else {
            x_ready(xi, 0, NULL);
        }
        break;
    }
    case FAAS_FR_RESULT: {
        struct faas_fr_result r;
        const char *body;
        if (len < sizeof r || !xi->inv)
            break;
        memcpy(&r, p, sizeof r);
        body = nth_str(p, len, sizeof r, 0);
        xi->inv->duration_ns = r.duration_ns ? r.duration_ns : 1;
        xi->inv->x_maxrss_kb = r.maxrss_kb;
        /* Finished on the loop's next pass, after what the loop has ready
         * then; when the handler wrote to stdout or stderr, after reading
         * the log pipe too: those lines belong to this invocation. */
        x_disarm(xi);
        json_decref(xi->res_payload);
        xi->res_payload = parse_json(body, strnlen(body, len - sizeof r));
        xi->res_status = r.status;
        xi->res_logged = r.logged != 0;
        event_active(xi->done_ev, EV_TIMEOUT, 1);
        break;
    }
    case FAAS_FR_DYING:
        if (len >= sizeof xi->dying) {
            memcpy(&xi->dying, p, sizeof xi->dying);
            xi->dying_seen = 1;
        }
        break;
    default:
        break;
    }
    (void)rt;
}

/* Reads what the channel holds now (one read) and handles its complete
 * frames. 1: something was read; 0: nothing there; -1: the channel is
 * closed (end-of-file, or a frame out of bounds). */
static int x_read_chan(struct faas_xinst *xi)
{
    size_t max = xi->xrt->rt->opts.max_sync_payload * 2 + FAAS_FRAME_SLACK, off = 0;
    struct faas_frame_hdr h;
    ssize_t n;

    if (xi->chan < 0)
        return -1;
    if (xi->rcap - xi->rlen < 65536) {
        size_t cap = xi->rcap ? xi->rcap * 2 : 65536 * 2;
        char *p = realloc(xi->rbuf, cap);
        if (!p)
            return 0; /* try again on the next readiness */
        xi->rbuf = p;
        xi->rcap = cap;
    }
    n = read(xi->chan, xi->rbuf + xi->rlen, xi->rcap - xi->rlen);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return 0;
    if (n <= 0) {
        /* The worker closed its channel, or ended: it cannot answer any
         * more. Still alive, it closed the channel itself: killed here. */
        if (!xi->exited && x_alive(xi)) {
            xi->chan_lost = 1;
            x_kill(xi);
            if (xi->inst && (xi->inv || !xi->ready))
                xi->killed = 0; /* its exit still tells the invocation why */
        }
        x_close_chan(xi);
        x_reap_soon(xi);
        x_retire(xi);
        return -1;
    }
    xi->rlen += (size_t)n;
    while (xi->chan >= 0 && xi->rlen - off >= sizeof h) {
        memcpy(&h, xi->rbuf + off, sizeof h);
        if (h.len > max) {
            x_close_chan(xi);
            x_kill(xi);
            xi->chan_lost = 1;
            xi->killed = 0;
            x_retire(xi);
            return -1;
        }
        if (xi->rlen - off - sizeof h < h.len) {
            /* Incomplete: make room for all of it. */
            if (sizeof h + h.len > xi->rcap) {
                char *p = realloc(xi->rbuf, sizeof h + h.len);
                if (p) {
                    xi->rbuf = p;
                    xi->rcap = sizeof h + h.len;
                }
            }
            break;
        }
        off += sizeof h;
        x_frame(xi, h.type, xi->rbuf + off, h.len);
        off += h.len;
        if (!xi->rbuf)
            return -1; /* the channel was closed meanwhile */
    }
    if (off) {
        memmove(xi->rbuf, xi->rbuf + off, xi->rlen - off);
        xi->rlen -= off;
    }
    /* Nor one large result its buffer (kept non-NULL: NULL means closed). */
    if (xi->rlen == 0 && xi->rcap > BUF_KEEP) {
        char *p = realloc(xi->rbuf, 65536 * 2);
        if (p) {
            xi->rbuf = p;
            xi->rcap = 65536 * 2;
        }
    }
    return 1;
}

static void read_cb(evutil_socket_t fd, short what, void *arg)
{
    struct faas_xinst *xi = arg;
    struct faas_runtime *rt = xi->xrt->rt;

    (void)fd;
    (void)what;
    faas_rt_enter(rt);
    xi->busy++;
    x_read_chan(xi);
    xi->busy--;
    x_maybe_free(xi);
    faas_rt_leave(rt);
}

static void done_cb(evutil_socket_t fd, short what, void *arg)
{
    struct faas_xinst *xi = arg;
    struct faas_runtime *rt = xi->xrt->rt;

    (void)fd;
    (void)what;
    if (!xi->res_payload || !xi->inv)
        return;
    faas_rt_enter(rt);
    xi->busy++;
    if (xi->res_logged)
        x_drain_log(xi); /* its stdout and stderr lines, before its end */
    x_finish_result(xi);
    xi->busy--;
    x_maybe_free(xi);
    faas_rt_leave(rt);
}

/* ---- deadlines -------------------------------------------------------- */

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct faas_xinst *xi = arg;
    struct faas_runtime *rt = xi->xrt->rt;
    struct faas_inv *inv = xi->inv;
    char msg[96];

    (void)fd;
    (void)what;
    faas_rt_enter(rt);
    xi->busy++;
    if (!xi->inst) {
        x_kill(xi); /* asked to exit and did not: fini overran */
    } else if (!xi->ready) {
        uint32_t ms = xi->inst ? xi->inst->fn->opts.init_timeout_ms : 0;
        x_kill(xi);
        x_init_failed(xi, error_obj("Runtime.InitError", "Init timed out after %.2f seconds",
                                    (double)ms / 1000.0));
    } else if (inv) {
        inv->x_maxrss_kb = proc_hwm_kb(xi->pid);
        x_drain_log(xi);
        x_kill(xi);
        inv->duration_ns = (uint64_t)inv->timeout_ms * 1000000u;
        snprintf(msg, sizeof msg, "Task timed out after %.2f seconds",
                 (double)inv->timeout_ms / 1000.0);
        x_finish_inv(xi, FAAS_ETIMEDOUT, faas_error_object("Sandbox.Timedout", msg));
    }
    xi->busy--;
    x_maybe_free(xi);
    faas_rt_leave(rt);
}

static void x_arm(struct faas_xinst *xi, uint64_t ms)
{
    struct timeval tv;
    if (ms == 0) {
        x_disarm(xi);
        return;
    }
    if (!xi->timer && !(xi->timer = event_new(xi->xrt->rt->base, -1, 0, timer_cb, xi)))
        return; /* no deadline then: the process runs until it answers */
    tv = faas_ms_to_tv(ms);
    event_add(xi->timer, &tv);
}

/* ---- sending an invocation ------------------------------------------ */

/* Ends inv from the loop, later: it could not be started. */
static void fail_later(struct faas_inv *inv, int status, const char *etype, const char *emsg)
{
    inv->preset = 1;
    inv->res.status = status;
    inv->res.payload = faas_error_object(etype, emsg);
    inv->res.cold = inv->cold;
    inv->inst->retire = 1;
    faas_list_remove(&inv->link);
    inv->rt->exec_report->defer(inv);
}


/* Writes inv's INVOKE frame (native workers). 0, FAAS_ENOMEM (inv then
 * ends from the loop) or FAAS_ECRASHED (the exit report ends it). */
static int x_write_invoke(struct faas_xinst *xi, struct faas_inv *inv)
{
    struct faas_fr_invoke fi;
    const char *trace = inv->trace_id ? inv->trace_id : "";
    size_t start;
    int err = 0, rc;

    if (xi->chan < 0)
        return FAAS_ECRASHED;
    memset(&fi, 0, sizeof fi);
    fi.timeout_ns = (uint64_t)inv->timeout_ms * 1000000u;
    fi.timeout_ms = inv->timeout_ms;
    start = frame_begin(xi, FAAS_FR_INVOKE, &fi, sizeof fi, &err);
    frame_str_put(xi, inv->res.request_id, strlen(inv->res.request_id), &err);
    frame_str_put(xi, trace, strlen(trace), &err);
    if (inv->client_context)
        frame_json_put(xi, inv->client_context, &err);
    else
        frame_str_put(xi, "", 0, &err);
    frame_json_put(xi, inv->event, &err);
    rc = frame_end(xi, start, err);
    if (rc == FAAS_ENOMEM) {
        /* Maybe inside faas_invoke: the result comes from the loop. */
        xi->inv = NULL;
        x_disarm(xi);
        fail_later(inv, FAAS_ENOMEM, "Runtime.OutOfMemory", "the host is out of memory");
    }
    return rc;
}

/* inv's handler starts now: its deadline runs from here. */
static void x_start_run(struct faas_xinst *xi, struct faas_inv *inv)
{
    uint64_t now = faas_now_ns(xi->xrt->rt), t = (uint64_t)inv->timeout_ms * 1000000u;
    inv->run_start_ns = now;
    atomic_store(&inv->ctx.deadline_ns, t ? now + t : 0);
    atomic_store(&inv->phase, FAAS_PHASE_RUN);
    x_arm(xi, inv->timeout_ms);
}

/* Starts inv on a ready process. */
static void x_send(struct faas_xinst *xi, struct faas_inv *inv)
{
    x_start_run(xi, inv);
    if (xi->command)
        faas_cmd_send(xi->inst, inv);
    else
        x_write_invoke(xi, inv);
}

static void x_ready(struct faas_xinst *xi, int status, json_t *error)
{
    struct faas_instance *inst = xi->inst;
    struct faas_inv *inv = xi->inv;

    if (xi->ready)
        return;
    xi->init_ns = faas_now_ns(xi->xrt->rt) - xi->spawn_ns;
    x_disarm(xi);
    if (status != 0) {
        if (!error)
            error = faas_error_object("Runtime.InitError", "init failed");
        x_init_failed(xi, error);
        return;
    }
    json_decref(error);
    xi->ready = 1;
    if (!inst)
        return;
    if (xi->exited || (!xi->command && xi->chan < 0)) {
        /* Ready, and already gone (read while its exit is handled). */
        if (!inv) {
            inst->initialized = 0;
            x_disarm(xi);
            xi->xrt->rt->exec_report->job_done(&inst->job);
        }
        return; /* an invocation learns it from the exit */
    }
    inst->initialized = 1;
    if (inv) {
        inv->init_ns = xi->init_ns;
        if (xi->sent)
            x_start_run(xi, inv); /* its INVOKE went with the HELLO */
        else
            x_send(xi, inv);
    } else {
        xi->xrt->rt->exec_report->job_done(&inst->job); /* min_warm: hand over or idle */
    }
}

void faas_x_ready(struct faas_instance *inst, int status, json_t *error)
{
    struct faas_xinst *xi = inst ? inst->x : NULL;
    if (!xi) {
        json_decref(error);
        return;
    }
    xi->busy++;
    x_ready(xi, status, error);
    xi->busy--;
    x_maybe_free(xi);
}

void faas_x_result(struct faas_instance *inst, int status, json_t *payload)
{
    struct faas_xinst *xi = inst ? inst->x : NULL;
    if (!xi || !xi->inv) {
        json_decref(payload);
        return;
    }
    xi->busy++;
    {
        /* Peak memory from /proc, read at most every 100 ms: it costs as
         * much as the rest of a warm invocation. */
        uint64_t now = faas_now_ns(xi->xrt->rt);
        if (!xi->hwm_kb || now - xi->hwm_at_ns >= 100000000u) {
            uint64_t kb = proc_hwm_kb(xi->pid);
            if (kb)
                xi->hwm_kb = kb;
            xi->hwm_at_ns = now;
        }
        xi->inv->x_maxrss_kb = xi->hwm_kb;
    }
    x_finish_inv(xi, status, payload);
    xi->busy--;
    x_maybe_free(xi);
}

/* ---- spawning --------------------------------------------------------- */

static void pid_cb(evutil_socket_t fd, short what, void *arg)
{
    struct faas_xinst *xi = arg;
    struct faas_runtime *rt = xi->xrt->rt;
    struct rusage ru;
    int st = 0;
    pid_t r;

    (void)fd;
    (void)what;
    memset(&ru, 0, sizeof ru);
    r = wait4(xi->pid, &st, WNOHANG, &ru);
    if (r == 0) {
        if (xi->reap_poll) {
            struct timeval tv = { 0, 10000 };
            event_add(xi->pid_ev, &tv);
        }
        return;
    }
    free_ev(&xi->pid_ev);
    faas_rt_enter(rt);
    if (r < 0)
        st = 0; /* reaped by someone else (the host's own SIGCHLD handler) */
    x_exited(xi, st, (uint64_t)ru.ru_maxrss);
    faas_rt_leave(rt);
}

/* The SPAWN message for the zygote: fixed part, then the command strings. */
static char *spawn_msg(const struct faas_zspawn *sp, const char *cwd, char *const *argv,
                       char *const *env, size_t *len)
{
    size_t n = sizeof *sp, i;
    char *m, *p;

    if (sp->command) {
        n += strlen(cwd) + 1 + 1 + 1;
        for (i = 0; argv[i]; i++)
            n += strlen(argv[i]) + 1;
        for (i = 0; env[i]; i++)
            n += strlen(env[i]) + 1;
    }
    if (n > FAAS_ZMSG_MAX || !(m = faas_malloc(n)))
        return NULL;
    memcpy(m, sp, sizeof *sp);
    p = m + sizeof *sp;
    if (sp->command) {
        size_t l = strlen(cwd) + 1;
        memcpy(p, cwd, l);
        p += l;
        for (i = 0; argv[i]; i++) {
            l = strlen(argv[i]) + 1;
            memcpy(p, argv[i], l);
            p += l;
        }
        *p++ = '\0';
        for (i = 0; env[i]; i++) {
            l = strlen(env[i]) + 1;
            memcpy(p, env[i], l);
            p += l;
        }
        *p++ = '\0';
    }
    *len = n;
    return m;
}

static void zq_free(struct zqueued *q)
{
    int i;
    for (i = 0; i < q->nfds; i++)
        close(q->fds[i]);
    free(q->msg);
    free(q);
}

/* Sends what the queue holds while the socket takes it. */
static void zq_flush(struct faas_xrt *x)
{
    struct faas_list *e;
    while (x->zfd >= 0 && (e = x->zqueue.next) != &x->zqueue) {
        struct zqueued *q = FAAS_CONTAINER_OF(e, struct zqueued, link);
        if (faas_send_fds(x->zfd, q->msg, q->len, q->fds, q->nfds) != 0) {
            if (errno == EAGAIN)
                event_add(x->zwev, NULL);
            return; /* otherwise the zygote is gone: its end says so */
        }
        faas_list_remove(&q->link);
        zq_free(q);
    }
}

static void zwrite_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    zq_flush(arg);
}

/* Queues a SPAWN (msg taken over; the descriptors are duplicated, the
 * caller keeps its own). 0 or FAAS_ENOMEM / FAAS_ESYS. */
static int z_queue(struct faas_xrt *x, char *msg, size_t len, const int *fds, int nfds)
{
    struct zqueued *q = faas_calloc(1, sizeof *q);
    int i;

    if (!q || (!x->zwev && !(x->zwev = event_new(x->rt->base, x->zfd, EV_WRITE, zwrite_cb, x)))) {
        free(q);
        free(msg);
        return FAAS_ENOMEM;
    }
    q->msg = msg;
    q->len = len;
    faas_list_init(&q->link);
    for (i = 0; i < nfds; i++) {
        q->fds[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, 3);
        if (q->fds[i] < 0) {
            q->nfds = i;
            zq_free(q);
            return FAAS_ESYS;
        }
    }
    q->nfds = nfds;
    faas_list_insert_tail(&x->zqueue, &q->link);
    event_add(x->zwev, NULL);
    return 0;
}

static void zq_drop_all(struct faas_xrt *x)
{
    struct faas_list *e;
    while ((e = faas_list_pop_head(&x->zqueue)) != NULL)
        zq_free(FAAS_CONTAINER_OF(e, struct zqueued, link));
    free_ev(&x->zwev);
}

/* Starts the process of a new record: through the zygote, or a fork here. */
static int x_start_process(struct faas_xinst *xi, int child_in, int child_out, int child_log,
                           char **argv, char **env)
{
    struct faas_xrt *x = xi->xrt;
    struct faas_fn *fn = xi->inst->fn;
    struct faas_zspawn sp;
    const char *cwd = fn->task_root ? fn->task_root : "";

    memset(&sp, 0, sizeof sp);
    sp.type = FAAS_Z_SPAWN;
    sp.tag = ++x->next_tag;
    sp.command = (uint32_t)xi->command;
    sp.memory_mb = xi->memory_mb;
    xi->tag = sp.tag;
    if (x->zfd >= 0) {
        int fds[3], nfds = 0, rc;
        size_t len;
        char *msg = spawn_msg(&sp, cwd, argv, env, &len);
        if (!msg)
            return FAAS_ENOMEM;
        if (!xi->command) {
            fds[nfds++] = child_in;
            fds[nfds++] = child_out;
        }
        fds[nfds++] = child_log;
        rc = faas_list_empty(&x->zqueue) ? faas_send_fds(x->zfd, msg, len, fds, nfds) : -1;
        if (rc != 0 && (faas_list_empty(&x->zqueue) ? errno == EAGAIN : 1))
            rc = z_queue(x, msg, len, fds, nfds); /* takes msg */
        else
            free(msg);
        if (rc != 0)
            return rc == FAAS_ENOMEM ? FAAS_ENOMEM : FAAS_ESYS;
        faas_list_insert_tail(&x->spawning, &xi->slink);
        return 0;
    } else {
        struct faas_child_spec spec;
        pid_t host = getpid(), pid;

        memset(&spec, 0, sizeof spec);
        spec.command = xi->command;
        spec.memory_mb = xi->memory_mb;
        spec.chan_fd = child_in;
        spec.chan_out_fd = child_out;
        spec.log_fd = child_log;
        spec.cwd = cwd;
        spec.argv = argv;
        spec.env = env;
        /* What the host has buffered must not be written twice. */
        fflush(stdout);
        fflush(stderr);
        pid = fork();
        if (pid == 0)
            faas_child_run(&spec, host);
        if (pid < 0)
            return FAAS_ESYS;
        xi->pid = pid;
        xi->pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
        if (xi->pidfd >= 0) {
            xi->pid_ev = event_new(x->rt->base, xi->pidfd, EV_READ | EV_PERSIST, pid_cb, xi);
        } else {
            /* No pidfds (an old kernel, or a tool that does not know the
             * call): its end shows as end-of-file on its output. */
            xi->reap_poll = 1;
            xi->pid_ev = event_new(x->rt->base, -1, 0, pid_cb, xi);
        }
        if (!xi->pid_ev) {
            kill(pid, SIGKILL);
            waitpid(pid, NULL, 0);
            xi->pid = -1;
            return FAAS_ESYS;
        }
        if (!xi->reap_poll)
            event_add(xi->pid_ev, NULL);
        return 0;
    }
}

/* A record and its process for inst. Returns 0 or FAAS_E*. */
static int x_spawn(struct faas_instance *inst)
{
    struct faas_fn *fn = inst->fn;
    struct faas_runtime *rt = fn->rt;
    struct faas_xrt *x = rt->xrt;
    struct faas_xinst *xi;
    int down[2] = { -1, -1 }, up[2] = { -1, -1 }, logp[2] = { -1, -1 }, rc = FAAS_ESYS;
    char **env = NULL;

    if (!x)
        return FAAS_ESYS;
    xi = faas_calloc(1, sizeof *xi);
    if (!xi)
        return FAAS_ENOMEM;
    faas_list_init(&xi->link);
    faas_list_init(&xi->slink);
    xi->xrt = x;
    xi->inst = inst;
    xi->command = fn->xkind == FAAS_X_COMMAND;
    xi->chan = xi->chanw = xi->chank = xi->logfd = xi->pidfd = -1;
    xi->memory_mb = fn->opts.memory_mb;
    xi->spawn_ns = faas_now_ns(rt);
    inst->x = xi;

    if (pipe2(logp, O_CLOEXEC) != 0)
        goto fail;
    /* Two pipes, not a socketpair: a round trip through pipes costs the
     * kernel a good deal less. */
    if (!xi->command && (pipe2(down, O_CLOEXEC) != 0 || pipe2(up, O_CLOEXEC) != 0))
        goto fail;
    if (xi->command && (rc = faas_cmd_inst_new(inst, &env)) != 0)
        goto fail;
    /* The process first: the zygote forks while the host sets up its side,
     * and the worker waits for its HELLO on the pipe. */
    rc = x_start_process(xi, down[0], up[1], logp[1], fn->argv, env);
    if (rc != 0)
        goto fail;
    faas_strv_free(env);
    env = NULL;
    close_fd(&up[1]);
    close_fd(&logp[1]);
    faas_list_insert_tail(&x->procs, &xi->link);
    xi->logfd = logp[0];
    set_nonblock(xi->logfd);
    xi->log_ev = event_new(rt->base, xi->logfd, EV_READ | EV_PERSIST, log_cb, xi);
    if (!xi->command) {
        xi->chan = up[0];
        xi->chanw = down[1];
        xi->chank = down[0];
        set_nonblock(xi->chan);
        set_nonblock(xi->chanw);
        xi->rev = event_new(rt->base, xi->chan, EV_READ | EV_PERSIST, read_cb, xi);
        xi->wev = event_new(rt->base, xi->chanw, EV_WRITE, write_cb, xi);
        xi->done_ev = event_new(rt->base, -1, 0, done_cb, xi);
    }
    rc = FAAS_ENOMEM;
    if (!xi->log_ev || (!xi->command && (!xi->rev || !xi->wev || !xi->done_ev)))
        goto started;
    if (!xi->command) {
        /* HELLO: where the handler is and its limits. */
        struct faas_fr_hello hi;
        const char *strs[3] = { fn->name, fn->so_path ? fn->so_path : "",
                                fn->symbol ? fn->symbol : "" };
        size_t lens[3] = { strlen(strs[0]), strlen(strs[1]), strlen(strs[2]) };
        memset(&hi, 0, sizeof hi);
        hi.handler = (uint64_t)(uintptr_t)fn->handler;
        hi.init = (uint64_t)(uintptr_t)fn->opts.init;
        hi.fini = (uint64_t)(uintptr_t)fn->opts.fini;
        hi.memory_mb = fn->opts.memory_mb;
        hi.init_timeout_ms = fn->opts.init_timeout_ms;
        hi.max_payload = rt->opts.max_sync_payload;
        if ((rc = x_send_frame(xi, FAAS_FR_HELLO, &hi, sizeof hi, strs, lens, 3)) != 0)
            goto started;
    }
    event_add(xi->log_ev, NULL);
    if (xi->rev)
        event_add(xi->rev, NULL);
    x_arm(xi, fn->opts.init_timeout_ms);
    return 0;
started:
    /* The process runs but cannot be served: it is killed, and its record
     * stays until its exit is known. */
    x_kill(xi);
    if (xi->command)
        faas_cmd_inst_free(inst);
    inst->x = NULL;
    xi->inst = NULL;
    x_maybe_free(xi);
    return rc;
fail:
    if (xi->command && inst->cmd)
        faas_cmd_inst_free(inst);
    faas_strv_free(env);
    close_fd(&up[0]);
    close_fd(&up[1]);
    close_fd(&down[0]);
    close_fd(&down[1]);
    close_fd(&logp[0]);
    close_fd(&logp[1]);
    inst->x = NULL;
    xi->inst = NULL;
    xi->pid = -1;
    x_free(xi);
    return rc;
}

/* ---- the executor operations (exec.h) --------------------------------- */

static void faas_x_start(struct faas_inv *inv)
{
    struct faas_instance *inst = inv->inst;
    struct faas_xinst *xi = inst->x;
    int rc;

    if (!xi) {
        rc = x_spawn(inst);
        if (rc != 0) {
            fail_later(inv, FAAS_EINIT, "Runtime.StartError",
                       rc == FAAS_ENOMEM ? "out of memory starting the runtime"
                                         : "the runtime process could not be started");
            return;
        }
        xi = inst->x;
    }
    xi->inv = inv;
    xi->sent = 0;
    atomic_store(&inv->phase, xi->ready ? FAAS_PHASE_RUN : FAAS_PHASE_INIT);
    if (xi->ready)
        x_send(xi, inv);
    else if (!xi->command && x_write_invoke(xi, inv) == 0)
        xi->sent = 1; /* the worker reads it right after its init: no round trip */
}

static void faas_x_prewarm(struct faas_instance *inst)
{
    if (x_spawn(inst) != 0) {
        inst->initialized = 0;
        inst->fn->rt->exec_report->job_done(&inst->job);
    }
}

static void faas_x_destroy(struct faas_instance *inst)
{
    struct faas_xinst *xi = inst->x;

    if (inst->cmd)
        faas_cmd_inst_free(inst);
    if (!xi)
        return;
    inst->x = NULL;
    xi->inst = NULL;
    xi->inv = NULL;
    x_disarm(xi);
    x_drop_result(xi);
    if (!xi->exited) {
        if (!xi->command && xi->ready && !xi->killed && xi->chan >= 0) {
            /* Warm and idle: let it run fini and go. */
            if (x_send_frame(xi, FAAS_FR_EXIT, NULL, 0, NULL, NULL, 0) == 0)
                xi->exit_sent = 1;
            x_arm(xi, 2000);
            /* The timer of a detached record only kills. */
        } else {
            x_kill(xi);
        }
    }
    x_maybe_free(xi);
}

static void faas_x_cancel(struct faas_inv *inv, int status, const char *etype,
                          const char *emsg)
{
    struct faas_xinst *xi = inv->inst ? inv->inst->x : NULL;

    inv->rt->exec_report->detach(inv, status, etype, emsg);
    if (!xi) {
        return;
    }
    xi->busy++;
    x_kill(xi);
    if (xi->inv == inv)
        x_finish_inv(xi, status, NULL);
    xi->busy--;
    x_maybe_free(xi);
}

static int x_destroy_op(struct faas_instance *inst)
{
    faas_x_destroy(inst); /* fini runs in the process */
    return 0;
}

/* PROCESS and COMMAND alike: COMMAND differs only in its wire (x_send). */
const struct faas_exec_ops faas_exec_process = {
    .name = "process",
    .self_starting = 1,
    .start = faas_x_start,
    .prewarm = faas_x_prewarm,
    .cancel = faas_x_cancel,
    .destroy = x_destroy_op,
};

/* ---- the zygote ------------------------------------------------------- */

static struct faas_xinst *find_pid(struct faas_xrt *x, pid_t pid)
{
    struct faas_list *e;
    for (e = x->procs.next; e != &x->procs; e = e->next) {
        struct faas_xinst *xi = FAAS_CONTAINER_OF(e, struct faas_xinst, link);
        if (xi->pid == pid)
            return xi;
    }
    return NULL;
}

static void z_spawned(struct faas_xrt *x, const struct faas_zspawned *m, int pidfd)
{
    struct faas_list *e;
    for (e = x->spawning.next; e != &x->spawning; e = e->next) {
        struct faas_xinst *xi = FAAS_CONTAINER_OF(e, struct faas_xinst, slink);
        if (xi->tag != m->tag)
            continue;
        faas_list_remove(&xi->slink);
        xi->busy++;
        if (m->pid <= 0) {
            xi->pid = -1;
            xi->exited = 1;
            if (xi->inst) {
                if (!xi->killed)
                    x_init_failed(xi, error_obj("Runtime.StartError",
                                                "the runtime process could not be started: %s",
                                                strerror(-m->pid)));
                else if (xi->inv)
                    x_finish_inv(xi, FAAS_ECRASHED, NULL);
            }
        } else {
            xi->pid = m->pid;
            xi->pidfd = pidfd;
            pidfd = -1;
            if (xi->killed) {
                xi->killed = 0;
                x_kill(xi);
            }
        }
        xi->busy--;
        x_maybe_free(xi);
        break;
    }
    if (pidfd >= 0)
        close(pidfd);
}

static void zygote_cb(evutil_socket_t fd, short what, void *arg)
{
    struct faas_xrt *x = arg;
    struct faas_runtime *rt = x->rt;
    union {
        struct faas_zspawned s;
        struct faas_zexited e;
        uint32_t type;
    } m;
    int fds[4], nfds, pidfd;
    ssize_t n;

    (void)what;
    faas_rt_enter(rt);
    for (;;) {
        n = faas_recv_fds(fd, &m, sizeof m, fds, &nfds, MSG_DONTWAIT);
        if (n < 0)
            break;
        if (n == 0) {
            /* The zygote died: its workers died with it. Replacements the
             * pool starts meanwhile are the host's own children (no zygote
             * any more): only the records of the dead ones end here. */
            struct faas_list dead, *e;
            free_ev(&x->zev);
            zq_drop_all(x);
            close_fd(&x->zfd);
            waitpid(x->zpid, NULL, 0);
            x->zpid = 0;
            faas_list_init(&dead);
            faas_list_splice(&dead, &x->procs);
            while ((e = faas_list_pop_head(&dead)) != NULL) {
                struct faas_xinst *xi = FAAS_CONTAINER_OF(e, struct faas_xinst, link);
                faas_list_insert_tail(&x->procs, &xi->link);
                xi->lost = 1;
                x_exited(xi, SIGKILL, 0);
            }
            break;
        }
        pidfd = nfds > 0 ? fds[0] : -1;
        while (nfds > 1)
            close(fds[--nfds]); /* never sent: not ours to keep */
        if (m.type == FAAS_Z_SPAWNED && (size_t)n >= sizeof m.s) {
            z_spawned(x, &m.s, pidfd);
        } else {
            if (pidfd >= 0)
                close(pidfd);
            if (m.type == FAAS_Z_EXITED && (size_t)n >= sizeof m.e) {
                struct faas_xinst *xi = find_pid(x, m.e.pid);
                if (xi)
                    x_exited(xi, m.e.wstatus, m.e.maxrss_kb);
            }
        }
        if (rt->free_requested)
            break;
    }
    faas_rt_leave(rt);
}

int faas_zygote_start(struct faas_runtime *rt)
{
    struct faas_xrt *x = faas_calloc(1, sizeof *x);
    int sv[2];
    pid_t host = getpid(), pid;

    if (!x)
        return FAAS_ENOMEM;
    x->rt = rt;
    x->zfd = -1;
    faas_list_init(&x->spawning);
    faas_list_init(&x->procs);
    faas_list_init(&x->zqueue);
    rt->xrt = x;
    if (!rt->opts.zygote)
        return 0;
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0)
        goto fail;
    /* What the host has buffered must not be written twice. */
    fflush(stdout);
    fflush(stderr);
    pid = fork();
    if (pid == 0) {
        close(sv[0]);
        faas_zygote_main(sv[1], host);
    }
    close(sv[1]);
    if (pid < 0) {
        close(sv[0]);
        goto fail;
    }
    x->zpid = pid;
    x->zfd = sv[0];
    set_nonblock(x->zfd); /* a full socket queues requests, never blocks */
    x->zev = event_new(rt->base, x->zfd, EV_READ | EV_PERSIST, zygote_cb, x);
    if (!x->zev) {
        faas_zygote_stop(rt);
        return FAAS_ENOMEM;
    }
    event_add(x->zev, NULL);
    return 0;
fail:
    rt->xrt = NULL;
    free(x);
    return FAAS_ESYS;
}

void faas_x_shutdown(struct faas_runtime *rt)
{
    struct faas_xrt *x = rt->xrt;
    struct faas_list *e;
    uint64_t end;

    if (!x)
        return;
    /* Workers asked to run fini get a moment; then everything is killed. */
    end = faas_now_ns(rt) + 1000000000u;
    for (;;) {
        struct pollfd pfd[64];
        nfds_t n = 0;
        for (e = x->procs.next; e != &x->procs && n < 64; e = e->next) {
            struct faas_xinst *xi = FAAS_CONTAINER_OF(e, struct faas_xinst, link);
            if (xi->exit_sent && !xi->killed && !xi->exited && xi->chan >= 0) {
                pfd[n].fd = xi->chan;
                pfd[n++].events = POLLIN;
            }
        }
        if (n == 0 || faas_now_ns(rt) >= end)
            break;
        if (poll(pfd, n, 50) <= 0)
            continue;
        for (e = x->procs.next; e != &x->procs; e = e->next) {
            struct faas_xinst *xi = FAAS_CONTAINER_OF(e, struct faas_xinst, link);
            nfds_t i;
            for (i = 0; i < n; i++) {
                if (pfd[i].fd == xi->chan && pfd[i].revents) {
                    char buf[4096];
                    if (read(xi->chan, buf, sizeof buf) == 0)
                        x_close_chan(xi); /* gone: its fini ran */
                }
            }
        }
    }
    while (!faas_list_empty(&x->procs)) {
        struct faas_xinst *xi = FAAS_CONTAINER_OF(x->procs.next, struct faas_xinst, link);
        if (xi->inst && !xi->ready && !xi->inv) {
            /* A min_warm start still under way: the pool drops it. */
            xi->inst->initialized = 0;
            rt->exec_report->job_done(&xi->inst->job);
        }
        if (xi->inst)
            faas_x_destroy(xi->inst);
        if (!xi->exited && xi->pid > 0) {
            xi->killed = 0;
            x_kill(xi);
            if (x->zfd < 0)
                waitpid(xi->pid, NULL, 0);
        }
        x_free(xi);
    }
}

void faas_zygote_stop(struct faas_runtime *rt)
{
    struct faas_xrt *x = rt->xrt;
    if (!x)
        return;
    free_ev(&x->zev);
    zq_drop_all(x);
    close_fd(&x->zfd); /* the zygote kills what is left and exits */
    if (x->zpid > 0)
        waitpid(x->zpid, NULL, 0);
    rt->xrt = NULL;
    free(x);
}

pid_t faas_x_zygote_pid(const struct faas_runtime *rt)
{
    return rt->xrt ? rt->xrt->zpid : 0;
}

pid_t faas_x_pid(const struct faas_instance *inst)
{
    return inst && inst->x ? inst->x->pid : -1;
}
