/* ids: request id generation from a random process prefix and an atomic counter. */
#include "core/ids.h"

#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

static atomic_uint_fast64_t counter;
static uint64_t prefix;

void ids_init(void)
{
    uint64_t p;
    if (getrandom(&p, sizeof p, 0) != sizeof p) p = (uint64_t)time(NULL) * 2654435761u;
    prefix = p;
}

void ids_request(char out[ID_REQUEST_LEN + 1])
{
    uint64_t n = atomic_fetch_add_explicit(&counter, 1, memory_order_relaxed);
    /* "req_" + 8 hex digits of the prefix + 12 of the counter (no printf:
     * this runs for every request). */
    static const char hex[] = "0123456789abcdef";
    uint64_t hi = prefix >> 32, lo = (prefix + n) & 0xFFFFFFFFFFFFULL;
    memcpy(out, "req_", 4);
    for (int i = 0; i < 8; i++) out[4 + i] = hex[(hi >> (28 - 4 * i)) & 0xF];
    for (int i = 0; i < 12; i++) out[12 + i] = hex[(lo >> (44 - 4 * i)) & 0xF];
    out[ID_REQUEST_LEN] = '\0';
}
