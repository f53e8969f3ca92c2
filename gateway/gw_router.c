/*
 * Route selection: host groups, a segment trie per group, ranked candidate
 * lists. See gw_router.h for the contract and docs/routing-and-canary.md
 * for the rules as operators see them.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memmem */
#endif
#define PCRE2_CODE_UNIT_WIDTH 8

#include <ctype.h>
#include <pcre2.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gw_router.h"

/* Specificity classes, higher is more specific. */
enum { CLS_ANY = 0, CLS_REGEX, CLS_PREFIX, CLS_PARAM, CLS_EXACT };

/* A predicate with its strings resolved to slices once, at build time. */
typedef struct {
    gw_str_t name;
    gw_match_op_t op;
    gw_str_t value;
    gw_str_t *values; /* op IN */
    size_t nvalues;
    pcre2_code *re; /* op REGEX */
} pred_t;

typedef struct {
    const gw_route_conf_t *conf;
    size_t pos; /* position in the array given to gw_router_new */
    size_t ord; /* global rank, 0 = best: one integer compare at match time */
    int priority;
    int cls;
    size_t spec1, spec2, spec3; /* tie-breaks inside a class, larger wins */
    unsigned methods;
    pred_t *headers;
    size_t nheaders;
    pred_t *query;
    size_t nquery;
    pcre2_code *path_re;
    gw_str_t base; /* trie routes: the path without its trailing star */
    int under;     /* also matches below base (prefix, or param with a final star) */
    gw_str_t *param_names;
    size_t nparams;
} entry_t;

/* Candidate list, kept sorted by ord. */
typedef struct {
    entry_t **v;
    size_t n, cap;
} elist_t;

/*
 * Hash index over a sorted array of keys, built once the array is final;
 * wide nodes (thousands of first segments, thousands of hosts) then cost one
 * probe instead of a binary search that misses the cache at every step.
 */
typedef struct {
    uint32_t hash;
    uint32_t pos; /* 1 + position in the array, 0 = empty slot */
} slot_t;

typedef struct {
    slot_t *slots;
    size_t mask;
} sindex_t;

/* Below this many keys a binary search is as fast as hashing. */
#define INDEX_MIN 8

typedef struct node_s node_t;
struct node_s {
    gw_str_t seg;
    node_t **kids; /* literal edges, sorted by (length, bytes) */
    size_t nkids, capkids;
    sindex_t index;
    node_t *param; /* the ':' edge, any non-empty segment */
    elist_t exact; /* routes whose path ends at this node */
    elist_t under; /* routes matching this node and everything below it */
};

typedef struct {
    node_t *root;
    elist_t side; /* regex and any-path routes, checked on every lookup */
} group_t;

typedef struct {
    gw_str_t host; /* owned lower-case copy; ".suffix" for wildcards */
    group_t g;
} hgroup_t;

typedef struct {
    hgroup_t *v;
    size_t n, cap;
    sindex_t index;
} hlist_t;

struct gw_router_s {
    entry_t *entries;
    size_t nentries;
    group_t any_host;
    hlist_t hosts; /* exact hosts, sorted */
    hlist_t wild;  /* wildcard suffixes, sorted */
    pcre2_code **owned_re;
    size_t nowned, capowned;
    pcre2_match_data *md;

    /* Per-match scratch: the router is used by one thread at a time. */
    const gw_req_view_t *req;
    const entry_t *best;
    gw_str_t caps[GW_MAX_PARAMS];
    gw_str_t best_caps[GW_MAX_PARAMS];
};

/* ---- build ------------------------------------------------------------ */

static void
set_err(char *err, size_t errlen, const gw_route_conf_t *rc, size_t i, const char *fmt, ...)
{
    if (err == NULL || errlen == 0)
        return;
    int n;
    if (rc && rc->name)
        n = snprintf(err, errlen, "routes[%zu] (%s): ", rc->index, rc->name);
    else
        n = snprintf(err, errlen, "routes[%zu]: ", rc ? rc->index : i);
    if (n < 0 || (size_t)n >= errlen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
    va_end(ap);
}

static gw_str_t
cstr(const char *s, size_t len)
{
    /* Hand-built configs may leave the length at 0: fall back to strlen. */
    if (s == NULL)
        return GW_NULL_STR;
    return (gw_str_t){s, len ? len : strlen(s)};
}

static int
seg_cmp(gw_str_t a, gw_str_t b)
{
    if (a.len != b.len)
        return a.len < b.len ? -1 : 1;
    return a.len ? memcmp(a.data, b.data, a.len) : 0;
}

static uint32_t
str_hash(gw_str_t s)
{
    /* FNV-1a: keys are short path segments and host names. */
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < s.len; i++) {
        h ^= (unsigned char)s.data[i];
        h *= 16777619u;
    }
    return h;
}

/* KEY(i) yields the i-th key of the indexed array. */
#define SINDEX_FIND(ix, key, KEY, out)                                                             \
    do {                                                                                           \
        uint32_t h_ = str_hash(key);                                                               \
        size_t i_ = h_ & (ix)->mask;                                                               \
        (out) = SIZE_MAX;                                                                          \
        while ((ix)->slots[i_].pos != 0) {                                                         \
            size_t p_ = (ix)->slots[i_].pos - 1;                                                   \
            if ((ix)->slots[i_].hash == h_ && seg_cmp(KEY(p_), (key)) == 0) {                      \
                (out) = p_;                                                                        \
                break;                                                                             \
            }                                                                                      \
            i_ = (i_ + 1) & (ix)->mask;                                                            \
        }                                                                                          \
    } while (0)

static int
sindex_build(sindex_t *ix, size_t n, gw_str_t (*key)(const void *, size_t), const void *arr)
{
    free(ix->slots);
    ix->slots = NULL;
    ix->mask = 0;
    if (n < INDEX_MIN || n >= UINT32_MAX / 4)
        return 0;
    size_t size = 16;
    while (size < n * 2)
        size *= 2;
    ix->slots = calloc(size, sizeof(*ix->slots));
    if (ix->slots == NULL)
        return -1;
    ix->mask = size - 1;
    for (size_t p = 0; p < n; p++) {
        uint32_t h = str_hash(key(arr, p));
        size_t i = h & ix->mask;
        while (ix->slots[i].pos != 0)
            i = (i + 1) & ix->mask;
        ix->slots[i] = (slot_t){h, (uint32_t)(p + 1)};
    }
    return 0;
}

/* Index of the first element not less than key in a sorted array. */
#define LOWER_BOUND(arr, n, key, field, out)                                                       \
    do {                                                                                           \
        size_t lo_ = 0, hi_ = (n);                                                                 \
        while (lo_ < hi_) {                                                                        \
            size_t mid_ = lo_ + (hi_ - lo_) / 2;                                                   \
            if (seg_cmp((arr)[mid_] field, (key)) < 0)                                             \
                lo_ = mid_ + 1;                                                                    \
            else                                                                                   \
                hi_ = mid_;                                                                        \
        }                                                                                          \
        (out) = lo_;                                                                               \
    } while (0)

static int
own_re(gw_router_t *r, pcre2_code *re)
{
    if (r->nowned == r->capowned) {
        size_t cap = r->capowned ? r->capowned * 2 : 8;
        pcre2_code **v = realloc(r->owned_re, cap * sizeof(*v));
        if (v == NULL)
            return -1;
        r->owned_re = v;
        r->capowned = cap;
    }
    r->owned_re[r->nowned++] = re;
    return 0;
}

/* Compiles PATTERN when the config did not; the router then owns it. */
static pcre2_code *
compile_re(gw_router_t *r, gw_str_t pattern, char *msg, size_t msglen)
{
    int code;
    PCRE2_SIZE off;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)(pattern.data ? pattern.data : ""), pattern.len, 0,
                                   &code, &off, NULL);
    if (re == NULL) {
        PCRE2_UCHAR buf[160];
        pcre2_get_error_message(code, buf, sizeof(buf));
        snprintf(msg, msglen, "bad regex at offset %zu: %s", (size_t)off, (char *)buf);
        return NULL;
    }
    /* Without JIT support pcre2_match falls back to the interpreter. */
    (void)pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);
    if (own_re(r, re) != 0) {
        pcre2_code_free(re);
        snprintf(msg, msglen, "out of memory");
        return NULL;
    }
    return re;
}

static int
elist_push(elist_t *l, entry_t *e)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 2;
        entry_t **v = realloc(l->v, cap * sizeof(*v));
        if (v == NULL)
            return -1;
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = e;
    return 0;
}

static void
node_free(node_t *n)
{
    if (n == NULL)
        return;
    for (size_t i = 0; i < n->nkids; i++)
        node_free(n->kids[i]);
    free(n->kids);
    free(n->index.slots);
    node_free(n->param);
    free(n->exact.v);
    free(n->under.v);
    free(n);
}

static node_t *
node_kid(node_t *n, gw_str_t seg)
{
    size_t at;
    LOWER_BOUND(n->kids, n->nkids, seg, ->seg, at);
    if (at < n->nkids && seg_cmp(n->kids[at]->seg, seg) == 0)
        return n->kids[at];
    if (n->nkids == n->capkids) {
        size_t cap = n->capkids ? n->capkids * 2 : 2;
        node_t **v = realloc(n->kids, cap * sizeof(*v));
        if (v == NULL)
            return NULL;
        n->kids = v;
        n->capkids = cap;
    }
    node_t *k = calloc(1, sizeof(*k));
    if (k == NULL)
        return NULL;
    k->seg = seg;
    memmove(&n->kids[at + 1], &n->kids[at], (n->nkids - at) * sizeof(*n->kids));
    n->kids[at] = k;
    n->nkids++;
    return k;
}

static group_t *
host_group(hlist_t *l, gw_str_t host)
{
    char *copy = malloc(host.len + 1);
    if (copy == NULL)
        return NULL;
    for (size_t i = 0; i < host.len; i++)
        copy[i] = (char)tolower((unsigned char)host.data[i]);
    copy[host.len] = '\0';
    gw_str_t key = {copy, host.len};
    size_t at;
    LOWER_BOUND(l->v, l->n, key, .host, at);
    if (at < l->n && seg_cmp(l->v[at].host, key) == 0) {
        free(copy);
        return &l->v[at].g;
    }
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 4;
        hgroup_t *v = realloc(l->v, cap * sizeof(*v));
        if (v == NULL) {
            free(copy);
            return NULL;
        }
        l->v = v;
        l->cap = cap;
    }
    memmove(&l->v[at + 1], &l->v[at], (l->n - at) * sizeof(*l->v));
    memset(&l->v[at], 0, sizeof(l->v[at]));
    l->v[at].host = key;
    l->n++;
    return &l->v[at].g;
}

/*
 * Splits a trie path into its base and its trailing star segment, counts params and
 * literal parts for ranking. Returns 0 or -1 with MSG set.
 */
static int
analyse_path(entry_t *e, char *msg, size_t msglen)
{
    const gw_route_conf_t *rc = e->conf;
    if (rc->path == NULL || rc->path[0] != '/') {
        snprintf(msg, msglen, "path must start with '/'");
        return -1;
    }
    gw_str_t p = {rc->path, strlen(rc->path)};
    int star = p.len >= 2 && p.data[p.len - 2] == '/' && p.data[p.len - 1] == '*';
    if (rc->path_kind == GW_PATH_PREFIX && !star) {
        snprintf(msg, msglen, "prefix path must end with /*");
        return -1;
    }
    if (rc->path_kind == GW_PATH_EXACT)
        star = 0;
    e->base = star ? (gw_str_t){p.data, p.len - 2} : p;
    e->under = star;

    size_t nparams = 0, lit_segs = 0, lit_chars = 0;
    if (e->base.len > 0) {
        const char *s = e->base.data + 1, *end = e->base.data + e->base.len;
        for (;;) {
            const char *slash = memchr(s, '/', (size_t)(end - s));
            const char *se = slash ? slash : end;
            if (rc->path_kind == GW_PATH_PARAM && se > s && *s == ':') {
                if (se - s == 1) {
                    snprintf(msg, msglen, "empty :param name in path");
                    return -1;
                }
                nparams++;
            } else {
                lit_segs++;
                lit_chars += (size_t)(se - s);
            }
            if (slash == NULL)
                break;
            s = slash + 1;
        }
    }
    if (nparams > GW_MAX_PARAMS) {
        snprintf(msg, msglen, "more than %d :params in path", GW_MAX_PARAMS);
        return -1;
    }
    if (nparams > 0) {
        e->param_names = calloc(nparams, sizeof(*e->param_names));
        if (e->param_names == NULL) {
            snprintf(msg, msglen, "out of memory");
            return -1;
        }
        const char *s = e->base.data + 1, *end = e->base.data + e->base.len;
        for (;;) {
            const char *slash = memchr(s, '/', (size_t)(end - s));
            const char *se = slash ? slash : end;
            if (se > s && *s == ':')
                e->param_names[e->nparams++] = (gw_str_t){s + 1, (size_t)(se - s - 1)};
            if (slash == NULL)
                break;
            s = slash + 1;
        }
    }

    switch (rc->path_kind) {
    case GW_PATH_EXACT:
        e->cls = CLS_EXACT;
        break;
    case GW_PATH_PARAM:
        e->cls = CLS_PARAM;
        e->spec1 = lit_segs;
        e->spec2 = lit_chars;
        e->spec3 = !e->under;
        break;
    default:
        e->cls = CLS_PREFIX;
        e->spec1 = e->base.len;
        break;
    }
    return 0;
}

static int
build_preds(gw_router_t *r, const gw_predicate_t *in, size_t n, pred_t **out, const char *what,
            char *msg, size_t msglen)
{
    if (n == 0)
        return 0;
    if (in == NULL) {
        snprintf(msg, msglen, "%s predicates missing", what);
        return -1;
    }
    pred_t *p = calloc(n, sizeof(*p));
    if (p == NULL) {
        snprintf(msg, msglen, "out of memory");
        return -1;
    }
    *out = p;
    for (size_t i = 0; i < n; i++) {
        const gw_predicate_t *s = &in[i];
        if (s->name == NULL || s->name[0] == '\0') {
            snprintf(msg, msglen, "%s[%zu]: missing name", what, i);
            return -1;
        }
        p[i].name = cstr(s->name, s->name_len);
        p[i].op = s->op;
        switch (s->op) {
        case GW_OP_EXISTS:
        case GW_OP_ABSENT:
            break;
        case GW_OP_EQUALS:
        case GW_OP_NOT_EQUALS:
        case GW_OP_CONTAINS:
            if (s->value == NULL) {
                snprintf(msg, msglen, "%s[%zu]: missing value", what, i);
                return -1;
            }
            p[i].value = (gw_str_t){s->value, s->value_len ? s->value_len : strlen(s->value)};
            break;
        case GW_OP_IN:
            if (s->nvalues > 0 && s->values == NULL) {
                snprintf(msg, msglen, "%s[%zu]: missing values", what, i);
                return -1;
            }
            if (s->nvalues > 0) {
                p[i].values = calloc(s->nvalues, sizeof(*p[i].values));
                if (p[i].values == NULL) {
                    snprintf(msg, msglen, "out of memory");
                    return -1;
                }
            }
            for (size_t j = 0; j < s->nvalues; j++) {
                if (s->values[j] == NULL) {
                    snprintf(msg, msglen, "%s[%zu]: values[%zu] missing", what, i, j);
                    return -1;
                }
                size_t len = s->value_lens ? s->value_lens[j] : strlen(s->values[j]);
                p[i].values[j] = (gw_str_t){s->values[j], len};
            }
            p[i].nvalues = s->nvalues;
            break;
        case GW_OP_REGEX:
            p[i].re = s->re;
            if (p[i].re == NULL) {
                if (s->value == NULL) {
                    snprintf(msg, msglen, "%s[%zu]: missing regex", what, i);
                    return -1;
                }
                char m[200];
                p[i].re = compile_re(r, cstr(s->value, s->value_len), m, sizeof(m));
                if (p[i].re == NULL) {
                    snprintf(msg, msglen, "%s[%zu]: %s", what, i, m);
                    return -1;
                }
            }
            break;
        default:
            snprintf(msg, msglen, "%s[%zu]: unknown op %d", what, i, (int)s->op);
            return -1;
        }
    }
    return 0;
}

static int
rank_cmp(const void *pa, const void *pb)
{
    const entry_t *a = *(entry_t *const *)pa, *b = *(entry_t *const *)pb;
    if (a->priority != b->priority)
        return a->priority > b->priority ? -1 : 1;
    if (a->cls != b->cls)
        return a->cls > b->cls ? -1 : 1;
    if (a->spec1 != b->spec1)
        return a->spec1 > b->spec1 ? -1 : 1;
    if (a->spec2 != b->spec2)
        return a->spec2 > b->spec2 ? -1 : 1;
    if (a->spec3 != b->spec3)
        return a->spec3 > b->spec3 ? -1 : 1;
    if (a->conf->index != b->conf->index)
        return a->conf->index < b->conf->index ? -1 : 1;
    return a->pos < b->pos ? -1 : (a->pos > b->pos);
}

static int
setup_entry(gw_router_t *r, entry_t *e, char *msg, size_t msglen)
{
    const gw_route_conf_t *rc = e->conf;
    e->priority = rc->priority;
    e->methods = rc->methods;

    if (rc->host != NULL) {
        gw_str_t h = {rc->host, strlen(rc->host)};
        int wild = rc->host_wildcard;
        if (h.len >= 2 && h.data[0] == '*' && h.data[1] == '.') {
            h.data++, h.len--;
            wild = 1;
        }
        if (h.len == 0 || (wild && (h.data[0] != '.' || h.len < 2))) {
            snprintf(msg, msglen, "bad host \"%s\"", rc->host);
            return -1;
        }
    }

    switch (rc->path_kind) {
    case GW_PATH_ANY:
        e->cls = CLS_ANY;
        break;
    case GW_PATH_REGEX:
        e->cls = CLS_REGEX;
        e->path_re = rc->path_re;
        if (e->path_re == NULL) {
            if (rc->path == NULL) {
                snprintf(msg, msglen, "regex path missing");
                return -1;
            }
            e->path_re = compile_re(r, (gw_str_t){rc->path, strlen(rc->path)}, msg, msglen);
            if (e->path_re == NULL)
                return -1;
        }
        break;
    case GW_PATH_EXACT:
    case GW_PATH_PREFIX:
    case GW_PATH_PARAM:
        if (analyse_path(e, msg, msglen) != 0)
            return -1;
        break;
    default:
        snprintf(msg, msglen, "unknown path kind %d", (int)rc->path_kind);
        return -1;
    }
    if (build_preds(r, rc->headers, rc->nheaders, &e->headers, "headers", msg, msglen) != 0)
        return -1;
    e->nheaders = rc->nheaders;
    if (build_preds(r, rc->query, rc->nquery, &e->query, "query", msg, msglen) != 0)
        return -1;
    e->nquery = rc->nquery;
    return 0;
}

static group_t *
entry_group(gw_router_t *r, const entry_t *e)
{
    const gw_route_conf_t *rc = e->conf;
    if (rc->host == NULL)
        return &r->any_host;
    gw_str_t h = {rc->host, strlen(rc->host)};
    if (h.len >= 2 && h.data[0] == '*' && h.data[1] == '.')
        return host_group(&r->wild, (gw_str_t){h.data + 1, h.len - 1});
    return host_group(rc->host_wildcard ? &r->wild : &r->hosts, h);
}

static int
insert_entry(gw_router_t *r, entry_t *e)
{
    group_t *g = entry_group(r, e);
    if (g == NULL)
        return -1;
    if (e->cls == CLS_ANY || e->cls == CLS_REGEX)
        return elist_push(&g->side, e);
    if (g->root == NULL && (g->root = calloc(1, sizeof(*g->root))) == NULL)
        return -1;
    node_t *n = g->root;
    if (e->base.len > 0) {
        const char *s = e->base.data + 1, *end = e->base.data + e->base.len;
        for (;;) {
            const char *slash = memchr(s, '/', (size_t)(end - s));
            gw_str_t seg = {s, (size_t)((slash ? slash : end) - s)};
            if (e->cls == CLS_PARAM && seg.len > 0 && seg.data[0] == ':') {
                if (n->param == NULL && (n->param = calloc(1, sizeof(*n->param))) == NULL)
                    return -1;
                n = n->param;
            } else if ((n = node_kid(n, seg)) == NULL) {
                return -1;
            }
            if (slash == NULL)
                break;
            s = slash + 1;
        }
    }
    return elist_push(e->under ? &n->under : &n->exact, e);
}

static gw_str_t
kid_key(const void *arr, size_t i)
{
    return ((node_t *const *)arr)[i]->seg;
}

static gw_str_t
host_key(const void *arr, size_t i)
{
    return ((const hgroup_t *)arr)[i].host;
}

static int
index_node(node_t *n)
{
    if (n == NULL)
        return 0;
    if (sindex_build(&n->index, n->nkids, kid_key, n->kids) != 0)
        return -1;
    for (size_t i = 0; i < n->nkids; i++) {
        if (index_node(n->kids[i]) != 0)
            return -1;
    }
    return index_node(n->param);
}

static int
index_hosts(hlist_t *l)
{
    if (sindex_build(&l->index, l->n, host_key, l->v) != 0)
        return -1;
    for (size_t i = 0; i < l->n; i++) {
        if (index_node(l->v[i].g.root) != 0)
            return -1;
    }
    return 0;
}

gw_router_t *
gw_router_new(gw_route_conf_t *routes, size_t nroutes, char *err, size_t errlen)
{
    entry_t **order = NULL;
    char msg[256];
    gw_router_t *r = calloc(1, sizeof(*r));
    if (r == NULL)
        goto oom;
    if (nroutes > 0 && routes == NULL) {
        if (err && errlen)
            snprintf(err, errlen, "router: route table missing");
        goto failed;
    }
    if (nroutes > 0) {
        r->entries = calloc(nroutes, sizeof(*r->entries));
        order = malloc(nroutes * sizeof(*order));
        if (r->entries == NULL || order == NULL)
            goto oom;
    }
    r->nentries = nroutes;
    r->md = pcre2_match_data_create(1, NULL);
    if (r->md == NULL)
        goto oom;

    for (size_t i = 0; i < nroutes; i++) {
        entry_t *e = &r->entries[i];
        e->conf = &routes[i];
        e->pos = i;
        if (setup_entry(r, e, msg, sizeof(msg)) != 0) {
            set_err(err, errlen, &routes[i], i, "%s", msg);
            goto failed;
        }
        order[i] = e;
    }
    /* Inserting in rank order leaves every candidate list sorted. */
    if (nroutes > 1)
        qsort(order, nroutes, sizeof(*order), rank_cmp);
    for (size_t i = 0; i < nroutes; i++) {
        order[i]->ord = i;
        if (insert_entry(r, order[i]) != 0)
            goto oom;
    }
    if (index_node(r->any_host.root) != 0 || index_hosts(&r->hosts) != 0 ||
        index_hosts(&r->wild) != 0)
        goto oom;
    free(order);
    return r;

oom:
    if (err && errlen)
        snprintf(err, errlen, "router: out of memory");
failed:
    free(order);
    gw_router_free(r);
    return NULL;
}

static void
group_free(group_t *g)
{
    node_free(g->root);
    free(g->side.v);
}

static void
hlist_free(hlist_t *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free((char *)l->v[i].host.data);
        group_free(&l->v[i].g);
    }
    free(l->v);
    free(l->index.slots);
}

void
gw_router_free(gw_router_t *r)
{
    if (r == NULL)
        return;
    group_free(&r->any_host);
    hlist_free(&r->hosts);
    hlist_free(&r->wild);
    for (size_t i = 0; i < r->nentries; i++) {
        entry_t *e = &r->entries[i];
        for (size_t j = 0; e->headers && j < e->nheaders; j++)
            free(e->headers[j].values);
        for (size_t j = 0; e->query && j < e->nquery; j++)
            free(e->query[j].values);
        free(e->headers);
        free(e->query);
        free(e->param_names);
    }
    free(r->entries);
    for (size_t i = 0; i < r->nowned; i++)
        pcre2_code_free(r->owned_re[i]);
    free(r->owned_re);
    pcre2_match_data_free(r->md);
    free(r);
}

/* ---- match ------------------------------------------------------------ */

const gw_header_t *
gw_header_get(const gw_req_view_t *req, gw_str_t name)
{
    for (size_t i = 0; i < req->nheaders; i++) {
        if (gw_str_caseeq(req->headers[i].name, name))
            return &req->headers[i];
    }
    return NULL;
}

int
gw_query_get(gw_str_t query, gw_str_t name, gw_str_t *value)
{
    const char *p = query.data, *end = query.data + query.len;
    while (query.len > 0 && p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *pe = amp ? amp : end;
        const char *eq = memchr(p, '=', (size_t)(pe - p));
        const char *ne = eq ? eq : pe;
        if (pe > p && gw_str_eq((gw_str_t){p, (size_t)(ne - p)}, name)) {
            if (value)
                *value = eq ? (gw_str_t){eq + 1, (size_t)(pe - eq - 1)} : (gw_str_t){pe, 0};
            return 1;
        }
        if (amp == NULL)
            break;
        p = amp + 1;
    }
    return 0;
}

int
gw_router_strip_prefix(const gw_route_conf_t *route, gw_str_t path, gw_str_t *out)
{
    *out = path;
    if (route == NULL || route->strip_prefix == NULL)
        return 0;
    gw_str_t sp = cstr(route->strip_prefix, route->strip_prefix_len);
    /* A trailing '/' in the prefix is the boundary itself. */
    while (sp.len > 0 && sp.data[sp.len - 1] == '/')
        sp.len--;
    if (sp.len == 0 || path.len < sp.len || memcmp(path.data, sp.data, sp.len) != 0)
        return 0;
    if (path.len > sp.len && path.data[sp.len] != '/')
        return 0;
    if (path.len == sp.len)
        *out = GW_STR("/");
    else
        *out = (gw_str_t){path.data + sp.len, path.len - sp.len};
    return 1;
}

size_t
gw_router_upstream_path(const gw_route_conf_t *route, const gw_param_t *params, size_t nparams,
                        char *buf)
{
    size_t n = 0;
    for (size_t i = 0; i < route->nupath; i++) {
        const gw_upath_part_t *part = &route->upath[i];
        gw_str_t s = part->lit               ? (gw_str_t){part->lit, part->len}
                     : part->param < nparams ? params[part->param].value
                                             : GW_NULL_STR;
        if (buf && s.len)
            memcpy(buf + n, s.data, s.len);
        n += s.len;
    }
    return n;
}

static int
re_match(gw_router_t *r, pcre2_code *re, gw_str_t s)
{
    const char *d = s.data ? s.data : "";
    return pcre2_match(re, (PCRE2_SPTR)d, s.len, 0, 0, r->md, NULL) >= 0;
}

static int
pred_passes(gw_router_t *r, const pred_t *p, int found, gw_str_t v)
{
    switch (p->op) {
    case GW_OP_EXISTS:
        return found;
    case GW_OP_ABSENT:
        return !found;
    case GW_OP_EQUALS:
        return found && gw_str_eq(v, p->value);
    case GW_OP_NOT_EQUALS:
        return !found || !gw_str_eq(v, p->value);
    case GW_OP_CONTAINS:
        return found &&
               (p->value.len == 0 || (v.len >= p->value.len &&
                                      memmem(v.data, v.len, p->value.data, p->value.len) != NULL));
    case GW_OP_IN:
        if (!found)
            return 0;
        for (size_t i = 0; i < p->nvalues; i++) {
            if (gw_str_eq(v, p->values[i]))
                return 1;
        }
        return 0;
    case GW_OP_REGEX:
        return found && re_match(r, p->re, v);
    }
    return 0;
}

static int
entry_passes(gw_router_t *r, const entry_t *e)
{
    const gw_req_view_t *req = r->req;
    if (e->methods && !(e->methods & req->method))
        return 0;
    for (size_t i = 0; i < e->nheaders; i++) {
        const gw_header_t *h = gw_header_get(req, e->headers[i].name);
        if (!pred_passes(r, &e->headers[i], h != NULL, h ? h->value : GW_NULL_STR))
            return 0;
    }
    for (size_t i = 0; i < e->nquery; i++) {
        gw_str_t v = GW_NULL_STR;
        int found = gw_query_get(req->query, e->query[i].name, &v);
        if (!pred_passes(r, &e->query[i], found, v))
            return 0;
    }
    if (e->path_re && !re_match(r, e->path_re, req->path))
        return 0;
    return 1;
}

/* The first candidate that beats the current best and passes wins here. */
static void
consider(gw_router_t *r, const elist_t *l, size_t ncaps)
{
    for (size_t i = 0; i < l->n; i++) {
        const entry_t *e = l->v[i];
        if (r->best && e->ord >= r->best->ord)
            return;
        if (entry_passes(r, e)) {
            r->best = e;
            memcpy(r->best_caps, r->caps, ncaps * sizeof(*r->caps));
            return;
        }
    }
}

static const node_t *
find_kid(const node_t *n, gw_str_t seg)
{
    size_t at;
    if (n->index.slots) {
#define KID_KEY(i) (n->kids[i]->seg)
        SINDEX_FIND(&n->index, seg, KID_KEY, at);
#undef KID_KEY
        return at == SIZE_MAX ? NULL : n->kids[at];
    }
    LOWER_BOUND(n->kids, n->nkids, seg, ->seg, at);
    if (at < n->nkids && seg_cmp(n->kids[at]->seg, seg) == 0)
        return n->kids[at];
    return NULL;
}

/*
 * NODE was reached by consuming req->path up to REST. Each trie node has a
 * single path from the root, so a lookup visits a node at most once, and the
 * recursion depth is bounded by the depth of the trie, not by the request.
 */
static void
walk(gw_router_t *r, const node_t *node, size_t rest, size_t ncaps)
{
    const char *p = r->req->path.data;
    size_t n = r->req->path.len;
    if (rest == n) {
        consider(r, &node->exact, ncaps);
        consider(r, &node->under, ncaps);
        return;
    }
    consider(r, &node->under, ncaps);
    if (node->nkids == 0 && node->param == NULL)
        return;
    size_t start = rest + 1;
    const char *slash = memchr(p + start, '/', n - start);
    size_t end = slash ? (size_t)(slash - p) : n;
    gw_str_t seg = {p + start, end - start};
    const node_t *kid = find_kid(node, seg);
    if (kid)
        walk(r, kid, end, ncaps);
    if (node->param && seg.len > 0 && ncaps < GW_MAX_PARAMS) {
        r->caps[ncaps] = seg;
        walk(r, node->param, end, ncaps + 1);
    }
}

static void
match_group(gw_router_t *r, const group_t *g)
{
    const gw_str_t path = r->req->path;
    if (g->root && path.len > 0 && path.data[0] == '/')
        walk(r, g->root, 0, 0);
    consider(r, &g->side, 0);
}

static const group_t *
find_host(const hlist_t *l, gw_str_t host)
{
    size_t at;
    if (l->index.slots) {
#define HOST_KEY(i) (l->v[i].host)
        SINDEX_FIND(&l->index, host, HOST_KEY, at);
#undef HOST_KEY
        return at == SIZE_MAX ? NULL : &l->v[at].g;
    }
    LOWER_BOUND(l->v, l->n, host, .host, at);
    if (at < l->n && seg_cmp(l->v[at].host, host) == 0)
        return &l->v[at].g;
    return NULL;
}

const gw_route_conf_t *
gw_router_match(gw_router_t *r, const gw_req_view_t *req, gw_param_t *params, size_t *nparams)
{
    const group_t *g;
    r->req = req;
    r->best = NULL;
    gw_str_t host = req->host;
    if (host.len > 0 && r->hosts.n > 0 && (g = find_host(&r->hosts, host)) != NULL)
        match_group(r, g);
    /* "*.example.com" matches every host with at least one label before ".example.com". */
    for (size_t i = 1; r->wild.n > 0 && i < host.len; i++) {
        if (host.data[i] == '.' &&
            (g = find_host(&r->wild, (gw_str_t){host.data + i, host.len - i})) != NULL)
            match_group(r, g);
    }
    match_group(r, &r->any_host);

    const entry_t *e = r->best;
    r->req = NULL;
    size_t np = e ? e->nparams : 0;
    if (params) {
        for (size_t i = 0; i < np; i++)
            params[i] = (gw_param_t){e->param_names[i], r->best_caps[i]};
    }
    if (nparams)
        *nparams = np;
    return e ? e->conf : NULL;
}
