/*
 * exec_thread.c - the worker threads of THREAD functions.
 *
 * One pool per runtime, started when the first THREAD function is
 * registered, shared by every THREAD function. The loop submits jobs to a
 * FIFO under a mutex and wakes a worker only if one is waiting. A worker
 * runs the job and appends it to the completion list; the worker that makes
 * that list non-empty writes the eventfd once, so any number of completions
 * cost the loop one wake-up and one read. The eventfd's read event stays
 * registered on the host's base while the pool exists.
 *
 * A handler's streamed bytes (faas_ctx_stream_write) go the same way as
 * completions: a chunk joins the chunk list under the same mutex and the
 * same eventfd wakes the loop, which delivers every chunk it took before
 * the completions it took with them, so an invocation's bytes always come
 * before its result. A worker waits (back-pressure) while
 * FAAS_STREAM_BUFFER_MAX bytes of chunks are queued and the loop has not
 * taken them; stopping, or its invocation's end, releases it.
 *
 * Stopping (faas_runtime_free): the workers drain the queue, skipping
 * invocations already cancelled and min_warm inits, run what fini jobs there
 * are, and exit; the loop thread joins them and then hands each completed
 * job back to its owner.
 *
 * As the THREAD executor (exec.h) it runs the job bodies of exec_inline.c
 * and reports through rt->exec_report: never the pool or invoke.c by name.
 *
 * Owns the pool (struct faas_tpool, rt->tpool): the job FIFO and its mutex
 * and condition variable, the completion list and its mutex, the eventfd and
 * its event, the threads. Called by runtime.c (faas_tpool_start at the first
 * THREAD registration, faas_tpool_stop at free, the table faas_exec_thread)
 * and, through the table, pool.c. May call: exec_inline.c (faas_job_run),
 * runtime.c's callback guard, alloc.c; pthreads, eventfd(2) and libevent.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <event2/event.h>

#include "faas_int.h"

struct faas_tpool {
    struct faas_runtime *rt;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct faas_list jobs;
    unsigned nwaiting; /* workers blocked on cv */
    int stop;
    atomic_int stopping;

    pthread_mutex_t done_mu;
    struct faas_list done;
    struct faas_list chunks;   /* struct stream_chunk, in the order written */
    size_t chunk_bytes;        /* their bytes */
    pthread_cond_t chunk_cv;   /* a worker waits for room */
    unsigned chunk_waiting;

    int efd;
    struct event *ev;
    pthread_t *threads;
    unsigned nthreads;
};

struct stream_chunk {
    struct faas_list link;
    struct faas_inv *inv;
    size_t len;
    char data[];
};

/* Wakes the loop: a completion or a chunk joined empty lists. */
static void wake_loop(struct faas_tpool *p)
{
    uint64_t one = 1;
    ssize_t w;
    do
        w = write(p->efd, &one, sizeof one);
    while (w < 0 && errno == EINTR);
}

int faas_tpool_stream_write(void *arg, const void *data, size_t len)
{
    struct faas_inv *inv = arg;
    struct faas_tpool *p = inv->rt->pool;
    struct stream_chunk *c;
    int was_empty;

    /* Past its deadline the invocation has ended: nobody takes more. */
    if (atomic_load(&inv->stream_gone) || faas_ctx_cancelled(&inv->ctx))
        return FAAS_ECANCELED;
    if (!(c = faas_malloc(sizeof *c + len)))
        return FAAS_ENOMEM;
    c->inv = inv;
    c->len = len;
    if (len)
        memcpy(c->data, data, len);
    pthread_mutex_lock(&p->done_mu);
    while (p->chunk_bytes >= FAAS_STREAM_BUFFER_MAX && !atomic_load(&p->stopping) &&
           !atomic_load(&inv->stream_gone) && !atomic_load(&inv->ctx.cancelled)) {
        p->chunk_waiting++;
        pthread_cond_wait(&p->chunk_cv, &p->done_mu);
        p->chunk_waiting--;
    }
    if (atomic_load(&p->stopping) || atomic_load(&inv->stream_gone) ||
        atomic_load(&inv->ctx.cancelled)) {
        pthread_mutex_unlock(&p->done_mu);
        free(c);
        return FAAS_ECANCELED;
    }
    was_empty = faas_list_empty(&p->done) && faas_list_empty(&p->chunks);
    faas_list_insert_tail(&p->chunks, &c->link);
    p->chunk_bytes += len;
    pthread_mutex_unlock(&p->done_mu);
    if (was_empty)
        wake_loop(p);
    return 0;
}

static void *worker_main(void *arg)
{
    struct faas_tpool *p = arg;
    struct faas_list *e;

    for (;;) {
        pthread_mutex_lock(&p->mu);
        while (faas_list_empty(&p->jobs) && !p->stop) {
            p->nwaiting++;
            pthread_cond_wait(&p->cv, &p->mu);
            p->nwaiting--;
        }
        e = faas_list_pop_head(&p->jobs);
        pthread_mutex_unlock(&p->mu);
        if (!e)
            break; /* stopping, and nothing left */
        {
            struct faas_job *job = FAAS_CONTAINER_OF(e, struct faas_job, link);
            int was_empty;
            /* At teardown a min_warm init is pointless: the instance is
             * dropped unused. Cancelled invocations skip themselves. */
            if (!(job->kind == FAAS_JOB_INIT && atomic_load(&p->stopping)))
                faas_job_run(job);
            pthread_mutex_lock(&p->done_mu);
            was_empty = faas_list_empty(&p->done) && faas_list_empty(&p->chunks);
            faas_list_insert_tail(&p->done, &job->link);
            pthread_mutex_unlock(&p->done_mu);
            if (was_empty)
                wake_loop(p);
        }
    }
    return NULL;
}

void faas_job_done(struct faas_runtime *rt, struct faas_job *job)
{
    if (job->kind == FAAS_JOB_INVOKE) {
        struct faas_inv *inv = job->inv;
        inv->submitted = 0;
        rt->exec_report->finished(inv);
    } else {
        rt->exec_report->job_done(job);
    }
}

/* Takes every completed job and hands it back. Returns 1 if the runtime was
 * freed by a callback and must not be touched. */
static int drain_done(struct faas_tpool *p)
{
    struct faas_runtime *rt = p->rt;
    struct faas_list batch, chunks, *e;

    faas_list_init(&batch);
    faas_list_init(&chunks);
    pthread_mutex_lock(&p->done_mu);
    faas_list_splice(&batch, &p->done);
    faas_list_splice(&chunks, &p->chunks);
    p->chunk_bytes = 0;
    if (p->chunk_waiting)
        pthread_cond_broadcast(&p->chunk_cv);
    pthread_mutex_unlock(&p->done_mu);
    faas_rt_enter(rt);
    /* Chunks first: an invocation's bytes come before its result. */
    while ((e = faas_list_pop_head(&chunks)) != NULL) {
        struct stream_chunk *c = FAAS_CONTAINER_OF(e, struct stream_chunk, link);
        faas_stream_deliver(c->inv, c->data, c->len);
        free(c);
    }
    while ((e = faas_list_pop_head(&batch)) != NULL)
        faas_job_done(rt, FAAS_CONTAINER_OF(e, struct faas_job, link));
    return faas_rt_leave(rt);
}

static void efd_cb(evutil_socket_t fd, short what, void *arg)
{
    struct faas_tpool *p = arg;
    uint64_t n;
    (void)what;
    /* Read first: a completion after the read writes again. */
    if (read(fd, &n, sizeof n) < 0 && errno != EAGAIN && errno != EINTR)
        return;
    drain_done(p);
}

int faas_tpool_start(struct faas_runtime *rt, unsigned nthreads)
{
    struct faas_tpool *p;
    unsigned i;
    long ncpu;

    if (nthreads == 0) {
        ncpu = sysconf(_SC_NPROCESSORS_ONLN);
        nthreads = ncpu > 0 ? (unsigned)ncpu : 1u;
    }
    p = faas_calloc(1, sizeof *p);
    if (!p)
        return FAAS_ENOMEM;
    p->rt = rt;
    faas_list_init(&p->jobs);
    faas_list_init(&p->done);
    faas_list_init(&p->chunks);
    p->threads = faas_calloc(nthreads, sizeof *p->threads);
    if (!p->threads) {
        free(p);
        return FAAS_ENOMEM;
    }
    p->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (p->efd < 0)
        goto fail;
    p->ev = event_new(rt->base, p->efd, EV_READ | EV_PERSIST, efd_cb, p);
    if (!p->ev || event_add(p->ev, NULL) != 0)
        goto fail;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    pthread_mutex_init(&p->done_mu, NULL);
    pthread_cond_init(&p->chunk_cv, NULL);
    for (i = 0; i < nthreads; i++) {
        if (pthread_create(&p->threads[i], NULL, worker_main, p) != 0)
            break;
        p->nthreads++;
    }
    rt->pool = p;
    if (p->nthreads == 0) {
        faas_tpool_stop(rt);
        return FAAS_ESYS;
    }
    return 0;
fail:
    if (p->ev)
        event_free(p->ev);
    if (p->efd >= 0)
        close(p->efd);
    free(p->threads);
    free(p);
    return FAAS_ESYS;
}

void faas_tpool_submit(struct faas_runtime *rt, struct faas_job *job)
{
    struct faas_tpool *p = rt->pool;
    int wake;
    pthread_mutex_lock(&p->mu);
    faas_list_insert_tail(&p->jobs, &job->link);
    wake = p->nwaiting > 0;
    pthread_mutex_unlock(&p->mu);
    /* Signalled after the unlock, so the woken worker does not block on the
     * mutex we hold. A worker that was not waiting re-checks the queue under
     * the mutex before it waits: no wake-up is lost. */
    if (wake)
        pthread_cond_signal(&p->cv);
}

void faas_tpool_stop(struct faas_runtime *rt)
{
    struct faas_tpool *p = rt->pool;
    struct faas_list *e;
    unsigned i;

    atomic_store(&p->stopping, 1);
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    pthread_mutex_lock(&p->done_mu);
    pthread_cond_broadcast(&p->chunk_cv); /* a writer waiting for room */
    pthread_mutex_unlock(&p->done_mu);
    for (i = 0; i < p->nthreads; i++)
        pthread_join(p->threads[i], NULL);
    event_free(p->ev);
    close(p->efd);
    /* Jobs handed back now run their fini here, on this thread. */
    rt->pool = NULL;
    while ((e = faas_list_pop_head(&p->chunks)) != NULL)
        free(FAAS_CONTAINER_OF(e, struct stream_chunk, link)); /* nobody listens */
    while ((e = faas_list_pop_head(&p->done)) != NULL)
        faas_job_done(rt, FAAS_CONTAINER_OF(e, struct faas_job, link));
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->done_mu);
    pthread_cond_destroy(&p->chunk_cv);
    free(p->threads);
    free(p);
}

/* ---- the THREAD executor -------------------------------------------- */

static void thread_start(struct faas_inv *inv)
{
    struct faas_runtime *rt = inv->rt;

    /* A worker cannot be interrupted: the loop watches the deadline. */
    if (rt->exec_report->watch(inv) != 0)
        inv->timeout_ms = 0; /* no timer: run without a deadline rather than not at all */
    inv->ctx.stream = faas_tpool_stream_write;
    inv->ctx.stream_arg = inv;
    inv->submitted = 1;
    faas_tpool_submit(rt, &inv->job);
}

static void thread_prewarm(struct faas_instance *inst)
{
    faas_tpool_submit(inst->fn->rt, &inst->job);
}

static void thread_cancel(struct faas_inv *inv, int status, const char *etype, const char *emsg)
{
    if (inv->submitted)
        inv->rt->exec_report->detach(inv, status, etype, emsg);
    else
        atomic_store(&inv->ctx.cancelled, 1);
}

static int thread_destroy(struct faas_instance *inst)
{
    struct faas_runtime *rt = inst->fn->rt;

    if (!inst->initialized || !inst->fn->opts.fini)
        return 0;
    if (rt->pool && !rt->closing) {
        /* fini is user code: it runs where init ran, off the loop. */
        inst->job.kind = FAAS_JOB_FINI;
        faas_tpool_submit(rt, &inst->job);
        return 1;
    }
    inst->fn->opts.fini(inst->state);
    return 0;
}

const struct faas_exec_ops faas_exec_thread = {
    .name = "thread",
    .self_starting = 0,
    .start = thread_start,
    .prewarm = thread_prewarm,
    .cancel = thread_cancel,
    .destroy = thread_destroy,
};
