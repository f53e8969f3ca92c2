/*
 * gw_resolver: the answer parser on hand-made messages (compression, the
 * additional and authority sections, every kind of damage), and the
 * resolver on a loop (literals answered from the loop, a silent server
 * timing out, cancel and free calling nothing).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "gw_config.h"
#include "gw_log.h"
#include "gw_resolver.h"
#include "gw_watch.h"
#include "tap.h"

/* ---------------------------------------------------------------- messages */

typedef struct {
    unsigned char b[2048];
    size_t n;
} msg_t;

static void
put(msg_t *m, const void *p, size_t n)
{
    memcpy(m->b + m->n, p, n);
    m->n += n;
}

static void
put16(msg_t *m, unsigned v)
{
    unsigned char b[2] = {(unsigned char)(v >> 8), (unsigned char)v};
    put(m, b, 2);
}

static void
put32(msg_t *m, uint32_t v)
{
    put16(m, v >> 16);
    put16(m, v & 0xffff);
}

static void
put_name(msg_t *m, const char *name)
{
    while (*name) {
        const char *dot = strchr(name, '.');
        size_t l = dot ? (size_t)(dot - name) : strlen(name);
        unsigned char c = (unsigned char)l;
        put(m, &c, 1);
        put(m, name, l);
        name += l + (dot ? 1 : 0);
    }
    put(m, "", 1);
}

static void
header(msg_t *m, unsigned an, unsigned ns, unsigned ar, const char *qname, unsigned qtype)
{
    m->n = 0;
    put16(m, 0x1234);
    put16(m, 0x8400);
    put16(m, 1);
    put16(m, an);
    put16(m, ns);
    put16(m, ar);
    put_name(m, qname);
    put16(m, qtype);
    put16(m, 1);
}

/* A record head; NAME NULL: a pointer to the question's name. */
static void
rr_head(msg_t *m, const char *name, unsigned type, uint32_t ttl, unsigned rdlen)
{
    if (name)
        put_name(m, name);
    else
        put16(m, 0xc00c);
    put16(m, type);
    put16(m, 1);
    put32(m, ttl);
    put16(m, rdlen);
}

static void
test_parse_a(void)
{
    msg_t m;
    gw_resolver_parsed_t p;
    header(&m, 2, 0, 0, "Web.Test", GW_RR_A);
    rr_head(&m, NULL, GW_RR_A, 30, 4);
    put(&m, "\x7f\x00\x00\x02", 4);
    rr_head(&m, "web.test", GW_RR_A, 0x80000000u, 4);
    put(&m, "\x7f\x00\x00\x03", 4);
    is_int(gw__resolver_parse(m.b, m.n, GW_RR_A, &p), 0, "A answer parses");
    is_int(p.n, 2, "two records");
    if (p.n == 2) {
        char ip[64];
        const struct sockaddr_in *in4 = (const struct sockaddr_in *)&p.rrs[0].sa;
        inet_ntop(AF_INET, &in4->sin_addr, ip, sizeof(ip));
        is_str(ip, "127.0.0.2", "address");
        is_str(p.rrs[0].name, "web.test", "owner through a pointer, lower case");
        is_int(p.rrs[0].ttl, 30, "ttl");
        is_int(p.rrs[1].ttl, 0, "a TTL with the high bit set reads as 0");
    }
    is_int(p.neg_ttl, -1, "no SOA: no negative TTL");
    gw__resolver_parsed_clear(&p);

    /* records of another type in the answer are not taken */
    header(&m, 1, 0, 0, "web.test", GW_RR_AAAA);
    rr_head(&m, NULL, GW_RR_A, 30, 4);
    put(&m, "\x7f\x00\x00\x02", 4);
    is_int(gw__resolver_parse(m.b, m.n, GW_RR_AAAA, &p), 0, "an A record in an AAAA answer");
    is_int(p.n, 0, "... is skipped");
    gw__resolver_parsed_clear(&p);
}

static void
test_parse_srv(void)
{
    msg_t m;
    gw_resolver_parsed_t p;
    header(&m, 2, 0, 2, "_http._tcp.svc.test", GW_RR_SRV);
    rr_head(&m, NULL, GW_RR_SRV, 10, 6 + 10);
    put16(&m, 1);
    put16(&m, 5);
    put16(&m, 8080);
    put_name(&m, "a.svc.test"); /* 12 bytes, 10 announced */
    rr_head(&m, NULL, GW_RR_SRV, 20, 6 + 1);
    put16(&m, 2);
    put16(&m, 0);
    put16(&m, 80);
    put(&m, "", 1); /* "." */
    rr_head(&m, "a.svc.test", GW_RR_A, 7, 4);
    put(&m, "\x0a\x00\x00\x01", 4);
    rr_head(&m, "a.svc.test", GW_RR_AAAA, 8, 16);
    put(&m, "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\1", 16);
    int rc = gw__resolver_parse(m.b, m.n, GW_RR_SRV, &p);
    is_int(rc, -1, "an SRV whose target overruns its rdata length is refused");
    gw__resolver_parsed_clear(&p);

    header(&m, 2, 0, 2, "_http._tcp.svc.test", GW_RR_SRV);
    rr_head(&m, NULL, GW_RR_SRV, 10, 6 + 12);
    put16(&m, 1);
    put16(&m, 5);
    put16(&m, 8080);
    put_name(&m, "a.svc.test");
    rr_head(&m, NULL, GW_RR_SRV, 20, 6 + 1);
    put16(&m, 2);
    put16(&m, 0);
    put16(&m, 80);
    put(&m, "", 1);
    rr_head(&m, "a.svc.test", GW_RR_A, 7, 4);
    put(&m, "\x0a\x00\x00\x01", 4);
    rr_head(&m, "A.svc.test", GW_RR_AAAA, 8, 16);
    put(&m, "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\1", 16);
    is_int(gw__resolver_parse(m.b, m.n, GW_RR_SRV, &p), 0, "SRV answer parses");
    is_int(p.n, 4, "two SRV and two additional records");
    if (p.n == 4) {
        is_int(p.rrs[0].priority, 1, "priority");
        is_int(p.rrs[0].weight, 5, "weight");
        is_int(p.rrs[0].port, 8080, "port");
        is_str(p.rrs[0].target, "a.svc.test", "target");
        is_str(p.rrs[1].target, "", "\".\" is an empty target");
        ok(p.rrs[2].additional && p.rrs[2].type == GW_RR_A, "additional A");
        ok(p.rrs[3].additional && p.rrs[3].type == GW_RR_AAAA, "additional AAAA");
        is_str(p.rrs[3].name, "a.svc.test", "owner lower case");
    }
    gw__resolver_parsed_clear(&p);
}

static void
test_parse_soa(void)
{
    msg_t m;
    gw_resolver_parsed_t p;
    header(&m, 0, 1, 0, "gone.test", GW_RR_A);
    rr_head(&m, "test", 6, 3600, 9 + 12 + 20);
    put_name(&m, "ns.test");
    put_name(&m, "admin.test");
    put32(&m, 1);
    put32(&m, 3600);
    put32(&m, 600);
    put32(&m, 86400);
    put32(&m, 7);
    is_int(gw__resolver_parse(m.b, m.n, GW_RR_A, &p), 0, "empty answer with an SOA");
    is_int(p.n, 0, "no records");
    is_int(p.neg_ttl, 7, "negative TTL: the SOA minimum");
    gw__resolver_parsed_clear(&p);

    m.b[m.n - 1] = 0; /* minimum 0 */
    put(&m, "x", 1);  /* rdata length no longer matches the message */
    is_int(gw__resolver_parse(m.b, m.n, GW_RR_A, &p), 0, "trailing bytes are ignored");
    is_int(p.neg_ttl, 0, "minimum 0");
    gw__resolver_parsed_clear(&p);
}

static void
test_parse_damage(void)
{
    msg_t m, good;
    gw_resolver_parsed_t p;
    header(&good, 1, 0, 0, "web.test", GW_RR_A);
    rr_head(&good, NULL, GW_RR_A, 30, 4);
    put(&good, "\x7f\x00\x00\x02", 4);

    /* every truncation fails cleanly */
    int bad = 0;
    for (size_t n = 0; n < good.n; n++)
        if (gw__resolver_parse(good.b, n, GW_RR_A, &p) != -1 || p.n != 0)
            bad++;
    is_int(bad, 0, "every truncated message is refused");

    m = good;
    m.b[m.n - 5] = 5; /* A rdata length 5 */
    is_int(gw__resolver_parse(m.b, m.n, GW_RR_A, &p), -1, "A with 5 bytes refused");

    m = good;
    m.b[7] = 3; /* three answers announced, one present */
    is_int(gw__resolver_parse(m.b, m.n, GW_RR_A, &p), -1, "missing records refused");

    /* a name pointing at itself */
    header(&m, 1, 0, 0, "web.test", GW_RR_A);
    size_t at = m.n;
    put16(&m, 0xc000 | (unsigned)at);
    put16(&m, GW_RR_A);
    put16(&m, 1);
    put32(&m, 1);
    put16(&m, 4);
    put(&m, "\1\2\3\4", 4);
    is_int(gw__resolver_parse(m.b, m.n, GW_RR_A, &p), -1, "a compression loop is refused");

    /* a pointer past the end */
    header(&m, 1, 0, 0, "web.test", GW_RR_A);
    put16(&m, 0xc000 | 0x3ff);
    is_int(gw__resolver_parse(m.b, m.n, GW_RR_A, &p), -1, "a pointer out of the message");

    /* 300 random mutations of a good SRV answer: never a crash */
    header(&m, 1, 0, 1, "_s._tcp.t", GW_RR_SRV);
    rr_head(&m, NULL, GW_RR_SRV, 10, 6 + 3);
    put16(&m, 1);
    put16(&m, 1);
    put16(&m, 80);
    put_name(&m, "a");
    rr_head(&m, "a", GW_RR_A, 7, 4);
    put(&m, "\x0a\x00\x00\x01", 4);
    good = m;
    srand(7);
    int parsed = 0;
    for (int i = 0; i < 300; i++) {
        m = good;
        for (int k = 0; k < 3; k++)
            m.b[(size_t)rand() % m.n] = (unsigned char)rand();
        if (gw__resolver_parse(m.b, m.n, GW_RR_SRV, &p) == 0)
            parsed++;
        gw__resolver_parsed_clear(&p);
    }
    ok(parsed >= 0, "300 mutated answers: no crash (%d parsed)", parsed);
}

/* ---------------------------------------------------------------- on a loop */

typedef struct {
    int calls;
    int status;
    size_t n;
    uint64_t at;
    uv_loop_t *loop;
    int port;
} got_t;

static void
on_result(void *arg, const gw_resolver_result_t *res)
{
    got_t *g = arg;
    g->calls++;
    g->status = res->status;
    g->n = res->n;
    g->at = uv_now(g->loop);
    if (res->n > 0) {
        const gw_resolver_rr_t *rr = &res->rrs[0];
        g->port = rr->sa.ss_family == AF_INET
                      ? ntohs(((const struct sockaddr_in *)&rr->sa)->sin_port)
                      : ntohs(((const struct sockaddr_in6 *)&rr->sa)->sin6_port);
    }
}

static void
run_loop(uv_loop_t *loop)
{
    uv_run(loop, UV_RUN_DEFAULT);
    is_int(uv_loop_close(loop), 0, "every handle closed");
}

static void
test_literals(void)
{
    uv_loop_t loop;
    char err[128];
    uv_loop_init(&loop);
    const char *ns[] = {"127.0.0.1:9"};
    gw_resolver_opts_t o = {.nameservers = ns, .nnameservers = 1, .timeout_ms = 500};
    gw_resolver_t *r = gw_resolver_new(&loop, &o, err, sizeof(err));
    ok(r != NULL, "resolver made (%s)", r ? "" : err);
    got_t a = {.loop = &loop}, b = {.loop = &loop}, c = {.loop = &loop};
    gw_resolver_lookup(r, "127.0.0.7", 6379, on_result, &a);
    gw_resolver_query(r, "::1", GW_RR_AAAA, on_result, &b);
    gw_resolver_query(r, "::1", GW_RR_A, on_result, &c);
    is_int(a.calls + b.calls + c.calls, 0, "literals are not answered inside the call");
    uv_run(&loop, UV_RUN_NOWAIT);
    is_int(a.calls, 1, "literal lookup answered from the loop");
    is_int(a.status, GW_RES_OK, "... OK");
    is_int(a.n, 1, "... one address");
    is_int(a.port, 6379, "... with the port");
    is_int(b.n, 1, "AAAA of a v6 literal: itself");
    is_int(c.n, 0, "A of a v6 literal: nothing");
    gw_resolver_free(r);
    run_loop(&loop);

    o.nameservers = (const char *[]){"not an address"};
    ok(gw_resolver_new(&loop, &o, err, sizeof(err)) == NULL, "a bad nameserver is refused");
    ok(strstr(err, "not an address") != NULL, "... and named: %s", err);
}

static void
test_timeout(void)
{
    uv_loop_t loop;
    uv_udp_t silent;
    struct sockaddr_in sin;
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    char err[128], ns[64];
    uv_loop_init(&loop);
    uv_udp_init(&loop, &silent);
    uv_ip4_addr("127.0.0.1", 0, &sin);
    uv_udp_bind(&silent, (const struct sockaddr *)&sin, 0);
    uv_udp_getsockname(&silent, (struct sockaddr *)&ss, &len);
    snprintf(ns, sizeof(ns), "127.0.0.1:%d", ntohs(((struct sockaddr_in *)&ss)->sin_port));
    const char *nsv[] = {ns};
    gw_resolver_opts_t o = {.nameservers = nsv, .nnameservers = 1, .timeout_ms = 300};
    gw_resolver_t *r = gw_resolver_new(&loop, &o, err, sizeof(err));
    got_t a = {.loop = &loop}, b = {.loop = &loop};
    uint64_t t0 = uv_now(&loop);
    gw_resolver_query(r, "web.test", GW_RR_A, on_result, &a);
    gw_resolver_req_t *q = gw_resolver_query(r, "web.test", GW_RR_SRV, on_result, &b);
    gw_resolver_cancel(q);
    while (a.calls == 0 && uv_run(&loop, UV_RUN_ONCE))
        ;
    is_int(a.calls, 1, "a silent server: the callback comes");
    is_int(a.status, GW_RES_ETIMEDOUT, "... as a timeout");
    ok(a.at - t0 >= 290 && a.at - t0 < 1000, "... after the timeout (%llu ms)",
       (unsigned long long)(a.at - t0));
    is_int(b.calls, 0, "a cancelled request: no callback");

    /* pending requests at free: no callback */
    got_t c = {.loop = &loop};
    gw_resolver_query(r, "other.test", GW_RR_A, on_result, &c);
    gw_resolver_free(r);
    uv_close((uv_handle_t *)&silent, NULL);
    run_loop(&loop);
    is_int(c.calls, 0, "free: pending requests end without a callback");
}

int
main(int argc, char **argv)
{
    test_parse_a();
    test_parse_srv();
    test_parse_soa();
    test_parse_damage();
    test_literals();
    test_timeout();
    done_testing();
}
