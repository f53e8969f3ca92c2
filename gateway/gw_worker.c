/* One worker process: set-up, the loop, graceful drain, tear-down. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#include "gw_admin.h"
#include "gw_disc.h"
#include "gw_http.h"
#include "gw_http1.h" /* cycle: the worker accepts and drains connections */
#include "gw_log.h"
#include "gw_limit.h"
#include "gw_redis.h"
#include "gw_lua.h" /* the worker makes and frees its VM */
#include "gw_sentinel.h"
#include "gw_metrics.h"
#include "gw_request.h" /* cycle: the worker closes the request pool */
#include "gw_router.h"
#include "gw_status.h"
#include "gw_tls.h"
#include "gw_tls_client.h"
#include "gw_upstream.h"
#include "gw_watchdog.h"

const char *
gw_worker_date(gw_worker_t *w)
{
    time_t now = time(NULL); /* vDSO: no syscall */
    if (now != w->date_sec) {
        w->date_sec = now;
        gw_http_date(now, w->date);
    }
    return w->date;
}

uint64_t
gw_worker_now_ms(gw_worker_t *w)
{
    return uv_now(w->loop);
}

uint64_t
gw_worker_now_ns(gw_worker_t *w)
{
    if (!w->now_valid) {
        w->now_ns = uv_hrtime();
        w->now_valid = 1;
    }
    return w->now_ns;
}

/*
 * The loop. A worker that blocks in epoll_wait whenever it runs out of work
 * has to be woken by whoever sends it the next bytes, and on a virtual
 * machine that wake-up (an inter-processor interrupt, through the
 * hypervisor) costs the sending CPU several microseconds: a client or an
 * upstream on the same host pays it for nearly every request while the
 * worker is fast enough to be idle between them. So while the worker is
 * busy, it sleeps a short nap on its own timer instead and then polls
 * without blocking: bytes that arrive meanwhile wait in their sockets
 * without waking anyone, and the next pass takes them together.
 *
 * Busy means both: NAP_MIN_REQUESTS or more requests alive in this worker
 * (below that, the added microseconds would be a latency cost a few
 * concurrent clients see, with nothing queued to batch), and the last
 * pass read from a socket (so that an idle worker holding many slow
 * requests goes back to blocking after one empty nap). Otherwise the loop
 * blocks as libuv's default mode does, and a pass costs nothing more than
 * this check in the prepare callback, which stops the default mode when
 * the worker turns busy. docs/performance.md has the measurements.
 */
enum { NAP_MIN_REQUESTS = 32 };

/* Before each poll: the cached clock goes stale, the watchdog hears the
 * loop turn, and a worker that turned busy leaves the default mode for
 * run_loop's napping one (uv_stop makes this pass poll without waiting). */
static void
on_clock_reset(uv_prepare_t *p)
{
    gw_worker_t *w = p->data;
    w->now_valid = 0;
    gw_watchdog_beat(w->watch);
    if (w->nreads != w->reads_seen) {
        w->reads_seen = w->nreads;
        if (w->nreqs >= NAP_MIN_REQUESTS && w->conf->loop_nap_us != 0)
            uv_stop(w->loop);
    }
}

void
gw_ffi_watch(gw_request_t *r, int plugin)
{
    if (r == NULL || r->w == NULL)
        return;
    gw_watchdog_enter(r->w->watch, r->route ? (int)r->route->index + 1 : 0, plugin);
}

static void
on_beat(uv_timer_t *t)
{
    /* nothing: waking the loop is the point (on_clock_reset counts) */
}

static void
on_handle_closed(uv_handle_t *h)
{
}

static void
finish(gw_worker_t *w)
{
    if (w->draining == 2)
        return;
    w->draining = 2;
    gw_upstreams_close_idle(w->upstreams);
    gw_redis_close(w->redis);
    w->redis = NULL;
    if (w->status) {
        gw_status_close(w->status, NULL, NULL);
        w->status = NULL;
    }
    if (w->admin) {
        gw_admin_close(w->admin);
        w->admin = NULL;
    }
    uv_timer_stop(&w->drain_timer);
    uv_close((uv_handle_t *)&w->drain_timer, on_handle_closed);
    uv_close((uv_handle_t *)&w->tick, on_handle_closed);
    uv_close((uv_handle_t *)&w->clock_reset, on_handle_closed);
    uv_close((uv_handle_t *)&w->beat, on_handle_closed);
    uv_close((uv_handle_t *)&w->sig_term, on_handle_closed);
    uv_close((uv_handle_t *)&w->sig_quit, on_handle_closed);
    uv_close((uv_handle_t *)&w->sig_usr1, on_handle_closed);
    if (w->disc)
        uv_close((uv_handle_t *)&w->disc_poll, on_handle_closed);
    gw_request_pool_close(w);
}

void
gw_worker_conn_closed(gw_worker_t *w)
{
    if (w->draining) {
        if (w->nconns == 0)
            finish(w);
        return;
    }
    for (size_t i = 0; i < w->nlisteners && w->nconns < w->max_conns; i++) {
        gw_listener_t *l = &w->listeners[i];
        if (l->paused) {
            l->paused = 0;
            gw_http1_on_connection((uv_stream_t *)&l->handle, 0);
        }
    }
}

static void
on_drain_timeout(uv_timer_t *t)
{
    gw_worker_t *w = t->data;
    gw_log(w->log, GW_LOG_WARN, "drain timeout: closing %u connection(s)", w->nconns);
    gw_link_t *l = w->conns.next;
    while (l != &w->conns) {
        gw_conn_t *c = GW_CONTAINER_OF(l, gw_conn_t, link);
        l = l->next;
        gw_conn_close(c);
    }
}

static void
begin_drain(gw_worker_t *w)
{
    if (w->draining)
        return;
    w->draining = 1;
    gw_upstreams_drain(w->upstreams);
    gw_log(w->log, GW_LOG_INFO, "draining %u connection(s)", w->nconns);
    for (size_t i = 0; i < w->nlisteners; i++) {
        if (w->listeners[i].active) {
            w->listeners[i].active = 0;
            uv_close((uv_handle_t *)&w->listeners[i].handle, on_handle_closed);
        }
    }
    if (w->status)
        gw_status_set_draining(w->status, 1);
    if (w->admin)
        gw_admin_set_draining(w->admin, 1);
    /* Idle keep-alive connections stay: a client may be sending on one
     * right now. Each gets its next response with Connection: close, or
     * ends by its keep-alive timeout, or by the drain timeout below. */
    if (w->nconns == 0) {
        finish(w);
        return;
    }
    uv_timer_start(&w->drain_timer, on_drain_timeout, w->conf->drain_timeout_ms + 1, 0);
}

static void
on_signal(uv_signal_t *s, int signum)
{
    gw_worker_t *w = s->data;
    if (signum == SIGUSR1) {
        gw_log_reopen(w->log);
        if (w->access_log)
            gw_access_log_reopen(w->access_log);
        return;
    }
    begin_drain(w);
}

/* A cluster client's counts since the last tick, and its nodes' states. */
static void
push_rcluster_metrics(gw_worker_t *w)
{
    gw_rcluster_t *cl = gw_redis_cluster(w->redis);
    if (cl == NULL)
        return;
    gw_rcluster_stats_t st;
    gw_rcluster_stats_take(cl, &st);
    uint64_t red[GW_METRICS_NREDIRECT] = {st.moved, st.ask, st.tryagain, st.clusterdown};
    gw_metrics_rcluster(w->metrics, w->slot, st.refreshes, red);
    gw_rcluster_node_t nodes[GW_METRICS_RNODES];
    size_t n = gw_rcluster_nodes(cl, nodes, GW_METRICS_RNODES);
    for (size_t i = 0; i < n; i++) {
        char addr[GW_CLUSTER_HOST_MAX + 16];
        snprintf(addr, sizeof(addr), "%s:%d", nodes[i].addr->host, nodes[i].addr->port);
        gw_metrics_rnode_t mn = {.addr = addr,
                                 .up = nodes[i].ready,
                                 .master = nodes[i].master,
                                 .replies = nodes[i].stats.replies,
                                 .latency_ns = nodes[i].stats.latency_ns,
                                 .timeouts = nodes[i].stats.timeouts,
                                 .noscript = nodes[i].stats.noscript};
        gw_metrics_rnode(w->metrics, w->slot, &mn);
    }
    gw_metrics_redis(w->metrics, w->slot, gw_redis_ready(w->redis), 0);
}

static void
on_tick(uv_timer_t *t)
{
    gw_worker_t *w = t->data;
    if (w->access_log)
        gw_access_log_flush(w->access_log);
    gw_upstreams_tick(w->upstreams);
    push_rcluster_metrics(w);
    gw_metrics_lua_memory(w->metrics, w->slot, gw_lua_memory_used(w->lua));
    gw_metrics_loop_naps(w->metrics, w->slot, w->naps);
}

/* Every Redis command of the limiters and gw.redis, for /metrics. */
static void
on_redis_answer(void *arg, int err, int error_reply, uint64_t ns)
{
    gw_worker_t *w = arg;
    int result = err == GW_REDIS_ETIMEDOUT ? GW_METRICS_REDIS_TIMEOUT
                 : err != 0                ? GW_METRICS_REDIS_CONN
                 : error_reply             ? GW_METRICS_REDIS_REPLY_ERR
                                           : GW_METRICS_REDIS_OK;
    gw_metrics_redis_call(w->metrics, w->slot, result, (double)ns / 1e9);
}

static void
on_redis_state(void *arg, int ready)
{
    gw_worker_t *w = arg;
    gw_metrics_redis(w->metrics, w->slot, ready, 1);
}

/* The connection to a data node (redis.addr, or the master Sentinel
 * names): everything but where it goes. */
static gw_rconn_opts_t
data_node_opts(gw_worker_t *w)
{
    const gw_conf_t *conf = w->conf;
    return (gw_rconn_opts_t){.password = conf->redis_password,
                             .db = conf->redis_db,
                             .timeout_ms = conf->redis_timeout_ms,
                             .connect_timeout_ms = 1000,
                             .on_state = on_redis_state,
                             .state_arg = w,
                             .on_answer = on_redis_answer,
                             .answer_arg = w};
}

static void
on_sentinel_event(void *arg, gw_sentinel_event_t ev, const char *addr)
{
    gw_worker_t *w = arg;
    if (ev == GW_SENTINEL_RESOLVE_ERROR)
        gw_metrics_sentinel_resolve_error(w->metrics, w->slot);
    else
        gw_metrics_sentinel_master(w->metrics, w->slot, addr, ev == GW_SENTINEL_SWITCH);
}

/* redis.type: sentinel: the same client, to the master Sentinel gives. */
static int
start_sentinel(gw_worker_t *w)
{
    const gw_conf_t *conf = w->conf;
    gw_sentinel_opts_t o = {.addrs = (const char *const *)conf->redis_addrs,
                            .naddrs = conf->nredis_addrs,
                            .master_name = conf->redis_master_name,
                            .sentinel_password = conf->redis_sentinel_password,
                            .master = data_node_opts(w),
                            .on_event = on_sentinel_event,
                            .event_arg = w};
    gw_metrics_redis(w->metrics, w->slot, 0, 0);
    w->redis = gw_redis_new_sentinel(w->loop, &o, w->log);
    if (w->redis == NULL) {
        gw_log(w->log, GW_LOG_ERROR, "redis: cannot start the Sentinel client for master %s",
               conf->redis_master_name);
        return GW_ERROR;
    }
    return GW_OK;
}

/* A Redis Cluster from its seeds (checked by the config already). */
static int
start_redis_cluster(gw_worker_t *w)
{
    const gw_conf_t *conf = w->conf;
    gw_cluster_addr_t *seeds = calloc(conf->nredis_addrs, sizeof(*seeds));
    if (seeds == NULL)
        return GW_ERROR;
    for (size_t i = 0; i < conf->nredis_addrs; i++) {
        const char *a = conf->redis_addrs[i];
        if (gw_cluster_addr_parse(a, strlen(a), NULL, &seeds[i]) != GW_OK) {
            gw_log(w->log, GW_LOG_ERROR, "redis: bad cluster address %s", a);
            free(seeds);
            return GW_ERROR;
        }
    }
    /* TRYAGAIN's backoff leaves room for the retry within the timeout */
    uint64_t retry = conf->redis_timeout_ms / 5;
    gw_rcluster_opts_t o = {.seeds = seeds,
                            .nseeds = conf->nredis_addrs,
                            .password = conf->redis_password,
                            .timeout_ms = conf->redis_timeout_ms,
                            .connect_timeout_ms = 1000,
                            .on_answer = on_redis_answer,
                            .answer_arg = w,
                            .retry_ms = retry < 5    ? 5
                                        : retry > 50 ? 50
                                                     : retry};
    gw_metrics_redis(w->metrics, w->slot, 0, 0);
    w->redis = gw_redis_new_cluster(w->loop, &o, w->log);
    free(seeds);
    if (w->redis == NULL) {
        gw_log(w->log, GW_LOG_ERROR, "redis: cannot start the cluster client");
        return GW_ERROR;
    }
    return GW_OK;
}

/* The worker's Redis connection; it connects in the background, so a
 * Redis that is down only makes the limiters follow their policy. */
static int
start_redis(gw_worker_t *w)
{
    const gw_conf_t *conf = w->conf;
    if (conf->redis_type == GW_REDIS_SENTINEL)
        return start_sentinel(w);
    if (conf->redis_type == GW_REDIS_CLUSTER)
        return start_redis_cluster(w);
    char host[256];
    const char *colon = strrchr(conf->redis_addr, ':');
    const char *h = conf->redis_addr;
    size_t hlen = colon ? (size_t)(colon - h) : 0;
    if (hlen >= 2 && h[0] == '[' && h[hlen - 1] == ']') {
        h++;
        hlen -= 2;
    }
    if (colon == NULL || hlen == 0 || hlen >= sizeof(host))
        return GW_ERROR;
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    gw_redis_opts_t o = data_node_opts(w);
    o.host = host;
    o.port = atoi(colon + 1);
    gw_metrics_redis(w->metrics, w->slot, 0, 0);
    w->redis = gw_redis_new(w->loop, &o, w->log);
    if (w->redis == NULL) {
        gw_log(w->log, GW_LOG_ERROR, "redis: cannot start the client for %s", conf->redis_addr);
        return GW_ERROR;
    }
    return GW_OK;
}

/* Discovery: pools whose published list changed get it, between requests
 * (this runs from the loop, never inside one). */
static void
apply_discovery(gw_worker_t *w)
{
    const gw_conf_t *conf = w->conf;
    if (gw_disc_read(w->disc) != 1)
        return;
    for (size_t r = 0; r < conf->nregistries; r++) {
        uint64_t events;
        int up = gw_disc_registry_state(w->disc, conf->registries[r].name, &events);
        gw_metrics_registry(w->metrics, r, up > 0, events);
    }
    for (size_t i = 0; i < conf->nupstreams; i++) {
        const gw_upstream_conf_t *uc = &conf->upstreams[i];
        gw_upstream_rt_t *up = &w->upstreams->ups[i];
        const gw_disc_entry_t *e;
        size_t n;
        uint64_t version;
        char key[512];
        if (uc->discovery.kind == GW_DISC_STATIC ||
            gw_disc_source_key(conf, &uc->discovery, key, sizeof(key)) == 0 ||
            !gw_disc_lookup(w->disc, key, &e, &n, &version) ||
            (up->disc_known && up->disc_version == version))
            continue;
        if (gw_upstreams_set_nodes(w->upstreams, i, e, n) != GW_OK) {
            gw_log(w->log, GW_LOG_ERROR, "upstream \"%s\": out of memory for the new node list",
                   uc->name);
            continue;
        }
        up->disc_known = 1;
        up->disc_version = version;
        if (w->slot == 0)
            gw_log(w->log, n ? GW_LOG_INFO : GW_LOG_WARN, "upstream \"%s\": %zu node%s from %s",
                   uc->name, n, n == 1 ? "" : "s", uc->discovery.registry);
        if (up->health == NULL)
            gw_metrics_nodes(w->metrics, w->slot, (int)i, (int)n, 0);
    }
}

static void
on_disc_poll(uv_timer_t *t)
{
    apply_discovery(t->data);
}

static int
start_discovery(gw_worker_t *w)
{
    w->disc = gw_disc_reader_new(w->disc_shm);
    if (w->disc == NULL) {
        gw_log(w->log, GW_LOG_ERROR, "discovery: out of memory");
        return GW_ERROR;
    }
    apply_discovery(w); /* a re-spawned worker starts with the current lists */
    uv_timer_init(w->loop, &w->disc_poll);
    w->disc_poll.data = w;
    uv_timer_start(&w->disc_poll, on_disc_poll, 50, 50);
    uv_unref((uv_handle_t *)&w->disc_poll); /* never what keeps a draining worker up */
    return GW_OK;
}

/* The TLS contexts, when a listener needs them. Kernel TLS would need
 * OpenSSL on the socket itself; sessions run over memory BIOs
 * (docs/tls.md), so the kernel's offer is only reported. */
static int
setup_tls(gw_worker_t *w, const int *fds, size_t nfds)
{
    char err[1024];
    int need = 0;
    for (size_t i = 0; i < nfds && i < w->conf->nlisten; i++)
        need |= w->conf->listen[i].tls;
    if (!need)
        return GW_OK;
    w->tls = gw_tls_new(w->conf, w->log, w->metrics, w->slot, err, sizeof(err));
    if (w->tls == NULL) {
        gw_log(w->log, GW_LOG_ERROR, "%s", err);
        return GW_ERROR;
    }
    if (w->slot == 0)
        gw_log(w->log, GW_LOG_INFO, "tls: %zu certificate(s); kernel TLS %s, records in userspace",
               w->conf->tls.ncerts,
               gw_tls_kernel_offers_ktls() ? "offered by the kernel" : "not offered by the kernel");
    return GW_OK;
}

static int
setup(gw_worker_t *w, const int *fds, size_t nfds)
{
    char err[256];
    const gw_conf_t *conf = w->conf;
    w->router = gw_router_new(conf->routes, conf->nroutes, err, sizeof(err));
    if (w->router == NULL) {
        gw_log(w->log, GW_LOG_ERROR, "router: %s", err);
        return GW_ERROR;
    }
    if (conf->has_redis && start_redis(w) != GW_OK)
        return GW_ERROR;
    if (conf->has_plugins) {
        gw_conf_errors_t errs = {0};
        w->lua = gw_lua_new(conf, w->loop, w->slot, &errs);
        for (size_t i = 0; i < errs.n; i++)
            gw_log(w->log, GW_LOG_ERROR, "%s", errs.lines[i]);
        gw_conf_errors_free(&errs);
        if (w->lua == NULL)
            return GW_ERROR;
    }
    gw_upstreams_env_t env = {w->loop, w->conf,   w->log,     w->metrics, w->slot,
                              w->rng,  &w->rbufs, w->shstate, &w->nreads};
    w->upstreams = gw_upstreams_new(&env, err, sizeof(err));
    if (w->upstreams == NULL) {
        gw_log(w->log, GW_LOG_ERROR, "upstreams: %s", err);
        return GW_ERROR;
    }
    if (w->disc_shm && start_discovery(w) != GW_OK)
        return GW_ERROR;
    if (conf->access_log) {
        w->access_log = gw_access_log_open(conf->access_log, err, sizeof(err));
        if (w->access_log == NULL) {
            gw_log(w->log, GW_LOG_ERROR, "access log: %s", err);
            return GW_ERROR;
        }
    }
    if (setup_tls(w, fds, nfds) != GW_OK)
        return GW_ERROR;
    w->listeners = calloc(nfds ? nfds : 1, sizeof(gw_listener_t));
    if (w->listeners == NULL)
        return GW_ERROR;
    w->nlisteners = nfds;
    for (size_t i = 0; i < nfds; i++) {
        gw_listener_t *l = &w->listeners[i];
        l->fd = fds[i];
        l->tls = i < w->conf->nlisten && w->conf->listen[i].tls;
        uv_tcp_init(w->loop, &l->handle);
        l->handle.data = l;
        int rc = uv_tcp_open(&l->handle, fds[i]);
        if (rc == 0)
            rc = uv_listen((uv_stream_t *)&l->handle, 511, gw_http1_on_connection);
        if (rc != 0) {
            gw_log(w->log, GW_LOG_ERROR, "listener: %s", uv_strerror(rc));
            return GW_ERROR;
        }
        l->active = 1;
    }
    if (w->status_fd >= 0) {
        w->status = gw_status_start(w->loop, w->status_fd, w->metrics, w->log, err, sizeof(err));
        if (w->status == NULL) {
            gw_log(w->log, GW_LOG_ERROR, "status listener: %s", err);
            return GW_ERROR;
        }
        /* it listens on a copy: ours would keep the address listening
         * after the listener closes (a reload that moves it) */
        close(w->status_fd);
        w->status_fd = -1;
    }
    /* one worker serves the admin API: its failed-key limiter and its
     * answers are then the instance's */
    if (w->admin_fd >= 0 && w->slot == 0) {
        gw_admin_env_t aenv = {.loop = w->loop,
                               .log = w->log,
                               .conf = w->conf,
                               .upstreams = w->upstreams,
                               .shstate = w->shstate,
                               .lua = w->lua,
                               .nworkers = w->nworkers,
                               .seed = w->rng,
                               .master_pid = getppid()};
        w->admin = gw_admin_start(&aenv, w->admin_fd, err, sizeof(err));
        if (w->admin == NULL) {
            gw_log(w->log, GW_LOG_ERROR, "admin listener: %s", err);
            return GW_ERROR;
        }
        close(w->admin_fd);
        w->admin_fd = -1;
    }
    return GW_OK;
}

static void
nap(gw_worker_t *w, int timeout_ms)
{
    struct timespec ts = {0, (long)w->conf->loop_nap_us * 1000};
    if (timeout_ms >= 0 && (long)timeout_ms * 1000000 < ts.tv_nsec)
        ts.tv_nsec = (long)timeout_ms * 1000000; /* a timer due sooner */
    nanosleep(&ts, NULL);
    w->naps++;
}

static void
run_loop(gw_worker_t *w)
{
    /* the default slack (50 us) would stretch every nap to 70 us */
    if (w->conf->loop_nap_us != 0)
        prctl(PR_SET_TIMERSLACK, 1000UL);
    /* the default mode returns when on_clock_reset finds the worker busy */
    while (uv_run(w->loop, UV_RUN_DEFAULT)) {
        for (;;) {
            int timeout = uv_backend_timeout(w->loop); /* 0: callbacks are due now */
            if (timeout != 0)
                nap(w, timeout);
            uint64_t reads = w->nreads;
            if (!uv_run(w->loop, UV_RUN_NOWAIT))
                return;
            if (w->nreads == reads || w->nreqs < NAP_MIN_REQUESTS)
                break; /* not busy any more: block again */
        }
    }
}

int
gw_worker_run(const gw_conf_t *conf, int slot, int nworkers, const int *listen_fds, size_t nlisten,
              int status_fd, gw_metrics_t *metrics, gw_disc_shm_t *disc, gw_log_t *log,
              const gw_worker_shared_t *shared, gw_watchdog_rec_t *watch)
{
    gw_worker_t w;
    uv_loop_t loop;
    char tag[32];
    memset(&w, 0, sizeof(w));
    snprintf(tag, sizeof(tag), "worker %d", slot);
    gw_log_set_tag(log, tag);
    /* a worker must not outlive its master */
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    signal(SIGPIPE, SIG_IGN);
    signal(SIGINT, SIG_IGN); /* Ctrl-C reaches the master, which drains us */
    signal(SIGHUP, SIG_IGN);
    if (uv_loop_init(&loop) != 0)
        return 1;
    loop.data = &w;
    w.loop = &loop;
    w.conf = conf;
    w.slot = slot;
    w.nworkers = nworkers;
    w.log = log;
    w.metrics = metrics;
    w.status_fd = status_fd;
    w.admin_fd = shared ? shared->admin_fd : -1;
    w.shstate = shared ? shared->shstate : NULL;
    w.disc_shm = disc;
    w.rng = uv_hrtime() ^ ((uint64_t)getpid() << 32) ^ (uint64_t)slot;
    w.rbufs.size = conf->max_header_size + 4096 > 16384 ? conf->max_header_size + 4096 : 16384;
    w.max_conns = (unsigned)(conf->max_connections / nworkers);
    if (w.max_conns == 0)
        w.max_conns = 1;
    gw_list_init(&w.conns);
    uv_timer_init(&loop, &w.drain_timer);
    uv_timer_init(&loop, &w.tick);
    w.drain_timer.data = w.tick.data = &w;
    uv_signal_init(&loop, &w.sig_term);
    uv_signal_init(&loop, &w.sig_quit);
    uv_signal_init(&loop, &w.sig_usr1);
    w.sig_term.data = w.sig_quit.data = w.sig_usr1.data = &w;
    uv_signal_start(&w.sig_term, on_signal, SIGTERM);
    uv_signal_start(&w.sig_quit, on_signal, SIGQUIT);
    uv_signal_start(&w.sig_usr1, on_signal, SIGUSR1);
    uv_timer_start(&w.tick, on_tick, 1000, 1000);
    uv_unref((uv_handle_t *)&w.tick);
    uv_prepare_init(&loop, &w.clock_reset);
    w.clock_reset.data = &w;
    uv_prepare_start(&w.clock_reset, on_clock_reset);
    uv_unref((uv_handle_t *)&w.clock_reset);
    w.watch = watch;
    uv_timer_init(&loop, &w.beat);
    if (watch != NULL && conf->watchdog_ms > 0) {
        /* a quarter of the watchdog time: an idle loop turns often enough */
        uint64_t every = conf->watchdog_ms / 4;
        every = every < 25 ? 25 : every > 1000 ? 1000 : every;
        uv_timer_start(&w.beat, on_beat, every, every);
        uv_unref((uv_handle_t *)&w.beat);
    }

    int rc = 0;
    if (setup(&w, listen_fds, nlisten) != GW_OK) {
        rc = 1;
        begin_drain(&w);
    } else {
        gw_metrics_worker_start(metrics, slot);
        gw_metrics_lua_memory(metrics, slot, gw_lua_memory_used(w.lua));
        gw_watchdog_set_ready(watch);
        gw_log(log, GW_LOG_INFO, "started (pid %d)", (int)getpid());
    }
    run_loop(&w);
    if (w.access_log) {
        gw_access_log_flush(w.access_log);
        gw_access_log_close(w.access_log);
    }
    if (w.router)
        gw_router_free(w.router);
    gw_upstreams_free(w.upstreams);
    gw_disc_reader_free(w.disc);
    gw_lua_free(w.lua);
    gw_tls_free(w.tls);
    for (size_t i = 0; i < w.nlimiters; i++)
        gw_limiter_free(w.limiters[i]);
    free(w.limiters);
    gw_rbuf_pool_close(&w.rbufs);
    gw_tls_client_free(w.tls_default);
    free(w.listeners);
    uv_loop_close(&loop);
    if (rc == 0)
        gw_log(log, GW_LOG_INFO, "exited");
    return rc;
}

gw_tls_client_t *
gw_worker_tls_default(gw_worker_t *w)
{
    if (w->tls_default == NULL) {
        char err[256];
        gw_tls_client_conf_t conf = {.enabled = 1, .verify = 1};
        w->tls_default = gw_tls_client_new(&conf, NULL, err, sizeof(err));
        if (w->tls_default == NULL)
            gw_log(w->log, GW_LOG_ERROR, "TLS for gw.http.request: %s", err);
    }
    return w->tls_default;
}
