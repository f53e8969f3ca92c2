/*
 * Discovery: one watcher per registry per gateway instance, and the node
 * lists it finds carried to every worker.
 *
 * The watchers run in one discovery process that the master forks (only
 * when some upstream has `discovery`), never in a worker: etcd and Consul
 * see one client per gateway whatever `workers` is, and every worker
 * routes over the same list. The process publishes each target's list into
 * a shared segment that the master maps before it forks anyone (so it
 * outlives a re-spawned worker, a re-spawned discovery process and a
 * reload); workers look at its generation counter every 50 ms and swap the
 * pools whose list changed between requests (gw_upstream.c keeps the state
 * of nodes that stay).
 *
 * A "source" is one distinct thing watched: a registry and a discovery
 * block. Upstreams with the same block share it. Sources are named by a key
 * that spells both, so that after a reload the new discovery process and
 * new workers find the lists the old ones published and a pool never looks
 * empty while watches are re-made.
 */
#ifndef GW_DISC_H
#define GW_DISC_H

#include <stddef.h>
#include <stdint.h>

#include <sys/socket.h>

#include "gw_config.h"

typedef struct gw_log_s gw_log_t;
typedef struct gw_disc_shm_s gw_disc_shm_t;

/* The segment, made by the master before it forks; NULL when no upstream
 * of CONF has discovery (nothing to carry). */
gw_disc_shm_t *gw_disc_shm_new(const gw_conf_t *conf);
void gw_disc_shm_free(gw_disc_shm_t *shm);

/* Upstreams of CONF that have discovery. */
size_t gw_disc_source_count(const gw_conf_t *conf);

/* Tells the discovery process which config text the master runs (before
 * it sends it SIGHUP): the process re-reads the file and keeps its
 * watchers only when it reads that same text. */
void gw_disc_shm_set_conf(gw_disc_shm_t *shm, const gw_conf_t *conf);

/* Forgets every list (the master, with no discovery process running, when
 * a reload drops discovery): lists must not come back from an old
 * configuration when a later one brings discovery back. */
void gw_disc_shm_clear(gw_disc_shm_t *shm);

/* The discovery process: runs the watchers of CONF until SIGTERM, publishing
 * the lists and the registries' state into SHM. On SIGHUP it re-reads
 * CONF's file: watchers of registries whose settings and watched services
 * did not change keep running, the others are replaced; when the file is
 * not the text the master validated (gw_disc_shm_set_conf) it exits, and
 * the master starts a new process from its own copy. SIGUSR1 reopens the
 * log. Returns the process exit code. */
int gw_disc_run(const gw_conf_t *conf, gw_disc_shm_t *shm, gw_log_t *log);

/* `gateway -d`: runs the watchers of CONF in the foreground and prints one
 * JSON line per change on stdout (lists and registry state), until SIGINT
 * or SIGTERM. For operators asking "what does the gateway see". */
int gw_disc_print(const gw_conf_t *conf, gw_log_t *log);

/* The source key of an upstream's discovery block:
 * "<registry>|<what>|<fingerprint of the registry's servers>".
 * Written into OUT (LEN bytes); returns its length, or 0 when it does not
 * fit. */
size_t gw_disc_source_key(const gw_conf_t *conf, const gw_discovery_conf_t *d, char *out,
                          size_t len);

/* ---- the worker's side ---- */

/* One node of a published list, as a worker reads it. The strings point
 * into the reader's copy of the segment and live until the next
 * gw_disc_read(). */
typedef struct gw_disc_entry_s {
    struct sockaddr_storage sa;
    socklen_t salen;
    const char *addr; /* "ip:port", "[v6]:port" */
    int weight;
    gw_kv_t *meta;
    size_t nmeta;
} gw_disc_entry_t;

typedef struct gw_disc_reader_s gw_disc_reader_t;

gw_disc_reader_t *gw_disc_reader_new(gw_disc_shm_t *shm);
void gw_disc_reader_free(gw_disc_reader_t *r);

/* Reads the segment when it changed since the last call (1), or not (0).
 * After a 1, gw_disc_lookup() answers from the new state. */
int gw_disc_read(gw_disc_reader_t *r);

/* The list published for source KEY. Returns 1 with the entries (a NULL
 * array when the list is empty), or 0 when nothing was ever published for
 * KEY (the registry was never read yet). VERSION changes whenever the list
 * does. */
int gw_disc_lookup(gw_disc_reader_t *r, const char *key, const gw_disc_entry_t **entries, size_t *n,
                   uint64_t *version);

/* Registry NAME as last published: 1 up, 0 down, -1 unknown (not read yet,
 * or no such registry); EVENTS its changes counted. For /metrics. */
int gw_disc_registry_state(gw_disc_reader_t *r, const char *name, uint64_t *events);

#endif
