/*
 * The admin API (gateway.admin.listen): GET /routes, /upstreams,
 * /consumers, /config, /plugins and POST /reload, JSON in and out. The
 * fields are documented in docs/admin.md.
 *
 * The master opens the socket once; worker 0 serves it, so the failed-key
 * limiter and the answers are the instance's (health and breakers come
 * from the shared state every worker decides on, gw_shstate.h). Access is
 * decided on the X-API-Key header and the peer address only: the key is
 * compared in constant time (digests of both sides), a peer that sends
 * GW_ADMIN_FAIL_LIMIT wrong or missing keys within GW_ADMIN_FAIL_WINDOW_MS
 * gets 429 for GW_ADMIN_BLOCK_MS, whatever it sends. A request head is
 * limited to GW_ADMIN_MAX_HEAD bytes (431), a body to GW_ADMIN_MAX_BODY
 * (413); every answer closes its connection.
 *
 * POST /reload runs this binary with -t on the running config's file (the
 * very check `gateway -t` makes, in a child process, so a slow plugin
 * check never holds the worker) and, when it passes, sends SIGHUP to the
 * master.
 */
#ifndef GW_ADMIN_H
#define GW_ADMIN_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

#include "gw_config.h"
#include "gw_core.h"
#include "gw_log.h"

typedef struct gw_admin_s gw_admin_t;

/* What the admin API reads of the worker that serves it: the pointers
 * stay valid for the worker's life. A view rather than the worker itself,
 * so that the admin API and the worker do not include each other. */
typedef struct {
    uv_loop_t *loop;
    gw_log_t *log;
    const gw_conf_t *conf;
    struct gw_upstreams_s *upstreams;
    struct gw_shstate_s *shstate; /* NULL: each worker decides alone */
    struct gw_lua_s *lua;         /* NULL: no plugins */
    int nworkers;
    uint64_t seed;    /* for the request ids of its answers */
    pid_t master_pid; /* POST /reload signals it, and only it */
} gw_admin_env_t;

#define GW_ADMIN_MAX_HEAD (8 * 1024)
#define GW_ADMIN_MAX_BODY (64 * 1024)
#define GW_ADMIN_MAX_CONNS 32
#define GW_ADMIN_IDLE_MS 10000
#define GW_ADMIN_FAIL_LIMIT 10
#define GW_ADMIN_FAIL_WINDOW_MS 60000
#define GW_ADMIN_BLOCK_MS 60000
#define GW_ADMIN_PEERS 256
#define GW_ADMIN_CHECK_MS 30000 /* the -t child is killed after this */

/**
 * Serves the admin API of the worker ENV describes (copied) on LISTEN_FD
 * (duplicated: the caller keeps its descriptor). NULL with a reason in ERR
 * when the descriptor is not a listening socket or the config has no
 * admin key.
 */
gw_admin_t *gw_admin_start(const gw_admin_env_t *env, int listen_fd, char *err, size_t errlen);

/** Draining: stops accepting (the next workers take the socket over);
 * requests in progress finish. */
void gw_admin_set_draining(gw_admin_t *a, int draining);

/** Closes the listener, every connection and a running check; frees A
 * once their handles are closed. */
void gw_admin_close(gw_admin_t *a);

/** 1 when GOT[0..GOTLEN) is the key WANT; the time taken does not depend
 * on where they differ, nor on their lengths. */
int gw_admin_key_ok(const char *want, const char *got, size_t gotlen);

/** 1 when a config key of that name holds a secret (redacted in GET /config). */
int gw_admin_secret_name(const char *name, size_t len);

/**
 * Rewrites the JSON text IN (LEN bytes) into OUT with the value of every
 * member whose name is a secret replaced by "[redacted]". GW_ERROR when IN
 * is not JSON.
 */
int gw_admin_redact(const char *in, size_t len, gw_buf_t *out);

#endif
