/*
 * The LuaJIT runtime: one VM per worker, plugins loaded and their configs
 * checked at start (and by the master at -t), per-route plugin chains
 * compiled once, and one coroutine per request phase group. Routes whose
 * chains are empty never enter the VM.
 *
 * Synchronous accessors are FFI leaf functions (gw_lua_api.c); operations
 * that wait (gw.sleep, gw.http.request) start in C, return GW_AGAIN, and
 * the Lua wrapper yields; the completion callback resumes the coroutine.
 */
#ifndef GW_LUA_H
#define GW_LUA_H

#include "gw_config.h"
#include "gw_core.h"

typedef struct gw_lua_s gw_lua_t;
typedef struct gw_request_s gw_request_t;

enum {
    GW_PH_REWRITE = 1 << 0,
    GW_PH_ACCESS = 1 << 1,
    GW_PH_HEADER_FILTER = 1 << 2,
    GW_PH_BODY_FILTER = 1 << 3,
    GW_PH_LOG = 1 << 4,
    GW_PH_ERROR = 1 << 5,
};

/*
 * Loads the runtime and every plugin the config names, checks each
 * plugin config against its schema and builds the route chains. loop may
 * be NULL (the master's -t check: nothing runs). On failure returns NULL
 * and appends one line per problem to errs.
 */
gw_lua_t *gw_lua_new(const gw_conf_t *conf, void *loop, int slot, gw_conf_errors_t *errs);
void gw_lua_free(gw_lua_t *lua);

/* The phases route_index has plugins for (0: the route never enters Lua). */
unsigned gw_lua_route_phases(const gw_lua_t *lua, size_t route_index);

/* Checks a config's plugins in a throwaway VM: 0 when fine, else the
 * number of error lines printed to out (FILE *). */
int gw_lua_check(const gw_conf_t *conf, void *out);

typedef void (*gw_lua_done_cb)(gw_request_t *r, int status);

/*
 * Runs the phases in `phases` (rewrite and/or access) for r in a new
 * coroutine. Returns GW_OK when they finished now, GW_AGAIN when the
 * coroutine waits (done fires later with GW_OK or GW_ERROR), GW_ERROR
 * when a plugin failed (already logged). After GW_OK, r->lua_exit_status
 * says whether a plugin ended the request.
 */
int gw_lua_run(gw_request_t *r, unsigned phases, gw_lua_done_cb done);

/* The error phase for an error the gateway makes, in a coroutine: plugins
 * may wait. Same returns as gw_lua_run; r->lua_exit_status > 0 after
 * GW_OK (or in done) when a plugin replaced the response. */
int gw_lua_run_error(gw_request_t *r, const char *kind, int status, const char *message,
                     int upstream_status, gw_lua_done_cb done);

/* Runs PHASE (GW_PH_HEADER_FILTER or GW_PH_LOG) where it may not wait, to
 * its end at once; GW_OK, or GW_ERROR when a plugin failed. */
int gw_lua_run_sync(gw_request_t *r, unsigned phase);
/* body_filter for one chunk, in a coroutine (it may wait); the output is
 * in r->lua_scratch after GW_OK or in done. */
int gw_lua_run_body_filter(gw_request_t *r, const char *chunk, size_t len, int eof,
                           gw_lua_done_cb done);
/* Does a plugin of r's route want the error phase for this upstream
 * status (wants_upstream_error)? */
int gw_lua_wants_upstream(gw_request_t *r, int status);

/* The client is gone while a phase waits: that phase is dropped with its
 * waits (it never resumes), so that the log phase can run, and wait, in a
 * coroutine of its own. */
void gw_lua_abandon(gw_request_t *r);

/* The request is going away: drop its coroutine and cancel what it
 * waits for. */
void gw_lua_request_end(gw_request_t *r);

/* Resumes r's coroutine after an operation it waited for (gw_lua_api.c). */
void gw_lua_resume(gw_request_t *r);

#endif
