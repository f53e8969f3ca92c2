/*
 * disc_print CONFIG: runs the etcd watchers of CONFIG in the foreground and
 * prints one JSON line per report on stdout, for the integration tests
 * (t/92-discovery-etcd.t) while `gateway -d` is not there:
 *   {"source":"etcd1|go-zero|user.rpc","upstreams":["user"],"nodes":[...]}
 *   {"registry":"etcd1","up":false,"why":"..."}     (state changes only)
 *   {"registry":"etcd1","events":N}                 (the running total)
 * The error log goes to stderr. Ends on SIGINT or SIGTERM.
 */
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
    int up; /* -1 unknown */
    unsigned long events;
    void *watcher;
} reg_t;

static void
put_str(const char *s)
{
    size_t n = strlen(s);
    char *o = malloc(6 * n + 1);
    o[gw_json_escape(o, s, n)] = '\0';
    printf("\"%s\"", o);
    free(o);
}

static void
on_nodes(void *arg, size_t target, const gw_disc_node_t *nodes, size_t n)
{
    reg_t *r = arg;
    const gw_discovery_conf_t *d = r->targets[target];
    char src[512];
    snprintf(src, sizeof(src), "%s|%s|%s", r->reg->name, d->format, d->key ? d->key : d->service);
    printf("{\"source\":");
    put_str(src);
    printf(",\"upstreams\":[");
    put_str(r->ups[target]->name);
    printf("],\"nodes\":[");
    for (size_t i = 0; i < n; i++) {
        char addr[600];
        if (strchr(nodes[i].host, ':'))
            snprintf(addr, sizeof(addr), "[%s]:%d", nodes[i].host, nodes[i].port);
        else
            snprintf(addr, sizeof(addr), "%s:%d", nodes[i].host, nodes[i].port);
        printf("%s{\"addr\":", i ? "," : "");
        put_str(addr);
        printf(",\"weight\":%d,\"id\":", nodes[i].weight);
        put_str(nodes[i].id ? nodes[i].id : "");
        printf(",\"meta\":{");
        for (size_t m = 0; m < nodes[i].nmeta; m++) {
            printf("%s", m ? "," : "");
            put_str(nodes[i].meta[m].key);
            printf(":");
            put_str(nodes[i].meta[m].value);
        }
        printf("}}");
    }
    printf("]}\n");
}

static void
on_state(void *arg, int up, const char *why)
{
    reg_t *r = arg;
    if (r->up == up)
        return;
    r->up = up;
    printf("{\"registry\":");
    put_str(r->reg->name);
    printf(",\"up\":%s", up ? "true" : "false");
    if (!up) {
        printf(",\"why\":");
        put_str(why ? why : "");
    }
    printf("}\n");
}

static void
on_events(void *arg, unsigned n)
{
    reg_t *r = arg;
    r->events += n;
    printf("{\"registry\":");
    put_str(r->reg->name);
    printf(",\"events\":%lu}\n", r->events);
}

static const gw_disc_report_t report = {on_nodes, on_state, on_events};

typedef struct {
    reg_t *regs;
    size_t nregs;
    uv_signal_t sigs[2];
} app_t;

static void
on_signal(uv_signal_t *s, int signum)
{
    app_t *a = s->data;
    for (size_t i = 0; i < a->nregs; i++)
        if (a->regs[i].watcher)
            gw_etcd_watcher.stop(a->regs[i].watcher);
    for (int i = 0; i < 2; i++)
        uv_close((uv_handle_t *)&a->sigs[i], NULL);
}

int
main(int argc, char **argv)
{
    gw_conf_errors_t errs = {0};
    char err[256];
    app_t a = {0};

    if (argc != 2) {
        fprintf(stderr, "usage: %s CONFIG\n", argv[0]);
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    gw_conf_t *conf = gw_conf_load(argv[1], &errs);
    if (conf == NULL) {
        for (size_t i = 0; i < errs.n; i++)
            fprintf(stderr, "%s\n", errs.lines[i]);
        return 1;
    }
    gw_log_t *log = gw_log_open("stderr", GW_LOG_INFO, err, sizeof(err));
    gw_log_set_tag(log, "discovery");
    uv_loop_t *loop = uv_default_loop();

    a.regs = calloc(conf->nregistries + 1, sizeof(reg_t));
    a.nregs = conf->nregistries;
    for (size_t i = 0; i < conf->nregistries; i++) {
        reg_t *r = &a.regs[i];
        r->conf = conf;
        r->reg = &conf->registries[i];
        r->up = -1;
        r->targets = calloc(conf->nupstreams + 1, sizeof(*r->targets));
        r->ups = calloc(conf->nupstreams + 1, sizeof(*r->ups));
        for (size_t u = 0; u < conf->nupstreams; u++) {
            const gw_upstream_conf_t *up = &conf->upstreams[u];
            if (up->discovery.kind == GW_DISC_ETCD && up->discovery.reg_index == i) {
                r->targets[r->n] = &up->discovery;
                r->ups[r->n++] = up;
            }
        }
        if (r->reg->kind == GW_DISC_ETCD && r->n > 0)
            r->watcher = gw_etcd_watcher.start(loop, log, r->reg, r->targets, r->n, &report, r);
    }
    for (int i = 0; i < 2; i++) {
        uv_signal_init(loop, &a.sigs[i]);
        a.sigs[i].data = &a;
        uv_signal_start(&a.sigs[i], on_signal, i ? SIGTERM : SIGINT);
    }
    uv_run(loop, UV_RUN_DEFAULT);
    int rc = uv_loop_close(loop);
    for (size_t i = 0; i < a.nregs; i++) {
        free(a.regs[i].targets);
        free(a.regs[i].ups);
    }
    free(a.regs);
    gw_conf_free(conf);
    gw_log_close(log);
    return rc == 0 ? 0 : 3;
}
