/*
 * Error log and access log. Both write whole lines with one write(2) on a
 * descriptor opened O_APPEND: the kernel then appends each write at the end
 * of the file as a unit, which is what keeps the lines of several processes
 * apart without any lock between them.
 */
#include "gw_json.h"
#include "gw_log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define TAG_MAX 48
#define ACCESS_BUF_INITIAL (64 * 1024)

struct gw_log_s {
    int fd;
    int owns_fd;
    char *path; /* NULL for stderr */
    gw_log_level_t min;
    char tag[TAG_MAX];
};

struct gw_access_log_s {
    int fd;
    int owns_fd;
    char *path; /* NULL for stdout / stderr */
    char *buf;
    size_t len, cap;
};

static const char *const level_names[] = {"debug", "info", "warn", "error"};

const char *
gw_log_level_name(gw_log_level_t level)
{
    if ((int)level < 0 || (size_t)level >= GW_ARRAY_LEN(level_names))
        return "?";
    return level_names[level];
}

/* One write, retried only for what a signal or a short write left over. */
static int
write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return GW_ERROR;
        }
        p += w;
        n -= (size_t)w;
    }
    return GW_OK;
}

static int
open_append(const char *path)
{
    return open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
}

static char *
dup_str(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = malloc(n);
    if (p != NULL)
        memcpy(p, s, n);
    return p;
}

/* "2026-11-24T04:30:00.123Z": 24 characters for any year 0..9999. */
#define TIME_BUF 96

static void
format_time(char out[TIME_BUF], time_t sec, int ms)
{
    struct tm tm;

    if (gmtime_r(&sec, &tm) == NULL)
        memset(&tm, 0, sizeof(tm));
    snprintf(out, TIME_BUF, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms % 1000);
}

/* Replaces the file behind fd with a fresh open of path, keeping the
 * descriptor number so that nothing holding it needs to know. */
static int
reopen_fd(int fd, const char *path, int *saved_errno)
{
    int nfd = open_append(path);
    if (nfd < 0) {
        *saved_errno = errno;
        return GW_ERROR;
    }
    if (dup3(nfd, fd, O_CLOEXEC) < 0) {
        *saved_errno = errno;
        close(nfd);
        return GW_ERROR;
    }
    close(nfd);
    return GW_OK;
}

/* ---- error log ---- */

gw_log_t *
gw_log_open(const char *path, gw_log_level_t min, char *err, size_t errlen)
{
    gw_log_t *log = calloc(1, sizeof(*log));

    if (log == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    log->min = min;
    if (path == NULL || strcmp(path, "stderr") == 0) {
        log->fd = STDERR_FILENO;
        return log;
    }
    if (path[0] == '\0') {
        snprintf(err, errlen, "error log: empty path");
        goto failed;
    }
    log->path = dup_str(path);
    if (log->path == NULL) {
        snprintf(err, errlen, "out of memory");
        goto failed;
    }
    log->fd = open_append(path);
    if (log->fd < 0) {
        snprintf(err, errlen, "error log \"%s\": %s", path, strerror(errno));
        goto failed;
    }
    log->owns_fd = 1;
    return log;

failed:
    free(log->path);
    free(log);
    return NULL;
}

void
gw_log_close(gw_log_t *log)
{
    if (log == NULL)
        return;
    if (log->owns_fd)
        close(log->fd);
    free(log->path);
    free(log);
}

void
gw_log_set_tag(gw_log_t *log, const char *tag)
{
    if (log == NULL)
        return;
    snprintf(log->tag, sizeof(log->tag), "%s", tag != NULL ? tag : "");
}

void
gw_log_set_level(gw_log_t *log, gw_log_level_t min)
{
    if (log != NULL)
        log->min = min;
}

int
gw_log_enabled(const gw_log_t *log, gw_log_level_t level)
{
    return level >= (log != NULL ? log->min : GW_LOG_INFO);
}

int
gw_log_reopen(gw_log_t *log)
{
    int e = 0;

    if (log == NULL || log->path == NULL)
        return GW_OK;
    if (reopen_fd(log->fd, log->path, &e) != GW_OK) {
        gw_log(log, GW_LOG_ERROR, "reopening error log \"%s\": %s", log->path, strerror(e));
        return GW_ERROR;
    }
    return GW_OK;
}

void
gw_log_va(gw_log_t *log, gw_log_level_t level, const char *fmt, va_list ap)
{
    char line[GW_LOG_LINE_MAX], ts[TIME_BUF];
    struct timespec now;
    size_t n, room;
    int w;

    if (!gw_log_enabled(log, level))
        return;
    clock_gettime(CLOCK_REALTIME, &now);
    format_time(ts, now.tv_sec, (int)(now.tv_nsec / 1000000));

    const char *tag = log != NULL ? log->tag : "";
    w = snprintf(line, sizeof(line), "%s [%s] %s%s", ts, gw_log_level_name(level), tag,
                 tag[0] ? ": " : "");
    n = (size_t)w;

    /* Leave room for the newline. */
    room = sizeof(line) - n - 1;
    w = vsnprintf(line + n, room, fmt, ap);
    if (w < 0)
        w = 0;
    if ((size_t)w >= room) {
        memcpy(line + sizeof(line) - 5, "...", 3);
        w = (int)room - 1;
    }
    for (char *p = line + n; p < line + n + w; p++)
        if (*p == '\n' || *p == '\r')
            *p = ' ';
    n += (size_t)w;
    line[n++] = '\n';

    (void)write_all(log != NULL ? log->fd : STDERR_FILENO, line, n);
}

void
gw_log(gw_log_t *log, gw_log_level_t level, const char *fmt, ...)
{
    va_list ap;

    if (!gw_log_enabled(log, level))
        return;
    va_start(ap, fmt);
    gw_log_va(log, level, fmt, ap);
    va_end(ap);
}

/* ---- access log ---- */

gw_access_log_t *
gw_access_log_open(const char *path, char *err, size_t errlen)
{
    gw_access_log_t *al;

    if (path == NULL || path[0] == '\0') {
        snprintf(err, errlen, "access log: empty path");
        return NULL;
    }
    al = calloc(1, sizeof(*al));
    if (al == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    al->buf = malloc(ACCESS_BUF_INITIAL);
    if (al->buf == NULL) {
        snprintf(err, errlen, "out of memory");
        goto failed;
    }
    al->cap = ACCESS_BUF_INITIAL;
    if (strcmp(path, "stdout") == 0) {
        al->fd = STDOUT_FILENO;
        return al;
    }
    if (strcmp(path, "stderr") == 0) {
        al->fd = STDERR_FILENO;
        return al;
    }
    al->path = dup_str(path);
    if (al->path == NULL) {
        snprintf(err, errlen, "out of memory");
        goto failed;
    }
    al->fd = open_append(path);
    if (al->fd < 0) {
        snprintf(err, errlen, "access log \"%s\": %s", path, strerror(errno));
        goto failed;
    }
    al->owns_fd = 1;
    return al;

failed:
    free(al->path);
    free(al->buf);
    free(al);
    return NULL;
}

int
gw_access_log_flush(gw_access_log_t *al)
{
    int rc;

    if (al == NULL || al->len == 0)
        return GW_OK;
    rc = write_all(al->fd, al->buf, al->len);
    al->len = 0;
    return rc;
}

void
gw_access_log_close(gw_access_log_t *al)
{
    if (al == NULL)
        return;
    (void)gw_access_log_flush(al);
    if (al->owns_fd)
        close(al->fd);
    free(al->path);
    free(al->buf);
    free(al);
}

int
gw_access_log_reopen(gw_access_log_t *al)
{
    int e = 0;

    if (al == NULL)
        return GW_OK;
    (void)gw_access_log_flush(al);
    if (al->path == NULL)
        return GW_OK;
    if (reopen_fd(al->fd, al->path, &e) != GW_OK) {
        errno = e;
        return GW_ERROR;
    }
    return GW_OK;
}

static char *
put_lit(char *o, const char *s)
{
    size_t n = strlen(s);
    memcpy(o, s, n);
    return o + n;
}

static char *
put_str(char *o, const char *key, gw_str_t v)
{
    o = put_lit(o, key);
    *o++ = '"';
    if (v.data != NULL)
        o += gw_json_escape(o, v.data, v.len);
    *o++ = '"';
    return o;
}

/* NaN, infinities and absurd values become 0: JSON has no NaN, and the
 * line buffer reserves a fixed width for each number. */
static double
finite_or_zero(double v)
{
    return (v == v && v < 1e12 && v > -1e12) ? v : 0;
}

void
gw_access_log_write(gw_access_log_t *al, const gw_access_entry_t *e)
{
    const gw_str_t *strs[] = {&e->request_id, &e->remote_addr,  &e->method,   &e->uri,
                              &e->host,       &e->route,        &e->upstream, &e->node,
                              &e->user_agent, &e->tls_client_dn};
    size_t need = 512; /* keys, time and numbers */
    char ts[TIME_BUF];

    if (al == NULL || e == NULL)
        return;
    for (size_t i = 0; i < GW_ARRAY_LEN(strs); i++)
        need += strs[i]->data != NULL ? strs[i]->len * 6 : 0;
    if (al->len + need > al->cap) {
        size_t cap = al->cap;
        while (cap < al->len + need)
            cap *= 2;
        char *p = realloc(al->buf, cap);
        if (p == NULL)
            return; /* the line is lost; the log is not */
        al->buf = p;
        al->cap = cap;
    }

    format_time(ts, (time_t)(e->time_ms / 1000), (int)(e->time_ms % 1000));
    char *o = al->buf + al->len;
    o = put_lit(o, "{\"time\":\"");
    o = put_lit(o, ts);
    *o++ = '"';
    o = put_str(o, ",\"request_id\":", e->request_id);
    o = put_str(o, ",\"remote_addr\":", e->remote_addr);
    o = put_str(o, ",\"method\":", e->method);
    o = put_str(o, ",\"uri\":", e->uri);
    o = put_str(o, ",\"host\":", e->host);
    o += snprintf(o, 128, ",\"status\":%d,\"bytes_sent\":%llu,\"duration_ms\":%.3f", e->status,
                  (unsigned long long)e->bytes_sent, finite_or_zero(e->duration_ms));
    o = put_str(o, ",\"route\":", e->route);
    o = put_str(o, ",\"upstream\":", e->upstream);
    o = put_str(o, ",\"node\":", e->node);
    o += snprintf(o, 128, ",\"upstream_status\":%d,\"upstream_latency_ms\":%.3f",
                  e->upstream_status, finite_or_zero(e->upstream_latency_ms));
    o = put_str(o, ",\"user_agent\":", e->user_agent);
    if (e->tls_client_dn.len)
        o = put_str(o, ",\"tls_client_dn\":", e->tls_client_dn);
    o = put_lit(o, "}\n");
    al->len = (size_t)(o - al->buf);

    if (al->len >= GW_ACCESS_LOG_FLUSH_SIZE)
        (void)gw_access_log_flush(al);
}
