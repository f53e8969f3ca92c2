/*
 * A small strict JSON reader for the answers of Consul's HTTP API.
 *
 * It never builds a tree: gw_cj_check() validates a whole document once
 * (RFC 8259 grammar, UTF-8, bounded nesting), after which values are slices
 * of that text and the walkers below step through them without allocating.
 * A value that did not come from a checked document must not be walked.
 *
 * Strings are decoded only when asked for (gw_cj_str_dup): escapes resolved,
 * \u surrogate pairs joined, a lone surrogate becoming U+FFFD as Go's
 * decoder does; a string holding NUL is refused, since every caller wants a
 * C string.
 */
#ifndef GW_CONSUL_JSON_H
#define GW_CONSUL_JSON_H

#include <stddef.h>
#include <stdint.h>

#define GW_CJ_MAX_DEPTH 64

typedef enum {
    GW_CJ_INVALID = 0,
    GW_CJ_NULL,
    GW_CJ_FALSE,
    GW_CJ_TRUE,
    GW_CJ_NUMBER,
    GW_CJ_STRING,
    GW_CJ_ARRAY,
    GW_CJ_OBJECT,
} gw_cj_type_t;

/* A value: its first byte and where the checked document ends. The value
 * ends where its grammar says; END only bounds the walk. */
typedef struct {
    const char *p;
    const char *end;
} gw_cj_val_t;

/* Walks the members of an array or an object. */
typedef struct {
    const char *p;
    const char *end;
    int first;
} gw_cj_iter_t;

/* Checks that S[0..N) is exactly one JSON value with optional white space
 * around it, nested at most GW_CJ_MAX_DEPTH deep. Returns 0 and sets *ROOT,
 * or -1 with a short reason and its byte offset in ERR. */
int gw_cj_check(const char *s, size_t n, gw_cj_val_t *root, char *err, size_t errlen);

gw_cj_type_t gw_cj_type(gw_cj_val_t v);

/* Starts a walk over V's members (V an array or an object; any other
 * type gives an empty walk). */
gw_cj_iter_t gw_cj_iter(gw_cj_val_t v);

/* The next element of an array: 1 with *ELEM, 0 at the end. */
int gw_cj_array_next(gw_cj_iter_t *it, gw_cj_val_t *elem);

/* The next member of an object: 1 with *KEY (a string value) and *VAL, 0
 * at the end. */
int gw_cj_object_next(gw_cj_iter_t *it, gw_cj_val_t *key, gw_cj_val_t *val);

/* Whether string value V decodes to exactly NAME (escapes resolved). */
int gw_cj_str_eq(gw_cj_val_t v, const char *name);

/* Member NAME of object OBJ: 1 with *OUT, 0 when absent or OBJ is not an
 * object. With repeated names the last one counts, as in Go's decoder. */
int gw_cj_get(gw_cj_val_t obj, const char *name, gw_cj_val_t *out);

/* String value V decoded into a malloc'd NUL-terminated copy of at most
 * MAX bytes (without the NUL). NULL when V is not a string, decodes to
 * more than MAX bytes, holds a NUL, or memory runs out. *LEN (may be NULL)
 * gets the length. */
char *gw_cj_str_dup(gw_cj_val_t v, size_t max, size_t *len);

/* Number value V as an integer: 0 with *OUT, -1 when V is not a number,
 * has a fraction or an exponent, or does not fit. */
int gw_cj_int(gw_cj_val_t v, int64_t *out);

#endif
