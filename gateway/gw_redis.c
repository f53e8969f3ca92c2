/* The worker's Redis client (see gw_redis.h): one gw_rconn (to the
 * configured address or to the master gw_sentinel found), or a gw_rcluster. */
#include "gw_redis.h"

#include <stdlib.h>

#include "gw_sentinel.h"

struct gw_redis_s {
    gw_rconn_t *conn;  /* type node */
    gw_rcluster_t *cl; /* type cluster */
    gw_sentinel_t *sn; /* type sentinel; conn is then unused */
};

/* NULL while Sentinel has no confirmed master: every call below then
 * answers "not ready", which is what the limiters' policy needs. */
static gw_rconn_t *
conn_of(const gw_redis_t *rd)
{
    return rd->sn ? gw_sentinel_master(rd->sn) : rd->conn;
}

/* A command handle is the gw_rconn or gw_rcluster command it stands for;
 * a cluster one carries the low bit (both are malloc'd, so aligned), which
 * lets gw_redis_cmd_cancel() work without the client at hand. */
static gw_redis_cmd_t *
tag_cluster(gw_rcluster_cmd_t *c)
{
    return c ? (gw_redis_cmd_t *)((uintptr_t)c | 1) : NULL;
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
gw_redis_new_cluster(uv_loop_t *loop, const gw_rcluster_opts_t *o, gw_log_t *log)
{
    gw_redis_t *rd = calloc(1, sizeof(*rd));
    if (rd == NULL)
        return NULL;
    rd->cl = gw_rcluster_new(loop, o, log);
    if (rd->cl == NULL) {
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
    gw_rconn_close(rd->conn);
    gw_rcluster_close(rd->cl);
    gw_sentinel_close(rd->sn);
    free(rd);
}

int
gw_redis_ready(const gw_redis_t *rd)
{
    if (rd == NULL)
        return 0;
    return rd->cl ? gw_rcluster_ready(rd->cl) : gw_rconn_ready(conn_of(rd));
}

int
gw_redis_key_ready(const gw_redis_t *rd, const char *key, size_t len)
{
    if (rd == NULL)
        return 0;
    return rd->cl ? gw_rcluster_key_ready(rd->cl, key, len) : gw_rconn_ready(conn_of(rd));
}

gw_rcluster_t *
gw_redis_cluster(const gw_redis_t *rd)
{
    return rd ? rd->cl : NULL;
}

void
gw_redis_suspect(gw_redis_t *rd, const char *why)
{
    /* a cluster judges each node from its answers itself (gw_rcluster.h) */
    if (rd != NULL && rd->cl == NULL && conn_of(rd) != NULL)
        gw_rconn_suspect(conn_of(rd), why);
}

static gw_redis_cmd_t *
send_req(gw_redis_t *rd, const gw_rconn_req_t *req, gw_redis_cb cb, void *arg)
{
    if (rd->cl)
        return tag_cluster(gw_rcluster_send(rd->cl, req, cb, arg));
    return (gw_redis_cmd_t *)gw_rconn_send(conn_of(rd), req, cb, arg);
}

gw_redis_cmd_t *
gw_redis_command(gw_redis_t *rd, int argc, const char **argv, const size_t *lens, gw_redis_cb cb,
                 void *arg)
{
    if (rd == NULL)
        return NULL;
    gw_rconn_req_t req = {.argc = argc, .argv = argv, .lens = lens};
    return send_req(rd, &req, cb, arg);
}

gw_redis_cmd_t *
gw_redis_eval(gw_redis_t *rd, const gw_redis_script_t *s, int nkeys, int nargs, const char **argv,
              const size_t *lens, gw_redis_cb cb, void *arg)
{
    if (rd == NULL || s == NULL || nargs < 0)
        return NULL;
    gw_rconn_req_t req = {
        .argc = nkeys + nargs, .argv = argv, .lens = lens, .script = s, .nkeys = nkeys};
    return send_req(rd, &req, cb, arg);
}

void
gw_redis_cmd_cancel(gw_redis_cmd_t *c)
{
    uintptr_t p = (uintptr_t)c;
    if (p & 1)
        gw_rcluster_cmd_cancel((gw_rcluster_cmd_t *)(p & ~(uintptr_t)1));
    else
        gw_rconn_cmd_cancel((gw_rconn_cmd_t *)c);
}
