/*
 * Rate limiters with go-zero's Redis semantics and a local fallback.
 *
 * period (go-zero periodlimit): one key PREFIX+KEY; a script INCRBYs it and
 * sets its expiry only on the first hit; count < quota is Allowed, count ==
 * quota HitQuota (still admitted, the last one), count > quota OverQuota.
 * token (go-zero tokenlimit): keys {PREFIX+KEY}.tokens and {..}.ts, refill
 * per whole second from the caller's clock, both keys always SETEX'd with
 * TTL floor(2 x burst / rate), at least 1.
 *
 * The local limiter (policy local, or Redis unavailable with
 * on_redis_error local) applies the same parameters to this worker's share
 * (quota / workers, rate / workers, burst / workers, each at least 1) in an
 * in-memory table bounded by GW_LIMIT_MAX_KEYS keys (least recently used
 * keys are forgotten first).
 *
 * A take never waits longer than redis.timeout: a timeout, an error reply
 * or a lost connection gives the on_redis_error answer at once.
 *
 * Over a Redis Cluster (gw_redis_cluster() not NULL) the same keys go to
 * the master of their slot, byte for byte what go-zero writes (the token
 * pair shares its slot through the braces). A key whose master is down or
 * unknown gets the on_redis_error answer; keys on the other masters keep
 * counting in Redis. An empty token key (no prefix, empty KEY) has no hash
 * tag, its two keys two slots: it is counted locally.
 */
#ifndef GW_LIMIT_H
#define GW_LIMIT_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "gw_core.h"

typedef struct gw_redis_s gw_redis_t;
typedef struct gw_limiter_s gw_limiter_t;
typedef struct gw_limit_wait_s gw_limit_wait_t;

#define GW_LIMIT_MAX_KEYS 100000

typedef enum { GW_LIMIT_PERIOD = 0, GW_LIMIT_TOKEN } gw_limit_kind_t;
typedef enum { GW_LIMIT_USE_REDIS = 0, GW_LIMIT_USE_LOCAL } gw_limit_policy_t;
typedef enum {
    GW_LIMIT_ON_ERR_LOCAL = 0,
    GW_LIMIT_ON_ERR_ALLOW,
    GW_LIMIT_ON_ERR_DENY
} gw_limit_on_err_t;

/* Where an answer came from. */
typedef enum {
    GW_LIMIT_SRC_REDIS = 0,
    GW_LIMIT_SRC_LOCAL,  /* policy local, or the local fallback */
    GW_LIMIT_SRC_POLICY, /* on_redis_error allow or deny */
} gw_limit_source_t;

typedef struct {
    gw_limit_kind_t kind;
    int64_t quota;  /* period */
    int64_t period; /* seconds */
    int align;      /* windows end on clock boundaries (local time, as go-zero) */
    double rate;    /* token: tokens per second */
    int64_t burst;
    const char *prefix; /* copied */
    size_t prefix_len;
    gw_limit_policy_t policy;
    gw_limit_on_err_t on_redis_error;
    struct gw_log_s *log; /* NULL: say nothing; else a key-level Redis error is
                             logged, at most once per 10 s per limiter */
} gw_limit_conf_t;

typedef struct {
    int allowed;
    int code;          /* period: 1 Allowed, 2 HitQuota, 3 OverQuota; token: 1 or 3 */
    int64_t limit;     /* X-RateLimit-Limit */
    int64_t remaining; /* X-RateLimit-Remaining */
    int64_t reset;     /* X-RateLimit-Reset: seconds */
    gw_limit_source_t source;
} gw_limit_result_t;

typedef void (*gw_limit_cb)(const gw_limit_result_t *res, void *arg);

/* REDIS may be NULL (no redis section: every limiter is local). Returns
 * NULL on a bad conf (quota, period, rate or burst not positive). */
gw_limiter_t *gw_limiter_new(const gw_limit_conf_t *conf, gw_redis_t *redis, int nworkers,
                             uv_loop_t *loop);
void gw_limiter_free(gw_limiter_t *l);

/*
 * Takes one request for KEY. Returns GW_OK with *RES filled, or GW_AGAIN
 * when Redis is asked: CB(res, ARG) follows from the loop and *WAIT can
 * cancel it.
 */
int gw_limiter_take(gw_limiter_t *l, const char *key, size_t klen, gw_limit_result_t *res,
                    gw_limit_cb cb, void *arg, gw_limit_wait_t **wait);

void gw_limit_wait_cancel(gw_limit_wait_t *w);

/* Retry-After for a refused RES: the next whole-second refill for a
 * bucket, the window's end for a quota; at least 1. */
int64_t gw_limiter_retry_after(const gw_limiter_t *l, const gw_limit_result_t *res);

/* 1 when answers should come from Redis (policy redis and a client). */
int gw_limiter_uses_redis(const gw_limiter_t *l);

/* Scripts, for tests and the bench: the text sent with EVAL. */
const char *gw_limit_period_script(void);
const char *gw_limit_token_script(void);

#endif
