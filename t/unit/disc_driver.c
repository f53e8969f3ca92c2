/*
 * `disc_driver -c FILE`: runs the Consul watchers of FILE in the foreground
 * and prints one JSON line per report, in the shape `gateway -d` prints:
 *
 *   {"source":"<registry>|<service>","upstreams":[...],"nodes":[
 *       {"addr":"h:p","weight":1,"id":"...","meta":{...}}]}
 *   {"registry":"<name>","up":false,"why":"..."}
 *   {"registry":"<name>","events":N}
 *
 * Until SIGTERM or SIGINT. A test tool for t/93-discovery-consul.t, not a
 * test itself (no test_ prefix: `make unit` does not run it).
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "gw_config.h"
#include "gw_json.h"
#include "gw_log.h"
#include "gw_watch.h"

typedef struct {
    const gw_conf_t *conf;
    const gw_registry_conf_t *reg;
    const gw_discovery_conf_t **targets;
    const gw_upstream_conf_t **ups;
    size_t n;
    void *watcher;
} reg_run_t;

static void
put_str(const char *s)
{
    size_t n = strlen(s);
    char *e = malloc(6 * n + 1);
    size_t m = gw_json_escape(e, s, n);
    fputc('"', stdout);
    fwrite(e, 1, m, stdout);
    fputc('"', stdout);
    free(e);
}

static void
on_nodes(void *arg, size_t target, const gw_disc_node_t *nodes, size_t n)
{
    reg_run_t *r = arg;
    printf("{\"source\":");
    char src[1024];
    snprintf(src, sizeof(src), "%s|%s", r->reg->name, r->targets[target]->service);
    put_str(src);
    printf(",\"upstreams\":[");
    put_str(r->ups[target]->name);
    printf("],\"nodes\":[");
    for (size_t i = 0; i < n; i++) {
        char addr[512];
        if (strchr(nodes[i].host, ':'))
            snprintf(addr, sizeof(addr), "[%s]:%d", nodes[i].host, nodes[i].port);
        else
            snprintf(addr, sizeof(addr), "%s:%d", nodes[i].host, nodes[i].port);
        printf("%s{\"addr\":", i ? "," : "");
        put_str(addr);
        printf(",\"weight\":%d", nodes[i].weight);
        if (nodes[i].id) {
            printf(",\"id\":");
            put_str(nodes[i].id);
        }
        printf(",\"meta\":{");
        for (size_t j = 0; j < nodes[i].nmeta; j++) {
            printf("%s", j ? "," : "");
            put_str(nodes[i].meta[j].key);
            printf(":");
            put_str(nodes[i].meta[j].value);
        }
        printf("}}");
    }
    printf("]}\n");
    fflush(stdout);
}

static void
on_state(void *arg, int up, const char *why)
{
    reg_run_t *r = arg;
    printf("{\"registry\":");
    put_str(r->reg->name);
    printf(",\"up\":%s", up ? "true" : "false");
    if (!up) {
        printf(",\"why\":");
        put_str(why ? why : "");
    }
    printf("}\n");
    fflush(stdout);
}

static void
on_events(void *arg, unsigned n)
{
    reg_run_t *r = arg;
    printf("{\"registry\":");
    put_str(r->reg->name);
    printf(",\"events\":%u}\n", n);
    fflush(stdout);
}

static const gw_disc_report_t report = {on_nodes, on_state, on_events};

static reg_run_t *runs;
static size_t nruns;
static uv_signal_t sigs[2];

static void
on_signal(uv_signal_t *s, int signum)
{
    for (size_t i = 0; i < nruns; i++)
        if (runs[i].watcher)
            gw_consul_watcher.stop(runs[i].watcher);
    for (int i = 0; i < 2; i++)
        uv_close((uv_handle_t *)&sigs[i], NULL);
}

int
main(int argc, char **argv)
{
    gw_conf_errors_t errs = {0};
    if (argc != 3 || strcmp(argv[1], "-c") != 0) {
        fprintf(stderr, "usage: disc_driver -c FILE\n");
        return 2;
    }
    gw_conf_t *conf = gw_conf_load(argv[2], &errs);
    if (conf == NULL) {
        for (size_t i = 0; i < errs.n; i++)
            fprintf(stderr, "%s\n", errs.lines[i]);
        return 1;
    }
    gw_log_t *log = gw_log_open("stderr", GW_LOG_INFO, NULL, 0);
    uv_loop_t *loop = uv_default_loop();
    runs = calloc(conf->nregistries + 1, sizeof(reg_run_t));
    for (size_t i = 0; i < conf->nregistries; i++) {
        reg_run_t *r = &runs[nruns];
        if (conf->registries[i].kind != GW_DISC_CONSUL)
            continue;
        r->conf = conf;
        r->reg = &conf->registries[i];
        r->targets = calloc(conf->nupstreams + 1, sizeof(*r->targets));
        r->ups = calloc(conf->nupstreams + 1, sizeof(*r->ups));
        for (size_t u = 0; u < conf->nupstreams; u++) {
            const gw_upstream_conf_t *up = &conf->upstreams[u];
            if (up->discovery.kind == GW_DISC_CONSUL && up->discovery.reg_index == i) {
                r->targets[r->n] = &up->discovery;
                r->ups[r->n++] = up;
            }
        }
        r->watcher = gw_consul_watcher.start(loop, log, r->reg, r->targets, r->n, &report, r);
        nruns++;
    }
    uv_signal_init(loop, &sigs[0]);
    uv_signal_start(&sigs[0], on_signal, SIGTERM);
    uv_signal_init(loop, &sigs[1]);
    uv_signal_start(&sigs[1], on_signal, SIGINT);
    uv_run(loop, UV_RUN_DEFAULT);
    int rc = uv_loop_close(loop);
    for (size_t i = 0; i < nruns; i++) {
        free(runs[i].targets);
        free(runs[i].ups);
    }
    free(runs);
    gw_log_close(log);
    gw_conf_free(conf);
    return rc == 0 ? 0 : 3;
}
