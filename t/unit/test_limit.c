/* The limiters' local counting (policy local, and the fallback when Redis
 * is away): go-zero's codes, headers, worker shares, refill, key bound. */
#include <stdio.h>
#include <string.h>
#include <uv.h>

#include "gw_limit.h"
#include "tap.h"

static gw_limiter_t *
period(uv_loop_t *loop, int64_t quota, int64_t secs, int nworkers)
{
    gw_limit_conf_t c = {.kind = GW_LIMIT_PERIOD,
                         .quota = quota,
                         .period = secs,
                         .prefix = "p:",
                         .prefix_len = 2,
                         .policy = GW_LIMIT_USE_LOCAL};
    return gw_limiter_new(&c, NULL, nworkers, loop);
}

static gw_limit_result_t
take(gw_limiter_t *l, const char *key)
{
    gw_limit_result_t res;
    gw_limit_wait_t *w = NULL;
    int rc = gw_limiter_take(l, key, strlen(key), &res, NULL, NULL, &w);
    if (rc != GW_OK || w != NULL)
        res.code = -1;
    return res;
}

int
main(void)
{
    uv_loop_t loop;
    uv_loop_init(&loop);

    gw_limiter_t *l = period(&loop, 3, 10, 1);
    ok(l != NULL, "period limiter");
    gw_limit_result_t r = take(l, "a");
    is_int(r.code, 1, "first: Allowed");
    is_int(r.remaining, 2, "remaining 2");
    is_int(r.limit, 3, "limit is the quota");
    is_int(r.reset, 10, "reset is the window");
    is_int(r.source, GW_LIMIT_SRC_LOCAL, "answered locally");
    r = take(l, "a");
    is_int(r.code, 1, "second: Allowed");
    r = take(l, "a");
    is_int(r.code, 2, "third: HitQuota");
    ok(r.allowed, "HitQuota is admitted");
    is_int(r.remaining, 0, "remaining 0");
    r = take(l, "a");
    is_int(r.code, 3, "fourth: OverQuota");
    ok(!r.allowed, "OverQuota is refused");
    r = take(l, "b");
    is_int(r.code, 1, "another key counts apart");
    gw_limiter_free(l);

    /* a worker's share: quota / workers, at least 1 */
    l = period(&loop, 4, 10, 2);
    take(l, "k");
    r = take(l, "k");
    is_int(r.code, 2, "quota 4 over 2 workers: the second is this worker's last");
    is_int(r.limit, 2, "limit is the share");
    gw_limiter_free(l);
    l = period(&loop, 1, 10, 4);
    r = take(l, "k");
    is_int(r.code, 2, "a share is at least 1");
    gw_limiter_free(l);

    /* the window ends */
    l = period(&loop, 1, 1, 1);
    take(l, "w");
    r = take(l, "w");
    is_int(r.code, 3, "over quota in the window");
    uv_sleep(1050);
    uv_update_time(&loop);
    r = take(l, "w");
    is_int(r.code, 2, "a new window after the period");
    gw_limiter_free(l);

    /* token bucket: burst at once, then rate per second */
    gw_limit_conf_t tc = {
        .kind = GW_LIMIT_TOKEN, .rate = 2, .burst = 2, .prefix = "", .policy = GW_LIMIT_USE_LOCAL};
    l = gw_limiter_new(&tc, NULL, 1, &loop);
    ok(l != NULL, "token limiter");
    r = take(l, "t");
    ok(r.allowed, "token 1");
    is_int(r.remaining, 1, "1 left");
    is_int(r.limit, 2, "limit is the burst");
    r = take(l, "t");
    ok(r.allowed, "token 2");
    r = take(l, "t");
    ok(!r.allowed, "empty bucket refuses");
    ok(r.reset >= 1, "reset at least 1 second when refused");
    uv_sleep(600);
    uv_update_time(&loop);
    r = take(l, "t");
    ok(r.allowed, "refilled at rate 2/s after 0.6 s");
    gw_limiter_free(l);

    /* bad configs */
    gw_limit_conf_t bad = {.kind = GW_LIMIT_PERIOD, .quota = 0, .period = 1};
    ok(gw_limiter_new(&bad, NULL, 1, &loop) == NULL, "quota 0 refused");
    bad.quota = 1;
    bad.period = 0;
    ok(gw_limiter_new(&bad, NULL, 1, &loop) == NULL, "period 0 refused");
    gw_limit_conf_t badt = {.kind = GW_LIMIT_TOKEN, .rate = 0, .burst = 1};
    ok(gw_limiter_new(&badt, NULL, 1, &loop) == NULL, "rate 0 refused");
    ok(gw_limiter_new(&tc, NULL, 0, &loop) == NULL, "0 workers refused");

    /* the key table is bounded: the least recently used key goes first */
    l = period(&loop, 1, 100, 1);
    take(l, "first");
    char key[32];
    for (int i = 0; i < GW_LIMIT_MAX_KEYS + 10; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        take(l, key);
    }
    r = take(l, "first");
    is_int(r.code, 2, "an evicted key starts again");
    r = take(l, "k99999");
    is_int(r.code, 3, "a recent key is still counted");
    gw_limiter_free(l);

    ok(strstr(gw_limit_period_script(), "INCRBY") != NULL, "period script increments");
    ok(strstr(gw_limit_token_script(), "SETEX") != NULL, "token script SETEXes");

    uv_loop_close(&loop);
    done_testing();
}
