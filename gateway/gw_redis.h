/*
 * The worker's Redis client, which the limiters and gw.redis talk to
 * whatever redis.type says:
 *   - node: one pipelined connection (gw_rconn.h) to the one Redis;
 *   - cluster: gw_rcluster.h, one connection per master, commands routed
 *     by their first key's slot; readiness is then per key
 *     (gw_redis_key_ready): a master that is down or unknown makes only
 *     the keys it serves follow the caller's Redis-down policy, and a
 *     keyless command is refused.
 * For node mode, what the connection gives:
 *   - a deadline on every command (redis.timeout): the caller hears back
 *     within it whatever Redis does; a late reply is dropped;
 *   - AUTH and SELECT before anything else, then a PING: the client is
 *     "ready" only once Redis answered it;
 *   - reconnect with back-off (100 ms doubling to 500 ms) after a lost
 *     connection, a refused one or a failed handshake;
 *   - "suspect" mode: after a timeout or a connection-level error a user
 *     reports, the client stops offering itself (gw_redis_ready() is 0) and
 *     PINGs every 100 ms until Redis answers; a connection that stays
 *     silent for a second while suspect is dropped and re-made;
 *   - scripts run as EVALSHA; a NOSCRIPT answer (after SCRIPT FLUSH or a
 *     restart) is retried once as EVAL within the same deadline, which also
 *     loads the script again;
 *   - one log line per state change.
 *
 * One loop, one thread: everything here runs on the worker's loop.
 */
#ifndef GW_REDIS_H
#define GW_REDIS_H

#include <hiredis/hiredis.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "gw_core.h"
#include "gw_rcluster.h"
#include "gw_rconn.h"

typedef struct gw_redis_s gw_redis_t;
typedef struct gw_redis_cmd_s gw_redis_cmd_t;

/* Errors the callback receives (0: REPLY is Redis's answer, which may be an
 * error reply). */
#define GW_REDIS_ETIMEDOUT GW_RCONN_ETIMEDOUT /* no answer within the timeout */
#define GW_REDIS_ECONN GW_RCONN_ECONN         /* the connection went away first */
#define GW_REDIS_ECLOSED GW_RCONN_ECLOSED     /* the client is closing (worker exit) */

/* host (copied), port, password (NULL or "": no AUTH), db, timeout_ms per
 * command, connect_timeout_ms, on_state(state_arg, ready) */
typedef gw_rconn_opts_t gw_redis_opts_t;

/*
 * Called once per command that gw_redis_command() accepted, from the loop,
 * never from inside gw_redis_command(). REPLY is valid only during the
 * call. Not called after gw_redis_cmd_cancel().
 */
typedef gw_rconn_cb gw_redis_cb;

/* A Lua script known by its SHA1 (computed at gw_redis_script_init). */
typedef gw_rconn_script_t gw_redis_script_t;

void gw_redis_script_init(gw_redis_script_t *s, const char *text);

/* Starts connecting at once. Returns NULL on bad options or out of memory. */
gw_redis_t *gw_redis_new(uv_loop_t *loop, const gw_redis_opts_t *o, gw_log_t *log);

/* A Redis Cluster client; starts asking for the slot map at once. */
gw_redis_t *gw_redis_new_cluster(uv_loop_t *loop, const gw_rcluster_opts_t *o, gw_log_t *log);

/* redis.type: sentinel: the node client, its connection going to the
 * master gw_sentinel finds and follows (see gw_sentinel.h); not ready
 * while there is none. */
typedef struct gw_sentinel_opts_s gw_sentinel_opts_t;
gw_redis_t *gw_redis_new_sentinel(uv_loop_t *loop, const gw_sentinel_opts_t *o, gw_log_t *log);

/* The cluster client, NULL in node mode (for metrics). */
gw_rcluster_t *gw_redis_cluster(const gw_redis_t *rd);

/* Fails what is pending with GW_REDIS_ECLOSED, closes the connection and
 * the timers; the memory goes once libuv has closed them. */
void gw_redis_close(gw_redis_t *rd);

/* 1 when commands go to Redis now; 0 while connecting, down or suspect.
 * A cluster: 1 once it has a slot map (some keys may still be refused). */
int gw_redis_ready(const gw_redis_t *rd);

/* 1 when a command whose first key is KEY would be sent now. */
int gw_redis_key_ready(const gw_redis_t *rd, const char *key, size_t len);

/* Reports a failure a user saw (a timeout, an error reply that says Redis
 * cannot serve): the client turns suspect and probes. Nothing in cluster
 * mode, where each node's connection judges itself. */
void gw_redis_suspect(gw_redis_t *rd, const char *why);

/*
 * Sends ARGV[0..ARGC) (binary-safe). Returns the command, or NULL when the
 * client is not ready or too many commands wait (nothing is sent, CB will
 * not be called). The deadline starts now.
 */
gw_redis_cmd_t *gw_redis_command(gw_redis_t *rd, int argc, const char **argv, const size_t *lens,
                                 gw_redis_cb cb, void *arg);

/* EVALSHA script NKEYS KEYS... ARGS..., falling back to EVAL on NOSCRIPT. */
gw_redis_cmd_t *gw_redis_eval(gw_redis_t *rd, const gw_redis_script_t *s, int nkeys, int nargs,
                              const char **argv, const size_t *lens, gw_redis_cb cb, void *arg);

/* The waiter went away: CB is not called for this command. */
void gw_redis_cmd_cancel(gw_redis_cmd_t *c);

#endif
