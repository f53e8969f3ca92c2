/* DNS on the loop (see gw_resolver.h). */
#include "gw_resolver.h"

#include <ares.h>
#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gw_config.h"
#include "gw_core.h"

#define DEFAULT_TIMEOUT_MS 5000
#define MAX_RRS 4096 /* a 64 KiB message holds fewer */

typedef struct {
    ares_socket_t fd;
    uv_poll_t *poll;
} sock_t;

struct gw_resolver_s {
    uv_loop_t *loop;
    ares_channel ch;
    uv_timer_t timer; /* c-ares's next timeout, or the earliest deadline */
    uv_timer_t later; /* delivers answers c-ares gave inside a call */
    sock_t *socks;
    size_t nsocks, capsocks;
    gw_link_t reqs;  /* waiting for c-ares, by start time */
    gw_link_t ready; /* answered inside a call, to deliver from the loop */
    uint64_t timeout_ms;
    int unref;
    int in_call;    /* inside ares_query/ares_getaddrinfo */
    int in_process; /* inside ares_process_fd (its callbacks run) */
    int closing;
    int destroy_pending; /* freed from a callback: c-ares goes after it returns */
    int nhandles;        /* open libuv handles; the memory goes at 0 */
};

struct gw_resolver_req_s {
    gw_resolver_t *r;
    gw_link_t link; /* in r->reqs, then r->ready; unlinked once done */
    gw_resolver_cb cb;
    void *arg;
    uint64_t deadline_ms;
    int port; /* lookups */
    char *name;
    unsigned done : 1;        /* the caller heard back or cancelled */
    unsigned in_ares : 1;     /* c-ares still holds the request */
    gw_resolver_parsed_t res; /* kept for "ready" delivery */
};

/* ---- parsing answers ---- */

static uint16_t
get16(const unsigned char *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t
get32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* The name at P (compression followed) as a lower-case string without the
 * final dot; *ENCLEN: the bytes it takes at P. NULL when it does not parse. */
static char *
read_name(const unsigned char *p, const unsigned char *msg, size_t len, long *enclen)
{
    char *s = NULL;
    if (p >= msg + len || ares_expand_name(p, msg, (int)len, &s, enclen) != ARES_SUCCESS)
        return NULL;
    char *out = strdup(s);
    ares_free_string(s);
    if (out == NULL)
        return NULL;
    for (char *c = out; *c; c++)
        *c = (char)tolower((unsigned char)*c);
    size_t n = strlen(out);
    if (n > 0 && out[n - 1] == '.')
        out[n - 1] = '\0';
    return out;
}

void
gw__resolver_parsed_clear(gw_resolver_parsed_t *p)
{
    for (size_t i = 0; i < p->n; i++) {
        free((char *)p->rrs[i].name);
        free((char *)p->rrs[i].target);
    }
    free(p->rrs);
    p->rrs = NULL;
    p->n = 0;
}

static gw_resolver_rr_t *
push_rr(gw_resolver_parsed_t *p, size_t *cap)
{
    if (p->n == *cap) {
        size_t ncap = *cap ? *cap * 2 : 8;
        gw_resolver_rr_t *a = realloc(p->rrs, ncap * sizeof(*a));
        if (a == NULL)
            return NULL;
        p->rrs = a;
        *cap = ncap;
    }
    gw_resolver_rr_t *rr = &p->rrs[p->n++];
    memset(rr, 0, sizeof(*rr));
    return rr;
}

/* Fills RR from one record's data; -1 when it does not parse. */
static int
read_rdata(gw_resolver_rr_t *rr, const unsigned char *rd, size_t rdlen, const unsigned char *msg,
           size_t len)
{
    if (rr->type == GW_RR_A) {
        struct sockaddr_in *in4 = (struct sockaddr_in *)&rr->sa;
        if (rdlen != 4)
            return -1;
        in4->sin_family = AF_INET;
        memcpy(&in4->sin_addr, rd, 4);
        rr->salen = sizeof(*in4);
        return 0;
    }
    if (rr->type == GW_RR_AAAA) {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&rr->sa;
        if (rdlen != 16)
            return -1;
        in6->sin6_family = AF_INET6;
        memcpy(&in6->sin6_addr, rd, 16);
        rr->salen = sizeof(*in6);
        return 0;
    }
    /* SRV: priority, weight, port, target */
    long enclen;
    if (rdlen < 7)
        return -1;
    rr->priority = get16(rd);
    rr->weight = get16(rd + 2);
    rr->port = get16(rd + 4);
    rr->target = read_name(rd + 6, msg, len, &enclen);
    if (rr->target == NULL || (size_t)enclen != rdlen - 6)
        return -1;
    return 0;
}

/* An SOA in the authority section: the negative TTL of RFC 2308, the
 * smaller of the record's TTL and its minimum field. */
static int
read_soa(const unsigned char *rd, size_t rdlen, const unsigned char *msg, size_t len, uint32_t ttl,
         int64_t *neg_ttl)
{
    long l1, l2;
    char *mname = read_name(rd, msg, len, &l1);
    if (mname == NULL)
        return -1;
    free(mname);
    if ((size_t)l1 >= rdlen)
        return -1;
    char *rname = read_name(rd + l1, msg, len, &l2);
    if (rname == NULL)
        return -1;
    free(rname);
    if ((size_t)(l1 + l2) + 20 != rdlen)
        return -1;
    uint32_t minimum = get32(rd + l1 + l2 + 16);
    *neg_ttl = minimum < ttl ? minimum : ttl;
    return 0;
}

int
gw__resolver_parse(const unsigned char *msg, size_t len, int qtype, gw_resolver_parsed_t *out)
{
    size_t cap = 0, pos = 12;
    memset(out, 0, sizeof(*out));
    out->neg_ttl = -1;
    if (msg == NULL || len < 12 || len > 65535)
        return -1;
    unsigned counts[4] = {get16(msg + 4), get16(msg + 6), get16(msg + 8), get16(msg + 10)};
    for (unsigned i = 0; i < counts[0]; i++) {
        long enclen;
        char *q = read_name(msg + pos, msg, len, &enclen);
        if (q == NULL)
            goto failed;
        free(q);
        pos += (size_t)enclen + 4;
        if (pos > len)
            goto failed;
    }
    for (int sec = 1; sec <= 3; sec++) {
        for (unsigned i = 0; i < counts[sec]; i++) {
            long enclen;
            char *owner = read_name(msg + pos, msg, len, &enclen);
            if (owner == NULL)
                goto failed;
            pos += (size_t)enclen;
            if (pos + 10 > len) {
                free(owner);
                goto failed;
            }
            uint16_t type = get16(msg + pos), klass = get16(msg + pos + 2);
            uint32_t ttl = get32(msg + pos + 4);
            size_t rdlen = get16(msg + pos + 8);
            const unsigned char *rd = msg + pos + 10;
            pos += 10 + rdlen;
            if (pos > len) {
                free(owner);
                goto failed;
            }
            if (ttl > 0x7fffffff) /* RFC 2181: read as zero */
                ttl = 0;
            int keep = klass == 1 &&
                       ((sec == 1 && type == qtype) || (sec == 3 && qtype == GW_RR_SRV &&
                                                        (type == GW_RR_A || type == GW_RR_AAAA)));
            if (klass == 1 && sec == 2 && type == 6 &&
                read_soa(rd, rdlen, msg, len, ttl, &out->neg_ttl) != 0) {
                free(owner);
                goto failed;
            }
            if (!keep) {
                free(owner);
                continue;
            }
            gw_resolver_rr_t *rr = out->n < MAX_RRS ? push_rr(out, &cap) : NULL;
            if (rr == NULL) {
                free(owner);
                goto failed;
            }
            rr->type = type;
            rr->ttl = ttl;
            rr->name = owner;
            rr->additional = sec == 3;
            if (read_rdata(rr, rd, rdlen, msg, len) != 0)
                goto failed;
        }
    }
    return 0;

failed:
    gw__resolver_parsed_clear(out);
    out->neg_ttl = -1;
    return -1;
}

/* ---- IP literals ---- */

int
gw_resolver_ip_sa(const char *s, int port, struct sockaddr_storage *sa, socklen_t *salen)
{
    struct sockaddr_in *in4 = (struct sockaddr_in *)sa;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)sa;
    memset(sa, 0, sizeof(*sa));
    if (inet_pton(AF_INET, s, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        in4->sin_port = htons((uint16_t)port);
        *salen = sizeof(*in4);
        return 0;
    }
    if (inet_pton(AF_INET6, s, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)port);
        *salen = sizeof(*in6);
        return 0;
    }
    return -1;
}

int
gw_resolver_is_ip(const char *s)
{
    struct sockaddr_storage sa;
    socklen_t salen;
    return s != NULL && gw_resolver_ip_sa(s, 0, &sa, &salen) == 0;
}

/* ---- c-ares on the loop ---- */

static void rearm(gw_resolver_t *r);
static void destroy(gw_resolver_t *r);

/* c-ares must not be destroyed from one of its callbacks: a user that
 * frees the resolver there has it done here, once c-ares returned. */
static void
process(gw_resolver_t *r, ares_socket_t rfd, ares_socket_t wfd)
{
    r->in_process++;
    ares_process_fd(r->ch, rfd, wfd);
    r->in_process--;
    if (r->destroy_pending && r->in_process == 0)
        destroy(r);
}

static void
on_handle_closed(uv_handle_t *h)
{
    gw_resolver_t *r = h->data;
    if (h->type == UV_POLL)
        free(h);
    if (--r->nhandles == 0) {
        free(r->socks);
        free(r);
    }
}

static void
on_poll(uv_poll_t *h, int status, int events)
{
    gw_resolver_t *r = h->data;
    ares_socket_t fd = ARES_SOCKET_BAD;
    for (size_t i = 0; i < r->nsocks; i++)
        if (r->socks[i].poll == h)
            fd = r->socks[i].fd;
    if (fd == ARES_SOCKET_BAD)
        return;
    /* an error shows as both: c-ares reads the socket's error */
    int rd = status < 0 || (events & UV_READABLE), wr = status < 0 || (events & UV_WRITABLE);
    process(r, rd ? fd : ARES_SOCKET_BAD, wr ? fd : ARES_SOCKET_BAD);
    rearm(r);
}

static void
close_poll(gw_resolver_t *r, size_t i)
{
    uv_poll_stop(r->socks[i].poll);
    uv_close((uv_handle_t *)r->socks[i].poll, on_handle_closed);
    r->socks[i] = r->socks[--r->nsocks];
}

/* c-ares tells which sockets it waits on, and for what. */
static void
on_sock_state(void *data, ares_socket_t fd, int readable, int writable)
{
    gw_resolver_t *r = data;
    size_t i = 0;
    while (i < r->nsocks && r->socks[i].fd != fd)
        i++;
    if (!readable && !writable) {
        if (i < r->nsocks)
            close_poll(r, i);
        return;
    }
    if (i == r->nsocks) {
        if (r->nsocks == r->capsocks) {
            size_t ncap = r->capsocks ? r->capsocks * 2 : 4;
            sock_t *a = realloc(r->socks, ncap * sizeof(*a));
            if (a == NULL)
                return; /* the request times out */
            r->socks = a;
            r->capsocks = ncap;
        }
        uv_poll_t *p = malloc(sizeof(*p));
        if (p == NULL || uv_poll_init_socket(r->loop, p, fd) != 0) {
            free(p);
            return;
        }
        p->data = r;
        r->nhandles++;
        if (r->unref)
            uv_unref((uv_handle_t *)p);
        r->socks[r->nsocks++] = (sock_t){fd, p};
    }
    uv_poll_start(r->socks[i].poll, (readable ? UV_READABLE : 0) | (writable ? UV_WRITABLE : 0),
                  on_poll);
}

static void
deliver(gw_resolver_req_t *q, const gw_resolver_parsed_t *p, int status, const char *why)
{
    q->done = 1;
    gw_list_remove(&q->link);
    gw_resolver_result_t res = {status, why, p ? p->rrs : NULL, p ? p->n : 0, p ? p->neg_ttl : -1};
    q->cb(q->arg, &res);
}

static void
req_free(gw_resolver_req_t *q)
{
    gw__resolver_parsed_clear(&q->res);
    free(q->name);
    free(q);
}

static void
on_timer(uv_timer_t *t)
{
    gw_resolver_t *r = t->data;
    process(r, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
    uint64_t now = uv_now(r->loop);
    while (!gw_list_empty(&r->reqs)) {
        gw_resolver_req_t *q = GW_CONTAINER_OF(r->reqs.next, gw_resolver_req_t, link);
        if (q->deadline_ms > now)
            break;
        deliver(q, NULL, GW_RES_ETIMEDOUT, "timed out");
    }
    rearm(r);
}

/* The timer fires at c-ares's next timeout or the earliest deadline. */
static void
rearm(gw_resolver_t *r)
{
    if (r->closing)
        return;
    struct timeval tv, *next = ares_timeout(r->ch, NULL, &tv);
    uint64_t ms = UINT64_MAX, now = uv_now(r->loop);
    if (next)
        ms = (uint64_t)next->tv_sec * 1000 + ((uint64_t)next->tv_usec + 999) / 1000;
    if (!gw_list_empty(&r->reqs)) {
        gw_resolver_req_t *q = GW_CONTAINER_OF(r->reqs.next, gw_resolver_req_t, link);
        uint64_t d = q->deadline_ms > now ? q->deadline_ms - now : 0;
        if (d < ms)
            ms = d;
    }
    if (ms == UINT64_MAX)
        uv_timer_stop(&r->timer);
    else
        uv_timer_start(&r->timer, on_timer, ms, 0);
}

static void
on_later(uv_timer_t *t)
{
    gw_resolver_t *r = t->data;
    while (!gw_list_empty(&r->ready)) {
        gw_resolver_req_t *q = GW_CONTAINER_OF(r->ready.next, gw_resolver_req_t, link);
        deliver(q, &q->res, q->res.status, q->res.why);
        req_free(q);
    }
}

static int
map_status(int st, const char **why)
{
    switch (st) {
    case ARES_SUCCESS:
    case ARES_ENODATA:
        return GW_RES_OK;
    case ARES_ENOTFOUND:
        return GW_RES_NXDOMAIN;
    case ARES_ETIMEOUT:
        *why = "timed out";
        return GW_RES_ETIMEDOUT;
    case ARES_ESERVFAIL:
        *why = "SERVFAIL";
        return GW_RES_EFAIL;
    case ARES_EREFUSED:
        *why = "REFUSED";
        return GW_RES_EFAIL;
    default:
        *why = ares_strerror(st);
        return GW_RES_EFAIL;
    }
}

/* What c-ares found for Q, parsed into Q->res: delivered now, or from the
 * loop when c-ares answered inside the call that asked. */
static void
finish(gw_resolver_req_t *q)
{
    gw_resolver_t *r = q->r;
    q->in_ares = 0;
    if (q->done || r->closing) {
        if (!q->done) {
            gw_list_remove(&q->link);
            q->done = 1;
        }
        req_free(q);
        return;
    }
    if (r->in_call) {
        gw_list_remove(&q->link);
        gw_list_push(&r->ready, &q->link);
        uv_timer_start(&r->later, on_later, 0, 0);
        return;
    }
    deliver(q, &q->res, q->res.status, q->res.why);
    req_free(q);
}

static void
on_query(void *arg, int st, int timeouts, unsigned char *abuf, int alen)
{
    gw_resolver_req_t *q = arg;
    (void)timeouts;
    q->res.why = NULL;
    q->res.status = map_status(st, &q->res.why);
    if (q->res.status >= 0 && !q->done && !q->r->closing && abuf != NULL) {
        int qtype = q->res.qtype;
        if (gw__resolver_parse(abuf, (size_t)alen, qtype, &q->res) != 0) {
            q->res.status = GW_RES_EFAIL;
            q->res.why = "malformed answer";
        }
        if (q->res.status == GW_RES_NXDOMAIN)
            gw__resolver_parsed_clear(&q->res);
    }
    finish(q);
}

static void
on_addrinfo(void *arg, int st, int timeouts, struct ares_addrinfo *ai)
{
    gw_resolver_req_t *q = arg;
    size_t cap = 0;
    (void)timeouts;
    q->res.why = NULL;
    q->res.status = map_status(st, &q->res.why);
    if (q->res.status == GW_RES_OK && ai != NULL && !q->done && !q->r->closing) {
        for (struct ares_addrinfo_node *n = ai->nodes; n; n = n->ai_next) {
            if ((n->ai_family != AF_INET && n->ai_family != AF_INET6) ||
                n->ai_addrlen > sizeof(struct sockaddr_storage))
                continue;
            gw_resolver_rr_t *rr = q->res.n < MAX_RRS ? push_rr(&q->res, &cap) : NULL;
            if (rr == NULL)
                break;
            rr->type = n->ai_family == AF_INET ? GW_RR_A : GW_RR_AAAA;
            rr->ttl = n->ai_ttl > 0 ? (uint32_t)n->ai_ttl : 0;
            rr->name = strdup(q->name);
            memcpy(&rr->sa, n->ai_addr, n->ai_addrlen);
            rr->salen = n->ai_addrlen;
            if (n->ai_family == AF_INET)
                ((struct sockaddr_in *)&rr->sa)->sin_port = htons((uint16_t)q->port);
            else
                ((struct sockaddr_in6 *)&rr->sa)->sin6_port = htons((uint16_t)q->port);
        }
    }
    if (ai)
        ares_freeaddrinfo(ai);
    finish(q);
}

static gw_resolver_req_t *
req_new(gw_resolver_t *r, const char *name, gw_resolver_cb cb, void *arg)
{
    if (r == NULL || r->closing || name == NULL || cb == NULL)
        return NULL;
    gw_resolver_req_t *q = calloc(1, sizeof(*q));
    if (q == NULL || (q->name = strdup(name)) == NULL) {
        free(q);
        return NULL;
    }
    q->r = r;
    q->cb = cb;
    q->arg = arg;
    q->res.neg_ttl = -1;
    q->deadline_ms = uv_now(r->loop) + r->timeout_ms;
    q->in_ares = 1;
    gw_list_push(&r->reqs, &q->link);
    return q;
}

/* An IP literal is its own answer, given from the loop. */
static gw_resolver_req_t *
literal(gw_resolver_t *r, const char *name, int type, int port, gw_resolver_cb cb, void *arg)
{
    struct sockaddr_storage sa;
    socklen_t salen;
    size_t cap = 0;
    if (gw_resolver_ip_sa(name, port, &sa, &salen) != 0)
        return NULL;
    gw_resolver_req_t *q = req_new(r, name, cb, arg);
    if (q == NULL)
        return NULL;
    q->res.status = GW_RES_OK;
    int t = sa.ss_family == AF_INET ? GW_RR_A : GW_RR_AAAA;
    if (type == 0 || type == t) {
        gw_resolver_rr_t *rr = push_rr(&q->res, &cap);
        if (rr == NULL || (rr->name = strdup(name)) == NULL) {
            gw_list_remove(&q->link);
            req_free(q);
            return NULL;
        }
        rr->type = (uint16_t)t;
        rr->sa = sa;
        rr->salen = salen;
    }
    r->in_call = 1;
    finish(q);
    r->in_call = 0;
    return q;
}

gw_resolver_req_t *
gw_resolver_query(gw_resolver_t *r, const char *name, int type, gw_resolver_cb cb, void *arg)
{
    if (type != GW_RR_A && type != GW_RR_AAAA && type != GW_RR_SRV)
        return NULL;
    if (type != GW_RR_SRV && gw_resolver_is_ip(name))
        return literal(r, name, type, 0, cb, arg);
    gw_resolver_req_t *q = req_new(r, name, cb, arg);
    if (q == NULL)
        return NULL;
    q->res.qtype = type;
    r->in_call = 1;
    ares_query(r->ch, name, 1 /* IN */, type, on_query, q);
    r->in_call = 0;
    rearm(r);
    return q;
}

gw_resolver_req_t *
gw_resolver_lookup(gw_resolver_t *r, const char *name, int port, gw_resolver_cb cb, void *arg)
{
    if (gw_resolver_is_ip(name))
        return literal(r, name, 0, port, cb, arg);
    gw_resolver_req_t *q = req_new(r, name, cb, arg);
    if (q == NULL)
        return NULL;
    q->port = port;
    struct ares_addrinfo_hints hints;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = ARES_AI_NOSORT;
    r->in_call = 1;
    ares_getaddrinfo(r->ch, name, NULL, &hints, on_addrinfo, q);
    r->in_call = 0;
    rearm(r);
    return q;
}

void
gw_resolver_cancel(gw_resolver_req_t *q)
{
    if (q == NULL || q->done)
        return;
    q->done = 1;
    gw_list_remove(&q->link);
    if (!q->in_ares) /* waiting in r->ready */
        req_free(q);
}

/* ---- the channel ---- */

static int
set_servers(ares_channel ch, const gw_resolver_opts_t *o, char *err, size_t errlen)
{
    struct ares_addr_port_node *nodes = calloc(o->nnameservers, sizeof(*nodes));
    if (nodes == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < o->nnameservers; i++) {
        struct sockaddr_storage sa;
        socklen_t salen;
        if (gw_conf_parse_nameserver(o->nameservers[i], &sa, &salen) != GW_OK) {
            snprintf(err, errlen, "bad nameserver \"%.100s\"", o->nameservers[i]);
            free(nodes);
            return -1;
        }
        struct ares_addr_port_node *n = &nodes[i];
        n->next = i + 1 < o->nnameservers ? &nodes[i + 1] : NULL;
        n->family = sa.ss_family;
        if (sa.ss_family == AF_INET) {
            const struct sockaddr_in *in4 = (const struct sockaddr_in *)&sa;
            n->addr.addr4 = in4->sin_addr;
            n->udp_port = n->tcp_port = ntohs(in4->sin_port);
        } else {
            const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&sa;
            memcpy(&n->addr.addr6, &in6->sin6_addr, 16);
            n->udp_port = n->tcp_port = ntohs(in6->sin6_port);
        }
    }
    int rc = ares_set_servers_ports(ch, nodes);
    free(nodes);
    if (rc != ARES_SUCCESS) {
        snprintf(err, errlen, "nameservers: %s", ares_strerror(rc));
        return -1;
    }
    return 0;
}

gw_resolver_t *
gw_resolver_new(uv_loop_t *loop, const gw_resolver_opts_t *o, char *err, size_t errlen)
{
    gw_resolver_t *r = calloc(1, sizeof(*r));
    if (r == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    r->loop = loop;
    r->timeout_ms = o->timeout_ms ? o->timeout_ms : DEFAULT_TIMEOUT_MS;
    r->unref = o->unref;
    gw_list_init(&r->reqs);
    gw_list_init(&r->ready);

    /* c-ares tries twice within our deadline (a lost datagram is retried),
     * then our deadline answers for it */
    struct ares_options opts;
    memset(&opts, 0, sizeof(opts));
    opts.sock_state_cb = on_sock_state;
    opts.sock_state_cb_data = r;
    opts.timeout = (int)(r->timeout_ms / 2 > 50 ? r->timeout_ms / 2 : 50);
    opts.tries = 2;
    int rc = ares_init_options(&r->ch, &opts,
                               ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES);
    if (rc != ARES_SUCCESS) {
        snprintf(err, errlen, "c-ares: %s", ares_strerror(rc));
        free(r);
        return NULL;
    }
    if (o->nnameservers > 0 && set_servers(r->ch, o, err, errlen) != 0) {
        ares_destroy(r->ch);
        free(r);
        return NULL;
    }
    uv_timer_init(loop, &r->timer);
    uv_timer_init(loop, &r->later);
    r->timer.data = r->later.data = r;
    r->nhandles = 2;
    if (r->unref) {
        uv_unref((uv_handle_t *)&r->timer);
        uv_unref((uv_handle_t *)&r->later);
    }
    return r;
}

static void
destroy(gw_resolver_t *r)
{
    r->destroy_pending = 0;
    /* c-ares ends what it holds with ARES_EDESTRUCTION: finish() frees
     * those requests without a word to their callers */
    ares_destroy(r->ch);
    r->ch = NULL;
    while (!gw_list_empty(&r->ready)) {
        gw_resolver_req_t *q = GW_CONTAINER_OF(r->ready.next, gw_resolver_req_t, link);
        gw_list_remove(&q->link);
        req_free(q);
    }
    while (r->nsocks > 0)
        close_poll(r, r->nsocks - 1);
    uv_close((uv_handle_t *)&r->timer, on_handle_closed);
    uv_close((uv_handle_t *)&r->later, on_handle_closed);
}

void
gw_resolver_free(gw_resolver_t *r)
{
    if (r == NULL || r->closing)
        return;
    r->closing = 1;
    if (r->in_process)
        r->destroy_pending = 1;
    else
        destroy(r);
}
