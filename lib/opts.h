/*
 * opts.h - reading a host's option structs, of any version, into the
 * current layout (opts.c).
 *
 * Included by the files that take a host's struct: async.c, idem.c,
 * invoke.c, runtime.c, source.c, store.c.
 */
#ifndef FAAS_OPTS_H
#define FAAS_OPTS_H

#include "faas.h"

/*
 * Each reads `src` (NULL: the _INIT defaults) into *dst: the fields src's
 * version has are copied, the later ones take the defaults, and
 * dst->version is the current version. Pointers are copied as they are
 * (borrowed: the caller copies what it keeps). Returns 0, or FAAS_EINVAL
 * for version 0 or a version from the future (*dst then holds the
 * defaults).
 */
int faas_runtime_opts_read(struct faas_runtime_opts *dst, const struct faas_runtime_opts *src);
int faas_function_opts_read(struct faas_function_opts *dst,
                            const struct faas_function_opts *src);
int faas_idempotency_opts_read(struct faas_idempotency_opts *dst,
                               const struct faas_idempotency_opts *src);
int faas_async_opts_read(struct faas_async_opts *dst, const struct faas_async_opts *src);
int faas_invoke_opts_read(struct faas_invoke_opts *dst, const struct faas_invoke_opts *src);
int faas_map_opts_read(struct faas_map_opts *dst, const struct faas_map_opts *src);
int faas_emit_opts_read(struct faas_emit_opts *dst, const struct faas_emit_opts *src);
/* src must not be NULL: a store has no default operations. */
int faas_store_ops_read(struct faas_store_ops *dst, const struct faas_store_ops *src);

#endif
