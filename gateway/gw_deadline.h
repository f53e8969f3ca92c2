/*
 * Lazy deadlines over one libuv timer. Most deadlines are pushed later
 * (each request re-arms a keep-alive or read timeout) and never reached;
 * moving a deadline later costs nothing here: the timer fires at the old
 * time, sees the new deadline and sleeps again. Only a deadline moved
 * earlier touches libuv's timer heap.
 */
#ifndef GW_DEADLINE_H
#define GW_DEADLINE_H

#include <stdint.h>
#include <uv.h>

typedef struct {
    uint64_t at;  /* when the owner wants to hear (loop ms); 0: never */
    uint64_t due; /* when the timer fires; 0: not armed */
} gw_deadline_t;

static inline void
gw_deadline_set(gw_deadline_t *d, uv_timer_t *t, uv_timer_cb cb, uint64_t ms)
{
    uint64_t now = uv_now(t->loop);
    d->at = now + (ms ? ms : 1);
    if (d->due == 0 || d->due > d->at) {
        uv_timer_start(t, cb, d->at - now, 0);
        d->due = d->at;
    }
}

static inline void
gw_deadline_clear(gw_deadline_t *d)
{
    d->at = 0;
}

/* Fire the callback on the next loop turn, whatever the deadline. */
static inline void
gw_deadline_now(gw_deadline_t *d, uv_timer_t *t, uv_timer_cb cb)
{
    uv_timer_start(t, cb, 0, 0);
    d->due = uv_now(t->loop);
}

/* From the timer callback: 1 when the deadline has passed (act on it and
 * it is cleared), 0 when it moved later (re-armed) or was cleared. */
static inline int
gw_deadline_fired(gw_deadline_t *d, uv_timer_t *t, uv_timer_cb cb)
{
    uint64_t now = uv_now(t->loop);
    d->due = 0;
    if (d->at == 0)
        return 0;
    if (now < d->at) {
        uv_timer_start(t, cb, d->at - now, 0);
        d->due = d->at;
        return 0;
    }
    d->at = 0;
    return 1;
}

#endif
