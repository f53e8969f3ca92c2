/* Router: match kinds, hosts, methods, predicates, ranking, params, scale. */
#define PCRE2_CODE_UNIT_WIDTH 8

#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gw_router.h"
#include "tap.h"

#define MAXR 64

/* A route table built by hand, as the config module would fill it. */
typedef struct {
    gw_route_conf_t r[MAXR];
    size_t n;
} table_t;

static gw_route_conf_t *
add(table_t *t, const char *name, gw_path_kind_t kind, const char *path)
{
    gw_route_conf_t *rc = &t->r[t->n];
    memset(rc, 0, sizeof(*rc));
    rc->name = (char *)name;
    rc->index = t->n;
    rc->path_kind = kind;
    rc->path = (char *)path;
    t->n++;
    return rc;
}

static pcre2_code *
re_compile(const char *pat)
{
    int code;
    PCRE2_SIZE off;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED, 0, &code, &off, NULL);
    if (re)
        pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);
    return re;
}

static gw_predicate_t
pred(const char *name, gw_match_op_t op, const char *value)
{
    gw_predicate_t p;
    memset(&p, 0, sizeof(p));
    p.name = (char *)name;
    p.name_len = strlen(name);
    p.op = op;
    if (value) {
        p.value = (char *)value;
        p.value_len = strlen(value);
    }
    return p;
}

typedef struct {
    gw_req_view_t v;
    gw_header_t h[8];
} req_t;

static const gw_req_view_t *
mkreq(req_t *q, unsigned method, const char *host, const char *path, const char *query)
{
    memset(q, 0, sizeof(*q));
    q->v.method = method;
    q->v.host = (gw_str_t){host, strlen(host)};
    q->v.path = (gw_str_t){path, strlen(path)};
    if (query)
        q->v.query = (gw_str_t){query, strlen(query)};
    q->v.headers = q->h;
    return &q->v;
}

static void
hdr(req_t *q, const char *name, const char *value)
{
    q->h[q->v.nheaders++] = (gw_header_t){{name, strlen(name)}, {value, strlen(value)}};
}

/* Name of the route chosen for (method, host, path, query), "-" for none. */
static const char *
pick(gw_router_t *r, unsigned m, const char *host, const char *path, const char *query)
{
    req_t q;
    const gw_route_conf_t *rc = gw_router_match(r, mkreq(&q, m, host, path, query), NULL, NULL);
    return rc ? rc->name : "-";
}

static const char *
pickq(gw_router_t *r, req_t *q)
{
    const gw_route_conf_t *rc = gw_router_match(r, &q->v, NULL, NULL);
    return rc ? rc->name : "-";
}

static gw_router_t *
build(table_t *t)
{
    char err[256] = "";
    gw_router_t *r = gw_router_new(t->r, t->n, err, sizeof(err));
    ok(r != NULL, "router built (%s)", err[0] ? err : "no error");
    return r;
}

static int
slice_is(gw_str_t s, const char *want)
{
    return s.len == strlen(want) && memcmp(s.data, want, s.len) == 0;
}

static void
test_path_kinds(void)
{
    table_t t = {.n = 0};
    add(&t, "exact", GW_PATH_EXACT, "/a/b");
    add(&t, "prefix", GW_PATH_PREFIX, "/p/q/*");
    add(&t, "param", GW_PATH_PARAM, "/users/:id");
    add(&t, "param-under", GW_PATH_PARAM, "/files/:bucket/*");
    add(&t, "root", GW_PATH_EXACT, "/");
    add(&t, "slash", GW_PATH_EXACT, "/a/b/");
    gw_route_conf_t *re = add(&t, "regex", GW_PATH_REGEX, "^/v[0-9]+/");
    re->path_re = re_compile(re->path);
    add(&t, "regex-anywhere", GW_PATH_REGEX, "needle"); /* compiled by the router */
    gw_router_t *r = build(&t);

    is_str(pick(r, GW_M_GET, "h", "/a/b", NULL), "exact", "exact path");
    is_str(pick(r, GW_M_GET, "h", "/a/b/", NULL), "slash", "exact path with trailing slash");
    is_str(pick(r, GW_M_GET, "h", "/a", NULL), "-", "exact: parent does not match");
    is_str(pick(r, GW_M_GET, "h", "/a/b/c", NULL), "-", "exact: child does not match");
    is_str(pick(r, GW_M_GET, "h", "/", NULL), "root", "exact /");
    is_str(pick(r, GW_M_GET, "h", "/p/q", NULL), "prefix", "prefix matches its base");
    is_str(pick(r, GW_M_GET, "h", "/p/q/", NULL), "prefix", "prefix matches base/");
    is_str(pick(r, GW_M_GET, "h", "/p/q/x/y", NULL), "prefix", "prefix matches below");
    is_str(pick(r, GW_M_GET, "h", "/p/qr", NULL), "-", "prefix stops at segment boundary");
    is_str(pick(r, GW_M_GET, "h", "/p", NULL), "-", "prefix: parent does not match");
    is_str(pick(r, GW_M_GET, "h", "/users/42", NULL), "param", "param");
    is_str(pick(r, GW_M_GET, "h", "/users/", NULL), "-", "param needs a non-empty segment");
    is_str(pick(r, GW_M_GET, "h", "/users", NULL), "-", "param needs its segment");
    is_str(pick(r, GW_M_GET, "h", "/users/42/x", NULL), "-", "param matches one segment");
    is_str(pick(r, GW_M_GET, "h", "/files/b1", NULL), "param-under", "param with /*, base");
    is_str(pick(r, GW_M_GET, "h", "/files/b1/x/y", NULL), "param-under", "param with /*, below");
    is_str(pick(r, GW_M_GET, "h", "/v2/x", NULL), "regex", "regex anchored");
    is_str(pick(r, GW_M_GET, "h", "/x/v2/x", NULL), "-", "anchored regex not elsewhere");
    is_str(pick(r, GW_M_GET, "h", "/x/haystack-needle/y", NULL), "regex-anywhere",
           "unanchored regex matches anywhere");
    is_str(pick(r, GW_M_GET, "h", "/nothing", NULL), "-", "no route");
    is_str(pick(r, GW_M_GET, "h", "", NULL), "-", "empty path: no trie route");
    gw_router_free(r);
    pcre2_code_free(re->path_re);

    /* An any-path route catches what nothing else takes. */
    t.n = 0;
    add(&t, "any", GW_PATH_ANY, NULL);
    add(&t, "exact", GW_PATH_EXACT, "/a");
    add(&t, "all", GW_PATH_PREFIX, "/*");
    r = build(&t);
    is_str(pick(r, GW_M_GET, "h", "/a", NULL), "exact", "exact beats /* and any");
    is_str(pick(r, GW_M_GET, "h", "/b/c", NULL), "all", "/* beats any");
    is_str(pick(r, GW_M_GET, "h", "/", NULL), "all", "/* matches /");
    is_str(pick(r, GW_M_GET, "h", "*", NULL), "any", "any matches a non-path target");
    gw_router_free(r);
}

static void
test_params(void)
{
    table_t t = {.n = 0};
    add(&t, "two", GW_PATH_PARAM, "/org/:org/repo/:repo");
    add(&t, "under", GW_PATH_PARAM, "/org/:org/tree/:ref/*");
    gw_router_t *r = build(&t);
    req_t q;
    gw_param_t p[GW_MAX_PARAMS];
    size_t np = 99;
    const gw_route_conf_t *rc =
        gw_router_match(r, mkreq(&q, GW_M_GET, "h", "/org/acme/repo/gw", NULL), p, &np);
    ok(rc && strcmp(rc->name, "two") == 0, "two params matched");
    is_int(np, 2, "two params captured");
    ok(slice_is(p[0].name, "org") && slice_is(p[0].value, "acme"), "param org=acme");
    ok(slice_is(p[1].name, "repo") && slice_is(p[1].value, "gw"), "param repo=gw");
    ok(p[1].value.data >= q.v.path.data && p[1].value.data < q.v.path.data + q.v.path.len,
       "param value is a slice of the request path");

    rc = gw_router_match(r, mkreq(&q, GW_M_GET, "h", "/org/acme/tree/main/src/x.c", NULL), p, &np);
    ok(rc && strcmp(rc->name, "under") == 0, "param route with /* matched");
    is_int(np, 2, "its params captured");
    ok(slice_is(p[1].value, "main"), "ref=main");

    np = 99;
    rc = gw_router_match(r, mkreq(&q, GW_M_GET, "h", "/org/acme", NULL), p, &np);
    ok(rc == NULL && np == 0, "no match: nparams = 0");
    rc = gw_router_match(r, mkreq(&q, GW_M_GET, "h", "/org/a/repo/b", NULL), NULL, NULL);
    ok(rc != NULL, "params and nparams may be NULL");
    gw_router_free(r);

    /* A literal edge and a param edge at the same node: both explored. */
    t.n = 0;
    add(&t, "lit", GW_PATH_EXACT, "/u/me/x");
    add(&t, "par", GW_PATH_PARAM, "/u/:id/y");
    r = build(&t);
    is_str(pick(r, GW_M_GET, "h", "/u/me/x", NULL), "lit", "literal branch");
    is_str(pick(r, GW_M_GET, "h", "/u/me/y", NULL), "par", "backtracks into the param branch");
    gw_router_free(r);
}

static void
test_hosts(void)
{
    table_t t = {.n = 0};
    gw_route_conf_t *rc = add(&t, "exact-host", GW_PATH_PREFIX, "/*");
    rc->host = "api.example.com";
    rc = add(&t, "wild", GW_PATH_PREFIX, "/*");
    rc->host = ".example.com";
    rc->host_wildcard = 1;
    rc = add(&t, "wild-star", GW_PATH_PREFIX, "/*");
    rc->host = "*.other.org"; /* written form, tolerated */
    rc = add(&t, "upper", GW_PATH_EXACT, "/up");
    rc->host = "UP.Example.NET";
    add(&t, "nohost", GW_PATH_EXACT, "/free");
    gw_router_t *r = build(&t);

    is_str(pick(r, GW_M_GET, "api.example.com", "/x", NULL), "exact-host", "exact host");
    is_str(pick(r, GW_M_GET, "a.example.com", "/x", NULL), "wild", "wildcard host");
    is_str(pick(r, GW_M_GET, "a.b.example.com", "/x", NULL), "wild", "wildcard, two labels");
    is_str(pick(r, GW_M_GET, "example.com", "/x", NULL), "-", "wildcard excludes the apex");
    is_str(pick(r, GW_M_GET, "xexample.com", "/x", NULL), "-", "wildcard needs a dot");
    is_str(pick(r, GW_M_GET, ".example.com", "/x", NULL), "-", "wildcard needs a label");
    is_str(pick(r, GW_M_GET, "www.other.org", "/x", NULL), "wild-star", "*.suffix written form");
    is_str(pick(r, GW_M_GET, "up.example.net", "/up", NULL), "upper", "config host case-folded");
    is_str(pick(r, GW_M_GET, "other.net", "/x", NULL), "-", "unknown host");
    is_str(pick(r, GW_M_GET, "anything", "/free", NULL), "nohost", "no host: any host");
    is_str(pick(r, GW_M_GET, "", "/free", NULL), "nohost", "no host: empty host");
    is_str(pick(r, GW_M_GET, "api.example.com", "/free", NULL), "nohost",
           "no-host exact beats host prefix on specificity");
    gw_router_free(r);
}

static void
test_methods(void)
{
    table_t t = {.n = 0};
    gw_route_conf_t *rc = add(&t, "read", GW_PATH_EXACT, "/m");
    rc->methods = GW_M_GET | GW_M_HEAD;
    rc = add(&t, "write", GW_PATH_EXACT, "/m");
    rc->methods = GW_M_POST;
    add(&t, "other", GW_PATH_EXACT, "/m");
    gw_router_t *r = build(&t);
    is_str(pick(r, GW_M_GET, "h", "/m", NULL), "read", "GET");
    is_str(pick(r, GW_M_HEAD, "h", "/m", NULL), "read", "HEAD");
    is_str(pick(r, GW_M_POST, "h", "/m", NULL), "write", "POST");
    is_str(pick(r, GW_M_DELETE, "h", "/m", NULL), "other", "methods 0 = any");
    gw_router_free(r);
}

static void
test_predicates(void)
{
    static char *in_vals[] = {"a", "b"};
    static size_t in_lens[] = {1, 1};
    table_t t = {.n = 0};
    gw_predicate_t hp[8], qp[8];
    const char *names[] = {"eq", "ne", "co", "in", "re", "ex", "ab"};
    gw_match_op_t ops[] = {GW_OP_EQUALS, GW_OP_NOT_EQUALS, GW_OP_CONTAINS, GW_OP_IN,
                           GW_OP_REGEX,  GW_OP_EXISTS,     GW_OP_ABSENT};
    const char *vals[] = {"prod", "prod", "mid", NULL, "^v[0-9]$", NULL, NULL};
    char paths[7][16];
    char qpaths[7][16];
    for (int i = 0; i < 7; i++) {
        hp[i] = pred("X-Env", ops[i], vals[i]);
        qp[i] = pred("env", ops[i], vals[i]);
        if (ops[i] == GW_OP_IN) {
            hp[i].values = qp[i].values = in_vals;
            hp[i].value_lens = qp[i].value_lens = in_lens;
            hp[i].nvalues = qp[i].nvalues = 2;
        }
        if (ops[i] == GW_OP_REGEX)
            hp[i].re = re_compile(vals[i]); /* qp[i].re left NULL: the router compiles it */
        snprintf(paths[i], sizeof(paths[i]), "/h/%s", names[i]);
        snprintf(qpaths[i], sizeof(qpaths[i]), "/q/%s", names[i]);
        gw_route_conf_t *rc = add(&t, names[i], GW_PATH_EXACT, paths[i]);
        rc->headers = &hp[i];
        rc->nheaders = 1;
        rc = add(&t, names[i], GW_PATH_EXACT, qpaths[i]);
        rc->query = &qp[i];
        rc->nquery = 1;
    }
    gw_router_t *r = build(&t);

    /* {op, value or NULL for missing, expected match} */
    struct {
        int op;
        const char *v;
        int want;
    } cases[] = {
        {0, "prod", 1}, {0, "Prod", 0}, {0, "prod2", 0},  {0, NULL, 0}, {1, "dev", 1},
        {1, "prod", 0}, {1, NULL, 1},   {2, "amidst", 1}, {2, "mi", 0}, {2, NULL, 0},
        {3, "a", 1},    {3, "b", 1},    {3, "c", 0},      {3, NULL, 0}, {4, "v7", 1},
        {4, "v77", 0},  {4, NULL, 0},   {5, "", 1},       {5, NULL, 0}, {6, "x", 0},
        {6, NULL, 1},
    };
    for (size_t i = 0; i < GW_ARRAY_LEN(cases); i++) {
        req_t q;
        char qs[64];
        int op = cases[i].op;
        const char *want = cases[i].want ? names[op] : "-";

        mkreq(&q, GW_M_GET, "h", paths[op], NULL);
        hdr(&q, "Accept", "*/*");
        if (cases[i].v)
            hdr(&q, "x-ENV", cases[i].v);
        is_str(pickq(r, &q), want, "header %s with %s%s%s", names[op], cases[i].v ? "\"" : "",
               cases[i].v ? cases[i].v : "no header", cases[i].v ? "\"" : "");

        if (cases[i].v)
            snprintf(qs, sizeof(qs), "a=1&env=%s&z", cases[i].v);
        else
            snprintf(qs, sizeof(qs), "a=1&envx=prod&z");
        is_str(pick(r, GW_M_GET, "h", qpaths[op], qs), want, "query %s with %s", names[op], qs);
    }
    is_str(pick(r, GW_M_GET, "h", "/q/ex", "env"), "ex", "query exists without '='");
    is_str(pick(r, GW_M_GET, "h", "/q/ne", ""), "ne", "query not_equals on empty query");

    /* First header of that name is the one compared. */
    req_t q;
    mkreq(&q, GW_M_GET, "h", "/h/eq", NULL);
    hdr(&q, "X-Env", "dev");
    hdr(&q, "X-Env", "prod");
    is_str(pickq(r, &q), "-", "predicates look at the first header of a name");
    gw_router_free(r);
    for (int i = 0; i < 7; i++)
        if (hp[i].re)
            pcre2_code_free(hp[i].re);

    /* All predicates of a route must pass; a failing better route falls through. */
    t.n = 0;
    gw_predicate_t two[2] = {pred("A", GW_OP_EXISTS, NULL), pred("B", GW_OP_EQUALS, "1")};
    gw_route_conf_t *rc = add(&t, "both", GW_PATH_EXACT, "/p");
    rc->headers = two;
    rc->nheaders = 2;
    add(&t, "fallback", GW_PATH_PREFIX, "/*");
    r = build(&t);
    mkreq(&q, GW_M_GET, "h", "/p", NULL);
    hdr(&q, "a", "");
    is_str(pickq(r, &q), "fallback", "one of two predicates fails: next candidate");
    hdr(&q, "b", "1");
    is_str(pickq(r, &q), "both", "both predicates pass");
    gw_router_free(r);
}

static void
test_ranking(void)
{
    table_t t = {.n = 0};
    add(&t, "any", GW_PATH_ANY, NULL);
    add(&t, "regex", GW_PATH_REGEX, "^/s/");
    add(&t, "prefix-short", GW_PATH_PREFIX, "/s/*");
    add(&t, "prefix-long", GW_PATH_PREFIX, "/s/x/*");
    add(&t, "param-1lit", GW_PATH_PARAM, "/s/:a/:b");
    add(&t, "param-2lit", GW_PATH_PARAM, "/s/x/:b");
    add(&t, "exact", GW_PATH_EXACT, "/s/x/y");
    gw_router_t *r = build(&t);
    is_str(pick(r, GW_M_GET, "h", "/s/x/y", NULL), "exact", "exact first");
    is_str(pick(r, GW_M_GET, "h", "/s/x/z", NULL), "param-2lit", "param with more literals");
    is_str(pick(r, GW_M_GET, "h", "/s/q/z", NULL), "param-1lit", "then the other param");
    is_str(pick(r, GW_M_GET, "h", "/s/x/y/w", NULL), "prefix-long", "longer prefix");
    is_str(pick(r, GW_M_GET, "h", "/s/q/z/w", NULL), "prefix-short", "shorter prefix");
    gw_router_free(r);

    t.n = 0;
    add(&t, "any", GW_PATH_ANY, NULL);
    add(&t, "regex", GW_PATH_REGEX, "^/s/");
    r = build(&t);
    is_str(pick(r, GW_M_GET, "h", "/s/1", NULL), "regex", "regex beats any");
    gw_router_free(r);

    /* Params: more literal characters, then the one without a final star. */
    t.n = 0;
    add(&t, "short-lit", GW_PATH_PARAM, "/a/:x/b");
    add(&t, "long-lit", GW_PATH_PARAM, "/a/:x/bbbb/*");
    add(&t, "under", GW_PATH_PARAM, "/c/:x/*");
    add(&t, "plain", GW_PATH_PARAM, "/c/:x");
    r = build(&t);
    is_str(pick(r, GW_M_GET, "h", "/a/1/b", NULL), "short-lit", "only one matches");
    is_str(pick(r, GW_M_GET, "h", "/a/1/bbbb", NULL), "long-lit", "longer literal part");
    is_str(pick(r, GW_M_GET, "h", "/c/1", NULL), "plain", "param without /* first");
    gw_router_free(r);

    /* Priority beats specificity, even any-path over exact. */
    t.n = 0;
    add(&t, "exact", GW_PATH_EXACT, "/s/x/y");
    gw_route_conf_t *rc = add(&t, "any-high", GW_PATH_ANY, NULL);
    rc->priority = 5;
    rc = add(&t, "prefix-higher", GW_PATH_PREFIX, "/s/*");
    rc->priority = 7;
    rc->methods = GW_M_POST;
    rc = add(&t, "neg", GW_PATH_EXACT, "/neg");
    rc->priority = -1;
    add(&t, "neg-any", GW_PATH_PREFIX, "/*");
    r = build(&t);
    is_str(pick(r, GW_M_GET, "h", "/s/x/y", NULL), "any-high", "priority beats specificity");
    is_str(pick(r, GW_M_POST, "h", "/s/x/y", NULL), "prefix-higher", "highest priority wins");
    is_str(pick(r, GW_M_GET, "h", "/neg", NULL), "any-high", "negative priority");
    gw_router_free(r);

    t.n = 0;
    add(&t, "neg", GW_PATH_EXACT, "/neg")->priority = -1;
    add(&t, "zero", GW_PATH_PREFIX, "/*");
    r = build(&t);
    is_str(pick(r, GW_M_GET, "h", "/neg", NULL), "zero", "priority -1 loses to 0");
    gw_router_free(r);

    /* Same rank: the lower config index wins, whatever the array order. */
    t.n = 0;
    add(&t, "first", GW_PATH_EXACT, "/dup")->index = 4;
    add(&t, "second", GW_PATH_EXACT, "/dup")->index = 2;
    add(&t, "p1", GW_PATH_PREFIX, "/pp/*");
    add(&t, "p2", GW_PATH_PREFIX, "/pp/*");
    r = build(&t);
    is_str(pick(r, GW_M_GET, "h", "/dup", NULL), "second", "lower index wins the tie");
    is_str(pick(r, GW_M_GET, "h", "/pp/x", NULL), "p1", "earlier route wins the tie");
    gw_router_free(r);

    /* Host routes and no-host routes rank together. */
    t.n = 0;
    add(&t, "nohost-first", GW_PATH_EXACT, "/x");
    add(&t, "host", GW_PATH_EXACT, "/x")->host = "a.com";
    r = build(&t);
    is_str(pick(r, GW_M_GET, "a.com", "/x", NULL), "nohost-first", "host is no tie-break");
    gw_router_free(r);
}

static void
test_errors(void)
{
    struct {
        gw_path_kind_t kind;
        const char *path;
        const char *host;
        int wild;
        const char *want;
    } bad[] = {
        {GW_PATH_PREFIX, "/a/b", NULL, 0, "prefix path must end with /*"},
        {GW_PATH_EXACT, "a/b", NULL, 0, "path must start with '/'"},
        {GW_PATH_EXACT, NULL, NULL, 0, "path must start with '/'"},
        {GW_PATH_PARAM, "/u/:", NULL, 0, "empty :param name"},
        {GW_PATH_PARAM, "/:a/:b/:c/:d/:e/:f/:g/:h/:i/:j/:k/:l/:m/:n/:o/:p/:q", NULL, 0,
         "more than 16 :params"},
        {GW_PATH_REGEX, "(unclosed", NULL, 0, "bad regex"},
        {GW_PATH_REGEX, NULL, NULL, 0, "regex path missing"},
        {(gw_path_kind_t)42, "/x", NULL, 0, "unknown path kind"},
        {GW_PATH_EXACT, "/x", "", 0, "bad host"},
        {GW_PATH_EXACT, "/x", "example.com", 1, "bad host"},
    };
    for (size_t i = 0; i < GW_ARRAY_LEN(bad); i++) {
        table_t t = {.n = 0};
        add(&t, "ok", GW_PATH_EXACT, "/fine");
        gw_route_conf_t *rc = add(&t, "bad", bad[i].kind, bad[i].path);
        rc->host = (char *)bad[i].host;
        rc->host_wildcard = bad[i].wild;
        char err[256] = "";
        gw_router_t *r = gw_router_new(t.r, t.n, err, sizeof(err));
        ok(r == NULL && strstr(err, "routes[1] (bad): ") == err && strstr(err, bad[i].want),
           "rejected: %s", err);
        gw_router_free(r);
    }

    gw_predicate_t preds[][1] = {
        {pred("", GW_OP_EXISTS, NULL)},       {pred("X", GW_OP_EQUALS, NULL)},
        {pred("X", (gw_match_op_t)99, NULL)}, {pred("X", GW_OP_REGEX, "([)")},
        {pred("X", GW_OP_REGEX, NULL)},
    };
    const char *pwant[] = {"missing name", "missing value", "unknown op", "bad regex",
                           "missing regex"};
    for (size_t i = 0; i < GW_ARRAY_LEN(preds); i++) {
        table_t t = {.n = 0};
        gw_route_conf_t *rc = add(&t, NULL, GW_PATH_EXACT, "/x");
        rc->query = preds[i];
        rc->nquery = 1;
        char err[256] = "";
        gw_router_t *r = gw_router_new(t.r, t.n, err, sizeof(err));
        ok(r == NULL && strstr(err, "routes[0]: query[0]: ") == err && strstr(err, pwant[i]),
           "rejected predicate: %s", err);
        gw_router_free(r);
    }

    char err[64] = "";
    ok(gw_router_new(NULL, 3, err, sizeof(err)) == NULL && strstr(err, "missing"),
       "NULL table rejected: %s", err);
    ok(gw_router_new(NULL, 3, NULL, 0) == NULL, "err may be NULL");
    char tiny[8];
    table_t t = {.n = 0};
    add(&t, "long-name-here", GW_PATH_PREFIX, "/x");
    ok(gw_router_new(t.r, t.n, tiny, sizeof(tiny)) == NULL && strlen(tiny) < sizeof(tiny),
       "short error buffer is truncated, terminated");

    gw_router_t *r = gw_router_new(NULL, 0, err, sizeof(err));
    ok(r != NULL, "empty table is fine");
    is_str(pick(r, GW_M_GET, "h", "/", NULL), "-", "empty table matches nothing");
    gw_router_free(r);
    gw_router_free(NULL);
    ok(1, "free(NULL) is a no-op");
}

static void
test_query_get(void)
{
    gw_str_t v;
#define Q(q, n, wantf, wantv)                                                                      \
    do {                                                                                           \
        v = (gw_str_t){"unset", 5};                                                                \
        int f_ = gw_query_get(GW_STR(q), GW_STR(n), &v);                                           \
        ok(f_ == (wantf) && (!f_ || slice_is(v, wantv)), "query \"%s\" name \"%s\"", q, n);        \
    } while (0)
    Q("", "a", 0, "");
    Q("a=1", "a", 1, "1");
    Q("a", "a", 1, "");
    Q("a=", "a", 1, "");
    Q("a&b=2", "b", 1, "2");
    Q("a=1&a=2", "a", 1, "1");
    Q("ab=1&a=2", "a", 1, "2");
    Q("a=1&ab=2", "ab", 1, "2");
    Q("abc=1", "ab", 0, "");
    Q("x=a=b", "x", 1, "a=b");
    Q("&&a=1&", "a", 1, "1");
    Q("a%20b=1", "a b", 0, "");
    Q("a%20b=1", "a%20b", 1, "1");
    Q("b=a", "a", 0, "");
    Q("=v", "", 1, "v");
    ok(gw_query_get((gw_str_t){NULL, 0}, GW_STR("a"), &v) == 0, "NULL query");
    ok(gw_query_get(GW_STR("a=1"), GW_STR("a"), NULL) == 1, "value may be NULL");
#undef Q

    req_t q;
    mkreq(&q, GW_M_GET, "h", "/", NULL);
    hdr(&q, "Host", "h");
    hdr(&q, "X-Key", "one");
    hdr(&q, "x-key", "two");
    const gw_header_t *h = gw_header_get(&q.v, GW_STR("X-KEY"));
    ok(h && slice_is(h->value, "one"), "header get: case-insensitive, first");
    ok(gw_header_get(&q.v, GW_STR("X-Ke")) == NULL, "header get: no prefix match");
}

static void
test_strip_prefix(void)
{
    gw_route_conf_t rc;
    memset(&rc, 0, sizeof(rc));
    gw_str_t out;
    ok(gw_router_strip_prefix(&rc, GW_STR("/a/b"), &out) == 0 && slice_is(out, "/a/b"),
       "no strip_prefix");
    rc.strip_prefix = "/api/v1";
    rc.strip_prefix_len = 7;
    ok(gw_router_strip_prefix(&rc, GW_STR("/api/v1/users"), &out) == 1 && slice_is(out, "/users"),
       "stripped");
    ok(gw_router_strip_prefix(&rc, GW_STR("/api/v1"), &out) == 1 && slice_is(out, "/"),
       "whole path stripped -> /");
    ok(gw_router_strip_prefix(&rc, GW_STR("/api/v1/"), &out) == 1 && slice_is(out, "/"),
       "trailing slash kept");
    ok(gw_router_strip_prefix(&rc, GW_STR("/api/v10/x"), &out) == 0 && slice_is(out, "/api/v10/x"),
       "segment boundary respected");
    ok(gw_router_strip_prefix(&rc, GW_STR("/other"), &out) == 0 && slice_is(out, "/other"),
       "not a prefix");
    rc.strip_prefix = "/api/";
    rc.strip_prefix_len = 5;
    ok(gw_router_strip_prefix(&rc, GW_STR("/api/x"), &out) == 1 && slice_is(out, "/x"),
       "prefix written with a trailing slash");
    rc.strip_prefix = "/";
    rc.strip_prefix_len = 1;
    ok(gw_router_strip_prefix(&rc, GW_STR("/x"), &out) == 0 && slice_is(out, "/x"),
       "strip_prefix / strips nothing");
}

/* upstream_path as the config compiles it, filled from a real match: the
 * config's {name} positions and the router's captures agree. */
static void
test_upstream_path(void)
{
    static const char yaml[] = "gateway: {listen: [\"127.0.0.1:8080\"]}\n"
                               "upstreams: [{name: a, nodes: [\"127.0.0.1:9001\"]}]\n"
                               "routes:\n"
                               "  - match: {path: /orgs/:org/repos/:repo}\n"
                               "    upstream: a\n"
                               "    upstream_path: /v2/{repo}/of/{org}/x-{org}\n"
                               "  - match: {path: /health}\n"
                               "    upstream: a\n"
                               "    upstream_path: /status\n"
                               "  - match: {path: /users/:id}\n"
                               "    upstream: a\n";
    gw_conf_errors_t errs;
    gw_conf_t *conf = gw_conf_load_string(yaml, strlen(yaml), "t.yaml", &errs);
    ok(conf != NULL, "upstream_path: the config loads");
    if (conf == NULL) {
        for (size_t i = 0; i < errs.n; i++)
            printf("#   %s\n", errs.lines[i]);
        gw_conf_errors_free(&errs);
        return;
    }
    gw_router_t *r = gw_router_new(conf->routes, conf->nroutes, NULL, 0);
    gw_param_t params[GW_MAX_PARAMS];
    size_t np = 99;
    char buf[64];
    req_t q;

    const gw_route_conf_t *rc =
        gw_router_match(r, mkreq(&q, GW_M_GET, "", "/orgs/acme/repos/g%20w", NULL), params, &np);
    ok(rc == &conf->routes[0] && np == 2, "upstream_path: two params captured");
    size_t n = gw_router_upstream_path(rc, params, np, NULL);
    ok(n == strlen("/v2/g%20w/of/acme/x-acme"), "upstream_path: measured");
    memset(buf, 0, sizeof(buf));
    ok(gw_router_upstream_path(rc, params, np, buf) == n &&
           strcmp(buf, "/v2/g%20w/of/acme/x-acme") == 0,
       "upstream_path: params in place, out of order, one twice, raw values");

    rc = gw_router_match(r, mkreq(&q, GW_M_GET, "", "/health", NULL), params, &np);
    memset(buf, 0, sizeof(buf));
    ok(rc == &conf->routes[1] && np == 0 && gw_router_upstream_path(rc, params, np, buf) == 7 &&
           strcmp(buf, "/status") == 0,
       "upstream_path: a literal template on an exact route");

    rc = gw_router_match(r, mkreq(&q, GW_M_GET, "", "/users/7", NULL), params, &np);
    ok(rc == &conf->routes[2] && np == 1 && gw_router_upstream_path(rc, params, np, NULL) == 0,
       "upstream_path: none on the route -> 0");
    gw_router_free(r);
    gw_conf_free(conf);
}

/* 5,000 routes over many hosts and paths: spot checks stay exact. */
static void
test_many(void)
{
    enum { N = 5000 };
    gw_route_conf_t *rs = calloc(N, sizeof(*rs));
    char(*paths)[48] = calloc(N, sizeof(*paths));
    char(*names)[16] = calloc(N, sizeof(*names));
    char(*hosts)[32] = calloc(N, sizeof(*hosts));
    for (size_t i = 0; i < N; i++) {
        gw_route_conf_t *rc = &rs[i];
        rc->index = i;
        rc->name = names[i];
        snprintf(names[i], sizeof(names[i]), "r%zu", i);
        switch (i % 5) {
        case 0:
            rc->path_kind = GW_PATH_EXACT;
            snprintf(paths[i], sizeof(paths[i]), "/svc%zu/items", i);
            break;
        case 1:
            rc->path_kind = GW_PATH_PREFIX;
            snprintf(paths[i], sizeof(paths[i]), "/svc%zu/*", i);
            break;
        case 2:
            rc->path_kind = GW_PATH_PARAM;
            snprintf(paths[i], sizeof(paths[i]), "/svc%zu/users/:id", i);
            break;
        case 3:
            rc->path_kind = GW_PATH_EXACT;
            snprintf(paths[i], sizeof(paths[i]), "/svc%zu/m", i);
            rc->methods = GW_M_POST;
            break;
        default:
            rc->path_kind = GW_PATH_PREFIX;
            snprintf(paths[i], sizeof(paths[i]), "/api/*");
            if (i % 10 == 4) {
                snprintf(hosts[i], sizeof(hosts[i]), "h%zu.example.com", i);
            } else {
                snprintf(hosts[i], sizeof(hosts[i]), ".W%zu.example.com", i);
                rc->host_wildcard = 1;
            }
            rc->host = hosts[i];
            break;
        }
        rc->path = paths[i];
    }
    char err[256] = "";
    gw_router_t *r = gw_router_new(rs, N, err, sizeof(err));
    ok(r != NULL, "5000 routes built (%s)", err);
    is_str(pick(r, GW_M_GET, "x", "/svc0/items", NULL), "r0", "exact, first");
    is_str(pick(r, GW_M_GET, "x", "/svc4995/items", NULL), "r4995", "exact, last");
    is_str(pick(r, GW_M_GET, "x", "/svc2500/itemsx", NULL), "-", "exact, near miss");
    is_str(pick(r, GW_M_GET, "x", "/svc1231/a/b", NULL), "r1231", "prefix");
    is_str(pick(r, GW_M_GET, "x", "/svc123/a", NULL), "-", "prefix of another number");
    is_str(pick(r, GW_M_GET, "x", "/svc3332/users/7", NULL), "r3332", "param");
    is_str(pick(r, GW_M_GET, "x", "/svc3333/m", NULL), "-", "method filtered");
    is_str(pick(r, GW_M_POST, "x", "/svc3333/m", NULL), "r3333", "method passes");
    is_str(pick(r, GW_M_GET, "h4444.example.com", "/api/x", NULL), "r4444", "host group");
    is_str(pick(r, GW_M_GET, "h4445.example.com", "/api/x", NULL), "-", "unknown host");
    is_str(pick(r, GW_M_GET, "a.b.w4449.example.com", "/api/x", NULL), "r4449", "wildcard group");
    is_str(pick(r, GW_M_GET, "w4449.example.com", "/api/x", NULL), "-", "wildcard apex");
    is_str(pick(r, GW_M_GET, "a.w4449.example.com", "/apix", NULL), "-", "wildcard, path miss");
    size_t hits = 0;
    for (size_t i = 0; i < N; i += 5) {
        char p[48];
        snprintf(p, sizeof(p), "/svc%zu/items", i);
        const char *got = pick(r, GW_M_GET, "x", p, NULL);
        hits += strcmp(got, names[i]) == 0;
    }
    is_int(hits, N / 5, "every exact route found");
    gw_router_free(r);
    free(rs);
    free(paths);
    free(names);
    free(hosts);
}

int
main(void)
{
    test_path_kinds();
    test_params();
    test_hosts();
    test_methods();
    test_predicates();
    test_ranking();
    test_errors();
    test_query_get();
    test_strip_prefix();
    test_upstream_path();
    test_many();
    done_testing();
}
