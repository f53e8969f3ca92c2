/*
 * The etcd v3 watcher, through etcd's JSON gateway (/v3/auth/authenticate,
 * /v3/kv/range, /v3/watch; keys and values in base64, 64-bit numbers as
 * strings).
 *
 * One registry, one sequence at a time, one request in flight:
 *   authenticate (when a user is configured and no token is held)
 *   -> read every target that needs it (range over its prefix; report)
 *   -> one watch stream carrying a create request per target, each from
 *      the revision after its read; events are applied to the lists in
 *      memory and every changed list is reported whole.
 * The gateway reads a watch request's body as a sequence of JSON messages,
 * so several create requests fit in one body and one HTTP stream serves
 * the whole registry; each is given watch_id = its index + 1, and the
 * `created` answers (which come in order) say which id the server chose
 * when it does not take ours.
 *
 * On a compacted revision the stream ends, the targets concerned are read
 * again, and a new stream starts at once. Any other failure (refused,
 * timeout, stream ended, bad answer) moves to the next endpoint after a
 * delay doubling from 100 ms to 5 s, with jitter; a stream resumes from the
 * revisions already seen, so nothing is re-read unless etcd compacted them.
 * A refused token is dropped and a new one asked for at once, once in a
 * row.
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gw_crypto.h"
#include "gw_httpc.h"
#include "gw_json.h"
#include "gw_jsonr.h"
#include "gw_log.h"
#include "gw_tls_client.h"
#include "gw_watch.h"

#define RANGE_MAX_BODY (16u * 1024 * 1024) /* a whole prefix read */
#define LINE_MAX_BYTES (1024u * 1024)      /* one watch message */
#define ERR_BODY_MAX (64u * 1024)          /* an error answer on the stream */
#define MAX_KEYS 100000                    /* per target */
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000

typedef struct {
    char *host;
    int port;
    int weight;
    gw_kv_t *meta;
    size_t nmeta;
} inst_t;

/* One etcd key and the instances its value names (one for go-zero; those
 * of the record's `nodes` for go-micro). */
typedef struct {
    char *key;
    inst_t *insts;
    size_t ninsts;
} entry_t;

typedef struct {
    const gw_discovery_conf_t *conf;
    int micro;
    char *prefix; /* the keys read: [prefix, prefix + 1) */
    size_t prefix_len;
    char *key_b64, *end_b64;
    entry_t *entries; /* sorted by key */
    size_t n, cap;
    int64_t rev; /* the list is current at this revision */
    int64_t watch_id;
    int need_read;
} target_t;

typedef enum { ST_IDLE = 0, ST_AUTH, ST_RANGE, ST_WATCH } state_t;

/* Why the watcher itself ended its stream. */
typedef enum { END_NONE = 0, END_REREAD, END_FAIL, END_AUTH } end_t;

typedef struct {
    uv_loop_t *loop;
    gw_log_t *log;
    const gw_registry_conf_t *reg;
    const gw_disc_report_t *report;
    void *arg;
    gw_tls_client_t *tls; /* https:// endpoints: the registry's tls settings */

    target_t *targets;
    size_t ntargets;

    size_t ep; /* the endpoint in use */
    char *token;
    int auth_off;   /* etcd said authentication is not enabled */
    int auth_retry; /* a refused token was replaced; the next refusal fails */

    state_t state;
    gw_httpc_req_t *req;
    size_t reading;

    uv_timer_t timer;
    uint64_t backoff_ms;
    uint64_t rnd;

    gw_buf_t line; /* the watch message being assembled */
    size_t ncreated;
    end_t end;
    char why[256];

    int stopping;
    int refs; /* the owner, the request in flight, the timer handle */
} watcher_t;

static void step(watcher_t *w);

/* ---------------------------------------------------------------- memory */

static void
inst_clear(inst_t *in)
{
    free(in->host);
    for (size_t i = 0; i < in->nmeta; i++) {
        free(in->meta[i].key);
        free(in->meta[i].value);
    }
    free(in->meta);
}

static void
entry_clear(entry_t *e)
{
    for (size_t i = 0; i < e->ninsts; i++)
        inst_clear(&e->insts[i]);
    free(e->insts);
    free(e->key);
    memset(e, 0, sizeof(*e));
}

static void
target_clear_entries(target_t *t)
{
    for (size_t i = 0; i < t->n; i++)
        entry_clear(&t->entries[i]);
    free(t->entries);
    t->entries = NULL;
    t->n = t->cap = 0;
}

static void
watcher_free(watcher_t *w)
{
    for (size_t i = 0; i < w->ntargets; i++) {
        target_t *t = &w->targets[i];
        target_clear_entries(t);
        free(t->prefix);
        free(t->key_b64);
        free(t->end_b64);
    }
    free(w->targets);
    free(w->token);
    gw_buf_free(&w->line);
    gw_tls_client_free(w->tls);
    free(w);
}

static void
unref(watcher_t *w)
{
    if (--w->refs == 0)
        watcher_free(w);
}

/* ---------------------------------------------------------------- small helpers */

static uint64_t
next_rand(watcher_t *w)
{
    /* xorshift64: jitter only, no need for more */
    w->rnd ^= w->rnd << 13;
    w->rnd ^= w->rnd >> 7;
    w->rnd ^= w->rnd << 17;
    return w->rnd;
}

static char *
b64(const char *s, size_t len)
{
    size_t cap = 4 * ((len + 2) / 3) + 1;
    char *out = malloc(cap);
    if (out == NULL)
        return NULL;
    size_t n = len ? gw_crypto_base64_encode(s, len, out, cap, 0) : 0;
    out[n] = '\0';
    return out;
}

/* Base64 string T of J decoded into a new NUL-terminated string; NULL when
 * it is not base64, or holds a NUL byte. */
static char *
b64_field(const gw_jsonr_t *j, int t, size_t *len)
{
    if (t < 0) { /* etcd leaves empty fields out */
        *len = 0;
        return strdup("");
    }
    const gw_jsonr_tok_t *tk = &j->toks[t];
    if (tk->type != GW_JSONR_STRING || tk->escaped)
        return NULL;
    size_t cap = tk->len / 4 * 3 + 3;
    char *out = malloc(cap);
    if (out == NULL)
        return NULL;
    long n = tk->len ? gw_crypto_base64_decode(j->text + tk->off, tk->len, out, cap, 0) : 0;
    if (n < 0 || memchr(out, '\0', (size_t)n) != NULL) {
        free(out);
        return NULL;
    }
    out[n] = '\0';
    *len = (size_t)n;
    return out;
}

/* "host:port" or "[v6]:port" into HOST (a new string, without brackets)
 * and PORT. */
static int
split_hostport(const char *s, char **host, int *port)
{
    const char *h = s, *colon, *hend;
    if (*s == '[') {
        hend = strchr(s, ']');
        if (hend == NULL || hend[1] != ':')
            return -1;
        h = s + 1;
        colon = hend + 1;
        for (const char *p = h; p < hend; p++)
            if (strchr("0123456789abcdefABCDEF:.", *p) == NULL)
                return -1;
    } else {
        colon = strrchr(s, ':');
        if (colon == NULL || memchr(s, ':', (size_t)(colon - s)) != NULL)
            return -1;
        hend = colon;
        for (const char *p = h; p < hend; p++)
            if (strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_", *p) ==
                NULL)
                return -1;
    }
    if (hend == h || hend - h > 253)
        return -1;
    const char *p = colon + 1;
    long v = 0;
    if (*p == '\0' || strlen(p) > 5)
        return -1;
    for (; *p; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        v = v * 10 + (*p - '0');
    }
    if (v < 1 || v > 65535)
        return -1;
    *host = strndup(h, (size_t)(hend - h));
    if (*host == NULL)
        return -1;
    *port = (int)v;
    return 0;
}

/* ---------------------------------------------------------------- values */

static int
parse_gozero(const char *value, entry_t *e)
{
    inst_t in = {0};
    if (split_hostport(value, &in.host, &in.port) != 0)
        return -1;
    in.weight = 1;
    e->insts = malloc(sizeof(inst_t));
    if (e->insts == NULL) {
        free(in.host);
        return -1;
    }
    e->insts[0] = in;
    e->ninsts = 1;
    return 0;
}

static int
meta_add(inst_t *in, const char *k, char *v)
{
    for (size_t i = 0; i < in->nmeta; i++) {
        if (strcmp(in->meta[i].key, k) == 0) {
            free(in->meta[i].value);
            in->meta[i].value = v;
            return 0;
        }
    }
    gw_kv_t *m = realloc(in->meta, (in->nmeta + 1) * sizeof(*m));
    char *kd = strdup(k);
    if (m == NULL || kd == NULL) {
        if (m)
            in->meta = m;
        free(kd);
        free(v);
        return -1;
    }
    in->meta = m;
    in->meta[in->nmeta].key = kd;
    in->meta[in->nmeta].value = v;
    in->nmeta++;
    return 0;
}

/* One node of a go-micro record: its address, its metadata, the record's
 * version as meta.version, and meta.weight as the weight when it is a
 * number in range. */
static int
parse_micro_node(const gw_jsonr_t *j, int node, const char *version, inst_t *in)
{
    char *addr = gw_jsonr_strdup(j, gw_jsonr_get(j, node, "address"), NULL);
    int rc = addr ? split_hostport(addr, &in->host, &in->port) : -1;
    free(addr);
    if (rc != 0)
        return -1;
    in->weight = 1;
    int md = gw_jsonr_get(j, node, "metadata");
    if (gw_jsonr_type(j, md) != GW_JSONR_NULL && gw_jsonr_type(j, md) != GW_JSONR_OBJECT)
        return -1;
    for (int k = gw_jsonr_first(j, md); k >= 0; k = gw_jsonr_next(j, md, k + 1)) {
        /* go-micro writes a map of strings; anything else is not carried */
        if (gw_jsonr_type(j, k + 1) != GW_JSONR_STRING)
            continue;
        char *key = gw_jsonr_strdup(j, k, NULL);
        char *val = gw_jsonr_strdup(j, k + 1, NULL);
        if (key == NULL || val == NULL) { /* a NUL inside, or out of memory */
            free(key);
            free(val);
            continue;
        }
        if (strcmp(key, "weight") == 0) {
            char *end;
            long wt = strtol(val, &end, 10);
            if (*val && *end == '\0' && wt >= 1 && wt <= 1000000)
                in->weight = (int)wt;
        }
        int rc2 = meta_add(in, key, val);
        free(key);
        if (rc2 != 0)
            return -1;
    }
    if (version && version[0]) {
        char *v = strdup(version);
        if (v == NULL || meta_add(in, "version", v) != 0)
            return -1;
    }
    return 0;
}

static int
parse_micro(const char *value, size_t len, entry_t *e)
{
    gw_jsonr_t j;
    int rc = -1;
    char *version = NULL;

    if (gw_jsonr_parse(&j, value, len, len / 2 + 64, NULL, 0) != 0 ||
        gw_jsonr_type(&j, 0) != GW_JSONR_OBJECT)
        goto done;
    int v = gw_jsonr_get(&j, 0, "version");
    if (v >= 0 && (version = gw_jsonr_strdup(&j, v, NULL)) == NULL)
        goto done;
    int nodes = gw_jsonr_get(&j, 0, "nodes");
    if (gw_jsonr_type(&j, nodes) != GW_JSONR_ARRAY || j.toks[nodes].count == 0)
        goto done;
    e->insts = calloc(j.toks[nodes].count, sizeof(inst_t));
    if (e->insts == NULL)
        goto done;
    for (int nd = gw_jsonr_first(&j, nodes); nd >= 0; nd = gw_jsonr_next(&j, nodes, nd)) {
        inst_t *in = &e->insts[e->ninsts++];
        if (gw_jsonr_type(&j, nd) != GW_JSONR_OBJECT || parse_micro_node(&j, nd, version, in) != 0)
            goto done;
    }
    rc = 0;
done:
    free(version);
    gw_jsonr_free(&j);
    return rc;
}

/* The entry for KEY holding VALUE; -1 (and a log line) when VALUE is not
 * what the target's format writes. */
static int
make_entry(watcher_t *w, target_t *t, const char *key, const char *value, size_t vlen, entry_t *e)
{
    memset(e, 0, sizeof(*e));
    int rc = t->micro ? parse_micro(value, vlen, e) : parse_gozero(value, e);
    if (rc == 0 && (e->key = strdup(key)) != NULL)
        return 0;
    entry_clear(e);
    gw_log_warn(w->log, "registry %s: skipping etcd key \"%.200s\": %s value \"%.100s\"",
                w->reg->name, key,
                t->micro ? "not a go-micro service record:" : "expected host:port, got", value);
    return -1;
}

/* ---------------------------------------------------------------- the lists */

static long
find_entry(const target_t *t, const char *key, int *found)
{
    size_t lo = 0, hi = t->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(t->entries[mid].key, key);
        if (c == 0) {
            *found = 1;
            return (long)mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = 0;
    return (long)lo;
}

static void
remove_key(target_t *t, const char *key)
{
    int found;
    long i = find_entry(t, key, &found);
    if (!found)
        return;
    entry_clear(&t->entries[i]);
    memmove(&t->entries[i], &t->entries[i + 1], (t->n - (size_t)i - 1) * sizeof(entry_t));
    t->n--;
}

/* Takes E (its memory) into T, replacing the entry of the same key. */
static int
put_entry(watcher_t *w, target_t *t, entry_t *e)
{
    int found;
    long i = find_entry(t, e->key, &found);
    if (found) {
        entry_clear(&t->entries[i]);
        t->entries[i] = *e;
        return 0;
    }
    if (t->n >= MAX_KEYS) {
        gw_log_warn(w->log, "registry %s: more than %d keys under \"%s\": \"%.200s\" ignored",
                    w->reg->name, MAX_KEYS, t->prefix, e->key);
        entry_clear(e);
        return -1;
    }
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 16;
        entry_t *ne = realloc(t->entries, cap * sizeof(*ne));
        if (ne == NULL) {
            entry_clear(e);
            return -1;
        }
        t->entries = ne;
        t->cap = cap;
    }
    memmove(&t->entries[i + 1], &t->entries[i], (t->n - (size_t)i) * sizeof(entry_t));
    t->entries[i] = *e;
    t->n++;
    return 0;
}

static void
report_target(watcher_t *w, size_t ti)
{
    target_t *t = &w->targets[ti];
    size_t n = 0, k = 0;
    for (size_t i = 0; i < t->n; i++)
        n += t->entries[i].ninsts;
    gw_disc_node_t *nodes = n ? malloc(n * sizeof(*nodes)) : NULL;
    if (n && nodes == NULL) {
        gw_log_error(w->log, "registry %s: out of memory", w->reg->name);
        return;
    }
    for (size_t i = 0; i < t->n; i++) {
        for (size_t m = 0; m < t->entries[i].ninsts; m++) {
            const inst_t *in = &t->entries[i].insts[m];
            nodes[k++] = (gw_disc_node_t){in->host, in->port,  in->weight,
                                          in->meta, in->nmeta, t->entries[i].key};
        }
    }
    w->report->nodes(w->arg, ti, nodes, n);
    free(nodes);
}

/* KV (an object of a range answer or a watch event) put into T. */
static void
apply_put(watcher_t *w, target_t *t, const gw_jsonr_t *j, int kv)
{
    size_t klen, vlen;
    char *key = b64_field(j, gw_jsonr_get(j, kv, "key"), &klen);
    char *value = key ? b64_field(j, gw_jsonr_get(j, kv, "value"), &vlen) : NULL;
    entry_t e;

    if (key == NULL || value == NULL) {
        gw_log_warn(w->log,
                    "registry %s: skipping an etcd key or value that is not base64 "
                    "text%s%.200s",
                    w->reg->name, key ? ": " : "", key ? key : "");
    } else if (klen <= t->prefix_len || memcmp(key, t->prefix, t->prefix_len) != 0) {
        /* outside the range asked for: not ours */
    } else if (make_entry(w, t, key, value, vlen, &e) == 0) {
        put_entry(w, t, &e);
    } else {
        remove_key(t, key); /* what the key named before is gone */
    }
    free(key);
    free(value);
}

static void
apply_delete(target_t *t, const gw_jsonr_t *j, int kv)
{
    size_t klen;
    char *key = b64_field(j, gw_jsonr_get(j, kv, "key"), &klen);
    if (key)
        remove_key(t, key);
    free(key);
}

/* ---------------------------------------------------------------- requests */

static void set_why(watcher_t *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
set_why(watcher_t *w, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(w->why, sizeof(w->why), fmt, ap);
    va_end(ap);
}

static void on_timer(uv_timer_t *t);

/* A failure: report it, move to the next endpoint, try again later. */
static void
fail(watcher_t *w, const char *why)
{
    const char *ep = w->reg->endpoints[w->ep];
    gw_log_debug(w->log, "registry %s: %s: %s", w->reg->name, ep, why);
    w->report->state(w->arg, 0, why);
    w->state = ST_IDLE;
    w->ep = (w->ep + 1) % w->reg->nendpoints;
    uint64_t d = w->backoff_ms / 2 + next_rand(w) % (w->backoff_ms / 2 + 1);
    w->backoff_ms = w->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : w->backoff_ms * 2;
    uv_timer_start(&w->timer, on_timer, d, 0);
}

static void
on_timer(uv_timer_t *t)
{
    watcher_t *w = t->data;
    if (!w->stopping)
        step(w);
}

/* The error text of an etcd gateway answer ({"error": "...", "message":
 * "...", "code": N}, or on the stream {"error": {"message": ...}}). */
static void
error_text(const char *body, size_t len, char *out, size_t cap)
{
    gw_jsonr_t j;
    out[0] = '\0';
    if (gw_jsonr_parse(&j, body, len, 4096, NULL, 0) == 0) {
        int e = gw_jsonr_get(&j, 0, "error");
        int m = gw_jsonr_get(&j, gw_jsonr_type(&j, e) == GW_JSONR_OBJECT ? e : 0, "message");
        if (m < 0)
            m = e;
        if (gw_jsonr_str(&j, m, out, cap) < 0)
            out[0] = '\0';
    }
    gw_jsonr_free(&j);
}

/* Whether etcd refused the request for its token (or its lack of one). */
static int
auth_refused(int status, const char *msg)
{
    return status == 401 || strstr(msg, "invalid auth token") != NULL ||
           strstr(msg, "user name is empty") != NULL || strstr(msg, "Unauthenticated") != NULL;
}

/* A refusal of the token: a new one now, once; then it is a failure. */
static void
token_refused(watcher_t *w, const char *why)
{
    free(w->token);
    w->token = NULL;
    w->auth_off = 0;
    if (w->reg->username != NULL && !w->auth_retry) {
        w->auth_retry = 1;
        gw_log_info(w->log, "registry %s: etcd refused the token (%s); authenticating again",
                    w->reg->name, why);
        step(w);
        return;
    }
    fail(w, why);
}

static gw_httpc_req_t *
post(watcher_t *w, const char *path, const char *body, size_t max_body, gw_httpc_body_cb on_body,
     gw_httpc_cb cb)
{
    char url[1024], err[256];
    const char *ep = w->reg->endpoints[w->ep];
    size_t eplen = strlen(ep);
    while (eplen > 0 && ep[eplen - 1] == '/')
        eplen--;
    snprintf(url, sizeof(url), "%.*s%s", (int)eplen, ep, path);

    gw_header_t hs[3];
    size_t nh = 0;
    hs[nh++] = (gw_header_t){GW_STR("Content-Type"), GW_STR("application/json")};
    if (w->token)
        hs[nh++] = (gw_header_t){GW_STR("Authorization"), {w->token, strlen(w->token)}};
    if (on_body) /* the watch ends when the member loses its leader (as WithRequireLeader) */
        hs[nh++] = (gw_header_t){GW_STR("Grpc-Metadata-Hasleader"), GW_STR("true")};
    gw_httpc_opts_t o = {
        .method = "POST",
        .url = url,
        .headers = hs,
        .nheaders = nh,
        .body = body,
        .body_len = strlen(body),
        .timeout_ms = w->reg->timeout_ms,
        .max_body = max_body,
        .on_body = on_body,
        .tls = w->tls,
        .tls_name = w->reg->tls.sni,
    };
    gw_httpc_req_t *r = gw_httpc_request(w->loop, &o, cb, w, err, sizeof(err));
    if (r == NULL) {
        set_why(w, "cannot send to %s: %s", ep, err);
        fail(w, w->why);
        return NULL;
    }
    w->req = r;
    w->refs++;
    return r;
}

/* Common start of a request callback: 1 when the watcher goes on with it. */
static int
req_done(watcher_t *w)
{
    w->req = NULL;
    if (w->stopping) {
        unref(w);
        return 0;
    }
    w->refs--; /* the owner's reference still holds */
    return 1;
}

/* ---- authenticate */

static void
on_auth(gw_httpc_req_t *req, int err, const char *errmsg, const gw_httpc_resp_t *resp, void *arg)
{
    watcher_t *w = arg;
    char msg[256];
    gw_jsonr_t j;

    if (!req_done(w))
        return;
    if (err) {
        fail(w, errmsg);
        return;
    }
    if (resp->status != 200) {
        error_text(resp->body, resp->body_len, msg, sizeof(msg));
        if (strstr(msg, "authentication is not enabled") != NULL) {
            w->auth_off = 1;
            step(w);
            return;
        }
        set_why(w, "authentication failed: %s", msg[0] ? msg : "no reason given");
        fail(w, w->why);
        return;
    }
    if (gw_jsonr_parse(&j, resp->body, resp->body_len, 4096, NULL, 0) == 0)
        w->token = gw_jsonr_strdup(&j, gw_jsonr_get(&j, 0, "token"), NULL);
    gw_jsonr_free(&j);
    if (w->token == NULL || w->token[0] == '\0' || strpbrk(w->token, "\r\n") != NULL) {
        free(w->token);
        w->token = NULL;
        fail(w, "authentication answer without a usable token");
        return;
    }
    step(w);
}

static void
start_auth(watcher_t *w)
{
    const char *u = w->reg->username, *p = w->reg->password;
    size_t ul = strlen(u), pl = strlen(p);
    char *body = malloc(6 * (ul + pl) + 64);
    if (body == NULL) {
        fail(w, "out of memory");
        return;
    }
    size_t n = (size_t)sprintf(body, "{\"name\":\"");
    n += gw_json_escape(body + n, u, ul);
    n += (size_t)sprintf(body + n, "\",\"password\":\"");
    n += gw_json_escape(body + n, p, pl);
    strcpy(body + n, "\"}");
    w->state = ST_AUTH;
    post(w, "/v3/auth/authenticate", body, 64 * 1024, NULL, on_auth);
    free(body);
}

/* ---- range */

static int
apply_range(watcher_t *w, target_t *t, const char *body, size_t len)
{
    gw_jsonr_t j;
    char err[128];
    int64_t rev = 0;

    if (gw_jsonr_parse(&j, body, len, len / 4 + 64, err, sizeof(err)) != 0) {
        set_why(w, "range answer is not JSON: %s", err);
        gw_jsonr_free(&j);
        return -1;
    }
    if (gw_jsonr_int(&j, gw_jsonr_get(&j, gw_jsonr_get(&j, 0, "header"), "revision"), &rev) != 0 ||
        rev <= 0) {
        set_why(w, "range answer without a revision");
        gw_jsonr_free(&j);
        return -1;
    }
    int kvs = gw_jsonr_get(&j, 0, "kvs");
    target_clear_entries(t);
    for (int kv = gw_jsonr_first(&j, kvs); kv >= 0; kv = gw_jsonr_next(&j, kvs, kv))
        apply_put(w, t, &j, kv);
    t->rev = rev;
    t->need_read = 0;
    gw_jsonr_free(&j);
    return 0;
}

static void
on_range(gw_httpc_req_t *req, int err, const char *errmsg, const gw_httpc_resp_t *resp, void *arg)
{
    watcher_t *w = arg;
    char msg[256];

    if (!req_done(w))
        return;
    if (err) {
        if (err == GW_HTTPC_ETOOLARGE)
            gw_log_warn(w->log, "registry %s: the keys under \"%s\" are more than %u bytes",
                        w->reg->name, w->targets[w->reading].prefix, RANGE_MAX_BODY);
        fail(w, errmsg);
        return;
    }
    if (resp->status != 200) {
        error_text(resp->body, resp->body_len, msg, sizeof(msg));
        set_why(w, "range refused: %s", msg[0] ? msg : "no reason given");
        if (auth_refused(resp->status, msg))
            token_refused(w, w->why);
        else
            fail(w, w->why);
        return;
    }
    if (apply_range(w, &w->targets[w->reading], resp->body, resp->body_len) != 0) {
        gw_log_warn(w->log, "registry %s: %s", w->reg->name, w->why);
        fail(w, w->why);
        return;
    }
    w->auth_retry = 0;
    w->report->state(w->arg, 1, NULL);
    report_target(w, w->reading);
    step(w);
}

static void
start_range(watcher_t *w, size_t ti)
{
    target_t *t = &w->targets[ti];
    size_t n = strlen(t->key_b64) + strlen(t->end_b64) + 40;
    char *body = malloc(n);
    if (body == NULL) {
        fail(w, "out of memory");
        return;
    }
    snprintf(body, n, "{\"key\":\"%s\",\"range_end\":\"%s\"}", t->key_b64, t->end_b64);
    w->state = ST_RANGE;
    w->reading = ti;
    post(w, "/v3/kv/range", body, RANGE_MAX_BODY, NULL, on_range);
    free(body);
}

/* ---- watch */

static target_t *
target_of(watcher_t *w, int64_t id)
{
    for (size_t i = 0; i < w->ntargets; i++)
        if (w->targets[i].watch_id == id)
            return &w->targets[i];
    return NULL;
}

/* Ends the stream from inside its body callback; the request's callback
 * then does what END says. */
static int
end_stream(watcher_t *w, end_t end)
{
    w->end = end;
    return 1;
}

static int
on_created(watcher_t *w, int64_t id, int64_t hrev)
{
    if (w->ncreated >= w->ntargets) {
        set_why(w, "watch stream: more watches created than asked for");
        return end_stream(w, END_FAIL);
    }
    target_t *t = &w->targets[w->ncreated++];
    t->watch_id = id;
    if (hrev < t->rev) {
        /* The store is older than what was read (its data was replaced):
         * what we hold cannot be resumed from. */
        gw_log_info(w->log,
                    "registry %s: etcd is at revision %lld, behind %lld: reading \"%s\" "
                    "again",
                    w->reg->name, (long long)hrev, (long long)t->rev, t->prefix);
        t->need_read = 1;
        return end_stream(w, END_REREAD);
    }
    if (w->ncreated == w->ntargets) {
        w->backoff_ms = BACKOFF_MIN_MS;
        w->auth_retry = 0;
        w->report->state(w->arg, 1, NULL);
    }
    return 0;
}

static int
on_canceled(watcher_t *w, const gw_jsonr_t *j, int res, target_t *t)
{
    int64_t compact = 0;
    char reason[200];

    if (gw_jsonr_int(j, gw_jsonr_get(j, res, "compact_revision"), &compact) == 0 && compact > 0 &&
        t != NULL) {
        gw_log_info(w->log,
                    "registry %s: etcd compacted past revision %lld (now %lld): reading "
                    "\"%s\" again",
                    w->reg->name, (long long)t->rev + 1, (long long)compact, t->prefix);
        t->need_read = 1;
        return end_stream(w, END_REREAD);
    }
    if (gw_jsonr_str(j, gw_jsonr_get(j, res, "cancel_reason"), reason, sizeof(reason)) < 0)
        snprintf(reason, sizeof(reason), "no reason given");
    set_why(w, "watch canceled: %s", reason);
    return end_stream(w, auth_refused(0, reason) ? END_AUTH : END_FAIL);
}

static int
on_events(watcher_t *w, const gw_jsonr_t *j, int evs, target_t *t, size_t ti)
{
    unsigned n = 0;
    for (int ev = gw_jsonr_first(j, evs); ev >= 0; ev = gw_jsonr_next(j, evs, ev)) {
        int kv = gw_jsonr_get(j, ev, "kv");
        int type = gw_jsonr_get(j, ev, "type");
        int64_t mod = 0;
        if (gw_jsonr_type(j, kv) != GW_JSONR_OBJECT) {
            set_why(w, "watch event without a key");
            return end_stream(w, END_FAIL);
        }
        if (type < 0 || gw_jsonr_str_eq(j, type, "PUT"))
            apply_put(w, t, j, kv);
        else if (gw_jsonr_str_eq(j, type, "DELETE"))
            apply_delete(t, j, kv);
        else
            continue;
        if (gw_jsonr_int(j, gw_jsonr_get(j, kv, "mod_revision"), &mod) == 0 && mod > t->rev)
            t->rev = mod;
        n++;
    }
    if (n) {
        w->report->events(w->arg, n);
        report_target(w, ti);
    }
    return 0;
}

/* One message of the stream. Returns non-zero to end the stream. */
static int
on_message(watcher_t *w, const char *text, size_t len)
{
    gw_jsonr_t j;
    char err[128];
    int rc = 0;
    int64_t id = 0, hrev = 0;

    if (gw_jsonr_parse(&j, text, len, len / 2 + 64, err, sizeof(err)) != 0) {
        set_why(w, "watch message is not JSON: %s", err);
        gw_log_warn(w->log, "registry %s: %s", w->reg->name, w->why);
        gw_jsonr_free(&j);
        return end_stream(w, END_FAIL);
    }
    int res = gw_jsonr_get(&j, 0, "result");
    if (gw_jsonr_type(&j, res) != GW_JSONR_OBJECT) {
        error_text(text, len, err, sizeof(err));
        set_why(w, "watch failed: %s", err[0] ? err : "an answer without a result");
        rc = end_stream(w, auth_refused(0, err) ? END_AUTH : END_FAIL);
        goto done;
    }
    int wid = gw_jsonr_get(&j, res, "watch_id");
    if (wid >= 0 && gw_jsonr_int(&j, wid, &id) != 0) {
        set_why(w, "watch message with a bad watch_id");
        rc = end_stream(w, END_FAIL);
        goto done;
    }
    gw_jsonr_int(&j, gw_jsonr_get(&j, gw_jsonr_get(&j, res, "header"), "revision"), &hrev);
    int created = gw_jsonr_get(&j, res, "created") >= 0 &&
                  gw_jsonr_type(&j, gw_jsonr_get(&j, res, "created")) == GW_JSONR_TRUE;
    int canceled = gw_jsonr_type(&j, gw_jsonr_get(&j, res, "canceled")) == GW_JSONR_TRUE;
    if (created && !canceled && (rc = on_created(w, id, hrev)) != 0)
        goto done;
    target_t *t = created && !canceled ? NULL : target_of(w, id);
    if (canceled) {
        rc = on_canceled(w, &j, res, t);
        goto done;
    }
    if (created)
        goto done;
    int evs = gw_jsonr_get(&j, res, "events");
    if (t == NULL && evs < 0)
        goto done; /* a progress notice for the whole stream (watch_id -1) */
    if (t == NULL) {
        set_why(w, "watch events for an unknown watch");
        rc = end_stream(w, END_FAIL);
        goto done;
    }
    if (evs >= 0)
        rc = on_events(w, &j, evs, t, (size_t)(t - w->targets));
    else if (hrev > t->rev) /* a progress notification: nothing before hrev is missing */
        t->rev = hrev;
done:
    gw_jsonr_free(&j);
    return rc;
}

static int
on_stream(gw_httpc_req_t *req, int status, const char *data, size_t len, void *arg)
{
    watcher_t *w = arg;
    if (w->stopping)
        return 1;
    if (status != 200) { /* an error answer: kept for its message */
        if (w->line.len + len <= ERR_BODY_MAX)
            gw_buf_append(&w->line, data, len);
        return 0;
    }
    while (len > 0) {
        const char *nl = memchr(data, '\n', len);
        size_t n = nl ? (size_t)(nl - data) : len;
        if (w->line.len + n > LINE_MAX_BYTES) {
            set_why(w, "a watch message over %u bytes", LINE_MAX_BYTES);
            gw_log_warn(w->log, "registry %s: %s; reading again", w->reg->name, w->why);
            for (size_t i = 0; i < w->ntargets; i++)
                w->targets[i].need_read = 1;
            return end_stream(w, END_FAIL);
        }
        gw_buf_append(&w->line, data, n);
        if (nl == NULL)
            break;
        data += n + 1;
        len -= n + 1;
        size_t ll = w->line.len;
        while (ll > 0 && (w->line.data[ll - 1] == '\r' || w->line.data[ll - 1] == ' '))
            ll--;
        int rc = ll > 0 ? on_message(w, w->line.data, ll) : 0;
        w->line.len = 0;
        if (rc != 0 || w->stopping)
            return 1;
    }
    return 0;
}

static void
on_watch_end(gw_httpc_req_t *req, int err, const char *errmsg, const gw_httpc_resp_t *resp,
             void *arg)
{
    watcher_t *w = arg;
    char msg[256];
    end_t end = w->end;

    w->end = END_NONE;
    if (!req_done(w))
        return;
    if (end == END_REREAD) {
        w->state = ST_IDLE;
        step(w);
    } else if (end == END_AUTH) {
        token_refused(w, w->why);
    } else if (end == END_FAIL) {
        fail(w, w->why);
    } else if (err) {
        set_why(w, "watch: %s", errmsg);
        fail(w, w->why);
    } else if (resp->status != 200) {
        error_text(w->line.data ? w->line.data : "", w->line.len, msg, sizeof(msg));
        set_why(w, "watch refused: %s", msg[0] ? msg : "no reason given");
        if (auth_refused(resp->status, msg))
            token_refused(w, w->why);
        else
            fail(w, w->why);
    } else {
        fail(w, "watch stream ended");
    }
}

static void
start_watch(watcher_t *w)
{
    gw_buf_t b = {0};
    for (size_t i = 0; i < w->ntargets; i++) {
        target_t *t = &w->targets[i];
        t->watch_id = -1;
        gw_buf_appendf(&b,
                       "{\"create_request\":{\"key\":\"%s\",\"range_end\":\"%s\","
                       "\"start_revision\":\"%lld\",\"progress_notify\":true,"
                       "\"watch_id\":\"%zu\"}}",
                       t->key_b64, t->end_b64, (long long)t->rev + 1, i + 1);
    }
    gw_buf_append(&b, "", 1);
    w->line.len = 0;
    w->ncreated = 0;
    w->end = END_NONE;
    w->state = ST_WATCH;
    post(w, "/v3/watch", b.data, 0, on_stream, on_watch_end);
    gw_buf_free(&b);
}

/* The next thing to do. */
static void
step(watcher_t *w)
{
    if (w->stopping)
        return;
    if (w->reg->username != NULL && w->token == NULL && !w->auth_off) {
        start_auth(w);
        return;
    }
    for (size_t i = 0; i < w->ntargets; i++) {
        if (w->targets[i].need_read) {
            start_range(w, i);
            return;
        }
    }
    start_watch(w);
}

/* ---------------------------------------------------------------- the contract */

static int
target_init(const gw_registry_conf_t *reg, const gw_discovery_conf_t *d, target_t *t)
{
    t->conf = d;
    t->micro = d->format != NULL && strcmp(d->format, "go-micro") == 0;
    t->need_read = 1;
    t->watch_id = -1;
    if (t->micro) {
        const char *pfx = reg->prefix ? reg->prefix : "/micro/registry/";
        t->prefix_len = strlen(pfx) + strlen(d->service) + 1;
        t->prefix = malloc(t->prefix_len + 1);
        if (t->prefix)
            snprintf(t->prefix, t->prefix_len + 1, "%s%s/", pfx, d->service);
    } else {
        t->prefix_len = strlen(d->key) + 1;
        t->prefix = malloc(t->prefix_len + 1);
        if (t->prefix)
            snprintf(t->prefix, t->prefix_len + 1, "%s/", d->key);
    }
    if (t->prefix == NULL)
        return -1;
    /* The end of a prefix range: the prefix with its last byte one higher
     * (it ends with '/', so never 0xff). */
    char *end = strdup(t->prefix);
    if (end == NULL)
        return -1;
    end[t->prefix_len - 1]++;
    t->key_b64 = b64(t->prefix, t->prefix_len);
    t->end_b64 = b64(end, t->prefix_len);
    free(end);
    return t->key_b64 && t->end_b64 ? 0 : -1;
}

static void *
start(uv_loop_t *loop, gw_log_t *log, const gw_registry_conf_t *reg,
      const gw_discovery_conf_t *const *targets, size_t ntargets, const gw_disc_report_t *report,
      void *arg)
{
    watcher_t *w = calloc(1, sizeof(*w));
    if (w == NULL)
        goto oom;
    w->loop = loop;
    w->log = log;
    w->reg = reg;
    w->report = report;
    w->arg = arg;
    w->backoff_ms = BACKOFF_MIN_MS;
    w->rnd = uv_hrtime() ^ (uint64_t)(uintptr_t)w;
    if (w->rnd == 0)
        w->rnd = 1;
    w->refs = 1;
    w->targets = calloc(ntargets ? ntargets : 1, sizeof(target_t));
    if (w->targets == NULL)
        goto oom;
    w->ntargets = ntargets;
    for (size_t i = 0; i < ntargets; i++)
        if (target_init(reg, targets[i], &w->targets[i]) != 0)
            goto oom;
    if (reg->nendpoints == 0) {
        gw_log_error(log, "registry %s: no endpoints", reg->name);
        watcher_free(w);
        return NULL;
    }
    if (reg->tls.enabled) {
        char err[256];
        if ((w->tls = gw_tls_client_new(&reg->tls, NULL, err, sizeof(err))) == NULL) {
            gw_log_error(log, "registry %s: %s", reg->name, err);
            watcher_free(w);
            return NULL;
        }
    }
    uv_timer_init(loop, &w->timer);
    w->timer.data = w;
    w->refs++;
    if (ntargets > 0)
        uv_timer_start(&w->timer, on_timer, 0, 0);
    return w;
oom:
    gw_log_error(log, "registry %s: out of memory", reg->name);
    if (w)
        watcher_free(w);
    return NULL;
}

static void
on_timer_closed(uv_handle_t *h)
{
    unref(h->data);
}

static void
stop(void *wp)
{
    watcher_t *w = wp;
    if (w == NULL || w->stopping)
        return;
    w->stopping = 1;
    if (w->req)
        gw_httpc_cancel(w->req);
    uv_close((uv_handle_t *)&w->timer, on_timer_closed);
    unref(w);
}

const gw_watcher_ops_t gw_etcd_watcher = {GW_DISC_ETCD, start, stop};
