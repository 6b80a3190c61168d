/*
 * exec_process.c - instances that are processes: PROCESS functions (native
 * workers forked from the zygote) and COMMAND functions (external runtimes
 * speaking the Lambda Runtime API: exec_command.c, runtime_api.c).
 *
 * One record per process (struct faas_proc), linked to its pool instance
 * while the pool uses it. Its life on the host's loop (enum faas_proc_state,
 * changed only by proc_set_state and proc_set_inv):
 *
 *   spawn ──> STARTING ──READY──> IDLE ──INVOKE──> BUSY ──RESULT──> IDLE
 *     │          │                 │  └──the pool drops it: EXIT──> EXITING
 *     │          │                 │                  │               │
 *     └──────────┴──── exit, deadline (SIGKILL), channel lost ──────> DEAD
 *
 * A cold start's invocation waits in STARTING (its INVOKE may already be
 * written behind the HELLO). DEAD is the exit known (reaped); the state it
 * died in is kept (died_in), since frames read after the exit may still
 * say that init had finished, and what the exit means depends on it.
 *
 * Spawning asks the zygote through its client (zygote.c), or forks here
 * when the runtime has none, and passes the new process's descriptors
 * along; a native worker's HELLO is written at once, so the worker starts
 * without waiting for the host to learn its pid. The init phase is bounded by
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
 * What goes through a process's pipes (the channel's frames, its log
 * lines) is exec_process_io.c's; it shares the record through
 * exec_process_int.h, and every change of state is made here.
 *
 * It is the executor faas_exec_process (exec.h): the pool reaches it only
 * through that table, and it reports outcomes, ready instances and dead
 * idle ones through rt->exec_report, never by calling the pool or
 * invoke.c by name.
 *
 * May call: exec_process_io.c, zygote.c (the zygote's client), worker.c
 * (a child's set-up, when the host forks), exec_command.c and
 * runtime_api.c (a COMMAND instance's environment and endpoint), the loop
 * services. Called by pool.c (the table), runtime.c (start, shutdown) and
 * runtime_api.c (faas_proc_ready, faas_proc_result).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <event2/event.h>

#include "exec_process_int.h"
#include "zygote.h"

/* Every change of state. Once DEAD it stays so: a later change (a READY
 * read after the exit) only tells how far the process had got. */
static void proc_set_state(struct faas_proc *proc, enum faas_proc_state to)
{
    if (proc->state == FAAS_PROC_DEAD) {
        if (to != FAAS_PROC_DEAD)
            proc->died_in = to;
        return;
    }
    if (to == FAAS_PROC_DEAD)
        proc->died_in = proc->state;
    proc->state = to;
}

/* The invocation it runs or starts for: once init is done, it is BUSY
 * with one and IDLE without. */
static void proc_set_inv(struct faas_proc *proc, struct faas_inv *inv)
{
    proc->inv = inv;
    if (faas_proc_init_done(proc) && proc->state != FAAS_PROC_EXITING)
        proc_set_state(proc, inv ? FAAS_PROC_BUSY : FAAS_PROC_IDLE);
}

void faas_proc_disarm(struct faas_proc *proc)
{
    if (proc->timer)
        event_del(proc->timer);
}

/* Forgets a RESULT kept for the next pass. */
static void proc_drop_result(struct faas_proc *proc)
{
    json_decref(proc->res_payload);
    proc->res_payload = NULL;
}

/* ---- small helpers --------------------------------------------------- */

/* A pipe end just made: its only status flag is the one set here. */
static void set_nonblock(int fd)
{
    fcntl(fd, F_SETFL, O_NONBLOCK);
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

/* ---- killing and ending ---------------------------------------------- */

/* Without a pidfd, a process that closed its output or was killed is
 * looked for with wait4 every 10 ms until it is gone. */
void faas_proc_reap_soon(struct faas_proc *proc)
{
    struct timeval tv = { 0, 10000 };
    if (proc->reap_poll && proc->pid_ev && proc->state != FAAS_PROC_DEAD &&
        !event_pending(proc->pid_ev, EV_TIMEOUT, NULL))
        event_add(proc->pid_ev, &tv);
}

void faas_proc_kill(struct faas_proc *proc)
{
    if (proc->state == FAAS_PROC_DEAD || proc->killed)
        return;
    proc->killed = 1;
    if (proc->pid <= 0)
        return; /* SPAWNED will tell the pid: killed then */
    if (proc->pidfd >= 0) {
        /* ESRCH: already reaped by the zygote; the pid may be another's
         * by now, so nothing is sent by number. */
        if (syscall(SYS_pidfd_send_signal, proc->pidfd, SIGKILL, NULL, 0) != 0)
            return;
    } else {
        kill(proc->pid, SIGKILL);
    }
    kill(-proc->pid, SIGKILL); /* what it forked */
    faas_proc_reap_soon(proc);
}

/* The process can serve no more: its instance is not handed to anyone;
 * idle, it leaves the pool now (min_warm refilled), not at its exit report. */
void faas_proc_retire(struct faas_proc *proc)
{
    struct faas_instance *inst = proc->inst;

    if (!inst)
        return;
    inst->retire = 1;
    if (proc->inv || !faas_proc_init_done(proc) || faas_list_empty(&inst->link))
        return; /* busy or starting: its end comes through the invocation */
    proc->proc_rt->rt->exec_report->retired(inst);
}

static void proc_free(struct faas_proc *proc)
{
    json_decref(proc->res_payload);
    faas_proc_free_event(&proc->done_ev);
    faas_proc_close_channel(proc);
    faas_proc_free_event(&proc->log_ev);
    faas_proc_close_fd(&proc->logfd);
    faas_proc_free_event(&proc->timer);
    faas_proc_free_event(&proc->pid_ev);
    faas_proc_close_fd(&proc->pidfd);
    faas_list_remove(&proc->link);
    faas_list_remove(&proc->slink);
    free(proc);
}

/* Frees a record nobody needs: detached from its instance, its process
 * reaped (or never started), and not inside one of its callbacks. */
void faas_proc_maybe_free(struct faas_proc *proc)
{
    if (proc->busy == 0 && !proc->inst && (proc->state == FAAS_PROC_DEAD || proc->pid < 0))
        proc_free(proc);
}


/* The invocation ends with this outcome (payload taken over). */
static void proc_finish_inv(struct faas_proc *proc, int status, json_t *payload)
{
    struct faas_inv *inv = proc->inv;
    struct faas_runtime *rt = proc->proc_rt->rt;

    faas_proc_disarm(proc);
    proc_drop_result(proc); /* a RESULT waiting for the next pass loses to this */
    proc_set_inv(proc, NULL);
    inv->exec_status = status;
    json_decref(inv->exec_payload);
    inv->exec_payload = payload ? payload : json_null();
    inv->end_ns = faas_now_ns(rt);
    if (inv->run_start_ns && status != FAAS_ETIMEDOUT && !inv->duration_ns)
        inv->duration_ns = inv->end_ns - inv->run_start_ns;
    if (status != 0 && proc->inst && (status == FAAS_ECRASHED || status == FAAS_EMEMLIMIT ||
                                    status == FAAS_ETIMEDOUT || status == FAAS_EINIT ||
                                    status == FAAS_ECANCELED))
        proc->inst->retire = 1;
    atomic_store(&inv->phase, FAAS_PHASE_DONE);
    rt->exec_report->finished(inv);
}

/* The RESULT kept for the next pass: ends its invocation now. */
static void proc_finish_result(struct faas_proc *proc)
{
    json_t *payload = proc->res_payload;
    proc->res_payload = NULL;
    proc_finish_inv(proc, proc->res_status, payload);
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
static void proc_init_failed(struct faas_proc *proc, json_t *error)
{
    struct faas_instance *inst = proc->inst;

    faas_proc_drain_log(proc); /* what init printed belongs to the invocation */
    /* Its peak, while /proc still has it (0 once reaped: known then). */
    if (inst && proc->inv && !proc->inv->proc_maxrss_kb && proc->state != FAAS_PROC_DEAD)
        proc->inv->proc_maxrss_kb = proc_hwm_kb(proc->pid);
    faas_proc_kill(proc);
    if (!inst) {
        json_decref(error);
        return;
    }
    inst->initialized = 0;
    if (proc->inv) {
        proc->inv->init_ns = faas_now_ns(proc->proc_rt->rt) - proc->spawn_ns;
        proc_finish_inv(proc, FAAS_EINIT, error);
        return;
    }
    json_decref(error);
    faas_proc_disarm(proc);
    proc->proc_rt->rt->exec_report->job_done(&inst->job); /* a min_warm start that failed */
}

static void lower_first(char *s)
{
    if (s[0] >= 'A' && s[0] <= 'Z')
        s[0] = (char)(s[0] - 'A' + 'a');
}

/* What an exit means for the invocation it interrupted. */
static int proc_classify_exit(struct faas_proc *proc, int wstatus, uint64_t maxrss_kb, json_t **err)
{
    uint64_t mem_kb = (uint64_t)proc->memory_mb * 1024u;
    char how[96];
    int memory = 0;

    if (proc->lost) {
        *err = error_obj("Runtime.ExitError", "Runtime exited: the zygote is gone");
        return FAAS_ECRASHED;
    }
    if (WIFSIGNALED(wstatus)) {
        snprintf(how, sizeof how, "signal: %s", strsignal(WTERMSIG(wstatus)));
        lower_first(how + 8);
    } else {
        snprintf(how, sizeof how, "exit status %d", WEXITSTATUS(wstatus));
    }
    if (proc->chan_lost && WIFSIGNALED(wstatus) && WTERMSIG(wstatus) == SIGKILL) {
        *err = error_obj("Runtime.ExitError",
                         "Runtime exited without providing a reason (it closed its channel)");
        return FAAS_ECRASHED;
    }
    if (proc->dying_seen && proc->dying.limit_kb && mem_kb) {
        /* Less than a tenth of memory_mb left under the limit (half, when
         * an allocation had just failed): it died of its memory. */
        uint64_t left = proc->dying.limit_kb > proc->dying.data_kb
                            ? proc->dying.limit_kb - proc->dying.data_kb : 0;
        memory = left * 10 < mem_kb || (proc->dying.enomem && left * 2 < mem_kb);
    } else if (mem_kb) {
        /* An outside SIGKILL of a process that had used half its memory or
         * more is taken for the kernel's (cgroup) OOM killer. A native
         * worker says itself when memory ran out; of a command's end at
         * its limit (a runtime aborting on a failed allocation) only the
         * peak tells. */
        memory = (WIFSIGNALED(wstatus) && WTERMSIG(wstatus) == SIGKILL &&
                  maxrss_kb * 2 >= mem_kb) ||
                 (proc->command && maxrss_kb * 10 >= mem_kb * 8);
    }
    if (memory) {
        *err = error_obj("Runtime.OutOfMemory",
                         "Runtime exited with error: %s (memory limit of %u MB reached)", how,
                         proc->memory_mb);
        return FAAS_EMEMLIMIT;
    }
    *err = error_obj("Runtime.ExitError", "Runtime exited with error: %s", how);
    return FAAS_ECRASHED;
}

/* The process is gone (reaped). */
static void proc_exited(struct faas_proc *proc, int wstatus, uint64_t maxrss_kb)
{
    struct faas_instance *inst = proc->inst;
    json_t *err = NULL;
    int status;

    proc_set_state(proc, FAAS_PROC_DEAD);
    proc->busy++;
    /* Dead: whatever finishes below must not hand it to anyone. */
    if (inst)
        inst->retire = 1;
    faas_proc_drain_log(proc);
    /* What it wrote before it ended is all in the pipe: READY, its
     * RESULT, a DYING frame. They come first. */
    while (proc->chan >= 0 && faas_proc_read_channel(proc) > 0)
        ;
    inst = proc->inst; /* a READY with an error may have dropped it */
    if (proc->res_payload && proc->inv) {
        proc_finish_result(proc); /* it answered, then ended: the answer stands */
        inst = proc->inst;
    }
    if (inst) {
        if (!maxrss_kb && proc->dying_seen)
            maxrss_kb = proc->dying.maxrss_kb;
        if (proc->killed)
            status = FAAS_ECRASHED, err = error_obj("Runtime.ExitError", "Runtime was killed");
        else
            status = proc_classify_exit(proc, wstatus, maxrss_kb, &err);
        if (!faas_proc_init_done(proc)) {
            if (proc->inv)
                proc->inv->proc_maxrss_kb = maxrss_kb;
            proc_init_failed(proc, err);
        } else if (proc->inv) {
            proc->inv->proc_maxrss_kb = maxrss_kb;
            proc_finish_inv(proc, status, err);
        } else {
            json_decref(err);
            faas_proc_retire(proc); /* died idle: out of the pool, min_warm refilled */
        }
    }
    proc->busy--;
    faas_proc_maybe_free(proc);
}

static void done_cb(evutil_socket_t fd, short what, void *arg)
{
    struct faas_proc *proc = arg;
    struct faas_runtime *rt = proc->proc_rt->rt;

    (void)fd;
    (void)what;
    if (!proc->res_payload || !proc->inv)
        return;
    faas_rt_enter(rt);
    proc->busy++;
    if (proc->res_logged)
        faas_proc_drain_log(proc); /* its stdout and stderr lines, before its end */
    proc_finish_result(proc);
    proc->busy--;
    faas_proc_maybe_free(proc);
    faas_rt_leave(rt);
}

/* ---- deadlines -------------------------------------------------------- */

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct faas_proc *proc = arg;
    struct faas_runtime *rt = proc->proc_rt->rt;
    struct faas_inv *inv = proc->inv;
    char msg[96];

    (void)fd;
    (void)what;
    faas_rt_enter(rt);
    proc->busy++;
    if (!proc->inst) {
        faas_proc_kill(proc); /* asked to exit and did not: fini overran */
    } else if (!faas_proc_init_done(proc)) {
        uint32_t ms = proc->inst ? proc->inst->fn->opts.init_timeout_ms : 0;
        faas_proc_kill(proc);
        proc_init_failed(proc, error_obj("Runtime.InitError", "Init timed out after %.2f seconds",
                                    (double)ms / 1000.0));
    } else if (inv) {
        inv->proc_maxrss_kb = proc_hwm_kb(proc->pid);
        faas_proc_drain_log(proc);
        faas_proc_kill(proc);
        inv->duration_ns = (uint64_t)inv->timeout_ms * 1000000u;
        snprintf(msg, sizeof msg, "Task timed out after %.2f seconds",
                 (double)inv->timeout_ms / 1000.0);
        proc_finish_inv(proc, FAAS_ETIMEDOUT, faas_error_object("Sandbox.Timedout", msg));
    }
    proc->busy--;
    faas_proc_maybe_free(proc);
    faas_rt_leave(rt);
}

static void proc_arm(struct faas_proc *proc, uint64_t ms)
{
    struct timeval tv;
    if (ms == 0) {
        faas_proc_disarm(proc);
        return;
    }
    if (!proc->timer && !(proc->timer = event_new(proc->proc_rt->rt->base, -1, 0, timer_cb, proc)))
        return; /* no deadline then: the process runs until it answers */
    tv = faas_ms_to_tv(ms);
    event_add(proc->timer, &tv);
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
static int proc_write_invoke(struct faas_proc *proc, struct faas_inv *inv)
{
    int rc = faas_proc_invoke_frame(proc, inv);
    if (rc == FAAS_ENOMEM) {
        /* Maybe inside faas_invoke: the result comes from the loop. */
        proc_set_inv(proc, NULL);
        faas_proc_disarm(proc);
        fail_later(inv, FAAS_ENOMEM, "Runtime.OutOfMemory", "the host is out of memory");
    }
    return rc;
}

/* inv's handler starts now: its deadline runs from here. */
static void proc_start_run(struct faas_proc *proc, struct faas_inv *inv)
{
    uint64_t now = faas_now_ns(proc->proc_rt->rt), t = (uint64_t)inv->timeout_ms * 1000000u;
    inv->run_start_ns = now;
    atomic_store(&inv->ctx.deadline_ns, t ? now + t : 0);
    atomic_store(&inv->phase, FAAS_PHASE_RUN);
    proc_arm(proc, inv->timeout_ms);
}

/* Starts inv on a ready process. */
static void proc_send(struct faas_proc *proc, struct faas_inv *inv)
{
    proc_start_run(proc, inv);
    if (proc->command)
        faas_runtime_api_send(proc->inst, inv);
    else
        proc_write_invoke(proc, inv);
}

void faas_proc_on_ready(struct faas_proc *proc, int status, json_t *error)
{
    struct faas_instance *inst = proc->inst;
    struct faas_inv *inv = proc->inv;

    if (faas_proc_init_done(proc))
        return;
    proc->init_ns = faas_now_ns(proc->proc_rt->rt) - proc->spawn_ns;
    faas_proc_disarm(proc);
    if (status != 0) {
        if (!error)
            error = faas_error_object("Runtime.InitError", "init failed");
        proc_init_failed(proc, error);
        return;
    }
    json_decref(error);
    proc_set_state(proc, inv ? FAAS_PROC_BUSY : FAAS_PROC_IDLE);
    if (!inst)
        return;
    if (proc->state == FAAS_PROC_DEAD || (!proc->command && proc->chan < 0)) {
        /* Ready, and already gone (read while its exit is handled). */
        if (!inv) {
            inst->initialized = 0;
            faas_proc_disarm(proc);
            proc->proc_rt->rt->exec_report->job_done(&inst->job);
        }
        return; /* an invocation learns it from the exit */
    }
    inst->initialized = 1;
    if (inv) {
        inv->init_ns = proc->init_ns;
        if (proc->sent)
            proc_start_run(proc, inv); /* its INVOKE went with the HELLO */
        else
            proc_send(proc, inv);
    } else {
        proc->proc_rt->rt->exec_report->job_done(&inst->job); /* min_warm: hand over or idle */
    }
}

void faas_proc_ready(struct faas_instance *inst, int status, json_t *error)
{
    struct faas_proc *proc = inst ? inst->proc : NULL;
    if (!proc) {
        json_decref(error);
        return;
    }
    proc->busy++;
    faas_proc_on_ready(proc, status, error);
    proc->busy--;
    faas_proc_maybe_free(proc);
}

void faas_proc_stream(struct faas_instance *inst, const void *data, size_t len)
{
    struct faas_proc *proc = inst ? inst->proc : NULL;
    if (!proc || !proc->inv)
        return;
    proc->busy++;
    faas_stream_deliver(proc->inv, data, len);
    proc->busy--;
    faas_proc_maybe_free(proc);
}

void faas_proc_result(struct faas_instance *inst, int status, json_t *payload)
{
    faas_proc_stream_result(inst, NULL, 0, 0, status, payload);
}

void faas_proc_stream_result(struct faas_instance *inst, const void *data, size_t len,
                             int streamed, int status, json_t *payload)
{
    struct faas_proc *proc = inst ? inst->proc : NULL;
    struct faas_inv *inv = proc ? proc->inv : NULL;

    if (!inv) {
        json_decref(payload);
        return;
    }
    proc->busy++;
    if (streamed) {
        /* The last bytes first: a caller's callback may end the
         * invocation (unregister), and then its result is not ours. */
        faas_stream_deliver(inv, data, len);
        if (proc->inv != inv) {
            json_decref(payload);
            proc->busy--;
            faas_proc_maybe_free(proc);
            return;
        }
    }
    {
        /* Peak memory from /proc, read at most every 100 ms: it costs as
         * much as the rest of a warm invocation. */
        uint64_t now = faas_now_ns(proc->proc_rt->rt);
        if (!proc->hwm_kb || now - proc->hwm_at_ns >= 100000000u) {
            uint64_t kb = proc_hwm_kb(proc->pid);
            if (kb)
                proc->hwm_kb = kb;
            proc->hwm_at_ns = now;
        }
        proc->inv->proc_maxrss_kb = proc->hwm_kb;
    }
    proc_finish_inv(proc, status, payload);
    proc->busy--;
    faas_proc_maybe_free(proc);
}

/* ---- spawning --------------------------------------------------------- */

static void pid_cb(evutil_socket_t fd, short what, void *arg)
{
    struct faas_proc *proc = arg;
    struct faas_runtime *rt = proc->proc_rt->rt;
    struct rusage ru;
    int st = 0;
    pid_t r;

    (void)fd;
    (void)what;
    memset(&ru, 0, sizeof ru);
    r = wait4(proc->pid, &st, WNOHANG, &ru);
    if (r == 0) {
        if (proc->reap_poll) {
            struct timeval tv = { 0, 10000 };
            event_add(proc->pid_ev, &tv);
        }
        return;
    }
    faas_proc_free_event(&proc->pid_ev);
    faas_rt_enter(rt);
    if (r < 0)
        st = 0; /* reaped by someone else (the host's own SIGCHLD handler) */
    proc_exited(proc, st, (uint64_t)ru.ru_maxrss);
    faas_rt_leave(rt);
}

/* Starts the process of a new record: through the zygote, or a fork here. */
static int proc_start_process(struct faas_proc *proc, int child_in, int child_out, int child_log,
                           char **argv, char **env)
{
    struct faas_proc_rt *prt = proc->proc_rt;
    struct faas_fn *fn = proc->inst->fn;
    struct faas_zygote_spawn sp;
    const char *cwd = fn->task_root ? fn->task_root : "";

    memset(&sp, 0, sizeof sp);
    sp.type = FAAS_ZYGOTE_SPAWN;
    sp.tag = ++prt->next_tag;
    sp.command = (uint32_t)proc->command;
    sp.memory_mb = proc->memory_mb;
    proc->tag = sp.tag;
    if (faas_zygote_client_up(prt->zygote)) {
        int fds[3], nfds = 0, rc;
        if (!proc->command) {
            fds[nfds++] = child_in;
            fds[nfds++] = child_out;
        }
        fds[nfds++] = child_log;
        rc = faas_zygote_client_spawn(prt->zygote, &sp, cwd, argv, env, fds, nfds);
        if (rc != 0)
            return rc;
        faas_list_insert_tail(&prt->spawning, &proc->slink);
        return 0;
    } else {
        struct faas_child_spec spec;
        pid_t host = getpid(), pid;

        memset(&spec, 0, sizeof spec);
        spec.command = proc->command;
        spec.memory_mb = proc->memory_mb;
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
        proc->pid = pid;
        proc->pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
        if (proc->pidfd >= 0) {
            proc->pid_ev =
                event_new(prt->rt->base, proc->pidfd, EV_READ | EV_PERSIST, pid_cb, proc);
        } else {
            /* No pidfds (an old kernel, or a tool that does not know the
             * call): its end shows as end-of-file on its output. */
            proc->reap_poll = 1;
            proc->pid_ev = event_new(prt->rt->base, -1, 0, pid_cb, proc);
        }
        if (!proc->pid_ev) {
            kill(pid, SIGKILL);
            waitpid(pid, NULL, 0);
            proc->pid = -1;
            return FAAS_ESYS;
        }
        if (!proc->reap_poll)
            event_add(proc->pid_ev, NULL);
        return 0;
    }
}

/* A record and its process for inst. Returns 0 or FAAS_E*. */
static int proc_spawn(struct faas_instance *inst)
{
    struct faas_fn *fn = inst->fn;
    struct faas_runtime *rt = fn->rt;
    struct faas_proc_rt *prt = rt->proc_rt;
    struct faas_proc *proc;
    int down[2] = { -1, -1 }, up[2] = { -1, -1 }, logp[2] = { -1, -1 }, rc = FAAS_ESYS;
    char **env = NULL;

    if (!prt)
        return FAAS_ESYS;
    proc = faas_calloc(1, sizeof *proc);
    if (!proc)
        return FAAS_ENOMEM;
    faas_list_init(&proc->link);
    faas_list_init(&proc->slink);
    proc->proc_rt = prt;
    proc->inst = inst;
    proc->command = fn->proc_kind == FAAS_PROC_COMMAND;
    proc->chan = proc->chanw = proc->chank = proc->logfd = proc->pidfd = -1;
    proc->memory_mb = fn->opts.memory_mb;
    proc->spawn_ns = faas_now_ns(rt);
    inst->proc = proc;

    if (pipe2(logp, O_CLOEXEC) != 0)
        goto fail;
    /* Two pipes, not a socketpair: a round trip through pipes costs the
     * kernel a good deal less. */
    if (!proc->command && (pipe2(down, O_CLOEXEC) != 0 || pipe2(up, O_CLOEXEC) != 0))
        goto fail;
    if (proc->command && (rc = faas_cmd_inst_new(inst, &env)) != 0)
        goto fail;
    /* The process first: the zygote forks while the host sets up its side,
     * and the worker waits for its HELLO on the pipe. */
    rc = proc_start_process(proc, down[0], up[1], logp[1], fn->argv, env);
    if (rc != 0)
        goto fail;
    faas_strv_free(env);
    env = NULL;
    faas_proc_close_fd(&up[1]);
    faas_proc_close_fd(&logp[1]);
    faas_list_insert_tail(&prt->procs, &proc->link);
    proc->logfd = logp[0];
    set_nonblock(proc->logfd);
    proc->log_ev = event_new(rt->base, proc->logfd, EV_READ | EV_PERSIST, faas_proc_log_cb, proc);
    if (!proc->command) {
        proc->chan = up[0];
        proc->chanw = down[1];
        proc->chank = down[0];
        set_nonblock(proc->chan);
        set_nonblock(proc->chanw);
        proc->rev = event_new(rt->base, proc->chan, EV_READ | EV_PERSIST, faas_proc_read_cb, proc);
        proc->wev = event_new(rt->base, proc->chanw, EV_WRITE, faas_proc_write_cb, proc);
        proc->done_ev = event_new(rt->base, -1, 0, done_cb, proc);
    }
    rc = FAAS_ENOMEM;
    if (!proc->log_ev || (!proc->command && (!proc->rev || !proc->wev || !proc->done_ev)))
        goto started;
    if (!proc->command) {
        /* HELLO: where the handler is and its limits. */
        struct faas_frame_hello hi;
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
        if ((rc = faas_proc_send_frame(proc, FAAS_FRAME_HELLO, &hi, sizeof hi, strs, lens, 3)) != 0)
            goto started;
    }
    event_add(proc->log_ev, NULL);
    if (proc->rev)
        event_add(proc->rev, NULL);
    proc_arm(proc, fn->opts.init_timeout_ms);
    return 0;
started:
    /* The process runs but cannot be served: it is killed, and its record
     * stays until its exit is known. */
    faas_proc_kill(proc);
    if (proc->command)
        faas_runtime_api_free(inst);
    inst->proc = NULL;
    proc->inst = NULL;
    faas_proc_maybe_free(proc);
    return rc;
fail:
    if (proc->command && inst->runtime_api)
        faas_runtime_api_free(inst);
    faas_strv_free(env);
    faas_proc_close_fd(&up[0]);
    faas_proc_close_fd(&up[1]);
    faas_proc_close_fd(&down[0]);
    faas_proc_close_fd(&down[1]);
    faas_proc_close_fd(&logp[0]);
    faas_proc_close_fd(&logp[1]);
    inst->proc = NULL;
    proc->inst = NULL;
    proc->pid = -1;
    proc_free(proc);
    return rc;
}

/* ---- the executor operations (exec.h) --------------------------------- */

static void proc_start_op(struct faas_inv *inv)
{
    struct faas_instance *inst = inv->inst;
    struct faas_proc *proc = inst->proc;
    int rc;

    if (!proc) {
        rc = proc_spawn(inst);
        if (rc != 0) {
            fail_later(inv, FAAS_EINIT, "Runtime.StartError",
                       rc == FAAS_ENOMEM ? "out of memory starting the runtime"
                                         : "the runtime process could not be started");
            return;
        }
        proc = inst->proc;
    }
    proc_set_inv(proc, inv);
    proc->sent = 0;
    atomic_store(&inv->phase, faas_proc_init_done(proc) ? FAAS_PHASE_RUN : FAAS_PHASE_INIT);
    if (faas_proc_init_done(proc))
        proc_send(proc, inv);
    else if (!proc->command && proc_write_invoke(proc, inv) == 0)
        proc->sent = 1; /* the worker reads it right after its init: no round trip */
}

static void proc_prewarm_op(struct faas_instance *inst)
{
    if (proc_spawn(inst) != 0) {
        inst->initialized = 0;
        inst->fn->rt->exec_report->job_done(&inst->job);
    }
}

static void proc_destroy(struct faas_instance *inst)
{
    struct faas_proc *proc = inst->proc;

    if (inst->runtime_api)
        faas_runtime_api_free(inst);
    if (!proc)
        return;
    inst->proc = NULL;
    proc->inst = NULL;
    proc_set_inv(proc, NULL);
    faas_proc_disarm(proc);
    proc_drop_result(proc);
    if (proc->state != FAAS_PROC_DEAD) {
        if (!proc->command && faas_proc_init_done(proc) && !proc->killed && proc->chan >= 0) {
            /* Warm and idle: let it run fini and go. */
            if (faas_proc_send_frame(proc, FAAS_FRAME_EXIT, NULL, 0, NULL, NULL, 0) == 0)
                proc_set_state(proc, FAAS_PROC_EXITING);
            proc_arm(proc, 2000);
            /* The timer of a detached record only kills. */
        } else {
            faas_proc_kill(proc);
        }
    }
    faas_proc_maybe_free(proc);
}

static void proc_cancel_op(struct faas_inv *inv, int status, const char *etype,
                          const char *emsg)
{
    struct faas_proc *proc = inv->inst ? inv->inst->proc : NULL;

    inv->rt->exec_report->detach(inv, status, etype, emsg);
    if (!proc) {
        return;
    }
    proc->busy++;
    faas_proc_kill(proc);
    if (proc->inv == inv)
        proc_finish_inv(proc, status, NULL);
    proc->busy--;
    faas_proc_maybe_free(proc);
}

static void proc_stream_closed_op(struct faas_inv *inv)
{
    struct faas_proc *proc = inv->inst ? inv->inst->proc : NULL;

    /* A native worker reads it at its next write; a COMMAND runtime's
     * later bytes are dropped on arrival. */
    if (proc && !proc->command && proc->inv == inv)
        faas_proc_send_frame(proc, FAAS_FRAME_STREAM_CLOSED, NULL, 0, NULL, NULL, 0);
}

static int proc_destroy_op(struct faas_instance *inst)
{
    proc_destroy(inst); /* fini runs in the process */
    return 0;
}

/* PROCESS and COMMAND alike: COMMAND differs only in its wire (proc_send). */
const struct faas_exec_ops faas_exec_process = {
    .name = "process",
    .self_starting = 1,
    .start = proc_start_op,
    .prewarm = proc_prewarm_op,
    .cancel = proc_cancel_op,
    .destroy = proc_destroy_op,
    .stream_closed = proc_stream_closed_op,
};

/* ---- what the zygote reports (zygote.c) ------------------------------ */

static struct faas_proc *find_pid(struct faas_proc_rt *prt, pid_t pid)
{
    struct faas_list *e;
    for (e = prt->procs.next; e != &prt->procs; e = e->next) {
        struct faas_proc *proc = FAAS_CONTAINER_OF(e, struct faas_proc, link);
        if (proc->pid == pid)
            return proc;
    }
    return NULL;
}

/* SPAWNED: the record that asked learns its pid, or that it has none. */
static void zygote_spawned(void *arg, const struct faas_zygote_spawned *m, int pidfd)
{
    struct faas_proc_rt *prt = arg;
    struct faas_list *e;
    for (e = prt->spawning.next; e != &prt->spawning; e = e->next) {
        struct faas_proc *proc = FAAS_CONTAINER_OF(e, struct faas_proc, slink);
        if (proc->tag != m->tag)
            continue;
        faas_list_remove(&proc->slink);
        proc->busy++;
        if (m->pid <= 0) {
            proc->pid = -1;
            proc_set_state(proc, FAAS_PROC_DEAD);
            if (proc->inst) {
                if (!proc->killed)
                    proc_init_failed(proc, error_obj("Runtime.StartError",
                                                "the runtime process could not be started: %s",
                                                strerror(-m->pid)));
                else if (proc->inv)
                    proc_finish_inv(proc, FAAS_ECRASHED, NULL);
            }
        } else {
            proc->pid = m->pid;
            proc->pidfd = pidfd;
            pidfd = -1;
            if (proc->killed) {
                proc->killed = 0;
                faas_proc_kill(proc);
            }
        }
        proc->busy--;
        faas_proc_maybe_free(proc);
        break;
    }
    if (pidfd >= 0)
        close(pidfd);
}

/* EXITED: a process of ours is reaped. */
static void zygote_exited(void *arg, pid_t pid, int wstatus, uint64_t maxrss_kb)
{
    struct faas_proc *proc = find_pid(arg, pid);
    if (proc)
        proc_exited(proc, wstatus, maxrss_kb);
}

/* The zygote died: its workers died with it. Only the records of the dead
 * ones end here; replacements are the host's own children. */
static void zygote_lost(void *arg)
{
    struct faas_proc_rt *prt = arg;
    struct faas_list dead, *e;

    faas_list_init(&dead);
    faas_list_splice(&dead, &prt->procs);
    while ((e = faas_list_pop_head(&dead)) != NULL) {
        struct faas_proc *proc = FAAS_CONTAINER_OF(e, struct faas_proc, link);
        faas_list_insert_tail(&prt->procs, &proc->link);
        proc->lost = 1;
        proc_exited(proc, SIGKILL, 0);
    }
}

static const struct faas_zygote_report zygote_report = {
    .spawned = zygote_spawned,
    .exited = zygote_exited,
    .lost = zygote_lost,
};

int faas_zygote_start(struct faas_runtime *rt)
{
    struct faas_proc_rt *prt = faas_calloc(1, sizeof *prt);
    int rc;

    if (!prt)
        return FAAS_ENOMEM;
    prt->rt = rt;
    faas_list_init(&prt->spawning);
    faas_list_init(&prt->procs);
    rt->proc_rt = prt;
    if (!rt->opts.zygote)
        return 0;
    rc = faas_zygote_client_start(rt, &zygote_report, prt, &prt->zygote);
    if (rc != 0) {
        rt->proc_rt = NULL;
        free(prt);
    }
    return rc;
}

void faas_proc_shutdown(struct faas_runtime *rt)
{
    struct faas_proc_rt *prt = rt->proc_rt;
    struct faas_list *e;
    uint64_t end;

    if (!prt)
        return;
    /* Workers asked to run fini get a moment; then everything is killed. */
    end = faas_now_ns(rt) + 1000000000u;
    for (;;) {
        struct pollfd pfd[64];
        nfds_t n = 0;
        for (e = prt->procs.next; e != &prt->procs && n < 64; e = e->next) {
            struct faas_proc *proc = FAAS_CONTAINER_OF(e, struct faas_proc, link);
            if (proc->state == FAAS_PROC_EXITING && !proc->killed && proc->chan >= 0) {
                pfd[n].fd = proc->chan;
                pfd[n++].events = POLLIN;
            }
        }
        if (n == 0 || faas_now_ns(rt) >= end)
            break;
        if (poll(pfd, n, 50) <= 0)
            continue;
        for (e = prt->procs.next; e != &prt->procs; e = e->next) {
            struct faas_proc *proc = FAAS_CONTAINER_OF(e, struct faas_proc, link);
            nfds_t i;
            for (i = 0; i < n; i++) {
                if (pfd[i].fd == proc->chan && pfd[i].revents) {
                    char buf[4096];
                    if (read(proc->chan, buf, sizeof buf) == 0)
                        faas_proc_close_channel(proc); /* gone: its fini ran */
                }
            }
        }
    }
    while (!faas_list_empty(&prt->procs)) {
        struct faas_proc *proc = FAAS_CONTAINER_OF(prt->procs.next, struct faas_proc, link);
        if (proc->inst && !faas_proc_init_done(proc) && !proc->inv) {
            /* A min_warm start still under way: the pool drops it. */
            proc->inst->initialized = 0;
            rt->exec_report->job_done(&proc->inst->job);
        }
        if (proc->inst)
            proc_destroy(proc->inst);
        if (proc->state != FAAS_PROC_DEAD && proc->pid > 0) {
            proc->killed = 0;
            faas_proc_kill(proc);
            if (!faas_zygote_client_up(prt->zygote))
                waitpid(proc->pid, NULL, 0);
        }
        proc_free(proc);
    }
}

void faas_zygote_stop(struct faas_runtime *rt)
{
    struct faas_proc_rt *prt = rt->proc_rt;
    if (!prt)
        return;
    faas_zygote_client_stop(prt->zygote);
    rt->proc_rt = NULL;
    free(prt);
}

pid_t faas_proc_zygote_pid(const struct faas_runtime *rt)
{
    return rt->proc_rt ? faas_zygote_client_pid(rt->proc_rt->zygote) : 0;
}

pid_t faas_proc_pid(const struct faas_instance *inst)
{
    return inst && inst->proc ? inst->proc->pid : -1;
}
