/*
 * peer.c - who holds the other end of a TCP connection accepted on this
 * host (peer.h says what for).
 *
 * The peer's socket. A connection seen from our side is (local, remote);
 * the peer's socket is the one whose local end is our remote and whose
 * remote end is our local. sock_diag looks it up by exactly that 4-tuple
 * (inet_diag_req_v2 without NLM_F_DUMP: the kernel's own hash lookup, one
 * answer), and tells its inode and owner. Where sock_diag is missing (no
 * inet_diag module, a seccomp filter) /proc/net/tcp or tcp6 is read line
 * by line for the same tuple. A peer on another host has no socket here:
 * neither finds it. An IPv4 peer of an IPv6 listener (a v4-mapped address)
 * is looked up as the IPv4 socket it is.
 *
 * Its holders. A socket is held by the processes that have it among their
 * descriptors; /proc/PID/fd/N of each reads "socket:[INODE]". The processes
 * looked at are the instance's own, then its descendants (every thread's
 * /proc/PID/task/TID/children), breadth first, so the common holder (the
 * runtime itself, or the curl its script runs) is found in a few system
 * calls; then the children of the reaper (the zygote, which adopts what
 * the instance's processes leave behind) that are still in the instance's
 * session, and their descendants. The session, not the process group: each
 * instance starts a session of its own (setsid, so its id is the
 * instance's pid), and no process can join a session, while any process
 * may join any process group of its own session (setpgid), another
 * instance's too if they shared one. At most FAAS_PEER_TREE_MAX processes
 * and FAAS_PEER_FD_MAX descriptors: a runtime cannot make the host walk
 * without bound.
 *
 * Everything here is a few blocking system calls on /proc and a netlink
 * socket, none of which waits on another process; no allocation of ours.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>

#include "faas.h"
#include "peer.h"

/* ==== the peer's socket ================================================ */

/* One end of a connection, as sock_diag and /proc/net name it. */
struct end {
    int family;          /* AF_INET or AF_INET6 */
    uint32_t addr[4];    /* network order; IPv4 in addr[0] */
    uint16_t port;       /* host order */
};

/* An address as an end; v4-mapped IPv6 as the IPv4 it is. */
static int end_of(const struct sockaddr_storage *ss, struct end *e)
{
    static const unsigned char mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

    memset(e, 0, sizeof *e);
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *s = (const struct sockaddr_in *)ss;
        e->family = AF_INET;
        memcpy(&e->addr[0], &s->sin_addr, 4);
        e->port = ntohs(s->sin_port);
        return 0;
    }
    if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)ss;
        e->port = ntohs(s->sin6_port);
        if (memcmp(s->sin6_addr.s6_addr, mapped, sizeof mapped) == 0) {
            e->family = AF_INET;
            memcpy(&e->addr[0], s->sin6_addr.s6_addr + 12, 4);
        } else {
            e->family = AF_INET6;
            memcpy(e->addr, &s->sin6_addr, 16);
        }
        return 0;
    }
    return -1;
}

static void end_text(const struct end *e, char *out, size_t size)
{
    char a[INET6_ADDRSTRLEN];
    if (!inet_ntop(e->family, e->addr, a, sizeof a))
        snprintf(a, sizeof a, "?");
    if (e->family == AF_INET6)
        snprintf(out, size, "[%s]:%u", a, (unsigned)e->port);
    else
        snprintf(out, size, "%s:%u", a, (unsigned)e->port);
}

/* sock_diag: 0 and *out, FAAS_ENOENT (no such socket, or no handler for
 * TCP: the caller asks /proc/net), FAAS_ESYS. */
static int by_netlink(const struct end *peer, const struct end *us, struct faas_peer_sock *out)
{
    struct {
        struct nlmsghdr nlh;
        struct inet_diag_req_v2 r;
    } req;
    struct sockaddr_nl sa;
    union {
        char buf[1024];
        struct nlmsghdr align;
    } ans;
    const struct nlmsghdr *h = &ans.align;
    const struct inet_diag_msg *m;
    ssize_t n;
    int fd, rc = FAAS_ESYS;

    fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
    if (fd < 0)
        return FAAS_ESYS;
    memset(&req, 0, sizeof req);
    req.nlh.nlmsg_len = sizeof req;
    req.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
    req.nlh.nlmsg_flags = NLM_F_REQUEST;
    req.nlh.nlmsg_seq = 1;
    req.r.sdiag_family = (uint8_t)peer->family;
    req.r.sdiag_protocol = IPPROTO_TCP;
    req.r.idiag_states = ~0u;
    /* The peer's socket: its local end is our remote one. */
    req.r.id.idiag_sport = htons(peer->port);
    req.r.id.idiag_dport = htons(us->port);
    memcpy(req.r.id.idiag_src, peer->addr, sizeof req.r.id.idiag_src);
    memcpy(req.r.id.idiag_dst, us->addr, sizeof req.r.id.idiag_dst);
    req.r.id.idiag_cookie[0] = INET_DIAG_NOCOOKIE;
    req.r.id.idiag_cookie[1] = INET_DIAG_NOCOOKIE;
    memset(&sa, 0, sizeof sa);
    sa.nl_family = AF_NETLINK;
    if (sendto(fd, &req, sizeof req, 0, (struct sockaddr *)&sa, sizeof sa) != (ssize_t)sizeof req)
        goto out;
    /* The kernel answers an exact request inside sendto: the answer is
     * there already, and the loop never waits for it. */
    n = recv(fd, ans.buf, sizeof ans.buf, MSG_DONTWAIT);
    if (n < (ssize_t)sizeof *h || h->nlmsg_len > (size_t)n || h->nlmsg_len < sizeof *h)
        goto out;
    if (h->nlmsg_type == NLMSG_ERROR) {
        const struct nlmsgerr *e = NLMSG_DATA(h);
        if (h->nlmsg_len >= NLMSG_LENGTH(sizeof *e) && e->error == -ENOENT)
            rc = FAAS_ENOENT;
        goto out;
    }
    if (h->nlmsg_type != SOCK_DIAG_BY_FAMILY || h->nlmsg_len < NLMSG_LENGTH(sizeof *m))
        goto out;
    m = NLMSG_DATA(h);
    if (ntohs(m->id.idiag_sport) != peer->port || ntohs(m->id.idiag_dport) != us->port)
        goto out;
    out->inode = m->idiag_inode;
    out->uid = m->idiag_uid;
    rc = 0;
out:
    close(fd);
    return rc;
}

/* "0100007F" (a u32 as the kernel printed it) into *w. */
static int hex_word(const char *s, uint32_t *w)
{
    uint32_t v = 0;
    int i;
    for (i = 0; i < 8; i++) {
        int c = s[i], d;
        if (c >= '0' && c <= '9')
            d = c - '0';
        else if (c >= 'A' && c <= 'F')
            d = c - 'A' + 10;
        else if (c >= 'a' && c <= 'f')
            d = c - 'a' + 10;
        else
            return -1;
        v = v << 4 | (uint32_t)d;
    }
    *w = v;
    return 0;
}

/* "ADDR:PORT" of /proc/net/tcp{,6} equals e: the address is words in the
 * kernel's memory order, each printed as a native u32. */
static int field_is(const char *f, const struct end *e)
{
    int i, words = e->family == AF_INET ? 1 : 4;
    unsigned long port;
    char *end;

    for (i = 0; i < words; i++, f += 8) {
        uint32_t w;
        if (hex_word(f, &w) != 0 || w != e->addr[i])
            return 0;
    }
    if (*f != ':')
        return 0;
    port = strtoul(f + 1, &end, 16);
    return end != f + 1 && port == e->port;
}

/* /proc/net: 0 and *out, FAAS_ENOENT, FAAS_ESYS. */
static int by_proc(const struct end *peer, const struct end *us, struct faas_peer_sock *out)
{
    FILE *f = fopen(peer->family == AF_INET ? "/proc/net/tcp" : "/proc/net/tcp6", "re");
    char line[512];
    int rc = FAAS_ENOENT;

    if (!f)
        return FAAS_ESYS;
    if (!fgets(line, sizeof line, f)) { /* the column names */
        fclose(f);
        return FAAS_ESYS;
    }
    while (fgets(line, sizeof line, f)) {
        char local[64], rem[64];
        unsigned uid;
        unsigned long long inode;
        /* sl local rem st tx:rx tr:when retrnsmt uid timeout inode */
        if (sscanf(line, " %*u: %63s %63s %*x %*x:%*x %*x:%*x %*x %u %*d %llu", local, rem, &uid,
                   &inode) != 4)
            continue;
        if (field_is(local, peer) && field_is(rem, us)) {
            out->inode = inode;
            out->uid = uid;
            rc = 0;
            break;
        }
    }
    fclose(f);
    return rc;
}

int faas_peer_socket(int fd, int no_netlink, struct faas_peer_sock *out)
{
    struct sockaddr_storage ps, ls;
    socklen_t pl = sizeof ps, ll = sizeof ls;
    struct end peer, us;
    int rc = FAAS_ENOENT;

    memset(out, 0, sizeof *out);
    if (getpeername(fd, (struct sockaddr *)&ps, &pl) != 0 ||
        getsockname(fd, (struct sockaddr *)&ls, &ll) != 0)
        return FAAS_ESYS;
    if (end_of(&ps, &peer) != 0 || end_of(&ls, &us) != 0 || peer.family != us.family)
        return FAAS_ESYS;
    end_text(&peer, out->addr, sizeof out->addr);
    if (!no_netlink)
        rc = by_netlink(&peer, &us, out);
    /* ENOENT from sock_diag is also what a kernel without its TCP handler
     * says: /proc/net tells the two apart. */
    if (rc != 0)
        rc = by_proc(&peer, &us, out);
    return rc;
}

/* ==== its holders ====================================================== */

struct tree {
    pid_t pids[FAAS_PEER_TREE_MAX];
    size_t n;
};

static void tree_add(struct tree *t, pid_t p)
{
    size_t i;
    if (p <= 0 || t->n == FAAS_PEER_TREE_MAX)
        return;
    for (i = 0; i < t->n; i++)
        if (t->pids[i] == p)
            return;
    t->pids[t->n++] = p;
}

/* The bytes of a small /proc file, NUL-terminated; -1 when unreadable. */
static ssize_t read_small(const char *path, char *buf, size_t size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    size_t len = 0;
    ssize_t n;

    if (fd < 0)
        return -1;
    while (len < size - 1 && (n = read(fd, buf + len, size - 1 - len)) != 0) {
        if (n < 0) {
            if (errno == EINTR)
                continue;
            close(fd);
            return -1;
        }
        len += (size_t)n;
    }
    close(fd);
    buf[len] = '\0';
    return (ssize_t)len;
}

/* The children of every thread of p; those of session `sid` only, when
 * sid > 0. */
static void add_children(struct tree *t, pid_t p, pid_t sid)
{
    char path[64], buf[8192], *s, *e;
    struct dirent *d;
    DIR *dir;

    snprintf(path, sizeof path, "/proc/%d/task", (int)p);
    if (!(dir = opendir(path)))
        return;
    while ((d = readdir(dir)) != NULL && t->n < FAAS_PEER_TREE_MAX) {
        if (d->d_name[0] < '0' || d->d_name[0] > '9')
            continue;
        snprintf(path, sizeof path, "/proc/%d/task/%.16s/children", (int)p, d->d_name);
        if (read_small(path, buf, sizeof buf) < 0)
            continue;
        for (s = buf;; s = e) {
            long c = strtol(s, &e, 10);
            if (e == s)
                break;
            if (sid <= 0)
                tree_add(t, (pid_t)c);
            else if (c != sid) {
                /* "pid (comm) state ppid pgrp session ...": comm may hold
                 * spaces and parentheses, so the fields follow its last
                 * ')'. */
                char stat[512], *rp;
                int ppid, pgrp, session;
                snprintf(path, sizeof path, "/proc/%ld/stat", c);
                if (read_small(path, stat, sizeof stat) > 0 && (rp = strrchr(stat, ')')) &&
                    sscanf(rp + 1, " %*c %d %d %d", &ppid, &pgrp, &session) == 3 &&
                    session == sid)
                    tree_add(t, (pid_t)c);
            }
        }
    }
    closedir(dir);
}

/* 1: p holds the socket named `link`; 0: it does not, or is gone;
 * -1: its descriptors could not be read, or *budget (descriptors left to
 * look at in this check) ran out before they all were. */
static int holds(pid_t p, const char *link, size_t len, size_t *budget)
{
    char path[64], buf[64];
    struct dirent *d;
    DIR *dir;
    int found = 0;

    snprintf(path, sizeof path, "/proc/%d/fd", (int)p);
    if (!(dir = opendir(path)))
        return errno == ENOENT || errno == ESRCH ? 0 : -1;
    while (!found && (d = readdir(dir)) != NULL) {
        ssize_t n;
        if (d->d_name[0] == '.')
            continue;
        if (*budget == 0) {
            closedir(dir);
            return -1;
        }
        (*budget)--;
        n = readlinkat(dirfd(dir), d->d_name, buf, sizeof buf);
        found = n == (ssize_t)len && memcmp(buf, link, len) == 0;
    }
    closedir(dir);
    return found;
}

/* Looks at t's processes from *next on, adding each one's children. */
static int walk(struct tree *t, size_t *next, const char *link, size_t len, size_t *budget,
                int *unknown)
{
    for (; *next < t->n; (*next)++) {
        int r;
        if (*budget == 0) {
            *unknown = 1; /* the rest is not looked at */
            return 0;
        }
        r = holds(t->pids[*next], link, len, budget);
        if (r == 1)
            return 1;
        if (r < 0)
            *unknown = 1;
        add_children(t, t->pids[*next], 0);
    }
    return 0;
}

int faas_peer_held(uint64_t inode, pid_t pid, pid_t reaper)
{
    struct tree t;
    char link[48], path[64];
    size_t len, next = 0, budget = FAAS_PEER_FD_MAX;
    int unknown = 0;

    if (pid <= 0 || inode == 0)
        return 0;
    snprintf(path, sizeof path, "/proc/%d", (int)pid);
    if (access(path, F_OK) != 0)
        return access("/proc/self/fd", F_OK) == 0 ? 0 : FAAS_ESYS;
    len = (size_t)snprintf(link, sizeof link, "socket:[%llu]", (unsigned long long)inode);
    t.n = 0;
    tree_add(&t, pid);
    if (walk(&t, &next, link, len, &budget, &unknown))
        return 1;
    if (reaper > 0) {
        /* What the instance's processes left behind and the reaper
         * adopted: still the instance's while it stays in its session
         * (whose id is the instance's pid). */
        add_children(&t, reaper, pid);
        if (walk(&t, &next, link, len, &budget, &unknown))
            return 1;
    }
    return unknown ? FAAS_ESYS : 0;
}
