/* Small string helpers shared by every module. */
#include <strings.h>

#include "gw_core.h"

int
gw_str_caseeq(gw_str_t a, gw_str_t b)
{
    return a.len == b.len && (a.len == 0 || strncasecmp(a.data, b.data, a.len) == 0);
}
