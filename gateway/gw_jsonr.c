/*
 * The strict JSON reader. A recursive descent over the text, its depth
 * bounded, appending one token per value; a container's token is patched
 * with its member count and end once its members are in.
 */
#include "gw_jsonr.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    gw_jsonr_t *j;
    const char *s;
    size_t len, pos, max_toks;
    char *err;
    size_t errlen;
} parser_t;

static int
fail(parser_t *p, const char *what)
{
    if (p->err && p->errlen)
        snprintf(p->err, p->errlen, "%s at byte %zu", what, p->pos);
    return -1;
}

static void
skip_ws(parser_t *p)
{
    while (p->pos < p->len) {
        char c = p->s[p->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
            break;
        p->pos++;
    }
}

static long
new_tok(parser_t *p, gw_jsonr_type_t type)
{
    gw_jsonr_t *j = p->j;
    if (j->ntoks == p->max_toks)
        return fail(p, "too many values");
    if (j->ntoks == j->cap) {
        size_t cap = j->cap ? j->cap * 2 : 64;
        if (cap > p->max_toks)
            cap = p->max_toks;
        gw_jsonr_tok_t *t = realloc(j->toks, cap * sizeof(*t));
        if (t == NULL)
            return fail(p, "out of memory");
        j->toks = t;
        j->cap = cap;
    }
    gw_jsonr_tok_t *t = &j->toks[j->ntoks];
    memset(t, 0, sizeof(*t));
    t->type = (uint8_t)type;
    t->off = (uint32_t)p->pos;
    return (long)j->ntoks++;
}

static int
hex4(const char *s, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = s[i];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            v |= (unsigned)(c - 'A' + 10);
        else
            return -1;
    }
    *out = v;
    return 0;
}

/* One UTF-8 sequence at S (N bytes available): its length, or 0 when it is
 * not the shortest form of a scalar value. */
static size_t
utf8_len(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        return n >= 2 && (s[1] & 0xc0) == 0x80 ? 2 : 0;
    if (c >= 0xe0 && c <= 0xef) {
        if (n < 3 || (s[1] & 0xc0) != 0x80 || (s[2] & 0xc0) != 0x80)
            return 0;
        if (c == 0xe0 && s[1] < 0xa0) /* overlong */
            return 0;
        if (c == 0xed && s[1] >= 0xa0) /* a surrogate */
            return 0;
        return 3;
    }
    if (c >= 0xf0 && c <= 0xf4) {
        if (n < 4 || (s[1] & 0xc0) != 0x80 || (s[2] & 0xc0) != 0x80 || (s[3] & 0xc0) != 0x80)
            return 0;
        if (c == 0xf0 && s[1] < 0x90) /* overlong */
            return 0;
        if (c == 0xf4 && s[1] >= 0x90) /* past U+10FFFF */
            return 0;
        return 4;
    }
    return 0;
}

/* An escape after the backslash at p->pos - 1. */
static int
parse_escape(parser_t *p)
{
    unsigned u, lo;
    if (p->pos >= p->len)
        return fail(p, "unterminated string");
    char c = p->s[p->pos++];
    if (strchr("\"\\/bfnrt", c) != NULL && c != '\0')
        return 0;
    if (c != 'u')
        return fail(p, "bad escape");
    if (p->len - p->pos < 4 || hex4(p->s + p->pos, &u) != 0)
        return fail(p, "bad \\u escape");
    p->pos += 4;
    if (u >= 0xdc00 && u <= 0xdfff)
        return fail(p, "lone low surrogate");
    if (u < 0xd800 || u > 0xdbff)
        return 0;
    if (p->len - p->pos < 6 || p->s[p->pos] != '\\' || p->s[p->pos + 1] != 'u' ||
        hex4(p->s + p->pos + 2, &lo) != 0 || lo < 0xdc00 || lo > 0xdfff)
        return fail(p, "lone high surrogate");
    p->pos += 6;
    return 0;
}

static int
parse_string(parser_t *p)
{
    long t = new_tok(p, GW_JSONR_STRING);
    if (t < 0)
        return -1;
    p->pos++; /* the opening quote */
    size_t start = p->pos;
    int escaped = 0;
    for (;;) {
        if (p->pos >= p->len)
            return fail(p, "unterminated string");
        unsigned char c = (unsigned char)p->s[p->pos];
        if (c == '"')
            break;
        if (c < 0x20)
            return fail(p, "control character in string");
        if (c == '\\') {
            escaped = 1;
            p->pos++;
            if (parse_escape(p) != 0)
                return -1;
            continue;
        }
        size_t n = utf8_len((const unsigned char *)p->s + p->pos, p->len - p->pos);
        if (n == 0)
            return fail(p, "invalid UTF-8");
        p->pos += n;
    }
    gw_jsonr_tok_t *tk = &p->j->toks[t];
    tk->off = (uint32_t)start;
    tk->len = (uint32_t)(p->pos - start);
    tk->escaped = (uint8_t)escaped;
    tk->end = (uint32_t)t + 1;
    p->pos++; /* the closing quote */
    return 0;
}

static int
digits(parser_t *p)
{
    size_t start = p->pos;
    while (p->pos < p->len && p->s[p->pos] >= '0' && p->s[p->pos] <= '9')
        p->pos++;
    return p->pos > start ? 0 : fail(p, "bad number");
}

static int
parse_number(parser_t *p)
{
    long t = new_tok(p, GW_JSONR_NUMBER);
    if (t < 0)
        return -1;
    size_t start = p->pos;
    if (p->s[p->pos] == '-')
        p->pos++;
    if (p->pos < p->len && p->s[p->pos] == '0') {
        p->pos++;
        if (p->pos < p->len && p->s[p->pos] >= '0' && p->s[p->pos] <= '9')
            return fail(p, "leading zero in number");
    } else if (digits(p) != 0) {
        return -1;
    }
    if (p->pos < p->len && p->s[p->pos] == '.') {
        p->pos++;
        if (digits(p) != 0)
            return -1;
    }
    if (p->pos < p->len && (p->s[p->pos] == 'e' || p->s[p->pos] == 'E')) {
        p->pos++;
        if (p->pos < p->len && (p->s[p->pos] == '+' || p->s[p->pos] == '-'))
            p->pos++;
        if (digits(p) != 0)
            return -1;
    }
    gw_jsonr_tok_t *tk = &p->j->toks[t];
    tk->len = (uint32_t)(p->pos - start);
    tk->end = (uint32_t)t + 1;
    return 0;
}

static int
parse_literal(parser_t *p, const char *word, gw_jsonr_type_t type)
{
    size_t n = strlen(word);
    if (p->len - p->pos < n || memcmp(p->s + p->pos, word, n) != 0)
        return fail(p, "unexpected character");
    long t = new_tok(p, type);
    if (t < 0)
        return -1;
    p->pos += n;
    p->j->toks[t].len = (uint32_t)n;
    p->j->toks[t].end = (uint32_t)t + 1;
    return 0;
}

static int parse_value(parser_t *p, int depth);

/* An array or an object: members separated by commas, no trailing comma. */
static int
parse_container(parser_t *p, int depth, int object)
{
    long t = new_tok(p, object ? GW_JSONR_OBJECT : GW_JSONR_ARRAY);
    char close = object ? '}' : ']';
    uint32_t count = 0;

    if (t < 0)
        return -1;
    if (depth >= GW_JSONR_MAX_DEPTH)
        return fail(p, "nested too deep");
    p->pos++;
    skip_ws(p);
    if (p->pos < p->len && p->s[p->pos] == close) {
        p->pos++;
    } else {
        for (;;) {
            skip_ws(p);
            if (object) {
                if (p->pos >= p->len || p->s[p->pos] != '"')
                    return fail(p, "expected a key");
                if (parse_string(p) != 0)
                    return -1;
                skip_ws(p);
                if (p->pos >= p->len || p->s[p->pos] != ':')
                    return fail(p, "expected ':'");
                p->pos++;
            }
            if (parse_value(p, depth + 1) != 0)
                return -1;
            count++;
            skip_ws(p);
            if (p->pos < p->len && p->s[p->pos] == ',') {
                p->pos++;
                continue;
            }
            if (p->pos < p->len && p->s[p->pos] == close) {
                p->pos++;
                break;
            }
            return fail(p, object ? "expected ',' or '}'" : "expected ',' or ']'");
        }
    }
    gw_jsonr_tok_t *tk = &p->j->toks[t];
    tk->len = (uint32_t)(p->pos - tk->off);
    tk->count = count;
    tk->end = (uint32_t)p->j->ntoks;
    return 0;
}

static int
parse_value(parser_t *p, int depth)
{
    skip_ws(p);
    if (p->pos >= p->len)
        return fail(p, "unexpected end");
    switch (p->s[p->pos]) {
    case '{':
        return parse_container(p, depth, 1);
    case '[':
        return parse_container(p, depth, 0);
    case '"':
        return parse_string(p);
    case 't':
        return parse_literal(p, "true", GW_JSONR_TRUE);
    case 'f':
        return parse_literal(p, "false", GW_JSONR_FALSE);
    case 'n':
        return parse_literal(p, "null", GW_JSONR_NULL);
    default:
        if (p->s[p->pos] == '-' || (p->s[p->pos] >= '0' && p->s[p->pos] <= '9'))
            return parse_number(p);
        return fail(p, "unexpected character");
    }
}

int
gw_jsonr_parse(gw_jsonr_t *j, const char *text, size_t len, size_t max_toks, char *err,
               size_t errlen)
{
    parser_t p = {j, text, len, 0, max_toks, err, errlen};

    memset(j, 0, sizeof(*j));
    j->text = text;
    if (err && errlen)
        err[0] = '\0';
    if (len >= UINT32_MAX)
        return fail(&p, "text too large");
    if (max_toks == 0 || max_toks >= UINT32_MAX)
        return fail(&p, "bad token limit");
    if (parse_value(&p, 0) != 0)
        return -1;
    skip_ws(&p);
    if (p.pos != len)
        return fail(&p, "text after the value");
    return 0;
}

void
gw_jsonr_free(gw_jsonr_t *j)
{
    free(j->toks);
    j->toks = NULL;
    j->ntoks = j->cap = 0;
}

gw_jsonr_type_t
gw_jsonr_type(const gw_jsonr_t *j, int t)
{
    if (t < 0 || (size_t)t >= j->ntoks)
        return GW_JSONR_NULL;
    return (gw_jsonr_type_t)j->toks[t].type;
}

int
gw_jsonr_first(const gw_jsonr_t *j, int t)
{
    gw_jsonr_type_t type = gw_jsonr_type(j, t);
    if ((type != GW_JSONR_ARRAY && type != GW_JSONR_OBJECT) || j->toks[t].count == 0)
        return -1;
    return t + 1;
}

int
gw_jsonr_next(const gw_jsonr_t *j, int parent, int t)
{
    if (t < 0 || (size_t)t >= j->ntoks || parent < 0 || (size_t)parent >= j->ntoks)
        return -1;
    uint32_t n = j->toks[t].end;
    return n < j->toks[parent].end ? (int)n : -1;
}

/* Decodes string T into OUT, which holds at least its raw length + 1 bytes
 * (decoding never grows a string). Returns the decoded length, or -1 for a
 * NUL inside. */
static long
decode(const gw_jsonr_t *j, const gw_jsonr_tok_t *tk, char *out)
{
    const char *s = j->text + tk->off, *end = s + tk->len;
    char *o = out;

    if (!tk->escaped) {
        if (memchr(s, '\0', tk->len) != NULL)
            return -1;
        memcpy(out, s, tk->len);
        out[tk->len] = '\0';
        return (long)tk->len;
    }
    while (s < end) {
        if (*s != '\\') {
            if (*s == '\0')
                return -1;
            *o++ = *s++;
            continue;
        }
        s++;
        char c = *s++;
        unsigned u, lo;
        switch (c) {
        case 'b':
            *o++ = '\b';
            continue;
        case 'f':
            *o++ = '\f';
            continue;
        case 'n':
            *o++ = '\n';
            continue;
        case 'r':
            *o++ = '\r';
            continue;
        case 't':
            *o++ = '\t';
            continue;
        case 'u':
            break;
        default: /* " \ / */
            *o++ = c;
            continue;
        }
        hex4(s, &u); /* validated by the parser */
        s += 4;
        if (u >= 0xd800 && u <= 0xdbff) {
            hex4(s + 2, &lo);
            s += 6;
            u = 0x10000 + ((u - 0xd800) << 10) + (lo - 0xdc00);
        }
        if (u == 0)
            return -1;
        if (u < 0x80) {
            *o++ = (char)u;
        } else if (u < 0x800) {
            *o++ = (char)(0xc0 | (u >> 6));
            *o++ = (char)(0x80 | (u & 0x3f));
        } else if (u < 0x10000) {
            *o++ = (char)(0xe0 | (u >> 12));
            *o++ = (char)(0x80 | ((u >> 6) & 0x3f));
            *o++ = (char)(0x80 | (u & 0x3f));
        } else {
            *o++ = (char)(0xf0 | (u >> 18));
            *o++ = (char)(0x80 | ((u >> 12) & 0x3f));
            *o++ = (char)(0x80 | ((u >> 6) & 0x3f));
            *o++ = (char)(0x80 | (u & 0x3f));
        }
    }
    *o = '\0';
    return (long)(o - out);
}

char *
gw_jsonr_strdup(const gw_jsonr_t *j, int t, size_t *len)
{
    if (gw_jsonr_type(j, t) != GW_JSONR_STRING)
        return NULL;
    const gw_jsonr_tok_t *tk = &j->toks[t];
    char *out = malloc((size_t)tk->len + 1);
    if (out == NULL)
        return NULL;
    long n = decode(j, tk, out);
    if (n < 0) {
        free(out);
        return NULL;
    }
    if (len)
        *len = (size_t)n;
    return out;
}

long
gw_jsonr_str(const gw_jsonr_t *j, int t, char *out, size_t cap)
{
    if (gw_jsonr_type(j, t) != GW_JSONR_STRING)
        return -1;
    const gw_jsonr_tok_t *tk = &j->toks[t];
    if ((size_t)tk->len + 1 <= cap)
        return decode(j, tk, out);
    char *tmp = gw_jsonr_strdup(j, t, NULL);
    if (tmp == NULL)
        return -1;
    size_t n = strlen(tmp);
    long rc = -1;
    if (n < cap) {
        memcpy(out, tmp, n + 1);
        rc = (long)n;
    }
    free(tmp);
    return rc;
}

int
gw_jsonr_str_eq(const gw_jsonr_t *j, int t, const char *s)
{
    if (gw_jsonr_type(j, t) != GW_JSONR_STRING)
        return 0;
    const gw_jsonr_tok_t *tk = &j->toks[t];
    size_t n = strlen(s);
    if (!tk->escaped)
        return tk->len == n && memcmp(j->text + tk->off, s, n) == 0;
    if (n > tk->len) /* decoding only shrinks */
        return 0;
    char *d = gw_jsonr_strdup(j, t, NULL);
    int eq = d != NULL && strcmp(d, s) == 0;
    free(d);
    return eq;
}

int
gw_jsonr_get(const gw_jsonr_t *j, int obj, const char *key)
{
    int found = -1;
    if (gw_jsonr_type(j, obj) != GW_JSONR_OBJECT)
        return -1;
    for (int k = gw_jsonr_first(j, obj); k >= 0; k = gw_jsonr_next(j, obj, k + 1))
        if (gw_jsonr_str_eq(j, k, key))
            found = k + 1;
    return found;
}

int
gw_jsonr_int(const gw_jsonr_t *j, int t, int64_t *out)
{
    char buf[32];
    gw_jsonr_type_t type = gw_jsonr_type(j, t);
    const gw_jsonr_tok_t *tk;

    if (type != GW_JSONR_NUMBER && type != GW_JSONR_STRING)
        return -1;
    tk = &j->toks[t];
    if (tk->len == 0 || tk->len >= sizeof(buf) || tk->escaped)
        return -1;
    memcpy(buf, j->text + tk->off, tk->len);
    buf[tk->len] = '\0';
    /* Only what JSON allows for an integer: an optional minus, no leading
     * zero, digits only (strtoll alone would take "+1", " 1", "0x1"). */
    const char *d = buf[0] == '-' ? buf + 1 : buf;
    if (d[0] == '\0' || (d[0] == '0' && d[1] != '\0'))
        return -1;
    for (const char *q = d; *q; q++)
        if (*q < '0' || *q > '9')
            return -1;
    errno = 0;
    long long v = strtoll(buf, NULL, 10);
    if (errno == ERANGE)
        return -1;
    *out = (int64_t)v;
    return 0;
}
