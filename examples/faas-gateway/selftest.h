/*
 * selftest.h - faas-gateway --self-test: every route and function of the
 * config tried through real loopback HTTP requests to the running gateway.
 *
 * The client is libevent's evhttp client on the gateway's own base, so the
 * requests and the server that answers them share the loop: no thread and
 * no sleep. Requests go one after another on one connection; when the last
 * answer is in, the self-test raises SIGTERM, and the gateway's drain runs
 * as it would for a real signal, with (when the config names one) a slow
 * invocation still in flight, whose answer must still arrive.
 */
#ifndef GW_SELFTEST_H
#define GW_SELFTEST_H

#include <stdint.h>

#include "config.h"

struct event_base;
struct gw_selftest;

/*
 * Starts the self-test against the gateway on host:port. `base`, `rt` and
 * `cfg` are borrowed until gw_selftest_finish(). Returns 0 or FAAS_ENOMEM.
 */
int gw_selftest_start(struct gw_selftest **out, struct event_base *base,
                      struct faas_runtime *rt, const struct gw_config *cfg, const char *host,
                      uint16_t port);

/* Non-zero while a request of the self-test waits for its answer. */
int gw_selftest_busy(const struct gw_selftest *st);

/*
 * After the loop: the final checks (replays, the drain), a summary line on
 * stdout; frees the self-test. Returns the number of failed checks (0: all
 * passed). NULL is a no-op that returns 0.
 */
int gw_selftest_finish(struct gw_selftest *st, int drained);

#endif /* GW_SELFTEST_H */
