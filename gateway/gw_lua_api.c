/* The FFI half of the gw.* API: leaf functions over the request. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <uv.h>

#include "gw_httpc.h"
#include "gw_limit.h"
#include "gw_log.h"
#include "gw_lua.h"
#include "gw_lua_api.h"
#include "gw_metrics.h"
#include "gw_node.h"
#include "gw_redis.h"
#include "gw_request.h"

#define EXPORT __attribute__((visibility("default"), used))

static void cancel_waits(gw_request_t *r);

static gw_str_t
S(const char *p, size_t n)
{
    return (gw_str_t){p, n};
}

static int
out(gw_str_t s, const char **p, size_t *n)
{
    *p = s.data ? s.data : "";
    *n = s.len;
    return s.data ? 0 : GW_DECLINED;
}

EXPORT int
gw_ffi_req_get(gw_request_t *r, int what, const char **p, size_t *n)
{
    switch (what) {
    case GW_FFI_METHOD:
        return out(r->method, p, n);
    case GW_FFI_PATH:
        return out(r->view.path, p, n);
    case GW_FFI_URI:
        return out(r->url, p, n);
    case GW_FFI_QUERY:
        return out(r->view.query, p, n);
    case GW_FFI_HOST:
        return out(r->view.host, p, n);
    default:
        return GW_ERROR;
    }
}

EXPORT int
gw_ffi_req_nheaders(gw_request_t *r)
{
    return (int)r->nheaders;
}

EXPORT int
gw_ffi_req_header_at(gw_request_t *r, int i, const char **name, size_t *nlen, const char **value,
                     size_t *vlen)
{
    if (i < 0 || (size_t)i >= r->nheaders || r->headers[i].name.len == 0)
        return GW_DECLINED; /* out of range or removed */
    out(r->headers[i].name, name, nlen);
    out(r->headers[i].value, value, vlen);
    return GW_OK;
}

static gw_header_t *
find(gw_header_t *h, size_t n, gw_str_t name)
{
    for (size_t i = 0; i < n; i++)
        if (h[i].name.len && gw_str_caseeq(h[i].name, name))
            return &h[i];
    return NULL;
}

EXPORT int
gw_ffi_req_header(gw_request_t *r, const char *name, size_t nlen, const char **value, size_t *vlen)
{
    gw_header_t *h = find(r->headers, r->nheaders, S(name, nlen));
    if (h == NULL)
        return GW_DECLINED;
    out(h->value, value, vlen);
    return GW_OK;
}

/* Replaces the first header of that name and drops the others; appends
 * when absent. A removed header keeps its slot with an empty name, which
 * every reader skips. */
static int
set_header(gw_request_t *r, gw_header_t *hs, size_t *n, gw_str_t name, const char *value,
           size_t vlen, int clear)
{
    gw_header_t *first = NULL;
    for (size_t i = 0; i < *n; i++) {
        if (hs[i].name.len == 0 || !gw_str_caseeq(hs[i].name, name))
            continue;
        if (first == NULL && !clear) {
            first = &hs[i];
            continue;
        }
        hs[i].name.len = 0;
    }
    if (clear)
        return GW_OK;
    gw_str_t v = {gw_request_strdup(r, value, vlen), vlen};
    if (first) {
        first->value = v;
        return GW_OK;
    }
    if (*n == GW_MAX_HEADERS)
        return GW_ERROR;
    hs[*n].name = (gw_str_t){gw_request_strdup(r, name.data, name.len), name.len};
    hs[*n].value = v;
    (*n)++;
    return GW_OK;
}

static int header_token_ok(gw_str_t s, int value);

EXPORT int
gw_ffi_req_set_header(gw_request_t *r, const char *name, size_t nlen, const char *value,
                      size_t vlen, int clear)
{
    if (!header_token_ok(S(name, nlen), 0) || (!clear && !header_token_ok(S(value, vlen), 1)))
        return GW_ERROR;
    int rc = set_header(r, r->headers, &r->nheaders, S(name, nlen), value, vlen, clear);
    r->view.nheaders = r->nheaders;
    return rc;
}

EXPORT int
gw_ffi_req_set_path(gw_request_t *r, const char *p, size_t n)
{
    if (n == 0 || p[0] != '/')
        return GW_ERROR;
    r->view.path = (gw_str_t){gw_request_strdup(r, p, n), n};
    r->path_set = 1;
    return GW_OK;
}

/* The route's :params: names are its path's, values slices of the path as
 * routed (set_path does not change them). The first of a repeated name. */
EXPORT int
gw_ffi_req_param(gw_request_t *r, const char *name, size_t nlen, const char **value, size_t *vlen)
{
    for (size_t i = 0; i < r->nparams; i++)
        if (gw_str_eq(r->params[i].name, S(name, nlen)))
            return out(r->params[i].value, value, vlen);
    return GW_DECLINED;
}

EXPORT int
gw_ffi_req_nparams(gw_request_t *r)
{
    return (int)r->nparams;
}

EXPORT int
gw_ffi_req_param_at(gw_request_t *r, int i, const char **name, size_t *nlen, const char **value,
                    size_t *vlen)
{
    if (i < 0 || (size_t)i >= r->nparams)
        return GW_DECLINED;
    out(r->params[i].name, name, nlen);
    out(r->params[i].value, value, vlen);
    return GW_OK;
}

EXPORT int
gw_ffi_req_body(gw_request_t *r, const char **p, size_t *n)
{
    int rc = gw_request_read_body(r, &r->lua.scratch);
    *p = r->lua.scratch.data ? r->lua.scratch.data : "";
    *n = r->lua.scratch.len;
    return rc;
}

EXPORT double
gw_ffi_req_elapsed(gw_request_t *r)
{
    return (gw_worker_now_ns(r->w) - r->start_ns) / 1e9;
}

static gw_str_t
cstr(const char *s)
{
    return s ? (gw_str_t){s, strlen(s)} : GW_NULL_STR;
}

EXPORT int
gw_ffi_var_get(gw_request_t *r, const char *name, size_t nlen, const char **value, size_t *vlen)
{
    gw_str_t n = S(name, nlen);
    if (gw_str_eq(n, GW_STR("consumer"))) /* the one plugins read most */
        return out(r->view.consumer, value, vlen);
    if (gw_str_eq(n, GW_STR("route")))
        return out(r->route ? cstr(r->route->name) : GW_NULL_STR, value, vlen);
    if (gw_str_eq(n, GW_STR("upstream")))
        return out(cstr(gw_request_upstream_name(r)), value, vlen);
    if (gw_str_eq(n, GW_STR("node")))
        return out(r->node ? cstr(r->node->conf->addr) : GW_NULL_STR, value, vlen);
    if (gw_str_eq(n, GW_STR("consumer")))
        return out(r->view.consumer, value, vlen);
    if (gw_str_eq(n, GW_STR("request_id")))
        return out(r->request_id, value, vlen);
    if (gw_str_eq(n, GW_STR("remote_addr")))
        return out(r->view.remote_ip, value, vlen);
    if (gw_str_eq(n, GW_STR("scheme")))
        return out(r->view.tls ? GW_STR("https") : GW_STR("http"), value, vlen);
    if (gw_str_eq(n, GW_STR("tls_client_dn")))
        return out(r->view.tls_client_dn.len ? r->view.tls_client_dn : GW_NULL_STR, value, vlen);
    for (size_t i = 0; i < r->nvars; i++)
        if (gw_str_eq(r->vars[i].name, n))
            return out(r->vars[i].value, value, vlen);
    return GW_DECLINED;
}

EXPORT int
gw_ffi_var_set(gw_request_t *r, const char *name, size_t nlen, const char *value, size_t vlen)
{
    gw_str_t n = S(name, nlen), v = {gw_request_strdup(r, value, vlen), vlen};
    if (gw_str_eq(n, GW_STR("consumer"))) {
        r->view.consumer = v;
        return GW_OK;
    }
    if (gw_str_eq(n, GW_STR("route")) || gw_str_eq(n, GW_STR("upstream")) ||
        gw_str_eq(n, GW_STR("node")) || gw_str_eq(n, GW_STR("request_id")) ||
        gw_str_eq(n, GW_STR("remote_addr")) || gw_str_eq(n, GW_STR("latency")) ||
        gw_str_eq(n, GW_STR("scheme")) || gw_str_eq(n, GW_STR("tls_client_dn")))
        return GW_ERROR; /* read-only */
    for (size_t i = 0; i < r->nvars; i++) {
        if (gw_str_eq(r->vars[i].name, n)) {
            r->vars[i].value = v;
            return GW_OK;
        }
    }
    if (r->nvars == GW_ARRAY_LEN(r->vars))
        return GW_ERROR;
    r->vars[r->nvars].name = (gw_str_t){gw_request_strdup(r, name, nlen), nlen};
    r->vars[r->nvars].value = v;
    r->nvars++;
    r->view.vars = r->vars;
    r->view.nvars = r->nvars;
    return GW_OK;
}

EXPORT int
gw_ffi_exit(gw_request_t *r, int status, const char *body, size_t blen, const char *ctype)
{
    if (status < 100 || status > 599)
        return GW_ERROR;
    if (r->err == GW_ERR_REFUSED) /* the last way out a plugin chose wins */
        r->err = GW_ERR_NONE;
    r->lua.exit_status = status;
    r->lua.exit_body.len = 0;
    gw_buf_append(&r->lua.exit_body, body, blen);
    r->lua.exit_ctype =
        ctype && strcmp(ctype, "text") == 0 ? "text/plain; charset=utf-8" : "application/json";
    return GW_OK;
}

/* gw.exit_error: the request ends with the gateway's error envelope. From
 * rewrite or access it goes the way the gateway's own errors go, through
 * the error phase (kind "refused", or "limited" for 429), so error-mapping
 * and degradation see it; from the error phase it is that phase's answer. */
EXPORT int
gw_ffi_exit_error(gw_request_t *r, int status, const char *msg, size_t mlen)
{
    if (status < 400 || status > 599)
        return GW_ERROR;
    const char *m = gw_request_strdup(r, msg, mlen);
    if (r->lua.in_error_phase) {
        r->lua.exit_status = status;
        r->lua.exit_body.len = 0;
        gw_http_error_body(&r->lua.exit_body, status, m, r->request_id);
        r->lua.exit_ctype = "application/json";
        return GW_OK;
    }
    r->lua.exit_status = 0;
    r->err = GW_ERR_REFUSED;
    r->fail_status = status;
    r->fail_message = m;
    return GW_OK;
}

static int
header_token_ok(gw_str_t s, int value)
{
    if (!value && s.len == 0)
        return 0;
    for (size_t i = 0; i < s.len; i++) {
        unsigned char c = (unsigned char)s.data[i];
        if (c == '\r' || c == '\n' || c == 0 || (!value && (c == ':' || c <= ' ')))
            return 0;
    }
    return 1;
}

EXPORT int
gw_ffi_exit_header(gw_request_t *r, const char *name, size_t nlen, const char *value, size_t vlen)
{
    /* a header a plugin builds from request data must not split the head */
    if (!header_token_ok(S(name, nlen), 0) || !header_token_ok(S(value, vlen), 1))
        return GW_ERROR;
    switch (gw_http_owned_header(S(name, nlen))) {
    case GW_HDR_CTYPE:
        r->lua.exit_ctype = gw_request_strdup(r, value, vlen);
        return GW_OK;
    case GW_HDR_OWN:
        return GW_OK; /* the gateway writes its own */
    }
    gw_buf_append(&r->lua.exit_headers, name, nlen);
    gw_buf_append(&r->lua.exit_headers, ": ", 2);
    gw_buf_append(&r->lua.exit_headers, value, vlen);
    gw_buf_append(&r->lua.exit_headers, "\r\n", 2);
    return GW_OK;
}

EXPORT int
gw_ffi_resp_status(gw_request_t *r)
{
    return r->lua.status_override ? r->lua.status_override : r->status;
}

EXPORT int
gw_ffi_resp_set_status(gw_request_t *r, int status)
{
    if (status < 100 || status > 599)
        return GW_ERROR;
    r->lua.status_override = status;
    return GW_OK;
}

EXPORT int
gw_ffi_resp_header(gw_request_t *r, const char *name, size_t nlen, const char **value, size_t *vlen)
{
    gw_header_t *h = r->lua.rhdrs ? find(r->lua.rhdrs, r->lua.nrhdrs, S(name, nlen)) : NULL;
    if (h == NULL)
        return GW_DECLINED;
    out(h->value, value, vlen);
    return GW_OK;
}

EXPORT int
gw_ffi_resp_set_header(gw_request_t *r, const char *name, size_t nlen, const char *value,
                       size_t vlen, int clear)
{
    if (r->lua.rhdrs == NULL)
        return GW_ERROR; /* only in header_filter */
    if (!header_token_ok(S(name, nlen), 0) || (!clear && !header_token_ok(S(value, vlen), 1)))
        return GW_ERROR;
    return set_header(r, r->lua.rhdrs, &r->lua.nrhdrs, S(name, nlen), value, vlen, clear);
}

EXPORT void
gw_ffi_log(gw_request_t *r, int level, const char *msg, size_t len)
{
    gw_log_t *log = r ? r->w->log : NULL;
    if (level < GW_LOG_DEBUG || level > GW_LOG_ERROR)
        level = GW_LOG_INFO;
    if (r && r->request_id.len)
        gw_log(log, (gw_log_level_t)level, "%.*s (request %.*s)", (int)len, msg,
               (int)r->request_id.len, r->request_id.data);
    else
        gw_log(log, (gw_log_level_t)level, "%.*s", (int)len, msg);
}

EXPORT double
gw_ffi_now(void)
{
    uv_timeval64_t tv;
    uv_gettimeofday(&tv);
    return (double)tv.tv_sec + tv.tv_usec / 1e6;
}

static void
on_sleep(uv_timer_t *t)
{
    gw_lua_resume(&((gw_request_t *)t->data)->lua);
}

EXPORT int
gw_ffi_sleep(gw_request_t *r, double seconds)
{
    if (r == NULL || r->lua.co_ref == 0 || !(seconds >= 0))
        return GW_ERROR;
    uint64_t ms = (uint64_t)(seconds * 1000 + 0.5);
    r->lua.waiting = 1;
    uv_timer_start(&r->lua.timer, on_sleep, ms, 0);
    return GW_AGAIN;
}

/* ---- gw.http.request ---- */

/* Lives until the client's callback, which may come after the request
 * ended: then r is NULL and the answer is dropped. */
typedef struct {
    gw_request_t *r;
    int status;
    gw_buf_t headers;
    gw_buf_t body;
    char err[128];
} http_wait_t;

static void
on_http(gw_httpc_req_t *hr, int err, const char *errmsg, const gw_httpc_resp_t *resp, void *arg)
{
    http_wait_t *hw = arg;
    gw_request_t *r = hw->r;
    if (r == NULL) {
        gw_buf_free(&hw->headers);
        gw_buf_free(&hw->body);
        free(hw);
        return;
    }
    r->lua.http = NULL;
    /* the result stays with the request until the Lua side reads it */
    hw->status = err ? 0 : resp->status;
    snprintf(hw->err, sizeof(hw->err), "%s", err ? (errmsg ? errmsg : "failed") : "");
    if (!err) {
        for (size_t i = 0; i < resp->nheaders; i++) {
            gw_buf_appends(&hw->headers, resp->headers[i].name);
            gw_buf_append(&hw->headers, ": ", 2);
            gw_buf_appends(&hw->headers, resp->headers[i].value);
            gw_buf_append(&hw->headers, "\r\n", 2);
        }
        gw_buf_append(&hw->body, resp->body, resp->body_len);
    }
    r->lua.http = hw; /* now: the finished result */
    r->lua.http_done = 1;
    gw_lua_resume(&r->lua);
}

EXPORT int
gw_ffi_http(gw_request_t *r, const char *method, const char *url, const char *headers, size_t hlen,
            const char *body, size_t blen, double timeout, const char **err)
{
    char msg[160];
    gw_header_t hs[64];
    size_t nh = 0;
    if (r == NULL || r->lua.co_ref == 0) {
        *err = "gw.http.request can only wait in the rewrite, access and header_filter phases";
        return GW_ERROR;
    }
    if (r->lua.http) {
        *err = "another gw.http.request is in progress";
        return GW_ERROR;
    }
    /* "Name: value\r\n" lines, built by the Lua wrapper */
    const char *p = headers, *end = headers + hlen;
    while (p < end && nh < GW_ARRAY_LEN(hs)) {
        const char *eol = memchr(p, '\r', (size_t)(end - p));
        const char *colon = memchr(p, ':', (size_t)(end - p));
        if (eol == NULL || colon == NULL || colon > eol)
            break;
        hs[nh].name = (gw_str_t){p, (size_t)(colon - p)};
        hs[nh].value = (gw_str_t){colon + 2, (size_t)(eol - colon - 2)};
        nh++;
        p = eol + 2;
    }
    gw_httpc_opts_t o = {0};
    o.method = method;
    o.url = url;
    o.headers = hs;
    o.nheaders = nh;
    o.body = blen ? body : NULL;
    o.body_len = blen;
    o.timeout_ms = timeout > 0 ? (uint64_t)(timeout * 1000) : 5000;
    if (strncasecmp(url, "https://", 8) == 0)
        o.tls = gw_worker_tls_default(r->w);
    http_wait_t *hw = calloc(1, sizeof(*hw));
    if (hw == NULL)
        abort();
    hw->r = r;
    gw_httpc_req_t *hr = gw_httpc_request(r->w->loop, &o, on_http, hw, msg, sizeof(msg));
    if (hr == NULL) {
        free(hw);
        /* in the request, not a static: no mutable state outside the worker */
        *err = gw_request_strdup(r, msg, strlen(msg));
        return GW_ERROR;
    }
    r->lua.http = hw;
    r->lua.http_req = hr;
    r->lua.cancel_waits = cancel_waits;
    r->lua.http_done = 0;
    r->lua.waiting = 1;
    return GW_AGAIN;
}

EXPORT int
gw_ffi_http_result(gw_request_t *r, int *status, const char **headers, size_t *hlen,
                   const char **body, size_t *blen, const char **err)
{
    http_wait_t *hw = r->lua.http;
    if (hw == NULL || !r->lua.http_done)
        return GW_ERROR;
    *status = hw->status;
    *headers = hw->headers.data ? hw->headers.data : "";
    *hlen = hw->headers.len;
    *body = hw->body.data ? hw->body.data : "";
    *blen = hw->body.len;
    *err = hw->err;
    return GW_OK;
}

/* The Lua side copied the result: free it. */
EXPORT void
gw_ffi_http_release(gw_request_t *r)
{
    http_wait_t *hw = r->lua.http;
    if (hw && r->lua.http_done) {
        gw_buf_free(&hw->headers);
        gw_buf_free(&hw->body);
        free(hw);
        r->lua.http = NULL;
        r->lua.http_done = 0;
    }
}

static void limit_cancel(gw_request_t *r);

/* r->lua.cancel_waits: whatever r's coroutine waits for, or a result it
 * has not released, goes (the request is ending or abandoned). */
static void
cancel_waits(gw_request_t *r)
{
    limit_cancel(r);
    http_wait_t *hw = r->lua.http;
    if (hw == NULL)
        return;
    if (r->lua.http_done) {
        gw_ffi_http_release(r);
        return;
    }
    hw->r = NULL; /* the callback frees it */
    gw_httpc_cancel(r->lua.http_req);
    r->lua.http = NULL;
    r->lua.http_req = NULL;
}

/* body_filter's output chunk, kept until the gateway writes it. */
EXPORT void
gw_ffi_body_out(gw_request_t *r, const char *p, size_t n)
{
    r->lua.scratch.len = 0;
    gw_buf_append(&r->lua.scratch, p, n);
}

/* ---- limiters ---- */

EXPORT int
gw_ffi_limiter_new(gw_request_t *r, int kind, double a, double b, int align, const char *prefix,
                   size_t plen, int policy, int on_err)
{
    gw_worker_t *w = r->w;
    gw_limit_conf_t c = {0};
    c.kind = kind == 1 ? GW_LIMIT_TOKEN : GW_LIMIT_PERIOD;
    if (c.kind == GW_LIMIT_PERIOD) {
        c.quota = (int64_t)a;
        c.period = (int64_t)b;
    } else {
        c.rate = a;
        c.burst = (int64_t)b;
    }
    c.align = align;
    c.prefix = prefix;
    c.prefix_len = plen;
    /* without a redis section every limiter counts locally */
    c.policy = policy == 1 || w->redis == NULL ? GW_LIMIT_USE_LOCAL : GW_LIMIT_USE_REDIS;
    c.on_redis_error = on_err == 1   ? GW_LIMIT_ON_ERR_ALLOW
                       : on_err == 2 ? GW_LIMIT_ON_ERR_DENY
                                     : GW_LIMIT_ON_ERR_LOCAL;
    c.log = w->log;
    gw_limiter_t *l = gw_limiter_new(&c, w->redis, w->nworkers, w->loop);
    if (l == NULL)
        return GW_ERROR;
    gw_limiter_t **v = realloc(w->limiters, (w->nlimiters + 1) * sizeof(*v));
    if (v == NULL) {
        gw_limiter_free(l);
        return GW_ERROR;
    }
    w->limiters = v;
    v[w->nlimiters] = l;
    return (int)w->nlimiters++;
}

static void
add_num_header(gw_request_t *r, const char *name, size_t nlen, int64_t v)
{
    char num[24];
    if (nlen + 26 > 96)
        return;
    size_t n = gw_fmt_u64(num, v < 0 ? 0 : (uint64_t)v); /* never negative here */
    gw_request_add_resp_header(r, S(name, nlen), S(num, n));
}

#define ADD_NUM(r, lit, v) add_num_header(r, lit, sizeof(lit) - 1, v)

/* The answer for the Lua side, the metrics, the X-RateLimit headers and,
 * for a refusal, Retry-After and the 429 (through the error phase). */
static void
limit_out(gw_request_t *r, gw_limiter_t *l, const gw_limit_result_t *res)
{
    int64_t *o = r->lua.limit_res;
    o[0] = res->allowed;
    o[1] = res->code;
    o[2] = res->limit;
    o[3] = res->remaining;
    o[4] = res->reset;
    o[5] = res->source;
    gw_metrics_limiter(r->w->metrics, r->w->slot, r->route ? (int)r->route->index : -1,
                       r->lua.limit_which, !res->allowed,
                       gw_limiter_uses_redis(l) && res->source != GW_LIMIT_SRC_REDIS);
    if (r->lua.limit_flags & GW_LIMIT_FLAG_HEADERS) {
        ADD_NUM(r, "X-RateLimit-Limit", res->limit);
        if (res->remaining >= 0)
            ADD_NUM(r, "X-RateLimit-Remaining", res->remaining);
        if (res->reset >= 0)
            ADD_NUM(r, "X-RateLimit-Reset", res->reset);
    }
    if (!res->allowed && (r->lua.limit_flags & GW_LIMIT_FLAG_ENFORCE)) {
        ADD_NUM(r, "Retry-After", gw_limiter_retry_after(l, res));
        r->err = GW_ERR_LIMITED;
    }
}

static void
on_limit(const gw_limit_result_t *res, void *arg)
{
    gw_request_t *r = arg;
    r->lua.limit = NULL;
    limit_out(r, r->w->limiters[r->lua.limit_id], res);
    gw_lua_resume(&r->lua);
}

/* FLAGS: GW_LIMIT_FLAG_HEADERS sends X-RateLimit-*, GW_LIMIT_FLAG_ENFORCE
 * refuses the request (429) when the limiter says no. GW_OK: the answer
 * is ready (gw_ffi_limit_result); GW_AGAIN: wait, then read it. */
EXPORT int
gw_ffi_limit_take(gw_request_t *r, int id, int which, const char *key, size_t klen, int flags)
{
    gw_worker_t *w = r->w;
    if (id < 0 || (size_t)id >= w->nlimiters || r->lua.limit)
        return GW_ERROR;
    gw_limit_result_t res;
    gw_limit_wait_t *wait = NULL;
    r->lua.limit_which = which;
    r->lua.limit_id = id;
    r->lua.limit_flags = flags;
    int rc = gw_limiter_take(w->limiters[id], key, klen, &res, on_limit, r, &wait);
    if (rc == GW_AGAIN) {
        if (r->lua.co_ref == 0) { /* cannot wait here */
            gw_limit_wait_cancel(wait);
            return GW_ERROR;
        }
        r->lua.limit = wait;
        r->lua.cancel_waits = cancel_waits;
        r->lua.waiting = 1;
        return GW_AGAIN;
    }
    limit_out(r, w->limiters[id], &res);
    return GW_OK;
}

/* OUT: allowed, code, limit, remaining, reset, source. */
EXPORT void
gw_ffi_limit_result(gw_request_t *r, int64_t *o)
{
    memcpy(o, r->lua.limit_res, sizeof(r->lua.limit_res));
}

/* The matched route's index, -1 when none. */
EXPORT int
gw_ffi_route_index(gw_request_t *r)
{
    return r->route ? (int)r->route->index : -1;
}

EXPORT int
gw_ffi_limit_allowed(gw_request_t *r)
{
    return (int)r->lua.limit_res[0];
}

/* Headers the gateway writes itself on every response it makes: another
 * copy would contradict them (or the framing). */
/* Headers every response of the request gets (gateway-made ones too). */
EXPORT int
gw_ffi_resp_add_header(gw_request_t *r, const char *name, size_t nlen, const char *value,
                       size_t vlen)
{
    if (!header_token_ok(S(name, nlen), 0) || !header_token_ok(S(value, vlen), 1) ||
        gw_http_owned_header(S(name, nlen)) != GW_HDR_PLUGIN)
        return GW_ERROR;
    gw_request_add_resp_header(r, S(name, nlen), S(value, vlen));
    return GW_OK;
}

static void
limit_cancel(gw_request_t *r)
{
    if (r->lua.limit) {
        gw_limit_wait_cancel(r->lua.limit);
        r->lua.limit = NULL;
    }
    gw_ffi_redis_release(r);
}

/* ---- gw.redis ---- */

/* Lives until the Redis answer, which may come after the request ended. */
typedef struct {
    gw_request_t *r;
    gw_redis_cmd_t *cmd;
    gw_buf_t out; /* the reply, encoded for lua/gw/api.lua */
    int err;
} redis_wait_t;

/* i<int>\n, s<len>:<bytes>, e<len>:<bytes>, n, a<count>\n<elements> */
static void
encode_reply(gw_buf_t *b, const redisReply *x, int depth)
{
    char num[32];
    int n;
    switch (x->type) {
    case REDIS_REPLY_INTEGER:
        n = snprintf(num, sizeof(num), "i%lld\n", (long long)x->integer);
        gw_buf_append(b, num, (size_t)n);
        return;
    case REDIS_REPLY_STRING:
    case REDIS_REPLY_STATUS:
    case REDIS_REPLY_ERROR:
        n = snprintf(num, sizeof(num), "%c%zu:", x->type == REDIS_REPLY_ERROR ? 'e' : 's',
                     (size_t)x->len);
        gw_buf_append(b, num, (size_t)n);
        gw_buf_append(b, x->str, (size_t)x->len);
        return;
    case REDIS_REPLY_ARRAY:
        if (depth >= 8) { /* deeper nesting reads as nil */
            gw_buf_append(b, "n", 1);
            return;
        }
        n = snprintf(num, sizeof(num), "a%zu\n", (size_t)x->elements);
        gw_buf_append(b, num, (size_t)n);
        for (size_t i = 0; i < x->elements; i++)
            encode_reply(b, x->element[i], depth + 1);
        return;
    default:
        gw_buf_append(b, "n", 1);
    }
}

static void
on_redis(int err, const redisReply *reply, void *arg)
{
    redis_wait_t *rw = arg;
    gw_request_t *r = rw->r;
    rw->cmd = NULL;
    rw->err = err;
    if (err == 0)
        encode_reply(&rw->out, reply, 0);
    gw_lua_resume(&r->lua);
}

EXPORT int
gw_ffi_redis(gw_request_t *r, int argc, const char **argv, const size_t *lens, const char **err)
{
    gw_worker_t *w = r->w;
    if (r->lua.co_ref == 0) {
        *err = "gw.redis cannot wait here";
        return GW_ERROR;
    }
    if (w->redis == NULL) {
        *err = "no redis configured";
        return GW_ERROR;
    }
    if (!gw_redis_ready(w->redis)) {
        *err = "redis unavailable";
        return GW_ERROR;
    }
    redis_wait_t *rw = calloc(1, sizeof(*rw));
    if (rw == NULL) {
        *err = "out of memory";
        return GW_ERROR;
    }
    rw->r = r;
    rw->cmd = gw_redis_command(w->redis, argc, argv, lens, on_redis, rw);
    if (rw->cmd == NULL) {
        free(rw);
        *err = "redis unavailable";
        return GW_ERROR;
    }
    r->lua.redis = rw;
    r->lua.cancel_waits = cancel_waits;
    r->lua.waiting = 1;
    return GW_AGAIN;
}

/* The encoded reply, or *ERR: valid until gw_ffi_redis_release. */
EXPORT int
gw_ffi_redis_result(gw_request_t *r, const char **p, size_t *n, const char **err)
{
    redis_wait_t *rw = r->lua.redis;
    if (rw == NULL)
        return GW_ERROR;
    if (rw->err) {
        *err = rw->err == GW_REDIS_ETIMEDOUT ? "timeout" : "connection lost";
        return GW_ERROR;
    }
    *p = rw->out.data ? rw->out.data : "n";
    *n = rw->out.data ? rw->out.len : 1;
    return GW_OK;
}

EXPORT void
gw_ffi_redis_release(gw_request_t *r)
{
    redis_wait_t *rw = r->lua.redis;
    if (rw == NULL)
        return;
    if (rw->cmd)
        gw_redis_cmd_cancel(rw->cmd);
    gw_buf_free(&rw->out);
    free(rw);
    r->lua.redis = NULL;
}
