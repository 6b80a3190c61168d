/*
 * test_metrics.c - observability: the REPORT line (exact, with a fake
 * clock), faas_stats() counters and gauges, and faas_metrics_write()'s
 * Prometheus text parsed line by line.
 */
#include "testutil.h"

#include "faas_int.h" /* faas_async_poll, faas_batcher_poll: timers on demand */

#include <event2/buffer.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BOUND_MS 5000u

/* ------------------------------------------------------------------ */
/* helpers                                                              */
/* ------------------------------------------------------------------ */

struct fx {
    struct event_base *base;
    struct faas_runtime *rt;
    struct tu_clock clk;
};

/* The fake clock the handlers advance. */
static struct tu_clock *g_clk;

static void fx_new(struct fx *f, int fake_clock)
{
    struct faas_runtime_opts o = FAAS_RUNTIME_OPTS_INIT;
    o.thread_workers = 2;
    o.zygote = 0;
    f->clk.ns = 1000000000ull; /* not zero: a clock that starts anywhere */
    if (fake_clock) {
        o.clock.now_ns = tu_clock_now;
        o.clock.wall_ns = tu_clock_wall;
        o.clock.arg = &f->clk;
        g_clk = &f->clk;
    } else {
        g_clk = NULL;
    }
    tu_rt_new(&f->base, &f->rt, &o);
}

static void fx_free(struct fx *f)
{
    tu_rt_free(&f->rt, &f->base);
    g_clk = NULL;
}

static void advance(uint64_t ns)
{
    if (g_clk)
        tu_clock_advance(g_clk, ns);
}

/* What a result callback saw, with its REPORT lines. */
struct rep {
    int calls;
    int status;
    char rid[FAAS_REQUEST_ID_SIZE];
    char etype[128];
    char emsg[128];
    char full[512];
    int len;
    char small[16];
    int small_len;
    char one[1];
    int one_len;
    uint64_t dur_us, init_us, billed_ms, kb;
    uint32_t mem;
    int cold;
};

static void rep_cb(const struct faas_result *res, void *arg)
{
    struct rep *r = arg;
    const char *s;
    r->calls++;
    r->status = faas_result_status(res);
    s = faas_result_request_id(res);
    snprintf(r->rid, sizeof r->rid, "%s", s ? s : "");
    s = faas_result_error_type(res);
    snprintf(r->etype, sizeof r->etype, "%s", s ? s : "");
    s = faas_result_error_message(res);
    snprintf(r->emsg, sizeof r->emsg, "%s", s ? s : "");
    r->len = faas_result_report(res, r->full, sizeof r->full);
    memset(r->small, 'Q', sizeof r->small);
    r->small_len = faas_result_report(res, r->small, sizeof r->small);
    r->one[0] = 'Q';
    r->one_len = faas_result_report(res, r->one, sizeof r->one);
    r->dur_us = faas_result_duration_us(res);
    r->init_us = faas_result_init_duration_us(res);
    r->billed_ms = faas_result_billed_duration_ms(res);
    r->kb = faas_result_max_memory_kb(res);
    r->mem = faas_result_memory_size_mb(res);
    r->cold = faas_result_cold_start(res);
}

static void invoke_wait(struct fx *f, const char *name, json_t *event, struct rep *r)
{
    memset(r, 0, sizeof *r);
    assert_int_equal(faas_invoke(f->rt, name, event, NULL, rep_cb, r), 0);
    assert_int_equal(r->calls, 0);
    assert_true(tu_run_until(f->base, &r->calls, 1, BOUND_MS));
}

/* The REPORT line, exactly; Max Memory Used is the real peak, so it is
 * checked against faas_result_max_memory_kb(). */
static void check_report(const struct rep *r, const char *dur, unsigned billed, unsigned mem,
                         const char *init)
{
    char want[512];
    char tail[128];
    size_t wl;
    const char *p;
    char *end;
    unsigned long used;

    snprintf(want, sizeof want,
             "REPORT RequestId: %s\tDuration: %s ms\tBilled Duration: %u ms\tMemory Size: %u "
             "MB\tMax Memory Used: ",
             r->rid, dur, billed, mem);
    wl = strlen(want);
    if (strncmp(r->full, want, wl) != 0) {
        print_error("REPORT line\n  got:  %s\n  want: %s<n> MB%s%s%s\n", r->full, want,
                    init ? "\tInit Duration: " : "", init ? init : "", init ? " ms" : "");
        fail();
    }
    p = r->full + wl;
    used = strtoul(p, &end, 10);
    assert_true(end > p);
    assert_true(used >= 1);
    assert_true(r->kb > 0);
    assert_true(used >= r->kb / 1024u && used <= r->kb / 1024u + 1u);
    if (init)
        snprintf(tail, sizeof tail, " MB\tInit Duration: %s ms", init);
    else
        snprintf(tail, sizeof tail, " MB");
    assert_string_equal(end, tail);

    /* Like snprintf: the whole length, whatever the buffer. */
    assert_int_equal(r->len, (int)strlen(r->full));
    assert_int_equal(r->small_len, r->len);
    assert_int_equal(strlen(r->small), sizeof r->small - 1);
    assert_memory_equal(r->small, r->full, sizeof r->small - 1);
    assert_int_equal(r->one_len, r->len);
    assert_int_equal(r->one[0], '\0');
}

/* handlers */

static int h_adv(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    json_t *ns = json_object_get(event, "ns");
    (void)ctx;
    advance(ns ? (uint64_t)json_integer_value(ns) : 1500000u);
    *result = json_string("ok");
    return 0;
}

static int h_adv_fail(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    (void)ctx;
    (void)event;
    (void)result;
    advance(200000u);
    return 1;
}

static int init_adv(struct faas_ctx *ctx, void **state)
{
    (void)ctx;
    advance(4560000u);
    *state = NULL;
    return 0;
}

static void reg(struct fx *f, const char *name, faas_handler_fn fn, enum faas_isolation iso,
                uint32_t memory_mb, faas_init_fn init)
{
    struct faas_function_opts o = FAAS_FUNCTION_OPTS_INIT;
    o.isolation = iso;
    o.memory_mb = memory_mb;
    o.init = init;
    assert_int_equal(faas_register(f->rt, name, fn, &o), 0);
}

/* ------------------------------------------------------------------ */
/* REPORT                                                               */
/* ------------------------------------------------------------------ */

static void test_report_line(void **state)
{
    enum faas_isolation iso = tu_iso(state);
    struct fx f;
    struct rep r;
    fx_new(&f, 1);
    reg(&f, "rep", h_adv, iso, 128, NULL);

    invoke_wait(&f, "rep", NULL, &r);
    assert_int_equal(r.status, 0);
    assert_int_equal(r.dur_us, 1500);
    assert_int_equal(r.billed_ms, 2);
    assert_int_equal(r.mem, 128);
    assert_int_equal(r.init_us, 0);
    check_report(&r, "1.50", 2, 128, NULL);

    /* Warm: the same line shape, still no Init Duration. */
    invoke_wait(&f, "rep", NULL, &r);
    assert_int_equal(r.status, 0);
    assert_int_equal(r.cold, 0);
    assert_int_equal(r.init_us, 0);
    check_report(&r, "1.50", 2, 128, NULL);

    assert_int_equal(faas_result_report(NULL, r.full, sizeof r.full), FAAS_EINVAL);
    fx_free(&f);
}

static void test_report_cold_start_init(void **state)
{
    enum faas_isolation iso = tu_iso(state);
    struct fx f;
    struct rep r;
    fx_new(&f, 1);
    reg(&f, "cold", h_adv, iso, 256, init_adv);

    invoke_wait(&f, "cold", NULL, &r);
    assert_int_equal(r.status, 0);
    assert_int_equal(r.cold, 1);
    /* Init's time is not the handler's. */
    assert_int_equal(r.init_us, 4560);
    assert_int_equal(r.dur_us, 1500);
    assert_int_equal(r.mem, 256);
    check_report(&r, "1.50", 2, 256, "4.56");

    /* Warm start: no Init Duration. */
    invoke_wait(&f, "cold", NULL, &r);
    assert_int_equal(r.status, 0);
    assert_int_equal(r.cold, 0);
    assert_int_equal(r.init_us, 0);
    check_report(&r, "1.50", 2, 256, NULL);
    fx_free(&f);
}

static void test_report_billing(void **state)
{
    enum faas_isolation iso = tu_iso(state);
    struct fx f;
    struct rep r;
    static const struct {
        json_int_t ns;
        const char *dur;
        unsigned billed;
        uint64_t us;
    } cases[] = {
        { 0, "0.00", 1, 0 },            /* at least 1 ms */
        { 1000, "0.00", 1, 1 },         /* 1 us */
        { 999000, "1.00", 1, 999 },     /* 0.999 ms prints 1.00, bills 1 */
        { 1000000, "1.00", 1, 1000 },   /* exactly 1 ms: not rounded up */
        { 2000000, "2.00", 2, 2000 },
        { 2001000, "2.00", 3, 2001 },   /* a microsecond over: the next ms */
        { 123456000, "123.46", 124, 123456 },
    };
    fx_new(&f, 1);
    reg(&f, "bill", h_adv, iso, 128, NULL);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        json_t *ev = json_pack("{s:I}", "ns", cases[i].ns);
        invoke_wait(&f, "bill", ev, &r);
        assert_int_equal(r.status, 0);
        assert_int_equal(r.dur_us, cases[i].us);
        assert_int_equal(r.billed_ms, cases[i].billed);
        check_report(&r, cases[i].dur, cases[i].billed, 128, NULL);
        json_decref(ev);
    }
    fx_free(&f);
}

/* The log callback's REPORT record carries the same result. */
struct logrep {
    int reports;
    char line[512];
};

static void logrep_cb(const struct faas_log_record *rec, void *arg)
{
    struct logrep *l = arg;
    if (rec->kind != FAAS_LOG_REPORT)
        return;
    l->reports++;
    faas_result_report(rec->result, l->line, sizeof l->line);
}

static void test_report_in_log_record(void **state)
{
    enum faas_isolation iso = tu_iso(state);
    struct event_base *base = event_base_new();
    struct faas_runtime *rt = NULL;
    struct faas_runtime_opts o = FAAS_RUNTIME_OPTS_INIT;
    struct faas_function_opts fo = FAAS_FUNCTION_OPTS_INIT;
    struct tu_clock clk = { 5000000000ull };
    struct logrep l;
    struct rep r;
    memset(&l, 0, sizeof l);
    memset(&r, 0, sizeof r);
    o.thread_workers = 2;
    o.zygote = 0;
    o.log = logrep_cb;
    o.log_arg = &l;
    o.clock.now_ns = tu_clock_now;
    o.clock.wall_ns = tu_clock_wall;
    o.clock.arg = &clk;
    g_clk = &clk;
    assert_int_equal(faas_runtime_new(&rt, base, &o), 0);
    fo.isolation = iso;
    assert_int_equal(faas_register(rt, "lr", h_adv, &fo), 0);
    assert_int_equal(faas_invoke(rt, "lr", NULL, NULL, rep_cb, &r), 0);
    assert_true(tu_run_until(base, &r.calls, 1, BOUND_MS));
    assert_int_equal(l.reports, 1);
    assert_string_equal(l.line, r.full);
    check_report(&r, "1.50", 2, 128, NULL);
    faas_runtime_free(rt);
    event_base_free(base);
    g_clk = NULL;
}

/* ------------------------------------------------------------------ */
/* stats                                                                */
/* ------------------------------------------------------------------ */

static int g_started;
static int g_finished;
static int g_release;

static int h_block(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    uint64_t end = tu_now_ms() + 5000u;
    (void)event;
    AINC(&g_started);
    while (!faas_ctx_cancelled(ctx) && !ALOAD(&g_release) && tu_now_ms() < end) {
        struct timespec ts = { 0, 200000 };
        nanosleep(&ts, NULL);
    }
    *result = json_string("done");
    AINC(&g_finished);
    return 0;
}

static void expect_stats(struct faas_runtime *rt, const char *fn, uint64_t inv, uint64_t err,
                         uint64_t to, uint64_t thr, uint64_t cold)
{
    struct faas_stats st;
    memset(&st, 0xab, sizeof st);
    assert_int_equal(faas_stats(rt, fn, &st), 0);
    if (st.invocations != inv || st.errors != err || st.timeouts != to || st.throttles != thr ||
        st.cold_starts != cold) {
        print_error("stats(%s): inv %llu err %llu to %llu thr %llu cold %llu; want %llu %llu "
                    "%llu %llu %llu\n",
                    fn ? fn : "NULL", (unsigned long long)st.invocations,
                    (unsigned long long)st.errors, (unsigned long long)st.timeouts,
                    (unsigned long long)st.throttles, (unsigned long long)st.cold_starts,
                    (unsigned long long)inv, (unsigned long long)err, (unsigned long long)to,
                    (unsigned long long)thr, (unsigned long long)cold);
        fail();
    }
}

/* ------------------------------------------------------------------ */
/* Prometheus text parsing                                              */
/* ------------------------------------------------------------------ */

#define MAX_FAM 64
#define MAX_SAMPLES 2048

struct family {
    char name[96];
    char type[16];
    int help, typed, samples;
};

struct sample {
    char name[96];
    char function[96];
    char le[96];
    char mapping[96];
    int has_function, has_le, has_mapping;
    double value;
    int fam;
};

struct prom {
    int nfam, nsamples;
    struct family fam[MAX_FAM];
    struct sample *s;
};

static int find_family(struct prom *p, const char *name)
{
    for (int i = 0; i < p->nfam; i++)
        if (strcmp(p->fam[i].name, name) == 0)
            return i;
    return -1;
}

static int get_family(struct prom *p, const char *name, size_t len)
{
    char buf[96];
    int i;
    assert_true(len > 0 && len < sizeof buf);
    memcpy(buf, name, len);
    buf[len] = '\0';
    i = find_family(p, buf);
    if (i >= 0)
        return i;
    assert_true(p->nfam < MAX_FAM);
    i = p->nfam++;
    memset(&p->fam[i], 0, sizeof p->fam[i]);
    snprintf(p->fam[i].name, sizeof p->fam[i].name, "%s", buf);
    return i;
}

static int is_name_start(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
}

static int is_name_char(char c)
{
    return is_name_start(c) || (c >= '0' && c <= '9');
}

/* Parses a label value "..." with \\ \" \n escapes; returns past the
 * closing quote. */
static const char *parse_label_value(const char *p, char *out, size_t size)
{
    size_t n = 0;
    assert_int_equal(*p, '"');
    p++;
    while (*p && *p != '"') {
        char c = *p++;
        if (c == '\\') {
            c = *p++;
            assert_true(c == '\\' || c == '"' || c == 'n');
            if (c == 'n')
                c = '\n';
        }
        assert_true(n + 1 < size);
        out[n++] = c;
    }
    assert_int_equal(*p, '"');
    out[n] = '\0';
    return p + 1;
}

static void parse_sample(struct prom *p, const char *line)
{
    const char *q = line;
    struct sample *s;
    size_t nlen;
    char *end;
    int fi;
    assert_true(p->nsamples < MAX_SAMPLES);
    s = &p->s[p->nsamples++];
    memset(s, 0, sizeof *s);
    assert_true(is_name_start(*q));
    while (is_name_char(*q))
        q++;
    nlen = (size_t)(q - line);
    assert_true(nlen < sizeof s->name);
    memcpy(s->name, line, nlen);
    s->name[nlen] = '\0';
    if (*q == '{') {
        q++;
        while (*q != '}') {
            char lname[64];
            char lval[96];
            const char *ls = q;
            size_t ll;
            assert_true(is_name_start(*q));
            while (is_name_char(*q))
                q++;
            ll = (size_t)(q - ls);
            assert_true(ll < sizeof lname);
            memcpy(lname, ls, ll);
            lname[ll] = '\0';
            assert_int_equal(*q, '=');
            q = parse_label_value(q + 1, lval, sizeof lval);
            if (strcmp(lname, "function") == 0) {
                assert_int_equal(s->has_function, 0);
                s->has_function = 1;
                snprintf(s->function, sizeof s->function, "%s", lval);
            } else if (strcmp(lname, "mapping") == 0) {
                assert_int_equal(s->has_mapping, 0);
                s->has_mapping = 1;
                snprintf(s->mapping, sizeof s->mapping, "%s", lval);
            } else if (strcmp(lname, "le") == 0) {
                assert_int_equal(s->has_le, 0);
                s->has_le = 1;
                snprintf(s->le, sizeof s->le, "%s", lval);
            }
            if (*q == ',')
                q++;
            else
                assert_int_equal(*q, '}');
        }
        q++;
    }
    assert_int_equal(*q, ' ');
    q++;
    s->value = strtod(q, &end);
    assert_true(end > q);
    assert_true(*end == '\0' || *end == ' '); /* an optional timestamp */

    /* Its family: the name itself, or a histogram's base name. */
    fi = find_family(p, s->name);
    if (fi < 0) {
        static const char *const suffixes[] = { "_bucket", "_sum", "_count" };
        for (size_t k = 0; k < 3 && fi < 0; k++) {
            size_t sl = strlen(suffixes[k]);
            if (nlen > sl && strcmp(s->name + nlen - sl, suffixes[k]) == 0) {
                char base[96];
                memcpy(base, s->name, nlen - sl);
                base[nlen - sl] = '\0';
                fi = find_family(p, base);
                if (fi >= 0 && strcmp(p->fam[fi].type, "histogram") != 0 &&
                    strcmp(p->fam[fi].type, "summary") != 0)
                    fi = -1;
                if (fi >= 0 && k == 0)
                    assert_int_equal(s->has_le, 1);
            }
        }
    }
    if (fi < 0) {
        print_error("sample of an undeclared metric: %s\n", line);
        fail();
    }
    /* # HELP and # TYPE precede the samples. */
    if (!p->fam[fi].help || !p->fam[fi].typed) {
        print_error("sample before # HELP/# TYPE: %s\n", line);
        fail();
    }
    p->fam[fi].samples++;
    s->fam = fi;
}

static void prom_parse(struct prom *p, const char *text)
{
    const char *line = text;
    memset(p, 0, sizeof *p);
    p->s = calloc(MAX_SAMPLES, sizeof *p->s);
    assert_non_null(p->s);
    /* Each line ends with a newline (so does the text). */
    if (*text)
        assert_int_equal(text[strlen(text) - 1], '\n');
    while (*line) {
        const char *nl = strchr(line, '\n');
        char buf[512];
        size_t len;
        assert_non_null(nl);
        len = (size_t)(nl - line);
        assert_true(len < sizeof buf);
        memcpy(buf, line, len);
        buf[len] = '\0';
        line = nl + 1;
        if (len == 0)
            continue;
        if (strncmp(buf, "# HELP ", 7) == 0) {
            const char *n = buf + 7;
            size_t l = 0;
            int fi;
            while (is_name_char(n[l]))
                l++;
            assert_true(n[l] == ' ' && n[l + 1] != '\0'); /* a help text */
            fi = get_family(p, n, l);
            assert_int_equal(p->fam[fi].help, 0);    /* once */
            assert_int_equal(p->fam[fi].samples, 0); /* before samples */
            p->fam[fi].help = 1;
        } else if (strncmp(buf, "# TYPE ", 7) == 0) {
            const char *n = buf + 7;
            size_t l = 0;
            int fi;
            while (is_name_char(n[l]))
                l++;
            assert_int_equal(n[l], ' ');
            fi = get_family(p, n, l);
            assert_int_equal(p->fam[fi].typed, 0);
            assert_int_equal(p->fam[fi].samples, 0);
            p->fam[fi].typed = 1;
            snprintf(p->fam[fi].type, sizeof p->fam[fi].type, "%s", n + l + 1);
            assert_true(strcmp(p->fam[fi].type, "counter") == 0 ||
                        strcmp(p->fam[fi].type, "gauge") == 0 ||
                        strcmp(p->fam[fi].type, "histogram") == 0 ||
                        strcmp(p->fam[fi].type, "summary") == 0 ||
                        strcmp(p->fam[fi].type, "untyped") == 0);
        } else if (buf[0] == '#') {
            continue; /* a comment */
        } else {
            parse_sample(p, buf);
        }
    }
    /* Every declared family has both lines. */
    for (int i = 0; i < p->nfam; i++) {
        assert_int_equal(p->fam[i].help, 1);
        assert_int_equal(p->fam[i].typed, 1);
    }
}

static void prom_free(struct prom *p)
{
    free(p->s);
    p->s = NULL;
}

static void expect_type(struct prom *p, const char *name, const char *type)
{
    int fi = find_family(p, name);
    if (fi < 0) {
        print_error("metric %s missing\n", name);
        fail();
    }
    assert_string_equal(p->fam[fi].type, type);
}

/* The one sample name{function=fn} (no le); fails if absent or repeated. */
static double sample_value(struct prom *p, const char *name, const char *fn)
{
    int found = -1;
    for (int i = 0; i < p->nsamples; i++) {
        const struct sample *s = &p->s[i];
        if (strcmp(s->name, name) == 0 && s->has_function && strcmp(s->function, fn) == 0 &&
            !s->has_le) {
            assert_int_equal(found, -1);
            found = i;
        }
    }
    if (found < 0) {
        print_error("no sample %s{function=\"%s\"}\n", name, fn);
        fail();
    }
    return p->s[found].value;
}

/* The one sample name{mapping=m}; fails if absent or repeated. */
static double mapping_value(struct prom *p, const char *name, const char *m)
{
    int found = -1;
    for (int i = 0; i < p->nsamples; i++) {
        const struct sample *s = &p->s[i];
        if (strcmp(s->name, name) == 0 && s->has_mapping && strcmp(s->mapping, m) == 0) {
            assert_int_equal(found, -1);
            found = i;
        }
    }
    if (found < 0) {
        print_error("no sample %s{mapping=\"%s\"}\n", name, m);
        fail();
    }
    return p->s[found].value;
}

/* Checks a function's histogram: le increasing, counts cumulative, +Inf
 * last and equal to _count. Returns _count. */
static double check_histogram(struct prom *p, const char *base, const char *fn, double *sum)
{
    char bname[128], cname[128], sname[128];
    double prev_le = -INFINITY, prev_v = -1.0, inf_v = -1.0;
    int buckets = 0, saw_inf = 0;
    snprintf(bname, sizeof bname, "%s_bucket", base);
    snprintf(cname, sizeof cname, "%s_count", base);
    snprintf(sname, sizeof sname, "%s_sum", base);
    for (int i = 0; i < p->nsamples; i++) {
        const struct sample *s = &p->s[i];
        double le;
        if (strcmp(s->name, bname) != 0 || !s->has_function || strcmp(s->function, fn) != 0)
            continue;
        assert_int_equal(s->has_le, 1);
        assert_int_equal(saw_inf, 0); /* +Inf is the last bucket */
        if (strcmp(s->le, "+Inf") == 0) {
            le = INFINITY;
            saw_inf = 1;
            inf_v = s->value;
        } else {
            char *end;
            le = strtod(s->le, &end);
            assert_true(*end == '\0' && end > s->le);
        }
        assert_true(le > prev_le);
        assert_true(s->value >= prev_v);
        prev_le = le;
        prev_v = s->value;
        buckets++;
    }
    assert_true(buckets >= 2);
    assert_int_equal(saw_inf, 1);
    {
        double count = sample_value(p, cname, fn);
        assert_true(inf_v == count);
        *sum = sample_value(p, sname, fn);
        return count;
    }
}

static char *metrics_text(struct faas_runtime *rt)
{
    struct evbuffer *b = evbuffer_new();
    size_t len;
    char *text;
    assert_non_null(b);
    assert_int_equal(faas_metrics_write(rt, b), 0);
    len = evbuffer_get_length(b);
    text = malloc(len + 1);
    assert_non_null(text);
    assert_int_equal(evbuffer_remove(b, text, len), (int)len);
    text[len] = '\0';
    evbuffer_free(b);
    return text;
}

/* ------------------------------------------------------------------ */
/* stats tests                                                          */
/* ------------------------------------------------------------------ */

static void test_stats_counts(void **state)
{
    (void)state;
    struct fx f;
    struct rep r;
    struct rep ra;
    struct faas_stats st;
    struct faas_function_opts o = FAAS_FUNCTION_OPTS_INIT;
    ASTORE(&g_started, 0);
    ASTORE(&g_finished, 0);
    ASTORE(&g_release, 0);
    fx_new(&f, 0);
    reg(&f, "ok", h_adv, FAAS_ISOLATION_INLINE, 128, NULL);
    reg(&f, "bad", h_adv_fail, FAAS_ISOLATION_INLINE, 128, NULL);
    o.isolation = FAAS_ISOLATION_THREAD;
    o.timeout_ms = 50;
    assert_int_equal(faas_register(f.rt, "slow", h_block, &o), 0);
    o.timeout_ms = 3000;
    o.max_concurrency = 1;
    o.max_queue = 0;
    assert_int_equal(faas_register(f.rt, "one", h_block, &o), 0);

    /* Fresh: all zero. */
    expect_stats(f.rt, NULL, 0, 0, 0, 0, 0);
    assert_int_equal(faas_stats(f.rt, NULL, &st), 0);
    assert_int_equal(st.instances, 0);
    assert_int_equal(st.concurrency, 0);
    assert_int_equal(st.queued, 0);

    for (int i = 0; i < 3; i++) {
        invoke_wait(&f, "ok", NULL, &r);
        assert_int_equal(r.status, 0);
    }
    expect_stats(f.rt, "ok", 3, 0, 0, 0, 1);
    assert_int_equal(faas_stats(f.rt, "ok", &st), 0);
    assert_int_equal(st.instances, 1);
    assert_int_equal(st.concurrency, 0);
    assert_int_equal(st.queued, 0);

    for (int i = 0; i < 2; i++) {
        invoke_wait(&f, "bad", NULL, &r);
        assert_int_equal(r.status, FAAS_EHANDLER);
    }
    expect_stats(f.rt, "bad", 2, 2, 0, 0, 1);

    /* A THREAD timeout. */
    invoke_wait(&f, "slow", NULL, &r);
    assert_int_equal(r.status, FAAS_ETIMEDOUT);
    assert_string_equal(r.etype, "Sandbox.Timedout");
    assert_string_equal(r.emsg, "Task timed out after 0.05 seconds");
    expect_stats(f.rt, "slow", 1, 1, 1, 0, 1);
    assert_true(tu_run_until_atomic(f.base, &g_finished, 1, BOUND_MS));
    ASTORE(&g_started, 0);
    ASTORE(&g_finished, 0);

    /* A throttle: one instance at most, nothing may wait. */
    memset(&ra, 0, sizeof ra);
    assert_int_equal(faas_invoke(f.rt, "one", NULL, NULL, rep_cb, &ra), 0);
    assert_true(tu_run_until_atomic(f.base, &g_started, 1, BOUND_MS));
    assert_int_equal(faas_stats(f.rt, "one", &st), 0);
    assert_int_equal(st.concurrency, 1);
    assert_int_equal(st.instances, 1);
    assert_int_equal(st.queued, 0);
    memset(&r, 0, sizeof r);
    assert_int_equal(faas_invoke(f.rt, "one", NULL, NULL, rep_cb, &r), FAAS_ETHROTTLED);
    /* cold_starts is counted with the result, so it is not checked here. */
    assert_int_equal(faas_stats(f.rt, "one", &st), 0);
    assert_int_equal(st.throttles, 1);
    assert_int_equal(st.invocations, 0);
    assert_int_equal(st.errors, 0);
    ASTORE(&g_release, 1);
    assert_true(tu_run_until(f.base, &ra.calls, 1, BOUND_MS));
    assert_int_equal(ra.status, 0);
    tu_run_for(f.base, 20);
    assert_int_equal(r.calls, 0); /* the throttled one never calls back */
    expect_stats(f.rt, "one", 1, 0, 0, 1, 1);
    assert_int_equal(faas_stats(f.rt, "one", &st), 0);
    assert_int_equal(st.concurrency, 0);

    /* Totals. */
    expect_stats(f.rt, NULL, 7, 3, 1, 1, 4);

    /* Errors. */
    assert_int_equal(faas_stats(f.rt, "nope", &st), FAAS_ENOENT);
    assert_int_equal(faas_stats(NULL, "ok", &st), FAAS_EINVAL);
    assert_int_equal(faas_stats(f.rt, "ok", NULL), FAAS_EINVAL);

    /* The Prometheus text agrees with faas_stats for every function. */
    {
        static const char *const fns[] = { "ok", "bad", "slow", "one" };
        char *text = metrics_text(f.rt);
        struct prom p;
        prom_parse(&p, text);
        for (size_t i = 0; i < 4; i++) {
            assert_int_equal(faas_stats(f.rt, fns[i], &st), 0);
            assert_true(sample_value(&p, "faas_invocations_total", fns[i]) ==
                        (double)st.invocations);
            assert_true(sample_value(&p, "faas_errors_total", fns[i]) == (double)st.errors);
            assert_true(sample_value(&p, "faas_timeouts_total", fns[i]) == (double)st.timeouts);
            assert_true(sample_value(&p, "faas_throttles_total", fns[i]) ==
                        (double)st.throttles);
            assert_true(sample_value(&p, "faas_cold_starts_total", fns[i]) ==
                        (double)st.cold_starts);
            assert_true(sample_value(&p, "faas_replays_total", fns[i]) == (double)st.replays);
            assert_true(sample_value(&p, "faas_queued", fns[i]) == (double)st.queued);
        }
        assert_true(sample_value(&p, "faas_throttles_total", "one") == 1.0);
        assert_true(sample_value(&p, "faas_timeouts_total", "slow") == 1.0);
        prom_free(&p);
        free(text);
    }
    fx_free(&f);
}

static void test_stats_queue(void **state)
{
    (void)state;
    struct fx f;
    struct rep r[4];
    struct faas_stats st;
    struct faas_function_opts o = FAAS_FUNCTION_OPTS_INIT;
    memset(r, 0, sizeof r);
    ASTORE(&g_started, 0);
    ASTORE(&g_finished, 0);
    ASTORE(&g_release, 0);
    fx_new(&f, 0);
    o.isolation = FAAS_ISOLATION_THREAD;
    o.max_concurrency = 1;
    o.max_queue = 2;
    assert_int_equal(faas_register(f.rt, "q", h_block, &o), 0);

    assert_int_equal(faas_invoke(f.rt, "q", NULL, NULL, rep_cb, &r[0]), 0);
    assert_true(tu_run_until_atomic(f.base, &g_started, 1, BOUND_MS));
    assert_int_equal(faas_invoke(f.rt, "q", NULL, NULL, rep_cb, &r[1]), 0);
    assert_int_equal(faas_invoke(f.rt, "q", NULL, NULL, rep_cb, &r[2]), 0);
    assert_int_equal(faas_stats(f.rt, "q", &st), 0);
    assert_int_equal(st.queued, 2);
    assert_int_equal(st.concurrency, 1);
    assert_int_equal(st.instances, 1);
    assert_int_equal(faas_stats(f.rt, NULL, &st), 0);
    assert_int_equal(st.queued, 2);
    assert_int_equal(faas_invoke(f.rt, "q", NULL, NULL, rep_cb, &r[3]), FAAS_ETHROTTLED);
    assert_int_equal(faas_stats(f.rt, "q", &st), 0);
    assert_int_equal(st.throttles, 1);

    ASTORE(&g_release, 1);
    for (int i = 0; i < 3; i++)
        assert_true(tu_run_until(f.base, &r[i].calls, 1, BOUND_MS));
    tu_run_for(f.base, 20);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(r[i].calls, 1);
        assert_int_equal(r[i].status, 0);
    }
    assert_int_equal(r[3].calls, 0);
    assert_int_equal(faas_stats(f.rt, "q", &st), 0);
    assert_int_equal(st.invocations, 3);
    assert_int_equal(st.errors, 0);
    assert_int_equal(st.queued, 0);
    assert_int_equal(st.concurrency, 0);
    assert_int_equal(st.instances, 1);
    assert_int_equal(st.cold_starts, 1);
    assert_int_equal(st.throttles, 1);
    fx_free(&f);
}

/* ------------------------------------------------------------------ */
/* metrics_write                                                        */
/* ------------------------------------------------------------------ */

static void test_metrics_write(void **state)
{
    (void)state;
    struct fx f;
    struct rep r;
    struct prom p;
    char *text;
    double sum, count;
    static const char *const counters[] = {
        "faas_invocations_total", "faas_errors_total",      "faas_timeouts_total",
        "faas_throttles_total",   "faas_cold_starts_total", "faas_replays_total",
    };
    static const char *const gauges[] = { "faas_instances", "faas_concurrency", "faas_queued" };
    fx_new(&f, 1);
    reg(&f, "hello", h_adv, FAAS_ISOLATION_INLINE, 128, NULL);
    reg(&f, "oops", h_adv_fail, FAAS_ISOLATION_THREAD, 128, NULL);
    reg(&f, "idle", h_adv, FAAS_ISOLATION_INLINE, 128, NULL);
    for (int i = 0; i < 3; i++) {
        invoke_wait(&f, "hello", NULL, &r);
        assert_int_equal(r.status, 0);
        assert_int_equal(r.dur_us, 1500);
    }
    for (int i = 0; i < 2; i++) {
        invoke_wait(&f, "oops", NULL, &r);
        assert_int_equal(r.status, FAAS_EHANDLER);
    }

    assert_int_equal(faas_metrics_write(NULL, NULL), FAAS_EINVAL);
    assert_int_equal(faas_metrics_write(f.rt, NULL), FAAS_EINVAL);
    {
        struct evbuffer *b = evbuffer_new();
        assert_int_equal(faas_metrics_write(NULL, b), FAAS_EINVAL);
        assert_int_equal(evbuffer_get_length(b), 0);
        /* It appends: what was in the buffer stays first. */
        evbuffer_add_printf(b, "# prefix\n");
        assert_int_equal(faas_metrics_write(f.rt, b), 0);
        assert_true(evbuffer_get_length(b) > 9);
        {
            char head[10];
            assert_int_equal(evbuffer_copyout(b, head, 9), 9);
            head[9] = '\0';
            assert_string_equal(head, "# prefix\n");
        }
        evbuffer_free(b);
    }

    text = metrics_text(f.rt);
    prom_parse(&p, text);
    for (size_t i = 0; i < sizeof counters / sizeof counters[0]; i++)
        expect_type(&p, counters[i], "counter");
    for (size_t i = 0; i < sizeof gauges / sizeof gauges[0]; i++)
        expect_type(&p, gauges[i], "gauge");
    expect_type(&p, "faas_duration_seconds", "histogram");

    /* Every sample is labelled with its function, but the durable
     * engine's (the runtime's own, when the suite runs on one). */
    for (int i = 0; i < p.nsamples; i++) {
        if (strncmp(p.s[i].name, "faas_durable_", 13) == 0)
            continue;
        assert_int_equal(p.s[i].has_function, 1);
        assert_true(strcmp(p.s[i].function, "hello") == 0 ||
                    strcmp(p.s[i].function, "oops") == 0 ||
                    strcmp(p.s[i].function, "idle") == 0);
    }

    assert_true(sample_value(&p, "faas_invocations_total", "hello") == 3.0);
    assert_true(sample_value(&p, "faas_errors_total", "hello") == 0.0);
    assert_true(sample_value(&p, "faas_cold_starts_total", "hello") == 1.0);
    assert_true(sample_value(&p, "faas_instances", "hello") == 1.0);
    assert_true(sample_value(&p, "faas_concurrency", "hello") == 0.0);
    assert_true(sample_value(&p, "faas_queued", "hello") == 0.0);
    assert_true(sample_value(&p, "faas_invocations_total", "oops") == 2.0);
    assert_true(sample_value(&p, "faas_errors_total", "oops") == 2.0);
    assert_true(sample_value(&p, "faas_timeouts_total", "oops") == 0.0);
    assert_true(sample_value(&p, "faas_invocations_total", "idle") == 0.0);
    assert_true(sample_value(&p, "faas_instances", "idle") == 0.0);

    /* hello: three invocations of exactly 1.5 ms (fake clock). */
    count = check_histogram(&p, "faas_duration_seconds", "hello", &sum);
    assert_true(count == 3.0);
    assert_true(sum > 0.0045 - 1e-9 && sum < 0.0045 + 1e-9);
    for (int i = 0; i < p.nsamples; i++) {
        const struct sample *s = &p.s[i];
        if (strcmp(s->name, "faas_duration_seconds_bucket") != 0 ||
            strcmp(s->function, "hello") != 0 || strcmp(s->le, "+Inf") == 0)
            continue;
        if (strtod(s->le, NULL) < 0.0015)
            assert_true(s->value == 0.0);
        else
            assert_true(s->value == 3.0);
    }
    /* The others are consistent too; idle has an empty histogram. */
    check_histogram(&p, "faas_duration_seconds", "oops", &sum);
    count = check_histogram(&p, "faas_duration_seconds", "idle", &sum);
    assert_true(count == 0.0);
    assert_true(sum == 0.0);
    prom_free(&p);
    free(text);
    fx_free(&f);
}

static int g_calls_ok, g_calls_fail;

static int h_ok(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    (void)ctx;
    (void)event;
    (void)result;
    AINC(&g_calls_ok);
    return 0;
}

static int h_fail(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    (void)event;
    (void)result;
    AINC(&g_calls_fail);
    return faas_ctx_fail(ctx, "Nope", "fails");
}

static int g_async_completes;

static void on_async_complete(const struct faas_result *res, void *arg)
{
    (void)res;
    (void)arg;
    g_async_completes++;
}

static void reg_async(struct fx *f, const char *name, faas_handler_fn fn,
                      const struct faas_async_opts *ao)
{
    struct faas_function_opts o = FAAS_FUNCTION_OPTS_INIT;
    o.isolation = FAAS_ISOLATION_INLINE;
    o.timeout_ms = 0;
    o.async = ao;
    assert_int_equal(faas_register(f->rt, name, fn, &o), 0);
}

static void emit_body(struct fx *f, const char *body, int want)
{
    json_t *parts = json_pack("{s:s}", "body", body);
    assert_int_equal(faas_emit(f->rt, "queue:jobs", parts), want);
    json_decref(parts);
}

/* The async queues' and the mappings' metrics after known events. */
static void test_metrics_async_and_mappings(void **state)
{
    struct faas_async_opts af = FAAS_ASYNC_OPTS_INIT, aq = FAAS_ASYNC_OPTS_INIT;
    struct faas_map_opts mp = FAAS_MAP_OPTS_INIT, mf = FAAS_MAP_OPTS_INIT;
    struct fx f;
    struct prom p;
    char *text;

    (void)state;
    ASTORE(&g_calls_ok, 0);
    ASTORE(&g_calls_fail, 0);
    g_async_completes = 0;
    fx_new(&f, 1);
    af.max_retries = 1;
    af.retry_base_ms = 100;
    af.on_complete = on_async_complete;
    reg_async(&f, "af", h_fail, &af);
    aq.max_queue = 1;
    reg_async(&f, "aq", h_ok, &aq);
    reg_async(&f, "mp", h_ok, NULL);
    reg_async(&f, "mf", h_fail, NULL);

    /* af: an attempt, a retry, then the end in failure. */
    assert_int_equal(faas_invoke_async(f.rt, "af", NULL, NULL, NULL), 0);
    assert_true(tu_run_until_atomic(f.base, &g_calls_fail, 1, BOUND_MS));
    advance(1000000000ull);
    faas_async_poll(f.rt);
    assert_true(tu_run_until(f.base, &g_async_completes, 1, BOUND_MS));
    assert_int_equal(ALOAD(&g_calls_fail), 2);

    /* mp takes the records its filter keeps and holds them in its window;
     * mf takes all three and fails them for good. */
    mp.filter = "{\"body\": [\"keep\"]}";
    mp.batch_size = 100;
    mp.batch_window_ms = 10000;
    mf.max_retries = 0;
    mf.name = "jobs-failing"; /* a mapping's label is its name */
    assert_true(faas_map(f.rt, "queue:jobs", "mp", &mp) >= 0);
    assert_true(faas_map(f.rt, "queue:jobs", "mf", &mf) >= 0);
    emit_body(&f, "keep", 2);
    emit_body(&f, "keep", 2);
    emit_body(&f, "drop", 1);
    assert_true(tu_run_until_atomic(f.base, &g_calls_fail, 5, BOUND_MS));

    /* aq: one event waits (the loop does not run), the next is refused. */
    assert_int_equal(faas_invoke_async(f.rt, "aq", NULL, NULL, NULL), 0);
    assert_int_equal(faas_invoke_async(f.rt, "aq", NULL, NULL, NULL), FAAS_ETHROTTLED);
    advance(2500000000ull);

    text = metrics_text(f.rt);
    prom_parse(&p, text);
    expect_type(&p, "faas_async_queue_depth", "gauge");
    expect_type(&p, "faas_async_oldest_event_age_seconds", "gauge");
    expect_type(&p, "faas_async_retries_total", "counter");
    expect_type(&p, "faas_async_dead_letters_total", "counter");
    expect_type(&p, "faas_async_dropped_total", "counter");
    expect_type(&p, "faas_mapping_records_total", "counter");
    expect_type(&p, "faas_mapping_filtered_total", "counter");
    expect_type(&p, "faas_mapping_failed_records_total", "counter");
    expect_type(&p, "faas_mapping_backlog", "gauge");
    expect_type(&p, "faas_mapping_oldest_record_age_seconds", "gauge");

    assert_true(sample_value(&p, "faas_async_queue_depth", "af") == 0.0);
    assert_true(sample_value(&p, "faas_async_oldest_event_age_seconds", "af") == 0.0);
    assert_true(sample_value(&p, "faas_async_retries_total", "af") == 1.0);
    assert_true(sample_value(&p, "faas_async_dead_letters_total", "af") == 1.0);
    assert_true(sample_value(&p, "faas_async_dropped_total", "af") == 0.0);
    assert_true(sample_value(&p, "faas_async_queue_depth", "aq") == 1.0);
    assert_true(sample_value(&p, "faas_async_oldest_event_age_seconds", "aq") == 2.5);
    assert_true(sample_value(&p, "faas_async_retries_total", "aq") == 0.0);
    assert_true(sample_value(&p, "faas_async_dead_letters_total", "aq") == 0.0);
    assert_true(sample_value(&p, "faas_async_dropped_total", "aq") == 1.0);
    assert_true(sample_value(&p, "faas_async_queue_depth", "mp") == 0.0);

    assert_true(mapping_value(&p, "faas_mapping_records_total", "queue:jobs mp") == 2.0);
    assert_true(mapping_value(&p, "faas_mapping_filtered_total", "queue:jobs mp") == 1.0);
    assert_true(mapping_value(&p, "faas_mapping_failed_records_total", "queue:jobs mp") == 0.0);
    assert_true(mapping_value(&p, "faas_mapping_backlog", "queue:jobs mp") == 2.0);
    assert_true(mapping_value(&p, "faas_mapping_oldest_record_age_seconds", "queue:jobs mp") ==
                2.5);
    assert_true(mapping_value(&p, "faas_mapping_records_total", "jobs-failing") == 3.0);
    assert_true(mapping_value(&p, "faas_mapping_filtered_total", "jobs-failing") == 0.0);
    assert_true(mapping_value(&p, "faas_mapping_failed_records_total", "jobs-failing") == 3.0);
    assert_true(mapping_value(&p, "faas_mapping_backlog", "jobs-failing") == 0.0);
    assert_true(mapping_value(&p, "faas_mapping_oldest_record_age_seconds", "jobs-failing") ==
                0.0);
    prom_free(&p);
    free(text);

    /* The window closes: mp's backlog is delivered. */
    advance(10000000000ull);
    faas_batcher_poll(f.rt);
    assert_true(tu_run_until_atomic(f.base, &g_calls_ok, 2, BOUND_MS)); /* aq's event, mp's batch */
    text = metrics_text(f.rt);
    prom_parse(&p, text);
    assert_true(mapping_value(&p, "faas_mapping_backlog", "queue:jobs mp") == 0.0);
    assert_true(mapping_value(&p, "faas_mapping_oldest_record_age_seconds", "queue:jobs mp") ==
                0.0);
    assert_true(sample_value(&p, "faas_async_queue_depth", "aq") == 0.0);
    prom_free(&p);
    free(text);
    fx_free(&f);
}

/* No functions: still valid text, no samples (but the durable engine's,
 * when the suite runs on one). */
static void test_metrics_write_empty(void **state)
{
    (void)state;
    struct fx f;
    struct prom p;
    char *text;
    int i, others = 0;
    fx_new(&f, 0);
    text = metrics_text(f.rt);
    prom_parse(&p, text);
    for (i = 0; i < p.nsamples; i++)
        others += strncmp(p.s[i].name, "faas_durable_", 13) != 0;
    assert_int_equal(others, 0);
    if (!getenv("FAAS_TEST_DURABLE"))
        assert_int_equal(p.nsamples, 0);
    prom_free(&p);
    free(text);
    fx_free(&f);
}

#define BOTH(t) cmocka_unit_test_prestate(t, &tu_iso_inline), cmocka_unit_test_prestate(t, &tu_iso_thread)

int main(void)
{
    const struct CMUnitTest tests[] = {
        BOTH(test_report_line),
        BOTH(test_report_cold_start_init),
        BOTH(test_report_billing),
        BOTH(test_report_in_log_record),
        cmocka_unit_test(test_stats_counts),
        cmocka_unit_test(test_stats_queue),
        cmocka_unit_test(test_metrics_write),
        cmocka_unit_test(test_metrics_write_empty),
        cmocka_unit_test(test_metrics_async_and_mappings),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
