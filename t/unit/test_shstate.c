/* The shared state segment: node and breaker slots found by key, shared
 * across fork, health decisions taken once, bounded tables that say when
 * they are full. */
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "gw_breaker.h"
#include "gw_shstate.h"
#include "tap.h"

static gw_breaker_conf_t
breaker_conf(void)
{
    gw_breaker_conf_t c = {0};
    c.enabled = 1;
    c.window_ms = 10000;
    c.buckets = 40;
    c.k = 1.5;
    c.protection = 5;
    return c;
}

/* Runs FN in a child process and waits for it: what it changes must be
 * seen here through the segment. */
static int
in_child(void (*fn)(void *), void *arg)
{
    pid_t pid = fork();
    if (pid == 0) {
        fn(arg);
        _exit(0);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

typedef struct {
    gw_shstate_t *sh;
    gw_shnode_t *n;
    gw_breaker_t *b;
} ctx_t;

static void
child_eject(void *arg)
{
    ctx_t *c = arg;
    uint64_t now = gw_shstate_now_ms();
    /* three failures: the third ejects */
    for (int i = 0; i < 3; i++)
        gw_shnode_passive_fail(c->sh, c->n, now + (uint64_t)i, 3, 1000, 0);
    gw_shnode_inflight_add(c->n, 2);
    gw_shnode_ewma(c->n, now, 40000);
}

static void
child_breaker(void *arg)
{
    ctx_t *c = arg;
    int shared;
    gw_breaker_conf_t conf = breaker_conf();
    gw_breaker_t *b = gw_shstate_breaker(c->sh, "upstream\x1fu", &conf, &shared);
    if (!shared || b != c->b)
        _exit(1);
    uint64_t now = gw_shstate_now_ms();
    for (int i = 0; i < 50; i++)
        gw_breaker_mark(b, now, 0);
}

static void
test_nodes(void)
{
    gw_shstate_t *sh = gw_shstate_new(4, 2);
    ok(sh != NULL, "segment mapped");
    gw_shnode_t *a = gw_shstate_node(sh, "u", "10.0.0.1:80");
    gw_shnode_t *a2 = gw_shstate_node(sh, "u", "10.0.0.1:80");
    gw_shnode_t *b = gw_shstate_node(sh, "v", "10.0.0.1:80");
    ok(a != NULL && a == a2, "same upstream and address: same slot");
    ok(b != NULL && b != a, "another upstream: another slot");
    is_int(gw_shnode_healthy(a), 1, "a new slot is healthy");

    ctx_t c = {sh, a, NULL};
    ok(in_child(child_eject, &c), "a child process ejects the node");
    is_int(gw_shnode_healthy(a), 0, "the parent sees it down");
    is_int(atomic_load(&a->ejections), 1, "one ejection counted");
    is_int(atomic_load(&a->inflight), 2, "in-flight of the child seen");
    ok(gw_shnode_ewma_ms(a) > 39.9 && gw_shnode_ewma_ms(a) < 40.1, "EWMA of the child seen");
    gw_shnode_inflight_add(a, -5);
    is_int(atomic_load(&a->inflight), 0, "in-flight never goes below zero");

    ok(!gw_shnode_set_health(sh, a, 0, 0), "marking down a down node: no change");
    ok(gw_shnode_set_health(sh, a, 1, 0), "marking it up: changed (the caller logs)");
    ok(!gw_shnode_set_health(sh, a, 1, 0), "again: no change, nobody logs twice");

    uint64_t now = gw_shstate_now_ms();
    ok(!gw_shnode_passive_fail(sh, a, now, 2, 100, now + 50), "one failure: still up");
    ok(!gw_shnode_passive_fail(sh, a, now + 500, 2, 100, now + 550),
       "a failure outside the window: still up");
    ok(gw_shnode_passive_fail(sh, a, now + 520, 2, 100, now + 620), "two within the window: out");
    ok(!gw_shnode_readmit_due(sh, a, now + 600), "not re-admitted before its time");
    ok(gw_shnode_readmit_due(sh, a, now + 620), "re-admitted at its time");
    ok(!gw_shnode_readmit_due(sh, a, now + 700), "only once");

    ok(gw_shnode_lease(sh, a, 100, now, 1000), "worker 100 takes the probe lease");
    ok(!gw_shnode_lease(sh, a, 200, now + 10, 1000), "worker 200 does not while it holds");
    ok(gw_shnode_lease(sh, a, 100, now + 500, 1000), "the holder renews");
    ok(gw_shnode_lease(sh, a, 200, now + 1600, 1000), "a lapsed lease is taken over");
    gw_shnode_lease_release(sh, a, 200);
    ok(gw_shnode_lease(sh, a, 100, now + 1601, 1000), "a released lease is free at once");

    ok(gw_shstate_node(sh, "w", "10.0.0.3:80") != NULL, "third slot");
    ok(gw_shstate_node(sh, "w", "10.0.0.4:80") != NULL, "fourth slot");
    ok(gw_shstate_node(sh, "w", "10.0.0.5:80") == NULL, "table full of live slots: NULL");
    char longname[GW_SH_NAME_MAX + 8];
    memset(longname, 'n', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = 0;
    ok(gw_shstate_node(sh, longname, "10.0.0.1:80") == NULL, "a name too long: NULL");
    size_t nu, nc, bu, bc;
    gw_shstate_usage(sh, &nu, &nc, &bu, &bc);
    is_int(nu, 4, "usage: 4 node slots live");
    is_int(nc, 4, "usage: capacity 4");
    gw_shstate_free(sh);
}

static void
test_breakers(void)
{
    gw_shstate_t *sh = gw_shstate_new(2, 2);
    gw_breaker_conf_t conf = breaker_conf();
    int shared;
    gw_breaker_t *b = gw_shstate_breaker(sh, "upstream\x1fu", &conf, &shared);
    ok(b != NULL && shared && gw_breaker_is_shared(b), "a shared breaker");
    ctx_t c = {sh, NULL, b};
    ok(in_child(child_breaker, &c), "a child finds the same breaker and fails 50 requests");
    gw_breaker_stats_t st;
    gw_breaker_stats(b, gw_shstate_now_ms(), &st);
    is_int(st.failures, 50, "the parent sees the child's failures");
    ok(st.ratio > 0.5, "and the drop ratio they make");
    int passed = 0;
    for (int i = 0; i < 20; i++)
        passed += gw_breaker_allow(b, gw_shstate_now_ms(), 0.1);
    ok(passed <= 1, "the parent drops (at most the one probe passes)");

    gw_breaker_conf_t other = conf;
    other.buckets = 20;
    gw_breaker_t *b2 = gw_shstate_breaker(sh, "upstream\x1fu", &other, &shared);
    ok(b2 != NULL && shared && b2 != b, "other parameters, same key: a fresh breaker");
    gw_breaker_t *b3 = gw_shstate_breaker(sh, "upstream\x1fz", &conf, &shared);
    ok(b3 != NULL && !shared && !gw_breaker_is_shared(b3), "table full: the caller's own");
    gw_breaker_free(b3);
    gw_breaker_free(b); /* a no-op for a shared one */
    gw_breaker_conf_t big = conf;
    big.buckets = GW_SH_BUCKETS + 1;
    big.window_ms = 100000;
    gw_shstate_t *sh2 = gw_shstate_new(1, 4);
    gw_breaker_t *b4 = gw_shstate_breaker(sh2, "big", &big, &shared);
    ok(b4 != NULL && !shared, "more buckets than a slot holds: the caller's own");
    gw_breaker_free(b4);
    gw_breaker_t *b5 = gw_shstate_breaker(NULL, "x", &conf, &shared);
    ok(b5 != NULL && !shared, "no segment: the caller's own");
    gw_breaker_free(b5);
    gw_shstate_free(sh2);
    gw_shstate_free(sh);
}

int
main(void)
{
    test_nodes();
    test_breakers();
    done_testing();
}
