/*
 * Prometheus metrics in one anonymous shared mapping. Layout per slot:
 *
 *   slot_head_t | route_stats_t[nroutes + 1] | ups_stats_t[nupstreams]
 *               | node_stats_t[sum of (nnodes + 1) over upstreams]
 *
 * The extra route is "no route"; the extra node of each upstream collects
 * nodes that are not in the static list. Slots are padded to a cache line
 * so that two workers never write the same line.
 */
#include "gw_metrics.h"
#include "gw_config.h"

#include <math.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#ifndef GW_VERSION
#define GW_VERSION "0.1.0"
#endif

#define NCODES 16
#define NBOUNDS_PADDED 16 /* the bounds and +Inf up to a power of two */
_Static_assert(GW_METRICS_NBUCKETS <= NBOUNDS_PADDED, "the bucket search covers 16 bounds");
#define CACHE_LINE 64

typedef _Atomic uint64_t counter_t;

/* Distinct status codes seen, open addressing keyed by code; 0 = empty. */
typedef struct {
    _Atomic uint32_t code[NCODES];
    counter_t n[NCODES];
    counter_t other;
} codes_t;

typedef struct {
    counter_t bucket[GW_METRICS_NBUCKETS + 1]; /* not cumulative; last is +Inf */
    counter_t sum_bits;                        /* a double, stored as its bits */
} hist_t;

typedef struct {
    codes_t codes;
    hist_t hist;
    counter_t limiter_rejects[GW_METRICS_NLIMITERS];
    counter_t limiter_fallbacks[GW_METRICS_NLIMITERS];
} route_stats_t;

typedef struct {
    hist_t hist;
    counter_t breaker_drops;
    counter_t reused_conn_retries;
    _Atomic int64_t healthy, unhealthy;
    _Atomic uint32_t nodes_set;
} ups_stats_t;

typedef struct {
    codes_t codes;
} node_stats_t;

/* redis.type: sentinel. The master's address is a string written by the
 * slot's one writer: a sequence number, odd while it writes, lets readers
 * of other processes skip a torn copy. */
typedef struct {
    counter_t switches;
    counter_t resolve_errors;
    _Atomic uint32_t seq;
    char master[72]; /* "" while there is none */
} sentinel_stats_t;

typedef struct {
    _Atomic int64_t conns[GW_CONN_NSTATES];
    _Atomic uint32_t running;
    _Atomic int64_t redis_up;
    counter_t redis_changes[2]; /* to down, to up */
    counter_t redis_results[GW_METRICS_REDIS_NRESULTS];
    hist_t redis_hist;
    counter_t tls_handshakes[GW_METRICS_TLS_NKINDS];
    _Atomic int64_t lua_bytes;
    _Atomic int64_t loop_naps; /* since the worker started */
    sentinel_stats_t sentinel;
} slot_head_t;

typedef struct {
    char *name; /* label value, already escaped */
    size_t nnodes;
    size_t node_base; /* index of its first node_stats_t in a slot */
    char **nodes;     /* escaped addresses */
} ups_layout_t;

/* A registry as the discovery process last saw it (one writer: that
 * process). */
typedef struct {
    _Atomic int64_t up; /* 1 up, 0 down or not read yet */
    counter_t events;
} reg_stats_t;

/* What only the master writes. */
typedef struct {
    counter_t restarts[GW_METRICS_NRESTARTS];
} master_stats_t;

/* A Redis Cluster as one worker's client sees it (one writer: that worker). */
typedef struct {
    _Atomic uint32_t used; /* addr is written (once, before this) */
    char addr[GW_METRICS_RNODE_ADDR];
    _Atomic int64_t up, master;
    counter_t replies, latency_ns, timeouts, noscript;
} rnode_stats_t;

typedef struct {
    counter_t refreshes[GW_METRICS_NREFRESH];
    counter_t redirects[GW_METRICS_NREDIRECT];
    rnode_stats_t nodes[GW_METRICS_RNODES];
} rcl_stats_t;

static const char *const refresh_names[GW_METRICS_NREFRESH] = {"start",     "moved", "clusterdown",
                                                               "node_down", "retry", "periodic"};
static const char *const redirect_names[GW_METRICS_NREDIRECT] = {"moved", "ask", "tryagain",
                                                                 "clusterdown"};

struct gw_metrics_s {
    int nworkers;
    size_t off_master; /* after the registries */
    size_t off_rcl;    /* nworkers rcl_stats_t when redis.type is cluster, else none */
    int has_rcl;
    size_t nregs;
    char **regs;     /* escaped registry names */
    size_t off_regs; /* after every slot */
    size_t nroutes;  /* without the "no route" row */
    char **routes;   /* escaped names */
    size_t nupstreams;
    ups_layout_t *ups;
    size_t nnode_rows;
    size_t lua_limit; /* gateway.lua_memory */

    size_t ntls;         /* gateway_tls_cert_expiry_seconds rows */
    char **tls_sni;      /* escaped names, "" for an entry without any */
    int64_t *tls_expiry; /* Unix time; 0 when the master could not read it */

    size_t off_routes, off_ups, off_nodes, slot_size;
    unsigned char *shm;
    size_t shm_size;
};

/* Request and upstream latencies. */
static const double bucket_bounds[NBOUNDS_PADDED] = {
    0.001, 0.005, 0.01, 0.025, 0.05,     0.1,      0.25,     0.5,
    1,     2.5,   5,    10,    INFINITY, INFINITY, INFINITY, INFINITY};
static const char *const bucket_labels[GW_METRICS_NBUCKETS] = {
    "0.001", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10"};

/* Redis commands: a limiter call on a LAN takes well under a millisecond,
 * and redis.timeout is typically tens of milliseconds. */
static const double redis_bounds[NBOUNDS_PADDED] = {
    0.0001, 0.00025, 0.0005, 0.001, 0.0025,   0.005,    0.01,     0.025,
    0.05,   0.1,     0.25,   1,     INFINITY, INFINITY, INFINITY, INFINITY};
static const char *const redis_labels[GW_METRICS_NBUCKETS] = {
    "0.0001", "0.00025", "0.0005", "0.001", "0.0025", "0.005",
    "0.01",   "0.025",   "0.05",   "0.1",   "0.25",   "1"};

static const char *const redis_error_kinds[GW_METRICS_REDIS_NRESULTS] = {NULL, "reply", "timeout",
                                                                         "connection"};

static const char *const conn_state_names[GW_CONN_NSTATES] = {"active", "reading", "writing",
                                                              "idle"};

/* The single writer of a slot adds without a locked instruction. */
static inline void
add(counter_t *c, uint64_t d)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + d,
                          memory_order_relaxed);
}

static inline uint64_t
get(counter_t *c)
{
    return atomic_load_explicit(c, memory_order_relaxed);
}

static size_t
align_up(size_t n, size_t a)
{
    return (n + a - 1) / a * a;
}

static char *
escape_label(const char *s)
{
    size_t n = 0;

    if (s == NULL)
        s = "";
    for (const char *p = s; *p; p++)
        n += (*p == '\\' || *p == '"' || *p == '\n') ? 2 : 1;

    char *out = malloc(n + 1), *o = out;
    if (out == NULL)
        return NULL;
    for (const char *p = s; *p; p++) {
        if (*p == '\\' || *p == '"') {
            *o++ = '\\';
            *o++ = *p;
        } else if (*p == '\n') {
            *o++ = '\\';
            *o++ = 'n';
        } else {
            *o++ = *p;
        }
    }
    *o = '\0';
    return out;
}

static unsigned char *
slot_base(const gw_metrics_t *m, int slot)
{
    return m->shm + (size_t)slot * m->slot_size;
}

static slot_head_t *
slot_head(const gw_metrics_t *m, int slot)
{
    return (slot_head_t *)slot_base(m, slot);
}

static route_stats_t *
route_stats(const gw_metrics_t *m, int slot, size_t route)
{
    return (route_stats_t *)(slot_base(m, slot) + m->off_routes) + route;
}

static ups_stats_t *
ups_stats(const gw_metrics_t *m, int slot, size_t u)
{
    return (ups_stats_t *)(slot_base(m, slot) + m->off_ups) + u;
}

static node_stats_t *
node_stats(const gw_metrics_t *m, int slot, size_t row)
{
    return (node_stats_t *)(slot_base(m, slot) + m->off_nodes) + row;
}

static int
slot_ok(const gw_metrics_t *m, int slot)
{
    return m != NULL && slot >= 0 && slot < m->nworkers;
}

void
gw_metrics_free(gw_metrics_t *m)
{
    if (m == NULL)
        return;
    if (m->routes != NULL) {
        for (size_t i = 0; i < m->nroutes; i++)
            free(m->routes[i]);
        free(m->routes);
    }
    if (m->ups != NULL) {
        for (size_t u = 0; u < m->nupstreams; u++) {
            free(m->ups[u].name);
            if (m->ups[u].nodes != NULL) {
                for (size_t n = 0; n < m->ups[u].nnodes; n++)
                    free(m->ups[u].nodes[n]);
                free(m->ups[u].nodes);
            }
        }
        free(m->ups);
    }
    for (size_t r = 0; m->regs && r < m->nregs; r++)
        free(m->regs[r]);
    free(m->regs);
    for (size_t i = 0; m->tls_sni && i < m->ntls; i++)
        free(m->tls_sni[i]);
    free(m->tls_sni);
    free(m->tls_expiry);
    if (m->shm != NULL)
        munmap(m->shm, m->shm_size);
    free(m);
}

/* One row per SNI name of each certificate entry (an entry without names
 * gets sni=""), with the expiry gw_tls_check read. */
static int
tls_layout(gw_metrics_t *m, const gw_conf_t *conf)
{
    size_t n = 0;
    for (size_t i = 0; i < conf->tls.ncerts; i++)
        n += conf->tls.certs[i].nsni ? conf->tls.certs[i].nsni : 1;
    m->tls_sni = calloc(n + 1, sizeof(char *));
    m->tls_expiry = calloc(n + 1, sizeof(int64_t));
    if (m->tls_sni == NULL || m->tls_expiry == NULL)
        return -1;
    for (size_t i = 0; i < conf->tls.ncerts; i++) {
        const gw_tls_cert_conf_t *c = &conf->tls.certs[i];
        for (size_t j = 0; j < (c->nsni ? c->nsni : 1); j++) {
            m->tls_expiry[m->ntls] = c->not_after;
            if ((m->tls_sni[m->ntls++] = escape_label(c->nsni ? c->sni[j] : "")) == NULL)
                return -1;
        }
    }
    return 0;
}

gw_metrics_t *
gw_metrics_new(const gw_conf_t *conf, int nworkers)
{
    gw_metrics_t *m;

    if (conf == NULL || nworkers < 1 || nworkers > 4096)
        return NULL;
    m = calloc(1, sizeof(*m));
    if (m == NULL)
        return NULL;
    m->nworkers = nworkers;
    m->lua_limit = conf->lua_memory;

    m->nroutes = conf->routes != NULL ? conf->nroutes : 0;
    m->routes = calloc(m->nroutes + 1, sizeof(char *));
    if (m->routes == NULL)
        goto failed;
    for (size_t i = 0; i < m->nroutes; i++) {
        m->routes[i] = escape_label(conf->routes[i].name);
        if (m->routes[i] == NULL)
            goto failed;
    }

    m->nupstreams = conf->upstreams != NULL ? conf->nupstreams : 0;
    m->ups = calloc(m->nupstreams + 1, sizeof(ups_layout_t));
    if (m->ups == NULL)
        goto failed;
    for (size_t u = 0; u < m->nupstreams; u++) {
        const gw_upstream_conf_t *uc = &conf->upstreams[u];
        ups_layout_t *ul = &m->ups[u];

        ul->name = escape_label(uc->name);
        ul->nnodes = uc->nodes != NULL ? uc->nnodes : 0;
        ul->nodes = calloc(ul->nnodes + 1, sizeof(char *));
        if (ul->name == NULL || ul->nodes == NULL)
            goto failed;
        for (size_t n = 0; n < ul->nnodes; n++) {
            ul->nodes[n] = escape_label(uc->nodes[n].addr);
            if (ul->nodes[n] == NULL)
                goto failed;
        }
        ul->node_base = m->nnode_rows;
        m->nnode_rows += ul->nnodes + 1;
    }

    m->off_routes = align_up(sizeof(slot_head_t), CACHE_LINE);
    m->off_ups = align_up(m->off_routes + (m->nroutes + 1) * sizeof(route_stats_t), CACHE_LINE);
    m->off_nodes = align_up(m->off_ups + m->nupstreams * sizeof(ups_stats_t), CACHE_LINE);
    m->slot_size = align_up(m->off_nodes + m->nnode_rows * sizeof(node_stats_t), CACHE_LINE);
    m->nregs = conf->nregistries;
    m->regs = calloc(m->nregs + 1, sizeof(char *));
    if (m->regs == NULL)
        goto failed;
    for (size_t r = 0; r < m->nregs; r++)
        if ((m->regs[r] = escape_label(conf->registries[r].name)) == NULL)
            goto failed;
    if (tls_layout(m, conf) != 0)
        goto failed;
    m->off_regs = m->slot_size * (size_t)nworkers;
    m->off_master = m->off_regs + align_up((m->nregs + 1) * sizeof(reg_stats_t), CACHE_LINE);
    m->shm_size = m->off_master + align_up(sizeof(master_stats_t), CACHE_LINE);
    m->has_rcl = conf->has_redis && conf->redis_type == GW_REDIS_CLUSTER;
    m->off_rcl = m->shm_size;
    if (m->has_rcl)
        m->shm_size += align_up(sizeof(rcl_stats_t), CACHE_LINE) * (size_t)nworkers;

    /* Anonymous pages come zeroed, which is the initial value of everything. */
    void *p = mmap(NULL, m->shm_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        goto failed;
    m->shm = p;
    return m;

failed:
    gw_metrics_free(m);
    return NULL;
}

int
gw_metrics_nworkers(const gw_metrics_t *m)
{
    return m != NULL ? m->nworkers : 0;
}

void
gw_metrics_worker_start(gw_metrics_t *m, int slot)
{
    if (!slot_ok(m, slot))
        return;
    atomic_store_explicit(&slot_head(m, slot)->running, 1, memory_order_relaxed);
}

void
gw_metrics_worker_reset(gw_metrics_t *m, int slot)
{
    if (!slot_ok(m, slot))
        return;
    slot_head_t *h = slot_head(m, slot);
    atomic_store_explicit(&h->running, 0, memory_order_relaxed);
    atomic_store_explicit(&h->redis_up, 0, memory_order_relaxed);
    atomic_store_explicit(&h->lua_bytes, 0, memory_order_relaxed);
    atomic_store_explicit(&h->loop_naps, 0, memory_order_relaxed);
    gw_metrics_sentinel_master(m, slot, "", 0);
    gw_metrics_rcluster_reset(m, slot);
    for (int s = 0; s < GW_CONN_NSTATES; s++)
        atomic_store_explicit(&h->conns[s], 0, memory_order_relaxed);
    for (size_t u = 0; u < m->nupstreams; u++) {
        ups_stats_t *us = ups_stats(m, slot, u);
        atomic_store_explicit(&us->nodes_set, 0, memory_order_relaxed);
        atomic_store_explicit(&us->healthy, 0, memory_order_relaxed);
        atomic_store_explicit(&us->unhealthy, 0, memory_order_relaxed);
    }
}

static void
count_code(codes_t *c, int code)
{
    if (code < 1 || code > 999) {
        add(&c->other, 1);
        return;
    }
    unsigned start = (unsigned)code % NCODES;
    for (unsigned i = 0; i < NCODES; i++) {
        unsigned k = (start + i) % NCODES;
        uint32_t have = atomic_load_explicit(&c->code[k], memory_order_relaxed);
        if (have == (uint32_t)code) {
            add(&c->n[k], 1);
            return;
        }
        if (have == 0) {
            /* Count before publishing the code so a reader never sees a
             * code whose row it might then miss. */
            add(&c->n[k], 1);
            atomic_store_explicit(&c->code[k], (uint32_t)code, memory_order_release);
            return;
        }
    }
    add(&c->other, 1);
}

/* The bucket is the number of bounds below the value, found by a binary
 * search of fixed depth over the bounds padded to 16 with +Inf: four
 * compares that compile to conditional moves, whatever the value. */
static void
observe_in(hist_t *h, const double *bounds, double seconds)
{
    size_t b = 0;
    double sum;
    uint64_t bits;

    if (!(seconds >= 0)) /* negative or NaN: a clock step */
        seconds = 0;
    b += seconds > bounds[b + 7] ? 8 : 0;
    b += seconds > bounds[b + 3] ? 4 : 0;
    b += seconds > bounds[b + 1] ? 2 : 0;
    b += seconds > bounds[b] ? 1 : 0;
    add(&h->bucket[b], 1);

    bits = atomic_load_explicit(&h->sum_bits, memory_order_relaxed);
    memcpy(&sum, &bits, sizeof(sum));
    sum += seconds;
    memcpy(&bits, &sum, sizeof(bits));
    atomic_store_explicit(&h->sum_bits, bits, memory_order_relaxed);
}

static void
observe(hist_t *h, double seconds)
{
    observe_in(h, bucket_bounds, seconds);
}

void
gw_metrics_request(gw_metrics_t *m, int slot, int route_index, int status, double seconds)
{
    if (!slot_ok(m, slot))
        return;
    size_t r =
        (route_index >= 0 && (size_t)route_index < m->nroutes) ? (size_t)route_index : m->nroutes;
    route_stats_t *rs = route_stats(m, slot, r);
    count_code(&rs->codes, status);
    observe(&rs->hist, seconds);
}

void
gw_metrics_upstream(gw_metrics_t *m, int slot, int upstream_index, int node_index, int status,
                    double seconds)
{
    if (!slot_ok(m, slot) || upstream_index < 0 || (size_t)upstream_index >= m->nupstreams)
        return;
    const ups_layout_t *ul = &m->ups[upstream_index];
    size_t n =
        (node_index >= 0 && (size_t)node_index < ul->nnodes) ? (size_t)node_index : ul->nnodes;
    /* 0 is the "empty" key of the table, so "no response" is stored as 1. */
    count_code(&node_stats(m, slot, ul->node_base + n)->codes, status == 0 ? 1 : status);
    observe(&ups_stats(m, slot, (size_t)upstream_index)->hist, seconds);
}

void
gw_metrics_conn(gw_metrics_t *m, int slot, int state, int delta)
{
    if (!slot_ok(m, slot) || state < 0 || state >= GW_CONN_NSTATES)
        return;
    _Atomic int64_t *g = &slot_head(m, slot)->conns[state];
    atomic_store_explicit(g, atomic_load_explicit(g, memory_order_relaxed) + delta,
                          memory_order_relaxed);
}

/* The per-upstream counter at byte offset FIELD of the worker's stats. */
static void
ups_counter_add(gw_metrics_t *m, int slot, int upstream_index, size_t field)
{
    if (!slot_ok(m, slot) || upstream_index < 0 || (size_t)upstream_index >= m->nupstreams)
        return;
    add((counter_t *)((char *)ups_stats(m, slot, (size_t)upstream_index) + field), 1);
}

void
gw_metrics_breaker_drop(gw_metrics_t *m, int slot, int upstream_index)
{
    ups_counter_add(m, slot, upstream_index, offsetof(ups_stats_t, breaker_drops));
}

void
gw_metrics_reused_conn_retry(gw_metrics_t *m, int slot, int upstream_index)
{
    ups_counter_add(m, slot, upstream_index, offsetof(ups_stats_t, reused_conn_retries));
}

void
gw_metrics_limiter(gw_metrics_t *m, int slot, int route_index, int which, int rejected,
                   int fallback)
{
    if (!slot_ok(m, slot) || route_index < 0 || (size_t)route_index >= m->nroutes || which < 0 ||
        which >= GW_METRICS_NLIMITERS)
        return;
    route_stats_t *rs = route_stats(m, slot, (size_t)route_index);
    if (rejected)
        add(&rs->limiter_rejects[which], 1);
    if (fallback)
        add(&rs->limiter_fallbacks[which], 1);
}

void
gw_metrics_redis(gw_metrics_t *m, int slot, int up, int changed)
{
    if (!slot_ok(m, slot))
        return;
    slot_head_t *h = slot_head(m, slot);
    atomic_store_explicit(&h->redis_up, up, memory_order_relaxed);
    if (changed)
        add(&h->redis_changes[up ? 1 : 0], 1);
}

/* ---- Redis Cluster ---- */

static rcl_stats_t *
rcl_stats(const gw_metrics_t *m, int slot)
{
    return (rcl_stats_t *)(m->shm + m->off_rcl +
                           align_up(sizeof(rcl_stats_t), CACHE_LINE) * (size_t)slot);
}

void
gw_metrics_rcluster_reset(gw_metrics_t *m, int slot)
{
    if (!slot_ok(m, slot) || !m->has_rcl)
        return;
    rcl_stats_t *rs = rcl_stats(m, slot);
    for (size_t i = 0; i < GW_METRICS_RNODES; i++) {
        atomic_store_explicit(&rs->nodes[i].up, 0, memory_order_relaxed);
        atomic_store_explicit(&rs->nodes[i].master, 0, memory_order_relaxed);
    }
}

void
gw_metrics_rcluster(gw_metrics_t *m, int slot, const uint64_t *refreshes, const uint64_t *redirects)
{
    if (!slot_ok(m, slot) || !m->has_rcl)
        return;
    rcl_stats_t *rs = rcl_stats(m, slot);
    for (size_t i = 0; i < GW_METRICS_NREFRESH; i++)
        add(&rs->refreshes[i], refreshes[i]);
    for (size_t i = 0; i < GW_METRICS_NREDIRECT; i++)
        add(&rs->redirects[i], redirects[i]);
}

void
gw_metrics_rnode(gw_metrics_t *m, int slot, const gw_metrics_rnode_t *n)
{
    if (!slot_ok(m, slot) || !m->has_rcl || n->addr == NULL)
        return;
    rcl_stats_t *rs = rcl_stats(m, slot);
    rnode_stats_t *e = NULL;
    for (size_t i = 0; i < GW_METRICS_RNODES && e == NULL; i++) {
        rnode_stats_t *x = &rs->nodes[i];
        if (!atomic_load_explicit(&x->used, memory_order_relaxed)) {
            /* a new address takes the first free row, for good */
            snprintf(x->addr, sizeof(x->addr), "%s", n->addr);
            atomic_store_explicit(&x->used, 1, memory_order_release);
            e = x;
        } else if (strncmp(x->addr, n->addr, sizeof(x->addr) - 1) == 0) {
            e = x;
        }
    }
    if (e == NULL)
        return; /* more nodes than rows: the first ones are shown */
    atomic_store_explicit(&e->up, n->up, memory_order_relaxed);
    atomic_store_explicit(&e->master, n->master, memory_order_relaxed);
    add(&e->replies, n->replies);
    add(&e->latency_ns, n->latency_ns);
    add(&e->timeouts, n->timeouts);
    add(&e->noscript, n->noscript);
}

void
gw_metrics_redis_call(gw_metrics_t *m, int slot, int result, double seconds)
{
    if (!slot_ok(m, slot) || result < 0 || result >= GW_METRICS_REDIS_NRESULTS)
        return;
    slot_head_t *h = slot_head(m, slot);
    add(&h->redis_results[result], 1);
    observe_in(&h->redis_hist, redis_bounds, seconds);
}

void
gw_metrics_lua_memory(gw_metrics_t *m, int slot, size_t bytes)
{
    if (slot_ok(m, slot))
        atomic_store_explicit(&slot_head(m, slot)->lua_bytes, (int64_t)bytes, memory_order_relaxed);
}

void
gw_metrics_loop_naps(gw_metrics_t *m, int slot, uint64_t naps)
{
    if (slot_ok(m, slot))
        atomic_store_explicit(&slot_head(m, slot)->loop_naps, (int64_t)naps, memory_order_relaxed);
}

void
gw_metrics_sentinel_master(gw_metrics_t *m, int slot, const char *addr, int switched)
{
    if (!slot_ok(m, slot))
        return;
    sentinel_stats_t *st = &slot_head(m, slot)->sentinel;
    if (switched)
        add(&st->switches, 1);
    uint32_t q = atomic_load_explicit(&st->seq, memory_order_relaxed);
    atomic_store_explicit(&st->seq, q + 1, memory_order_release);
    atomic_thread_fence(memory_order_release);
    snprintf(st->master, sizeof(st->master), "%s", addr ? addr : "");
    atomic_store_explicit(&st->seq, q + 2, memory_order_release);
}

void
gw_metrics_sentinel_resolve_error(gw_metrics_t *m, int slot)
{
    if (slot_ok(m, slot))
        add(&slot_head(m, slot)->sentinel.resolve_errors, 1);
}

void
gw_metrics_tls_handshake(gw_metrics_t *m, int slot, int kind)
{
    if (!slot_ok(m, slot) || kind < 0 || kind >= GW_METRICS_TLS_NKINDS)
        return;
    add(&slot_head(m, slot)->tls_handshakes[kind], 1);
}

void
gw_metrics_nodes(gw_metrics_t *m, int slot, int upstream_index, int healthy, int unhealthy)
{
    if (!slot_ok(m, slot) || upstream_index < 0 || (size_t)upstream_index >= m->nupstreams)
        return;
    ups_stats_t *us = ups_stats(m, slot, (size_t)upstream_index);
    atomic_store_explicit(&us->healthy, healthy, memory_order_relaxed);
    atomic_store_explicit(&us->unhealthy, unhealthy, memory_order_relaxed);
    atomic_store_explicit(&us->nodes_set, 1, memory_order_release);
}

/* ---- rendering ---- */

typedef struct {
    char *data;
    size_t len, cap;
    int failed;
} sbuf_t;

static void
sb_reserve(sbuf_t *b, size_t more)
{
    if (b->failed || b->len + more + 1 <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + more + 1)
        cap *= 2;
    char *p = realloc(b->data, cap);
    if (p == NULL) {
        b->failed = 1;
        return;
    }
    b->data = p;
    b->cap = cap;
}

static void __attribute__((format(printf, 2, 3))) sb_printf(sbuf_t *b, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (b->failed)
        return;
    va_start(ap, fmt);
    n = vsnprintf(b->data ? b->data + b->len : NULL, b->data ? b->cap - b->len : 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->failed = 1;
        return;
    }
    if (b->data == NULL || b->len + (size_t)n + 1 > b->cap) {
        sb_reserve(b, (size_t)n);
        if (b->failed)
            return;
        va_start(ap, fmt);
        vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
    }
    b->len += (size_t)n;
}

static void
header(sbuf_t *b, const char *name, const char *type, const char *help)
{
    sb_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

typedef struct {
    uint32_t code;
    uint64_t n;
} code_sum_t;

static int
cmp_code(const void *a, const void *b)
{
    uint32_t x = ((const code_sum_t *)a)->code, y = ((const code_sum_t *)b)->code;
    return x < y ? -1 : x > y;
}

/* Merges the status tables of one row over every slot, sorted by code.
 * out must hold NCODES * nworkers entries. */
static size_t
sum_codes(gw_metrics_t *m, codes_t *(*row)(gw_metrics_t *, int, size_t), size_t idx,
          code_sum_t *out, uint64_t *other)
{
    size_t n = 0;

    *other = 0;
    for (int s = 0; s < m->nworkers; s++) {
        codes_t *c = row(m, s, idx);
        *other += get(&c->other);
        for (int k = 0; k < NCODES; k++) {
            uint32_t code = atomic_load_explicit(&c->code[k], memory_order_acquire);
            if (code == 0)
                continue;
            uint64_t v = get(&c->n[k]);
            size_t j;
            for (j = 0; j < n && out[j].code != code; j++)
                ;
            if (j == n)
                out[n++] = (code_sum_t){code, 0};
            out[j].n += v;
        }
    }
    qsort(out, n, sizeof(*out), cmp_code);
    return n;
}

static codes_t *
route_codes(gw_metrics_t *m, int slot, size_t r)
{
    return &route_stats(m, slot, r)->codes;
}

static codes_t *
node_codes(gw_metrics_t *m, int slot, size_t row)
{
    return &node_stats(m, slot, row)->codes;
}

static hist_t *
route_hist(gw_metrics_t *m, int slot, size_t r)
{
    return &route_stats(m, slot, r)->hist;
}

static hist_t *
ups_hist(gw_metrics_t *m, int slot, size_t u)
{
    return &ups_stats(m, slot, u)->hist;
}

/* LV: the labels before le, each followed by a comma, or "". */
static void
render_buckets(sbuf_t *b, const char *name, const char *lv, const uint64_t *buckets, uint64_t count,
               double sum, const char *const *bounds)
{
    uint64_t cum = 0;
    size_t n = strlen(lv);
    for (int k = 0; k < GW_METRICS_NBUCKETS; k++) {
        cum += buckets[k];
        sb_printf(b, "%s_bucket{%sle=\"%s\"} %llu\n", name, lv, bounds[k], (unsigned long long)cum);
    }
    sb_printf(b, "%s_bucket{%sle=\"+Inf\"} %llu\n", name, lv, (unsigned long long)count);
    /* the labels without their trailing comma, in braces, or none */
    if (n > 0) {
        sb_printf(b, "%s_sum{%.*s} %.15g\n", name, (int)(n - 1), lv, sum);
        sb_printf(b, "%s_count{%.*s} %llu\n", name, (int)(n - 1), lv, (unsigned long long)count);
    } else {
        sb_printf(b, "%s_sum %.15g\n", name, sum);
        sb_printf(b, "%s_count %llu\n", name, (unsigned long long)count);
    }
}

/* Series of a histogram appear with its first observation: a table of
 * thousands of routes would otherwise render thousands of empty rows. */
static void
render_hist_in(sbuf_t *b, gw_metrics_t *m, const char *name, const char *label, const char *value,
               hist_t *(*row)(gw_metrics_t *, int, size_t), size_t idx, const char *const *bounds)
{
    uint64_t buckets[GW_METRICS_NBUCKETS + 1] = {0}, count = 0;
    double sum = 0;

    for (int s = 0; s < m->nworkers; s++) {
        hist_t *h = row(m, s, idx);
        for (int k = 0; k <= GW_METRICS_NBUCKETS; k++)
            buckets[k] += get(&h->bucket[k]);
        uint64_t bits = get(&h->sum_bits);
        double v;
        memcpy(&v, &bits, sizeof(v));
        sum += v;
    }
    for (int k = 0; k <= GW_METRICS_NBUCKETS; k++)
        count += buckets[k];
    if (count == 0)
        return;

    /* route="users", before le; nothing for a histogram without labels */
    sbuf_t lv = {0};
    if (label != NULL)
        sb_printf(&lv, "%s=\"%s\",", label, value);
    if (lv.failed) {
        b->failed = 1;
        return;
    }
    render_buckets(b, name, lv.data != NULL ? lv.data : "", buckets, count, sum, bounds);
    free(lv.data);
}

static void
render_hist(sbuf_t *b, gw_metrics_t *m, const char *name, const char *label, const char *value,
            hist_t *(*row)(gw_metrics_t *, int, size_t), size_t idx)
{
    render_hist_in(b, m, name, label, value, row, idx, bucket_labels);
}

/* One per-upstream counter family (the field at byte offset FIELD), summed
 * over the workers; every upstream has a series. */
static void
render_ups_counter(sbuf_t *b, gw_metrics_t *m, const char *name, const char *help, size_t field)
{
    header(b, name, "counter", help);
    for (size_t u = 0; u < m->nupstreams; u++) {
        uint64_t v = 0;
        for (int s = 0; s < m->nworkers; s++)
            v += get((counter_t *)((char *)ups_stats(m, s, u) + field));
        sb_printf(b, "%s{upstream=\"%s\"} %llu\n", name, m->ups[u].name, (unsigned long long)v);
    }
}

/* One limiter counter family: FALLBACKS picks limiter_fallbacks over
 * limiter_rejects. Series appear with their first count. */
static void
render_limiter(sbuf_t *b, gw_metrics_t *m, const char *name, const char *help, int fallbacks)
{
    static const char *const kinds[GW_METRICS_NLIMITERS] = {"limit-period", "limit-token"};
    header(b, name, "counter", help);
    for (size_t r = 0; r < m->nroutes; r++) {
        for (int k = 0; k < GW_METRICS_NLIMITERS; k++) {
            uint64_t v = 0;
            for (int s = 0; s < m->nworkers; s++) {
                route_stats_t *rs = route_stats(m, s, r);
                v += get(fallbacks ? &rs->limiter_fallbacks[k] : &rs->limiter_rejects[k]);
            }
            if (v)
                sb_printf(b, "%s{route=\"%s\",plugin=\"%s\"} %llu\n", name, m->routes[r], kinds[k],
                          (unsigned long long)v);
        }
    }
}

void
gw_metrics_registry(gw_metrics_t *m, size_t reg, int up, uint64_t events)
{
    if (m == NULL || reg >= m->nregs)
        return;
    reg_stats_t *rs = (reg_stats_t *)(m->shm + m->off_regs) + reg;
    atomic_store_explicit(&rs->up, up > 0, memory_order_relaxed);
    atomic_store_explicit(&rs->events, events, memory_order_relaxed);
}

void
gw_metrics_worker_restart(gw_metrics_t *m, int reason)
{
    if (m == NULL || reason < 0 || reason >= GW_METRICS_NRESTARTS)
        return;
    add(&((master_stats_t *)(m->shm + m->off_master))->restarts[reason], 1);
}

void
gw_metrics_restarts_carry(gw_metrics_t *to, gw_metrics_t *from)
{
    if (to == NULL || from == NULL)
        return;
    master_stats_t *a = (master_stats_t *)(to->shm + to->off_master);
    master_stats_t *b = (master_stats_t *)(from->shm + from->off_master);
    for (int i = 0; i < GW_METRICS_NRESTARTS; i++)
        add(&a->restarts[i], get(&b->restarts[i]));
}

static void
render_restarts(sbuf_t *b, gw_metrics_t *m)
{
    static const char *const reasons[GW_METRICS_NRESTARTS] = {"watchdog", "died"};
    master_stats_t *ms = (master_stats_t *)(m->shm + m->off_master);
    header(b, "gateway_worker_restarts_total", "counter",
           "Workers the master replaced: watchdog (its loop stood still for gateway.watchdog), "
           "died (it exited or was killed).");
    for (int i = 0; i < GW_METRICS_NRESTARTS; i++)
        sb_printf(b, "gateway_worker_restarts_total{reason=\"%s\"} %llu\n", reasons[i],
                  (unsigned long long)get(&ms->restarts[i]));
}

/* The master each running worker follows, one line per address (label
 * values bounded by the workers: normally one), and the counters. Nothing
 * when no worker ever followed a Sentinel master. */
static void
render_sentinel(sbuf_t *b, gw_metrics_t *m)
{
    char addrs[64][72];
    int64_t nw[64];
    size_t na = 0;
    uint64_t sw = 0, re = 0;
    int used = 0;
    for (int s = 0; s < m->nworkers; s++) {
        slot_head_t *h = slot_head(m, s);
        sentinel_stats_t *st = &h->sentinel;
        sw += get(&st->switches);
        re += get(&st->resolve_errors);
        char a[72] = "";
        for (int tries = 0; tries < 100; tries++) {
            uint32_t q = atomic_load_explicit(&st->seq, memory_order_acquire);
            if (q & 1)
                continue;
            memcpy(a, st->master, sizeof(a));
            atomic_thread_fence(memory_order_acquire);
            if (atomic_load_explicit(&st->seq, memory_order_relaxed) == q)
                break;
            a[0] = '\0';
        }
        a[sizeof(a) - 1] = '\0';
        used |= atomic_load_explicit(&st->seq, memory_order_relaxed) != 0;
        if (!atomic_load_explicit(&h->running, memory_order_relaxed) || a[0] == '\0')
            continue;
        size_t i = 0;
        while (i < na && strcmp(addrs[i], a) != 0)
            i++;
        if (i == na && na < 64) {
            memcpy(addrs[na], a, sizeof(a));
            nw[na++] = 0;
        }
        if (i < na)
            nw[i]++;
    }
    if (!used && sw == 0 && re == 0)
        return;
    header(b, "gateway_redis_sentinel_master", "gauge",
           "Workers whose limiters use this master, as Sentinel gave it and ROLE confirmed.");
    for (size_t i = 0; i < na; i++) {
        char *esc = escape_label(addrs[i]);
        if (esc == NULL)
            continue;
        sb_printf(b, "gateway_redis_sentinel_master{addr=\"%s\"} %lld\n", esc, (long long)nw[i]);
        free(esc);
    }
    header(b, "gateway_redis_sentinel_switches_total", "counter",
           "Times a worker moved to a new master (a failover seen through Sentinel).");
    sb_printf(b, "gateway_redis_sentinel_switches_total %llu\n", (unsigned long long)sw);
    header(b, "gateway_redis_sentinel_resolve_errors_total", "counter",
           "Rounds of questions to the Sentinels that found no usable master (none answered, "
           "or the address given was not a master).");
    sb_printf(b, "gateway_redis_sentinel_resolve_errors_total %llu\n", (unsigned long long)re);
}

/* One row per address over every worker's table. */
static void
render_rcluster(sbuf_t *b, gw_metrics_t *m)
{
    if (!m->has_rcl)
        return;
    uint64_t ref[GW_METRICS_NREFRESH] = {0}, red[GW_METRICS_NREDIRECT] = {0};
    for (int s = 0; s < m->nworkers; s++) {
        rcl_stats_t *rs = rcl_stats(m, s);
        for (size_t i = 0; i < GW_METRICS_NREFRESH; i++)
            ref[i] += get(&rs->refreshes[i]);
        for (size_t i = 0; i < GW_METRICS_NREDIRECT; i++)
            red[i] += get(&rs->redirects[i]);
    }
    header(b, "gateway_redis_cluster_refreshes_total", "counter",
           "Slot map refreshes started, by the reason that started them.");
    for (size_t i = 0; i < GW_METRICS_NREFRESH; i++)
        sb_printf(b, "gateway_redis_cluster_refreshes_total{reason=\"%s\"} %llu\n",
                  refresh_names[i], (unsigned long long)ref[i]);
    header(b, "gateway_redis_cluster_redirects_total", "counter",
           "Cluster answers that sent a command elsewhere or back off, by kind.");
    for (size_t i = 0; i < GW_METRICS_NREDIRECT; i++)
        sb_printf(b, "gateway_redis_cluster_redirects_total{kind=\"%s\"} %llu\n", redirect_names[i],
                  (unsigned long long)red[i]);

    /* distinct addresses, in the order workers first met them */
    size_t cap = (size_t)m->nworkers * GW_METRICS_RNODES, n = 0;
    const char **addrs = malloc(cap * sizeof(*addrs));
    struct {
        int64_t up, master, fallback;
        uint64_t replies, latency_ns, timeouts, noscript;
    } *agg = calloc(cap ? cap : 1, sizeof(*agg));
    if (addrs == NULL || agg == NULL) {
        free(addrs);
        free(agg);
        b->failed = 1;
        return;
    }
    for (int s = 0; s < m->nworkers; s++) {
        int running = atomic_load_explicit(&slot_head(m, s)->running, memory_order_relaxed) != 0;
        rcl_stats_t *rs = rcl_stats(m, s);
        for (size_t i = 0; i < GW_METRICS_RNODES; i++) {
            rnode_stats_t *x = &rs->nodes[i];
            if (!atomic_load_explicit(&x->used, memory_order_acquire))
                break;
            size_t k = 0;
            while (k < n && strncmp(addrs[k], x->addr, sizeof(x->addr)) != 0)
                k++;
            if (k == n)
                addrs[n++] = x->addr;
            int64_t up = atomic_load_explicit(&x->up, memory_order_relaxed);
            int64_t master = atomic_load_explicit(&x->master, memory_order_relaxed);
            if (running) {
                agg[k].up += up;
                agg[k].master += master;
                agg[k].fallback += master && !up;
            }
            agg[k].replies += get(&x->replies);
            agg[k].latency_ns += get(&x->latency_ns);
            agg[k].timeouts += get(&x->timeouts);
            agg[k].noscript += get(&x->noscript);
        }
    }
    header(b, "gateway_redis_node_up", "gauge",
           "Workers whose connection to the cluster node is ready.");
    for (size_t k = 0; k < n; k++)
        sb_printf(b, "gateway_redis_node_up{node=\"%s\"} %lld\n", addrs[k], (long long)agg[k].up);
    header(b, "gateway_redis_node_master", "gauge",
           "Workers whose slot map has the node as a master.");
    for (size_t k = 0; k < n; k++)
        sb_printf(b, "gateway_redis_node_master{node=\"%s\"} %lld\n", addrs[k],
                  (long long)agg[k].master);
    header(b, "gateway_redis_node_fallback", "gauge",
           "Workers for which the node is a master that does not answer: its keys follow "
           "on_redis_error.");
    for (size_t k = 0; k < n; k++)
        sb_printf(b, "gateway_redis_node_fallback{node=\"%s\"} %lld\n", addrs[k],
                  (long long)agg[k].fallback);
    header(b, "gateway_redis_node_noscript_total", "counter",
           "NOSCRIPT answers from the node (each answered by an EVAL there).");
    for (size_t k = 0; k < n; k++)
        sb_printf(b, "gateway_redis_node_noscript_total{node=\"%s\"} %llu\n", addrs[k],
                  (unsigned long long)agg[k].noscript);
    header(b, "gateway_redis_node_timeouts_total", "counter",
           "Commands to the node that reached their deadline.");
    for (size_t k = 0; k < n; k++)
        sb_printf(b, "gateway_redis_node_timeouts_total{node=\"%s\"} %llu\n", addrs[k],
                  (unsigned long long)agg[k].timeouts);
    header(b, "gateway_redis_node_latency_seconds", "summary",
           "Time from sending a command to the node to its answer.");
    for (size_t k = 0; k < n; k++) {
        sb_printf(b, "gateway_redis_node_latency_seconds_sum{node=\"%s\"} %.6f\n", addrs[k],
                  (double)agg[k].latency_ns / 1e9);
        sb_printf(b, "gateway_redis_node_latency_seconds_count{node=\"%s\"} %llu\n", addrs[k],
                  (unsigned long long)agg[k].replies);
    }
    free(addrs);
    free(agg);
}

static void
render_registries(sbuf_t *b, gw_metrics_t *m)
{
    if (m->nregs == 0)
        return;
    reg_stats_t *rs = (reg_stats_t *)(m->shm + m->off_regs);
    header(b, "gateway_registry_up", "gauge",
           "1 while the registry answers the discovery process, else 0 (the last node lists "
           "stay in use).");
    for (size_t r = 0; r < m->nregs; r++)
        sb_printf(b, "gateway_registry_up{registry=\"%s\"} %lld\n", m->regs[r],
                  (long long)atomic_load_explicit(&rs[r].up, memory_order_relaxed));
    header(b, "gateway_registry_events_total", "counter",
           "Changes seen in each registry (watch events, blocking-query returns, DNS answers "
           "that differ).");
    for (size_t r = 0; r < m->nregs; r++)
        sb_printf(b, "gateway_registry_events_total{registry=\"%s\"} %llu\n", m->regs[r],
                  (unsigned long long)get(&rs[r].events));
}

static hist_t *
redis_hist(gw_metrics_t *m, int slot, size_t unused)
{
    return &slot_head(m, slot)->redis_hist;
}

static void
render_redis_calls(sbuf_t *b, gw_metrics_t *m)
{
    uint64_t n[GW_METRICS_REDIS_NRESULTS] = {0}, all = 0;
    for (int s = 0; s < m->nworkers; s++)
        for (int k = 0; k < GW_METRICS_REDIS_NRESULTS; k++)
            n[k] += get(&slot_head(m, s)->redis_results[k]);
    for (int k = 0; k < GW_METRICS_REDIS_NRESULTS; k++)
        all += n[k];
    header(b, "gateway_redis_commands_total", "counter",
           "Redis commands the limiters and gw.redis sent that were answered, failed or timed "
           "out.");
    sb_printf(b, "gateway_redis_commands_total %llu\n", (unsigned long long)all);
    header(b, "gateway_redis_errors_total", "counter",
           "Redis commands that failed, by kind: reply (an error reply), timeout (no answer "
           "within redis.timeout), connection (the connection went away).");
    for (int k = 1; k < GW_METRICS_REDIS_NRESULTS; k++)
        sb_printf(b, "gateway_redis_errors_total{kind=\"%s\"} %llu\n", redis_error_kinds[k],
                  (unsigned long long)n[k]);
    header(b, "gateway_redis_latency_seconds", "histogram",
           "Time from sending a Redis command to its answer (or its timeout).");
    render_hist_in(b, m, "gateway_redis_latency_seconds", NULL, NULL, redis_hist, 0, redis_labels);
}

static void
render_lua(sbuf_t *b, gw_metrics_t *m)
{
    header(b, "gateway_lua_memory_bytes", "gauge",
           "Bytes held by the Lua VM of each running worker (0 without plugins).");
    for (int s = 0; s < m->nworkers; s++) {
        slot_head_t *h = slot_head(m, s);
        if (atomic_load_explicit(&h->running, memory_order_relaxed))
            sb_printf(b, "gateway_lua_memory_bytes{worker=\"%d\"} %lld\n", s,
                      (long long)atomic_load_explicit(&h->lua_bytes, memory_order_relaxed));
    }
    header(b, "gateway_lua_memory_limit_bytes", "gauge",
           "gateway.lua_memory: the size each worker's Lua VM may grow to.");
    sb_printf(b, "gateway_lua_memory_limit_bytes %llu\n", (unsigned long long)m->lua_limit);
}

static void
render_loop(sbuf_t *b, gw_metrics_t *m)
{
    header(b, "gateway_loop_naps_total", "counter",
           "Naps a busy worker took between loop passes instead of blocking "
           "(gateway.loop_nap); published once a second.");
    for (int s = 0; s < m->nworkers; s++) {
        slot_head_t *h = slot_head(m, s);
        if (atomic_load_explicit(&h->running, memory_order_relaxed))
            sb_printf(b, "gateway_loop_naps_total{worker=\"%d\"} %lld\n", s,
                      (long long)atomic_load_explicit(&h->loop_naps, memory_order_relaxed));
    }
}

static void
render_tls(sbuf_t *b, gw_metrics_t *m)
{
    static const char *const kinds[GW_METRICS_TLS_NKINDS] = {"full", "resumed", "failed"};
    if (m->ntls == 0)
        return;
    header(b, "gateway_tls_handshakes_total", "counter",
           "Downstream TLS handshakes: full, resumed (ticket or session cache) or failed.");
    for (int k = 0; k < GW_METRICS_TLS_NKINDS; k++) {
        uint64_t v = 0;
        for (int s = 0; s < m->nworkers; s++)
            v += get(&slot_head(m, s)->tls_handshakes[k]);
        sb_printf(b, "gateway_tls_handshakes_total{result=\"%s\"} %llu\n", kinds[k],
                  (unsigned long long)v);
    }
    header(b, "gateway_tls_cert_expiry_seconds", "gauge",
           "Seconds until the certificate served for an SNI name expires (negative: expired).");
    int64_t now = (int64_t)time(NULL);
    for (size_t i = 0; i < m->ntls; i++)
        if (m->tls_expiry[i])
            sb_printf(b, "gateway_tls_cert_expiry_seconds{sni=\"%s\"} %lld\n", m->tls_sni[i],
                      (long long)(m->tls_expiry[i] - now));
}

size_t
gw_metrics_render(gw_metrics_t *m, char **out)
{
    sbuf_t b = {0};
    code_sum_t *codes = NULL;
    uint64_t other;

    *out = NULL;
    if (m == NULL)
        return 0;
    codes = malloc(sizeof(code_sum_t) * NCODES * (size_t)m->nworkers);
    if (codes == NULL)
        return 0;

    header(&b, "gateway_info", "gauge", "Version of the running gateway.");
    sb_printf(&b, "gateway_info{version=\"%s\"} 1\n", GW_VERSION);

    int running = 0;
    for (int s = 0; s < m->nworkers; s++)
        running += atomic_load_explicit(&slot_head(m, s)->running, memory_order_relaxed) != 0;
    header(&b, "gateway_workers", "gauge", "Worker processes running.");
    sb_printf(&b, "gateway_workers %d\n", running);
    render_restarts(&b, m);

    header(&b, "gateway_connections", "gauge", "Open downstream connections by state.");
    for (int st = 0; st < GW_CONN_NSTATES; st++) {
        int64_t v = 0;
        for (int s = 0; s < m->nworkers; s++)
            v += atomic_load_explicit(&slot_head(m, s)->conns[st], memory_order_relaxed);
        sb_printf(&b, "gateway_connections{state=\"%s\"} %lld\n", conn_state_names[st],
                  (long long)v);
    }

    header(&b, "gateway_requests_total", "counter", "Downstream requests by route and status.");
    for (size_t r = 0; r <= m->nroutes; r++) {
        const char *name = r < m->nroutes ? m->routes[r] : GW_METRICS_UNMATCHED;
        size_t n = sum_codes(m, route_codes, r, codes, &other);
        for (size_t i = 0; i < n; i++)
            sb_printf(&b, "gateway_requests_total{route=\"%s\",status=\"%u\"} %llu\n", name,
                      (unsigned)codes[i].code, (unsigned long long)codes[i].n);
        if (other)
            sb_printf(&b, "gateway_requests_total{route=\"%s\",status=\"other\"} %llu\n", name,
                      (unsigned long long)other);
    }

    header(&b, "gateway_request_duration_seconds", "histogram",
           "Downstream request duration by route, from the first byte to the last byte sent.");
    for (size_t r = 0; r <= m->nroutes; r++)
        render_hist(&b, m, "gateway_request_duration_seconds", "route",
                    r < m->nroutes ? m->routes[r] : GW_METRICS_UNMATCHED, route_hist, r);

    header(&b, "gateway_upstream_requests_total", "counter",
           "Attempts to upstream nodes by upstream, node and status (error: no response).");
    for (size_t u = 0; u < m->nupstreams; u++) {
        const ups_layout_t *ul = &m->ups[u];
        for (size_t nd = 0; nd <= ul->nnodes; nd++) {
            const char *node = nd < ul->nnodes ? ul->nodes[nd] : "other";
            size_t n = sum_codes(m, node_codes, ul->node_base + nd, codes, &other);
            for (size_t i = 0; i < n; i++) {
                if (codes[i].code == 1)
                    sb_printf(&b,
                              "gateway_upstream_requests_total{upstream=\"%s\",node=\"%s\","
                              "status=\"error\"} %llu\n",
                              ul->name, node, (unsigned long long)codes[i].n);
                else
                    sb_printf(&b,
                              "gateway_upstream_requests_total{upstream=\"%s\",node=\"%s\","
                              "status=\"%u\"} %llu\n",
                              ul->name, node, (unsigned)codes[i].code,
                              (unsigned long long)codes[i].n);
            }
            if (other)
                sb_printf(&b,
                          "gateway_upstream_requests_total{upstream=\"%s\",node=\"%s\","
                          "status=\"other\"} %llu\n",
                          ul->name, node, (unsigned long long)other);
        }
    }

    header(&b, "gateway_upstream_latency_seconds", "histogram",
           "Upstream attempt latency by upstream, from connect to the end of the response.");
    for (size_t u = 0; u < m->nupstreams; u++)
        render_hist(&b, m, "gateway_upstream_latency_seconds", "upstream", m->ups[u].name, ups_hist,
                    u);

    header(&b, "gateway_upstream_nodes", "gauge", "Nodes of each upstream by health state.");
    for (size_t u = 0; u < m->nupstreams; u++) {
        int64_t healthy = (int64_t)m->ups[u].nnodes, unhealthy = 0;
        for (int s = 0; s < m->nworkers; s++) {
            ups_stats_t *us = ups_stats(m, s, u);
            if (!atomic_load_explicit(&slot_head(m, s)->running, memory_order_relaxed) ||
                !atomic_load_explicit(&us->nodes_set, memory_order_acquire))
                continue;
            healthy = atomic_load_explicit(&us->healthy, memory_order_relaxed);
            unhealthy = atomic_load_explicit(&us->unhealthy, memory_order_relaxed);
            break;
        }
        sb_printf(&b, "gateway_upstream_nodes{upstream=\"%s\",state=\"healthy\"} %lld\n",
                  m->ups[u].name, (long long)healthy);
        sb_printf(&b, "gateway_upstream_nodes{upstream=\"%s\",state=\"unhealthy\"} %lld\n",
                  m->ups[u].name, (long long)unhealthy);
    }

    render_ups_counter(&b, m, "gateway_breaker_drops_total",
                       "Requests refused by an open circuit breaker, by upstream.",
                       offsetof(ups_stats_t, breaker_drops));
    render_ups_counter(&b, m, "gateway_upstream_reused_conn_retries_total",
                       "Requests sent again on a new connection after the node closed the "
                       "kept-alive one they went out on, by upstream.",
                       offsetof(ups_stats_t, reused_conn_retries));

    render_limiter(&b, m, "gateway_limiter_rejections_total",
                   "Requests rejected by a rate limiter, by route and plugin.", 0);
    render_limiter(&b, m, "gateway_limiter_fallbacks_total",
                   "Limiter answers not from Redis although the policy is redis (Redis "
                   "unavailable), by route and plugin.",
                   1);
    int64_t rup = 0;
    uint64_t rchg[2] = {0, 0};
    for (int s = 0; s < m->nworkers; s++) {
        slot_head_t *h = slot_head(m, s);
        int64_t v = atomic_load_explicit(&h->redis_up, memory_order_relaxed);
        if (atomic_load_explicit(&h->running, memory_order_relaxed))
            rup += v;
        rchg[0] += get(&h->redis_changes[0]);
        rchg[1] += get(&h->redis_changes[1]);
    }
    header(&b, "gateway_redis_up", "gauge",
           "Workers whose Redis connection is ready (limiters use Redis).");
    sb_printf(&b, "gateway_redis_up %lld\n", (long long)rup);
    header(&b, "gateway_redis_state_changes_total", "counter",
           "Times a worker's Redis connection became unavailable (down) or ready again (up).");
    sb_printf(&b, "gateway_redis_state_changes_total{state=\"down\"} %llu\n",
              (unsigned long long)rchg[0]);
    sb_printf(&b, "gateway_redis_state_changes_total{state=\"up\"} %llu\n",
              (unsigned long long)rchg[1]);

    render_redis_calls(&b, m);
    render_sentinel(&b, m);
    render_tls(&b, m);
    render_lua(&b, m);
    render_loop(&b, m);
    render_rcluster(&b, m);
    render_registries(&b, m);

    free(codes);
    if (b.failed) {
        free(b.data);
        return 0;
    }
    *out = b.data;
    return b.len;
}
