/*
 * test_durable_store.c - the idempotency store over the durable engine
 * (faas_durable_store_new) on a SQLite database in a fresh temporary
 * directory: its answers come later, on the loop, in call order; random
 * operations give exactly the memory store's answers (the same calls made
 * on both, side by side, with small count and byte bounds); records survive
 * a reopen and a killed process (a COMPLETED one is replayed, an
 * INPROGRESS one expires at its deadline); a store freed inside its own
 * callback still answers every call once; a function registered with
 * idempotency and no store replays a result after the runtime restarted.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "durable_engine.h"
#include "faas_int.h"
#include "testutil.h"

#if FAAS_WITH_SQLITE

#define OWNER_A "11111111-2222-4333-8444-555555555555"
#define OWNER_B "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee"
#define VAL_A "0123456789abcdef0123456789abcdef"

struct fx {
    struct event_base *base;
    struct faas_runtime *rt;
    struct faas_durable *d;
    char dir[64];
    char url[160];
    struct tu_clock clk; /* the runtime's clocks: loads read its wall time */
};

static void fx_open(struct fx *f)
{
    f->d = NULL;
    assert_int_equal(faas_durable_open(&f->d, f->rt, f->url, 0, "test"), 0);
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    struct faas_runtime_opts o = FAAS_RUNTIME_OPTS_INIT;

    assert_non_null(f);
    strcpy(f->dir, "/tmp/faas-dstore-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->url, sizeof f->url, "sqlite:%s/state.db", f->dir);
    o.zygote = 0;
    f->clk.ns = 1000000000ull;
    o.clock.now_ns = tu_clock_now;
    o.clock.wall_ns = tu_clock_wall;
    o.clock.arg = &f->clk;
    tu_rt_new(&f->base, &f->rt, &o);
    fx_open(f);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    faas_durable_close(f->d);
    tu_rt_free(&f->rt, &f->base);
    tu_rmdir_files(f->dir);
    free(f);
    return 0;
}

/* ---- answers ------------------------------------------------------------- */

struct answer {
    int calls;
    int rc;
    int has_rec;
    int state, status;
    json_t *payload; /* a reference */
    char validation[33], owner[40];
    int64_t expires_ms;
};

static void on_answer(int rc, const struct faas_store_record *rec, void *arg)
{
    struct answer *a = arg;
    a->calls++;
    a->rc = rc;
    a->has_rec = rec != NULL;
    json_decref(a->payload);
    a->payload = NULL;
    a->validation[0] = a->owner[0] = '\0';
    if (rec) {
        a->state = (int)rec->state;
        a->status = rec->status;
        a->payload = json_incref(rec->payload);
        snprintf(a->validation, sizeof a->validation, "%s", rec->validation ? rec->validation : "");
        snprintf(a->owner, sizeof a->owner, "%s", rec->owner ? rec->owner : "");
        a->expires_ms = rec->expires_ms;
    }
}

static void answer_clear(struct answer *a)
{
    json_decref(a->payload);
    memset(a, 0, sizeof *a);
}

/* Waits for the answer of a call that returned 0: never inside the call. */
static void wait_answer(struct fx *f, struct answer *a, int rc)
{
    assert_int_equal(rc, 0);
    assert_int_equal(a->calls, 0);
    assert_true(tu_run_until(f->base, &a->calls, 1, 10000));
    assert_int_equal(a->calls, 1);
}

static struct faas_store_record mkrec(enum faas_store_state state, json_t *payload,
                                      const char *owner, int64_t expires_ms)
{
    struct faas_store_record r;
    memset(&r, 0, sizeof r);
    r.state = state;
    r.payload = payload;
    r.owner = owner;
    r.expires_ms = expires_ms;
    return r;
}

/* The 64-hex key of a number: distinct numbers, distinct keys. */
static void key_of(uint64_t n, char out[65])
{
    snprintf(out, 65, "%016llx%016llx%016llx%016llx",
             (unsigned long long)(n * 0x9e3779b97f4a7c15ull), (unsigned long long)n,
             (unsigned long long)~n, (unsigned long long)(n ^ 0xabcu));
}

static void test_semantics_and_later_answers(void **state)
{
    struct fx *f = *state;
    struct faas_store *st = NULL;
    struct answer a = { 0 };
    struct faas_store_record r;
    char key[65];
    json_t *payload = json_pack("{s:i}", "ok", 1);

    key_of(1, key);
    assert_int_equal(faas_durable_store_new(f->d, "fn", 0, 0, &st), 0);
    r = mkrec(FAAS_STORE_INPROGRESS, NULL, OWNER_A, 5000);
    wait_answer(f, &a, faas_store_put_if_absent(st, key, &r, 1000, on_answer, &a));
    assert_int_equal(a.rc, 0);
    answer_clear(&a);
    /* a duplicate finds it in progress */
    r.owner = OWNER_B;
    wait_answer(f, &a, faas_store_put_if_absent(st, key, &r, 1001, on_answer, &a));
    assert_int_equal(a.rc, FAAS_EEXIST);
    assert_true(a.has_rec);
    assert_int_equal(a.state, FAAS_STORE_INPROGRESS);
    assert_string_equal(a.owner, OWNER_A);
    answer_clear(&a);
    /* another owner cannot complete it */
    r = mkrec(FAAS_STORE_COMPLETED, payload, OWNER_B, 9000);
    wait_answer(f, &a, faas_store_complete(st, key, &r, 1002, on_answer, &a));
    assert_int_equal(a.rc, FAAS_ENOENT);
    answer_clear(&a);
    r.owner = OWNER_A;
    r.validation = VAL_A;
    wait_answer(f, &a, faas_store_complete(st, key, &r, 1003, on_answer, &a));
    assert_int_equal(a.rc, 0);
    answer_clear(&a);
    wait_answer(f, &a, faas_store_get(st, key, 1004, on_answer, &a));
    assert_int_equal(a.rc, 0);
    assert_int_equal(a.state, FAAS_STORE_COMPLETED);
    assert_true(json_equal(a.payload, payload));
    assert_string_equal(a.validation, VAL_A);
    assert_int_equal(a.expires_ms, 9000);
    answer_clear(&a);
    /* expiry to the millisecond */
    wait_answer(f, &a, faas_store_get(st, key, 9000, on_answer, &a));
    assert_int_equal(a.rc, FAAS_ENOENT);
    answer_clear(&a);
    /* remove checks the owner */
    r = mkrec(FAAS_STORE_INPROGRESS, NULL, OWNER_A, 20000);
    wait_answer(f, &a, faas_store_put_if_absent(st, key, &r, 10000, on_answer, &a));
    answer_clear(&a);
    wait_answer(f, &a, faas_store_remove(st, key, OWNER_B, 10001, on_answer, &a));
    assert_int_equal(a.rc, FAAS_ENOENT);
    answer_clear(&a);
    wait_answer(f, &a, faas_store_remove(st, key, OWNER_A, 10002, on_answer, &a));
    assert_int_equal(a.rc, 0);
    answer_clear(&a);
    wait_answer(f, &a, faas_store_get(st, key, 10003, on_answer, &a));
    assert_int_equal(a.rc, FAAS_ENOENT);
    answer_clear(&a);
    faas_store_free(st);
    json_decref(payload);
}

/* ---- the memory store's answers, call for call ----------------------------- */

static int evicted_mem, evicted_dur;

static void count_evict(void *arg, const char *key)
{
    (void)key;
    (*(int *)arg)++;
}

static void expect_same(const struct answer *m, const struct answer *d, int step)
{
    if (m->rc != d->rc || m->has_rec != d->has_rec)
        fail_msg("step %d: memory rc %d rec %d, durable rc %d rec %d", step, m->rc, m->has_rec,
                 d->rc, d->has_rec);
    if (!m->has_rec)
        return;
    assert_int_equal(m->state, d->state);
    assert_int_equal(m->status, d->status);
    assert_int_equal(m->expires_ms, d->expires_ms);
    assert_string_equal(m->validation, d->validation);
    assert_string_equal(m->owner, d->owner);
    assert_int_equal(m->payload != NULL, d->payload != NULL);
    if (m->payload)
        assert_true(json_equal(m->payload, d->payload));
}

static uint64_t rnd_state = 88172645463325252ull;

static uint64_t rnd(void)
{
    rnd_state ^= rnd_state << 13;
    rnd_state ^= rnd_state >> 7;
    rnd_state ^= rnd_state << 17;
    return rnd_state;
}

/* One random operation on both stores. */
static void random_step(struct fx *f, struct faas_store *mem, struct faas_store *dur, int64_t now,
                        int step)
{
    struct answer am = { 0 }, ad = { 0 };
    struct faas_store_record r;
    char key[65];
    const char *owner = rnd() % 2 ? OWNER_A : OWNER_B;
    json_t *payload = NULL;
    int op = (int)(rnd() % 4), rm, rd;

    key_of(rnd() % 12, key);
    if (rnd() % 2)
        payload = json_pack("{s:s%}", "blob", "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
                            (size_t)(rnd() % 40));
    r = mkrec(op == 2 ? FAAS_STORE_COMPLETED : FAAS_STORE_INPROGRESS, payload, owner,
              now + (int64_t)(rnd() % 300));
    r.validation = rnd() % 2 ? VAL_A : NULL;
    switch (op) {
    case 0:
        rm = faas_store_get(mem, key, now, on_answer, &am);
        rd = faas_store_get(dur, key, now, on_answer, &ad);
        break;
    case 1:
        rm = faas_store_put_if_absent(mem, key, &r, now, on_answer, &am);
        rd = faas_store_put_if_absent(dur, key, &r, now, on_answer, &ad);
        break;
    case 2:
        rm = faas_store_complete(mem, key, &r, now, on_answer, &am);
        rd = faas_store_complete(dur, key, &r, now, on_answer, &ad);
        break;
    default:
        if (rnd() % 4 == 0)
            owner = NULL; /* remove whoever holds it */
        rm = faas_store_remove(mem, key, owner, now, on_answer, &am);
        rd = faas_store_remove(dur, key, owner, now, on_answer, &ad);
        break;
    }
    json_decref(payload);
    assert_int_equal(rm, rd);
    if (rm == 0) {
        assert_int_equal(am.calls, 1); /* the memory store answers inside */
        wait_answer(f, &ad, rd);
        expect_same(&am, &ad, step);
    }
    answer_clear(&am);
    answer_clear(&ad);
}

static void test_same_answers_as_memory(void **state)
{
    struct fx *f = *state;
    struct faas_store *mem = NULL, *dur = NULL;
    int64_t now;
    int i;

    assert_int_equal(faas_store_memory_new(&mem, 6), 0);
    assert_int_equal(faas_store_memory_set_max_bytes(mem, 1200), 0);
    assert_int_equal(faas_durable_store_new(f->d, "fn", 6, 1200, &dur), 0);
    evicted_mem = evicted_dur = 0;
    mem->on_evict = count_evict;
    mem->on_evict_arg = &evicted_mem;
    dur->on_evict = count_evict;
    dur->on_evict_arg = &evicted_dur;
    for (i = 0; i < 1500; i++) {
        tu_clock_advance(&f->clk, (rnd() % 20) * 1000000u);
        now = faas_wall_ns(f->rt) / 1000000;
        random_step(f, mem, dur, now, i);
    }
    assert_true(evicted_mem > 0);
    assert_int_equal(evicted_mem, evicted_dur);
    faas_store_free(dur);
    /* a reopen loads what the memory store still holds */
    faas_durable_close(f->d);
    fx_open(f);
    assert_int_equal(faas_durable_store_new(f->d, "fn", 6, 1200, &dur), 0);
    for (i = 0; i < 12; i++) {
        struct answer am = { 0 }, ad = { 0 };
        char key[65];
        key_of((uint64_t)i, key);
        /* reads that do not disturb the LRU order of the rest */
        assert_int_equal(faas_store_get(mem, key, now, on_answer, &am), 0);
        wait_answer(f, &ad, faas_store_get(dur, key, now, on_answer, &ad));
        expect_same(&am, &ad, 10000 + i);
        answer_clear(&am);
        answer_clear(&ad);
    }
    faas_store_free(dur);
    faas_store_free(mem);
}

/* ---- across restarts ------------------------------------------------------- */

static void test_reopen_and_scopes(void **state)
{
    struct fx *f = *state;
    struct faas_store *st = NULL, *other = NULL;
    struct answer a = { 0 };
    struct faas_store_record r;
    char key[65];
    json_t *payload = json_string("done");
    int64_t now = faas_wall_ns(f->rt) / 1000000;

    key_of(7, key);
    assert_int_equal(faas_durable_store_new(f->d, "fn", 0, 0, &st), 0);
    r = mkrec(FAAS_STORE_COMPLETED, payload, OWNER_A, now + 3600000);
    wait_answer(f, &a, faas_store_put_if_absent(st, key, &r, now, on_answer, &a));
    answer_clear(&a);
    faas_store_free(st);
    faas_durable_close(f->d);
    fx_open(f);
    assert_int_equal(faas_durable_store_new(f->d, "fn", 0, 0, &st), 0);
    assert_int_equal(faas_durable_store_new(f->d, "other", 0, 0, &other), 0);
    r = mkrec(FAAS_STORE_INPROGRESS, NULL, OWNER_B, now + 1000);
    wait_answer(f, &a, faas_store_put_if_absent(st, key, &r, now + 1, on_answer, &a));
    assert_int_equal(a.rc, FAAS_EEXIST);
    assert_int_equal(a.state, FAAS_STORE_COMPLETED);
    assert_true(json_equal(a.payload, payload));
    answer_clear(&a);
    /* scopes do not share records */
    wait_answer(f, &a, faas_store_get(other, key, now + 1, on_answer, &a));
    assert_int_equal(a.rc, FAAS_ENOENT);
    answer_clear(&a);
    faas_store_free(other);
    faas_store_free(st);
    json_decref(payload);
}

static void test_inprogress_of_killed_process_expires(void **state)
{
    struct fx *f = *state;
    struct faas_store *st = NULL;
    struct answer a = { 0 };
    struct faas_store_record r;
    char key[65];
    int64_t now = faas_wall_ns(f->rt) / 1000000;
    int ready[2], status;
    pid_t pid;

    key_of(9, key);
    faas_durable_close(f->d); /* the child holds the database */
    f->d = NULL;
    assert_int_equal(pipe(ready), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        /* a host that takes the record, sees it committed, and is killed
         * while its invocation runs */
        struct event_base *base = event_base_new();
        struct faas_runtime *rt = NULL;
        struct faas_runtime_opts o = FAAS_RUNTIME_OPTS_INIT;
        struct faas_durable *d = NULL;
        struct faas_store *cst = NULL;
        struct answer ca = { 0 };
        close(ready[0]);
        o.zygote = 0;
        if (!base || faas_runtime_new(&rt, base, &o) != 0 ||
            faas_durable_open(&d, rt, f->url, 1, "child") != 0 ||
            faas_durable_store_new(d, "fn", 0, 0, &cst) != 0)
            _exit(1);
        r = mkrec(FAAS_STORE_INPROGRESS, NULL, OWNER_A, now + 60000);
        if (faas_store_put_if_absent(cst, key, &r, now, on_answer, &ca) != 0 ||
            !tu_run_until(base, &ca.calls, 1, 10000) || ca.rc != 0)
            _exit(1);
        if (write(ready[1], "k", 1) != 1)
            _exit(1);
        for (;;)
            pause();
    }
    close(ready[1]);
    {
        char c;
        assert_int_equal(read(ready[0], &c, 1), 1);
    }
    close(ready[0]);
    kill(pid, SIGKILL);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status));

    fx_open(f);
    assert_int_equal(faas_durable_store_new(f->d, "fn", 0, 0, &st), 0);
    r = mkrec(FAAS_STORE_INPROGRESS, NULL, OWNER_B, now + 120000);
    /* before its deadline: still in progress (the killed attempt may have
     * had effects) */
    wait_answer(f, &a, faas_store_put_if_absent(st, key, &r, now + 59999, on_answer, &a));
    assert_int_equal(a.rc, FAAS_EEXIST);
    assert_int_equal(a.state, FAAS_STORE_INPROGRESS);
    assert_string_equal(a.owner, OWNER_A);
    answer_clear(&a);
    /* at its deadline it is gone and the key can be taken */
    wait_answer(f, &a, faas_store_put_if_absent(st, key, &r, now + 60000, on_answer, &a));
    assert_int_equal(a.rc, 0);
    answer_clear(&a);
    faas_store_free(st);
}

/* ---- freeing inside a callback ------------------------------------------------ */

struct freeing {
    struct faas_store *st;
    int calls;
    int free_at;
};

static void on_answer_free(int rc, const struct faas_store_record *rec, void *arg)
{
    struct freeing *fr = arg;
    (void)rc;
    (void)rec;
    if (++fr->calls == fr->free_at)
        faas_store_free(fr->st);
}

static void test_free_inside_callback(void **state)
{
    struct fx *f = *state;
    struct freeing fr = { NULL, 0, 2 };
    struct faas_store_record r = mkrec(FAAS_STORE_INPROGRESS, NULL, NULL, 99999);
    char key[65];
    int i;

    assert_int_equal(faas_durable_store_new(f->d, "fn", 0, 0, &fr.st), 0);
    for (i = 0; i < 5; i++) {
        key_of((uint64_t)i, key);
        assert_int_equal(faas_store_put_if_absent(fr.st, key, &r, 1, on_answer_free, &fr), 0);
    }
    /* freed at the second answer: the other three still come, once each */
    assert_true(tu_run_until(f->base, &fr.calls, 5, 10000));
    tu_run_for(f->base, 20);
    assert_int_equal(fr.calls, 5);
}

/* ---- the runtime's default store ----------------------------------------------- */

static int runs;

static int counting(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    (void)ctx;
    (void)event;
    runs++;
    *result = json_pack("{s:i}", "run", runs);
    return 0;
}

struct res {
    int n;
    int status, replayed;
    json_int_t run;
};

static void on_result(const struct faas_result *res, void *arg)
{
    struct res *r = arg;
    json_t *p = faas_result_payload(res);
    r->n++;
    r->status = faas_result_status(res);
    r->replayed = faas_result_replayed(res);
    r->run = json_integer_value(json_object_get(p, "run"));
}

static void invoke_once(struct event_base *base, struct faas_runtime *rt, struct res *r)
{
    json_t *ev = json_pack("{s:s}", "id", "order-1");
    int want = r->n + 1;
    assert_int_equal(faas_invoke(rt, "pay", ev, NULL, on_result, r), 0);
    json_decref(ev);
    assert_true(tu_run_until(base, &r->n, want, 10000));
}

static struct faas_runtime *durable_runtime(struct fx *f)
{
    struct faas_runtime *rt = NULL;
    struct faas_runtime_opts o = FAAS_RUNTIME_OPTS_INIT;
    struct faas_function_opts fo = FAAS_FUNCTION_OPTS_INIT;
    struct faas_idempotency_opts io = FAAS_IDEMPOTENCY_OPTS_INIT;

    o.zygote = 0;
    o.durable = f->url;
    assert_int_equal(faas_runtime_new(&rt, f->base, &o), 0);
    io.key_path = "id";
    fo.idempotency = &io;
    assert_int_equal(faas_register(rt, "pay", counting, &fo), 0);
    return rt;
}

static void test_runtime_replays_after_restart(void **state)
{
    struct fx *f = *state;
    struct faas_runtime *rt;
    struct res r = { 0 };

    faas_durable_close(f->d); /* the runtimes hold the database */
    f->d = NULL;
    runs = 0;
    rt = durable_runtime(f);
    invoke_once(f->base, rt, &r);
    assert_int_equal(r.status, 0);
    assert_false(r.replayed);
    assert_int_equal(runs, 1);
    faas_runtime_free(rt);

    rt = durable_runtime(f);
    invoke_once(f->base, rt, &r);
    assert_int_equal(r.status, 0);
    assert_true(r.replayed);
    assert_int_equal(r.run, 1);
    assert_int_equal(runs, 1);
    faas_runtime_free(rt);
    fx_open(f);
}

/* ---- allocation failures ------------------------------------------------------- */

static void count_done(int rc, void *arg)
{
    (void)rc;
    (*(int *)arg)++;
}

/* Everything a host does with an engine, with the fail_at-th allocation
 * failing: each call succeeds or returns FAAS_ENOMEM, and each one that
 * succeeded is answered once. Returns 1 when the failure was not reached. */
static int alloc_scenario(struct fx *f, long fail_at)
{
    struct faas_durable *d = NULL;
    struct faas_store *st = NULL;
    struct faas_store_record r = mkrec(FAAS_STORE_INPROGRESS, NULL, OWNER_A, INT64_MAX);
    struct faas_durable_event ev;
    struct faas_durable_record rec;
    struct answer a[3];
    char key[65];
    int expected = 0, answered = 0, done = 0, rc, i, untouched;

    memset(a, 0, sizeof a);
    memset(&ev, 0, sizeof ev);
    strcpy(ev.request_id, "alloc-1");
    ev.function = "fn";
    ev.event = "{}";
    ev.event_len = 2;
    memset(&rec, 0, sizeof rec);
    rec.mapping = "m";
    rec.record = "{}";
    rec.record_len = 2;
    atomic_store(&faas_alloc_fail_countdown, fail_at);
    {
        /* a runtime with the engine, and an idempotent function on it */
        struct faas_runtime *rt = NULL;
        struct faas_runtime_opts o = FAAS_RUNTIME_OPTS_INIT;
        struct faas_function_opts fo = FAAS_FUNCTION_OPTS_INIT;
        struct faas_idempotency_opts io = FAAS_IDEMPOTENCY_OPTS_INIT;
        o.zygote = 0;
        o.durable = f->url;
        o.durable_sync = 0;
        io.key_path = "id";
        fo.idempotency = &io;
        rc = faas_runtime_new(&rt, f->base, &o);
        assert_true(rc == 0 || rc == FAAS_ENOMEM);
        if (rc == 0) {
            rc = faas_register(rt, "pay", counting, &fo);
            assert_true(rc == 0 || rc == FAAS_ENOMEM);
            faas_runtime_free(rt);
        }
    }
    rc = faas_durable_open(&d, f->rt, f->url, 0, NULL);
    if (rc != 0) {
        assert_int_equal(rc, FAAS_ENOMEM);
        assert_null(d);
        goto out;
    }
    rc = faas_durable_store_new(d, "fn", 2, 0, &st);
    assert_true(rc == 0 || rc == FAAS_ENOMEM);
    for (i = 0; st && i < 3; i++) {
        key_of((uint64_t)i, key);
        rc = faas_store_put_if_absent(st, key, &r, 1, on_answer, &a[i]);
        assert_true(rc == 0 || rc == FAAS_ENOMEM);
        expected += rc == 0;
    }
    rc = faas_durable_event_put(d, &ev, count_done, &done);
    assert_true(rc == 0 || rc == FAAS_ENOMEM);
    expected += rc == 0;
    rc = faas_durable_record_put(d, &rec, count_done, &done);
    assert_true(rc == 0 || rc == FAAS_ENOMEM);
    expected += rc == 0;
    rc = faas_durable_schedule_set(d, "s", 1, count_done, &done);
    assert_true(rc == 0 || rc == FAAS_ENOMEM);
    expected += rc == 0;
    untouched = (int)atomic_load(&faas_alloc_fail_countdown);
    atomic_store(&faas_alloc_fail_countdown, -1);
    faas_durable_close(d); /* answers everything still owed */
    for (i = 0; i < 3; i++) {
        answered += a[i].calls;
        assert_true(a[i].calls <= 1);
        answer_clear(&a[i]);
    }
    assert_int_equal(answered + done, expected);
    faas_store_free(st);
    /* the next run starts from an empty database */
    tu_rmdir_files(f->dir);
    assert_int_equal(mkdir(f->dir, 0700), 0);
    return untouched >= 0;
out:
    untouched = (int)atomic_load(&faas_alloc_fail_countdown);
    atomic_store(&faas_alloc_fail_countdown, -1);
    return untouched >= 0;
}

static void test_allocation_failures(void **state)
{
    struct fx *f = *state;
    long fail_at;

    faas_durable_close(f->d);
    f->d = NULL;
    for (fail_at = 0; fail_at < 10000; fail_at++)
        if (alloc_scenario(f, fail_at))
            break;
    assert_true(fail_at > 5); /* the failures were on the durable paths */
    assert_true(fail_at < 10000);
    fx_open(f);
}

#endif /* FAAS_WITH_SQLITE */

int main(void)
{
#if FAAS_WITH_SQLITE
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_semantics_and_later_answers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_same_answers_as_memory, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reopen_and_scopes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_inprogress_of_killed_process_expires, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_free_inside_callback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_runtime_replays_after_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_allocation_failures, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
#else
    return 0; /* built without the SQLite engine: nothing to test */
#endif
}
