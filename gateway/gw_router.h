/*
 * The router: picks the route for a request view.
 *
 * Built once per worker from the compiled route table. Literal path parts
 * (exact, prefix and :param paths) go into a segment trie, so a lookup walks
 * the request path once whatever the number of routes; routes are first
 * split by host (exact host, "*.suffix", no host). Regex and any-path routes
 * sit on a short side list per host group. Candidate lists are ranked at
 * build time, so a match mostly stops at the first candidate whose
 * predicates pass.
 *
 * A router is used by one thread at a time: it keeps its PCRE2 match data
 * and capture scratch inside itself, so matching never allocates.
 */
#ifndef GW_ROUTER_H
#define GW_ROUTER_H

#include <stddef.h>

#include "gw_config.h"
#include "gw_core.h"

/** A captured :param: name is a slice of the route's path, value a slice of the request path. */
typedef struct {
    gw_str_t name;
    gw_str_t value;
} gw_param_t;

/** Most :params a path may declare; longer patterns are refused by gw_router_new(). */
#define GW_MAX_PARAMS 16

/**
 * Builds a router over ROUTES[0..NROUTES).
 *
 * The router keeps pointers into ROUTES (paths, names, compiled regexes), so
 * the routes must outlive it. Regexes are used as compiled by the config
 * (path_re, predicate re); when one is NULL the router compiles the pattern
 * itself and owns the result.
 *
 * Returns NULL on failure with a one-line reason in ERR ("routes[3] (users):
 * path must start with '/'"); ERR may be NULL.
 */
gw_router_t *gw_router_new(gw_route_conf_t *routes, size_t nroutes, char *err, size_t errlen);

/** Frees the router and everything it owns; NULL is a no-op. The routes are untouched. */
void gw_router_free(gw_router_t *r);

/**
 * The best route for REQ, or NULL when none matches.
 *
 * Among the routes whose host, path, methods, header and query predicates
 * all match: the highest priority wins, then the most specific path
 * (exact > :param > prefix > regex > any; longer prefixes and params with
 * more literal segments first), then the lowest config index.
 *
 * PARAMS may be NULL; otherwise it must hold GW_MAX_PARAMS entries and
 * receives the winner's :param values (slices of req->path). *NPARAMS
 * (may be NULL) is set to their number, 0 when there is no match.
 * Never allocates.
 */
const gw_route_conf_t *gw_router_match(gw_router_t *r, const gw_req_view_t *req, gw_param_t *params,
                                       size_t *nparams);

/**
 * The path to send upstream once ROUTE's strip_prefix is removed.
 *
 * The prefix is stripped only on a segment boundary ("/api" strips
 * "/api" and "/api/x", never "/apix"); an empty remainder becomes "/".
 * Without strip_prefix, or when PATH does not start with it, *OUT = PATH.
 * *OUT is a slice of PATH (or the literal "/"). Returns 1 if something was
 * stripped, else 0.
 */
int gw_router_strip_prefix(const gw_route_conf_t *route, gw_str_t path, gw_str_t *out);

/**
 * ROUTE's upstream_path with PARAMS (the match's :params, in path order)
 * put in place of its {name}s, values as they are in the request path.
 *
 * Writes into BUF, which must hold the returned length; BUF NULL only
 * measures. A route without upstream_path gives 0.
 */
size_t gw_router_upstream_path(const gw_route_conf_t *route, const gw_param_t *params,
                               size_t nparams, char *buf);

/**
 * The first value of NAME in a raw query string ("a=1&b=&c").
 *
 * Names are compared byte for byte, without %-decoding; the value is
 * returned raw. A parameter without '=' has an empty value. Returns 1 when
 * found (*VALUE set, possibly empty, may be NULL), 0 when absent.
 */
int gw_query_get(gw_str_t query, gw_str_t name, gw_str_t *value);

/** The first header named NAME (case-insensitive), or NULL. */
const gw_header_t *gw_header_get(const gw_req_view_t *req, gw_str_t name);

#endif
