/*
 * exec_process_io.c - what goes through a process instance's pipes: the
 * frames of a native worker's channel (exec_process.h draws them) and the
 * lines of every process's stdout and stderr.
 *
 * The channel is written from a buffer that grows for a large event and
 * shrinks back once empty, never by blocking the loop: what the pipe does
 * not take now goes from a write event. It is read the same way, whole
 * frames at a time; a frame over twice max_sync_payload (plus
 * FAAS_FRAME_SLACK) closes the channel and the process is killed. A
 * worker that closes its channel while it runs is killed too.
 *
 * stdout and stderr of every process are one pipe, read on the loop and
 * cut into lines: each line belongs to the invocation running then (so it
 * carries its request id), before its REPORT — the pipe is drained when a
 * result arrives. A line over FAAS_LOGLINE_MAX is cut.
 *
 * May call: exec_process.c for what a read means (READY, the end of the
 * channel), through exec_process_int.h; ctx.c for log lines. Called by
 * exec_process.c and the loop.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "exec_process_int.h"

/* Bytes of channel buffer an idle process keeps; above, a buffer grown
 * for one large payload is given back once it is empty. */
#define BUF_KEEP ((size_t)1024 * 1024)

/* ---- log lines ------------------------------------------------------- */

static void proc_log_line(struct faas_proc *proc, const char *text, size_t len)
{
    struct faas_inv *inv = proc->inv;
    struct faas_runtime *rt = proc->proc_rt->rt;

    if (len >= FAAS_LOGLINE_MAX)
        len = FAAS_LOGLINE_MAX - 1;
    if (!inv) {
        /* Between invocations (a min_warm init, a fini): no request id. */
        struct faas_log_record rec;
        char buf[FAAS_LOGLINE_MAX];
        if (!rt->opts.log || !proc->inst)
            return;
        faas_log_escape(buf, sizeof buf, text, len);
        memset(&rec, 0, sizeof rec);
        rec.kind = FAAS_LOG_LINE;
        rec.function = proc->inst->fn->name;
        rec.request_id = "";
        rec.line = buf;
        rt->opts.log(&rec, rt->opts.log_arg);
        return;
    }
    faas_ctx_add_line(&inv->ctx, text, len);
}

/* Reads what the pipe holds, cutting lines. Returns 0 at end-of-file. */
static int proc_read_log(struct faas_proc *proc)
{
    char buf[8192];
    for (;;) {
        ssize_t n = read(proc->logfd, buf, sizeof buf), i;
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return 1;
        if (n == 0) {
            if (proc->linelen && !proc->line_over)
                proc_log_line(proc, proc->line, proc->linelen);
            proc->linelen = 0;
            return 0;
        }
        for (i = 0; i < n; i++) {
            char c = buf[i];
            if (c == '\n') {
                if (!proc->line_over)
                    proc_log_line(proc, proc->line, proc->linelen);
                proc->linelen = 0;
                proc->line_over = 0;
            } else if (proc->linelen == sizeof proc->line - 1) {
                /* One line is one log line: what does not fit is cut. */
                if (!proc->line_over)
                    proc_log_line(proc, proc->line, proc->linelen);
                proc->line_over = 1;
            } else {
                proc->line[proc->linelen++] = c;
            }
        }
        if ((size_t)n < sizeof buf)
            return 1;
    }
}

/* Reads what is in the log pipe now: lines written before an end belong
 * to the invocation that ends. */
void faas_proc_drain_log(struct faas_proc *proc)
{
    if (proc->logfd >= 0 && !proc_read_log(proc)) {
        faas_proc_free_event(&proc->log_ev);
        faas_proc_close_fd(&proc->logfd);
        faas_proc_reap_soon(proc); /* its output ended: so, probably, has it */
    }
}

/* A pipe is readable: `work` runs inside the runtime's callback guard,
 * and the record may go once it is done with. */
static void proc_io_guarded(struct faas_proc *proc, int (*work)(struct faas_proc *))
{
    struct faas_runtime *rt = proc->proc_rt->rt;

    faas_rt_enter(rt);
    proc->busy++;
    work(proc);
    proc->busy--;
    faas_proc_maybe_free(proc);
    faas_rt_leave(rt);
}

static int drain_log_work(struct faas_proc *proc)
{
    faas_proc_drain_log(proc);
    return 0;
}

void faas_proc_log_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    proc_io_guarded(arg, drain_log_work);
}

/* Whether the process still runs, as far as its pidfd tells (1 without
 * one). */
static int proc_alive(const struct faas_proc *proc)
{
    struct pollfd p;
    if (proc->pidfd < 0)
        return 1;
    p.fd = proc->pidfd;
    p.events = POLLIN;
    return poll(&p, 1, 0) == 0;
}

/* Closes the channel and stops reading it. */
void faas_proc_close_channel(struct faas_proc *proc)
{
    faas_proc_free_event(&proc->rev);
    faas_proc_free_event(&proc->wev);
    faas_proc_close_fd(&proc->chan);
    faas_proc_close_fd(&proc->chanw);
    faas_proc_close_fd(&proc->chank);
    free(proc->rbuf);
    free(proc->wbuf);
    proc->rbuf = proc->wbuf = NULL;
    proc->rlen = proc->rcap = proc->wlen = proc->woff = proc->wcap = 0;
}

/* ---- the channel (native workers) ------------------------------------ */

static void proc_flush(struct faas_proc *proc)
{
    while (proc->woff < proc->wlen) {
        ssize_t n = write(proc->chanw, proc->wbuf + proc->woff, proc->wlen - proc->woff);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            if (errno == EAGAIN)
                event_add(proc->wev, NULL);
            return; /* EPIPE: the read side sees the end */
        }
        proc->woff += (size_t)n;
    }
    proc->woff = proc->wlen = 0;
    /* One large event must not keep its buffer for the process's life. */
    if (proc->wcap > BUF_KEEP) {
        free(proc->wbuf);
        proc->wbuf = NULL;
        proc->wcap = 0;
    }
}

void faas_proc_write_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    proc_flush(arg);
}

/* Appends to the output buffer. 0 or -1 (out of memory). */
static int wb_put(struct faas_proc *proc, const void *p, size_t n)
{
    if (proc->wlen + n > proc->wcap) {
        size_t cap = proc->wcap ? proc->wcap : 4096;
        char *q;
        while (cap < proc->wlen + n)
            cap *= 2;
        if (!(q = realloc(proc->wbuf, cap)))
            return -1;
        proc->wbuf = q;
        proc->wcap = cap;
    }
    memcpy(proc->wbuf + proc->wlen, p, n);
    proc->wlen += n;
    return 0;
}

static int wb_dump_cb(const char *buf, size_t size, void *arg)
{
    return wb_put(arg, buf, size);
}

/* Starts a frame: its header, completed by frame_end. */
static size_t frame_begin(struct faas_proc *proc, uint32_t type, const void *fixed, size_t flen,
                          int *err)
{
    struct faas_frame_hdr h = { 0, type };
    size_t start = proc->wlen;
    if (wb_put(proc, &h, sizeof h) != 0 || (flen && wb_put(proc, fixed, flen) != 0))
        *err = 1;
    return start;
}

/* A string and its NUL. */
static void frame_str_put(struct faas_proc *proc, const char *str, size_t len, int *err)
{
    if (!*err && (wb_put(proc, str, len) != 0 || wb_put(proc, "", 1) != 0))
        *err = 1;
}

/* JSON text (compact) and its NUL, straight into the buffer. */
static void frame_json_put(struct faas_proc *proc, json_t *j, int *err)
{
    if (!*err && (json_dump_callback(j ? j : json_null(), wb_dump_cb, proc,
                                     JSON_COMPACT | JSON_ENCODE_ANY) != 0 ||
                  wb_put(proc, "", 1) != 0))
        *err = 1;
}

/* Completes the frame begun at `start` and writes what the socket takes
 * now; after an error the frame is taken back. 0 or FAAS_ENOMEM. */
static int frame_end(struct faas_proc *proc, size_t start, int err)
{
    uint32_t len;
    if (err || proc->wlen - start - sizeof(struct faas_frame_hdr) > UINT32_MAX) {
        proc->wlen = start;
        return FAAS_ENOMEM;
    }
    len = (uint32_t)(proc->wlen - start - sizeof(struct faas_frame_hdr));
    memcpy(proc->wbuf + start, &len, sizeof len);
    if (proc->woff == 0 || !event_pending(proc->wev, EV_WRITE, NULL))
        proc_flush(proc);
    return 0;
}

/* Queues a frame of strings and writes what the socket takes now. */
int faas_proc_send_frame(struct faas_proc *proc, uint32_t type, const void *fixed, size_t flen,
                        const char *const *strs, const size_t *lens, size_t nstrs)
{
    size_t i, start;
    int err = 0;

    if (proc->chan < 0)
        return FAAS_ECRASHED;
    start = frame_begin(proc, type, fixed, flen, &err);
    for (i = 0; i < nstrs; i++)
        frame_str_put(proc, strs[i], lens[i], &err);
    return frame_end(proc, start, err);
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

void faas_proc_on_ready(struct faas_proc *proc, int status, json_t *error);

/* One frame from the worker. */
static void proc_frame(struct faas_proc *proc, uint32_t type, const char *p, uint32_t len)
{
    struct faas_runtime *rt = proc->proc_rt->rt;

    switch (type) {
    case FAAS_FRAME_LOG:
        proc_log_line(proc, p, strnlen(p, len));
        break;
    case FAAS_FRAME_READY: {
        struct faas_frame_ready r;
        if (len < sizeof r || faas_proc_init_done(proc))
            break;
        memcpy(&r, p, sizeof r);
        if (r.status != 0) {
            const char *e = nth_str(p, len, sizeof r, 0);
            faas_proc_on_ready(proc, FAAS_EINIT, parse_json(e, strnlen(e, len - (size_t)(e - p))));
        } else {
            faas_proc_on_ready(proc, 0, NULL);
        }
        break;
    }
    case FAAS_FRAME_RESULT: {
        struct faas_frame_result r;
        const char *body;
        if (len < sizeof r || !proc->inv)
            break;
        memcpy(&r, p, sizeof r);
        body = nth_str(p, len, sizeof r, 0);
        proc->inv->duration_ns = r.duration_ns ? r.duration_ns : 1;
        proc->inv->proc_maxrss_kb = r.maxrss_kb;
        /* Finished on the loop's next pass, after what the loop has ready
         * then; when the handler wrote to stdout or stderr, after reading
         * the log pipe too: those lines belong to this invocation. */
        faas_proc_disarm(proc);
        json_decref(proc->res_payload);
        proc->res_payload = parse_json(body, strnlen(body, len - sizeof r));
        proc->res_status = r.status;
        proc->res_logged = r.logged != 0;
        event_active(proc->done_ev, EV_TIMEOUT, 1);
        break;
    }
    case FAAS_FRAME_STREAM:
        if (proc->inv)
            faas_stream_deliver(proc->inv, p, len);
        break;
    case FAAS_FRAME_DYING:
        if (len >= sizeof proc->dying) {
            memcpy(&proc->dying, p, sizeof proc->dying);
            proc->dying_seen = 1;
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
int faas_proc_read_channel(struct faas_proc *proc)
{
    size_t max = proc->proc_rt->rt->opts.max_sync_payload * 2 + FAAS_FRAME_SLACK, off = 0;
    struct faas_frame_hdr h;
    ssize_t n;

    if (proc->chan < 0)
        return -1;
    if (proc->rcap - proc->rlen < 65536) {
        size_t cap = proc->rcap ? proc->rcap * 2 : 65536 * 2;
        char *p = realloc(proc->rbuf, cap);
        if (!p)
            return 0; /* try again on the next readiness */
        proc->rbuf = p;
        proc->rcap = cap;
    }
    n = read(proc->chan, proc->rbuf + proc->rlen, proc->rcap - proc->rlen);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return 0;
    if (n <= 0) {
        /* The worker closed its channel, or ended: it cannot answer any
         * more. Still alive, it closed the channel itself: killed here. */
        if (proc->state != FAAS_PROC_DEAD && proc_alive(proc)) {
            proc->chan_lost = 1;
            faas_proc_kill(proc);
            if (proc->inst && (proc->inv || !faas_proc_init_done(proc)))
                proc->killed = 0; /* its exit still tells the invocation why */
        }
        faas_proc_close_channel(proc);
        faas_proc_reap_soon(proc);
        faas_proc_retire(proc);
        return -1;
    }
    proc->rlen += (size_t)n;
    while (proc->chan >= 0 && proc->rlen - off >= sizeof h) {
        memcpy(&h, proc->rbuf + off, sizeof h);
        if (h.len > max) {
            faas_proc_close_channel(proc);
            faas_proc_kill(proc);
            proc->chan_lost = 1;
            proc->killed = 0;
            faas_proc_retire(proc);
            return -1;
        }
        if (proc->rlen - off - sizeof h < h.len) {
            /* Incomplete: make room for all of it. */
            if (sizeof h + h.len > proc->rcap) {
                char *p = realloc(proc->rbuf, sizeof h + h.len);
                if (p) {
                    proc->rbuf = p;
                    proc->rcap = sizeof h + h.len;
                }
            }
            break;
        }
        off += sizeof h;
        proc_frame(proc, h.type, proc->rbuf + off, h.len);
        off += h.len;
        if (!proc->rbuf)
            return -1; /* the channel was closed meanwhile */
    }
    if (off) {
        memmove(proc->rbuf, proc->rbuf + off, proc->rlen - off);
        proc->rlen -= off;
    }
    /* Nor one large result its buffer (kept non-NULL: NULL means closed). */
    if (proc->rlen == 0 && proc->rcap > BUF_KEEP) {
        char *p = realloc(proc->rbuf, 65536 * 2);
        if (p) {
            proc->rbuf = p;
            proc->rcap = 65536 * 2;
        }
    }
    return 1;
}

void faas_proc_read_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    proc_io_guarded(arg, faas_proc_read_channel);
}

/* Queues inv's INVOKE frame and writes what the pipe takes now. 0,
 * FAAS_ENOMEM (nothing queued) or FAAS_ECRASHED (the channel is closed). */
int faas_proc_invoke_frame(struct faas_proc *proc, const struct faas_inv *inv)
{
    struct faas_frame_invoke fi;
    const char *trace = inv->trace_id ? inv->trace_id : "";
    size_t start;
    int err = 0;

    if (proc->chan < 0)
        return FAAS_ECRASHED;
    memset(&fi, 0, sizeof fi);
    fi.timeout_ns = (uint64_t)inv->timeout_ms * 1000000u;
    fi.timeout_ms = inv->timeout_ms;
    start = frame_begin(proc, FAAS_FRAME_INVOKE, &fi, sizeof fi, &err);
    frame_str_put(proc, inv->res.request_id, strlen(inv->res.request_id), &err);
    frame_str_put(proc, trace, strlen(trace), &err);
    if (inv->client_context)
        frame_json_put(proc, inv->client_context, &err);
    else
        frame_str_put(proc, "", 0, &err);
    frame_json_put(proc, inv->event, &err);
    return frame_end(proc, start, err);
}
