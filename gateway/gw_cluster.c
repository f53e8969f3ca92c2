/* Redis Cluster logic without I/O: key slots, the slot map, redirects and
 * the refresh rule (contract in gw_cluster.h). */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gw_cluster.h"
#include "gw_core.h"

#define NO_NODE 0xffff

struct gw_cluster_map_s {
    uint16_t owner[GW_CLUSTER_NSLOTS]; /* index into nodes, or NO_NODE */
    gw_cluster_addr_t *nodes;
    size_t nnodes, cap;
    size_t covered;
};

/* ---- slots --------------------------------------------------------------- */

uint16_t
gw_cluster_crc16(const char *buf, size_t len)
{
    uint16_t crc = 0;
    for (size_t i = 0; i < len; i++) {
        crc ^= (uint16_t)((unsigned char)buf[i] << 8);
        for (int b = 0; b < 8; b++)
            crc = (crc & 0x8000) ? (uint16_t)((crc << 1) ^ 0x1021) : (uint16_t)(crc << 1);
    }
    return crc;
}

unsigned
gw_cluster_keyslot(const char *key, size_t len)
{
    const char *open = memchr(key, '{', len);
    if (open != NULL) {
        size_t rest = len - (size_t)(open - key) - 1;
        const char *close = memchr(open + 1, '}', rest);
        if (close != NULL && close > open + 1)
            return gw_cluster_crc16(open + 1, (size_t)(close - open - 1)) & (GW_CLUSTER_NSLOTS - 1);
    }
    return gw_cluster_crc16(key, len) & (GW_CLUSTER_NSLOTS - 1);
}

/* ---- addresses and error replies ------------------------------------------ */

static int
host_char(unsigned char ch)
{
    return isalnum(ch) || ch == '.' || ch == '-' || ch == '_' || ch == ':' || ch == '%';
}

int
gw_cluster_addr_parse(const char *s, size_t len, const gw_cluster_addr_t *asked,
                      gw_cluster_addr_t *out)
{
    const char *colon = NULL;
    for (size_t i = len; i > 0; i--) {
        if (s[i - 1] == ':') {
            colon = s + i - 1;
            break;
        }
    }
    if (colon == NULL)
        return GW_ERROR;
    const char *hs = s, *he = colon, *ps = colon + 1, *end = s + len;
    if (he - hs >= 2 && hs[0] == '[' && he[-1] == ']') {
        hs++;
        he--;
    }
    long port = 0;
    if (ps == end || end - ps > 5)
        return GW_ERROR;
    for (const char *p = ps; p < end; p++) {
        if (!isdigit((unsigned char)*p))
            return GW_ERROR;
        port = port * 10 + (*p - '0');
    }
    if (port < 1 || port > 65535)
        return GW_ERROR;
    size_t hlen = (size_t)(he - hs);
    if (hlen > GW_CLUSTER_HOST_MAX)
        return GW_ERROR;
    for (const char *p = hs; p < he; p++) {
        if (!host_char((unsigned char)*p))
            return GW_ERROR;
    }
    if (hlen == 0) {
        if (asked == NULL)
            return GW_ERROR;
        memmove(out->host, asked->host, sizeof(out->host));
    } else {
        memcpy(out->host, hs, hlen);
        out->host[hlen] = '\0';
    }
    out->port = (int)port;
    return GW_OK;
}

int
gw_cluster_addr_eq(const gw_cluster_addr_t *a, const gw_cluster_addr_t *b)
{
    return a->port == b->port && strcmp(a->host, b->host) == 0;
}

/* MSG starts with WORD followed by a space or the end. */
static int
starts_word(const char *msg, size_t len, const char *word)
{
    size_t n = strlen(word);
    return len >= n && memcmp(msg, word, n) == 0 && (len == n || msg[n] == ' ');
}

gw_cluster_err_t
gw_cluster_err_kind(const char *msg, size_t len)
{
    static const struct {
        const char *word;
        gw_cluster_err_t kind;
    } kinds[] = {{"MOVED", GW_CLUSTER_EMOVED},
                 {"ASK", GW_CLUSTER_EASK},
                 {"TRYAGAIN", GW_CLUSTER_ETRYAGAIN},
                 {"CLUSTERDOWN", GW_CLUSTER_ECLUSTERDOWN},
                 {"NOSCRIPT", GW_CLUSTER_ENOSCRIPT}};
    if (len > 0 && msg[0] == '-') {
        msg++;
        len--;
    }
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
        if (starts_word(msg, len, kinds[i].word))
            return kinds[i].kind;
    }
    return GW_CLUSTER_EOTHER;
}

gw_cluster_err_t
gw_cluster_redirect_parse(const char *msg, size_t len, const gw_cluster_addr_t *asked,
                          unsigned *slot, gw_cluster_addr_t *to)
{
    gw_cluster_err_t kind = gw_cluster_err_kind(msg, len);
    if (kind != GW_CLUSTER_EMOVED && kind != GW_CLUSTER_EASK)
        return GW_CLUSTER_EOTHER;
    const char *p = memchr(msg, ' ', len), *end = msg + len;
    if (p == NULL)
        return GW_CLUSTER_EOTHER;
    p++;
    unsigned s = 0;
    const char *digits = p;
    while (p < end && isdigit((unsigned char)*p) && p - digits < 6)
        s = s * 10 + (unsigned)(*p++ - '0');
    if (p == digits || p == end || *p != ' ' || s >= GW_CLUSTER_NSLOTS)
        return GW_CLUSTER_EOTHER;
    p++;
    gw_cluster_addr_t a;
    if (gw_cluster_addr_parse(p, (size_t)(end - p), asked, &a) != GW_OK)
        return GW_CLUSTER_EOTHER;
    *slot = s;
    *to = a;
    return kind;
}

/* ---- the slot map ---------------------------------------------------------- */

gw_cluster_map_t *
gw_cluster_map_new(void)
{
    gw_cluster_map_t *m = calloc(1, sizeof(*m));
    if (m == NULL)
        return NULL;
    for (size_t i = 0; i < GW_CLUSTER_NSLOTS; i++)
        m->owner[i] = NO_NODE;
    return m;
}

void
gw_cluster_map_free(gw_cluster_map_t *m)
{
    if (m == NULL)
        return;
    free(m->nodes);
    free(m);
}

/* The index of A, added when new; -1 when full or out of memory. */
static int
node_index(gw_cluster_map_t *m, const gw_cluster_addr_t *a)
{
    for (size_t i = 0; i < m->nnodes; i++) {
        if (gw_cluster_addr_eq(&m->nodes[i], a))
            return (int)i;
    }
    if (m->nnodes >= GW_CLUSTER_MAX_NODES)
        return -1;
    if (m->nnodes == m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 8;
        gw_cluster_addr_t *n = realloc(m->nodes, cap * sizeof(*n));
        if (n == NULL)
            return -1;
        m->nodes = n;
        m->cap = cap;
    }
    m->nodes[m->nnodes] = *a;
    return (int)m->nnodes++;
}

/* One [start, end, [host, port, ...], replicas...] entry into M. */
static int
add_range(gw_cluster_map_t *m, const redisReply *e, size_t i, const gw_cluster_addr_t *asked,
          char *why, size_t whylen)
{
    if (e->type != REDIS_REPLY_ARRAY || e->elements < 3 ||
        e->element[0]->type != REDIS_REPLY_INTEGER || e->element[1]->type != REDIS_REPLY_INTEGER) {
        snprintf(why, whylen, "entry %zu is not [start, end, master, ...]", i);
        return GW_ERROR;
    }
    long long start = e->element[0]->integer, end = e->element[1]->integer;
    if (start < 0 || end < start || end >= GW_CLUSTER_NSLOTS) {
        snprintf(why, whylen, "entry %zu: bad slot range %lld-%lld", i, start, end);
        return GW_ERROR;
    }
    const redisReply *n = e->element[2];
    if (n->type != REDIS_REPLY_ARRAY || n->elements < 2 ||
        n->element[0]->type != REDIS_REPLY_STRING || n->element[1]->type != REDIS_REPLY_INTEGER ||
        n->element[1]->integer < 0 || n->element[1]->integer > 65535) {
        snprintf(why, whylen, "entry %zu: the master is not [host, port, ...]", i);
        return GW_ERROR;
    }
    for (long long s = start; s <= end; s++) {
        if (m->owner[s] != NO_NODE) {
            snprintf(why, whylen, "entry %zu: slot %lld is given twice", i, s);
            return GW_ERROR;
        }
    }
    /* "?": the master's address is unknown (Redis 7); its slots stay holes */
    if (n->element[0]->len == 1 && n->element[0]->str[0] == '?')
        return GW_OK;
    const redisReply *h = n->element[0];
    char text[GW_CLUSTER_HOST_MAX + 16];
    gw_cluster_addr_t a;
    int len = snprintf(text, sizeof(text), "%.*s:%lld",
                       (int)(h->len > GW_CLUSTER_HOST_MAX ? GW_CLUSTER_HOST_MAX : h->len), h->str,
                       n->element[1]->integer);
    if (h->len > GW_CLUSTER_HOST_MAX || memchr(h->str, '\0', h->len) != NULL ||
        gw_cluster_addr_parse(text, (size_t)len, asked, &a) != GW_OK) {
        snprintf(why, whylen, "entry %zu: bad master address \"%.64s\"", i, text);
        return GW_ERROR;
    }
    int idx = node_index(m, &a);
    if (idx < 0) {
        snprintf(why, whylen, "more than %d masters, or out of memory", GW_CLUSTER_MAX_NODES);
        return GW_ERROR;
    }
    for (long long s = start; s <= end; s++)
        m->owner[s] = (uint16_t)idx;
    m->covered += (size_t)(end - start + 1);
    return GW_OK;
}

gw_cluster_map_t *
gw_cluster_map_from_slots(const redisReply *reply, const gw_cluster_addr_t *asked, char *why,
                          size_t whylen)
{
    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY) {
        snprintf(why, whylen, "the reply is not an array");
        return NULL;
    }
    if (reply->elements > GW_CLUSTER_NSLOTS) {
        snprintf(why, whylen, "%zu ranges for %d slots", (size_t)reply->elements,
                 GW_CLUSTER_NSLOTS);
        return NULL;
    }
    gw_cluster_map_t *m = gw_cluster_map_new();
    if (m == NULL) {
        snprintf(why, whylen, "out of memory");
        return NULL;
    }
    for (size_t i = 0; i < reply->elements; i++) {
        if (add_range(m, reply->element[i], i, asked, why, whylen) != GW_OK) {
            gw_cluster_map_free(m);
            return NULL;
        }
    }
    if (m->covered == 0) {
        snprintf(why, whylen, "no slot has a master");
        gw_cluster_map_free(m);
        return NULL;
    }
    return m;
}

int
gw_cluster_map_owner(const gw_cluster_map_t *m, unsigned slot)
{
    if (slot >= GW_CLUSTER_NSLOTS || m->owner[slot] == NO_NODE)
        return -1;
    return m->owner[slot];
}

const gw_cluster_addr_t *
gw_cluster_map_node(const gw_cluster_map_t *m, size_t i)
{
    return i < m->nnodes ? &m->nodes[i] : NULL;
}

size_t
gw_cluster_map_nnodes(const gw_cluster_map_t *m)
{
    return m->nnodes;
}

size_t
gw_cluster_map_covered(const gw_cluster_map_t *m)
{
    return m->covered;
}

int
gw_cluster_map_move(gw_cluster_map_t *m, unsigned slot, const gw_cluster_addr_t *to)
{
    if (slot >= GW_CLUSTER_NSLOTS)
        return GW_ERROR;
    int idx = node_index(m, to);
    if (idx < 0)
        return GW_ERROR;
    if (m->owner[slot] == NO_NODE)
        m->covered++;
    m->owner[slot] = (uint16_t)idx;
    return GW_OK;
}

/* ---- the refresh rule ------------------------------------------------------ */

void
gw_cluster_refresh_init(gw_cluster_refresh_t *r, uint64_t min_gap_ms)
{
    memset(r, 0, sizeof(*r));
    r->min_gap_ms = min_gap_ms;
}

void
gw_cluster_refresh_want(gw_cluster_refresh_t *r)
{
    r->pending = 1;
}

uint64_t
gw_cluster_refresh_next(const gw_cluster_refresh_t *r, uint64_t now_ms)
{
    if (!r->pending || r->in_flight)
        return UINT64_MAX;
    if (!r->started || now_ms >= r->last_start_ms + r->min_gap_ms)
        return 0;
    return r->last_start_ms + r->min_gap_ms - now_ms;
}

int
gw_cluster_refresh_take(gw_cluster_refresh_t *r, uint64_t now_ms)
{
    if (gw_cluster_refresh_next(r, now_ms) != 0)
        return 0;
    r->pending = 0;
    r->in_flight = 1;
    r->started = 1;
    r->last_start_ms = now_ms;
    return 1;
}

void
gw_cluster_refresh_done(gw_cluster_refresh_t *r)
{
    r->in_flight = 0;
}
