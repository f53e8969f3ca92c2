/* gw_tls without a socket: SNI name matching, the ticket keys every worker
 * derives from one secret, and the rotation between periods. */
#include <stdlib.h>
#include <string.h>

#include "gw_tls.c" /* the static helpers are what is tested */

#include "tap.h"

static void
test_names(void)
{
    ok(name_match("api.example.com", "api.example.com"), "exact");
    ok(name_match("api.example.com", "API.Example.COM"), "exact, any case");
    ok(!name_match("api.example.com", "www.example.com"), "another name");
    ok(name_match("*.example.com", "a.example.com"), "wildcard: one label");
    ok(name_match("*.example.com", "A.EXAMPLE.com"), "wildcard, any case");
    ok(!name_match("*.example.com", "b.a.example.com"), "wildcard: not two labels");
    ok(!name_match("*.example.com", "example.com"), "wildcard: not the domain itself");
    ok(!name_match("*.example.com", ".example.com"), "wildcard: not an empty label");
    ok(!name_match("*.example.com", "aexample.com"), "wildcard: a label boundary");
}

static gw_tls_t *
keys_of(const unsigned char secret[32], uint64_t rotation_ms, gw_tls_conf_t *conf)
{
    memset(conf, 0, sizeof(*conf));
    memcpy(conf->ticket_secret, secret, 32);
    conf->ticket_key_rotation_ms = rotation_ms;
    gw_tls_t *t = calloc(1, sizeof(*t));
    t->conf = conf;
    refresh_keys(t);
    return t;
}

static void
test_ticket_keys(void)
{
    unsigned char s1[32], s2[32];
    gw_tls_conf_t c1, c2, c3;
    ok(gw_tls_new_secret(s1) == GW_OK && gw_tls_new_secret(s2) == GW_OK, "two secrets");
    ok(memcmp(s1, s2, 32) != 0, "secrets are random");
    gw_tls_t *a = keys_of(s1, 3600 * 1000, &c1), *b = keys_of(s1, 3600 * 1000, &c2);
    gw_tls_t *other = keys_of(s2, 3600 * 1000, &c3);
    ok(memcmp(a->keys, b->keys, sizeof(a->keys)) == 0,
       "one secret: every worker derives the same keys");
    ok(memcmp(a->keys[0].name, other->keys[0].name, 16) != 0 &&
           memcmp(a->keys[0].aes, other->keys[0].aes, 32) != 0,
       "another secret (another instance): other keys");
    is_int(a->keys[1].period, a->keys[0].period - 1, "the previous period's key is kept");
    ok(memcmp(a->keys[0].aes, a->keys[1].aes, 32) != 0 &&
           memcmp(a->keys[0].name, a->keys[1].name, 16) != 0,
       "the key changes from one period to the next");
    ok(memcmp(a->keys[0].aes, a->keys[0].mac, 32) != 0, "encryption and MAC keys differ");
    /* keys left from an older period are derived again for the current one */
    ticket_key_t cur = a->keys[0];
    a->keys[0].period = cur.period - 1;
    memset(a->keys[0].aes, 0, 32);
    refresh_keys(a);
    ok(memcmp(&a->keys[0], &cur, sizeof(cur)) == 0, "a stale key is derived again for the period");
    free(a);
    free(b);
    free(other);
}

int
main(void)
{
    test_names();
    test_ticket_keys();
    done_testing();
}
