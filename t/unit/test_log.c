/* gw_log: error log lines, levels, truncation, reopen, whole lines from
 * several processes; the access log's JSON and its buffering. */
#include <fcntl.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "gw_json.h"
#include "gw_log.h"
#include "tap.h"

static char *
slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf;
    long n;

    *len = 0;
    if (f == NULL)
        return NULL;
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = malloc((size_t)n + 1);
    if (fread(buf, 1, (size_t)n, f) != (size_t)n)
        n = 0;
    buf[n] = '\0';
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static int
count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

static int
matches(const char *s, const char *re)
{
    regex_t r;
    int rc;
    if (regcomp(&r, re, REG_EXTENDED | REG_NOSUB | REG_NEWLINE) != 0)
        return 0;
    rc = regexec(&r, s, 0, NULL, 0) == 0;
    regfree(&r);
    return rc;
}

static void
escape_is(const char *in, size_t len, const char *want, const char *what)
{
    char out[256];
    size_t n = gw_json_escape(out, in, len);
    out[n] = '\0';
    is_str(out, want, "json escape: %s", what);
}

#define TS "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z"

int
main(void)
{
    char dir[] = "/tmp/gw-test-log-XXXXXX";
    char path[512], path2[512], err[256];
    gw_log_t *log;
    char *text;
    size_t len;

    if (mkdtemp(dir) == NULL) {
        printf("Bail out! mkdtemp\n");
        return 1;
    }
    snprintf(path, sizeof(path), "%s/error.log", dir);
    snprintf(path2, sizeof(path2), "%s/error.log.1", dir);

    /* Bad paths */
    err[0] = '\0';
    ok(gw_log_open("/nonexistent-dir/x/error.log", GW_LOG_INFO, err, sizeof(err)) == NULL,
       "unwritable error log path fails");
    ok(strstr(err, "/nonexistent-dir/x/error.log") != NULL, "error names the path: %s", err);
    ok(gw_log_open("", GW_LOG_INFO, err, sizeof(err)) == NULL, "empty error log path fails");

    /* Levels, tag, format */
    log = gw_log_open(path, GW_LOG_WARN, err, sizeof(err));
    ok(log != NULL, "open %s", path);
    gw_log_set_tag(log, "worker 1");
    gw_log_info(log, "not written %d", 1);
    gw_log_debug(log, "never written %d", 2);
    gw_log_warn(log, "hello %d", 42);
    gw_log_error(log, "two\nlines\r");
    gw_log_set_tag(log, NULL);
    gw_log_error(log, "untagged");
    gw_log_set_level(log, GW_LOG_DEBUG);
    gw_log_info(log, "info now");
    ok(gw_log_enabled(log, GW_LOG_DEBUG), "debug enabled at runtime");
    ok(!gw_log_enabled(NULL, GW_LOG_DEBUG), "NULL log: debug off");

    {
        char big[10000];
        memset(big, 'x', sizeof(big) - 1);
        big[sizeof(big) - 1] = '\0';
        gw_log_error(log, "%s", big);
    }
    gw_log_close(log);

    text = slurp(path, &len);
    ok(text != NULL, "read the error log");
    is_int(count_lines(text), 5, "five lines written");
    ok(matches(text, "^" TS " \\[warn\\] worker 1: hello 42$"), "warn line format");
    ok(matches(text, "^" TS " \\[error\\] worker 1: two lines $"), "newlines become spaces");
    ok(matches(text, "^" TS " \\[error\\] untagged$"), "untagged line");
    ok(matches(text, "^" TS " \\[info\\] info now$"), "info after level change");
    ok(strstr(text, "not written") == NULL && strstr(text, "never written") == NULL,
       "lines below the minimum are not written");
    {
        const char *last = strstr(text, "xxx");
        const char *end = last ? strchr(last, '\n') : NULL;
        const char *start = last;
        while (start != NULL && start > text && start[-1] != '\n')
            start--;
        ok(end != NULL && end - start + 1 <= GW_LOG_LINE_MAX && end - start > 4000,
           "long line capped at %d bytes", GW_LOG_LINE_MAX);
        ok(end != NULL && memcmp(end - 3, "...", 3) == 0, "capped line ends with ...");
    }
    free(text);

    /* Reopen after rotation */
    log = gw_log_open(path, GW_LOG_INFO, err, sizeof(err));
    gw_log_info(log, "before rotation");
    ok(rename(path, path2) == 0, "rotate");
    gw_log_info(log, "still the old file");
    is_int(gw_log_reopen(log), GW_OK, "reopen");
    gw_log_info(log, "after rotation");
    text = slurp(path2, &len);
    ok(strstr(text, "before rotation") && strstr(text, "still the old file") &&
           !strstr(text, "after rotation"),
       "rotated file holds the old lines");
    free(text);
    text = slurp(path, &len);
    ok(strstr(text, "after rotation") && !strstr(text, "before rotation"),
       "new file holds the new lines");
    free(text);
    gw_log_close(log);

    {
        gw_log_t *se = gw_log_open("stderr", GW_LOG_INFO, err, sizeof(err));
        ok(se != NULL, "stderr log");
        is_int(gw_log_reopen(se), GW_OK, "reopen of stderr is a no-op");
        gw_log_close(se);
    }
    gw_log_close(NULL);

    /* Several processes append whole lines */
    unlink(path);
    log = gw_log_open(path, GW_LOG_INFO, err, sizeof(err));
    for (int w = 0; w < 4; w++) {
        if (fork() == 0) {
            char tag[32], pad[3000];
            snprintf(tag, sizeof(tag), "worker %d", w);
            gw_log_set_tag(log, tag);
            for (int i = 0; i < 300; i++) {
                size_t n = (size_t)((i * 37 + w * 101) % (sizeof(pad) - 1));
                memset(pad, 'a' + w, n);
                pad[n] = '\0';
                gw_log_info(log, "line %d <%s>", i, pad);
            }
            _exit(0);
        }
    }
    for (int w = 0; w < 4; w++)
        wait(NULL);
    gw_log_close(log);
    text = slurp(path, &len);
    {
        int lines = 0, good = 0;
        for (char *p = text, *nl; (nl = strchr(p, '\n')) != NULL; p = nl + 1) {
            *nl = '\0';
            lines++;
            char c = 0;
            const char *lt = strchr(p, '<');
            const char *w = strstr(p, "] worker ");
            if (lt && w && matches(p, "^" TS " \\[info\\] worker [0-3]: line [0-9]+ <[a-d]*>$")) {
                c = (char)('a' + (w[9] - '0'));
                int same = 1;
                for (const char *q = lt + 1; *q != '>'; q++)
                    same &= *q == c;
                good += same;
            }
        }
        is_int(lines, 1200, "1200 lines from 4 processes");
        is_int(good, 1200, "every line whole and unmixed");
    }
    free(text);

    /* JSON escaping */
    escape_is("plain", 5, "plain", "plain");
    escape_is("a\"b\\c", 5, "a\\\"b\\\\c", "quote and backslash");
    escape_is("\x01\n\t\x1f\x7f", 5, "\\u0001\\u000a\\u0009\\u001f\\u007f", "control chars");
    escape_is("a\0b", 3, "a\\u0000b", "NUL");
    escape_is("caf\xc3\xa9", 5, "caf\xc3\xa9", "valid 2-byte UTF-8 kept");
    escape_is("\xe2\x82\xac", 3, "\xe2\x82\xac", "valid 3-byte UTF-8 kept");
    escape_is("\xf0\x9f\x98\x80", 4, "\xf0\x9f\x98\x80", "valid 4-byte UTF-8 kept");
    escape_is("\xff", 1, "\\u00ff", "invalid byte");
    escape_is("x\xc3", 2, "x\\u00c3", "truncated sequence");
    escape_is("\xc3(", 2, "\\u00c3(", "bad continuation");
    escape_is("\xc0\xaf", 2, "\\u00c0\\u00af", "overlong");
    escape_is("\xed\xa0\x80", 3, "\\u00ed\\u00a0\\u0080", "surrogate");
    escape_is("\xf4\x90\x80\x80", 4, "\\u00f4\\u0090\\u0080\\u0080", "past U+10FFFF");

    /* Access log */
    snprintf(path, sizeof(path), "%s/access.log", dir);
    ok(gw_access_log_open("", err, sizeof(err)) == NULL, "empty access log path fails");
    ok(gw_access_log_open("/nonexistent-dir/x/a.log", err, sizeof(err)) == NULL,
       "unwritable access log path fails: %s", err);
    gw_access_log_t *al = gw_access_log_open(path, err, sizeof(err));
    ok(al != NULL, "open access log");
    gw_access_entry_t e = {
        .time_ms = 1795494600123ULL,
        .request_id = GW_STR("req-1"),
        .remote_addr = GW_STR("127.0.0.1"),
        .method = GW_STR("GET"),
        .uri = GW_STR("/a?q=\"x\""),
        .host = GW_STR("example.com"),
        .status = 200,
        .bytes_sent = 1234,
        .duration_ms = 1.5,
        .route = GW_STR("users"),
        .upstream = GW_STR("api"),
        .node = GW_STR("10.0.0.1:80"),
        .upstream_status = 200,
        .upstream_latency_ms = 1.25,
        .user_agent = GW_STR("curl/8\x01\xff"),
    };
    gw_access_log_write(al, &e);
    text = slurp(path, &len);
    is_int(len, 0, "nothing written before a flush");
    free(text);
    is_int(gw_access_log_flush(al), GW_OK, "flush");
    text = slurp(path, &len);
    is_str(text,
           "{\"time\":\"2026-11-24T04:30:00.123Z\",\"request_id\":\"req-1\","
           "\"remote_addr\":\"127.0.0.1\",\"method\":\"GET\",\"uri\":\"/a?q=\\\"x\\\"\","
           "\"host\":\"example.com\",\"status\":200,\"bytes_sent\":1234,\"duration_ms\":1.500,"
           "\"route\":\"users\",\"upstream\":\"api\",\"node\":\"10.0.0.1:80\","
           "\"upstream_status\":200,\"upstream_latency_ms\":1.250,"
           "\"user_agent\":\"curl/8\\u0001\\u00ff\"}\n",
           "access log line");
    free(text);

    /* Empty entry: every key still there, strings empty. */
    gw_access_entry_t empty = {0};
    empty.duration_ms = 0.0 / 0.0;
    gw_access_log_write(al, &empty);
    gw_access_log_flush(al);
    text = slurp(path, &len);
    ok(strstr(text, "{\"time\":\"1970-01-01T00:00:00.000Z\",\"request_id\":\"\",") != NULL,
       "empty entry renders empty strings");
    ok(strstr(text, "\"duration_ms\":0.000,") != NULL, "NaN becomes 0");
    free(text);

    /* Past 32 KiB the buffer goes out by itself. */
    unlink(path);
    gw_access_log_reopen(al);
    {
        int wrote = 0, n = 0;
        while (!wrote && n < 1000) {
            gw_access_log_write(al, &e);
            n++;
            text = slurp(path, &len);
            wrote = len > 0;
            if (wrote)
                ok(len >= GW_ACCESS_LOG_FLUSH_SIZE && text[len - 1] == '\n',
                   "flushed %zu bytes of whole lines after %d entries", len, n);
            free(text);
        }
        ok(wrote, "buffer flushed itself");
        for (int i = 0; i < 5; i++)
            gw_access_log_write(al, &e);
        gw_access_log_close(al);
        text = slurp(path, &len);
        is_int(count_lines(text), n + 5, "close flushes the rest");
        free(text);
    }
    gw_access_log_close(NULL);
    gw_access_log_write(NULL, &e);

    unlink(path);
    unlink(path2);
    snprintf(path, sizeof(path), "%s/error.log", dir);
    unlink(path);
    rmdir(dir);
    done_testing();
}
