/*
 * The write path shared by both sides of the proxy: try the socket at
 * once and keep (copy) only what it did not take. Bytes queued while a
 * write is in flight go to a second buffer, so the in-flight one is never
 * touched until libuv is done with it.
 */
#ifndef GW_WQUEUE_H
#define GW_WQUEUE_H

#include <uv.h>

#include "gw_http.h"

typedef struct {
    gw_buf_t flight; /* handed to uv_write; untouched until its callback */
    gw_buf_t next;   /* appended to while a write is in flight */
    uv_write_t req;
    int busy;
} gw_wqueue_t;

/* 1: everything written now; 0: some queued (cb fires when it is
 * written); <0: a libuv error (cb will not fire for this call). */
int gw_wqueue_write(gw_wqueue_t *q, uv_stream_t *s, const uv_buf_t *bufs, unsigned n,
                    uv_write_cb cb);

/* From the owner's write callback: 1 when more was queued meanwhile and is
 * now in flight, 0 when the queue is empty, <0 on a libuv error. */
int gw_wqueue_written(gw_wqueue_t *q, uv_stream_t *s, uv_write_cb cb);

int gw_wqueue_pending(const gw_wqueue_t *q);

/* Drops the buffers once idle; keeps small ones for reuse. */
void gw_wqueue_trim(gw_wqueue_t *q, size_t keep);
void gw_wqueue_free(gw_wqueue_t *q);

#endif
