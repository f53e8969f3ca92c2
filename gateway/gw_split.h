/*
 * Canary split decisions: which split rule of a route, if any, takes a
 * request, and the key extractors shared with consistent hashing.
 *
 * Everything here is a pure function of the compiled config and the request
 * view: no state, no allocation, so the same request gets the same answer in
 * every worker and on every gateway instance (the weight rule aside, whose
 * draw the caller makes).
 */
#ifndef GW_SPLIT_H
#define GW_SPLIT_H

#include <stddef.h>
#include <stdint.h>

#include "gw_config.h"
#include "gw_core.h"

/**
 * FNV-1a, 32 bits, over DATA[0..LEN): offset basis 2166136261, prime
 * 16777619, xor each byte then multiply. Equal to Go's hash/fnv New32a().
 * DATA may be NULL when LEN is 0.
 */
uint32_t gw_fnv1a32(const void *data, size_t len);

/**
 * Extracts the key SPEC names from REQ:
 *   header:N  the first header named N (name compared case-insensitively)
 *   cookie:N  cookie N from the Cookie header(s), surrounding double quotes stripped
 *   query:N   the raw (not percent-decoded) value of parameter N in req->query
 *   ip        req->remote_ip
 *   consumer  req->consumer
 *   var:N     the variable N (exact name) in req->vars
 * The first occurrence decides. Returns 1 and sets *OUT (a slice into the
 * request) when the key is present and non-empty; 0 otherwise, leaving *OUT
 * empty. NULL arguments and GW_KEY_NONE give 0.
 */
int gw_keyspec_extract(const gw_keyspec_t *spec, const gw_req_view_t *req, gw_str_t *out);

/**
 * The index in route->split of the first rule that matches REQ, or -1 when
 * none does (the route's own upstream takes the request).
 *   header     the header is present (first occurrence) and, when the rule
 *              has a value, equal to it byte for byte
 *   user_hash  the key is present and gw_fnv1a32(key) % 100 < percent
 *   weight     RAND100 < percent
 * RAND100 is a uniform value in [0, 100) the caller draws once per request.
 */
int gw_split_choose(const gw_route_conf_t *route, const gw_req_view_t *req, uint32_t rand100);

#endif
