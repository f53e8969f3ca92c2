/*
 * The Consul watcher: one blocking query loop per target on Consul's
 * health endpoint,
 *
 *   GET <addr>/v1/health/service/<service>?passing=true&dc=<dc>
 *       &index=<last X-Consul-Index>&wait=<wait>
 *
 * one request at a time per target. Each answer is the complete instance
 * list; it is reported when its index differs from the last one (Consul
 * also returns when its wait runs out, or after writes that did not touch
 * the service), and after every failure's first good answer.
 *
 * The loop follows Consul's advice for blocking clients: an index lower
 * than the last one restarts the loop (a plain read), an index below 1 is
 * sent as 1 so the next request really blocks, and requests start at most
 * once per MIN_INTERVAL_MS per target even when Consul answers at once.
 * Errors back off (100 ms doubling to 5 s, jittered) and the next try is a
 * plain read, so recovery shows at once rather than after a whole wait.
 *
 * Instance metadata is Service.Meta, then what the tags say: go-micro's
 * encoded tags (v- version, t- metadata; e- endpoints ignored), "key=value"
 * tags, and any other tag T as "tag:T" with an empty value. A key already
 * set is kept: Service.Meta wins, then the first tag.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "gw_httpc.h"
#include "gw_jsonr.h"
#include "gw_log.h"
#include "gw_tls_client.h"
#include "gw_watch.h"

#define MIN_INTERVAL_MS 100
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define MAX_BODY (16u * 1024 * 1024)
#define MAX_META 128      /* per instance, from Meta and tags together */
#define MAX_META_LEN 4096 /* a key or a value; Consul allows 128 and 512 */
#define MAX_HOST_LEN 255
#define MAX_ID_LEN 1024
#define MAX_TAG_DECODED 65536 /* a go-micro tag inflated */
#define MAX_WEIGHT 1000000

typedef struct consul_s consul_t;

typedef struct {
    consul_t *w;
    size_t index;
    const gw_discovery_conf_t *d;
    uv_timer_t timer;
    gw_httpc_req_t *req;
    uint64_t raw_index;  /* X-Consul-Index of the last good answer (0: none) */
    uint64_t wait_index; /* what the next blocking request sends */
    uint64_t last_start; /* loop time of the last request start */
    uint64_t backoff_ms; /* 0 while healthy */
    int answered;        /* a good answer came since start */
    int resync;          /* the last request failed: read plainly, report */
    int failed;
    int filtered; /* the last answer was cut by ACLs (logged once) */
    char why[160];
} target_t;

struct consul_s {
    uv_loop_t *loop;
    gw_log_t *log;
    const gw_registry_conf_t *reg;
    const gw_disc_report_t *report;
    void *arg;
    gw_tls_client_t *tls; /* an https:// addr: the registry's tls settings */
    char *base;           /* addr without a trailing '/' */
    target_t *t;
    size_t nt;
    unsigned pending; /* timers not closed + requests in flight */
    int stopped;
    uint64_t rng;
};

/* ---- small helpers ------------------------------------------------------- */

static uint64_t
next_rand(consul_t *w)
{
    return gw_rng_next(&w->rng);
}

/* Percent-encodes S for a path segment or a query value. */
static void
put_escaped(gw_buf_t *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
            ch == '-' || ch == '.' || ch == '_' || ch == '~') {
            gw_buf_append(b, s, 1);
        } else {
            char e[3] = {'%', hex[ch >> 4], hex[ch & 15]};
            gw_buf_append(b, e, 3);
        }
    }
}

/* Consul's wait as a Go duration. */
static void
put_wait(gw_buf_t *b, uint64_t ms)
{
    if (ms % 1000 == 0)
        gw_buf_appendf(b, "%llus", (unsigned long long)(ms / 1000));
    else
        gw_buf_appendf(b, "%llums", (unsigned long long)ms);
}

/* ---- the instance list of one answer ------------------------------------- */

typedef struct {
    gw_disc_node_t *nodes;
    size_t n, cap;
    gw_kv_t *kv; /* every node's meta, in node order */
    size_t nkv, kvcap;
    size_t *kv_start; /* per node: its first entry in kv */
    size_t kvscap;
    char **owned; /* strings to free after the report */
    size_t nowned, ownedcap;
    int oom;
} list_t;

static int
grow(void **p, size_t *cap, size_t need, size_t size)
{
    if (need <= *cap)
        return 0;
    size_t n = *cap ? *cap * 2 : 16;
    while (n < need)
        n *= 2;
    void *q = realloc(*p, n * size);
    if (q == NULL)
        return -1;
    *p = q;
    *cap = n;
    return 0;
}

/* Takes S (malloc'd, may be NULL) into the list; returns it. */
static char *
own(list_t *l, char *s)
{
    if (s == NULL)
        return NULL;
    if (grow((void **)&l->owned, &l->ownedcap, l->nowned + 1, sizeof(char *)) < 0) {
        free(s);
        l->oom = 1;
        return NULL;
    }
    l->owned[l->nowned++] = s;
    return s;
}

static char *
own_copy(list_t *l, const char *s, size_t n)
{
    char *c = malloc(n + 1);
    if (c == NULL) {
        l->oom = 1;
        return NULL;
    }
    memcpy(c, s, n);
    c[n] = '\0';
    return own(l, c);
}

static void
list_free(list_t *l)
{
    for (size_t i = 0; i < l->nowned; i++)
        free(l->owned[i]);
    free(l->owned);
    free(l->nodes);
    free(l->kv);
    free(l->kv_start);
    memset(l, 0, sizeof(*l));
}

/* Meta of the node being built: entries from kv_start[n] on. */
typedef struct {
    consul_t *w;
    const char *id;
    list_t *l;
    size_t first;
    int warned; /* the "too much meta" line was written */
} meta_t;

static int
meta_has(meta_t *m, const char *key, size_t klen)
{
    for (size_t i = m->first; i < m->l->nkv; i++)
        if (strlen(m->l->kv[i].key) == klen && memcmp(m->l->kv[i].key, key, klen) == 0)
            return 1;
    return 0;
}

/* Adds KEY=VALUE unless KEY is there already. */
static void
meta_add(meta_t *m, const char *key, size_t klen, const char *val, size_t vlen)
{
    list_t *l = m->l;
    if (klen == 0 || klen > MAX_META_LEN || vlen > MAX_META_LEN || memchr(key, '\0', klen) ||
        memchr(val, '\0', vlen) || meta_has(m, key, klen))
        return;
    if (l->nkv - m->first >= MAX_META) {
        if (!m->warned++)
            gw_log_warn(m->w->log,
                        "registry %s: instance %s: more than %d metadata entries, "
                        "the rest ignored",
                        m->w->reg->name, m->id, MAX_META);
        return;
    }
    if (grow((void **)&l->kv, &l->kvcap, l->nkv + 1, sizeof(gw_kv_t)) < 0) {
        l->oom = 1;
        return;
    }
    char *k = own_copy(l, key, klen), *v = own_copy(l, val, vlen);
    if (k == NULL || v == NULL)
        return;
    l->kv[l->nkv].key = k;
    l->kv[l->nkv].value = v;
    l->nkv++;
}

/* Hex, then zlib: go-micro's encoding of version and metadata tags. A
 * malloc'd NUL-terminated result of at most MAX_TAG_DECODED bytes, or NULL. */
static char *
unhex_inflate(const char *hex, size_t n, size_t *outlen)
{
    if (n == 0 || n % 2 != 0 || n / 2 > MAX_TAG_DECODED)
        return NULL;
    unsigned char *bin = malloc(n / 2);
    char *out = malloc(MAX_TAG_DECODED + 1);
    char *res = NULL;
    if (bin == NULL || out == NULL)
        goto done;
    for (size_t i = 0; i < n; i += 2) {
        int hi = hex[i], lo = hex[i + 1];
        hi = hi >= '0' && hi <= '9' ? hi - '0' : hi >= 'a' && hi <= 'f' ? hi - 'a' + 10 : -1;
        lo = lo >= '0' && lo <= '9' ? lo - '0' : lo >= 'a' && lo <= 'f' ? lo - 'a' + 10 : -1;
        if (hi < 0 || lo < 0)
            goto done;
        bin[i / 2] = (unsigned char)(hi << 4 | lo);
    }
    z_stream z;
    memset(&z, 0, sizeof(z));
    if (inflateInit(&z) != Z_OK)
        goto done;
    z.next_in = bin;
    z.avail_in = (uInt)(n / 2);
    z.next_out = (unsigned char *)out;
    z.avail_out = MAX_TAG_DECODED + 1; /* one more byte tells "too long" */
    int rc = inflate(&z, Z_FINISH);
    size_t got = MAX_TAG_DECODED + 1 - z.avail_out;
    inflateEnd(&z);
    if (rc != Z_STREAM_END || got > MAX_TAG_DECODED)
        goto done;
    out[got] = '\0';
    *outlen = got;
    res = out;
    out = NULL;
done:
    free(bin);
    free(out);
    return res;
}

/* The token limit for a text of LEN bytes (20 bytes of tokens each): one
 * value per four bytes is far more than Consul's answers hold (an
 * instance is hundreds of bytes for a few dozen values), and keeps a
 * hostile answer of tiny values from costing five times its size. */
static size_t
max_toks(size_t len)
{
    return len / 4 + 64;
}

/* String T as a malloc'd copy of at most MAX bytes, or NULL (not a string,
 * longer, holding a NUL, out of memory). */
static char *
str_dup_max(const gw_jsonr_t *j, int t, size_t max, size_t *len)
{
    size_t n;
    char *s = gw_jsonr_strdup(j, t, &n);
    if (s != NULL && n > max) {
        free(s);
        return NULL;
    }
    if (s != NULL && len != NULL)
        *len = n;
    return s;
}

/* An integer written as a JSON number (gw_jsonr_int also reads strings,
 * which Consul never sends for these fields). */
static int
number_int(const gw_jsonr_t *j, int t, int64_t *out)
{
    return gw_jsonr_type(j, t) == GW_JSONR_NUMBER ? gw_jsonr_int(j, t, out) : -1;
}

/* The string members of object OBJ into meta; others are skipped. */
static void
meta_from_object(meta_t *m, const gw_jsonr_t *j, int obj)
{
    if (gw_jsonr_type(j, obj) != GW_JSONR_OBJECT)
        return;
    for (int k = gw_jsonr_first(j, obj); k >= 0; k = gw_jsonr_next(j, obj, k + 1)) {
        size_t kl, vl;
        char *ks = str_dup_max(j, k, MAX_META_LEN, &kl);
        char *vs = str_dup_max(j, k + 1, MAX_META_LEN, &vl);
        if (ks != NULL && vs != NULL)
            meta_add(m, ks, kl, vs, vl);
        free(ks);
        free(vs);
    }
}

/* A go-micro metadata tag's JSON: an object of strings. */
static void
meta_from_json(meta_t *m, const char *js, size_t n, const char *tag)
{
    gw_jsonr_t j;
    if (gw_jsonr_parse(&j, js, n, max_toks(n), NULL, 0) != 0 ||
        gw_jsonr_type(&j, 0) != GW_JSONR_OBJECT)
        gw_log_warn(m->w->log, "registry %s: instance %s: tag \"%.40s...\" is not a JSON object",
                    m->w->reg->name, m->id, tag);
    else
        meta_from_object(m, &j, 0);
    gw_jsonr_free(&j);
}

/* One tag into meta. go-micro writes "v-", "t-" and "e-" followed by the
 * hex of zlib-compressed data (older versions "v=", "t=", "e=" in clear). */
static void
meta_from_tag(meta_t *m, const char *tag, size_t n, int *have_version)
{
    const char *eq;
    if (n >= 2 && (tag[1] == '-' || tag[1] == '=') &&
        (tag[0] == 'v' || tag[0] == 't' || tag[0] == 'e')) {
        int coded = tag[1] == '-';
        size_t dl = n - 2;
        char *dec = NULL;
        const char *data = tag + 2;
        if (tag[0] == 'e')
            return;
        if (coded) {
            dec = unhex_inflate(tag + 2, n - 2, &dl);
            if (dec == NULL) {
                gw_log_warn(m->w->log,
                            "registry %s: instance %s: tag \"%.40s\" is not hex of zlib data",
                            m->w->reg->name, m->id, tag);
                return;
            }
            data = dec;
        }
        if (tag[0] == 'v') {
            if (!*have_version) /* the first version tag counts, as in go-micro */
                meta_add(m, "version", 7, data, dl);
            *have_version = 1;
        } else
            meta_from_json(m, data, dl, tag);
        free(dec);
        return;
    }
    if ((eq = memchr(tag, '=', n)) != NULL && eq > tag) {
        meta_add(m, tag, (size_t)(eq - tag), eq + 1, n - (size_t)(eq - tag) - 1);
        return;
    }
    char key[MAX_META_LEN + 8];
    if (n == 0 || n > MAX_META_LEN)
        return;
    memcpy(key, "tag:", 4);
    memcpy(key + 4, tag, n);
    meta_add(m, key, n + 4, "", 0);
}

static void
meta_from_service(meta_t *m, const gw_jsonr_t *j, int svc)
{
    int have_version = 0;
    int tags = gw_jsonr_get(j, svc, "Tags");

    meta_from_object(m, j, gw_jsonr_get(j, svc, "Meta"));
    if (gw_jsonr_type(j, tags) != GW_JSONR_ARRAY)
        return;
    for (int v = gw_jsonr_first(j, tags); v >= 0; v = gw_jsonr_next(j, tags, v)) {
        size_t n;
        char *t = str_dup_max(j, v, 2 * MAX_TAG_DECODED, &n);
        if (t != NULL)
            meta_from_tag(m, t, n, &have_version);
        free(t);
    }
}

/* A host as Consul may give it: an IP literal or a DNS name. */
static int
host_ok(const char *h, size_t n)
{
    if (n == 0 || n > MAX_HOST_LEN)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)h[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '.' || ch == '-' || ch == '_' || ch == ':' || ch == '%'))
            return 0;
    }
    return 1;
}

/* The worst status among an entry's checks: 0 passing, 1 warning, 2 else. */
static int
worst_check(const gw_jsonr_t *j, int entry)
{
    int checks = gw_jsonr_get(j, entry, "Checks");
    int worst = 0;
    if (gw_jsonr_type(j, checks) != GW_JSONR_ARRAY)
        return 0;
    for (int c = gw_jsonr_first(j, checks); c >= 0; c = gw_jsonr_next(j, checks, c)) {
        int st = gw_jsonr_get(j, c, "Status");
        if (st < 0 || gw_jsonr_str_eq(j, st, "passing"))
            continue;
        int s = gw_jsonr_str_eq(j, st, "warning") ? 1 : 2;
        if (s > worst)
            worst = s;
    }
    return worst;
}

/* Service.Weights: Passing for healthy instances, Warning for the others
 * (seen only with passing off). Missing or 0 Passing is 1; 0 Warning
 * means "send nothing", returned as 0. */
static int
weight_of(const gw_jsonr_t *j, int entry, int svc)
{
    int64_t x;
    int warning = worst_check(j, entry) > 0;
    int ws = gw_jsonr_get(j, svc, "Weights");
    if (gw_jsonr_type(j, ws) != GW_JSONR_OBJECT)
        return 1;
    if (number_int(j, gw_jsonr_get(j, ws, warning ? "Warning" : "Passing"), &x) < 0 || x < 0)
        return 1;
    if (x == 0)
        return warning ? 0 : 1;
    return x > MAX_WEIGHT ? MAX_WEIGHT : (int)x;
}

/* Member NAME of OBJ as a malloc'd string of at most MAX bytes: NULL when
 * absent, null or empty, and also, with *BAD set, when it is not a string
 * or is too long. */
static char *
str_member(const gw_jsonr_t *j, int obj, const char *name, size_t max, size_t *len, int *bad)
{
    int v = gw_jsonr_get(j, obj, name);
    char *s;
    *len = 0;
    if (v < 0 || gw_jsonr_type(j, v) == GW_JSONR_NULL)
        return NULL;
    if ((s = str_dup_max(j, v, max, len)) == NULL)
        *bad = 1;
    else if (*len == 0) {
        free(s);
        s = NULL;
    }
    return s;
}

/* One array element into L, or a log line saying why not. */
static void
add_entry(consul_t *w, target_t *t, list_t *l, const gw_jsonr_t *j, int entry, size_t pos)
{
    char *id = NULL, *host = NULL;
    char idbuf[32];
    int64_t port;
    size_t hl = 0;
    int bad = 0;
    int svc = gw_jsonr_get(j, entry, "Service"), node;

    if (gw_jsonr_type(j, svc) != GW_JSONR_OBJECT) {
        gw_log_warn(w->log, "registry %s: service %s: entry %zu has no Service object, skipped",
                    w->reg->name, t->d->service, pos);
        return;
    }
    id = own(l, str_dup_max(j, gw_jsonr_get(j, svc, "ID"), MAX_ID_LEN, NULL));
    if (id == NULL) {
        snprintf(idbuf, sizeof(idbuf), "#%zu", pos);
        id = idbuf;
    }
    /* An empty Service.Address means "the node's"; a malformed one is an
     * error, not a reason to fall back. */
    host = str_member(j, svc, "Address", MAX_HOST_LEN + 2, &hl, &bad);
    if (host == NULL && !bad && (node = gw_jsonr_get(j, entry, "Node")) >= 0)
        host = str_member(j, node, "Address", MAX_HOST_LEN + 2, &hl, &bad);
    host = own(l, host);
    if (host != NULL && hl > 2 && host[0] == '[' && host[hl - 1] == ']') {
        host[hl - 1] = '\0'; /* the contract wants IPv6 bare */
        host++;
        hl -= 2;
    }
    if (host == NULL || !host_ok(host, hl)) {
        gw_log_warn(w->log, "registry %s: service %s: instance %s: bad address \"%.100s\", skipped",
                    w->reg->name, t->d->service, id, host ? host : "");
        return;
    }
    if (number_int(j, gw_jsonr_get(j, svc, "Port"), &port) < 0 || port < 1 || port > 65535) {
        gw_log_warn(w->log, "registry %s: service %s: instance %s: bad or missing port, skipped",
                    w->reg->name, t->d->service, id);
        return;
    }
    int weight = weight_of(j, entry, svc);
    if (weight == 0)
        return;
    if (grow((void **)&l->nodes, &l->cap, l->n + 1, sizeof(gw_disc_node_t)) < 0 ||
        grow((void **)&l->kv_start, &l->kvscap, l->n + 1, sizeof(size_t)) < 0) {
        l->oom = 1;
        return;
    }
    meta_t m = {w, id, l, l->nkv, 0};
    meta_from_service(&m, j, svc);
    l->kv_start[l->n] = m.first;
    l->nodes[l->n] =
        (gw_disc_node_t){host, (int)port, weight, NULL, l->nkv - m.first, id == idbuf ? NULL : id};
    l->n++;
}

/* ---- the loop ------------------------------------------------------------- */

static void send_query(target_t *t);

static void
maybe_free(consul_t *w)
{
    if (!w->stopped || w->pending > 0)
        return;
    free(w->t);
    free(w->base);
    gw_tls_client_free(w->tls);
    free(w);
}

/* The registry's state: down while any target's last request failed. */
static void
report_state(consul_t *w)
{
    for (size_t i = 0; i < w->nt; i++) {
        if (w->t[i].failed) {
            w->report->state(w->arg, 0, w->t[i].why);
            return;
        }
    }
    w->report->state(w->arg, 1, NULL);
}

static void
on_timer(uv_timer_t *h)
{
    target_t *t = h->data;
    if (!t->w->stopped)
        send_query(t);
}

/* The next request no sooner than MIN_INTERVAL_MS after the last start. */
static void
next_after_success(target_t *t)
{
    uint64_t now = uv_now(t->w->loop), at = t->last_start + MIN_INTERVAL_MS;
    uv_timer_start(&t->timer, on_timer, at > now ? at - now : 0, 0);
}

static void
failed(target_t *t, const char *why)
{
    consul_t *w = t->w;
    if (!t->failed || strcmp(t->why, why) != 0)
        gw_log_warn(w->log, "registry %s: service %s: %s", w->reg->name, t->d->service, why);
    snprintf(t->why, sizeof(t->why), "%s", why);
    t->failed = 1;
    t->resync = 1;
    t->backoff_ms = t->backoff_ms ? t->backoff_ms * 2 : BACKOFF_MIN_MS;
    if (t->backoff_ms > BACKOFF_MAX_MS)
        t->backoff_ms = BACKOFF_MAX_MS;
    /* half fixed, half random: targets failing together spread out */
    uint64_t delay = t->backoff_ms / 2 + next_rand(w) % (t->backoff_ms / 2 + 1);
    report_state(w);
    if (!w->stopped) /* the report may have stopped us */
        uv_timer_start(&t->timer, on_timer, delay, 0);
}

static const gw_str_t *
header(const gw_httpc_resp_t *resp, gw_str_t name)
{
    for (size_t i = 0; i < resp->nheaders; i++)
        if (gw_str_caseeq(resp->headers[i].name, name))
            return &resp->headers[i].value;
    return NULL;
}

/* An answer Consul cut because the token may not read everything: the list
 * is what the token may see, which the operator likely did not mean. */
static void
check_filtered(target_t *t, const gw_httpc_resp_t *resp)
{
    const gw_str_t *v = header(resp, GW_STR("X-Consul-Results-Filtered-By-ACLs"));
    int filtered = v != NULL && gw_str_eq(*v, GW_STR("true"));
    if (filtered && !t->filtered)
        gw_log_warn(t->w->log,
                    "registry %s: service %s: Consul left out instances the token may not read",
                    t->w->reg->name, t->d->service);
    t->filtered = filtered;
}

/* The decimal X-Consul-Index of RESP; 0 when missing or not a number. */
static uint64_t
consul_index(const gw_httpc_resp_t *resp)
{
    const gw_str_t *h = header(resp, GW_STR("X-Consul-Index"));
    uint64_t v = 0;
    if (h == NULL || h->len == 0 || h->len > 19)
        return 0;
    for (size_t j = 0; j < h->len; j++) {
        char ch = h->data[j];
        if (ch < '0' || ch > '9')
            return 0;
        v = v * 10 + (uint64_t)(ch - '0');
    }
    return v;
}

/* A 200 answer: the list, then the index rules. */
static void
answered(target_t *t, const gw_httpc_resp_t *resp)
{
    consul_t *w = t->w;
    gw_jsonr_t j;
    char err[128], why[160];
    list_t l;

    if (gw_jsonr_parse(&j, resp->body, resp->body_len, max_toks(resp->body_len), err,
                       sizeof(err)) != 0) {
        gw_jsonr_free(&j);
        snprintf(why, sizeof(why), "bad JSON in the answer: %s", err);
        failed(t, why);
        return;
    }
    if (gw_jsonr_type(&j, 0) != GW_JSONR_ARRAY) {
        gw_jsonr_free(&j);
        failed(t, "bad answer: not a JSON array");
        return;
    }
    memset(&l, 0, sizeof(l));
    size_t pos = 0;
    for (int e = gw_jsonr_first(&j, 0); e >= 0 && !l.oom; e = gw_jsonr_next(&j, 0, e))
        add_entry(w, t, &l, &j, e, pos++);
    gw_jsonr_free(&j);
    if (l.oom) {
        list_free(&l);
        failed(t, "out of memory reading the answer");
        return;
    }
    for (size_t i = 0; i < l.n; i++)
        l.nodes[i].meta = l.nodes[i].nmeta ? &l.kv[l.kv_start[i]] : NULL;

    check_filtered(t, resp);
    uint64_t idx = consul_index(resp);
    int changed = !t->answered || idx != t->raw_index;
    if (changed || t->resync)
        w->report->nodes(w->arg, t->index, l.nodes, l.n);
    if (changed && !w->stopped)
        w->report->events(w->arg, 1);
    list_free(&l);
    if (w->stopped) /* the report stopped us: no more calls into it */
        return;

    /* Consul's rules for blocking clients: restart when the index goes
     * backwards, never block on 0. */
    t->wait_index = t->answered && idx < t->raw_index ? 0 : idx < 1 ? 1 : idx;
    t->raw_index = idx;
    t->answered = 1;
    t->resync = 0;
    t->failed = 0;
    t->backoff_ms = 0;
    report_state(w);
    if (!w->stopped)
        next_after_success(t);
}

/* The first line of an error body, for the log and the state. */
static void
http_error(target_t *t, const gw_httpc_resp_t *resp)
{
    char why[160];
    size_t n = 0;
    while (n < resp->body_len && n < 100 && resp->body[n] != '\n' && resp->body[n] != '\r' &&
           (unsigned char)resp->body[n] >= 0x20)
        n++;
    if (n > 0)
        snprintf(why, sizeof(why), "HTTP %d: %.*s", resp->status, (int)n, resp->body);
    else
        snprintf(why, sizeof(why), "HTTP %d", resp->status);
    failed(t, why);
}

static void
on_answer(gw_httpc_req_t *req, int err, const char *errmsg, const gw_httpc_resp_t *resp, void *arg)
{
    target_t *t = arg;
    consul_t *w = t->w;

    t->req = NULL;
    w->pending--;
    if (w->stopped) {
        maybe_free(w);
        return;
    }
    if (err != 0)
        failed(t, errmsg ? errmsg : "request failed");
    else if (resp->status != 200)
        http_error(t, resp);
    else
        answered(t, resp);
}

static void
send_query(target_t *t)
{
    consul_t *w = t->w;
    const gw_registry_conf_t *reg = w->reg;
    gw_buf_t url = {0};
    gw_header_t hdr;
    char err[160];
    int blocking = !t->resync && t->wait_index > 0;

    gw_buf_appendf(&url, "%s/v1/health/service/", w->base);
    put_escaped(&url, t->d->service);
    gw_buf_append(&url, "?", 1);
    if (t->d->passing)
        gw_buf_appendf(&url, "passing=true&");
    if (reg->dc != NULL) {
        gw_buf_appendf(&url, "dc=");
        put_escaped(&url, reg->dc);
        gw_buf_append(&url, "&", 1);
    }
    if (blocking) {
        gw_buf_appendf(&url, "index=%llu&wait=", (unsigned long long)t->wait_index);
        put_wait(&url, reg->wait_ms);
    }
    if (url.data[url.len - 1] == '&' || url.data[url.len - 1] == '?')
        url.len--;
    gw_buf_append(&url, "", 1);

    gw_httpc_opts_t o = {
        .method = "GET",
        .url = url.data,
        .timeout_ms = reg->timeout_ms,
        .max_body = MAX_BODY,
        .tls = w->tls,
        .tls_name = reg->tls.sni,
    };
    /* Consul holds the request up to wait plus wait/16 of jitter. */
    if (blocking)
        o.timeout_ms += reg->wait_ms + reg->wait_ms / 16;
    if (reg->token != NULL) {
        hdr.name = GW_STR("X-Consul-Token");
        hdr.value = (gw_str_t){reg->token, strlen(reg->token)};
        o.headers = &hdr;
        o.nheaders = 1;
    }
    t->last_start = uv_now(w->loop);
    t->req = gw_httpc_request(w->loop, &o, on_answer, t, err, sizeof(err));
    gw_buf_free(&url);
    if (t->req == NULL) {
        failed(t, err);
        return;
    }
    w->pending++;
}

/* ---- start, stop ---------------------------------------------------------- */

static void
on_timer_closed(uv_handle_t *h)
{
    target_t *t = h->data;
    consul_t *w = t->w;
    w->pending--;
    maybe_free(w);
}

static void *
start(uv_loop_t *loop, gw_log_t *log, const gw_registry_conf_t *reg,
      const gw_discovery_conf_t *const *targets, size_t ntargets, const gw_disc_report_t *report,
      void *arg)
{
    consul_t *w = calloc(1, sizeof(*w));
    if (w == NULL || reg->nendpoints < 1 ||
        (w->t = calloc(ntargets ? ntargets : 1, sizeof(target_t))) == NULL ||
        (w->base = strdup(reg->endpoints[0])) == NULL) {
        gw_log_error(log, "registry %s: cannot start the consul watcher (out of memory)",
                     reg->name);
        if (w != NULL) {
            free(w->t);
            free(w);
        }
        return NULL;
    }
    size_t bl = strlen(w->base);
    while (bl > 0 && w->base[bl - 1] == '/')
        w->base[--bl] = '\0';
    if (reg->tls.enabled) {
        char err[256];
        if ((w->tls = gw_tls_client_new(&reg->tls, NULL, err, sizeof(err))) == NULL) {
            gw_log_error(log, "registry %s: %s", reg->name, err);
            free(w->t);
            free(w->base);
            free(w);
            return NULL;
        }
    }
    w->loop = loop;
    w->log = log;
    w->reg = reg;
    w->report = report;
    w->arg = arg;
    w->nt = ntargets;
    w->rng = uv_hrtime() ^ (uint64_t)(uintptr_t)w;
    for (size_t i = 0; i < ntargets; i++) {
        target_t *t = &w->t[i];
        t->w = w;
        t->index = i;
        t->d = targets[i];
        uv_timer_init(loop, &t->timer);
        t->timer.data = t;
        w->pending++;
        uv_timer_start(&t->timer, on_timer, 0, 0);
    }
    return w;
}

static void
stop(void *arg)
{
    consul_t *w = arg;
    if (w == NULL || w->stopped)
        return;
    w->stopped = 1;
    for (size_t i = 0; i < w->nt; i++) {
        target_t *t = &w->t[i];
        if (t->req != NULL)
            gw_httpc_cancel(t->req);
        uv_timer_stop(&t->timer);
        uv_close((uv_handle_t *)&t->timer, on_timer_closed);
    }
    maybe_free(w);
}

const gw_watcher_ops_t gw_consul_watcher = {GW_DISC_CONSUL, start, stop};
