/*
 * peer.h - who holds the other end of a TCP connection accepted on this
 * host: the Runtime API endpoints (runtime_api.c) serve only the process
 * tree of their instance.
 *
 * Two steps, each a plain question to the kernel:
 *   1. the peer's socket: the connection's 4-tuple -> the inode and owner
 *      of the socket at the other end, from sock_diag (NETLINK_SOCK_DIAG,
 *      one exact request, one answer) or, where that is unavailable,
 *      /proc/net/tcp and /proc/net/tcp6;
 *   2. its holders: does a process of the instance's tree have that
 *      socket open (/proc/PID/fd/N reads "socket:[INODE]")?
 * Nothing is cached: the caller asks once per connection and keeps the
 * verdict with the connection.
 */
#ifndef FAAS_PEER_H
#define FAAS_PEER_H

#include <stdint.h>
#include <sys/types.h>

/* Processes of one instance's tree looked at, at most. */
#define FAAS_PEER_TREE_MAX 512
/* Descriptors looked at in one check, at most, over all those processes:
 * a runtime with a huge descriptor table cannot stall the loop. */
#define FAAS_PEER_FD_MAX 4096

/* The socket at the other end of fd's TCP connection. */
struct faas_peer_sock {
    uint64_t inode;   /* 0: closed already (no process holds it) */
    uint32_t uid;     /* its owner */
    char addr[64];    /* the peer's address and port, for log lines */
};

/*
 * Finds the socket at the other end of fd's connection. Looks through
 * sock_diag unless `no_netlink` (tests use it to reach the fallback).
 * Returns 0, FAAS_ENOENT when no socket of this host (network namespace)
 * is that end (a remote peer), or FAAS_ESYS when neither sock_diag nor
 * /proc/net could tell.
 */
int faas_peer_socket(int fd, int no_netlink, struct faas_peer_sock *out);

/*
 * 1 when process `pid`, one of its descendants, or (with `reaper` > 0) a
 * child of `reaper` in the session whose id is pid (pid leads a session of
 * its own, see worker.c) or one of that child's descendants holds socket
 * `inode`; 0 when none of them does (or pid is gone); FAAS_ESYS when /proc
 * could not tell (not mounted, a process's descriptors unreadable, or more
 * than FAAS_PEER_FD_MAX descriptors to look at). Looks at
 * FAAS_PEER_TREE_MAX processes at most.
 */
int faas_peer_held(uint64_t inode, pid_t pid, pid_t reaper);

#endif /* FAAS_PEER_H */
