/* Canary split decisions and request key extraction. */
#include <string.h>

#include "gw_split.h"

uint32_t
gw_fnv1a32(const void *data, size_t len)
{
    const unsigned char *p = data;
    uint32_t h = 2166136261u;

    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 16777619u;
    }
    return h;
}

/*
 * Kept local on purpose: the router has its own lookup, and the split must
 * not depend on router internals to stay a pure function of the view.
 */
static const gw_header_t *
find_header(const gw_req_view_t *req, const char *name, size_t name_len)
{
    gw_str_t want = {name, name_len};

    if (req->headers == NULL)
        return NULL;
    for (size_t i = 0; i < req->nheaders; i++) {
        if (gw_str_caseeq(req->headers[i].name, want))
            return &req->headers[i];
    }
    return NULL;
}

static int
is_ows(char c)
{
    return c == ' ' || c == '\t';
}

static gw_str_t
trim_ows(const char *p, const char *end)
{
    while (p < end && is_ows(*p))
        p++;
    while (end > p && is_ows(end[-1]))
        end--;
    return (gw_str_t){p, (size_t)(end - p)};
}

/* Looks for NAME among "a=1; b=2" pairs; -1 not found, else 1 and *value. */
static int
cookie_in(gw_str_t header, gw_str_t name, gw_str_t *value)
{
    const char *p = header.data, *end = header.data + header.len;

    while (p < end) {
        const char *semi = memchr(p, ';', (size_t)(end - p));
        const char *stop = semi ? semi : end;
        const char *eq = memchr(p, '=', (size_t)(stop - p));

        if (eq != NULL) {
            gw_str_t n = trim_ows(p, eq);
            if (gw_str_eq(n, name)) {
                gw_str_t v = trim_ows(eq + 1, stop);
                /* RFC 6265 allows a DQUOTE-wrapped value; the quotes are not part of it. */
                if (v.len >= 2 && v.data[0] == '"' && v.data[v.len - 1] == '"') {
                    v.data++;
                    v.len -= 2;
                }
                *value = v;
                return 1;
            }
        }
        p = stop + 1;
    }
    return -1;
}

static int
find_cookie(const gw_req_view_t *req, gw_str_t name, gw_str_t *value)
{
    static const gw_str_t cookie = {"Cookie", 6};

    if (req->headers == NULL)
        return 0;
    for (size_t i = 0; i < req->nheaders; i++) {
        if (!gw_str_caseeq(req->headers[i].name, cookie))
            continue;
        if (req->headers[i].value.data == NULL)
            continue;
        if (cookie_in(req->headers[i].value, name, value) == 1)
            return 1;
    }
    return 0;
}

static int
find_query(gw_str_t query, gw_str_t name, gw_str_t *value)
{
    const char *p = query.data, *end = query.data + query.len;

    if (query.data == NULL)
        return 0;
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *stop = amp ? amp : end;
        const char *eq = memchr(p, '=', (size_t)(stop - p));
        gw_str_t n = {p, (size_t)((eq ? eq : stop) - p)};

        if (gw_str_eq(n, name)) {
            *value = eq ? (gw_str_t){eq + 1, (size_t)(stop - eq - 1)} : (gw_str_t){stop, 0};
            return 1;
        }
        p = stop + 1;
    }
    return 0;
}

static int
find_var(const gw_req_view_t *req, gw_str_t name, gw_str_t *value)
{
    if (req->vars == NULL)
        return 0;
    for (size_t i = 0; i < req->nvars; i++) {
        if (gw_str_eq(req->vars[i].name, name)) {
            *value = req->vars[i].value;
            return 1;
        }
    }
    return 0;
}

int
gw_keyspec_extract(const gw_keyspec_t *spec, const gw_req_view_t *req, gw_str_t *out)
{
    gw_str_t v = GW_NULL_STR;
    gw_str_t name;
    const gw_header_t *h;
    int found = 0;

    if (out != NULL)
        *out = GW_NULL_STR;
    if (spec == NULL || req == NULL || out == NULL)
        return 0;

    name = (gw_str_t){spec->name, spec->name ? spec->name_len : 0};
    switch (spec->kind) {
    case GW_KEY_HEADER:
        if (spec->name != NULL && (h = find_header(req, spec->name, spec->name_len)) != NULL) {
            v = h->value;
            found = 1;
        }
        break;
    case GW_KEY_COOKIE:
        found = spec->name != NULL && find_cookie(req, name, &v);
        break;
    case GW_KEY_QUERY:
        found = spec->name != NULL && find_query(req->query, name, &v);
        break;
    case GW_KEY_IP:
        v = req->remote_ip;
        found = 1;
        break;
    case GW_KEY_CONSUMER:
        v = req->consumer;
        found = 1;
        break;
    case GW_KEY_VAR:
        found = spec->name != NULL && find_var(req, name, &v);
        break;
    case GW_KEY_NONE:
    default:
        break;
    }

    if (!found || v.data == NULL || v.len == 0)
        return 0;
    *out = v;
    return 1;
}

static int
rule_matches(const gw_split_rule_t *rule, const gw_req_view_t *req, uint32_t rand100)
{
    const gw_header_t *h;
    gw_str_t key;

    switch (rule->kind) {
    case GW_SPLIT_HEADER:
        if (rule->header_name == NULL)
            return 0;
        h = find_header(req, rule->header_name, rule->header_name_len);
        if (h == NULL)
            return 0;
        if (rule->header_value == NULL)
            return 1;
        return gw_str_eq(h->value, (gw_str_t){rule->header_value, rule->header_value_len});
    case GW_SPLIT_USER_HASH:
        if (rule->percent <= 0 || !gw_keyspec_extract(&rule->key, req, &key))
            return 0;
        return (int)(gw_fnv1a32(key.data, key.len) % 100u) < rule->percent;
    case GW_SPLIT_WEIGHT:
        return rule->percent > 0 && (int64_t)rand100 < (int64_t)rule->percent;
    default:
        return 0;
    }
}

int
gw_split_choose(const gw_route_conf_t *route, const gw_req_view_t *req, uint32_t rand100)
{
    if (route == NULL || req == NULL || route->split == NULL)
        return -1;
    for (size_t i = 0; i < route->nsplit; i++) {
        if (rule_matches(&route->split[i], req, rand100))
            return (int)i;
    }
    return -1;
}
