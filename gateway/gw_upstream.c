/* Upstream nodes, keep-alive pools and upstream connections. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>

#include "gw_balancer.h"
#include "gw_disc.h"
#include "gw_log.h"
#include "gw_split.h"
#include "gw_upstream.h"
#include "gw_breaker.h"
#include "gw_edge.h"
#include "gw_shstate.h"
#include "gw_tls_client.h"

enum { UP_CONNECTING = 1, UP_ACTIVE, UP_IDLE };

typedef struct {
    gw_link_t idle;
    unsigned nidle;
    gw_tlsc_cache_t tls_cache; /* https: the node's last session, to resume */
    gw_link_t retired;         /* in its set's retired list: removed, still referenced */
    gw_node_t *node;
} node_pool_t;

/* ---- runtime construction ---- */

/* The nodes of T's upstream that T's subset selects, into a new array. */
static gw_node_t **
target_select(const gw_target_t *t, size_t *n)
{
    const gw_upstream_rt_t *up = t->up;
    gw_node_t **nodes = calloc(up->nnodes ? up->nnodes : 1, sizeof(gw_node_t *));
    *n = 0;
    if (nodes == NULL)
        return NULL;
    for (size_t i = 0; i < up->nnodes; i++) {
        if (t->nsubset == 0 || gw_subset_match(up->nodes[i]->conf, t->subset, t->nsubset))
            nodes[(*n)++] = up->nodes[i];
    }
    return nodes;
}

static int
target_init(gw_target_t *t, gw_upstream_rt_t *up, const gw_kv_t *subset, size_t nsubset,
            uint64_t seed)
{
    t->up = up;
    t->subset = subset;
    t->nsubset = nsubset;
    t->nodes = target_select(t, &t->nnodes);
    if (t->nodes == NULL)
        return GW_ERROR;
    t->bal = gw_balancer_new(up->conf->balancer, t->nodes, t->nnodes, seed);
    return t->bal ? GW_OK : GW_ERROR;
}

/* After the upstream's nodes changed: the balancer keeps the state of the
 * nodes that stay (gw_balancer_update). */
static int
target_refresh(gw_target_t *t)
{
    size_t n;
    gw_node_t **nodes = target_select(t, &n);
    if (nodes == NULL || gw_balancer_update(t->bal, nodes, n) != GW_OK) {
        free(nodes);
        return GW_ERROR;
    }
    free(t->nodes);
    t->nodes = nodes;
    t->nnodes = n;
    return GW_OK;
}

/* ---- nodes ---- */

static void
node_conf_free(gw_node_conf_t *c)
{
    if (c == NULL)
        return;
    free(c->addr);
    free(c->host);
    for (size_t i = 0; i < c->nmeta; i++) {
        free(c->meta[i].key);
        free(c->meta[i].value);
    }
    free(c->meta);
    free(c);
}

/* A discovered node's conf, copied out of the reader's entries (which
 * change with the next generation). */
static gw_node_conf_t *
node_conf_from(const gw_disc_entry_t *e)
{
    gw_node_conf_t *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->addr = strdup(e->addr);
    c->meta = calloc(e->nmeta ? e->nmeta : 1, sizeof(gw_kv_t));
    if (c->addr == NULL || c->meta == NULL)
        goto failed;
    const char *colon = strrchr(e->addr, ':');
    size_t hl = (size_t)(colon - e->addr);
    const char *h = e->addr;
    if (h[0] == '[') {
        h++;
        hl -= 2;
    }
    c->host = strndup(h, hl);
    if (c->host == NULL)
        goto failed;
    c->port = atoi(colon + 1);
    c->sa = e->sa;
    c->salen = e->salen;
    c->weight = e->weight;
    for (size_t i = 0; i < e->nmeta; i++) {
        c->meta[i].key = strdup(e->meta[i].key);
        c->meta[i].value = strdup(e->meta[i].value);
        c->nmeta++;
        if (c->meta[i].key == NULL || c->meta[i].value == NULL)
            goto failed;
    }
    return c;
failed:
    node_conf_free(c);
    return NULL;
}

/* The instance's breaker for KEY, or this worker's own when the shared
 * table has no room (logged: its decisions are then per worker). */
static gw_breaker_t *
shared_breaker(gw_upstreams_t *set, const char *key, const gw_breaker_conf_t *conf)
{
    int shared;
    gw_breaker_t *b = gw_shstate_breaker(set->sh, key, conf, &shared);
    if (b && set->sh && !shared)
        gw_log(set->log, GW_LOG_WARN,
               "breaker %s: no shared slot (table full, or more than %d buckets): this worker "
               "decides alone",
               key, GW_SH_BUCKETS);
    return b;
}

/* OWN: a discovered node's conf, which the node then owns. */
static gw_node_t *
node_new(gw_upstream_rt_t *up, const gw_node_conf_t *conf, gw_node_conf_t *own)
{
    gw_node_t *node = calloc(1, sizeof(*node));
    node_pool_t *pool = calloc(1, sizeof(*pool));
    if (node == NULL || pool == NULL)
        goto failed;
    gw_list_init(&pool->idle);
    gw_list_init(&pool->retired);
    pool->node = node;
    node->conf = conf;
    node->own = own;
    node->weight = conf->weight > 0 ? conf->weight : 1;
    node->healthy = 1;
    node->pool = pool;
    node->sh = gw_shstate_node(up->set->sh, up->conf->name, conf->addr);
    node->sh_health = node->sh != NULL && gw_health_enabled(up->conf);
    if (up->set->sh && node->sh == NULL)
        gw_log(up->set->log, GW_LOG_WARN,
               "upstream \"%s\": node %s has no shared slot (table full or name too long): "
               "this worker decides its health alone",
               up->conf->name, conf->addr);
    if (up->conf->breaker.enabled && up->conf->breaker.scope == GW_SCOPE_NODE) {
        char key[GW_SH_KEY_MAX + 1];
        snprintf(key, sizeof(key), "node\x1f%s\x1f%s", up->conf->name, conf->addr);
        if ((node->breaker = shared_breaker(up->set, key, &up->conf->breaker)) == NULL)
            goto failed;
    }
    return node;
failed:
    free(pool);
    free(node);
    return NULL;
}

static void
node_free(gw_node_t *node)
{
    node_pool_t *pool = node->pool;
    if (pool && !gw_list_empty(&pool->retired))
        gw_list_remove(&pool->retired);
    if (node->pool)
        gw_tlsc_cache_clear(&((node_pool_t *)node->pool)->tls_cache);
    free(node->pool);
    gw_breaker_free(node->breaker);
    node_conf_free(node->own);
    free(node);
}

void
gw_node_ref(gw_node_t *node)
{
    node->refs++;
}

void
gw_node_unref(gw_node_t *node)
{
    if (node->refs)
        node->refs--;
    if (node->removed && node->refs == 0)
        node_free(node);
}

static int
node_conf_same(const gw_node_conf_t *a, const gw_disc_entry_t *e)
{
    if (a->weight != e->weight || a->nmeta != e->nmeta)
        return 0;
    for (size_t i = 0; i < a->nmeta; i++)
        if (strcmp(a->meta[i].key, e->meta[i].key) != 0 ||
            strcmp(a->meta[i].value, e->meta[i].value) != 0)
            return 0;
    return 1;
}

static void up_close(gw_upconn_t *u);

/* Out of the upstream: no balancer sees it any more (the caller refreshed
 * them), its idle connections close, and it is freed when nothing points
 * to it. Until then it is on SET's retired list, whose shared slots the
 * tick keeps touching: a request still out to it updates its own slot, never
 * one handed to another node after GW_SH_STALE_MS. */
static void
node_remove(gw_upstreams_t *set, gw_node_t *node)
{
    node_pool_t *pool = node->pool;
    node->removed = 1;
    node->healthy = 0;
    node->sh_health = 0; /* what it is for the other workers is theirs */
    node->refs++;        /* held while the idle connections close */
    while (!gw_list_empty(&pool->idle))
        up_close(GW_CONTAINER_OF(pool->idle.next, gw_upconn_t, link));
    if (node->refs > 1)
        gw_list_push(&set->retired, &pool->retired);
    gw_node_unref(node);
}

/* The position in OLD of the node with E's address, or NOLD. */
static size_t
node_find(gw_node_t *const *old, size_t nold, const gw_disc_entry_t *e)
{
    size_t i = 0;
    while (i < nold && (old[i] == NULL || strcmp(old[i]->conf->addr, e->addr) != 0))
        i++;
    return i;
}

/* Everything the nodes need is allocated first, so that running out of
 * memory there leaves the old list whole. The balancers and health checks
 * allocate as they take the new list; should one fail, the removed nodes
 * are never freed (one may still be pointed to) rather than risk a
 * dangling pointer. */
int
gw_upstreams_set_nodes(gw_upstreams_t *u, size_t index, const gw_disc_entry_t *entries, size_t n)
{
    gw_upstream_rt_t *up = &u->ups[index];
    gw_node_t **old = up->nodes, **nodes = calloc(n ? n : 1, sizeof(gw_node_t *));
    gw_node_conf_t **confs = calloc(n ? n : 1, sizeof(gw_node_conf_t *));
    size_t *from = calloc(n ? n : 1, sizeof(size_t));
    size_t nold = up->nnodes, i;
    if (nodes == NULL || confs == NULL || from == NULL)
        goto failed;
    for (i = 0; i < n; i++) {
        const gw_disc_entry_t *e = &entries[i];
        from[i] = node_find(old, nold, e);
        if (from[i] < nold && node_conf_same(old[from[i]]->conf, e))
            continue;
        if ((confs[i] = node_conf_from(e)) == NULL)
            goto failed;
        if (from[i] == nold && (nodes[i] = node_new(up, confs[i], confs[i])) == NULL)
            goto failed;
    }
    for (i = 0; i < n; i++) {
        if (from[i] < nold) {
            nodes[i] = old[from[i]];
            old[from[i]] = NULL;
            if (confs[i]) { /* weight or meta changed */
                node_conf_free(nodes[i]->own);
                nodes[i]->own = confs[i];
                nodes[i]->conf = confs[i];
                nodes[i]->weight = confs[i]->weight > 0 ? confs[i]->weight : 1;
            }
        }
        nodes[i]->index = (unsigned)i;
    }
    up->nodes = nodes;
    up->nnodes = n;
    int ok = target_refresh(&up->all) == GW_OK;
    for (size_t r = 0; r < u->nroutes; r++)
        for (size_t k = 0; k <= u->nsplits[r]; k++)
            if (u->route_targets[r][k].up == up && u->route_targets[r][k].bal)
                ok &= target_refresh(&u->route_targets[r][k]) == GW_OK;
    ok &= gw_health_set_nodes(up->health, nodes, n) == GW_OK;
    if (!ok)
        gw_log(u->log, GW_LOG_ERROR,
               "upstream \"%s\": out of memory applying a node list; removed nodes are kept "
               "allocated",
               up->conf->name);
    for (i = 0; i < nold; i++) {
        if (old[i] == NULL)
            continue;
        if (!ok)
            old[i]->refs++; /* a balancer or a health record may still point to it */
        node_remove(u, old[i]);
    }
    free(old);
    free(confs);
    free(from);
    return GW_OK;
failed:
    for (i = 0; nodes && confs && i < n; i++) {
        if (nodes[i]) {
            nodes[i]->own = NULL;
            node_free(nodes[i]);
        }
        node_conf_free(confs[i]);
    }
    free(nodes);
    free(confs);
    free(from);
    return GW_ERROR;
}

/*
 * A route's target (its own traffic, or a split rule's): a subset gets a
 * balancer of its own; without one the target borrows the upstream's, so a
 * route without subsets costs nothing (bal NULL marks the borrowed target,
 * see gw_upstreams_target).
 */
static int
route_target_init(gw_target_t *t, gw_upstream_rt_t *up, const gw_kv_t *subset, size_t nsubset,
                  uint64_t seed)
{
    if (nsubset > 0)
        return target_init(t, up, subset, nsubset, seed);
    t->up = up; /* borrowed: gw_upstreams_target answers &up->all */
    t->bal = NULL;
    return GW_OK;
}

static void
target_close(gw_target_t *t)
{
    if (t->bal)
        gw_balancer_free(t->bal);
    free(t->nodes);
    t->bal = NULL;
    t->nodes = NULL;
}

static const gw_upstream_conf_t *
target_upstream(const gw_route_conf_t *rc, size_t k)
{
    return k == 0 ? rc->upstream : rc->split[k - 1].upstream;
}

/* Route-scope breakers: one per upstream the route can reach. */
static int
route_breakers_init(gw_upstreams_t *u, const gw_route_conf_t *rc)
{
    gw_breaker_t **bs = calloc(rc->nsplit + 1, sizeof(*bs));
    if (bs == NULL)
        return GW_ERROR;
    u->route_breakers[rc->index] = bs;
    for (size_t k = 0; k <= rc->nsplit; k++) {
        const gw_upstream_conf_t *uc = target_upstream(rc, k);
        if (!uc->breaker.enabled || uc->breaker.scope != GW_SCOPE_ROUTE)
            continue;
        for (size_t j = 0; j < k && bs[k] == NULL; j++)
            if (target_upstream(rc, j) == uc)
                bs[k] = bs[j];
        if (bs[k] != NULL)
            continue;
        char key[GW_SH_KEY_MAX + 1];
        if (rc->name)
            snprintf(key, sizeof(key), "route\x1f%s\x1f%s", rc->name, uc->name);
        else
            snprintf(key, sizeof(key), "route\x1f#%zu\x1f%s", rc->index, uc->name);
        if ((bs[k] = shared_breaker(u, key, &uc->breaker)) == NULL)
            return GW_ERROR;
    }
    return GW_OK;
}

static void
route_breakers_free(gw_breaker_t **bs, const gw_route_conf_t *rc)
{
    for (size_t k = 0; bs && k <= rc->nsplit; k++) {
        int shared = 0;
        for (size_t j = 0; j < k; j++)
            shared |= bs[j] == bs[k];
        if (!shared)
            gw_breaker_free(bs[k]);
    }
    free(bs);
}

gw_breaker_t *
gw_upstreams_breaker(gw_upstreams_t *u, const gw_route_conf_t *route, int split)
{
    gw_breaker_t *b = u->route_breakers[route->index][split + 1];
    if (b)
        return b;
    return u->route_targets[route->index][split + 1].up->breaker;
}

gw_upstreams_t *
gw_upstreams_new(const gw_upstreams_env_t *env, char *err, size_t errlen)
{
    const gw_conf_t *conf = env->conf;
    gw_upstreams_t *u = calloc(1, sizeof(*u));
    if (u == NULL)
        goto failed;
    u->w_conf = conf;
    u->loop = env->loop;
    u->log = env->log;
    u->rbufs = env->rbufs;
    u->reads = env->reads;
    u->sh = env->sh;
    gw_list_init(&u->retired);
    u->n = conf->nupstreams;
    u->ups = calloc(u->n ? u->n : 1, sizeof(gw_upstream_rt_t));
    u->nroutes = conf->nroutes;
    u->route_targets = calloc(conf->nroutes ? conf->nroutes : 1, sizeof(gw_target_t *));
    u->nsplits = calloc(conf->nroutes ? conf->nroutes : 1, sizeof(size_t));
    u->route_breakers = calloc(conf->nroutes ? conf->nroutes : 1, sizeof(gw_breaker_t **));
    if (u->ups == NULL || u->route_targets == NULL || u->nsplits == NULL ||
        u->route_breakers == NULL)
        goto failed;
    for (size_t i = 0; i < u->n; i++) {
        gw_upstream_rt_t *up = &u->ups[i];
        up->set = u;
        up->conf = &conf->upstreams[i];
        up->nodes = calloc(up->conf->nnodes ? up->conf->nnodes : 1, sizeof(gw_node_t *));
        if (up->nodes == NULL)
            goto failed;
        for (size_t n = 0; n < up->conf->nnodes; n++) {
            gw_node_t *node = node_new(up, &up->conf->nodes[n], NULL);
            if (node == NULL)
                goto failed;
            node->index = (unsigned)n;
            up->nodes[up->nnodes++] = node;
        }
        if (target_init(&up->all, up, NULL, 0, env->seed + i) != GW_OK)
            goto failed;
        if (up->conf->tls.enabled && u->tls_stores == NULL &&
            (u->tls_stores = gw_tls_stores_new()) == NULL)
            goto failed;
        if (up->conf->tls.enabled &&
            (up->tls = gw_tls_client_new(&up->conf->tls, u->tls_stores, err, errlen)) == NULL) {
            char why[256];
            snprintf(why, sizeof(why), "%s", err);
            snprintf(err, errlen, "upstream \"%s\": %s", up->conf->name, why);
            gw_upstreams_free(u);
            return NULL;
        }
        if (up->conf->breaker.enabled && up->conf->breaker.scope == GW_SCOPE_UPSTREAM) {
            char key[GW_SH_KEY_MAX + 1];
            snprintf(key, sizeof(key), "upstream\x1f%s", up->conf->name);
            if ((up->breaker = shared_breaker(u, key, &up->conf->breaker)) == NULL)
                goto failed;
        }
        if (gw_health_enabled(up->conf)) {
            up->health =
                gw_health_new(env->loop, up->conf, up->tls, up->nodes, up->nnodes, env->log,
                              env->metrics, env->slot, env->seed + i * 7919 + 1, err, errlen);
            if (up->health == NULL) {
                gw_upstreams_free(u);
                return NULL;
            }
            gw_health_set_shared(up->health, u->sh);
        }
    }
    for (size_t r = 0; r < conf->nroutes; r++) {
        const gw_route_conf_t *rc = &conf->routes[r];
        gw_target_t *ts = calloc(rc->nsplit + 1, sizeof(gw_target_t));
        if (ts == NULL)
            goto failed;
        u->route_targets[r] = ts;
        u->nsplits[r] = rc->nsplit;
        if (route_target_init(&ts[0], &u->ups[rc->upstream->index], rc->subset, rc->nsubset,
                              env->seed + r * 131 + rc->nsplit) != GW_OK)
            goto failed;
        for (size_t s = 0; s < rc->nsplit; s++) {
            const gw_split_rule_t *rule = &rc->split[s];
            if (route_target_init(&ts[s + 1], &u->ups[rule->upstream->index], rule->subset,
                                  rule->nsubset, env->seed + r * 131 + s) != GW_OK)
                goto failed;
        }
    }
    for (size_t r = 0; r < conf->nroutes; r++)
        if (route_breakers_init(u, &conf->routes[r]) != GW_OK)
            goto failed;
    /* last: nothing can fail once timers run */
    for (size_t i = 0; i < u->n; i++)
        gw_health_start(u->ups[i].health);
    return u;
failed:
    snprintf(err, errlen, "out of memory building upstreams");
    gw_upstreams_free(u);
    return NULL;
}

gw_target_t *
gw_upstreams_target(gw_upstreams_t *u, const gw_route_conf_t *route, int split)
{
    gw_target_t *t = &u->route_targets[route->index][split + 1];
    /* a target without its own balancer is the whole upstream */
    return t->bal ? t : &t->up->all;
}

void
gw_upstreams_free(gw_upstreams_t *u)
{
    if (u == NULL)
        return;
    for (size_t r = 0; u->route_targets && r < u->nroutes; r++) {
        gw_target_t *ts = u->route_targets[r];
        for (size_t s = 0; ts && s < u->nsplits[r] + 1; s++)
            if (ts[s].bal)
                target_close(&ts[s]);
        free(ts);
    }
    for (size_t r = 0; u->route_breakers && r < u->nroutes; r++)
        route_breakers_free(u->route_breakers[r], &u->w_conf->routes[r]);
    free(u->route_breakers);
    /* removed nodes something still holds outlive the set: off its list */
    while (!gw_list_empty(&u->retired))
        gw_list_remove(u->retired.next);
    for (size_t i = 0; u->ups && i < u->n; i++) {
        gw_upstream_rt_t *up = &u->ups[i];
        target_close(&up->all);
        gw_health_free(up->health);
        gw_tls_client_free(up->tls);
        gw_breaker_free(up->breaker);
        for (size_t n = 0; up->nodes && n < up->nnodes; n++)
            node_free(up->nodes[n]);
        free(up->nodes);
    }
    free(u->nsplits);
    free(u->route_targets);
    free(u->ups);
    gw_tls_stores_free(u->tls_stores);
    free(u);
}

/* ---- connections ---- */

static void up_read_start(gw_upconn_t *u);
static void on_up_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);
static void tls_handshake(gw_upconn_t *u);
static void tls_on_read(gw_upconn_t *u, ssize_t nread, const uv_buf_t *buf);
static void tls_drain(gw_upconn_t *u);
static int tls_write(gw_upconn_t *u, const uv_buf_t *bufs, unsigned n);
static void tls_close_notify(gw_upconn_t *u);

static void
on_up_closed(uv_handle_t *h)
{
    gw_upconn_t *u = h->data;
    if (u->rbuf)
        gw_rbuf_put(u->set->rbufs, u->rbuf);
    if (u->tls_in)
        gw_rbuf_put(u->set->rbufs, u->tls_in);
    gw_tlsc_free(u->tls);
    gw_wqueue_free(&u->out);
    gw_node_unref(u->node);
    free(u);
}

static void
on_up_tcp_closed(uv_handle_t *h)
{
    gw_upconn_t *u = h->data;
    uv_close((uv_handle_t *)&u->timer, on_up_closed);
}

static void
up_close(gw_upconn_t *u)
{
    if (u->closing)
        return;
    u->closing = 1;
    if (u->state == UP_IDLE) {
        node_pool_t *pool = u->node->pool;
        gw_list_remove(&u->link);
        pool->nidle--;
    }
    /* llhttp may still be walking the buffer: it goes back after the close */
    if (u->rbuf && !u->in_parse) {
        gw_rbuf_put(u->set->rbufs, u->rbuf);
        u->rbuf = NULL;
    }
    if (u->tls)
        tls_close_notify(u);
    uv_close((uv_handle_t *)&u->tcp, on_up_tcp_closed);
}

/* Closes the connection and tells its user, who releases it: a failed
 * connection is never reused. */
static void
up_fail(gw_upconn_t *u, gw_up_error_t e)
{
    up_close(u);
    if (u->user)
        u->cb->on_error(u->user, e);
}

static void
on_up_timer(uv_timer_t *t)
{
    gw_upconn_t *u = t->data;
    if (u->failed) {
        up_fail(u, (gw_up_error_t)u->failed);
        return;
    }
    if (!gw_deadline_fired(&u->dl, t, on_up_timer))
        return;
    if (u->state == UP_IDLE) {
        up_close(u);
        return;
    }
    up_fail(u, u->state == UP_CONNECTING ? GW_UP_CONNECT_TIMEOUT : GW_UP_TIMEOUT);
}

static void
timer_start(gw_upconn_t *u, uint64_t ms)
{
    if (!u->failed)
        gw_deadline_set(&u->dl, &u->timer, on_up_timer, ms);
}

/* Reports a failure from the next loop turn: the caller may be deep in
 * the request's own code (a body callback inside llhttp). */
static int
fail_later(gw_upconn_t *u, gw_up_error_t e)
{
    if (!u->failed) {
        u->failed = (int)e;
        gw_deadline_now(&u->dl, &u->timer, on_up_timer);
    }
    return -1;
}

static void
on_connect(uv_connect_t *cr, int status)
{
    gw_upconn_t *u = cr->data;
    if (u->closing)
        return;
    if (status < 0) {
        up_fail(u, GW_UP_CONNECT_FAILED);
        return;
    }
    uv_tcp_nodelay(&u->tcp, 1);
    if (u->tls) {
        /* the handshake runs within the connect timeout, still armed */
        up_read_start(u);
        tls_handshake(u);
        return;
    }
    u->state = UP_ACTIVE;
    gw_deadline_clear(&u->dl);
    up_read_start(u);
    u->cb->on_ready(u->user);
}

/* A pooled connection that the peer already closed must not take a
 * request that cannot be retried: peek at the socket first. */
static int
idle_conn_alive(gw_upconn_t *u)
{
    uv_os_fd_t fd;
    char c;
    if (uv_fileno((uv_handle_t *)&u->tcp, &fd) != 0)
        return 0;
    ssize_t n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

static void
bind_user(gw_upconn_t *u, const gw_upconn_user_t *user)
{
    u->cb = user->cb;
    u->user = user->user;
    u->head_request = user->head_request;
}

gw_upconn_t *
gw_upconn_acquire(gw_upstream_rt_t *up, gw_node_t *node, const gw_upconn_user_t *user, int *ready)
{
    node_pool_t *pool = node->pool;
    while (!gw_list_empty(&pool->idle)) {
        gw_link_t *l = pool->idle.prev; /* most recently used: warmest */
        gw_upconn_t *u = GW_CONTAINER_OF(l, gw_upconn_t, link);
        gw_list_remove(l);
        pool->nidle--;
        u->state = UP_ACTIVE;
        if (!user->idempotent && !idle_conn_alive(u)) {
            up_close(u);
            continue;
        }
        /* the idle timer stays armed for a bodiless request: the send
         * that follows at once re-arms it as the read timeout */
        if (user->body_follows)
            timer_start(u, up->conf->send_timeout_ms);
        bind_user(u, user);
        u->reused = 1;
        u->head_done = u->resp_done = u->got_bytes = 0;
        u->header_state = 0;
        u->head.nheaders = 0;
        u->len = u->pos = 0;
        u->head.until_close = u->head.chunked = u->decode_body = 0;
        node->inflight++;
        gw_shnode_inflight_add(node->sh, 1);
        *ready = 1;
        return u;
    }
    *ready = 0;
    return gw_upconn_connect(up, node, user);
}

gw_upconn_t *
gw_upconn_connect(gw_upstream_rt_t *up, gw_node_t *node, const gw_upconn_user_t *user)
{
    gw_upstreams_t *set = up->set;
    gw_upconn_t *u = calloc(1, sizeof(*u));
    if (u == NULL)
        return NULL;
    u->set = set;
    u->node = node;
    gw_node_ref(node); /* a node the registry drops lives until its connections close */
    u->up = up;
    bind_user(u, user);
    u->state = UP_CONNECTING;
    /* The loop's clock is read once per iteration; a plugin that held the
     * worker since would leave it behind, and the connect timeout armed
     * from it would fire on the next iteration, before the connection had
     * a chance. One clock read per new connection, none per pooled one. */
    uv_update_time(set->loop);
    uv_tcp_init(set->loop, &u->tcp);
    uv_timer_init(set->loop, &u->timer);
    u->tcp.data = u->timer.data = u->creq.data = u;
    gw_list_init(&u->link);
    if (up->tls && (u->tls = gw_tlsc_new(up->tls, gw_upstream_tls_name(up->conf, node->conf),
                                         &((node_pool_t *)node->pool)->tls_cache)) == NULL) {
        gw_log(set->log, GW_LOG_ERROR, "upstream \"%s\" node %s: out of memory for TLS",
               up->conf->name, node->conf->addr);
        u->user = NULL;
        up_close(u);
        return NULL;
    }
    int rc =
        uv_tcp_connect(&u->creq, &u->tcp, (const struct sockaddr *)&node->conf->sa, on_connect);
    if (rc < 0) {
        gw_log(set->log, GW_LOG_WARN, "connect to %s: %s", node->conf->addr, uv_strerror(rc));
        u->user = NULL;
        up_close(u);
        return NULL;
    }
    node->inflight++;
    gw_shnode_inflight_add(node->sh, 1);
    timer_start(u, up->conf->connect_timeout_ms);
    return u;
}

/* What the node's close or reset means for the request: a response cut,
 * or none at all, and then on a pooled connection possibly a close of an
 * idle connection that crossed our request. */
static gw_up_error_t
closed_error(const gw_upconn_t *u)
{
    if (u->got_bytes)
        return GW_UP_TRUNCATED;
    return u->reused ? GW_UP_STALE : GW_UP_RESET;
}

/* ---- writing ---- */

static void
on_up_write(uv_write_t *wr, int status)
{
    gw_upconn_t *u = wr->data;
    if (u->closing)
        return;
    int rc = status < 0 ? status : gw_wqueue_written(&u->out, (uv_stream_t *)&u->tcp, on_up_write);
    if (rc < 0) {
        up_fail(u, closed_error(u));
        return;
    }
    if (rc > 0)
        return;
    if (!u->resp_done && u->user) {
        gw_deadline_clear(&u->dl);
        u->cb->on_drained(u->user);
    }
}

int
gw_upconn_write(gw_upconn_t *u, const uv_buf_t *bufs, unsigned n)
{
    if (u->closing || u->failed)
        return -1;
    if (u->tls)
        return tls_write(u, bufs, n);
    int busy = u->out.busy;
    u->out.req.data = u;
    int rc = gw_wqueue_write(&u->out, (uv_stream_t *)&u->tcp, bufs, n, on_up_write);
    if (rc < 0)
        return fail_later(u, closed_error(u));
    if (rc == 0 && !busy)
        timer_start(u, u->up->conf->send_timeout_ms);
    return rc;
}

void
gw_upconn_request_sent(gw_upconn_t *u)
{
    if (!u->out.busy && !u->resp_done)
        timer_start(u, u->up->conf->read_timeout_ms);
}

/* ---- reading and parsing the response ---- */

#define UPCONN(p) ((gw_upconn_t *)((llhttp_t *)(p))->data)

static int
on_resp_header_field(llhttp_t *p, const char *at, size_t len)
{
    gw_upconn_t *u = UPCONN(p);
    if (u->header_state != 1) {
        if (u->head.nheaders == GW_MAX_HEADERS)
            return HPE_USER;
        u->head.headers[u->head.nheaders++] = (gw_header_t){{at, 0}, {NULL, 0}};
        u->header_state = 1;
    }
    u->head.headers[u->head.nheaders - 1].name.len += len;
    return 0;
}

static int
on_resp_header_value(llhttp_t *p, const char *at, size_t len)
{
    gw_upconn_t *u = UPCONN(p);
    gw_header_t *h = &u->head.headers[u->head.nheaders - 1];
    if (u->header_state != 2) {
        h->value.data = at;
        u->header_state = 2;
    }
    h->value.len += len;
    return 0;
}

static int
on_resp_headers_complete(llhttp_t *p)
{
    gw_upconn_t *u = UPCONN(p);
    /* a folded value (obs-fold) must not reach the client as it is
     * (RFC 9112 5.2): refused, as the gateway refuses it from clients */
    for (size_t i = 0; i < u->head.nheaders; i++) {
        gw_str_t *v = &u->head.headers[i].value;
        if (v->len && (memchr(v->data, '\n', v->len) || memchr(v->data, '\r', v->len)))
            return -1;
        /* trailing OWS is no part of the value (llhttp keeps it) */
        while (v->len && (v->data[v->len - 1] == ' ' || v->data[v->len - 1] == '\t'))
            v->len--;
    }
    int status = p->status_code;
    u->head.status = status;
    if (status < 100 || status > 599)
        return -1; /* llhttp takes "HTTP/1.1 20 OK" and "004": not a status */
    if (status >= 100 && status < 200)
        return 0; /* interim: llhttp completes it without a body */
    u->head.chunked = (p->flags & F_CHUNKED) != 0;
    u->content_length = (p->flags & F_CONTENT_LENGTH) ? (int64_t)p->content_length : -1;
    if (u->head_request)
        return 1;
    u->head.until_close = llhttp_message_needs_eof(p);
    /* Stop at the head only when a body follows; a bodiless response
     * (204, 304, Content-Length: 0) stops at its end instead. */
    if (status == 204 || status == 304 ||
        (!u->head.chunked && !u->head.until_close && u->content_length <= 0))
        return 0;
    return HPE_PAUSED;
}

static int
on_resp_body(llhttp_t *p, const char *at, size_t len)
{
    gw_upconn_t *u = UPCONN(p);
    if (u->decode_body && u->user) {
        if (!u->cb->on_body(u->user, at, len))
            u->paused = 1;
    }
    return 0;
}

static int
on_resp_message_complete(llhttp_t *p)
{
    gw_upconn_t *u = UPCONN(p);
    int status = u->head.status;
    if (status >= 100 && status < 200 && status != 101) {
        /* drop the interim response; the final one follows */
        u->head.nheaders = 0;
        u->header_state = 0;
        return 0;
    }
    u->resp_done = 1;
    return HPE_PAUSED;
}

static const llhttp_settings_t response_settings = {
    .on_header_field = on_resp_header_field,
    .on_header_value = on_resp_header_value,
    .on_headers_complete = on_resp_headers_complete,
    .on_body = on_resp_body,
    .on_message_complete = on_resp_message_complete,
};

static void
on_up_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    gw_upconn_t *u = h->data;
    if (u->tls) {
        if (u->tls_in == NULL)
            u->tls_in = gw_rbuf_get(u->set->rbufs);
        buf->base = u->tls_in->data;
        buf->len = u->tls_in->cap;
        return;
    }
    if (u->rbuf == NULL)
        u->rbuf = gw_rbuf_get(u->set->rbufs);
    buf->base = u->rbuf->data + u->len;
    buf->len = u->rbuf->cap - u->len;
}

static void
up_read_start(gw_upconn_t *u)
{
    if (!u->reading && !u->closing) {
        u->reading = 1;
        uv_read_start((uv_stream_t *)&u->tcp, on_up_alloc, on_up_read);
    }
}

static void
up_read_stop(gw_upconn_t *u)
{
    if (u->reading) {
        u->reading = 0;
        uv_read_stop((uv_stream_t *)&u->tcp);
    }
}

/* ---- the common response, without llhttp ----
 *
 * Most answers are "HTTP/1.1 2xx-5xx" with a Content-Length and plain
 * headers. Those are read here, with the same strictness, at a fraction of
 * llhttp's cost; anything else (another version, 1xx/204/304, chunked or
 * close-delimited bodies, Transfer-Encoding, obs-fold, odd bytes, a HEAD
 * request) goes to llhttp untouched, from the first byte of the head. */

enum { UP_FAST_TRY = 0, UP_FAST_OFF, UP_FAST_BODY };

/* 1: a plain head was read (u->pos is past it); 0: not all of it is here
 * yet and nothing so far rules the fast path out; -1: llhttp decides. */
static int
fast_head(gw_upconn_t *u)
{
    const char *base = u->rbuf->data;
    const char *p = base + u->pos, *end = base + u->len;
    size_t avail = (size_t)(end - p);
    if (memcmp(p, "HTTP/1.1 ", avail < 9 ? avail : 9) != 0)
        return -1;
    /* the empty line that ends the head; a bare LF must reach llhttp now,
     * not after the read timeout */
    const char *stop = NULL;
    for (const char *q = memchr(p, '\n', avail); q;
         q = q + 1 < end ? memchr(q + 1, '\n', (size_t)(end - q - 1)) : NULL) {
        if (q == p || q[-1] != '\r')
            return -1;
        if (q - p >= 3 && q[-2] == '\n') {
            stop = q - 3;
            break;
        }
    }
    if (stop == NULL)
        return 0;
    const unsigned char *s = (const unsigned char *)p + 9;
    const unsigned char *e = (const unsigned char *)stop + 2; /* the head's last CRLF */
    const unsigned char *lim = e + 2;                         /* one past the head */
    if (s[0] < '2' || s[0] > '5' || s[1] < '0' || s[1] > '9' || s[2] < '0' || s[2] > '9' ||
        s[3] != ' ')
        return -1;
    int status = (s[0] - '0') * 100 + (s[1] - '0') * 10 + (s[2] - '0');
    if (status == 204 || status == 304)
        return -1;
    s = gw_http_plain_run(s + 4, lim);
    if (s[0] != '\r' || s[1] != '\n')
        return -1;
    s += 2;
    size_t nh = 0;
    int64_t clen = -1;
    int keepalive = 1;
    while (s < e) {
        gw_str_t n, v;
        if (nh == GW_MAX_HEADERS || (s = gw_http_plain_header(s, lim, &n, &v)) == NULL)
            return -1;
        const unsigned char *val = (const unsigned char *)v.data;
        size_t nlen = n.len, vlen = v.len;
        if (vlen == 0 || val[vlen - 1] == ' ' || val[vlen - 1] == '\t')
            return -1;
        if (nlen == 14 && gw_str_caseeq_lc(n, GW_STR("content-length"))) {
            if (clen >= 0 || vlen > 18)
                return -1;
            clen = 0;
            for (size_t i = 0; i < vlen; i++) {
                if (val[i] < '0' || val[i] > '9')
                    return -1;
                clen = clen * 10 + (val[i] - '0');
            }
        } else if (nlen == 10 && gw_str_caseeq_lc(n, GW_STR("connection"))) {
            int k = gw_http_plain_connection(v);
            if (k < 0)
                return -1;
            keepalive &= k; /* a close anywhere wins, as in llhttp */
        } else if ((nlen == 17 && gw_str_caseeq_lc(n, GW_STR("transfer-encoding"))) ||
                   (nlen == 16 && gw_str_caseeq_lc(n, GW_STR("proxy-connection"))) ||
                   (nlen == 7 && gw_str_caseeq_lc(n, GW_STR("upgrade")))) {
            return -1;
        }
        u->head.headers[nh].name = n;
        u->head.headers[nh].value = v;
        nh++;
    }
    if (clen < 0)
        return -1;
    u->head.nheaders = nh;
    u->head.status = status;
    u->content_length = clen;
    u->head.chunked = 0;
    u->head.until_close = 0;
    u->remaining = clen;
    u->fast_keepalive = (unsigned)keepalive;
    u->pos = (size_t)((const char *)e + 2 - base);
    if (clen == 0)
        u->resp_done = 1;
    return 1;
}

static void response_finished(gw_upconn_t *u);

/* Fast-path body bytes: forwarded as they are. 1: read on; 0: stop. */
static int
fast_body(gw_upconn_t *u)
{
    size_t avail = u->len - u->pos;
    size_t take = (uint64_t)u->remaining < avail ? (size_t)u->remaining : avail;
    const char *p = u->rbuf->data + u->pos;
    u->pos += take;
    u->remaining -= (int64_t)take;
    if (take && !u->cb->on_body(u->user, p, take))
        u->paused = 1;
    if (u->user == NULL || u->closing)
        return 0;
    if (u->remaining == 0) {
        u->resp_done = 1;
        response_finished(u);
        return 0;
    }
    u->len = u->pos = 0;
    return 1;
}

static void
response_finished(gw_upconn_t *u)
{
    if (u->user == NULL)
        return; /* the user went away while the response was read */
    /* bytes after the end of the response mean the upstream and we
     * disagree about framing: never reuse that connection */
    if (u->pos != u->len)
        u->reusable = 0;
    else
        u->reusable = u->fast == UP_FAST_BODY
                          ? u->fast_keepalive
                          : llhttp_should_keep_alive(&u->parser) && !u->head.until_close;
    /* the read timer keeps running: the release that follows re-arms it as
     * the idle timer, or closes the connection */
    u->cb->on_done(u->user);
}

/* The head went into the client's response: its space holds the body. */
static void
head_consumed(gw_upconn_t *u)
{
    size_t rest = u->len - u->pos;
    memmove(u->rbuf->data, u->rbuf->data + u->pos, rest);
    u->len = rest;
    u->pos = 0;
}

/* The head is read (by llhttp, paused, or by the fast path): hand it to
 * the user. 1: read on; 0: stop (held, done, or gone). */
static int
after_head(gw_upconn_t *u)
{
    int by_llhttp = u->fast != UP_FAST_BODY;
    u->head_done = 1;
    int how = u->cb->on_head(u->user, &u->head);
    if (u->user == NULL || u->closing)
        return 0;
    if (how == GW_UP_HOLD) {
        /* the headers point into the buffer and the request reads them
         * when its plugin is done: they stay until gw_upconn_continue */
        u->held = 1;
        if (!u->resp_done && by_llhttp)
            llhttp_resume(&u->parser);
        u->paused = 1;
        return 0;
    }
    u->decode_body = how == GW_UP_READ_DECODED;
    head_consumed(u);
    if (u->resp_done) {
        response_finished(u);
        return 0;
    }
    if (by_llhttp)
        llhttp_resume(&u->parser);
    return 1;
}

static void
head_too_large(gw_upconn_t *u)
{
    gw_log(u->set->log, GW_LOG_WARN, "upstream %s: response head too large", u->node->conf->addr);
    up_fail(u, GW_UP_BAD_RESPONSE);
}

static void
up_parse(gw_upconn_t *u)
{
    if (u->in_parse || u->user == NULL)
        return;
    u->in_parse = 1;
    while (u->user && !u->resp_done && !u->closing && u->pos < u->len) {
        if (u->fast == UP_FAST_TRY) {
            int fr = fast_head(u);
            if (fr == 0 && u->len < u->rbuf->cap)
                break; /* the rest of the head is still coming */
            if (fr <= 0) {
                u->fast = UP_FAST_OFF;
                continue;
            }
            u->fast = UP_FAST_BODY;
            if (!after_head(u))
                break;
            continue;
        }
        if (u->fast == UP_FAST_BODY) {
            if (!fast_body(u))
                break;
            continue;
        }
        const char *base = u->rbuf->data;
        size_t start = u->pos;
        /* a head starts at the buffer's first byte (HTAB: gw_http_head_ows) */
        size_t lim = u->head_done ? u->len : gw_http_head_ows(u->rbuf->data, u->pos, u->len);
        if (lim == u->pos) {
            if (u->len == u->rbuf->cap)
                head_too_large(u);
            break; /* whitespace waits for the byte after it */
        }
        llhttp_errno_t err = llhttp_execute(&u->parser, base + u->pos, lim - u->pos);
        size_t end = err == HPE_OK ? lim : (size_t)(llhttp_get_error_pos(&u->parser) - base);
        if (err != HPE_OK && err != HPE_PAUSED) {
            gw_log(u->set->log, GW_LOG_WARN, "upstream %s: invalid response: %s",
                   u->node->conf->addr, llhttp_get_error_reason(&u->parser));
            up_fail(u, u->head_done ? GW_UP_TRUNCATED : GW_UP_BAD_RESPONSE);
            break;
        }
        u->pos = end;
        if (!u->head_done) {
            if (err == HPE_OK) {
                if (u->pos < u->len)
                    continue; /* an interim head ended, or whitespace waits */
                if (u->len == u->rbuf->cap)
                    head_too_large(u);
                break;
            }
            if (!after_head(u))
                break;
            continue;
        }
        if (!u->decode_body && end > start) {
            if (!u->cb->on_body(u->user, base + start, end - start))
                u->paused = 1;
            if (u->user == NULL || u->closing)
                break;
        }
        if (u->resp_done) {
            response_finished(u);
            break;
        }
        u->len = u->pos = 0;
    }
    u->in_parse = 0;
    if (u->user && !u->closing) {
        if (u->paused)
            gw_upconn_pause(u);
        else if (u->pos == u->len && !u->resp_done && u->head_done) {
            /* a head still coming stays: its headers point into the buffer */
            u->len = u->pos = 0;
        }
    }
}

/* The node closed (EOF) or the read failed (NREAD < 0), with a user. */
static void
up_read_end(gw_upconn_t *u, ssize_t nread)
{
    if (nread == UV_EOF && u->head_done && u->head.until_close) {
        llhttp_finish(&u->parser);
        u->resp_done = 1;
        u->reusable = 0;
        gw_deadline_clear(&u->dl);
        u->cb->on_done(u->user);
        return;
    }
    up_fail(u, closed_error(u));
}

/* N more response bytes at u->len in the read buffer. */
static inline void
up_received(gw_upconn_t *u, size_t n)
{
    if (!u->got_bytes) {
        u->got_bytes = 1;
        llhttp_init(&u->parser, HTTP_RESPONSE, &response_settings);
        u->parser.data = u;
        u->fast = u->head_request ? UP_FAST_OFF : UP_FAST_TRY;
    }
    u->len += n;
    up_parse(u);
    /* read timeout: the gap between two reads of a response still coming */
    if (u->user && !u->closing && !u->resp_done && !u->paused && !u->out.busy)
        timer_start(u, u->up->conf->read_timeout_ms);
}

static void
on_up_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    gw_upconn_t *u = s->data;
    if (u->tls) {
        tls_on_read(u, nread, buf);
        return;
    }
    if (u->state == UP_IDLE || u->user == NULL) {
        /* an idle connection that speaks or closes is done */
        if (nread != 0)
            up_close(u);
        return;
    }
    if (nread == 0)
        return;
    if (nread < 0) {
        up_read_end(u, nread);
        return;
    }
    (*u->set->reads)++;
    gw_edge_after_read(&u->edge, s, nread, buf->len);
    up_received(u, (size_t)nread);
}

void
gw_upconn_continue(gw_upconn_t *u, int how)
{
    if (!u->held || u->closing)
        return;
    u->held = 0;
    u->decode_body = how == GW_UP_READ_DECODED;
    head_consumed(u);
    if (u->resp_done) {
        response_finished(u);
        return;
    }
    gw_upconn_resume(u);
}

void
gw_upconn_pause(gw_upconn_t *u)
{
    u->paused = 1;
    up_read_stop(u);
    /* the upstream is not slow: the client is; its own timer runs now */
    if (!u->out.busy)
        gw_deadline_clear(&u->dl);
}

void
gw_upconn_resume(gw_upconn_t *u)
{
    if (!u->paused)
        return;
    u->paused = 0;
    up_read_start(u);
    if (!u->resp_done && !u->out.busy)
        timer_start(u, u->up->conf->read_timeout_ms);
    if (u->pos < u->len)
        up_parse(u);
    if (u->tls)
        tls_drain(u); /* what the session decrypted, or holds, before the pause */
}

void
gw_upconn_release(gw_upconn_t *u, int reuse)
{
    gw_upstreams_t *set = u->set;
    node_pool_t *pool = u->node->pool;
    if (u->node->inflight) {
        u->node->inflight--;
        gw_shnode_inflight_add(u->node->sh, -1);
    }
    u->user = NULL;
    u->requests++;
    if (!reuse || !u->reusable || !u->resp_done || gw_wqueue_pending(&u->out) || u->closing ||
        set->draining || u->node->removed || pool->nidle >= (unsigned)u->up->conf->keepalive_size ||
        (u->tls && gw_tlsc_has_unread(u->tls))) {
        up_close(u);
        return;
    }
    if (u->rbuf) {
        gw_rbuf_put(set->rbufs, u->rbuf);
        u->rbuf = NULL;
    }
    u->len = u->pos = 0;
    u->paused = 0;
    gw_wqueue_trim(&u->out, 16384);
    u->state = UP_IDLE;
    gw_list_push(&pool->idle, &u->link);
    pool->nidle++;
    timer_start(u, u->up->conf->keepalive_idle_ms);
    up_read_start(u);
    gw_edge_try(&u->edge, (uv_stream_t *)&u->tcp);
}

void
gw_upstreams_tick(gw_upstreams_t *u)
{
    if (u == NULL || u->sh == NULL)
        return;
    for (size_t i = 0; i < u->n; i++) {
        gw_upstream_rt_t *up = &u->ups[i];
        gw_shstate_touch_breaker(up->breaker);
        for (size_t n = 0; n < up->nnodes; n++) {
            gw_shstate_touch_node(up->nodes[n]->sh);
            gw_shstate_touch_breaker(up->nodes[n]->breaker);
        }
        gw_health_tick(up->health);
    }
    for (size_t r = 0; r < u->nroutes; r++)
        for (size_t k = 0; u->route_breakers[r] && k <= u->nsplits[r]; k++)
            gw_shstate_touch_breaker(u->route_breakers[r][k]);
    for (gw_link_t *l = u->retired.next; l != &u->retired; l = l->next) {
        gw_node_t *node = GW_CONTAINER_OF(l, node_pool_t, retired)->node;
        gw_shstate_touch_node(node->sh);
        gw_shstate_touch_breaker(node->breaker);
    }
}

void
gw_upstreams_drain(gw_upstreams_t *u)
{
    if (u)
        u->draining = 1;
}

void
gw_upstreams_close_idle(gw_upstreams_t *ups)
{
    if (ups == NULL)
        return;
    for (size_t i = 0; i < ups->n; i++) {
        gw_upstream_rt_t *up = &ups->ups[i];
        /* probes and their timers must not keep a draining worker alive */
        gw_health_stop(up->health);
        for (size_t n = 0; n < up->nnodes; n++) {
            node_pool_t *pool = up->nodes[n]->pool;
            while (pool && !gw_list_empty(&pool->idle)) {
                gw_upconn_t *u = GW_CONTAINER_OF(pool->idle.next, gw_upconn_t, link);
                up_close(u);
            }
        }
    }
}

/* ---- https: the connection over a TLS session ----
 *
 * The socket stays the connection's: ciphertext is read into a buffer
 * taken for the read callback only and fed to the session; what the
 * session decrypts goes into the read buffer the plain path parses, by
 * up_received. Writes are encrypted and go out through the same write
 * queue. Only the branches on u->tls at connect, read, write, resume,
 * release and close lead here: the plain path runs as before. */

static void
on_tls_up_write(uv_write_t *wr, int status)
{
    gw_upconn_t *u = wr->data;
    if (u->closing)
        return;
    int rc =
        status < 0 ? status : gw_wqueue_written(&u->out, (uv_stream_t *)&u->tcp, on_tls_up_write);
    if (rc < 0) {
        up_fail(u, u->state == UP_CONNECTING ? GW_UP_CONNECT_FAILED : closed_error(u));
        return;
    }
    /* the session writes of its own too (the handshake): only a write
     * of the user's that was queued is owed an on_drained */
    if (rc > 0 || !u->drain_wanted)
        return;
    u->drain_wanted = 0;
    if (!u->resp_done && u->user) {
        gw_deadline_clear(&u->dl);
        u->cb->on_drained(u->user);
    }
}

/* Sends what the session has for the node: 1 all of it (or nothing was
 * there), 0 some queued, < 0 the socket failed. */
static int
tls_flush(gw_upconn_t *u)
{
    const char *p;
    size_t n = gw_tlsc_pending(u->tls, &p);
    if (n == 0)
        return 1;
    uv_buf_t b = uv_buf_init((char *)p, (unsigned)n);
    u->out.req.data = u;
    int rc = gw_wqueue_write(&u->out, (uv_stream_t *)&u->tcp, &b, 1, on_tls_up_write);
    gw_tlsc_sent(u->tls); /* the queue copied what the socket did not take */
    return rc;
}

static void
tls_fail(gw_upconn_t *u, const char *why)
{
    gw_log(u->set->log, GW_LOG_WARN, "upstream \"%s\" node %s: TLS handshake failed: %s",
           u->up->conf->name, u->node->conf->addr, why);
    /* the next connection starts afresh */
    gw_tlsc_cache_clear(&((node_pool_t *)u->node->pool)->tls_cache);
    up_fail(u, GW_UP_CONNECT_FAILED);
}

static void
tls_handshake(gw_upconn_t *u)
{
    int rc = gw_tlsc_handshake(u->tls);
    if (tls_flush(u) < 0 && rc != GW_ERROR) {
        tls_fail(u, "the handshake could not be sent");
        return;
    }
    if (rc == GW_AGAIN)
        return;
    if (rc == GW_ERROR) {
        tls_fail(u, gw_tlsc_error(u->tls));
        return;
    }
    u->state = UP_ACTIVE;
    gw_deadline_clear(&u->dl);
    u->cb->on_ready(u->user);
}

static int
tls_write(gw_upconn_t *u, const uv_buf_t *bufs, unsigned n)
{
    char one[16384];
    size_t total = 0;
    int busy = u->out.busy, ok = 1;
    for (unsigned i = 0; i < n; i++)
        total += bufs[i].len;
    if (n > 1 && total <= sizeof(one)) {
        /* one record for a chunk's size, data and CRLF */
        size_t at = 0;
        for (unsigned i = 0; i < n; i++) {
            memcpy(one + at, bufs[i].base, bufs[i].len);
            at += bufs[i].len;
        }
        ok = gw_tlsc_write(u->tls, one, total) == GW_OK;
    } else {
        for (unsigned i = 0; i < n && ok; i++)
            ok = gw_tlsc_write(u->tls, bufs[i].base, bufs[i].len) == GW_OK;
    }
    if (!ok) {
        gw_log(u->set->log, GW_LOG_WARN, "upstream \"%s\" node %s: TLS write failed: %s",
               u->up->conf->name, u->node->conf->addr, gw_tlsc_error(u->tls));
        return fail_later(u, closed_error(u));
    }
    int rc = tls_flush(u);
    if (rc < 0)
        return fail_later(u, closed_error(u));
    u->drain_wanted = rc == 0;
    if (rc == 0 && !busy)
        timer_start(u, u->up->conf->send_timeout_ms);
    return rc;
}

/* Decrypts what was fed, into the read buffer, as long as the user reads. */
static void
tls_drain(gw_upconn_t *u)
{
    while (u->user && !u->closing && !u->paused) {
        if (u->rbuf == NULL)
            u->rbuf = gw_rbuf_get(u->set->rbufs);
        size_t room = u->rbuf->cap - u->len;
        if (room == 0)
            break; /* a head that fills the buffer: up_parse said so */
        ssize_t n = gw_tlsc_read(u->tls, u->rbuf->data + u->len, room);
        if (n > 0) {
            up_received(u, (size_t)n);
            continue;
        }
        if (n == 0)
            break;
        if (n == GW_TLSC_CLOSED) {
            up_read_end(u, UV_EOF);
            return;
        }
        gw_log(u->set->log, GW_LOG_WARN, "upstream \"%s\" node %s: TLS read failed: %s",
               u->up->conf->name, u->node->conf->addr, gw_tlsc_error(u->tls));
        up_fail(u, closed_error(u));
        return;
    }
    if (!u->closing && tls_flush(u) < 0) /* the session may answer (a key update) */
        up_fail(u, closed_error(u));
}

/* A pooled connection the node speaks on: a session ticket or a key
 * update is the session's own business, anything else ends it. */
static void
tls_idle_read(gw_upconn_t *u, ssize_t nread)
{
    char c;
    if (nread > 0 && gw_tlsc_read(u->tls, &c, 1) == 0 && tls_flush(u) >= 0)
        return;
    up_close(u);
}

static void
tls_on_read(gw_upconn_t *u, ssize_t nread, const uv_buf_t *buf)
{
    int fed = GW_OK;
    if (nread > 0) {
        (*u->set->reads)++;
        gw_edge_after_read(&u->edge, (uv_stream_t *)&u->tcp, nread, buf->len);
        fed = gw_tlsc_feed(u->tls, buf->base, (size_t)nread);
    }
    if (u->tls_in) {
        gw_rbuf_put(u->set->rbufs, u->tls_in);
        u->tls_in = NULL;
    }
    if (nread == 0)
        return;
    if (u->state == UP_IDLE || u->user == NULL) {
        tls_idle_read(u, nread);
        return;
    }
    if (fed != GW_OK) {
        up_fail(u, u->state == UP_CONNECTING ? GW_UP_CONNECT_FAILED : closed_error(u));
        return;
    }
    if (u->state == UP_CONNECTING) {
        if (nread < 0)
            tls_fail(u,
                     nread == UV_EOF ? "the node closed the connection" : uv_strerror((int)nread));
        else
            tls_handshake(u);
        return;
    }
    if (nread < 0) {
        up_read_end(u, nread);
        return;
    }
    tls_drain(u);
}

/* A clean end for a session that worked: close_notify, if the socket
 * takes it now (the close does not wait for it). */
static void
tls_close_notify(gw_upconn_t *u)
{
    const char *p;
    if (u->state == UP_CONNECTING || u->out.busy || u->failed)
        return;
    gw_tlsc_shutdown(u->tls);
    size_t n = gw_tlsc_pending(u->tls, &p);
    if (n) {
        uv_buf_t b = uv_buf_init((char *)p, (unsigned)n);
        (void)uv_try_write((uv_stream_t *)&u->tcp, &b, 1);
        gw_tlsc_sent(u->tls);
    }
}
