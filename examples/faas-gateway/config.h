/*
 * config.h - the faas-gateway's JSON configuration: load, check, apply.
 *
 * Loading is two steps because the runtime's options come from the file
 * too: gw_config_open() reads and checks the whole file and fills the
 * runtime options and the listen address; the host creates its runtime
 * with them; gw_config_apply() registers the functions, the mappings and
 * the directory watches on that runtime. Both write a message that names
 * the file, the line and the key path of the first problem:
 *
 *   demo.json:14: functions.hello.timeout_ms: expected a non-negative integer
 *
 * The schema is in docs/gateway.md; its keys are the names of the fields
 * of the C option structs. Relative paths in the file are relative to the
 * file's directory.
 */
#ifndef GW_CONFIG_H
#define GW_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "faas.h"

/* The loader's own code for a problem in the file (its message says which). */
#define GW_ECONFIG FAAS_EPARSE

/* A function of the file. Pointers are borrowed from the config. */
struct gw_function {
    const char *name;
    int command;          /* 1: faas_register_command, 0: a library */
    int idempotent;       /* has an idempotency policy */
    json_t *example;      /* "example": the event to try it with, or NULL */
    uint32_t timeout_ms;
    uint32_t init_timeout_ms;
};

/* A mapping of the file. Pointers are borrowed from the config. */
struct gw_mapping {
    const char *source;   /* the whole source key, "api:GET /hello" */
    const char *function;
    int id;               /* faas_map's id once applied, else -1 */
    /* api: mappings only */
    int api;
    char method[8];       /* "GET", ..., "ANY" */
    const char *route;    /* the path template, "/users/{id}" */
    json_t *example;      /* "example": {path, method, headers, body, status} */
};

struct gw_config {
    char *path;           /* the file, as given */
    char *dir;            /* its directory, absolute */
    json_t *root;
    /* where to listen */
    char host[256];
    uint16_t port;
    /* faas_runtime_new's options (log left to the host); the strings are
     * the config's, valid until gw_config_free (the runtime copies them) */
    struct faas_runtime_opts ro;
    char *durable_url;    /* ro.durable when it names a file: resolved */
    struct gw_function *functions;
    size_t nfunctions;
    struct gw_mapping *mappings;
    size_t nmappings;
    size_t nwatches;
    /* Longest time an invocation may take (init and handler), for the
     * drain at shutdown; a function without a timeout counts 15 minutes. */
    uint64_t drain_ms;
    /* "self_test": {"drain": {"function", "event"}}, or NULL */
    const char *drain_function;
    json_t *drain_event;

    /* the line of each key path (config.c) */
    struct gw_keyline *lines;
    size_t nlines;
};

/*
 * Reads and checks the file `path` (copied). On success writes a new
 * config to *out (gw_config_free). Each library function's object is
 * loaded, and its symbol looked up, in a child process forked for it
 * (never in this one): call it before the host starts threads, as
 * faas_runtime_new. Returns 0, GW_ECONFIG (the file cannot be read, is not
 * JSON, breaks the schema or asks for what cannot work: `err` says where
 * and why) or FAAS_ENOMEM.
 */
int gw_config_open(struct gw_config **out, const char *path, char *err, size_t errlen);

/*
 * Registers the config's functions, then its mappings and watches, on `rt`
 * (borrowed). A function, mapping or watch the library refuses is a config
 * error that names its key path and faas_strerror's reason. On an error the
 * runtime keeps what was registered before it: free it.
 * Returns 0, GW_ECONFIG or FAAS_ENOMEM.
 */
int gw_config_apply(struct gw_config *cfg, struct faas_runtime *rt, char *err, size_t errlen);

/*
 * The line of the file where the key path is ("functions.hello.timeout_ms",
 * "mappings[2].function"); for a path not in the file, the line of its
 * closest ancestor that is; 1 for the root.
 */
int gw_config_line(const struct gw_config *cfg, const char *path);

/* An absolute path: `rel` as is when absolute, else under the config's
 * directory. Returns a new string (free), or NULL when out of memory. */
char *gw_config_resolve(const struct gw_config *cfg, const char *rel);

/*
 * The request an api: mapping is tried with (the self-test, the curl lines
 * printed at start): the example's path, or the route with each {param},
 * {proxy+} and trailing * replaced by "example" (a new string: free; NULL
 * when out of memory); the example's method, or the route's (for ANY:
 * POST with a body, else GET).
 */
char *gw_route_example_path(const struct gw_mapping *m);
const char *gw_route_example_method(const struct gw_mapping *m);

/* Frees the config. NULL is a no-op. */
void gw_config_free(struct gw_config *cfg);

#endif /* GW_CONFIG_H */
