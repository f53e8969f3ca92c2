/* The discovery process, the segment it publishes into, and the workers'
 * reader of that segment. */
#include <arpa/inet.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <uv.h>

#include "gw_disc.h"
#include "gw_json.h"
#include "gw_log.h"
#include "gw_resolver.h"
#include "gw_watch.h"

/*
 * The segment: a header page, then two halves. The writer announces the
 * generation it is about to write (writing), fills the half it names
 * (gen & 1) and then publishes it (gen); a reader copies the half of the
 * generation it saw and checks afterwards that the writer has not begun
 * writing that half again (a seqlock over two buffers: gen alone would
 * not tell, it moves only when a write ends). One writer only: the master
 * never runs two discovery processes at once.
 */
#define SHM_MAGIC 0x6777646973633031ULL /* "gwdisc01" */
#define SHM_HALF ((size_t)4 << 20)
#define SHM_HEAD 4096

typedef struct {
    uint64_t magic;
    _Atomic uint64_t gen;
    _Atomic uint64_t len[2];
    _Atomic uint64_t conf_hash; /* the config text the master runs */
    _Atomic uint64_t writing;   /* the generation being written, or gen */
} shm_head_t;

struct gw_disc_shm_s {
    shm_head_t *head;
    char *half[2];
    size_t size;
};

size_t
gw_disc_source_count(const gw_conf_t *conf)
{
    size_t n = 0;
    for (size_t i = 0; i < conf->nupstreams; i++)
        n += conf->upstreams[i].discovery.kind != GW_DISC_STATIC;
    return n;
}

gw_disc_shm_t *
gw_disc_shm_new(const gw_conf_t *conf)
{
    if (gw_disc_source_count(conf) == 0)
        return NULL;
    gw_disc_shm_t *shm = calloc(1, sizeof(*shm));
    if (shm == NULL)
        return NULL;
    shm->size = SHM_HEAD + 2 * SHM_HALF;
    void *p = mmap(NULL, shm->size, PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) {
        free(shm);
        return NULL;
    }
    shm->head = p;
    shm->head->magic = SHM_MAGIC;
    shm->half[0] = (char *)p + SHM_HEAD;
    shm->half[1] = shm->half[0] + SHM_HALF;
    return shm;
}

void
gw_disc_shm_set_conf(gw_disc_shm_t *shm, const gw_conf_t *conf)
{
    if (shm)
        atomic_store_explicit(&shm->head->conf_hash, conf->hash, memory_order_release);
}

static void
shm_write(gw_disc_shm_t *shm, uint64_t next, const void *data, size_t len)
{
    atomic_store_explicit(&shm->head->writing, next, memory_order_relaxed);
    atomic_thread_fence(memory_order_release); /* announced before the half changes */
    memcpy(shm->half[next & 1], data, len);
    atomic_store_explicit(&shm->head->len[next & 1], len, memory_order_relaxed);
    atomic_store_explicit(&shm->head->gen, next, memory_order_release);
}

void
gw_disc_shm_clear(gw_disc_shm_t *shm)
{
    static const uint32_t empty[2] = {0, 0}; /* no registry, no source */
    if (shm)
        shm_write(shm, atomic_load_explicit(&shm->head->gen, memory_order_acquire) + 1, empty,
                  sizeof(empty));
}

void
gw_disc_shm_free(gw_disc_shm_t *shm)
{
    if (shm == NULL)
        return;
    munmap(shm->head, shm->size);
    free(shm);
}

/* ---- source keys ---- */

/* "|%08x": the registry's fingerprint that ends a key; -d leaves it out */
#define SOURCE_PRINT_LEN 9

static uint32_t
fnv_str(uint32_t h, const char *s)
{
    for (; s && *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return (h ^ 0xff) * 16777619u; /* a separator: "ab","c" is not "a","bc" */
}

/* Where a registry's lists come from (its servers, datacenter, the
 * credentials that filter what it shows): a reload that changes these
 * makes new sources, so no list read from the old servers is carried
 * over to the new ones. */
static uint32_t
registry_print(const gw_registry_conf_t *rc)
{
    uint32_t h = 2166136261u;
    h = (h ^ (uint32_t)rc->kind) * 16777619u;
    for (size_t i = 0; i < rc->nendpoints; i++)
        h = fnv_str(h, rc->endpoints[i]);
    h = fnv_str(h, rc->dc);
    h = fnv_str(h, rc->token);
    h = fnv_str(h, rc->username);
    h = fnv_str(h, rc->password);
    for (size_t i = 0; i < rc->nnameservers; i++)
        h = fnv_str(h, rc->nameservers[i]);
    return h;
}

size_t
gw_disc_source_key(const gw_conf_t *conf, const gw_discovery_conf_t *d, char *out, size_t len)
{
    int n;
    switch (d->kind) {
    case GW_DISC_ETCD:
        if (strcmp(d->format, "go-zero") == 0)
            n = snprintf(out, len, "%s|go-zero|%s", d->registry, d->key);
        else
            n = snprintf(out, len, "%s|go-micro|%s%s", d->registry,
                         conf->registries[d->reg_index].prefix, d->service);
        break;
    case GW_DISC_CONSUL:
        n = snprintf(out, len, "%s|consul|%s%s", d->registry, d->service, d->passing ? "" : "|all");
        break;
    case GW_DISC_DNS:
        if (d->srv)
            n = snprintf(out, len, "%s|srv|%s", d->registry, d->srv);
        else
            n = snprintf(out, len, "%s|a|%s|%d", d->registry, d->host, d->port);
        break;
    default:
        return 0;
    }
    if (n <= 0 || (size_t)n >= len)
        return 0;
    int m = snprintf(out + n, len - (size_t)n, "|%08x",
                     (unsigned)registry_print(&conf->registries[d->reg_index]));
    return m == SOURCE_PRINT_LEN && (size_t)(n + m) < len ? (size_t)(n + m) : 0;
}

/* ---- the discovery process: sources and the lists they hold ---- */

typedef struct {
    char *addr; /* canonical "ip:port" / "[v6]:port": the node's identity */
    char *id;   /* the registry's name for it, for -d; not published */
    int weight;
    gw_kv_t *meta;
    size_t nmeta;
} dnode_t;

typedef struct {
    char key[512];
    const gw_discovery_conf_t *conf; /* the first upstream's block */
    size_t reg;                      /* index in conf->registries */
    const char **upstreams;          /* names, for -d */
    size_t nupstreams;
    dnode_t *nodes; /* sorted by addr */
    size_t nnodes;
    int known;        /* a list was reported (or carried over a reload) */
    uint64_t version; /* the generation that last changed it */
    /* the last report as the watcher gave it, kept while it names hosts
     * by name: it is applied again when one of them resolves anew */
    gw_disc_node_t *raw;
    size_t nraw;
} source_t;

/* A host name some registry gave instead of an address, and what it
 * resolved to. Looked up again when its TTL runs out. */
typedef struct {
    char *name;
    struct sockaddr_storage *sa;
    size_t nsa;
    uint64_t expires_ms; /* 0: never answered */
    gw_resolver_req_t *req;
    int logged; /* the last failure was logged */
    struct gw_disc_s *d;
} dname_t;

typedef struct gw_disc_s gw_disc_t;

typedef struct registry_s {
    gw_disc_t *d;
    size_t reg;
    const gw_watcher_ops_t *ops;
    void *w;
    const gw_discovery_conf_t **targets;
    size_t *target_source; /* target index -> source index */
    size_t ntargets;
    int up; /* -1 unknown */
    uint64_t events;
    char why[128];
    char printed[256];       /* -d: the state line printed last */
    uint64_t printed_events; /* -d: the events count printed last */
} registry_t;

struct gw_disc_s {
    uv_loop_t *loop;
    const gw_conf_t *conf;
    gw_log_t *log;
    gw_disc_shm_t *shm; /* NULL: print mode */
    source_t *sources;
    size_t nsources;
    registry_t **regs; /* each alone: a watcher kept over a reload reports to it */
    size_t nregs;
    gw_conf_t **old_confs; /* configs that kept watchers still read */
    size_t nold_confs;
    const gw_conf_t *first_conf; /* the caller's; never freed here */
    uint64_t gen;
    uv_timer_t publish;
    int publish_armed;
    uv_signal_t sig_term, sig_int, sig_quit, sig_hup, sig_usr1;
    int restart; /* the process exits for the master to start a new one */
    gw_buf_t out;
    gw_resolver_t *resolver; /* made when a registry first names a host */
    dname_t **names;
    size_t nnames;
    uv_timer_t names_timer; /* 1 s: names whose TTL ran out */
};

static void
dnode_clear(dnode_t *n)
{
    free(n->addr);
    free(n->id);
    for (size_t i = 0; i < n->nmeta; i++) {
        free(n->meta[i].key);
        free(n->meta[i].value);
    }
    free(n->meta);
}

static void
dnodes_free(dnode_t *nodes, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dnode_clear(&nodes[i]);
    free(nodes);
}

static int
dnode_cmp(const void *a, const void *b)
{
    return strcmp(((const dnode_t *)a)->addr, ((const dnode_t *)b)->addr);
}

static int
kv_eq(const gw_kv_t *a, size_t na, const gw_kv_t *b, size_t nb)
{
    if (na != nb)
        return 0;
    for (size_t i = 0; i < na; i++)
        if (strcmp(a[i].key, b[i].key) != 0 || strcmp(a[i].value, b[i].value) != 0)
            return 0;
    return 1;
}

static int
dnodes_eq(const dnode_t *a, size_t na, const dnode_t *b, size_t nb)
{
    if (na != nb)
        return 0;
    for (size_t i = 0; i < na; i++)
        if (strcmp(a[i].addr, b[i].addr) != 0 || a[i].weight != b[i].weight ||
            !kv_eq(a[i].meta, a[i].nmeta, b[i].meta, b[i].nmeta))
            return 0;
    return 1;
}

static int
kv_cmp(const void *a, const void *b)
{
    return strcmp(((const gw_kv_t *)a)->key, ((const gw_kv_t *)b)->key);
}

static char *
dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

/* An instance as the workers will use it: an IP address and port written
 * canonically, meta sorted by key (the last of a repeated key wins), the
 * weight clamped. Returns GW_ERROR with a log line when it cannot be. */
static int
dnode_from(gw_disc_t *d, const source_t *s, const gw_disc_node_t *in, dnode_t *out)
{
    struct sockaddr_storage sa;
    socklen_t salen;
    char ip[INET6_ADDRSTRLEN], addr[INET6_ADDRSTRLEN + 16];
    const char *id = in->id ? in->id : "?";

    memset(out, 0, sizeof(*out));
    if (in->host == NULL || in->port < 1 || in->port > 65535 ||
        gw_conf_numeric_addr(in->host, in->port, &sa, &salen) != GW_OK) {
        gw_log(d->log, GW_LOG_WARN,
               "registry %s: instance %.200s skipped: no usable address (\"%.100s\" port %d)",
               d->conf->registries[s->reg].name, id, in->host ? in->host : "", in->port);
        return GW_ERROR;
    }
    if (sa.ss_family == AF_INET) {
        inet_ntop(AF_INET, &((struct sockaddr_in *)&sa)->sin_addr, ip, sizeof(ip));
        snprintf(addr, sizeof(addr), "%s:%d", ip, in->port);
    } else {
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&sa)->sin6_addr, ip, sizeof(ip));
        snprintf(addr, sizeof(addr), "[%s]:%d", ip, in->port);
    }
    out->addr = strdup(addr);
    out->id = in->id ? strdup(in->id) : NULL;
    out->weight = in->weight < 1 ? 1 : in->weight > 1000000 ? 1000000 : in->weight;
    out->meta = calloc(in->nmeta ? in->nmeta : 1, sizeof(gw_kv_t));
    if (out->addr == NULL || out->meta == NULL)
        goto oom;
    for (size_t i = 0; i < in->nmeta; i++) {
        const gw_kv_t *kv = &in->meta[i];
        if (kv->key == NULL || kv->value == NULL)
            continue;
        size_t j = 0;
        while (j < out->nmeta && strcmp(out->meta[j].key, kv->key) != 0)
            j++;
        if (j < out->nmeta) {
            free(out->meta[j].value);
            out->meta[j].value = NULL;
        } else {
            out->meta[j].key = dup_or_null(kv->key);
            out->nmeta++;
        }
        out->meta[j].value = dup_or_null(kv->value);
        if (out->meta[j].key == NULL || out->meta[j].value == NULL)
            goto oom;
    }
    qsort(out->meta, out->nmeta, sizeof(gw_kv_t), kv_cmp);
    return GW_OK;
oom:
    dnode_clear(out);
    memset(out, 0, sizeof(*out));
    gw_log(d->log, GW_LOG_ERROR, "out of memory");
    return GW_ERROR;
}

static void schedule_publish(gw_disc_t *d);

/* ---- host names in registries ---- */

static void raw_free(gw_disc_node_t *raw, size_t n);
static void source_update(gw_disc_t *d, source_t *s, const gw_disc_node_t *nodes, size_t n);

static dname_t *
name_find(gw_disc_t *d, const char *name)
{
    for (size_t i = 0; i < d->nnames; i++)
        if (strcmp(d->names[i]->name, name) == 0)
            return d->names[i];
    return NULL;
}

static int
raw_names(const gw_disc_node_t *nodes, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (nodes[i].host && strcmp(nodes[i].host, name) == 0)
            return 1;
    return 0;
}

static void
on_name_resolved(void *arg, const gw_resolver_result_t *res)
{
    dname_t *e = arg;
    gw_disc_t *d = e->d;
    uint64_t ttl = 300;
    size_t n = 0;
    e->req = NULL;
    if (res->status == GW_RES_OK || res->status == GW_RES_NXDOMAIN) {
        struct sockaddr_storage *sa = calloc(res->n ? res->n : 1, sizeof(*sa));
        if (sa == NULL)
            return;
        for (size_t i = 0; i < res->n; i++) {
            const gw_resolver_rr_t *rr = &res->rrs[i];
            if (rr->type != GW_RR_A && rr->type != GW_RR_AAAA)
                continue;
            sa[n++] = rr->sa;
            if (rr->ttl < ttl)
                ttl = rr->ttl;
        }
        free(e->sa);
        e->sa = sa;
        e->nsa = n;
    }
    if (res->status != GW_RES_OK || n == 0) {
        ttl = 5; /* asked again soon: it may come (back) */
        if (!e->logged)
            gw_log(d->log, GW_LOG_WARN,
                   "host \"%.200s\" %s; instances on it are skipped until it does", e->name,
                   res->status == GW_RES_OK || res->status == GW_RES_NXDOMAIN ? "does not resolve"
                   : res->why                                                 ? res->why
                              : "cannot be resolved");
        e->logged = 1;
    } else {
        e->logged = 0;
    }
    e->expires_ms = uv_now(d->loop) + (ttl < 1 ? 1 : ttl) * 1000;
    for (size_t i = 0; i < d->nsources; i++) {
        source_t *s = &d->sources[i];
        if (s->raw && raw_names(s->raw, s->nraw, e->name))
            source_update(d, s, s->raw, s->nraw);
    }
}

static void
name_lookup(gw_disc_t *d, dname_t *e)
{
    if (e->req)
        return;
    if (d->resolver == NULL) {
        char err[128];
        gw_resolver_opts_t o = {0};
        d->resolver = gw_resolver_new(d->loop, &o, err, sizeof(err));
        if (d->resolver == NULL) {
            gw_log(d->log, GW_LOG_ERROR, "resolver: %s", err);
            return;
        }
    }
    e->req = gw_resolver_lookup(d->resolver, e->name, 0, on_name_resolved, e);
}

static void
on_names_timer(uv_timer_t *t)
{
    gw_disc_t *d = t->data;
    uint64_t now = uv_now(d->loop);
    for (size_t i = 0; i < d->nnames; i++)
        if (d->names[i]->expires_ms && now >= d->names[i]->expires_ms)
            name_lookup(d, d->names[i]);
}

/* What NAME stands for now: its addresses (possibly none), or NULL when it
 * was never answered (a lookup is then on its way). */
static dname_t *
name_get(gw_disc_t *d, const char *name)
{
    dname_t *e = name_find(d, name);
    if (e == NULL) {
        dname_t **grown = realloc(d->names, (d->nnames + 1) * sizeof(*grown));
        if (grown == NULL)
            return NULL;
        d->names = grown;
        if ((e = calloc(1, sizeof(*e))) == NULL || (e->name = strdup(name)) == NULL) {
            free(e);
            return NULL;
        }
        e->d = d;
        d->names[d->nnames++] = e;
        if (d->nnames == 1)
            uv_timer_start(&d->names_timer, on_names_timer, 1000, 1000);
    }
    if (e->expires_ms == 0) {
        name_lookup(d, e);
        return NULL;
    }
    return e;
}

static void
names_free(gw_disc_t *d)
{
    for (size_t i = 0; i < d->nnames; i++) {
        free(d->names[i]->name);
        free(d->names[i]->sa);
        free(d->names[i]);
    }
    free(d->names);
    d->names = NULL;
    d->nnames = 0;
}

/* ---- reports ---- */

static void
raw_free(gw_disc_node_t *raw, size_t n)
{
    for (size_t i = 0; raw && i < n; i++) {
        free((char *)raw[i].host);
        free((char *)raw[i].id);
        for (size_t j = 0; j < raw[i].nmeta; j++) {
            free(raw[i].meta[j].key);
            free(raw[i].meta[j].value);
        }
        free((gw_kv_t *)raw[i].meta);
    }
    free(raw);
}

/* Keeps a copy of a report that names hosts, for when they resolve. */
static void
raw_keep(source_t *s, const gw_disc_node_t *nodes, size_t n)
{
    gw_disc_node_t *raw = calloc(n ? n : 1, sizeof(*raw));
    if (raw == NULL)
        return;
    for (size_t i = 0; i < n; i++) {
        raw[i] = nodes[i];
        raw[i].host = dup_or_null(nodes[i].host);
        raw[i].id = dup_or_null(nodes[i].id);
        gw_kv_t *meta = calloc(nodes[i].nmeta ? nodes[i].nmeta : 1, sizeof(gw_kv_t));
        raw[i].meta = meta;
        raw[i].nmeta = 0;
        for (size_t j = 0; meta && j < nodes[i].nmeta; j++) {
            meta[j].key = dup_or_null(nodes[i].meta[j].key);
            meta[j].value = dup_or_null(nodes[i].meta[j].value);
            raw[i].nmeta++;
        }
    }
    raw_free(s->raw, s->nraw);
    s->raw = raw;
    s->nraw = n;
}

/* Appends IN to LIST as canonical nodes: itself when its host is an
 * address, one node per address when it is a name that resolved, nothing
 * while the name has not. */
static void
expand_node(gw_disc_t *d, const source_t *s, const gw_disc_node_t *in, dnode_t **list, size_t *m,
            size_t *cap)
{
    const dname_t *e = NULL;
    size_t count = 1;
    if (in->host && in->host[0] && !gw_resolver_is_ip(in->host)) {
        if ((e = name_get(d, in->host)) == NULL)
            return;
        count = e->nsa;
    }
    if (*m + count > *cap) {
        size_t nc = (*cap + count) * 2;
        dnode_t *grown = realloc(*list, nc * sizeof(dnode_t));
        if (grown == NULL)
            return;
        *list = grown;
        *cap = nc;
    }
    if (e == NULL) {
        if (dnode_from(d, s, in, &(*list)[*m]) == GW_OK)
            (*m)++;
        return;
    }
    for (size_t i = 0; i < e->nsa; i++) {
        char ip[INET6_ADDRSTRLEN];
        const struct sockaddr_storage *a = &e->sa[i];
        if (a->ss_family == AF_INET)
            inet_ntop(AF_INET, &((const struct sockaddr_in *)a)->sin_addr, ip, sizeof(ip));
        else
            inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)a)->sin6_addr, ip, sizeof(ip));
        gw_disc_node_t one = *in;
        one.host = ip;
        if (dnode_from(d, s, &one, &(*list)[*m]) == GW_OK)
            (*m)++;
    }
}

static int
names_hosts(const gw_disc_node_t *nodes, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (nodes[i].host && nodes[i].host[0] && !gw_resolver_is_ip(nodes[i].host))
            return 1;
    return 0;
}

static void
source_update(gw_disc_t *d, source_t *s, const gw_disc_node_t *nodes, size_t n)
{
    size_t cap = n ? n : 1, m = 0;
    dnode_t *list = calloc(cap, sizeof(dnode_t));
    if (list == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        expand_node(d, s, &nodes[i], &list, &m, &cap);
    qsort(list, m, sizeof(dnode_t), dnode_cmp);
    /* the same address twice: the registry holds two records for one
     * instance; the first (by the sort) stands for both */
    size_t k = 0;
    for (size_t i = 0; i < m; i++) {
        if (k > 0 && strcmp(list[k - 1].addr, list[i].addr) == 0) {
            dnode_clear(&list[i]);
            continue;
        }
        list[k++] = list[i];
    }
    if (s->known && dnodes_eq(s->nodes, s->nnodes, list, k)) {
        dnodes_free(list, k);
        return;
    }
    dnodes_free(s->nodes, s->nnodes);
    s->nodes = list;
    s->nnodes = k;
    s->known = 1;
    s->version = d->gen + 1;
    schedule_publish(d);
}

static void
report_nodes(void *arg, size_t target, const gw_disc_node_t *nodes, size_t n)
{
    registry_t *rg = arg;
    gw_disc_t *d = rg->d;
    if (target >= rg->ntargets)
        return;
    source_t *s = &d->sources[rg->target_source[target]];
    if (names_hosts(nodes, n)) {
        raw_keep(s, nodes, n);
    } else if (s->raw) {
        raw_free(s->raw, s->nraw);
        s->raw = NULL;
        s->nraw = 0;
    }
    source_update(d, s, nodes, n);
}

static void
report_state(void *arg, int up, const char *why)
{
    registry_t *rg = arg;
    gw_disc_t *d = rg->d;
    const char *name = d->conf->registries[rg->reg].name;
    up = up ? 1 : 0;
    if (rg->up == up)
        return;
    if (up)
        gw_log(d->log, GW_LOG_INFO, "registry %s: %s", name,
               rg->up < 0 ? "connected" : "answering again");
    else
        gw_log(d->log, GW_LOG_ERROR, "registry %s: unreachable (%s); keeping the last node lists",
               name, why ? why : "error");
    rg->up = up;
    snprintf(rg->why, sizeof(rg->why), "%s", up ? "" : why ? why : "error");
    schedule_publish(d);
}

static void
report_events(void *arg, unsigned n)
{
    registry_t *rg = arg;
    rg->events += n;
    schedule_publish(rg->d);
}

static const gw_disc_report_t report = {report_nodes, report_state, report_events};

static const gw_watcher_ops_t *
watcher_ops(gw_discovery_kind_t kind)
{
    switch (kind) {
    case GW_DISC_ETCD:
        return &gw_etcd_watcher;
    case GW_DISC_CONSUL:
        return &gw_consul_watcher;
    case GW_DISC_DNS:
        return &gw_dns_watcher;
    default:
        return NULL;
    }
}

static void
sources_free(source_t *sources, size_t n)
{
    for (size_t i = 0; sources && i < n; i++) {
        dnodes_free(sources[i].nodes, sources[i].nnodes);
        raw_free(sources[i].raw, sources[i].nraw);
        free(sources[i].upstreams);
    }
    free(sources);
}

/* Sources from the upstreams' discovery blocks of CONF, one per distinct
 * key. */
static int
sources_build(const gw_conf_t *conf, source_t **out, size_t *nout)
{
    source_t *src = calloc(conf->nupstreams ? conf->nupstreams : 1, sizeof(source_t));
    size_t n = 0;
    *out = src;
    *nout = 0;
    if (src == NULL)
        return GW_ERROR;
    for (size_t i = 0; i < conf->nupstreams; i++) {
        const gw_upstream_conf_t *u = &conf->upstreams[i];
        char key[512];
        if (u->discovery.kind == GW_DISC_STATIC ||
            gw_disc_source_key(conf, &u->discovery, key, sizeof(key)) == 0)
            continue;
        size_t j = 0;
        while (j < n && strcmp(src[j].key, key) != 0)
            j++;
        source_t *s = &src[j];
        if (j == n) {
            n++;
            *nout = n;
            memcpy(s->key, key, strlen(key) + 1);
            s->conf = &u->discovery;
            s->reg = u->discovery.reg_index;
            s->upstreams = calloc(conf->nupstreams, sizeof(char *));
            if (s->upstreams == NULL)
                return GW_ERROR;
        }
        s->upstreams[s->nupstreams++] = u->name;
    }
    return GW_OK;
}

static void
registry_free(registry_t *rg)
{
    if (rg == NULL)
        return;
    if (rg->w)
        rg->ops->stop(rg->w);
    free(rg->targets);
    free(rg->target_source);
    free(rg);
}

/* Registry R of CONF with the sources that name it, not started. */
static registry_t *
registry_new(gw_disc_t *d, const gw_conf_t *conf, size_t r, const source_t *src, size_t nsrc)
{
    registry_t *rg = calloc(1, sizeof(*rg));
    if (rg == NULL)
        return NULL;
    rg->d = d;
    rg->reg = r;
    rg->up = -1;
    rg->ops = watcher_ops(conf->registries[r].kind);
    rg->targets = calloc(nsrc ? nsrc : 1, sizeof(*rg->targets));
    rg->target_source = calloc(nsrc ? nsrc : 1, sizeof(size_t));
    if (rg->targets == NULL || rg->target_source == NULL) {
        registry_free(rg);
        return NULL;
    }
    for (size_t s = 0; s < nsrc; s++) {
        if (src[s].reg != r)
            continue;
        rg->targets[rg->ntargets] = src[s].conf;
        rg->target_source[rg->ntargets++] = s;
    }
    return rg;
}

static void
registry_start(gw_disc_t *d, registry_t *rg)
{
    if (rg->ntargets == 0 || rg->ops == NULL || rg->w)
        return;
    rg->w = rg->ops->start(d->loop, d->log, &d->conf->registries[rg->reg], rg->targets,
                           rg->ntargets, &report, rg);
}

static int
registries_start(gw_disc_t *d)
{
    const gw_conf_t *conf = d->conf;
    d->regs = calloc(conf->nregistries ? conf->nregistries : 1, sizeof(registry_t *));
    if (d->regs == NULL)
        return GW_ERROR;
    for (size_t r = 0; r < conf->nregistries; r++) {
        if ((d->regs[r] = registry_new(d, conf, r, d->sources, d->nsources)) == NULL)
            return GW_ERROR;
        d->nregs++;
    }
    for (size_t r = 0; r < d->nregs; r++)
        registry_start(d, d->regs[r]);
    return GW_OK;
}

/* ---- reload in place ---- */

static int
str_eq(const char *a, const char *b)
{
    return a == b || (a && b && strcmp(a, b) == 0);
}

static int
strs_eq(char *const *a, size_t na, char *const *b, size_t nb)
{
    if (na != nb)
        return 0;
    for (size_t i = 0; i < na; i++)
        if (!str_eq(a[i], b[i]))
            return 0;
    return 1;
}

static int
registry_conf_eq(const gw_registry_conf_t *a, const gw_registry_conf_t *b)
{
    return a->kind == b->kind && str_eq(a->name, b->name) &&
           strs_eq(a->endpoints, a->nendpoints, b->endpoints, b->nendpoints) &&
           str_eq(a->username, b->username) && str_eq(a->password, b->password) &&
           str_eq(a->token, b->token) && str_eq(a->dc, b->dc) && str_eq(a->prefix, b->prefix) &&
           a->timeout_ms == b->timeout_ms && a->wait_ms == b->wait_ms &&
           strs_eq(a->nameservers, a->nnameservers, b->nameservers, b->nnameservers) &&
           a->min_ttl_ms == b->min_ttl_ms && a->max_ttl_ms == b->max_ttl_ms;
}

/* The same registry settings and the same watched keys in the same order:
 * the running watcher OLD serves NEW as it is. */
static int
registry_same(const gw_disc_t *d, const registry_t *old, const gw_conf_t *nc, const registry_t *nw,
              const source_t *nsrc)
{
    if (!registry_conf_eq(&d->conf->registries[old->reg], &nc->registries[nw->reg]) ||
        old->ntargets != nw->ntargets)
        return 0;
    for (size_t t = 0; t < old->ntargets; t++)
        if (strcmp(d->sources[old->target_source[t]].key, nsrc[nw->target_source[t]].key) != 0)
            return 0;
    return 1;
}

/* Lists of the old sources move to the new ones of the same key. */
static void
sources_carry(source_t *old, size_t nold, source_t *nsrc, size_t nnew)
{
    for (size_t i = 0; i < nnew; i++) {
        for (size_t j = 0; j < nold; j++) {
            if (strcmp(nsrc[i].key, old[j].key) != 0)
                continue;
            nsrc[i].nodes = old[j].nodes;
            nsrc[i].nnodes = old[j].nnodes;
            nsrc[i].known = old[j].known;
            nsrc[i].version = old[j].version;
            nsrc[i].raw = old[j].raw;
            nsrc[i].nraw = old[j].nraw;
            old[j].nodes = NULL;
            old[j].nnodes = 0;
            old[j].raw = NULL;
            old[j].nraw = 0;
            break;
        }
    }
}

static void
disc_restart(gw_disc_t *d, const char *why)
{
    gw_log(d->log, GW_LOG_INFO, "%s; a new discovery process takes over", why);
    d->restart = 1;
    raise(SIGTERM);
}

/* SIGHUP: the master reloaded. The file is read again; when it is the text
 * the master validated, the watchers of unchanged registries go on and the
 * rest are replaced; otherwise this process gives way to a new one. */
static void
disc_reload(gw_disc_t *d)
{
    gw_conf_errors_t errs = {0};
    gw_conf_t *nc = gw_conf_load(d->conf->file, &errs);
    gw_conf_errors_free(&errs);
    uint64_t want = atomic_load_explicit(&d->shm->head->conf_hash, memory_order_acquire);
    if (nc == NULL || nc->hash != want) {
        gw_conf_free(nc);
        disc_restart(d, "the configuration file is not the one the master loaded");
        return;
    }
    source_t *nsrc = NULL;
    size_t nnsrc = 0;
    registry_t **nregs = calloc(nc->nregistries ? nc->nregistries : 1, sizeof(registry_t *));
    gw_conf_t **olds = realloc(d->old_confs, (d->nold_confs + 1) * sizeof(gw_conf_t *));
    if (olds)
        d->old_confs = olds;
    if (nregs == NULL || olds == NULL || sources_build(nc, &nsrc, &nnsrc) != GW_OK)
        goto restart;
    size_t kept = 0;
    for (size_t r = 0; r < nc->nregistries; r++) {
        if ((nregs[r] = registry_new(d, nc, r, nsrc, nnsrc)) == NULL)
            goto restart;
        for (size_t o = 0; o < d->nregs; o++) {
            registry_t *old = d->regs[o];
            if (old == NULL || !old->w || !registry_same(d, old, nc, nregs[r], nsrc))
                continue;
            /* the running watcher keeps its targets (of the old config,
             * which stays) and reports to the same registry_t */
            memcpy(old->target_source, nregs[r]->target_source, old->ntargets * sizeof(size_t));
            old->reg = r;
            registry_free(nregs[r]);
            nregs[r] = old;
            d->regs[o] = NULL;
            kept++;
            break;
        }
    }
    for (size_t o = 0; o < d->nregs; o++)
        registry_free(d->regs[o]); /* stops watchers that were not kept */
    free(d->regs);
    sources_carry(d->sources, d->nsources, nsrc, nnsrc);
    sources_free(d->sources, d->nsources);
    d->sources = nsrc;
    d->nsources = nnsrc;
    d->regs = nregs;
    d->nregs = nc->nregistries;
    if (d->conf != d->first_conf)
        d->old_confs[d->nold_confs++] = (gw_conf_t *)d->conf;
    d->conf = nc;
    for (size_t r = 0; r < d->nregs; r++)
        registry_start(d, d->regs[r]);
    gw_log(d->log, GW_LOG_INFO, "reloaded; %zu of %zu registr%s kept watching", kept, d->nregs,
           d->nregs == 1 ? "y" : "ies");
    schedule_publish(d);
    return;
restart:
    for (size_t r = 0; nregs && r < nc->nregistries; r++)
        if (nregs[r] && nregs[r]->w == NULL)
            registry_free(nregs[r]);
    free(nregs);
    sources_free(nsrc, nnsrc);
    gw_conf_free(nc);
    disc_restart(d, "out of memory while reloading");
}

/* ---- publishing ---- */

static void
print_json_str(gw_buf_t *b, const char *s)
{
    size_t n = strlen(s);
    gw_buf_reserve(b, 6 * n + 2);
    b->data[b->len++] = '"';
    b->len += gw_json_escape(b->data + b->len, s, n);
    b->data[b->len++] = '"';
}

static void
print_source(gw_buf_t *b, const source_t *s)
{
    char name[sizeof(s->key)];
    snprintf(name, sizeof(name), "%.*s", (int)(strlen(s->key) - SOURCE_PRINT_LEN), s->key);
    b->len = 0;
    gw_buf_append(b, "{\"source\":", 10);
    gw_buf_reserve(b, 16);
    print_json_str(b, name);
    gw_buf_append(b, ",\"upstreams\":[", 14);
    for (size_t i = 0; i < s->nupstreams; i++) {
        if (i)
            gw_buf_append(b, ",", 1);
        print_json_str(b, s->upstreams[i]);
    }
    gw_buf_append(b, "],\"nodes\":[", 11);
    for (size_t i = 0; i < s->nnodes; i++) {
        const dnode_t *n = &s->nodes[i];
        gw_buf_append(b, i ? ",{\"addr\":" : "{\"addr\":", i ? 9 : 8);
        print_json_str(b, n->addr);
        if (n->id) {
            gw_buf_append(b, ",\"id\":", 6);
            print_json_str(b, n->id);
        }
        gw_buf_appendf(b, ",\"weight\":%d,\"meta\":{", n->weight);
        for (size_t j = 0; j < n->nmeta; j++) {
            if (j)
                gw_buf_append(b, ",", 1);
            print_json_str(b, n->meta[j].key);
            gw_buf_append(b, ":", 1);
            print_json_str(b, n->meta[j].value);
        }
        gw_buf_append(b, "}}", 2);
    }
    gw_buf_append(b, "]}\n", 3);
}

/* -d: every source that changed since the last print, then the registry
 * states that changed. */
static void
publish_print(gw_disc_t *d)
{
    for (size_t i = 0; i < d->nsources; i++) {
        source_t *s = &d->sources[i];
        if (s->version != d->gen + 1)
            continue;
        print_source(&d->out, s);
        fwrite(d->out.data, 1, d->out.len, stdout);
    }
    for (size_t r = 0; r < d->nregs; r++) {
        registry_t *rg = d->regs[r];
        if (rg->up < 0)
            continue;
        d->out.len = 0;
        gw_buf_append(&d->out, "{\"registry\":", 12);
        gw_buf_reserve(&d->out, 1);
        print_json_str(&d->out, d->conf->registries[r].name);
        gw_buf_appendf(&d->out, ",\"up\":%s", rg->up ? "true" : "false");
        if (!rg->up) {
            gw_buf_append(&d->out, ",\"why\":", 7);
            print_json_str(&d->out, rg->why);
        }
        gw_buf_append(&d->out, "}\n", 3); /* with the NUL */
        if (strcmp(rg->printed, d->out.data) != 0) {
            snprintf(rg->printed, sizeof(rg->printed), "%s", d->out.data);
            fwrite(d->out.data, 1, d->out.len - 1, stdout);
        }
    }
    for (size_t r = 0; r < d->nregs; r++) {
        registry_t *rg = d->regs[r];
        if (rg->events == rg->printed_events)
            continue;
        rg->printed_events = rg->events;
        d->out.len = 0;
        gw_buf_append(&d->out, "{\"registry\":", 12);
        gw_buf_reserve(&d->out, 1);
        print_json_str(&d->out, d->conf->registries[r].name);
        gw_buf_appendf(&d->out, ",\"events\":%llu}\n", (unsigned long long)rg->events);
        fwrite(d->out.data, 1, d->out.len, stdout);
    }
    fflush(stdout);
}

/* The published state: every registry's state, every source's list.
 * Strings are a u32 length, the bytes and a NUL, so that a reader's copy
 * can hand out C strings. */
static void
put_u32(gw_buf_t *b, uint32_t v)
{
    gw_buf_append(b, &v, sizeof(v));
}

static void
put_u64(gw_buf_t *b, uint64_t v)
{
    gw_buf_append(b, &v, sizeof(v));
}

static void
put_str(gw_buf_t *b, const char *s)
{
    uint32_t n = (uint32_t)strlen(s);
    put_u32(b, n);
    gw_buf_append(b, s, n + 1);
}

static void
serialize(gw_disc_t *d, gw_buf_t *b)
{
    b->len = 0;
    put_u32(b, (uint32_t)d->nregs);
    for (size_t r = 0; r < d->nregs; r++) {
        put_str(b, d->conf->registries[r].name);
        put_u32(b, (uint32_t)(d->regs[r]->up + 1));
        put_u64(b, d->regs[r]->events);
    }
    uint32_t known = 0;
    for (size_t i = 0; i < d->nsources; i++)
        known += d->sources[i].known != 0;
    put_u32(b, known);
    for (size_t i = 0; i < d->nsources; i++) {
        const source_t *s = &d->sources[i];
        if (!s->known)
            continue;
        put_str(b, s->key);
        put_u64(b, s->version);
        put_u32(b, (uint32_t)s->nnodes);
        for (size_t j = 0; j < s->nnodes; j++) {
            const dnode_t *n = &s->nodes[j];
            put_str(b, n->addr);
            put_u32(b, (uint32_t)n->weight);
            put_u32(b, (uint32_t)n->nmeta);
            for (size_t k = 0; k < n->nmeta; k++) {
                put_str(b, n->meta[k].key);
                put_str(b, n->meta[k].value);
            }
        }
    }
}

static void
publish_shm(gw_disc_t *d)
{
    serialize(d, &d->out);
    if (d->out.len > SHM_HALF) {
        gw_log(d->log, GW_LOG_ERROR,
               "the node lists take %zu bytes, more than the %zu the segment holds; "
               "workers keep the previous lists",
               d->out.len, SHM_HALF);
        return;
    }
    shm_write(d->shm, d->gen + 1, d->out.data, d->out.len);
}

static void
on_publish(uv_timer_t *t)
{
    gw_disc_t *d = t->data;
    d->publish_armed = 0;
    if (d->shm)
        publish_shm(d);
    else
        publish_print(d);
    d->gen++;
}

/* Reports of one loop turn (a watch event naming several keys, a registry
 * coming back for every target) make one publication. */
static void
schedule_publish(gw_disc_t *d)
{
    if (d->publish_armed)
        return;
    d->publish_armed = 1;
    uv_timer_start(&d->publish, on_publish, 0, 0);
}

/* ---- the reader ---- */

typedef struct {
    const char *key;
    uint64_t version;
    gw_disc_entry_t *entries;
    size_t n;
} rsource_t;

typedef struct {
    const char *name;
    int state; /* -1 unknown, 0 down, 1 up */
    uint64_t events;
} rreg_t;

struct gw_disc_reader_s {
    gw_disc_shm_t *shm;
    uint64_t gen; /* the generation read last; 0: none yet */
    char *copy;
    size_t len;
    rsource_t *sources;
    size_t nsources;
    rreg_t *regs;
    size_t nregs;
    gw_disc_entry_t *entries;
    gw_kv_t *kvs;
};

gw_disc_reader_t *
gw_disc_reader_new(gw_disc_shm_t *shm)
{
    if (shm == NULL)
        return NULL;
    gw_disc_reader_t *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return NULL;
    r->shm = shm;
    r->copy = malloc(SHM_HALF);
    if (r->copy == NULL) {
        free(r);
        return NULL;
    }
    return r;
}

static void
reader_clear(gw_disc_reader_t *r)
{
    free(r->sources);
    free(r->regs);
    free(r->entries);
    free(r->kvs);
    r->sources = NULL;
    r->regs = NULL;
    r->entries = NULL;
    r->kvs = NULL;
    r->nsources = r->nregs = 0;
}

void
gw_disc_reader_free(gw_disc_reader_t *r)
{
    if (r == NULL)
        return;
    reader_clear(r);
    free(r->copy);
    free(r);
}

/* A cursor over the copy; every read is bounds-checked, since a torn copy
 * is only detected after the fact. */
typedef struct {
    const char *p, *end;
    int bad;
} cur_t;

static void
get_raw(cur_t *c, void *out, size_t n)
{
    if ((size_t)(c->end - c->p) < n) {
        c->bad = 1;
        memset(out, 0, n);
        return;
    }
    memcpy(out, c->p, n);
    c->p += n;
}

static uint32_t
get_u32(cur_t *c)
{
    uint32_t v;
    get_raw(c, &v, sizeof(v));
    return v;
}

static uint64_t
get_u64(cur_t *c)
{
    uint64_t v;
    get_raw(c, &v, sizeof(v));
    return v;
}

static char *
get_str(cur_t *c)
{
    uint32_t n = get_u32(c);
    if (c->bad || (size_t)(c->end - c->p) < (size_t)n + 1 || c->p[n] != '\0') {
        c->bad = 1;
        return NULL;
    }
    char *s = (char *)c->p;
    c->p += n + 1;
    return s;
}

/* Counts first, so each kind of record is one allocation. */
static int
parse_counts(const char *data, size_t len, size_t *nentries, size_t *nkvs)
{
    cur_t c = {data, data + len, 0};
    uint32_t nregs = get_u32(&c);
    for (uint32_t i = 0; i < nregs && !c.bad; i++) {
        get_str(&c);
        get_u32(&c);
        get_u64(&c);
    }
    uint32_t ns = get_u32(&c);
    *nentries = *nkvs = 0;
    for (uint32_t i = 0; i < ns && !c.bad; i++) {
        get_str(&c);
        get_u64(&c);
        uint32_t nn = get_u32(&c);
        for (uint32_t j = 0; j < nn && !c.bad; j++) {
            get_str(&c);
            get_u32(&c);
            uint32_t nm = get_u32(&c);
            for (uint32_t k = 0; k < nm && !c.bad; k++) {
                get_str(&c);
                get_str(&c);
            }
            *nkvs += nm;
        }
        *nentries += nn;
    }
    return c.bad ? GW_ERROR : GW_OK;
}

static int
parse_state(gw_disc_reader_t *r)
{
    size_t ne, nk;
    if (parse_counts(r->copy, r->len, &ne, &nk) != GW_OK)
        return GW_ERROR;
    cur_t c = {r->copy, r->copy + r->len, 0};
    uint32_t nregs = get_u32(&c);
    r->regs = calloc(nregs ? nregs : 1, sizeof(rreg_t));
    r->entries = calloc(ne ? ne : 1, sizeof(gw_disc_entry_t));
    r->kvs = calloc(nk ? nk : 1, sizeof(gw_kv_t));
    if (r->regs == NULL || r->entries == NULL || r->kvs == NULL)
        return GW_ERROR;
    for (uint32_t i = 0; i < nregs; i++) {
        rreg_t *g = &r->regs[r->nregs++];
        g->name = get_str(&c);
        g->state = (int)get_u32(&c) - 1;
        g->events = get_u64(&c);
    }
    uint32_t ns = get_u32(&c);
    r->sources = calloc(ns ? ns : 1, sizeof(rsource_t));
    if (r->sources == NULL)
        return GW_ERROR;
    size_t ei = 0, ki = 0;
    for (uint32_t i = 0; i < ns; i++) {
        rsource_t *s = &r->sources[r->nsources++];
        s->key = get_str(&c);
        s->version = get_u64(&c);
        s->n = get_u32(&c);
        s->entries = s->n ? &r->entries[ei] : NULL;
        for (size_t j = 0; j < s->n; j++) {
            gw_disc_entry_t *e = &r->entries[ei++];
            e->addr = get_str(&c);
            e->weight = (int)get_u32(&c);
            e->nmeta = get_u32(&c);
            e->meta = &r->kvs[ki];
            for (size_t k = 0; k < e->nmeta; k++) {
                r->kvs[ki].key = get_str(&c);
                r->kvs[ki].value = get_str(&c);
                ki++;
            }
            if (c.bad || gw_conf_numeric_addr(e->addr, 0, &e->sa, &e->salen) != GW_OK)
                return GW_ERROR;
        }
    }
    return c.bad ? GW_ERROR : GW_OK;
}

int
gw_disc_read(gw_disc_reader_t *r)
{
    shm_head_t *h = r->shm->head;
    for (int attempt = 0; attempt < 8; attempt++) {
        uint64_t g1 = atomic_load_explicit(&h->gen, memory_order_acquire);
        if (g1 == r->gen || g1 == 0)
            return 0;
        size_t len = atomic_load_explicit(&h->len[g1 & 1], memory_order_relaxed);
        if (len > SHM_HALF)
            continue;
        memcpy(r->copy, r->shm->half[g1 & 1], len);
        atomic_thread_fence(memory_order_acquire);
        uint64_t w = atomic_load_explicit(&h->writing, memory_order_relaxed);
        if (w - g1 >= 2)
            continue; /* the writer came round to this half while it was copied */
        reader_clear(r);
        r->len = len;
        if (parse_state(r) != GW_OK) {
            reader_clear(r);
            continue;
        }
        r->gen = g1;
        return 1;
    }
    return 0;
}

int
gw_disc_lookup(gw_disc_reader_t *r, const char *key, const gw_disc_entry_t **entries, size_t *n,
               uint64_t *version)
{
    for (size_t i = 0; r && i < r->nsources; i++) {
        if (strcmp(r->sources[i].key, key) == 0) {
            *entries = r->sources[i].entries;
            *n = r->sources[i].n;
            *version = r->sources[i].version;
            return 1;
        }
    }
    return 0;
}

int
gw_disc_registry_state(gw_disc_reader_t *r, const char *name, uint64_t *events)
{
    for (size_t i = 0; r && i < r->nregs; i++) {
        if (strcmp(r->regs[i].name, name) == 0) {
            *events = r->regs[i].events;
            return r->regs[i].state;
        }
    }
    *events = 0;
    return -1;
}

/* ---- running ---- */

/* A discovery process started after a reload or a crash begins from what
 * its predecessor published: lists of sources it still has stay in use
 * until its own watchers report. */
static void
carry_over(gw_disc_t *d)
{
    gw_disc_reader_t *r = gw_disc_reader_new(d->shm);
    if (r == NULL)
        return;
    d->gen = atomic_load_explicit(&d->shm->head->gen, memory_order_acquire);
    if (gw_disc_read(r) == 1) {
        for (size_t i = 0; i < d->nsources; i++) {
            source_t *s = &d->sources[i];
            const gw_disc_entry_t *e;
            size_t n;
            uint64_t version;
            if (!gw_disc_lookup(r, s->key, &e, &n, &version))
                continue;
            s->nodes = calloc(n ? n : 1, sizeof(dnode_t));
            if (s->nodes == NULL)
                continue;
            for (size_t j = 0; j < n; j++) {
                dnode_t *dn = &s->nodes[s->nnodes];
                dn->addr = strdup(e[j].addr);
                dn->weight = e[j].weight;
                dn->meta = calloc(e[j].nmeta ? e[j].nmeta : 1, sizeof(gw_kv_t));
                for (size_t k = 0; dn->meta && k < e[j].nmeta; k++) {
                    dn->meta[k].key = strdup(e[j].meta[k].key);
                    dn->meta[k].value = strdup(e[j].meta[k].value);
                    dn->nmeta++;
                }
                s->nnodes++;
            }
            s->known = 1;
            s->version = version;
        }
    }
    gw_disc_reader_free(r);
}

static void
on_stop_signal(uv_signal_t *h, int signum)
{
    gw_disc_t *d = h->data;
    for (size_t r = 0; r < d->nregs; r++) {
        if (d->regs[r] && d->regs[r]->w)
            d->regs[r]->ops->stop(d->regs[r]->w);
        if (d->regs[r])
            d->regs[r]->w = NULL;
    }
    gw_resolver_free(d->resolver);
    d->resolver = NULL;
    uv_close((uv_handle_t *)&d->names_timer, NULL);
    uv_close((uv_handle_t *)&d->publish, NULL);
    uv_close((uv_handle_t *)&d->sig_term, NULL);
    uv_close((uv_handle_t *)&d->sig_int, NULL);
    uv_close((uv_handle_t *)&d->sig_quit, NULL);
    uv_close((uv_handle_t *)&d->sig_hup, NULL);
    uv_close((uv_handle_t *)&d->sig_usr1, NULL);
}

/* SIGUSR1: logrotate (the master passes it on, as to the workers);
 * SIGHUP: the master reloaded */
static void
on_signal(uv_signal_t *h, int signum)
{
    gw_disc_t *d = h->data;
    if (signum == SIGUSR1)
        gw_log_reopen(d->log);
    else if (signum == SIGHUP && d->shm)
        disc_reload(d);
}

static void
disc_free(gw_disc_t *d)
{
    sources_free(d->sources, d->nsources);
    for (size_t r = 0; d->regs && r < d->nregs; r++)
        registry_free(d->regs[r]);
    free(d->regs);
    names_free(d);
    gw_buf_free(&d->out);
    if (d->conf != d->first_conf)
        gw_conf_free((gw_conf_t *)d->conf);
    for (size_t i = 0; i < d->nold_confs; i++)
        gw_conf_free(d->old_confs[i]);
    free(d->old_confs);
}

static int
disc_main(const gw_conf_t *conf, gw_disc_shm_t *shm, gw_log_t *log)
{
    uv_loop_t loop;
    gw_disc_t d;
    memset(&d, 0, sizeof(d));
    if (uv_loop_init(&loop) != 0)
        return 1;
    d.loop = &loop;
    d.conf = d.first_conf = conf;
    d.log = log;
    d.shm = shm;
    uv_timer_init(&loop, &d.publish);
    d.publish.data = &d;
    uv_timer_init(&loop, &d.names_timer);
    d.names_timer.data = &d;
    uv_unref((uv_handle_t *)&d.names_timer);
    uv_signal_init(&loop, &d.sig_term);
    uv_signal_init(&loop, &d.sig_int);
    uv_signal_init(&loop, &d.sig_quit);
    uv_signal_init(&loop, &d.sig_hup);
    uv_signal_init(&loop, &d.sig_usr1);
    d.sig_term.data = d.sig_int.data = d.sig_quit.data = d.sig_hup.data = d.sig_usr1.data = &d;
    uv_signal_start(&d.sig_term, on_stop_signal, SIGTERM);
    uv_signal_start(&d.sig_int, on_stop_signal, SIGINT);
    uv_signal_start(&d.sig_quit, on_stop_signal, SIGQUIT);
    uv_signal_start(&d.sig_hup, on_signal, SIGHUP);
    uv_signal_start(&d.sig_usr1, on_signal, SIGUSR1);
    int rc = 1;
    if (sources_build(conf, &d.sources, &d.nsources) == GW_OK) {
        if (shm) {
            carry_over(&d);
            /* at once: lists of sources this configuration no longer has
             * leave the segment, or a later reload that brings them back
             * would route over them as if they were current */
            schedule_publish(&d);
        }
        if (registries_start(&d) == GW_OK) {
            uv_run(&loop, UV_RUN_DEFAULT);
            rc = d.restart ? 3 : 0;
        } else {
            gw_log(log, GW_LOG_ERROR, "out of memory");
            on_stop_signal(&d.sig_term, SIGTERM);
            uv_run(&loop, UV_RUN_DEFAULT);
        }
    }
    disc_free(&d);
    uv_loop_close(&loop);
    return rc;
}

int
gw_disc_run(const gw_conf_t *conf, gw_disc_shm_t *shm, gw_log_t *log)
{
    return disc_main(conf, shm, log);
}

int
gw_disc_print(const gw_conf_t *conf, gw_log_t *log)
{
    return disc_main(conf, NULL, log);
}
