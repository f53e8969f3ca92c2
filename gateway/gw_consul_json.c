/* A strict JSON reader over a checked document; see gw_consul_json.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gw_consul_json.h"

/* ---- checking ------------------------------------------------------------ */

typedef struct {
    const char *start, *p, *end;
    const char *why;
} checker_t;

static void
ws(const char **pp, const char *end)
{
    const char *p = *pp;
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    *pp = p;
}

static int
fail(checker_t *c, const char *why)
{
    if (c->why == NULL)
        c->why = why;
    return -1;
}

static int
hexval(int ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* Length of the valid UTF-8 sequence at P (not ASCII), or 0. Overlong
 * forms, surrogates and code points past U+10FFFF are not valid. */
static size_t
utf8_len(const unsigned char *p, const unsigned char *end)
{
    unsigned char b = p[0];
    size_t n;
    unsigned char lo = 0x80, hi = 0xBF;

    if (b >= 0xC2 && b <= 0xDF)
        n = 2;
    else if (b >= 0xE0 && b <= 0xEF) {
        n = 3;
        if (b == 0xE0)
            lo = 0xA0;
        else if (b == 0xED)
            hi = 0x9F;
    } else if (b >= 0xF0 && b <= 0xF4) {
        n = 4;
        if (b == 0xF0)
            lo = 0x90;
        else if (b == 0xF4)
            hi = 0x8F;
    } else
        return 0;
    if ((size_t)(end - p) < n)
        return 0;
    if (p[1] < lo || p[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++)
        if (p[i] < 0x80 || p[i] > 0xBF)
            return 0;
    return n;
}

static int
check_string(checker_t *c)
{
    const char *p = c->p + 1; /* past the quote */
    while (p < c->end) {
        unsigned char ch = (unsigned char)*p;
        if (ch == '"') {
            c->p = p + 1;
            return 0;
        }
        if (ch < 0x20) {
            c->p = p;
            return fail(c, "control character in a string");
        }
        if (ch == '\\') {
            if (p + 1 >= c->end)
                break;
            switch (p[1]) {
            case '"':
            case '\\':
            case '/':
            case 'b':
            case 'f':
            case 'n':
            case 'r':
            case 't':
                p += 2;
                continue;
            case 'u':
                if (c->end - p < 6 || hexval(p[2]) < 0 || hexval(p[3]) < 0 || hexval(p[4]) < 0 ||
                    hexval(p[5]) < 0) {
                    c->p = p;
                    return fail(c, "bad \\u escape");
                }
                p += 6;
                continue;
            default:
                c->p = p;
                return fail(c, "bad escape");
            }
        }
        if (ch < 0x80) {
            p++;
            continue;
        }
        size_t n = utf8_len((const unsigned char *)p, (const unsigned char *)c->end);
        if (n == 0) {
            c->p = p;
            return fail(c, "invalid UTF-8");
        }
        p += n;
    }
    c->p = c->end;
    return fail(c, "unterminated string");
}

static int
digits(checker_t *c)
{
    const char *s = c->p;
    while (c->p < c->end && *c->p >= '0' && *c->p <= '9')
        c->p++;
    return c->p > s ? 0 : fail(c, "bad number");
}

static int
check_number(checker_t *c)
{
    if (*c->p == '-')
        c->p++;
    if (c->p < c->end && *c->p == '0')
        c->p++;
    else if (digits(c) < 0)
        return -1;
    if (c->p < c->end && *c->p == '.') {
        c->p++;
        if (digits(c) < 0)
            return -1;
    }
    if (c->p < c->end && (*c->p == 'e' || *c->p == 'E')) {
        c->p++;
        if (c->p < c->end && (*c->p == '+' || *c->p == '-'))
            c->p++;
        if (digits(c) < 0)
            return -1;
    }
    return 0;
}

static int
check_literal(checker_t *c, const char *lit)
{
    size_t n = strlen(lit);
    if ((size_t)(c->end - c->p) < n || memcmp(c->p, lit, n) != 0)
        return fail(c, "unexpected character");
    c->p += n;
    return 0;
}

static int check_value(checker_t *c, int depth);

/* An array or an object, C->P at its opening bracket. */
static int
check_container(checker_t *c, int depth)
{
    char close = *c->p == '[' ? ']' : '}';

    if (depth >= GW_CJ_MAX_DEPTH)
        return fail(c, "nested too deep");
    c->p++;
    ws(&c->p, c->end);
    if (c->p < c->end && *c->p == close) {
        c->p++;
        return 0;
    }
    for (;;) {
        if (close == '}') {
            if (c->p >= c->end || *c->p != '"')
                return fail(c, "expected a member name");
            if (check_string(c) < 0)
                return -1;
            ws(&c->p, c->end);
            if (c->p >= c->end || *c->p != ':')
                return fail(c, "expected ':'");
            c->p++;
        }
        if (check_value(c, depth + 1) < 0)
            return -1;
        ws(&c->p, c->end);
        if (c->p < c->end && *c->p == ',') {
            c->p++;
            ws(&c->p, c->end);
            continue;
        }
        if (c->p < c->end && *c->p == close) {
            c->p++;
            return 0;
        }
        return fail(c, close == ']' ? "expected ',' or ']'" : "expected ',' or '}'");
    }
}

static int
check_value(checker_t *c, int depth)
{
    ws(&c->p, c->end);
    if (c->p >= c->end)
        return fail(c, "unexpected end");
    switch (*c->p) {
    case '{':
    case '[':
        return check_container(c, depth);
    case '"':
        return check_string(c);
    case 't':
        return check_literal(c, "true");
    case 'f':
        return check_literal(c, "false");
    case 'n':
        return check_literal(c, "null");
    default:
        if (*c->p == '-' || (*c->p >= '0' && *c->p <= '9'))
            return check_number(c);
        return fail(c, "unexpected character");
    }
}

int
gw_cj_check(const char *s, size_t n, gw_cj_val_t *root, char *err, size_t errlen)
{
    checker_t c = {s, s, s + n, NULL};

    if (check_value(&c, 0) == 0) {
        const char *v = s;
        ws(&v, c.end);
        ws(&c.p, c.end);
        if (c.p == c.end) {
            root->p = v;
            root->end = c.end;
            return 0;
        }
        fail(&c, "data after the value");
    }
    if (err != NULL && errlen > 0)
        snprintf(err, errlen, "%s at byte %zu", c.why, (size_t)(c.p - c.start));
    return -1;
}

/* ---- walking a checked document ------------------------------------------ */

gw_cj_type_t
gw_cj_type(gw_cj_val_t v)
{
    if (v.p == NULL || v.p >= v.end)
        return GW_CJ_INVALID;
    switch (*v.p) {
    case '{':
        return GW_CJ_OBJECT;
    case '[':
        return GW_CJ_ARRAY;
    case '"':
        return GW_CJ_STRING;
    case 't':
        return GW_CJ_TRUE;
    case 'f':
        return GW_CJ_FALSE;
    case 'n':
        return GW_CJ_NULL;
    default:
        return GW_CJ_NUMBER;
    }
}

/* Past the string whose opening quote is at P (checked text). */
static const char *
skip_string(const char *p, const char *end)
{
    for (p++; p < end; p++) {
        if (*p == '\\')
            p++;
        else if (*p == '"')
            return p + 1;
    }
    return end;
}

/* Past the value at P (checked text): containers by counting brackets
 * outside strings, which the check made sure balance. */
static const char *
skip_value(const char *p, const char *end)
{
    int depth = 0;

    switch (*p) {
    case '"':
        return skip_string(p, end);
    case 't':
    case 'n':
        return p + 4;
    case 'f':
        return p + 5;
    case '{':
    case '[':
        break;
    default:
        while (p < end && (*p == '-' || *p == '+' || *p == '.' || *p == 'e' || *p == 'E' ||
                           (*p >= '0' && *p <= '9')))
            p++;
        return p;
    }
    while (p < end) {
        char ch = *p;
        if (ch == '"') {
            p = skip_string(p, end);
            continue;
        }
        if (ch == '{' || ch == '[')
            depth++;
        else if ((ch == '}' || ch == ']') && --depth == 0)
            return p + 1;
        p++;
    }
    return end;
}

gw_cj_iter_t
gw_cj_iter(gw_cj_val_t v)
{
    gw_cj_type_t t = gw_cj_type(v);
    gw_cj_iter_t it = {NULL, v.end, 1};
    if (t == GW_CJ_ARRAY || t == GW_CJ_OBJECT)
        it.p = v.p + 1;
    return it;
}

/* Moves IT to its next member's first byte: 1, or 0 at the closing
 * bracket (then the walk is over). */
static int
iter_step(gw_cj_iter_t *it)
{
    if (it->p == NULL)
        return 0;
    ws(&it->p, it->end);
    if (!it->first) {
        if (it->p < it->end && *it->p == ',') {
            it->p++;
            ws(&it->p, it->end);
        }
    }
    it->first = 0;
    if (it->p >= it->end || *it->p == ']' || *it->p == '}') {
        it->p = NULL;
        return 0;
    }
    return 1;
}

int
gw_cj_array_next(gw_cj_iter_t *it, gw_cj_val_t *elem)
{
    if (!iter_step(it))
        return 0;
    elem->p = it->p;
    elem->end = it->end;
    it->p = skip_value(it->p, it->end);
    return 1;
}

int
gw_cj_object_next(gw_cj_iter_t *it, gw_cj_val_t *key, gw_cj_val_t *val)
{
    if (!iter_step(it))
        return 0;
    key->p = it->p;
    key->end = it->end;
    it->p = skip_string(it->p, it->end);
    ws(&it->p, it->end);
    it->p++; /* the colon */
    ws(&it->p, it->end);
    val->p = it->p;
    val->end = it->end;
    it->p = skip_value(it->p, it->end);
    return 1;
}

/* ---- strings and numbers ------------------------------------------------- */

static size_t
put_utf8(char *out, uint32_t cp)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

static uint32_t
hex4(const char *p)
{
    return (uint32_t)(hexval(p[0]) << 12 | hexval(p[1]) << 8 | hexval(p[2]) << 4 | hexval(p[3]));
}

/* The code point of the \u escape at P (checked), joining a surrogate pair;
 * *ADV gets the bytes used. A lone surrogate is U+FFFD. */
static uint32_t
unicode_escape(const char *p, const char *end, size_t *adv)
{
    uint32_t cp = hex4(p + 2);
    *adv = 6;
    if (cp >= 0xD800 && cp <= 0xDBFF) {
        if (end - p >= 12 && p[6] == '\\' && p[7] == 'u') {
            uint32_t lo = hex4(p + 8);
            if (lo >= 0xDC00 && lo <= 0xDFFF) {
                *adv = 12;
                return 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            }
        }
        return 0xFFFD;
    }
    if (cp >= 0xDC00 && cp <= 0xDFFF)
        return 0xFFFD;
    return cp;
}

/* Decodes string V into OUT (room for the raw length, which decoding never
 * exceeds). Returns the length, or -1 on a NUL. */
static long
decode_string(gw_cj_val_t v, char *out)
{
    const char *p = v.p + 1;
    const char *end = skip_string(v.p, v.end) - 1; /* the closing quote */
    size_t n = 0;

    while (p < end) {
        if (*p != '\\') {
            if (*p == '\0')
                return -1;
            out[n++] = *p++;
            continue;
        }
        char e = p[1];
        if (e == 'u') {
            size_t adv;
            uint32_t cp = unicode_escape(p, end, &adv);
            if (cp == 0)
                return -1;
            n += put_utf8(out + n, cp);
            p += adv;
            continue;
        }
        out[n++] = e == 'b'   ? '\b'
                   : e == 'f' ? '\f'
                   : e == 'n' ? '\n'
                   : e == 'r' ? '\r'
                   : e == 't' ? '\t'
                              : e;
        p += 2;
    }
    return (long)n;
}

char *
gw_cj_str_dup(gw_cj_val_t v, size_t max, size_t *len)
{
    if (gw_cj_type(v) != GW_CJ_STRING)
        return NULL;
    size_t raw = (size_t)(skip_string(v.p, v.end) - v.p);
    char *out = malloc(raw + 1);
    if (out == NULL)
        return NULL;
    long n = decode_string(v, out);
    if (n < 0 || (size_t)n > max) {
        free(out);
        return NULL;
    }
    out[n] = '\0';
    if (len != NULL)
        *len = (size_t)n;
    return out;
}

int
gw_cj_str_eq(gw_cj_val_t v, const char *name)
{
    if (gw_cj_type(v) != GW_CJ_STRING)
        return 0;
    size_t want = strlen(name);
    const char *end = skip_string(v.p, v.end);
    size_t raw = (size_t)(end - v.p) - 2;
    if (memchr(v.p + 1, '\\', raw) == NULL)
        return raw == want && memcmp(v.p + 1, name, want) == 0;
    char buf[256];
    if (raw >= sizeof(buf))
        return 0; /* member names we look for are short */
    long n = decode_string(v, buf);
    return n >= 0 && (size_t)n == want && memcmp(buf, name, want) == 0;
}

int
gw_cj_get(gw_cj_val_t obj, const char *name, gw_cj_val_t *out)
{
    gw_cj_iter_t it;
    gw_cj_val_t k, v;
    int found = 0;

    if (gw_cj_type(obj) != GW_CJ_OBJECT)
        return 0;
    it = gw_cj_iter(obj);
    while (gw_cj_object_next(&it, &k, &v)) {
        if (gw_cj_str_eq(k, name)) {
            *out = v;
            found = 1;
        }
    }
    return found;
}

int
gw_cj_int(gw_cj_val_t v, int64_t *out)
{
    const char *p = v.p;
    int neg = 0;
    uint64_t acc = 0;

    if (gw_cj_type(v) != GW_CJ_NUMBER)
        return -1;
    if (*p == '-') {
        neg = 1;
        p++;
    }
    const char *s = p;
    while (p < v.end && *p >= '0' && *p <= '9') {
        if (acc > (UINT64_MAX - 9) / 10)
            return -1;
        acc = acc * 10 + (uint64_t)(*p - '0');
        p++;
    }
    if (p == s || (p < v.end && (*p == '.' || *p == 'e' || *p == 'E')))
        return -1;
    if (acc > (uint64_t)INT64_MAX + (uint64_t)neg)
        return -1;
    *out = neg ? (int64_t)(0 - acc) : (int64_t)acc;
    return 0;
}
