/*
 * exec_command.c - COMMAND instances: an external runtime process, started
 * like a PROCESS worker (exec_process.c spawns it through the zygote and
 * owns its life), that speaks the AWS Lambda Runtime API to an endpoint of
 * its own (runtime_api.c).
 *
 * This file makes a new COMMAND instance: it opens the instance's endpoint
 * on runtime_api_address (127.0.0.1 unless the host says otherwise, and a
 * loopback address unless runtime_api_allow_remote) and writes the
 * environment a Lambda custom runtime expects: AWS_LAMBDA_RUNTIME_API names
 * the endpoint, _HANDLER, LAMBDA_TASK_ROOT, the function's name, memory,
 * log group and stream, region, then the function's own variables, which
 * win over ours.
 *
 * May call: runtime_api.c (the endpoint), the clocks and ids. Called by
 * exec_process.c (a new instance) and runtime.c (the address check).
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include "exec_command.h"
#include "faas_int.h"

/* ==== the environment ================================================= */

static int env_add(char **v, size_t *n, const char *key, const char *val)
{
    size_t kl = strlen(key), vl = strlen(val);
    char *s = faas_malloc(kl + vl + 2);
    if (!s)
        return FAAS_ENOMEM;
    memcpy(s, key, kl);
    s[kl] = '=';
    memcpy(s + kl + 1, val, vl + 1);
    v[(*n)++] = s;
    return 0;
}

/* A "KEY=VALUE" of the function's: replaces an entry with the same key. */
static int env_put(char **v, size_t *n, const char *kv)
{
    const char *eq = strchr(kv, '=');
    size_t kl, i;
    char *s;

    if (!eq || eq == kv)
        return 0;
    kl = (size_t)(eq - kv) + 1;
    if (!(s = faas_strdup(kv)))
        return FAAS_ENOMEM;
    for (i = 0; i < *n; i++) {
        if (strncmp(v[i], kv, kl) == 0) {
            free(v[i]);
            v[i] = s;
            return 0;
        }
    }
    v[(*n)++] = s;
    return 0;
}

/* "host:port" for AWS_LAMBDA_RUNTIME_API, from the address we bound. */
static void endpoint_of(const char *addr, uint16_t port, char *out, size_t size)
{
    if (strcmp(addr, "0.0.0.0") == 0)
        addr = "127.0.0.1";
    else if (strcmp(addr, "::") == 0)
        addr = "::1";
    if (strchr(addr, ':'))
        snprintf(out, size, "[%s]:%u", addr, (unsigned)port);
    else
        snprintf(out, size, "%s:%u", addr, (unsigned)port);
}

static int build_env(struct faas_instance *inst, const char *endpoint, char ***envp)
{
    struct faas_fn *fn = inst->fn;
    struct faas_runtime *rt = fn->rt;
    const char *region = rt->opts.region, *path = getenv("PATH");
    size_t nfn = 0, n = 0;
    char **v, buf[PATH_MAX + 128], hex[33], *cwd = NULL;
    time_t now = (time_t)(faas_wall_ns(rt) / 1000000000);
    struct tm tm;
    int rc = FAAS_ENOMEM;

    while (fn->env && fn->env[nfn])
        nfn++;
    if (!(v = faas_calloc(16 + nfn + 1, sizeof *v)))
        return FAAS_ENOMEM;
    if (!fn->task_root) {
        if (!(cwd = faas_malloc(PATH_MAX)))
            goto out;
        if (!getcwd(cwd, PATH_MAX)) {
            rc = FAAS_ESYS;
            goto out;
        }
    }
    gmtime_r(&now, &tm);
    faas_random_hex32(rt, hex);
    if (env_add(v, &n, "AWS_LAMBDA_RUNTIME_API", endpoint) ||
        env_add(v, &n, "_HANDLER", fn->cmd_handler ? fn->cmd_handler : "") ||
        env_add(v, &n, "LAMBDA_TASK_ROOT", fn->task_root ? fn->task_root : cwd) ||
        env_add(v, &n, "AWS_LAMBDA_FUNCTION_NAME", fn->name) ||
        env_add(v, &n, "AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"))
        goto out;
    snprintf(buf, sizeof buf, "%u", (unsigned)fn->opts.memory_mb);
    if (env_add(v, &n, "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", buf))
        goto out;
    snprintf(buf, sizeof buf, "/aws/lambda/%s", fn->name);
    if (env_add(v, &n, "AWS_LAMBDA_LOG_GROUP_NAME", buf))
        goto out;
    snprintf(buf, sizeof buf, "%04d/%02d/%02d/[$LATEST]%s", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, hex);
    if (env_add(v, &n, "AWS_LAMBDA_LOG_STREAM_NAME", buf) ||
        env_add(v, &n, "AWS_LAMBDA_INITIALIZATION_TYPE",
                inst->prewarmed ? "provisioned-concurrency" : "on-demand") ||
        env_add(v, &n, "AWS_REGION", region) || env_add(v, &n, "AWS_DEFAULT_REGION", region) ||
        env_add(v, &n, "TZ", ":UTC") ||
        env_add(v, &n, "PATH", path && path[0] ? path : "/usr/local/bin:/usr/bin:/bin") ||
        env_add(v, &n, "LANG", "C.UTF-8") ||
        env_add(v, &n, "AWS_EXECUTION_ENV", "AWS_Lambda_provided"))
        goto out;
    for (size_t i = 0; i < nfn; i++)
        if (env_put(v, &n, fn->env[i]))
            goto out;
    *envp = v;
    v = NULL;
    rc = 0;
out:
    free(cwd);
    faas_strv_free(v);
    return rc;
}

/* ==== the address and the instance ==================================== */

int faas_cmd_address_check(const char *addr, int allow_remote)
{
    struct in_addr a4;
    struct in6_addr a6;

    if (!addr || !addr[0] || allow_remote)
        return 0;
    if (inet_pton(AF_INET, addr, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127 ? 0 : FAAS_EINVAL;
    if (inet_pton(AF_INET6, addr, &a6) == 1) {
        uint32_t v4;
        if (IN6_IS_ADDR_LOOPBACK(&a6))
            return 0;
        memcpy(&v4, a6.s6_addr + 12, 4);
        return IN6_IS_ADDR_V4MAPPED(&a6) && (ntohl(v4) >> 24) == 127 ? 0 : FAAS_EINVAL;
    }
    return FAAS_EINVAL; /* a name: what it resolves to is not known here */
}

int faas_cmd_inst_new(struct faas_instance *inst, char ***envp)
{
    struct faas_runtime *rt = inst->fn->rt;
    const char *addr = rt->opts.runtime_api_address && rt->opts.runtime_api_address[0]
                           ? rt->opts.runtime_api_address
                           : "127.0.0.1";
    char endpoint[128];
    uint16_t port;
    int rc;

    *envp = NULL;
    if ((rc = faas_runtime_api_new(inst, addr, &port)) != 0)
        return rc;
    endpoint_of(addr, port, endpoint, sizeof endpoint);
    if ((rc = build_env(inst, endpoint, envp)) != 0) {
        faas_runtime_api_free(inst);
        return rc;
    }
    return 0;
}
