/*
 * The discovery segment: what a worker's reader gets while the discovery
 * process publishes. The reader and the writer are stopped at chosen
 * points of their copies (a page of the segment is protected, the fault
 * handler hands over to the other side), so an interleaving that is
 * otherwise a matter of scheduling happens every run.
 */
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

/* the writer's functions are static: the test is compiled with them */
#include "gw_disc.c"
#include "gw_balancer.h"
#include "gw_shstate.h"
#include "gw_upstream.h"

#include "tap.h"

#define NNODES 20000
#define PORT_BASE 10000

static char addrs[NNODES][32];
static dnode_t dnodes[NNODES];
static gw_disc_t disc;
static source_t src;

/* ---- the state published for generation GEN: every port says GEN ---- */

static void
state_for(uint64_t gen)
{
    for (size_t i = 0; i < NNODES; i++) {
        snprintf(addrs[i], sizeof(addrs[i]), "10.%d.%d.%d:%05d", 100 + (int)(i / 10000),
                 100 + (int)(i / 100 % 100), 100 + (int)(i % 100), PORT_BASE + (int)gen);
        dnodes[i].addr = addrs[i];
        dnodes[i].weight = 1;
    }
    src.version = gen;
}

static void
publish_next(void)
{
    state_for(disc.gen + 1);
    publish_shm(&disc);
    disc.gen++;
}

/* ---- the choreography ---- */

static char *page_q, *page_p; /* reader stops at q, writer at p */
static sem_t writer_go, writer_stopped, reader_done;

static void
on_fault(int sig, siginfo_t *si, void *ctx)
{
    char *a = (char *)((uintptr_t)si->si_addr & ~(uintptr_t)4095);
    if (a == page_q) {
        /* the reader is half-way through its copy: the writer publishes
         * once, then begins the next generation, which goes to the half
         * being read, and stops at page p */
        mprotect(page_q, 4096, PROT_READ | PROT_WRITE);
        sem_post(&writer_go);
        sem_wait(&writer_stopped);
        return;
    }
    if (a == page_p) {
        sem_post(&writer_stopped);
        sem_wait(&reader_done);
        mprotect(page_p, 4096, PROT_READ | PROT_WRITE);
        return;
    }
    signal(SIGSEGV, SIG_DFL);
}

static void *
writer(void *arg)
{
    sem_wait(&writer_go);
    publish_next();
    publish_next();
    return NULL;
}

/* Every node of what the reader returned comes from one generation, the
 * one it says it read. */
static int
consistent(gw_disc_reader_t *r, uint64_t *gen_seen)
{
    const gw_disc_entry_t *e;
    size_t n;
    uint64_t version;
    if (!gw_disc_lookup(r, src.key, &e, &n, &version) || n != NNODES)
        return 0;
    *gen_seen = version;
    for (size_t i = 0; i < n; i++) {
        const char *colon = strrchr(e[i].addr, ':');
        if (colon == NULL || (uint64_t)(atoi(colon + 1) - PORT_BASE) != version)
            return 0;
    }
    return version == r->gen;
}

static void
test_writer_comes_round(void)
{
    gw_conf_t conf;
    gw_upstream_conf_t uc;
    memset(&conf, 0, sizeof(conf));
    memset(&uc, 0, sizeof(uc));
    uc.discovery.kind = GW_DISC_CONSUL;
    conf.upstreams = &uc;
    conf.nupstreams = 1;

    gw_disc_shm_t *shm = gw_disc_shm_new(&conf);
    ok(shm != NULL, "segment mapped");
    disc.conf = &conf;
    disc.shm = shm;
    snprintf(src.key, sizeof(src.key), "c1|consul|web");
    src.known = 1;
    src.nodes = dnodes;
    src.nnodes = NNODES;
    disc.sources = &src;
    disc.nsources = 1;

    publish_next(); /* generation 1, in half 1 */
    size_t len = atomic_load(&shm->head->len[1]);
    ok(len > 16 * 4096, "a state of %zu bytes", len);

    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = on_fault;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigaction(SIGSEGV, &sa, NULL);
    sem_init(&writer_go, 0, 0);
    sem_init(&writer_stopped, 0, 0);
    sem_init(&reader_done, 0, 0);
    page_q = shm->half[1] + (len / 4 & ~(size_t)4095);
    page_p = shm->half[1] + (3 * len / 4 & ~(size_t)4095);
    mprotect(page_q, 4096, PROT_NONE);
    mprotect(page_p, 4096, PROT_READ);

    pthread_t t;
    pthread_create(&t, NULL, writer, NULL);
    gw_disc_reader_t *r = gw_disc_reader_new(shm);
    int rc = gw_disc_read(r);
    uint64_t seen = 0;
    int good = rc == 1 && consistent(r, &seen);
    sem_post(&reader_done);
    pthread_join(t, NULL);

    is_int(rc, 1, "the reader reads while the writer publishes");
    ok(good, "what it read is one generation (it says %llu, the nodes' ports say %s)",
       (unsigned long long)r->gen, good ? "the same" : "otherwise");

    /* once the writer is done, the reader moves on to the last generation */
    is_int(gw_disc_read(r), 1, "the next read sees the writer's last generation");
    ok(consistent(r, &seen) && seen == 3, "... generation 3, whole");

    signal(SIGSEGV, SIG_DFL);
    gw_disc_reader_free(r);
    gw_disc_shm_free(shm);
    gw_buf_free(&disc.out);
}

/* ---- a worker's pools under a changing registry ---- */

#define POOL 8

typedef struct {
    gw_disc_entry_t e[POOL];
    char addr[POOL][32];
    gw_kv_t meta[POOL][1];
    size_t n;
} list_t;

static uint64_t rng = 88172645463325252ull;

static unsigned
rnd(unsigned n)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (unsigned)(rng % n);
}

/* Some of the POOL addresses, with random weights and versions. */
static void
random_list(list_t *l)
{
    l->n = 0;
    for (unsigned i = 0; i < POOL; i++) {
        if (rnd(3) == 0)
            continue;
        gw_disc_entry_t *e = &l->e[l->n];
        snprintf(l->addr[l->n], sizeof(l->addr[0]), "127.0.0.1:%u", 20001 + i);
        gw_conf_numeric_addr(l->addr[l->n], 0, &e->sa, &e->salen);
        e->addr = l->addr[l->n];
        e->weight = 1 + (int)rnd(3);
        l->meta[l->n][0].key = "version";
        l->meta[l->n][0].value = rnd(2) ? "v1" : "v2";
        e->meta = l->meta[l->n];
        e->nmeta = 1;
        l->n++;
    }
}

static gw_conf_t *
load(const char *yaml)
{
    gw_conf_errors_t errs = {0};
    gw_conf_t *conf = gw_conf_load_string(yaml, strlen(yaml), "t.yaml", &errs);
    for (size_t i = 0; i < errs.n; i++)
        printf("#   %s\n", errs.lines[i]);
    gw_conf_errors_free(&errs);
    return conf;
}

static gw_log_t *quiet;

static const char *const kinds[] = {"round_robin", "weighted_round_robin", "random",
                                    "least_conn",  "consistent_hash",      "p2c"};

/* Random lists, requests that hold nodes across changes: nothing a
 * balancer answers was removed, subsets hold what they select, a removed
 * node still held keeps its shared slots touched (else they could be
 * handed to another node while its request is out), and (under ASan) no
 * node is used after it was freed or leaked. */
static void
test_set_nodes_churn(const char *kind)
{
    char yaml[2048];
    snprintf(yaml, sizeof(yaml),
             "gateway: {listen: [\"127.0.0.1:1\"]}\n"
             "registries:\n"
             "  c1: {type: consul, addr: \"http://127.0.0.1:1\"}\n"
             "upstreams:\n"
             "  - name: web\n"
             "    discovery: {registry: c1, service: web}\n"
             "    balancer: %s\n"
             "    breaker: {scope: node}\n"
             "    health: {passive: {unhealthy: 2, window: 10s}}\n"
             "routes:\n"
             "  - match: {path: /x}\n"
             "    upstream: web\n"
             "    subset: {version: v1}\n"
             "    split:\n"
             "      - when: {header: {name: X-C, value: y}}\n"
             "        upstream: web\n"
             "        subset: {version: v2}\n",
             kind);
    gw_conf_t *conf = load(yaml);
    ok(conf != NULL, "%s: the config loads", kind);
    if (conf == NULL)
        return;
    uv_loop_t loop;
    uv_loop_init(&loop);
    gw_rbuf_pool_t rbufs;
    memset(&rbufs, 0, sizeof(rbufs));
    uint64_t reads = 0;
    gw_shstate_t *sh = gw_shstate_new(256, 256);
    gw_upstreams_env_t env = {&loop, conf, quiet, NULL, 0, 42, &rbufs, sh, &reads};
    char err[128];
    gw_upstreams_t *u = gw_upstreams_new(&env, err, sizeof(err));
    ok(u != NULL, "%s: upstreams built", kind);
    gw_upstream_rt_t *up = &u->ups[0];
    gw_target_t *ts[3] = {&up->all, gw_upstreams_target(u, &conf->routes[0], -1),
                          gw_upstreams_target(u, &conf->routes[0], 0)};
    const char *want[3] = {NULL, "v1", "v2"};
    gw_node_t *held[32] = {0};
    int bad_pick = 0, bad_subset = 0, bad_count = 0;
    for (int round = 0; round < 3000; round++) {
        list_t l;
        random_list(&l);
        if (gw_upstreams_set_nodes(u, 0, l.e, l.n) != GW_OK || up->nnodes != l.n)
            bad_count++;
        for (int k = 0; k < 3; k++) {
            for (size_t i = 0; i < ts[k]->nnodes; i++) {
                const gw_node_conf_t *c = ts[k]->nodes[i]->conf;
                if (ts[k]->nodes[i]->removed ||
                    (want[k] && strcmp(c->nmeta ? c->meta[0].value : "", want[k]) != 0))
                    bad_subset++;
            }
            gw_str_t key = {"k", 1};
            gw_node_t *nd = gw_balancer_pick(ts[k]->bal, &key, NULL, 0, (uint64_t)round);
            if (nd == NULL)
                continue;
            if (nd->removed)
                bad_pick++;
            /* a request takes the node and keeps it a while; it reports */
            unsigned slot = rnd(32);
            if (held[slot]) {
                gw_balancer_feedback(ts[k]->bal, held[slot], 1000, 1, (uint64_t)round);
                gw_health_observe(up->health, held[slot], 502);
                if (held[slot]->inflight)
                    held[slot]->inflight--;
                gw_node_unref(held[slot]);
            }
            held[slot] = nd;
            gw_node_ref(nd);
            nd->inflight++;
        }
        if (round % 100 == 0)
            gw_upstreams_tick(u);
    }
    is_int(bad_count, 0, "%s: every list applied whole", kind);
    is_int(bad_subset, 0, "%s: targets hold only live nodes of their subset", kind);
    is_int(bad_pick, 0, "%s: no pick of a removed node", kind);
    uint64_t before = gw_shstate_now_ms();
    usleep(3000);
    gw_upstreams_tick(u);
    int removed_held = 0, untouched = 0;
    for (int i = 0; i < 32; i++) {
        if (held[i] == NULL || !held[i]->removed || held[i]->sh == NULL)
            continue;
        removed_held++;
        if (atomic_load(&held[i]->sh->seen_ms) <= before)
            untouched++;
    }
    ok(removed_held > 0, "%s: %d removed nodes still held", kind, removed_held);
    is_int(untouched, 0, "%s: their shared slots are touched by the tick", kind);
    for (int i = 0; i < 32; i++)
        if (held[i])
            gw_node_unref(held[i]);
    gw_upstreams_close_idle(u);
    uv_run(&loop, UV_RUN_DEFAULT);
    gw_upstreams_free(u);
    gw_shstate_free(sh);
    uv_loop_close(&loop);
    gw_conf_free(conf);
}

/* Active probes in flight while their nodes come and go: a probe whose
 * node left finishes on an orphaned record (under ASan: nothing used
 * after it was freed, nothing leaked). */
static int churn_rounds;

static void
on_churn_count(uv_timer_t *t)
{
    gw_upstreams_t *u = t->data;
    list_t l;
    random_list(&l);
    gw_upstreams_set_nodes(u, 0, l.e, l.n);
    if (++churn_rounds == 300) {
        uv_timer_stop(t);
        gw_upstreams_close_idle(u);
        uv_close((uv_handle_t *)t, NULL);
    }
}

static void
test_set_nodes_probes(void)
{
    const char *yaml =
        "gateway: {listen: [\"127.0.0.1:1\"]}\n"
        "registries:\n"
        "  c1: {type: consul, addr: \"http://127.0.0.1:1\"}\n"
        "upstreams:\n"
        "  - name: web\n"
        "    discovery: {registry: c1, service: web}\n"
        "    health: {active: {path: /h, interval: 1ms, timeout: 50ms, unhealthy: 1}}\n"
        "routes:\n"
        "  - match: {path: /x}\n"
        "    upstream: web\n";
    gw_conf_t *conf = load(yaml);
    ok(conf != NULL, "probes: the config loads");
    if (conf == NULL)
        return;
    uv_loop_t loop;
    uv_loop_init(&loop);
    gw_rbuf_pool_t rbufs;
    memset(&rbufs, 0, sizeof(rbufs));
    uint64_t reads = 0;
    gw_upstreams_env_t env = {&loop, conf, quiet, NULL, 0, 7, &rbufs, NULL, &reads};
    char err[128];
    gw_upstreams_t *u = gw_upstreams_new(&env, err, sizeof(err));
    ok(u != NULL, "probes: upstreams built");
    uv_timer_t t;
    uv_timer_init(&loop, &t);
    t.data = u;
    uv_timer_start(&t, on_churn_count, 1, 1);
    uv_run(&loop, UV_RUN_DEFAULT);
    is_int(churn_rounds, 300, "probes: 300 changes while probes ran");
    gw_upstreams_free(u);
    uv_loop_close(&loop);
    gw_conf_free(conf);
}

int
main(void)
{
    char err[128];
    quiet = gw_log_open("/dev/null", GW_LOG_ERROR, err, sizeof(err));
    test_writer_comes_round();
    test_set_nodes_probes();
    for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++)
        test_set_nodes_churn(kinds[k]);
    done_testing();
}
