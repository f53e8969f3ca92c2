/* The worker's Redis client (see gw_redis.h). */
#include "gw_redis.h"

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

struct gw_redis_cmd_s {
    gw_redis_t *rd;
    gw_link_t link; /* in rd->waiting until answered or cancelled */
    uint64_t deadline_ms;
    gw_redis_cb cb;
    void *arg;
    unsigned answered : 1;
    unsigned cancelled : 1;
    unsigned retried : 1; /* NOSCRIPT already turned it into EVAL */
    const gw_redis_script_t *script;
    int nargs;   /* scripts: the arguments after the script or its SHA */
    size_t tlen; /* ... and their RESP encoding, kept for an EVAL retry */
    char tail[];
};

struct gw_redis_s {
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
    uint64_t backoff_ms;
    uint64_t last_reply_ms;
    uint64_t armed_ms; /* deadline the timer is set for, 0: stopped */
    int probing;       /* a probe PING is out */
    int drop;          /* drop the connection from the next timer tick */
    int closing;
    int nclosed;
    void (*on_state)(void *arg, int ready);
    void *state_arg;
    char last_err[128];
};

static void schedule(gw_redis_t *rd, uint64_t ms);
static void on_state_timer(uv_timer_t *t);

void
gw_redis_script_init(gw_redis_script_t *s, const char *text)
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
set_state(gw_redis_t *rd, state_t s, const char *why)
{
    state_t old = rd->state;
    rd->state = s;
    if (rd->closing)
        return;
    int was_up = old == ST_READY, up = s == ST_READY;
    if (up != was_up && rd->on_state)
        rd->on_state(rd->state_arg, up);
    if (up && !was_up)
        gw_log(rd->log, GW_LOG_INFO, "redis %s:%d: %s", rd->host, rd->port,
               old == ST_SUSPECT ? "answering again" : "connected");
    else if (was_up && !up)
        gw_log(rd->log, GW_LOG_WARN,
               "redis %s:%d: unavailable (%s); limiters follow their on_redis_error policy",
               rd->host, rd->port, why ? why : "error");
    else if ((old == ST_CONNECTING || old == ST_HANDSHAKE) && s == ST_DOWN && why &&
             strncmp(rd->last_err, why, sizeof(rd->last_err) - 1) != 0)
        gw_log(rd->log, GW_LOG_WARN, "redis %s:%d: cannot connect (%s)", rd->host, rd->port, why);
    if (why)
        snprintf(rd->last_err, sizeof(rd->last_err), "%s", why);
}

/* ---- commands ---- */

static void on_deadline(uv_timer_t *t);

/* One timer for every command: it fires at the earliest deadline. */
static void
arm_deadline(gw_redis_t *rd)
{
    if (gw_list_empty(&rd->waiting)) {
        if (rd->armed_ms) {
            uv_timer_stop(&rd->deadline_timer);
            rd->armed_ms = 0;
        }
        return;
    }
    gw_redis_cmd_t *c = GW_CONTAINER_OF(rd->waiting.next, gw_redis_cmd_t, link);
    if (rd->armed_ms == c->deadline_ms)
        return;
    uint64_t now = uv_now(rd->loop);
    rd->armed_ms = c->deadline_ms;
    uv_timer_start(&rd->deadline_timer, on_deadline,
                   c->deadline_ms > now ? c->deadline_ms - now : 0, 0);
}

static void
answer(gw_redis_cmd_t *c, int err, const redisReply *reply)
{
    if (c->answered)
        return;
    c->answered = 1;
    gw_list_remove(&c->link);
    if (!c->cancelled)
        c->cb(err, reply, c->arg);
}

static void
cmd_free(gw_redis_cmd_t *c)
{
    c->rd->npending--;
    free(c);
}

static int is_noscript(const redisReply *r);
static int resend_as_eval(gw_redis_cmd_t *c);

/* hiredis calls this once per command: with the reply, or with NULL when
 * the connection goes away first. */
static void
on_reply(redisAsyncContext *ac, void *r, void *priv)
{
    (void)ac;
    gw_redis_cmd_t *c = priv;
    gw_redis_t *rd = c->rd;
    redisReply *reply = r;
    if (reply) {
        rd->last_reply_ms = uv_now(rd->loop);
        if (c->script && !c->retried && !c->answered && is_noscript(reply) &&
            resend_as_eval(c) == 0)
            return; /* hiredis calls us again for the EVAL */
        answer(c, 0, reply);
    } else {
        answer(c, rd->closing ? GW_REDIS_ECLOSED : GW_REDIS_ECONN, NULL);
    }
    cmd_free(c);
    arm_deadline(rd);
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

static gw_redis_cmd_t *
cmd_new(gw_redis_t *rd, size_t tail_cap, gw_redis_cb cb, void *arg, uint64_t timeout_ms)
{
    gw_redis_cmd_t *c = malloc(sizeof(gw_redis_cmd_t) + tail_cap);
    if (c == NULL)
        return NULL;
    memset(c, 0, sizeof(*c));
    c->rd = rd;
    c->cb = cb;
    c->arg = arg;
    c->deadline_ms = uv_now(rd->loop) + timeout_ms;
    /* deadlines mostly arrive in order: insert from the tail */
    gw_link_t *at = rd->waiting.prev;
    while (at != &rd->waiting &&
           GW_CONTAINER_OF(at, gw_redis_cmd_t, link)->deadline_ms > c->deadline_ms)
        at = at->prev;
    c->link.prev = at;
    c->link.next = at->next;
    at->next->prev = &c->link;
    at->next = &c->link;
    return c;
}

/* Hands the encoded command to hiredis; on failure C is unlinked and freed. */
static int
submit(gw_redis_t *rd, gw_redis_cmd_t *c, const char *cmd, size_t len)
{
    if (rd->ac == NULL || redisAsyncFormattedCommand(rd->ac, on_reply, c, cmd, len) != REDIS_OK) {
        gw_list_remove(&c->link);
        free(c);
        return -1;
    }
    rd->npending++;
    arm_deadline(rd);
    return 0;
}

static gw_redis_cmd_t *
send_cmd(gw_redis_t *rd, int argc, const char **argv, const size_t *lens, gw_redis_cb cb, void *arg,
         uint64_t timeout_ms)
{
    if (rd->ac == NULL || rd->npending >= MAX_PENDING || argc < 1)
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
    gw_redis_cmd_t *c = cmd_new(rd, 0, cb, arg, timeout_ms);
    if (c && submit(rd, c, buf, n) != 0)
        c = NULL;
    if (buf != stackbuf)
        free(buf);
    return c;
}

gw_redis_cmd_t *
gw_redis_command(gw_redis_t *rd, int argc, const char **argv, const size_t *lens, gw_redis_cb cb,
                 void *arg)
{
    if (rd == NULL || rd->state != ST_READY || argc < 1 || cb == NULL)
        return NULL;
    return send_cmd(rd, argc, argv, lens, cb, arg, rd->timeout_ms);
}

/* "EVALSHA sha" or "EVAL text", then the kept tail: nkeys keys... args... */
static int
submit_script(gw_redis_t *rd, gw_redis_cmd_t *c, int by_sha)
{
    const gw_redis_script_t *s = c->script;
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
    int rc = redisAsyncFormattedCommand(rd->ac, on_reply, c, buf, n);
    if (buf != stackbuf)
        free(buf);
    return rc == REDIS_OK ? 0 : -1;
}

/* EVALSHA with NKEYS keys then NARGS arguments in ARGV. */
gw_redis_cmd_t *
gw_redis_eval(gw_redis_t *rd, const gw_redis_script_t *s, int nkeys, int nargs, const char **argv,
              const size_t *lens, gw_redis_cb cb, void *arg)
{
    if (rd == NULL || rd->state != ST_READY || nkeys < 0 || nargs < 0 || cb == NULL ||
        rd->ac == NULL || rd->npending >= MAX_PENDING)
        return NULL;
    size_t cap = bulk_size(12);
    for (int i = 0; i < nkeys + nargs; i++)
        cap += bulk_size(lens[i]);
    gw_redis_cmd_t *c = cmd_new(rd, cap, cb, arg, rd->timeout_ms);
    if (c == NULL)
        return NULL;
    c->script = s;
    c->nargs = 1 + nkeys + nargs;
    char nk[24];
    size_t nkl = gw_fmt_u64(nk, (uint64_t)nkeys);
    size_t n = put_bulk(c->tail, nk, nkl);
    for (int i = 0; i < nkeys + nargs; i++)
        n += put_bulk(c->tail + n, argv[i], lens[i]);
    c->tlen = n;
    if (submit_script(rd, c, 1) != 0) {
        gw_list_remove(&c->link);
        free(c);
        return NULL;
    }
    rd->npending++;
    arm_deadline(rd);
    return c;
}

static int
is_noscript(const redisReply *r)
{
    return r->type == REDIS_REPLY_ERROR && r->len >= 8 && memcmp(r->str, "NOSCRIPT", 8) == 0;
}

/* Inside on_reply: hiredis drops its record of C after we return, and a
 * new command for the same C is queued. */
static int
resend_as_eval(gw_redis_cmd_t *c)
{
    gw_redis_t *rd = c->rd;
    c->retried = 1;
    if (rd->ac == NULL)
        return -1;
    return submit_script(rd, c, 0);
}

void
gw_redis_cmd_cancel(gw_redis_cmd_t *c)
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
    gw_redis_t *rd = t->data;
    uint64_t now = uv_now(rd->loop);
    int timed_out = 0;
    rd->armed_ms = 0;
    while (!gw_list_empty(&rd->waiting)) {
        gw_redis_cmd_t *c = GW_CONTAINER_OF(rd->waiting.next, gw_redis_cmd_t, link);
        if (c->deadline_ms > now)
            break;
        timed_out = 1;
        answer(c, GW_REDIS_ETIMEDOUT, NULL);
    }
    if (timed_out && rd->state == ST_READY)
        gw_redis_suspect(rd, "timeout");
    arm_deadline(rd);
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
    gw_redis_t *rd = ac->data;
    if (rd == NULL)
        return;
    if (status != REDIS_OK) {
        /* hiredis frees the context after this callback */
        rd->ac = NULL;
        set_state(rd, ST_DOWN, ac->errstr[0] ? ac->errstr : "connect failed");
        schedule(rd, rd->backoff_ms);
        return;
    }
    rd->state = ST_HANDSHAKE;
    const char *v[2];
    size_t l[2];
    if (rd->password && rd->password[0]) {
        v[0] = "AUTH";
        l[0] = 4;
        v[1] = rd->password;
        l[1] = strlen(rd->password);
        send_cmd(rd, 2, v, l, on_handshake, rd, rd->connect_timeout_ms);
    }
    if (rd->db) {
        char db[16];
        v[0] = "SELECT";
        l[0] = 6;
        l[1] = (size_t)snprintf(db, sizeof(db), "%d", rd->db);
        v[1] = db;
        send_cmd(rd, 2, v, l, on_handshake, rd, rd->connect_timeout_ms);
    }
    v[0] = "PING";
    l[0] = 4;
    send_cmd(rd, 1, v, l, on_handshake, (char *)rd + 1, rd->connect_timeout_ms);
    schedule(rd, rd->connect_timeout_ms);
}

static void
on_disconnect(const redisAsyncContext *ac, int status)
{
    (void)status;
    gw_redis_t *rd = ac->data;
    if (rd == NULL)
        return;
    rd->ac = NULL;
    rd->probing = 0;
    if (rd->closing)
        return;
    if (rd->state != ST_DOWN)
        set_state(rd, ST_DOWN, ac->errstr[0] ? ac->errstr : "connection closed");
    schedule(rd, rd->backoff_ms);
}

/* AUTH, SELECT and PING after connecting; ARG is rd, or rd + 1 for the
 * final PING (its answer makes the connection ready). */
static void
on_handshake(int err, const redisReply *reply, void *arg)
{
    int final = ((uintptr_t)arg & 1) != 0;
    gw_redis_t *rd = (gw_redis_t *)((uintptr_t)arg & ~(uintptr_t)1);
    if (rd->state != ST_HANDSHAKE)
        return;
    char why[128];
    if (err || reply->type == REDIS_REPLY_ERROR) {
        if (err == GW_REDIS_ECLOSED || err == GW_REDIS_ECONN)
            return; /* on_disconnect handles it */
        snprintf(why, sizeof(why), "%s",
                 err ? "handshake timed out" : (reply->str ? reply->str : "error"));
        set_state(rd, ST_DOWN, why);
        rd->drop = 1;
        schedule(rd, 0);
        return;
    }
    if (final) {
        rd->backoff_ms = BACKOFF_MIN_MS;
        rd->attempt = 0;
        uv_timer_stop(&rd->state_timer);
        set_state(rd, ST_READY, NULL);
    }
}

static void
connect_ip(gw_redis_t *rd, const char *ip)
{
    redisAsyncContext *ac = redisAsyncConnect(ip, rd->port);
    if (ac == NULL || ac->err) {
        set_state(rd, ST_DOWN, ac && ac->errstr[0] ? ac->errstr : "cannot connect");
        if (ac)
            redisAsyncFree(ac);
        schedule(rd, rd->backoff_ms);
        return;
    }
    ac->data = rd;
    if (glue_attach(ac, rd->loop) != REDIS_OK) {
        redisAsyncFree(ac);
        set_state(rd, ST_DOWN, "cannot attach to the loop");
        schedule(rd, rd->backoff_ms);
        return;
    }
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    rd->ac = ac;
    rd->state = ST_CONNECTING;
    schedule(rd, rd->connect_timeout_ms);
}

static void
on_lookup(void *arg, const gw_resolver_result_t *res)
{
    gw_redis_t *rd = arg;
    char why[300], ip[INET6_ADDRSTRLEN];
    rd->lookup = NULL;
    if (res->status != GW_RES_OK || res->n == 0) {
        snprintf(why, sizeof(why), "cannot resolve %s: %s", rd->host,
                 res->status < 0 ? res->why : "no such host");
        set_state(rd, ST_DOWN, why);
        schedule(rd, rd->backoff_ms);
        return;
    }
    const gw_resolver_rr_t *rr = &res->rrs[(rd->attempt - 1) % res->n];
    const void *a = rr->sa.ss_family == AF_INET
                        ? (const void *)&((const struct sockaddr_in *)&rr->sa)->sin_addr
                        : (const void *)&((const struct sockaddr_in6 *)&rr->sa)->sin6_addr;
    inet_ntop(rr->sa.ss_family, a, ip, sizeof(ip));
    connect_ip(rd, ip);
}

/* A name goes through the resolver first: hiredis would resolve it with
 * getaddrinfo, which blocks the loop. */
static void
connect_now(gw_redis_t *rd)
{
    if (rd->resolver == NULL) {
        connect_ip(rd, rd->host);
        return;
    }
    rd->attempt++;
    rd->state = ST_CONNECTING;
    rd->lookup = gw_resolver_lookup(rd->resolver, rd->host, rd->port, on_lookup, rd);
    if (rd->lookup == NULL) {
        set_state(rd, ST_DOWN, "cannot resolve: out of memory");
        schedule(rd, rd->backoff_ms);
        return;
    }
    schedule(rd, rd->connect_timeout_ms);
}

static void
drop_connection(gw_redis_t *rd)
{
    rd->drop = 0;
    if (rd->ac == NULL)
        return;
    redisAsyncContext *ac = rd->ac;
    /* a connection never made calls no disconnect callback: do its work */
    int connected = (ac->c.flags & REDIS_CONNECTED) != 0;
    redisAsyncFree(ac);
    if (!connected || rd->ac != NULL) {
        rd->ac = NULL;
        rd->probing = 0;
        if (!rd->closing) {
            if (rd->state != ST_DOWN)
                set_state(rd, ST_DOWN, "no answer");
            schedule(rd, rd->backoff_ms);
        }
    }
}

static void
schedule(gw_redis_t *rd, uint64_t ms)
{
    if (!rd->closing)
        uv_timer_start(&rd->state_timer, on_state_timer, ms, 0);
}

static void
on_probe(int err, const redisReply *reply, void *arg)
{
    gw_redis_t *rd = arg;
    rd->probing = 0;
    if (err || reply->type == REDIS_REPLY_ERROR)
        return;
    if (rd->state == ST_SUSPECT) {
        uv_timer_stop(&rd->state_timer);
        set_state(rd, ST_READY, NULL);
    }
}

static void
on_state_timer(uv_timer_t *t)
{
    gw_redis_t *rd = t->data;
    uint64_t now = uv_now(rd->loop);
    if (rd->drop) {
        drop_connection(rd);
        return;
    }
    switch (rd->state) {
    case ST_DOWN:
        rd->backoff_ms = rd->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : rd->backoff_ms * 2;
        connect_now(rd);
        break;
    case ST_CONNECTING:
    case ST_HANDSHAKE:
        if (rd->lookup) {
            char why[300];
            gw_resolver_cancel(rd->lookup);
            rd->lookup = NULL;
            snprintf(why, sizeof(why), "cannot resolve %s: timed out", rd->host);
            set_state(rd, ST_DOWN, why);
            schedule(rd, rd->backoff_ms);
            break;
        }
        set_state(rd, ST_DOWN, "connect timed out");
        drop_connection(rd);
        break;
    case ST_SUSPECT: {
        uint64_t silent = rd->timeout_ms * 10 > 1000 ? rd->timeout_ms * 10 : 1000;
        if (rd->npending > 0 && now - rd->last_reply_ms > silent) {
            drop_connection(rd);
            return;
        }
        if (!rd->probing) {
            const char *v[1] = {"PING"};
            size_t l[1] = {4};
            rd->probing = send_cmd(rd, 1, v, l, on_probe, rd, rd->timeout_ms) != NULL;
        }
        schedule(rd, PROBE_MS);
        break;
    }
    case ST_READY:
        break;
    }
}

void
gw_redis_suspect(gw_redis_t *rd, const char *why)
{
    if (rd == NULL || rd->state != ST_READY)
        return;
    set_state(rd, ST_SUSPECT, why);
    if (rd->last_reply_ms == 0)
        rd->last_reply_ms = uv_now(rd->loop);
    schedule(rd, PROBE_MS);
}

gw_redis_t *
gw_redis_new(uv_loop_t *loop, const gw_redis_opts_t *o, gw_log_t *log)
{
    if (loop == NULL || o == NULL || o->host == NULL || o->port <= 0 || o->port > 65535 ||
        o->timeout_ms == 0)
        return NULL;
    gw_redis_t *rd = calloc(1, sizeof(*rd));
    if (rd == NULL)
        return NULL;
    rd->loop = loop;
    rd->log = log;
    rd->host = strdup(o->host);
    rd->password = o->password ? strdup(o->password) : NULL;
    if (rd->host == NULL || (o->password && rd->password == NULL)) {
        free(rd->host);
        free(rd->password);
        free(rd);
        return NULL;
    }
    rd->port = o->port;
    if (!gw_resolver_is_ip(rd->host)) {
        char err[128];
        gw_resolver_opts_t ro = {.timeout_ms = o->connect_timeout_ms ? o->connect_timeout_ms : 1000,
                                 .unref = 1};
        rd->resolver = gw_resolver_new(loop, &ro, err, sizeof(err));
        if (rd->resolver == NULL) {
            gw_log(log, GW_LOG_ERROR, "redis %s:%d: %s", rd->host, rd->port, err);
            free(rd->host);
            free(rd->password);
            free(rd);
            return NULL;
        }
    }
    rd->db = o->db;
    rd->timeout_ms = o->timeout_ms;
    rd->connect_timeout_ms = o->connect_timeout_ms ? o->connect_timeout_ms : 1000;
    rd->backoff_ms = BACKOFF_MIN_MS;
    rd->on_state = o->on_state;
    rd->state_arg = o->state_arg;
    gw_list_init(&rd->waiting);
    uv_timer_init(loop, &rd->state_timer);
    uv_timer_init(loop, &rd->deadline_timer);
    rd->state_timer.data = rd->deadline_timer.data = rd;
    /* a Redis that stays away must not keep a draining worker alive */
    uv_unref((uv_handle_t *)&rd->state_timer);
    uv_unref((uv_handle_t *)&rd->deadline_timer);
    connect_now(rd);
    return rd;
}

static void
on_timer_closed(uv_handle_t *h)
{
    gw_redis_t *rd = h->data;
    if (++rd->nclosed == 2) {
        free(rd->host);
        free(rd->password);
        free(rd);
    }
}

void
gw_redis_close(gw_redis_t *rd)
{
    if (rd == NULL || rd->closing)
        return;
    rd->closing = 1;
    uv_timer_stop(&rd->state_timer);
    gw_resolver_cancel(rd->lookup);
    rd->lookup = NULL;
    gw_resolver_free(rd->resolver);
    rd->resolver = NULL;
    if (rd->ac) {
        redisAsyncContext *ac = rd->ac;
        rd->ac = NULL;
        redisAsyncFree(ac);
    }
    /* commands hiredis never got to answer */
    while (!gw_list_empty(&rd->waiting))
        answer(GW_CONTAINER_OF(rd->waiting.next, gw_redis_cmd_t, link), GW_REDIS_ECLOSED, NULL);
    uv_close((uv_handle_t *)&rd->state_timer, on_timer_closed);
    uv_close((uv_handle_t *)&rd->deadline_timer, on_timer_closed);
}

int
gw_redis_ready(const gw_redis_t *rd)
{
    return rd != NULL && rd->state == ST_READY;
}
