/* One connection to one Redis address (see gw_rconn.h). */
#include "gw_rconn.h"

#include <arpa/inet.h>
#include <hiredis/async.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

#include "gw_log.h"
#include "gw_resolver.h"

#define MAX_PENDING 65536
#define PROBE_MS 100
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 500

typedef enum { ST_DOWN = 0, ST_CONNECTING, ST_HANDSHAKE, ST_READY, ST_SUSPECT } state_t;

struct gw_rconn_cmd_s {
    gw_rconn_t *cn;
    gw_link_t link; /* in cn->waiting until answered or cancelled */
    uint64_t deadline_ms;
    gw_rconn_cb cb;
    void *arg;
    unsigned answered : 1;
    unsigned cancelled : 1;
    unsigned retried : 1; /* NOSCRIPT already turned it into EVAL */
    unsigned asking : 1;  /* ASKING goes before it, and before its EVAL retry */
    unsigned full : 1;    /* its deadline is a whole timeout_ms: missing it says the node is slow */
    unsigned owner : 1;   /* sent by the owner (not AUTH or a probe): on_answer hears of it */
    uint64_t sent_ns;     /* uv_hrtime() when sent: on_answer and the latency figures */
    const gw_rconn_script_t *script;
    int nargs;   /* scripts: the arguments after the script or its SHA */
    size_t tlen; /* ... and their RESP encoding, kept for an EVAL retry */
    char tail[];
};

struct gw_rconn_s {
    uv_loop_t *loop;
    gw_log_t *log;
    char *host;
    int port;
    char *password;
    int db;
    uint64_t timeout_ms, connect_timeout_ms;

    /* a host name is resolved on the loop before each connect; the
     * connect goes to one of its addresses, the next one after a failure */
    gw_resolver_t *resolver; /* NULL: host is an IP literal */
    gw_resolver_req_t *lookup;
    unsigned attempt;

    redisAsyncContext *ac;
    state_t state;
    uv_timer_t state_timer;    /* connect timeout, back-off, probes */
    uv_timer_t deadline_timer; /* the earliest command deadline */
    gw_link_t waiting;         /* unanswered commands, by deadline */
    size_t npending;           /* commands hiredis still holds */
    uint64_t backoff_ms, backoff_max_ms;
    uint64_t last_reply_ms;
    uint64_t armed_ms; /* deadline the timer is set for, 0: stopped */
    int probing;       /* a probe PING is out */
    int drop;          /* drop the connection from the next timer tick */
    int closing;
    int nclosed;
    void (*on_state)(void *arg, int ready);
    void *state_arg;
    void (*on_answer)(void *arg, int err, int error_reply, uint64_t ns);
    void *answer_arg;
    void (*on_reconnect)(void *arg);
    gw_rconn_stats_t stats;
    char last_err[128];
};

static void schedule(gw_rconn_t *cn, uint64_t ms);
static void on_state_timer(uv_timer_t *t);

void
gw_rconn_script_init(gw_rconn_script_t *s, const char *text)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    s->text = text;
    EVP_Digest(text, strlen(text), md, &n, EVP_sha1(), NULL);
    for (unsigned i = 0; i < n && i < 20; i++) {
        static const char hex[] = "0123456789abcdef";
        s->sha[2 * i] = hex[md[i] >> 4];
        s->sha[2 * i + 1] = hex[md[i] & 15];
    }
    s->sha[40] = '\0';
}

/* One log line per change of what users see (ready or not). */
static void
set_state(gw_rconn_t *cn, state_t s, const char *why)
{
    state_t old = cn->state;
    cn->state = s;
    if (cn->closing)
        return;
    int was_up = old == ST_READY, up = s == ST_READY;
    if (up != was_up && cn->on_state)
        cn->on_state(cn->state_arg, up);
    if (up && !was_up)
        gw_log(cn->log, GW_LOG_INFO, "redis %s:%d: %s", cn->host, cn->port,
               old == ST_SUSPECT ? "answering again" : "connected");
    else if (was_up && !up)
        gw_log(cn->log, GW_LOG_WARN,
               "redis %s:%d: unavailable (%s); limiters follow their on_redis_error policy",
               cn->host, cn->port, why ? why : "error");
    else if ((old == ST_CONNECTING || old == ST_HANDSHAKE) && s == ST_DOWN && why &&
             strncmp(cn->last_err, why, sizeof(cn->last_err) - 1) != 0)
        gw_log(cn->log, GW_LOG_WARN, "redis %s:%d: cannot connect (%s)", cn->host, cn->port, why);
    if (why)
        snprintf(cn->last_err, sizeof(cn->last_err), "%s", why);
}

/* ---- commands ---- */

static void on_deadline(uv_timer_t *t);

/* One timer for every command: it fires at the earliest deadline. */
static void
arm_deadline(gw_rconn_t *cn)
{
    if (gw_list_empty(&cn->waiting)) {
        if (cn->armed_ms) {
            uv_timer_stop(&cn->deadline_timer);
            cn->armed_ms = 0;
        }
        return;
    }
    gw_rconn_cmd_t *c = GW_CONTAINER_OF(cn->waiting.next, gw_rconn_cmd_t, link);
    if (cn->armed_ms == c->deadline_ms)
        return;
    uint64_t now = uv_now(cn->loop);
    cn->armed_ms = c->deadline_ms;
    uv_timer_start(&cn->deadline_timer, on_deadline,
                   c->deadline_ms > now ? c->deadline_ms - now : 0, 0);
}

static void
answer(gw_rconn_cmd_t *c, int err, const redisReply *reply)
{
    if (c->answered)
        return;
    c->answered = 1;
    gw_list_remove(&c->link);
    if (c->owner && c->cn->on_answer && err != GW_RCONN_ECLOSED)
        c->cn->on_answer(c->cn->answer_arg, err, reply && reply->type == REDIS_REPLY_ERROR,
                         uv_hrtime() - c->sent_ns);
    if (!c->cancelled)
        c->cb(err, reply, c->arg);
}

static void
cmd_free(gw_rconn_cmd_t *c)
{
    c->cn->npending--;
    free(c);
}

static int is_noscript(const redisReply *r);
static int resend_as_eval(gw_rconn_cmd_t *c);

/* hiredis calls this once per command: with the reply, or with NULL when
 * the connection goes away first. */
static void
on_reply(redisAsyncContext *ac, void *r, void *priv)
{
    (void)ac;
    gw_rconn_cmd_t *c = priv;
    gw_rconn_t *cn = c->cn;
    redisReply *reply = r;
    if (reply) {
        cn->last_reply_ms = uv_now(cn->loop);
        if (c->script && !c->retried && !c->answered && is_noscript(reply)) {
            cn->stats.noscript++;
            if (resend_as_eval(c) == 0)
                return; /* hiredis calls us again for the EVAL */
        }
        if (!c->answered && c->cb != NULL) {
            cn->stats.replies++;
            cn->stats.latency_ns += uv_hrtime() - c->sent_ns;
        }
        answer(c, 0, reply);
    } else {
        answer(c, cn->closing ? GW_RCONN_ECLOSED : GW_RCONN_ECONN, NULL);
    }
    cmd_free(c);
    arm_deadline(cn);
}

/* RESP encoding, written by hand: hiredis's printf-style formatting
 * costs more than the rest of a limiter call. */
static size_t
put_head(char *p, char c, uint64_t v)
{
    p[0] = c;
    size_t n = 1 + gw_fmt_u64(p + 1, v);
    p[n++] = '\r';
    p[n++] = '\n';
    return n;
}

static size_t
put_bulk(char *p, const char *s, size_t len)
{
    size_t n = put_head(p, '$', len);
    memcpy(p + n, s, len);
    n += len;
    p[n++] = '\r';
    p[n++] = '\n';
    return n;
}

static size_t
bulk_size(size_t len)
{
    return len + 26;
}

static gw_rconn_cmd_t *
cmd_new(gw_rconn_t *cn, size_t tail_cap, gw_rconn_cb cb, void *arg, uint64_t deadline_ms)
{
    gw_rconn_cmd_t *c = malloc(sizeof(gw_rconn_cmd_t) + tail_cap);
    if (c == NULL)
        return NULL;
    memset(c, 0, sizeof(*c));
    c->cn = cn;
    c->cb = cb;
    c->arg = arg;
    c->deadline_ms = deadline_ms;
    c->full = deadline_ms >= uv_now(cn->loop) + cn->timeout_ms;
    c->sent_ns = uv_hrtime();
    /* deadlines mostly arrive in order: insert from the tail */
    gw_link_t *at = cn->waiting.prev;
    while (at != &cn->waiting &&
           GW_CONTAINER_OF(at, gw_rconn_cmd_t, link)->deadline_ms > c->deadline_ms)
        at = at->prev;
    c->link.prev = at;
    c->link.next = at->next;
    at->next->prev = &c->link;
    at->next = &c->link;
    return c;
}

/* Hands the encoded command to hiredis; on failure C is unlinked and freed. */
static int
submit(gw_rconn_t *cn, gw_rconn_cmd_t *c, const char *cmd, size_t len)
{
    if (cn->ac == NULL || redisAsyncFormattedCommand(cn->ac, on_reply, c, cmd, len) != REDIS_OK) {
        gw_list_remove(&c->link);
        free(c);
        return -1;
    }
    cn->npending++;
    arm_deadline(cn);
    return 0;
}

/* The whole command ARGV[0..ARGC), for the handshake, probes and owners. */
static gw_rconn_cmd_t *
send_cmd(gw_rconn_t *cn, int argc, const char **argv, const size_t *lens, gw_rconn_cb cb, void *arg,
         uint64_t deadline_ms)
{
    if (cn->ac == NULL || cn->npending >= MAX_PENDING || argc < 1)
        return NULL;
    size_t need = 24;
    for (int i = 0; i < argc; i++)
        need += bulk_size(lens[i]);
    char stackbuf[1024];
    char *buf = need <= sizeof(stackbuf) ? stackbuf : malloc(need);
    if (buf == NULL)
        return NULL;
    size_t n = put_head(buf, '*', (uint64_t)argc);
    for (int i = 0; i < argc; i++)
        n += put_bulk(buf + n, argv[i], lens[i]);
    gw_rconn_cmd_t *c = cmd_new(cn, 0, cb, arg, deadline_ms);
    if (c && submit(cn, c, buf, n) != 0)
        c = NULL;
    if (buf != stackbuf)
        free(buf);
    return c;
}

/* ASKING with no callback: hiredis drops its answer. It goes on the same
 * connection just before the command it is for, which is all Redis asks. */
static int
send_asking(gw_rconn_t *cn)
{
    static const char asking[] = "*1\r\n$6\r\nASKING\r\n";
    return redisAsyncFormattedCommand(cn->ac, NULL, NULL, asking, sizeof(asking) - 1) == REDIS_OK
               ? 0
               : -1;
}

/* "EVALSHA sha" or "EVAL text", then the kept tail: nkeys keys... args... */
static int
submit_script(gw_rconn_t *cn, gw_rconn_cmd_t *c, int by_sha)
{
    const gw_rconn_script_t *s = c->script;
    size_t tlen = strlen(s->text);
    size_t need = 24 + bulk_size(7) + bulk_size(by_sha ? 40 : tlen) + c->tlen;
    char stackbuf[2048];
    char *buf = need <= sizeof(stackbuf) ? stackbuf : malloc(need);
    if (buf == NULL)
        return -1;
    size_t n = put_head(buf, '*', (uint64_t)(2 + c->nargs));
    if (by_sha) {
        n += put_bulk(buf + n, "EVALSHA", 7);
        n += put_bulk(buf + n, s->sha, 40);
    } else {
        n += put_bulk(buf + n, "EVAL", 4);
        n += put_bulk(buf + n, s->text, tlen);
    }
    memcpy(buf + n, c->tail, c->tlen);
    n += c->tlen;
    int rc = -1;
    if (!c->asking || send_asking(cn) == 0)
        rc = redisAsyncFormattedCommand(cn->ac, on_reply, c, buf, n) == REDIS_OK ? 0 : -1;
    if (buf != stackbuf)
        free(buf);
    return rc;
}

/* EVALSHA with REQ's keys then its arguments, the tail kept for EVAL. */
static gw_rconn_cmd_t *
send_script(gw_rconn_t *cn, const gw_rconn_req_t *req, gw_rconn_cb cb, void *arg,
            uint64_t deadline_ms)
{
    size_t cap = bulk_size(12);
    for (int i = 0; i < req->argc; i++)
        cap += bulk_size(req->lens[i]);
    gw_rconn_cmd_t *c = cmd_new(cn, cap, cb, arg, deadline_ms);
    if (c == NULL)
        return NULL;
    c->script = req->script;
    c->asking = req->asking != 0;
    c->nargs = 1 + req->argc;
    char nk[24];
    size_t nkl = gw_fmt_u64(nk, (uint64_t)req->nkeys);
    size_t n = put_bulk(c->tail, nk, nkl);
    for (int i = 0; i < req->argc; i++)
        n += put_bulk(c->tail + n, req->argv[i], req->lens[i]);
    c->tlen = n;
    if (submit_script(cn, c, 1) != 0) {
        gw_list_remove(&c->link);
        free(c);
        return NULL;
    }
    cn->npending++;
    arm_deadline(cn);
    return c;
}

gw_rconn_cmd_t *
gw_rconn_send(gw_rconn_t *cn, const gw_rconn_req_t *req, gw_rconn_cb cb, void *arg)
{
    if (cn == NULL || req == NULL || cb == NULL || cn->state != ST_READY || cn->ac == NULL ||
        cn->npending >= MAX_PENDING)
        return NULL;
    if (req->script ? req->nkeys < 0 || req->nkeys > req->argc || req->argc < 0 : req->argc < 1)
        return NULL;
    uint64_t deadline = req->deadline_ms ? req->deadline_ms : uv_now(cn->loop) + cn->timeout_ms;
    gw_rconn_cmd_t *c;
    if (req->script) {
        c = send_script(cn, req, cb, arg, deadline);
    } else {
        if (req->asking && send_asking(cn) != 0)
            return NULL;
        c = send_cmd(cn, req->argc, req->argv, req->lens, cb, arg, deadline);
    }
    if (c != NULL && req->partial)
        c->full = 0;
    if (c != NULL)
        c->owner = !req->internal;
    return c;
}

size_t
gw_rconn_pending(const gw_rconn_t *cn)
{
    return cn ? cn->npending : 0;
}

static int
is_noscript(const redisReply *r)
{
    return r->type == REDIS_REPLY_ERROR && r->len >= 8 && memcmp(r->str, "NOSCRIPT", 8) == 0;
}

/* Inside on_reply: hiredis drops its record of C after we return, and a
 * new command for the same C is queued. */
static int
resend_as_eval(gw_rconn_cmd_t *c)
{
    gw_rconn_t *cn = c->cn;
    c->retried = 1;
    if (cn->ac == NULL)
        return -1;
    return submit_script(cn, c, 0);
}

void
gw_rconn_cmd_cancel(gw_rconn_cmd_t *c)
{
    if (c == NULL || c->answered)
        return;
    c->cancelled = 1;
    c->answered = 1;
    gw_list_remove(&c->link);
}

static void
on_deadline(uv_timer_t *t)
{
    gw_rconn_t *cn = t->data;
    uint64_t now = uv_now(cn->loop);
    int timed_out = 0;
    cn->armed_ms = 0;
    while (!gw_list_empty(&cn->waiting)) {
        gw_rconn_cmd_t *c = GW_CONTAINER_OF(cn->waiting.next, gw_rconn_cmd_t, link);
        if (c->deadline_ms > now)
            break;
        /* a command given what was left of a longer budget (a cluster
         * redirect) says nothing about this node when it runs out */
        timed_out |= c->full;
        cn->stats.timeouts++;
        answer(c, GW_RCONN_ETIMEDOUT, NULL);
    }
    if (timed_out && cn->state == ST_READY)
        gw_rconn_suspect(cn, "timeout");
    arm_deadline(cn);
}

/* ---- hiredis on the loop ----
 *
 * hiredis's own libuv adapter ignores a poll that reports an error, which
 * is how libuv reports a refused connect: the connect callback would only
 * come at our connect timeout. This glue hands such a poll to hiredis as
 * writable, and hiredis's connect check then sees the socket's error. */

typedef struct {
    redisAsyncContext *ac;
    uv_poll_t poll;
    int events;
} glue_t;

static void
on_poll(uv_poll_t *h, int status, int events)
{
    glue_t *g = h->data;
    if (g->ac == NULL)
        return;
    if (status < 0)
        events = g->events & (UV_READABLE | UV_WRITABLE);
    if (g->ac && (events & UV_READABLE))
        redisAsyncHandleRead(g->ac);
    if (g->ac && (events & UV_WRITABLE))
        redisAsyncHandleWrite(g->ac);
}

static void
glue_update(glue_t *g, int events)
{
    g->events = events;
    if (events)
        uv_poll_start(&g->poll, events, on_poll);
    else
        uv_poll_stop(&g->poll);
}

static void
glue_add_read(void *p)
{
    glue_t *g = p;
    glue_update(g, g->events | UV_READABLE);
}

static void
glue_del_read(void *p)
{
    glue_t *g = p;
    glue_update(g, g->events & ~UV_READABLE);
}

static void
glue_add_write(void *p)
{
    glue_t *g = p;
    glue_update(g, g->events | UV_WRITABLE);
}

static void
glue_del_write(void *p)
{
    glue_t *g = p;
    glue_update(g, g->events & ~UV_WRITABLE);
}

static void
on_glue_closed(uv_handle_t *h)
{
    free(h->data);
}

static void
glue_cleanup(void *p)
{
    glue_t *g = p;
    g->ac = NULL; /* hiredis frees the context after this */
    uv_close((uv_handle_t *)&g->poll, on_glue_closed);
}

static int
glue_attach(redisAsyncContext *ac, uv_loop_t *loop)
{
    glue_t *g = calloc(1, sizeof(*g));
    if (g == NULL)
        return REDIS_ERR;
    if (uv_poll_init(loop, &g->poll, ac->c.fd) != 0) {
        free(g);
        return REDIS_ERR;
    }
    g->ac = ac;
    g->poll.data = g;
    ac->ev.data = g;
    ac->ev.addRead = glue_add_read;
    ac->ev.delRead = glue_del_read;
    ac->ev.addWrite = glue_add_write;
    ac->ev.delWrite = glue_del_write;
    ac->ev.cleanup = glue_cleanup;
    return REDIS_OK;
}

/* ---- connection ---- */

static void on_handshake(int err, const redisReply *reply, void *arg);

static void
on_connect(const redisAsyncContext *ac, int status)
{
    gw_rconn_t *cn = ac->data;
    if (cn == NULL)
        return;
    if (status != REDIS_OK) {
        /* hiredis frees the context after this callback */
        cn->ac = NULL;
        set_state(cn, ST_DOWN, ac->errstr[0] ? ac->errstr : "connect failed");
        schedule(cn, cn->backoff_ms);
        return;
    }
    cn->state = ST_HANDSHAKE;
    const char *v[2];
    size_t l[2];
    if (cn->password && cn->password[0]) {
        v[0] = "AUTH";
        l[0] = 4;
        v[1] = cn->password;
        l[1] = strlen(cn->password);
        send_cmd(cn, 2, v, l, on_handshake, cn, uv_now(cn->loop) + cn->connect_timeout_ms);
    }
    if (cn->db) {
        char db[16];
        v[0] = "SELECT";
        l[0] = 6;
        l[1] = (size_t)snprintf(db, sizeof(db), "%d", cn->db);
        v[1] = db;
        send_cmd(cn, 2, v, l, on_handshake, cn, uv_now(cn->loop) + cn->connect_timeout_ms);
    }
    v[0] = "PING";
    l[0] = 4;
    send_cmd(cn, 1, v, l, on_handshake, (char *)cn + 1, uv_now(cn->loop) + cn->connect_timeout_ms);
    schedule(cn, cn->connect_timeout_ms);
}

static void
on_disconnect(const redisAsyncContext *ac, int status)
{
    (void)status;
    gw_rconn_t *cn = ac->data;
    if (cn == NULL)
        return;
    cn->ac = NULL;
    cn->probing = 0;
    if (cn->closing)
        return;
    if (cn->state != ST_DOWN)
        set_state(cn, ST_DOWN, ac->errstr[0] ? ac->errstr : "connection closed");
    schedule(cn, cn->backoff_ms);
}

/* AUTH, SELECT and PING after connecting; ARG is cn, or cn + 1 for the
 * final PING (its answer makes the connection ready). */
static void
on_handshake(int err, const redisReply *reply, void *arg)
{
    int final = ((uintptr_t)arg & 1) != 0;
    gw_rconn_t *cn = (gw_rconn_t *)((uintptr_t)arg & ~(uintptr_t)1);
    if (cn->state != ST_HANDSHAKE)
        return;
    char why[128];
    if (err || reply->type == REDIS_REPLY_ERROR) {
        if (err == GW_RCONN_ECLOSED || err == GW_RCONN_ECONN)
            return; /* on_disconnect handles it */
        snprintf(why, sizeof(why), "%s",
                 err ? "handshake timed out" : (reply->str ? reply->str : "error"));
        set_state(cn, ST_DOWN, why);
        cn->drop = 1;
        schedule(cn, 0);
        return;
    }
    if (final) {
        cn->backoff_ms = BACKOFF_MIN_MS;
        cn->attempt = 0;
        uv_timer_stop(&cn->state_timer);
        set_state(cn, ST_READY, NULL);
    }
}

static void
connect_ip(gw_rconn_t *cn, const char *ip)
{
    redisAsyncContext *ac = redisAsyncConnect(ip, cn->port);
    if (ac == NULL || ac->err) {
        set_state(cn, ST_DOWN, ac && ac->errstr[0] ? ac->errstr : "cannot connect");
        if (ac)
            redisAsyncFree(ac);
        schedule(cn, cn->backoff_ms);
        return;
    }
    ac->data = cn;
    if (glue_attach(ac, cn->loop) != REDIS_OK) {
        redisAsyncFree(ac);
        set_state(cn, ST_DOWN, "cannot attach to the loop");
        schedule(cn, cn->backoff_ms);
        return;
    }
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    cn->ac = ac;
    cn->state = ST_CONNECTING;
    schedule(cn, cn->connect_timeout_ms);
}

static void
on_lookup(void *arg, const gw_resolver_result_t *res)
{
    gw_rconn_t *cn = arg;
    char why[300], ip[INET6_ADDRSTRLEN];
    cn->lookup = NULL;
    if (res->status != GW_RES_OK || res->n == 0) {
        snprintf(why, sizeof(why), "cannot resolve %s: %s", cn->host,
                 res->status < 0 ? res->why : "no such host");
        set_state(cn, ST_DOWN, why);
        schedule(cn, cn->backoff_ms);
        return;
    }
    const gw_resolver_rr_t *rr = &res->rrs[(cn->attempt - 1) % res->n];
    const void *a = rr->sa.ss_family == AF_INET
                        ? (const void *)&((const struct sockaddr_in *)&rr->sa)->sin_addr
                        : (const void *)&((const struct sockaddr_in6 *)&rr->sa)->sin6_addr;
    inet_ntop(rr->sa.ss_family, a, ip, sizeof(ip));
    connect_ip(cn, ip);
}

/* A name goes through the resolver first: hiredis would resolve it with
 * getaddrinfo, which blocks the loop. */
static void
connect_now(gw_rconn_t *cn)
{
    if (cn->resolver == NULL) {
        connect_ip(cn, cn->host);
        return;
    }
    cn->attempt++;
    cn->state = ST_CONNECTING;
    cn->lookup = gw_resolver_lookup(cn->resolver, cn->host, cn->port, on_lookup, cn);
    if (cn->lookup == NULL) {
        set_state(cn, ST_DOWN, "cannot resolve: out of memory");
        schedule(cn, cn->backoff_ms);
        return;
    }
    schedule(cn, cn->connect_timeout_ms);
}

static void
drop_connection(gw_rconn_t *cn)
{
    cn->drop = 0;
    if (cn->ac == NULL)
        return;
    redisAsyncContext *ac = cn->ac;
    /* a connection never made calls no disconnect callback: do its work */
    int connected = (ac->c.flags & REDIS_CONNECTED) != 0;
    redisAsyncFree(ac);
    if (!connected || cn->ac != NULL) {
        cn->ac = NULL;
        cn->probing = 0;
        if (!cn->closing) {
            if (cn->state != ST_DOWN)
                set_state(cn, ST_DOWN, "no answer");
            schedule(cn, cn->backoff_ms);
        }
    }
}

static void
schedule(gw_rconn_t *cn, uint64_t ms)
{
    if (!cn->closing)
        uv_timer_start(&cn->state_timer, on_state_timer, ms, 0);
}

static void
on_probe(int err, const redisReply *reply, void *arg)
{
    gw_rconn_t *cn = arg;
    cn->probing = 0;
    if (err || reply->type == REDIS_REPLY_ERROR)
        return;
    if (cn->state == ST_SUSPECT) {
        uv_timer_stop(&cn->state_timer);
        set_state(cn, ST_READY, NULL);
    }
}

static void
on_state_timer(uv_timer_t *t)
{
    gw_rconn_t *cn = t->data;
    uint64_t now = uv_now(cn->loop);
    if (cn->drop) {
        drop_connection(cn);
        return;
    }
    switch (cn->state) {
    case ST_DOWN:
        if (cn->on_reconnect)
            cn->on_reconnect(cn->state_arg);
        else
            gw_rconn_reconnect(cn);
        break;
    case ST_CONNECTING:
    case ST_HANDSHAKE:
        if (cn->lookup) {
            char why[300];
            gw_resolver_cancel(cn->lookup);
            cn->lookup = NULL;
            snprintf(why, sizeof(why), "cannot resolve %s: timed out", cn->host);
            set_state(cn, ST_DOWN, why);
            schedule(cn, cn->backoff_ms);
            break;
        }
        set_state(cn, ST_DOWN, "connect timed out");
        drop_connection(cn);
        break;
    case ST_SUSPECT: {
        uint64_t silent = cn->timeout_ms * 10 > 1000 ? cn->timeout_ms * 10 : 1000;
        if (cn->npending > 0 && now - cn->last_reply_ms > silent) {
            drop_connection(cn);
            return;
        }
        if (!cn->probing) {
            const char *v[1] = {"PING"};
            size_t l[1] = {4};
            cn->probing =
                send_cmd(cn, 1, v, l, on_probe, cn, uv_now(cn->loop) + cn->timeout_ms) != NULL;
        }
        schedule(cn, PROBE_MS);
        break;
    }
    case ST_READY:
        break;
    }
}

void
gw_rconn_reconnect(gw_rconn_t *cn)
{
    if (cn == NULL || cn->closing || cn->state != ST_DOWN || cn->ac != NULL || cn->lookup != NULL)
        return;
    cn->backoff_ms =
        cn->backoff_ms * 2 > cn->backoff_max_ms ? cn->backoff_max_ms : cn->backoff_ms * 2;
    connect_now(cn);
}

int
gw_rconn_error_is(const redisReply *r, const char *const *codes)
{
    if (r == NULL || r->str == NULL)
        return 0;
    for (int i = 0; codes[i]; i++) {
        size_t n = strlen(codes[i]);
        if ((size_t)r->len >= n && memcmp(r->str, codes[i], n) == 0 &&
            ((size_t)r->len == n || r->str[n] == ' '))
            return 1;
    }
    return 0;
}

void
gw_rconn_suspect(gw_rconn_t *cn, const char *why)
{
    if (cn == NULL || cn->state != ST_READY)
        return;
    set_state(cn, ST_SUSPECT, why);
    if (cn->last_reply_ms == 0)
        cn->last_reply_ms = uv_now(cn->loop);
    schedule(cn, PROBE_MS);
}

gw_rconn_t *
gw_rconn_new(uv_loop_t *loop, const gw_rconn_opts_t *o, gw_log_t *log)
{
    if (loop == NULL || o == NULL || o->host == NULL || o->port <= 0 || o->port > 65535 ||
        o->timeout_ms == 0)
        return NULL;
    gw_rconn_t *cn = calloc(1, sizeof(*cn));
    if (cn == NULL)
        return NULL;
    cn->loop = loop;
    cn->log = log;
    cn->host = strdup(o->host);
    cn->password = o->password ? strdup(o->password) : NULL;
    if (cn->host == NULL || (o->password && cn->password == NULL)) {
        free(cn->host);
        free(cn->password);
        free(cn);
        return NULL;
    }
    cn->port = o->port;
    if (!gw_resolver_is_ip(cn->host)) {
        char err[128];
        gw_resolver_opts_t ro = {.timeout_ms = o->connect_timeout_ms ? o->connect_timeout_ms : 1000,
                                 .unref = 1};
        cn->resolver = gw_resolver_new(loop, &ro, err, sizeof(err));
        if (cn->resolver == NULL) {
            gw_log(log, GW_LOG_ERROR, "redis %s:%d: %s", cn->host, cn->port, err);
            free(cn->host);
            free(cn->password);
            free(cn);
            return NULL;
        }
    }
    cn->db = o->db;
    cn->timeout_ms = o->timeout_ms;
    cn->connect_timeout_ms = o->connect_timeout_ms ? o->connect_timeout_ms : 1000;
    cn->backoff_ms = BACKOFF_MIN_MS;
    cn->backoff_max_ms = o->backoff_max_ms >= BACKOFF_MIN_MS ? o->backoff_max_ms : BACKOFF_MAX_MS;
    cn->on_state = o->on_state;
    cn->state_arg = o->state_arg;
    cn->on_answer = o->on_answer;
    cn->answer_arg = o->answer_arg;
    cn->on_reconnect = o->on_reconnect;
    gw_list_init(&cn->waiting);
    uv_timer_init(loop, &cn->state_timer);
    uv_timer_init(loop, &cn->deadline_timer);
    cn->state_timer.data = cn->deadline_timer.data = cn;
    /* a Redis that stays away must not keep a draining worker alive */
    uv_unref((uv_handle_t *)&cn->state_timer);
    uv_unref((uv_handle_t *)&cn->deadline_timer);
    connect_now(cn);
    return cn;
}

static void
on_timer_closed(uv_handle_t *h)
{
    gw_rconn_t *cn = h->data;
    if (++cn->nclosed == 2) {
        free(cn->host);
        free(cn->password);
        free(cn);
    }
}

void
gw_rconn_close(gw_rconn_t *cn)
{
    if (cn == NULL || cn->closing)
        return;
    cn->closing = 1;
    uv_timer_stop(&cn->state_timer);
    gw_resolver_cancel(cn->lookup);
    cn->lookup = NULL;
    gw_resolver_free(cn->resolver);
    cn->resolver = NULL;
    if (cn->ac) {
        redisAsyncContext *ac = cn->ac;
        cn->ac = NULL;
        redisAsyncFree(ac);
    }
    /* commands hiredis never got to answer */
    while (!gw_list_empty(&cn->waiting))
        answer(GW_CONTAINER_OF(cn->waiting.next, gw_rconn_cmd_t, link), GW_RCONN_ECLOSED, NULL);
    uv_close((uv_handle_t *)&cn->state_timer, on_timer_closed);
    uv_close((uv_handle_t *)&cn->deadline_timer, on_timer_closed);
}

void
gw_rconn_stats_take(gw_rconn_t *cn, gw_rconn_stats_t *out)
{
    *out = cn->stats;
    memset(&cn->stats, 0, sizeof(cn->stats));
}

int
gw_rconn_ready(const gw_rconn_t *cn)
{
    return cn != NULL && cn->state == ST_READY;
}
