/*
 * The master of a Sentinel-monitored Redis, found and followed the way
 * Redis documents for Sentinel clients:
 *   - the Sentinels are asked in turn, SENTINEL get-master-addr-by-name
 *     NAME, over one gw_rconn each (AUTH with the Sentinel password); the
 *     first that answers moves to the front of the list, so the next
 *     question goes to it first;
 *   - the address it gives gets a gw_rconn of its own (the data password
 *     and db), then ROLE: only a "master" answer makes the connection
 *     usable; anything else (a replica not yet promoted, a stale Sentinel)
 *     sends that Sentinel to the back of the list and the Sentinels are
 *     asked again after a short delay (ROLE again on the same connection
 *     while they name the same server; a ROLE timeout closes it);
 *   - the master connection never reconnects by itself: each time it would,
 *     the Sentinels are asked again first, so a reconnect after a failover
 *     goes to the new master (the same address reuses the connection and
 *     its back-off; so does no answer from any Sentinel);
 *   - one more connection, to one Sentinel, is subscribed to
 *     +switch-master: a message for NAME only makes the Sentinels be asked
 *     at once (it is a hint; the answer to the question decides); a new
 *     address closes the connection to the old master, so nothing more is
 *     written there;
 *   - every few seconds the front Sentinel is asked again anyway (a lost
 *     pub/sub message or connection changes nothing for long);
 *   - when no Sentinel answers: one log line (and one when they answer
 *     again); a master already found keeps serving; without one, the
 *     owner's users see "not ready" and the limiters follow their
 *     on_redis_error policy.
 *
 * One loop, one thread: everything here runs on the owner's loop.
 */
#ifndef GW_SENTINEL_H
#define GW_SENTINEL_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "gw_core.h"
#include "gw_rconn.h"

typedef struct gw_sentinel_s gw_sentinel_t;

typedef enum {
    GW_SENTINEL_MASTER = 0,    /* ADDR is the confirmed master now */
    GW_SENTINEL_SWITCH,        /* ... and it differs from the one before */
    GW_SENTINEL_RESOLVE_ERROR, /* a round of questions found no master */
} gw_sentinel_event_t;

typedef struct gw_sentinel_opts_s {
    const char *const *addrs; /* the Sentinels, "host:port" or "[v6]:port" */
    size_t naddrs;
    const char *master_name;
    const char *sentinel_password; /* NULL or "": no AUTH to the Sentinels */
    /* the master connection: password, db, timeout_ms, connect_timeout_ms
     * and on_state (told ready only once ROLE said "master"); host and port
     * are ignored */
    gw_rconn_opts_t master;
    void (*on_event)(void *arg, gw_sentinel_event_t ev, const char *addr);
    void *event_arg;
} gw_sentinel_opts_t;

/* Starts asking at once. Returns NULL on bad options or out of memory. */
gw_sentinel_t *gw_sentinel_new(uv_loop_t *loop, const gw_sentinel_opts_t *o, gw_log_t *log);

/* Closes every connection (pending commands fail with GW_RCONN_ECLOSED)
 * and the timers; the memory goes once libuv has closed them. */
void gw_sentinel_close(gw_sentinel_t *sn);

/* The connection to the confirmed master, or NULL while there is none.
 * Valid until the next return to the loop. */
gw_rconn_t *gw_sentinel_master(const gw_sentinel_t *sn);

/* "host:port" of the confirmed master, "" while there is none. */
const char *gw_sentinel_master_addr(const gw_sentinel_t *sn);

#endif
