/*
 * The error log and the access log.
 *
 * Error log: one line per event,
 *   2026-11-24T04:30:00.123Z [warn] worker 1: message
 * written with a single write(2) to stderr or to a file opened O_APPEND, so
 * lines from the master and the workers never interleave. A line is capped
 * at 4096 bytes (PIPE_BUF, so that writes to a pipe stay whole as well);
 * longer messages are cut and end with "...".
 *
 * Access log: one JSON object per line. Lines are buffered in memory and
 * written with one write(2) when the buffer passes 32 KiB and on
 * gw_access_log_flush(). That write blocks the calling loop; it is a local
 * file, written at most once per 32 KiB of requests and once a second.
 */
#ifndef GW_LOG_H
#define GW_LOG_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "gw_core.h"
#include "gw_config.h" /* gw_log_level_t */

typedef struct gw_log_s gw_log_t;
typedef struct gw_access_log_s gw_access_log_t;

#define GW_LOG_LINE_MAX 4096

/**
 * Opens the error log: path "stderr" (or NULL) writes to standard error,
 * anything else is a file created if missing (0644) and opened O_APPEND.
 * Returns NULL and fills err on failure.
 */
gw_log_t *gw_log_open(const char *path, gw_log_level_t min, char *err, size_t errlen);

/** Closes the file (never standard error) and frees the log. NULL is fine. */
void gw_log_close(gw_log_t *log);

/** Sets the prefix of every line: "master", "worker 3". NULL clears it. */
void gw_log_set_tag(gw_log_t *log, const char *tag);

/** Changes the minimum level written. */
void gw_log_set_level(gw_log_t *log, gw_log_level_t min);

/** Whether a message of level would be written. */
int gw_log_enabled(const gw_log_t *log, gw_log_level_t level);

/**
 * Reopens the file by its path (log rotation on SIGUSR1): the new file takes
 * the old descriptor's number. Returns GW_OK, or GW_ERROR and keeps writing
 * to the old file when the path cannot be opened. A no-op for stderr.
 */
int gw_log_reopen(gw_log_t *log);

/**
 * Writes one line if level >= the minimum. A NULL log writes to standard
 * error at level info and above, so that code running before the log is
 * opened still reports. Newlines in the message become spaces.
 */
void gw_log(gw_log_t *log, gw_log_level_t level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void gw_log_va(gw_log_t *log, gw_log_level_t level, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

/** "debug", "info", "warn", "error". */
const char *gw_log_level_name(gw_log_level_t level);

#define gw_log_error(log, ...) gw_log((log), GW_LOG_ERROR, __VA_ARGS__)
#define gw_log_warn(log, ...) gw_log((log), GW_LOG_WARN, __VA_ARGS__)
#define gw_log_info(log, ...) gw_log((log), GW_LOG_INFO, __VA_ARGS__)

/* Debug lines exist only in builds with GW_DEBUG; there the configured level
 * still decides. Without it the call is dead code, yet its arguments are
 * still type-checked and count as used. */
#ifdef GW_DEBUG
#define gw_log_debug(log, ...) gw_log((log), GW_LOG_DEBUG, __VA_ARGS__)
#else
#define gw_log_debug(log, ...)                                                                     \
    do {                                                                                           \
        if (0)                                                                                     \
            gw_log((log), GW_LOG_DEBUG, __VA_ARGS__);                                              \
    } while (0)
#endif

/* One finished request. Every string is a slice (may be empty); numbers
 * that do not apply are 0. */
typedef struct {
    uint64_t time_ms; /* when the request started, Unix epoch in ms */
    gw_str_t request_id;
    gw_str_t remote_addr;
    gw_str_t method;
    gw_str_t uri; /* path and query as received */
    gw_str_t host;
    int status;
    uint64_t bytes_sent;
    double duration_ms;
    gw_str_t route;
    gw_str_t upstream;
    gw_str_t node;       /* "host:port" of the last node tried */
    int upstream_status; /* 0: no upstream response */
    double upstream_latency_ms;
    gw_str_t user_agent;
    gw_str_t tls_client_dn; /* mTLS subject; written only when not empty */
} gw_access_entry_t;

#define GW_ACCESS_LOG_FLUSH_SIZE (32 * 1024)

/**
 * Opens the access log: a file created if missing (0644) and opened
 * O_APPEND, or "stdout" / "stderr". Returns NULL and fills err on failure.
 * Open it in the process that writes it (a worker): buffered lines are
 * per process.
 */
gw_access_log_t *gw_access_log_open(const char *path, char *err, size_t errlen);

/** Flushes, closes the file and frees the log. NULL is fine. */
void gw_access_log_close(gw_access_log_t *al);

/**
 * Appends one JSON line to the buffer; writes the buffer out once it holds
 * 32 KiB or more. Every string is JSON-escaped: quote and backslash,
 * control characters and bytes that are not valid UTF-8 as \u00XX.
 */
void gw_access_log_write(gw_access_log_t *al, const gw_access_entry_t *e);

/**
 * Writes out whatever is buffered (call it from a 1 s timer and at exit).
 * Returns GW_OK, or GW_ERROR if the write failed: the buffered lines are
 * then dropped rather than kept growing.
 */
int gw_access_log_flush(gw_access_log_t *al);

/** Flushes, then reopens the file by its path. Same contract as gw_log_reopen. */
int gw_access_log_reopen(gw_access_log_t *al);

#endif
