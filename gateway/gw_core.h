/*
 * Shared types of the gateway core: return codes, the string slice, the
 * request view handed to the router, the split and the balancers, the
 * growable buffer and the intrusive list, and the forward declarations of
 * every module's main types. It includes nothing of the gateway: every
 * module may use it, leaf modules (redis, limit) without the HTTP helpers
 * or the worker.
 */
#ifndef GW_CORE_H
#define GW_CORE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Return codes share nginx's values so that Lua can reuse them. */
#define GW_OK 0
#define GW_ERROR -1
#define GW_AGAIN -2
#define GW_DECLINED -5

#define GW_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* A slice: never owns its bytes, never NUL-terminated unless said so. */
typedef struct {
    const char *data;
    size_t len;
} gw_str_t;

#define GW_STR(lit) ((gw_str_t){(lit), sizeof(lit) - 1})
#define GW_NULL_STR ((gw_str_t){NULL, 0})

static inline int
gw_str_eq(gw_str_t a, gw_str_t b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.data, b.data, a.len) == 0);
}

/* splitmix64: a full-period sequence from any seed (0 included); fast and
 * good enough for ids, jitter and weights, never for secrets. */
static inline uint64_t
gw_rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Eight bytes at a time: x with the ASCII capitals of each byte made lower
 * case, every other byte value left as it is. The additions cannot carry
 * out of a byte because the high bits are cleared first. */
static inline uint64_t
gw_ascii_lower8(uint64_t x)
{
    uint64_t low7 = x & 0x7f7f7f7f7f7f7f7fULL;
    uint64_t ge_a = low7 + 0x3f3f3f3f3f3f3f3fULL; /* bit 7 set where byte >= 'A' */
    uint64_t gt_z = low7 + 0x2525252525252525ULL; /* bit 7 set where byte > 'Z' */
    uint64_t upper = ge_a & ~gt_z & ~x & 0x8080808080808080ULL;
    return x | (upper >> 2); /* 0x80 >> 2 is the case bit, 0x20 */
}

/* Up to eight bytes as a little word; the bytes not read are zero. */
static inline uint64_t
gw_load_upto8(const char *p, size_t n)
{
    uint64_t x = 0;
    if (n >= 8) {
        memcpy(&x, p, 8);
        return x;
    }
    for (size_t i = 0; i < n; i++)
        x |= (uint64_t)(unsigned char)p[i] << (8 * i);
    return x;
}

/* Nonzero when some byte of x is a control character: below 0x20, or
 * 0x7f. Exact as a yes/no; which byte it was takes a look at each. */
static inline uint64_t
gw_ctl8(uint64_t x)
{
    const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
    uint64_t del = x ^ (0x7f * ones);
    return ((x - 0x20 * ones) & ~x & highs) | ((del - ones) & ~del & highs);
}

/* ASCII case-insensitive equality: header names and tokens are ASCII,
 * and locale-aware strncasecmp costs more than the comparison itself.
 * Inline: it runs a dozen times per request. */
static inline int
gw_str_caseeq(gw_str_t a, gw_str_t b)
{
    if (a.len != b.len)
        return 0;
    for (size_t i = 0; i < a.len; i++) {
        unsigned char x = (unsigned char)a.data[i], y = (unsigned char)b.data[i];
        if (x == y)
            continue;
        x |= 0x20;
        if (x != (y | 0x20) || x < 'a' || x > 'z')
            return 0;
    }
    return 1;
}

/* The same against a lower-case literal (GW_STR("content-length")), a
 * word at a time: the literal needs no folding, and with its length known
 * at the call the loop unrolls into two or three compares. */
static inline __attribute__((always_inline)) int
gw_str_caseeq_lc(gw_str_t a, gw_str_t lc)
{
    if (a.len != lc.len)
        return 0;
    size_t n = a.len, i = 0;
    if (n < 8)
        return gw_ascii_lower8(gw_load_upto8(a.data, n)) == gw_load_upto8(lc.data, n);
    for (; i + 8 <= n; i += 8)
        if (gw_ascii_lower8(gw_load_upto8(a.data + i, 8)) != gw_load_upto8(lc.data + i, 8))
            return 0;
    /* the last, partial word again as the last eight bytes */
    return i == n ||
           gw_ascii_lower8(gw_load_upto8(a.data + n - 8, 8)) == gw_load_upto8(lc.data + n - 8, 8);
}

/* A growable output buffer; `data` is malloc'd and owned. */
typedef struct {
    char *data;
    size_t len;
    size_t cap;
} gw_buf_t;

void gw_buf_grow(gw_buf_t *b, size_t extra);

static inline void
gw_buf_reserve(gw_buf_t *b, size_t extra)
{
    if (b->len + extra > b->cap)
        gw_buf_grow(b, extra);
}

/* Appends without a capacity check: after gw_buf_reserve() covered it. */
static inline void
gw_buf_put(gw_buf_t *b, const void *p, size_t n)
{
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

static inline void
gw_buf_puts(gw_buf_t *b, gw_str_t s)
{
    gw_buf_put(b, s.data, s.len);
}

#define GW_BUF_PUT_LIT(b, lit) gw_buf_put((b), (lit), sizeof(lit) - 1)
void gw_buf_append(gw_buf_t *b, const void *p, size_t n);
void gw_buf_appends(gw_buf_t *b, gw_str_t s);
void gw_buf_appendf(gw_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void gw_buf_free(gw_buf_t *b);

/* V in decimal at OUT (at least 20 bytes), not terminated; returns the
 * length. For hot paths where printf's format parsing costs too much. */
size_t gw_fmt_u64(char *out, uint64_t v);

/* Intrusive doubly-linked list. Here rather than in gw_worker.h so that
 * leaf modules (redis) can keep their queues without the worker. */
typedef struct gw_link_s {
    struct gw_link_s *prev, *next;
} gw_link_t;

static inline void
gw_list_init(gw_link_t *h)
{
    h->prev = h->next = h;
}

static inline int
gw_list_empty(const gw_link_t *h)
{
    return h->next == h;
}

static inline void
gw_list_push(gw_link_t *h, gw_link_t *l)
{
    l->next = h;
    l->prev = h->prev;
    h->prev->next = l;
    h->prev = l;
}

static inline void
gw_list_remove(gw_link_t *l)
{
    l->prev->next = l->next;
    l->next->prev = l->prev;
    l->prev = l->next = l;
}

#define GW_CONTAINER_OF(p, type, field) ((type *)((char *)(p)-offsetof(type, field)))

typedef struct {
    gw_str_t name;
    gw_str_t value;
} gw_header_t;

/* Header lines one head may carry, a request's or a response's. */
#define GW_MAX_HEADERS 128

/* Methods as a bit set, so a route can hold several. */
enum {
    GW_M_GET = 1 << 0,
    GW_M_HEAD = 1 << 1,
    GW_M_POST = 1 << 2,
    GW_M_PUT = 1 << 3,
    GW_M_DELETE = 1 << 4,
    GW_M_PATCH = 1 << 5,
    GW_M_OPTIONS = 1 << 6,
    GW_M_TRACE = 1 << 7,
    GW_M_CONNECT = 1 << 8,
    GW_M_OTHER = 1 << 9,
};

/*
 * What the router, the split rules and the key extractors may look at.
 * Every slice points into the connection buffer or the request arena and
 * lives as long as the request. `path` is the normalised path without the
 * query; `query` is the raw text after '?', without it.
 */
typedef struct {
    unsigned method;
    gw_str_t method_name;
    gw_str_t host; /* lower-cased, without port */
    gw_str_t path;
    gw_str_t query;
    const gw_header_t *headers;
    size_t nheaders;
    gw_str_t remote_ip;
    gw_str_t tls_client_dn; /* mTLS: the verified client certificate's subject, else empty */
    unsigned tls : 1;       /* came over a TLS listener */
    gw_str_t consumer;      /* set by auth plugins; empty until then */
    /* Variables plugins set (var:NAME); may be NULL. */
    const gw_header_t *vars;
    size_t nvars;
} gw_req_view_t;

typedef struct gw_conf_s gw_conf_t;
typedef struct gw_route_conf_s gw_route_conf_t;
typedef struct gw_upstream_conf_s gw_upstream_conf_t;
typedef struct gw_node_conf_s gw_node_conf_t;
typedef struct gw_router_s gw_router_t;
typedef struct gw_balancer_s gw_balancer_t;
typedef struct gw_node_s gw_node_t;
typedef struct gw_metrics_s gw_metrics_t;
typedef struct gw_worker_s gw_worker_t;

#endif
