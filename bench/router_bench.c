/*
 * Router micro benchmark: the cost of one gw_router_match() with 10 and with
 * 5,000 routes of the same shapes (exact, prefix, :param, method and header
 * predicates, exact hosts, one regex and one catch-all in both tables).
 * Prints ns/match for each table; the two numbers should be close, since a
 * lookup walks the request path, not the route list.
 *
 * Built by hand, from the repository root:
 *
 *   mkdir -p build
 *   cc -std=c11 -D_GNU_SOURCE -O2 -Igateway bench/router_bench.c \
 *      gateway/gw_router.c gateway/gw_str.c $(pkg-config --cflags --libs libpcre2-8) \
 *      -o build/router_bench
 *   build/router_bench [matches-per-table]     # default 1000000
 */
#define PCRE2_CODE_UNIT_WIDTH 8

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gw_router.h"

#define NREQ 16

typedef struct {
    gw_route_conf_t *routes;
    char (*paths)[48];
    char (*names)[16];
    char (*hosts)[32];
    gw_predicate_t env;
    size_t n;
} table_t;

static void
table_init(table_t *t, size_t n)
{
    /* n - 2 generated routes, then a regex route and a catch-all. */
    size_t total = n;
    n -= 2;
    t->routes = calloc(total, sizeof(*t->routes));
    t->paths = calloc(total, sizeof(*t->paths));
    t->names = calloc(total, sizeof(*t->names));
    t->hosts = calloc(total, sizeof(*t->hosts));
    if (!t->routes || !t->paths || !t->names || !t->hosts) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    memset(&t->env, 0, sizeof(t->env));
    t->env.name = "X-Env";
    t->env.name_len = 5;
    t->env.op = GW_OP_EQUALS;
    t->env.value = "prod";
    t->env.value_len = 4;
    t->n = total;

    for (size_t i = 0; i < n; i++) {
        gw_route_conf_t *rc = &t->routes[i];
        rc->index = i;
        rc->name = t->names[i];
        snprintf(t->names[i], sizeof(t->names[i]), "r%zu", i);
        switch (i % 5) {
        case 0:
            rc->path_kind = GW_PATH_EXACT;
            snprintf(t->paths[i], sizeof(t->paths[i]), "/svc%zu/items", i);
            break;
        case 1:
            rc->path_kind = GW_PATH_PREFIX;
            snprintf(t->paths[i], sizeof(t->paths[i]), "/svc%zu/*", i);
            break;
        case 2:
            rc->path_kind = GW_PATH_PARAM;
            snprintf(t->paths[i], sizeof(t->paths[i]), "/svc%zu/users/:id", i);
            break;
        case 3:
            rc->path_kind = GW_PATH_EXACT;
            snprintf(t->paths[i], sizeof(t->paths[i]), "/svc%zu/orders", i);
            rc->methods = GW_M_POST;
            rc->headers = &t->env;
            rc->nheaders = 1;
            break;
        default:
            rc->path_kind = GW_PATH_PREFIX;
            snprintf(t->paths[i], sizeof(t->paths[i]), "/api/*");
            snprintf(t->hosts[i], sizeof(t->hosts[i]), "h%zu.example.com", i);
            rc->host = t->hosts[i];
            break;
        }
        rc->path = t->paths[i];
    }
    gw_route_conf_t *rc = &t->routes[n];
    rc->index = n;
    rc->name = "legacy";
    rc->path_kind = GW_PATH_REGEX;
    rc->path = "^/v[0-9]+/legacy";
    rc = &t->routes[n + 1];
    rc->index = n + 1;
    rc->name = "catch-all";
    rc->path_kind = GW_PATH_ANY;
}

static void
table_free(table_t *t)
{
    free(t->routes);
    free(t->paths);
    free(t->names);
    free(t->hosts);
}

typedef struct {
    gw_req_view_t v;
    char path[64];
    char host[32];
    gw_header_t h[3];
} req_t;

/* Requests of every shape, spread over the whole table. */
static void
make_reqs(req_t *q, size_t n)
{
    for (size_t i = 0; i < NREQ; i++) {
        req_t *r = &q[i];
        memset(r, 0, sizeof(*r));
        size_t k = (i * 7919 + 3) % ((n - 2) / 5) * 5;
        r->v.method = GW_M_GET;
        snprintf(r->host, sizeof(r->host), "gw.local");
        switch (i % 8) {
        case 0:
            snprintf(r->path, sizeof(r->path), "/svc%zu/items", k);
            break;
        case 1:
            snprintf(r->path, sizeof(r->path), "/svc%zu/static/app.js", k + 1);
            break;
        case 2:
            snprintf(r->path, sizeof(r->path), "/svc%zu/users/42", k + 2);
            break;
        case 3:
            snprintf(r->path, sizeof(r->path), "/svc%zu/orders", k + 3);
            r->v.method = GW_M_POST;
            break;
        case 4:
            snprintf(r->path, sizeof(r->path), "/api/v1/things");
            snprintf(r->host, sizeof(r->host), "h%zu.example.com", k + 4);
            break;
        case 5:
            snprintf(r->path, sizeof(r->path), "/v2/legacy/x");
            break;
        case 6:
            snprintf(r->path, sizeof(r->path), "/nothing/here/at/all");
            break;
        default:
            snprintf(r->path, sizeof(r->path), "/svc%zu/orders", k + 3);
            r->v.method = GW_M_POST;
            break;
        }
        r->h[0] = (gw_header_t){GW_STR("Host"), GW_STR("gw.local")};
        r->h[1] = (gw_header_t){GW_STR("User-Agent"), GW_STR("bench")};
        r->h[2] = (gw_header_t){GW_STR("X-Env"), GW_STR("prod")};
        r->v.headers = r->h;
        r->v.nheaders = 3;
        r->v.path = (gw_str_t){r->path, strlen(r->path)};
        r->v.host = (gw_str_t){r->host, strlen(r->host)};
    }
}

static double
now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static double
run(size_t nroutes, long iters)
{
    table_t t;
    req_t reqs[NREQ];
    char err[256];
    table_init(&t, nroutes);
    gw_router_t *r = gw_router_new(t.routes, t.n, err, sizeof(err));
    if (r == NULL) {
        fprintf(stderr, "router: %s\n", err);
        exit(1);
    }
    make_reqs(reqs, nroutes);

    gw_param_t params[GW_MAX_PARAMS];
    size_t np, misses = 0;
    for (size_t i = 0; i < NREQ; i++) {
        const gw_route_conf_t *rc = gw_router_match(r, &reqs[i].v, params, &np);
        if (rc == NULL || strcmp(rc->name, "catch-all") == 0)
            misses += i % 8 != 6;
    }
    if (misses) {
        fprintf(stderr, "%zu requests did not reach their route\n", misses);
        exit(1);
    }

    volatile size_t sink = 0;
    for (long i = 0; i < iters / 10; i++) /* warm-up */
        sink += (size_t)gw_router_match(r, &reqs[i % NREQ].v, params, &np);
    double t0 = now_ns();
    for (long i = 0; i < iters; i++)
        sink += (size_t)gw_router_match(r, &reqs[i % NREQ].v, params, &np);
    double dt = now_ns() - t0;
    (void)sink;
    gw_router_free(r);
    table_free(&t);
    return dt / (double)iters;
}

int
main(int argc, char **argv)
{
    long iters = argc > 1 ? atol(argv[1]) : 1000000;
    if (iters <= 0) {
        fprintf(stderr, "usage: %s [matches-per-table]\n", argv[0]);
        return 2;
    }
    double small = run(10, iters);
    double large = run(5000, iters);
    printf("routes=%-5d matches=%ld ns/match=%.1f\n", 10, iters, small);
    printf("routes=%-5d matches=%ld ns/match=%.1f\n", 5000, iters, large);
    printf("ratio 5000/10: %.2f\n", large / small);
    return 0;
}
