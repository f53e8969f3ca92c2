/*
 * The DNS watcher: each target's node list from DNS records, asked again
 * when their TTL runs out.
 *
 * - `host` + `port`: the A and AAAA records of host, one node per address,
 *   the configured port, weight 1.
 * - `srv`: the SRV records of the name. Only the lowest priority present is
 *   used (the others are fallbacks a client turns to when those fail, and
 *   the gateway's health checks and retries play that part). Port and
 *   weight come from each record (weight 0 counts as 1); each target's
 *   addresses come from the additional section when the server sent them
 *   there, else from A and AAAA questions. A target "." (the service is
 *   not offered) gives no node.
 *
 * A target is asked again at the smallest TTL of its answer, clamped to the
 * registry's [min_ttl, max_ttl]; an empty answer (NXDOMAIN, or the name
 * without such records) at the negative TTL of the SOA the server sent
 * with it, else min_ttl, clamped the same way. An empty answer is an
 * answer: the list becomes empty, as when Kubernetes scales a headless
 * service to zero. A failure (timeout, SERVFAIL, REFUSED, a malformed
 * answer) reports nothing, so the last list stays, marks the registry down
 * and is retried after 1 s, doubling up to max_ttl. Lists are sorted, so an
 * answer that only reorders the records reports nothing new.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gw_log.h"
#include "gw_resolver.h"
#include "gw_watch.h"

#define MAX_NODES 1024    /* per target, after sorting */
#define MAX_GATHERED 4096 /* per target, before */
#define MAX_SRV 256       /* SRV records of one priority followed */
#define BACKOFF_FIRST_MS 1000

typedef struct {
    char host[INET6_ADDRSTRLEN];
    int port, weight;
    char *id; /* the name the address came from */
} node_t;

typedef struct {
    node_t *v;
    size_t n, cap;
} nodes_t;

typedef struct target_s target_t;

/* One SRV record whose target's addresses are asked. */
typedef struct {
    target_t *t;
    char *name;
    int port, weight;
    size_t found; /* addresses its two answers gave */
    int answers;
} sub_t;

typedef struct dns_s dns_t;

struct target_s {
    dns_t *w;
    size_t index;
    const gw_discovery_conf_t *d;
    uv_timer_t timer;

    /* the round under way */
    int pending; /* questions out */
    int failed;
    char why[160];
    nodes_t got;
    uint32_t ttl; /* smallest TTL seen, seconds; UINT32_MAX: none */
    int64_t neg_ttl;
    sub_t *subs;
    size_t nsubs;
    char *unresolved; /* an SRV target without addresses, for the log */

    nodes_t last; /* the list reported last */
    int reported;
    int ok; /* the last round answered (1 before the first) */
    char last_why[160];
    uint64_t backoff_ms;
};

struct dns_s {
    uv_loop_t *loop;
    gw_log_t *log;
    const gw_registry_conf_t *reg;
    gw_resolver_t *res;
    const gw_disc_report_t *report;
    void *arg;
    target_t *targets;
    size_t ntargets;
    int open_timers;
    int stopped;
};

static void start_round(target_t *t);

/* ---- node lists ---- */

static void
nodes_clear(nodes_t *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i].id);
    free(l->v);
    memset(l, 0, sizeof(*l));
}

static int
add_node(target_t *t, const struct sockaddr_storage *sa, int port, int weight, const char *id)
{
    nodes_t *l = &t->got;
    if (l->n >= MAX_GATHERED)
        return 0;
    if (l->n == l->cap) {
        size_t ncap = l->cap ? l->cap * 2 : 8;
        node_t *v = realloc(l->v, ncap * sizeof(*v));
        if (v == NULL)
            return -1;
        l->v = v;
        l->cap = ncap;
    }
    node_t *nd = &l->v[l->n];
    const void *a = sa->ss_family == AF_INET
                        ? (const void *)&((const struct sockaddr_in *)sa)->sin_addr
                        : (const void *)&((const struct sockaddr_in6 *)sa)->sin6_addr;
    if (inet_ntop(sa->ss_family, a, nd->host, sizeof(nd->host)) == NULL)
        return 0;
    nd->port = port;
    nd->weight = weight;
    nd->id = strdup(id);
    if (nd->id == NULL)
        return -1;
    l->n++;
    return 0;
}

static int
node_cmp(const void *a, const void *b)
{
    const node_t *x = a, *y = b;
    int c = strcmp(x->host, y->host);
    if (c)
        return c;
    if (x->port != y->port)
        return x->port < y->port ? -1 : 1;
    if (x->weight != y->weight) /* the heaviest first: it stays when deduplicated */
        return x->weight > y->weight ? -1 : 1;
    return strcmp(x->id, y->id);
}

/* Sorted, one node per address and port, at most MAX_NODES. */
static void
normalise(target_t *t)
{
    nodes_t *l = &t->got;
    size_t k = 0;
    if (l->n > 1)
        qsort(l->v, l->n, sizeof(*l->v), node_cmp);
    for (size_t i = 0; i < l->n; i++) {
        if (k > 0 && strcmp(l->v[k - 1].host, l->v[i].host) == 0 &&
            l->v[k - 1].port == l->v[i].port) {
            free(l->v[i].id);
            continue;
        }
        l->v[k++] = l->v[i];
    }
    l->n = k;
    if (l->n > MAX_NODES) {
        gw_log(t->w->log, GW_LOG_WARN, "registry %s: %s: %zu addresses, only the first %d kept",
               t->w->reg->name, t->d->host ? t->d->host : t->d->srv, l->n, MAX_NODES);
        for (size_t i = MAX_NODES; i < l->n; i++)
            free(l->v[i].id);
        l->n = MAX_NODES;
    }
}

static int
same_nodes(const nodes_t *a, const nodes_t *b)
{
    if (a->n != b->n)
        return 0;
    for (size_t i = 0; i < a->n; i++)
        if (strcmp(a->v[i].host, b->v[i].host) != 0 || a->v[i].port != b->v[i].port ||
            a->v[i].weight != b->v[i].weight)
            return 0;
    return 1;
}

/* ---- one round: questions, then the report ---- */

static const char *
what(const target_t *t)
{
    return t->d->host ? t->d->host : t->d->srv;
}

static void
note_ttl(target_t *t, uint32_t ttl)
{
    if (ttl < t->ttl)
        t->ttl = ttl;
}

static void
fail(target_t *t, const char *name, const char *why)
{
    if (!t->failed)
        snprintf(t->why, sizeof(t->why), "%s: %s", name, why ? why : "failed");
    t->failed = 1;
}

static void
round_reset(target_t *t)
{
    nodes_clear(&t->got);
    for (size_t i = 0; i < t->nsubs; i++)
        free(t->subs[i].name);
    free(t->subs);
    t->subs = NULL;
    t->nsubs = 0;
    free(t->unresolved);
    t->unresolved = NULL;
    t->pending = 0;
    t->failed = 0;
    t->why[0] = '\0';
    t->ttl = UINT32_MAX;
    t->neg_ttl = -1;
}

static uint64_t
clamp_ms(const target_t *t, uint64_t ms)
{
    const gw_registry_conf_t *reg = t->w->reg;
    if (ms < reg->min_ttl_ms)
        return reg->min_ttl_ms;
    return ms > reg->max_ttl_ms ? reg->max_ttl_ms : ms;
}

/* The registry is up when no target's last round failed. */
static void
report_state(dns_t *w)
{
    for (size_t i = 0; i < w->ntargets; i++)
        if (!w->targets[i].ok) {
            w->report->state(w->arg, 0, w->targets[i].last_why);
            return;
        }
    w->report->state(w->arg, 1, NULL);
}

static void
on_timer(uv_timer_t *h)
{
    start_round(h->data);
}

static void
report_nodes(target_t *t)
{
    dns_t *w = t->w;
    gw_disc_node_t *v = calloc(t->last.n ? t->last.n : 1, sizeof(*v));
    if (v == NULL) {
        gw_log(w->log, GW_LOG_ERROR, "registry %s: out of memory", w->reg->name);
        return;
    }
    for (size_t i = 0; i < t->last.n; i++) {
        v[i].host = t->last.v[i].host;
        v[i].port = t->last.v[i].port;
        v[i].weight = t->last.v[i].weight;
        v[i].id = t->last.v[i].id;
    }
    w->report->nodes(w->arg, t->index, v, t->last.n);
    free(v);
}

static void
finish_failed(target_t *t)
{
    dns_t *w = t->w;
    const gw_registry_conf_t *reg = w->reg;
    if (t->ok || strcmp(t->last_why, t->why) != 0)
        gw_log(w->log, GW_LOG_WARN, "registry %s: %s (the last list stays)", reg->name, t->why);
    t->ok = 0;
    snprintf(t->last_why, sizeof(t->last_why), "%s", t->why);
    t->backoff_ms = t->backoff_ms ? t->backoff_ms * 2 : BACKOFF_FIRST_MS;
    if (t->backoff_ms > reg->max_ttl_ms)
        t->backoff_ms = reg->max_ttl_ms;
    uint64_t next = t->backoff_ms;
    round_reset(t);
    report_state(w);
    if (!w->stopped)
        uv_timer_start(&t->timer, on_timer, next, 0);
}

static void
finish(target_t *t)
{
    dns_t *w = t->w;
    if (t->failed) {
        finish_failed(t);
        return;
    }
    normalise(t);
    uint64_t next;
    if (t->ttl != UINT32_MAX)
        next = (uint64_t)t->ttl * 1000;
    else
        next = t->neg_ttl >= 0 ? (uint64_t)t->neg_ttl * 1000 : w->reg->min_ttl_ms;
    next = clamp_ms(t, next);
    int changed = !t->reported || !same_nodes(&t->got, &t->last);
    if (changed) {
        if (t->unresolved)
            gw_log(w->log, GW_LOG_WARN, "registry %s: %s: SRV target %s has no address",
                   w->reg->name, t->d->srv, t->unresolved);
        gw_log(w->log, GW_LOG_INFO, "registry %s: %s: %zu node%s", w->reg->name, what(t), t->got.n,
               t->got.n == 1 ? "" : "s");
        nodes_clear(&t->last);
        t->last = t->got;
        memset(&t->got, 0, sizeof(t->got));
    }
    int was_reported = t->reported;
    t->reported = 1;
    t->ok = 1;
    t->last_why[0] = '\0';
    t->backoff_ms = 0;
    round_reset(t);
    if (changed) {
        report_nodes(t);
        if (was_reported && !w->stopped)
            w->report->events(w->arg, 1);
    }
    if (!w->stopped)
        report_state(w);
    if (!w->stopped)
        uv_timer_start(&t->timer, on_timer, next, 0);
}

static void
done_one(target_t *t)
{
    if (--t->pending == 0)
        finish(t);
}

/* A and AAAA records of an answer become nodes. */
static void
take_addrs(target_t *t, const gw_resolver_result_t *res, int port, int weight, const char *id,
           size_t *found)
{
    for (size_t i = 0; i < res->n; i++) {
        const gw_resolver_rr_t *rr = &res->rrs[i];
        if (rr->additional || (rr->type != GW_RR_A && rr->type != GW_RR_AAAA))
            continue;
        note_ttl(t, rr->ttl);
        if (add_node(t, &rr->sa, port, weight, id) != 0)
            fail(t, id, "out of memory");
        else if (found)
            (*found)++;
    }
    if (res->n == 0 && res->neg_ttl >= 0 && (t->neg_ttl < 0 || res->neg_ttl < t->neg_ttl))
        t->neg_ttl = res->neg_ttl;
}

static void
on_host_answer(void *arg, const gw_resolver_result_t *res)
{
    target_t *t = arg;
    if (res->status < 0)
        fail(t, t->d->host, res->why);
    else
        take_addrs(t, res, t->d->port, 1, t->d->host, NULL);
    done_one(t);
}

static void
on_sub_answer(void *arg, const gw_resolver_result_t *res)
{
    sub_t *s = arg;
    target_t *t = s->t;
    if (res->status < 0)
        fail(t, s->name, res->why);
    else
        take_addrs(t, res, s->port, s->weight, s->name, &s->found);
    if (++s->answers == 2 && s->found == 0 && t->unresolved == NULL)
        t->unresolved = strdup(s->name);
    done_one(t);
}

static void
ask(target_t *t, const char *name, int type, gw_resolver_cb cb, void *arg)
{
    t->pending++;
    if (gw_resolver_query(t->w->res, name, type, cb, arg) == NULL) {
        fail(t, name, "out of memory");
        t->pending--;
    }
}

/* The addresses of an SRV record's target: in the additional section, a
 * literal, or asked. */
static void
follow_srv(target_t *t, const gw_resolver_result_t *res, const gw_resolver_rr_t *srv, sub_t *sub)
{
    int weight = srv->weight < 1 ? 1 : srv->weight; /* 16 bits: never above the limit */
    struct sockaddr_storage sa;
    socklen_t salen;
    size_t found = 0;
    note_ttl(t, srv->ttl);
    if (gw_resolver_ip_sa(srv->target, 0, &sa, &salen) == 0) {
        if (add_node(t, &sa, srv->port, weight, srv->target) != 0)
            fail(t, srv->target, "out of memory");
        return;
    }
    for (size_t i = 0; i < res->n; i++) {
        const gw_resolver_rr_t *rr = &res->rrs[i];
        if (!rr->additional || strcmp(rr->name, srv->target) != 0)
            continue;
        note_ttl(t, rr->ttl);
        if (add_node(t, &rr->sa, srv->port, weight, srv->target) != 0)
            fail(t, srv->target, "out of memory");
        found++;
    }
    if (found > 0)
        return;
    sub->t = t;
    sub->name = strdup(srv->target);
    sub->port = srv->port;
    sub->weight = weight;
    t->nsubs++;
    if (sub->name == NULL) {
        fail(t, srv->target, "out of memory");
        return;
    }
    ask(t, sub->name, GW_RR_A, on_sub_answer, sub);
    ask(t, sub->name, GW_RR_AAAA, on_sub_answer, sub);
}

static void
on_srv_answer(void *arg, const gw_resolver_result_t *res)
{
    target_t *t = arg;
    size_t nsrv = 0;
    int prio = -1;
    if (res->status < 0) {
        fail(t, t->d->srv, res->why);
        done_one(t);
        return;
    }
    for (size_t i = 0; i < res->n; i++) {
        const gw_resolver_rr_t *rr = &res->rrs[i];
        if (rr->type == GW_RR_SRV && !rr->additional && (prio < 0 || rr->priority < prio))
            prio = rr->priority;
    }
    for (size_t i = 0; i < res->n; i++)
        if (res->rrs[i].type == GW_RR_SRV && !res->rrs[i].additional &&
            res->rrs[i].priority == prio)
            nsrv++;
    if (nsrv > MAX_SRV) {
        gw_log(t->w->log, GW_LOG_WARN, "registry %s: %s: %zu SRV records, only %d followed",
               t->w->reg->name, t->d->srv, nsrv, MAX_SRV);
        nsrv = MAX_SRV;
    }
    if (res->n == 0 && res->neg_ttl >= 0)
        t->neg_ttl = res->neg_ttl;
    t->subs = nsrv ? calloc(nsrv, sizeof(*t->subs)) : NULL;
    if (nsrv && t->subs == NULL)
        fail(t, t->d->srv, "out of memory");
    size_t followed = 0;
    for (size_t i = 0; i < res->n && t->subs && followed < nsrv; i++) {
        const gw_resolver_rr_t *rr = &res->rrs[i];
        if (rr->type != GW_RR_SRV || rr->additional || rr->priority != prio)
            continue;
        followed++;
        if (rr->target[0] == '\0') { /* "." : no service here */
            note_ttl(t, rr->ttl);
            continue;
        }
        follow_srv(t, res, rr, &t->subs[t->nsubs]);
    }
    done_one(t);
}

static void
start_round(target_t *t)
{
    round_reset(t);
    t->pending = 1; /* held until every question is out */
    if (t->d->host) {
        ask(t, t->d->host, GW_RR_A, on_host_answer, t);
        ask(t, t->d->host, GW_RR_AAAA, on_host_answer, t);
    } else {
        ask(t, t->d->srv, GW_RR_SRV, on_srv_answer, t);
    }
    done_one(t);
}

/* ---- the watcher ---- */

static void
on_timer_closed(uv_handle_t *h)
{
    target_t *t = h->data;
    dns_t *w = t->w;
    if (--w->open_timers == 0) {
        free(w->targets);
        free(w);
    }
}

static void
stop(void *p)
{
    dns_t *w = p;
    if (w == NULL || w->stopped)
        return;
    w->stopped = 1;
    gw_resolver_free(w->res);
    w->res = NULL;
    for (size_t i = 0; i < w->ntargets; i++) {
        target_t *t = &w->targets[i];
        round_reset(t);
        nodes_clear(&t->last);
        uv_timer_stop(&t->timer);
        uv_close((uv_handle_t *)&t->timer, on_timer_closed);
    }
    if (w->ntargets == 0) {
        free(w->targets);
        free(w);
    }
}

static void *
start(uv_loop_t *loop, gw_log_t *log, const gw_registry_conf_t *reg,
      const gw_discovery_conf_t *const *targets, size_t ntargets, const gw_disc_report_t *report,
      void *arg)
{
    char err[256];
    dns_t *w = calloc(1, sizeof(*w));
    if (w == NULL || (w->targets = calloc(ntargets ? ntargets : 1, sizeof(target_t))) == NULL) {
        free(w);
        gw_log(log, GW_LOG_ERROR, "registry %s: out of memory", reg->name);
        return NULL;
    }
    gw_resolver_opts_t o = {.nameservers = (const char *const *)reg->nameservers,
                            .nnameservers = reg->nnameservers,
                            .timeout_ms = reg->timeout_ms};
    w->res = gw_resolver_new(loop, &o, err, sizeof(err));
    if (w->res == NULL) {
        gw_log(log, GW_LOG_ERROR, "registry %s: %s", reg->name, err);
        free(w->targets);
        free(w);
        return NULL;
    }
    w->loop = loop;
    w->log = log;
    w->reg = reg;
    w->report = report;
    w->arg = arg;
    w->ntargets = ntargets;
    for (size_t i = 0; i < ntargets; i++) {
        target_t *t = &w->targets[i];
        t->w = w;
        t->index = i;
        t->d = targets[i];
        t->ok = 1;
        uv_timer_init(loop, &t->timer);
        t->timer.data = t;
        w->open_timers++;
    }
    for (size_t i = 0; i < ntargets && !w->stopped; i++)
        start_round(&w->targets[i]);
    return w;
}

const gw_watcher_ops_t gw_dns_watcher = {GW_DISC_DNS, start, stop};
