/*
 * hash.h - one intrusive hash table for the tables of lib/ (hash.c): the
 * function registry (runtime.c), a batcher's keys (batch.c), a watch's
 * directories and files (watch.c).
 *
 * A record embeds a struct faas_hnode and is found again with
 * FAAS_CONTAINER_OF. The table never allocates records, never frees them
 * and never compares keys itself: the caller gives the key's hash
 * (faas_hash_str for strings) and an equality callback. Chains are
 * doubly linked through `pprev`, so a record leaves in O(1) without a walk.
 *
 * Included through faas_int.h; the invariants are hash.c's.
 */
#ifndef FAAS_HASH_H
#define FAAS_HASH_H

#include <stddef.h>
#include <stdint.h>

struct faas_hnode {
    struct faas_hnode *next;
    struct faas_hnode **pprev; /* the pointer that points at this node;
                                  NULL while the node is in no table */
    uint32_t hash;
};

struct faas_htable {
    struct faas_hnode **buckets;
    size_t nbuckets;           /* a power of two */
    size_t count;
};

/* 32-bit FNV-1a of a NUL-terminated string. */
uint32_t faas_hash_str(const char *s);

/* An empty table of nbuckets (rounded up to a power of two, at least 1).
 * 0 or FAAS_ENOMEM. */
int faas_htable_init(struct faas_htable *t, size_t nbuckets);
/* Frees the buckets; the records are the caller's (take them out first, or
 * walk them with faas_htable_first/next and free them). */
void faas_htable_fini(struct faas_htable *t);
/* Makes room for one more record: the buckets double when the table holds
 * as many records as buckets. Call before allocating the record, so that
 * faas_htable_insert cannot fail. 0 or FAAS_ENOMEM (the table unchanged). */
int faas_htable_reserve(struct faas_htable *t);
/* Adds n (in no table) under hash. Never fails; without a reserve first,
 * only the chains grow longer. */
void faas_htable_insert(struct faas_htable *t, struct faas_hnode *n, uint32_t hash);
/* Takes n out of t (no-op when n is in no table). */
void faas_htable_remove(struct faas_htable *t, struct faas_hnode *n);
/* The first record in bucket order, or NULL. */
struct faas_hnode *faas_htable_first(const struct faas_htable *t);
/* The record after n (which is in t), or NULL. To remove records while
 * walking, fetch the next one before removing the current one. */
struct faas_hnode *faas_htable_next(const struct faas_htable *t, const struct faas_hnode *n);

/* The first record under hash for which eq(node, key) is true, or NULL.
 * Inline so the comparison of a hot lookup (the registry's) is inlined. */
static inline struct faas_hnode *faas_htable_find(const struct faas_htable *t, uint32_t hash,
                                                  int (*eq)(const struct faas_hnode *,
                                                            const void *),
                                                  const void *key)
{
    struct faas_hnode *n = t->buckets[hash & (t->nbuckets - 1)];
    for (; n; n = n->next)
        if (n->hash == hash && eq(n, key))
            return n;
    return NULL;
}

#endif /* FAAS_HASH_H */
