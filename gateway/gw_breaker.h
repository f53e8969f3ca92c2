/*
 * Adaptive circuit breaker: Google SRE client-side throttling with the
 * refinements of go-zero's googlebreaker (core/breaker, 2024 form).
 *
 * A rolling window of `buckets` buckets of window_ms / buckets each counts
 * successes, failures and drops; every outcome, drops included, adds to the
 * bucket's sum, which is the SRE "requests". Before a request:
 *
 *   w      = k - (k - 1.1) * failing / buckets   (failing: the most recent
 *                                                 run of failure-only buckets)
 *   ratio  = (total - protection - max(w, 1.1) * accepts) / (total + 1)
 *
 * ratio <= 0 passes. Otherwise one request passes if the last pass is more
 * than a second old (a probe), else ratio is scaled by
 * (buckets - working) / buckets (working: the most recent run of
 * success-only buckets) and the request is dropped with that probability.
 *
 * The module is pure logic: the caller supplies a monotonic clock in
 * milliseconds and a uniform random number for each decision, so tests are
 * deterministic. It never allocates after gw_breaker_new() and keeps no
 * global state. A worker's own breaker belongs to one thread; a shared one
 * (gw_breaker_init_shared, in memory every worker maps) serialises every
 * call on a spin lock inside it, so all workers decide on one window.
 */
#ifndef GW_BREAKER_H
#define GW_BREAKER_H

#include <stddef.h>
#include <stdint.h>

#include "gw_config.h"

typedef struct gw_breaker_s gw_breaker_t;

/* The window as gw_breaker_stats() sees it at a given time. */
typedef struct {
    uint64_t total;       /* outcomes in the window, drops included */
    uint64_t accepts;     /* successes in the window */
    uint64_t failures;    /* failures in the window */
    uint64_t drops;       /* drops in the window */
    int failing;          /* most recent run of failure-only buckets */
    int working;          /* most recent run of success-only buckets */
    double ratio;         /* drop probability a request would see now, ignoring
                             the once-a-second probe; 0 when closed */
    uint64_t drops_total; /* drops since the breaker was created */
} gw_breaker_stats_t;

/**
 * Checks CONF for values the breaker cannot work with. Returns NULL when
 * it is usable, else a static message naming the bad field ("buckets must
 * be between 1 and 10000"). CONF->enabled is not looked at: whether to
 * build a breaker at all is the caller's choice.
 */
const char *gw_breaker_conf_check(const gw_breaker_conf_t *conf);

/**
 * Creates a breaker with CONF's window, buckets, k and protection (the
 * failure statuses are not copied; see gw_breaker_is_failure()). The window
 * starts at the first allow or mark. Returns NULL when
 * gw_breaker_conf_check() rejects CONF or memory runs out. The caller owns
 * the result and frees it with gw_breaker_free().
 */
gw_breaker_t *gw_breaker_new(const gw_breaker_conf_t *conf);

/** Frees B; NULL and a shared breaker are no-ops. */
void gw_breaker_free(gw_breaker_t *b);

/** Bytes a breaker of BUCKETS buckets takes (for gw_breaker_init_shared). */
size_t gw_breaker_size(int buckets);

/**
 * Builds a breaker in MEM (gw_breaker_size(conf->buckets) bytes, aligned
 * for a uint64_t, mapped shared by every worker) whose calls hold a small
 * lock kept inside it. NULL when CONF is rejected.
 */
gw_breaker_t *gw_breaker_init_shared(void *mem, const gw_breaker_conf_t *conf);

/** Whether B lives in shared memory. */
int gw_breaker_is_shared(const gw_breaker_t *b);

/**
 * Decides whether the request arriving at NOW_MS (monotonic) may go to the
 * upstream. RND is a uniform random number in [0, 1); the request is dropped
 * when RND < the drop ratio. Returns 1 when it passes (the caller must later
 * report its outcome with gw_breaker_mark()), 0 when it is dropped (the drop
 * is already counted; do not mark it).
 */
int gw_breaker_allow(gw_breaker_t *b, uint64_t now_ms, double rnd);

/** Records the outcome of a passed request at NOW_MS: OK 1 success, 0 failure. */
void gw_breaker_mark(gw_breaker_t *b, uint64_t now_ms, int ok);

/**
 * Whether an upstream answer counts as a failure under CONF. STATUS 0 (or
 * negative) means no answer: connect error, reset or timeout, always a
 * failure. Otherwise a failure is a status in CONF->failure_statuses when
 * the config has a list (an empty list: no status is), else any status
 * >= 500 (no list, or CONF NULL).
 */
int gw_breaker_is_failure(const gw_breaker_conf_t *conf, int status);

/** Fills OUT with the window as seen at NOW_MS (for /metrics). */
void gw_breaker_stats(gw_breaker_t *b, uint64_t now_ms, gw_breaker_stats_t *out);

#endif
