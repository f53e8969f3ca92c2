#ifndef GW_EDGE_H
#define GW_EDGE_H

#include <stddef.h>
#include <sys/types.h>
#include <uv.h>

/*
 * Edge-triggered readiness for long-lived sockets.
 *
 * libuv registers every socket level-triggered. The kernel then puts each
 * socket it reported back on the ready list and polls it once more at the
 * next epoll_wait, only to find it idle: on a keep-alive connection that
 * serves one small request after another, that second poll is a good part
 * of what epoll costs per request. A connection that has shown it lives on
 * (its second request) is switched to edge-triggered with one epoll_ctl.
 *
 * Edge-triggered readiness is only safe while whoever reads the socket
 * reads it until it is empty. libuv stops after 32 full buffers in a row
 * (and says so in its source); it also stops when its caller returns no
 * buffer, but the gateway closes the connection then. So a read that fills
 * the whole buffer turns the socket back to level-triggered for the rest
 * of its life, before libuv can stop on it. Whenever libuv itself changes
 * the socket's registration (waiting to write, reading stopped and
 * started again), it registers it level-triggered again: the switch is
 * lost, never the readiness.
 */

enum { GW_EDGE_LEVEL = 0, GW_EDGE_ON, GW_EDGE_NEVER };

/* Switches s to edge-triggered once, if *state allows and libuv has it
 * registered for reading only. */
void gw_edge_try(unsigned char *state, uv_stream_t *s);

/* Back to level-triggered for the rest of the socket's life. */
void gw_edge_level(unsigned char *state, uv_stream_t *s);

/* After every read callback with data: a full buffer means there may be
 * more than libuv reads in this turn. */
static inline void
gw_edge_after_read(unsigned char *state, uv_stream_t *s, ssize_t nread, size_t buflen)
{
    if (*state == GW_EDGE_ON && (size_t)nread >= buflen)
        gw_edge_level(state, s);
}

#endif
