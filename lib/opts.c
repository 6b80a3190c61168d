/*
 * opts.c - the versions of the public structs a host fills in: the option
 * structs, the store operations, and the size rule of struct faas_stats.
 *
 * A struct only grows at its end, and each version is the struct up to its
 * last field: the tables below hold where each version ends. Reading a
 * host's struct copies the bytes its version has over the current defaults
 * (libgit2's rule), so a host built against an older header keeps working
 * and never has bytes read past the end of its struct; a version from the
 * future is refused, since its fields could not be honoured. The public
 * faas_*_opts_init functions write the defaults of the version the host
 * names, and no more. Everything else in lib/ sees the current layout only.
 *
 * Calls libc only. The subsystems that take options call in here (runtime.c,
 * async.c, invoke.c, idem.c, source.c, store.c).
 */
#include <string.h>

#include "faas_int.h"
#include "opts.h"

/* Where a member ends: a version's struct holds the bytes up to here. */
#define END_OF(type, member) (offsetof(type, member) + sizeof(((type *)0)->member))
#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

struct layout {
    const void *defaults; /* the current version's _INIT */
    size_t size;          /* sizeof the current version */
    unsigned int current;
    const size_t *ends;   /* ends[v - 1]: the bytes version v has */
};

static const struct faas_runtime_opts runtime_defaults = FAAS_RUNTIME_OPTS_INIT;
static const size_t runtime_ends[] = {
    END_OF(struct faas_runtime_opts, secret_access_key),
    END_OF(struct faas_runtime_opts, runtime_api_allow_remote),
    sizeof(struct faas_runtime_opts),
};
static const struct layout runtime_layout = { &runtime_defaults, sizeof runtime_defaults,
                                              FAAS_RUNTIME_OPTS_VERSION, runtime_ends };

static const struct faas_function_opts function_defaults = FAAS_FUNCTION_OPTS_INIT;
static const size_t function_ends[] = { sizeof(struct faas_function_opts) };
static const struct layout function_layout = { &function_defaults, sizeof function_defaults,
                                               FAAS_FUNCTION_OPTS_VERSION, function_ends };

static const struct faas_idempotency_opts idem_defaults = FAAS_IDEMPOTENCY_OPTS_INIT;
static const size_t idem_ends[] = {
    END_OF(struct faas_idempotency_opts, store),
    sizeof(struct faas_idempotency_opts),
};
static const struct layout idem_layout = { &idem_defaults, sizeof idem_defaults,
                                           FAAS_IDEMPOTENCY_OPTS_VERSION, idem_ends };

static const struct faas_async_opts async_defaults = FAAS_ASYNC_OPTS_INIT;
static const size_t async_ends[] = {
    END_OF(struct faas_async_opts, dead_letter_arg),
    sizeof(struct faas_async_opts),
};
static const struct layout async_layout = { &async_defaults, sizeof async_defaults,
                                            FAAS_ASYNC_OPTS_VERSION, async_ends };

static const struct faas_invoke_opts invoke_defaults = FAAS_INVOKE_OPTS_INIT;
static const size_t invoke_ends[] = {
    END_OF(struct faas_invoke_opts, log_tail),
    sizeof(struct faas_invoke_opts),
};
static const struct layout invoke_layout = { &invoke_defaults, sizeof invoke_defaults,
                                             FAAS_INVOKE_OPTS_VERSION, invoke_ends };

static const struct faas_map_opts map_defaults = FAAS_MAP_OPTS_INIT;
static const size_t map_ends[] = {
    END_OF(struct faas_map_opts, on_failure),
    sizeof(struct faas_map_opts),
};
static const struct layout map_layout = { &map_defaults, sizeof map_defaults,
                                          FAAS_MAP_OPTS_VERSION, map_ends };

static const struct faas_emit_opts emit_defaults = FAAS_EMIT_OPTS_INIT;
static const size_t emit_ends[] = { sizeof(struct faas_emit_opts) };
static const struct layout emit_layout = { &emit_defaults, sizeof emit_defaults,
                                           FAAS_EMIT_OPTS_VERSION, emit_ends };

static const struct faas_store_ops store_defaults = { FAAS_STORE_OPS_VERSION, NULL, NULL,
                                                      NULL, NULL, NULL };
static const size_t store_ends[] = { sizeof(struct faas_store_ops) };
static const struct layout store_layout = { &store_defaults, sizeof store_defaults,
                                            FAAS_STORE_OPS_VERSION, store_ends };

/* A new version needs its end in the table; `version` must stay first. */
_Static_assert(COUNT(runtime_ends) == FAAS_RUNTIME_OPTS_VERSION, "runtime_ends");
_Static_assert(COUNT(function_ends) == FAAS_FUNCTION_OPTS_VERSION, "function_ends");
_Static_assert(COUNT(idem_ends) == FAAS_IDEMPOTENCY_OPTS_VERSION, "idem_ends");
_Static_assert(COUNT(async_ends) == FAAS_ASYNC_OPTS_VERSION, "async_ends");
_Static_assert(COUNT(invoke_ends) == FAAS_INVOKE_OPTS_VERSION, "invoke_ends");
_Static_assert(COUNT(map_ends) == FAAS_MAP_OPTS_VERSION, "map_ends");
_Static_assert(COUNT(emit_ends) == FAAS_EMIT_OPTS_VERSION, "emit_ends");
_Static_assert(COUNT(store_ends) == FAAS_STORE_OPS_VERSION, "store_ends");
_Static_assert(offsetof(struct faas_runtime_opts, version) == 0 &&
                   offsetof(struct faas_function_opts, version) == 0 &&
                   offsetof(struct faas_idempotency_opts, version) == 0 &&
                   offsetof(struct faas_async_opts, version) == 0 &&
                   offsetof(struct faas_invoke_opts, version) == 0 &&
                   offsetof(struct faas_map_opts, version) == 0 &&
                   offsetof(struct faas_emit_opts, version) == 0 &&
                   offsetof(struct faas_store_ops, version) == 0,
               "version first");

static int version_ok(const struct layout *l, unsigned int version)
{
    return version >= 1 && version <= l->current;
}

static int read_opts(const struct layout *l, void *dst, const void *src)
{
    unsigned int version;

    memcpy(dst, l->defaults, l->size);
    if (!src)
        return 0;
    memcpy(&version, src, sizeof version);
    if (!version_ok(l, version))
        return FAAS_EINVAL;
    memcpy(dst, src, l->ends[version - 1]);
    memcpy(dst, &l->current, sizeof l->current);
    return 0;
}

static int init_opts(const struct layout *l, void *opts, unsigned int version)
{
    if (!opts || !version_ok(l, version))
        return FAAS_EINVAL;
    /* The host's struct may be an older, shorter one: its bytes only. */
    memcpy(opts, l->defaults, l->ends[version - 1]);
    memcpy(opts, &version, sizeof version);
    return 0;
}

int faas_runtime_opts_read(struct faas_runtime_opts *dst, const struct faas_runtime_opts *src)
{
    return read_opts(&runtime_layout, dst, src);
}

int faas_function_opts_read(struct faas_function_opts *dst,
                            const struct faas_function_opts *src)
{
    return read_opts(&function_layout, dst, src);
}

int faas_idempotency_opts_read(struct faas_idempotency_opts *dst,
                               const struct faas_idempotency_opts *src)
{
    return read_opts(&idem_layout, dst, src);
}

int faas_async_opts_read(struct faas_async_opts *dst, const struct faas_async_opts *src)
{
    return read_opts(&async_layout, dst, src);
}

int faas_invoke_opts_read(struct faas_invoke_opts *dst, const struct faas_invoke_opts *src)
{
    return read_opts(&invoke_layout, dst, src);
}

int faas_map_opts_read(struct faas_map_opts *dst, const struct faas_map_opts *src)
{
    return read_opts(&map_layout, dst, src);
}

int faas_emit_opts_read(struct faas_emit_opts *dst, const struct faas_emit_opts *src)
{
    return read_opts(&emit_layout, dst, src);
}

int faas_store_ops_read(struct faas_store_ops *dst, const struct faas_store_ops *src)
{
    if (!src)
        return FAAS_EINVAL;
    return read_opts(&store_layout, dst, src);
}

int faas_runtime_opts_init(struct faas_runtime_opts *opts, unsigned int version)
{
    return init_opts(&runtime_layout, opts, version);
}

int faas_function_opts_init(struct faas_function_opts *opts, unsigned int version)
{
    return init_opts(&function_layout, opts, version);
}

int faas_idempotency_opts_init(struct faas_idempotency_opts *opts, unsigned int version)
{
    return init_opts(&idem_layout, opts, version);
}

int faas_async_opts_init(struct faas_async_opts *opts, unsigned int version)
{
    return init_opts(&async_layout, opts, version);
}

int faas_invoke_opts_init(struct faas_invoke_opts *opts, unsigned int version)
{
    return init_opts(&invoke_layout, opts, version);
}

int faas_map_opts_init(struct faas_map_opts *opts, unsigned int version)
{
    return init_opts(&map_layout, opts, version);
}

int faas_emit_opts_init(struct faas_emit_opts *opts, unsigned int version)
{
    return init_opts(&emit_layout, opts, version);
}

int faas_store_ops_init(struct faas_store_ops *ops, unsigned int version)
{
    return init_opts(&store_layout, ops, version);
}
