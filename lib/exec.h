/*
 * exec.h - the executor interface: how the pool runs work on an instance
 * without knowing where that instance lives.
 *
 * Each isolation mode is one executor, a table of operations chosen once at
 * registration and kept in the function (fn->exec), as curl's TLS backends
 * plug into its connection code:
 *
 *   faas_exec_inline   INLINE: on the loop thread (exec_inline.c)
 *   faas_exec_thread   THREAD: on the runtime's worker threads (exec_thread.c)
 *   faas_exec_process  PROCESS and COMMAND: a process per instance
 *                      (exec_process.c; COMMAND's wire is runtime_api.c)
 *
 * pool.c calls only these operations. An executor never calls the pool or
 * the invocation layer by name: it reports through the table it was given,
 * rt->exec_report (invoke.c fills it; runtime.c hands it over at
 * faas_runtime_new). Everything here runs on the loop thread.
 *
 * Included through faas_int.h. Only pool.c calls the operations; runtime.c
 * picks the table. The tables are defined by exec_inline.c, exec_thread.c
 * and exec_process.c.
 */
#ifndef FAAS_EXEC_H
#define FAAS_EXEC_H

struct faas_inv;
struct faas_instance;
struct faas_job;

struct faas_exec_ops {
    const char *name;
    /* 1: a new instance is ready only once the executor says so (a process
     * must start), even when the function has no init. */
    int self_starting;
    /* Runs inv on inv->inst (new when inv->cold: init runs first). The
     * outcome comes back through report->finished, never inside this call
     * for a caller of faas_invoke to see. */
    void (*start)(struct faas_inv *inv);
    /* A min_warm instance (inst->job.kind FAAS_JOB_INIT): makes it ready,
     * then report->job_done(&inst->job), inst->initialized telling whether
     * it worked. */
    void (*prewarm)(struct faas_instance *inst);
    /* Cancels a running invocation (unregister, teardown): its caller gets
     * `status` from the loop; a late outcome is dropped. */
    void (*cancel)(struct faas_inv *inv, int status, const char *etype, const char *emsg);
    /* The pool drops inst: fini where init ran. Returns 0 when the pool may
     * free inst now, 1 when the executor hands it back later through
     * report->job_done (a FAAS_JOB_FINI job). */
    int (*destroy)(struct faas_instance *inst);
    /* The consumer of inv's streamed bytes went away: tell the handler,
     * whose next faas_ctx_stream_write returns FAAS_ECANCELED. NULL: the
     * handler reads inv->stream_gone itself (it runs in this process). */
    void (*stream_closed)(struct faas_inv *inv);
};

extern const struct faas_exec_ops faas_exec_inline;
extern const struct faas_exec_ops faas_exec_thread;
extern const struct faas_exec_ops faas_exec_process;

/* What an executor reports, and the one thing it asks of the layer above. */
struct faas_exec_report {
    /* inv's outcome is written (exec_status, exec_payload, times): finish
     * it (the instance back to the pool, the result to the caller). */
    void (*finished)(struct faas_inv *inv);
    /* An instance's INIT or FINI job came back. */
    void (*job_done)(struct faas_job *job);
    /* An idle instance can serve no more (its process died): drop it. */
    void (*retired)(struct faas_instance *inst);
    /* Onto the loop's ready list: an INLINE invocation to run, or a result
     * decided without running (inv->preset; it holds no instance any more)
     * to deliver. */
    void (*defer)(struct faas_inv *inv);
    /* Cancel inv: the caller hears `status` from the loop, the late outcome
     * is dropped. */
    void (*detach)(struct faas_inv *inv, int status, const char *etype, const char *emsg);
    /* Watch inv's deadline from the loop (an executor that cannot be
     * interrupted, THREAD). 0, or FAAS_ENOMEM: it runs without one. */
    int (*watch)(struct faas_inv *inv);
};

#endif /* FAAS_EXEC_H */
