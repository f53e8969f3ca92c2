/* The worker's single-node Redis client (see gw_redis.h): one gw_rconn,
 * either to the configured address or to the master gw_sentinel found. */
#include "gw_redis.h"

#include <stdlib.h>

#include "gw_sentinel.h"

struct gw_redis_s {
    gw_rconn_t *conn;
    gw_sentinel_t *sn; /* redis.type: sentinel; conn is then unused */
};

/* NULL while Sentinel has no confirmed master: every call below then
 * answers "not ready", which is what the limiters' policy needs. */
static gw_rconn_t *
conn_of(const gw_redis_t *rd)
{
    return rd->sn ? gw_sentinel_master(rd->sn) : rd->conn;
}

void
gw_redis_script_init(gw_redis_script_t *s, const char *text)
{
    gw_rconn_script_init(s, text);
}

gw_redis_t *
gw_redis_new(uv_loop_t *loop, const gw_redis_opts_t *o, gw_log_t *log)
{
    gw_redis_t *rd = calloc(1, sizeof(*rd));
    if (rd == NULL)
        return NULL;
    rd->conn = gw_rconn_new(loop, o, log);
    if (rd->conn == NULL) {
        free(rd);
        return NULL;
    }
    return rd;
}

gw_redis_t *
gw_redis_new_sentinel(uv_loop_t *loop, const gw_sentinel_opts_t *o, gw_log_t *log)
{
    gw_redis_t *rd = calloc(1, sizeof(*rd));
    if (rd == NULL)
        return NULL;
    rd->sn = gw_sentinel_new(loop, o, log);
    if (rd->sn == NULL) {
        free(rd);
        return NULL;
    }
    return rd;
}

void
gw_redis_close(gw_redis_t *rd)
{
    if (rd == NULL)
        return;
    gw_sentinel_close(rd->sn);
    gw_rconn_close(rd->conn);
    free(rd);
}

int
gw_redis_ready(const gw_redis_t *rd)
{
    return rd != NULL && gw_rconn_ready(conn_of(rd));
}

void
gw_redis_suspect(gw_redis_t *rd, const char *why)
{
    if (rd != NULL)
        gw_rconn_suspect(conn_of(rd), why);
}

gw_redis_cmd_t *
gw_redis_command(gw_redis_t *rd, int argc, const char **argv, const size_t *lens, gw_redis_cb cb,
                 void *arg)
{
    if (rd == NULL)
        return NULL;
    gw_rconn_req_t req = {.argc = argc, .argv = argv, .lens = lens};
    return gw_rconn_send(conn_of(rd), &req, cb, arg);
}

gw_redis_cmd_t *
gw_redis_eval(gw_redis_t *rd, const gw_redis_script_t *s, int nkeys, int nargs, const char **argv,
              const size_t *lens, gw_redis_cb cb, void *arg)
{
    if (rd == NULL || s == NULL || nargs < 0)
        return NULL;
    gw_rconn_req_t req = {
        .argc = nkeys + nargs, .argv = argv, .lens = lens, .script = s, .nkeys = nkeys};
    return gw_rconn_send(conn_of(rd), &req, cb, arg);
}

void
gw_redis_cmd_cancel(gw_redis_cmd_t *c)
{
    gw_rconn_cmd_cancel(c);
}
