/*
 * Node health: active probes through gw_httpc, passive ejection from the
 * outcomes gw_request reports. Both only ever flip node->healthy through
 * set_state(), which logs the change and republishes the counts.
 */
#include "gw_health.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gw_breaker.h"
#include "gw_http.h"
#include "gw_httpc.h"
#include "gw_log.h"
#include "gw_metrics.h"
#include "gw_shstate.h"

#include <unistd.h>

/* Passive failures remembered per node; a larger threshold is clamped (a
 * count that high would not be a health signal anyway). */
#define MAX_PASSIVE_RING 10000
/* A health endpoint answers with a few bytes; more is not read. */
#define PROBE_MAX_BODY (64 * 1024)

typedef struct {
    gw_health_t *h;
    gw_node_t *node;
    char *url;
    gw_httpc_req_t *probe; /* never two in flight */
    unsigned ok_run, fail_run;
    uint64_t *fails; /* ring of the last passive failure times (ms) */
    unsigned nfails, head;
    uint64_t readmit_at; /* passive only: when an ejected node comes back; 0 none */
    int orphan;          /* its node left while a probe was out: freed by on_probe */
} hnode_t;

struct gw_health_s {
    uv_loop_t *loop;
    const gw_upstream_conf_t *conf;
    gw_tls_client_t *tls; /* scheme https: probes speak TLS too */
    gw_log_t *log;
    gw_metrics_t *metrics;
    int slot;
    uint64_t rng;
    hnode_t **nodes; /* in the order of the upstream's nodes (node->index) */
    size_t nnodes;
    unsigned ring_size;
    uv_timer_t timer; /* probe interval, or passive re-admission */
    int started, stopped;
    gw_shstate_t *sh; /* NULL: this worker's own view (no segment) */
    int pid;          /* the probe lease holder's name */
};

int
gw_health_enabled(const gw_upstream_conf_t *conf)
{
    return conf && (conf->health_active.enabled || conf->health_passive.enabled);
}

/* The state every worker decides on: the shared slot's when the node has
 * one, else this worker's own. */
static int
node_up(const gw_node_t *node)
{
    return node->sh_health ? gw_shnode_healthy(node->sh) : node->healthy;
}

static void
publish(gw_health_t *h)
{
    int up = 0, down = 0;
    for (size_t i = 0; i < h->nnodes; i++) {
        if (node_up(h->nodes[i]->node))
            up++;
        else
            down++;
    }
    gw_metrics_nodes(h->metrics, h->slot, (int)h->conf->index, up, down);
}

/* A change this worker made: logged once per instance, by the worker that
 * made it (the shared slot says who did). */
static void
announce(hnode_t *n, int healthy, const char *reason)
{
    gw_health_t *h = n->h;
    n->node->healthy = healthy;
    n->ok_run = n->fail_run = 0;
    n->nfails = n->head = 0;
    n->readmit_at = 0;
    gw_log(h->log, healthy ? GW_LOG_INFO : GW_LOG_WARN, "upstream \"%s\": node %s %s: %s",
           h->conf->name, n->node->conf->addr, healthy ? "is healthy again" : "ejected", reason);
    publish(h);
}

static void
set_state(hnode_t *n, int healthy, const char *reason)
{
    gw_health_t *h = n->h;
    if (n->node->sh_health && !gw_shnode_set_health(h->sh, n->node->sh, healthy, 0)) {
        /* another worker got there first */
        n->node->healthy = healthy;
        n->ok_run = n->fail_run = 0;
        return;
    }
    announce(n, healthy, reason);
}

static void
fmt_ms(char *buf, size_t len, uint64_t ms)
{
    if (ms % 1000 == 0)
        snprintf(buf, len, "%llus", (unsigned long long)(ms / 1000));
    else
        snprintf(buf, len, "%llums", (unsigned long long)ms);
}

/* ---- passive ---- */

static void on_readmit(uv_timer_t *t);

static void
arm_readmit(gw_health_t *h)
{
    uint64_t now = uv_now(h->loop), next = 0;
    for (size_t i = 0; i < h->nnodes; i++) {
        uint64_t at = h->nodes[i]->readmit_at;
        if (at && (next == 0 || at < next))
            next = at;
    }
    if (next == 0) {
        uv_timer_stop(&h->timer);
        return;
    }
    uv_timer_start(&h->timer, on_readmit, next > now ? next - now : 0, 0);
}

static void
on_readmit(uv_timer_t *t)
{
    gw_health_t *h = t->data;
    if (h->stopped)
        return;
    uint64_t now = uv_now(h->loop);
    char w[32], why[64];
    fmt_ms(w, sizeof(w), h->conf->health_passive.window_ms);
    snprintf(why, sizeof(why), "on probation after %s", w);
    for (size_t i = 0; i < h->nnodes; i++) {
        hnode_t *n = h->nodes[i];
        if (!n->readmit_at || n->readmit_at > now)
            continue;
        if (!n->node->sh_health)
            set_state(n, 1, why);
        else if (gw_shnode_readmit_due(h->sh, n->node->sh, now))
            announce(n, 1, why);
        else
            set_state(n, 1, why); /* a no-op when another worker re-admitted it */
    }
    arm_readmit(h);
}

/* Shared passive ejection: failures of every worker count together. */
static void
observe_shared(hnode_t *n, uint64_t now)
{
    gw_health_t *h = n->h;
    uint64_t window = h->conf->health_passive.window_ms;
    uint64_t readmit = h->conf->health_active.enabled ? 0 : now + window;
    if (!gw_shnode_passive_fail(h->sh, n->node->sh, now, h->ring_size, window, readmit))
        return;
    char w[32], why[96];
    fmt_ms(w, sizeof(w), window);
    snprintf(why, sizeof(why), "%u failure%s in %s", h->ring_size, h->ring_size == 1 ? "" : "s", w);
    announce(n, 0, why);
    if (readmit) {
        n->readmit_at = readmit;
        arm_readmit(h);
    }
}

void
gw_health_observe(gw_health_t *h, const gw_node_t *node, int status)
{
    if (h == NULL || h->stopped || !h->conf->health_passive.enabled || node->index >= h->nnodes)
        return;
    hnode_t *n = h->nodes[node->index];
    if (n->node != node || !node_up(n->node) || !gw_breaker_is_failure(&h->conf->breaker, status))
        return;
    uint64_t now = uv_now(h->loop);
    if (n->node->sh_health && h->ring_size <= GW_SH_RING) {
        observe_shared(n, now);
        return;
    }
    n->fails[n->head] = now;
    n->head = (n->head + 1) % h->ring_size;
    if (n->nfails < h->ring_size)
        n->nfails++;
    if (n->nfails < h->ring_size)
        return;
    /* the ring is full: head is the oldest of the last ring_size failures */
    uint64_t window = h->conf->health_passive.window_ms;
    if (now - n->fails[n->head] >= window)
        return;
    char w[32], why[96];
    fmt_ms(w, sizeof(w), window);
    snprintf(why, sizeof(why), "%u failure%s in %s", h->ring_size, h->ring_size == 1 ? "" : "s", w);
    set_state(n, 0, why);
    if (!h->conf->health_active.enabled) {
        n->readmit_at = now + window;
        arm_readmit(h);
    }
}

/* ---- active ---- */

static void start_probe(hnode_t *n);

static void
probe_result(hnode_t *n, int ok, const char *error)
{
    gw_health_t *h = n->h;
    const gw_health_active_conf_t *a = &h->conf->health_active;
    char why[192];
    if (ok) {
        n->fail_run = 0;
        n->ok_run++;
        if (!node_up(n->node) && n->ok_run >= (unsigned)a->healthy) {
            snprintf(why, sizeof(why), "%u successful probe%s", n->ok_run,
                     n->ok_run == 1 ? "" : "s");
            set_state(n, 1, why);
        }
        return;
    }
    n->ok_run = 0;
    n->fail_run++;
    if (node_up(n->node) && n->fail_run >= (unsigned)a->unhealthy) {
        snprintf(why, sizeof(why), "%u failed probe%s: %s", n->fail_run,
                 n->fail_run == 1 ? "" : "s", error);
        set_state(n, 0, why);
    }
}

static void
on_probe(gw_httpc_req_t *req, int err, const char *errmsg, const gw_httpc_resp_t *resp, void *arg)
{
    hnode_t *n = arg;
    n->probe = NULL;
    if (n->orphan) {
        free(n->url);
        free(n->fails);
        free(n);
        return;
    }
    if (n->h->stopped || err == GW_HTTPC_ECANCELED)
        return;
    if (err == 0 && resp->status >= 200 && resp->status < 400) {
        probe_result(n, 1, NULL);
        return;
    }
    char why[128];
    if (err == 0)
        snprintf(why, sizeof(why), "status %d", resp->status);
    else if (err == GW_HTTPC_ETIMEDOUT)
        snprintf(why, sizeof(why), "timeout");
    else
        snprintf(why, sizeof(why), "%s", errmsg ? errmsg : "error");
    probe_result(n, 0, why);
}

static void
start_probe(hnode_t *n)
{
    gw_health_t *h = n->h;
    char err[128];
    gw_header_t hdrs[2];
    const char *host = n->node->conf->addr;
    hdrs[0].name = (gw_str_t){"Host", 4};
    hdrs[0].value = (gw_str_t){host, strlen(host)};
    hdrs[1].name = (gw_str_t){"User-Agent", 10};
    hdrs[1].value = (gw_str_t){"gateway-health", 14};
    gw_httpc_opts_t o = {
        .method = "GET",
        .url = n->url,
        .headers = hdrs,
        .nheaders = 2,
        .timeout_ms = h->conf->health_active.timeout_ms,
        .max_body = PROBE_MAX_BODY,
        .tls = h->tls,
        .tls_name = h->tls ? gw_upstream_tls_name(h->conf, n->node->conf) : NULL,
    };
    n->probe = gw_httpc_request(h->loop, &o, on_probe, n, err, sizeof(err));
    if (n->probe == NULL)
        probe_result(n, 0, err);
}

static void
on_probe_tick(uv_timer_t *t)
{
    gw_health_t *h = t->data;
    if (h->stopped)
        return;
    const gw_health_active_conf_t *a = &h->conf->health_active;
    uint64_t now = uv_now(h->loop), ttl = 2 * a->interval_ms + a->timeout_ms;
    for (size_t i = 0; i < h->nnodes; i++) {
        hnode_t *n = h->nodes[i];
        /* one worker probes a shared node; the others take over when its
         * lease lapses (it died, or drains) */
        if (n->node->sh_health && !gw_shnode_lease(h->sh, n->node->sh, h->pid, now, ttl)) {
            n->ok_run = n->fail_run = 0;
            continue;
        }
        if (n->probe == NULL)
            start_probe(n);
    }
}

/* ---- lifetime ---- */

static char *
probe_url(const gw_node_conf_t *nc, const char *path, int https)
{
    char ip[64], host[72];
    const struct sockaddr *sa = (const struct sockaddr *)&nc->sa;
    /* probe the address the proxy connects to: no DNS per probe */
    if (sa->sa_family == AF_INET6) {
        if (uv_ip6_name((const struct sockaddr_in6 *)sa, ip, sizeof(ip)) != 0)
            return NULL;
        snprintf(host, sizeof(host), "[%s]", ip);
    } else if (sa->sa_family == AF_INET) {
        if (uv_ip4_name((const struct sockaddr_in *)sa, ip, sizeof(ip)) != 0)
            return NULL;
        snprintf(host, sizeof(host), "%s", ip);
    } else {
        snprintf(host, sizeof(host), "%s", nc->host);
    }
    size_t len = strlen(host) + strlen(path) + 32;
    char *url = malloc(len);
    if (url)
        snprintf(url, len, "%s://%s:%d%s", https ? "https" : "http", host, nc->port, path);
    return url;
}

static hnode_t *
hnode_new(gw_health_t *h, gw_node_t *node)
{
    hnode_t *n = calloc(1, sizeof(*n));
    if (n == NULL)
        return NULL;
    n->h = h;
    n->node = node;
    if (h->conf->health_passive.enabled &&
        (n->fails = calloc(h->ring_size, sizeof(uint64_t))) == NULL)
        goto failed;
    if (h->conf->health_active.enabled &&
        (n->url =
             probe_url(node->conf, h->conf->health_active.path ? h->conf->health_active.path : "/",
                       h->conf->tls.enabled)) == NULL)
        goto failed;
    return n;
failed:
    free(n->fails);
    free(n);
    return NULL;
}

/* A probe in flight holds N: it is freed when the probe's callback runs. */
static void
hnode_free(hnode_t *n)
{
    if (n == NULL)
        return;
    if (n->probe) {
        n->orphan = 1;
        gw_httpc_cancel(n->probe);
        return;
    }
    free(n->url);
    free(n->fails);
    free(n);
}

gw_health_t *
gw_health_new(uv_loop_t *loop, const gw_upstream_conf_t *conf, gw_tls_client_t *tls,
              gw_node_t **nodes, size_t nnodes, gw_log_t *log, gw_metrics_t *metrics, int slot,
              uint64_t seed, char *err, size_t errlen)
{
    gw_health_t *h = calloc(1, sizeof(*h));
    if (h == NULL)
        goto failed;
    h->loop = loop;
    h->conf = conf;
    h->tls = tls;
    h->log = log;
    h->metrics = metrics;
    h->slot = slot;
    h->pid = (int)getpid();
    h->rng = seed ? seed : 0x9e3779b97f4a7c15ull;
    int passive = conf->health_passive.unhealthy;
    h->ring_size = passive < 1 ? 1 : passive > MAX_PASSIVE_RING ? MAX_PASSIVE_RING : passive;
    h->nodes = calloc(nnodes ? nnodes : 1, sizeof(hnode_t *));
    if (h->nodes == NULL)
        goto failed;
    for (size_t i = 0; i < nnodes; i++) {
        if ((h->nodes[i] = hnode_new(h, nodes[i])) == NULL)
            goto failed;
        h->nnodes++;
    }
    return h;
failed:
    snprintf(err, errlen, "out of memory building health checks");
    gw_health_free(h);
    return NULL;
}

int
gw_health_set_nodes(gw_health_t *h, gw_node_t **nodes, size_t n)
{
    if (h == NULL)
        return GW_OK;
    hnode_t **hn = calloc(n ? n : 1, sizeof(hnode_t *));
    if (hn == NULL)
        return GW_ERROR; /* the old records go on; observe checks the node */
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < h->nnodes && hn[i] == NULL; j++)
            if (h->nodes[j]->node == nodes[i])
                hn[i] = h->nodes[j];
    for (size_t i = 0; i < n; i++) {
        if (hn[i] == NULL && (hn[i] = hnode_new(h, nodes[i])) == NULL) {
            gw_log(h->log, GW_LOG_ERROR, "upstream \"%s\": out of memory for health checks",
                   h->conf->name);
            for (size_t j = 0; j < i; j++) {
                int old = 0;
                for (size_t k = 0; k < h->nnodes && !old; k++)
                    old = h->nodes[k] == hn[j];
                if (!old)
                    hnode_free(hn[j]);
            }
            free(hn);
            return GW_ERROR;
        }
    }
    /* the old nodes not taken over go */
    for (size_t j = 0; j < h->nnodes; j++) {
        int kept = 0;
        for (size_t i = 0; i < n && !kept; i++)
            kept = hn[i] == h->nodes[j];
        if (!kept)
            hnode_free(h->nodes[j]);
    }
    free(h->nodes);
    h->nodes = hn;
    h->nnodes = n;
    if (h->started && !h->stopped) {
        publish(h);
        if (h->conf->health_active.enabled && !uv_is_active((uv_handle_t *)&h->timer))
            uv_timer_start(&h->timer, on_probe_tick, h->conf->health_active.interval_ms,
                           h->conf->health_active.interval_ms);
    }
    return GW_OK;
}

void
gw_health_start(gw_health_t *h)
{
    if (h == NULL || h->started)
        return;
    h->started = 1;
    uv_timer_init(h->loop, &h->timer);
    h->timer.data = h;
    /* the worker's listeners keep the loop alive; a health timer never should */
    uv_unref((uv_handle_t *)&h->timer);
    if (h->conf->health_passive.enabled && h->conf->health_passive.unhealthy > MAX_PASSIVE_RING)
        gw_log(h->log, GW_LOG_WARN, "upstream \"%s\": health.passive.unhealthy capped at %d",
               h->conf->name, MAX_PASSIVE_RING);
    publish(h);
    const gw_health_active_conf_t *a = &h->conf->health_active;
    if (a->enabled && h->nnodes) {
        /* spread the workers' probes over the interval */
        uint64_t first = gw_rng_next(&h->rng) % (a->interval_ms ? a->interval_ms : 1);
        uv_timer_start(&h->timer, on_probe_tick, first, a->interval_ms);
    }
}

void
gw_health_stop(gw_health_t *h)
{
    if (h == NULL || h->stopped)
        return;
    h->stopped = 1;
    if (h->started)
        uv_close((uv_handle_t *)&h->timer, NULL);
    for (size_t i = 0; i < h->nnodes; i++) {
        if (h->nodes[i]->probe)
            gw_httpc_cancel(h->nodes[i]->probe);
        if (h->nodes[i]->node->sh_health)
            gw_shnode_lease_release(h->sh, h->nodes[i]->node->sh, h->pid);
    }
}

void
gw_health_set_shared(gw_health_t *h, gw_shstate_t *sh)
{
    if (h)
        h->sh = sh;
}

void
gw_health_tick(gw_health_t *h)
{
    if (h == NULL || h->stopped || !h->started || h->sh == NULL)
        return;
    uint64_t now = uv_now(h->loop);
    for (size_t i = 0; i < h->nnodes; i++) {
        hnode_t *n = h->nodes[i];
        /* the worker that ejected it may be gone: whoever comes first */
        if (n->node->sh_health && gw_shnode_readmit_due(h->sh, n->node->sh, now))
            announce(n, 1, "on probation (re-admission time passed)");
    }
    publish(h); /* changes other workers made */
}

void
gw_health_free(gw_health_t *h)
{
    if (h == NULL)
        return;
    for (size_t i = 0; h->nodes && i < h->nnodes; i++)
        hnode_free(h->nodes[i]);
    free(h->nodes);
    free(h);
}
