/*
 * One pipelined connection to one Redis address, on hiredis's async API,
 * attached to the libuv loop by a small glue of its own (hiredis's adapter
 * drops poll errors, so a refused connect would go unseen until the
 * connect timeout). Its owners: gw_redis (the single-node client, one
 * connection) and gw_rcluster (one connection per cluster node it talks
 * to) and gw_sentinel (one per Sentinel and one to the master it
 * found).
 *
 * What hiredis does not give, this module adds:
 *   - a deadline on every command, given by the owner as an absolute time
 *     on the loop's clock (a cluster command keeps one deadline across its
 *     redirects), by default now + opts.timeout_ms: the owner hears back by
 *     then whatever Redis does; a late reply is dropped;
 *   - AUTH and SELECT before anything else, then a PING: the connection is
 *     "ready" only once Redis answered it;
 *   - reconnect with back-off (100 ms doubling to 500 ms, or the owner's
 *     ceiling) after a lost connection, a refused one or a failed
 *     handshake; a host name is resolved on the loop before each connect;
 *   - "suspect" mode: after a timeout or a connection-level error the
 *     owner reports, the connection stops offering itself
 *     (gw_rconn_ready() is 0) and PINGs every 100 ms until Redis answers; a
 *     connection that stays silent for a second while suspect is dropped
 *     and re-made; only a command whose deadline was a whole timeout_ms
 *     and not marked partial makes it suspect by missing it (one given the
 *     rest of a cluster command's budget after a redirect does not);
 *   - scripts run as EVALSHA; a NOSCRIPT answer (after SCRIPT FLUSH, a
 *     restart or a failover to a node that never saw the script) is retried
 *     once as EVAL on this same connection within the same deadline, which
 *     also loads the script there: the script cache is per connection;
 *   - ASKING sent just before a command when the owner asks (a cluster's
 *     ASK redirect), again before the EVAL of a NOSCRIPT retry;
 *   - one log line per state change, prefixed "redis HOST:PORT".
 *
 * One loop, one thread: everything here runs on the owner's loop.
 */
#ifndef GW_RCONN_H
#define GW_RCONN_H

#include <hiredis/hiredis.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "gw_core.h"

typedef struct gw_rconn_s gw_rconn_t;
typedef struct gw_rconn_cmd_s gw_rconn_cmd_t;
typedef struct gw_log_s gw_log_t;

/* Errors the callback receives (0: REPLY is Redis's answer, which may be an
 * error reply). */
#define GW_RCONN_ETIMEDOUT -1 /* no answer by the deadline */
#define GW_RCONN_ECONN -2     /* the connection went away before the answer */
#define GW_RCONN_ECLOSED -3   /* the connection is closing (its owner's exit) */

typedef struct {
    const char *host; /* copied */
    int port;
    const char *password; /* NULL or "" -> no AUTH */
    int db;
    uint64_t timeout_ms; /* per command unless the owner gives a deadline */
    uint64_t connect_timeout_ms;
    uint64_t backoff_max_ms; /* reconnect back-off ceiling; 0: 500 (at least 100) */
    /* told when the connection becomes ready (1) or stops being ready (0) */
    void (*on_state)(void *arg, int ready);
    void *state_arg;
    /* optional: told of every answer to a command the owner sent (not of
     * AUTH, probes, internal queries or cancelled-at-close ones): err as the callback gets
     * it, error_reply 1 for a Redis error reply, ns since the send */
    void (*on_answer)(void *arg, int err, int error_reply, uint64_t ns);
    void *answer_arg;
    /* set: the connection does not reconnect by itself; when it would (after
     * its back-off), it calls this instead, with state_arg, and waits: its
     * owner either calls gw_rconn_reconnect() or closes it (later, not from
     * inside the call) and makes a new one. A Sentinel client asks again
     * where the master is before reconnecting */
    void (*on_reconnect)(void *arg);
} gw_rconn_opts_t;

/*
 * Called once per command that gw_rconn_send() accepted, from the loop,
 * never from inside gw_rconn_send(). REPLY is valid only during the call.
 * Not called after gw_rconn_cmd_cancel().
 */
typedef void (*gw_rconn_cb)(int err, const redisReply *reply, void *arg);

/* A Lua script known by its SHA1 (computed at gw_rconn_script_init). */
typedef struct {
    const char *text;
    char sha[41];
} gw_rconn_script_t;

void gw_rconn_script_init(gw_rconn_script_t *s, const char *text);

/* One command. With SCRIPT, ARGV holds NKEYS keys then the arguments
 * (ARGC in all) and the command is EVALSHA (EVAL on NOSCRIPT); without,
 * ARGV is the whole command. Everything is copied or encoded at once. */
typedef struct {
    int argc;
    const char **argv;
    const size_t *lens;
    const gw_rconn_script_t *script;
    int nkeys;
    uint64_t deadline_ms; /* uv_now() based; 0: now + opts.timeout_ms */
    int asking;           /* ASKING just before it */
    int partial;          /* the rest of a longer budget: missing it says nothing of this node */
    int internal;         /* the client's own query (a slot map, a role): on_answer is not told */
} gw_rconn_req_t;

/* Counters, for metrics (gw_rconn_stats_take). */
typedef struct {
    uint64_t replies;    /* answers to owners' commands */
    uint64_t latency_ns; /* their total time from send to answer */
    uint64_t timeouts;   /* commands that reached their deadline */
    uint64_t noscript;   /* NOSCRIPT answers (each turned into an EVAL) */
} gw_rconn_stats_t;

/* Starts connecting at once. Returns NULL on bad options or out of memory. */
gw_rconn_t *gw_rconn_new(uv_loop_t *loop, const gw_rconn_opts_t *o, gw_log_t *log);

/* Fails what is pending with GW_RCONN_ECLOSED (callbacks run from inside
 * this call), closes the connection and the timers; the memory goes once
 * libuv has closed them. */
void gw_rconn_close(gw_rconn_t *cn);

/* 1 when commands go to Redis now; 0 while connecting, down or suspect. */
int gw_rconn_ready(const gw_rconn_t *cn);

/* 1 when the error reply R starts with one of CODES (NULL-terminated:
 * "LOADING", "BUSY", ...) as its whole first word. */
int gw_rconn_error_is(const redisReply *r, const char *const *codes);

/* Commands sent and not yet answered by Redis (cancelled ones included). */
size_t gw_rconn_pending(const gw_rconn_t *cn);

/* With opts.on_reconnect: the owner lets the connection reconnect to the
 * same address after all (its back-off and its logged state go on). Does
 * nothing unless the connection is down and waiting for this. */
void gw_rconn_reconnect(gw_rconn_t *cn);

/* The counts since the last call. */
void gw_rconn_stats_take(gw_rconn_t *cn, gw_rconn_stats_t *out);

/* Reports a failure a user saw (a timeout, an error reply that says Redis
 * cannot serve): the connection turns suspect and probes. */
void gw_rconn_suspect(gw_rconn_t *cn, const char *why);

/*
 * Sends REQ (binary-safe). Returns the command, or NULL when the connection
 * is not ready, too many commands wait or REQ is malformed (nothing is
 * sent, CB will not be called).
 */
gw_rconn_cmd_t *gw_rconn_send(gw_rconn_t *cn, const gw_rconn_req_t *req, gw_rconn_cb cb, void *arg);

/* The waiter went away: CB is not called for this command. */
void gw_rconn_cmd_cancel(gw_rconn_cmd_t *c);

#endif
