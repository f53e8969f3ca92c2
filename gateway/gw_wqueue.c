/* Write queue with immediate try-write. */
#include "gw_wqueue.h"

#include <errno.h>
#include <sys/socket.h>

/*
 * What the socket takes now. uv_try_write would use write()/writev(),
 * which pass through the file layer before reaching the socket; send() and
 * sendmsg() go to the socket directly, a measurable share of a small
 * request's kernel time. Same rules as uv_try_write: nothing while libuv
 * connects or has writes queued (the order of bytes must hold).
 */
static ssize_t
try_send(uv_stream_t *s, const uv_buf_t *bufs, unsigned n)
{
    uv_os_fd_t fd;
    if (s->connect_req != NULL || s->write_queue_size != 0 ||
        uv_fileno((const uv_handle_t *)s, &fd) != 0)
        return UV_EAGAIN;
    ssize_t rc;
    do {
        if (n == 1) {
            rc = send(fd, bufs[0].base, bufs[0].len, MSG_NOSIGNAL | MSG_DONTWAIT);
        } else {
            /* uv_buf_t is laid out as struct iovec on Unix (libuv's promise) */
            struct msghdr m = {.msg_iov = (struct iovec *)bufs, .msg_iovlen = n};
            rc = sendmsg(fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT);
        }
    } while (rc < 0 && errno == EINTR);
    if (rc >= 0)
        return rc;
    return errno == EAGAIN || errno == EWOULDBLOCK ? UV_EAGAIN : uv_translate_sys_error(errno);
}

static int
start(gw_wqueue_t *q, uv_stream_t *s, uv_write_cb cb)
{
    uv_buf_t b = uv_buf_init(q->flight.data, (unsigned)q->flight.len);
    int rc = uv_write(&q->req, s, &b, 1, cb);
    if (rc < 0)
        return rc;
    q->busy = 1;
    return 0;
}

int
gw_wqueue_write(gw_wqueue_t *q, uv_stream_t *s, const uv_buf_t *bufs, unsigned n, uv_write_cb cb)
{
    if (q->busy) {
        for (unsigned i = 0; i < n; i++)
            gw_buf_append(&q->next, bufs[i].base, bufs[i].len);
        return 0;
    }
    ssize_t rc = try_send(s, bufs, n);
    if (rc < 0 && rc != UV_EAGAIN)
        return (int)rc;
    size_t skip = rc > 0 ? (size_t)rc : 0;
    q->flight.len = 0;
    for (unsigned i = 0; i < n; i++) {
        if (skip >= bufs[i].len) {
            skip -= bufs[i].len;
            continue;
        }
        gw_buf_append(&q->flight, bufs[i].base + skip, bufs[i].len - skip);
        skip = 0;
    }
    if (q->flight.len == 0)
        return 1;
    int err = start(q, s, cb);
    return err < 0 ? err : 0;
}

int
gw_wqueue_written(gw_wqueue_t *q, uv_stream_t *s, uv_write_cb cb)
{
    q->busy = 0;
    q->flight.len = 0;
    if (q->next.len == 0)
        return 0;
    gw_buf_t t = q->flight;
    q->flight = q->next;
    q->next = t;
    int rc = start(q, s, cb);
    return rc < 0 ? rc : 1;
}

int
gw_wqueue_pending(const gw_wqueue_t *q)
{
    return q->busy || q->next.len;
}

void
gw_wqueue_trim(gw_wqueue_t *q, size_t keep)
{
    if (q->busy)
        return;
    if (q->flight.cap > keep)
        gw_buf_free(&q->flight);
    if (q->next.cap > keep)
        gw_buf_free(&q->next);
}

void
gw_wqueue_free(gw_wqueue_t *q)
{
    /* only when no write is in flight: the close callback guarantees it */
    gw_buf_free(&q->flight);
    gw_buf_free(&q->next);
}
