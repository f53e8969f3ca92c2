/*
 * Read buffers for both sides of the proxy, from one free list per worker:
 * connections hold a buffer only while they have unparsed bytes or a
 * request in flight. Here rather than in gw_worker.h so that the upstream
 * side can take buffers without the worker.
 */
#ifndef GW_RBUF_H
#define GW_RBUF_H

#include <stdlib.h>

typedef struct gw_rbuf_s {
    struct gw_rbuf_s *next;
    size_t cap;
    char data[];
} gw_rbuf_t;

typedef struct {
    gw_rbuf_t *free;
    size_t size; /* of every buffer's data */
    unsigned nfree;
} gw_rbuf_pool_t;

static inline gw_rbuf_t *
gw_rbuf_get(gw_rbuf_pool_t *p)
{
    gw_rbuf_t *b = p->free;
    if (b) {
        p->free = b->next;
        p->nfree--;
        return b;
    }
    b = malloc(sizeof(*b) + p->size);
    if (b == NULL)
        abort();
    b->cap = p->size;
    return b;
}

static inline void
gw_rbuf_put(gw_rbuf_pool_t *p, gw_rbuf_t *b)
{
    /* keep a bounded reserve; idle memory goes back to the allocator */
    if (p->nfree >= 256) {
        free(b);
        return;
    }
    b->next = p->free;
    p->free = b;
    p->nfree++;
}

static inline void
gw_rbuf_pool_close(gw_rbuf_pool_t *p)
{
    while (p->free) {
        gw_rbuf_t *b = p->free;
        p->free = b->next;
        free(b);
    }
    p->nfree = 0;
}

#endif
