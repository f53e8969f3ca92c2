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

#include <uv.h>

#include "gw_config.h"
#include "gw_core.h"

typedef struct gw_lua_s gw_lua_t;
typedef struct gw_request_s gw_request_t;
typedef struct gw_log_s gw_log_t;

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

/* Bytes the VM holds now (its allocator's count; no collection runs). */
size_t gw_lua_memory_used(const gw_lua_t *lua);
/* The loaded plugins as a JSON array (admin API: name, priority, version,
 * phases, file); malloc'd, NULL on error. */
char *gw_lua_plugins_json(gw_lua_t *lua);

/* Checks a config's plugins in a throwaway VM: 0 when fine, else the
 * number of error lines printed to out (FILE *). */
int gw_lua_check(const gw_conf_t *conf, void *out);

typedef void (*gw_lua_done_cb)(gw_request_t *r, int status);

/*
 * A request's Lua and body-filter state: r->lua. Embedded in the request
 * rather than pointed to: request objects are pooled per worker, so its
 * 448 bytes (4% of a 10 KiB request object) are never allocated per
 * request, and a request on a route without plugins pays only the reset
 * of its first 160. A pointer set only on routes with plugins would save
 * that 4% of pool memory at the price of a second pool and a NULL test
 * before every phase check.
 *
 * gw_request.c uses what the plugins decided (phases, the exit response,
 * the header_filter copy of the response head, status_override). The
 * coroutine, ctx, the waits, the timer and the body_filter queue are
 * gw_lua.c's and gw_lua_api.c's alone. gw_lua.c reaches the request only
 * through what is set here (req, vm, log, request_id, route): it does not
 * include gw_request.h, and hands req on, opaque, to the plugins' API and
 * to the callbacks.
 */
typedef struct gw_lua_bf_ops_s gw_lua_bf_ops_t;

typedef struct gw_lua_req_s {
    /* -- reset for every request (gw_lua_req_reset) -- */
    unsigned phases; /* GW_PH_* the route has plugins for; 0: never enters the VM */
    int route;       /* the route's index + 1; 0 before routing or for none */
    int exit_status; /* a plugin ended the request with this status */
    const char *exit_ctype;
    int status_override; /* header_filter's gw.resp.set_status */
    int own_status;      /* a gateway-made response waiting for header_filter */
    size_t nrhdrs;       /* response headers copied into rhdrs for header_filter */
    unsigned in_error_phase : 1;
    unsigned in_header_filter : 1;

    /* gw_lua.c and gw_lua_api.c only (down to bf_ops) */
    unsigned waiting : 1; /* the coroutine waits for a timer or a response */
    unsigned http_done : 1;
    unsigned bf_busy : 1; /* a body_filter call waits */
    unsigned bf_end : 1;  /* the upstream body ended; the eof call is due */
    unsigned bf_eof_running : 1;
    int co_ref; /* the running coroutine, 0 when none */
    gw_lua_done_cb done;
    /* gw_lua_api's cleanup for the waits below, set when one starts: gw_lua
     * calls it without knowing them */
    void (*cancel_waits)(gw_request_t *r);
    void *limit;     /* a limiter's Redis answer being waited for */
    void *redis;     /* gw.redis: the wait, then its reply */
    void *http;      /* gw.http.request: the wait, then its result */
    void *http_req;  /* the gw_httpc_req_t being waited for */
    int limit_which; /* metrics: the limiter kind of that wait */
    int limit_id;
    int limit_flags;
    int64_t limit_res[6];          /* the finished answer, for the Lua side */
    const gw_lua_bf_ops_t *bf_ops; /* where body_filter's output goes */

    /* -- kept with the pooled request object (gw_lua_req_init/_free) -- */
    gw_buf_t exit_body;    /* emptied per request */
    gw_buf_t exit_headers; /* "Name: value\r\n" lines; emptied per request */
    gw_buf_t bf_in;        /* body bytes waiting for body_filter; emptied per request */
    gw_buf_t bf_chunk;     /* the chunk body_filter works on */
    gw_buf_t scratch;      /* body_filter output, gw.req.body's copy */
    gw_header_t *rhdrs;    /* GW_MAX_HEADERS slots, allocated on first use */
    int ctx_ref;           /* gw_lua.c: registry slot of ctx, kept across requests */
    int ctx_fresh;         /* the slot holds this request's (or an unused) table */
    uv_timer_t timer;      /* gw_lua_api.c: gw.sleep; its data is the request */
    gw_request_t *req;     /* the request this is embedded in */
    gw_lua_t *vm;          /* the worker's VM (NULL without plugins) */
    gw_log_t *log;
    const gw_str_t *request_id; /* the request's, for log lines */
} gw_lua_req_t;

/* A new pooled request object REQ: its VM, log and request id (which
 * stays at that address); REQ also goes with the timer. */
void gw_lua_req_init(gw_lua_req_t *lr, uv_loop_t *loop, gw_request_t *req, gw_lua_t *vm,
                     gw_log_t *log, const gw_str_t *request_id);

/* Before each request. Inline: every request pays it, plugins or not. */
static inline void
gw_lua_req_reset(gw_lua_req_t *lr)
{
    memset(lr, 0, offsetof(gw_lua_req_t, exit_body));
    lr->exit_body.len = 0;
    lr->exit_headers.len = 0;
    lr->bf_in.len = 0;
}

/* The slots header_filter works on (lr->rhdrs, GW_MAX_HEADERS of them),
 * allocated on first use and kept with the object. */
gw_header_t *gw_lua_resp_headers(gw_lua_req_t *lr);

/* The pooled object goes away: _close closes the timer (CLOSED follows
 * from the loop, with the timer's data), then _free frees the rest. */
void gw_lua_req_close(gw_lua_req_t *lr, uv_close_cb closed);
void gw_lua_req_free(gw_lua_req_t *lr);

/*
 * Runs the phases in `phases` (rewrite and/or access) for r in a new
 * coroutine. Returns GW_OK when they finished now, GW_AGAIN when the
 * coroutine waits (done fires later with GW_OK or GW_ERROR), GW_ERROR
 * when a plugin failed (already logged). After GW_OK, r->lua.exit_status
 * says whether a plugin ended the request.
 */
int gw_lua_run(gw_lua_req_t *lr, unsigned phases, gw_lua_done_cb done);

/* The error phase for an error the gateway makes, in a coroutine: plugins
 * may wait. Sets r->lua.in_error_phase: a request has one error phase. Same returns as gw_lua_run;
 * r->lua.exit_status > 0 after GW_OK (or in done) when a plugin replaced the response. */
int gw_lua_run_error(gw_lua_req_t *lr, const char *kind, int status, const char *message,
                     int upstream_status, gw_lua_done_cb done);

/* Runs PHASE (GW_PH_HEADER_FILTER or GW_PH_LOG) where it may not wait, to
 * its end at once; GW_OK, or GW_ERROR when a plugin failed. */
int gw_lua_run_sync(gw_lua_req_t *lr, unsigned phase);
/*
 * body_filter over a response body: gw_lua_body_filter queues LEN bytes
 * (EOF: the body ended, after them) and runs the plugins' calls one at a
 * time, in order, each in a coroutine that may wait. OPS->emit gets each
 * call's output (RC GW_ERROR: the call failed; LAST: the eof call's) and
 * returns 1 to go on, 0 when the client is behind, -1 when the request is
 * over. Returns 1 when nothing waits and the caller may read on; after a
 * call that waited, OPS->read_on says so.
 */
struct gw_lua_bf_ops_s {
    int (*emit)(gw_request_t *r, int rc, const char *data, size_t len, int last);
    void (*read_on)(gw_request_t *r);
};

int gw_lua_body_filter(gw_lua_req_t *lr, const char *data, size_t len, int eof,
                       const gw_lua_bf_ops_t *ops);
/* Does a plugin of r's route want the error phase for this upstream
 * status (wants_upstream_error)? */
int gw_lua_wants_upstream(gw_lua_req_t *lr, int status);

/* The client is gone while a phase waits: that phase is dropped with its
 * waits (it never resumes), so that the log phase can run, and wait, in a
 * coroutine of its own. */
void gw_lua_abandon(gw_lua_req_t *lr);

/* The request is going away: drop its coroutine and cancel what it
 * waits for. */
void gw_lua_request_end(gw_lua_req_t *lr);

/* Resumes r's coroutine after an operation it waited for (gw_lua_api.c). */
void gw_lua_resume(gw_lua_req_t *lr);

#endif
