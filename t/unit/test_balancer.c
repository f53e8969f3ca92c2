/* The balancers: sequences, proportions, exclusion, health, ring stability, p2c. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "gw_balancer.h"
#include "gw_config.h"
#include "gw_node.h"

#include "tap.h"

#define MAXN 16
#define NKEYS 10000

typedef struct {
    char addr[MAXN][48];
    gw_node_conf_t conf[MAXN];
    gw_node_t node[MAXN];
    gw_node_t *ptr[MAXN];
    size_t n;
} set_t;

static const gw_balancer_kind_t all_kinds[] = {
    GW_BAL_ROUND_ROBIN, GW_BAL_WEIGHTED_ROUND_ROBIN, GW_BAL_RANDOM,
    GW_BAL_LEAST_CONN,  GW_BAL_CONSISTENT_HASH,      GW_BAL_P2C,
};

static void
set_init(set_t *s, size_t n, const int *weights)
{
    memset(s, 0, sizeof(*s));
    s->n = n;
    for (size_t i = 0; i < n; i++) {
        snprintf(s->addr[i], sizeof(s->addr[i]), "10.0.0.%u:8080", (unsigned)(i + 1) % 256);
        s->conf[i].addr = s->addr[i];
        s->conf[i].weight = weights ? weights[i] : 1;
        s->node[i].conf = &s->conf[i];
        s->node[i].index = (unsigned)i;
        s->node[i].weight = s->conf[i].weight;
        s->node[i].healthy = 1;
        s->ptr[i] = &s->node[i];
    }
}

static int
idx(const set_t *s, const gw_node_t *n)
{
    return n ? (int)(n - s->node) : -1;
}

static int
pick_idx(gw_balancer_t *b, const set_t *s)
{
    return idx(s, gw_balancer_pick(b, NULL, NULL, 0, 0));
}

static void
test_errors(void)
{
    set_t s;
    gw_node_t *with_null[2];

    set_init(&s, 2, NULL);
    with_null[0] = s.ptr[0];
    with_null[1] = NULL;
    ok(gw_balancer_new((gw_balancer_kind_t)99, s.ptr, 2, 1) == NULL, "bad kind refused");
    ok(gw_balancer_new(GW_BAL_ROUND_ROBIN, NULL, 2, 1) == NULL, "NULL nodes with n > 0 refused");
    ok(gw_balancer_new(GW_BAL_ROUND_ROBIN, with_null, 2, 1) == NULL, "NULL entry refused");
    ok(gw_balancer_pick(NULL, NULL, NULL, 0, 0) == NULL, "pick on NULL balancer");
    gw_balancer_free(NULL);
    gw_balancer_feedback(NULL, NULL, 10, 1, 0);
    is_int(gw_balancer_update(NULL, s.ptr, 2), GW_ERROR, "update NULL balancer");
    is_str(gw_balancer_kind_name(GW_BAL_P2C), "p2c", "kind name");
    is_str(gw_balancer_kind_name((gw_balancer_kind_t)99), "unknown", "unknown kind name");

    for (size_t k = 0; k < GW_ARRAY_LEN(all_kinds); k++) {
        const char *name = gw_balancer_kind_name(all_kinds[k]);
        gw_str_t key = GW_STR("some-key");
        gw_balancer_t *b = gw_balancer_new(all_kinds[k], NULL, 0, 1);
        ok(b != NULL && gw_balancer_pick(b, &key, NULL, 0, 0) == NULL, "%s: empty set -> NULL",
           name);
        gw_balancer_free(b);

        set_init(&s, 3, NULL);
        b = gw_balancer_new(all_kinds[k], s.ptr, 3, 7);
        for (size_t i = 0; i < 3; i++)
            s.node[i].healthy = 0;
        ok(gw_balancer_pick(b, &key, NULL, 0, 0) == NULL, "%s: all unhealthy -> NULL", name);
        for (size_t i = 0; i < 3; i++)
            s.node[i].healthy = 1;
        ok(gw_balancer_pick(b, &key, s.ptr, 3, 0) == NULL, "%s: all excluded -> NULL", name);

        s.node[0].healthy = 0;
        int good = 1;
        for (int i = 0; i < 300; i++) {
            char kb[16];
            gw_str_t k2 = {kb, (size_t)snprintf(kb, sizeof(kb), "k%d", i)};
            gw_node_t *p = gw_balancer_pick(b, &k2, &s.ptr[1], 1, 5000 + (uint64_t)i);
            good &= p == &s.node[2];
        }
        ok(good, "%s: unhealthy and excluded nodes skipped, the one left taken", name);
        is_int(s.node[2].picks, 300, "%s: picks counted", name);
        is_int(s.node[2].inflight, 0, "%s: inflight untouched", name);

        is_int(gw_balancer_update(b, NULL, 2), GW_ERROR, "%s: update with NULL nodes refused",
               name);
        ok(gw_balancer_pick(b, &key, &s.ptr[1], 1, 0) == &s.node[2],
           "%s: a refused update leaves the balancer working", name);
        gw_balancer_free(b);
    }
}

static void
test_round_robin(void)
{
    set_t s;
    char seq[16] = {0};

    set_init(&s, 3, NULL);
    gw_balancer_t *b = gw_balancer_new(GW_BAL_ROUND_ROBIN, s.ptr, 3, 0);
    for (int i = 0; i < 6; i++)
        seq[i] = (char)('a' + pick_idx(b, &s));
    is_str(seq, "abcabc", "round robin cycles");

    s.node[1].healthy = 0;
    for (int i = 0; i < 4; i++)
        seq[i] = (char)('a' + pick_idx(b, &s));
    seq[4] = 0;
    is_str(seq, "acac", "round robin skips an unhealthy node");
    s.node[1].healthy = 1;

    gw_node_t *ex[] = {&s.node[0]};
    int good = 1;
    for (int i = 0; i < 6; i++)
        good &= gw_balancer_pick(b, NULL, ex, 1, 0) != &s.node[0];
    ok(good, "round robin skips the excluded node");

    /* update to a new set: new nodes are used, removed ones are not */
    set_t t;
    set_init(&t, 2, NULL);
    gw_node_t *mixed[] = {s.ptr[2], t.ptr[0], t.ptr[1]};
    is_int(gw_balancer_update(b, mixed, 3), GW_OK, "update");
    int seen_old = 0, seen_new = 0, seen_gone = 0;
    for (int i = 0; i < 9; i++) {
        gw_node_t *p = gw_balancer_pick(b, NULL, NULL, 0, 0);
        seen_old += p == s.ptr[2];
        seen_new += p == t.ptr[0] || p == t.ptr[1];
        seen_gone += p == s.ptr[0] || p == s.ptr[1];
    }
    ok(seen_old == 3 && seen_new == 6 && seen_gone == 0, "after update: only the new set, evenly");
    gw_balancer_free(b);
}

static void
test_wrr(void)
{
    set_t s;
    char seq[16] = {0};
    const int w517[] = {5, 1, 1};

    set_init(&s, 3, w517);
    gw_balancer_t *b = gw_balancer_new(GW_BAL_WEIGHTED_ROUND_ROBIN, s.ptr, 3, 0);
    for (int i = 0; i < 7; i++)
        seq[i] = (char)('a' + pick_idx(b, &s));
    is_str(seq, "aabacaa", "smooth WRR 5,1,1 gives nginx's sequence");
    for (int i = 0; i < 7000 - 7; i++)
        pick_idx(b, &s);
    ok(s.node[0].picks == 5000 && s.node[1].picks == 1000 && s.node[2].picks == 1000,
       "smooth WRR: exact 5:1:1 over 7000 picks (%llu %llu %llu)",
       (unsigned long long)s.node[0].picks, (unsigned long long)s.node[1].picks,
       (unsigned long long)s.node[2].picks);

    /* state survives an update that keeps the node pointers */
    gw_balancer_free(b);
    set_init(&s, 3, w517);
    b = gw_balancer_new(GW_BAL_WEIGHTED_ROUND_ROBIN, s.ptr, 3, 0);
    for (int i = 0; i < 3; i++)
        seq[i] = (char)('a' + pick_idx(b, &s));
    gw_node_t *again[] = {s.ptr[2], s.ptr[0], s.ptr[1]};
    is_int(gw_balancer_update(b, again, 3), GW_OK, "update with the same nodes reordered");
    for (int i = 3; i < 7; i++)
        seq[i] = (char)('a' + pick_idx(b, &s));
    seq[7] = 0;
    is_str(seq, "aabacaa", "smooth WRR sequence continues across update");
    gw_balancer_free(b);

    const int w321[] = {3, 2, 1};
    set_init(&s, 3, w321);
    b = gw_balancer_new(GW_BAL_WEIGHTED_ROUND_ROBIN, s.ptr, 3, 0);
    for (int i = 0; i < 600; i++)
        pick_idx(b, &s);
    ok(s.node[0].picks == 300 && s.node[1].picks == 200 && s.node[2].picks == 100,
       "smooth WRR 3:2:1 exact over 600 picks");

    /* an excluded heavy node hands its share to the others */
    gw_node_t *ex[] = {&s.node[0]};
    int good = 1;
    for (int i = 0; i < 30; i++)
        good &= gw_balancer_pick(b, NULL, ex, 1, 0) != &s.node[0];
    ok(good, "smooth WRR skips the excluded node");
    s.node[0].picks = s.node[1].picks = s.node[2].picks = 0;
    s.node[1].healthy = 0;
    for (int i = 0; i < 400; i++)
        pick_idx(b, &s);
    ok(s.node[1].picks == 0 && s.node[0].picks == 300 && s.node[2].picks == 100,
       "smooth WRR with a node down: 3:1 among the rest (%llu %llu)",
       (unsigned long long)s.node[0].picks, (unsigned long long)s.node[2].picks);
    gw_balancer_free(b);
}

/* round_robin honours weights as nginx does: smooth WRR once they differ. */
static void
test_round_robin_weights(void)
{
    set_t s;
    char seq[16] = {0};
    const int w517[] = {5, 1, 1};
    const int w222[] = {2, 2, 2};

    set_init(&s, 3, w517);
    gw_balancer_t *b = gw_balancer_new(GW_BAL_ROUND_ROBIN, s.ptr, 3, 0);
    for (int i = 0; i < 7; i++)
        seq[i] = (char)('a' + pick_idx(b, &s));
    is_str(seq, "aabacaa", "round robin with weights 5,1,1: nginx's smooth sequence");
    for (int i = 0; i < 7000 - 7; i++)
        pick_idx(b, &s);
    ok(s.node[0].picks == 5000 && s.node[1].picks == 1000 && s.node[2].picks == 1000,
       "round robin with weights: exact 5:1:1 over 7000 picks (%llu %llu %llu)",
       (unsigned long long)s.node[0].picks, (unsigned long long)s.node[1].picks,
       (unsigned long long)s.node[2].picks);

    s.node[0].picks = s.node[1].picks = s.node[2].picks = 0;
    s.node[2].healthy = 0;
    for (int i = 0; i < 600; i++)
        pick_idx(b, &s);
    ok(s.node[0].picks == 500 && s.node[1].picks == 100 && s.node[2].picks == 0,
       "round robin with weights, a node down: 5:1 among the rest (%llu %llu)",
       (unsigned long long)s.node[0].picks, (unsigned long long)s.node[1].picks);
    s.node[2].healthy = 1;

    /* an update to equal weights goes back to the plain rotation */
    set_t t;
    set_init(&t, 3, NULL);
    is_int(gw_balancer_update(b, t.ptr, 3), GW_OK, "update to equal weights");
    for (int i = 0; i < 6; i++)
        seq[i] = (char)('a' + pick_idx(b, &t));
    seq[6] = 0;
    ok(strcmp(seq, "abcabc") == 0 || strcmp(seq, "bcabca") == 0 || strcmp(seq, "cabcab") == 0,
       "equal weights after update: plain rotation (%s)", seq);
    gw_balancer_free(b);

    /* equal weights other than 1 are equal shares too */
    set_init(&s, 3, w222);
    b = gw_balancer_new(GW_BAL_ROUND_ROBIN, s.ptr, 3, 0);
    for (int i = 0; i < 6; i++)
        seq[i] = (char)('a' + pick_idx(b, &s));
    is_str(seq, "abcabc", "round robin with weights 2,2,2 cycles");
    gw_balancer_free(b);

    /* a consistent_hash request without a key falls back to the weighted rotation */
    set_init(&s, 3, w517);
    b = gw_balancer_new(GW_BAL_CONSISTENT_HASH, s.ptr, 3, 0);
    for (int i = 0; i < 700; i++)
        pick_idx(b, &s);
    ok(s.node[0].picks == 500 && s.node[1].picks == 100 && s.node[2].picks == 100,
       "consistent_hash without a key: weighted 5:1:1 (%llu %llu %llu)",
       (unsigned long long)s.node[0].picks, (unsigned long long)s.node[1].picks,
       (unsigned long long)s.node[2].picks);
    gw_balancer_free(b);
}

static void
test_random(void)
{
    set_t s;
    int seq1[50], same = 1, differ = 0;

    set_init(&s, 4, NULL);
    gw_balancer_t *b = gw_balancer_new(GW_BAL_RANDOM, s.ptr, 4, 42);
    for (int i = 0; i < 40000; i++)
        pick_idx(b, &s);
    int fair = 1;
    for (int i = 0; i < 4; i++)
        fair &= s.node[i].picks > 9400 && s.node[i].picks < 10600;
    ok(fair, "random: uniform over 4 nodes (%llu %llu %llu %llu)",
       (unsigned long long)s.node[0].picks, (unsigned long long)s.node[1].picks,
       (unsigned long long)s.node[2].picks, (unsigned long long)s.node[3].picks);
    gw_balancer_free(b);

    b = gw_balancer_new(GW_BAL_RANDOM, s.ptr, 4, 42);
    gw_balancer_t *c = gw_balancer_new(GW_BAL_RANDOM, s.ptr, 4, 42);
    gw_balancer_t *d = gw_balancer_new(GW_BAL_RANDOM, s.ptr, 4, 43);
    for (int i = 0; i < 50; i++) {
        seq1[i] = pick_idx(b, &s);
        same &= seq1[i] == pick_idx(c, &s);
        differ += seq1[i] != pick_idx(d, &s);
    }
    ok(same, "random: same seed, same sequence");
    ok(differ > 10, "random: another seed, another sequence");

    gw_node_t *ex[] = {&s.node[1], &s.node[3]};
    s.node[0].picks = s.node[2].picks = 0;
    int good = 1;
    for (int i = 0; i < 1000; i++) {
        gw_node_t *p = gw_balancer_pick(b, NULL, ex, 2, 0);
        good &= p == &s.node[0] || p == &s.node[2];
    }
    ok(good && s.node[0].picks > 400 && s.node[2].picks > 400,
       "random: excluded nodes skipped, the rest shared");
    gw_balancer_free(b);
    gw_balancer_free(c);
    gw_balancer_free(d);
}

static void
test_least_conn(void)
{
    set_t s;

    set_init(&s, 3, NULL);
    gw_balancer_t *b = gw_balancer_new(GW_BAL_LEAST_CONN, s.ptr, 3, 0);
    int seen[3] = {0};
    for (int i = 0; i < 6; i++)
        seen[pick_idx(b, &s)]++;
    ok(seen[0] == 2 && seen[1] == 2 && seen[2] == 2, "least_conn: ties rotate, not the first");

    s.node[0].inflight = 5;
    s.node[1].inflight = 2;
    s.node[2].inflight = 2;
    int a = pick_idx(b, &s), c = pick_idx(b, &s);
    ok((a == 1 && c == 2) || (a == 2 && c == 1), "least_conn: fewest inflight, ties alternate");

    s.node[1].inflight = 1;
    is_int(pick_idx(b, &s), 1, "least_conn: the one with fewest inflight");

    /* weighted: 4 inflight on weight 4 is lighter than 2 on weight 1 */
    s.node[0].weight = 4;
    s.node[0].inflight = 4;
    s.node[1].inflight = 2;
    s.node[2].inflight = 3;
    is_int(pick_idx(b, &s), 0, "least_conn: inflight divided by weight");

    /* simulate load: each pick holds a connection; shares follow weights */
    s.node[0].inflight = s.node[1].inflight = s.node[2].inflight = 0;
    s.node[0].weight = 2;
    for (int i = 0; i < 400; i++)
        gw_balancer_pick(b, NULL, NULL, 0, 0)->inflight++;
    ok(s.node[0].inflight == 200 && s.node[1].inflight == 100 && s.node[2].inflight == 100,
       "least_conn: held connections follow weights 2:1:1 (%u %u %u)", s.node[0].inflight,
       s.node[1].inflight, s.node[2].inflight);

    gw_node_t *ex[] = {&s.node[0]};
    s.node[0].inflight = 0;
    ok(gw_balancer_pick(b, NULL, ex, 1, 0) != &s.node[0],
       "least_conn: the excluded idle node is skipped");
    gw_balancer_free(b);
}

static void
map_keys(gw_balancer_t *b, const set_t *s, int *out)
{
    for (int i = 0; i < NKEYS; i++) {
        char kb[32];
        gw_str_t key = {kb, (size_t)snprintf(kb, sizeof(kb), "user-%d", i)};
        out[i] = idx(s, gw_balancer_pick(b, &key, NULL, 0, 0));
    }
}

static void
test_chash(void)
{
    static int before[NKEYS], after[NKEYS], other[NKEYS];
    set_t s;
    int moved, stayed, count[MAXN] = {0};

    set_init(&s, 11, NULL);
    gw_balancer_t *b = gw_balancer_new(GW_BAL_CONSISTENT_HASH, s.ptr, 10, 0);
    map_keys(b, &s, before);
    int spread = 1;
    for (int i = 0; i < NKEYS; i++)
        count[before[i]]++;
    for (int i = 0; i < 10; i++)
        spread &= count[i] > NKEYS / 10 / 2 && count[i] < NKEYS / 10 * 2;
    ok(spread, "chash: every node gets a fair share of 10,000 keys");

    /* same keys, same node: deterministic and independent of set order */
    gw_node_t *rev[10];
    for (int i = 0; i < 10; i++)
        rev[i] = s.ptr[9 - i];
    gw_balancer_t *r = gw_balancer_new(GW_BAL_CONSISTENT_HASH, rev, 10, 99);
    map_keys(r, &s, other);
    ok(memcmp(before, other, sizeof(before)) == 0,
       "chash: a separately built ring (other order, other seed) maps alike");
    gw_balancer_free(r);

    /* remove node 3 */
    gw_node_t *nine[9];
    for (int i = 0, k = 0; i < 10; i++)
        if (i != 3)
            nine[k++] = s.ptr[i];
    is_int(gw_balancer_update(b, nine, 9), GW_OK, "chash: update without node 3");
    map_keys(b, &s, after);
    moved = stayed = 0;
    int bad = 0;
    for (int i = 0; i < NKEYS; i++) {
        moved += before[i] != after[i];
        if (before[i] != 3)
            stayed += before[i] == after[i];
        bad += after[i] == 3;
    }
    ok(moved < NKEYS * 15 / 100 && moved == count[3],
       "chash: removing 1 of 10 remaps only its keys (%d of %d)", moved, NKEYS);
    is_int(stayed, NKEYS - count[3], "chash: keys on surviving nodes stay put");
    is_int(bad, 0, "chash: nothing maps to the removed node");

    /* an unhealthy node behaves exactly like a removed one, without a rebuild */
    gw_node_t *ten[10];
    for (int i = 0; i < 10; i++)
        ten[i] = s.ptr[i];
    is_int(gw_balancer_update(b, ten, 10), GW_OK, "chash: node 3 back");
    map_keys(b, &s, other);
    ok(memcmp(before, other, sizeof(before)) == 0, "chash: ring restored, keys back home");
    s.node[3].healthy = 0;
    map_keys(b, &s, other);
    ok(memcmp(after, other, sizeof(after)) == 0, "chash: unhealthy node = removed node");
    s.node[3].healthy = 1;

    /* add an 11th node: about 1/11 moves, all of it to the newcomer */
    is_int(gw_balancer_update(b, s.ptr, 11), GW_OK, "chash: update with node 11");
    map_keys(b, &s, after);
    moved = 0;
    int elsewhere = 0;
    for (int i = 0; i < NKEYS; i++) {
        if (before[i] != after[i]) {
            moved++;
            elsewhere += after[i] != 10;
        }
    }
    ok(moved > NKEYS * 4 / 100 && moved < NKEYS * 15 / 100,
       "chash: adding an 11th node moves about 1/11 (%d of %d)", moved, NKEYS);
    is_int(elsewhere, 0, "chash: moved keys all go to the new node");

    /* exclusion walks on to the next node of the ring, the same one each time */
    gw_str_t key = GW_STR("user-7");
    gw_node_t *home = gw_balancer_pick(b, &key, NULL, 0, 0);
    gw_node_t *ex[] = {home};
    gw_node_t *next = gw_balancer_pick(b, &key, ex, 1, 0);
    ok(next != NULL && next != home && next == gw_balancer_pick(b, &key, ex, 1, 0),
       "chash: a retry goes to a stable other node");

    /* no key: round robin */
    int seen[MAXN] = {0}, distinct = 0;
    gw_str_t empty = {"", 0};
    for (int i = 0; i < 11; i++) {
        seen[idx(&s, gw_balancer_pick(b, i % 2 ? &empty : NULL, NULL, 0, 0))]++;
    }
    for (int i = 0; i < 11; i++)
        distinct += seen[i] == 1;
    is_int(distinct, 11, "chash: no key falls back to round robin");

    /* weight doubles the share */
    const int w[] = {2, 1, 1, 1};
    set_t h;
    set_init(&h, 4, w);
    gw_balancer_t *hb = gw_balancer_new(GW_BAL_CONSISTENT_HASH, h.ptr, 4, 0);
    map_keys(hb, &h, other);
    int c0 = 0;
    for (int i = 0; i < NKEYS; i++)
        c0 += other[i] == 0;
    ok(c0 > NKEYS * 30 / 100 && c0 < NKEYS * 50 / 100, "chash: weight 2 of 5 takes about 40%% (%d)",
       c0);
    gw_balancer_free(hb);
    gw_balancer_free(b);
}

static void
test_p2c(void)
{
    set_t s;

    /* two nodes: the pair is always both; the lower load wins */
    set_init(&s, 2, NULL);
    gw_balancer_t *b = gw_balancer_new(GW_BAL_P2C, s.ptr, 2, 3);
    s.node[0].ewma_latency_us = 1000;
    s.node[1].ewma_latency_us = 50000;
    is_int(idx(&s, gw_balancer_pick(b, NULL, NULL, 0, 500)), 0, "p2c: lower latency wins");
    s.node[0].inflight = 60; /* 1000 x 61 > 50000 x 1 */
    is_int(idx(&s, gw_balancer_pick(b, NULL, NULL, 0, 500)), 1,
           "p2c: inflight multiplies the latency");
    s.node[0].inflight = 0;
    s.node[1].ewma_latency_us = 1000;
    s.node[1].inflight = 3;
    is_int(idx(&s, gw_balancer_pick(b, NULL, NULL, 0, 500)), 0,
           "p2c: same latency, fewer inflight wins");
    s.node[1].inflight = 0;

    /* forced pick: the loser gets one request once it waited over 1s */
    s.node[1].ewma_latency_us = 50000;
    is_int(idx(&s, gw_balancer_pick(b, NULL, NULL, 0, 2000)), 1,
           "p2c: a node not picked for over 1s is picked");
    is_int(idx(&s, gw_balancer_pick(b, NULL, NULL, 0, 2001)), 0, "p2c: then back to the best");
    is_int(idx(&s, gw_balancer_pick(b, NULL, NULL, 0, 3000)), 0, "p2c: not before 1s is over");
    is_int(idx(&s, gw_balancer_pick(b, NULL, NULL, 0, 3001)), 1, "p2c: forced again after 1s");
    gw_balancer_free(b);

    /* three nodes, one slow: it gets far fewer picks */
    set_init(&s, 3, NULL);
    b = gw_balancer_new(GW_BAL_P2C, s.ptr, 3, 11);
    s.node[0].ewma_latency_us = 1000;
    s.node[1].ewma_latency_us = 1200;
    s.node[2].ewma_latency_us = 80000;
    for (int i = 0; i < 6000; i++) {
        gw_node_t *p = gw_balancer_pick(b, NULL, NULL, 0, 100000 + (uint64_t)i);
        p->inflight++;
        /* answers come back at the node's pace: a crude closed loop */
        for (int k = 0; k < 3; k++)
            if (s.node[k].inflight > 0 && (i % (int)(s.node[k].ewma_latency_us / 1000)) == 0)
                s.node[k].inflight--;
    }
    ok(s.node[2].picks * 20 < s.node[0].picks && s.node[2].picks * 20 < s.node[1].picks,
       "p2c: slow node gets far fewer picks (%llu %llu %llu)", (unsigned long long)s.node[0].picks,
       (unsigned long long)s.node[1].picks, (unsigned long long)s.node[2].picks);
    ok(s.node[0].picks > 1000 && s.node[1].picks > 1000, "p2c: the fast nodes share the load");
    gw_balancer_free(b);

    /* failing node: avoided when a pair of healthy-rate nodes is at hand */
    set_init(&s, 3, NULL);
    b = gw_balancer_new(GW_BAL_P2C, s.ptr, 3, 5);
    for (int k = 0; k < 3; k++)
        gw_balancer_feedback(b, &s.node[k], k == 2 ? 500 : 2000, k != 2, 10);
    for (int i = 0; i < 3000; i++)
        gw_balancer_pick(b, NULL, NULL, 0, 20 + (uint64_t)i / 10);
    ok(s.node[2].picks < 1200, "p2c: a failing fast node gets under 40%% (%llu of 3000)",
       (unsigned long long)s.node[2].picks);
    gw_balancer_free(b);

    set_init(&s, 3, NULL);
    b = gw_balancer_new(GW_BAL_P2C, s.ptr, 3, 5);
    for (int k = 0; k < 3; k++)
        gw_balancer_feedback(b, &s.node[k], k == 2 ? 500 : 2000, 1, 10);
    for (int i = 0; i < 3000; i++)
        gw_balancer_pick(b, NULL, NULL, 0, 20 + (uint64_t)i / 10);
    ok(s.node[2].picks > 1800, "p2c: the same node succeeding gets over 60%% (%llu of 3000)",
       (unsigned long long)s.node[2].picks);
    gw_balancer_free(b);

    /* a single usable node */
    set_init(&s, 3, NULL);
    b = gw_balancer_new(GW_BAL_P2C, s.ptr, 3, 5);
    s.node[0].healthy = 0;
    gw_node_t *ex[] = {&s.node[1]};
    ok(gw_balancer_pick(b, NULL, ex, 1, 100) == &s.node[2], "p2c: the only usable node");
    gw_balancer_free(b);
}

static void
test_feedback(void)
{
    set_t s;

    set_init(&s, 1, NULL);
    gw_balancer_t *b = gw_balancer_new(GW_BAL_P2C, s.ptr, 1, 1);
    gw_balancer_feedback(b, &s.node[0], 4000, 1, 1000);
    ok(s.node[0].ewma_latency_us == 4000 && s.node[0].ewma_stamp_ms == 1000,
       "feedback: the first answer sets the EWMA");
    gw_balancer_feedback(b, &s.node[0], 1000, 1, 11000);
    double w = exp(-1.0), want = 4000 * w + 1000 * (1 - w);
    ok(fabs(s.node[0].ewma_latency_us - want) < 0.01,
       "feedback: decayed by exp(-10s/10s) (%.2f vs %.2f)", s.node[0].ewma_latency_us, want);
    gw_balancer_feedback(b, &s.node[0], 90000, 1, 11000);
    ok(fabs(s.node[0].ewma_latency_us - want) < 0.01,
       "feedback: no time elapsed, no weight for the new sample");
    gw_balancer_feedback(b, &s.node[0], 1000, 1, 1000000);
    ok(fabs(s.node[0].ewma_latency_us - 1000) < 1, "feedback: a long gap forgets the past");
    gw_balancer_feedback(b, NULL, 1000, 1, 1000);
    ok(1, "feedback on NULL node ignored");
    gw_balancer_free(b);

    /* every kind keeps the EWMA current, for /upstreams */
    set_init(&s, 1, NULL);
    b = gw_balancer_new(GW_BAL_ROUND_ROBIN, s.ptr, 1, 1);
    gw_balancer_feedback(b, &s.node[0], 2500, 1, 5);
    ok(s.node[0].ewma_latency_us == 2500, "feedback: round robin updates the EWMA too");
    gw_balancer_free(b);
}

int
main(void)
{
    test_errors();
    test_round_robin();
    test_wrr();
    test_round_robin_weights();
    test_random();
    test_least_conn();
    test_chash();
    test_p2c();
    test_feedback();
    done_testing();
}
