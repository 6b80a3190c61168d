/*
 * hash.c - the intrusive hash table of lib/ (declared in hash.h).
 *
 * Owns the buckets and the grow step; the records belong to the tables'
 * owners: the registry of functions (runtime.c), a batcher's keys
 * (batch.c), a watch's directories and files (watch.c).
 *
 * Invariants: nbuckets is a power of two, so a bucket is hash & (nbuckets
 * - 1); every record in the table sits in the bucket of its stored hash,
 * with *pprev == itself; count is the number of records. The buckets
 * double (faas_htable_reserve) when count reaches nbuckets, so chains stay
 * short from ten records to millions; they never shrink.
 *
 * Loop thread, as the tables that use it. Calls alloc.c only.
 */
#include <stdlib.h>

#include "faas_int.h"

uint32_t faas_hash_str(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 16777619u;
    }
    return h;
}

int faas_htable_init(struct faas_htable *t, size_t nbuckets)
{
    size_t n = 1;
    while (n < nbuckets)
        n *= 2;
    t->buckets = faas_calloc(n, sizeof *t->buckets);
    t->nbuckets = t->buckets ? n : 0;
    t->count = 0;
    return t->buckets ? 0 : FAAS_ENOMEM;
}

void faas_htable_fini(struct faas_htable *t)
{
    free(t->buckets);
    t->buckets = NULL;
    t->nbuckets = 0;
    t->count = 0;
}

static void link_head(struct faas_hnode **head, struct faas_hnode *n)
{
    n->next = *head;
    if (n->next)
        n->next->pprev = &n->next;
    n->pprev = head;
    *head = n;
}

int faas_htable_reserve(struct faas_htable *t)
{
    size_t n = t->nbuckets * 2, i;
    struct faas_hnode **b;

    if (t->count < t->nbuckets)
        return 0;
    if (n == 0 || !(b = faas_calloc(n, sizeof *b)))
        return FAAS_ENOMEM;
    for (i = 0; i < t->nbuckets; i++) {
        struct faas_hnode *e = t->buckets[i], *next;
        for (; e; e = next) {
            next = e->next;
            link_head(&b[e->hash & (n - 1)], e);
        }
    }
    free(t->buckets);
    t->buckets = b;
    t->nbuckets = n;
    return 0;
}

void faas_htable_insert(struct faas_htable *t, struct faas_hnode *n, uint32_t hash)
{
    n->hash = hash;
    link_head(&t->buckets[hash & (t->nbuckets - 1)], n);
    t->count++;
}

void faas_htable_remove(struct faas_htable *t, struct faas_hnode *n)
{
    if (!n->pprev)
        return;
    *n->pprev = n->next;
    if (n->next)
        n->next->pprev = n->pprev;
    n->next = NULL;
    n->pprev = NULL;
    t->count--;
}

static struct faas_hnode *first_from(const struct faas_htable *t, size_t i)
{
    for (; i < t->nbuckets; i++)
        if (t->buckets[i])
            return t->buckets[i];
    return NULL;
}

struct faas_hnode *faas_htable_first(const struct faas_htable *t)
{
    return first_from(t, 0);
}

struct faas_hnode *faas_htable_next(const struct faas_htable *t, const struct faas_hnode *n)
{
    if (n->next)
        return n->next;
    return first_from(t, (n->hash & (t->nbuckets - 1)) + 1);
}
