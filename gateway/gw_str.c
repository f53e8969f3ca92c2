/* Small string helpers shared by every module. */
#include "gw_core.h"

/* ASCII only: header names and tokens are ASCII, and locale-aware
 * strncasecmp costs more than the comparison itself. */
int
gw_str_caseeq(gw_str_t a, gw_str_t b)
{
    if (a.len != b.len)
        return 0;
    for (size_t i = 0; i < a.len; i++) {
        unsigned char x = (unsigned char)a.data[i], y = (unsigned char)b.data[i];
        if (x == y)
            continue;
        x |= 0x20;
        if (x != (y | 0x20) || x < 'a' || x > 'z')
            return 0;
    }
    return 1;
}
