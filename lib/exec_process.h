/*
 * exec_process.h - what the host, the zygote and a native worker share: the
 * frames on a worker's channel, the zygote's messages, and the code a new
 * process runs between fork and its work.
 *
 * A worker's channel is a pair of pipes carrying frames (the worker reads
 * descriptor 3 and writes descriptor 4):
 * an 8-byte header (payload length, type) and the payload. Payloads are a
 * fixed part followed by NUL-terminated strings; JSON travels as text.
 *
 *   host -> worker   HELLO   the function: where its handler is, its limits
 *                    INVOKE  one invocation: request id, time left, event
 *                    EXIT    run fini and exit
 *                    STREAM_CLOSED  the invocation's streamed bytes have
 *                            nobody to go to: later writes are refused
 *   worker -> host   READY   init done (or failed, with the error object)
 *                    LOG     one line of faas_ctx_log
 *                    RESULT  the invocation's outcome and the peak memory
 *                    DYING   a fatal signal is about to end the worker
 *                    STREAM  bytes of faas_ctx_stream_write, as they are
 *                            (at most FAAS_STREAM_PIECE a frame), before
 *                            the RESULT of their invocation
 *
 * The zygote's control channel is a SOCK_SEQPACKET socketpair: one message
 * per request or report, descriptors passed with SCM_RIGHTS.
 *
 *   host -> zygote   SPAWN   fork a worker (native) or exec a command;
 *                            the descriptors for the new process ride along
 *   zygote -> host   SPAWNED the pid (or an errno) and a pidfd for it
 *                    EXITED  a child's wait status and peak memory
 */
#ifndef FAAS_EXEC_PROCESS_H
#define FAAS_EXEC_PROCESS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

enum faas_frame_type {
    FAAS_FRAME_HELLO = 1,
    FAAS_FRAME_INVOKE = 2,
    FAAS_FRAME_EXIT = 3,
    FAAS_FRAME_STREAM_CLOSED = 4,
    FAAS_FRAME_READY = 16,
    FAAS_FRAME_LOG = 17,
    FAAS_FRAME_RESULT = 18,
    FAAS_FRAME_DYING = 19,
    FAAS_FRAME_STREAM = 20
};

struct faas_frame_hdr {
    uint32_t len;  /* payload bytes */
    uint32_t type; /* enum faas_frame_type */
};

/* HELLO: then the strings name, so_path, symbol ("" = none). */
struct faas_frame_hello {
    uint64_t handler, init, fini; /* addresses in the host image; 0 = none */
    uint32_t memory_mb;
    uint32_t init_timeout_ms;
    uint64_t max_payload;
};

/* INVOKE: then request_id, trace_id, client_context (JSON or ""), event. */
struct faas_frame_invoke {
    uint64_t timeout_ns; /* 0 = none */
    uint32_t timeout_ms; /* for the timeout message */
    uint32_t pad;
};

/* READY: then the error object (JSON) when status != 0. */
struct faas_frame_ready {
    int32_t status;
    uint32_t pad;
    uint64_t init_ns;
};

/* RESULT: then the payload (JSON). */
struct faas_frame_result {
    int32_t status;
    uint32_t logged;  /* it wrote to stdout or stderr since the last frame */
    uint64_t duration_ns;
    uint64_t maxrss_kb;
};

/* DYING: sent from the fatal-signal handler. */
struct faas_frame_dying {
    int32_t signo;
    int32_t enomem;   /* errno was ENOMEM: an allocation had just failed */
    uint64_t data_kb; /* data segment size then */
    uint64_t limit_kb; /* RLIMIT_DATA */
    uint64_t maxrss_kb;
};

/* Most bytes of one STREAM frame: a larger write is cut into several. */
#define FAAS_STREAM_PIECE ((size_t)256 * 1024)

/* Largest frame a side accepts beyond the payload limit (ids, headers). */
#define FAAS_FRAME_SLACK (64u * 1024u)

enum faas_zygote_msg_type {
    FAAS_ZYGOTE_SPAWN = 1,
    FAAS_ZYGOTE_SPAWNED = 2,
    FAAS_ZYGOTE_EXITED = 3
};

/* SPAWN: then, for a command, cwd, argv[0..], "", env[0..], "". Rides with
 * the descriptors: native {channel in, channel out, log}, command {log}. */
struct faas_zygote_spawn {
    uint32_t type;      /* FAAS_ZYGOTE_SPAWN */
    uint32_t tag;       /* echoed in SPAWNED */
    uint32_t command;   /* 1: exec argv; 0: a native worker */
    uint32_t memory_mb; /* RLIMIT_DATA: this much (command), or this much
                           above the data segment at fork (native) */
};

/* SPAWNED: rides with the pidfd when pid > 0. */
struct faas_zygote_spawned {
    uint32_t type;
    uint32_t tag;
    int32_t pid; /* > 0, or -errno */
    uint32_t pad;
};

struct faas_zygote_exited {
    uint32_t type;
    int32_t pid;
    int32_t wstatus;
    uint32_t pad;
    uint64_t maxrss_kb;
};

/* Largest SPAWN message (argv and environment included). */
#define FAAS_ZYGOTE_MSG_MAX (64u * 1024u)

/* What a new process is to become. */
struct faas_child_spec {
    int command;        /* 1: exec argv with env in cwd */
    int from_zygote;    /* forked by the zygote, whose signals are reset */
    uint64_t base_data_kb; /* native: the data segment at fork; 0 = measure */
    uint32_t memory_mb;
    int chan_fd;        /* native: the channel's end the worker reads */
    int chan_out_fd;    /* native: the end it writes */
    int log_fd;         /* becomes stdout and stderr */
    const char *cwd;
    char *const *argv;
    char *const *env;
};

/*
 * In a new child, right after fork: its own session and process group, death with its
 * parent, default signals, descriptors 0 (/dev/null), 1 and 2 (the log),
 * 3 and 4 (the channel, native) and nothing else, the memory limit; then exec
 * the command or run the native worker. Never returns.
 */
void faas_child_run(const struct faas_child_spec *spec, pid_t parent) __attribute__((noreturn));

/* The native worker's main loop on its channel (descriptors 3 and 4). */
void faas_worker_main(int in, int out) __attribute__((noreturn));

/* The data segment of this process in KiB, from /proc (0 if unknown).
 * Async-signal-safe. */
uint64_t faas_child_data_kb(void);

/* Closes every descriptor from `first` up. */
void faas_child_close_from(int first);

/* In the zygote, once: the fatal-signal handlers every native worker it
 * forks inherits (a worker then need not set them at its cold start). */
void faas_worker_install_handlers(void);

/* The zygote's main loop on its control channel (zygote.c). */
void faas_zygote_main(int ctrl, pid_t host) __attribute__((noreturn));

/* Frames: writes all of it (blocking); 0 or -1. */
int faas_frame_write(int fd, uint32_t type, const void *fixed, size_t flen,
                     const char *const *strs, size_t nstrs);

#endif /* FAAS_EXEC_PROCESS_H */
