/* The growable buffer and the number formatter of gw_core.h. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "gw_core.h"

void
gw_buf_grow(gw_buf_t *b, size_t extra)
{
    if (b->len + extra <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 1024;
    while (cap < b->len + extra)
        cap *= 2;
    char *p = realloc(b->data, cap);
    if (p == NULL)
        abort();
    b->data = p;
    b->cap = cap;
}

void
gw_buf_append(gw_buf_t *b, const void *p, size_t n)
{
    if (n == 0)
        return;
    gw_buf_reserve(b, n);
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

void
gw_buf_appends(gw_buf_t *b, gw_str_t s)
{
    gw_buf_append(b, s.data, s.len);
}

void
gw_buf_appendf(gw_buf_t *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n <= 0)
        return;
    gw_buf_reserve(b, (size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void
gw_buf_free(gw_buf_t *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

size_t
gw_fmt_u64(char *out, uint64_t v)
{
    char tmp[20];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    return n;
}
