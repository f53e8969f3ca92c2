/*
 * gw_json: the one JSON string escaper, shared by the access log and the
 * error bodies the gateway writes. A module of its own so that neither
 * depends on the other (the log sits above the config, error bodies below
 * it).
 */
#ifndef GW_JSON_H
#define GW_JSON_H

#include <stddef.h>

/**
 * Appends s to out as the body of a JSON string (without the quotes):
 * quote and backslash escaped, control characters and bytes that are not
 * valid UTF-8 as \u00XX, valid UTF-8 copied as it is. out must hold
 * 6 * len bytes. Returns the bytes written.
 */
size_t gw_json_escape(char *out, const char *s, size_t len);

#endif
