/*
 * Redis Cluster, the logic without the I/O: which node serves a key, what
 * a redirect says, and when the slot map may be asked for again.
 *
 * Keys and slots. A key's slot is CRC16(key) mod 16384, CRC16 being the
 * XMODEM variant (polynomial 0x1021, initial value 0, no reflection) the
 * cluster specification uses. When the key holds a "{", a "}" after it,
 * and at least one byte between the first "{" and the first "}" that
 * follows, only those bytes are hashed (the hash tag): "{user1}.tokens"
 * and "{user1}.ts" land on one slot, "{a}{b}" hashes "a", while "{}x",
 * "x{" and "x}{" hash the whole key.
 *
 * The slot map gives each of the 16384 slots the address of the master
 * serving it, or none (a hole: the slot is not served, or its master's
 * address is unknown). It is built from a CLUSTER SLOTS reply, masters
 * only (replicas are not read here); a reply with a wrong type anywhere,
 * a range out of bounds or given twice, a bad address, more than
 * GW_CLUSTER_MAX_NODES masters, or no slot at all is refused whole with a
 * reason, and the caller keeps its last good map. A MOVED patches one slot
 * in place until the next full refresh.
 *
 * Redirects. "MOVED <slot> <host>:<port>" says the slot lives elsewhere
 * for good; "ASK <slot> <host>:<port>" says this one command goes there,
 * preceded by ASKING, and the map stays as it is. An empty host (Redis 7
 * with an unknown preferred endpoint) means the host of the node asked.
 * The address is split at its last colon, so both "::1:7000" (as Redis
 * writes IPv6) and "[::1]:7000" are read.
 *
 * Refreshes. Every reason to ask for a new map (a MOVED, a node error, the
 * periodic timer) goes through one gw_cluster_refresh_t per map: at most
 * one refresh is in flight, two starts are at least min_gap_ms apart, and
 * a reason that comes while one is in flight or too early leaves a pending
 * flag that the caller turns into a timer (gw_cluster_refresh_next). A
 * failover that makes every in-flight command come back MOVED thus costs
 * one CLUSTER SLOTS, not one per command.
 *
 * Pure logic: nothing here does I/O, reads a clock (the caller passes a
 * monotonic time in milliseconds) or keeps global state. A map belongs to
 * one thread.
 */
#ifndef GW_CLUSTER_H
#define GW_CLUSTER_H

#include <hiredis/hiredis.h>
#include <stddef.h>
#include <stdint.h>

#define GW_CLUSTER_NSLOTS 16384
#define GW_CLUSTER_MAX_NODES 1024 /* masters in one map; Redis advises at most 1000 */
#define GW_CLUSTER_HOST_MAX 255

typedef struct gw_cluster_map_s gw_cluster_map_t;

typedef struct {
    char host[GW_CLUSTER_HOST_MAX + 1]; /* an IP or a name, without brackets */
    int port;
} gw_cluster_addr_t;

/* What an error reply from a cluster node asks the client to do. */
typedef enum {
    GW_CLUSTER_EOTHER = 0,   /* not the cluster's business: the caller's error */
    GW_CLUSTER_EMOVED,       /* the slot moved: patch, resend there, refresh */
    GW_CLUSTER_EASK,         /* resend this command there after ASKING */
    GW_CLUSTER_ETRYAGAIN,    /* a multi-key command during a migration: retry shortly */
    GW_CLUSTER_ECLUSTERDOWN, /* the cluster or this slot is not served: retry shortly */
    GW_CLUSTER_ENOSCRIPT     /* that node lacks the script: EVAL there */
} gw_cluster_err_t;

/* The slot of KEY[0..LEN), hash tag applied. */
unsigned gw_cluster_keyslot(const char *key, size_t len);

/* CRC16/XMODEM of BUF[0..LEN); "123456789" gives 0x31c3. */
uint16_t gw_cluster_crc16(const char *buf, size_t len);

/* The kind of an error reply's text, with or without its leading "-". */
gw_cluster_err_t gw_cluster_err_kind(const char *msg, size_t len);

/*
 * Reads a MOVED or ASK error (with or without its leading "-") into SLOT
 * and TO; ASKED is the node that answered (for an empty host). Returns the
 * kind (GW_CLUSTER_EMOVED or GW_CLUSTER_EASK), or GW_CLUSTER_EOTHER when
 * MSG is not a well-formed redirect (then SLOT and TO are untouched).
 */
gw_cluster_err_t gw_cluster_redirect_parse(const char *msg, size_t len,
                                           const gw_cluster_addr_t *asked, unsigned *slot,
                                           gw_cluster_addr_t *to);

/* "host:port", "[v6]:port" or "v6:port" (last colon); an empty host takes
 * ASKED's, or is an error when ASKED is NULL. GW_OK or GW_ERROR. */
int gw_cluster_addr_parse(const char *s, size_t len, const gw_cluster_addr_t *asked,
                          gw_cluster_addr_t *out);

/* 1 when A and B name the same host and port (as written). */
int gw_cluster_addr_eq(const gw_cluster_addr_t *a, const gw_cluster_addr_t *b);

/* An empty map: every slot a hole. NULL on out of memory. */
gw_cluster_map_t *gw_cluster_map_new(void);

void gw_cluster_map_free(gw_cluster_map_t *m);

/*
 * A new map from REPLY, the answer of ASKED to CLUSTER SLOTS. NULL when
 * the reply is refused or memory runs out; WHY[0..WHYLEN) then says which.
 */
gw_cluster_map_t *gw_cluster_map_from_slots(const redisReply *reply, const gw_cluster_addr_t *asked,
                                            char *why, size_t whylen);

/* The index of the master serving SLOT, or -1 for a hole or a slot out of
 * range. Indexes are valid for this map only. */
int gw_cluster_map_owner(const gw_cluster_map_t *m, unsigned slot);

/* The address of master I (0 <= I < gw_cluster_map_nnodes()). */
const gw_cluster_addr_t *gw_cluster_map_node(const gw_cluster_map_t *m, size_t i);

size_t gw_cluster_map_nnodes(const gw_cluster_map_t *m);

/* Slots with a master. */
size_t gw_cluster_map_covered(const gw_cluster_map_t *m);

/* MOVED: SLOT is now served by TO, a master that may be new to the map.
 * GW_ERROR (map unchanged) for a slot out of range, out of memory or one
 * master too many. A master left without slots stays listed until the
 * next full map. */
int gw_cluster_map_move(gw_cluster_map_t *m, unsigned slot, const gw_cluster_addr_t *to);

/* The refresh rule; plain data, the caller embeds it. */
typedef struct {
    uint64_t min_gap_ms; /* least time between two starts */
    uint64_t last_start_ms;
    int started;   /* some refresh has started */
    int in_flight; /* started and not done */
    int pending;   /* a reason came that no refresh has covered yet */
} gw_cluster_refresh_t;

void gw_cluster_refresh_init(gw_cluster_refresh_t *r, uint64_t min_gap_ms);

/* A reason to refresh came (MOVED, a node error, the periodic timer). */
void gw_cluster_refresh_want(gw_cluster_refresh_t *r);

/* 1 when a refresh must start now (it is then in flight and no longer
 * pending); 0 when none is pending, one is in flight or it is too early. */
int gw_cluster_refresh_take(gw_cluster_refresh_t *r, uint64_t now_ms);

/* The refresh in flight ended, well or not. */
void gw_cluster_refresh_done(gw_cluster_refresh_t *r);

/* Milliseconds from NOW_MS until gw_cluster_refresh_take() would say 1 (0:
 * now), or UINT64_MAX when nothing is pending or one is in flight (the
 * caller then waits for gw_cluster_refresh_done). */
uint64_t gw_cluster_refresh_next(const gw_cluster_refresh_t *r, uint64_t now_ms);

#endif
