/* The adaptive breaker on a fake clock: formula, runs of buckets, probes,
 * window expiry, and a half-failing backend against the SRE prediction. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>

#include "gw_breaker.h"
#include "gw_config.h"

#include "tap.h"

#define EPS 1e-12

static gw_breaker_conf_t
default_conf(void)
{
    gw_breaker_conf_t c = {0};

    c.enabled = 1;
    c.window_ms = 10000;
    c.buckets = 40;
    c.k = 1.5;
    c.protection = 5;
    c.scope = GW_SCOPE_ROUTE;
    return c;
}

static gw_breaker_t *
new_default(void)
{
    gw_breaker_conf_t c = default_conf();

    return gw_breaker_new(&c);
}

static void
mark_n(gw_breaker_t *b, uint64_t now, int ok, int n)
{
    for (int i = 0; i < n; i++)
        gw_breaker_mark(b, now, ok);
}

static double
ratio_at(gw_breaker_t *b, uint64_t now)
{
    gw_breaker_stats_t st;

    gw_breaker_stats(b, now, &st);
    return st.ratio;
}

/* xorshift64*: the simulation's own PRNG, seeded, so runs repeat exactly. */
static uint64_t
xs_next(uint64_t *s)
{
    uint64_t x = *s;

    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 2685821657736338717ULL;
}

static double
xs_unit(uint64_t *s)
{
    return (double)(xs_next(s) >> 11) / 9007199254740992.0; /* [0, 1) */
}

static void
test_all_success(void)
{
    gw_breaker_t *b = new_default();
    int drops = 0;

    /* 30 s at one request a millisecond, each with the most drop-prone rnd. */
    for (uint64_t t = 0; t < 30000; t++) {
        if (gw_breaker_allow(b, t, 0.0))
            gw_breaker_mark(b, t, 1);
        else
            drops++;
    }
    is_int(drops, 0, "all successes: nothing dropped in 30000 requests");
    ok(ratio_at(b, 29999) == 0, "all successes: ratio 0");
    gw_breaker_free(b);
}

static void
test_protection(void)
{
    gw_breaker_t *b = new_default();
    gw_breaker_stats_t st;
    int passes = 0;

    /* Up to `protection` failures in the window: (5 - 5 - 0) / 6 = 0. */
    for (int i = 0; i < 5; i++) {
        passes += gw_breaker_allow(b, 10 * i, 0.0);
        gw_breaker_mark(b, 10 * i, 0);
    }
    is_int(passes, 5, "the first 5 failures pass");
    ok(ratio_at(b, 50) == 0, "5 failures: ratio 0 (protection)");
    is_int(gw_breaker_allow(b, 50, 0.0), 1, "a 6th request still passes");
    gw_breaker_mark(b, 50, 0);

    /* The 6th failure opens it: (6 - 5) / 7. */
    gw_breaker_stats(b, 60, &st);
    is_int(st.total, 6, "6 outcomes in the window");
    is_int(st.failures, 6, "6 failures");
    ok(fabs(st.ratio - 1.0 / 7.0) < EPS, "6 failures: ratio 1/7 (got %.15f)", st.ratio);
    is_int(gw_breaker_allow(b, 60, 0.0), 0, "rnd 0 below 1/7: dropped");
    is_int(gw_breaker_allow(b, 60, 0.5), 1, "rnd 0.5 above 2/8: passes");
    gw_breaker_free(b);
}

static void
test_burst_one_bucket(void)
{
    gw_breaker_t *b = new_default();
    gw_breaker_stats_t st;
    double want;

    /* 100 failures in one bucket: total 100, accepts 0, failing 1,
     * w = 1.5 - 0.4 * 1 / 40 (irrelevant: accepts 0), working 0. */
    mark_n(b, 0, 0, 100);
    gw_breaker_stats(b, 100, &st);
    is_int(st.total, 100, "burst: total 100");
    is_int(st.accepts, 0, "burst: accepts 0");
    is_int(st.failing, 1, "burst: failing run 1");
    is_int(st.working, 0, "burst: working run 0");
    want = (100.0 - 5 - 0) / 101 * (40.0 - 0) / 40;
    ok(fabs(st.ratio - want) < EPS, "burst: ratio 95/101 (got %.15f)", st.ratio);

    /* A drop counts in the total: (101 - 5) / 102. */
    is_int(gw_breaker_allow(b, 100, 0.9), 0, "rnd 0.9 < 0.9406: dropped");
    gw_breaker_stats(b, 100, &st);
    is_int(st.total, 101, "the drop is in the total");
    is_int(st.drops, 1, "one drop in the window");
    is_int(st.drops_total, 1, "one drop in all");
    want = (101.0 - 5) / 102;
    ok(fabs(st.ratio - want) < EPS, "after a drop: ratio 96/102 (got %.15f)", st.ratio);
    is_int(gw_breaker_allow(b, 100, 0.95), 1, "rnd 0.95 > 0.9412: passes");
    is_int(gw_breaker_allow(b, 100, want - 1e-9), 0, "rnd just below the ratio: dropped");
    is_int(gw_breaker_allow(b, 100, (102.0 - 5) / 103), 1, "rnd equal to the ratio: passes");
    gw_breaker_free(b);
}

static void
test_k_decreases(void)
{
    gw_breaker_t *b = new_default();
    gw_breaker_stats_t st;
    double want;

    /* 60 successes in bucket 0, then 10 failures in each of buckets 1..10:
     * total 160, accepts 60, failing 10 -> w = 1.5 - 0.4 * 10 / 40 = 1.4. */
    mark_n(b, 0, 1, 60);
    for (int i = 1; i <= 10; i++)
        mark_n(b, 250 * i, 0, 10);
    gw_breaker_stats(b, 2600, &st);
    is_int(st.total, 160, "k: total 160");
    is_int(st.accepts, 60, "k: accepts 60");
    is_int(st.failing, 10, "k: failing run 10");
    is_int(st.working, 0, "k: working run 0");
    want = (160.0 - 5 - 1.4 * 60) / 161;
    ok(fabs(st.ratio - want) < EPS, "k: ratio (160-5-1.4*60)/161 = %.6f (got %.15f)", want,
       st.ratio);
    ok(st.ratio > (160.0 - 5 - 1.5 * 60) / 161, "k: stricter than with k = 1.5");

    /* An empty bucket (11) does not break the run; bucket 12 extends it. */
    mark_n(b, 250 * 12, 0, 10);
    gw_breaker_stats(b, 250 * 12, &st);
    is_int(st.failing, 11, "k: empty bucket keeps the run, next failure bucket extends it");
    want = (170.0 - 5 - (1.5 - 0.4 * 11 / 40) * 60) / 171;
    ok(fabs(st.ratio - want) < EPS, "k: ratio with failing 11 (got %.15f)", st.ratio);

    /* One success in the current bucket ends the run: back to k = 1.5. */
    gw_breaker_mark(b, 250 * 12, 1);
    gw_breaker_stats(b, 250 * 12, &st);
    is_int(st.failing, 0, "k: a success resets the failing run");
    want = (171.0 - 5 - 1.5 * 61) / 172;
    ok(fabs(st.ratio - want) < EPS, "k: ratio back to k 1.5 (got %.15f)", st.ratio);
    gw_breaker_free(b);

    /* A whole window of failure-only buckets: w reaches 1.1. */
    b = new_default();
    mark_n(b, 0, 1, 100);
    for (int i = 1; i < 40; i++)
        mark_n(b, 250 * i, 0, 10);
    gw_breaker_stats(b, 9999, &st);
    is_int(st.failing, 39, "k: failing run 39 of 40");
    want = (490.0 - 5 - (1.5 - 0.4 * 39 / 40) * 100) / 491;
    ok(fabs(st.ratio - want) < EPS, "k: ratio with failing 39 (got %.15f)", st.ratio);
    /* Bucket 0 (the successes) leaves the window: 40 failure-only buckets. */
    mark_n(b, 10000, 0, 10);
    gw_breaker_stats(b, 10000, &st);
    is_int(st.failing, 40, "k: failing run 40 of 40");
    is_int(st.accepts, 0, "k: the successes expired");
    want = (400.0 - 5 - 1.1 * 0) / 401;
    ok(fabs(st.ratio - want) < EPS, "k: ratio with failing 40 (got %.15f)", st.ratio);
    gw_breaker_free(b);

    /* A lower k from config: w = 2 - 0.9 * failing / 40. */
    {
        gw_breaker_conf_t c = default_conf();

        c.k = 2.0;
        b = gw_breaker_new(&c);
        mark_n(b, 0, 1, 50);
        mark_n(b, 250, 0, 200);
        gw_breaker_stats(b, 250, &st);
        want = (250.0 - 5 - (2.0 - 0.9 * 1 / 40) * 50) / 251;
        ok(fabs(st.ratio - want) < EPS, "k 2.0: ratio (got %.15f)", st.ratio);
        gw_breaker_free(b);
    }
}

static void
test_working_scale(void)
{
    gw_breaker_t *b = new_default();
    gw_breaker_stats_t st;
    double want;

    /* 100 failures in bucket 0, then 2 successes in each of buckets 1..4:
     * total 108, accepts 8, failing 0, working 4. */
    mark_n(b, 0, 0, 100);
    for (int i = 1; i <= 4; i++)
        mark_n(b, 250 * i, 1, 2);
    gw_breaker_stats(b, 1000, &st);
    is_int(st.working, 4, "working: run 4");
    is_int(st.failing, 0, "working: failing run 0");
    want = (108.0 - 5 - 1.5 * 8) / 109 * (40.0 - 4) / 40;
    ok(fabs(st.ratio - want) < EPS, "working: ratio 91/109 * 36/40 (got %.15f)", st.ratio);

    /* A drop-only bucket (5) neither extends nor breaks the run. */
    is_int(gw_breaker_allow(b, 1250, 0.0), 0, "working: rnd 0 dropped");
    gw_breaker_stats(b, 1250, &st);
    is_int(st.working, 4, "working: drop-only bucket keeps the run");
    is_int(st.total, 109, "working: drop counted");
    want = (109.0 - 5 - 1.5 * 8) / 110 * (40.0 - 4) / 40;
    ok(fabs(st.ratio - want) < EPS, "working: ratio after drop (got %.15f)", st.ratio);

    /* A failure in the current bucket ends the run. */
    gw_breaker_mark(b, 1250, 0);
    gw_breaker_stats(b, 1250, &st);
    is_int(st.working, 0, "working: a failure resets the run");
    is_int(st.failing, 1, "working: and starts a failing run");
    want = (110.0 - 5 - (1.5 - 0.4 * 1 / 40) * 8) / 111;
    ok(fabs(st.ratio - want) < EPS, "working: unscaled again (got %.15f)", st.ratio);
    gw_breaker_free(b);
}

static void
test_force_pass(void)
{
    gw_breaker_t *b = new_default();
    int passes = 0, ok_times = 1;
    uint64_t want_times[] = {1010, 2020, 3030, 4040};

    /* Closed-breaker passes do not count as "last pass": with no earlier
     * random pass there is no probe at all. */
    is_int(gw_breaker_allow(b, 0, 0.0), 1, "force: closed, passes");
    mark_n(b, 0, 0, 10000);
    for (uint64_t t = 10; t <= 5000; t += 10)
        passes += gw_breaker_allow(b, t, 0.0);
    is_int(passes, 0, "force: no probe before a first random pass");
    gw_breaker_free(b);

    /* Ratio (10000 - 5) / 10001 ~ 0.9995 and rnd 0: every request drops
     * except one probe when the last pass is more than 1000 ms old. */
    b = new_default();
    mark_n(b, 0, 0, 10000);
    is_int(gw_breaker_allow(b, 0, 0.9999), 1, "force: a random pass at t=0");
    passes = 0;
    for (uint64_t t = 10; t <= 5000; t += 10) {
        if (gw_breaker_allow(b, t, 0.0)) {
            if (passes >= 4 || t != want_times[passes])
                ok_times = 0;
            passes++;
        }
    }
    is_int(passes, 4, "force: 4 probes in 5 s");
    ok(ok_times, "force: probes at 1010, 2020, 3030, 4040 ms");
    /* Exactly 1000 ms after a pass is not yet "more than a second". */
    is_int(gw_breaker_allow(b, 5040, 0.0), 0, "force: 1000 ms after the last probe: dropped");
    is_int(gw_breaker_allow(b, 5041, 0.0), 1, "force: 1001 ms after: probe");
    gw_breaker_free(b);
}

static void
test_expiry(void)
{
    gw_breaker_t *b = new_default();
    gw_breaker_stats_t st;
    uint64_t want;

    mark_n(b, 0, 0, 100);
    gw_breaker_stats(b, 9999, &st);
    is_int(st.total, 100, "expiry: still there at 9999 ms");
    ok(st.ratio > 0, "expiry: still open at 9999 ms");
    gw_breaker_stats(b, 10000, &st);
    is_int(st.total, 0, "expiry: forgotten at 10000 ms");
    ok(st.ratio == 0, "expiry: ratio 0 after the window");
    is_int(gw_breaker_allow(b, 10000, 0.0), 1, "expiry: passes after the window");
    gw_breaker_free(b);

    /* Long idle (many windows) also forgets everything. */
    b = new_default();
    mark_n(b, 0, 0, 100);
    gw_breaker_stats(b, 1000000007ULL, &st);
    is_int(st.total, 0, "expiry: forgotten after a long idle");
    gw_breaker_mark(b, 1000000007ULL, 0);
    gw_breaker_stats(b, 1000000007ULL + 9000, &st);
    is_int(st.total, 1, "expiry: counts again after a long idle");
    gw_breaker_free(b);

    /* Partial: bucket i holds i + 1 failures, i = 0..39; the first event at
     * 7 ms sets the bucket edges at 7 + 250 n. */
    b = new_default();
    for (int i = 0; i < 40; i++)
        mark_n(b, 250 * i + 7, 0, i + 1);
    gw_breaker_stats(b, 9999, &st);
    is_int(st.total, 820, "partial: all 40 buckets (1+...+40)");
    gw_breaker_stats(b, 15007 - 1, &st);
    want = 0;
    for (int i = 20; i < 40; i++)
        want += i + 1;
    is_int(st.total, want, "partial: half the window later, buckets 20..39 remain (610)");
    gw_breaker_stats(b, 15007, &st);
    is_int(st.total, want - 21, "partial: at 15007 ms bucket 20 leaves too");
    gw_breaker_free(b);

    /* Buckets align to the first event, not to multiples of 250. */
    b = new_default();
    gw_breaker_mark(b, 100, 0);
    gw_breaker_mark(b, 349, 0);
    gw_breaker_mark(b, 350, 0);
    gw_breaker_stats(b, 10099, &st);
    is_int(st.total, 3, "align: at 10099 all three remain");
    gw_breaker_stats(b, 10100, &st);
    is_int(st.total, 1, "align: at 10100 the bucket [100,350) leaves");
    gw_breaker_stats(b, 10350, &st);
    is_int(st.total, 0, "align: at 10350 the bucket [350,600) leaves");
    gw_breaker_free(b);

    /* A clock that steps back does not wipe the window. */
    b = new_default();
    mark_n(b, 5000, 0, 10);
    gw_breaker_stats(b, 4000, &st);
    is_int(st.total, 10, "clock back: window kept");
    gw_breaker_free(b);
}

/*
 * A backend that fails each request with probability FAIL_P, one request
 * every STEP_MS (200 req/s), outcome reported at once. The test keeps its
 * own count of requests, drops and successes per 10 ms slot, so the SRE
 * prediction below does not rely on the breaker's bookkeeping.
 */
#define STEP_MS 5
#define SLOT_MS 10
#define FAIL_MS 60000
#define HEAL_MS 10000
#define NSLOTS ((FAIL_MS + HEAL_MS) / SLOT_MS)

typedef struct {
    long req, drop, acc;
} slot_t;

static void
simulate(gw_breaker_t *b, uint64_t *rng, uint64_t from, uint64_t to, double fail_p, slot_t *slots)
{
    for (uint64_t t = from; t < to; t += STEP_MS) {
        slot_t *s = &slots[t / SLOT_MS];

        s->req++;
        if (!gw_breaker_allow(b, t, xs_unit(rng))) {
            s->drop++;
            continue;
        }
        if (xs_unit(rng) >= fail_p) {
            gw_breaker_mark(b, t, 1);
            s->acc++;
        } else {
            gw_breaker_mark(b, t, 0);
        }
    }
}

static double
drop_fraction(const slot_t *slots, uint64_t from, uint64_t to)
{
    long req = 0, drop = 0;

    for (uint64_t i = from / SLOT_MS; i < to / SLOT_MS; i++) {
        req += slots[i].req;
        drop += slots[i].drop;
    }
    return req ? (double)drop / req : 0;
}

/* Mean over the requests in [from, to) of max(0, (req - 1.5 acc) / (req + 1)),
 * req (drops included) and acc counted over the 10 s before each slot. */
static double
sre_prediction(const slot_t *slots, uint64_t from, uint64_t to)
{
    static long req_sum[NSLOTS + 1], acc_sum[NSLOTS + 1];
    double sum = 0;
    long n = 0;

    for (size_t i = 0; i < NSLOTS; i++) {
        req_sum[i + 1] = req_sum[i] + slots[i].req;
        acc_sum[i + 1] = acc_sum[i] + slots[i].acc;
    }
    for (uint64_t i = from / SLOT_MS; i < to / SLOT_MS; i++) {
        uint64_t lo = i >= 10000 / SLOT_MS ? i - 10000 / SLOT_MS : 0;
        long req = req_sum[i] - req_sum[lo], acc = acc_sum[i] - acc_sum[lo];
        double p = (req - 1.5 * acc) / (req + 1);

        sum += (p > 0 ? p : 0) * slots[i].req;
        n += slots[i].req;
    }
    return n ? sum / n : 0;
}

static void
test_half_failing(void)
{
    static slot_t slots[NSLOTS];
    gw_breaker_t *b = new_default();
    uint64_t rng = 0x9e3779b97f4a7c15ULL;
    double early, late, pred_early, pred_late;
    uint64_t healed_at = 0;

    simulate(b, &rng, 0, FAIL_MS, 0.5, slots);
    simulate(b, &rng, FAIL_MS, FAIL_MS + HEAL_MS, 0.0, slots);
    for (int s = 0; s < (FAIL_MS + HEAL_MS) / 1000; s += s < 55 ? 5 : 1)
        printf("# second %2d: drop fraction %.3f\n", s,
               drop_fraction(slots, 1000 * s, 1000 * (s + 1)));

    /*
     * With k = 1.5 a backend that accepts 50 % (< 1/k) has no equilibrium
     * short of nearly total throttling, because drops count as requests: if
     * a fraction d was dropped over the last window, accepts = 0.5 (1 - d)
     * req and the next ratio is 1 - 0.75 (1 - d) > d. So the drop fraction
     * climbs window after window (about 0.63 at 5-10 s, about 0.93 after a
     * minute) and the check is that it follows the SRE formula computed from
     * what actually got through, early and late.
     *
     * Tolerance 0.06. What separates the breaker from the bare formula at
     * 200 req/s: the probe, at most 1 pass a second (0.005); protection 5
     * in ~2000 (0.0025); the k lowered by failure-only buckets and the
     * scaling by success-only runs, both rare while every bucket sees a mix
     * (< 0.01); the 10 ms slots here against 250 ms buckets, up to one
     * bucket of the window (< 0.01). Sampling: the sd of a drop fraction
     * over 1000 requests at d ~ 0.63 is sqrt(0.63 * 0.37 / 1000) = 0.015,
     * and 0.06 leaves 3 sd for it. The PRNG is seeded, so the run repeats.
     */
    early = drop_fraction(slots, 5000, 10000);
    pred_early = sre_prediction(slots, 5000, 10000);
    late = drop_fraction(slots, 50000, 60000);
    pred_late = sre_prediction(slots, 50000, 60000);
    printf("# 50%% failing,  5-10 s: measured %.4f, SRE prediction %.4f\n", early, pred_early);
    printf("# 50%% failing, 50-60 s: measured %.4f, SRE prediction %.4f\n", late, pred_late);
    ok(fabs(early - pred_early) < 0.06, "half failing, 5-10 s: drops %.3f near SRE %.3f", early,
       pred_early);
    ok(fabs(late - pred_late) < 0.06, "half failing, 50-60 s: drops %.3f near SRE %.3f", late,
       pred_late);
    ok(early > 0.5, "half failing: open by 5-10 s (drops %.3f)", early);
    ok(late > early, "half failing: drops keep climbing (%.3f -> %.3f)", early, late);
    ok(late < 0.995, "half failing: probes and random passes still get through (%.3f)", late);

    /* Healed: every bucket now holds a success and no failure, so the
     * working run grows by one a bucket and reaches 40 within a window. */
    for (uint64_t s = FAIL_MS; s < FAIL_MS + HEAL_MS; s += 250) {
        if (drop_fraction(slots, s, s + 250) < 0.01) {
            healed_at = s;
            break;
        }
    }
    printf("# healed: drops below 1%% from %llu ms\n", (unsigned long long)healed_at);
    ok(healed_at > FAIL_MS && healed_at < FAIL_MS + HEAL_MS,
       "heal: drops fall below 1%% within one window");
    ok(drop_fraction(slots, FAIL_MS + HEAL_MS - 500, FAIL_MS + HEAL_MS) == 0,
       "heal: no drops in the last 500 ms");
    ok(ratio_at(b, FAIL_MS + HEAL_MS - 1) == 0, "heal: ratio 0 after one window");
    gw_breaker_free(b);
}

static void
test_mostly_working(void)
{
    static slot_t slots[NSLOTS];
    gw_breaker_t *b = new_default();
    uint64_t rng = 42;
    double measured;

    /* 20 % failures: accepts 0.8 req > req / 1.5, so the SRE ratio stays
     * below 0 and nothing is dropped once the window has some successes. */
    simulate(b, &rng, 0, 10000, 0.2, slots);
    measured = drop_fraction(slots, 1000, 10000);
    ok(measured < 0.001, "20%% failing: drop fraction %.4f ~ 0", measured);
    gw_breaker_free(b);
}

static void
test_is_failure(void)
{
    gw_breaker_conf_t c = default_conf();
    int list[] = {502, 503, 429};

    ok(gw_breaker_is_failure(&c, 0), "no answer (0) is a failure");
    ok(gw_breaker_is_failure(&c, -1), "negative status is a failure");
    ok(gw_breaker_is_failure(&c, 500), "default: 500 fails");
    ok(gw_breaker_is_failure(&c, 599), "default: 599 fails");
    ok(!gw_breaker_is_failure(&c, 499), "default: 499 is fine");
    ok(!gw_breaker_is_failure(&c, 200), "default: 200 is fine");
    ok(!gw_breaker_is_failure(&c, 404), "default: 404 is fine");
    ok(gw_breaker_is_failure(NULL, 503), "NULL conf: >= 500");
    c.failure_statuses = list;
    c.nfailure_statuses = 3;
    ok(gw_breaker_is_failure(&c, 502), "list: 502 fails");
    ok(gw_breaker_is_failure(&c, 429), "list: 429 fails");
    ok(!gw_breaker_is_failure(&c, 500), "list: 500 is not listed");
    ok(!gw_breaker_is_failure(&c, 504), "list: 504 is not listed");
    ok(gw_breaker_is_failure(&c, 0), "list: no answer still fails");
    c.nfailure_statuses = 0; /* failure_statuses: [] */
    ok(!gw_breaker_is_failure(&c, 500), "empty list: no status fails");
    ok(!gw_breaker_is_failure(&c, 503), "empty list: not even 503");
    ok(gw_breaker_is_failure(&c, 0), "empty list: no answer still fails");
}

static void
test_bad_conf(void)
{
    gw_breaker_conf_t c;
    int bad_list[] = {500, 700};
    gw_breaker_t *b;

    ok(gw_breaker_new(NULL) == NULL, "NULL conf -> NULL");
    ok(gw_breaker_conf_check(NULL) != NULL, "NULL conf has a message");

#define BAD(field_set, name)                                                                       \
    do {                                                                                           \
        c = default_conf();                                                                        \
        field_set;                                                                                 \
        ok(gw_breaker_new(&c) == NULL, "bad conf: %s -> NULL", name);                              \
        ok(gw_breaker_conf_check(&c) != NULL, "bad conf: %s: %s", name,                            \
           gw_breaker_conf_check(&c) ? gw_breaker_conf_check(&c) : "(no message)");                \
    } while (0)

    BAD(c.buckets = 0, "buckets 0");
    BAD(c.buckets = -3, "buckets -3");
    BAD(c.buckets = 10001, "buckets 10001");
    BAD(c.window_ms = 39, "window shorter than buckets");
    BAD(c.window_ms = 0, "window 0");
    BAD(c.k = 1.09, "k 1.09");
    BAD(c.k = 0, "k 0");
    BAD(c.k = NAN, "k NaN");
    BAD(c.k = INFINITY, "k inf");
    BAD(c.protection = -1, "protection -1");
    BAD(c.nfailure_statuses = 2, "statuses count without list");
    BAD((c.failure_statuses = bad_list, c.nfailure_statuses = 2), "status 700");
#undef BAD

    c = default_conf();
    c.buckets = 1;
    c.window_ms = 1;
    c.k = 1.1;
    c.protection = 0;
    b = gw_breaker_new(&c);
    ok(b != NULL, "smallest conf (1 bucket of 1 ms, k 1.1, protection 0) accepted");
    ok(gw_breaker_conf_check(&c) == NULL, "smallest conf has no message");
    gw_breaker_mark(b, 0, 0);
    ok(fabs(ratio_at(b, 0) - 0.5) < EPS, "1 bucket: one failure -> (1-0)/2");
    ok(ratio_at(b, 1) == 0, "1 bucket: gone 1 ms later");
    gw_breaker_free(b);
    gw_breaker_free(NULL);
    ok(1, "free(NULL) is a no-op");
}

int
main(void)
{
    test_all_success();
    test_protection();
    test_burst_one_bucket();
    test_k_decreases();
    test_working_scale();
    test_force_pass();
    test_expiry();
    test_half_failing();
    test_mostly_working();
    test_is_failure();
    test_bad_conf();
    done_testing();
}
