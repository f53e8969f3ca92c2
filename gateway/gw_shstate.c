/*
 * The shared state segment: a header with the lock, then the node slots,
 * then the breaker slots, each breaker slot a header followed by room for
 * a breaker of GW_SH_BUCKETS buckets. Slots are found by a linear scan:
 * lookups happen when a worker builds or changes a node list, never per
 * request, and a scan of a few thousand slots costs microseconds.
 */
#include "gw_shstate.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "gw_breaker.h"

#define SH_MAGIC 0x67777368u /* "gwsh" */

typedef struct {
    _Atomic uint32_t used;
    char key[GW_SH_KEY_MAX];
    uint64_t conf_hash;
    _Atomic uint64_t seen_ms;
    _Alignas(16) unsigned char mem[];
} shbrk_t;

typedef struct {
    uint32_t magic;
    pthread_mutex_t mu;
    size_t nnodes, nbreakers;
    size_t brk_stride;
} shead_t;

struct gw_shstate_s {
    shead_t *head;
    gw_shnode_t *nodes;
    char *breakers;
    size_t size;
};

static int
mutex_init(pthread_mutex_t *mu)
{
    pthread_mutexattr_t a;
    if (pthread_mutexattr_init(&a) != 0)
        return -1;
    int rc = pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
    if (rc == 0)
        rc = pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
    if (rc == 0)
        rc = pthread_mutex_init(mu, &a);
    pthread_mutexattr_destroy(&a);
    return rc == 0 ? 0 : -1;
}

static void
lock(gw_shstate_t *sh)
{
    /* a worker died holding it: every update under it is a few stores that
     * leave a slot usable whichever of them happened */
    if (pthread_mutex_lock(&sh->head->mu) == EOWNERDEAD)
        pthread_mutex_consistent(&sh->head->mu);
}

static void
unlock(gw_shstate_t *sh)
{
    pthread_mutex_unlock(&sh->head->mu);
}

static shbrk_t *
brk_at(gw_shstate_t *sh, size_t i)
{
    return (shbrk_t *)(sh->breakers + i * sh->head->brk_stride);
}

uint64_t
gw_shstate_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

gw_shstate_t *
gw_shstate_new(size_t nodes, size_t breakers)
{
    nodes = nodes ? nodes : GW_SH_NODES;
    breakers = breakers ? breakers : GW_SH_BREAKERS;
    size_t stride = sizeof(shbrk_t) + gw_breaker_size(GW_SH_BUCKETS);
    stride = (stride + 63) & ~(size_t)63;
    size_t head = (sizeof(shead_t) + 63) & ~(size_t)63;
    size_t nsize = (nodes * sizeof(gw_shnode_t) + 63) & ~(size_t)63;
    gw_shstate_t *sh = calloc(1, sizeof(*sh));
    if (sh == NULL)
        return NULL;
    sh->size = head + nsize + breakers * stride;
    /* pages are touched only as slots are claimed: the unused tail of a
     * generous table costs address space, not memory */
    void *p = mmap(NULL, sh->size, PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) {
        free(sh);
        return NULL;
    }
    sh->head = p;
    sh->nodes = (gw_shnode_t *)((char *)p + head);
    sh->breakers = (char *)p + head + nsize;
    sh->head->magic = SH_MAGIC;
    sh->head->nnodes = nodes;
    sh->head->nbreakers = breakers;
    sh->head->brk_stride = stride;
    if (mutex_init(&sh->head->mu) != 0) {
        munmap(p, sh->size);
        free(sh);
        return NULL;
    }
    return sh;
}

void
gw_shstate_free(gw_shstate_t *sh)
{
    if (sh == NULL)
        return;
    munmap(sh->head, sh->size);
    free(sh);
}

static int
stale(_Atomic uint64_t *seen, uint64_t now)
{
    uint64_t s = atomic_load_explicit(seen, memory_order_relaxed);
    return now > s && now - s >= GW_SH_STALE_MS;
}

static void
node_reset(gw_shnode_t *n, const char *upstream, const char *addr, uint64_t now)
{
    snprintf(n->upstream, sizeof(n->upstream), "%s", upstream);
    snprintf(n->addr, sizeof(n->addr), "%s", addr);
    atomic_store(&n->seen_ms, now);
    atomic_store(&n->healthy, 1);
    atomic_store(&n->inflight, 0);
    atomic_store(&n->ewma_bits, 0);
    atomic_store(&n->ewma_stamp, 0);
    atomic_store(&n->ejections, 0);
    atomic_store(&n->changed_ms, now);
    n->lease_pid = 0;
    n->lease_until = 0;
    n->nfails = n->head = 0;
    n->readmit_at = 0;
    atomic_store_explicit(&n->used, 1, memory_order_release);
}

gw_shnode_t *
gw_shstate_node(gw_shstate_t *sh, const char *upstream, const char *addr)
{
    if (sh == NULL || upstream == NULL || addr == NULL || strlen(upstream) >= GW_SH_NAME_MAX ||
        strlen(addr) >= GW_SH_ADDR_MAX)
        return NULL;
    uint64_t now = gw_shstate_now_ms();
    gw_shnode_t *found = NULL, *free_slot = NULL, *old = NULL;
    lock(sh);
    for (size_t i = 0; i < sh->head->nnodes && found == NULL; i++) {
        gw_shnode_t *n = &sh->nodes[i];
        if (!atomic_load_explicit(&n->used, memory_order_relaxed)) {
            if (free_slot == NULL)
                free_slot = n;
            /* slots are claimed in order: past the first free one, the
             * rest was never used */
            break;
        }
        if (strcmp(n->upstream, upstream) == 0 && strcmp(n->addr, addr) == 0)
            found = n;
        else if (old == NULL && stale(&n->seen_ms, now))
            old = n;
    }
    if (found == NULL && (free_slot || old)) {
        found = free_slot ? free_slot : old;
        node_reset(found, upstream, addr, now);
    } else if (found) {
        atomic_store_explicit(&found->seen_ms, now, memory_order_relaxed);
    }
    unlock(sh);
    return found;
}

void
gw_shstate_touch_node(gw_shnode_t *n)
{
    if (n)
        atomic_store_explicit(&n->seen_ms, gw_shstate_now_ms(), memory_order_relaxed);
}

void
gw_shnode_inflight_add(gw_shnode_t *n, int delta)
{
    if (n == NULL)
        return;
    if (delta > 0) {
        atomic_fetch_add_explicit(&n->inflight, delta, memory_order_relaxed);
        return;
    }
    /* never below zero: a worker that died with requests out left its
     * share behind, which the next releases must not turn negative */
    int64_t v = atomic_load_explicit(&n->inflight, memory_order_relaxed);
    for (;;) {
        int64_t next = v + delta > 0 ? v + delta : 0;
        if (v <= 0 || atomic_compare_exchange_weak_explicit(
                          &n->inflight, &v, next, memory_order_relaxed, memory_order_relaxed))
            break;
    }
}

static double
bits_to_double(uint64_t b)
{
    double d;
    memcpy(&d, &b, sizeof(d));
    return d;
}

static uint64_t
double_to_bits(double d)
{
    uint64_t b;
    memcpy(&b, &d, sizeof(b));
    return b;
}

void
gw_shnode_ewma(gw_shnode_t *n, uint64_t now_ms, double ewma_us)
{
    if (n == NULL)
        return;
    /* a shown value: the figure of the worker that heard from the node
     * last (every worker's average follows the same node); publishing it
     * costs a store where a second average would cost an exp() per answer */
    atomic_store_explicit(&n->ewma_bits, double_to_bits(ewma_us), memory_order_relaxed);
    atomic_store_explicit(&n->ewma_stamp, now_ms, memory_order_relaxed);
}

double
gw_shnode_ewma_ms(const gw_shnode_t *n)
{
    if (n == NULL)
        return 0;
    return bits_to_double(atomic_load_explicit(&n->ewma_bits, memory_order_relaxed)) / 1000.0;
}

static void
set_locked(gw_shnode_t *n, int healthy, uint64_t readmit_at, uint64_t now)
{
    atomic_store_explicit(&n->healthy, healthy, memory_order_relaxed);
    atomic_store_explicit(&n->changed_ms, now, memory_order_relaxed);
    if (!healthy)
        atomic_fetch_add_explicit(&n->ejections, 1, memory_order_relaxed);
    n->nfails = n->head = 0;
    n->readmit_at = healthy ? 0 : readmit_at;
}

int
gw_shnode_set_health(gw_shstate_t *sh, gw_shnode_t *n, int healthy, uint64_t readmit_at)
{
    int changed = 0;
    healthy = healthy != 0;
    lock(sh);
    if (atomic_load_explicit(&n->healthy, memory_order_relaxed) != healthy) {
        set_locked(n, healthy, readmit_at, gw_shstate_now_ms());
        changed = 1;
    }
    unlock(sh);
    return changed;
}

int
gw_shnode_passive_fail(gw_shstate_t *sh, gw_shnode_t *n, uint64_t now, unsigned ring,
                       uint64_t window_ms, uint64_t readmit_at)
{
    int ejected = 0;
    ring = ring < 1 ? 1 : ring > GW_SH_RING ? GW_SH_RING : ring;
    lock(sh);
    if (atomic_load_explicit(&n->healthy, memory_order_relaxed)) {
        n->fails[n->head] = now;
        n->head = (n->head + 1) % ring;
        if (n->nfails < ring)
            n->nfails++;
        /* the ring is full: head is the oldest of the last RING failures */
        if (n->nfails >= ring && now - n->fails[n->head] < window_ms) {
            set_locked(n, 0, readmit_at, now);
            ejected = 1;
        }
    }
    unlock(sh);
    return ejected;
}

int
gw_shnode_readmit_due(gw_shstate_t *sh, gw_shnode_t *n, uint64_t now)
{
    int done = 0;
    lock(sh);
    if (!atomic_load_explicit(&n->healthy, memory_order_relaxed) && n->readmit_at &&
        n->readmit_at <= now) {
        set_locked(n, 1, 0, now);
        done = 1;
    }
    unlock(sh);
    return done;
}

int
gw_shnode_lease(gw_shstate_t *sh, gw_shnode_t *n, int pid, uint64_t now, uint64_t ttl_ms)
{
    int mine = 0;
    lock(sh);
    if (n->lease_pid == pid || n->lease_pid == 0 || n->lease_until <= now) {
        n->lease_pid = pid;
        n->lease_until = now + ttl_ms;
        mine = 1;
    }
    unlock(sh);
    return mine;
}

void
gw_shnode_lease_release(gw_shstate_t *sh, gw_shnode_t *n, int pid)
{
    lock(sh);
    if (n->lease_pid == pid) {
        n->lease_pid = 0;
        n->lease_until = 0;
    }
    unlock(sh);
}

static uint64_t
breaker_hash(const gw_breaker_conf_t *c)
{
    uint64_t h = 14695981039346656037ULL;
    uint64_t v[4] = {c->window_ms, (uint64_t)c->buckets, double_to_bits(c->k),
                     (uint64_t)c->protection};
    const unsigned char *p = (const unsigned char *)v;
    for (size_t i = 0; i < sizeof(v); i++)
        h = (h ^ p[i]) * 1099511628211ULL;
    return h;
}

static gw_breaker_t *
claim_breaker(shbrk_t *b, const char *key, uint64_t hash, const gw_breaker_conf_t *conf,
              uint64_t now)
{
    gw_breaker_t *br = gw_breaker_init_shared(b->mem, conf);
    if (br == NULL)
        return NULL;
    snprintf(b->key, sizeof(b->key), "%s", key);
    b->conf_hash = hash;
    atomic_store(&b->seen_ms, now);
    atomic_store_explicit(&b->used, 1, memory_order_release);
    return br;
}

gw_breaker_t *
gw_shstate_breaker(gw_shstate_t *sh, const char *key, const gw_breaker_conf_t *conf, int *shared)
{
    gw_breaker_t *br = NULL;
    *shared = 0;
    if (sh != NULL && key != NULL && strlen(key) < GW_SH_KEY_MAX && conf->buckets >= 1 &&
        conf->buckets <= GW_SH_BUCKETS && gw_breaker_conf_check(conf) == NULL) {
        uint64_t now = gw_shstate_now_ms(), hash = breaker_hash(conf);
        shbrk_t *found = NULL, *free_slot = NULL, *old = NULL;
        lock(sh);
        for (size_t i = 0; i < sh->head->nbreakers && found == NULL; i++) {
            shbrk_t *b = brk_at(sh, i);
            if (!atomic_load_explicit(&b->used, memory_order_relaxed)) {
                free_slot = b;
                break;
            }
            if (b->conf_hash == hash && strcmp(b->key, key) == 0)
                found = b;
            else if (old == NULL && stale(&b->seen_ms, now))
                old = b;
        }
        if (found) {
            atomic_store_explicit(&found->seen_ms, now, memory_order_relaxed);
            br = (gw_breaker_t *)found->mem;
        } else if (free_slot || old) {
            br = claim_breaker(free_slot ? free_slot : old, key, hash, conf, now);
        }
        unlock(sh);
    }
    if (br != NULL) {
        *shared = 1;
        return br;
    }
    return gw_breaker_new(conf);
}

void
gw_shstate_touch_breaker(gw_breaker_t *br)
{
    if (!gw_breaker_is_shared(br))
        return;
    shbrk_t *b = (shbrk_t *)((char *)br - offsetof(shbrk_t, mem));
    atomic_store_explicit(&b->seen_ms, gw_shstate_now_ms(), memory_order_relaxed);
}

void
gw_shstate_usage(gw_shstate_t *sh, size_t *nodes_used, size_t *nodes_cap, size_t *breakers_used,
                 size_t *breakers_cap)
{
    size_t nu = 0, bu = 0;
    if (sh == NULL) {
        *nodes_used = *nodes_cap = *breakers_used = *breakers_cap = 0;
        return;
    }
    uint64_t now = gw_shstate_now_ms();
    for (size_t i = 0; i < sh->head->nnodes; i++) {
        gw_shnode_t *n = &sh->nodes[i];
        if (!atomic_load_explicit(&n->used, memory_order_relaxed))
            break;
        nu += !stale(&n->seen_ms, now);
    }
    for (size_t i = 0; i < sh->head->nbreakers; i++) {
        shbrk_t *b = brk_at(sh, i);
        if (!atomic_load_explicit(&b->used, memory_order_relaxed))
            break;
        bu += !stale(&b->seen_ms, now);
    }
    *nodes_used = nu;
    *nodes_cap = sh->head->nnodes;
    *breakers_used = bu;
    *breakers_cap = sh->head->nbreakers;
}
