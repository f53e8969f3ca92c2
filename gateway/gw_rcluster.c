/* The worker's Redis Cluster client (see gw_rcluster.h). */
#include "gw_rcluster.h"

#include <stdlib.h>
#include <string.h>

#include "gw_log.h"

typedef struct node_s node_t;

struct node_s {
    gw_link_t link; /* in cl->nodes */
    gw_rcluster_t *cl;
    gw_cluster_addr_t addr;
    gw_rconn_t *conn;
    gw_link_t waiters; /* commands waiting for this connection to be ready */
    uint64_t made_ms;
    int lost; /* was ready, is not */
};

struct gw_rcluster_cmd_s {
    gw_rcluster_t *cl;
    gw_link_t link;  /* in cl->parked while backing off or waiting for a node */
    gw_link_t nlink; /* in wait_node->waiters while waiting for it */
    node_t *wait_node;
    int wait_asking;
    gw_rconn_cmd_t *inner;
    node_t *node; /* where it went last; alive while inner is out */
    gw_rconn_cb cb;
    void *arg;
    uint64_t deadline_ms, wake_ms;
    uint64_t sent_ns; /* uv_hrtime() at gw_rcluster_send: on_answer's latency */
    unsigned slot;
    int redirects;
    int backed_off;
    int waited; /* for a node's connection */
    int parked;
    const gw_rconn_script_t *script;
    int nkeys, argc;
    const char **argv;
    size_t *lens;
    char data[]; /* argv pointers, lens, then the bytes */
};

struct gw_rcluster_s {
    uv_loop_t *loop;
    gw_log_t *log;
    gw_cluster_addr_t *seeds;
    size_t nseeds;
    char *password;
    uint64_t timeout_ms, connect_timeout_ms, every_ms, retry_ms;

    gw_link_t nodes;
    gw_cluster_map_t *map;
    node_t **by_index; /* the map's master I is by_index[I] (NULL: not yet made) */
    size_t nindex;

    gw_cluster_refresh_t rule;
    uv_timer_t refresh_timer; /* the rule's next start, or the periodic one */
    uv_timer_t attempt_timer; /* a node being asked that does not connect */
    uv_timer_t park_timer;    /* the earliest backoff to end */
    size_t try_k, try_n, try_first;
    node_t *try_node;
    gw_rconn_cmd_t *slots_cmd;
    int failed_logged;

    gw_link_t parked;                 /* by wake time */
    unsigned reasons;                 /* why a refresh is wanted: 1 << gw_rcluster_reason_t */
    gw_rcluster_stats_t stats, taken; /* taken: as gw_rcluster_stats_take last saw */
    int closing, nclosed;
    void (*on_node)(void *arg, const gw_cluster_addr_t *addr, int ready);
    void *node_arg;
    void (*on_answer)(void *arg, int err, int error_reply, uint64_t ns);
    void *answer_arg;
};

static void kick(gw_rcluster_t *cl);
static void try_next(gw_rcluster_t *cl);
static void flush_waiters(node_t *n);

static void
want(gw_rcluster_t *cl, gw_rcluster_reason_t why)
{
    cl->reasons |= 1u << why;
    gw_cluster_refresh_want(&cl->rule);
}

/* A master of the map whose connection went away, or was never made
 * within the connect timeout (one being made is not down). */
static int
master_down(const gw_rcluster_t *cl)
{
    uint64_t now = uv_now(cl->loop);
    for (size_t i = 0; i < cl->nindex; i++) {
        const node_t *n = cl->by_index[i];
        if (n != NULL && !gw_rconn_ready(n->conn) &&
            (n->lost || now - n->made_ms >= cl->connect_timeout_ms))
            return 1;
    }
    return 0;
}

/* ---- nodes ---------------------------------------------------------------- */

static void
on_node_state(void *arg, int ready)
{
    node_t *n = arg;
    gw_rcluster_t *cl = n->cl;
    if (cl->closing)
        return;
    n->lost = !ready;
    if (cl->on_node)
        cl->on_node(cl->node_arg, &n->addr, ready);
    if (ready)
        flush_waiters(n);
    if (ready && cl->try_node == n && cl->slots_cmd == NULL && cl->rule.in_flight) {
        uv_timer_stop(&cl->attempt_timer);
        try_next(cl);
        return;
    }
    /* a master that goes away may have failed over: the map says */
    if (!ready && cl->map != NULL) {
        for (size_t i = 0; i < cl->nindex; i++) {
            if (cl->by_index[i] == n) {
                want(cl, GW_RCLUSTER_R_NODE_DOWN);
                kick(cl);
                break;
            }
        }
    }
}

static node_t *
node_get(gw_rcluster_t *cl, const gw_cluster_addr_t *a)
{
    for (gw_link_t *l = cl->nodes.next; l != &cl->nodes; l = l->next) {
        node_t *n = GW_CONTAINER_OF(l, node_t, link);
        if (gw_cluster_addr_eq(&n->addr, a))
            return n;
    }
    node_t *n = calloc(1, sizeof(*n));
    if (n == NULL)
        return NULL;
    n->cl = cl;
    n->addr = *a;
    gw_list_init(&n->waiters);
    n->made_ms = uv_now(cl->loop);
    gw_rconn_opts_t o = {.host = a->host,
                         .port = a->port,
                         .password = cl->password,
                         .timeout_ms = cl->timeout_ms,
                         .connect_timeout_ms = cl->connect_timeout_ms,
                         /* a master that comes back is used within 100 ms */
                         .backoff_max_ms = 100,
                         .on_state = on_node_state,
                         .state_arg = n};
    n->conn = gw_rconn_new(cl->loop, &o, cl->log);
    if (n->conn == NULL) {
        free(n);
        return NULL;
    }
    gw_list_push(&cl->nodes, &n->link);
    return n;
}

static void
node_free(node_t *n)
{
    gw_list_remove(&n->link);
    gw_rconn_close(n->conn);
    free(n);
}

/* The master of SLOT in the map, made when first needed; NULL for a hole. */
static node_t *
slot_node(gw_rcluster_t *cl, unsigned slot)
{
    int i = cl->map ? gw_cluster_map_owner(cl->map, slot) : -1;
    if (i < 0)
        return NULL;
    if ((size_t)i >= cl->nindex) {
        size_t n = gw_cluster_map_nnodes(cl->map);
        node_t **b = realloc(cl->by_index, n * sizeof(*b));
        if (b == NULL)
            return NULL;
        memset(b + cl->nindex, 0, (n - cl->nindex) * sizeof(*b));
        cl->by_index = b;
        cl->nindex = n;
    }
    if (cl->by_index[i] == NULL)
        cl->by_index[i] = node_get(cl, gw_cluster_map_node(cl->map, (size_t)i));
    return cl->by_index[i];
}

static int
is_seed(const gw_rcluster_t *cl, const node_t *n)
{
    for (size_t i = 0; i < cl->nseeds; i++) {
        if (gw_cluster_addr_eq(&cl->seeds[i], &n->addr))
            return 1;
    }
    return 0;
}

/* Nodes neither in the map nor seeds, once nothing waits on them. */
static void
prune(gw_rcluster_t *cl)
{
    gw_link_t *l = cl->nodes.next;
    while (l != &cl->nodes) {
        node_t *n = GW_CONTAINER_OF(l, node_t, link);
        l = l->next;
        int used = is_seed(cl, n) || n == cl->try_node || gw_rconn_pending(n->conn) > 0 ||
                   !gw_list_empty(&n->waiters);
        for (size_t i = 0; !used && i < cl->nindex; i++)
            used = cl->by_index[i] == n;
        if (!used)
            node_free(n);
    }
}

/* ---- the map -------------------------------------------------------------- */

static void on_refresh_timer(uv_timer_t *t);

/* Starts a refresh when the rule allows, else sets the timer for the next
 * possible start, or for the periodic one. */
static void
kick(gw_rcluster_t *cl)
{
    if (cl->closing)
        return;
    uint64_t now = uv_now(cl->loop);
    if (gw_cluster_refresh_take(&cl->rule, now)) {
        /* one refresh, counted under the weightiest reason that wanted it */
        static const gw_rcluster_reason_t order[] = {
            GW_RCLUSTER_R_MOVED, GW_RCLUSTER_R_CLUSTERDOWN, GW_RCLUSTER_R_NODE_DOWN,
            GW_RCLUSTER_R_START, GW_RCLUSTER_R_RETRY,       GW_RCLUSTER_R_PERIODIC};
        gw_rcluster_reason_t why = GW_RCLUSTER_R_PERIODIC;
        for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++) {
            if (cl->reasons & (1u << order[i])) {
                why = order[i];
                break;
            }
        }
        cl->reasons = 0;
        cl->stats.refreshes[why]++;
        uv_timer_stop(&cl->refresh_timer);
        cl->try_k = 0;
        cl->try_n = cl->nseeds + (cl->map ? gw_cluster_map_nnodes(cl->map) : 0);
        try_next(cl);
        return;
    }
    if (cl->rule.in_flight)
        return;
    uint64_t wait = gw_cluster_refresh_next(&cl->rule, now);
    if (wait == UINT64_MAX) {
        /* nothing pending: look again after the gap (a master that never
         * connects tells nothing by itself), or at the periodic refresh */
        uint64_t since = now - cl->rule.last_start_ms;
        wait = since >= cl->every_ms ? 0 : cl->every_ms - since;
        if (wait > cl->rule.min_gap_ms)
            wait = cl->rule.min_gap_ms;
    }
    uv_timer_start(&cl->refresh_timer, on_refresh_timer, wait, 0);
}

static void
on_refresh_timer(uv_timer_t *t)
{
    gw_rcluster_t *cl = t->data;
    if (!cl->rule.pending) {
        if (master_down(cl))
            want(cl, GW_RCLUSTER_R_NODE_DOWN);
        else if (uv_now(cl->loop) - cl->rule.last_start_ms >= cl->every_ms)
            want(cl, GW_RCLUSTER_R_PERIODIC);
    }
    kick(cl);
}

static const gw_cluster_addr_t *
candidate(const gw_rcluster_t *cl, size_t k)
{
    size_t j = (cl->try_first + k) % cl->try_n;
    return j < cl->nseeds ? &cl->seeds[j] : gw_cluster_map_node(cl->map, j - cl->nseeds);
}

static void
round_done(gw_rcluster_t *cl)
{
    cl->try_node = NULL;
    uv_timer_stop(&cl->attempt_timer);
    gw_cluster_refresh_done(&cl->rule);
}

static void
install(gw_rcluster_t *cl, gw_cluster_map_t *m, const node_t *from)
{
    size_t old_n = cl->map ? gw_cluster_map_nnodes(cl->map) : 0;
    size_t old_cov = cl->map ? gw_cluster_map_covered(cl->map) : 0;
    gw_cluster_map_free(cl->map);
    cl->map = m;
    free(cl->by_index);
    cl->by_index = NULL;
    cl->nindex = 0;
    cl->stats.maps++;
    size_t n = gw_cluster_map_nnodes(m), cov = gw_cluster_map_covered(m);
    /* every master now, so that a key's first command finds it ready */
    for (unsigned s = 0; s < GW_CLUSTER_NSLOTS; s++)
        slot_node(cl, s);
    gw_log(cl->log, n != old_n || cov != old_cov || cl->failed_logged ? GW_LOG_INFO : GW_LOG_DEBUG,
           "redis cluster: slot map from %s:%d: %zu masters, %zu of %d slots served",
           from->addr.host, from->addr.port, n, cov, GW_CLUSTER_NSLOTS);
    cl->failed_logged = 0;
}

static void
on_slots(int err, const redisReply *reply, void *arg)
{
    gw_rcluster_t *cl = arg;
    node_t *n = cl->try_node;
    cl->slots_cmd = NULL;
    if (cl->closing || n == NULL)
        return;
    char why[160];
    gw_cluster_map_t *m = NULL;
    if (err)
        snprintf(why, sizeof(why), "%s",
                 err == GW_RCONN_ETIMEDOUT ? "timed out" : "connection lost");
    else if (reply->type == REDIS_REPLY_ERROR)
        snprintf(why, sizeof(why), "%.150s", reply->str);
    else
        m = gw_cluster_map_from_slots(reply, &n->addr, why, sizeof(why));
    if (m == NULL) {
        gw_log(cl->log, GW_LOG_WARN, "redis cluster: CLUSTER SLOTS from %s:%d refused: %s",
               n->addr.host, n->addr.port, why);
        cl->try_k++;
        try_next(cl);
        return;
    }
    size_t j = (cl->try_first + cl->try_k) % cl->try_n;
    if (j < cl->nseeds)
        cl->try_first = j;
    install(cl, m, n);
    round_done(cl);
    prune(cl);
    /* a master that does not answer is either about to be replaced by a
     * failover, which only a new map shows, or comes back: the refresh
     * timer asks again after the gap while one does not (on_refresh_timer) */
    kick(cl);
}

static void
on_attempt_timer(uv_timer_t *t)
{
    gw_rcluster_t *cl = t->data;
    cl->try_k++;
    try_next(cl);
}

/* Asks the next candidate, waiting up to the connect timeout for it to be
 * ready; after the last one the round has failed. */
static void
try_next(gw_rcluster_t *cl)
{
    while (cl->try_k < cl->try_n) {
        node_t *n = node_get(cl, candidate(cl, cl->try_k));
        cl->try_node = n;
        if (n == NULL) {
            cl->try_k++;
            continue;
        }
        if (!gw_rconn_ready(n->conn)) {
            uv_timer_start(&cl->attempt_timer, on_attempt_timer, cl->connect_timeout_ms, 0);
            return;
        }
        const char *v[2] = {"CLUSTER", "SLOTS"};
        size_t l[2] = {7, 5};
        gw_rconn_req_t req = {.argc = 2, .argv = v, .lens = l, .internal = 1};
        cl->slots_cmd = gw_rconn_send(n->conn, &req, on_slots, cl);
        if (cl->slots_cmd != NULL) {
            cl->stats.slots_asked++;
            return;
        }
        cl->try_k++;
    }
    cl->stats.refresh_failed++;
    if (!cl->failed_logged)
        gw_log(cl->log, GW_LOG_WARN, "redis cluster: no node gave a slot map (%zu asked); %s",
               cl->try_n,
               cl->map ? "keeping the last one" : "limiters follow their on_redis_error policy");
    cl->failed_logged = 1;
    round_done(cl);
    want(cl, GW_RCLUSTER_R_RETRY);
    kick(cl);
}

/* ---- commands ------------------------------------------------------------- */

static void on_inner(int err, const redisReply *reply, void *arg);

static void
unpark(gw_rcluster_cmd_t *c)
{
    if (c->parked)
        gw_list_remove(&c->link);
    if (c->wait_node)
        gw_list_remove(&c->nlink);
    c->parked = 0;
    c->wait_node = NULL;
}

/* The end of a command, however many nodes it went to: on_answer hears
 * of it once, with the time since it was sent (its redirects, backoff and
 * waits included), so the Redis metrics count what callers asked for. */
static void
cmd_finish(gw_rcluster_cmd_t *c, int err, const redisReply *reply)
{
    unpark(c);
    gw_rcluster_t *cl = c->cl;
    if (cl->on_answer && err != GW_RCONN_ECLOSED)
        cl->on_answer(cl->answer_arg, err, reply && reply->type == REDIS_REPLY_ERROR,
                      uv_hrtime() - c->sent_ns);
    gw_rconn_cb cb = c->cb;
    void *arg = c->arg;
    free(c);
    cb(err, reply, arg);
}

static int
dispatch(gw_rcluster_cmd_t *c, node_t *n, int asking)
{
    if (n == NULL || !gw_rconn_ready(n->conn) || uv_now(c->cl->loop) >= c->deadline_ms)
        return -1;
    gw_rconn_req_t req = {.argc = c->argc,
                          .argv = c->argv,
                          .lens = c->lens,
                          .script = c->script,
                          .nkeys = c->nkeys,
                          .deadline_ms = c->deadline_ms,
                          .asking = asking,
                          .partial = c->redirects > 0 || c->backed_off || c->waited};
    c->inner = gw_rconn_send(n->conn, &req, on_inner, c);
    c->node = n;
    return c->inner ? 0 : -1;
}

static void on_park_timer(uv_timer_t *t);

static void
arm_park(gw_rcluster_t *cl)
{
    if (gw_list_empty(&cl->parked)) {
        uv_timer_stop(&cl->park_timer);
        return;
    }
    gw_rcluster_cmd_t *c = GW_CONTAINER_OF(cl->parked.next, gw_rcluster_cmd_t, link);
    uint64_t now = uv_now(cl->loop);
    uv_timer_start(&cl->park_timer, on_park_timer, c->wake_ms > now ? c->wake_ms - now : 0, 0);
}

/* In cl->parked until WAKE (at the latest the deadline). */
static void
park_until(gw_rcluster_cmd_t *c, uint64_t wake)
{
    gw_rcluster_t *cl = c->cl;
    c->wake_ms = wake < c->deadline_ms ? wake : c->deadline_ms;
    c->parked = 1;
    gw_link_t *at = cl->parked.prev;
    while (at != &cl->parked && GW_CONTAINER_OF(at, gw_rcluster_cmd_t, link)->wake_ms > c->wake_ms)
        at = at->prev;
    c->link.prev = at;
    c->link.next = at->next;
    at->next->prev = &c->link;
    at->next = &c->link;
    arm_park(cl);
}

/* TRYAGAIN or CLUSTERDOWN: the one short backoff. */
static void
park(gw_rcluster_cmd_t *c)
{
    c->backed_off = 1;
    park_until(c, uv_now(c->cl->loop) + c->cl->retry_ms);
}

/*
 * Sends C to N (after ASKING when ASKING), or, while N's connection is
 * being made or remade, keeps C until it is ready or C's deadline passes:
 * a redirect to a node this worker has not talked to yet must not fail
 * the command. Ends C when there is nowhere to send it.
 */
static void
route(gw_rcluster_cmd_t *c, node_t *n, int asking)
{
    gw_rcluster_t *cl = c->cl;
    if (uv_now(cl->loop) >= c->deadline_ms) {
        cmd_finish(c, GW_RCONN_ETIMEDOUT, NULL);
        return;
    }
    if (n == NULL) {
        cmd_finish(c, GW_RCONN_ECONN, NULL);
        return;
    }
    if (gw_rconn_ready(n->conn)) {
        if (dispatch(c, n, asking) != 0)
            cmd_finish(c, GW_RCONN_ECONN, NULL);
        return;
    }
    c->wait_node = n;
    c->wait_asking = asking;
    c->waited = 1;
    gw_list_push(&n->waiters, &c->nlink);
    park_until(c, c->deadline_ms);
}

/* N is ready: what waited for it goes now. */
static void
flush_waiters(node_t *n)
{
    gw_rcluster_t *cl = n->cl;
    int any = 0;
    while (!gw_list_empty(&n->waiters)) {
        gw_rcluster_cmd_t *c = GW_CONTAINER_OF(n->waiters.next, gw_rcluster_cmd_t, nlink);
        int asking = c->wait_asking;
        unpark(c);
        route(c, n, asking);
        any = 1;
    }
    if (any)
        arm_park(cl);
}

static void
on_park_timer(uv_timer_t *t)
{
    gw_rcluster_t *cl = t->data;
    uint64_t now = uv_now(cl->loop);
    while (!gw_list_empty(&cl->parked)) {
        gw_rcluster_cmd_t *c = GW_CONTAINER_OF(cl->parked.next, gw_rcluster_cmd_t, link);
        if (c->wake_ms > now)
            break;
        node_t *waited = c->wait_node;
        unpark(c);
        if (waited != NULL || now >= c->deadline_ms)
            cmd_finish(c, GW_RCONN_ETIMEDOUT, NULL);
        else
            route(c, slot_node(cl, c->slot), 0);
    }
    arm_park(cl);
}

/* MOVED or ASK: to the node named, with ASKING for an ASK. -1 when the
 * reply is not followed (malformed, too many redirects): C is the
 * caller's still. */
static int
redirect(gw_rcluster_cmd_t *c, const redisReply *reply)
{
    gw_rcluster_t *cl = c->cl;
    unsigned slot;
    gw_cluster_addr_t to;
    gw_cluster_err_t kind = gw_cluster_redirect_parse(reply->str, reply->len,
                                                      c->node ? &c->node->addr : NULL, &slot, &to);
    if (kind == GW_CLUSTER_EOTHER || c->redirects >= GW_RCLUSTER_MAX_REDIRECTS)
        return -1;
    c->redirects++;
    if (kind == GW_CLUSTER_EASK) {
        cl->stats.ask++;
        route(c, node_get(cl, &to), 1);
        return 0;
    }
    cl->stats.moved++;
    /* commands sent before the first MOVED of a failover bring the same
     * news again: only one that changes the map asks for a new one */
    int owner = gw_cluster_map_owner(cl->map, slot);
    if (owner < 0 || !gw_cluster_addr_eq(gw_cluster_map_node(cl->map, (size_t)owner), &to)) {
        want(cl, GW_RCLUSTER_R_MOVED);
        kick(cl);
    }
    if (gw_cluster_map_move(cl->map, slot, &to) == GW_OK)
        route(c, slot_node(cl, slot), 0);
    else
        route(c, node_get(cl, &to), 0);
    return 0;
}

/* Error replies that say the node cannot serve now, whatever the key. */
static int
node_error(const redisReply *r)
{
    static const char *const codes[] = {"LOADING", "BUSY", "MASTERDOWN", "NOAUTH", "MISCONF", NULL};
    return gw_rconn_error_is(r, codes);
}

static void
on_inner(int err, const redisReply *reply, void *arg)
{
    gw_rcluster_cmd_t *c = arg;
    gw_rcluster_t *cl = c->cl;
    c->inner = NULL;
    if (cl->closing) {
        cmd_finish(c, GW_RCONN_ECLOSED, NULL);
        return;
    }
    if (err || reply->type != REDIS_REPLY_ERROR) {
        cmd_finish(c, err, reply);
        return;
    }
    gw_cluster_err_t kind = gw_cluster_err_kind(reply->str, reply->len);
    switch (kind) {
    case GW_CLUSTER_EMOVED:
    case GW_CLUSTER_EASK:
        if (redirect(c, reply) == 0)
            return;
        break;
    case GW_CLUSTER_ECLUSTERDOWN:
    case GW_CLUSTER_ETRYAGAIN:
        if (kind == GW_CLUSTER_ECLUSTERDOWN) {
            cl->stats.clusterdown++;
            want(cl, GW_RCLUSTER_R_CLUSTERDOWN);
            kick(cl);
        } else {
            cl->stats.tryagain++;
        }
        if (!c->backed_off) {
            park(c);
            return;
        }
        break;
    default:
        if (reply->str != NULL && c->node != NULL && node_error(reply))
            gw_rconn_suspect(c->node->conn, reply->str);
        break;
    }
    cmd_finish(c, 0, reply);
}

/* The first key of REQ: ARGV[1] of a command, ARGV[0] of a script. */
static int
first_key(const gw_rconn_req_t *req, const char **key, size_t *len)
{
    int i = req->script ? (req->nkeys > 0 ? 0 : -1) : (req->argc > 1 ? 1 : -1);
    if (i < 0)
        return -1;
    *key = req->argv[i];
    *len = req->lens[i];
    return 0;
}

gw_rcluster_cmd_t *
gw_rcluster_send(gw_rcluster_t *cl, const gw_rconn_req_t *req, gw_rconn_cb cb, void *arg)
{
    const char *key;
    size_t klen;
    if (cl == NULL || req == NULL || cb == NULL || cl->closing || cl->map == NULL ||
        req->argc < 1 || first_key(req, &key, &klen) != 0)
        return NULL;
    unsigned slot = gw_cluster_keyslot(key, klen);
    node_t *n = slot_node(cl, slot);
    if (n == NULL || !gw_rconn_ready(n->conn))
        return NULL;
    size_t argc = (size_t)req->argc, bytes = 0;
    for (size_t i = 0; i < argc; i++)
        bytes += req->lens[i];
    gw_rcluster_cmd_t *c = malloc(sizeof(*c) + argc * (sizeof(char *) + sizeof(size_t)) + bytes);
    if (c == NULL)
        return NULL;
    memset(c, 0, sizeof(*c));
    c->cl = cl;
    c->cb = cb;
    c->arg = arg;
    c->slot = slot;
    c->sent_ns = uv_hrtime();
    c->script = req->script;
    c->nkeys = req->nkeys;
    c->argc = req->argc;
    c->deadline_ms = req->deadline_ms ? req->deadline_ms : uv_now(cl->loop) + cl->timeout_ms;
    c->argv = (const char **)(void *)c->data;
    c->lens = (size_t *)(void *)(c->data + argc * sizeof(char *));
    char *p = c->data + argc * (sizeof(char *) + sizeof(size_t));
    for (size_t i = 0; i < argc; i++) {
        memcpy(p, req->argv[i], req->lens[i]);
        c->argv[i] = p;
        c->lens[i] = req->lens[i];
        p += req->lens[i];
    }
    if (dispatch(c, n, 0) != 0) {
        free(c);
        return NULL;
    }
    return c;
}

void
gw_rcluster_cmd_cancel(gw_rcluster_cmd_t *c)
{
    if (c == NULL)
        return;
    if (c->inner)
        gw_rconn_cmd_cancel(c->inner);
    unpark(c);
    free(c);
}

/* ---- life ----------------------------------------------------------------- */

int
gw_rcluster_ready(const gw_rcluster_t *cl)
{
    return cl != NULL && cl->map != NULL;
}

int
gw_rcluster_key_ready(const gw_rcluster_t *cl, const char *key, size_t len)
{
    if (cl == NULL || cl->map == NULL)
        return 0;
    int i = gw_cluster_map_owner(cl->map, gw_cluster_keyslot(key, len));
    return i >= 0 && (size_t)i < cl->nindex && cl->by_index[i] != NULL &&
           gw_rconn_ready(cl->by_index[i]->conn);
}

const gw_rcluster_stats_t *
gw_rcluster_stats(const gw_rcluster_t *cl)
{
    return &cl->stats;
}

void
gw_rcluster_stats_take(gw_rcluster_t *cl, gw_rcluster_stats_t *out)
{
    const uint64_t *now = (const uint64_t *)(const void *)&cl->stats;
    uint64_t *then = (uint64_t *)(void *)&cl->taken, *o = (uint64_t *)(void *)out;
    for (size_t i = 0; i < sizeof(cl->stats) / sizeof(uint64_t); i++) {
        o[i] = now[i] - then[i];
        then[i] = now[i];
    }
}

size_t
gw_rcluster_nodes(gw_rcluster_t *cl, gw_rcluster_node_t *out, size_t max)
{
    size_t k = 0;
    if (cl == NULL)
        return 0;
    for (gw_link_t *l = cl->nodes.next; l != &cl->nodes && k < max; l = l->next) {
        node_t *n = GW_CONTAINER_OF(l, node_t, link);
        gw_rcluster_node_t *o = &out[k++];
        o->addr = &n->addr;
        o->master = 0;
        for (size_t i = 0; i < cl->nindex && !o->master; i++)
            o->master = cl->by_index[i] == n;
        o->ready = gw_rconn_ready(n->conn);
        gw_rconn_stats_take(n->conn, &o->stats);
    }
    return k;
}

gw_rcluster_t *
gw_rcluster_new(uv_loop_t *loop, const gw_rcluster_opts_t *o, gw_log_t *log)
{
    if (loop == NULL || o == NULL || o->seeds == NULL || o->nseeds == 0 || o->timeout_ms == 0)
        return NULL;
    gw_rcluster_t *cl = calloc(1, sizeof(*cl));
    if (cl == NULL)
        return NULL;
    cl->seeds = malloc(o->nseeds * sizeof(*cl->seeds));
    cl->password = o->password && o->password[0] ? strdup(o->password) : NULL;
    if (cl->seeds == NULL || (o->password && o->password[0] && cl->password == NULL)) {
        free(cl->seeds);
        free(cl->password);
        free(cl);
        return NULL;
    }
    memcpy(cl->seeds, o->seeds, o->nseeds * sizeof(*cl->seeds));
    cl->nseeds = o->nseeds;
    cl->loop = loop;
    cl->log = log;
    cl->timeout_ms = o->timeout_ms;
    cl->connect_timeout_ms = o->connect_timeout_ms ? o->connect_timeout_ms : 1000;
    cl->every_ms = o->refresh_every_ms ? o->refresh_every_ms : 30000;
    cl->retry_ms = o->retry_ms ? o->retry_ms : 50;
    cl->on_node = o->on_node;
    cl->node_arg = o->node_arg;
    cl->on_answer = o->on_answer;
    cl->answer_arg = o->answer_arg;
    gw_cluster_refresh_init(&cl->rule, o->refresh_gap_ms ? o->refresh_gap_ms : 1000);
    gw_list_init(&cl->nodes);
    gw_list_init(&cl->parked);
    uv_timer_t *timers[] = {&cl->refresh_timer, &cl->attempt_timer, &cl->park_timer};
    for (size_t i = 0; i < 3; i++) {
        uv_timer_init(loop, timers[i]);
        timers[i]->data = cl;
        /* a cluster that stays away must not keep a draining worker alive */
        uv_unref((uv_handle_t *)timers[i]);
    }
    want(cl, GW_RCLUSTER_R_START);
    kick(cl);
    return cl;
}

static void
on_timer_closed(uv_handle_t *h)
{
    gw_rcluster_t *cl = h->data;
    if (++cl->nclosed == 3)
        free(cl);
}

void
gw_rcluster_close(gw_rcluster_t *cl)
{
    if (cl == NULL || cl->closing)
        return;
    cl->closing = 1;
    while (!gw_list_empty(&cl->parked))
        cmd_finish(GW_CONTAINER_OF(cl->parked.next, gw_rcluster_cmd_t, link), GW_RCONN_ECLOSED,
                   NULL);
    cl->try_node = NULL;
    while (!gw_list_empty(&cl->nodes))
        node_free(GW_CONTAINER_OF(cl->nodes.next, node_t, link));
    gw_cluster_map_free(cl->map);
    cl->map = NULL;
    free(cl->by_index);
    cl->by_index = NULL;
    cl->nindex = 0;
    free(cl->seeds);
    free(cl->password);
    uv_close((uv_handle_t *)&cl->refresh_timer, on_timer_closed);
    uv_close((uv_handle_t *)&cl->attempt_timer, on_timer_closed);
    uv_close((uv_handle_t *)&cl->park_timer, on_timer_closed);
}
