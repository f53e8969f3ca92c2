/*
 * The cluster client against fake cluster nodes on loopback, in this
 * process and on its loop: each node answers CLUSTER SLOTS with what the
 * test sets, GET with its own name, EVALSHA with NOSCRIPT until it saw
 * the script's EVAL, and can be told to answer MOVED, ASK or TRYAGAIN.
 * Commands are read with hiredis's reader.
 *
 * With --incr N SEED... it runs against a real cluster instead: a script
 * INCRs keys user1..userN through the client, all at once, and prints
 * "KEY<TAB>VALUE" per key then one "stats" line; t/98-redis-cluster.t
 * checks the values on the masters that own the keys.
 */
#include <arpa/inet.h>
#include <hiredis/hiredis.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "gw_cluster.h"
#include "gw_limit.h"
#include "gw_log.h"
#include "gw_rcluster.h"
#include "gw_redis.h"
#include "tap.h"

#define MAX_CONNS 16

typedef struct fake_s fake_t;

typedef struct {
    uv_tcp_t tcp;
    fake_t *f;
    redisReader *rd;
    int asking;
    int slot; /* in f->conns */
} fconn_t;

struct fake_s {
    uv_tcp_t listener;
    int port;
    char name[16];
    char slots[512];          /* the CLUSTER SLOTS reply, raw RESP */
    char moved_to[64];        /* "" or host:port: every keyed command answers MOVED */
    char ask_to[64];          /* "" or host:port: ASK, unless the command came after ASKING */
    int tryagain;             /* that many TRYAGAIN answers first */
    int silent;               /* keyed commands get no answer */
    const char *script_reply; /* NULL or the raw RESP every EVAL/EVALSHA gets once loaded */
    int loaded;               /* the script was EVALed here */
    int n_slots, n_asking, n_keyed, n_eval, n_evalsha;
    fconn_t *conns[MAX_CONNS];
};

static uv_loop_t *loop;

static void
on_fconn_closed(uv_handle_t *h)
{
    fconn_t *c = h->data;
    redisReaderFree(c->rd);
    free(c);
}

static void
fconn_close(fconn_t *c)
{
    if (c->f->conns[c->slot] == c)
        c->f->conns[c->slot] = NULL;
    uv_close((uv_handle_t *)&c->tcp, on_fconn_closed);
}

static void
on_written(uv_write_t *w, int status)
{
    (void)status;
    free(w);
}

static void
fsend(fconn_t *c, const char *s, size_t len)
{
    uv_write_t *w = malloc(sizeof(*w) + len);
    char *copy = (char *)(w + 1);
    memcpy(copy, s, len);
    uv_buf_t b = uv_buf_init(copy, (unsigned)len);
    uv_write(w, (uv_stream_t *)&c->tcp, &b, 1, on_written);
}

static void
fsendf(fconn_t *c, const char *s)
{
    fsend(c, s, strlen(s));
}

static int
arg_is(const redisReply *cmd, size_t i, const char *s)
{
    return i < cmd->elements && strcasecmp(cmd->element[i]->str, s) == 0;
}

static void
answer(fconn_t *c, const redisReply *cmd)
{
    fake_t *f = c->f;
    char out[600];
    int asking = c->asking;
    c->asking = 0;
    if (arg_is(cmd, 0, "PING")) {
        fsendf(c, "+PONG\r\n");
        return;
    }
    if (arg_is(cmd, 0, "ASKING")) {
        f->n_asking++;
        c->asking = 1;
        fsendf(c, "+OK\r\n");
        return;
    }
    if (arg_is(cmd, 0, "CLUSTER") && arg_is(cmd, 1, "SLOTS")) {
        f->n_slots++;
        fsendf(c, f->slots);
        return;
    }
    int script = arg_is(cmd, 0, "EVALSHA") || arg_is(cmd, 0, "EVAL");
    size_t k = script ? 3 : 1;
    if (k >= cmd->elements) {
        fsendf(c, "-ERR no key\r\n");
        return;
    }
    f->n_keyed++;
    unsigned slot = gw_cluster_keyslot(cmd->element[k]->str, cmd->element[k]->len);
    if (f->moved_to[0]) {
        snprintf(out, sizeof(out), "-MOVED %u %s\r\n", slot, f->moved_to);
        fsendf(c, out);
        return;
    }
    if (f->ask_to[0] && !asking) {
        snprintf(out, sizeof(out), "-ASK %u %s\r\n", slot, f->ask_to);
        fsendf(c, out);
        return;
    }
    if (f->silent)
        return;
    if (f->tryagain > 0) {
        f->tryagain--;
        fsendf(c, "-TRYAGAIN Multiple keys request during rehashing of slot\r\n");
        return;
    }
    if (arg_is(cmd, 0, "EVALSHA")) {
        f->n_evalsha++;
        if (!f->loaded)
            fsendf(c, "-NOSCRIPT No matching script. Please use EVAL.\r\n");
        else
            fsendf(c, f->script_reply ? f->script_reply : ":1\r\n");
        return;
    }
    if (arg_is(cmd, 0, "EVAL")) {
        f->n_eval++;
        f->loaded = 1;
        fsendf(c, f->script_reply ? f->script_reply : ":1\r\n");
        return;
    }
    snprintf(out, sizeof(out), "$%zu\r\n%s\r\n", strlen(f->name), f->name);
    fsendf(c, out);
}

static void
on_falloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
    (void)h;
    (void)hint;
    static char buf[65536];
    *b = uv_buf_init(buf, sizeof(buf));
}

static void
on_fread(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    fconn_t *c = s->data;
    if (n < 0) {
        fconn_close(c);
        return;
    }
    redisReaderFeed(c->rd, b->base, (size_t)n);
    void *r;
    while (redisReaderGetReply(c->rd, &r) == REDIS_OK && r != NULL) {
        answer(c, r);
        freeReplyObject(r);
    }
}

static void
on_fconnection(uv_stream_t *l, int status)
{
    fake_t *f = l->data;
    fconn_t *c = calloc(1, sizeof(*c));
    c->f = f;
    c->rd = redisReaderCreate();
    uv_tcp_init(loop, &c->tcp);
    c->tcp.data = c;
    c->slot = -1;
    for (int i = 0; i < MAX_CONNS && c->slot < 0; i++)
        if (f->conns[i] == NULL)
            c->slot = i;
    if (status < 0 || c->slot < 0 || uv_accept(l, (uv_stream_t *)&c->tcp) != 0) {
        c->slot = 0;
        uv_close((uv_handle_t *)&c->tcp, on_fconn_closed);
        return;
    }
    f->conns[c->slot] = c;
    uv_read_start((uv_stream_t *)&c->tcp, on_falloc, on_fread);
}

static void
fake_start(fake_t *f, const char *name)
{
    struct sockaddr_in sa;
    struct sockaddr_storage got;
    int namelen = sizeof(got);
    memset(f, 0, sizeof(*f));
    snprintf(f->name, sizeof(f->name), "%s", name);
    uv_tcp_init(loop, &f->listener);
    f->listener.data = f;
    uv_ip4_addr("127.0.0.1", 0, &sa);
    if (uv_tcp_bind(&f->listener, (struct sockaddr *)&sa, 0) != 0 ||
        uv_listen((uv_stream_t *)&f->listener, 16, on_fconnection) != 0 ||
        uv_tcp_getsockname(&f->listener, (struct sockaddr *)&got, &namelen) != 0) {
        printf("Bail out! cannot listen\n");
        exit(1);
    }
    f->port = ntohs(((struct sockaddr_in *)&got)->sin_port);
}

static void
fake_stop(fake_t *f)
{
    for (int i = 0; i < MAX_CONNS; i++)
        if (f->conns[i])
            fconn_close(f->conns[i]);
    uv_close((uv_handle_t *)&f->listener, NULL);
}

/* CLUSTER SLOTS giving A slots [0, split) and B the rest (split 16384:
 * all to A). */
static void
set_slots(fake_t *f, const fake_t *a, const fake_t *b, unsigned split)
{
    if (split >= GW_CLUSTER_NSLOTS)
        snprintf(f->slots, sizeof(f->slots),
                 "*1\r\n*3\r\n:0\r\n:16383\r\n*2\r\n$9\r\n127.0.0.1\r\n:%d\r\n", a->port);
    else
        snprintf(f->slots, sizeof(f->slots),
                 "*2\r\n*3\r\n:0\r\n:%u\r\n*2\r\n$9\r\n127.0.0.1\r\n:%d\r\n"
                 "*3\r\n:%u\r\n:16383\r\n*2\r\n$9\r\n127.0.0.1\r\n:%d\r\n",
                 split - 1, a->port, split, b->port);
}

/* ---- driving the loop ---- */

static void
on_tick(uv_timer_t *t)
{
    (void)t;
}

/* Runs the loop until *FLAG is nonzero or MS pass; returns *FLAG. */
static int
run_until(const int *flag, uint64_t ms)
{
    uv_timer_t tick;
    uv_timer_init(loop, &tick);
    uv_timer_start(&tick, on_tick, 5, 5);
    uv_update_time(loop);
    uint64_t end = uv_now(loop) + ms;
    while (!*flag && uv_now(loop) < end)
        uv_run(loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&tick, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
    return *flag;
}

static void
run_for(uint64_t ms)
{
    int never = 0;
    run_until(&never, ms);
}

typedef struct {
    int done, err, type;
    char str[64];
    long long integer;
} result_t;

static void
on_result(int err, const redisReply *r, void *arg)
{
    result_t *res = arg;
    res->done++;
    res->err = err;
    if (r) {
        res->type = r->type;
        res->integer = r->integer;
        snprintf(res->str, sizeof(res->str), "%.*s", (int)(r->str ? r->len : 0),
                 r->str ? r->str : "");
    }
}

static gw_rcluster_cmd_t *
get(gw_rcluster_t *cl, const char *key, result_t *res)
{
    const char *v[2] = {"GET", key};
    size_t l[2] = {3, strlen(key)};
    gw_rconn_req_t req = {.argc = 2, .argv = v, .lens = l};
    memset(res, 0, sizeof(*res));
    return gw_rcluster_send(cl, &req, on_result, res);
}

/* A key whose slot is below (LOW) or at least 8192. */
static const char *
key_in(int low, char *buf, size_t len)
{
    for (int i = 0;; i++) {
        snprintf(buf, len, "user%d", i);
        if ((gw_cluster_keyslot(buf, strlen(buf)) < 8192) == low)
            return buf;
    }
}

static void
test_cluster(void)
{
    fake_t a, b, bad;
    fake_start(&a, "A");
    fake_start(&b, "B");
    fake_start(&bad, "bad");
    set_slots(&a, &a, &b, 8192);
    set_slots(&b, &a, &b, 8192);
    snprintf(bad.slots, sizeof(bad.slots), "*1\r\n*3\r\n:5\r\n:2\r\n*2\r\n$1\r\nx\r\n:1\r\n");

    char err[128];
    /* TEST_VERBOSE=1 shows the client's log lines */
    gw_log_t *log = gw_log_open("stderr", getenv("TEST_VERBOSE") ? GW_LOG_DEBUG : GW_LOG_ERROR, err,
                                sizeof(err));
    gw_cluster_addr_t seeds[3] = {{"127.0.0.1", 1}, {"127.0.0.1", bad.port}, {"127.0.0.1", a.port}};
    gw_rcluster_opts_t o = {.seeds = seeds,
                            .nseeds = 3,
                            .timeout_ms = 500,
                            .connect_timeout_ms = 200,
                            .refresh_gap_ms = 300,
                            .retry_ms = 20};
    gw_rcluster_t *cl = gw_rcluster_new(loop, &o, log);
    ok(cl != NULL, "client made");
    ok(!gw_rcluster_ready(cl), "no map before any answer");
    result_t r;
    ok(get(cl, "k", &r) == NULL, "a command before the map is refused at once");

    const gw_rcluster_stats_t *st = gw_rcluster_stats(cl);
    int ready = 0;
    uv_update_time(loop);
    uint64_t t0 = uv_now(loop);
    while (!ready && uv_now(loop) - t0 < 3000) {
        run_for(10);
        ready = gw_rcluster_ready(cl);
    }
    ok(ready, "a map after a refused seed and a bad reply");
    is_int(bad.n_slots, 1, "the seed with the bad reply was asked");
    is_int(a.n_slots, 1, "then the next seed");
    is_int(st->maps, 1, "one map");

    char klo[32], khi[32];
    key_in(1, klo, sizeof(klo));
    key_in(0, khi, sizeof(khi));
    int both = 0;
    uv_update_time(loop);
    t0 = uv_now(loop);
    while (!both && uv_now(loop) - t0 < 2000) {
        run_for(10);
        both = gw_rcluster_key_ready(cl, klo, strlen(klo)) &&
               gw_rcluster_key_ready(cl, khi, strlen(khi));
    }
    ok(both, "both masters connected from the map");

    ok(get(cl, klo, &r) != NULL, "low key sent");
    ok(r.done == 0, "the callback does not run inside send");
    run_until(&r.done, 1000);
    is_str(r.str, "A", "a low slot goes to A");
    ok(get(cl, khi, &r) != NULL, "high key sent");
    run_until(&r.done, 1000);
    is_str(r.str, "B", "a high slot goes to B");

    /* ASK: that command only, after ASKING; the map stays */
    snprintf(a.ask_to, sizeof(a.ask_to), "127.0.0.1:%d", b.port);
    get(cl, klo, &r);
    run_until(&r.done, 1000);
    is_str(r.str, "B", "ASK: answered by the node named");
    is_int(b.n_asking, 1, "ASK: ASKING went first");
    is_int(st->ask, 1, "ASK counted");
    a.ask_to[0] = '\0';
    get(cl, klo, &r);
    run_until(&r.done, 1000);
    is_str(r.str, "A", "after an ASK the slot stays with A");

    /* TRYAGAIN: one backoff, then the answer; twice: the error */
    a.tryagain = 1;
    get(cl, klo, &r);
    run_until(&r.done, 1000);
    is_str(r.str, "A", "TRYAGAIN once: retried after a backoff");
    a.tryagain = 2;
    get(cl, klo, &r);
    run_until(&r.done, 1000);
    ok(r.type == REDIS_REPLY_ERROR && strncmp(r.str, "TRYAGAIN", 8) == 0,
       "TRYAGAIN twice: the caller gets it (%s)", r.str);
    a.tryagain = 0;

    /* NOSCRIPT: EVAL on that node, no refresh, no redirect */
    uint64_t asked = st->slots_asked;
    gw_rconn_script_t script;
    gw_rconn_script_init(&script, "return 1");
    const char *v[2] = {klo, "1"};
    size_t l[2] = {strlen(klo), 1};
    gw_rconn_req_t ev = {.argc = 2, .argv = v, .lens = l, .script = &script, .nkeys = 1};
    memset(&r, 0, sizeof(r));
    ok(gw_rcluster_send(cl, &ev, on_result, &r) != NULL, "script sent");
    run_until(&r.done, 1000);
    ok(r.err == 0 && r.type == REDIS_REPLY_INTEGER && r.integer == 1, "NOSCRIPT: EVAL answered");
    is_int(a.n_eval, 1, "the EVAL went to A");
    is_int(b.n_eval, 0, "not to B");
    is_int(st->slots_asked, asked, "NOSCRIPT asks for no map");

    /* MOVED storm: every low key moved to B; one refresh, not one per command */
    run_for(350); /* past the gap since the first map */
    snprintf(a.moved_to, sizeof(a.moved_to), "127.0.0.1:%d", b.port);
    set_slots(&a, &b, &b, GW_CLUSTER_NSLOTS); /* every slot on B */
    snprintf(b.slots, sizeof(b.slots), "%s", a.slots);
    asked = st->slots_asked;
    result_t many[20];
    int sent = 0, all = 0;
    for (int i = 0; i < 20; i++) {
        char k[64];
        snprintf(k, sizeof(k), "{%s}.%d", klo, i);
        sent += get(cl, k, &many[i]) != NULL;
    }
    is_int(sent, 20, "twenty commands for low keys sent to A");
    uv_update_time(loop);
    t0 = uv_now(loop);
    while (all < 20 && uv_now(loop) - t0 < 2000) {
        run_for(10);
        all = 0;
        for (int i = 0; i < 20; i++)
            all += many[i].done && strcmp(many[i].str, "B") == 0;
    }
    is_int(all, 20, "every one answered by B after MOVED");
    ok(st->moved >= 1, "MOVED counted (%llu)", (unsigned long long)st->moved);
    run_for(100);
    is_int(st->slots_asked - asked, 1, "one CLUSTER SLOTS for the whole storm");
    get(cl, klo, &r);
    run_until(&r.done, 1000);
    is_str(r.str, "B", "the new map sends low keys to B at once");
    uint64_t moved = st->moved;
    run_for(50);
    is_int(st->moved, moved, "no further MOVED");
    run_for(400);
    is_int(st->slots_asked - asked, 1, "no refresh after the storm is over");

    /* closing with a command out: ECLOSED from inside close */
    a.moved_to[0] = '\0';
    get(cl, khi, &r);
    gw_rcluster_close(cl);
    ok(r.done == 1 && r.err == GW_RCONN_ECLOSED, "close fails what is out with ECLOSED");
    fake_stop(&a);
    fake_stop(&b);
    fake_stop(&bad);
    run_for(50);
    gw_log_close(log);
}

/* ---- the limiters over the cluster client ---- */

typedef struct {
    int done;
    gw_limit_result_t res;
} lres_t;

static void
on_limit(const gw_limit_result_t *res, void *arg)
{
    lres_t *r = arg;
    r->done = 1;
    r->res = *res;
}

/* One take; code -1 when no answer came within 2 s. */
static gw_limit_result_t
ltake(gw_limiter_t *l, const char *key)
{
    lres_t r;
    memset(&r, 0, sizeof(r));
    gw_limit_wait_t *w = NULL;
    if (gw_limiter_take(l, key, strlen(key), &r.res, on_limit, &r, &w) == GW_AGAIN &&
        !run_until(&r.done, 2000)) {
        gw_limit_wait_cancel(w);
        r.res.code = -1;
    }
    return r.res;
}

static int
node_ready(gw_rcluster_t *cl, int port)
{
    gw_rcluster_node_t nodes[16];
    size_t n = gw_rcluster_nodes(cl, nodes, 16);
    for (size_t i = 0; i < n; i++)
        if (nodes[i].addr->port == port)
            return nodes[i].ready;
    return -1;
}

static void
test_limiter(void)
{
    fake_t a, c, d;
    fake_start(&a, "A");
    fake_start(&c, "C");
    fake_start(&d, "D");
    set_slots(&a, &a, &a, GW_CLUSTER_NSLOTS);
    char err[128];
    gw_log_t *log = gw_log_open("stderr", getenv("TEST_VERBOSE") ? GW_LOG_DEBUG : GW_LOG_ERROR, err,
                                sizeof(err));
    gw_cluster_addr_t seeds[1] = {{"127.0.0.1", a.port}};
    gw_rcluster_opts_t o = {
        .seeds = seeds, .nseeds = 1, .timeout_ms = 300, .retry_ms = 20, .refresh_gap_ms = 200};
    gw_redis_t *rd = gw_redis_new_cluster(loop, &o, log);
    ok(rd != NULL && gw_redis_cluster(rd) != NULL, "gw_redis in cluster mode");
    uv_update_time(loop);
    uint64_t t0 = uv_now(loop);
    while (!gw_redis_key_ready(rd, "x", 1) && uv_now(loop) - t0 < 3000)
        run_for(10);
    ok(gw_redis_key_ready(rd, "x", 1), "the key's master is ready");

    gw_limit_conf_t pc = {.kind = GW_LIMIT_PERIOD,
                          .quota = 3,
                          .period = 60,
                          .prefix = "p:",
                          .prefix_len = 2,
                          .policy = GW_LIMIT_USE_REDIS,
                          .on_redis_error = GW_LIMIT_ON_ERR_LOCAL,
                          .log = log};
    gw_limiter_t *l = gw_limiter_new(&pc, rd, 1, loop);
    a.script_reply = "*3\r\n:1\r\n:1\r\n:60\r\n";
    gw_limit_result_t r = ltake(l, "u1");
    ok(r.code == 1 && r.source == GW_LIMIT_SRC_REDIS, "a good reply counts in Redis (code %d)",
       r.code);

    /* replies that are not the script's answer: the fallback, a log line */
    static char huge[100000 * 4 + 16];
    size_t n = (size_t)snprintf(huge, sizeof(huge), "*100000\r\n");
    for (int i = 0; i < 100000; i++, n += 4)
        memcpy(huge + n, ":1\r\n", 4);
    huge[n] = '\0';
    const char *bad[] = {":5\r\n",
                         "*3\r\n$1\r\na\r\n$1\r\nb\r\n:1\r\n",
                         "*3\r\n:1\r\n$-1\r\n:60\r\n",
                         "*2\r\n:1\r\n:1\r\n",
                         "*3\r\n:1\r\n:1\r\n*1\r\n:1\r\n",
                         huge,
                         "$-1\r\n",
                         "*-1\r\n",
                         "-ERR unexpected\r\n",
                         "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"};
    const char *what[] = {
        "an integer",      "strings", "a nil in the array", "too short", "a nested array",
        "100000 elements", "a nil",   "a nil array",        "an error",  "WRONGTYPE"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        a.script_reply = bad[i];
        r = ltake(l, "u2");
        ok(r.code > 0 && r.source == GW_LIMIT_SRC_LOCAL, "bad reply (%s): counted locally",
           what[i]);
    }
    ok(gw_redis_key_ready(rd, "u2", 2), "bad replies are not a node failure");
    a.script_reply = "*3\r\n:1\r\n:1\r\n:60\r\n";
    r = ltake(l, "u3");
    ok(r.source == GW_LIMIT_SRC_REDIS, "and the next good reply counts in Redis");
    gw_limiter_free(l);

    /* an empty token key: "{}.tokens" and "{}.ts" would be two slots */
    gw_limit_conf_t tc = {.kind = GW_LIMIT_TOKEN,
                          .rate = 1,
                          .burst = 2,
                          .prefix = "",
                          .prefix_len = 0,
                          .policy = GW_LIMIT_USE_REDIS,
                          .on_redis_error = GW_LIMIT_ON_ERR_DENY};
    l = gw_limiter_new(&tc, rd, 1, loop);
    int keyed = a.n_keyed;
    r = ltake(l, "");
    ok(r.allowed && r.source == GW_LIMIT_SRC_LOCAL, "empty token key: counted locally");
    is_int(a.n_keyed, keyed, "  nothing sent to the cluster");
    gw_limiter_free(l);

    /* MOVED to a node never talked to: the command waits for the connection */
    gw_rcluster_t *cl = gw_redis_cluster(rd);
    snprintf(a.moved_to, sizeof(a.moved_to), "127.0.0.1:%d", c.port);
    result_t g;
    memset(&g, 0, sizeof(g));
    const char *v[2] = {"GET", "k1"};
    size_t lens[2] = {3, 2};
    ok(gw_redis_command(rd, 2, v, lens, on_result, &g) != NULL, "GET sent");
    run_until(&g.done, 1000);
    ok(g.done && g.err == 0 && strcmp(g.str, "C") == 0,
       "MOVED to a new node: answered there once connected (err %d, %s)", g.err, g.str);
    a.moved_to[0] = '\0';
    set_slots(&c, &a, &a, GW_CLUSTER_NSLOTS);

    /* ASK to a node that never answers: the command ends at its deadline,
     * which was shorter than a whole timeout there, so the node is not
     * suspect */
    d.silent = 1;
    snprintf(a.ask_to, sizeof(a.ask_to), "127.0.0.1:%d", d.port);
    memset(&g, 0, sizeof(g));
    v[1] = "k2";
    uv_update_time(loop);
    t0 = uv_now(loop);
    gw_redis_command(rd, 2, v, lens, on_result, &g);
    run_until(&g.done, 1000);
    uint64_t took = uv_now(loop) - t0;
    ok(g.done && g.err == GW_RCONN_ETIMEDOUT, "ASK to a silent node: timed out (err %d)", g.err);
    ok(took <= 400, "  within the one deadline (%llu ms)", (unsigned long long)took);
    is_int(node_ready(cl, d.port), 1, "  the silent node is not marked suspect");
    a.ask_to[0] = '\0';

    run_for(250);
    const gw_rcluster_stats_t *st = gw_rcluster_stats(cl);
    is_int(st->refreshes[GW_RCLUSTER_R_START], 1, "refreshes by reason: one first map");
    ok(st->refreshes[GW_RCLUSTER_R_MOVED] >= 1, "  and one for the MOVED");
    gw_rcluster_stats_t d1, d2;
    gw_rcluster_stats_take(cl, &d1);
    gw_rcluster_stats_take(cl, &d2);
    ok(d1.moved >= 1 && d1.ask >= 1 && d2.moved == 0 && d2.ask == 0,
       "stats_take: counts since the last take");

    gw_redis_close(rd);
    fake_stop(&a);
    fake_stop(&c);
    fake_stop(&d);
    run_for(50);
    gw_log_close(log);
}

static int
incr_keys(int n, int nseeds, char **seedv)
{
    gw_cluster_addr_t seeds[16];
    if (n < 1 || n > 1000 || nseeds < 1 || nseeds > 16)
        return 2;
    for (int i = 0; i < nseeds; i++) {
        if (gw_cluster_addr_parse(seedv[i], strlen(seedv[i]), NULL, &seeds[i]) != GW_OK)
            return 2;
    }
    char err[128];
    gw_log_t *log = gw_log_open("stderr", GW_LOG_INFO, err, sizeof(err));
    gw_rcluster_opts_t o = {.seeds = seeds, .nseeds = (size_t)nseeds, .timeout_ms = 2000};
    gw_rcluster_t *cl = gw_rcluster_new(loop, &o, log);
    char keys[1000][16];
    result_t *res = calloc((size_t)n, sizeof(*res));
    int ready = 0;
    uv_update_time(loop);
    uint64_t t0 = uv_now(loop);
    while (!ready && uv_now(loop) - t0 < 5000) {
        run_for(10);
        ready = gw_rcluster_ready(cl);
        for (int i = 0; ready && i < n; i++) {
            snprintf(keys[i], sizeof(keys[i]), "user%d", i + 1);
            ready = gw_rcluster_key_ready(cl, keys[i], strlen(keys[i]));
        }
    }
    gw_rconn_script_t script;
    gw_rconn_script_init(&script, "return redis.call('INCR', KEYS[1])");
    for (int i = 0; i < n; i++) {
        const char *v[1] = {keys[i]};
        size_t l[1] = {strlen(keys[i])};
        gw_rconn_req_t req = {.argc = 1, .argv = v, .lens = l, .script = &script, .nkeys = 1};
        if (gw_rcluster_send(cl, &req, on_result, &res[i]) == NULL)
            res[i].done = -1;
    }
    int all = 0;
    t0 = uv_now(loop);
    while (!all && uv_now(loop) - t0 < 5000) {
        run_for(10);
        all = 1;
        for (int i = 0; i < n; i++)
            all = all && res[i].done != 0;
    }
    for (int i = 0; i < n; i++) {
        if (res[i].done == 1 && res[i].err == 0 && res[i].type == REDIS_REPLY_INTEGER)
            printf("%s\t%lld\n", keys[i], res[i].integer);
        else
            printf("%s\tfailed done=%d err=%d %s\n", keys[i], res[i].done, res[i].err, res[i].str);
    }
    const gw_rcluster_stats_t *st = gw_rcluster_stats(cl);
    printf("stats maps=%llu slots_asked=%llu moved=%llu ask=%llu\n", (unsigned long long)st->maps,
           (unsigned long long)st->slots_asked, (unsigned long long)st->moved,
           (unsigned long long)st->ask);
    gw_rcluster_close(cl);
    run_for(20);
    free(res);
    gw_log_close(log);
    return 0;
}

int
main(int argc, char **argv)
{
    loop = uv_default_loop();
    if (argc > 3 && strcmp(argv[1], "--incr") == 0)
        return incr_keys(atoi(argv[2]), argc - 3, argv + 3);
    test_cluster();
    test_limiter();
    done_testing();
}
