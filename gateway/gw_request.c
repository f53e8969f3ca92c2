/*
 * The request phase machine. r->phase says where a request is and
 * advance() moves it on; the phases that wait (plugins, the node) go on
 * from their events. Any function here that can end the request is the
 * last thing its caller does with the request. Nothing here writes bytes
 * for the client: r->cops, the connection's operations, does.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

#include "gw_balancer.h"
#include "gw_log.h"
#include "gw_lua.h"
#include "gw_metrics.h"
#include "gw_request.h"
#include "gw_breaker.h"
#include "gw_router.h"
#include "gw_split.h"
#include "gw_upstream.h"

/* ---- object pool ---- */

gw_request_t *
gw_request_new(gw_worker_t *w, gw_conn_t *c, const gw_conn_ops_t *ops, gw_str_t remote_ip)
{
    gw_request_t *r = w->free_reqs;
    if (r) {
        w->free_reqs = r->next_free;
    } else {
        r = calloc(1, sizeof(*r));
        if (r == NULL)
            abort();
        uv_timer_init(w->loop, &r->budget);
        r->budget.data = r;
        gw_lua_req_init(&r->lua, w->loop, r, w->lua, w->log, &r->request_id);
    }
    /* everything before headers[] is per-request state */
    memset(&r->conn, 0, offsetof(gw_request_t, headers) - offsetof(gw_request_t, conn));
    r->w = w;
    w->nreqs++;
    r->conn = c;
    r->cops = ops;
    r->content_length = -1;
    r->arena_used = 0;
    gw_lua_req_reset(&r->lua);
    r->start_ns = gw_worker_now_ns(w);
    r->view.remote_ip = remote_ip;
    return r;
}

static gw_str_t
keep_str(gw_request_t *r, gw_str_t s)
{
    return s.data ? (gw_str_t){gw_request_strdup(r, s.data, s.len), s.len} : s;
}

/* The connection goes away while r still runs (a waiting log phase): r
 * takes copies of what pointed into the connection's buffer. */
static void
detach(gw_request_t *r)
{
    for (size_t i = 0; i < r->nheaders; i++) {
        r->headers[i].name = keep_str(r, r->headers[i].name);
        r->headers[i].value = keep_str(r, r->headers[i].value);
    }
    r->method = keep_str(r, r->method);
    r->url = keep_str(r, r->url);
    r->host_header = keep_str(r, r->host_header);
    r->request_id = keep_str(r, r->request_id);
    r->traceparent = keep_str(r, r->traceparent);
    r->view.method_name = r->method;
    r->view.host = keep_str(r, r->view.host);
    r->view.path = keep_str(r, r->view.path);
    r->view.query = keep_str(r, r->view.query);
    r->view.remote_ip = keep_str(r, r->view.remote_ip);
    r->view.tls_client_dn = keep_str(r, r->view.tls_client_dn);
    for (size_t i = 0; i < r->nparams; i++)
        r->params[i].value = keep_str(r, r->params[i].value);
    r->conn = NULL;
}

static void on_budget_closed(uv_handle_t *h);
static void upstream_release(gw_request_t *r, int reuse);

/* The route budget stops and the node's connection goes back unreused:
 * nothing of the upstream exchange may call into the request any more. */
static void
drop_upstream(gw_request_t *r)
{
    if (r->budget_active) {
        uv_timer_stop(&r->budget);
        r->budget_active = 0;
    }
    upstream_release(r, 0);
}

/* The one place a request ends: what it holds goes, and it returns to the pool. */
static void
request_free(gw_request_t *r)
{
    gw_worker_t *w = r->w;
    w->nreqs--;
    drop_upstream(r);
    if (r->node) {
        gw_node_unref(r->node);
        r->node = NULL;
    }
    if (r->lua.phases)
        gw_lua_request_end(&r->lua);
    while (r->extra) {
        void **next = r->extra;
        r->extra = *next;
        free(next);
    }
    if (r->uphead.cap > 65536)
        gw_buf_free(&r->uphead);
    if (r->wire.cap > 65536)
        gw_buf_free(&r->wire);
    r->conn = NULL;
    if (w->draining == 2) {
        /* the worker is ending and its pool already closed: close this one */
        uv_close((uv_handle_t *)&r->budget, on_budget_closed);
        return;
    }
    r->next_free = w->free_reqs;
    w->free_reqs = r;
}

static void on_client_gone(gw_request_t *r);

void
gw_request_end(gw_request_t *r)
{
    if (r->phase < GW_RQ_LOG)
        on_client_gone(r);
    if (r->phase == GW_RQ_LOG)
        detach(r); /* its log phase waits: freed when it ends (on_log_phase_done) */
    else
        request_free(r);
}

static void
on_req_timer_closed(uv_handle_t *h)
{
    gw_request_t *r = h->data;
    gw_buf_free(&r->uphead);
    gw_buf_free(&r->wire);
    gw_lua_req_free(&r->lua);
    free(r);
}

static void
on_budget_closed(uv_handle_t *h)
{
    gw_request_t *r = h->data;
    gw_lua_req_close(&r->lua, on_req_timer_closed);
}

void
gw_request_pool_close(gw_worker_t *w)
{
    while (w->free_reqs) {
        gw_request_t *r = w->free_reqs;
        w->free_reqs = r->next_free;
        uv_close((uv_handle_t *)&r->budget, on_budget_closed);
    }
}

/* N bytes from the arena, else from the heap (freed with the request). */
static char *
request_buf(gw_request_t *r, size_t n)
{
    char *d = gw_request_alloc(r, n);
    if (d == NULL) {
        void **chunk = malloc(sizeof(void *) + n);
        if (chunk == NULL)
            abort();
        *chunk = r->extra;
        r->extra = chunk;
        d = (char *)(chunk + 1);
    }
    return d;
}

char *
gw_request_strdup(gw_request_t *r, const char *p, size_t n)
{
    char *d = request_buf(r, n + 1);
    memcpy(d, p, n);
    d[n] = 0;
    return d;
}

void *
gw_request_alloc(gw_request_t *r, size_t n)
{
    n = (n + 7) & ~(size_t)7;
    if (r->arena_used + n > GW_ARENA_SIZE)
        return NULL;
    void *p = r->arena + r->arena_used;
    r->arena_used += n;
    return p;
}

int
gw_request_read_body(gw_request_t *r, gw_buf_t *out)
{
    out->len = 0;
    if (r->conn == NULL)
        return GW_ERROR;
    return r->cops->read_body(r, out);
}

void
gw_request_add_resp_header(gw_request_t *r, gw_str_t name, gw_str_t value)
{
    if (r->nresp_hdrs == r->cap_resp_hdrs) {
        size_t cap = r->cap_resp_hdrs ? r->cap_resp_hdrs * 2 : 8;
        gw_header_t *hs = (gw_header_t *)request_buf(r, cap * sizeof(*hs));
        if (r->nresp_hdrs)
            memcpy(hs, r->resp_hdrs, r->nresp_hdrs * sizeof(*hs));
        r->resp_hdrs = hs;
        r->cap_resp_hdrs = cap;
    }
    gw_header_t *h = &r->resp_hdrs[r->nresp_hdrs++];
    h->name = (gw_str_t){gw_request_strdup(r, name.data, name.len), name.len};
    h->value = (gw_str_t){gw_request_strdup(r, value.data, value.len), value.len};
}

const char *
gw_request_upstream_name(const gw_request_t *r)
{
    return r->target ? r->target->up->conf->name : NULL;
}

/* ---- HEAD: what the phases read of the head (path, host, ids) ---- */

static unsigned
method_bit(gw_str_t m)
{
    switch (m.len) {
    case 3:
        if (gw_str_eq(m, GW_STR("GET")))
            return GW_M_GET;
        if (gw_str_eq(m, GW_STR("PUT")))
            return GW_M_PUT;
        break;
    case 4:
        if (gw_str_eq(m, GW_STR("POST")))
            return GW_M_POST;
        if (gw_str_eq(m, GW_STR("HEAD")))
            return GW_M_HEAD;
        break;
    case 5:
        if (gw_str_eq(m, GW_STR("PATCH")))
            return GW_M_PATCH;
        if (gw_str_eq(m, GW_STR("TRACE")))
            return GW_M_TRACE;
        break;
    case 6:
        if (gw_str_eq(m, GW_STR("DELETE")))
            return GW_M_DELETE;
        break;
    case 7:
        if (gw_str_eq(m, GW_STR("OPTIONS")))
            return GW_M_OPTIONS;
        if (gw_str_eq(m, GW_STR("CONNECT")))
            return GW_M_CONNECT;
        break;
    }
    return GW_M_OTHER;
}

static int
hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static int
unreserved(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '~';
}

/*
 * Routes must see one spelling of a path, or "/admin/../public" and
 * "/%61dmin" walk around prefix rules: decode %XX of unreserved bytes,
 * merge slashes, resolve dot segments. Other escapes stay as sent. Returns
 * 0 and the (possibly unchanged) path, or -1 for a path that escapes the
 * root or has a bad escape.
 */
static int
normalize_path(gw_request_t *r, gw_str_t in, gw_str_t *out)
{
    int simple = 1;
    for (size_t i = 0; i < in.len && simple; i++) {
        char ch = in.data[i];
        if (ch == '%' ||
            (ch == '/' && i + 1 < in.len && (in.data[i + 1] == '/' || in.data[i + 1] == '.')))
            simple = 0;
    }
    if (simple) {
        *out = in;
        return 0;
    }
    char *buf = gw_request_alloc(r, in.len + 1);
    if (buf == NULL)
        return -1;
    size_t n = 0;
    for (size_t i = 0; i < in.len; i++) {
        unsigned char ch = (unsigned char)in.data[i];
        if (ch == '%') {
            if (i + 2 >= in.len) /* a % without its two hex digits */
                return -1;
            int hi = hexval(in.data[i + 1]), lo = hexval(in.data[i + 2]);
            if (hi < 0 || lo < 0)
                return -1;
            unsigned char d = (unsigned char)(hi * 16 + lo);
            if (d == 0)
                return -1;
            if (unreserved(d)) {
                buf[n++] = (char)d;
            } else {
                buf[n++] = '%';
                buf[n++] = in.data[i + 1];
                buf[n++] = in.data[i + 2];
            }
            i += 2;
            continue;
        }
        if (ch == '/' && n > 0 && buf[n - 1] == '/')
            continue;
        buf[n++] = (char)ch;
        /* resolve "/." and "/.." once the segment is complete */
        int at_end = i + 1 == in.len || in.data[i + 1] == '/';
        if (!at_end)
            continue;
        if (n >= 2 && buf[n - 1] == '.' && buf[n - 2] == '/') {
            n -= 1; /* "/." -> "/" */
        } else if (n >= 3 && buf[n - 1] == '.' && buf[n - 2] == '.' && buf[n - 3] == '/') {
            n -= 3;
            if (n == 0)
                return -1; /* above the root */
            while (n > 0 && buf[n - 1] != '/')
                n--;
        }
    }
    if (n == 0)
        buf[n++] = '/';
    *out = (gw_str_t){buf, n};
    return 0;
}

static gw_str_t
lower_host(gw_request_t *r, gw_str_t h)
{
    /* drop the port; keep IPv6 brackets */
    size_t end = h.len;
    if (h.len && h.data[0] == '[') {
        const char *rb = memchr(h.data, ']', h.len);
        if (rb)
            end = (size_t)(rb - h.data) + 1;
    } else {
        const char *colon = memchr(h.data, ':', h.len);
        if (colon)
            end = (size_t)(colon - h.data);
    }
    char *p = gw_request_alloc(r, end + 1);
    if (p == NULL)
        return (gw_str_t){h.data, end};
    for (size_t i = 0; i < end; i++) {
        char c = h.data[i];
        p[i] = (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
    }
    return (gw_str_t){p, end};
}

/* Header names the gateway rewrites itself; everything else passes. */
enum { H_PASS = 0, H_DROP, H_XFF, H_REQUEST_ID, H_TRACEPARENT };

static int
classify_header(gw_str_t n)
{
    if (gw_http_is_hop_by_hop(n))
        return H_DROP;
    switch (n.len) {
    case 6:
        return gw_str_caseeq_lc(n, GW_STR("expect")) ? H_DROP : H_PASS;
    case 11:
        return gw_str_caseeq_lc(n, GW_STR("traceparent")) ? H_TRACEPARENT : H_PASS;
    case 12:
        return gw_str_caseeq_lc(n, GW_STR("x-request-id")) ? H_REQUEST_ID : H_PASS;
    case 14:
        return gw_str_caseeq_lc(n, GW_STR("content-length")) ? H_DROP : H_PASS;
    case 15:
        return gw_str_caseeq_lc(n, GW_STR("x-forwarded-for")) ? H_XFF : H_PASS;
    case 16:
        if (gw_str_caseeq_lc(n, GW_STR("x-forwarded-host")))
            return H_DROP;
        return H_PASS;
    case 17:
        return gw_str_caseeq_lc(n, GW_STR("x-forwarded-proto")) ? H_DROP : H_PASS;
    default:
        return H_PASS;
    }
}

static void
ids_init(gw_request_t *r)
{
    gw_worker_t *w = r->w;
    gw_str_t rid = GW_NULL_STR, tp = GW_NULL_STR;
    for (size_t i = 0; i < r->nheaders; i++) {
        gw_str_t n = r->headers[i].name;
        if (n.len == 12 && gw_str_caseeq_lc(n, GW_STR("x-request-id")) && rid.data == NULL)
            rid = r->headers[i].value;
        else if (n.len == 11 && gw_str_caseeq_lc(n, GW_STR("traceparent")) && tp.data == NULL)
            tp = r->headers[i].value;
    }
    int made_id = 0;
    if (gw_http_request_id_ok(rid)) {
        r->request_id = rid;
    } else {
        char *p = gw_request_alloc(r, 32);
        gw_http_random_hex(&w->rng, p, 32);
        r->request_id = (gw_str_t){p, 32};
        made_id = 1;
    }
    if (gw_http_traceparent_ok(tp)) {
        /* a new span id for the hop through the gateway, same trace */
        char *p = gw_request_alloc(r, 56);
        memcpy(p, tp.data, 36);
        gw_http_random_hex(&w->rng, p + 36, 16);
        memcpy(p + 52, tp.data + 52, 3);
        r->traceparent = (gw_str_t){p, 55};
    } else {
        char *p = gw_request_alloc(r, 56);
        memcpy(p, "00-", 3);
        /* a trace the gateway starts for a request it named shares the
         * name: logs and traces correlate on one id */
        if (made_id)
            memcpy(p + 3, r->request_id.data, 32);
        else
            gw_http_random_hex(&w->rng, p + 3, 32);
        p[35] = '-';
        gw_http_random_hex(&w->rng, p + 36, 16);
        memcpy(p + 52, "-01", 3);
        r->traceparent = (gw_str_t){p, 55};
    }
}

static void
build_upstream_head(gw_request_t *r, gw_str_t path)
{
    gw_buf_t *b = &r->uphead;
    gw_str_t conn_tokens = GW_NULL_STR, xff = GW_NULL_STR;
    size_t need = r->method.len + path.len + r->view.query.len + r->host_header.len * 2 +
                  r->view.remote_ip.len + r->request_id.len + r->traceparent.len + 256;
    for (size_t i = 0; i < r->nheaders; i++) {
        gw_str_t n = r->headers[i].name;
        need += n.len + r->headers[i].value.len + 4;
        if (n.len == 10 && gw_str_caseeq_lc(n, GW_STR("connection")))
            conn_tokens = r->headers[i].value;
    }
    /* only a Connection header naming other headers needs the search */
    if (gw_str_caseeq_lc(conn_tokens, GW_STR("keep-alive")) ||
        gw_str_caseeq_lc(conn_tokens, GW_STR("close")))
        conn_tokens = GW_NULL_STR;
    b->len = 0;
    gw_buf_reserve(b, need); /* one check; everything below is unchecked */
    gw_buf_puts(b, r->method);
    GW_BUF_PUT_LIT(b, " ");
    gw_buf_puts(b, path);
    if (r->view.query.data) {
        GW_BUF_PUT_LIT(b, "?");
        gw_buf_puts(b, r->view.query);
    }
    GW_BUF_PUT_LIT(b, " HTTP/1.1\r\n");
    for (size_t i = 0; i < r->nheaders; i++) {
        gw_header_t *h = &r->headers[i];
        if (h->name.len == 0)
            continue; /* removed by a plugin */
        int k = classify_header(h->name);
        if (k == H_XFF && xff.data == NULL)
            xff = h->value;
        if (k != H_PASS)
            continue;
        if (conn_tokens.len && gw_http_has_token(conn_tokens, h->name))
            continue;
        gw_buf_puts(b, h->name);
        GW_BUF_PUT_LIT(b, ": ");
        gw_buf_puts(b, h->value);
        GW_BUF_PUT_LIT(b, "\r\n");
    }
    if (r->host_header.data == NULL) {
        const char *addr = r->node ? r->node->conf->addr : "localhost";
        gw_buf_reserve(b, strlen(addr) + 8);
        GW_BUF_PUT_LIT(b, "Host: ");
        gw_buf_put(b, addr, strlen(addr));
        GW_BUF_PUT_LIT(b, "\r\n");
    }
    gw_buf_reserve(b, xff.len + 128);
    GW_BUF_PUT_LIT(b, "X-Forwarded-For: ");
    if (xff.len) {
        gw_buf_puts(b, xff);
        GW_BUF_PUT_LIT(b, ", ");
    }
    gw_buf_puts(b, r->view.remote_ip);
    if (r->view.tls)
        GW_BUF_PUT_LIT(b, "\r\nX-Forwarded-Proto: https\r\n");
    else
        GW_BUF_PUT_LIT(b, "\r\nX-Forwarded-Proto: http\r\n");
    if (r->host_header.len) {
        GW_BUF_PUT_LIT(b, "X-Forwarded-Host: ");
        gw_buf_puts(b, r->host_header);
        GW_BUF_PUT_LIT(b, "\r\n");
    }
    GW_BUF_PUT_LIT(b, "X-Request-Id: ");
    gw_buf_puts(b, r->request_id);
    GW_BUF_PUT_LIT(b, "\r\ntraceparent: ");
    gw_buf_puts(b, r->traceparent);
    GW_BUF_PUT_LIT(b, "\r\n");
    if (r->chunked)
        GW_BUF_PUT_LIT(b, "Transfer-Encoding: chunked\r\n");
    else if (r->content_length >= 0)
        gw_buf_appendf(b, "Content-Length: %lld\r\n", (long long)r->content_length);
    gw_buf_append(b, "\r\n", 2);
}

static void pick_and_connect(gw_request_t *r);
static void on_upstream_ready(void *user);
static void on_upstream_drained(void *user);
static int on_response_head(void *user, const gw_up_head_t *h);
static int on_response_body(void *user, const char *data, size_t len);
static void on_response_done(void *user);
static void on_upstream_error(void *user, gw_up_error_t e);
static void access_log(gw_request_t *r, double secs);
static int log_request(gw_request_t *r, int may_wait);
static void on_plugins_done(gw_request_t *r, int rc);
static void proxy(gw_request_t *r);
static void send_exit(gw_request_t *r);

/* ---- the driver ---- */

/*
 * Moves r into phase PH and runs what that phase does at once. ACCESS,
 * UPSTREAM, LOG and DONE start here; the others start with the data they
 * need (UP_HEAD with the node's head, OWN with the answer, BODY with the
 * response head) and call in here to go on. A phase that waits (plugins,
 * the node, the client) leaves r where it is; its event moves it on.
 */
static void
advance(gw_request_t *r, gw_rq_phase_t ph)
{
    r->phase = ph;
    switch (ph) {
    case GW_RQ_ACCESS: {
        unsigned early = r->lua.phases & (GW_PH_REWRITE | GW_PH_ACCESS);
        if (early == 0) {
            advance(r, GW_RQ_UPSTREAM);
            return;
        }
        int rc = gw_lua_run(&r->lua, early, on_plugins_done);
        if (rc != GW_AGAIN)
            on_plugins_done(r, rc);
        return;
    }
    case GW_RQ_UPSTREAM:
        proxy(r);
        return;
    case GW_RQ_LOG:
        /* the next request on a connection waits for a log phase that
         * waits (its bytes stay unparsed meanwhile) */
        if (log_request(r, 1) != GW_AGAIN)
            advance(r, GW_RQ_DONE);
        return;
    case GW_RQ_DONE:
        r->cops->finish(r); /* ends r: gw_request_end */
        return;
    case GW_RQ_HEAD:
    case GW_RQ_UP_HEAD:
    case GW_RQ_OWN:
    case GW_RQ_BODY:
        return;
    }
}

/* An error the gateway answers: its own response before any head went
 * out (error phase, header_filter), a cut after. CLOSE: the client's
 * connection ends after the answer. */
static void
request_error(gw_request_t *r, int status, const char *message, int close)
{
    if (gw_request_responding(r)) {
        r->cops->abort(r);
        return;
    }
    if (close)
        r->close_conn = 1;
    gw_request_fail(r, status, message);
}

/* ---- breakers ---- */

static int
breaker_allow(gw_request_t *r, gw_breaker_t *b)
{
    gw_worker_t *w = r->w;
    double rnd = (double)(gw_rng_next(&w->rng) >> 11) * 0x1.0p-53;
    if (gw_breaker_allow(b, gw_worker_now_ms(w), rnd))
        return 1;
    gw_metrics_breaker_drop(w->metrics, w->slot, (int)r->target->up->conf->index);
    return 0;
}

/* The request's outcome for the route or upstream breaker that let it
 * pass: once, when no retry follows. STATUS 0: no usable answer. */
static void
breaker_report(gw_request_t *r, int status)
{
    if (!r->brk_pending)
        return;
    r->brk_pending = 0;
    gw_breaker_mark(r->brk, gw_worker_now_ms(r->w),
                    !gw_breaker_is_failure(&r->target->up->conf->breaker, status));
}

static void
breaker_open(gw_request_t *r)
{
    r->err = GW_ERR_BREAKER_OPEN;
    request_error(r, 503, "circuit breaker open", 0);
}

/* ---- HEAD -> ACCESS: the route; the route's budget runs from UPSTREAM ---- */

static void
on_budget(uv_timer_t *t)
{
    gw_request_t *r = t->data;
    r->budget_active = 0;
    r->err = GW_ERR_TIMEOUT;
    breaker_report(r, 0);
    if (r->up) {
        gw_metrics_upstream(r->w->metrics, r->w->slot, (int)r->target->up->conf->index,
                            (int)r->node->index, 0,
                            (gw_worker_now_ns(r->w) - r->up_start_ns) / 1e9);
        gw_health_observe(r->target->up->health, r->node, 0);
        upstream_release(r, 0);
    }
    request_error(r, 504, "gateway timeout", 0);
}

void
gw_request_on_head(gw_request_t *r)
{
    gw_worker_t *w = r->w;
    gw_str_t raw_path = r->url, path;
    const char *q = memchr(r->url.data, '?', r->url.len);
    if (q) {
        raw_path.len = (size_t)(q - r->url.data);
        r->view.query = (gw_str_t){q + 1, r->url.len - raw_path.len - 1};
    }
    ids_init(r);
    r->view.method_name = r->method;
    r->view.method = method_bit(r->method);
    r->view.headers = r->headers;
    r->view.nheaders = r->nheaders;
    if (r->host_header.len)
        r->view.host = lower_host(r, r->host_header);
    if (normalize_path(r, raw_path, &path) != 0) {
        request_error(r, 400, "bad request", 1);
        return;
    }
    r->view.path = path;

    r->route = gw_router_match(w->router, &r->view, r->params, &r->nparams);
    /* global plugins see requests that match no route too (not_found) */
    r->lua.phases = gw_lua_route_phases(w->lua, r->route ? r->route->index : SIZE_MAX);
    r->lua.route = r->route ? (int)r->route->index + 1 : 0;
    if (r->route == NULL) {
        r->err = GW_ERR_NOT_FOUND;
        request_error(r, 404, "no route matched", 0);
        return;
    }
    advance(r, GW_RQ_ACCESS);
}

/* ---- ACCESS -> UPSTREAM ---- */

/* After rewrite and access: a plugin may have answered, failed, or let
 * the request go on. */
static void
on_plugins_done(gw_request_t *r, int rc)
{
    if (rc != GW_OK) {
        r->err = GW_ERR_PLUGIN;
        request_error(r, 500, "internal error", 0);
        return;
    }
    if (r->err == GW_ERR_LIMITED) {
        request_error(r, 429, "too many requests", 0);
        return;
    }
    if (r->err == GW_ERR_REFUSED) {
        request_error(r, r->fail_status, r->fail_message, 0);
        return;
    }
    if (r->lua.exit_status) {
        send_exit(r);
        return;
    }
    advance(r, GW_RQ_UPSTREAM);
}

/* The path the node gets: a plugin's gw.req.set_path, else the route's
 * strip_prefix or upstream_path applied to the path as routed. */
static gw_str_t
upstream_path(gw_request_t *r)
{
    gw_str_t p = r->view.path;
    if (r->path_set)
        return p;
    if (r->route->strip_prefix) {
        gw_router_strip_prefix(r->route, p, &p);
    } else if (r->route->upstream_path) {
        size_t n = gw_router_upstream_path(r->route, r->params, r->nparams, NULL);
        char *buf = request_buf(r, n);
        gw_router_upstream_path(r->route, r->params, r->nparams, buf);
        p = (gw_str_t){buf, n};
    }
    return p;
}

/* split -> route budget -> upstream head -> balancer and connection */
static void
proxy(gw_request_t *r)
{
    gw_worker_t *w = r->w;
    int split = r->route->nsplit
                    ? gw_split_choose(r->route, &r->view, (uint32_t)(gw_rng_next(&w->rng) % 100))
                    : -1;
    r->target = gw_upstreams_target(w->upstreams, r->route, split);
    r->brk = gw_upstreams_breaker(w->upstreams, r->route, split);
    if (r->brk) {
        if (!breaker_allow(r, r->brk)) {
            breaker_open(r);
            return;
        }
        r->brk_pending = 1;
    }
    if (r->route->timeout_ms) {
        r->budget_active = 1;
        uv_timer_start(&r->budget, on_budget, r->route->timeout_ms, 0);
    }
    build_upstream_head(r, upstream_path(r));
    pick_and_connect(r);
}

/* ---- UPSTREAM: a node, its connection (r->up), the request sent ---- */

/* A 503 says whether the upstream had nodes at all: a registry that lists
 * none (or was never read) is not the same trouble as nodes all ejected. */
static const char *
no_node_message(const gw_request_t *r)
{
    const gw_upstream_rt_t *up = r->target ? r->target->up : NULL;
    if (up == NULL || r->target->nnodes > 0 || up->conf->discovery.kind == GW_DISC_STATIC)
        return "no healthy node";
    if (!up->disc_known)
        return "no node yet: the registry has not been read";
    return up->nnodes ? "no node in the registry matches the subset"
                      : "no node: the registry lists none";
}

static void
fail_upstream(gw_request_t *r, int status)
{
    const char *msg = status == 503   ? no_node_message(r)
                      : status == 504 ? "gateway timeout"
                                      : "bad gateway";
    r->err = status == 503 ? GW_ERR_NO_NODE : status == 504 ? GW_ERR_TIMEOUT : GW_ERR_UPSTREAM;
    /* a 503 here reached no node (none listed, healthy or let through):
     * nothing the upstream did, so nothing for its breaker to count, or
     * an empty registry list would keep it dropping once nodes are back */
    if (status == 503)
        r->brk_pending = 0;
    breaker_report(r, 0);
    request_error(r, status, msg, 0);
}

static void
send_request(gw_request_t *r)
{
    uv_buf_t b = uv_buf_init(r->uphead.data, (unsigned)r->uphead.len);
    int rc = gw_upconn_write(r->up, &b, 1);
    if (rc < 0)
        return; /* the error callback follows */
    if (r->body_done) {
        if (rc == 1)
            gw_upconn_request_sent(r->up);
        return;
    }
    r->cops->resume_body(r);
}

/* How the node's connection reaches the request: one table for all. */
static const gw_upconn_cb_t upstream_events = {
    .on_ready = on_upstream_ready,
    .on_drained = on_upstream_drained,
    .on_head = on_response_head,
    .on_body = on_response_body,
    .on_done = on_response_done,
    .on_error = on_upstream_error,
};

/*
 * The node's connection is bound to r->up and unbound here only: the
 * connection reports (upstream_events) and the request decides.
 * FRESH: a new connection, never a pooled one. 1: bound and ready to
 * send; 0: bound, on_ready or on_error follows; -1: no connection.
 */
static int
upstream_acquire(gw_request_t *r, int fresh)
{
    gw_upconn_user_t user = {
        .cb = &upstream_events,
        .user = r,
        .head_request = r->view.method == GW_M_HEAD,
        .idempotent = r->idempotent,
        .body_follows = !r->body_done,
    };
    gw_upstream_rt_t *up = r->target->up;
    int ready = 0;
    r->up = fresh ? gw_upconn_connect(up, r->node, &user)
                  : gw_upconn_acquire(up, r->node, &user, &ready);
    return r->up ? ready : -1;
}

/* REUSE: the exchange ended cleanly, the connection may be pooled. */
static void
upstream_release(gw_request_t *r, int reuse)
{
    gw_upconn_t *u = r->up;
    if (u == NULL)
        return;
    r->up = NULL;
    gw_upconn_release(u, reuse);
}

static void
pick_and_connect(gw_request_t *r)
{
    gw_worker_t *w = r->w;
    gw_target_t *t = r->target;
    for (;;) {
        gw_str_t key = GW_NULL_STR;
        if (t->up->conf->balancer == GW_BAL_CONSISTENT_HASH) {
            if (t->up->conf->hash_on.kind == GW_KEY_NONE)
                key = r->view.remote_ip;
            else
                gw_keyspec_extract(&t->up->conf->hash_on, &r->view, &key);
        }
        gw_node_t *node =
            r->ntried < GW_MAX_TRIES
                ? gw_balancer_pick(t->bal, &key, r->tried, r->ntried, gw_worker_now_ms(w))
                : NULL;
        if (node == NULL) {
            if (r->ndropped && r->ndropped == r->ntried) {
                breaker_open(r); /* every node left was dropped by its own breaker */
                return;
            }
            fail_upstream(r,
                          r->ntried == r->ndropped ? 503 : (r->err == GW_ERR_TIMEOUT ? 504 : 502));
            return;
        }
        r->tried[r->ntried++] = node;
        if (node->breaker && !breaker_allow(r, node->breaker)) {
            r->ndropped++;
            continue;
        }
        if (r->node)
            gw_node_unref(r->node);
        r->node = node;
        gw_node_ref(node); /* held until the request ends: logs read it */
        r->up_start_ns = gw_worker_now_ns(w);
        int ready = upstream_acquire(r, 0);
        if (ready < 0) {
            r->err = GW_ERR_UPSTREAM;
            if ((int)(r->ntried - r->ndropped) <= t->up->conf->retries)
                continue;
            fail_upstream(r, 502);
            return;
        }
        if (ready)
            send_request(r);
        return;
    }
}

static void
on_upstream_ready(void *user)
{
    send_request(user);
}

static void
on_upstream_drained(void *user)
{
    gw_request_t *r = user;
    if (r->up == NULL)
        return;
    if (r->body_done)
        gw_upconn_request_sent(r->up);
    else
        r->cops->resume_body(r);
}

int
gw_request_on_body(gw_request_t *r, const char *data, size_t len)
{
    if (r->up == NULL || len == 0)
        return 1;
    if (r->chunked) {
        char size[24];
        int n = snprintf(size, sizeof(size), "%zx\r\n", len);
        uv_buf_t b[3] = {uv_buf_init(size, (unsigned)n), uv_buf_init((char *)data, (unsigned)len),
                         uv_buf_init("\r\n", 2)};
        return gw_upconn_write(r->up, b, 3) == 1;
    }
    uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
    return gw_upconn_write(r->up, &b, 1) == 1;
}

void
gw_request_on_body_done(gw_request_t *r)
{
    if (r->up == NULL)
        return;
    int rc = 1;
    if (r->chunked) {
        uv_buf_t b = uv_buf_init("0\r\n\r\n", 5);
        rc = gw_upconn_write(r->up, &b, 1);
    }
    if (rc == 1)
        gw_upconn_request_sent(r->up);
}

static void
upstream_feedback(gw_request_t *r, int status)
{
    gw_worker_t *w = r->w;
    uint64_t ns = gw_worker_now_ns(w) - r->up_start_ns;
    r->up_latency_ns = ns;
    gw_metrics_upstream(w->metrics, w->slot, (int)r->target->up->conf->index, (int)r->node->index,
                        status, ns / 1e9);
    gw_balancer_feedback(r->target->bal, r->node, ns / 1000, status > 0 && status < 500,
                         gw_worker_now_ms(w));
    gw_health_observe(r->target->up->health, r->node, status);
    if (r->node->breaker)
        gw_breaker_mark(r->node->breaker, gw_worker_now_ms(w),
                        !gw_breaker_is_failure(&r->target->up->conf->breaker, status));
    if (status > 0)
        breaker_report(r, status);
}

/*
 * The node closed a pooled connection as our request went out on it: most
 * likely its idle timeout crossed the request, the node did nothing wrong.
 * Like Go's http.Transport, send the request once more, on a new
 * connection to the same node, outside the route's retries and without a
 * failure for health checks, breakers or the balancer. Only what may be
 * sent twice: an idempotent request without a body (a body is streamed,
 * not kept). Non-idempotent requests get a peek at the pooled socket
 * before they are written instead (gw_upconn_acquire). 1: the request is
 * on its way again.
 */
static int
reconnect_stale(gw_request_t *r, gw_up_error_t e)
{
    gw_worker_t *w = r->w;
    if (e != GW_UP_STALE || r->reconnected || !r->idempotent || r->has_body ||
        gw_request_responding(r))
        return 0;
    if (r->budget_active && uv_timer_get_due_in(&r->budget) == 0)
        return 0; /* the route's deadline is due: its 504 follows */
    r->reconnected = 1;
    if (upstream_acquire(r, 1) < 0)
        return 0;
    /* the node's latency is that of the attempt that answers, not of the
     * closed connection before it */
    r->up_start_ns = gw_worker_now_ns(w);
    gw_metrics_reused_conn_retry(w->metrics, w->slot, (int)r->target->up->conf->index);
    gw_log(w->log, GW_LOG_INFO,
           "upstream %s node %s: kept-alive connection closed, sending again on a new one "
           "(request %.*s)",
           r->target->up->conf->name, r->node->conf->addr, (int)r->request_id.len,
           r->request_id.data);
    return 1;
}

static void
on_upstream_error(void *user, gw_up_error_t e)
{
    gw_request_t *r = user;
    /* closed already: this only unbinds it (and the node's count drops
     * before a retry picks again) */
    upstream_release(r, 0);
    if (reconnect_stale(r, e))
        return;
    if (e == GW_UP_STALE)
        e = GW_UP_RESET; /* not sent again: a close like any other */
    upstream_feedback(r, 0);
    int never_sent = e == GW_UP_CONNECT_FAILED || e == GW_UP_CONNECT_TIMEOUT;
    int timeout = e == GW_UP_TIMEOUT || e == GW_UP_CONNECT_TIMEOUT;
    const char *what = e == GW_UP_CONNECT_FAILED    ? "connect failed"
                       : e == GW_UP_CONNECT_TIMEOUT ? "connect timed out"
                       : e == GW_UP_TIMEOUT         ? "timed out"
                       : e == GW_UP_BAD_RESPONSE    ? "invalid response"
                       : e == GW_UP_RESET           ? "closed before responding"
                                                    : "closed mid-response";
    gw_log(r->w->log, GW_LOG_WARN, "upstream %s node %s: %s (request %.*s)",
           r->target->up->conf->name, r->node->conf->addr, what, (int)r->request_id.len,
           r->request_id.data);
    r->err = timeout ? GW_ERR_TIMEOUT : GW_ERR_UPSTREAM;
    if (gw_request_responding(r)) {
        breaker_report(r, 0);
        if (!(r->lua.phases & (GW_PH_HEADER_FILTER | GW_PH_BODY_FILTER)) &&
            r->cops->unsend_head(r)) {
            /* not a byte of it reached the client yet: a clean error
             * instead of a cut (and never a retry: the node answered) */
            r->phase = GW_RQ_UP_HEAD;
            fail_upstream(r, timeout ? 504 : 502);
            return;
        }
        r->cops->abort(r); /* the response is cut: so must the connection be */
        return;
    }
    /* A retry must not send a request twice that may have had effects:
     * only what never left, or idempotent requests whose body we still
     * hold (none), go to another node. */
    int may_retry = never_sent || (r->idempotent && !r->has_body && e != GW_UP_BAD_RESPONSE);
    if (may_retry && (int)(r->ntried - r->ndropped) <= r->target->up->conf->retries) {
        pick_and_connect(r);
        return;
    }
    fail_upstream(r, timeout ? 504 : 502);
}

static int send_response_head(gw_request_t *r, const gw_up_head_t *h);

/* ---- UP_HEAD: the node's head, its error phase and header_filter ---- */

/* header_filter works on a copy of the upstream's headers: it may change
 * them, and they point into the connection's buffer, which the body takes
 * over once the head is let go (gw_upconn_continue). */
static void
copy_response_headers(gw_request_t *r, const gw_up_head_t *head)
{
    gw_header_t *rh = gw_lua_resp_headers(&r->lua);
    for (size_t i = 0; i < head->nheaders; i++) {
        const gw_header_t *h = &head->headers[i];
        rh[i].name = (gw_str_t){gw_request_strdup(r, h->name.data, h->name.len), h->name.len};
        rh[i].value = (gw_str_t){gw_request_strdup(r, h->value.data, h->value.len), h->value.len};
    }
    r->lua.nrhdrs = head->nheaders;
}

static void
on_header_filter_done(gw_request_t *r, int rc)
{
    gw_upconn_t *u = r->up;
    if (rc != GW_OK) {
        r->err = GW_ERR_PLUGIN;
        request_error(r, 500, "internal error", 1);
        return;
    }
    if (u == NULL)
        return;
    gw_upconn_continue(u, send_response_head(r, &u->head));
}

static int response_head_filtered(gw_request_t *r, const gw_up_head_t *h);

/* After the error phase for an upstream status: a replacement, or on with
 * the node's own response. GW_UP_HOLD when the head is held or done. */
static int
after_upstream_error(gw_request_t *r, const gw_up_head_t *h, int rc)
{
    if (rc == GW_OK && r->lua.exit_status > 0) {
        /* the node's answer is replaced: its body is not read, so its
         * connection cannot be reused */
        upstream_feedback(r, h->status);
        upstream_release(r, 0);
        send_exit(r);
        return GW_UP_HOLD;
    }
    return response_head_filtered(r, h);
}

static void
on_upstream_error_done(gw_request_t *r, int rc)
{
    gw_upconn_t *u = r->up;
    if (u == NULL)
        return;
    int how = after_upstream_error(r, &u->head, rc);
    if (how != GW_UP_HOLD)
        gw_upconn_continue(u, how);
}

static int
on_response_head(void *user, const gw_up_head_t *h)
{
    gw_request_t *r = user;
    r->phase = GW_RQ_UP_HEAD;
    r->up_status = h->status;
    r->status = h->status;
    if ((r->lua.phases & GW_PH_ERROR) && !r->lua.in_error_phase &&
        gw_lua_wants_upstream(&r->lua, h->status)) {
        int rc = gw_lua_run_error(&r->lua, "upstream_error", h->status, gw_http_reason(h->status),
                                  h->status, on_upstream_error_done);
        if (rc == GW_AGAIN)
            return GW_UP_HOLD; /* until the plugin is done */
        return after_upstream_error(r, h, rc);
    }
    return response_head_filtered(r, h);
}

/* header_filter (which may wait), then the client's head. */
static int
response_head_filtered(gw_request_t *r, const gw_up_head_t *h)
{
    if (r->lua.phases & GW_PH_HEADER_FILTER) {
        copy_response_headers(r, h);
        int rc = gw_lua_run(&r->lua, GW_PH_HEADER_FILTER, on_header_filter_done);
        if (rc == GW_AGAIN)
            return GW_UP_HOLD;
        if (rc != GW_OK) {
            r->err = GW_ERR_PLUGIN;
            request_error(r, 500, "internal error", 1);
            return GW_UP_HOLD;
        }
    }
    return send_response_head(r, h);
}

/* ---- BODY: the node's body to the client, through body_filter ---- */

/* The client's head, as data, to the connection; returns how the body is
 * wanted: decoded when the gateway frames it itself. A chunked body is
 * decoded and framed again by the connection: extensions, trailers and
 * whatever line endings the upstream's framing got away with never reach
 * the client, so client and gateway agree where it ends. A body filter
 * sees decoded bytes and may change their length: the same. */
static int
send_response_head(gw_request_t *r, const gw_up_head_t *head)
{
    const gw_header_t *hs = head->headers;
    size_t nh = head->nheaders;
    int head_request = r->view.method == GW_M_HEAD;
    int filtered = (r->lua.phases & GW_PH_BODY_FILTER) && !head_request && head->status != 204 &&
                   head->status != 304;
    if (r->lua.phases & GW_PH_HEADER_FILTER) {
        hs = r->lua.rhdrs;
        nh = r->lua.nrhdrs;
        if (r->lua.status_override)
            r->status = r->lua.status_override;
    }
    int decoded = (head->chunked && !head_request) || filtered;
    gw_resp_head_t h = {
        .status = r->status,
        .headers = hs,
        .nheaders = nh,
        .extra = r->resp_hdrs,
        .nextra = r->nresp_hdrs,
        .request_id = r->request_id,
        .framing = decoded ? GW_BODY_STREAM : GW_BODY_AS_IS,
        .until_close = head->until_close,
        .close = r->close_conn,
    };
    r->phase = GW_RQ_BODY;
    r->cops->send_head(r, &h);
    return decoded ? GW_UP_READ_DECODED : GW_UP_READ;
}

/* Body bytes to the client: 1 on, 0 behind, -1 the connection is failing. */
static int
write_body(gw_request_t *r, const char *data, size_t len, int last)
{
    return r->cops->send_body(r, data, len, last);
}

/* The response is out (or queued): the node's connection goes back to its
 * pool and the request goes on to its log phase. */
static void
finish_response(gw_request_t *r)
{
    upstream_feedback(r, r->up_status);
    upstream_release(r, r->body_done);
    advance(r, GW_RQ_LOG);
}

/* body_filter's output (gw_lua_body_filter runs the calls): written as it
 * comes; the eof call's output ends the response, a failed call cuts it
 * (the head may be out). -1: the request is over. */
static int
write_filtered(gw_request_t *r, int rc, const char *data, size_t len, int last)
{
    if (rc != GW_OK) {
        r->cops->abort(r);
        return -1;
    }
    int w = write_body(r, data, len, last);
    if (w < 0)
        return -1;
    if (last) {
        finish_response(r);
        return -1;
    }
    return w;
}

/* A call that waited is done, nothing else waits, the client keeps up. */
static void
filtered_read_on(gw_request_t *r)
{
    if (r->up)
        gw_upconn_resume(r->up);
}

static const gw_lua_bf_ops_t filtered_ops = {write_filtered, filtered_read_on};

static int
filtering_body(gw_request_t *r)
{
    return (r->lua.phases & GW_PH_BODY_FILTER) && r->up && r->view.method != GW_M_HEAD &&
           r->status != 204 && r->status != 304;
}

static int
on_response_body(void *user, const char *data, size_t len)
{
    gw_request_t *r = user;
    if (filtering_body(r))
        return gw_lua_body_filter(&r->lua, data, len, 0, &filtered_ops) == 1;
    return write_body(r, data, len, 0) == 1;
}

static void
on_response_done(void *user)
{
    gw_request_t *r = user;
    if (filtering_body(r)) {
        /* the eof call finishes the response, now or later */
        gw_lua_body_filter(&r->lua, NULL, 0, 1, &filtered_ops);
        return;
    }
    if (write_body(r, NULL, 0, 1) < 0)
        return;
    finish_response(r);
}

void
gw_request_on_client_drained(gw_request_t *r)
{
    if (r->up)
        gw_upconn_resume(r->up);
}

/* The client connection failed or closed: abandon the upstream side and
 * any Lua phase that waits; log. A log phase that waits leaves r in
 * GW_RQ_LOG: gw_request_end detaches the request meanwhile. */
static void
on_client_gone(gw_request_t *r)
{
    drop_upstream(r);
    if (!gw_request_responding(r) && r->status == 0)
        r->status = 499; /* nginx's "client closed request", for logs only */
    if (r->lua.phases)
        gw_lua_abandon(&r->lua);
    r->phase = GW_RQ_LOG;
    if (r->method.len == 0 || log_request(r, 1) != GW_AGAIN)
        r->phase = GW_RQ_DONE;
}

/* ---- OWN: responses the gateway makes (errors, plugin exits) ---- */

static void write_own_response(gw_request_t *r, int status, const char *ctype, const char *body,
                               size_t blen, const gw_buf_t *extra, int filtered);

/* header_filter on a response the gateway makes: the plugin sees and may
 * change its status and headers (not its framing), and may wait. */
static void
on_own_filter_done(gw_request_t *r, int rc)
{
    int status = r->lua.own_status;
    if (rc != GW_OK)
        r->lua.nrhdrs = 0; /* a failing filter leaves the response as it was */
    else if (r->lua.status_override)
        status = r->lua.status_override;
    write_own_response(r, status, r->lua.exit_ctype,
                       r->lua.exit_body.data ? r->lua.exit_body.data : "", r->lua.exit_body.len,
                       &r->lua.exit_headers, r->lua.nrhdrs > 0);
}

/* A plugin's "Name: value\r\n" lines (gw.exit's headers) as fields:
 * at most MAX of them into OUT; returns how many. */
static size_t
header_lines(const gw_buf_t *lines, gw_header_t *out, size_t max)
{
    size_t n = 0;
    const char *p = lines ? lines->data : NULL, *end = p ? p + lines->len : NULL;
    while (p && p < end && n < max) {
        const char *colon = memchr(p, ':', (size_t)(end - p));
        const char *eol = memchr(p, '\r', (size_t)(end - p));
        if (colon == NULL || eol == NULL || colon > eol)
            break;
        out[n].name = (gw_str_t){p, (size_t)(colon - p)};
        out[n++].value = (gw_str_t){colon + 2, (size_t)(eol - colon - 2)};
        p = eol + 2;
    }
    return n;
}

static void
filter_own_response(gw_request_t *r, int status, const char *ctype, const char *body, size_t blen,
                    const gw_buf_t *extra)
{
    /* the filter may wait: the response lives in the request meanwhile */
    if (body != r->lua.exit_body.data) {
        r->lua.exit_body.len = 0;
        gw_buf_append(&r->lua.exit_body, body, blen);
    }
    if (extra != &r->lua.exit_headers) {
        r->lua.exit_headers.len = 0;
        if (extra)
            gw_buf_append(&r->lua.exit_headers, extra->data, extra->len);
    }
    r->lua.exit_ctype = ctype;
    r->lua.own_status = status;
    gw_header_t *rh = gw_lua_resp_headers(&r->lua);
    rh[0].name = GW_STR("Content-Type");
    rh[0].value = (gw_str_t){ctype, strlen(ctype)};
    r->lua.nrhdrs = 1 + header_lines(&r->lua.exit_headers, rh + 1, GW_MAX_HEADERS - 1);
    r->status = status;
    r->lua.status_override = 0;
    int rc = gw_lua_run(&r->lua, GW_PH_HEADER_FILTER, on_own_filter_done);
    if (rc != GW_AGAIN)
        on_own_filter_done(r, rc);
}

/* Every response the gateway makes itself, errors and plugin exits. */
static void
respond(gw_request_t *r, int status, const char *ctype, const char *body, size_t blen,
        const gw_buf_t *extra)
{
    if ((r->lua.phases & GW_PH_HEADER_FILTER) && !r->lua.in_header_filter) {
        r->lua.in_header_filter = 1;
        filter_own_response(r, status, ctype, body, blen, extra);
        return;
    }
    write_own_response(r, status, ctype, body, blen, extra, 0);
}

static void
write_own_response(gw_request_t *r, int status, const char *ctype, const char *body, size_t blen,
                   const gw_buf_t *extra, int filtered)
{
    gw_header_t hs[GW_MAX_HEADERS];
    gw_resp_head_t h = {
        .status = status,
        .extra = r->resp_hdrs,
        .nextra = r->nresp_hdrs,
        .request_id = r->request_id,
        .content_length = (int64_t)blen,
        .framing = GW_BODY_LENGTH,
        .close = r->close_conn,
    };
    if (filtered) {
        h.headers = r->lua.rhdrs;
        h.nheaders = r->lua.nrhdrs;
    } else {
        hs[0].name = GW_STR("Content-Type");
        hs[0].value = (gw_str_t){ctype, strlen(ctype)};
        h.headers = hs;
        h.nheaders = 1 + header_lines(extra, hs + 1, GW_MAX_HEADERS - 1);
    }
    r->status = status;
    r->phase = GW_RQ_BODY;
    r->cops->send_head(r, &h);
    if (r->cops->send_body(r, body, blen, 1) < 0)
        return;
    advance(r, GW_RQ_LOG);
}

static void
send_exit(gw_request_t *r)
{
    r->phase = GW_RQ_OWN;
    respond(r, r->lua.exit_status, r->lua.exit_ctype ? r->lua.exit_ctype : "application/json",
            r->lua.exit_body.data ? r->lua.exit_body.data : "", r->lua.exit_body.len,
            &r->lua.exit_headers);
}

static const char *
err_kind(const gw_request_t *r, int status)
{
    switch (r->err) {
    case GW_ERR_NOT_FOUND:
        return "not_found";
    case GW_ERR_NO_NODE:
        return "no_node";
    case GW_ERR_TIMEOUT:
        return "timeout";
    case GW_ERR_UPSTREAM:
        return "upstream_error";
    case GW_ERR_PLUGIN:
        return "plugin_error";
    case GW_ERR_LIMITED:
        return "limited";
    case GW_ERR_BREAKER_OPEN:
        return "breaker_open";
    case GW_ERR_REFUSED: /* gw.exit_error; a plugin's 429 is a limiter's */
        return status == 429 ? "limited" : "refused";
    default:
        return status == 429 ? "limited" : NULL;
    }
}

/* After the error phase: a plugin's replacement, or the gateway's own
 * answer (also when the phase failed: the error stands). */
static void
on_error_phase_done(gw_request_t *r, int rc)
{
    if (rc == GW_OK && r->lua.exit_status > 0) {
        send_exit(r);
        return;
    }
    gw_request_fail(r, r->fail_status, r->fail_message);
}

void
gw_request_fail(gw_request_t *r, int status, const char *message)
{
    gw_buf_t bb = {0};
    r->phase = GW_RQ_OWN;
    if (r->request_id.len == 0) {
        char *p = gw_request_alloc(r, 32);
        gw_http_random_hex(&r->w->rng, p, 32);
        r->request_id = (gw_str_t){p, 32};
    }
    upstream_release(r, 0);
    /* the error phase may answer instead (degradation, error mapping) */
    const char *kind = err_kind(r, status);
    if (kind && (r->lua.phases & GW_PH_ERROR) && !r->lua.in_error_phase) {
        r->fail_status = status;
        r->fail_message = message;
        int rc = gw_lua_run_error(&r->lua, kind, status, message, 0, on_error_phase_done);
        if (rc != GW_AGAIN)
            on_error_phase_done(r, rc);
        return;
    }
    /* respond copies the body (to the client's head buffer, or into the
     * request while header_filter runs) */
    gw_http_error_body(&bb, status, message, r->request_id);
    respond(r, status, "application/json", bb.data, bb.len, NULL);
    gw_buf_free(&bb);
}

/* ---- LOG -> DONE ---- */

/* A log phase that waited is over: a detached request ends here, else
 * its connection moves on. */
static void
on_log_phase_done(gw_request_t *r, int status)
{
    if (r->conn == NULL) {
        request_free(r); /* detached: its connection is gone */
        return;
    }
    advance(r, GW_RQ_DONE);
}

/* The log phase of Lua plugins: in a coroutine when the connection can
 * wait for it (may_wait), else to completion (the client went away). */
static int
run_log_phase(gw_request_t *r, int may_wait)
{
    if (!(r->lua.phases & GW_PH_LOG))
        return GW_OK;
    if (!may_wait) {
        gw_lua_run_sync(&r->lua, GW_PH_LOG);
        return GW_OK;
    }
    return gw_lua_run(&r->lua, GW_PH_LOG, on_log_phase_done) == GW_AGAIN ? GW_AGAIN : GW_OK;
}

static int
log_request(gw_request_t *r, int may_wait)
{
    gw_worker_t *w = r->w;
    double secs = (gw_worker_now_ns(r->w) - r->start_ns) / 1e9;
    gw_metrics_request(w->metrics, w->slot, r->route ? (int)r->route->index : -1, r->status, secs);
    if (w->access_log)
        access_log(r, secs);
    return run_log_phase(r, may_wait);
}

static void
access_log(gw_request_t *r, double secs)
{
    gw_worker_t *w = r->w;
    gw_access_entry_t e = {0};
    uv_timeval64_t tv;
    uv_gettimeofday(&tv);
    e.time_ms = (uint64_t)tv.tv_sec * 1000 + (uint64_t)tv.tv_usec / 1000 - (uint64_t)(secs * 1000);
    e.request_id = r->request_id;
    e.remote_addr = r->view.remote_ip;
    e.tls_client_dn = r->view.tls_client_dn;
    e.method = r->method;
    e.uri = r->url;
    e.host = r->host_header;
    e.status = r->status;
    e.bytes_sent = r->bytes_sent;
    e.duration_ms = secs * 1000;
    if (r->route)
        e.route = (gw_str_t){r->route->name, strlen(r->route->name)};
    if (r->target) /* NULL when the request ended before the split */
        e.upstream = (gw_str_t){r->target->up->conf->name, strlen(r->target->up->conf->name)};
    if (r->node)
        e.node = (gw_str_t){r->node->conf->addr, strlen(r->node->conf->addr)};
    e.upstream_status = r->up_status;
    e.upstream_latency_ms = r->up_latency_ns / 1e6;
    for (size_t i = 0; i < r->nheaders; i++)
        if (r->headers[i].name.len == 10 &&
            gw_str_caseeq_lc(r->headers[i].name, GW_STR("user-agent")))
            e.user_agent = r->headers[i].value;
    gw_access_log_write(w->access_log, &e);
}
