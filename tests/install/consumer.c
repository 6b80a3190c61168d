/*
 * consumer.c - a host program built against the *installed* libfaas, the way
 * a user's program is: only <faas.h> and `pkg-config --cflags --libs libfaas`.
 *
 * It registers an INLINE and a THREAD function, invokes each with
 * faas_invoke_sync(), checks statuses and payloads, prints each REPORT line,
 * frees everything and exits 0 only if every check passed. CI runs it after
 * `make install PREFIX=...`:
 *
 *   cc -std=c11 -o consumer tests/install/consumer.c \
 *       $(PKG_CONFIG_PATH=$prefix/lib/pkgconfig pkg-config --cflags --libs libfaas)
 *   LD_LIBRARY_PATH=$prefix/lib ./consumer
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <faas.h>

static int failures;

#define CHECK(cond)                                                        \
    do {                                                                   \
        if (!(cond)) {                                                     \
            fprintf(stderr, "consumer: check failed at line %d: %s\n",     \
                    __LINE__, #cond);                                      \
            failures++;                                                    \
        }                                                                  \
    } while (0)

/* INLINE: {"n": k} -> {"n": k + 1}, on the loop thread. */
static int add_one(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    (void)ctx;
    json_int_t n = json_integer_value(json_object_get(event, "n"));
    *result = json_pack("{s:I}", "n", n + 1);
    return *result ? 0 : -1;
}

/* THREAD init: the instance's state is the greeting prefix. */
static int greet_init(struct faas_ctx *ctx, void **state)
{
    (void)ctx;
    static const char prefix[] = "hello";
    char *p = malloc(sizeof prefix);
    if (!p)
        return -1;
    memcpy(p, prefix, sizeof prefix);
    *state = p;
    return 0;
}

static void greet_fini(void *state)
{
    free(state);
}

/* THREAD: {"name": s} -> {"greeting": "hello, s", "function": <its name>}. */
static int greet(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    const char *prefix = faas_ctx_state(ctx);
    const char *name = json_string_value(json_object_get(event, "name"));
    if (!prefix)
        return faas_ctx_fail(ctx, "NoState", "init did not run");
    if (!name)
        return faas_ctx_fail(ctx, "BadRequest", "no name");
    char buf[128];
    snprintf(buf, sizeof buf, "%s, %s", prefix, name);
    *result = json_pack("{s:s, s:s}", "greeting", buf, "function",
                        faas_ctx_function_name(ctx));
    return *result ? 0 : -1;
}

static void check_result(struct faas_result *res)
{
    char line[512];
    int n = faas_result_report(res, line, sizeof line);
    CHECK(n > 0 && (size_t)n < sizeof line);
    CHECK(strncmp(line, "REPORT RequestId: ", 18) == 0);
    CHECK(strlen(faas_result_request_id(res)) == FAAS_REQUEST_ID_SIZE - 1);
    CHECK(faas_result_billed_duration_ms(res) >= 1);
    printf("%s\n", line);
}

int main(void)
{
    struct event_base *base = NULL;
    struct faas_runtime *rt = NULL;
    struct faas_result *res = NULL;
    json_t *ev = NULL;
    int rc;

    /* The header and the library it links are the same release. */
    CHECK(strcmp(faas_version(), FAAS_VERSION_STRING) == 0);
    CHECK(strcmp(faas_strerror(FAAS_ETHROTTLED), "rate exceeded: too many concurrent invocations") == 0);

    base = event_base_new();
    CHECK(base != NULL);
    if (!base)
        return 1;

    struct faas_runtime_opts ro = FAAS_RUNTIME_OPTS_INIT;
    ro.thread_workers = 2;
    rc = faas_runtime_new(&rt, base, &ro);
    CHECK(rc == 0);
    if (rc != 0) {
        fprintf(stderr, "consumer: faas_runtime_new: %s\n", faas_strerror(rc));
        event_base_free(base);
        return 1;
    }

    struct faas_function_opts inl = FAAS_FUNCTION_OPTS_INIT;
    inl.isolation = FAAS_ISOLATION_INLINE;
    CHECK(faas_register(rt, "add-one", add_one, &inl) == 0);

    struct faas_function_opts thr = FAAS_FUNCTION_OPTS_INIT; /* THREAD */
    thr.init = greet_init;
    thr.fini = greet_fini;
    CHECK(faas_register(rt, "greet", greet, &thr) == 0);

    /* INLINE */
    ev = json_pack("{s:i}", "n", 41);
    rc = faas_invoke_sync(rt, "add-one", ev, NULL, &res);
    json_decref(ev);
    CHECK(rc == 0);
    if (rc == 0) {
        CHECK(faas_result_status(res) == 0);
        CHECK(json_integer_value(json_object_get(faas_result_payload(res), "n")) == 42);
        CHECK(faas_result_error_type(res) == NULL);
        check_result(res);
        faas_result_free(res);
    }

    /* THREAD */
    ev = json_pack("{s:s}", "name", "world");
    rc = faas_invoke_sync(rt, "greet", ev, NULL, &res);
    json_decref(ev);
    CHECK(rc == 0);
    if (rc == 0) {
        json_t *p = faas_result_payload(res);
        const char *g = json_string_value(json_object_get(p, "greeting"));
        const char *f = json_string_value(json_object_get(p, "function"));
        CHECK(faas_result_status(res) == 0);
        CHECK(g && strcmp(g, "hello, world") == 0);
        CHECK(f && strcmp(f, "greet") == 0);
        CHECK(faas_result_cold_start(res) == 1);
        check_result(res);
        faas_result_free(res);
    }

    /* THREAD, failing: the error object comes back as the payload. */
    rc = faas_invoke_sync(rt, "greet", NULL, NULL, &res);
    CHECK(rc == 0);
    if (rc == 0) {
        const char *t = faas_result_error_type(res);
        CHECK(faas_result_status(res) == FAAS_EHANDLER);
        CHECK(t && strcmp(t, "BadRequest") == 0);
        CHECK(faas_result_cold_start(res) == 0);
        check_result(res);
        faas_result_free(res);
    }

    /* An unknown function is refused by the call itself. */
    CHECK(faas_invoke_sync(rt, "nope", NULL, NULL, &res) == FAAS_ENOENT);

    struct faas_stats st;
    CHECK(faas_stats(rt, NULL, &st) == 0);
    CHECK(st.invocations == 3);
    CHECK(st.errors == 1);

    faas_runtime_free(rt);
    event_base_free(base);

    if (failures) {
        fprintf(stderr, "consumer: %d check(s) failed\n", failures);
        return 1;
    }
    printf("consumer: libfaas %s OK\n", faas_version());
    return 0;
}
