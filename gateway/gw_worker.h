/*
 * One worker process: its libuv loop, the listeners it accepts on, the
 * per-worker runtime built from the config (router, upstream pools), the
 * free lists that keep the request path free of malloc, and the drain
 * logic for graceful stop. Everything mutable lives here; nothing is
 * shared with other workers except the metrics segment.
 */
#ifndef GW_WORKER_H
#define GW_WORKER_H

#include <uv.h>

#include "gw_config.h"
#include "gw_core.h"
#include "gw_rbuf.h"

typedef struct gw_log_s gw_log_t;
typedef struct gw_access_log_s gw_access_log_t;
typedef struct gw_status_s gw_status_t;
typedef struct gw_conn_s gw_conn_t;
typedef struct gw_request_s gw_request_t;
typedef struct gw_upstreams_s gw_upstreams_t;

typedef struct {
    int fd;
    uv_tcp_t handle;
    int active;
    int paused; /* a connection is waiting in accept: max_connections hit */
    int tls;    /* gateway.listen[i].tls: connections get a gw_tls session */
} gw_listener_t;

struct gw_worker_s {
    uv_loop_t *loop;
    const gw_conf_t *conf;
    int slot; /* 0..workers-1, stable across re-spawns */
    int nworkers;
    gw_log_t *log;
    gw_access_log_t *access_log;
    gw_metrics_t *metrics;
    gw_status_t *status;
    struct gw_admin_s *admin;     /* the admin API, slot 0 only; NULL otherwise */
    struct gw_shstate_s *shstate; /* health, breakers: one per instance */
    int admin_fd;
    gw_router_t *router;
    gw_upstreams_t *upstreams;
    struct gw_disc_shm_s *disc_shm; /* NULL without discovery */
    struct gw_disc_reader_s *disc;  /* its reader */
    uv_timer_t disc_poll;           /* 50 ms: a new generation? */
    struct gw_lua_s *lua;           /* NULL when no route or global list names a plugin */
    struct gw_redis_s *redis;       /* NULL without a redis section */
    struct gw_tls_s *tls;           /* NULL without a tls: true listener */
    struct gw_limiter_s **limiters; /* made by limiter plugins on first use */
    size_t nlimiters;
    struct gw_tls_client_s *tls_default; /* gw.http.request's https: made on first use */

    gw_listener_t *listeners;
    size_t nlisteners;
    int status_fd;

    gw_link_t conns; /* every downstream connection */
    unsigned nconns;
    unsigned max_conns; /* this worker's share of limits.max_connections */

    gw_rbuf_pool_t rbufs; /* read buffers of both sides */
    gw_request_t *free_reqs;

    uv_signal_t sig_term, sig_quit, sig_usr1;
    uv_timer_t drain_timer;
    uv_timer_t tick; /* 1 s: access-log flush */
    int draining;

    int64_t date_sec;
    char date[32];
    uv_prepare_t clock_reset;        /* before each poll: the cached clock goes stale */
    struct gw_watchdog_rec_s *watch; /* this process's watchdog record; NULL -> off */
    uv_timer_t beat;                 /* turns an idle loop so the watchdog sees it */
    uint64_t now_ns;                 /* the clock as the current loop iteration read it */
    int now_valid;
    uint64_t rng;
    unsigned nreqs;      /* requests alive in this worker: the loop naps only when busy */
    uint64_t nreads;     /* reads that got bytes, both sides: the loop's sign of traffic */
    uint64_t reads_seen; /* nreads at the last prepare callback */
    uint64_t naps;       /* gateway_loop_naps_total */
};

/* What the master shares with every worker beyond the listeners: the
 * admin socket (-1: none; slot 0 serves it) and the shared state segment
 * (NULL: each worker decides alone). */
typedef struct {
    int admin_fd;
    struct gw_shstate_s *shstate;
} gw_worker_shared_t;

/* Runs the worker until it has drained; returns the process exit code.
 * SHARED may be NULL. */
int gw_worker_run(const gw_conf_t *conf, int slot, int nworkers, const int *listen_fds,
                  size_t nlisten, int status_fd, gw_metrics_t *metrics, struct gw_disc_shm_s *disc,
                  gw_log_t *log, const gw_worker_shared_t *shared, struct gw_watchdog_rec_s *watch);

/* From Lua (FFI), before each plugin call: R is the request (0: none),
 * PLUGIN 1 + the plugin's position in its route's chain as written
 * (globals first), for the watchdog (gw_watchdog.h). */
void gw_ffi_watch(gw_request_t *r, int plugin);

/* The TLS context of gw.http.request's https URLs: the system's CA store,
 * verification on. Made on first use (reading the store takes a while);
 * NULL when that failed (logged). */
struct gw_tls_client_s *gw_worker_tls_default(gw_worker_t *w);

/* IMF-fixdate of the current second, cached. */
const char *gw_worker_date(gw_worker_t *w);

/* A connection closed: may resume a paused accept, or end the drain. */
void gw_worker_conn_closed(gw_worker_t *w);

uint64_t gw_worker_now_ms(gw_worker_t *w);

/* A monotonic nanosecond clock read once per loop iteration (after the
 * poll that woke the loop): every callback of one iteration sees the same
 * time, and a request costs no clock read of its own. */
uint64_t gw_worker_now_ns(gw_worker_t *w);

#endif
