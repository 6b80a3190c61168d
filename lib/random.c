/*
 * random.c - the runtime's pseudo-random numbers and request ids.
 *
 * Owns the runtime's xoshiro256** generator (rt->rng): seeded once per
 * runtime from getrandom() (or, without an entropy source, from the time,
 * the pid and an address, so that two runtimes still differ), then stepped
 * with no system call. Request ids are UUIDv4 strings drawn from it: ids
 * must be unique, not secret (secrets come from libsodium).
 *
 * Loop thread only: the state is not locked. Called by runtime.c (the
 * seed), invoke.c, async.c, batch.c, source.c, shapes.c, http.c, the
 * Invoke API, exec_command.c and runtime_api.c (ids). Calls only libc.
 */
#include <stdint.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "faas_int.h"

void faas_rng_seed(uint64_t rng[4], const void *salt)
{
    uint64_t s[4];
    struct timespec ts;
    int i;

    if (getrandom(s, sizeof s, 0) != (ssize_t)sizeof s) {
        /* No entropy source: ids must still differ between runtimes. */
        clock_gettime(CLOCK_REALTIME, &ts);
        s[0] = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 30);
        s[1] = (uint64_t)getpid() * UINT64_C(0x9E3779B97F4A7C15);
        s[2] = (uint64_t)(uintptr_t)salt;
        s[3] = UINT64_C(0x6a09e667f3bcc909);
    }
    for (i = 0; i < 4; i++)
        rng[i] = s[i] ? s[i] : UINT64_C(0x9E3779B97F4A7C15) + (uint64_t)i;
}

static inline uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

uint64_t faas_rng_next(uint64_t s[4])
{
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

void faas_request_id(struct faas_runtime *rt, char out[FAAS_REQUEST_ID_SIZE])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char b[16];
    uint64_t a = faas_rng_next(rt->rng), c = faas_rng_next(rt->rng);
    int i, o = 0;

    memcpy(b, &a, 8);
    memcpy(b + 8, &c, 8);
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40); /* version 4 */
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80); /* RFC 4122 variant */
    for (i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[o++] = '-';
        out[o++] = hex[b[i] >> 4];
        out[o++] = hex[b[i] & 15];
    }
    out[o] = '\0';
}

void faas_random_hex32(struct faas_runtime *rt, char out[33])
{
    char id[FAAS_REQUEST_ID_SIZE];
    size_t i, o = 0;
    faas_request_id(rt, id);
    for (i = 0; id[i] && o < 32; i++)
        if (id[i] != '-')
            out[o++] = id[i];
    out[o] = '\0';
}
