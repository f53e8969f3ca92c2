/* The master of a Sentinel-monitored Redis (see gw_sentinel.h). */
#include "gw_sentinel.h"

#include <arpa/inet.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gw_log.h"
#include "gw_resolver.h"

#define RETRY_MS 200           /* after a round where no Sentinel had a master */
#define ROLE_RETRY_MS 200      /* after ROLE said "not a master" or timed out */
#define ROLE_RETRY_MAX_MS 2000 /* ... doubling while the same address is given */
#define CHECK_MS 5000          /* ask again while all is well */
#define HINT_RETRY_MS 100      /* a Sentinel still names the master a switch left */
#define HINT_TRIES 30          /* ... at most this often (3 s) */
#define SUB_RETRY_MS 500       /* the pub/sub connection, after it failed */
#define MIN_QUERY_MS 250       /* a question to a Sentinel, at least */
#define MAX_REPLY_ADDR 255     /* a master's host, as a Sentinel may announce */

typedef struct {
    char *host;
    int port;
    gw_rconn_t *cn;
} sentinel_t;

typedef struct sub_s sub_t;

struct gw_sentinel_s {
    uv_loop_t *loop;
    gw_log_t *log;
    char *name;
    char *spass;
    char *mpass;
    gw_rconn_opts_t mopts;
    uint64_t query_ms;

    sentinel_t *s;
    size_t n;
    size_t *order; /* indexes into s, the last one that answered first */

    /* the round of questions in flight */
    gw_rconn_cmd_t *query;
    size_t qpos; /* position in order being asked */
    size_t qidx; /* ... and that Sentinel (order may change meanwhile) */
    char why[160];

    /* the master */
    gw_rconn_t *mcn;
    char mhost[MAX_REPLY_ADDR + 1];
    int mport;
    char maddr[MAX_REPLY_ADDR + 8];   /* "host:port" of mcn */
    char current[MAX_REPLY_ADDR + 8]; /* confirmed, "" when none */
    char last[MAX_REPLY_ADDR + 8];    /* the last one confirmed, kept */
    char notmaster[MAX_REPLY_ADDR + 8];
    gw_rconn_cmd_t *role;
    size_t gave;    /* the Sentinel that gave maddr */
    int role_fails; /* "not a master" answers in a row */
    int reconnect;  /* mcn waits to reconnect until the Sentinels answered */
    int confirmed;
    int told_up; /* the owner was told ready */
    int drop_master;

    /* a +switch-master for NAME said this address is the old master */
    char hint_old[MAX_REPLY_ADDR + 8];
    int hint_tries;

    uint64_t started_ms;
    uint64_t fail_since; /* 0: the last round found a master */
    int down_logged;

    uv_timer_t timer; /* the next round, or the deferred drop of mcn */
    sub_t *sub;
    uv_timer_t sub_timer;
    size_t sub_next;         /* the Sentinel the next pub/sub connection tries */
    gw_resolver_t *resolver; /* for Sentinels given by name; NULL if none */

    void (*on_event)(void *arg, gw_sentinel_event_t ev, const char *addr);
    void *event_arg;
    int closing;
    int nclosed;
};

static void round_start(gw_sentinel_t *sn);
static void sub_start(gw_sentinel_t *sn);
static void on_sub_timer(uv_timer_t *t);

static int
split_addr(const char *a, char *host, size_t cap, int *port)
{
    const char *colon = strrchr(a, ':');
    const char *h = a;
    size_t hlen = colon ? (size_t)(colon - a) : 0;
    if (hlen >= 2 && h[0] == '[' && h[hlen - 1] == ']') {
        h++;
        hlen -= 2;
    }
    if (colon == NULL || hlen == 0 || hlen >= cap)
        return -1;
    char *end;
    long p = strtol(colon + 1, &end, 10);
    if (*end != '\0' || p <= 0 || p > 65535)
        return -1;
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    *port = (int)p;
    return 0;
}

static void
fmt_addr(char *out, size_t cap, const char *host, int port)
{
    snprintf(out, cap, strchr(host, ':') ? "[%s]:%d" : "%s:%d", host, port);
}

static void
event(gw_sentinel_t *sn, gw_sentinel_event_t ev, const char *addr)
{
    if (sn->on_event)
        sn->on_event(sn->event_arg, ev, addr);
}

static void later(gw_sentinel_t *sn, uint64_t ms);

/* ---- the master connection ---- */

static void
tell_owner(gw_sentinel_t *sn, int up)
{
    if (sn->told_up == up || sn->closing)
        return;
    sn->told_up = up;
    if (sn->mopts.on_state)
        sn->mopts.on_state(sn->mopts.state_arg, up);
}

/* The master connection is no longer the confirmed master: a ROLE still
 * out is dropped and the owner stops using it. */
static void
unconfirm(gw_sentinel_t *sn)
{
    sn->confirmed = 0;
    sn->current[0] = '\0';
    if (sn->role) {
        gw_rconn_cmd_cancel(sn->role);
        sn->role = NULL;
    }
    tell_owner(sn, 0);
}

static void
master_close(gw_sentinel_t *sn)
{
    sn->drop_master = 0;
    if (sn->mcn == NULL)
        return;
    gw_rconn_t *cn = sn->mcn;
    sn->mcn = NULL;
    sn->reconnect = 0;
    unconfirm(sn);
    gw_rconn_close(cn);
}

/* From inside the connection's own callbacks: close it from the timer. */
static void
master_drop_later(gw_sentinel_t *sn, uint64_t ms)
{
    sn->drop_master = 1;
    sn->confirmed = 0;
    sn->current[0] = '\0';
    tell_owner(sn, 0);
    later(sn, ms);
}

static void
on_role(int err, const redisReply *reply, void *arg)
{
    gw_sentinel_t *sn = arg;
    sn->role = NULL;
    if (err == GW_RCONN_ECLOSED)
        return;
    const char *role = NULL;
    if (!err && reply->type == REDIS_REPLY_ARRAY && reply->elements >= 1 &&
        (reply->element[0]->type == REDIS_REPLY_STRING ||
         reply->element[0]->type == REDIS_REPLY_STATUS))
        role = reply->element[0]->str;
    if (role && strcmp(role, "master") == 0) {
        sn->confirmed = 1;
        sn->role_fails = 0;
        sn->notmaster[0] = '\0';
        snprintf(sn->current, sizeof(sn->current), "%s", sn->maddr);
        if (sn->last[0] && strcmp(sn->last, sn->current) != 0) {
            gw_log(sn->log, GW_LOG_WARN, "redis sentinel: master %s switched from %s to %s",
                   sn->name, sn->last, sn->current);
            event(sn, GW_SENTINEL_SWITCH, sn->current);
        } else if (strcmp(sn->last, sn->current) != 0) {
            gw_log(sn->log, GW_LOG_INFO, "redis sentinel: master %s is %s", sn->name, sn->current);
        }
        snprintf(sn->last, sizeof(sn->last), "%s", sn->current);
        event(sn, GW_SENTINEL_MASTER, sn->current);
        tell_owner(sn, 1);
        later(sn, CHECK_MS);
        return;
    }
    char why[160];
    if (err)
        snprintf(why, sizeof(why), "%s",
                 err == GW_RCONN_ETIMEDOUT ? "ROLE timed out" : "connection lost");
    else
        snprintf(why, sizeof(why), "role %.60s",
                 role                               ? role
                 : reply->type == REDIS_REPLY_ERROR ? reply->str
                                                    : "unreadable");
    if (strcmp(sn->notmaster, sn->maddr) != 0) {
        gw_log(sn->log, GW_LOG_WARN,
               "redis sentinel: %s, given for master %s, is not usable as a master (%s); asking "
               "the Sentinels again",
               sn->maddr, sn->name, why);
        snprintf(sn->notmaster, sizeof(sn->notmaster), "%s", sn->maddr);
    }
    event(sn, GW_SENTINEL_RESOLVE_ERROR, sn->maddr);
    /* a Sentinel that is stuck on an old view must not be the only one
     * asked: it goes to the back */
    for (size_t i = 0; i + 1 < sn->n; i++) {
        if (sn->order[i] == sn->gave) {
            memmove(sn->order + i, sn->order + i + 1, (sn->n - i - 1) * sizeof(*sn->order));
            sn->order[sn->n - 1] = sn->gave;
            break;
        }
    }
    if (err) {
        master_drop_later(sn, ROLE_RETRY_MS);
        return;
    }
    /* a server that answers but is not the master (yet): the connection
     * stays, and ROLE goes again on it if the Sentinels still name it */
    uint64_t ms = ROLE_RETRY_MS << (sn->role_fails < 4 ? sn->role_fails : 4);
    sn->role_fails++;
    later(sn, ms < ROLE_RETRY_MAX_MS ? ms : ROLE_RETRY_MAX_MS);
}

static void
send_role(gw_sentinel_t *sn)
{
    const char *v[1] = {"ROLE"};
    size_t l[1] = {4};
    gw_rconn_req_t req = {.argc = 1,
                          .argv = v,
                          .lens = l,
                          .deadline_ms = uv_now(sn->loop) + sn->query_ms,
                          .internal = 1};
    sn->role = gw_rconn_send(sn->mcn, &req, on_role, sn);
    if (sn->role == NULL)
        master_drop_later(sn, ROLE_RETRY_MS);
}

/* Every time the connection becomes ready (connected, or answering again
 * after a stall), ROLE decides whether it is used. */
static void
on_master_state(void *arg, int ready)
{
    gw_sentinel_t *sn = arg;
    if (sn->closing)
        return;
    if (!ready) {
        unconfirm(sn);
        return;
    }
    if (sn->role == NULL)
        send_role(sn);
}

/* The master connection would reconnect: ask the Sentinels first. The
 * same address again reuses it (its back-off and its log lines go on);
 * another one closes it. */
static void
on_master_reconnect(void *arg)
{
    gw_sentinel_t *sn = arg;
    sn->reconnect = 1;
    later(sn, 0);
}

static void
master_open(gw_sentinel_t *sn, const char *host, int port)
{
    char addr[sizeof(sn->maddr)];
    fmt_addr(addr, sizeof(addr), host, port);
    if (sn->mcn && strcmp(addr, sn->maddr) == 0 && !sn->drop_master) {
        if (sn->reconnect) {
            sn->reconnect = 0;
            gw_rconn_reconnect(sn->mcn);
        } else if (sn->confirmed) {
            later(sn, CHECK_MS);
        } else if (sn->role == NULL && gw_rconn_ready(sn->mcn)) {
            send_role(sn);
        }
        return; /* otherwise still connecting: its callbacks go on */
    }
    if (sn->mcn && strcmp(addr, sn->maddr) != 0)
        gw_log(sn->log, GW_LOG_WARN,
               "redis sentinel: master %s is now given as %s; closing the connection to %s",
               sn->name, addr, sn->maddr);
    master_close(sn);
    sn->role_fails = 0;
    snprintf(sn->mhost, sizeof(sn->mhost), "%s", host);
    sn->mport = port;
    snprintf(sn->maddr, sizeof(sn->maddr), "%s", addr);
    gw_rconn_opts_t o = sn->mopts;
    o.host = sn->mhost;
    o.port = port;
    o.password = sn->mpass;
    o.on_state = on_master_state;
    o.state_arg = sn;
    o.on_reconnect = on_master_reconnect;
    sn->mcn = gw_rconn_new(sn->loop, &o, sn->log);
    if (sn->mcn == NULL) {
        gw_log(sn->log, GW_LOG_ERROR, "redis sentinel: cannot start a connection to %s", addr);
        later(sn, RETRY_MS);
    }
}

/* ---- asking the Sentinels ---- */

static void
round_failed(gw_sentinel_t *sn)
{
    uint64_t now = uv_now(sn->loop);
    if (sn->fail_since == 0)
        sn->fail_since = now;
    /* while the connections to the Sentinels are still being made, an
     * empty round is no news */
    uint64_t grace = sn->mopts.connect_timeout_ms ? sn->mopts.connect_timeout_ms : 1000;
    if (now - sn->started_ms >= grace) {
        event(sn, GW_SENTINEL_RESOLVE_ERROR, NULL);
        if (!sn->down_logged) {
            sn->down_logged = 1;
            if (sn->confirmed)
                gw_log(sn->log, GW_LOG_ERROR,
                       "redis sentinel: no Sentinel gives the master %s (%zu listed; last: %s); "
                       "keeping %s while it answers",
                       sn->name, sn->n, sn->why[0] ? sn->why : "none reachable", sn->current);
            else
                gw_log(sn->log, GW_LOG_ERROR,
                       "redis sentinel: no Sentinel gives the master %s (%zu listed; last: %s); "
                       "limiters follow their on_redis_error policy until one does",
                       sn->name, sn->n, sn->why[0] ? sn->why : "none reachable");
        }
    }
    /* no Sentinel to ask: the master connection goes back to the address
     * given last (ROLE still decides) */
    if (sn->reconnect && sn->mcn) {
        sn->reconnect = 0;
        gw_rconn_reconnect(sn->mcn);
    }
    later(sn, sn->confirmed ? 1000 : RETRY_MS);
}

static void
round_ok(gw_sentinel_t *sn, size_t idx)
{
    size_t pos = 0;
    while (pos + 1 < sn->n && sn->order[pos] != idx)
        pos++;
    memmove(sn->order + 1, sn->order, pos * sizeof(*sn->order));
    sn->order[0] = idx;
    sn->fail_since = 0;
    if (sn->down_logged) {
        sn->down_logged = 0;
        gw_log(sn->log, GW_LOG_INFO, "redis sentinel: Sentinel %s:%d answers again for master %s",
               sn->s[idx].host, sn->s[idx].port, sn->name);
    }
}

static void ask_next(gw_sentinel_t *sn);

/* A well-formed answer is [host, port]; nil means the Sentinel does not
 * monitor NAME. */
static int
read_answer(const redisReply *r, char *host, size_t cap, int *port, char *why, size_t wcap)
{
    if (r->type == REDIS_REPLY_NIL) {
        snprintf(why, wcap, "does not know the master");
        return -1;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        snprintf(why, wcap, "%.100s", r->str);
        return -1;
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
        r->element[0]->type != REDIS_REPLY_STRING || r->element[1]->type != REDIS_REPLY_STRING ||
        r->element[0]->len == 0 || r->element[0]->len >= cap) {
        snprintf(why, wcap, "unreadable answer");
        return -1;
    }
    char *end;
    long p = strtol(r->element[1]->str, &end, 10);
    if (*end != '\0' || p <= 0 || p > 65535) {
        snprintf(why, wcap, "unreadable port");
        return -1;
    }
    memcpy(host, r->element[0]->str, r->element[0]->len);
    host[r->element[0]->len] = '\0';
    if (strchr(host, '/') || strchr(host, ' ')) {
        snprintf(why, wcap, "unreadable host");
        return -1;
    }
    *port = (int)p;
    return 0;
}

static void
on_answer(int err, const redisReply *reply, void *arg)
{
    gw_sentinel_t *sn = arg;
    sn->query = NULL;
    if (err == GW_RCONN_ECLOSED || sn->closing)
        return;
    sentinel_t *s = &sn->s[sn->qidx];
    char host[MAX_REPLY_ADDR + 1], why[120];
    int port;
    if (err) {
        snprintf(why, sizeof(why), "%s",
                 err == GW_RCONN_ETIMEDOUT ? "timed out" : "connection lost");
    } else if (read_answer(reply, host, sizeof(host), &port, why, sizeof(why)) == 0) {
        char addr[sizeof(sn->maddr)];
        fmt_addr(addr, sizeof(addr), host, port);
        round_ok(sn, sn->qidx);
        /* a Sentinel that has not heard of the switch yet names the old
         * master: ask again shortly rather than go back there */
        if (sn->hint_old[0] && strcmp(addr, sn->hint_old) == 0 && sn->hint_tries < HINT_TRIES) {
            sn->hint_tries++;
            later(sn, HINT_RETRY_MS);
            return;
        }
        sn->hint_old[0] = '\0';
        if (sn->mcn == NULL || strcmp(addr, sn->maddr) != 0 || sn->drop_master)
            sn->gave = sn->order[0];
        master_open(sn, host, port);
        return;
    }
    snprintf(sn->why, sizeof(sn->why), "%s:%d %s", s->host, s->port, why);
    sn->qpos++;
    ask_next(sn);
}

/* The next Sentinel in order that is connected; none left ends the round. */
static void
ask_next(gw_sentinel_t *sn)
{
    const char *v[3] = {"SENTINEL", "get-master-addr-by-name", sn->name};
    size_t l[3] = {8, 23, strlen(sn->name)};
    for (; sn->qpos < sn->n; sn->qpos++) {
        sentinel_t *s = &sn->s[sn->order[sn->qpos]];
        if (!gw_rconn_ready(s->cn))
            continue;
        gw_rconn_req_t req = {.argc = 3,
                              .argv = v,
                              .lens = l,
                              .deadline_ms = uv_now(sn->loop) + sn->query_ms,
                              .internal = 1};
        sn->query = gw_rconn_send(s->cn, &req, on_answer, sn);
        if (sn->query) {
            sn->qidx = sn->order[sn->qpos];
            return;
        }
    }
    round_failed(sn);
}

/* A Sentinel became reachable while there is no confirmed master: ask at
 * once. */
static void
on_sentinel_state(void *arg, int ready)
{
    gw_sentinel_t *sn = arg;
    if (sn->closing || sn->query)
        return;
    if (ready && !sn->confirmed) {
        later(sn, 0);
        return;
    }
    /* the last one gone: say so now rather than at the next check */
    for (size_t i = 0; i < sn->n; i++)
        if (gw_rconn_ready(sn->s[i].cn))
            return;
    if (!ready)
        later(sn, 0);
}

static void
round_start(gw_sentinel_t *sn)
{
    if (sn->query || sn->closing)
        return;
    sn->qpos = 0;
    sn->why[0] = '\0';
    ask_next(sn);
}

static void
on_timer(uv_timer_t *t)
{
    gw_sentinel_t *sn = t->data;
    if (sn->drop_master)
        master_close(sn);
    round_start(sn);
}

static void
later(gw_sentinel_t *sn, uint64_t ms)
{
    if (!sn->closing)
        uv_timer_start(&sn->timer, on_timer, ms, 0);
}

/* ---- +switch-master ----
 *
 * A connection of its own rather than a gw_rconn: a subscribed connection
 * gets messages nobody asked for, with no deadline, which the
 * request/answer bookkeeping of gw_rconn has no place for. It is plain
 * libuv TCP with hiredis's reply reader. */

struct sub_s {
    gw_sentinel_t *sn; /* NULL once the owner let go of it */
    uv_tcp_t tcp;
    uv_connect_t creq;
    gw_resolver_req_t *lookup;
    redisReader *reader;
    int open;   /* the handle was initialised */
    int acked;  /* SUBSCRIBE answered */
    int heard;  /* anything read since the last PING */
    int auth;   /* the first reply answers AUTH */
    size_t idx; /* the Sentinel */
};

static void
on_sub_closed(uv_handle_t *h)
{
    sub_t *sb = h->data;
    if (sb->reader)
        redisReaderFree(sb->reader);
    free(sb);
}

static void
sub_free(sub_t *sb)
{
    sb->sn = NULL;
    if (sb->lookup) {
        gw_resolver_cancel(sb->lookup);
        sb->lookup = NULL;
    }
    if (sb->open) {
        if (!uv_is_closing((uv_handle_t *)&sb->tcp))
            uv_close((uv_handle_t *)&sb->tcp, on_sub_closed);
    } else {
        if (sb->reader)
            redisReaderFree(sb->reader);
        free(sb);
    }
}

/* Drops the connection and tries the next Sentinel a little later. */
static void
sub_fail(gw_sentinel_t *sn, const char *why)
{
    sub_t *sb = sn->sub;
    if (sb == NULL)
        return;
    sentinel_t *s = &sn->s[sb->idx];
    if (sb->acked)
        gw_log(sn->log, GW_LOG_WARN,
               "redis sentinel: lost the +switch-master subscription at %s:%d (%s)", s->host,
               s->port, why);
    sn->sub = NULL;
    sn->sub_next = (sb->idx + 1) % sn->n;
    sub_free(sb);
    if (!sn->closing)
        uv_timer_start(&sn->sub_timer, on_sub_timer, SUB_RETRY_MS, 0);
}

/* "NAME old-ip old-port new-ip new-port" */
static void
on_switch_message(gw_sentinel_t *sn, const char *msg, size_t len)
{
    size_t nl = strlen(sn->name);
    if (len <= nl || memcmp(msg, sn->name, nl) != 0 || msg[nl] != ' ')
        return;
    char oldh[MAX_REPLY_ADDR + 1], newh[MAX_REPLY_ADDR + 1], body[600];
    int oldp, newp;
    snprintf(body, sizeof(body), "%.*s", (int)(len - nl - 1), msg + nl + 1);
    if (sscanf(body, "%255s %d %255s %d", oldh, &oldp, newh, &newp) != 4)
        return;
    gw_log(sn->log, GW_LOG_INFO, "redis sentinel: +switch-master %s from %s:%d to %s:%d", sn->name,
           oldh, oldp, newh, newp);
    fmt_addr(sn->hint_old, sizeof(sn->hint_old), oldh, oldp);
    sn->hint_tries = 0;
    /* nothing more goes to the master the Sentinels left */
    if (sn->mcn && strcmp(sn->maddr, sn->hint_old) == 0) {
        master_drop_later(sn, 0);
        return;
    }
    later(sn, 0);
}

static int
is_str(const redisReply *r, const char *s)
{
    return (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS) &&
           r->len == strlen(s) && memcmp(r->str, s, r->len) == 0;
}

static void
on_sub_reply(gw_sentinel_t *sn, sub_t *sb, const redisReply *r)
{
    sb->heard = 1;
    if (sb->auth) {
        sb->auth = 0;
        if (r->type == REDIS_REPLY_ERROR) {
            gw_log(sn->log, GW_LOG_WARN, "redis sentinel: %s:%d refused AUTH: %.100s",
                   sn->s[sb->idx].host, sn->s[sb->idx].port, r->str);
            sub_fail(sn, "AUTH refused");
        }
        return;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        sub_fail(sn, r->str);
        return;
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 2)
        return;
    if (is_str(r->element[0], "subscribe") && !sb->acked) {
        sb->acked = 1;
        /* messages sent before this one are lost: ask now */
        later(sn, 0);
        return;
    }
    if (r->elements == 3 && is_str(r->element[0], "message") &&
        is_str(r->element[1], "+switch-master") && r->element[2]->type == REDIS_REPLY_STRING)
        on_switch_message(sn, r->element[2]->str, r->element[2]->len);
}

static void
on_sub_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    (void)h;
    (void)hint;
    buf->base = malloc(4096);
    buf->len = buf->base ? 4096 : 0;
}

static void
on_sub_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    sub_t *sb = st->data;
    gw_sentinel_t *sn = sb->sn;
    if (sn == NULL || nread == 0) {
        free(buf->base);
        return;
    }
    if (nread < 0) {
        free(buf->base);
        sub_fail(sn, nread == UV_EOF ? "closed by the Sentinel" : uv_strerror((int)nread));
        return;
    }
    int rc = redisReaderFeed(sb->reader, buf->base, (size_t)nread);
    free(buf->base);
    while (rc == REDIS_OK && sn->sub == sb) {
        void *r = NULL;
        rc = redisReaderGetReply(sb->reader, &r);
        if (rc != REDIS_OK || r == NULL)
            break;
        on_sub_reply(sn, sb, r);
        freeReplyObject(r);
    }
    if (rc != REDIS_OK && sn->sub == sb)
        sub_fail(sn, "protocol error");
}

typedef struct {
    uv_write_t req;
    char data[];
} wbuf_t;

static void
on_sub_written(uv_write_t *req, int status)
{
    (void)status; /* a failed write shows as a failed read */
    free(GW_CONTAINER_OF(req, wbuf_t, req));
}

static int
sub_write(sub_t *sb, const char *s, size_t len)
{
    wbuf_t *w = malloc(sizeof(*w) + len);
    if (w == NULL)
        return -1;
    memcpy(w->data, s, len);
    uv_buf_t b = uv_buf_init(w->data, (unsigned)len);
    if (uv_write(&w->req, (uv_stream_t *)&sb->tcp, &b, 1, on_sub_written) != 0) {
        free(w);
        return -1;
    }
    return 0;
}

static void
on_sub_connect(uv_connect_t *req, int status)
{
    sub_t *sb = req->data;
    gw_sentinel_t *sn = sb->sn;
    if (sn == NULL)
        return;
    if (status != 0) {
        sub_fail(sn, uv_strerror(status));
        return;
    }
    char buf[600];
    int n = 0;
    if (sn->spass && sn->spass[0]) {
        size_t pl = strlen(sn->spass);
        if (pl > 400) {
            sub_fail(sn, "password too long");
            return;
        }
        n = snprintf(buf, sizeof(buf), "*2\r\n$4\r\nAUTH\r\n$%zu\r\n%s\r\n", pl, sn->spass);
        sb->auth = 1;
    }
    n += snprintf(buf + n, sizeof(buf) - (size_t)n,
                  "*2\r\n$9\r\nSUBSCRIBE\r\n$14\r\n+switch-master\r\n");
    if (sub_write(sb, buf, (size_t)n) != 0 ||
        uv_read_start((uv_stream_t *)&sb->tcp, on_sub_alloc, on_sub_read) != 0)
        sub_fail(sn, "cannot write");
}

static void
sub_connect(gw_sentinel_t *sn, sub_t *sb, const struct sockaddr *sa)
{
    if (uv_tcp_init(sn->loop, &sb->tcp) != 0) {
        sub_fail(sn, "cannot make a socket");
        return;
    }
    sb->open = 1;
    sb->tcp.data = sb;
    sb->creq.data = sb;
    uv_unref((uv_handle_t *)&sb->tcp);
    int rc = uv_tcp_connect(&sb->creq, &sb->tcp, sa, on_sub_connect);
    if (rc != 0)
        sub_fail(sn, uv_strerror(rc));
}

static void
on_sub_lookup(void *arg, const gw_resolver_result_t *res)
{
    sub_t *sb = arg;
    sb->lookup = NULL;
    gw_sentinel_t *sn = sb->sn;
    if (sn == NULL)
        return;
    if (res->status != GW_RES_OK || res->n == 0) {
        sub_fail(sn, "cannot resolve");
        return;
    }
    sub_connect(sn, sb, (const struct sockaddr *)&res->rrs[0].sa);
}

/* One subscribed connection, to the front Sentinel unless that one just
 * failed; a check on the periodic timer drops it when it goes silent. */
static void
sub_start(gw_sentinel_t *sn)
{
    if (sn->closing || sn->sub)
        return;
    sub_t *sb = calloc(1, sizeof(*sb));
    if (sb == NULL)
        return;
    sb->reader = redisReaderCreate();
    if (sb->reader == NULL) {
        free(sb);
        return;
    }
    sb->sn = sn;
    sb->idx = sn->sub_next < sn->n ? sn->sub_next : 0;
    sb->heard = 1;
    sn->sub = sb;
    sentinel_t *s = &sn->s[sb->idx];
    struct sockaddr_storage sa;
    socklen_t salen;
    if (gw_resolver_ip_sa(s->host, s->port, &sa, &salen) == 0) {
        sub_connect(sn, sb, (const struct sockaddr *)&sa);
        return;
    }
    sb->lookup =
        sn->resolver ? gw_resolver_lookup(sn->resolver, s->host, s->port, on_sub_lookup, sb) : NULL;
    if (sb->lookup == NULL)
        sub_fail(sn, "cannot resolve");
}

static void
on_sub_timer(uv_timer_t *t)
{
    gw_sentinel_t *sn = t->data;
    sub_t *sb = sn->sub;
    if (sb == NULL) {
        uv_timer_start(&sn->sub_timer, on_sub_timer, CHECK_MS, 0);
        sub_start(sn); /* on failure it sets the timer to a retry */
        return;
    }
    /* a Sentinel that went away without a word: PING, and no answer by
     * the next tick drops the connection */
    if (!sb->heard || !sb->acked) {
        sub_fail(sn, "no answer");
        return;
    }
    sb->heard = 0;
    static const char ping[] = "*1\r\n$4\r\nPING\r\n";
    if (sub_write(sb, ping, sizeof(ping) - 1) != 0)
        sub_fail(sn, "cannot write");
    else
        uv_timer_start(&sn->sub_timer, on_sub_timer, CHECK_MS, 0);
}

/* ---- life ---- */

gw_sentinel_t *
gw_sentinel_new(uv_loop_t *loop, const gw_sentinel_opts_t *o, gw_log_t *log)
{
    if (loop == NULL || o == NULL || o->naddrs == 0 || o->master_name == NULL ||
        o->master_name[0] == '\0' || o->master.timeout_ms == 0)
        return NULL;
    gw_sentinel_t *sn = calloc(1, sizeof(*sn));
    if (sn == NULL)
        return NULL;
    sn->loop = loop;
    sn->log = log;
    sn->mopts = o->master;
    sn->on_event = o->on_event;
    sn->event_arg = o->event_arg;
    sn->query_ms = o->master.timeout_ms > MIN_QUERY_MS ? o->master.timeout_ms : MIN_QUERY_MS;
    sn->name = strdup(o->master_name);
    sn->spass = o->sentinel_password ? strdup(o->sentinel_password) : NULL;
    sn->mpass = o->master.password ? strdup(o->master.password) : NULL;
    sn->s = calloc(o->naddrs, sizeof(*sn->s));
    sn->order = calloc(o->naddrs, sizeof(*sn->order));
    uv_timer_init(loop, &sn->timer);
    uv_timer_init(loop, &sn->sub_timer);
    sn->timer.data = sn->sub_timer.data = sn;
    /* a Redis that stays away must not keep a draining worker alive */
    uv_unref((uv_handle_t *)&sn->timer);
    uv_unref((uv_handle_t *)&sn->sub_timer);
    int bad = sn->name == NULL || (o->sentinel_password && sn->spass == NULL) ||
              (o->master.password && sn->mpass == NULL) || sn->s == NULL || sn->order == NULL;
    int named = 0;
    for (size_t i = 0; !bad && i < o->naddrs; i++) {
        char host[256];
        int port;
        if (split_addr(o->addrs[i], host, sizeof(host), &port) != 0) {
            gw_log(log, GW_LOG_ERROR, "redis sentinel: bad address \"%.100s\"", o->addrs[i]);
            bad = 1;
            break;
        }
        named |= !gw_resolver_is_ip(host);
        sn->s[i].host = strdup(host);
        sn->s[i].port = port;
        sn->order[i] = i;
        sn->n = i + 1;
        gw_rconn_opts_t so = {.host = host,
                              .port = port,
                              .password = sn->spass,
                              .timeout_ms = sn->query_ms,
                              .connect_timeout_ms = o->master.connect_timeout_ms,
                              .on_state = on_sentinel_state,
                              .state_arg = sn};
        sn->s[i].cn = sn->s[i].host ? gw_rconn_new(loop, &so, log) : NULL;
        bad = sn->s[i].cn == NULL;
    }
    if (!bad && named) {
        char err[128];
        gw_resolver_opts_t ro = {
            .timeout_ms = o->master.connect_timeout_ms ? o->master.connect_timeout_ms : 1000,
            .unref = 1};
        sn->resolver = gw_resolver_new(loop, &ro, err, sizeof(err));
        if (sn->resolver == NULL)
            gw_log(log, GW_LOG_WARN, "redis sentinel: %s; no +switch-master subscription", err);
    }
    if (bad) {
        gw_sentinel_close(sn);
        return NULL;
    }
    sn->started_ms = uv_now(loop);
    /* the connections to the Sentinels are being made: the first round
     * goes once one could have answered */
    later(sn, 20);
    uv_timer_start(&sn->sub_timer, on_sub_timer, CHECK_MS, 0);
    sub_start(sn);
    return sn;
}

static void
on_closed(uv_handle_t *h)
{
    gw_sentinel_t *sn = h->data;
    if (++sn->nclosed < 2)
        return;
    for (size_t i = 0; i < sn->n; i++)
        free(sn->s[i].host);
    free(sn->s);
    free(sn->order);
    free(sn->name);
    free(sn->spass);
    free(sn->mpass);
    free(sn);
}

void
gw_sentinel_close(gw_sentinel_t *sn)
{
    if (sn == NULL || sn->closing)
        return;
    if (sn->query) {
        gw_rconn_cmd_cancel(sn->query);
        sn->query = NULL;
    }
    sn->closing = 1;
    master_close(sn);
    for (size_t i = 0; i < sn->n; i++) {
        gw_rconn_close(sn->s[i].cn);
        sn->s[i].cn = NULL;
    }
    if (sn->sub) {
        sub_free(sn->sub);
        sn->sub = NULL;
    }
    gw_resolver_free(sn->resolver);
    sn->resolver = NULL;
    uv_close((uv_handle_t *)&sn->timer, on_closed);
    uv_close((uv_handle_t *)&sn->sub_timer, on_closed);
}

gw_rconn_t *
gw_sentinel_master(const gw_sentinel_t *sn)
{
    return sn && sn->confirmed && !sn->drop_master ? sn->mcn : NULL;
}

const char *
gw_sentinel_master_addr(const gw_sentinel_t *sn)
{
    return sn ? sn->current : "";
}
