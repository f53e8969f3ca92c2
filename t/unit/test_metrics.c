/* gw_metrics: layout from a config, recording from several slots, the
 * Prometheus text, and sharing across fork. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "gw_config.h"
#include "gw_metrics.h"
#include "tap.h"

/* Whether text holds line as a whole line. */
static int
has_line(const char *text, const char *line)
{
    size_t n = strlen(line);
    for (const char *p = text; (p = strstr(p, line)) != NULL; p++)
        if ((p == text || p[-1] == '\n') && p[n] == '\n')
            return 1;
    return 0;
}

#define HAS(text, line) ok(has_line((text), (line)), "has: %s", (line))
#define HASNT(text, line) ok(!has_line((text), (line)), "has not: %s", (line))

static char *
render(gw_metrics_t *m)
{
    char *text = NULL;
    size_t n = gw_metrics_render(m, &text);
    ok(text != NULL && n == strlen(text), "render returns its length");
    return text;
}

int
main(void)
{
    gw_node_conf_t api_nodes[2] = {{.addr = "10.0.0.1:80"}, {.addr = "10.0.0.2:80"}};
    gw_node_conf_t cache_nodes[1] = {{.addr = "127.0.0.1:6379"}};
    gw_upstream_conf_t ups[2] = {
        {.name = "api", .index = 0, .nodes = api_nodes, .nnodes = 2},
        {.name = "cache", .index = 1, .nodes = cache_nodes, .nnodes = 1},
    };
    gw_route_conf_t routes[2] = {
        {.name = "users", .index = 0, .upstream = &ups[0]},
        {.name = "we\"ird\\route\n", .index = 1, .upstream = &ups[1]},
    };
    gw_conf_t conf = {
        .workers = 2, .routes = routes, .nroutes = 2, .upstreams = ups, .nupstreams = 2};
    gw_conf_t empty = {0};
    gw_metrics_t *m;
    char *t;

    ok(gw_metrics_new(NULL, 2) == NULL, "no config -> NULL");
    ok(gw_metrics_new(&conf, 0) == NULL, "no workers -> NULL");

    /* A config with nothing in it still renders every family. */
    m = gw_metrics_new(&empty, 1);
    ok(m != NULL, "empty config");
    t = render(m);
    HAS(t, "# TYPE gateway_requests_total counter");
    HAS(t, "gateway_workers 0");
    free(t);
    gw_metrics_free(m);

    m = gw_metrics_new(&conf, 2);
    ok(m != NULL, "metrics for 2 routes, 2 upstreams, 2 workers");
    is_int(gw_metrics_nworkers(m), 2, "two slots");

    gw_metrics_worker_start(m, 0);
    gw_metrics_worker_start(m, 1);

    /* Requests, from both slots. */
    gw_metrics_request(m, 0, 0, 200, 0.003);
    gw_metrics_request(m, 0, 0, 200, 0.004);
    gw_metrics_request(m, 1, 0, 200, 0.2);
    gw_metrics_request(m, 1, 0, 404, 2.0);
    gw_metrics_request(m, 0, -1, 404, 0.0005);
    gw_metrics_request(m, 1, 99, 404, 0.0005); /* unknown route -> no route */
    gw_metrics_request(m, 1, 1, 503, 0.05);
    gw_metrics_request(m, 7, 0, 200, 0.1);  /* bad slot: ignored */
    gw_metrics_request(m, -1, 0, 200, 0.1); /* bad slot: ignored */

    /* Upstream attempts. */
    gw_metrics_upstream(m, 0, 0, 0, 200, 0.01);
    gw_metrics_upstream(m, 1, 0, 0, 200, 0.02);
    gw_metrics_upstream(m, 1, 0, 1, 0, 1.5);   /* no response */
    gw_metrics_upstream(m, 0, 0, 9, 502, 0.1); /* node not in the static list */
    gw_metrics_upstream(m, 0, 5, 0, 200, 0.1); /* bad upstream: ignored */

    /* Connections. */
    gw_metrics_conn(m, 0, GW_CONN_ACTIVE, 3);
    gw_metrics_conn(m, 0, GW_CONN_READING, 1);
    gw_metrics_conn(m, 0, GW_CONN_IDLE, 2);
    gw_metrics_conn(m, 1, GW_CONN_ACTIVE, 2);
    gw_metrics_conn(m, 1, GW_CONN_WRITING, 2);
    gw_metrics_conn(m, 1, 17, 5); /* bad state: ignored */

    gw_metrics_breaker_drop(m, 1, 1);
    gw_metrics_breaker_drop(m, 0, 1);
    gw_metrics_reused_conn_retry(m, 0, 0);
    gw_metrics_reused_conn_retry(m, 1, 0);
    gw_metrics_reused_conn_retry(m, 1, 7); /* no such upstream: ignored */

    t = render(m);
    HAS(t, "# HELP gateway_requests_total Downstream requests by route and status.");
    HAS(t, "# TYPE gateway_request_duration_seconds histogram");
    ok(strstr(t, "\ngateway_info{version=\"") != NULL, "gateway_info has a version");
    HAS(t, "gateway_workers 2");
    HAS(t, "gateway_requests_total{route=\"users\",status=\"200\"} 3");
    HAS(t, "gateway_requests_total{route=\"users\",status=\"404\"} 1");
    HAS(t, "gateway_requests_total{route=\"_unmatched\",status=\"404\"} 2");
    HAS(t, "gateway_requests_total{route=\"we\\\"ird\\\\route\\n\",status=\"503\"} 1");

    /* Buckets are cumulative: 0.003 0.004 0.2 2.0 */
    HAS(t, "gateway_request_duration_seconds_bucket{route=\"users\",le=\"0.001\"} 0");
    HAS(t, "gateway_request_duration_seconds_bucket{route=\"users\",le=\"0.005\"} 2");
    HAS(t, "gateway_request_duration_seconds_bucket{route=\"users\",le=\"0.1\"} 2");
    HAS(t, "gateway_request_duration_seconds_bucket{route=\"users\",le=\"0.25\"} 3");
    HAS(t, "gateway_request_duration_seconds_bucket{route=\"users\",le=\"1\"} 3");
    HAS(t, "gateway_request_duration_seconds_bucket{route=\"users\",le=\"2.5\"} 4");
    HAS(t, "gateway_request_duration_seconds_bucket{route=\"users\",le=\"10\"} 4");
    HAS(t, "gateway_request_duration_seconds_bucket{route=\"users\",le=\"+Inf\"} 4");
    HAS(t, "gateway_request_duration_seconds_count{route=\"users\"} 4");
    HAS(t, "gateway_request_duration_seconds_sum{route=\"users\"} 2.207");
    HAS(t, "gateway_request_duration_seconds_bucket{route=\"_unmatched\",le=\"0.001\"} 2");
    HAS(t, "gateway_request_duration_seconds_count{route=\"_unmatched\"} 2");

    HAS(t,
        "gateway_upstream_requests_total{upstream=\"api\",node=\"10.0.0.1:80\",status=\"200\"} 2");
    HAS(t, "gateway_upstream_requests_total{upstream=\"api\",node=\"10.0.0.2:80\",status=\"error\"}"
           " 1");
    HAS(t, "gateway_upstream_requests_total{upstream=\"api\",node=\"other\",status=\"502\"} 1");
    HAS(t, "gateway_upstream_latency_seconds_bucket{upstream=\"api\",le=\"0.01\"} 1");
    HAS(t, "gateway_upstream_latency_seconds_bucket{upstream=\"api\",le=\"0.025\"} 2");
    HAS(t, "gateway_upstream_latency_seconds_bucket{upstream=\"api\",le=\"1\"} 3");
    HAS(t, "gateway_upstream_latency_seconds_count{upstream=\"api\"} 4");
    ok(strstr(t, "gateway_upstream_latency_seconds_count{upstream=\"cache\"}") == NULL,
       "an upstream with no attempt renders no histogram series");

    HAS(t, "gateway_connections{state=\"active\"} 5");
    HAS(t, "gateway_connections{state=\"reading\"} 1");
    HAS(t, "gateway_connections{state=\"writing\"} 2");
    HAS(t, "gateway_connections{state=\"idle\"} 2");

    HAS(t, "gateway_breaker_drops_total{upstream=\"api\"} 0");
    HAS(t, "gateway_breaker_drops_total{upstream=\"cache\"} 2");
    HAS(t, "# TYPE gateway_upstream_reused_conn_retries_total counter");
    HAS(t, "gateway_upstream_reused_conn_retries_total{upstream=\"api\"} 2");
    HAS(t, "gateway_upstream_reused_conn_retries_total{upstream=\"cache\"} 0");
    HAS(t, "# TYPE gateway_limiter_rejections_total counter");
    HAS(t, "gateway_upstream_nodes{upstream=\"api\",state=\"healthy\"} 2");
    HAS(t, "gateway_upstream_nodes{upstream=\"api\",state=\"unhealthy\"} 0");
    HAS(t, "gateway_upstream_nodes{upstream=\"cache\",state=\"healthy\"} 1");
    free(t);

    /* Node gauges come from the lowest running slot that has set them. */
    gw_metrics_nodes(m, 1, 0, 1, 1);
    t = render(m);
    HAS(t, "gateway_upstream_nodes{upstream=\"api\",state=\"healthy\"} 1");
    HAS(t, "gateway_upstream_nodes{upstream=\"api\",state=\"unhealthy\"} 1");
    free(t);
    gw_metrics_nodes(m, 0, 0, 2, 0);
    t = render(m);
    HAS(t, "gateway_upstream_nodes{upstream=\"api\",state=\"healthy\"} 2");
    HAS(t, "gateway_upstream_nodes{upstream=\"api\",state=\"unhealthy\"} 0");
    free(t);

    /* Worker 1 dies: its gauges go, its counters stay. */
    gw_metrics_worker_reset(m, 1);
    t = render(m);
    HAS(t, "gateway_workers 1");
    HAS(t, "gateway_connections{state=\"active\"} 3");
    HAS(t, "gateway_connections{state=\"writing\"} 0");
    HAS(t, "gateway_requests_total{route=\"users\",status=\"200\"} 3");
    HAS(t, "gateway_upstream_requests_total{upstream=\"api\",node=\"10.0.0.2:80\",status=\"error\"}"
           " 1");
    free(t);
    /* Its successor continues the counters. */
    gw_metrics_worker_start(m, 1);
    gw_metrics_request(m, 1, 0, 200, 0.001);
    t = render(m);
    HAS(t, "gateway_workers 2");
    HAS(t, "gateway_requests_total{route=\"users\",status=\"200\"} 4");
    HAS(t, "gateway_request_duration_seconds_bucket{route=\"users\",le=\"0.001\"} 1");
    free(t);

    /* More distinct codes than the table holds fold into "other". */
    for (int code = 200; code < 217; code++)
        gw_metrics_request(m, 0, 1, code, 0.01);
    gw_metrics_request(m, 0, 1, 0, 0.01);    /* invalid status */
    gw_metrics_request(m, 0, 1, 1000, 0.01); /* invalid status */
    gw_metrics_request(m, 1, 1, 216, 0.01);  /* fits in slot 1's table */
    t = render(m);
    {
        int rows = 0;
        const char *pfx = "gateway_requests_total{route=\"we\\\"ird\\\\route\\n\",status=\"2";
        for (const char *p = t; (p = strstr(p, pfx)) != NULL; p++)
            rows++;
        is_int(rows, 17, "slot 0 keeps 200..215, slot 1 adds 216");
    }
    HAS(t, "gateway_requests_total{route=\"we\\\"ird\\\\route\\n\",status=\"other\"} 3");
    HAS(t, "gateway_requests_total{route=\"we\\\"ird\\\\route\\n\",status=\"216\"} 1");
    free(t);

    /* A value on a bound falls in that bucket (le is "less or equal"); a
     * negative or NaN one (a clock step) in the first. */
    gw_metrics_upstream(m, 0, 1, 0, 200, 0.005);
    gw_metrics_upstream(m, 0, 1, 0, 200, -1);
    gw_metrics_upstream(m, 0, 1, 0, 200, 0.0 / 0.0);
    gw_metrics_upstream(m, 0, 1, 0, 200, 99);
    t = render(m);
    HAS(t, "gateway_upstream_latency_seconds_bucket{upstream=\"cache\",le=\"0.001\"} 2");
    HAS(t, "gateway_upstream_latency_seconds_bucket{upstream=\"cache\",le=\"0.005\"} 3");
    HAS(t, "gateway_upstream_latency_seconds_bucket{upstream=\"cache\",le=\"10\"} 3");
    HAS(t, "gateway_upstream_latency_seconds_bucket{upstream=\"cache\",le=\"+Inf\"} 4");
    HAS(t, "gateway_upstream_latency_seconds_count{upstream=\"cache\"} 4");
    free(t);

    /* Redis commands, TLS handshakes, Lua memory. */
    t = render(m);
    HAS(t, "gateway_redis_commands_total 0");
    HAS(t, "gateway_redis_errors_total{kind=\"timeout\"} 0");
    HAS(t, "# TYPE gateway_redis_latency_seconds histogram");
    ok(strstr(t, "gateway_redis_latency_seconds_count") == NULL, "no Redis series before a call");
    ok(strstr(t, "gateway_tls_") == NULL, "no TLS families without certificates");
    HAS(t, "gateway_lua_memory_bytes{worker=\"0\"} 0");
    free(t);
    gw_metrics_redis_call(m, 0, GW_METRICS_REDIS_OK, 0.0002);
    gw_metrics_redis_call(m, 1, GW_METRICS_REDIS_OK, 0.0004);
    gw_metrics_redis_call(m, 1, GW_METRICS_REDIS_TIMEOUT, 0.05);
    gw_metrics_redis_call(m, 0, GW_METRICS_REDIS_REPLY_ERR, 0.0001);
    gw_metrics_redis_call(m, 0, GW_METRICS_REDIS_CONN, 0.001);
    gw_metrics_redis_call(m, 0, 9, 0.001); /* bad result: ignored */
    gw_metrics_lua_memory(m, 0, 123456);
    gw_metrics_lua_memory(m, 1, 654321);
    gw_metrics_lua_memory(m, 5, 1); /* bad slot: ignored */
    t = render(m);
    HAS(t, "gateway_redis_commands_total 5");
    HAS(t, "gateway_redis_errors_total{kind=\"reply\"} 1");
    HAS(t, "gateway_redis_errors_total{kind=\"timeout\"} 1");
    HAS(t, "gateway_redis_errors_total{kind=\"connection\"} 1");
    HAS(t, "gateway_redis_latency_seconds_bucket{le=\"0.0001\"} 1");
    HAS(t, "gateway_redis_latency_seconds_bucket{le=\"0.00025\"} 2");
    HAS(t, "gateway_redis_latency_seconds_bucket{le=\"0.0005\"} 3");
    HAS(t, "gateway_redis_latency_seconds_bucket{le=\"0.001\"} 4");
    HAS(t, "gateway_redis_latency_seconds_bucket{le=\"+Inf\"} 5");
    HAS(t, "gateway_redis_latency_seconds_count 5");
    HAS(t, "gateway_lua_memory_bytes{worker=\"0\"} 123456");
    HAS(t, "gateway_lua_memory_bytes{worker=\"1\"} 654321");
    free(t);
    /* A dead worker's Lua gauge goes with it. */
    gw_metrics_worker_reset(m, 1);
    t = render(m);
    ok(strstr(t, "gateway_lua_memory_bytes{worker=\"1\"}") == NULL, "dead worker: no Lua row");
    HAS(t, "gateway_redis_commands_total 5");
    free(t);
    gw_metrics_worker_start(m, 1);

    /* The mapping is shared with a forked child. */
    pid_t pid = fork();
    if (pid == 0) {
        gw_metrics_request(m, 1, 1, 299, 0.5);
        gw_metrics_conn(m, 1, GW_CONN_ACTIVE, 7);
        _exit(0);
    }
    int wst = 0;
    waitpid(pid, &wst, 0);
    ok(WIFEXITED(wst) && WEXITSTATUS(wst) == 0, "child recorded and exited");
    t = render(m);
    HAS(t, "gateway_requests_total{route=\"we\\\"ird\\\\route\\n\",status=\"299\"} 1");
    HAS(t, "gateway_connections{state=\"active\"} 10");
    free(t);

    gw_metrics_free(m);
    gw_metrics_free(NULL);

    /* Redis Cluster: only with redis.type cluster; nodes merged by address */
    m = gw_metrics_new(&conf, 2);
    t = render(m);
    ok(strstr(t, "gateway_redis_cluster") == NULL, "no cluster families without a cluster");
    free(t);
    gw_metrics_free(m);
    gw_conf_t cc = conf;
    cc.has_redis = 1;
    cc.redis_type = GW_REDIS_CLUSTER;
    m = gw_metrics_new(&cc, 2);
    gw_metrics_worker_start(m, 0);
    gw_metrics_worker_start(m, 1);
    uint64_t ref[GW_METRICS_NREFRESH] = {1, 2, 0, 3, 0, 4},
             red[GW_METRICS_NREDIRECT] = {5, 6, 7, 8};
    gw_metrics_rcluster(m, 0, ref, red);
    gw_metrics_rcluster(m, 1, ref, red);
    gw_metrics_rnode_t a = {.addr = "10.0.0.1:7000",
                            .up = 1,
                            .master = 1,
                            .replies = 4,
                            .latency_ns = 2000000,
                            .noscript = 1};
    gw_metrics_rnode_t b = {.addr = "10.0.0.2:7001", .up = 0, .master = 1, .timeouts = 2};
    gw_metrics_rnode(m, 0, &a);
    gw_metrics_rnode(m, 0, &b);
    gw_metrics_rnode(m, 1, &b); /* another order in another worker */
    gw_metrics_rnode(m, 1, &a);
    gw_metrics_rnode(m, 1, &a);
    gw_metrics_rnode(m, 7, &a); /* a bad slot is ignored */
    t = render(m);
    HAS(t, "gateway_redis_cluster_refreshes_total{reason=\"moved\"} 4");
    HAS(t, "gateway_redis_cluster_refreshes_total{reason=\"periodic\"} 8");
    HAS(t, "gateway_redis_cluster_redirects_total{kind=\"ask\"} 12");
    HAS(t, "gateway_redis_node_up{node=\"10.0.0.1:7000\"} 2");
    HAS(t, "gateway_redis_node_up{node=\"10.0.0.2:7001\"} 0");
    HAS(t, "gateway_redis_node_fallback{node=\"10.0.0.2:7001\"} 2");
    HAS(t, "gateway_redis_node_fallback{node=\"10.0.0.1:7000\"} 0");
    HAS(t, "gateway_redis_node_noscript_total{node=\"10.0.0.1:7000\"} 3");
    HAS(t, "gateway_redis_node_timeouts_total{node=\"10.0.0.2:7001\"} 4");
    HAS(t, "gateway_redis_node_latency_seconds_count{node=\"10.0.0.1:7000\"} 12");
    HAS(t, "gateway_redis_node_latency_seconds_sum{node=\"10.0.0.1:7000\"} 0.006000");
    free(t);
    gw_metrics_worker_reset(m, 1);
    t = render(m);
    HAS(t, "gateway_redis_node_up{node=\"10.0.0.1:7000\"} 1");
    HAS(t, "gateway_redis_node_noscript_total{node=\"10.0.0.1:7000\"} 3");
    free(t);
    gw_metrics_free(m);
    done_testing();
}
