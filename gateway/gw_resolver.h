/*
 * DNS on the loop: a c-ares channel whose sockets and timeouts libuv drives
 * (one uv_poll per socket c-ares opens, one uv_timer for its next timeout),
 * so a lookup neither blocks the loop nor takes a thread.
 *
 * Two kinds of request:
 *   - gw_resolver_query(): one question (A, AAAA or SRV) about a name taken
 *     as fully qualified (no search domains, no hosts file), answered with
 *     the records and their TTLs. For discovery, where the records are the
 *     data.
 *   - gw_resolver_lookup(): a host name to addresses the way the system
 *     would (hosts file, then DNS with the search domains of resolv.conf).
 *     For a client that connects to one host (redis.addr).
 * An IP literal never goes to DNS: it is its own answer.
 *
 * Every request ends within the resolver's timeout. Callbacks run from the
 * loop, never inside the call that started the request, and never after
 * gw_resolver_cancel() or gw_resolver_free().
 */
#ifndef GW_RESOLVER_H
#define GW_RESOLVER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

typedef struct gw_resolver_s gw_resolver_t;
typedef struct gw_resolver_req_s gw_resolver_req_t;

/* Outcomes. The two answers (>= 0) say what the name holds; the errors
 * say nothing about it (keep what was known). */
#define GW_RES_OK 0         /* records (possibly none of the type asked) */
#define GW_RES_NXDOMAIN 1   /* the name does not exist */
#define GW_RES_ETIMEDOUT -1 /* no answer within the timeout */
#define GW_RES_EFAIL -2     /* SERVFAIL, REFUSED, a malformed answer, ... */

#define GW_RR_A 1
#define GW_RR_AAAA 28
#define GW_RR_SRV 33

typedef struct {
    uint16_t type;      /* GW_RR_* */
    uint8_t additional; /* 1: from the additional section (the addresses of
                         * an SRV answer's targets, when the server sent them) */
    uint32_t ttl;       /* seconds */
    const char *name;   /* the record's owner, lower case, no final dot */
    /* A, AAAA: the address; its port is 0 (a lookup's: the port asked) */
    struct sockaddr_storage sa;
    socklen_t salen;
    /* SRV */
    uint16_t priority, weight, port;
    const char *target; /* lower case, no final dot; "" for "." (no service) */
} gw_resolver_rr_t;

typedef struct {
    int status;      /* GW_RES_* */
    const char *why; /* errors: a short reason for the log */
    const gw_resolver_rr_t *rrs;
    size_t n;
    /* an empty answer: how long it may be believed, from the SOA the
     * server sent with it (seconds), or -1 without one */
    int64_t neg_ttl;
} gw_resolver_result_t;

/* RES and what it points to are valid during the call only. */
typedef void (*gw_resolver_cb)(void *arg, const gw_resolver_result_t *res);

typedef struct {
    /* "ip", "ip:port", "[v6]:port"; none: the servers of /etc/resolv.conf */
    const char *const *nameservers;
    size_t nnameservers;
    uint64_t timeout_ms; /* a whole request; 0: 5 s */
    /* 1: the resolver's handles do not keep the loop alive (a worker that
     * drains must not wait for a lookup) */
    int unref;
} gw_resolver_opts_t;

/* Returns NULL with a reason in ERR (a nameserver that does not parse,
 * c-ares that cannot start). */
gw_resolver_t *gw_resolver_new(uv_loop_t *loop, const gw_resolver_opts_t *o, char *err,
                               size_t errlen);

/* Ends every request without calling its callback; the memory goes once
 * libuv has closed the handles. */
void gw_resolver_free(gw_resolver_t *r);

/* Asks NAME's records of TYPE (GW_RR_*). An SRV answer also carries the
 * target addresses the server put in its additional section. Returns NULL
 * (CB never called) on bad arguments or out of memory. */
gw_resolver_req_t *gw_resolver_query(gw_resolver_t *r, const char *name, int type,
                                     gw_resolver_cb cb, void *arg);

/* NAME's addresses (A and AAAA records, or the hosts file), each with PORT
 * set. */
gw_resolver_req_t *gw_resolver_lookup(gw_resolver_t *r, const char *name, int port,
                                      gw_resolver_cb cb, void *arg);

/* The caller went away: CB is not called for REQ. */
void gw_resolver_cancel(gw_resolver_req_t *req);

/* 1 when S is an IPv4 or IPv6 literal (IPv6 without brackets). */
int gw_resolver_is_ip(const char *s);

/* Fills SA from an IP literal and PORT; -1 when S is not one. */
int gw_resolver_ip_sa(const char *s, int port, struct sockaddr_storage *sa, socklen_t *salen);

/* ---- inside the module, and for its unit tests ---- */

typedef struct {
    int status;
    const char *why;
    gw_resolver_rr_t *rrs; /* owned, with their strings */
    size_t n;
    int64_t neg_ttl;
    int qtype;
} gw_resolver_parsed_t;

/* Reads the records of type QTYPE in the answer section of the DNS message
 * MSG (and, for SRV, the A and AAAA records of the additional section, and
 * the negative TTL of an SOA in the authority section). Returns 0, or -1
 * when the message does not parse (OUT is then empty). */
int gw__resolver_parse(const unsigned char *msg, size_t len, int qtype, gw_resolver_parsed_t *out);
void gw__resolver_parsed_clear(gw_resolver_parsed_t *p);

#endif
