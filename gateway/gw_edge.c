#include "gw_edge.h"

#include <sys/epoll.h>

/* The mask libuv registered (poll bits equal epoll bits on Linux), when
 * libuv has nothing queued to change it at the next poll; 0 otherwise. */
static unsigned
registered_mask(uv_stream_t *s)
{
    const uv__io_t *w = &s->io_watcher;
    if (w->fd < 0 || w->events == 0 || w->events != w->pevents)
        return 0;
    return w->events;
}

void
gw_edge_try(unsigned char *state, uv_stream_t *s)
{
    if (*state != GW_EDGE_LEVEL)
        return;
    unsigned mask = registered_mask(s);
    if (mask != EPOLLIN)
        return; /* not registered yet, or waiting to write: a later request tries again */
    struct epoll_event e = {.events = EPOLLIN | EPOLLET, .data.fd = s->io_watcher.fd};
    /* a socket with unread bytes is reported again by the kernel on MOD */
    *state = epoll_ctl(uv_backend_fd(s->loop), EPOLL_CTL_MOD, e.data.fd, &e) == 0 ? GW_EDGE_ON
                                                                                  : GW_EDGE_NEVER;
}

void
gw_edge_level(unsigned char *state, uv_stream_t *s)
{
    *state = GW_EDGE_NEVER;
    unsigned mask = registered_mask(s);
    if (mask == 0)
        return; /* libuv re-registers it (level-triggered) at its next poll */
    struct epoll_event e = {.events = mask, .data.fd = s->io_watcher.fd};
    epoll_ctl(uv_backend_fd(s->loop), EPOLL_CTL_MOD, e.data.fd, &e);
}
