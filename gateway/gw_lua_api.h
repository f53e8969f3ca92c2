/*
 * The C side of the gw.* API, called from Lua through the FFI. Leaf
 * functions: they never touch a lua_State. lua/gw/base.lua declares the
 * same prototypes in its ffi.cdef; keep the two in step.
 *
 * Strings come back as (pointer, length) pairs valid until the request
 * changes them or ends. Functions return GW_OK, GW_DECLINED (nothing
 * there), GW_AGAIN (wait: the wrapper yields) or GW_ERROR.
 */
#ifndef GW_LUA_API_H
#define GW_LUA_API_H

#include <stddef.h>

typedef struct gw_request_s gw_request_t;

int gw_ffi_req_get(gw_request_t *r, int what, const char **p, size_t *n);
int gw_ffi_req_nheaders(gw_request_t *r);
int gw_ffi_req_header_at(gw_request_t *r, int i, const char **name, size_t *nlen,
                         const char **value, size_t *vlen);
int gw_ffi_req_header(gw_request_t *r, const char *name, size_t nlen, const char **value,
                      size_t *vlen);
int gw_ffi_req_set_header(gw_request_t *r, const char *name, size_t nlen, const char *value,
                          size_t vlen, int clear);
int gw_ffi_req_set_path(gw_request_t *r, const char *p, size_t n);
int gw_ffi_req_param(gw_request_t *r, const char *name, size_t nlen, const char **value,
                     size_t *vlen);
int gw_ffi_req_nparams(gw_request_t *r);
int gw_ffi_req_param_at(gw_request_t *r, int i, const char **name, size_t *nlen, const char **value,
                        size_t *vlen);
double gw_ffi_req_elapsed(gw_request_t *r);
int gw_ffi_req_body(gw_request_t *r, const char **p, size_t *n);

int gw_ffi_var_get(gw_request_t *r, const char *name, size_t nlen, const char **value,
                   size_t *vlen);
int gw_ffi_var_set(gw_request_t *r, const char *name, size_t nlen, const char *value, size_t vlen);

int gw_ffi_exit(gw_request_t *r, int status, const char *body, size_t blen, const char *ctype);
int gw_ffi_exit_header(gw_request_t *r, const char *name, size_t nlen, const char *value,
                       size_t vlen);
/* The error envelope with STATUS (400..599) and MSG; GW_ERROR for another status. */
int gw_ffi_exit_error(gw_request_t *r, int status, const char *msg, size_t mlen);

int gw_ffi_resp_status(gw_request_t *r);
int gw_ffi_resp_set_status(gw_request_t *r, int status);
int gw_ffi_resp_header(gw_request_t *r, const char *name, size_t nlen, const char **value,
                       size_t *vlen);
int gw_ffi_resp_set_header(gw_request_t *r, const char *name, size_t nlen, const char *value,
                           size_t vlen, int clear);

void gw_ffi_log(gw_request_t *r, int level, const char *msg, size_t len);
double gw_ffi_now(void);
int gw_ffi_sleep(gw_request_t *r, double seconds);

/* gw.http.request: headers as "Name: value\r\n" lines. Returns GW_AGAIN
 * (yield; then gw_ffi_http_result) or GW_ERROR with *err set. */
int gw_ffi_http(gw_request_t *r, const char *method, const char *url, const char *headers,
                size_t hlen, const char *body, size_t blen, double timeout, const char **err);
int gw_ffi_http_result(gw_request_t *r, int *status, const char **headers, size_t *hlen,
                       const char **body, size_t *blen, const char **err);

void gw_ffi_http_release(gw_request_t *r);
void gw_ffi_body_out(gw_request_t *r, const char *p, size_t n);
int gw_ffi_limiter_new(gw_request_t *r, int kind, double a, double b, int align, const char *prefix,
                       size_t plen, int policy, int on_err);
int gw_ffi_limit_take(gw_request_t *r, int id, int which, const char *key, size_t klen, int flags);
void gw_ffi_limit_result(gw_request_t *r, int64_t *o);
int gw_ffi_limit_allowed(gw_request_t *r);
int gw_ffi_route_index(gw_request_t *r);
int gw_ffi_resp_add_header(gw_request_t *r, const char *name, size_t nlen, const char *value,
                           size_t vlen);
int gw_ffi_redis(gw_request_t *r, int argc, const char **argv, const size_t *lens,
                 const char **err);
int gw_ffi_redis_result(gw_request_t *r, const char **p, size_t *n, const char **err);
void gw_ffi_redis_release(gw_request_t *r);

/* Values of `what` for gw_ffi_req_get. */
enum {
    GW_FFI_METHOD = 1,
    GW_FFI_PATH,
    GW_FFI_URI,
    GW_FFI_QUERY,
    GW_FFI_HOST,
};

/* gw_ffi_limit_take flags (lua/gw/limit.lua) */
#define GW_LIMIT_FLAG_HEADERS 1
#define GW_LIMIT_FLAG_ENFORCE 2

#endif
