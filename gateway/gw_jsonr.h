/*
 * gw_jsonr: a small strict JSON reader for answers from registries (etcd,
 * Consul). One call parses a whole text into a flat token array (one token
 * per value, a container's members following it in order), bounded in
 * depth and in tokens, and validating everything RFC 8259 asks: the
 * grammar, string escapes (surrogates paired), UTF-8, numbers. Strings stay
 * in the text, decoded only when asked for.
 *
 * Walking: the root is token 0. A container's first member is the token
 * after it; each token's `end` is the token after its whole value, so a
 * sibling is one step away. An object's members come as key, value, key,
 * value.
 */
#ifndef GW_JSONR_H
#define GW_JSONR_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    GW_JSONR_NULL = 0,
    GW_JSONR_FALSE,
    GW_JSONR_TRUE,
    GW_JSONR_NUMBER,
    GW_JSONR_STRING,
    GW_JSONR_ARRAY,
    GW_JSONR_OBJECT,
} gw_jsonr_type_t;

#define GW_JSONR_MAX_DEPTH 64

typedef struct {
    uint8_t type;    /* gw_jsonr_type_t */
    uint8_t escaped; /* a string holding backslash escapes */
    uint32_t off;    /* the value's text; a string's without its quotes */
    uint32_t len;
    uint32_t end;   /* the token after this value and its members */
    uint32_t count; /* array elements, object members (pairs) */
} gw_jsonr_tok_t;

typedef struct {
    const char *text; /* borrowed: must outlive the reader */
    gw_jsonr_tok_t *toks;
    size_t ntoks, cap;
} gw_jsonr_t;

/**
 * Parses TEXT[0..LEN), one JSON value with optional whitespace around it,
 * into J (which it initialises; free it with gw_jsonr_free() whatever the
 * result). At most MAX_TOKS tokens are made (each 20 bytes) and containers
 * nest at most GW_JSONR_MAX_DEPTH deep. Returns 0, or -1 with the reason
 * and its byte offset in ERR (ERRLEN bytes, may be NULL).
 */
int gw_jsonr_parse(gw_jsonr_t *j, const char *text, size_t len, size_t max_toks, char *err,
                   size_t errlen);
void gw_jsonr_free(gw_jsonr_t *j);

/** The type of token T; T < 0 (absent) is GW_JSONR_NULL. */
gw_jsonr_type_t gw_jsonr_type(const gw_jsonr_t *j, int t);

/**
 * The value of member KEY of object OBJ, or -1 when OBJ is not an object
 * or has no such member. A key given twice: the last one counts (as Go's
 * encoding/json reads it, which the registries write with).
 */
int gw_jsonr_get(const gw_jsonr_t *j, int obj, const char *key);

/** The first element of array T (the first key of object T), or -1. */
int gw_jsonr_first(const gw_jsonr_t *j, int t);
/** The token after T's whole value: the next element (key), or -1 past
 * the end of the container PARENT. */
int gw_jsonr_next(const gw_jsonr_t *j, int parent, int t);

/**
 * String T decoded into OUT (CAP bytes), NUL-terminated. Returns its length,
 * or -1 when T is not a string, it does not fit, or it holds a NUL
 * (U+0000: not a C string).
 */
long gw_jsonr_str(const gw_jsonr_t *j, int t, char *out, size_t cap);
/** The same into a new allocation (free()); NULL for the same cases, or
 * out of memory. LEN may be NULL. */
char *gw_jsonr_strdup(const gw_jsonr_t *j, int t, size_t *len);
/** Whether T is a string equal to S. */
int gw_jsonr_str_eq(const gw_jsonr_t *j, int t, const char *s);

/**
 * An integer from T: a JSON number without fraction or exponent, or a string
 * holding one (how the etcd gateway writes 64-bit fields). Returns 0, or
 * -1 when T is anything else or out of int64 range.
 */
int gw_jsonr_int(const gw_jsonr_t *j, int t, int64_t *out);

#endif
