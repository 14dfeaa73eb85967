/* ids: request id generation from a random process prefix and an atomic counter. */
#include "core/ids.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
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
    snprintf(out, ID_REQUEST_LEN + 1, "req_%08x%012llx", (unsigned)(prefix >> 32),
             (unsigned long long)((prefix + n) & 0xFFFFFFFFFFFFULL));
}
