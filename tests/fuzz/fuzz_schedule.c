/*
 * fuzz_schedule.c - libFuzzer target for the schedule parser and search:
 * any input parses or fails cleanly, and a schedule that parses gives
 * strictly increasing fires that faas_schedule_next agrees with.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "faas.h"
#include "schedule.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *expr = malloc(size + 1);
    struct faas_schedule s;
    char err[128];
    time_t t = 1795809600, next = 0, again = 0; /* 2026-11-27T20:00:00Z */
    int i, rc;

    if (!expr)
        return 0;
    memcpy(expr, data, size);
    expr[size] = '\0';
    rc = faas_schedule_parse(expr, &s, err, sizeof err);
    if (rc == 0) {
        for (i = 0; i < 4; i++) {
            if (faas_schedule_next_parsed(&s, t, &next) != 0)
                break;
            if (next <= t)
                abort(); /* a fire must come strictly after */
            if (faas_schedule_next(expr, t, &again) != 0 || again != next)
                abort(); /* the public call agrees */
            t = next;
        }
    } else if (rc != FAAS_EPARSE || faas_schedule_next(expr, t, &next) != FAAS_EPARSE) {
        abort();
    }
    free(expr);
    return 0;
}
