/*
 * zygote.h - the host's client of the zygote (zygote.c): it starts the
 * zygote, sends SPAWN requests in order without blocking the loop, and
 * hands what the zygote reports to the process executor through the table
 * it was given. The messages themselves are in exec_process.h.
 */
#ifndef FAAS_ZYGOTE_H
#define FAAS_ZYGOTE_H

#include <stdint.h>
#include <sys/types.h>

struct faas_runtime;
struct faas_zygote_client;
struct faas_zygote_spawn;
struct faas_zygote_spawned;

/* What the zygote tells, on the loop thread inside faas_rt_enter. */
struct faas_zygote_report {
    /* SPAWNED: pidfd (owned by the callee, -1 if none) rides with it. */
    void (*spawned)(void *arg, const struct faas_zygote_spawned *m, int pidfd);
    /* EXITED: a child's wait status and peak memory. */
    void (*exited)(void *arg, pid_t pid, int wstatus, uint64_t maxrss_kb);
    /* The zygote died, and its children with it. The client is down from
     * here on (faas_zygote_client_up is 0); free it with _stop. */
    void (*lost)(void *arg);
};

/* Forks the zygote (before the runtime starts any thread) and watches its
 * channel on rt's base. Returns 0 (*out set), FAAS_ENOMEM or FAAS_ESYS. */
int faas_zygote_client_start(struct faas_runtime *rt, const struct faas_zygote_report *report,
                             void *arg, struct faas_zygote_client **out);

/* Asks for a new process: `sp`, then for a command its cwd, argv and env;
 * the descriptors are sent along (the caller keeps its own). Sent now, or
 * queued behind earlier requests. Returns 0, FAAS_ENOMEM or FAAS_ESYS. */
int faas_zygote_client_spawn(struct faas_zygote_client *z, const struct faas_zygote_spawn *sp,
                             const char *cwd, char *const *argv, char *const *env,
                             const int *fds, int nfds);

/* 1 while the zygote runs (z may be NULL: 0). */
int faas_zygote_client_up(const struct faas_zygote_client *z);
/* The zygote's pid, 0 when there is none (z may be NULL). */
pid_t faas_zygote_client_pid(const struct faas_zygote_client *z);

/* Closes the channel (the zygote kills what is left and exits), waits for
 * the zygote and frees z. NULL is a no-op. */
void faas_zygote_client_stop(struct faas_zygote_client *z);

#endif /* FAAS_ZYGOTE_H */
