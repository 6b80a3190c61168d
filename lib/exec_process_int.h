/*
 * exec_process_int.h - a process instance's record, shared by the two files
 * of the process executor: exec_process.c (the record's life: spawning,
 * states, results, deadlines, exits, the executor operations) and
 * exec_process_io.c (what goes through the process's pipes: the channel's
 * frames and the log lines). Nothing else includes it: the rest of the
 * library reaches the executor through exec.h and faas_int.h.
 *
 * Every change of a record's state is exec_process.c's (proc_set_state);
 * exec_process_io.c reads the state and reports what it read.
 */
#ifndef FAAS_EXEC_PROCESS_INT_H
#define FAAS_EXEC_PROCESS_INT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <unistd.h>

#include <event2/event.h>

#include "exec_process.h"
#include "faas_int.h"

struct faas_zygote_client;

struct faas_proc_rt {
    struct faas_runtime *rt;
    struct faas_zygote_client *zygote; /* NULL: none, the host forks */
    struct faas_list spawning; /* records waiting for SPAWNED, in order */
    struct faas_list procs;  /* every record whose process may be alive */
    uint32_t next_tag;
};

enum faas_proc_state {
    FAAS_PROC_STARTING = 0, /* spawned; init not done (no READY yet) */
    FAAS_PROC_IDLE,         /* init done, no invocation */
    FAAS_PROC_BUSY,         /* init done, running proc->inv */
    FAAS_PROC_EXITING,      /* dropped by the pool and asked to run fini and exit */
    FAAS_PROC_DEAD          /* its exit is known (reaped), or it never started */
};

struct faas_proc {
    struct faas_list link;   /* proc_rt->procs */
    struct faas_list slink;  /* proc_rt->spawning until SPAWNED */
    struct faas_proc_rt *proc_rt;
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
    enum faas_proc_state state;
    enum faas_proc_state died_in; /* DEAD: the state it died in */
    int killed;              /* SIGKILL sent by us (or due, pid unknown) */
    int dying_seen;
    int lost;                /* the zygote died, and the process with it */
    int chan_lost;           /* it closed its channel: we killed it */
    int sent;                /* inv's INVOKE is written (a cold start's) */
    int res_status;
    int res_logged;          /* with it: lines in the log pipe to read first */
    json_t *res_payload;     /* a RESULT came: finished on the next pass */
    struct event *done_ev;
    int reap_poll;           /* no zygote and no pidfd: wait4 on a timer */
    uint64_t hwm_kb;         /* a command's peak memory, sampled */
    uint64_t hwm_at_ns;
    struct faas_frame_dying dying;
    unsigned busy;           /* inside one of its callbacks */
};

/* Whether init finished (READY came), dead or alive. */
static inline int faas_proc_init_done(const struct faas_proc *proc)
{
    enum faas_proc_state s = proc->state == FAAS_PROC_DEAD ? proc->died_in : proc->state;
    return s != FAAS_PROC_STARTING;
}

static inline void faas_proc_close_fd(int *fd)
{
    if (*fd >= 0) {
        close(*fd);
        *fd = -1;
    }
}

static inline void faas_proc_free_event(struct event **ev)
{
    if (*ev) {
        event_free(*ev);
        *ev = NULL;
    }
}

/* ---- exec_process.c -------------------------------------------------- */

/* Stops the record's deadline. */
void faas_proc_disarm(struct faas_proc *proc);
/* Sends SIGKILL to the process and its group (once; when the pid is
 * known), and looks for its end soon where no pidfd tells. */
void faas_proc_kill(struct faas_proc *proc);
/* Without a pidfd: looks for the process's end with wait4 soon. */
void faas_proc_reap_soon(struct faas_proc *proc);
/* The process can serve no more: its instance is not handed to anyone. */
void faas_proc_retire(struct faas_proc *proc);
/* Frees the record when nobody needs it any more. */
void faas_proc_maybe_free(struct faas_proc *proc);
/* READY came: init is done (status 0) or failed (FAAS_EINIT, `error`
 * taken over, NULL = a generic one). */
void faas_proc_on_ready(struct faas_proc *proc, int status, json_t *error);

/* ---- exec_process_io.c ----------------------------------------------- */

/* The loop's callbacks for the log pipe, the channel's read end and its
 * write end (arg: the record). */
void faas_proc_log_cb(evutil_socket_t fd, short what, void *arg);
void faas_proc_read_cb(evutil_socket_t fd, short what, void *arg);
void faas_proc_write_cb(evutil_socket_t fd, short what, void *arg);
/* Reads what is in the log pipe now: lines written before an end belong
 * to the invocation that ends. */
void faas_proc_drain_log(struct faas_proc *proc);
/* Reads what the channel holds now (one read) and handles its complete
 * frames. 1: something was read; 0: nothing there; -1: the channel is
 * closed (end-of-file, or a frame out of bounds). */
int faas_proc_read_channel(struct faas_proc *proc);
/* Closes the channel and stops reading it. */
void faas_proc_close_channel(struct faas_proc *proc);
/* Queues a frame of strings and writes what the pipe takes now. 0,
 * FAAS_ENOMEM or FAAS_ECRASHED (the channel is closed). */
int faas_proc_send_frame(struct faas_proc *proc, uint32_t type, const void *fixed, size_t flen,
                         const char *const *strs, const size_t *lens, size_t nstrs);
/* Queues inv's INVOKE frame and writes what the pipe takes now. 0,
 * FAAS_ENOMEM (nothing queued) or FAAS_ECRASHED (the channel is closed). */
int faas_proc_invoke_frame(struct faas_proc *proc, const struct faas_inv *inv);

#endif /* FAAS_EXEC_PROCESS_INT_H */
