/*
 * The adaptive breaker (see gw_breaker.h for the decision rule).
 *
 * The window is a ring of buckets. `offset` is the bucket now filling and
 * `start_ms` the time its interval began; starts stay aligned to whole
 * intervals from the first event, so a bucket always covers the same
 * slice of time however irregular the traffic is. Every add or read first
 * moves the ring forward to NOW, clearing the buckets time has passed over.
 */
#include <math.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gw_breaker.h"

#define MIN_K 1.1
#define FORCE_PASS_MS 1000
#define MAX_BUCKETS 10000
/* a shared breaker's lock taken this long ago (by the holder's clock) is
 * taken for the lock of a dead holder */
#define STALE_LOCK_MS 2000

typedef struct {
    uint64_t sum, success, failure, drop;
} bucket_t;

struct gw_breaker_s {
    /* a breaker in the shared segment (gw_shstate.c): every call holds
     * `lock` (see lock()); a worker's own breaker needs none */
    int shared;
    _Atomic uint64_t lock; /* 0 free, else 1 + the holder's NOW_MS when it took it */
    uint64_t interval_ms;
    double k;
    double protection;
    int nbuckets;
    int offset;
    uint64_t start_ms;
    int started;
    /* go-zero reads a zero last-pass time as "never": the probe starts only
     * after one request has passed through the random decision. */
    int passed;
    uint64_t last_pass_ms;
    uint64_t drops_total;
    /* the window's sums, kept as buckets fill and clear: most decisions
     * need no walk over the buckets (see gw_breaker_allow) */
    uint64_t win_total, win_accepts;
    bucket_t buckets[];
};

typedef struct {
    uint64_t total, accepts, failures, drops;
    int failing, working;
} history_t;

const char *
gw_breaker_conf_check(const gw_breaker_conf_t *conf)
{
    if (conf == NULL)
        return "breaker config missing";
    if (conf->buckets < 1 || conf->buckets > MAX_BUCKETS)
        return "breaker buckets must be between 1 and 10000";
    if (conf->window_ms < (uint64_t)conf->buckets)
        return "breaker window must be at least 1ms per bucket";
    if (!isfinite(conf->k) || conf->k < MIN_K)
        return "breaker k must be a number >= 1.1";
    if (conf->protection < 0)
        return "breaker protection must be >= 0";
    if (conf->nfailure_statuses > 0 && conf->failure_statuses == NULL)
        return "breaker failure_statuses missing";
    for (size_t i = 0; i < conf->nfailure_statuses; i++) {
        if (conf->failure_statuses[i] < 100 || conf->failure_statuses[i] > 599)
            return "breaker failure_statuses must be HTTP statuses (100-599)";
    }
    return NULL;
}

size_t
gw_breaker_size(int buckets)
{
    return sizeof(gw_breaker_t) + (size_t)(buckets > 0 ? buckets : 1) * sizeof(bucket_t);
}

static void
init_at(gw_breaker_t *b, const gw_breaker_conf_t *conf)
{
    b->interval_ms = conf->window_ms / (uint64_t)conf->buckets;
    b->k = conf->k;
    b->protection = conf->protection;
    b->nbuckets = conf->buckets;
}

gw_breaker_t *
gw_breaker_new(const gw_breaker_conf_t *conf)
{
    gw_breaker_t *b;

    if (gw_breaker_conf_check(conf) != NULL)
        return NULL;
    b = calloc(1, gw_breaker_size(conf->buckets));
    if (b == NULL)
        return NULL;
    init_at(b, conf);
    return b;
}

gw_breaker_t *
gw_breaker_init_shared(void *mem, const gw_breaker_conf_t *conf)
{
    gw_breaker_t *b = mem;

    if (gw_breaker_conf_check(conf) != NULL)
        return NULL;
    memset(b, 0, gw_breaker_size(conf->buckets));
    init_at(b, conf);
    b->shared = 1;
    return b;
}

int
gw_breaker_is_shared(const gw_breaker_t *b)
{
    return b != NULL && b->shared;
}

void
gw_breaker_free(gw_breaker_t *b)
{
    if (b == NULL || b->shared)
        return; /* the segment's: it outlives every worker */
    free(b);
}

/* The monotonic clock in ms, as libuv's loop time counts it. */
static uint64_t
clock_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/*
 * A shared breaker is held for a few dozen instructions per call, on every
 * request, by every worker: a robust process-shared mutex costs several
 * times the decision itself, so this is a spin lock whose word says when
 * its holder took it (the caller's clock). A holder that died inside a call
 * would block the others for ever, so a waiter takes over a lock taken
 * more than STALE_LOCK_MS ago. A live holder is inside for well under a
 * microsecond: only one descheduled for seconds in there, with a clock
 * already stale when it locked, could meet a takeover; two calls then
 * overlap, and the window's sums, rebuilt from the buckets at every bucket
 * turn (advance), heal within one bucket.
 */
static void
lock(gw_breaker_t *b, uint64_t now_ms)
{
    if (!b->shared)
        return;
    uint64_t mine = now_ms + 1;
    unsigned spins = 0;
    for (;;) {
        uint64_t cur = 0;
        if (atomic_compare_exchange_weak_explicit(&b->lock, &cur, mine, memory_order_acquire,
                                                  memory_order_relaxed))
            return;
        if (cur == 0 || ++spins < 1024)
            continue;
        spins = 0;
        if (clock_ms() > cur - 1 + STALE_LOCK_MS &&
            atomic_compare_exchange_strong_explicit(&b->lock, &cur, mine, memory_order_acquire,
                                                    memory_order_relaxed))
            return;
        sched_yield();
    }
}

static void
unlock(gw_breaker_t *b)
{
    if (b->shared)
        atomic_store_explicit(&b->lock, 0, memory_order_release);
}

static void
advance(gw_breaker_t *b, uint64_t now_ms)
{
    uint64_t span, elapsed;
    int n = b->nbuckets;

    if (!b->started) {
        b->started = 1;
        b->start_ms = now_ms;
        return;
    }
    /* A monotonic clock never goes back; if a caller's does, keep counting
     * into the current bucket rather than wiping the window. */
    if (now_ms < b->start_ms)
        return;
    elapsed = now_ms - b->start_ms;
    span = elapsed / b->interval_ms;
    if (span == 0)
        return;
    for (uint64_t i = 1; i <= span && i <= (uint64_t)n; i++) {
        bucket_t *bk = &b->buckets[(b->offset + i) % (uint64_t)n];
        bk->sum = bk->success = bk->failure = bk->drop = 0;
    }
    b->offset = (int)((b->offset + span % (uint64_t)n) % (uint64_t)n);
    b->start_ms = now_ms - elapsed % b->interval_ms;
    /* once per bucket turn: the sums start again from the buckets, so they
     * can never drift from them for longer than a bucket */
    b->win_total = b->win_accepts = 0;
    for (int i = 0; i < n; i++) {
        b->win_total += b->buckets[i].sum;
        b->win_accepts += b->buckets[i].success;
    }
}

/* Oldest bucket first, ending with the one now filling, so the runs below
 * are those that reach the present. */
static void
history(const gw_breaker_t *b, history_t *h)
{
    int n = b->nbuckets;

    *h = (history_t){0};
    for (int i = 1; i <= n; i++) {
        const bucket_t *bk = &b->buckets[(b->offset + i) % n];

        h->accepts += bk->success;
        h->total += bk->sum;
        h->failures += bk->failure;
        h->drops += bk->drop;
        if (bk->failure > 0)
            h->working = 0;
        else if (bk->success > 0)
            h->working++;
        if (bk->success > 0)
            h->failing = 0;
        else if (bk->failure > 0)
            h->failing++;
    }
}

/* SRE eq. 21-1 with a floor of `protection` requests and k lowered toward
 * MIN_K while the backend keeps failing bucket after bucket. */
static double
raw_ratio(const gw_breaker_t *b, const history_t *h)
{
    double w = b->k - (b->k - MIN_K) * h->failing / b->nbuckets;
    double weighted = (w > MIN_K ? w : MIN_K) * (double)h->accepts;

    return ((double)h->total - b->protection - weighted) / ((double)h->total + 1);
}

/* Recent success-only buckets mean the backend is recovering: drop less. */
static double
working_scale(const gw_breaker_t *b, const history_t *h)
{
    return (double)(b->nbuckets - h->working) / b->nbuckets;
}

static int
allow(gw_breaker_t *b, uint64_t now_ms, double rnd)
{
    history_t h;
    double ratio;

    advance(b, now_ms);
    /* k is never below MIN_K, so this bounds the ratio from above: a
     * healthy upstream passes here without reading the buckets */
    if ((double)b->win_total - b->protection - MIN_K * (double)b->win_accepts <= 0)
        return 1;
    history(b, &h);
    ratio = raw_ratio(b, &h);
    if (ratio <= 0)
        return 1;
    if (b->passed && now_ms >= b->last_pass_ms && now_ms - b->last_pass_ms > FORCE_PASS_MS) {
        b->last_pass_ms = now_ms;
        return 1;
    }
    ratio *= working_scale(b, &h);
    if (rnd < ratio) {
        bucket_t *bk = &b->buckets[b->offset];

        bk->sum++;
        bk->drop++;
        b->win_total++;
        b->drops_total++;
        return 0;
    }
    b->passed = 1;
    b->last_pass_ms = now_ms;
    return 1;
}

int
gw_breaker_allow(gw_breaker_t *b, uint64_t now_ms, double rnd)
{
    lock(b, now_ms);
    int ok = allow(b, now_ms, rnd);
    unlock(b);
    return ok;
}

void
gw_breaker_mark(gw_breaker_t *b, uint64_t now_ms, int ok)
{
    bucket_t *bk;

    lock(b, now_ms);
    advance(b, now_ms);
    bk = &b->buckets[b->offset];
    bk->sum++;
    b->win_total++;
    b->win_accepts += ok != 0;
    if (ok)
        bk->success++;
    else
        bk->failure++;
    unlock(b);
}

int
gw_breaker_is_failure(const gw_breaker_conf_t *conf, int status)
{
    if (status <= 0)
        return 1;
    /* no list: any status >= 500; a list, even an empty one (the config's
     * `failure_statuses: []`): only the statuses it names */
    if (conf == NULL || conf->failure_statuses == NULL)
        return status >= 500;
    for (size_t i = 0; i < conf->nfailure_statuses; i++) {
        if (conf->failure_statuses[i] == status)
            return 1;
    }
    return 0;
}

void
gw_breaker_stats(gw_breaker_t *b, uint64_t now_ms, gw_breaker_stats_t *out)
{
    history_t h;
    double ratio;

    lock(b, now_ms);
    advance(b, now_ms);
    history(b, &h);
    ratio = raw_ratio(b, &h);
    unlock(b);
    out->total = h.total;
    out->accepts = h.accepts;
    out->failures = h.failures;
    out->drops = h.drops;
    out->failing = h.failing;
    out->working = h.working;
    out->ratio = ratio > 0 ? ratio * working_scale(b, &h) : 0;
    out->drops_total = b->drops_total;
}
