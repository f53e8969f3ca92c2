/* The load balancers. See gw_balancer.h for what each kind does. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gw_balancer.h"
#include "gw_shstate.h"

/* Virtual points per unit of weight on the consistent hash ring (as nginx's chash). */
#define CHASH_POINTS 160
/* Caps a node's ring share so one huge weight cannot make the ring enormous. */
#define CHASH_MAX_WEIGHT 100

/* p2c, after go-zero: EWMA time constant, forced pick age, success scale. */
#define P2C_DECAY_MS 10000.0
#define P2C_FORCE_PICK_MS 1000
#define P2C_INIT_SUCCESS 1000.0
#define P2C_THROTTLE_SUCCESS (P2C_INIT_SUCCESS / 2)
#define P2C_PICK_TRIES 3
/*
 * Latency assumed for a node that has not answered yet: low enough that a
 * new node gets traffic soon, high enough that it does not take every
 * request before its first answer (inflight still weighs in).
 */
#define P2C_DEFAULT_LATENCY_US 1000.0

typedef struct {
    gw_node_t *node;
    int64_t current;       /* smooth WRR */
    uint64_t last_pick_ms; /* p2c */
    double success;        /* p2c: decayed success rate, 0..P2C_INIT_SUCCESS */
} slot_t;

typedef struct {
    uint64_t hash;
    uint32_t slot;
} point_t;

struct gw_balancer_s {
    gw_balancer_kind_t kind;
    slot_t *slots;
    size_t n;
    size_t cursor; /* round robin, least_conn ties, consistent_hash fallback */
    int weighted;  /* round_robin over unequal weights: smooth WRR, as nginx */
    point_t *ring;
    size_t nring;
    uint64_t rng;
};

static uint64_t
next_rand(gw_balancer_t *b)
{
    return gw_rng_next(&b->rng);
}

static uint64_t
fnv1a64_update(uint64_t h, const void *data, size_t len)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

/* FNV alone clusters short keys that differ in the last bytes ("addr#1", "addr#2"). */
static uint64_t
mix64(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 33;
    return h;
}

#define FNV64_BASIS 0xcbf29ce484222325ull

static uint64_t
hash_key(const char *data, size_t len)
{
    return mix64(fnv1a64_update(FNV64_BASIS, data, len));
}

static int
node_weight(const gw_node_t *node)
{
    return node->weight < 1 ? 1 : node->weight;
}

static int
usable(const gw_node_t *node, gw_node_t *const *exclude, size_t nexclude)
{
    if (!(node->sh_health ? gw_shnode_healthy(node->sh) : node->healthy))
        return 0;
    for (size_t i = 0; exclude != NULL && i < nexclude; i++) {
        if (exclude[i] == node)
            return 0;
    }
    return 1;
}

static size_t
count_usable(const gw_balancer_t *b, gw_node_t *const *exclude, size_t nexclude)
{
    size_t m = 0;
    for (size_t i = 0; i < b->n; i++)
        m += (size_t)usable(b->slots[i].node, exclude, nexclude);
    return m;
}

/* The slot of the K-th usable node (K < count_usable()). */
static slot_t *
nth_usable(gw_balancer_t *b, size_t k, gw_node_t *const *exclude, size_t nexclude)
{
    for (size_t i = 0; i < b->n; i++) {
        if (usable(b->slots[i].node, exclude, nexclude) && k-- == 0)
            return &b->slots[i];
    }
    return NULL;
}

static slot_t *
pick_round_robin(gw_balancer_t *b, gw_node_t *const *exclude, size_t nexclude)
{
    for (size_t k = 0; k < b->n; k++) {
        size_t i = (b->cursor + k) % b->n;
        if (usable(b->slots[i].node, exclude, nexclude)) {
            b->cursor = i + 1;
            return &b->slots[i];
        }
    }
    return NULL;
}

static slot_t *
pick_smooth_wrr(gw_balancer_t *b, gw_node_t *const *exclude, size_t nexclude)
{
    slot_t *best = NULL;
    int64_t total = 0;

    for (size_t i = 0; i < b->n; i++) {
        slot_t *s = &b->slots[i];
        if (!usable(s->node, exclude, nexclude))
            continue;
        s->current += node_weight(s->node);
        total += node_weight(s->node);
        if (best == NULL || s->current > best->current)
            best = s;
    }
    if (best != NULL)
        best->current -= total;
    return best;
}

/*
 * round_robin honours weights as nginx does; with equal weights smooth WRR
 * gives the plain rotation anyway, so the cheaper cursor is kept for it.
 */
static slot_t *
pick_rr(gw_balancer_t *b, gw_node_t *const *exclude, size_t nexclude)
{
    if (b->weighted)
        return pick_smooth_wrr(b, exclude, nexclude);
    return pick_round_robin(b, exclude, nexclude);
}

static slot_t *
pick_random(gw_balancer_t *b, gw_node_t *const *exclude, size_t nexclude)
{
    size_t m = count_usable(b, exclude, nexclude);
    if (m == 0)
        return NULL;
    return nth_usable(b, (size_t)(next_rand(b) % m), exclude, nexclude);
}

static slot_t *
pick_least_conn(gw_balancer_t *b, gw_node_t *const *exclude, size_t nexclude)
{
    size_t best = SIZE_MAX;

    /* Scanning from a moving start makes ties rotate instead of piling on the first node. */
    for (size_t k = 0; k < b->n; k++) {
        size_t i = (b->cursor + k) % b->n;
        const gw_node_t *nd = b->slots[i].node;
        if (!usable(nd, exclude, nexclude))
            continue;
        if (best == SIZE_MAX) {
            best = i;
            continue;
        }
        /* inflight/weight compared by cross-multiplying: exact, no division. */
        const gw_node_t *bn = b->slots[best].node;
        if ((uint64_t)nd->inflight * (uint64_t)node_weight(bn) <
            (uint64_t)bn->inflight * (uint64_t)node_weight(nd))
            best = i;
    }
    if (best == SIZE_MAX)
        return NULL;
    b->cursor = best + 1;
    return &b->slots[best];
}

static slot_t *
pick_chash(gw_balancer_t *b, const gw_str_t *key, gw_node_t *const *exclude, size_t nexclude)
{
    size_t lo = 0, hi = b->nring;
    uint64_t h;

    if (key == NULL || key->data == NULL || key->len == 0 || b->nring == 0)
        return pick_rr(b, exclude, nexclude);

    h = hash_key(key->data, key->len);
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (b->ring[mid].hash < h)
            lo = mid + 1;
        else
            hi = mid;
    }
    /* Walking on past unusable nodes is what removing them from the ring would do. */
    for (size_t k = 0; k < b->nring; k++) {
        slot_t *s = &b->slots[b->ring[(lo + k) % b->nring].slot];
        if (usable(s->node, exclude, nexclude))
            return s;
    }
    return NULL;
}

static double
p2c_load(const gw_node_t *node)
{
    double lat = node->ewma_latency_us > 0 ? node->ewma_latency_us : P2C_DEFAULT_LATENCY_US;
    return lat * ((double)node->inflight + 1.0);
}

static slot_t *
p2c_choose(slot_t *a, slot_t *c, uint64_t now_ms)
{
    if (p2c_load(a->node) > p2c_load(c->node)) {
        slot_t *t = a;
        a = c;
        c = t;
    }
    /* A node left alone for a while gets one request, so its figures stay current. */
    if (now_ms > c->last_pick_ms && now_ms - c->last_pick_ms > P2C_FORCE_PICK_MS) {
        c->last_pick_ms = now_ms;
        return c;
    }
    a->last_pick_ms = now_ms;
    return a;
}

static slot_t *
pick_p2c(gw_balancer_t *b, gw_node_t *const *exclude, size_t nexclude, uint64_t now_ms)
{
    size_t m = count_usable(b, exclude, nexclude);
    slot_t *x = NULL, *y = NULL;

    if (m == 0)
        return NULL;
    if (m == 1) {
        x = nth_usable(b, 0, exclude, nexclude);
        x->last_pick_ms = now_ms;
        return x;
    }
    for (int t = 0; t < P2C_PICK_TRIES; t++) {
        size_t i = (size_t)(next_rand(b) % m);
        size_t j = (size_t)(next_rand(b) % (m - 1));
        if (j >= i)
            j++;
        x = nth_usable(b, i, exclude, nexclude);
        y = nth_usable(b, j, exclude, nexclude);
        /* Prefer a pair of nodes that mostly succeed; settle for the last pair. */
        if (x->success > P2C_THROTTLE_SUCCESS && y->success > P2C_THROTTLE_SUCCESS)
            break;
    }
    return p2c_choose(x, y, now_ms);
}

gw_node_t *
gw_balancer_pick(gw_balancer_t *b, const gw_str_t *key, gw_node_t *const *exclude, size_t nexclude,
                 uint64_t now_ms)
{
    slot_t *s = NULL;

    if (b == NULL || b->n == 0)
        return NULL;
    if (exclude == NULL)
        nexclude = 0;

    switch (b->kind) {
    case GW_BAL_ROUND_ROBIN:
        s = pick_rr(b, exclude, nexclude);
        break;
    case GW_BAL_WEIGHTED_ROUND_ROBIN:
        s = pick_smooth_wrr(b, exclude, nexclude);
        break;
    case GW_BAL_RANDOM:
        s = pick_random(b, exclude, nexclude);
        break;
    case GW_BAL_LEAST_CONN:
        s = pick_least_conn(b, exclude, nexclude);
        break;
    case GW_BAL_CONSISTENT_HASH:
        s = pick_chash(b, key, exclude, nexclude);
        break;
    case GW_BAL_P2C:
        s = pick_p2c(b, exclude, nexclude, now_ms);
        break;
    }
    if (s == NULL)
        return NULL;
    s->node->picks++;
    return s->node;
}

/* Index of NODE in SLOTS, or SIZE_MAX. */
static size_t
find_slot(const slot_t *slots, size_t n, const gw_node_t *node)
{
    for (size_t i = 0; i < n; i++) {
        if (slots[i].node == node)
            return i;
    }
    return SIZE_MAX;
}

void
gw_balancer_feedback(gw_balancer_t *b, gw_node_t *node, uint64_t latency_us, int ok,
                     uint64_t now_ms)
{
    uint64_t elapsed;
    double w;
    size_t i;

    if (node == NULL)
        return;
    elapsed = now_ms > node->ewma_stamp_ms ? now_ms - node->ewma_stamp_ms : 0;
    /*
     * Time-decayed, as go-zero: the weight of the past depends on how long
     * ago it was, not on how many answers came since, so a busy and an idle
     * node age alike. The first answer replaces the empty value outright.
     */
    w = node->ewma_latency_us > 0 ? exp(-(double)elapsed / P2C_DECAY_MS) : 0.0;
    node->ewma_latency_us = node->ewma_latency_us * w + (double)latency_us * (1.0 - w);
    node->ewma_stamp_ms = now_ms;
    gw_shnode_ewma(node->sh, now_ms, node->ewma_latency_us);

    if (b == NULL || b->kind != GW_BAL_P2C)
        return;
    i = find_slot(b->slots, b->n, node);
    if (i != SIZE_MAX)
        b->slots[i].success = b->slots[i].success * w + (ok ? P2C_INIT_SUCCESS : 0.0) * (1.0 - w);
}

static int
cmp_point(const void *pa, const void *pb)
{
    const point_t *a = pa, *b = pb;
    if (a->hash != b->hash)
        return a->hash < b->hash ? -1 : 1;
    return a->slot < b->slot ? -1 : a->slot > b->slot;
}

static size_t
node_points(const gw_node_t *node)
{
    int w = node_weight(node);
    return (size_t)CHASH_POINTS * (size_t)(w > CHASH_MAX_WEIGHT ? CHASH_MAX_WEIGHT : w);
}

/*
 * Points depend only on the node's address and weight, never on its
 * position in the set: every worker and every instance builds the same
 * ring, and a node's points do not move when others come or go.
 */
static int
build_ring(slot_t *slots, size_t n, point_t **ring_out, size_t *nring_out)
{
    size_t total = 0, k = 0;
    point_t *ring;

    *ring_out = NULL;
    *nring_out = 0;
    if (n > UINT32_MAX)
        return GW_ERROR;
    for (size_t i = 0; i < n; i++)
        total += node_points(slots[i].node);
    if (total == 0)
        return GW_OK;
    ring = malloc(total * sizeof(*ring));
    if (ring == NULL)
        return GW_ERROR;

    for (size_t i = 0; i < n; i++) {
        const gw_node_t *node = slots[i].node;
        char id[32];
        const char *name;
        size_t name_len;
        size_t np = node_points(node);

        if (node->conf != NULL && node->conf->addr != NULL) {
            name = node->conf->addr;
            name_len = strlen(name);
        } else {
            int len = snprintf(id, sizeof(id), "node%u", node->index);
            name = id;
            name_len = len > 0 ? (size_t)len : 0;
        }
        uint64_t base = fnv1a64_update(FNV64_BASIS, name, name_len);
        base = fnv1a64_update(base, "#", 1);
        for (size_t p = 0; p < np; p++) {
            char num[24];
            int len = snprintf(num, sizeof(num), "%zu", p);
            ring[k].hash = mix64(fnv1a64_update(base, num, (size_t)len));
            ring[k].slot = (uint32_t)i;
            k++;
        }
    }
    qsort(ring, total, sizeof(*ring), cmp_point);
    *ring_out = ring;
    *nring_out = total;
    return GW_OK;
}

static int
valid_kind(gw_balancer_kind_t kind)
{
    switch (kind) {
    case GW_BAL_ROUND_ROBIN:
    case GW_BAL_WEIGHTED_ROUND_ROBIN:
    case GW_BAL_RANDOM:
    case GW_BAL_LEAST_CONN:
    case GW_BAL_CONSISTENT_HASH:
    case GW_BAL_P2C:
        return 1;
    }
    return 0;
}

/* New slots for NODES, carrying over the state of nodes already in OLD. */
static slot_t *
make_slots(gw_node_t **nodes, size_t n, const slot_t *old, size_t nold)
{
    slot_t *slots = calloc(n ? n : 1, sizeof(*slots));

    if (slots == NULL)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        size_t prev = old ? find_slot(old, nold, nodes[i]) : SIZE_MAX;
        if (prev != SIZE_MAX) {
            slots[i] = old[prev];
        } else {
            slots[i].node = nodes[i];
            slots[i].success = P2C_INIT_SUCCESS;
        }
    }
    return slots;
}

static int
weights_differ(gw_node_t **nodes, size_t n)
{
    for (size_t i = 1; i < n; i++) {
        if (node_weight(nodes[i]) != node_weight(nodes[0]))
            return 1;
    }
    return 0;
}

static int
valid_nodes(gw_node_t **nodes, size_t n)
{
    if (n > 0 && nodes == NULL)
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (nodes[i] == NULL)
            return 0;
    }
    return 1;
}

gw_balancer_t *
gw_balancer_new(gw_balancer_kind_t kind, gw_node_t **nodes, size_t n, uint64_t seed)
{
    gw_balancer_t *b = NULL;

    if (!valid_kind(kind) || !valid_nodes(nodes, n))
        return NULL;
    b = calloc(1, sizeof(*b));
    if (b == NULL)
        goto failed;
    b->kind = kind;
    b->rng = seed;
    b->slots = make_slots(nodes, n, NULL, 0);
    if (b->slots == NULL)
        goto failed;
    b->n = n;
    b->weighted = weights_differ(nodes, n);
    if (kind == GW_BAL_CONSISTENT_HASH && build_ring(b->slots, n, &b->ring, &b->nring) != GW_OK)
        goto failed;
    return b;

failed:
    gw_balancer_free(b);
    return NULL;
}

void
gw_balancer_free(gw_balancer_t *b)
{
    if (b == NULL)
        return;
    free(b->slots);
    free(b->ring);
    free(b);
}

int
gw_balancer_update(gw_balancer_t *b, gw_node_t **nodes, size_t n)
{
    slot_t *slots;
    point_t *ring = NULL;
    size_t nring = 0;

    if (b == NULL || !valid_nodes(nodes, n))
        return GW_ERROR;
    slots = make_slots(nodes, n, b->slots, b->n);
    if (slots == NULL)
        return GW_ERROR;
    if (b->kind == GW_BAL_CONSISTENT_HASH && build_ring(slots, n, &ring, &nring) != GW_OK) {
        free(slots);
        return GW_ERROR;
    }
    free(b->slots);
    free(b->ring);
    b->slots = slots;
    b->n = n;
    b->ring = ring;
    b->nring = nring;
    b->cursor = n ? b->cursor % n : 0;
    b->weighted = weights_differ(nodes, n);
    return GW_OK;
}

const char *
gw_balancer_kind_name(gw_balancer_kind_t kind)
{
    switch (kind) {
    case GW_BAL_ROUND_ROBIN:
        return "round_robin";
    case GW_BAL_WEIGHTED_ROUND_ROBIN:
        return "weighted_round_robin";
    case GW_BAL_RANDOM:
        return "random";
    case GW_BAL_LEAST_CONN:
        return "least_conn";
    case GW_BAL_CONSISTENT_HASH:
        return "consistent_hash";
    case GW_BAL_P2C:
        return "p2c";
    }
    return "unknown";
}
