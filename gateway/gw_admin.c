/*
 * The admin API over gw_minihttp, one request per connection: the server
 * collects the request line, the X-API-Key and Content-Type headers and a
 * bounded body; here the request is answered from the worker's config and
 * runtime and the shared state, and the connection closes after the answer.
 */
#include "gw_admin.h"

#include <arpa/inet.h>
#include <errno.h>
#include <llhttp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "gw_balancer.h"
#include "gw_breaker.h"
#include "gw_crypto.h"
#include "gw_http.h"
#include "gw_json.h"
#include "gw_jsonr.h"
#include "gw_log.h"
#include "gw_lua.h"
#include "gw_minihttp.h"
#include "gw_shstate.h"
#include "gw_upstream.h"

#define URL_MAX 512
#define KEY_MAX 256
#define CTYPE_MAX 64
#define CHECK_MAX_OUT (64 * 1024)
#define REDACT_MAX_TOKS (1u << 20)

typedef struct aconn_s aconn_t;
typedef struct check_s check_t;

enum { HDR_KEY = 0, HDR_CTYPE };

/* A connection's data (gw_minihttp_conn_data). */
struct aconn_s {
    gw_minihttp_conn_t *http;
    gw_admin_t *a;
    const gw_minihttp_req_t *req; /* while it is served */
    char rid[33];
    check_t *check; /* POST /reload waiting for its -t child */
};

typedef struct {
    char addr[INET6_ADDRSTRLEN];
    unsigned fails;
    uint64_t first_ms, last_ms, blocked_until;
} peer_t;

struct check_s {
    gw_admin_t *a;
    aconn_t *conn; /* NULL once the client went away */
    uv_process_t proc;
    uv_pipe_t out, err;
    uv_timer_t timer;
    gw_buf_t text_out, text_err;
    int handles;
    int64_t status;
    int term_signal;
    int exited, timed_out, check_only;
};

struct gw_admin_s {
    gw_admin_env_t w; /* the serving worker's view */
    uv_loop_t *loop;
    gw_minihttp_t *http; /* NULL once closed */
    int closing;
    check_t *check;
    peer_t peers[GW_ADMIN_PEERS];
    uint64_t rng;
};

/* ---- key, secrets ---- */

int
gw_admin_key_ok(const char *want, const char *got, size_t gotlen)
{
    unsigned char dw[32], dg[32];
    /* comparing digests: equal-length inputs to the compare whatever the
     * lengths of the keys, so neither length nor content leaks */
    if (want == NULL || got == NULL || gw_crypto_sha256(want, strlen(want), dw) != 0 ||
        gw_crypto_sha256(got, gotlen, dg) != 0)
        return 0;
    return gw_crypto_constant_eq((const char *)dw, 32, (const char *)dg, 32);
}

static int
ends_with(const char *s, size_t len, const char *suffix)
{
    size_t n = strlen(suffix);
    return len >= n && strncasecmp(s + len - n, suffix, n) == 0;
}

static int
contains(const char *s, size_t len, const char *part)
{
    size_t n = strlen(part);
    for (size_t i = 0; i + n <= len; i++)
        if (strncasecmp(s + i, part, n) == 0)
            return 1;
    return 0;
}

int
gw_admin_secret_name(const char *name, size_t len)
{
    /* by name, so a secret a later module adds is covered: anything named
     * like a key, secret, password, token or credential. A few harmless
     * values (a public key, a key spec) are hidden too: better than the
     * other way round. */
    static const char *const parts[] = {"secret",     "password", "passwd",     "token",
                                        "credential", "private",  "auth_header"};
    if (ends_with(name, len, "key") || ends_with(name, len, "keys"))
        return 1;
    for (size_t i = 0; i < GW_ARRAY_LEN(parts); i++)
        if (contains(name, len, parts[i]))
            return 1;
    return 0;
}

static void
put_json_str(gw_buf_t *b, const char *s, size_t len)
{
    gw_buf_reserve(b, 6 * len + 2);
    b->data[b->len++] = '"';
    b->len += gw_json_escape(b->data + b->len, s, len);
    b->data[b->len++] = '"';
}

static void
put_str(gw_buf_t *b, const char *s)
{
    if (s == NULL)
        gw_buf_append(b, "null", 4);
    else
        put_json_str(b, s, strlen(s));
}

static void
redact_value(const gw_jsonr_t *j, int t, gw_buf_t *out)
{
    const gw_jsonr_tok_t *tok = &j->toks[t];
    if (tok->type == GW_JSONR_OBJECT) {
        gw_buf_append(out, "{", 1);
        int first = 1;
        /* members come as key, value: the value is the token after its key,
         * and the next key the token after the value */
        for (int k = gw_jsonr_first(j, t), v; k >= 0; k = gw_jsonr_next(j, t, v)) {
            v = (int)j->toks[k].end;
            const gw_jsonr_tok_t *kt = &j->toks[k];
            if (!first)
                gw_buf_append(out, ",", 1);
            first = 0;
            /* the key's text as written: it is valid JSON already */
            gw_buf_append(out, "\"", 1);
            gw_buf_append(out, j->text + kt->off, kt->len);
            gw_buf_append(out, "\":", 2);
            char name[128];
            long n = gw_jsonr_str(j, k, name, sizeof(name));
            if (n >= 0 ? gw_admin_secret_name(name, (size_t)n)
                       : gw_admin_secret_name(j->text + kt->off, kt->len))
                gw_buf_append(out, "\"[redacted]\"", 12);
            else
                redact_value(j, v, out);
        }
        gw_buf_append(out, "}", 1);
    } else if (tok->type == GW_JSONR_ARRAY) {
        gw_buf_append(out, "[", 1);
        int first = 1;
        for (int e = gw_jsonr_first(j, t); e >= 0; e = gw_jsonr_next(j, t, e)) {
            if (!first)
                gw_buf_append(out, ",", 1);
            first = 0;
            redact_value(j, e, out);
        }
        gw_buf_append(out, "]", 1);
    } else if (tok->type == GW_JSONR_STRING) {
        gw_buf_append(out, "\"", 1);
        gw_buf_append(out, j->text + tok->off, tok->len);
        gw_buf_append(out, "\"", 1);
    } else {
        gw_buf_append(out, j->text + tok->off, tok->len);
    }
}

int
gw_admin_redact(const char *in, size_t len, gw_buf_t *out)
{
    gw_jsonr_t j;
    int rc = gw_jsonr_parse(&j, in, len, REDACT_MAX_TOKS, NULL, 0);
    if (rc == 0)
        redact_value(&j, 0, out);
    gw_jsonr_free(&j);
    return rc == 0 ? GW_OK : GW_ERROR;
}

/* ---- failed keys per peer ---- */

static peer_t *
peer_find(gw_admin_t *a, const char *addr, int create, uint64_t now)
{
    peer_t *oldest = NULL, *oldest_blocked = NULL;
    for (size_t i = 0; i < GW_ADMIN_PEERS; i++) {
        peer_t *p = &a->peers[i];
        if (p->addr[0] && strcmp(p->addr, addr) == 0)
            return p;
        if (!p->addr[0]) {
            oldest = p;
            break;
        }
        peer_t **pick = p->blocked_until > now ? &oldest_blocked : &oldest;
        if (*pick == NULL || p->last_ms < (*pick)->last_ms)
            *pick = p;
    }
    if (oldest == NULL)
        oldest = oldest_blocked;
    if (!create)
        return NULL;
    /* full: the peer that failed longest ago makes room (a blocked one
     * only when every entry is) */
    memset(oldest, 0, sizeof(*oldest));
    snprintf(oldest->addr, sizeof(oldest->addr), "%s", addr);
    oldest->first_ms = now;
    return oldest;
}

static uint64_t
peer_blocked(gw_admin_t *a, const char *addr, uint64_t now)
{
    peer_t *p = peer_find(a, addr, 0, now);
    return p && p->blocked_until > now ? p->blocked_until - now : 0;
}

static void
peer_failed(gw_admin_t *a, const char *addr, uint64_t now)
{
    peer_t *p = peer_find(a, addr, 1, now);
    if (now - p->first_ms > GW_ADMIN_FAIL_WINDOW_MS) {
        p->first_ms = now;
        p->fails = 0;
    }
    p->fails++;
    p->last_ms = now;
    if (p->fails >= GW_ADMIN_FAIL_LIMIT) {
        p->blocked_until = now + GW_ADMIN_BLOCK_MS;
        p->fails = 0;
        p->first_ms = now;
        gw_log(a->w.log, GW_LOG_WARN, "admin: %s sent %d wrong keys: refused for %ds", addr,
               GW_ADMIN_FAIL_LIMIT, GW_ADMIN_BLOCK_MS / 1000);
    }
}

/* ---- connections ---- */

static void
maybe_free(gw_admin_t *a)
{
    if (a->closing && a->http == NULL && a->check == NULL)
        free(a);
}

static void
on_http_closed(void *arg)
{
    gw_admin_t *a = arg;
    a->http = NULL;
    maybe_free(a);
}

/* The connection's request id, made on first use: one per connection. */
static const char *
conn_rid(aconn_t *c)
{
    if (!c->rid[0]) {
        uint64_t r = gw_rng_next(&c->a->rng);
        uint64_t r2 = gw_rng_next(&c->a->rng);
        snprintf(c->rid, sizeof(c->rid), "%016llx%016llx", (unsigned long long)r,
                 (unsigned long long)r2);
    }
    return c->rid;
}

/* Sends STATUS with BODY (JSON, a newline is added) and closes the
 * connection after it. */
static void
respond(aconn_t *c, int status, gw_buf_t *body, const char *extra)
{
    char head[512];
    snprintf(head, sizeof(head), "X-Request-Id: %s\r\nCache-Control: no-store\r\n%s", conn_rid(c),
             extra ? extra : "");
    gw_buf_append(body, "\n", 1);
    gw_minihttp_resp_t r = {.status = status,
                            .type = "application/json",
                            .extra = head,
                            .body = body->data,
                            .body_len = body->len};
    gw_minihttp_respond(c->http, &r);
}

/* The gateway's error envelope; EXTRA_JSON (",\"errors\":[...]") may add members. */
static void
respond_error(aconn_t *c, int status, const char *message, const char *extra_json,
              const char *extra_head)
{
    gw_buf_t b = {0};
    const char *rid = conn_rid(c);
    gw_http_error_body(&b, status, message, (gw_str_t){rid, strlen(rid)});
    if (extra_json) {
        b.len--; /* the closing brace */
        gw_buf_append(&b, extra_json, strlen(extra_json));
        gw_buf_append(&b, "}", 1);
    }
    respond(c, status, &b, extra_head);
    gw_buf_free(&b);
}

/* ---- GET handlers ---- */

static const char *
path_kind(gw_path_kind_t k)
{
    switch (k) {
    case GW_PATH_EXACT:
        return "exact";
    case GW_PATH_PREFIX:
        return "prefix";
    case GW_PATH_PARAM:
        return "param";
    case GW_PATH_REGEX:
        return "regex";
    default:
        return "any";
    }
}

static void
put_methods(gw_buf_t *b, unsigned m)
{
    static const char *const names[] = {"GET",   "HEAD",    "POST",  "PUT",    "DELETE",
                                        "PATCH", "OPTIONS", "TRACE", "CONNECT"};
    gw_buf_append(b, "[", 1);
    int first = 1;
    for (size_t i = 0; i < GW_ARRAY_LEN(names); i++) {
        if (!(m & (1u << i)))
            continue;
        if (!first)
            gw_buf_append(b, ",", 1);
        first = 0;
        put_str(b, names[i]);
    }
    gw_buf_append(b, "]", 1);
}

static void
put_kv(gw_buf_t *b, const gw_kv_t *kv, size_t n)
{
    gw_buf_append(b, "{", 1);
    for (size_t i = 0; i < n; i++) {
        if (i)
            gw_buf_append(b, ",", 1);
        put_str(b, kv[i].key);
        gw_buf_append(b, ":", 1);
        put_str(b, kv[i].value);
    }
    gw_buf_append(b, "}", 1);
}

static void
get_routes(aconn_t *c)
{
    const gw_conf_t *conf = c->a->w.conf;
    gw_buf_t b = {0};
    gw_buf_append(&b, "{\"routes\":[", 11);
    for (size_t i = 0; i < conf->nroutes; i++) {
        const gw_route_conf_t *r = &conf->routes[i];
        if (i)
            gw_buf_append(&b, ",", 1);
        gw_buf_append(&b, "{\"name\":", 8);
        put_str(&b, r->name);
        gw_buf_appendf(&b, ",\"index\":%zu,\"host\":", r->index);
        put_str(&b, r->host);
        gw_buf_append(&b, ",\"path\":", 8);
        put_str(&b, r->path);
        gw_buf_appendf(&b, ",\"path_type\":\"%s\",\"methods\":", path_kind(r->path_kind));
        if (r->methods)
            put_methods(&b, r->methods);
        else
            gw_buf_append(&b, "null", 4);
        gw_buf_appendf(&b, ",\"priority\":%d,\"upstream\":", r->priority);
        put_str(&b, r->upstream ? r->upstream->name : NULL);
        gw_buf_append(&b, ",\"strip_prefix\":", 16);
        put_str(&b, r->strip_prefix);
        gw_buf_append(&b, ",\"upstream_path\":", 17);
        put_str(&b, r->upstream_path);
        gw_buf_appendf(&b, ",\"timeout_ms\":%llu,\"subset\":", (unsigned long long)r->timeout_ms);
        put_kv(&b, r->subset, r->nsubset);
        gw_buf_append(&b, ",\"split\":[", 10);
        for (size_t s = 0; s < r->nsplit; s++) {
            const gw_split_rule_t *sp = &r->split[s];
            static const char *const kinds[] = {"header", "user_hash", "weight"};
            if (s)
                gw_buf_append(&b, ",", 1);
            gw_buf_appendf(&b, "{\"kind\":\"%s\",\"percent\":%d,\"upstream\":",
                           (size_t)sp->kind < GW_ARRAY_LEN(kinds) ? kinds[sp->kind] : "other",
                           sp->percent);
            put_str(&b, sp->upstream ? sp->upstream->name : NULL);
            gw_buf_append(&b, "}", 1);
        }
        gw_buf_append(&b, "],\"plugins\":[", 13);
        for (size_t p = 0; p < r->nplugins; p++) {
            if (p)
                gw_buf_append(&b, ",", 1);
            put_str(&b, r->plugins[p].name);
        }
        gw_buf_append(&b, "]}", 2);
    }
    gw_buf_append(&b, "],\"global_plugins\":[", 20);
    for (size_t p = 0; p < conf->nglobal_plugins; p++) {
        if (p)
            gw_buf_append(&b, ",", 1);
        put_str(&b, conf->global_plugins[p].name);
    }
    gw_buf_appendf(&b, "],\"generation_file\":");
    put_str(&b, conf->file);
    gw_buf_append(&b, "}", 1);
    respond(c, 200, &b, NULL);
    gw_buf_free(&b);
}

static void
put_breaker(gw_buf_t *b, gw_breaker_t *br, const char *scope, uint64_t now)
{
    gw_breaker_stats_t st;
    gw_breaker_stats(br, now, &st);
    gw_buf_appendf(b,
                   "{\"scope\":\"%s\",\"state\":\"%s\",\"drop_ratio\":%.4f,\"shared\":%s,"
                   "\"window\":{\"total\":%llu,\"successes\":%llu,\"failures\":%llu,"
                   "\"drops\":%llu},\"drops_total\":%llu}",
                   scope, st.ratio > 0 ? "open" : "closed", st.ratio,
                   gw_breaker_is_shared(br) ? "true" : "false", (unsigned long long)st.total,
                   (unsigned long long)st.accepts, (unsigned long long)st.failures,
                   (unsigned long long)st.drops, (unsigned long long)st.drops_total);
}

static const char *
disc_kind(gw_discovery_kind_t k)
{
    switch (k) {
    case GW_DISC_ETCD:
        return "etcd";
    case GW_DISC_CONSUL:
        return "consul";
    case GW_DISC_DNS:
        return "dns";
    default:
        return "static";
    }
}

static void
put_node(gw_buf_t *b, const gw_upstream_rt_t *up, const gw_node_t *n, uint64_t now)
{
    const gw_shnode_t *sh = n->sh;
    int healthy = n->sh_health ? gw_shnode_healthy(sh) : n->healthy;
    gw_buf_append(b, "{\"addr\":", 8);
    put_str(b, n->conf->addr);
    gw_buf_appendf(b, ",\"weight\":%d,\"health\":\"%s\",\"health_checked\":%s,", n->weight,
                   healthy ? "healthy" : "unhealthy", up->health ? "true" : "false");
    if (sh)
        gw_buf_appendf(b, "\"ejections\":%llu,\"inflight\":%lld,\"ewma_ms\":%.3f,\"shared\":true,",
                       (unsigned long long)atomic_load(&sh->ejections),
                       (long long)atomic_load(&sh->inflight), gw_shnode_ewma_ms(sh));
    else
        gw_buf_appendf(b, "\"ejections\":null,\"inflight\":%u,\"ewma_ms\":%.3f,\"shared\":false,",
                       n->inflight, n->ewma_latency_us / 1000.0);
    gw_buf_append(b, "\"source\":", 9);
    put_str(b,
            up->conf->discovery.kind == GW_DISC_STATIC ? "static" : up->conf->discovery.registry);
    gw_buf_append(b, ",\"meta\":", 8);
    put_kv(b, n->conf->meta, n->conf->nmeta);
    gw_buf_append(b, ",\"breaker\":", 11);
    if (n->breaker)
        put_breaker(b, n->breaker, "node", now);
    else if (up->breaker)
        put_breaker(b, up->breaker, "upstream", now);
    else
        gw_buf_append(b, "null", 4);
    gw_buf_append(b, "}", 1);
}

static void
get_upstreams(aconn_t *c)
{
    const gw_admin_env_t *w = &c->a->w;
    const gw_conf_t *conf = w->conf;
    gw_upstreams_t *ups = w->upstreams;
    uint64_t now = uv_now(w->loop);
    gw_buf_t b = {0};
    gw_buf_append(&b, "{\"upstreams\":[", 14);
    for (size_t i = 0; ups && i < ups->n; i++) {
        gw_upstream_rt_t *up = &ups->ups[i];
        const gw_upstream_conf_t *uc = up->conf;
        if (i)
            gw_buf_append(&b, ",", 1);
        gw_buf_append(&b, "{\"name\":", 8);
        put_str(&b, uc->name);
        gw_buf_appendf(&b,
                       ",\"balancer\":\"%s\",\"discovery\":", gw_balancer_kind_name(uc->balancer));
        if (uc->discovery.kind == GW_DISC_STATIC)
            gw_buf_append(&b, "null", 4);
        else {
            gw_buf_appendf(&b, "{\"kind\":\"%s\",\"registry\":", disc_kind(uc->discovery.kind));
            put_str(&b, uc->discovery.registry);
            gw_buf_append(&b, "}", 1);
        }
        gw_buf_appendf(&b,
                       ",\"health_checks\":{\"active\":%s,\"passive\":%s},\"breaker_scope\":\"%s\","
                       "\"nodes\":[",
                       uc->health_active.enabled ? "true" : "false",
                       uc->health_passive.enabled ? "true" : "false",
                       !uc->breaker.enabled                     ? "off"
                       : uc->breaker.scope == GW_SCOPE_NODE     ? "node"
                       : uc->breaker.scope == GW_SCOPE_UPSTREAM ? "upstream"
                                                                : "route");
        int nup = 0, ndown = 0;
        for (size_t n = 0; n < up->nnodes; n++) {
            const gw_node_t *node = up->nodes[n];
            int h = node->sh_health ? gw_shnode_healthy(node->sh) : node->healthy;
            nup += h != 0;
            ndown += h == 0;
            if (n)
                gw_buf_append(&b, ",", 1);
            put_node(&b, up, node, now);
        }
        gw_buf_appendf(&b, "],\"healthy\":%d,\"unhealthy\":%d,\"route_breakers\":[", nup, ndown);
        int first = 1;
        for (size_t r = 0; ups->route_breakers && r < ups->nroutes; r++) {
            const gw_route_conf_t *rc = &conf->routes[r];
            for (size_t k = 0; ups->route_breakers[r] && k <= ups->nsplits[r]; k++) {
                gw_breaker_t *br = ups->route_breakers[r][k];
                const gw_upstream_conf_t *tu = k == 0 ? rc->upstream : rc->split[k - 1].upstream;
                int dup = 0;
                for (size_t j = 0; j < k; j++)
                    dup |= ups->route_breakers[r][j] == br;
                if (br == NULL || dup || tu != uc)
                    continue;
                if (!first)
                    gw_buf_append(&b, ",", 1);
                first = 0;
                gw_buf_append(&b, "{\"route\":", 9);
                put_str(&b, rc->name);
                gw_buf_appendf(&b, ",\"route_index\":%zu,\"breaker\":", r);
                put_breaker(&b, br, "route", now);
                gw_buf_append(&b, "}", 1);
            }
        }
        gw_buf_append(&b, "]}", 2);
    }
    size_t nu, nc, bu, bc;
    gw_shstate_usage(w->shstate, &nu, &nc, &bu, &bc);
    gw_buf_appendf(&b,
                   "],\"shared_state\":{\"enabled\":%s,\"node_slots\":%zu,\"node_slots_max\":%zu,"
                   "\"breaker_slots\":%zu,\"breaker_slots_max\":%zu}}",
                   w->shstate ? "true" : "false", nu, nc, bu, bc);
    respond(c, 200, &b, NULL);
    gw_buf_free(&b);
}

static void
get_consumers(aconn_t *c)
{
    const gw_conf_t *conf = c->a->w.conf;
    const char *text = conf->consumers_json ? conf->consumers_json : "[]";
    gw_jsonr_t j;
    gw_buf_t b = {0};
    if (gw_jsonr_parse(&j, text, strlen(text), REDACT_MAX_TOKS, NULL, 0) != 0 ||
        gw_jsonr_type(&j, 0) != GW_JSONR_ARRAY) {
        gw_jsonr_free(&j);
        respond_error(c, 500, "consumers unreadable", NULL, NULL);
        return;
    }
    gw_buf_append(&b, "{\"consumers\":[", 14);
    int first = 1;
    for (int e = gw_jsonr_first(&j, 0); e >= 0; e = gw_jsonr_next(&j, 0, e)) {
        char *name = gw_jsonr_strdup(&j, gw_jsonr_get(&j, e, "name"), NULL);
        if (!first)
            gw_buf_append(&b, ",", 1);
        first = 0;
        gw_buf_append(&b, "{\"name\":", 8);
        put_str(&b, name);
        gw_buf_append(&b, "}", 1);
        free(name);
    }
    gw_buf_append(&b, "]}", 2);
    gw_jsonr_free(&j);
    respond(c, 200, &b, NULL);
    gw_buf_free(&b);
}

static void
get_config(aconn_t *c)
{
    const gw_conf_t *conf = c->a->w.conf;
    gw_buf_t b = {0};
    gw_buf_append(&b, "{\"file\":", 8);
    put_str(&b, conf->file);
    gw_buf_appendf(&b, ",\"hash\":\"%016llx\",\"workers\":%d,\"config\":",
                   (unsigned long long)conf->hash, c->a->w.nworkers);
    const char *tree = conf->tree_json ? conf->tree_json : "{}";
    if (gw_admin_redact(tree, strlen(tree), &b) != GW_OK) {
        gw_buf_free(&b);
        respond_error(c, 500, "config unreadable", NULL, NULL);
        return;
    }
    gw_buf_append(&b, "}", 1);
    respond(c, 200, &b, NULL);
    gw_buf_free(&b);
}

static void
get_plugins(aconn_t *c)
{
    const gw_admin_env_t *w = &c->a->w;
    char *list = w->lua ? gw_lua_plugins_json(w->lua) : NULL;
    gw_buf_t b = {0};
    gw_buf_append(&b, "{\"plugins\":", 11);
    gw_buf_append(&b, list ? list : "[]", strlen(list ? list : "[]"));
    gw_buf_append(&b, "}", 1);
    free(list);
    respond(c, 200, &b, NULL);
    gw_buf_free(&b);
}

/* ---- POST /reload ---- */

static void
check_maybe_done(check_t *k)
{
    if (k->handles > 0)
        return;
    gw_admin_t *a = k->a;
    gw_buf_free(&k->text_out);
    gw_buf_free(&k->text_err);
    if (a->check == k)
        a->check = NULL;
    free(k);
    maybe_free(a);
}

static void
on_check_close(uv_handle_t *h)
{
    check_t *k = h->data;
    k->handles--;
    check_maybe_done(k);
}

/* The -t output as a JSON array of its lines, less the closing verdict. */
static void
put_lines(gw_buf_t *b, const gw_buf_t *text, const char *prefix, int with_prefix)
{
    size_t plen = strlen(prefix), i = 0;
    int first = 1;
    gw_buf_append(b, "[", 1);
    while (i < text->len) {
        size_t e = i;
        while (e < text->len && text->data[e] != '\n')
            e++;
        const char *l = text->data + i;
        size_t n = e - i;
        int has = n >= plen && memcmp(l, prefix, plen) == 0;
        if (n && has == with_prefix &&
            !(n == 25 && memcmp(l, "configuration test failed", 25) == 0)) {
            if (has) {
                l += plen;
                n -= plen;
            }
            if (!first)
                gw_buf_append(b, ",", 1);
            first = 0;
            put_json_str(b, l, n);
        }
        i = e + 1;
    }
    gw_buf_append(b, "]", 1);
}

static void
check_answer(check_t *k)
{
    aconn_t *c = k->conn;
    gw_admin_t *a = k->a;
    const gw_conf_t *conf = a->w.conf;
    if (c == NULL)
        return;
    c->check = NULL;
    k->conn = NULL;
    gw_buf_t extra = {0};
    if (k->timed_out || k->term_signal || k->status != 0) {
        gw_buf_append(&extra, ",\"errors\":", 10);
        if (k->timed_out || k->term_signal)
            gw_buf_append(&extra, "[\"the configuration test did not finish\"]", 41);
        else
            put_lines(&extra, &k->text_err, "warning: ", 0);
        gw_buf_append(&extra, ",\"file\":", 8);
        put_str(&extra, conf->file);
        gw_buf_append(&extra, "", 1);
        gw_log(a->w.log, GW_LOG_WARN, "admin: reload of %s refused: the configuration test failed",
               conf->file);
        respond_error(c, 400, "configuration test failed", extra.data, NULL);
        gw_buf_free(&extra);
        return;
    }
    gw_buf_t b = {0};
    /* the master that forked this worker, while it is still our parent (a
     * worker outliving it is adopted by another process, never signalled) */
    pid_t master = getppid();
    if (!k->check_only && (master <= 1 || master != a->w.master_pid)) {
        respond_error(c, 500, "cannot signal the master", NULL, NULL);
        return;
    }
    gw_buf_appendf(&b, "{\"status\":\"%s\",\"file\":", k->check_only ? "valid" : "reloading");
    put_str(&b, conf->file);
    gw_buf_append(&b, ",\"warnings\":", 12);
    put_lines(&b, &k->text_err, "warning: ", 1);
    if (!k->check_only)
        gw_buf_appendf(&b,
                       ",\"master_pid\":%d,\"message\":\"configuration OK; the master reloads "
                       "(new workers start, the old ones drain)\"",
                       (int)master);
    gw_buf_append(&b, "}", 1);
    /* the answer is queued before the signal: the reload stops this worker */
    respond(c, k->check_only ? 200 : 202, &b, NULL);
    gw_buf_free(&b);
    if (k->check_only)
        return;
    if (kill(master, SIGHUP) != 0)
        gw_log(a->w.log, GW_LOG_ERROR, "admin: cannot signal the master (pid %d): %s", (int)master,
               strerror(errno));
    else
        gw_log(a->w.log, GW_LOG_INFO, "admin: reload of %s requested by %s", conf->file,
               gw_minihttp_conn_peer(c->http));
}

static void
check_closing(check_t *k)
{
    if (!k->exited || uv_is_active((uv_handle_t *)&k->out) || uv_is_active((uv_handle_t *)&k->err))
        return;
    if (!uv_is_closing((uv_handle_t *)&k->timer)) {
        check_answer(k);
        uv_close((uv_handle_t *)&k->timer, on_check_close);
        uv_close((uv_handle_t *)&k->out, on_check_close);
        uv_close((uv_handle_t *)&k->err, on_check_close);
        uv_close((uv_handle_t *)&k->proc, on_check_close);
    }
}

static void
on_check_exit(uv_process_t *p, int64_t status, int term_signal)
{
    check_t *k = p->data;
    k->exited = 1;
    k->status = status;
    k->term_signal = term_signal;
    check_closing(k);
}

static void
on_check_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    check_t *k = h->data;
    gw_buf_t *t = h == (uv_handle_t *)&k->out ? &k->text_out : &k->text_err;
    gw_buf_reserve(t, 4096);
    *buf = uv_buf_init(t->data + t->len, 4096);
}

static void
on_check_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    check_t *k = s->data;
    gw_buf_t *t = s == (uv_stream_t *)&k->out ? &k->text_out : &k->text_err;
    if (nread > 0 && t->len + (size_t)nread <= CHECK_MAX_OUT)
        t->len += (size_t)nread; /* beyond the cap: read and dropped */
    if (nread < 0)
        uv_read_stop(s);
    check_closing(k);
}

static void
on_check_timeout(uv_timer_t *t)
{
    check_t *k = t->data;
    k->timed_out = 1;
    uv_process_kill(&k->proc, SIGKILL);
}

static int
check_start(gw_admin_t *a, aconn_t *c, int check_only)
{
    check_t *k = calloc(1, sizeof(*k));
    if (k == NULL)
        return GW_ERROR;
    k->a = a;
    k->conn = c;
    k->check_only = check_only;
    uv_pipe_init(a->loop, &k->out, 0);
    uv_pipe_init(a->loop, &k->err, 0);
    uv_timer_init(a->loop, &k->timer);
    k->out.data = k->err.data = k->timer.data = k->proc.data = k;
    char self[] = "/proc/self/exe";
    char *args[] = {self, "-t", "-c", (char *)a->w.conf->file, NULL};
    uv_stdio_container_t stdio[3];
    stdio[0].flags = UV_IGNORE;
    stdio[1].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
    stdio[1].data.stream = (uv_stream_t *)&k->out;
    stdio[2].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
    stdio[2].data.stream = (uv_stream_t *)&k->err;
    uv_process_options_t o = {
        .exit_cb = on_check_exit, .file = self, .args = args, .stdio = stdio, .stdio_count = 3};
    int rc = uv_spawn(a->loop, &k->proc, &o);
    k->handles = 4;
    if (rc != 0) {
        gw_log(a->w.log, GW_LOG_ERROR, "admin: cannot run the configuration test: %s",
               uv_strerror(rc));
        k->conn = NULL;
        uv_close((uv_handle_t *)&k->timer, on_check_close);
        uv_close((uv_handle_t *)&k->out, on_check_close);
        uv_close((uv_handle_t *)&k->err, on_check_close);
        uv_close((uv_handle_t *)&k->proc, on_check_close);
        return GW_ERROR;
    }
    uv_read_start((uv_stream_t *)&k->out, on_check_alloc, on_check_read);
    uv_read_start((uv_stream_t *)&k->err, on_check_alloc, on_check_read);
    uv_timer_start(&k->timer, on_check_timeout, GW_ADMIN_CHECK_MS, 0);
    a->check = k;
    c->check = k;
    /* the client waits for the check: the idle limit must not cut it short */
    gw_minihttp_conn_timeout(c->http, GW_ADMIN_CHECK_MS + GW_ADMIN_IDLE_MS);
    return GW_OK;
}

static void
post_reload(aconn_t *c)
{
    gw_admin_t *a = c->a;
    const gw_minihttp_req_t *req = c->req;
    const gw_minihttp_hval_t *ctype = &req->headers[HDR_CTYPE];
    int check_only = 0;
    if (req->body_len > 0) {
        /* a type too long to keep is no type */
        if (ctype->over || ctype->len < 16 ||
            strncasecmp(ctype->value, "application/json", 16) != 0) {
            respond_error(c, 415, "the body must be application/json", NULL, NULL);
            return;
        }
        gw_jsonr_t j;
        char err[128];
        if (gw_jsonr_parse(&j, req->body, req->body_len, 1024, err, sizeof(err)) != 0 ||
            gw_jsonr_type(&j, 0) != GW_JSONR_OBJECT) {
            gw_jsonr_free(&j);
            respond_error(c, 400, "the body must be a JSON object", NULL, NULL);
            return;
        }
        for (int k = gw_jsonr_first(&j, 0), v; k >= 0; k = gw_jsonr_next(&j, 0, v)) {
            char name[32];
            v = (int)j.toks[k].end;
            if (gw_jsonr_str(&j, k, name, sizeof(name)) < 0 || strcmp(name, "check_only") != 0) {
                gw_jsonr_free(&j);
                respond_error(c, 400, "unknown member (only \"check_only\" is taken)", NULL, NULL);
                return;
            }
            int t = gw_jsonr_type(&j, v);
            if (t != GW_JSONR_TRUE && t != GW_JSONR_FALSE) {
                gw_jsonr_free(&j);
                respond_error(c, 400, "check_only must be true or false", NULL, NULL);
                return;
            }
            check_only = t == GW_JSONR_TRUE;
        }
        gw_jsonr_free(&j);
    }
    if (a->check != NULL) {
        respond_error(c, 409, "a reload check is already running", NULL, NULL);
        return;
    }
    if (check_start(a, c, check_only) != GW_OK)
        respond_error(c, 500, "cannot run the configuration test", NULL, NULL);
}

/* ---- dispatch ---- */

static void
serve(aconn_t *c)
{
    gw_admin_t *a = c->a;
    uint64_t now = gw_shstate_now_ms();
    const gw_minihttp_req_t *req = c->req;
    const gw_minihttp_hval_t *key = &req->headers[HDR_KEY];
    const char *peer = gw_minihttp_conn_peer(c->http);
    uint64_t wait = peer_blocked(a, peer, now);
    if (wait) {
        char h[64];
        snprintf(h, sizeof(h), "Retry-After: %llu\r\n", (unsigned long long)(wait + 999) / 1000);
        respond_error(c, 429, "too many failed keys", NULL, h);
        return;
    }
    const char *want = a->w.conf->admin_key;
    if (key->count != 1 || key->over || !gw_admin_key_ok(want, key->value, key->len)) {
        peer_failed(a, peer, now);
        respond_error(c, 401, key->count ? "wrong API key" : "missing API key (X-API-Key)", NULL,
                      "WWW-Authenticate: X-API-Key\r\n");
        return;
    }
    if (req->url_too_long) {
        respond_error(c, 404, "not found", NULL, NULL);
        return;
    }
    size_t plen = 0;
    while (plen < req->url_len && req->url[plen] != '?')
        plen++;
    const char *p = req->url;
    /* also under /admin/, for a proxy that mounts the API there */
    if (plen >= 7 && memcmp(p, "/admin/", 7) == 0) {
        p += 6;
        plen -= 6;
    }
    while (plen > 1 && p[plen - 1] == '/')
        plen--;
    static const struct {
        const char *path;
        int method;
        void (*fn)(aconn_t *c);
    } table[] = {
        {"/routes", HTTP_GET, get_routes},       {"/upstreams", HTTP_GET, get_upstreams},
        {"/consumers", HTTP_GET, get_consumers}, {"/config", HTTP_GET, get_config},
        {"/plugins", HTTP_GET, get_plugins},     {"/reload", HTTP_POST, post_reload},
    };
    int method = req->method;
    for (size_t i = 0; i < GW_ARRAY_LEN(table); i++) {
        if (strlen(table[i].path) != plen || memcmp(table[i].path, p, plen) != 0)
            continue;
        if (method != table[i].method) {
            respond_error(c, 405, "method not allowed", NULL,
                          table[i].method == HTTP_GET ? "Allow: GET\r\n" : "Allow: POST\r\n");
            return;
        }
        table[i].fn(c);
        return;
    }
    respond_error(c, 404, "not found", NULL, NULL);
}

/* ---- the server's callbacks ---- */

static aconn_t *
aconn_of(gw_minihttp_conn_t *hc, void *arg)
{
    aconn_t *c = gw_minihttp_conn_data(hc);
    c->http = hc;
    c->a = arg;
    return c;
}

static void
on_request(gw_minihttp_conn_t *hc, const gw_minihttp_req_t *req, void *arg)
{
    aconn_t *c = aconn_of(hc, arg);
    c->req = req;
    serve(c);
    c->req = NULL;
}

static void
on_error(gw_minihttp_conn_t *hc, int status, void *arg)
{
    aconn_t *c = aconn_of(hc, arg);
    if (status == 431)
        respond_error(c, 431, "request header fields too large", NULL, NULL);
    else if (status == 413)
        respond_error(c, 413, "request body too large", NULL, NULL);
    else
        respond_error(c, 400, "bad request", NULL, NULL);
}

static void
on_close(gw_minihttp_conn_t *hc, void *arg)
{
    aconn_t *c = gw_minihttp_conn_data(hc);
    if (c->check) {
        c->check->conn = NULL; /* the check runs on; its answer goes nowhere */
        c->check = NULL;
    }
}

static const gw_minihttp_hdr_t admin_headers[] = {
    [HDR_KEY] = {"x-api-key", KEY_MAX},
    [HDR_CTYPE] = {"content-type", CTYPE_MAX},
};

gw_admin_t *
gw_admin_start(const gw_admin_env_t *w, int listen_fd, char *err, size_t errlen)
{
    static const gw_minihttp_ops_t ops = {
        .on_request = on_request, .on_error = on_error, .on_close = on_close};
    const gw_minihttp_conf_t conf = {.name = "admin",
                                     .log = w->log,
                                     .max_conns = GW_ADMIN_MAX_CONNS,
                                     .max_head = GW_ADMIN_MAX_HEAD,
                                     .max_body = GW_ADMIN_MAX_BODY,
                                     .url_max = URL_MAX - 1,
                                     .idle_ms = GW_ADMIN_IDLE_MS,
                                     .backlog = 128,
                                     .date = 1,
                                     .peer = 1,
                                     .conn_data = sizeof(aconn_t),
                                     .headers = admin_headers,
                                     .nheaders = GW_ARRAY_LEN(admin_headers)};
    if (w->conf->admin_key == NULL || !w->conf->admin_key[0]) {
        snprintf(err, errlen, "gateway.admin.key is empty");
        return NULL;
    }
    gw_admin_t *a = calloc(1, sizeof(*a));
    if (a == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    a->w = *w;
    a->loop = w->loop;
    a->rng = w->seed ^ 0x61646d696eULL;
    a->http = gw_minihttp_start(a->loop, listen_fd, &conf, &ops, a, err, errlen);
    if (a->http == NULL) {
        free(a);
        return NULL;
    }
    return a;
}

void
gw_admin_set_draining(gw_admin_t *a, int draining)
{
    if (a != NULL && draining)
        gw_minihttp_stop_accepting(a->http);
}

void
gw_admin_close(gw_admin_t *a)
{
    if (a == NULL || a->closing)
        return;
    a->closing = 1;
    if (a->check && !a->check->exited)
        uv_process_kill(&a->check->proc, SIGKILL);
    /* an answer on its way (a 202 to the POST /reload that stops this
     * worker) is let finish: its write and linger are bounded by timers */
    gw_minihttp_close(a->http, 1, on_http_closed, a);
}
