/*
 * runtime_api.h - what the tests reach of a COMMAND instance's Runtime API
 * endpoint (runtime_api.c). What the library calls is in faas_int.h.
 */
#ifndef FAAS_RUNTIME_API_H
#define FAAS_RUNTIME_API_H

#include <stdint.h>

struct faas_instance;
/* Tests: 1 when the instance's endpoint holds a GET /next. */
int faas_runtime_api_waiting(const struct faas_instance *inst);
/* Tests: the endpoint's port (0: none). */
uint16_t faas_runtime_api_port(const struct faas_instance *inst);
/* Tests: 1 when an invocation's event waits for the runtime's /next. */
int faas_runtime_api_queued(const struct faas_instance *inst);
/* Tests: non-zero makes every instance's pid look not yet known, so that
 * first requests park until it is set back to 0; the parks counted. */
extern int faas_runtime_api_test_hold_pid;
extern unsigned long faas_runtime_api_test_parks;

#endif /* FAAS_RUNTIME_API_H */
