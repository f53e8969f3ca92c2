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

int
main(void)
{
    test_writer_comes_round();
    done_testing();
}
