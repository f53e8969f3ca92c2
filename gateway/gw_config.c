/*
 * YAML (libyaml) to gw_conf_t. The YAML is first read into a small tree of
 * maps, lists and scalars; one compile function per section then walks it,
 * checks every key and fills the C structures. Every problem is recorded
 * with its YAML path and compilation goes on, so that one run of `-t` lists
 * all of them.
 */
#define PCRE2_CODE_UNIT_WIDTH 8

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pcre2.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#include "gw_config.h"
#include "gw_http.h"
#include "gw_tls_client.h"

#define PATHLEN 512
/* Deeper than any sane config; bounds the recursion of the tree builder. */
#define MAX_DEPTH 64
#define MAX_WORKERS 1024

/* ---- allocation ---------------------------------------------------------- */

/* Config loading is not a place to recover from out-of-memory. */
static void *
xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (p == NULL) {
        fputs("gateway: out of memory\n", stderr);
        abort();
    }
    return p;
}

static void *
xrealloc(void *p, size_t size)
{
    p = realloc(p, size ? size : 1);
    if (p == NULL) {
        fputs("gateway: out of memory\n", stderr);
        abort();
    }
    return p;
}

static char *
xstrdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = xcalloc(1, n);
    memcpy(d, s, n);
    return d;
}

/* ---- the YAML tree ------------------------------------------------------- */

typedef enum { YN_SCALAR, YN_MAP, YN_SEQ } ykind_t;

typedef struct ynode_s ynode_t;
struct ynode_s {
    ykind_t kind;
    int plain; /* unquoted scalar: only these can be null */
    size_t line, col;
    char *str; /* scalar text, NUL-terminated */
    size_t len;
    ynode_t **keys; /* map keys (scalars) */
    ynode_t **vals; /* map values or list items */
    size_t n, cap;
};

typedef struct {
    const char *name; /* file name, for messages */
    gw_conf_errors_t *errs;
    size_t nerr;
    gw_conf_t *conf;
    int has_tls_certs;
} cctx_t;

static void
ynode_free(ynode_t *n)
{
    if (n == NULL)
        return;
    for (size_t i = 0; i < n->n; i++) {
        if (n->keys)
            ynode_free(n->keys[i]);
        ynode_free(n->vals[i]);
    }
    free(n->keys);
    free(n->vals);
    free(n->str);
    free(n);
}

static void
add_line(cctx_t *c, const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    c->nerr++;
    if (c->errs == NULL || n < 0)
        return;
    char *line = xcalloc(1, (size_t)n + 1);
    vsnprintf(line, (size_t)n + 1, fmt, ap);
    c->errs->lines = xrealloc(c->errs->lines, (c->errs->n + 1) * sizeof(char *));
    c->errs->lines[c->errs->n++] = line;
}

static void
raw_err(cctx_t *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    add_line(c, fmt, ap);
    va_end(ap);
}

/* "path: message"; an empty path stands for the whole file. */
static void
cerr(cctx_t *c, const char *path, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    raw_err(c, "%s: %s", path[0] ? path : c->name, msg);
}

/* Like cerr, but the config stays valid: conf->warnings. */
static void
cwarn(cctx_t *c, const char *path, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    size_t len = strlen(path) + 2 + strlen(msg) + 1;
    char *line = xcalloc(1, len);
    snprintf(line, len, "%s: %s", path, msg);
    gw_conf_t *conf = c->conf;
    conf->warnings = xrealloc(conf->warnings, (conf->nwarnings + 1) * sizeof(char *));
    conf->warnings[conf->nwarnings++] = line;
}

static void
mark_err(cctx_t *c, yaml_mark_t m, const char *what, const char *detail)
{
    raw_err(c, "%s:%zu:%zu: %s%s%s", c->name, (size_t)m.line + 1, (size_t)m.column + 1, what,
            detail ? " " : "", detail ? detail : "");
}

static ynode_t *
ynode_new(ykind_t kind, yaml_mark_t m)
{
    ynode_t *n = xcalloc(1, sizeof(*n));
    n->kind = kind;
    n->line = m.line + 1;
    n->col = m.column + 1;
    return n;
}

static void
ynode_push(ynode_t *n, ynode_t *key, ynode_t *val)
{
    if (n->n == n->cap) {
        n->cap = n->cap ? n->cap * 2 : 4;
        n->vals = xrealloc(n->vals, n->cap * sizeof(ynode_t *));
        if (n->kind == YN_MAP)
            n->keys = xrealloc(n->keys, n->cap * sizeof(ynode_t *));
    }
    if (n->kind == YN_MAP)
        n->keys[n->n] = key;
    n->vals[n->n++] = val;
}

static int
next_event(cctx_t *c, yaml_parser_t *p, yaml_event_t *ev)
{
    if (yaml_parser_parse(p, ev))
        return GW_OK;
    mark_err(c, p->problem_mark, p->problem ? p->problem : "YAML syntax error", p->context);
    return GW_ERROR;
}

/* Takes ownership of ev. Returns NULL after reporting an error. */
static ynode_t *
build(cctx_t *c, yaml_parser_t *p, yaml_event_t *ev, int depth)
{
    ynode_t *n = NULL;
    yaml_event_t sub;

    if (depth > MAX_DEPTH) {
        mark_err(c, ev->start_mark, "nesting too deep", NULL);
        yaml_event_delete(ev);
        return NULL;
    }

    switch (ev->type) {
    case YAML_SCALAR_EVENT:
        n = ynode_new(YN_SCALAR, ev->start_mark);
        n->len = ev->data.scalar.length;
        n->str = xcalloc(1, n->len + 1);
        memcpy(n->str, ev->data.scalar.value, n->len);
        n->plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
        if (strlen(n->str) != n->len) {
            mark_err(c, ev->start_mark, "a string contains a NUL byte", NULL);
            ynode_free(n);
            n = NULL;
        }
        yaml_event_delete(ev);
        return n;

    case YAML_ALIAS_EVENT:
        mark_err(c, ev->start_mark, "aliases (*name) are not supported", NULL);
        yaml_event_delete(ev);
        return NULL;

    case YAML_SEQUENCE_START_EVENT:
        n = ynode_new(YN_SEQ, ev->start_mark);
        yaml_event_delete(ev);
        for (;;) {
            if (next_event(c, p, &sub) != GW_OK)
                goto failed;
            if (sub.type == YAML_SEQUENCE_END_EVENT) {
                yaml_event_delete(&sub);
                return n;
            }
            ynode_t *item = build(c, p, &sub, depth + 1);
            if (item == NULL)
                goto failed;
            ynode_push(n, NULL, item);
        }

    case YAML_MAPPING_START_EVENT:
        n = ynode_new(YN_MAP, ev->start_mark);
        yaml_event_delete(ev);
        for (;;) {
            if (next_event(c, p, &sub) != GW_OK)
                goto failed;
            if (sub.type == YAML_MAPPING_END_EVENT) {
                yaml_event_delete(&sub);
                return n;
            }
            yaml_mark_t km = sub.start_mark;
            ynode_t *key = build(c, p, &sub, depth + 1);
            if (key == NULL)
                goto failed;
            if (key->kind != YN_SCALAR) {
                mark_err(c, km, "map keys must be strings", NULL);
                ynode_free(key);
                goto failed;
            }
            for (size_t i = 0; i < n->n; i++) {
                if (strcmp(n->keys[i]->str, key->str) == 0) {
                    raw_err(c, "%s:%zu:%zu: duplicate key \"%s\"", c->name, key->line, key->col,
                            key->str);
                    ynode_free(key);
                    goto failed;
                }
            }
            if (next_event(c, p, &sub) != GW_OK) {
                ynode_free(key);
                goto failed;
            }
            ynode_t *val = build(c, p, &sub, depth + 1);
            if (val == NULL) {
                ynode_free(key);
                goto failed;
            }
            ynode_push(n, key, val);
        }

    default:
        mark_err(c, ev->start_mark, "unexpected YAML event", NULL);
        yaml_event_delete(ev);
        return NULL;
    }

failed:
    ynode_free(n);
    return NULL;
}

/*
 * One YAML document to a tree. *root stays NULL for an empty document.
 * Returns GW_ERROR after reporting a syntax error.
 */
static int
load_tree(cctx_t *c, const char *yaml, size_t len, ynode_t **root)
{
    yaml_parser_t p;
    yaml_event_t ev;
    int rc = GW_ERROR;

    *root = NULL;
    if (!yaml_parser_initialize(&p)) {
        raw_err(c, "%s: cannot initialise the YAML parser", c->name);
        return GW_ERROR;
    }
    yaml_parser_set_input_string(&p, (const unsigned char *)yaml, len);

    if (next_event(c, &p, &ev) != GW_OK)
        goto done;
    yaml_event_delete(&ev); /* stream start */
    if (next_event(c, &p, &ev) != GW_OK)
        goto done;
    if (ev.type == YAML_STREAM_END_EVENT) {
        yaml_event_delete(&ev);
        rc = GW_OK;
        goto done;
    }
    yaml_event_delete(&ev); /* document start */
    if (next_event(c, &p, &ev) != GW_OK)
        goto done;
    *root = build(c, &p, &ev, 0);
    if (*root == NULL)
        goto done;
    if (next_event(c, &p, &ev) != GW_OK) /* document end */
        goto done;
    yaml_event_delete(&ev);
    if (next_event(c, &p, &ev) != GW_OK)
        goto done;
    if (ev.type != YAML_STREAM_END_EVENT) {
        mark_err(c, ev.start_mark, "only one YAML document is allowed", NULL);
        yaml_event_delete(&ev);
        goto done;
    }
    yaml_event_delete(&ev);
    rc = GW_OK;

done:
    yaml_parser_delete(&p);
    if (rc != GW_OK) {
        ynode_free(*root);
        *root = NULL;
    }
    return rc;
}

/* ---- tree access --------------------------------------------------------- */

static int
is_null(const ynode_t *n)
{
    return n->kind == YN_SCALAR && n->plain &&
           (n->len == 0 || strcmp(n->str, "~") == 0 || strcmp(n->str, "null") == 0 ||
            strcmp(n->str, "Null") == 0 || strcmp(n->str, "NULL") == 0);
}

/* A key whose value is null counts as absent. */
static const ynode_t *
mget(const ynode_t *map, const char *key)
{
    if (map == NULL || map->kind != YN_MAP)
        return NULL;
    for (size_t i = 0; i < map->n; i++) {
        if (strcmp(map->keys[i]->str, key) == 0)
            return is_null(map->vals[i]) ? NULL : map->vals[i];
    }
    return NULL;
}

/* out = base + sep + tail, cut at PATHLEN: a long path only shortens a message. */
static void
path_join(char *out, const char *base, const char *sep, const char *tail)
{
    size_t n = 0;
    const char *parts[3] = {base, sep, tail};
    for (size_t i = 0; i < 3; i++) {
        size_t len = strlen(parts[i]);
        if (len > PATHLEN - 1 - n)
            len = PATHLEN - 1 - n;
        memmove(out + n, parts[i], len);
        n += len;
    }
    out[n] = '\0';
}

static void
sub_key(char *out, const char *base, const char *key)
{
    path_join(out, base, base[0] ? "." : "", key);
}

static void
sub_idx(char *out, const char *base, size_t i)
{
    char idx[32];
    snprintf(idx, sizeof(idx), "[%zu]", i);
    path_join(out, base, "", idx);
}

static void
type_err(cctx_t *c, const char *path, const char *want, const ynode_t *got)
{
    if (got->kind == YN_MAP)
        cerr(c, path, "expected %s, got a map", want);
    else if (got->kind == YN_SEQ)
        cerr(c, path, "expected %s, got a list", want);
    else
        cerr(c, path, "expected %s, got \"%.100s\"", want, got->str);
}

static int
in_list(const char *s, const char *const *list)
{
    for (; *list; list++) {
        if (strcmp(s, *list) == 0)
            return 1;
    }
    return 0;
}

/* Reports a non-map and every unknown key; returns 1 when n is a map. */
static int
check_map(cctx_t *c, const ynode_t *n, const char *path, const char *const *allowed)
{
    char p[PATHLEN];
    if (n->kind != YN_MAP) {
        type_err(c, path, "a map", n);
        return 0;
    }
    for (size_t i = 0; i < n->n; i++) {
        if (!in_list(n->keys[i]->str, allowed)) {
            sub_key(p, path, n->keys[i]->str);
            cerr(c, p, "unknown key");
        }
    }
    return 1;
}

static void
missing(cctx_t *c, const char *path, const char *key)
{
    cerr(c, path, "missing key \"%s\"", key);
}

/*
 * The scalar getters: 1 when the key is there and good, 0 when absent,
 * -1 after reporting a bad value.
 */
static int
get_str(cctx_t *c, const ynode_t *map, const char *path, const char *key, char **out)
{
    char p[PATHLEN];
    const ynode_t *v = mget(map, key);
    if (v == NULL)
        return 0;
    if (v->kind != YN_SCALAR) {
        sub_key(p, path, key);
        type_err(c, p, "a string", v);
        return -1;
    }
    free(*out);
    *out = xstrdup(v->str);
    return 1;
}

static int
req_str(cctx_t *c, const ynode_t *map, const char *path, const char *key, char **out)
{
    int rc = get_str(c, map, path, key, out);
    if (rc == 0)
        missing(c, path, key);
    return rc;
}

static int
parse_ll(const char *s, long long *out)
{
    char *end;
    if (!(isdigit((unsigned char)s[0]) || (s[0] == '-' && isdigit((unsigned char)s[1]))))
        return GW_ERROR;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || *end != '\0')
        return GW_ERROR;
    *out = v;
    return GW_OK;
}

static int
check_int(cctx_t *c, const ynode_t *v, const char *p, long long min, long long max, int *out)
{
    long long x;
    if (v->kind != YN_SCALAR || parse_ll(v->str, &x) != GW_OK) {
        type_err(c, p, "a number", v);
        return -1;
    }
    if (x < min || x > max) {
        if (max >= INT_MAX)
            cerr(c, p, "must be at least %lld, got %s", min, v->str);
        else
            cerr(c, p, "must be between %lld and %lld, got %s", min, max, v->str);
        return -1;
    }
    *out = (int)x;
    return 1;
}

static int
get_int(cctx_t *c, const ynode_t *map, const char *path, const char *key, long long min,
        long long max, int *out)
{
    char p[PATHLEN];
    const ynode_t *v = mget(map, key);
    if (v == NULL)
        return 0;
    sub_key(p, path, key);
    return check_int(c, v, p, min, max, out);
}

static int
get_bool(cctx_t *c, const ynode_t *map, const char *path, const char *key, int *out)
{
    char p[PATHLEN];
    const ynode_t *v = mget(map, key);
    if (v == NULL)
        return 0;
    if (v->kind == YN_SCALAR) {
        if (strcasecmp(v->str, "true") == 0 || strcasecmp(v->str, "yes") == 0 ||
            strcasecmp(v->str, "on") == 0) {
            *out = 1;
            return 1;
        }
        if (strcasecmp(v->str, "false") == 0 || strcasecmp(v->str, "no") == 0 ||
            strcasecmp(v->str, "off") == 0) {
            *out = 0;
            return 1;
        }
    }
    sub_key(p, path, key);
    type_err(c, p, "true or false", v);
    return -1;
}

/* min_ms 1 forbids zero. */
static int
get_dur(cctx_t *c, const ynode_t *map, const char *path, const char *key, uint64_t min_ms,
        uint64_t *out)
{
    char p[PATHLEN];
    uint64_t ms;
    const ynode_t *v = mget(map, key);
    if (v == NULL)
        return 0;
    sub_key(p, path, key);
    if (v->kind != YN_SCALAR || gw_conf_parse_duration(v->str, &ms) != GW_OK) {
        type_err(c, p, "a duration (a number with ms, s, m or h, e.g. 10s)", v);
        return -1;
    }
    if (ms < min_ms) {
        cerr(c, p, "must be more than 0");
        return -1;
    }
    *out = ms;
    return 1;
}

static int
get_size(cctx_t *c, const ynode_t *map, const char *path, const char *key, size_t *out)
{
    char p[PATHLEN];
    size_t n;
    const ynode_t *v = mget(map, key);
    if (v == NULL)
        return 0;
    sub_key(p, path, key);
    if (v->kind != YN_SCALAR || gw_conf_parse_size(v->str, &n) != GW_OK) {
        type_err(c, p, "a size (bytes, or a number with k, m or g, e.g. 16k)", v);
        return -1;
    }
    if (n == 0) {
        cerr(c, p, "must be more than 0");
        return -1;
    }
    *out = n;
    return 1;
}

/* A list of strings; a single string counts as a list of one. */
static int
get_str_list(cctx_t *c, const ynode_t *map, const char *path, const char *key, char ***out,
             size_t *nout)
{
    char p[PATHLEN], ip[PATHLEN];
    const ynode_t *v = mget(map, key);
    if (v == NULL)
        return 0;
    sub_key(p, path, key);
    if (v->kind == YN_MAP) {
        type_err(c, p, "a list of strings", v);
        return -1;
    }
    size_t n = v->kind == YN_SEQ ? v->n : 1;
    char **list = xcalloc(n, sizeof(char *));
    int rc = 1;
    for (size_t i = 0; i < n; i++) {
        const ynode_t *it = v->kind == YN_SEQ ? v->vals[i] : v;
        if (it->kind != YN_SCALAR) {
            sub_idx(ip, p, i);
            type_err(c, ip, "a string", it);
            rc = -1;
            continue;
        }
        list[i] = xstrdup(it->str);
    }
    if (rc < 0 || n == 0) {
        for (size_t i = 0; i < n; i++)
            free(list[i]);
        free(list);
        if (rc < 0)
            return rc;
        list = NULL;
    }
    *out = list;
    *nout = n;
    return 1;
}

static void
free_str_list(char **l, size_t n)
{
    for (size_t i = 0; l && i < n; i++)
        free(l[i]);
    free(l);
}

/* A map of string to string (node meta, split subset). */
static int
get_kv(cctx_t *c, const ynode_t *map, const char *path, const char *key, gw_kv_t **out,
       size_t *nout)
{
    char p[PATHLEN], ip[PATHLEN];
    const ynode_t *v = mget(map, key);
    if (v == NULL)
        return 0;
    sub_key(p, path, key);
    if (v->kind != YN_MAP) {
        type_err(c, p, "a map of strings", v);
        return -1;
    }
    gw_kv_t *kv = xcalloc(v->n, sizeof(gw_kv_t));
    size_t n = 0;
    int rc = 1;
    for (size_t i = 0; i < v->n; i++) {
        if (v->vals[i]->kind != YN_SCALAR || is_null(v->vals[i])) {
            sub_key(ip, p, v->keys[i]->str);
            if (v->vals[i]->kind == YN_SCALAR)
                cerr(c, ip, "expected a string, got null");
            else
                type_err(c, ip, "a string", v->vals[i]);
            rc = -1;
            continue;
        }
        kv[n].key = xstrdup(v->keys[i]->str);
        kv[n].value = xstrdup(v->vals[i]->str);
        n++;
    }
    if (n == 0) {
        free(kv);
        kv = NULL;
    }
    *out = kv;
    *nout = n;
    return rc;
}

static void
free_kv(gw_kv_t *kv, size_t n)
{
    for (size_t i = 0; kv && i < n; i++) {
        free(kv[i].key);
        free(kv[i].value);
    }
    free(kv);
}

/* ---- durations, sizes, addresses, keys ---------------------------------- */

int
gw_conf_parse_duration(const char *s, uint64_t *ms)
{
    uint64_t v = 0, mult;
    const char *p = s;

    if (s == NULL || !isdigit((unsigned char)*p))
        return GW_ERROR;
    for (; isdigit((unsigned char)*p); p++) {
        uint64_t d = (uint64_t)(*p - '0');
        if (v > (UINT64_MAX - d) / 10)
            return GW_ERROR;
        v = v * 10 + d;
    }
    /* A bare number is ambiguous (seconds? milliseconds?); only 0 is not. */
    if (*p == '\0') {
        if (v != 0)
            return GW_ERROR;
        *ms = 0;
        return GW_OK;
    }
    if (strcmp(p, "ms") == 0)
        mult = 1;
    else if (strcmp(p, "s") == 0)
        mult = 1000;
    else if (strcmp(p, "m") == 0)
        mult = 60 * 1000;
    else if (strcmp(p, "h") == 0)
        mult = 60 * 60 * 1000;
    else
        return GW_ERROR;
    if (v > UINT64_MAX / mult)
        return GW_ERROR;
    *ms = v * mult;
    return GW_OK;
}

int
gw_conf_parse_size(const char *s, size_t *bytes)
{
    size_t v = 0, mult = 1;
    const char *p = s;

    if (s == NULL || !isdigit((unsigned char)*p))
        return GW_ERROR;
    for (; isdigit((unsigned char)*p); p++) {
        size_t d = (size_t)(*p - '0');
        if (v > (SIZE_MAX - d) / 10)
            return GW_ERROR;
        v = v * 10 + d;
    }
    if (*p != '\0') {
        switch (tolower((unsigned char)*p)) {
        case 'k':
            mult = (size_t)1 << 10;
            break;
        case 'm':
            mult = (size_t)1 << 20;
            break;
        case 'g':
            mult = (size_t)1 << 30;
            break;
        default:
            return GW_ERROR;
        }
        if (p[1] != '\0')
            return GW_ERROR;
    }
    if (v > SIZE_MAX / mult)
        return GW_ERROR;
    *bytes = v * mult;
    return GW_OK;
}

/* "host:port", "[v6]:port", or ":port" (any IPv4 address). */
static int
split_hostport(const char *s, char **host, int *port)
{
    const char *colon, *hs, *he;
    long long p;

    if (s[0] == '[') {
        he = strchr(s, ']');
        if (he == NULL || he[1] != ':')
            return GW_ERROR;
        hs = s + 1;
        colon = he + 1;
        if (he == hs)
            return GW_ERROR;
    } else {
        colon = strrchr(s, ':');
        if (colon == NULL || memchr(s, ':', (size_t)(colon - s)) != NULL)
            return GW_ERROR; /* none, or a bare IPv6 address */
        hs = s;
        he = colon;
    }
    if (colon[1] == '\0' || parse_ll(colon + 1, &p) != GW_OK || colon[1] == '-' || p < 1 ||
        p > 65535)
        return GW_ERROR;
    for (const char *q = hs; q < he; q++) {
        if (isspace((unsigned char)*q) || *q == '/' || *q == '[' || *q == ']')
            return GW_ERROR;
    }
    if (he == hs) {
        *host = xstrdup("0.0.0.0");
    } else {
        *host = xcalloc(1, (size_t)(he - hs) + 1);
        memcpy(*host, hs, (size_t)(he - hs));
    }
    *port = (int)p;
    return GW_OK;
}

static int
numeric_sa(const char *host, int port, struct sockaddr_storage *sa, socklen_t *salen)
{
    struct sockaddr_in *in4 = (struct sockaddr_in *)sa;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)sa;
    memset(sa, 0, sizeof(*sa));
    if (inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        in4->sin_port = htons((uint16_t)port);
        *salen = sizeof(*in4);
        return GW_OK;
    }
    if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)port);
        *salen = sizeof(*in6);
        return GW_OK;
    }
    return GW_ERROR;
}

static int
resolve(const char *host, int port, struct sockaddr_storage *sa, socklen_t *salen, const char **why)
{
    struct sockaddr_in *in4 = (struct sockaddr_in *)sa;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)sa;
    struct addrinfo hints, *res = NULL;

    if (numeric_sa(host, port, sa, salen) == GW_OK)
        return GW_OK;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    int rc = getaddrinfo(host, NULL, &hints, &res);
    if (rc != 0 || res == NULL) {
        *why = rc != 0 ? gai_strerror(rc) : "no address";
        return GW_ERROR;
    }
    memcpy(sa, res->ai_addr, res->ai_addrlen);
    *salen = res->ai_addrlen;
    if (sa->ss_family == AF_INET)
        in4->sin_port = htons((uint16_t)port);
    else
        in6->sin6_port = htons((uint16_t)port);
    freeaddrinfo(res);
    return GW_OK;
}

int
gw_conf_numeric_addr(const char *s, int default_port, struct sockaddr_storage *sa, socklen_t *salen)
{
    char *host = NULL;
    int port = 0, rc;
    if (s == NULL || s[0] == '\0')
        return GW_ERROR;
    if (split_hostport(s, &host, &port) == GW_OK) {
        rc = s[0] == ':' ? GW_ERROR : numeric_sa(host, port, sa, salen);
        free(host);
        return rc;
    }
    if (default_port <= 0)
        return GW_ERROR;
    if (s[0] == '[') { /* "[v6]" without a port */
        size_t n = strlen(s);
        if (n < 3 || s[n - 1] != ']')
            return GW_ERROR;
        host = xcalloc(1, n - 1);
        memcpy(host, s + 1, n - 2);
        rc = strchr(host, ':') ? numeric_sa(host, default_port, sa, salen) : GW_ERROR;
        free(host);
        return rc;
    }
    return numeric_sa(s, default_port, sa, salen);
}

int
gw_conf_parse_nameserver(const char *s, struct sockaddr_storage *sa, socklen_t *salen)
{
    return gw_conf_numeric_addr(s, 53, sa, salen);
}

static int
is_loopback(const struct sockaddr_storage *sa)
{
    if (sa->ss_family == AF_INET) {
        const struct sockaddr_in *in4 = (const struct sockaddr_in *)sa;
        return (ntohl(in4->sin_addr.s_addr) >> 24) == 127;
    }
    if (sa->ss_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        if (IN6_IS_ADDR_LOOPBACK(a))
            return 1;
        return IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127;
    }
    return 0;
}

/* Parses and resolves an address scalar at path into host, port, sa. */
static int
compile_addr(cctx_t *c, const ynode_t *v, const char *path, char **host, int *port,
             struct sockaddr_storage *sa, socklen_t *salen)
{
    const char *why = NULL;
    if (v->kind != YN_SCALAR) {
        type_err(c, path, "an address \"host:port\"", v);
        return GW_ERROR;
    }
    if (split_hostport(v->str, host, port) != GW_OK) {
        cerr(c, path, "bad address \"%.100s\": expected host:port, [ipv6]:port or :port", v->str);
        return GW_ERROR;
    }
    if (resolve(*host, *port, sa, salen, &why) != GW_OK) {
        cerr(c, path, "cannot resolve \"%.100s\": %s", *host, why);
        return GW_ERROR;
    }
    return GW_OK;
}

static int
is_tchar(int ch)
{
    return isalnum(ch) || (ch && strchr("!#$%&'*+-.^_`|~", ch) != NULL);
}

static int
is_header_name(const char *s)
{
    if (*s == '\0')
        return 0;
    for (; *s; s++) {
        if (!is_tchar((unsigned char)*s))
            return 0;
    }
    return 1;
}

static int
is_plain_name(const char *s)
{
    if (*s == '\0')
        return 0;
    for (; *s; s++) {
        if ((unsigned char)*s <= ' ' || *s == 0x7f)
            return 0;
    }
    return 1;
}

static int
parse_keyspec(const char *s, gw_keyspec_t *k)
{
    static const struct {
        const char *prefix;
        gw_key_kind_t kind;
    } named[] = {{"header:", GW_KEY_HEADER},
                 {"cookie:", GW_KEY_COOKIE},
                 {"query:", GW_KEY_QUERY},
                 {"var:", GW_KEY_VAR}};

    if (strcmp(s, "ip") == 0 || strcmp(s, "consumer") == 0) {
        k->kind = s[0] == 'i' ? GW_KEY_IP : GW_KEY_CONSUMER;
        k->name = NULL;
        k->name_len = 0;
        return GW_OK;
    }
    for (size_t i = 0; i < GW_ARRAY_LEN(named); i++) {
        size_t pl = strlen(named[i].prefix);
        if (strncmp(s, named[i].prefix, pl) != 0)
            continue;
        const char *name = s + pl;
        if (named[i].kind == GW_KEY_HEADER ? !is_header_name(name) : !is_plain_name(name))
            return GW_ERROR;
        k->kind = named[i].kind;
        k->name = xstrdup(name);
        k->name_len = strlen(name);
        return GW_OK;
    }
    return GW_ERROR;
}

static int
get_keyspec(cctx_t *c, const ynode_t *map, const char *path, const char *key, gw_keyspec_t *out)
{
    char p[PATHLEN];
    const ynode_t *v = mget(map, key);
    if (v == NULL)
        return 0;
    sub_key(p, path, key);
    if (v->kind != YN_SCALAR || parse_keyspec(v->str, out) != GW_OK) {
        type_err(c, p, "header:NAME, cookie:NAME, query:NAME, var:NAME, ip or consumer", v);
        return -1;
    }
    return 1;
}

static void *
compile_re(cctx_t *c, const char *path, const char *pattern)
{
    int ec;
    PCRE2_SIZE off;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED, 0, &ec, &off, NULL);
    if (re == NULL) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(ec, msg, sizeof(msg));
        cerr(c, path, "bad regex at offset %zu: %s", (size_t)off, (const char *)msg);
        return NULL;
    }
    /* Where the JIT is unavailable the interpreter still matches. */
    (void)pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);
    return re;
}

/* ---- gateway ------------------------------------------------------------- */

static void
compile_listen_one(cctx_t *c, const ynode_t *v, const char *path, gw_listen_conf_t *out)
{
    static const char *const keys[] = {"addr", "tls", NULL};
    const ynode_t *a = v;
    char ap[PATHLEN];

    snprintf(ap, sizeof(ap), "%s", path);
    if (v->kind == YN_MAP) {
        if (!check_map(c, v, path, keys))
            return;
        a = mget(v, "addr");
        if (a == NULL) {
            missing(c, path, "addr");
            return;
        }
        sub_key(ap, path, "addr");
        if (get_bool(c, v, path, "tls", &out->tls) > 0 && out->tls && !c->has_tls_certs) {
            sub_key(ap, path, "tls");
            cerr(c, ap, "needs gateway.tls.certificates");
        }
        sub_key(ap, path, "addr");
    }
    compile_addr(c, a, ap, &out->host, &out->port, &out->sa, &out->salen);
}

static void
compile_listen(cctx_t *c, const ynode_t *gw)
{
    gw_conf_t *conf = c->conf;
    char p[PATHLEN];
    const ynode_t *v = mget(gw, "listen");

    if (v == NULL) {
        missing(c, "gateway", "listen");
        return;
    }
    if (v->kind != YN_SEQ) {
        conf->listen = xcalloc(1, sizeof(gw_listen_conf_t));
        conf->nlisten = 1;
        compile_listen_one(c, v, "gateway.listen", &conf->listen[0]);
        return;
    }
    if (v->n == 0) {
        cerr(c, "gateway.listen", "at least one address is required");
        return;
    }
    conf->listen = xcalloc(v->n, sizeof(gw_listen_conf_t));
    conf->nlisten = v->n;
    for (size_t i = 0; i < v->n; i++) {
        sub_idx(p, "gateway.listen", i);
        compile_listen_one(c, v->vals[i], p, &conf->listen[i]);
    }
}

static void
compile_admin(cctx_t *c, const ynode_t *v)
{
    static const char *const keys[] = {"listen", "key", NULL};
    const char *path = "gateway.admin";
    gw_conf_t *conf = c->conf;
    gw_listen_conf_t *l = &conf->admin_listen;

    if (!check_map(c, v, path, keys))
        return;
    const ynode_t *a = mget(v, "listen");
    if (a == NULL)
        missing(c, path, "listen");
    int rk = req_str(c, v, path, "key", &conf->admin_key);
    if (a == NULL ||
        compile_addr(c, a, "gateway.admin.listen", &l->host, &l->port, &l->sa, &l->salen) != GW_OK)
        return;
    conf->has_admin = 1;
    if (rk <= 0 || is_loopback(&l->sa))
        return;
    /* Reachable from other hosts: a guessable key is an open door. */
    const char *key = conf->admin_key;
    if (key[0] == '\0' || strlen(key) < 16 || strcmp(key, "change-me") == 0)
        cerr(c, "gateway.admin.key",
             "refusing an empty, short (< 16 characters) or \"change-me\" key on the "
             "non-loopback address %s",
             a->str);
}

/* gateway.tls (docs/tls.md). Files are only named here; gw_tls_check reads
 * them (-t, start, reload), as it needs OpenSSL. */
static void
compile_tls_cert(cctx_t *c, const ynode_t *it, const char *ip, gw_tls_cert_conf_t *tc)
{
    static const char *const ckeys[] = {"cert", "key", "sni", "client_ca", NULL};
    char p[PATHLEN], sp[PATHLEN];

    if (!check_map(c, it, ip, ckeys))
        return;
    req_str(c, it, ip, "cert", &tc->cert);
    req_str(c, it, ip, "key", &tc->key);
    get_str(c, it, ip, "client_ca", &tc->client_ca);
    if (get_str_list(c, it, ip, "sni", &tc->sni, &tc->nsni) <= 0)
        return;
    for (size_t j = 0; j < tc->nsni; j++) {
        const char *n = tc->sni[j];
        const char *body = strncmp(n, "*.", 2) == 0 ? n + 2 : n;
        int ok = body[0] != '\0' && strlen(n) <= 253;
        for (const char *q = body; ok && *q; q++)
            ok = isalnum((unsigned char)*q) || *q == '-' || *q == '.' || *q == '_';
        if (ok && (strchr(body, '.') == NULL) && body != n)
            ok = 0; /* "*.com": a wildcard covers one label under a domain */
        if (!ok) {
            sub_key(sp, ip, "sni");
            sub_idx(p, sp, j);
            cerr(c, p, "\"%s\" is not a host name or a \"*.example.com\" wildcard", n);
        }
    }
}

static void
compile_tls(cctx_t *c, const ynode_t *v)
{
    static const char *const keys[] = {"certificates",
                                       "min_protocol",
                                       "session_tickets",
                                       "ticket_key_rotation",
                                       "session_cache_size",
                                       "session_timeout",
                                       NULL};
    const char *path = "gateway.tls";
    gw_tls_conf_t *t = &c->conf->tls;
    char p[PATHLEN], ip[PATHLEN];
    char *proto = NULL;

    if (!check_map(c, v, path, keys))
        return;
    if (get_str(c, v, path, "min_protocol", &proto) > 0) {
        if (strcmp(proto, "TLSv1.2") == 0)
            t->min_protocol = 0x0303;
        else if (strcmp(proto, "TLSv1.3") == 0)
            t->min_protocol = 0x0304;
        else
            cerr(c, "gateway.tls.min_protocol",
                 "must be TLSv1.2 or TLSv1.3, got \"%s\" (older protocols are refused)", proto);
    }
    free(proto);
    get_bool(c, v, path, "session_tickets", &t->session_tickets);
    get_dur(c, v, path, "ticket_key_rotation", 60 * 1000, &t->ticket_key_rotation_ms);
    get_int(c, v, path, "session_cache_size", 0, 10 * 1000 * 1000, &t->session_cache_size);
    get_dur(c, v, path, "session_timeout", 1000, &t->session_timeout_ms);
    const ynode_t *certs = mget(v, "certificates");
    if (certs == NULL) {
        missing(c, path, "certificates");
        return;
    }
    sub_key(p, path, "certificates");
    if (certs->kind != YN_SEQ) {
        type_err(c, p, "a list", certs);
        return;
    }
    if (certs->n == 0) {
        cerr(c, p, "at least one certificate is required");
        return;
    }
    c->has_tls_certs = 1;
    t->certs = xcalloc(certs->n, sizeof(*t->certs));
    t->ncerts = certs->n;
    for (size_t i = 0; i < certs->n; i++) {
        sub_idx(ip, p, i);
        compile_tls_cert(c, certs->vals[i], ip, &t->certs[i]);
    }
}

static void
free_tls(gw_tls_conf_t *t)
{
    for (size_t i = 0; t->certs && i < t->ncerts; i++) {
        free(t->certs[i].cert);
        free(t->certs[i].key);
        free(t->certs[i].client_ca);
        free_str_list(t->certs[i].sni, t->certs[i].nsni);
    }
    free(t->certs);
    t->certs = NULL;
}

/* A plugin directory that is not there would only show as "unknown plugin"
 * later, or as a plugin silently not replaced: say so where it is written.
 * Relative paths are resolved against the working directory, as -c is. The
 * default list is not checked: the built-in plugins are found on their own. */
static void
check_plugin_paths(cctx_t *c, const gw_conf_t *conf)
{
    char p[PATHLEN];
    for (size_t i = 0; i < conf->nplugin_paths; i++) {
        struct stat st;
        const char *d = conf->plugin_paths[i];
        snprintf(p, sizeof(p), "gateway.plugin_paths[%zu]", i);
        if (d[0] == '\0')
            cerr(c, p, "the path is empty");
        else if (stat(d, &st) != 0)
            cerr(c, p, "\"%s\": %s%s", d, strerror(errno),
                 d[0] == '/' ? "" : " (relative to the working directory)");
        else if (!S_ISDIR(st.st_mode))
            cerr(c, p, "\"%s\" is not a directory", d);
    }
}

/* gateway.watchdog: how long a worker's loop may stand still before the
 * master replaces the worker; "off" turns the check off. */
static void
compile_watchdog(cctx_t *c, const ynode_t *gw)
{
    const ynode_t *v = mget(gw, "watchdog");
    if (v == NULL)
        return;
    if (v->kind == YN_SCALAR && strcmp(v->str, "off") == 0) {
        c->conf->watchdog_ms = 0;
        return;
    }
    if (get_dur(c, gw, "gateway", "watchdog", 1, &c->conf->watchdog_ms) > 0 &&
        c->conf->watchdog_ms < 100)
        cerr(c, "gateway.watchdog", "must be at least 100ms (or off)");
}

/* gateway.loop_nap: "<n>us" up to 1000, or 0/off. Microseconds, not the
 * millisecond durations of every other key: the nap is far below a
 * millisecond. */
static void
compile_loop_nap(cctx_t *c, const ynode_t *gw)
{
    const ynode_t *v = mget(gw, "loop_nap");
    if (v == NULL)
        return;
    const char *msg = "must be a duration in microseconds from 1us to 1000us, or 0 or off";
    if (v->kind != YN_SCALAR) {
        cerr(c, "gateway.loop_nap", "%s", msg);
        return;
    }
    if (strcmp(v->str, "off") == 0 || strcmp(v->str, "0") == 0) {
        c->conf->loop_nap_us = 0;
        return;
    }
    char *end = NULL;
    errno = 0;
    unsigned long n = isdigit((unsigned char)v->str[0]) ? strtoul(v->str, &end, 10) : 0;
    if (end == NULL || errno != 0 || strcmp(end, "us") != 0 || n < 1 || n > 1000) {
        cerr(c, "gateway.loop_nap", "%s (got \"%s\")", msg, v->str);
        return;
    }
    c->conf->loop_nap_us = (unsigned)n;
}

static void
compile_gateway(cctx_t *c, const ynode_t *gw)
{
    static const char *const keys[] = {
        "listen", "workers",    "status_listen", "admin",        "timeouts",
        "limits", "access_log", "error_log",     "plugin_paths", "pid_file",
        "tls",    "lua_memory", "watchdog",      "loop_nap",     NULL};
    static const char *const tkeys[] = {"client_header", "client_body", "keepalive", "drain", NULL};
    static const char *const lkeys[] = {"max_header_size", "max_body_size", "max_connections",
                                        NULL};
    static const char *const ekeys[] = {"path", "level", NULL};
    gw_conf_t *conf = c->conf;
    const ynode_t *v;

    if (gw == NULL) {
        missing(c, "", "gateway");
        return;
    }
    if (!check_map(c, gw, "gateway", keys))
        return;

    /* Before listen: `tls: true` needs certificates. */
    if ((v = mget(gw, "tls")) != NULL)
        compile_tls(c, v);
    compile_listen(c, gw);

    if ((v = mget(gw, "workers")) != NULL) {
        long long n;
        if (v->kind == YN_SCALAR && strcmp(v->str, "auto") == 0) {
            /* resolved below */
        } else if (v->kind != YN_SCALAR || parse_ll(v->str, &n) != GW_OK) {
            type_err(c, "gateway.workers", "a number or \"auto\"", v);
        } else if (n < 1 || n > MAX_WORKERS) {
            cerr(c, "gateway.workers", "must be between 1 and %d, got %s", MAX_WORKERS, v->str);
        } else {
            conf->workers = (int)n;
        }
    }
    if (conf->workers == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        conf->workers = n < 1 ? 1 : n > MAX_WORKERS ? MAX_WORKERS : (int)n;
    }

    if ((v = mget(gw, "status_listen")) != NULL &&
        !(v->kind == YN_SCALAR && strcmp(v->str, "off") == 0)) {
        gw_listen_conf_t *l = &conf->status_listen;
        if (compile_addr(c, v, "gateway.status_listen", &l->host, &l->port, &l->sa, &l->salen) ==
            GW_OK)
            conf->has_status_listen = 1;
    }
    if ((v = mget(gw, "admin")) != NULL)
        compile_admin(c, v);

    if ((v = mget(gw, "timeouts")) != NULL && check_map(c, v, "gateway.timeouts", tkeys)) {
        get_dur(c, v, "gateway.timeouts", "client_header", 1, &conf->client_header_timeout_ms);
        get_dur(c, v, "gateway.timeouts", "client_body", 1, &conf->client_body_timeout_ms);
        get_dur(c, v, "gateway.timeouts", "keepalive", 0, &conf->keepalive_timeout_ms);
        get_dur(c, v, "gateway.timeouts", "drain", 0, &conf->drain_timeout_ms);
    }
    if ((v = mget(gw, "limits")) != NULL && check_map(c, v, "gateway.limits", lkeys)) {
        get_size(c, v, "gateway.limits", "max_header_size", &conf->max_header_size);
        get_size(c, v, "gateway.limits", "max_body_size", &conf->max_body_size);
        get_int(c, v, "gateway.limits", "max_connections", 1, INT_MAX, &conf->max_connections);
    }

    if (get_str(c, gw, "gateway", "access_log", &conf->access_log) > 0 &&
        (strcmp(conf->access_log, "off") == 0 || conf->access_log[0] == '\0')) {
        free(conf->access_log);
        conf->access_log = NULL;
    }

    if ((v = mget(gw, "error_log")) != NULL) {
        if (v->kind == YN_SCALAR) {
            get_str(c, gw, "gateway", "error_log", &conf->error_log);
        } else if (check_map(c, v, "gateway.error_log", ekeys)) {
            char *level = NULL;
            get_str(c, v, "gateway.error_log", "path", &conf->error_log);
            if (get_str(c, v, "gateway.error_log", "level", &level) > 0) {
                static const char *const names[] = {"debug", "info", "warn", "error"};
                size_t i;
                for (i = 0; i < GW_ARRAY_LEN(names); i++) {
                    if (strcasecmp(level, names[i]) == 0)
                        break;
                }
                if (i < GW_ARRAY_LEN(names))
                    conf->error_log_level = (gw_log_level_t)i;
                else
                    cerr(c, "gateway.error_log.level",
                         "expected debug, info, warn or error, got \"%.100s\"", level);
            }
            free(level);
        }
    }
    if (conf->error_log != NULL && conf->error_log[0] == '\0')
        cerr(c, "gateway.error_log", "the path is empty");

    if (mget(gw, "plugin_paths") != NULL) {
        free_str_list(conf->plugin_paths, conf->nplugin_paths);
        conf->plugin_paths = NULL;
        conf->nplugin_paths = 0;
        if (get_str_list(c, gw, "gateway", "plugin_paths", &conf->plugin_paths,
                         &conf->nplugin_paths) > 0)
            check_plugin_paths(c, conf);
    }
    if (get_str(c, gw, "gateway", "pid_file", &conf->pid_file) > 0 && conf->pid_file[0] == '\0')
        cerr(c, "gateway.pid_file", "the path is empty");
    if (get_size(c, gw, "gateway", "lua_memory", &conf->lua_memory) > 0 &&
        conf->lua_memory < 16u * 1024 * 1024)
        cerr(c, "gateway.lua_memory", "must be at least 16m");
    compile_watchdog(c, gw);
    compile_loop_nap(c, gw);
}

/* ---- redis, registries ---------------------------------------------------- */

/* Bounds the seed and Sentinel lists: far more than any real deployment. */
#define MAX_REDIS_ADDRS 64

/* Each entry host:port, no duplicates. */
static void
check_redis_addrs(cctx_t *c, const gw_conf_t *conf)
{
    char p[PATHLEN];
    if (conf->nredis_addrs == 0) {
        cerr(c, "redis.addrs", "at least one address is required");
        return;
    }
    if (conf->nredis_addrs > MAX_REDIS_ADDRS) {
        cerr(c, "redis.addrs", "at most %d addresses, got %zu", MAX_REDIS_ADDRS,
             conf->nredis_addrs);
        return;
    }
    for (size_t i = 0; i < conf->nredis_addrs; i++) {
        char *host = NULL;
        int port;
        sub_idx(p, "redis.addrs", i);
        if (split_hostport(conf->redis_addrs[i], &host, &port) != GW_OK || host[0] == '\0' ||
            strcmp(host, "0.0.0.0") == 0)
            cerr(c, p, "bad address \"%.100s\": expected host:port or [ipv6]:port",
                 conf->redis_addrs[i]);
        free(host);
        for (size_t j = 0; j < i; j++) {
            if (strcmp(conf->redis_addrs[i], conf->redis_addrs[j]) == 0) {
                cerr(c, p, "\"%.100s\" is listed twice", conf->redis_addrs[i]);
                break;
            }
        }
    }
}

/* Keys that belong to other types, each reported with the reason. */
static void
refuse_redis_keys(cctx_t *c, const ynode_t *v, const char *type)
{
    static const struct {
        const char *key;
        gw_redis_type_t takes; /* the one type that takes the key, or -1: any but node */
        const char *why;
    } rules[] = {
        {"addr", GW_REDIS_NODE, "not used with type: %s, which takes \"addrs\""},
        {"addrs", (gw_redis_type_t)-1, "not used with type: %s, which takes \"addr\""},
        {"master_name", GW_REDIS_SENTINEL, "not used with type: %s (only with sentinel)"},
        {"sentinel_password", GW_REDIS_SENTINEL, "not used with type: %s (only with sentinel)"},
    };
    char p[PATHLEN];
    gw_redis_type_t t = c->conf->redis_type;
    for (size_t i = 0; i < sizeof(rules) / sizeof(rules[0]); i++) {
        int taken = (int)rules[i].takes < 0 ? t != GW_REDIS_NODE : t == rules[i].takes;
        if (taken || mget(v, rules[i].key) == NULL)
            continue;
        sub_key(p, "redis", rules[i].key);
        cerr(c, p, rules[i].why, type);
    }
}

static void
compile_redis(cctx_t *c, const ynode_t *v)
{
    static const char *const keys[] = {"type",        "addr",     "addrs",
                                       "master_name", "password", "sentinel_password",
                                       "db",          "timeout",  NULL};
    gw_conf_t *conf = c->conf;
    char *type = NULL;
    const char *tname = "node";

    if (!check_map(c, v, "redis", keys))
        return;
    conf->has_redis = 1;
    if (get_str(c, v, "redis", "type", &type) > 0) {
        if (strcmp(type, "cluster") == 0) {
            conf->redis_type = GW_REDIS_CLUSTER;
            tname = "cluster";
        } else if (strcmp(type, "sentinel") == 0) {
            conf->redis_type = GW_REDIS_SENTINEL;
            tname = "sentinel";
        } else if (strcmp(type, "node") != 0) {
            cerr(c, "redis.type", "expected node, cluster or sentinel, got \"%.100s\"", type);
        }
    }
    free(type);
    refuse_redis_keys(c, v, tname);
    if (conf->redis_type == GW_REDIS_NODE) {
        char *host = NULL;
        int port;
        if (req_str(c, v, "redis", "addr", &conf->redis_addr) > 0) {
            if (split_hostport(conf->redis_addr, &host, &port) != GW_OK)
                cerr(c, "redis.addr", "bad address \"%.100s\": expected host:port or [ipv6]:port",
                     conf->redis_addr);
            free(host);
        }
    } else {
        int rc = get_str_list(c, v, "redis", "addrs", &conf->redis_addrs, &conf->nredis_addrs);
        if (rc == 0)
            missing(c, "redis", "addrs");
        else if (rc > 0)
            check_redis_addrs(c, conf);
    }
    if (conf->redis_type == GW_REDIS_SENTINEL &&
        req_str(c, v, "redis", "master_name", &conf->redis_master_name) > 0 &&
        conf->redis_master_name[0] == '\0')
        cerr(c, "redis.master_name", "the name is empty");
    get_str(c, v, "redis", "password", &conf->redis_password);
    get_str(c, v, "redis", "sentinel_password", &conf->redis_sentinel_password);
    if (get_int(c, v, "redis", "db", 0, INT_MAX, &conf->redis_db) > 0 &&
        conf->redis_type == GW_REDIS_CLUSTER && conf->redis_db != 0)
        cerr(c, "redis.db", "a Redis Cluster has only database 0, got %d", conf->redis_db);
    get_dur(c, v, "redis", "timeout", 1, &conf->redis_timeout_ms);
}

/* ---- TLS towards servers (upstreams[].tls, registries.NAME.tls) -------- */

static int is_dns_name(const char *s);

/*
 * `tls: {ca_file, sni, verify, cert, key}` under an upstream with scheme
 * https or a registry with https:// endpoints (ENABLED), into T. Checking
 * the peer is never turned off by accident: only the literal `verify:
 * false` does it, and -t says so. The files are read here, so -t fails on
 * an unreadable file or a key that does not match its certificate.
 */
static void
compile_tls_client(cctx_t *c, const ynode_t *map, const char *path, int enabled,
                   gw_tls_client_conf_t *t)
{
    static const char *const keys[] = {"ca_file", "sni", "verify", "cert", "key", NULL};
    char p[PATHLEN], kp[PATHLEN], err[512], warn[512];
    const ynode_t *v = mget(map, "tls");

    t->enabled = enabled;
    t->verify = 1;
    sub_key(p, path, "tls");
    if (v == NULL) {
        if (!enabled)
            return;
    } else if (!enabled) {
        cerr(c, p,
             "TLS settings for a server spoken to in plain HTTP (set scheme: https, or "
             "https:// endpoints)");
        return;
    } else if (!check_map(c, v, p, keys)) {
        return;
    } else {
        const ynode_t *vf = mget(v, "verify");
        sub_key(kp, p, "verify");
        if (vf && (vf->kind != YN_SCALAR ||
                   (strcmp(vf->str, "true") != 0 && strcmp(vf->str, "false") != 0)))
            cerr(c, kp,
                 "expected true or false (verification is turned off only by the "
                 "literal false)");
        else if (vf)
            t->verify = strcmp(vf->str, "true") == 0;
        get_str(c, v, p, "ca_file", &t->ca_file);
        get_str(c, v, p, "sni", &t->sni);
        get_str(c, v, p, "cert", &t->cert);
        get_str(c, v, p, "key", &t->key);
        if ((t->cert == NULL) != (t->key == NULL))
            cerr(c, p, "give both cert and key (a client certificate), or neither");
        if (t->sni && !is_dns_name(t->sni)) {
            sub_key(kp, p, "sni");
            cerr(c, kp, "expected a host name, got \"%.100s\"", t->sni);
        }
        if (!t->verify && t->ca_file) {
            sub_key(kp, p, "ca_file");
            cerr(c, kp, "not used with verify: false (nothing is checked against it)");
        }
    }
    if (c->nerr > 0)
        return; /* the files are read only for a config that is otherwise valid */
    if (gw_tls_client_check(t, err, sizeof(err), warn, sizeof(warn)) != GW_OK)
        cerr(c, p, "%s", err);
    else if (warn[0])
        cwarn(c, p, "%s", warn);
    if (!t->verify) {
        sub_key(kp, p, "verify");
        cwarn(c, kp,
              "false: the servers' certificates are not checked (anyone on the path "
              "can pose as them)");
    }
}

static void
free_tls_client(gw_tls_client_conf_t *t)
{
    free(t->ca_file);
    free(t->sni);
    free(t->cert);
    free(t->key);
}

/* Endpoints of a registry: http:// or https:// URLs with a host. */
static void
check_endpoint(cctx_t *c, const char *path, const char *url)
{
    size_t skip = strncmp(url, "https://", 8) == 0 ? 8 : strncmp(url, "http://", 7) == 0 ? 7 : 0;
    if (skip == 0 || url[skip] == '\0' || url[skip] == '/')
        cerr(c, path, "expected an http:// or https:// URL, got \"%.100s\"", url);
}

static int
any_https(char *const *urls, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (urls[i] && strncmp(urls[i], "https://", 8) == 0)
            return 1;
    return 0;
}

static void
compile_etcd(cctx_t *c, const ynode_t *r, const char *p, gw_registry_conf_t *g)
{
    static const char *const keys[] = {"type",   "endpoints", "username", "password",
                                       "prefix", "timeout",   "tls",      NULL};
    char ip[PATHLEN], ep[PATHLEN];

    check_map(c, r, p, keys);
    int rc = get_str_list(c, r, p, "endpoints", &g->endpoints, &g->nendpoints);
    sub_key(ip, p, "endpoints");
    if (rc == 0)
        missing(c, p, "endpoints");
    else if (rc > 0 && g->nendpoints == 0)
        cerr(c, ip, "at least one endpoint is required");
    for (size_t j = 0; rc > 0 && j < g->nendpoints; j++) {
        sub_idx(ep, ip, j);
        check_endpoint(c, ep, g->endpoints[j]);
    }
    get_str(c, r, p, "username", &g->username);
    get_str(c, r, p, "password", &g->password);
    if ((g->username == NULL) != (g->password == NULL))
        cerr(c, p, "give both username and password, or neither");
    get_str(c, r, p, "prefix", &g->prefix);
    if (g->prefix == NULL)
        g->prefix = xstrdup("/micro/registry/");
    else if (g->prefix[0] != '/' || g->prefix[strlen(g->prefix) - 1] != '/') {
        sub_key(ep, p, "prefix");
        cerr(c, ep, "must start and end with \"/\", got \"%.100s\"", g->prefix);
    }
    compile_tls_client(c, r, p, any_https(g->endpoints, g->nendpoints), &g->tls);
}

static void
compile_consul(cctx_t *c, const ynode_t *r, const char *p, gw_registry_conf_t *g)
{
    static const char *const keys[] = {"type", "addr",    "token", "dc",
                                       "wait", "timeout", "tls",   NULL};
    char ip[PATHLEN];

    check_map(c, r, p, keys);
    g->endpoints = xcalloc(1, sizeof(char *));
    if (req_str(c, r, p, "addr", &g->endpoints[0]) > 0) {
        g->nendpoints = 1;
        sub_key(ip, p, "addr");
        check_endpoint(c, ip, g->endpoints[0]);
    }
    get_str(c, r, p, "token", &g->token);
    get_str(c, r, p, "dc", &g->dc);
    get_dur(c, r, p, "wait", 1, &g->wait_ms);
    if (g->wait_ms > 600000) {
        sub_key(ip, p, "wait");
        cerr(c, ip, "must be at most 10m (Consul's own limit)");
    }
    compile_tls_client(c, r, p, any_https(g->endpoints, g->nendpoints), &g->tls);
}

static void
compile_dns(cctx_t *c, const ynode_t *r, const char *p, gw_registry_conf_t *g)
{
    static const char *const keys[] = {"type",    "nameservers", "min_ttl",
                                       "max_ttl", "timeout",     NULL};
    char ip[PATHLEN], ep[PATHLEN];

    check_map(c, r, p, keys);
    int rc = get_str_list(c, r, p, "nameservers", &g->nameservers, &g->nnameservers);
    sub_key(ip, p, "nameservers");
    for (size_t j = 0; rc > 0 && j < g->nnameservers; j++) {
        struct sockaddr_storage sa;
        socklen_t salen;
        sub_idx(ep, ip, j);
        if (gw_conf_parse_nameserver(g->nameservers[j], &sa, &salen) != GW_OK)
            cerr(c, ep,
                 "expected an IP address with an optional port (\"10.0.0.2\", "
                 "\"127.0.0.1:5353\", \"[::1]:53\"), got \"%.100s\"",
                 g->nameservers[j]);
    }
    get_dur(c, r, p, "min_ttl", 1, &g->min_ttl_ms);
    get_dur(c, r, p, "max_ttl", 1, &g->max_ttl_ms);
    if (g->min_ttl_ms > g->max_ttl_ms)
        cerr(c, p, "min_ttl is more than max_ttl");
}

static void
compile_registries(cctx_t *c, const ynode_t *v)
{
    static const char *const any_keys[] = {
        "type",    "endpoints", "addr",        "username", "password", "prefix", "token", "dc",
        "timeout", "wait",      "nameservers", "min_ttl",  "max_ttl",  "tls",    NULL};
    char p[PATHLEN], ip[PATHLEN];
    gw_conf_t *conf = c->conf;

    if (v->kind != YN_MAP) {
        type_err(c, "registries", "a map of name to registry", v);
        return;
    }
    conf->registries = xcalloc(v->n ? v->n : 1, sizeof(gw_registry_conf_t));
    for (size_t i = 0; i < v->n; i++) {
        const ynode_t *r = v->vals[i];
        gw_registry_conf_t *g = &conf->registries[conf->nregistries++];
        char *type = NULL;
        sub_key(p, "registries", v->keys[i]->str);
        g->name = xstrdup(v->keys[i]->str); /* an unknown type is still a known name */
        g->timeout_ms = 5000;
        g->wait_ms = 30000;
        g->min_ttl_ms = 1000;
        g->max_ttl_ms = 300000;
        if (r->kind != YN_MAP) {
            type_err(c, p, "a map", r);
            continue;
        }
        if (req_str(c, r, p, "type", &type) <= 0) {
            check_map(c, r, p, any_keys);
            continue;
        }
        get_dur(c, r, p, "timeout", 1, &g->timeout_ms);
        if (strcmp(type, "etcd") == 0) {
            g->kind = GW_DISC_ETCD;
            compile_etcd(c, r, p, g);
        } else if (strcmp(type, "consul") == 0) {
            g->kind = GW_DISC_CONSUL;
            compile_consul(c, r, p, g);
        } else if (strcmp(type, "dns") == 0) {
            g->kind = GW_DISC_DNS;
            compile_dns(c, r, p, g);
        } else {
            sub_key(ip, p, "type");
            cerr(c, ip, "expected etcd, consul or dns, got \"%.100s\"", type);
            check_map(c, r, p, any_keys);
        }
        free(type);
    }
}

/* ---- upstreams ------------------------------------------------------------ */

static void
compile_node(cctx_t *c, const ynode_t *v, const char *path, gw_node_conf_t *nd)
{
    static const char *const keys[] = {"addr", "weight", "meta", NULL};
    const ynode_t *a = v;
    char ap[PATHLEN];

    nd->weight = 1;
    snprintf(ap, sizeof(ap), "%s", path);
    if (v->kind == YN_MAP) {
        if (!check_map(c, v, path, keys))
            return;
        a = mget(v, "addr");
        if (a == NULL) {
            missing(c, path, "addr");
            return;
        }
        sub_key(ap, path, "addr");
        get_int(c, v, path, "weight", 1, 1000000, &nd->weight);
        get_kv(c, v, path, "meta", &nd->meta, &nd->nmeta);
    } else if (v->kind != YN_SCALAR) {
        type_err(c, path, "\"host:port\" or {addr, weight, meta}", v);
        return;
    }
    if (compile_addr(c, a, ap, &nd->host, &nd->port, &nd->sa, &nd->salen) == GW_OK)
        nd->addr = xstrdup(a->str);
}

/* Keys one kind of registry takes in `discovery`, besides "registry". */
static void
refuse_keys(cctx_t *c, const ynode_t *v, const char *path, const char *const *keys, const char *why)
{
    char p[PATHLEN];
    for (size_t i = 0; keys[i]; i++) {
        if (mget(v, keys[i]) != NULL) {
            sub_key(p, path, keys[i]);
            cerr(c, p, "%s", why);
        }
    }
}

static void
compile_discovery_etcd(cctx_t *c, const ynode_t *v, const char *path, gw_discovery_conf_t *d)
{
    static const char *const other[] = {"passing", "host", "port", "srv", NULL};
    char p[PATHLEN];

    refuse_keys(c, v, path, other, "not used with etcd registries");
    if (d->format == NULL) {
        missing(c, path, "format");
    } else if (strcmp(d->format, "go-zero") == 0) {
        if (d->key == NULL)
            missing(c, path, "key");
        else if (d->key[0] == '\0') {
            sub_key(p, path, "key");
            cerr(c, p, "must not be empty");
        }
        if (d->service != NULL) {
            sub_key(p, path, "service");
            cerr(c, p, "not used with format go-zero (give \"key\")");
        }
    } else if (strcmp(d->format, "go-micro") == 0) {
        if (d->service == NULL)
            missing(c, path, "service");
        else if (d->service[0] == '\0' || strchr(d->service, '/') != NULL) {
            sub_key(p, path, "service");
            cerr(c, p, "must be a service name without \"/\", got \"%.100s\"", d->service);
        }
        if (d->key != NULL) {
            sub_key(p, path, "key");
            cerr(c, p, "not used with format go-micro (give \"service\")");
        }
    } else {
        sub_key(p, path, "format");
        cerr(c, p, "expected go-zero or go-micro, got \"%.100s\"", d->format);
    }
}

static void
compile_discovery_consul(cctx_t *c, const ynode_t *v, const char *path, gw_discovery_conf_t *d,
                         int has_passing)
{
    static const char *const other[] = {"format", "key", "host", "port", "srv", NULL};
    char p[PATHLEN];

    refuse_keys(c, v, path, other, "not used with consul registries");
    if (!has_passing)
        d->passing = 1;
    if (d->service == NULL)
        missing(c, path, "service");
    else if (d->service[0] == '\0' || strchr(d->service, '/') || strchr(d->service, '?')) {
        sub_key(p, path, "service");
        cerr(c, p, "must be a service name, got \"%.100s\"", d->service);
    }
}

static int
is_dns_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 253)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (!(isalnum(ch) || ch == '-' || ch == '.' || ch == '_'))
            return 0;
    }
    return 1;
}

static void
compile_discovery_dns(cctx_t *c, const ynode_t *v, const char *path, gw_discovery_conf_t *d)
{
    static const char *const other[] = {"format", "key", "service", "passing", NULL};
    char p[PATHLEN];

    refuse_keys(c, v, path, other, "not used with dns registries");
    get_str(c, v, path, "host", &d->host);
    get_str(c, v, path, "srv", &d->srv);
    int has_port = get_int(c, v, path, "port", 1, 65535, &d->port);
    if ((d->host == NULL) == (d->srv == NULL)) {
        cerr(c, path, "give either host (A/AAAA records, with port) or srv (SRV records)");
        return;
    }
    if (d->host != NULL) {
        sub_key(p, path, "host");
        if (!is_dns_name(d->host))
            cerr(c, p, "not a DNS name: \"%.100s\"", d->host);
        if (has_port == 0)
            missing(c, path, "port");
    } else {
        sub_key(p, path, "srv");
        if (!is_dns_name(d->srv))
            cerr(c, p, "not a DNS name: \"%.100s\"", d->srv);
        if (has_port != 0) {
            sub_key(p, path, "port");
            cerr(c, p, "not used with srv (the records carry the port)");
        }
    }
}

static void
compile_discovery(cctx_t *c, const ynode_t *v, const char *path, gw_discovery_conf_t *d)
{
    static const char *const keys[] = {"registry", "format", "key", "service", "passing",
                                       "host",     "port",   "srv", NULL};
    char p[PATHLEN];
    const gw_registry_conf_t *reg = NULL;

    if (!check_map(c, v, path, keys))
        return;
    if (req_str(c, v, path, "registry", &d->registry) > 0) {
        for (size_t i = 0; i < c->conf->nregistries; i++) {
            if (strcmp(c->conf->registries[i].name, d->registry) == 0) {
                reg = &c->conf->registries[i];
                d->reg_index = i;
            }
        }
        if (reg == NULL) {
            sub_key(p, path, "registry");
            cerr(c, p, "no registry named \"%.100s\"", d->registry);
        }
    }
    get_str(c, v, path, "format", &d->format);
    get_str(c, v, path, "key", &d->key);
    get_str(c, v, path, "service", &d->service);
    int has_passing = get_bool(c, v, path, "passing", &d->passing) > 0;

    if (reg == NULL || reg->kind == GW_DISC_STATIC)
        return;
    d->kind = reg->kind;
    if (reg->kind == GW_DISC_CONSUL)
        compile_discovery_consul(c, v, path, d, has_passing);
    else if (reg->kind == GW_DISC_ETCD)
        compile_discovery_etcd(c, v, path, d);
    else
        compile_discovery_dns(c, v, path, d);
}

static void
compile_health(cctx_t *c, const ynode_t *v, const char *path, gw_upstream_conf_t *u)
{
    static const char *const keys[] = {"active", "passive", NULL};
    static const char *const akeys[] = {"path",    "interval",  "timeout",
                                        "healthy", "unhealthy", NULL};
    static const char *const pkeys[] = {"unhealthy", "window", NULL};
    char p[PATHLEN];
    const ynode_t *s;

    if (!check_map(c, v, path, keys))
        return;
    sub_key(p, path, "active");
    if ((s = mget(v, "active")) != NULL && check_map(c, s, p, akeys)) {
        gw_health_active_conf_t *a = &u->health_active;
        a->enabled = 1;
        if (req_str(c, s, p, "path", &a->path) > 0 && a->path[0] != '/') {
            char pp[PATHLEN];
            sub_key(pp, p, "path");
            cerr(c, pp, "must start with '/'");
        }
        get_dur(c, s, p, "interval", 1, &a->interval_ms);
        get_dur(c, s, p, "timeout", 1, &a->timeout_ms);
        get_int(c, s, p, "healthy", 1, INT_MAX, &a->healthy);
        get_int(c, s, p, "unhealthy", 1, INT_MAX, &a->unhealthy);
    }
    sub_key(p, path, "passive");
    if ((s = mget(v, "passive")) != NULL && check_map(c, s, p, pkeys)) {
        gw_health_passive_conf_t *ps = &u->health_passive;
        ps->enabled = 1;
        get_int(c, s, p, "unhealthy", 1, 10000, &ps->unhealthy);
        get_dur(c, s, p, "window", 1, &ps->window_ms);
    }
}

static void
compile_breaker(cctx_t *c, const ynode_t *v, const char *path, gw_breaker_conf_t *b)
{
    static const char *const keys[] = {"window",           "buckets", "k", "protection",
                                       "failure_statuses", "scope",   NULL};
    char p[PATHLEN], ip[PATHLEN];
    const ynode_t *s;

    if (v->kind == YN_SCALAR) {
        if (strcasecmp(v->str, "off") == 0 || strcasecmp(v->str, "false") == 0)
            b->enabled = 0;
        else if (strcasecmp(v->str, "on") != 0 && strcasecmp(v->str, "true") != 0)
            type_err(c, path, "a map or off", v);
        return;
    }
    if (!check_map(c, v, path, keys))
        return;
    get_dur(c, v, path, "window", 1, &b->window_ms);
    get_int(c, v, path, "buckets", 1, 1000, &b->buckets);
    if (b->window_ms < (uint64_t)b->buckets) {
        sub_key(p, path, "buckets");
        cerr(c, p, "a bucket must span at least 1ms (window / buckets)");
    }
    if ((s = mget(v, "k")) != NULL) {
        char *end = NULL;
        double k = s->kind == YN_SCALAR ? strtod(s->str, &end) : NAN;
        sub_key(p, path, "k");
        if (s->kind != YN_SCALAR || end == s->str || *end != '\0' || !isfinite(k))
            type_err(c, p, "a number", s);
        else if (k < 1.1 || k > 10.0)
            cerr(c, p, "must be between 1.1 and 10, got %s", s->str);
        else
            b->k = k;
    }
    get_int(c, v, path, "protection", 0, INT_MAX, &b->protection);
    if ((s = mget(v, "failure_statuses")) != NULL) {
        sub_key(p, path, "failure_statuses");
        if (s->kind != YN_SEQ) {
            type_err(c, p, "a list of status codes", s);
        } else {
            /* An empty list is kept non-NULL: only errors and timeouts count. */
            b->failure_statuses = xcalloc(s->n, sizeof(int));
            for (size_t i = 0; i < s->n; i++) {
                sub_idx(ip, p, i);
                if (check_int(c, s->vals[i], ip, 100, 599, &b->failure_statuses[i]) > 0)
                    b->nfailure_statuses++;
            }
        }
    }
    if ((s = mget(v, "scope")) != NULL) {
        sub_key(p, path, "scope");
        if (s->kind == YN_SCALAR && strcmp(s->str, "route") == 0)
            b->scope = GW_SCOPE_ROUTE;
        else if (s->kind == YN_SCALAR && strcmp(s->str, "upstream") == 0)
            b->scope = GW_SCOPE_UPSTREAM;
        else if (s->kind == YN_SCALAR && strcmp(s->str, "node") == 0)
            b->scope = GW_SCOPE_NODE;
        else
            type_err(c, p, "route, upstream or node", s);
    }
}

/* `scheme: http | https` and its `tls` settings. */
static void
compile_upstream_scheme(cctx_t *c, const ynode_t *v, const char *path, gw_upstream_conf_t *u)
{
    char p[PATHLEN];
    char *scheme = NULL;
    int https = 0;
    if (get_str(c, v, path, "scheme", &scheme) > 0) {
        https = strcmp(scheme, "https") == 0;
        if (!https && strcmp(scheme, "http") != 0) {
            sub_key(p, path, "scheme");
            cerr(c, p, "expected http or https, got \"%.100s\"", scheme);
        }
    }
    free(scheme);
    compile_tls_client(c, v, path, https, &u->tls);
}

static void
compile_upstream(cctx_t *c, const ynode_t *v, const char *path, gw_upstream_conf_t *u)
{
    static const char *const keys[] = {"name",     "nodes",   "discovery", "balancer", "hash_on",
                                       "timeouts", "retries", "keepalive", "health",   "breaker",
                                       "scheme",   "tls",     NULL};
    static const char *const tkeys[] = {"connect", "send", "read", NULL};
    static const char *const kkeys[] = {"size", "idle_timeout", NULL};
    static const char *const balancers[] = {"round_robin", "weighted_round_robin", "random",
                                            "least_conn",  "consistent_hash",      "p2c"};
    char p[PATHLEN], ip[PATHLEN];
    const ynode_t *s, *nodes, *disc;

    u->connect_timeout_ms = 1000;
    u->send_timeout_ms = 5000;
    u->read_timeout_ms = 5000;
    u->retries = 1;
    u->keepalive_size = 64;
    u->keepalive_idle_ms = 60000;
    u->balancer = GW_BAL_ROUND_ROBIN;
    u->health_active.interval_ms = 5000;
    u->health_active.timeout_ms = 1000;
    u->health_active.healthy = 2;
    u->health_active.unhealthy = 3;
    u->health_passive.unhealthy = 5;
    u->health_passive.window_ms = 10000;
    u->breaker.enabled = 1;
    u->breaker.window_ms = 10000;
    u->breaker.buckets = 40;
    u->breaker.k = 1.5;
    u->breaker.protection = 5;
    u->breaker.scope = GW_SCOPE_ROUTE;

    if (!check_map(c, v, path, keys))
        return;
    if (req_str(c, v, path, "name", &u->name) > 0 && u->name[0] == '\0') {
        sub_key(p, path, "name");
        cerr(c, p, "must not be empty");
    }

    nodes = mget(v, "nodes");
    disc = mget(v, "discovery");
    if (nodes != NULL && disc != NULL) {
        cerr(c, path, "give either \"nodes\" or \"discovery\", not both");
    } else if (nodes == NULL && disc == NULL) {
        cerr(c, path, "missing key \"nodes\" (or \"discovery\")");
    } else if (nodes != NULL) {
        sub_key(p, path, "nodes");
        if (nodes->kind != YN_SEQ) {
            type_err(c, p, "a list of nodes", nodes);
        } else if (nodes->n == 0) {
            cerr(c, p, "at least one node is required");
        } else {
            u->nodes = xcalloc(nodes->n, sizeof(gw_node_conf_t));
            u->nnodes = nodes->n;
            for (size_t i = 0; i < nodes->n; i++) {
                sub_idx(ip, p, i);
                compile_node(c, nodes->vals[i], ip, &u->nodes[i]);
            }
        }
    } else {
        sub_key(p, path, "discovery");
        compile_discovery(c, disc, p, &u->discovery);
    }

    int bal_ok = 1;
    if ((s = mget(v, "balancer")) != NULL) {
        size_t i = 0;
        if (s->kind == YN_SCALAR) {
            for (; i < GW_ARRAY_LEN(balancers); i++) {
                if (strcmp(s->str, balancers[i]) == 0)
                    break;
            }
        }
        sub_key(p, path, "balancer");
        if (s->kind == YN_SCALAR && i < GW_ARRAY_LEN(balancers)) {
            u->balancer = (gw_balancer_kind_t)i;
        } else {
            bal_ok = 0;
            type_err(c, p,
                     "round_robin, weighted_round_robin, random, least_conn, consistent_hash or "
                     "p2c",
                     s);
        }
    }
    if (get_keyspec(c, v, path, "hash_on", &u->hash_on) > 0 && bal_ok &&
        u->balancer != GW_BAL_CONSISTENT_HASH) {
        sub_key(p, path, "hash_on");
        cerr(c, p, "only used with balancer consistent_hash");
    }

    sub_key(p, path, "timeouts");
    if ((s = mget(v, "timeouts")) != NULL && check_map(c, s, p, tkeys)) {
        get_dur(c, s, p, "connect", 1, &u->connect_timeout_ms);
        get_dur(c, s, p, "send", 1, &u->send_timeout_ms);
        get_dur(c, s, p, "read", 1, &u->read_timeout_ms);
    }
    get_int(c, v, path, "retries", 0, 100, &u->retries);
    sub_key(p, path, "keepalive");
    if ((s = mget(v, "keepalive")) != NULL && check_map(c, s, p, kkeys)) {
        get_int(c, s, p, "size", 0, INT_MAX, &u->keepalive_size);
        get_dur(c, s, p, "idle_timeout", 1, &u->keepalive_idle_ms);
    }
    sub_key(p, path, "health");
    if ((s = mget(v, "health")) != NULL)
        compile_health(c, s, p, u);
    sub_key(p, path, "breaker");
    if ((s = mget(v, "breaker")) != NULL)
        compile_breaker(c, s, p, &u->breaker);
    compile_upstream_scheme(c, v, path, u);
}

static void
compile_upstreams(cctx_t *c, const ynode_t *v)
{
    gw_conf_t *conf = c->conf;
    char p[PATHLEN];

    if (v->kind != YN_SEQ) {
        type_err(c, "upstreams", "a list", v);
        return;
    }
    conf->upstreams = xcalloc(v->n, sizeof(gw_upstream_conf_t));
    conf->nupstreams = v->n;
    for (size_t i = 0; i < v->n; i++) {
        gw_upstream_conf_t *u = &conf->upstreams[i];
        u->index = i;
        sub_idx(p, "upstreams", i);
        compile_upstream(c, v->vals[i], p, u);
        for (size_t j = 0; u->name && j < i; j++) {
            if (conf->upstreams[j].name && strcmp(conf->upstreams[j].name, u->name) == 0) {
                char np[PATHLEN];
                sub_key(np, p, "name");
                cerr(c, np, "duplicate upstream name \"%.100s\" (also upstreams[%zu])", u->name, j);
                break;
            }
        }
    }
}

/* ---- routes --------------------------------------------------------------- */

static gw_upstream_conf_t *
ref_upstream(cctx_t *c, const ynode_t *map, const char *path)
{
    char p[PATHLEN];
    char *name = NULL;
    gw_upstream_conf_t *u = NULL;

    if (req_str(c, map, path, "upstream", &name) <= 0)
        return NULL;
    u = gw_conf_find_upstream(c->conf, name);
    if (u == NULL) {
        sub_key(p, path, "upstream");
        cerr(c, p, "no upstream named \"%.100s\"", name);
    }
    free(name);
    return u;
}

static void
compile_host(cctx_t *c, const ynode_t *m, const char *path, gw_route_conf_t *r)
{
    char p[PATHLEN];
    char *h = NULL;

    if (get_str(c, m, path, "host", &h) <= 0)
        return;
    sub_key(p, path, "host");
    if (strcmp(h, "*") == 0) {
        free(h);
        return;
    }
    const char *name = h;
    if (strncmp(h, "*.", 2) == 0) {
        r->host_wildcard = 1;
        name = h + 1; /* keep the dot: ".example.com" */
    }
    int bad = name[0] == '\0' || (r->host_wildcard && name[1] == '\0');
    for (const char *q = name; !bad && *q; q++) {
        if (!(isalnum((unsigned char)*q) || *q == '-' || *q == '.' || *q == '_'))
            bad = 1;
    }
    if (bad) {
        cerr(c, p, "expected a host name or *.suffix (no port), got \"%.100s\"", h);
        free(h);
        r->host_wildcard = 0;
        return;
    }
    r->host = xstrdup(name);
    for (char *q = r->host; *q; q++)
        *q = (char)tolower((unsigned char)*q);
    free(h);
}

static void
compile_path(cctx_t *c, const ynode_t *m, const char *path, gw_route_conf_t *r)
{
    static const char *const rkeys[] = {"regex", NULL};
    char p[PATHLEN], rp[PATHLEN];
    const ynode_t *v = mget(m, "path");

    if (v == NULL)
        return;
    sub_key(p, path, "path");
    if (v->kind == YN_MAP) {
        if (!check_map(c, v, p, rkeys))
            return;
        if (req_str(c, v, p, "regex", &r->path) <= 0)
            return;
        sub_key(rp, p, "regex");
        r->path_kind = GW_PATH_REGEX;
        r->path_re = compile_re(c, rp, r->path);
        return;
    }
    if (v->kind != YN_SCALAR) {
        type_err(c, p, "a path or {regex: ...}", v);
        return;
    }
    const char *s = v->str;
    if (s[0] != '/') {
        cerr(c, p, "must start with '/', got \"%.100s\"", s);
        return;
    }
    gw_path_kind_t kind = GW_PATH_EXACT;
    int prefix = 0;
    for (const char *seg = s + 1;;) {
        const char *end = strchr(seg, '/');
        size_t len = end ? (size_t)(end - seg) : strlen(seg);
        if (len == 1 && seg[0] == '*' && end == NULL) {
            prefix = 1;
        } else if (memchr(seg, '*', len) != NULL) {
            cerr(c, p, "'*' is only allowed as the whole last segment (/prefix/*), got \"%.100s\"",
                 s);
            return;
        } else if (len > 0 && seg[0] == ':') {
            if (len == 1) {
                cerr(c, p, "a parameter needs a name (/users/:id), got \"%.100s\"", s);
                return;
            }
            kind = GW_PATH_PARAM;
        }
        for (size_t i = 0; i < len; i++) {
            unsigned char ch = (unsigned char)seg[i];
            if (ch <= ' ' || ch == 0x7f || ch == '?' || ch == '#') {
                cerr(c, p, "must not contain spaces, '?' or '#', got \"%.100s\"", s);
                return;
            }
        }
        if (end == NULL)
            break;
        seg = end + 1;
    }
    if (kind != GW_PATH_PARAM && prefix)
        kind = GW_PATH_PREFIX;
    r->path_kind = kind;
    r->path = xstrdup(s);
}

static void
compile_methods(cctx_t *c, const ynode_t *m, const char *path, gw_route_conf_t *r)
{
    static const struct {
        const char *name;
        unsigned bit;
    } methods[] = {{"GET", GW_M_GET},         {"HEAD", GW_M_HEAD},     {"POST", GW_M_POST},
                   {"PUT", GW_M_PUT},         {"DELETE", GW_M_DELETE}, {"PATCH", GW_M_PATCH},
                   {"OPTIONS", GW_M_OPTIONS}, {"TRACE", GW_M_TRACE},   {"CONNECT", GW_M_CONNECT}};
    char **list = NULL, p[PATHLEN], ip[PATHLEN];
    size_t n = 0;

    if (get_str_list(c, m, path, "methods", &list, &n) <= 0)
        return;
    sub_key(p, path, "methods");
    if (n == 0)
        cerr(c, p, "at least one method is required (leave the key out for any method)");
    for (size_t i = 0; i < n; i++) {
        size_t j;
        for (j = 0; j < GW_ARRAY_LEN(methods); j++) {
            if (strcasecmp(list[i], methods[j].name) == 0)
                break;
        }
        if (j < GW_ARRAY_LEN(methods)) {
            r->methods |= methods[j].bit;
        } else {
            sub_idx(ip, p, i);
            cerr(c, ip,
                 "expected GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS, TRACE or CONNECT, got "
                 "\"%.100s\"",
                 list[i]);
        }
    }
    free_str_list(list, n);
}

static void
compile_predicate(cctx_t *c, const ynode_t *v, const char *path, int header, gw_predicate_t *pr)
{
    static const char *const keys[] = {"name", "op", "value", "values", NULL};
    static const char *const ops[] = {"equals", "not_equals", "contains", "in",
                                      "regex",  "exists",     "absent"};
    char p[PATHLEN], vp[PATHLEN];
    char *op = NULL;

    if (!check_map(c, v, path, keys))
        return;
    if (req_str(c, v, path, "name", &pr->name) > 0) {
        pr->name_len = strlen(pr->name);
        if (header ? !is_header_name(pr->name) : !is_plain_name(pr->name)) {
            sub_key(p, path, "name");
            cerr(c, p, "not a valid %s name: \"%.100s\"", header ? "header" : "query parameter",
                 pr->name);
        }
    }
    pr->op = GW_OP_EQUALS;
    if (get_str(c, v, path, "op", &op) > 0) {
        size_t i;
        for (i = 0; i < GW_ARRAY_LEN(ops); i++) {
            if (strcmp(op, ops[i]) == 0)
                break;
        }
        sub_key(p, path, "op");
        if (i < GW_ARRAY_LEN(ops))
            pr->op = (gw_match_op_t)i;
        else
            cerr(c, p,
                 "expected equals, not_equals, contains, in, regex, exists or absent, got "
                 "\"%.100s\"",
                 op);
        if (i == GW_ARRAY_LEN(ops)) {
            free(op);
            return;
        }
    }
    free(op);

    const ynode_t *value = mget(v, "value");
    const ynode_t *values = mget(v, "values");
    switch (pr->op) {
    case GW_OP_EXISTS:
    case GW_OP_ABSENT:
        if (value || values)
            cerr(c, path, "op %s takes no value", pr->op == GW_OP_EXISTS ? "exists" : "absent");
        return;
    case GW_OP_IN: {
        const ynode_t *list = values ? values : value;
        if (value && values) {
            cerr(c, path, "give either \"value\" or \"values\", not both");
            return;
        }
        if (list == NULL) {
            missing(c, path, "values");
            return;
        }
        sub_key(p, path, values ? "values" : "value");
        if (list->kind == YN_MAP) {
            type_err(c, p, "a list of strings", list);
            return;
        }
        if (get_str_list(c, v, path, values ? "values" : "value", &pr->values, &pr->nvalues) <= 0)
            return;
        if (pr->nvalues == 0) {
            cerr(c, p, "at least one value is required");
            return;
        }
        pr->value_lens = xcalloc(pr->nvalues, sizeof(size_t));
        for (size_t i = 0; i < pr->nvalues; i++)
            pr->value_lens[i] = strlen(pr->values[i]);
        return;
    }
    default:
        if (values) {
            sub_key(p, path, "values");
            cerr(c, p, "only for op in");
            return;
        }
        if (req_str(c, v, path, "value", &pr->value) <= 0)
            return;
        pr->value_len = strlen(pr->value);
        if (pr->op == GW_OP_REGEX) {
            sub_key(vp, path, "value");
            pr->re = compile_re(c, vp, pr->value);
        }
        return;
    }
}

static void
compile_predicates(cctx_t *c, const ynode_t *m, const char *path, const char *key,
                   gw_predicate_t **out, size_t *nout)
{
    char p[PATHLEN], ip[PATHLEN];
    const ynode_t *v = mget(m, key);

    if (v == NULL)
        return;
    sub_key(p, path, key);
    if (v->kind != YN_SEQ) {
        type_err(c, p, "a list of {name, op, value}", v);
        return;
    }
    if (v->n == 0)
        return;
    *out = xcalloc(v->n, sizeof(gw_predicate_t));
    *nout = v->n;
    for (size_t i = 0; i < v->n; i++) {
        sub_idx(ip, p, i);
        compile_predicate(c, v->vals[i], ip, strcmp(key, "headers") == 0, &(*out)[i]);
    }
}

static void
compile_split_rule(cctx_t *c, const ynode_t *v, const char *path, gw_split_rule_t *sr)
{
    static const char *const keys[] = {"when", "upstream", "subset", NULL};
    static const char *const wkeys[] = {"header", "user_hash", "weight", NULL};
    static const char *const hkeys[] = {"name", "value", NULL};
    static const char *const ukeys[] = {"key", "percent", NULL};
    char p[PATHLEN], wp[PATHLEN];
    const ynode_t *w, *s;

    if (!check_map(c, v, path, keys))
        return;
    sr->upstream = ref_upstream(c, v, path);
    get_kv(c, v, path, "subset", &sr->subset, &sr->nsubset);

    sub_key(p, path, "when");
    if ((w = mget(v, "when")) == NULL) {
        missing(c, path, "when");
        return;
    }
    if (!check_map(c, w, p, wkeys))
        return;
    int given =
        (mget(w, "header") != NULL) + (mget(w, "user_hash") != NULL) + (mget(w, "weight") != NULL);
    if (given != 1) {
        cerr(c, p, "expected exactly one of \"header\", \"user_hash\" or \"weight\"");
        return;
    }
    if ((s = mget(w, "header")) != NULL) {
        sr->kind = GW_SPLIT_HEADER;
        sub_key(wp, p, "header");
        if (!check_map(c, s, wp, hkeys))
            return;
        if (req_str(c, s, wp, "name", &sr->header_name) > 0) {
            sr->header_name_len = strlen(sr->header_name);
            if (!is_header_name(sr->header_name)) {
                char np[PATHLEN];
                sub_key(np, wp, "name");
                cerr(c, np, "not a valid header name: \"%.100s\"", sr->header_name);
            }
        }
        if (get_str(c, s, wp, "value", &sr->header_value) > 0)
            sr->header_value_len = strlen(sr->header_value);
    } else if ((s = mget(w, "user_hash")) != NULL) {
        sr->kind = GW_SPLIT_USER_HASH;
        sub_key(wp, p, "user_hash");
        if (!check_map(c, s, wp, ukeys))
            return;
        if (get_keyspec(c, s, wp, "key", &sr->key) == 0)
            missing(c, wp, "key");
        if (get_int(c, s, wp, "percent", 0, 100, &sr->percent) == 0)
            missing(c, wp, "percent");
    } else {
        sr->kind = GW_SPLIT_WEIGHT;
        sub_key(wp, p, "weight");
        check_int(c, mget(w, "weight"), wp, 0, 100, &sr->percent);
    }
}

/* ---- YAML to JSON, for the Lua runtime ----------------------------------- */

static void
json_string(gw_buf_t *b, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    gw_buf_append(b, "\"", 1);
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '"' || ch == '\\') {
            char e[2] = {'\\', (char)ch};
            gw_buf_append(b, e, 2);
        } else if (ch < 0x20) {
            char e[6] = {'\\', 'u', '0', '0', hex[ch >> 4], hex[ch & 15]};
            gw_buf_append(b, e, 6);
        } else {
            gw_buf_append(b, &s[i], 1);
        }
    }
    gw_buf_append(b, "\"", 1);
}

/* A plain scalar that reads as a JSON number (no "+1", "0x1", ".5", "1.") */
static int
json_number(const char *s)
{
    const char *p = s;
    if (*p == '-')
        p++;
    if (*p == '0')
        p++;
    else if (*p >= '1' && *p <= '9')
        while (*p >= '0' && *p <= '9')
            p++;
    else
        return 0;
    if (*p == '.') {
        p++;
        if (!(*p >= '0' && *p <= '9'))
            return 0;
        while (*p >= '0' && *p <= '9')
            p++;
    }
    if (*p == 'e' || *p == 'E') {
        p++;
        if (*p == '+' || *p == '-')
            p++;
        if (!(*p >= '0' && *p <= '9'))
            return 0;
        while (*p >= '0' && *p <= '9')
            p++;
    }
    return *p == 0;
}

/* Plain scalars take their YAML core-schema type; quoted ones are strings. */
static void
to_json(gw_buf_t *b, const ynode_t *n)
{
    if (n->kind == YN_MAP) {
        gw_buf_append(b, "{", 1);
        for (size_t i = 0; i < n->n; i++) {
            if (i)
                gw_buf_append(b, ",", 1);
            json_string(b, n->keys[i]->str, n->keys[i]->len);
            gw_buf_append(b, ":", 1);
            to_json(b, n->vals[i]);
        }
        gw_buf_append(b, "}", 1);
    } else if (n->kind == YN_SEQ) {
        gw_buf_append(b, "[", 1);
        for (size_t i = 0; i < n->n; i++) {
            if (i)
                gw_buf_append(b, ",", 1);
            to_json(b, n->vals[i]);
        }
        gw_buf_append(b, "]", 1);
    } else if (is_null(n)) {
        gw_buf_append(b, "null", 4);
    } else if (n->plain && (strcmp(n->str, "true") == 0 || strcmp(n->str, "True") == 0 ||
                            strcmp(n->str, "TRUE") == 0)) {
        gw_buf_append(b, "true", 4);
    } else if (n->plain && (strcmp(n->str, "false") == 0 || strcmp(n->str, "False") == 0 ||
                            strcmp(n->str, "FALSE") == 0)) {
        gw_buf_append(b, "false", 5);
    } else if (n->plain && json_number(n->str)) {
        gw_buf_append(b, n->str, n->len);
    } else {
        json_string(b, n->str, n->len);
    }
}

static char *
node_json(const ynode_t *n)
{
    gw_buf_t b = {0};
    if (n == NULL || is_null(n))
        gw_buf_append(&b, "{}", 2);
    else
        to_json(&b, n);
    gw_buf_append(&b, "", 1);
    return b.data;
}

/* Plugin names and configs are checked by the Lua runtime against each
 * plugin's schema (at -t, at start and at reload); here only the shape. */
static void
compile_plugins(cctx_t *c, const ynode_t *v, const char *path, gw_plugin_conf_t **out, size_t *nout)
{
    char p[PATHLEN];

    if (v->kind != YN_MAP) {
        type_err(c, path, "a map of plugin name to its config", v);
        return;
    }
    *out = xcalloc(v->n ? v->n : 1, sizeof(gw_plugin_conf_t));
    for (size_t i = 0; i < v->n; i++) {
        gw_plugin_conf_t *pc = &(*out)[(*nout)++];
        sub_key(p, path, v->keys[i]->str);
        pc->name = xstrdup(v->keys[i]->str);
        pc->path = xstrdup(p);
        if (!is_null(v->vals[i]) && v->vals[i]->kind != YN_MAP)
            type_err(c, p, "a map (the plugin's config)", v->vals[i]);
        pc->json = node_json(v->vals[i]);
        c->conf->has_plugins = 1;
    }
}

/* The position of :NAME among PATH's :params, or -1 (the first when repeated). */
static long
path_param_index(const char *path, const char *name, size_t nlen)
{
    long at = 0;
    for (const char *seg = path + 1;;) {
        const char *end = strchr(seg, '/');
        size_t len = end ? (size_t)(end - seg) : strlen(seg);
        if (len > 0 && seg[0] == ':') {
            if (len - 1 == nlen && memcmp(seg + 1, name, nlen) == 0)
                return at;
            at++;
        }
        if (end == NULL)
            return -1;
        seg = end + 1;
    }
}

static int
upath_byte_ok(unsigned char ch)
{
    return ch > ' ' && ch != 0x7f && ch != '?' && ch != '#';
}

/*
 * upstream_path: "/v1/user/{id}", each {name} a :param of match.path. Only
 * exact and :param paths without a final star segment qualify: a prefix,
 * regex or any-path route matches a rest the template has no place for
 * (strip_prefix serves those), and strip_prefix on the same route would
 * fight over the same path.
 */
static void
compile_upstream_path(cctx_t *c, const ynode_t *v, const char *path, gw_route_conf_t *r)
{
    char p[PATHLEN];
    if (get_str(c, v, path, "upstream_path", &r->upstream_path) <= 0)
        return;
    sub_key(p, path, "upstream_path");
    const char *t = r->upstream_path;
    size_t tlen = strlen(t);
    size_t plen = r->path ? strlen(r->path) : 0;
    int star = plen >= 2 && r->path[plen - 2] == '/' && r->path[plen - 1] == '*';
    if (t[0] != '/') {
        cerr(c, p, "must start with '/', got \"%.100s\"", t);
        return;
    }
    if (r->strip_prefix) {
        cerr(c, p, "cannot be combined with strip_prefix");
        return;
    }
    if (r->path_kind != GW_PATH_EXACT && !(r->path_kind == GW_PATH_PARAM && !star)) {
        cerr(c, p,
             "needs an exact or :param match.path without a final /*, got %s%.100s%s "
             "(strip_prefix rewrites prefix routes)",
             r->path_kind == GW_PATH_REGEX ? "{regex: \""
             : r->path                     ? "\""
                                           : "",
             r->path ? r->path : "no path",
             r->path_kind == GW_PATH_REGEX ? "\"}"
             : r->path                     ? "\""
                                           : "");
        return;
    }
    r->upath = xcalloc(tlen, sizeof(*r->upath)); /* a part is at least one byte */
    for (size_t i = 0; i < tlen;) {
        gw_upath_part_t *part = &r->upath[r->nupath++];
        if (t[i] != '{') {
            size_t j = i;
            while (j < tlen && t[j] != '{' && t[j] != '}' && upath_byte_ok((unsigned char)t[j]))
                j++;
            if (j < tlen && t[j] != '{') {
                cerr(c, p,
                     t[j] == '}' ? "'}' without '{' in \"%.100s\""
                                 : "must not contain spaces, '?' or '#', got \"%.100s\"",
                     t);
                return;
            }
            *part = (gw_upath_part_t){t + i, j - i, 0};
            i = j;
            continue;
        }
        const char *name = t + i + 1, *close = strchr(name, '}');
        size_t nlen = close ? (size_t)(close - name) : 0;
        if (close == NULL || nlen == 0 || memchr(name, '{', nlen) || memchr(name, '/', nlen)) {
            cerr(c, p, "a parameter is written {name}, got \"%.100s\"", t);
            return;
        }
        long at = path_param_index(r->path, name, nlen);
        if (r->path_kind != GW_PATH_PARAM || at < 0) {
            cerr(c, p, "{%.*s} is not captured by match.path \"%.100s\"", (int)nlen, name, r->path);
            return;
        }
        *part = (gw_upath_part_t){NULL, 0, (size_t)at};
        i += nlen + 2;
    }
}

static void
compile_route(cctx_t *c, const ynode_t *v, const char *path, gw_route_conf_t *r)
{
    static const char *const keys[] = {"name",         "match",         "priority", "upstream",
                                       "strip_prefix", "timeout",       "subset",   "split",
                                       "plugins",      "upstream_path", NULL};
    static const char *const mkeys[] = {"host", "path", "methods", "headers", "query", NULL};
    char p[PATHLEN], ip[PATHLEN];
    const ynode_t *s;

    if (!check_map(c, v, path, keys))
        return;
    if (get_str(c, v, path, "name", &r->name) > 0 && r->name[0] == '\0') {
        sub_key(p, path, "name");
        cerr(c, p, "must not be empty");
    }
    sub_key(p, path, "match");
    if ((s = mget(v, "match")) != NULL && check_map(c, s, p, mkeys)) {
        compile_host(c, s, p, r);
        compile_path(c, s, p, r);
        compile_methods(c, s, p, r);
        compile_predicates(c, s, p, "headers", &r->headers, &r->nheaders);
        compile_predicates(c, s, p, "query", &r->query, &r->nquery);
    }
    get_int(c, v, path, "priority", INT_MIN, INT_MAX, &r->priority);
    r->upstream = ref_upstream(c, v, path);
    if (get_str(c, v, path, "strip_prefix", &r->strip_prefix) > 0) {
        r->strip_prefix_len = strlen(r->strip_prefix);
        if (r->strip_prefix[0] != '/') {
            sub_key(p, path, "strip_prefix");
            cerr(c, p, "must start with '/', got \"%.100s\"", r->strip_prefix);
        }
    }
    compile_upstream_path(c, v, path, r);
    get_dur(c, v, path, "timeout", 0, &r->timeout_ms);
    get_kv(c, v, path, "subset", &r->subset, &r->nsubset);

    sub_key(p, path, "split");
    if ((s = mget(v, "split")) != NULL) {
        if (s->kind != YN_SEQ) {
            type_err(c, p, "a list of rules", s);
        } else if (s->n > 0) {
            r->split = xcalloc(s->n, sizeof(gw_split_rule_t));
            r->nsplit = s->n;
            for (size_t i = 0; i < s->n; i++) {
                sub_idx(ip, p, i);
                compile_split_rule(c, s->vals[i], ip, &r->split[i]);
            }
        }
    }
    sub_key(p, path, "plugins");
    if ((s = mget(v, "plugins")) != NULL)
        compile_plugins(c, s, p, &r->plugins, &r->nplugins);
}

static void
compile_routes(cctx_t *c, const ynode_t *v)
{
    gw_conf_t *conf = c->conf;
    char p[PATHLEN];

    if (v->kind != YN_SEQ) {
        type_err(c, "routes", "a list", v);
        return;
    }
    conf->routes = xcalloc(v->n, sizeof(gw_route_conf_t));
    conf->nroutes = v->n;
    for (size_t i = 0; i < v->n; i++) {
        gw_route_conf_t *r = &conf->routes[i];
        r->index = i;
        sub_idx(p, "routes", i);
        compile_route(c, v->vals[i], p, r);
        if (r->name == NULL) {
            r->name = xstrdup(p);
            continue;
        }
        for (size_t j = 0; j < i; j++) {
            if (conf->routes[j].name && strcmp(conf->routes[j].name, r->name) == 0) {
                char np[PATHLEN];
                sub_key(np, p, "name");
                cerr(c, np, "duplicate route name \"%.100s\" (also routes[%zu])", r->name, j);
                break;
            }
        }
    }
}

static void
compile_consumers(cctx_t *c, const ynode_t *v)
{
    char p[PATHLEN], kp[PATHLEN];

    if (v->kind != YN_SEQ) {
        type_err(c, "consumers", "a list", v);
        return;
    }
    for (size_t i = 0; i < v->n; i++) {
        const ynode_t *it = v->vals[i], *name;
        sub_idx(p, "consumers", i);
        if (it->kind != YN_MAP) {
            type_err(c, p, "a map", it);
            continue;
        }
        if ((name = mget(it, "name")) == NULL) {
            missing(c, p, "name");
        } else if (name->kind != YN_SCALAR || name->len == 0) {
            sub_key(kp, p, "name");
            type_err(c, kp, "a non-empty string", name);
        } else {
            for (size_t j = 0; j < i; j++) {
                const ynode_t *o = v->vals[j]->kind == YN_MAP ? mget(v->vals[j], "name") : NULL;
                if (o && o->kind == YN_SCALAR && strcmp(o->str, name->str) == 0) {
                    sub_key(kp, p, "name");
                    cerr(c, kp, "duplicate consumer name \"%.100s\" (also consumers[%zu])",
                         name->str, j);
                    break;
                }
            }
        }
        /* The other keys are credentials for auth plugins, read by them. */
        for (size_t j = 0; j < it->n; j++) {
            if (strcmp(it->keys[j]->str, "name") == 0 || is_null(it->vals[j]))
                continue;
            if (it->vals[j]->kind != YN_MAP) {
                sub_key(kp, p, it->keys[j]->str);
                type_err(c, kp, "a map (the plugin's consumer config)", it->vals[j]);
            }
        }
    }
}

/* ---- warnings: valid, but likely not what was meant ------------------------ */

/* A subset no static node matches: its requests can only get 503. */
static void
warn_empty_subset(cctx_t *c, const char *path, const gw_upstream_conf_t *u, const gw_kv_t *subset,
                  size_t nsubset, const char *who)
{
    if (u == NULL || subset == NULL || u->discovery.kind != GW_DISC_STATIC)
        return;
    for (size_t i = 0; i < u->nnodes; i++) {
        if (gw_subset_match(&u->nodes[i], subset, nsubset))
            return;
    }
    cwarn(c, path, "matches no node of upstream \"%.100s\": %s get 503 \"no healthy node\"",
          u->name, who);
}

/* random and p2c draw among nodes as equals; a weight there is a mistake. */
static void
warn_ignored_weights(cctx_t *c, const char *path, const gw_upstream_conf_t *u)
{
    if (u->balancer != GW_BAL_RANDOM && u->balancer != GW_BAL_P2C)
        return;
    for (size_t i = 1; i < u->nnodes; i++) {
        if (u->nodes[i].weight != u->nodes[0].weight) {
            cwarn(c, path,
                  "%s ignores node weights, which differ here; use round_robin, least_conn or "
                  "consistent_hash for weighted shares",
                  u->balancer == GW_BAL_RANDOM ? "random" : "p2c");
            return;
        }
    }
}

static void
warn_all(cctx_t *c)
{
    const gw_conf_t *conf = c->conf;
    char p[PATHLEN], sp[PATHLEN];

    for (size_t i = 0; i < conf->nupstreams; i++) {
        sub_idx(p, "upstreams", i);
        sub_key(sp, p, "balancer");
        warn_ignored_weights(c, sp, &conf->upstreams[i]);
    }
    for (size_t i = 0; i < conf->nroutes; i++) {
        const gw_route_conf_t *r = &conf->routes[i];
        sub_idx(p, "routes", i);
        sub_key(sp, p, "subset");
        warn_empty_subset(c, sp, r->upstream, r->subset, r->nsubset,
                          "requests no split rule takes");
        for (size_t j = 0; j < r->nsplit; j++) {
            char rp[PATHLEN], ip[PATHLEN];
            sub_key(rp, p, "split");
            sub_idx(ip, rp, j);
            sub_key(sp, ip, "subset");
            warn_empty_subset(c, sp, r->split[j].upstream, r->split[j].subset, r->split[j].nsubset,
                              "requests this rule takes");
        }
    }
}

/* ---- the whole file ------------------------------------------------------- */

static void
compile(cctx_t *c, const ynode_t *root)
{
    static const char *const keys[] = {"gateway", "redis",     "registries", "upstreams",
                                       "routes",  "consumers", "plugins",    NULL};
    const ynode_t *v;

    if (root == NULL) {
        cerr(c, "", "the config is empty");
        return;
    }
    if (root->kind != YN_MAP) {
        type_err(c, "", "a map at the top level", root);
        return;
    }
    for (size_t i = 0; i < root->n; i++) {
        if (!in_list(root->keys[i]->str, keys))
            cerr(c, root->keys[i]->str, "unknown key");
    }
    compile_gateway(c, mget(root, "gateway"));
    if ((v = mget(root, "redis")) != NULL)
        compile_redis(c, v);
    if ((v = mget(root, "registries")) != NULL)
        compile_registries(c, v);
    if ((v = mget(root, "upstreams")) != NULL)
        compile_upstreams(c, v);
    if ((v = mget(root, "routes")) != NULL)
        compile_routes(c, v);
    if ((v = mget(root, "consumers")) != NULL) {
        compile_consumers(c, v);
        if (v->kind == YN_SEQ) {
            free(c->conf->consumers_json);
            c->conf->consumers_json = node_json(v);
        }
    }
    if ((v = mget(root, "plugins")) != NULL)
        compile_plugins(c, v, "plugins", &c->conf->global_plugins, &c->conf->nglobal_plugins);
    if (c->nerr == 0)
        warn_all(c);
}

static gw_conf_t *
conf_new(void)
{
    gw_conf_t *conf = xcalloc(1, sizeof(*conf));
    conf->client_header_timeout_ms = 10 * 1000;
    conf->tls.min_protocol = 0x0303;
    conf->tls.session_tickets = 1;
    conf->tls.ticket_key_rotation_ms = 3600 * 1000;
    conf->tls.session_cache_size = 20480;
    conf->tls.session_timeout_ms = 600 * 1000;
    conf->client_body_timeout_ms = 30 * 1000;
    conf->keepalive_timeout_ms = 75 * 1000;
    conf->drain_timeout_ms = 30 * 1000;
    conf->max_header_size = 16 * 1024;
    conf->max_body_size = 8 * 1024 * 1024;
    conf->max_connections = 10000;
    conf->error_log = xstrdup("stderr");
    conf->error_log_level = GW_LOG_INFO;
    conf->pid_file = xstrdup("logs/gateway.pid");
    conf->plugin_paths = xcalloc(1, sizeof(char *));
    conf->plugin_paths[0] = xstrdup("plugins");
    conf->nplugin_paths = 1;
    conf->consumers_json = xstrdup("[]");
    conf->redis_timeout_ms = 50;
    conf->lua_memory = (size_t)512 * 1024 * 1024;
    conf->watchdog_ms = 5000;
    conf->loop_nap_us = 20;
    return conf;
}

gw_conf_t *
gw_conf_load_string(const char *yaml, size_t len, const char *name, gw_conf_errors_t *errs)
{
    cctx_t c;
    ynode_t *root = NULL;

    memset(&c, 0, sizeof(c));
    c.name = name ? name : "config";
    c.errs = errs;
    if (errs != NULL) {
        errs->lines = NULL;
        errs->n = 0;
    }
    if (load_tree(&c, yaml, len, &root) != GW_OK)
        return NULL;
    c.conf = conf_new();
    c.conf->file = xstrdup(c.name);
    c.conf->hash = 14695981039346656037ULL; /* FNV-1a 64 of the text */
    for (size_t i = 0; i < len; i++)
        c.conf->hash = (c.conf->hash ^ (unsigned char)yaml[i]) * 1099511628211ULL;
    compile(&c, root);
    c.conf->tree_json = node_json(root);
    ynode_free(root);
    if (c.nerr > 0) {
        gw_conf_free(c.conf);
        return NULL;
    }
    return c.conf;
}

gw_conf_t *
gw_conf_load(const char *file, gw_conf_errors_t *errs)
{
    cctx_t c;
    FILE *f;
    char *buf = NULL;
    size_t len = 0, cap = 0;

    memset(&c, 0, sizeof(c));
    c.name = file;
    c.errs = errs;
    if (errs != NULL) {
        errs->lines = NULL;
        errs->n = 0;
    }
    if ((f = fopen(file, "rb")) == NULL) {
        raw_err(&c, "%s: cannot open: %s", file, strerror(errno));
        return NULL;
    }
    for (;;) {
        if (len == cap) {
            cap = cap ? cap * 2 : 16384;
            buf = xrealloc(buf, cap);
        }
        size_t n = fread(buf + len, 1, cap - len, f);
        len += n;
        if (n == 0)
            break;
    }
    if (ferror(f)) {
        raw_err(&c, "%s: cannot read: %s", file, strerror(errno));
        fclose(f);
        free(buf);
        return NULL;
    }
    fclose(f);
    gw_conf_t *conf = gw_conf_load_string(buf, len, file, errs);
    free(buf);
    return conf;
}

static void
free_listen(gw_listen_conf_t *l)
{
    free(l->host);
}

static void
free_predicates(gw_predicate_t *p, size_t n)
{
    for (size_t i = 0; p && i < n; i++) {
        free(p[i].name);
        free(p[i].value);
        free_str_list(p[i].values, p[i].nvalues);
        free(p[i].value_lens);
        pcre2_code_free(p[i].re);
    }
    free(p);
}

static void
free_plugins(gw_plugin_conf_t *p, size_t n)
{
    for (size_t i = 0; p && i < n; i++) {
        free(p[i].name);
        free(p[i].json);
        free(p[i].path);
    }
    free(p);
}

void
gw_conf_free(gw_conf_t *conf)
{
    if (conf == NULL)
        return;
    free(conf->file);
    for (size_t i = 0; conf->listen && i < conf->nlisten; i++)
        free_listen(&conf->listen[i]);
    free(conf->listen);
    free_listen(&conf->status_listen);
    free_listen(&conf->admin_listen);
    free(conf->admin_key);
    free_tls(&conf->tls);
    free(conf->access_log);
    free(conf->error_log);
    free(conf->pid_file);
    free_str_list(conf->plugin_paths, conf->nplugin_paths);
    free(conf->redis_addr);
    free_str_list(conf->redis_addrs, conf->nredis_addrs);
    free(conf->redis_master_name);
    free(conf->redis_sentinel_password);
    free(conf->redis_password);

    for (size_t i = 0; conf->upstreams && i < conf->nupstreams; i++) {
        gw_upstream_conf_t *u = &conf->upstreams[i];
        free(u->name);
        for (size_t j = 0; u->nodes && j < u->nnodes; j++) {
            free(u->nodes[j].addr);
            free(u->nodes[j].host);
            free_kv(u->nodes[j].meta, u->nodes[j].nmeta);
        }
        free(u->nodes);
        free(u->discovery.registry);
        free(u->discovery.format);
        free(u->discovery.key);
        free(u->discovery.service);
        free(u->discovery.host);
        free(u->discovery.srv);
        free(u->hash_on.name);
        free(u->health_active.path);
        free(u->breaker.failure_statuses);
        free_tls_client(&u->tls);
    }
    free(conf->upstreams);

    for (size_t i = 0; conf->registries && i < conf->nregistries; i++) {
        gw_registry_conf_t *g = &conf->registries[i];
        free(g->name);
        free_str_list(g->endpoints, g->nendpoints);
        free(g->username);
        free(g->password);
        free(g->token);
        free(g->dc);
        free(g->prefix);
        free_str_list(g->nameservers, g->nnameservers);
        free_tls_client(&g->tls);
    }
    free(conf->registries);

    for (size_t i = 0; conf->routes && i < conf->nroutes; i++) {
        gw_route_conf_t *r = &conf->routes[i];
        free(r->name);
        free(r->host);
        free(r->path);
        pcre2_code_free(r->path_re);
        free_predicates(r->headers, r->nheaders);
        free_predicates(r->query, r->nquery);
        free(r->strip_prefix);
        free(r->upstream_path);
        free(r->upath);
        free_kv(r->subset, r->nsubset);
        for (size_t j = 0; r->split && j < r->nsplit; j++) {
            free(r->split[j].header_name);
            free(r->split[j].header_value);
            free(r->split[j].key.name);
            free_kv(r->split[j].subset, r->split[j].nsubset);
        }
        free(r->split);
        free_plugins(r->plugins, r->nplugins);
    }
    free(conf->routes);
    free_plugins(conf->global_plugins, conf->nglobal_plugins);
    free(conf->consumers_json);
    free(conf->tree_json);
    free_str_list(conf->warnings, conf->nwarnings);
    free(conf);
}

void
gw_conf_errors_free(gw_conf_errors_t *errs)
{
    if (errs == NULL)
        return;
    for (size_t i = 0; i < errs->n; i++)
        free(errs->lines[i]);
    free(errs->lines);
    errs->lines = NULL;
    errs->n = 0;
}

gw_upstream_conf_t *
gw_conf_find_upstream(const gw_conf_t *conf, const char *name)
{
    for (size_t i = 0; conf && name && i < conf->nupstreams; i++) {
        if (conf->upstreams[i].name && strcmp(conf->upstreams[i].name, name) == 0)
            return &conf->upstreams[i];
    }
    return NULL;
}

int
gw_subset_match(const gw_node_conf_t *node, const gw_kv_t *subset, size_t nsubset)
{
    if (node == NULL)
        return 0;
    if (subset == NULL)
        return 1;
    for (size_t i = 0; i < nsubset; i++) {
        int hit = 0;

        if (subset[i].key == NULL || subset[i].value == NULL)
            return 0;
        for (size_t j = 0; node->meta != NULL && j < node->nmeta && !hit; j++) {
            const gw_kv_t *m = &node->meta[j];
            hit = m->key != NULL && m->value != NULL && strcmp(m->key, subset[i].key) == 0 &&
                  strcmp(m->value, subset[i].value) == 0;
        }
        if (!hit)
            return 0;
    }
    return 1;
}
