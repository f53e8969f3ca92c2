/*
 * Shared types of the gateway core: return codes, the string slice, the
 * request view handed to the router, the split and the balancers, and the
 * forward declarations of every module's main types.
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
#define GW_DONE -4
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

typedef struct {
    gw_str_t name;
    gw_str_t value;
} gw_header_t;

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
    gw_str_t consumer; /* set by auth plugins; empty until then */
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
