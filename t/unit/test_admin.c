/* The admin API's helpers: the constant-time key compare, which config
 * names are secrets, and the redaction of a JSON document. */
#include <stdlib.h>

#include "gw_admin.h"
#include "tap.h"

static void
test_admin_helpers(void)
{
    const char *key = "s3cret-admin-key";
    ok(gw_admin_key_ok(key, key, strlen(key)), "key compare: equal");
    ok(!gw_admin_key_ok(key, "s3cret-admin-kez", 16), "key compare: last byte differs");
    ok(!gw_admin_key_ok(key, key, strlen(key) - 1), "key compare: a prefix");
    ok(!gw_admin_key_ok(key, "", 0), "key compare: empty");
    ok(!gw_admin_key_ok(NULL, key, strlen(key)), "key compare: no key configured");

    ok(gw_admin_secret_name("key", 3), "secret: key");
    ok(gw_admin_secret_name("api_key", 7), "secret: api_key");
    ok(gw_admin_secret_name("password", 8), "secret: password");
    ok(gw_admin_secret_name("sentinel_password", 17), "secret: sentinel_password");
    ok(gw_admin_secret_name("Secret", 6), "secret: Secret");
    ok(gw_admin_secret_name("token", 5), "secret: token");
    ok(gw_admin_secret_name("private_key_file", 16), "secret: private_key_file");
    ok(!gw_admin_secret_name("keepalive", 9), "not secret: keepalive");
    ok(!gw_admin_secret_name("name", 4), "not secret: name");
    ok(!gw_admin_secret_name("upstream", 8), "not secret: upstream");

    const char *in = "{\"a\":1,\"key\":\"k1\",\"n\":{\"password\":{\"x\":[1,2]},\"ok\":[\"v\",true,"
                     "null]},\"l\":[{\"secret\":\"s\"}],\"k\\u0065y\":\"esc\"}";
    gw_buf_t out = {0};
    ok(gw_admin_redact(in, strlen(in), &out) == GW_OK, "redact: parses");
    gw_buf_append(&out, "", 1);
    is_str(out.data,
           "{\"a\":1,\"key\":\"[redacted]\",\"n\":{\"password\":\"[redacted]\",\"ok\":[\"v\",true,"
           "null]},\"l\":[{\"secret\":\"[redacted]\"}],\"k\\u0065y\":\"[redacted]\"}",
           "redact: secrets replaced, the rest as it was");
    gw_buf_free(&out);
    ok(gw_admin_redact("{\"a\":", 5, &out) == GW_ERROR, "redact: bad JSON refused");
    gw_buf_free(&out);
}

int
main(void)
{
    test_admin_helpers();
    done_testing();
}
