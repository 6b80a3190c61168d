/* hello.c - build: cc hello.c $(pkg-config --cflags --libs libfaas) */
#include <stdio.h>
#include <stdlib.h>
#include <event2/event.h>
#include <faas.h>

static int hello(struct faas_ctx *ctx, json_t *event, json_t **result)
{
    const char *name = json_string_value(json_object_get(event, "name"));
    if (!name)
        return faas_ctx_fail(ctx, "InvalidInput", "name must be a string");
    *result = json_pack("{s:o}", "message", json_sprintf("hello, %s", name));
    return 0;
}

int main(void)
{
    struct event_base *base = event_base_new();
    struct faas_runtime *rt = NULL;
    struct faas_result *res = NULL;
    json_t *event = json_pack("{s:s}", "name", "world");
    int status = -1;

    if (faas_runtime_new(&rt, base, NULL) == 0 &&
        faas_register(rt, "hello", hello, NULL) == 0 && /* THREAD isolation */
        faas_invoke_sync(rt, "hello", event, NULL, &res) == 0) {
        char *out = json_dumps(faas_result_payload(res), 0);
        status = faas_result_status(res);
        printf("%s: %s\n", faas_strerror(status), out);
        free(out);
        faas_result_free(res);
    }
    json_decref(event);
    faas_runtime_free(rt);
    event_base_free(base);
    return status == 0 ? 0 : 1;
}
