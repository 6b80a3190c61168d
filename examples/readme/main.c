/* hello.c - build: cc hello.c $(pkg-config --cflags --libs libfaas) */
#include <stdio.h>
#include <event2/event.h>
#include <faas.h>

static int hello(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    const char *who = json_string_value(json_object_get(event, "name"));
    *result = json_pack("{s:s,s:s}", "hello", who ? who : "world", "id", faas_ctx_request_id(ctx));
    return 0;
}

int main(void)
{
    struct event_base *base = event_base_new();
    struct faas_runtime *rt = NULL;
    struct faas_result *res = NULL;
    json_t *event = json_pack("{s:s}", "name", "libfaas");
    char report[256];
    int ok = faas_runtime_new(&rt, base, NULL) == 0 &&
             faas_register(rt, "hello", hello, NULL) == 0 && /* THREAD isolation */
             faas_invoke_sync(rt, "hello", event, NULL, &res) == 0 && faas_result_status(res) == 0;
    if (ok && faas_result_report(res, report, sizeof report) > 0)
        printf("hello, %s\n%s\n", json_string_value(json_object_get(faas_result_payload(res), "hello")), report);
    faas_result_free(res);
    json_decref(event);
    faas_runtime_free(rt);
    event_base_free(base);
    return ok ? 0 : 1;
}
