/*
 * redis_util.h - a real redis-server for the suites: on a free 127.0.0.1
 * port, in a temporary directory of its own, stopped by PID. Without
 * persistence (tu_redis_start), or with an append-only file synced at
 * every write (tu_redis_start_aof), so that a server killed with SIGKILL
 * (tu_redis_crash) and started again on its port and directory
 * (tu_redis_spawn) comes back with every write it acknowledged.
 *
 * The port: a socket bound to port 0 tells a free one, which is closed and
 * handed to redis-server; another process may take it in between, so a
 * server that does not come up is started again on another port (a few
 * times). tu_redis_start waits (bounded) until the server answers PING.
 * tu_redis_available() is 0 when redis-server is not installed: a suite
 * then skips with a printed reason.
 */
#ifndef TU_REDIS_UTIL_H
#define TU_REDIS_UTIL_H

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

struct tu_redis {
    pid_t pid;
    int port;
    char dir[64];
    char url[64];
    int aof; /* 1: appendonly yes, appendfsync always */
};

#define TU_REDIS_BIN "redis-server"

static inline int tu_redis_available(void)
{
    const char *path = getenv("PATH");
    char buf[1024];
    const char *p = path ? path : "/usr/bin:/bin";

    while (*p) {
        const char *end = strchr(p, ':');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        snprintf(buf, sizeof buf, "%.*s/%s", (int)n, p, TU_REDIS_BIN);
        if (access(buf, X_OK) == 0)
            return 1;
        p += n;
        if (*p == ':')
            p++;
    }
    return 0;
}

static inline int tu_redis_free_port(void)
{
    struct sockaddr_in a;
    socklen_t len = sizeof a;
    int fd = socket(AF_INET, SOCK_STREAM, 0), port = -1;

    if (fd < 0)
        return -1;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    close(fd);
    return port;
}

static inline double tu_redis_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* 1 when the server answers PING within `secs`. */
static inline int tu_redis_ping(const struct tu_redis *r, double secs)
{
    double until = tu_redis_now() + secs;
    struct timeval tv = { 0, 200000 };

    while (tu_redis_now() < until) {
        redisContext *c = redisConnectWithTimeout("127.0.0.1", r->port, tv);
        if (c && !c->err) {
            redisReply *rep;
            redisSetTimeout(c, tv);
            rep = redisCommand(c, "PING");
            if (rep && rep->type == REDIS_REPLY_STATUS && strcmp(rep->str, "PONG") == 0) {
                freeReplyObject(rep);
                redisFree(c);
                return 1;
            }
            if (rep)
                freeReplyObject(rep);
        }
        if (c)
            redisFree(c);
        if (r->pid > 0 && waitpid(r->pid, NULL, WNOHANG) == r->pid)
            return 0; /* it exited: the port was taken */
        usleep(20000); /* a bounded poll for another process */
    }
    return 0;
}

/* Starts (or restarts, same port and dir) the server. 0 or -1. */
static inline int tu_redis_spawn(struct tu_redis *r)
{
    char port[16];
    pid_t pid;

    snprintf(port, sizeof port, "%d", r->port);
    pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        int devnull = open("/dev/null", O_RDWR);
        if (devnull >= 0) {
            dup2(devnull, 1);
            dup2(devnull, 2);
        }
        execlp(TU_REDIS_BIN, TU_REDIS_BIN, "--port", port, "--bind", "127.0.0.1",
               "--dir", r->dir, "--save", "", "--appendonly", r->aof ? "yes" : "no",
               "--appendfsync", r->aof ? "always" : "everysec", "--daemonize", "no",
               "--protected-mode", "yes", (char *)NULL);
        _exit(127);
    }
    r->pid = pid;
    if (tu_redis_ping(r, 10.0))
        return 0;
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    r->pid = -1;
    return -1;
}

/* Stops the server by PID: SIGTERM, then SIGKILL after 10 s. */
static inline void tu_redis_kill(struct tu_redis *r)
{
    double until = tu_redis_now() + 10.0;

    if (r->pid <= 0)
        return;
    kill(r->pid, SIGCONT);
    kill(r->pid, SIGTERM);
    while (waitpid(r->pid, NULL, WNOHANG) == 0) {
        if (tu_redis_now() > until) {
            kill(r->pid, SIGKILL);
            waitpid(r->pid, NULL, 0);
            break;
        }
        usleep(10000); /* bounded wait for the process to exit */
    }
    r->pid = -1;
}

/* Kills the server with SIGKILL, as a crash would, and reaps it; its port
 * and directory stay for tu_redis_spawn. */
static inline void tu_redis_crash(struct tu_redis *r)
{
    if (r->pid <= 0)
        return;
    kill(r->pid, SIGKILL);
    waitpid(r->pid, NULL, 0);
    r->pid = -1;
}

/* A new server in a new temporary directory; aof: with an append-only
 * file synced at every write. 0 or -1. */
static inline int tu_redis_start_with(struct tu_redis *r, int aof)
{
    int tries;

    memset(r, 0, sizeof *r);
    r->pid = -1;
    r->aof = aof;
    strcpy(r->dir, "/tmp/faas-redis-XXXXXX");
    if (!mkdtemp(r->dir))
        return -1;
    for (tries = 0; tries < 5; tries++) {
        r->port = tu_redis_free_port();
        if (r->port > 0 && tu_redis_spawn(r) == 0) {
            snprintf(r->url, sizeof r->url, "redis://127.0.0.1:%d", r->port);
            return 0;
        }
    }
    rmdir(r->dir);
    return -1;
}

/* A new server without persistence. 0 or -1. */
static inline int tu_redis_start(struct tu_redis *r)
{
    return tu_redis_start_with(r, 0);
}

/* A new server that keeps an append-only file, synced at every write. */
static inline int tu_redis_start_aof(struct tu_redis *r)
{
    return tu_redis_start_with(r, 1);
}

/* Removes the files of `dir` and, one level down, of its directories (the
 * append-only files live in a directory of their own), then `dir`. */
static inline void tu_redis_rmtree(const char *dir, int depth)
{
    DIR *d;
    struct dirent *e;
    char path[512];

    if ((d = opendir(dir)) != NULL) {
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            if (snprintf(path, sizeof path, "%s/%s", dir, e->d_name) >= (int)sizeof path)
                continue;
            if (unlink(path) != 0 && errno == EISDIR && depth > 0)
                tu_redis_rmtree(path, depth - 1);
        }
        closedir(d);
    }
    rmdir(dir);
}

/* Stops the server and removes its directory. */
static inline void tu_redis_stop(struct tu_redis *r)
{
    tu_redis_kill(r);
    if (!r->dir[0])
        return;
    tu_redis_rmtree(r->dir, 1);
    r->dir[0] = '\0';
}

/*
 * A suite's server, from its cmocka group setup: *have says whether one
 * runs. Without redis-server installed it prints that `what` is skipped and
 * returns 0 (the tests then skip); a server that cannot start is -1.
 */
static inline int tu_redis_suite_start(struct tu_redis *r, int *have, const char *what)
{
    if (!tu_redis_available()) {
        printf("redis-server is not installed: %s skipped\n", what);
        *have = 0;
        return 0;
    }
    *have = tu_redis_start(r) == 0;
    return *have ? 0 : -1;
}

/* Runs one command on the server (FLUSHALL between tests). 0 or -1. */
static inline int tu_redis_cmd(const struct tu_redis *r, const char *cmd)
{
    struct timeval tv = { 2, 0 };
    redisContext *c = redisConnectWithTimeout("127.0.0.1", r->port, tv);
    redisReply *rep;
    int rc = -1;

    if (c && !c->err) {
        redisSetTimeout(c, tv);
        rep = redisCommand(c, cmd);
        if (rep && rep->type != REDIS_REPLY_ERROR)
            rc = 0;
        if (rep)
            freeReplyObject(rep);
    }
    if (c)
        redisFree(c);
    return rc;
}

#endif
