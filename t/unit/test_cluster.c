/*
 * Redis Cluster logic: CRC16 and key slots, redirects, the slot map from
 * CLUSTER SLOTS replies (fed as RESP through hiredis's reader), the
 * refresh rule. With --keyslot KEY... it prints "KEY<TAB>SLOT" lines
 * instead, and with --map the map it builds from a saved CLUSTER SLOTS
 * reply: t/98-redis-cluster.t compares both with a real cluster.
 */
#include <stdlib.h>
#include <string.h>

#include "gw_cluster.h"
#include "gw_core.h"
#include "tap.h"

static unsigned
slot_of(const char *key)
{
    return gw_cluster_keyslot(key, strlen(key));
}

static void
test_slots(void)
{
    is_int(gw_cluster_crc16("123456789", 9), 0x31c3, "CRC16/XMODEM check value");
    is_int(gw_cluster_crc16("", 0), 0, "CRC16 of nothing");
    is_int(slot_of(""), 0, "the empty key is slot 0");
    is_int(slot_of("somekey"), 11058, "somekey");
    is_int(slot_of("foo{hash_tag}"), 2515, "foo{hash_tag}");
    is_int(slot_of("foo{hash_tag}"), slot_of("hash_tag"), "a tag hashes only the tag");
    is_int(slot_of("{user1}.tokens"), slot_of("user1"), "go-zero token key: the tag");
    is_int(slot_of("{user1}.tokens"), slot_of("{user1}.ts"), "go-zero token keys share a slot");
    is_int(slot_of("{}x"), gw_cluster_crc16("{}x", 3) & 16383, "{}: empty tag, whole key");
    is_int(slot_of("{}{a}"), gw_cluster_crc16("{}{a}", 5) & 16383,
           "{}{a}: the first tag is empty, so the whole key");
    is_int(slot_of("{a}{b}"), slot_of("a"), "{a}{b}: the first tag");
    is_int(slot_of("x{"), gw_cluster_crc16("x{", 2) & 16383, "unterminated {: whole key");
    is_int(slot_of("x}{y"), gw_cluster_crc16("x}{y", 4) & 16383, "} before {: whole key");
    is_int(slot_of("x}{y}"), slot_of("y"), "} before the tag does not matter");
    is_int(slot_of("{{a}}"), slot_of("{a"), "{{a}}: the tag is \"{a\"");
    is_int(slot_of("a{b}c"), slot_of("b"), "a tag in the middle");
    /* binary-safe: a NUL inside the key counts */
    is_int(gw_cluster_keyslot("a\0b", 3), gw_cluster_crc16("a\0b", 3) & 16383, "NUL in the key");
    ok(gw_cluster_keyslot("a\0b", 3) != slot_of("a"), "NUL does not end the key");
    unsigned max = 0;
    for (int i = 0; i < 2000; i++) {
        char k[32];
        snprintf(k, sizeof(k), "limit:period:r:user%d", i);
        unsigned s = slot_of(k);
        if (s > max)
            max = s;
    }
    ok(max < 16384 && max > 16000, "slots stay below 16384 and use the range (max %u)", max);
}

static void
test_errors(void)
{
    static const struct {
        const char *msg;
        gw_cluster_err_t kind;
    } kinds[] = {{"MOVED 1 a:1", GW_CLUSTER_EMOVED},
                 {"-ASK 1 a:1", GW_CLUSTER_EASK},
                 {"TRYAGAIN Multiple keys request during rehashing of slot", GW_CLUSTER_ETRYAGAIN},
                 {"CLUSTERDOWN The cluster is down", GW_CLUSTER_ECLUSTERDOWN},
                 {"CLUSTERDOWN Hash slot not served", GW_CLUSTER_ECLUSTERDOWN},
                 {"NOSCRIPT No matching script. Please use EVAL.", GW_CLUSTER_ENOSCRIPT},
                 {"ERR unknown command", GW_CLUSTER_EOTHER},
                 {"MOVEDX 1 a:1", GW_CLUSTER_EOTHER},
                 {"ASKING", GW_CLUSTER_EOTHER},
                 {"MOVED", GW_CLUSTER_EMOVED},
                 {"", GW_CLUSTER_EOTHER},
                 {"-", GW_CLUSTER_EOTHER}};
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
        is_int(gw_cluster_err_kind(kinds[i].msg, strlen(kinds[i].msg)), kinds[i].kind,
               "kind of \"%s\"", kinds[i].msg);

    gw_cluster_addr_t asked = {"10.0.0.9", 7005}, to;
    unsigned slot = 0;
    static const struct {
        const char *msg;
        gw_cluster_err_t kind;
        unsigned slot;
        const char *host;
        int port;
    } good[] = {{"MOVED 3999 127.0.0.1:6381", GW_CLUSTER_EMOVED, 3999, "127.0.0.1", 6381},
                {"-MOVED 0 127.0.0.1:1", GW_CLUSTER_EMOVED, 0, "127.0.0.1", 1},
                {"ASK 16383 redis-2.example:7000", GW_CLUSTER_EASK, 16383, "redis-2.example", 7000},
                {"MOVED 12 :7002", GW_CLUSTER_EMOVED, 12, "10.0.0.9", 7002},
                {"MOVED 12 ::1:7002", GW_CLUSTER_EMOVED, 12, "::1", 7002},
                {"ASK 12 [fd00::1]:65535", GW_CLUSTER_EASK, 12, "fd00::1", 65535}};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        memset(&to, 0, sizeof(to));
        gw_cluster_err_t k =
            gw_cluster_redirect_parse(good[i].msg, strlen(good[i].msg), &asked, &slot, &to);
        ok(k == good[i].kind && slot == good[i].slot && strcmp(to.host, good[i].host) == 0 &&
               to.port == good[i].port,
           "redirect \"%s\" -> %u %s:%d", good[i].msg, slot, to.host, to.port);
    }
    static const char *const bad[] = {"MOVED",
                                      "MOVED 1",
                                      "MOVED 1 ",
                                      "MOVED x a:1",
                                      "MOVED -1 a:1",
                                      "MOVED 16384 a:1",
                                      "MOVED 99999999999 a:1",
                                      "MOVED 1 a:0",
                                      "MOVED 1 a:65536",
                                      "MOVED 1 a:",
                                      "MOVED 1 a:1x",
                                      "MOVED 1 a",
                                      "MOVED 1 a b:1",
                                      "MOVED 1 a/b:1",
                                      "MOVED  1 a:1",
                                      "TRYAGAIN 1 a:1",
                                      "ERR MOVED 1 a:1"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        slot = 77;
        is_int(gw_cluster_redirect_parse(bad[i], strlen(bad[i]), &asked, &slot, &to),
               GW_CLUSTER_EOTHER, "not a redirect: \"%s\"", bad[i]);
        is_int(slot, 77, "  and nothing written");
    }
    is_int(gw_cluster_redirect_parse("MOVED 1 :7000", 13, NULL, &slot, &to), GW_CLUSTER_EOTHER,
           "an empty host needs the node asked");
    char longhost[400];
    memset(longhost, 'h', sizeof(longhost));
    int n = snprintf(longhost, sizeof(longhost), "MOVED 1 ");
    longhost[n] = 'h';
    memcpy(longhost + 300, ":7000", 6);
    is_int(gw_cluster_redirect_parse(longhost, strlen(longhost), &asked, &slot, &to),
           GW_CLUSTER_EOTHER, "a host longer than 255 bytes is refused");
}

/* RESP text to a reply, through hiredis's reader (no I/O). */
static redisReply *
resp(const char *text, size_t len)
{
    redisReader *r = redisReaderCreate();
    void *reply = NULL;
    if (redisReaderFeed(r, text, len) != REDIS_OK || redisReaderGetReply(r, &reply) != REDIS_OK)
        reply = NULL;
    redisReaderFree(r);
    return reply;
}

static gw_cluster_map_t *
map_of(const char *text, char *why, size_t whylen)
{
    static const gw_cluster_addr_t asked = {"127.0.0.1", 7000};
    redisReply *r = resp(text, strlen(text));
    ok(r != NULL, "RESP parsed");
    why[0] = '\0';
    gw_cluster_map_t *m = gw_cluster_map_from_slots(r, &asked, why, whylen);
    if (r)
        freeReplyObject(r);
    return m;
}

static const char *
owner_str(const gw_cluster_map_t *m, unsigned slot, char *buf, size_t len)
{
    int i = gw_cluster_map_owner(m, slot);
    if (i < 0)
        return "none";
    const gw_cluster_addr_t *a = gw_cluster_map_node(m, (size_t)i);
    snprintf(buf, len, "%s:%d", a->host, a->port);
    return buf;
}

static void
test_map(void)
{
    char why[200], b[300];
    /* three masters with a replica each, as Redis 7 answers (the ids cut short) */
    const char *three = "*3\r\n"
                        "*4\r\n:0\r\n:5460\r\n"
                        "*3\r\n$9\r\n127.0.0.1\r\n:7000\r\n$2\r\nm1\r\n"
                        "*3\r\n$9\r\n127.0.0.1\r\n:7004\r\n$2\r\nr1\r\n"
                        "*4\r\n:5461\r\n:10922\r\n"
                        "*4\r\n$9\r\n127.0.0.1\r\n:7001\r\n$2\r\nm2\r\n*0\r\n"
                        "*3\r\n$9\r\n127.0.0.1\r\n:7005\r\n$2\r\nr2\r\n"
                        "*4\r\n:10923\r\n:16383\r\n"
                        "*3\r\n$0\r\n\r\n:7002\r\n$2\r\nm3\r\n"
                        "*3\r\n$9\r\n127.0.0.1\r\n:7003\r\n$2\r\nr3\r\n";
    gw_cluster_map_t *m = map_of(three, why, sizeof(why));
    ok(m != NULL, "three masters: accepted (%s)", why);
    if (m == NULL)
        return;
    is_int(gw_cluster_map_nnodes(m), 3, "three masters, replicas not listed");
    is_int(gw_cluster_map_covered(m), 16384, "every slot covered");
    is_str(owner_str(m, 0, b, sizeof(b)), "127.0.0.1:7000", "slot 0");
    is_str(owner_str(m, 5460, b, sizeof(b)), "127.0.0.1:7000", "slot 5460");
    is_str(owner_str(m, 5461, b, sizeof(b)), "127.0.0.1:7001", "slot 5461");
    is_str(owner_str(m, 16383, b, sizeof(b)), "127.0.0.1:7002",
           "slot 16383: an empty host is the node asked");
    is_int(gw_cluster_map_owner(m, 16384), -1, "slot 16384 is out of range");

    /* MOVED patches one slot */
    gw_cluster_addr_t to = {"127.0.0.1", 7001};
    is_int(gw_cluster_map_move(m, 100, &to), GW_OK, "move slot 100 to a known master");
    is_str(owner_str(m, 100, b, sizeof(b)), "127.0.0.1:7001", "  slot 100 moved");
    is_str(owner_str(m, 101, b, sizeof(b)), "127.0.0.1:7000", "  slot 101 not");
    gw_cluster_addr_t fresh = {"127.0.0.1", 7009};
    is_int(gw_cluster_map_move(m, 101, &fresh), GW_OK, "move to a new master");
    is_int(gw_cluster_map_nnodes(m), 4, "  which is added");
    is_int(gw_cluster_map_covered(m), 16384, "  still all covered");
    is_int(gw_cluster_map_move(m, 16384, &fresh), GW_ERROR, "move of slot 16384 refused");
    gw_cluster_map_free(m);

    /* holes: slots without a master, "?" addresses */
    m = map_of("*2\r\n*3\r\n:0\r\n:99\r\n"
               "*3\r\n$7\r\n1.2.3.4\r\n:7000\r\n$2\r\nm1\r\n"
               "*3\r\n:200\r\n:299\r\n*3\r\n$1\r\n?\r\n:7001\r\n$2\r\nm2\r\n",
               why, sizeof(why));
    ok(m != NULL, "holes: accepted (%s)", why);
    if (m) {
        is_int(gw_cluster_map_covered(m), 100, "  100 slots covered");
        is_int(gw_cluster_map_owner(m, 150), -1, "  slot 150 is a hole");
        is_int(gw_cluster_map_owner(m, 250), -1, "  slot 250: master address unknown");
        gw_cluster_addr_t a = {"1.2.3.4", 7000};
        is_int(gw_cluster_map_move(m, 150, &a), GW_OK, "  a MOVED fills a hole");
        is_int(gw_cluster_map_covered(m), 101, "  and counts");
        gw_cluster_map_free(m);
    }

    static const struct {
        const char *resp, *why;
    } bad[] = {
        {"$2\r\nhi\r\n", "the reply is not an array"},
        {"-ERR This instance has cluster support disabled\r\n", "the reply is not an array"},
        {"*0\r\n", "no slot has a master"},
        {"*1\r\n:5\r\n", "entry 0 is not [start, end, master, ...]"},
        {"*1\r\n*2\r\n:0\r\n:5\r\n", "entry 0 is not [start, end, master, ...]"},
        {"*1\r\n*3\r\n$1\r\n0\r\n:5\r\n"
         "*3\r\n$7\r\n1.2.3.4\r\n:1\r\n$2\r\nid\r\n",
         "entry 0 is not [start, end, master, ...]"},
        {"*1\r\n*3\r\n:5\r\n:4\r\n"
         "*3\r\n$7\r\n1.2.3.4\r\n:1\r\n$2\r\nid\r\n",
         "entry 0: bad slot range 5-4"},
        {"*1\r\n*3\r\n:-1\r\n:4\r\n"
         "*3\r\n$7\r\n1.2.3.4\r\n:1\r\n$2\r\nid\r\n",
         "entry 0: bad slot range -1-4"},
        {"*1\r\n*3\r\n:0\r\n:16384\r\n"
         "*3\r\n$7\r\n1.2.3.4\r\n:1\r\n$2\r\nid\r\n",
         "entry 0: bad slot range 0-16384"},
        {"*2\r\n*3\r\n:0\r\n:10\r\n"
         "*3\r\n$7\r\n1.2.3.4\r\n:1\r\n$1\r\na\r\n"
         "*3\r\n:10\r\n:20\r\n"
         "*3\r\n$7\r\n1.2.3.5\r\n:1\r\n$1\r\nb\r\n",
         "entry 1: slot 10 is given twice"},
        {"*1\r\n*3\r\n:0\r\n:1\r\n:7\r\n", "entry 0: the master is not [host, port, ...]"},
        {"*1\r\n*3\r\n:0\r\n:1\r\n*1\r\n$1\r\na\r\n",
         "entry 0: the master is not [host, port, ...]"},
        {"*1\r\n*3\r\n:0\r\n:1\r\n*2\r\n$1\r\na\r\n$4\r\n7000\r\n",
         "entry 0: the master is not [host, port, ...]"},
        {"*1\r\n*3\r\n:0\r\n:1\r\n*2\r\n$1\r\na\r\n:70000\r\n",
         "entry 0: the master is not [host, port, ...]"},
        {"*1\r\n*3\r\n:0\r\n:1\r\n*2\r\n$1\r\na\r\n:0\r\n", "entry 0: bad master address \"a:0\""},
        {"*1\r\n*3\r\n:0\r\n:1\r\n*2\r\n$3\r\na b\r\n:1\r\n",
         "entry 0: bad master address \"a b:1\""},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        redisReply *r = resp(bad[i].resp, strlen(bad[i].resp));
        gw_cluster_addr_t asked = {"127.0.0.1", 7000};
        why[0] = '\0';
        m = gw_cluster_map_from_slots(r, &asked, why, sizeof(why));
        ok(m == NULL && strcmp(why, bad[i].why) == 0, "refused: %s", bad[i].why);
        if (m != NULL || strcmp(why, bad[i].why) != 0)
            printf("#   got \"%s\"\n", why);
        gw_cluster_map_free(m);
        if (r)
            freeReplyObject(r);
    }
    gw_cluster_addr_t asked = {"127.0.0.1", 7000};
    static const char nul[] = "*1\r\n*3\r\n:0\r\n:1\r\n*2\r\n$3\r\na\0b\r\n:1\r\n";
    redisReply *nr = resp(nul, sizeof(nul) - 1);
    m = gw_cluster_map_from_slots(nr, &asked, why, sizeof(why));
    ok(m == NULL && strcmp(why, "entry 0: bad master address \"a:1\"") == 0,
       "refused: a NUL in the host (%s)", why);
    freeReplyObject(nr);
    ok(gw_cluster_map_from_slots(NULL, &asked, why, sizeof(why)) == NULL, "no reply refused");

    /* bounds: one master per slot up to the limit, then one too many */
    size_t cap = 64 * (GW_CLUSTER_MAX_NODES + 2), n = 0;
    char *big = malloc(cap);
    n += (size_t)snprintf(big + n, cap - n, "*%d\r\n", GW_CLUSTER_MAX_NODES + 1);
    for (int i = 0; i <= GW_CLUSTER_MAX_NODES; i++)
        n +=
            (size_t)snprintf(big + n, cap - n,
                             "*3\r\n:%d\r\n:%d\r\n*2\r\n$8\r\n10.0.0.1\r\n:%d\r\n", i, i, 1000 + i);
    redisReply *r = resp(big, n);
    m = gw_cluster_map_from_slots(r, &asked, why, sizeof(why));
    ok(m == NULL && strstr(why, "more than 1024 masters") != NULL, "1025 masters refused (%s)",
       why);
    gw_cluster_map_free(m);
    freeReplyObject(r);
    /* the same with 1024 is fine */
    n = (size_t)snprintf(big, cap, "*%d\r\n", GW_CLUSTER_MAX_NODES);
    for (int i = 0; i < GW_CLUSTER_MAX_NODES; i++)
        n +=
            (size_t)snprintf(big + n, cap - n,
                             "*3\r\n:%d\r\n:%d\r\n*2\r\n$8\r\n10.0.0.1\r\n:%d\r\n", i, i, 1000 + i);
    r = resp(big, n);
    m = gw_cluster_map_from_slots(r, &asked, why, sizeof(why));
    ok(m != NULL && gw_cluster_map_nnodes(m) == GW_CLUSTER_MAX_NODES, "1024 masters accepted");
    gw_cluster_addr_t extra = {"10.0.0.2", 1};
    if (m)
        is_int(gw_cluster_map_move(m, 5000, &extra), GW_ERROR, "  a MOVED to a 1025th refused");
    gw_cluster_map_free(m);
    freeReplyObject(r);
    free(big);

    /* more ranges than slots */
    cap = 16 * 16400;
    big = malloc(cap);
    n = (size_t)snprintf(big, cap, "*16385\r\n");
    for (int i = 0; i < 16385; i++)
        n += (size_t)snprintf(big + n, cap - n, ":1\r\n");
    r = resp(big, n);
    m = gw_cluster_map_from_slots(r, &asked, why, sizeof(why));
    ok(m == NULL && strcmp(why, "16385 ranges for 16384 slots") == 0, "16385 ranges refused");
    freeReplyObject(r);
    free(big);
}

static void
test_refresh(void)
{
    gw_cluster_refresh_t r;
    gw_cluster_refresh_init(&r, 1000);
    ok(gw_cluster_refresh_next(&r, 0) == UINT64_MAX, "nothing pending: no timer");
    is_int(gw_cluster_refresh_take(&r, 0), 0, "nothing pending: no start");
    gw_cluster_refresh_want(&r);
    is_int(gw_cluster_refresh_next(&r, 5), 0, "the first refresh may start at once");
    is_int(gw_cluster_refresh_take(&r, 5), 1, "  and starts");
    is_int(gw_cluster_refresh_take(&r, 5), 0, "  only once");
    gw_cluster_refresh_want(&r);
    is_int(gw_cluster_refresh_take(&r, 3000), 0, "in flight: a second waits, however late");
    ok(gw_cluster_refresh_next(&r, 3000) == UINT64_MAX, "  with no timer (done() decides)");
    gw_cluster_refresh_done(&r);
    is_int(gw_cluster_refresh_take(&r, 3000), 1, "done: the pending one starts (gap passed)");
    gw_cluster_refresh_done(&r);
    gw_cluster_refresh_want(&r);
    is_int(gw_cluster_refresh_take(&r, 3200), 0, "200 ms after the last start: too early");
    is_int(gw_cluster_refresh_next(&r, 3200), 800, "  timer in 800 ms");
    is_int(gw_cluster_refresh_take(&r, 3999), 0, "  not at 999 ms");
    is_int(gw_cluster_refresh_take(&r, 4000), 1, "  at 1000 ms");
    gw_cluster_refresh_done(&r);
    is_int(gw_cluster_refresh_take(&r, 9000), 0, "nothing pending after done");

    /* a storm: a MOVED every millisecond for 10 s, refreshes taking 50 ms */
    gw_cluster_refresh_init(&r, 1000);
    int starts = 0;
    uint64_t done_at = 0, last = 0, mingap = UINT64_MAX;
    for (uint64_t t = 0; t < 10000; t++) {
        if (r.in_flight && t >= done_at)
            gw_cluster_refresh_done(&r);
        gw_cluster_refresh_want(&r);
        if (gw_cluster_refresh_take(&r, t)) {
            if (starts > 0 && t - last < mingap)
                mingap = t - last;
            starts++;
            last = t;
            done_at = t + 50;
        }
    }
    is_int(starts, 10, "storm: 10 refreshes in 10 s");
    is_int(mingap, 1000, "storm: starts 1 s apart");

    /* a slow refresh (3 s): nothing else starts meanwhile */
    gw_cluster_refresh_init(&r, 1000);
    starts = 0;
    for (uint64_t t = 0; t < 10000; t++) {
        if (r.in_flight && t >= done_at)
            gw_cluster_refresh_done(&r);
        gw_cluster_refresh_want(&r);
        if (gw_cluster_refresh_take(&r, t)) {
            starts++;
            done_at = t + 3000;
        }
    }
    is_int(starts, 4, "slow refreshes: one in flight at a time (0, 3, 6, 9 s)");
}

/* --map FILE HOST PORT: the map from the raw CLUSTER SLOTS reply in FILE
 * as "START-END HOST:PORT" lines (holes left out), or "refused: WHY". */
static int
print_map(const char *file, const char *host, int port)
{
    static char buf[1 << 20];
    FILE *f = fopen(file, "rb");
    if (f == NULL)
        return 2;
    size_t n = fread(buf, 1, sizeof(buf), f);
    fclose(f);
    redisReply *r = resp(buf, n);
    gw_cluster_addr_t asked = {.port = port};
    snprintf(asked.host, sizeof(asked.host), "%s", host);
    char why[200];
    gw_cluster_map_t *m = gw_cluster_map_from_slots(r, &asked, why, sizeof(why));
    if (r)
        freeReplyObject(r);
    if (m == NULL) {
        printf("refused: %s\n", why);
        return 1;
    }
    for (unsigned s = 0; s < GW_CLUSTER_NSLOTS;) {
        int o = gw_cluster_map_owner(m, s);
        unsigned e = s;
        while (e + 1 < GW_CLUSTER_NSLOTS && gw_cluster_map_owner(m, e + 1) == o)
            e++;
        if (o >= 0) {
            const gw_cluster_addr_t *a = gw_cluster_map_node(m, (size_t)o);
            printf("%u-%u %s:%d\n", s, e, a->host, a->port);
        }
        s = e + 1;
    }
    gw_cluster_map_free(m);
    return 0;
}

int
main(int argc, char **argv)
{
    if (argc == 5 && strcmp(argv[1], "--map") == 0)
        return print_map(argv[2], argv[3], atoi(argv[4]));
    if (argc > 1 && strcmp(argv[1], "--keyslot") == 0) {
        for (int i = 2; i < argc; i++)
            printf("%s\t%u\n", argv[i], slot_of(argv[i]));
        return 0;
    }
    test_slots();
    test_errors();
    test_map();
    test_refresh();
    done_testing();
}
