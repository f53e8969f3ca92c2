/* Rate limiters: go-zero's Redis scripts and a local fallback (see gw_limit.h). */
#include "gw_limit.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gw_log.h"
#include "gw_redis.h"

/*
 * The same writes as go-zero's periodscript: INCRBY, EXPIRE only when the
 * count is 1, the same codes (1 Allowed, 2 HitQuota, 0 OverQuota). It also
 * returns the count and the TTL, for the X-RateLimit headers.
 */
static const char PERIOD_SCRIPT[] =
    "local limit = tonumber(ARGV[1])\n"
    "local window = tonumber(ARGV[2])\n"
    "local current = redis.call('INCRBY', KEYS[1], 1)\n"
    "if current == 1 then\n"
    "    redis.call('EXPIRE', KEYS[1], window)\n"
    "end\n"
    "local ttl = redis.call('TTL', KEYS[1])\n"
    "local code = 0\n"
    "if current < limit then code = 1 elseif current == limit then code = 2 end\n"
    "return {code, current, ttl}\n";

/*
 * go-zero's tokenscript: refill by whole seconds of the caller's clock,
 * take when enough, always SETEX both keys. The TTL is at least 1 (go-zero's
 * fails with 0 when burst / rate < 0.5). Returns {allowed, tokens left}.
 */
static const char TOKEN_SCRIPT[] =
    "local rate = tonumber(ARGV[1])\n"
    "local capacity = tonumber(ARGV[2])\n"
    "local now = tonumber(ARGV[3])\n"
    "local requested = tonumber(ARGV[4])\n"
    "local fill_time = capacity / rate\n"
    "local ttl = math.floor(fill_time * 2)\n"
    "if ttl < 1 then ttl = 1 end\n"
    "local last_tokens = tonumber(redis.call('GET', KEYS[1]))\n"
    "if last_tokens == nil then last_tokens = capacity end\n"
    "local last_refreshed = tonumber(redis.call('GET', KEYS[2]))\n"
    "if last_refreshed == nil then last_refreshed = 0 end\n"
    "local delta = math.max(0, now - last_refreshed)\n"
    "local filled_tokens = math.min(capacity, last_tokens + (delta * rate))\n"
    "local allowed = filled_tokens >= requested\n"
    "local new_tokens = filled_tokens\n"
    "if allowed then new_tokens = filled_tokens - requested end\n"
    "redis.call('SETEX', KEYS[1], ttl, new_tokens)\n"
    "redis.call('SETEX', KEYS[2], ttl, now)\n"
    "return {allowed and 1 or 0, math.floor(new_tokens)}\n";

const char *
gw_limit_period_script(void)
{
    return PERIOD_SCRIPT;
}

const char *
gw_limit_token_script(void)
{
    return TOKEN_SCRIPT;
}

/* ---- the local table ---- */

typedef struct entry_s {
    struct entry_s *chain;
    struct entry_s *lru_prev, *lru_next; /* most recent at the head */
    uint64_t hash;
    int64_t count;     /* period */
    uint64_t until_ms; /* period: window end */
    double tokens;     /* token */
    uint64_t last_ms;  /* token: last refill */
    size_t klen;
    char key[];
} entry_t;

struct gw_limiter_s {
    gw_limit_conf_t conf;
    char *prefix;
    gw_redis_t *redis;
    uv_loop_t *loop;
    gw_redis_script_t script;
    /* this worker's share, for the local limiter */
    int64_t quota_share, burst_share;
    double rate_share;
    entry_t **buckets;
    size_t nbuckets, nentries;
    entry_t lru;        /* sentinel */
    uint64_t logged_ms; /* last key-level error logged */
};

struct gw_limit_wait_s {
    gw_limiter_t *l;
    gw_redis_cmd_t *cmd;
    gw_limit_cb cb;
    void *arg;
    size_t klen;
    char key[];
};

static uint64_t
hash_key(const char *k, size_t n)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)k[i];
        h *= 1099511628211ULL;
    }
    return h;
}

static void
lru_unlink(entry_t *e)
{
    e->lru_prev->lru_next = e->lru_next;
    e->lru_next->lru_prev = e->lru_prev;
}

static void
lru_front(gw_limiter_t *l, entry_t *e)
{
    e->lru_next = l->lru.lru_next;
    e->lru_prev = &l->lru;
    l->lru.lru_next->lru_prev = e;
    l->lru.lru_next = e;
}

static void
entry_drop(gw_limiter_t *l, entry_t *e)
{
    entry_t **pp = &l->buckets[e->hash & (l->nbuckets - 1)];
    while (*pp != e)
        pp = &(*pp)->chain;
    *pp = e->chain;
    lru_unlink(e);
    l->nentries--;
    free(e);
}

/* Keeps chains short: doubles the table past two entries per bucket. */
static void
grow(gw_limiter_t *l)
{
    size_t n = l->nbuckets * 2;
    entry_t **b = calloc(n, sizeof(entry_t *));
    if (b == NULL)
        return; /* longer chains, still correct */
    for (size_t i = 0; i < l->nbuckets; i++) {
        entry_t *e = l->buckets[i];
        while (e) {
            entry_t *next = e->chain;
            e->chain = b[e->hash & (n - 1)];
            b[e->hash & (n - 1)] = e;
            e = next;
        }
    }
    free(l->buckets);
    l->buckets = b;
    l->nbuckets = n;
}

/* The entry for KEY, made fresh (zeroed) when new; NULL only without memory. */
static entry_t *
entry_get(gw_limiter_t *l, const char *key, size_t klen, int *fresh)
{
    uint64_t h = hash_key(key, klen);
    entry_t *e = l->buckets[h & (l->nbuckets - 1)];
    for (; e; e = e->chain) {
        if (e->hash == h && e->klen == klen && memcmp(e->key, key, klen) == 0) {
            lru_unlink(e);
            lru_front(l, e);
            *fresh = 0;
            return e;
        }
    }
    if (l->nentries >= GW_LIMIT_MAX_KEYS)
        entry_drop(l, l->lru.lru_prev);
    else if (l->nentries >= 2 * l->nbuckets)
        grow(l);
    e = calloc(1, sizeof(*e) + klen);
    if (e == NULL)
        return NULL;
    e->hash = h;
    e->klen = klen;
    memcpy(e->key, key, klen);
    e->chain = l->buckets[h & (l->nbuckets - 1)];
    l->buckets[h & (l->nbuckets - 1)] = e;
    lru_front(l, e);
    l->nentries++;
    *fresh = 1;
    return e;
}

/* Seconds to the end of the window when windows are aligned to the clock,
 * in the local time zone as go-zero does. */
static int64_t
aligned_expiry(int64_t period)
{
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    int64_t t = (int64_t)now + tm.tm_gmtoff;
    int64_t r = t % period;
    return period - (r < 0 ? r + period : r);
}

static void
period_result(gw_limiter_t *l, int64_t quota, int64_t count, int64_t ttl, gw_limit_result_t *res)
{
    res->code = count < quota ? 1 : count == quota ? 2 : 3;
    res->allowed = res->code != 3;
    res->limit = quota;
    res->remaining = quota - count > 0 ? quota - count : 0;
    res->reset = ttl >= 0 ? ttl : l->conf.period;
}

static void
token_result(double rate, int64_t burst, int allowed, double tokens, gw_limit_result_t *res)
{
    res->allowed = allowed;
    res->code = allowed ? 1 : 3;
    res->limit = burst;
    res->remaining = tokens > 0 ? (int64_t)floor(tokens) : 0;
    /* seconds until a full bucket; at least 1 when refused */
    double need = (double)burst - (tokens > 0 ? tokens : 0);
    int64_t reset = need > 0 ? (int64_t)ceil(need / rate) : 0;
    if (!allowed && reset < 1)
        reset = 1;
    res->reset = reset;
}

static void
take_local(gw_limiter_t *l, const char *key, size_t klen, gw_limit_result_t *res)
{
    uint64_t now = uv_now(l->loop);
    int fresh = 0;
    entry_t *e = entry_get(l, key, klen, &fresh);
    res->source = GW_LIMIT_SRC_LOCAL;
    if (l->conf.kind == GW_LIMIT_PERIOD) {
        if (e == NULL) { /* no memory: admit, but say nothing */
            period_result(l, l->quota_share, 1, l->conf.period, res);
            return;
        }
        if (fresh || now >= e->until_ms) {
            int64_t secs = l->conf.align ? aligned_expiry(l->conf.period) : l->conf.period;
            e->count = 0;
            e->until_ms = now + (uint64_t)secs * 1000;
        }
        e->count++;
        period_result(l, l->quota_share, e->count, (int64_t)((e->until_ms - now + 999) / 1000),
                      res);
        return;
    }
    if (e == NULL) {
        token_result(l->rate_share, l->burst_share, 1, (double)l->burst_share, res);
        return;
    }
    if (fresh) {
        e->tokens = (double)l->burst_share;
        e->last_ms = now;
    }
    double t = e->tokens + (double)(now - e->last_ms) / 1000.0 * l->rate_share;
    if (t > (double)l->burst_share)
        t = (double)l->burst_share;
    e->last_ms = now;
    int allowed = t >= 1.0;
    if (allowed)
        t -= 1.0;
    e->tokens = t;
    token_result(l->rate_share, l->burst_share, allowed, t, res);
}

/* Redis could not answer: on_redis_error decides. */
static void
take_fallback(gw_limiter_t *l, const char *key, size_t klen, gw_limit_result_t *res)
{
    switch (l->conf.on_redis_error) {
    case GW_LIMIT_ON_ERR_LOCAL:
        take_local(l, key, klen, res);
        return;
    case GW_LIMIT_ON_ERR_ALLOW:
    case GW_LIMIT_ON_ERR_DENY:
        memset(res, 0, sizeof(*res));
        res->allowed = l->conf.on_redis_error == GW_LIMIT_ON_ERR_ALLOW;
        res->code = res->allowed ? 1 : 3;
        res->limit = l->conf.kind == GW_LIMIT_PERIOD ? l->conf.quota : l->conf.burst;
        res->remaining = -1; /* unknown: no header */
        res->reset = res->allowed ? -1 : 1;
        res->source = GW_LIMIT_SRC_POLICY;
        return;
    }
}

/* ---- Redis ---- */

static int
reply_int(const redisReply *r, int64_t *v)
{
    if (r->type == REDIS_REPLY_INTEGER) {
        *v = r->integer;
        return 1;
    }
    return 0;
}

/* 1 when REPLY is the script's answer, with *RES filled. */
static int
parse_reply(gw_limiter_t *l, const redisReply *r, gw_limit_result_t *res)
{
    int64_t a, b, c = -1;
    /* exactly what our scripts return: anything else is not their answer */
    size_t want = l->conf.kind == GW_LIMIT_PERIOD ? 3 : 2;
    if (r->type != REDIS_REPLY_ARRAY || r->elements != want || !reply_int(r->element[0], &a) ||
        !reply_int(r->element[1], &b))
        return 0;
    res->source = GW_LIMIT_SRC_REDIS;
    if (l->conf.kind == GW_LIMIT_PERIOD) {
        if (!reply_int(r->element[2], &c))
            return 0;
        period_result(l, l->conf.quota, b, c, res);
        /* the script's code decides, as go-zero's caller does */
        res->code = a == 1 ? 1 : a == 2 ? 2 : 3;
        res->allowed = res->code != 3;
        return 1;
    }
    token_result(l->conf.rate, l->conf.burst, a == 1, (double)b, res);
    return 1;
}

/* Error replies that say Redis cannot serve at all, not that a key is odd. */
static int
server_error(const redisReply *r)
{
    static const char *const codes[] = {"LOADING",     "BUSY",       "READONLY", "MASTERDOWN",
                                        "OOM",         "NOAUTH",     "MISCONF",  "TRYAGAIN",
                                        "CLUSTERDOWN", "NOREPLICAS", "NOPERM",   NULL};
    return r->str == NULL || gw_rconn_error_is(r, codes);
}

/* Another program's data under a limiter key: worth a line, not a flood. */
static void
log_key_error(gw_limiter_t *l, const gw_limit_wait_t *w, const redisReply *reply)
{
    uint64_t now = uv_now(l->loop);
    if (l->conf.log == NULL || (l->logged_ms && now - l->logged_ms < 10000))
        return;
    l->logged_ms = now;
    gw_log(l->conf.log, GW_LOG_WARN,
           "%s limiter: Redis could not count key \"%.*s%.*s\" (%.*s); answered by on_redis_error",
           l->conf.kind == GW_LIMIT_PERIOD ? "limit-period" : "limit-token",
           (int)l->conf.prefix_len, l->prefix, (int)(w->klen > 200 ? 200 : w->klen), w->key,
           reply->type == REDIS_REPLY_ERROR ? (int)reply->len : 16,
           reply->type == REDIS_REPLY_ERROR ? reply->str : "unexpected reply");
}

static void
on_redis_reply(int err, const redisReply *reply, void *arg)
{
    gw_limit_wait_t *w = arg;
    gw_limiter_t *l = w->l;
    gw_limit_result_t res;
    memset(&res, 0, sizeof(res));
    if (err || !parse_reply(l, reply, &res)) {
        /* Redis unable to serve makes the client suspect; an error about
         * this key's value (another program's data) concerns this request
         * only */
        if (err == 0 && reply->type == REDIS_REPLY_ERROR && server_error(reply))
            gw_redis_suspect(l->redis, reply->str);
        else if (err == 0)
            log_key_error(l, w, reply);
        take_fallback(l, w->key, w->klen, &res);
    }
    gw_limit_cb cb = w->cb;
    void *cbarg = w->arg;
    free(w);
    cb(&res, cbarg);
}

/* Integers as decimal, a fractional rate with enough digits to round-trip. */
static void
fmt_num(char *buf, size_t n, double v, size_t *len)
{
    if (v == floor(v) && v >= 0 && v < 1e15) {
        *len = gw_fmt_u64(buf, (uint64_t)v);
        return;
    }
    *len = (size_t)snprintf(buf, n, "%.17g", v);
}

static gw_redis_cmd_t *
send_take(gw_limiter_t *l, gw_limit_wait_t *w)
{
    const char *argv[6];
    size_t lens[6];
    char a1[32], a2[32], a3[32];
    size_t plen = l->conf.prefix_len;
    /* key(s): PREFIX+KEY, or {PREFIX+KEY}.tokens and {..}.ts */
    char stackbuf[512];
    size_t need = 2 * (plen + w->klen + 10);
    char *kb = need <= sizeof(stackbuf) ? stackbuf : malloc(need);
    if (kb == NULL)
        return NULL;
    gw_redis_cmd_t *c;
    if (l->conf.kind == GW_LIMIT_PERIOD) {
        memcpy(kb, l->prefix, plen);
        memcpy(kb + plen, w->key, w->klen);
        argv[0] = kb;
        lens[0] = plen + w->klen;
        int64_t exp = l->conf.align ? aligned_expiry(l->conf.period) : l->conf.period;
        fmt_num(a1, sizeof(a1), (double)l->conf.quota, &lens[1]);
        fmt_num(a2, sizeof(a2), (double)exp, &lens[2]);
        argv[1] = a1;
        argv[2] = a2;
        c = gw_redis_eval(l->redis, &l->script, 1, 2, argv, lens, on_redis_reply, w);
    } else {
        size_t kl = plen + w->klen;
        char *k1 = kb, *k2 = kb + kl + 9;
        k1[0] = '{';
        memcpy(k1 + 1, l->prefix, plen);
        memcpy(k1 + 1 + plen, w->key, w->klen);
        memcpy(k1 + 1 + kl, "}.tokens", 8);
        k2[0] = '{';
        memcpy(k2 + 1, l->prefix, plen);
        memcpy(k2 + 1 + plen, w->key, w->klen);
        memcpy(k2 + 1 + kl, "}.ts", 4);
        argv[0] = k1;
        lens[0] = kl + 9;
        argv[1] = k2;
        lens[1] = kl + 5;
        fmt_num(a1, sizeof(a1), l->conf.rate, &lens[2]);
        fmt_num(a2, sizeof(a2), (double)l->conf.burst, &lens[3]);
        fmt_num(a3, sizeof(a3), (double)time(NULL), &lens[4]);
        argv[2] = a1;
        argv[3] = a2;
        argv[4] = a3;
        argv[5] = "1";
        lens[5] = 1;
        c = gw_redis_eval(l->redis, &l->script, 2, 4, argv, lens, on_redis_reply, w);
    }
    if (kb != stackbuf)
        free(kb);
    return c;
}

int
gw_limiter_take(gw_limiter_t *l, const char *key, size_t klen, gw_limit_result_t *res,
                gw_limit_cb cb, void *arg, gw_limit_wait_t **wait)
{
    memset(res, 0, sizeof(*res));
    *wait = NULL;
    if (l->conf.policy == GW_LIMIT_USE_LOCAL || l->redis == NULL) {
        take_local(l, key, klen, res);
        return GW_OK;
    }
    if (!gw_redis_ready(l->redis)) {
        take_fallback(l, key, klen, res);
        return GW_OK;
    }
    /* "{}.tokens" and "{}.ts" have no hash tag: two slots, which a
     * cluster refuses with CROSSSLOT for every request; count here */
    if (l->conf.kind == GW_LIMIT_TOKEN && l->conf.prefix_len + klen == 0 &&
        gw_redis_cluster(l->redis) != NULL) {
        take_local(l, key, klen, res);
        return GW_OK;
    }
    gw_limit_wait_t *w = malloc(sizeof(*w) + klen);
    if (w == NULL) {
        take_fallback(l, key, klen, res);
        return GW_OK;
    }
    w->l = l;
    w->cb = cb;
    w->arg = arg;
    w->klen = klen;
    memcpy(w->key, key, klen);
    w->cmd = send_take(l, w);
    if (w->cmd == NULL) {
        free(w);
        take_fallback(l, key, klen, res);
        return GW_OK;
    }
    *wait = w;
    return GW_AGAIN;
}

int64_t
gw_limiter_retry_after(const gw_limiter_t *l, const gw_limit_result_t *res)
{
    int64_t v = l->conf.kind == GW_LIMIT_TOKEN ? (int64_t)ceil(1.0 / l->conf.rate) : res->reset;
    return v < 1 ? 1 : v;
}

int
gw_limiter_uses_redis(const gw_limiter_t *l)
{
    return l->conf.policy == GW_LIMIT_USE_REDIS && l->redis != NULL;
}

void
gw_limit_wait_cancel(gw_limit_wait_t *w)
{
    if (w == NULL)
        return;
    gw_redis_cmd_cancel(w->cmd);
    free(w);
}

gw_limiter_t *
gw_limiter_new(const gw_limit_conf_t *conf, gw_redis_t *redis, int nworkers, uv_loop_t *loop)
{
    if (conf == NULL || loop == NULL || nworkers < 1)
        return NULL;
    if (conf->kind == GW_LIMIT_PERIOD ? (conf->quota < 1 || conf->period < 1)
                                      : (!(conf->rate > 0) || conf->burst < 1))
        return NULL;
    gw_limiter_t *l = calloc(1, sizeof(*l));
    if (l == NULL)
        return NULL;
    l->conf = *conf;
    l->prefix = malloc(conf->prefix_len + 1);
    l->nbuckets = 1024;
    l->buckets = calloc(l->nbuckets, sizeof(entry_t *));
    if (l->prefix == NULL || l->buckets == NULL) {
        free(l->prefix);
        free(l->buckets);
        free(l);
        return NULL;
    }
    if (conf->prefix_len)
        memcpy(l->prefix, conf->prefix, conf->prefix_len);
    l->prefix[conf->prefix_len] = '\0';
    l->conf.prefix = l->prefix;
    l->redis = redis;
    l->loop = loop;
    l->lru.lru_next = l->lru.lru_prev = &l->lru;
    gw_redis_script_init(&l->script, conf->kind == GW_LIMIT_PERIOD ? PERIOD_SCRIPT : TOKEN_SCRIPT);
    l->quota_share = conf->quota / nworkers > 0 ? conf->quota / nworkers : 1;
    l->burst_share = conf->burst / nworkers > 0 ? conf->burst / nworkers : 1;
    l->rate_share = conf->rate / nworkers;
    return l;
}

void
gw_limiter_free(gw_limiter_t *l)
{
    if (l == NULL)
        return;
    while (l->lru.lru_next != &l->lru) {
        entry_t *e = l->lru.lru_next;
        lru_unlink(e);
        free(e);
    }
    free(l->buckets);
    free(l->prefix);
    free(l);
}
