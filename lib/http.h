/*
 * http.h - the HTTP gateway's internal interface beyond faas_int.h: its
 * test hooks, and (included) the route table (route.h) and payload 2.0
 * (http_event.h) it is made of.
 *
 * Included by http_int.h, lambda_api.c (the holds), runtime_api.c and the
 * gateway's tests.
 */
#ifndef FAAS_HTTP_H
#define FAAS_HTTP_H

#include <stddef.h>

#include "http_event.h"
#include "route.h"

/* Test hooks: the runtime's routes, requests waiting for a result, open
 * connections. */
struct faas_runtime;
size_t faas_http_route_count(const struct faas_runtime *rt);
size_t faas_http_pending_count(const struct faas_runtime *rt);
/* Connections counted against http_max_connections. */
size_t faas_http_conn_count(const struct faas_runtime *rt);

#endif /* FAAS_HTTP_H */
