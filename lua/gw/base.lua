-- The FFI declarations of the gw_ffi_* functions (gateway/gw_lua_api.h is
-- the source: keep the two in step), return codes and scratch buffers.
local ffi = require "ffi"

ffi.cdef [[
int gw_ffi_req_get(uintptr_t r, int what, const char **p, size_t *n);
int gw_ffi_req_nheaders(uintptr_t r);
int gw_ffi_req_header_at(uintptr_t r, int i, const char **name, size_t *nlen,
                         const char **value, size_t *vlen);
int gw_ffi_req_header(uintptr_t r, const char *name, size_t nlen, const char **value,
                      size_t *vlen);
int gw_ffi_req_set_header(uintptr_t r, const char *name, size_t nlen, const char *value,
                          size_t vlen, int clear);
int gw_ffi_req_set_path(uintptr_t r, const char *p, size_t n);
int gw_ffi_req_param(uintptr_t r, const char *name, size_t nlen, const char **value,
                     size_t *vlen);
int gw_ffi_req_nparams(uintptr_t r);
int gw_ffi_req_param_at(uintptr_t r, int i, const char **name, size_t *nlen,
                        const char **value, size_t *vlen);
double gw_ffi_req_elapsed(uintptr_t r);
int gw_ffi_req_body(uintptr_t r, const char **p, size_t *n);
int gw_ffi_var_get(uintptr_t r, const char *name, size_t nlen, const char **value, size_t *vlen);
int gw_ffi_var_set(uintptr_t r, const char *name, size_t nlen, const char *value, size_t vlen);
int gw_ffi_exit(uintptr_t r, int status, const char *body, size_t blen, const char *ctype);
int gw_ffi_exit_header(uintptr_t r, const char *name, size_t nlen, const char *value, size_t vlen);
int gw_ffi_exit_error(uintptr_t r, int status, const char *msg, size_t mlen);
int gw_ffi_resp_status(uintptr_t r);
int gw_ffi_resp_set_status(uintptr_t r, int status);
int gw_ffi_resp_header(uintptr_t r, const char *name, size_t nlen, const char **value,
                       size_t *vlen);
int gw_ffi_resp_set_header(uintptr_t r, const char *name, size_t nlen, const char *value,
                           size_t vlen, int clear);
void gw_ffi_log(uintptr_t r, int level, const char *msg, size_t len);
void gw_ffi_watch(uintptr_t r, int plugin);
double gw_ffi_now(void);
int gw_ffi_sleep(uintptr_t r, double seconds);
int gw_ffi_http(uintptr_t r, const char *method, const char *url, const char *headers,
                size_t hlen, const char *body, size_t blen, double timeout, const char **err);
int gw_ffi_http_result(uintptr_t r, int *status, const char **headers, size_t *hlen,
                       const char **body, size_t *blen, const char **err);
void gw_ffi_http_release(uintptr_t r);
void gw_ffi_body_out(uintptr_t r, const char *p, size_t n);
int gw_ffi_limiter_new(uintptr_t r, int kind, double a, double b, int align, const char *prefix,
                       size_t plen, int policy, int on_err);
int gw_ffi_limit_take(uintptr_t r, int id, int which, const char *key, size_t klen, int flags);
void gw_ffi_limit_result(uintptr_t r, int64_t *out);
int gw_ffi_limit_allowed(uintptr_t r);
int gw_ffi_route_index(uintptr_t r);
int gw_ffi_resp_add_header(uintptr_t r, const char *name, size_t nlen, const char *value,
                           size_t vlen);
int gw_ffi_redis(uintptr_t r, int argc, const char **argv, const size_t *lens, const char **err);
int gw_ffi_redis_result(uintptr_t r, const char **p, size_t *n, const char **err);
void gw_ffi_redis_release(uintptr_t r);
]]

local M = {
    ffi = ffi,
    C = ffi.C,
    OK = 0, ERROR = -1, AGAIN = -2, DECLINED = -5,
    -- what, for gw_ffi_req_get
    METHOD = 1, PATH = 2, URI = 3, QUERY = 4, HOST = 5,
    -- log levels, as gw_log_level_t
    levels = { debug = 0, info = 1, warn = 2, error = 3 },
    -- phase bits, as GW_PH_* in gateway/gw_lua.h
    phases = { rewrite = 1, access = 2, header_filter = 4, body_filter = 8, log = 16, error = 32 },
}

-- Output parameters, reused by every call (one VM, one thread).
M.p = ffi.new("const char *[1]")
M.n = ffi.new("size_t[1]")
M.p2 = ffi.new("const char *[1]")
M.n2 = ffi.new("size_t[1]")
M.p3 = ffi.new("const char *[1]")
M.n3 = ffi.new("size_t[1]")
M.status = ffi.new("int[1]")

return M
