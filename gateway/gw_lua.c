/* The LuaJIT VM of a worker, its plugin chains and request coroutines. */
#include <lauxlib.h>
#include <limits.h>
#include <lua.h>
#include <lualib.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "gw_http.h"
#include "gw_log.h"
#include "gw_lua.h"

/* The VM's allocator: LuaJIT's own, behind a byte count that refuses to
 * grow past gateway.lua_memory while Lua code runs under protection (a
 * refused allocation is a "not enough memory" error in that code; outside
 * protection LuaJIT would abort the process instead). */
typedef struct {
    lua_Alloc inner;
    void *inner_ud;
    size_t used;  /* bytes the VM holds */
    size_t limit; /* gateway.lua_memory */
    int enforce;  /* depth of lua_resume / lua_pcall calls from C */
    int refused;  /* an allocation was refused since the last check */
} gw_lua_mem_t;

struct gw_lua_s {
    lua_State *L;
    gw_lua_mem_t mem;
    size_t gc_at; /* a full collection before the next request from here */
    void *loop;
    int runner_ref;
    int run_ref;      /* runner.run, looked up once */
    unsigned *phases; /* [0]: requests that match no route; [1 + i]: route i */
    size_t nroutes;
    /* Coroutines that finished cleanly, kept for the next request:
     * creating one per request costs more than the plugins it runs. */
    int free_threads[256];
    size_t nfree_threads;
};

static void *
counted_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    gw_lua_mem_t *m = ud;
    if (nsize > osize && m->enforce &&
        (m->used >= m->limit || nsize - osize > m->limit - m->used)) {
        m->refused = 1;
        return NULL;
    }
    void *p = m->inner(m->inner_ud, ptr, osize, nsize);
    if (p != NULL || nsize == 0)
        m->used = m->used - osize + nsize;
    return p;
}

/* Wraps the allocator luaL_newstate chose (LuaJIT's fast one) rather than
 * bringing another: the count costs an add and a compare per call. */
static void
count_memory(gw_lua_t *lua, size_t limit)
{
    lua_State *L = lua->L;
    lua->mem.inner = lua_getallocf(L, &lua->mem.inner_ud);
    lua->mem.used = (size_t)lua_gc(L, LUA_GCCOUNT, 0) * 1024 + (size_t)lua_gc(L, LUA_GCCOUNTB, 0);
    lua->mem.limit = limit;
    lua->gc_at = limit / 2;
    lua_setallocf(L, counted_alloc, &lua->mem);
}

/* Around every entry into Lua code from a request. After an allocation
 * was refused, a full collection frees what the failed code left behind. */
static void
enter_lua(gw_lua_t *lua)
{
    lua->mem.enforce++;
}

static void
leave_lua(gw_lua_t *lua)
{
    if (--lua->mem.enforce == 0 && lua->mem.refused) {
        lua->mem.refused = 0;
        lua_gc(lua->L, LUA_GCCOLLECT, 0);
    }
}

static void
add_err(gw_conf_errors_t *errs, const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    char **l = realloc(errs->lines, (errs->n + 1) * sizeof(char *));
    if (l == NULL)
        abort();
    errs->lines = l;
    errs->lines[errs->n++] = strdup(line);
}

/* lua/ and plugins/ sit next to build/ in a checkout; GW_LUA_DIR and
 * GW_PLUGINS_DIR override. Falls back to the working directory. */
static void
find_dir(const char *leaf, const char *env, const char *probe, char *out, size_t outlen)
{
    const char *e = getenv(env);
    if (e && *e) {
        snprintf(out, outlen, "%s", e);
        return;
    }
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n > 0) {
        exe[n] = 0;
        for (int up = 0; up < 3; up++) {
            char *slash = strrchr(exe, '/');
            if (slash == NULL)
                break;
            *slash = 0;
            char p[PATH_MAX + 64];
            int k = snprintf(p, sizeof(p), "%s/%s/%s", exe, leaf, probe);
            if (k > 0 && (size_t)k < sizeof(p) && access(p, R_OK) == 0) {
                k = snprintf(out, outlen, "%s/%s", exe, leaf);
                if (k > 0 && (size_t)k < outlen)
                    return;
            }
        }
    }
    snprintf(out, outlen, "%s", leaf);
}

static void
push_plugins(lua_State *L, const gw_plugin_conf_t *p, size_t n)
{
    lua_createtable(L, (int)n, 0);
    for (size_t i = 0; i < n; i++) {
        lua_createtable(L, 0, 3);
        lua_pushstring(L, p[i].name);
        lua_setfield(L, -2, "name");
        lua_pushstring(L, p[i].json);
        lua_setfield(L, -2, "json");
        lua_pushstring(L, p[i].path);
        lua_setfield(L, -2, "path");
        lua_rawseti(L, -2, (int)i + 1);
    }
}

static void
push_spec(lua_State *L, const gw_conf_t *conf, int slot, int check_only)
{
    char dir[PATH_MAX];
    lua_createtable(L, 0, 8);
    lua_createtable(L, (int)conf->nplugin_paths + 1, 0);
    for (size_t i = 0; i < conf->nplugin_paths; i++) {
        lua_pushstring(L, conf->plugin_paths[i]);
        lua_rawseti(L, -2, (int)i + 1);
    }
    find_dir("plugins", "GW_PLUGINS_DIR", "key-auth.lua", dir, sizeof(dir));
    lua_pushstring(L, dir); /* the built-in plugins come last */
    lua_rawseti(L, -2, (int)conf->nplugin_paths + 1);
    lua_setfield(L, -2, "plugin_paths");
    push_plugins(L, conf->global_plugins, conf->nglobal_plugins);
    lua_setfield(L, -2, "global");
    lua_createtable(L, (int)conf->nroutes, 0);
    for (size_t r = 0; r < conf->nroutes; r++) {
        push_plugins(L, conf->routes[r].plugins, conf->routes[r].nplugins);
        lua_pushstring(L, conf->routes[r].name);
        lua_setfield(L, -2, "name");
        lua_rawseti(L, -2, (int)r + 1);
    }
    lua_setfield(L, -2, "routes");
    lua_pushstring(L, conf->consumers_json ? conf->consumers_json : "[]");
    lua_setfield(L, -2, "consumers");
    lua_pushinteger(L, slot);
    lua_setfield(L, -2, "worker");
    lua_pushboolean(L, check_only);
    lua_setfield(L, -2, "check_only");
}

gw_lua_t *
gw_lua_new(const gw_conf_t *conf, void *loop, int slot, gw_conf_errors_t *errs)
{
    char dir[PATH_MAX], path[PATH_MAX * 2];
    gw_lua_t *lua = calloc(1, sizeof(*lua));
    if (lua == NULL)
        return NULL;
    lua->loop = loop;
    lua->nroutes = conf->nroutes;
    lua->phases = calloc(conf->nroutes + 1, sizeof(unsigned));
    lua->L = luaL_newstate();
    if (lua->phases == NULL || lua->L == NULL) {
        add_err(errs, "lua: out of memory");
        gw_lua_free(lua);
        return NULL;
    }
    count_memory(lua, conf->lua_memory);
    lua_State *L = lua->L;
    luaL_openlibs(L);
    find_dir("lua", "GW_LUA_DIR", "gw/runner.lua", dir, sizeof(dir));
    if (snprintf(path, sizeof(path), "%s/?.lua;;", dir) >= (int)sizeof(path))
        path[0] = 0;
    lua_getglobal(L, "package");
    lua_pushstring(L, path);
    lua_setfield(L, -2, "path");
    lua_pop(L, 1);

    lua_getglobal(L, "require");
    lua_pushliteral(L, "gw.runner");
    if (lua_pcall(L, 1, 1, 0) != 0) {
        add_err(errs, "lua runtime: %s", lua_tostring(L, -1));
        gw_lua_free(lua);
        return NULL;
    }
    lua_pushvalue(L, -1);
    lua->runner_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_getfield(L, -1, "run");
    lua->run_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_getfield(L, -1, "init");
    push_spec(L, conf, slot, loop == NULL);
    if (lua_pcall(L, 1, 2, 0) != 0) {
        add_err(errs, "lua runtime: %s", lua_tostring(L, -1));
        gw_lua_free(lua);
        return NULL;
    }
    /* init returns true, phases   or   nil, { "path: message", ... } */
    if (!lua_toboolean(L, -2)) {
        size_t n = lua_objlen(L, -1);
        for (size_t i = 1; i <= n; i++) {
            lua_rawgeti(L, -1, (int)i);
            add_err(errs, "%s", lua_tostring(L, -1));
            lua_pop(L, 1);
        }
        gw_lua_free(lua);
        return NULL;
    }
    for (size_t r = 0; r <= conf->nroutes; r++) {
        lua_rawgeti(L, -1, (int)r);
        lua->phases[r] = (unsigned)lua_tointeger(L, -1);
        lua_pop(L, 1);
    }
    lua_settop(L, 0);
    return lua;
}

void
gw_lua_free(gw_lua_t *lua)
{
    if (lua == NULL)
        return;
    /* LuaJIT unmaps the VM's arena at lua_close only when its own
     * allocator is in place: with counted_alloc there, every closed VM
     * would leave its arena mapped (the master's check VM, each reload). */
    if (lua->L && lua->mem.inner != NULL)
        lua_setallocf(lua->L, lua->mem.inner, lua->mem.inner_ud);
    if (lua->L)
        lua_close(lua->L);
    free(lua->phases);
    free(lua);
}

size_t
gw_lua_memory_used(const gw_lua_t *lua)
{
    return lua != NULL ? lua->mem.used : 0;
}

unsigned
gw_lua_route_phases(const gw_lua_t *lua, size_t route_index)
{
    if (lua == NULL)
        return 0;
    if (route_index == SIZE_MAX)
        return lua->phases[0];
    return route_index < lua->nroutes ? lua->phases[route_index + 1] : 0;
}

int
gw_lua_check(const gw_conf_t *conf, void *out)
{
    gw_conf_errors_t errs = {0};
    if (!conf->has_plugins)
        return 0;
    gw_lua_t *lua = gw_lua_new(conf, NULL, -1, &errs);
    gw_lua_free(lua);
    for (size_t i = 0; i < errs.n; i++)
        fprintf(out, "%s\n", errs.lines[i]);
    int n = (int)errs.n;
    gw_conf_errors_free(&errs);
    return n;
}

/* ---- requests ---- */

void
gw_lua_req_init(gw_lua_req_t *lr, uv_loop_t *loop, gw_request_t *req, gw_lua_t *vm, gw_log_t *log,
                const gw_str_t *request_id)
{
    uv_timer_init(loop, &lr->timer);
    lr->timer.data = req;
    lr->req = req;
    lr->vm = vm;
    lr->log = log;
    lr->request_id = request_id;
}

void
gw_lua_req_close(gw_lua_req_t *lr, uv_close_cb closed)
{
    uv_close((uv_handle_t *)&lr->timer, closed);
}

gw_header_t *
gw_lua_resp_headers(gw_lua_req_t *lr)
{
    if (lr->rhdrs == NULL) {
        lr->rhdrs = malloc(GW_MAX_HEADERS * sizeof(gw_header_t));
        if (lr->rhdrs == NULL)
            abort();
    }
    return lr->rhdrs;
}

void
gw_lua_req_free(gw_lua_req_t *lr)
{
    gw_buf_free(&lr->exit_body);
    gw_buf_free(&lr->exit_headers);
    gw_buf_free(&lr->scratch);
    gw_buf_free(&lr->bf_in);
    gw_buf_free(&lr->bf_chunk);
    free(lr->rhdrs);
    lr->rhdrs = NULL;
}

static void
push_runner_fn(lua_State *L, gw_lua_t *lua, const char *name)
{
    if (strcmp(name, "run") == 0 && lua->run_ref) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, lua->run_ref); /* the per-request one */
        return;
    }
    lua_rawgeti(L, LUA_REGISTRYINDEX, lua->runner_ref);
    lua_getfield(L, -1, name);
    lua_remove(L, -2);
}

char *
gw_lua_plugins_json(gw_lua_t *lua)
{
    lua_State *L = lua->L;
    char *out = NULL;
    push_runner_fn(L, lua, "plugins_json");
    if (lua_pcall(L, 0, 1, 0) == 0 && lua_type(L, -1) == LUA_TSTRING) {
        size_t n;
        const char *s = lua_tolstring(L, -1, &n);
        if ((out = malloc(n + 1)) != NULL) {
            memcpy(out, s, n);
            out[n] = '\0';
        }
    }
    lua_pop(L, 1);
    return out;
}

/* The ctx table's registry slot stays with the (pooled) request object;
 * a request gets a fresh table in it the first time it needs one. */
static void
push_ctx(lua_State *L, gw_lua_req_t *lr)
{
    if (lr->ctx_ref == 0) {
        lua_newtable(L);
        lr->ctx_ref = luaL_ref(L, LUA_REGISTRYINDEX);
        lr->ctx_fresh = 1;
    }
    if (!lr->ctx_fresh) {
        lua_newtable(L);
        lua_rawseti(L, LUA_REGISTRYINDEX, lr->ctx_ref);
        lr->ctx_fresh = 1;
    }
    lua_rawgeti(L, LUA_REGISTRYINDEX, lr->ctx_ref);
}

static void
drop_co(gw_lua_req_t *lr)
{
    if (lr->co_ref) {
        luaL_unref(lr->vm->L, LUA_REGISTRYINDEX, lr->co_ref);
        lr->co_ref = 0;
    }
}

/* A coroutine that returned normally can run another function. */
static void
recycle_co(gw_lua_req_t *lr, lua_State *co)
{
    gw_lua_t *lua = lr->vm;
    if (lua->nfree_threads == GW_ARRAY_LEN(lua->free_threads)) {
        drop_co(lr);
        return;
    }
    lua_settop(co, 0);
    lua->free_threads[lua->nfree_threads++] = lr->co_ref;
    lr->co_ref = 0;
}

static int
resume(gw_lua_req_t *lr, lua_State *co, int nargs)
{
    enter_lua(lr->vm);
    int st = lua_resume(co, nargs);
    leave_lua(lr->vm);
    if (st == LUA_YIELD) {
        lua_settop(co, 0);
        return GW_AGAIN;
    }
    if (st != 0) {
        gw_log(lr->log, GW_LOG_ERROR, "lua: %s (request %.*s)",
               lua_tostring(co, -1) ? lua_tostring(co, -1) : "error", (int)lr->request_id->len,
               lr->request_id->data);
        drop_co(lr); /* its state is unknown: never reuse it */
        return GW_ERROR;
    }
    /* false: a plugin raised an error, which the runner caught and logged */
    int rc = lua_toboolean(co, -1) ? GW_OK : GW_ERROR;
    recycle_co(lr, co);
    return rc;
}

/* Allocations past gateway.lua_memory fail as they happen (counted_alloc);
 * this keeps garbage from taking the room: past gc_at a full collection
 * runs first, and when even then less than a sixteenth of the limit is
 * free, requests that need Lua get 500 without entering it. */
static int
over_watermark(gw_lua_req_t *lr, gw_lua_t *lua)
{
    gw_lua_mem_t *m = &lua->mem;
    if (m->used < lua->gc_at)
        return 0;
    lua_gc(lua->L, LUA_GCCOLLECT, 0);
    size_t full = m->limit - m->limit / 16;
    size_t room = m->used < m->limit ? m->limit - m->used : 0;
    lua->gc_at = m->used + room / 2 < full ? m->used + room / 2 : full;
    if (m->used < full)
        return 0;
    gw_log(lr->log, GW_LOG_ERROR,
           "lua memory near gateway.lua_memory (%zu of %zu MiB after a full collection): "
           "request %.*s refused",
           m->used >> 20, m->limit >> 20, (int)lr->request_id->len, lr->request_id->data);
    return 1;
}

/* A coroutine for r: a recycled one when there is one. */
static lua_State *
acquire_co(gw_lua_req_t *lr, gw_lua_done_cb done)
{
    gw_lua_t *lua = lr->vm;
    lua_State *L = lua->L, *co;
    if (lua->nfree_threads) {
        lr->co_ref = lua->free_threads[--lua->nfree_threads];
        lua_rawgeti(L, LUA_REGISTRYINDEX, lr->co_ref);
        co = lua_tothread(L, -1);
        lua_pop(L, 1);
    } else {
        co = lua_newthread(L);
        lr->co_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    lr->done = done;
    return co;
}

int
gw_lua_run_error(gw_lua_req_t *lr, const char *kind, int status, const char *message,
                 int upstream_status, gw_lua_done_cb done)
{
    lr->in_error_phase = 1; /* one per request: an error it leads to is final */
    lr->exit_status = 0;
    gw_lua_t *lua = lr->vm;
    lua_State *L = lua->L;
    lua_State *co = acquire_co(lr, done);
    push_runner_fn(L, lua, "run_error_co");
    lua_pushnumber(L, (lua_Number)(uintptr_t)lr->req);
    lua_pushinteger(L, lr->route);
    push_ctx(L, lr);
    lua_pushstring(L, kind);
    lua_pushinteger(L, status);
    lua_pushstring(L, message);
    if (upstream_status)
        lua_pushinteger(L, upstream_status);
    else
        lua_pushnil(L);
    lua_xmove(L, co, 8);
    return resume(lr, co, 7);
}

/* body_filter for one chunk, in a coroutine (it may wait); the output is
 * in lr->scratch after GW_OK or in done. */
static int
run_body_filter(gw_lua_req_t *lr, const char *chunk, size_t len, int eof)
{
    gw_lua_t *lua = lr->vm;
    lua_State *L = lua->L;
    lua_State *co = acquire_co(lr, NULL); /* a wait ends in on_bf_done (bf_busy) */
    push_runner_fn(L, lua, "body_filter_co");
    lua_pushnumber(L, (lua_Number)(uintptr_t)lr->req);
    lua_pushinteger(L, lr->route);
    push_ctx(L, lr);
    lua_pushlstring(L, chunk ? chunk : "", len);
    lua_pushboolean(L, eof);
    lua_xmove(L, co, 6);
    return resume(lr, co, 5);
}

/*
 * body_filter, one call at a time, in order: bytes that arrive while a
 * call waits queue in bf_in and the caller stops reading the upstream.
 * Each call's output is emitted before the next call starts; the eof call
 * ends the response.
 */
static int bf_step(gw_lua_req_t *lr);

static int
bf_emit(gw_lua_req_t *lr, int rc)
{
    return lr->bf_ops->emit(lr->req, rc, lr->scratch.data, lr->scratch.len, lr->bf_eof_running);
}

static void
on_bf_done(gw_lua_req_t *lr, int rc)
{
    lr->bf_busy = 0;
    int w = bf_emit(lr, rc);
    if (w < 0)
        return;
    if (bf_step(lr) && w == 1 && !lr->bf_end)
        lr->bf_ops->read_on(lr->req);
}

/* 1 when nothing waits and the last emit said go on. */
static int
bf_step(gw_lua_req_t *lr)
{
    int w = 1;
    while (!lr->bf_busy) {
        int eof = 0;
        if (lr->bf_in.len == 0) {
            if (!lr->bf_end)
                return w;
            eof = 1;
        }
        gw_buf_t t = lr->bf_chunk;
        lr->bf_chunk = lr->bf_in;
        lr->bf_in = t;
        lr->bf_in.len = 0;
        lr->bf_eof_running = eof;
        int rc = run_body_filter(lr, lr->bf_chunk.data, lr->bf_chunk.len, eof);
        if (rc == GW_AGAIN) {
            lr->bf_busy = 1;
            return 0;
        }
        w = bf_emit(lr, rc);
        if (w < 0)
            return 0;
    }
    return 0;
}

int
gw_lua_body_filter(gw_lua_req_t *lr, const char *data, size_t len, int eof,
                   const gw_lua_bf_ops_t *ops)
{
    lr->bf_ops = ops;
    gw_buf_append(&lr->bf_in, data, len);
    if (eof)
        lr->bf_end = 1;
    return bf_step(lr);
}

int
gw_lua_run(gw_lua_req_t *lr, unsigned phases, gw_lua_done_cb done)
{
    gw_lua_t *lua = lr->vm;
    lua_State *L = lua->L;
    if (over_watermark(lr, lua))
        return GW_ERROR;
    lua_State *co = acquire_co(lr, done);
    push_runner_fn(L, lua, "run");
    /* a number, not a lightuserdata: the JIT passes numbers to FFI calls
     * (uintptr_t in lua/gw/base.lua); user-space addresses fit in 53 bits */
    lua_pushnumber(L, (lua_Number)(uintptr_t)lr->req);
    lua_pushinteger(L, lr->route);
    lua_pushinteger(L, (lua_Integer)phases);
    push_ctx(L, lr);
    lua_xmove(L, co, 5);
    return resume(lr, co, 4);
}

void
gw_lua_resume(gw_lua_req_t *lr)
{
    if (lr->co_ref == 0)
        return;
    lua_State *L = lr->vm->L;
    lua_rawgeti(L, LUA_REGISTRYINDEX, lr->co_ref);
    lua_State *co = lua_tothread(L, -1);
    lua_pop(L, 1);
    lr->waiting = 0;
    int rc = resume(lr, co, 0);
    if (rc == GW_AGAIN)
        return;
    if (lr->bf_busy)
        on_bf_done(lr, rc);
    else if (lr->done)
        lr->done(lr->req, rc);
}

/* Calls runner[name](r, route, ctx, ...) on the main state: a plugin that
 * tries to wait there gets an error from the runtime, not a hang. */
static int
call_sync(gw_lua_req_t *lr, const char *name, int nargs_extra, int nres)
{
    lua_State *L = lr->vm->L;
    int base = lua_gettop(L) - nargs_extra;
    push_runner_fn(L, lr->vm, name);
    lua_pushnumber(L, (lua_Number)(uintptr_t)lr->req);
    lua_pushinteger(L, lr->route);
    push_ctx(L, lr);
    for (int i = 0; i < nargs_extra; i++)
        lua_pushvalue(L, base + 1 + i);
    enter_lua(lr->vm);
    int st = lua_pcall(L, 3 + nargs_extra, nres, 0);
    leave_lua(lr->vm);
    if (st != 0) {
        gw_log(lr->log, GW_LOG_ERROR, "lua: %s", lua_tostring(L, -1));
        lua_settop(L, base);
        return GW_ERROR;
    }
    return GW_OK;
}

static const char *
phase_name(unsigned phase)
{
    switch (phase) {
    case GW_PH_HEADER_FILTER:
        return "header_filter";
    case GW_PH_LOG:
        return "log";
    default:
        return "unknown";
    }
}

int
gw_lua_run_sync(gw_lua_req_t *lr, unsigned phase)
{
    lua_State *L = lr->vm->L;
    int top = lua_gettop(L);
    lua_pushstring(L, phase_name(phase));
    int rc = call_sync(lr, "run_sync", 1, 1);
    if (rc == GW_OK && !lua_toboolean(L, -1))
        rc = GW_ERROR;
    lua_settop(L, top);
    return rc;
}

int
gw_lua_wants_upstream(gw_lua_req_t *lr, int status)
{
    lua_State *L = lr->vm->L;
    int top = lua_gettop(L);
    lua_pushinteger(L, status);
    int rc = call_sync(lr, "wants_upstream", 1, 1);
    int wants = rc == GW_OK && lua_toboolean(L, -1);
    lua_settop(L, top);
    return wants;
}

/* What the coroutine waits for (gw_lua_api.c's waits) is cancelled through
 * the hook the wait left: this module does not include gw_lua_api.h, whose
 * FFI functions sit above the request. */
static void
cancel_waits(gw_lua_req_t *lr)
{
    if (lr->cancel_waits)
        lr->cancel_waits(lr->req);
}

void
gw_lua_abandon(gw_lua_req_t *lr)
{
    if (lr->vm == NULL || lr->co_ref == 0)
        return;
    uv_timer_stop(&lr->timer);
    cancel_waits(lr);
    drop_co(lr); /* suspended: never back to the pool */
    lr->waiting = 0;
    lr->done = NULL;
}

void
gw_lua_request_end(gw_lua_req_t *lr)
{
    gw_lua_t *lua = lr->vm;
    if (lua == NULL)
        return;
    uv_timer_stop(&lr->timer);
    cancel_waits(lr);
    drop_co(lr);
    if (lr->ctx_ref) {
        /* a table no plugin wrote to serves the next request as it is;
         * another is dropped with its contents at the next push_ctx */
        lua_State *L = lua->L;
        lua_rawgeti(L, LUA_REGISTRYINDEX, lr->ctx_ref);
        lua_pushnil(L);
        if (lua_next(L, -2) != 0) {
            lr->ctx_fresh = 0;
            lua_pop(L, 2);
        }
        lua_pop(L, 1);
    }
    lr->phases = 0;
    lr->waiting = 0;
}
