/*
 * alloc.c - the library's own allocations go through here, so the tests can
 * make the n-th one fail and check that every out-of-memory path returns
 * FAAS_ENOMEM (or degrades as documented) without leaking or losing a
 * callback. jansson's and libevent's allocations are not counted here: the
 * tests swap jansson's allocator themselves.
 *
 * Owns the failure countdown (faas_alloc_fail_countdown, -1 when off): an
 * atomic, since THREAD workers allocate too, and one per process, so a test
 * that sets it owns every allocation that follows. faas_strdup is built on
 * faas_malloc so that it fails the same way.
 *
 * Called, in place of malloc, by nearly every file of lib/, and by
 * worker.c, which turns the countdown off in a child. Calls only libc.
 */
#include <stdlib.h>
#include <string.h>

#include "faas_int.h"

atomic_long faas_alloc_fail_countdown = -1;

/* 1 when this allocation is the one to fail: the countdown passes 0. */
static int inject(void)
{
    long v = atomic_load(&faas_alloc_fail_countdown);
    while (v >= 0) {
        if (atomic_compare_exchange_weak(&faas_alloc_fail_countdown, &v, v - 1))
            return v == 0;
    }
    return 0;
}

void *faas_malloc(size_t n)
{
    return inject() ? NULL : malloc(n);
}

void *faas_calloc(size_t n, size_t size)
{
    return inject() ? NULL : calloc(n, size);
}

char *faas_strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = faas_malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}
