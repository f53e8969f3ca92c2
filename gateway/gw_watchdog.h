/*
 * The worker watchdog: one small record per worker process in a segment
 * the master maps before it forks. The worker bumps its record's beat on
 * every turn of its event loop (and a timer makes the loop turn while it
 * is idle) and writes which route and plugin it is running before each
 * plugin call; the master reads the records and replaces a worker whose
 * beat stood still for gateway.watchdog.
 *
 * Records hold numbers only (no pointers, no strings), one writer each
 * (the worker), relaxed atomics: the master reads them without a lock.
 */
#ifndef GW_WATCHDOG_H
#define GW_WATCHDOG_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "gw_core.h"

typedef struct gw_watchdog_s gw_watchdog_t;
typedef struct gw_watchdog_rec_s gw_watchdog_rec_t;

/** Maps NSLOTS records, zeroed. NULL when the mapping fails. */
gw_watchdog_t *gw_watchdog_new(size_t nslots);
void gw_watchdog_free(gw_watchdog_t *wd);

/** Record I (0 .. nslots-1), zeroed for a new worker; NULL out of range. */
gw_watchdog_rec_t *gw_watchdog_take(gw_watchdog_t *wd, size_t i);

/** Record I as it is, for reading; NULL out of range. */
const gw_watchdog_rec_t *gw_watchdog_record(const gw_watchdog_t *wd, size_t i);

/** The worker's side: one loop turn; also forgets the running plugin (a
 * loop that turns is not inside one). */
void gw_watchdog_beat(gw_watchdog_rec_t *wt);

/** The worker's side: set-up is done, it accepts connections. */
void gw_watchdog_set_ready(gw_watchdog_rec_t *wt);

/** The master's side: has the worker said it is ready? */
int gw_watchdog_ready(const gw_watchdog_rec_t *wt);

/** The master's side: the beat count so far. */
uint64_t gw_watchdog_beats(const gw_watchdog_rec_t *wt);

/** The master's side: 1 + route index, 1 + the plugin's position (globals
 * first, then the route's own, as written in the config) of the plugin
 * call the worker entered last in this loop turn; 0 when none. */
void gw_watchdog_running(const gw_watchdog_rec_t *wt, int *route, int *plugin);

/** The worker's side, before each plugin call: ROUTE 1 + the route's
 * index (0: none), PLUGIN as for gw_watchdog_running. */
void gw_watchdog_enter(gw_watchdog_rec_t *wt, int route, int plugin);

#endif
