/*
 * zygote.c - both ends of the zygote's control channel: the host's client
 * (faas_zygote_client_*) and the zygote's own loop (faas_zygote_main).
 *
 * The host side starts the zygote from faas_runtime_new, before the
 * runtime starts any thread, and sends it SPAWN requests: one message each
 * on a SOCK_SEQPACKET socket, the new process's descriptors passed along
 * with SCM_RIGHTS. A burst of cold starts may fill the socket while the
 * zygote's replies wait to be read: requests then queue and go out in
 * order from a write event, never by blocking the loop. What the zygote
 * reports (SPAWNED, EXITED, its own end) goes to the process executor
 * (exec_process.c) through the struct faas_zygote_report it gave; this
 * file knows nothing of process records or the pool.
 *
 * The zygote is a single-threaded copy of the host image with a small
 * heap. It closes every descriptor but its control channel, leaves the
 * host's session and process group (a terminal's Ctrl-C is the host's to
 * handle), dies with the host (PR_SET_PDEATHSIG, and end-of-file on the
 * channel), and adopts the orphans of its workers (a child subreaper), so a
 * handler that forks leaves nothing behind. It forks one child per SPAWN
 * request — or hands the request to a standby child forked ahead of need —
 * and reports each child's exit with its peak memory (wait4's rusage),
 * reading SIGCHLD from a signalfd: it is the zygote's own signal, never the
 * host's. What a child does after fork is worker.c's (faas_child_run).
 *
 * May call: worker.c (faas_child_run and the set-up it shares), the loop
 * services (faas_rt_enter, faas_rt_leave). Called by exec_process.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "exec_process.h"
#include "faas_int.h"
#include "zygote.h"

/* ---- messages with descriptors -------------------------------------- */

/* Room for the SCM_RIGHTS of up to 4 descriptors, aligned for cmsghdr. */
union cmsg_fds {
    char buf[CMSG_SPACE(4 * sizeof(int))];
    struct cmsghdr align;
};

/* A message header of one buffer, no control data yet. */
static void msg_init(struct msghdr *mh, struct iovec *iov, void *base, size_t len)
{
    memset(mh, 0, sizeof *mh);
    iov->iov_base = base;
    iov->iov_len = len;
    mh->msg_iov = iov;
    mh->msg_iovlen = 1;
}

/* One message of a SOCK_SEQPACKET socket with up to 4 descriptors (sent
 * with SCM_RIGHTS, received close-on-exec). Receive: its length, 0 at
 * end-of-file, or -1 (errno). */
static ssize_t recv_fds(int fd, void *buf, size_t size, int *fds, int *nfds, int flags)
{
    struct msghdr mh;
    struct iovec iov;
    struct cmsghdr *c;
    union cmsg_fds u;
    ssize_t n;

    msg_init(&mh, &iov, buf, size);
    mh.msg_control = u.buf;
    mh.msg_controllen = sizeof u.buf;
    *nfds = 0;
    do {
        n = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC | flags);
    } while (n < 0 && errno == EINTR);
    if (n < 0)
        return n;
    for (c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
            size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int), j;
            for (j = 0; j < k && *nfds < 4; j++, (*nfds)++)
                memcpy(&fds[*nfds], CMSG_DATA(c) + j * sizeof(int), sizeof(int));
        }
    }
    return n;
}

/* Send: 0 or -1. */
static int send_fds(int fd, const void *msg, size_t len, const int *fds, int nfds)
{
    struct msghdr mh;
    struct iovec iov;
    struct cmsghdr *c;
    union cmsg_fds u;
    ssize_t n;

    msg_init(&mh, &iov, (void *)(uintptr_t)msg, len);
    memset(&u, 0, sizeof u);
    if (nfds > 0) {
        mh.msg_control = u.buf;
        mh.msg_controllen = CMSG_SPACE((size_t)nfds * sizeof(int));
        c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN((size_t)nfds * sizeof(int));
        memcpy(CMSG_DATA(c), fds, (size_t)nfds * sizeof(int));
    }
    do {
        n = sendmsg(fd, &mh, MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    return n == (ssize_t)len ? 0 : -1;
}

/* ---- the host's client ------------------------------------------------ */

struct faas_zygote_client {
    struct faas_runtime *rt;
    pid_t pid;               /* 0 once it is gone */
    int fd;                  /* control channel, -1 once closed */
    struct event *ev;
    /* SPAWN requests the control socket did not take yet, in order. */
    struct faas_list queue;
    struct event *wev;
    const struct faas_zygote_report *report;
    void *arg;
};

struct zygote_queued {
    struct faas_list link;
    char *msg;
    size_t len;
    int fds[3];
    int nfds;
};

static char *spawn_msg(const struct faas_zygote_spawn *sp, const char *cwd, char *const *argv,
                       char *const *env, size_t *len)
{
    size_t n = sizeof *sp, i;
    char *m, *p;

    if (sp->command) {
        n += strlen(cwd) + 1 + 1 + 1;
        for (i = 0; argv[i]; i++)
            n += strlen(argv[i]) + 1;
        for (i = 0; env[i]; i++)
            n += strlen(env[i]) + 1;
    }
    if (n > FAAS_ZYGOTE_MSG_MAX || !(m = faas_malloc(n)))
        return NULL;
    memcpy(m, sp, sizeof *sp);
    p = m + sizeof *sp;
    if (sp->command) {
        size_t l = strlen(cwd) + 1;
        memcpy(p, cwd, l);
        p += l;
        for (i = 0; argv[i]; i++) {
            l = strlen(argv[i]) + 1;
            memcpy(p, argv[i], l);
            p += l;
        }
        *p++ = '\0';
        for (i = 0; env[i]; i++) {
            l = strlen(env[i]) + 1;
            memcpy(p, env[i], l);
            p += l;
        }
        *p++ = '\0';
    }
    *len = n;
    return m;
}

static void zygote_queue_free(struct zygote_queued *q)
{
    int i;
    for (i = 0; i < q->nfds; i++)
        close(q->fds[i]);
    free(q->msg);
    free(q);
}

/* Sends what the queue holds while the socket takes it. */
static void zygote_queue_flush(struct faas_zygote_client *z)
{
    struct faas_list *e;
    while (z->fd >= 0 && (e = z->queue.next) != &z->queue) {
        struct zygote_queued *q = FAAS_CONTAINER_OF(e, struct zygote_queued, link);
        if (send_fds(z->fd, q->msg, q->len, q->fds, q->nfds) != 0) {
            if (errno == EAGAIN)
                event_add(z->wev, NULL);
            return; /* otherwise the zygote is gone: its end says so */
        }
        faas_list_remove(&q->link);
        zygote_queue_free(q);
    }
}

static void zygote_write_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    zygote_queue_flush(arg);
}

/* Queues a SPAWN (msg taken over; the descriptors are duplicated, the
 * caller keeps its own). 0 or FAAS_ENOMEM / FAAS_ESYS. */
static int zygote_queue_add(struct faas_zygote_client *z, char *msg, size_t len, const int *fds,
                            int nfds)
{
    struct zygote_queued *q = faas_calloc(1, sizeof *q);
    int i;

    if (!q ||
        (!z->wev && !(z->wev = event_new(z->rt->base, z->fd, EV_WRITE, zygote_write_cb, z)))) {
        free(q);
        free(msg);
        return FAAS_ENOMEM;
    }
    q->msg = msg;
    q->len = len;
    faas_list_init(&q->link);
    for (i = 0; i < nfds; i++) {
        q->fds[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, 3);
        if (q->fds[i] < 0) {
            q->nfds = i;
            zygote_queue_free(q);
            return FAAS_ESYS;
        }
    }
    q->nfds = nfds;
    faas_list_insert_tail(&z->queue, &q->link);
    event_add(z->wev, NULL);
    return 0;
}

static void zygote_queue_drop_all(struct faas_zygote_client *z)
{
    struct faas_list *e;
    while ((e = faas_list_pop_head(&z->queue)) != NULL)
        zygote_queue_free(FAAS_CONTAINER_OF(e, struct zygote_queued, link));
    if (z->wev)
        event_free(z->wev);
    z->wev = NULL;
}


int faas_zygote_client_spawn(struct faas_zygote_client *z, const struct faas_zygote_spawn *sp,
                             const char *cwd, char *const *argv, char *const *env,
                             const int *fds, int nfds)
{
    size_t len;
    char *msg = spawn_msg(sp, cwd, argv, env, &len);
    int rc;

    if (!msg)
        return FAAS_ENOMEM;
    rc = faas_list_empty(&z->queue) ? send_fds(z->fd, msg, len, fds, nfds) : -1;
    if (rc != 0 && (faas_list_empty(&z->queue) ? errno == EAGAIN : 1))
        rc = zygote_queue_add(z, msg, len, fds, nfds); /* takes msg */
    else
        free(msg);
    if (rc != 0)
        return rc == FAAS_ENOMEM ? FAAS_ENOMEM : FAAS_ESYS;
    return 0;
}

/* The channel is closed: no more requests, no more reports. */
static void zygote_client_close(struct faas_zygote_client *z)
{
    if (z->ev)
        event_free(z->ev);
    z->ev = NULL;
    zygote_queue_drop_all(z);
    if (z->fd >= 0)
        close(z->fd);
    z->fd = -1;
}

static void zygote_client_cb(evutil_socket_t fd, short what, void *arg)
{
    struct faas_zygote_client *z = arg;
    struct faas_runtime *rt = z->rt;
    union {
        struct faas_zygote_spawned s;
        struct faas_zygote_exited e;
        uint32_t type;
    } m;
    int fds[4], nfds, pidfd;
    ssize_t n;

    (void)what;
    faas_rt_enter(rt);
    for (;;) {
        n = recv_fds(fd, &m, sizeof m, fds, &nfds, MSG_DONTWAIT);
        if (n < 0)
            break;
        if (n == 0) {
            /* The zygote died: its workers died with it. Replacements the
             * pool starts meanwhile are the host's own children (no zygote
             * any more). */
            zygote_client_close(z);
            waitpid(z->pid, NULL, 0);
            z->pid = 0;
            z->report->lost(z->arg);
            break;
        }
        pidfd = nfds > 0 ? fds[0] : -1;
        while (nfds > 1)
            close(fds[--nfds]); /* never sent: not ours to keep */
        if (m.type == FAAS_ZYGOTE_SPAWNED && (size_t)n >= sizeof m.s) {
            z->report->spawned(z->arg, &m.s, pidfd);
        } else {
            if (pidfd >= 0)
                close(pidfd);
            if (m.type == FAAS_ZYGOTE_EXITED && (size_t)n >= sizeof m.e)
                z->report->exited(z->arg, m.e.pid, m.e.wstatus, m.e.maxrss_kb);
        }
        if (rt->free_requested)
            break;
    }
    faas_rt_leave(rt);
}

int faas_zygote_client_start(struct faas_runtime *rt, const struct faas_zygote_report *report,
                             void *arg, struct faas_zygote_client **out)
{
    struct faas_zygote_client *z = faas_calloc(1, sizeof *z);
    int sv[2];
    pid_t host = getpid(), pid;

    if (!z)
        return FAAS_ENOMEM;
    z->rt = rt;
    z->fd = -1;
    z->report = report;
    z->arg = arg;
    faas_list_init(&z->queue);
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0)
        goto fail;
    /* What the host has buffered must not be written twice. */
    fflush(stdout);
    fflush(stderr);
    pid = fork();
    if (pid == 0) {
        close(sv[0]);
        faas_zygote_main(sv[1], host);
    }
    close(sv[1]);
    if (pid < 0) {
        close(sv[0]);
        goto fail;
    }
    z->pid = pid;
    z->fd = sv[0];
    /* A full socket queues requests, never blocks. */
    fcntl(z->fd, F_SETFL, O_NONBLOCK);
    z->ev = event_new(rt->base, z->fd, EV_READ | EV_PERSIST, zygote_client_cb, z);
    if (!z->ev) {
        faas_zygote_client_stop(z);
        return FAAS_ENOMEM;
    }
    event_add(z->ev, NULL);
    *out = z;
    return 0;
fail:
    free(z);
    return FAAS_ESYS;
}

int faas_zygote_client_up(const struct faas_zygote_client *z)
{
    return z && z->fd >= 0;
}

pid_t faas_zygote_client_pid(const struct faas_zygote_client *z)
{
    return z ? z->pid : 0;
}

void faas_zygote_client_stop(struct faas_zygote_client *z)
{
    if (!z)
        return;
    zygote_client_close(z); /* the zygote kills what is left and exits */
    if (z->pid > 0)
        waitpid(z->pid, NULL, 0);
    free(z);
}

/* ---- the zygote ------------------------------------------------------ */

struct zygote_children {
    pid_t *pids;
    size_t n, cap;
};

static void zygote_children_add(struct zygote_children *c, pid_t pid)
{
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 64;
        pid_t *p = realloc(c->pids, cap * sizeof *p);
        if (!p)
            return; /* reported as an orphan then: killed, but no EXITED */
        c->pids = p;
        c->cap = cap;
    }
    c->pids[c->n++] = pid;
}

static int zygote_children_remove(struct zygote_children *c, pid_t pid)
{
    size_t i;
    for (i = 0; i < c->n; i++) {
        if (c->pids[i] == pid) {
            c->pids[i] = c->pids[--c->n];
            return 1;
        }
    }
    return 0;
}

/* Splits "a\0b\0\0" into a NULL-terminated array pointing into p. */
static char **zygote_strv(char *p, char *end, char **next)
{
    size_t n = 0, i = 0;
    char *q = p, **v;
    while (q < end && *q) {
        q += strlen(q) + 1;
        n++;
    }
    v = calloc(n + 1, sizeof *v);
    if (!v)
        return NULL;
    for (q = p; i < n; i++) {
        v[i] = q;
        q += strlen(q) + 1;
    }
    *next = q < end ? q + 1 : end;
    return v;
}

/* What a SPAWN message asks for. Its strings point into msg; argv and env
 * are new arrays (free them). 0, or -EINVAL for a message that is wrong. */
static int zygote_parse_spawn(char *msg, size_t len, const int *fds, int nfds,
                              struct faas_child_spec *spec, char ***argv, char ***env)
{
    struct faas_zygote_spawn sp;
    char *next, *end = msg + len;

    memcpy(&sp, msg, sizeof sp);
    memset(spec, 0, sizeof *spec);
    *argv = *env = NULL;
    spec->command = sp.command != 0;
    spec->memory_mb = sp.memory_mb;
    spec->from_zygote = 1;
    spec->base_data_kb = 0; /* the child measures it (the standby, ahead) */
    spec->chan_fd = spec->command ? -1 : (nfds > 0 ? fds[0] : -1);
    spec->chan_out_fd = spec->command ? -1 : (nfds > 1 ? fds[1] : -1);
    spec->log_fd = nfds > (spec->command ? 0 : 2) ? fds[spec->command ? 0 : 2] : -1;
    if (spec->command) {
        spec->cwd = msg + sizeof sp;
        next = (char *)spec->cwd + strlen(spec->cwd) + 1;
        *argv = next < end ? zygote_strv(next, end, &next) : NULL;
        *env = *argv && next < end ? zygote_strv(next, end, &next) : NULL;
        spec->argv = *argv;
        spec->env = *env;
    }
    if (spec->log_fd < 0 || (!spec->command && (spec->chan_fd < 0 || spec->chan_out_fd < 0)) ||
        (spec->command && (!*argv || !(*argv)[0] || !*env)))
        return -EINVAL;
    return 0;
}

/*
 * The standby: a child forked ahead of need, waiting for the SPAWN message
 * the zygote forwards to it, so a cold start does not wait for a fork. It
 * keeps the zygote's descriptors 3 and 4 until the message is in, so what
 * it receives lands above them. Never returns.
 */
static void standby_main(int sock, pid_t zygote)
{
    char *msg = malloc(FAAS_ZYGOTE_MSG_MAX);
    struct faas_child_spec spec;
    char **argv, **env;
    int fds[4], nfds;
    ssize_t n;

    uint64_t base_kb;

    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != zygote || !msg)
        _exit(0);
    base_kb = faas_child_data_kb(); /* measured while waiting, not during a cold start */
    n = recv_fds(sock, msg, FAAS_ZYGOTE_MSG_MAX - 1, fds, &nfds, 0);
    if (n < (ssize_t)sizeof(struct faas_zygote_spawn))
        _exit(0); /* the zygote is gone, or let this one go */
    msg[n] = '\0';
    if (zygote_parse_spawn(msg, (size_t)n, fds, nfds, &spec, &argv, &env) != 0)
        _exit(127);
    spec.base_data_kb = base_kb;
    close(3);
    close(4);
    close(sock);
    faas_child_run(&spec, zygote);
}

static pid_t standby_pid;     /* 0: none */
static int standby_fd = -1;
static int64_t standby_due_ms; /* when to fork the next one */

static int64_t zygote_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Forks a new standby if there is none. */
static void standby_start(int ctrl, int sfd)
{
    int sv[2];
    pid_t pid, me = getpid();

    if (standby_pid > 0 || socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0)
        return;
    pid = fork();
    if (pid == 0) {
        close(sv[0]);
        (void)ctrl;
        (void)sfd;
        standby_main(sv[1], me);
    }
    close(sv[1]);
    if (pid < 0) {
        close(sv[0]);
        return;
    }
    standby_pid = pid;
    standby_fd = sv[0];
}

static void standby_lost(void)
{
    standby_pid = 0;
    if (standby_fd >= 0)
        close(standby_fd);
    standby_fd = -1;
}

static void zygote_spawn(int ctrl, int sfd, struct zygote_children *kids, char *msg, size_t len,
                    const int *fds, int nfds)
{
    struct faas_zygote_spawn sp;
    struct faas_zygote_spawned r;
    struct faas_child_spec spec;
    char **argv = NULL, **env = NULL;
    pid_t pid = -1;
    int i, pidfd = -1;

    memcpy(&sp, msg, sizeof sp);
    memset(&r, 0, sizeof r);
    r.type = FAAS_ZYGOTE_SPAWNED;
    r.tag = sp.tag;
    if (zygote_parse_spawn(msg, len, fds, nfds, &spec, &argv, &env) != 0) {
        r.pid = -EINVAL;
    } else {
        /* The standby takes it at once; a fork is the way without one. */
        standby_due_ms = zygote_now_ms() + 2;
        if (standby_pid > 0 && send_fds(standby_fd, msg, len, fds, nfds) == 0) {
            pid = standby_pid;
            standby_pid = 0;
            close(standby_fd);
            standby_fd = -1;
        } else {
            if (standby_pid > 0) {
                kill(standby_pid, SIGKILL);
                standby_lost();
            }
            pid = fork();
            if (pid == 0) {
                close(ctrl);
                close(sfd);
                faas_child_run(&spec, getppid());
            }
        }
        if (pid < 0) {
            r.pid = -errno;
        } else {
            r.pid = pid;
            zygote_children_add(kids, pid);
            pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
        }
    }
    for (i = 0; i < nfds; i++)
        close(fds[i]);
    free(argv);
    free(env);
    send_fds(ctrl, &r, sizeof r, &pidfd, pidfd >= 0 ? 1 : 0);
    if (pidfd >= 0)
        close(pidfd);
}

/*
 * Kills the zygote's children that are not workers: processes a handler
 * left behind that escaped its worker's process group (setsid, setpgid, a
 * double fork) and were adopted here. They go when any worker ends, and at exit.
 */
static void zygote_kill_orphans(const struct zygote_children *kids, int all)
{
    char path[64], buf[4096];
    ssize_t n;
    int fd;
    char *p, *end;

    snprintf(path, sizeof path, "/proc/self/task/%d/children", (int)getpid());
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return;
    buf[n] = '\0';
    for (p = buf; *p; p = end) {
        pid_t pid = (pid_t)strtol(p, &end, 10);
        size_t i;
        int worker = 0;
        if (end == p)
            break;
        for (i = 0; !all && i < kids->n; i++)
            worker |= kids->pids[i] == pid;
        worker |= !all && pid == standby_pid;
        if (pid > 0 && !worker)
            kill(pid, SIGKILL);
    }
}

static void zygote_reap(int ctrl, struct zygote_children *kids)
{
    struct rusage ru;
    int st;
    pid_t pid;

    while ((pid = wait4(-1, &st, WNOHANG, &ru)) > 0) {
        if (pid == standby_pid)
            standby_lost(); /* a new one comes with the next spawn */
        if (zygote_children_remove(kids, pid)) {
            struct faas_zygote_exited x;
            memset(&x, 0, sizeof x);
            x.type = FAAS_ZYGOTE_EXITED;
            x.pid = pid;
            x.wstatus = st;
            x.maxrss_kb = (uint64_t)ru.ru_maxrss;
            /* What the worker left behind goes too: its group, and what
             * escaped it. */
            kill(-pid, SIGKILL);
            zygote_kill_orphans(kids, 0);
            send_fds(ctrl, &x, sizeof x, NULL, 0);
        }
    }
}

static void zygote_exit(struct zygote_children *kids)
{
    size_t i;
    for (i = 0; i < kids->n; i++) {
        kill(-kids->pids[i], SIGKILL);
        kill(kids->pids[i], SIGKILL);
    }
    /* Every child, adopted ones too, until none is left. */
    for (;;) {
        zygote_kill_orphans(kids, 1);
        if (wait(NULL) < 0 && errno == ECHILD)
            break;
    }
    _exit(0);
}

void faas_zygote_main(int ctrl, pid_t host)
{
    struct zygote_children kids = { NULL, 0, 0 };
    struct pollfd pfd[2];
    sigset_t chld;
    char *msg;
    int sfd, devnull, i, n, timeout;

    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != host)
        _exit(0);
    atomic_store(&faas_alloc_fail_countdown, -1);
    setsid();
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    prctl(PR_SET_NAME, "faas-zygote");
    /* Every disposition to its default, once, here: the workers forked
     * later then need not. */
    for (i = 1; i < NSIG; i++)
        if (i != SIGKILL && i != SIGSTOP)
            signal(i, SIG_DFL);
    /* A native worker's fatal-signal handlers, inherited by each: set once
     * here rather than in every cold start. */
    faas_worker_install_handlers();
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    sigprocmask(SIG_SETMASK, &chld, NULL);
    signal(SIGPIPE, SIG_IGN);
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGHUP, SIG_DFL);

    /* Descriptors: the channel moves to 3, 0-2 are /dev/null, the rest go. */
    if (ctrl != 3) {
        if (dup2(ctrl, 3) < 0)
            _exit(1);
        ctrl = 3;
    }
    devnull = open("/dev/null", O_RDWR);
    if (devnull < 0)
        _exit(1);
    if (devnull != 0)
        dup2(devnull, 0);
    dup2(0, 1);
    dup2(0, 2);
    faas_child_close_from(4);
    sfd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
    msg = malloc(FAAS_ZYGOTE_MSG_MAX);
    if (sfd < 0 || !msg)
        _exit(1);
    standby_start(ctrl, sfd);

    for (;;) {
        pfd[0].fd = ctrl;
        pfd[0].events = POLLIN;
        pfd[1].fd = sfd;
        pfd[1].events = POLLIN;
        /* A new standby 2 ms after the last spawn: forking it at once would
         * take CPU from the worker just started. */
        if (standby_pid <= 0) {
            int64_t left = standby_due_ms - zygote_now_ms();
            if (left <= 0) {
                standby_start(ctrl, sfd);
                left = standby_pid > 0 ? -1 : 1000; /* could not: try again later */
            }
            timeout = (int)left;
        } else {
            timeout = -1;
        }
        n = poll(pfd, 2, timeout);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            zygote_exit(&kids);
        }
        if (n == 0)
            continue;
        if (pfd[1].revents) {
            struct signalfd_siginfo si;
            while (read(sfd, &si, sizeof si) > 0)
                ;
            zygote_reap(ctrl, &kids);
        }
        if (pfd[0].revents) {
            int fds[4], nfds = 0;
            ssize_t got = recv_fds(ctrl, msg, FAAS_ZYGOTE_MSG_MAX - 1, fds, &nfds, 0);
            if (got <= 0)
                zygote_exit(&kids); /* the host is gone */
            if ((size_t)got >= sizeof(struct faas_zygote_spawn) &&
                ((uint32_t *)(void *)msg)[0] == FAAS_ZYGOTE_SPAWN) {
                msg[got] = '\0';
                zygote_spawn(ctrl, sfd, &kids, msg, (size_t)got, fds, nfds);
            } else {
                while (nfds > 0)
                    close(fds[--nfds]);
            }
        }
    }
}
