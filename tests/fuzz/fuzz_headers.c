// fuzz-sources: src/security/auth.c src/security/cors.c src/security/ratelimit.c
/* fuzz_headers: libFuzzer driver for the code that reads request header
 * values: auth_presented_key (Authorization / x-api-key), task_tier_parse
 * (x-task-tier), rl_client_ip (X-Forwarded-For behind trusted proxies),
 * the CORS header builders (Origin and Access-Control-Request-Headers are
 * reflected into the answer) and the content analyser tier_analyse (over
 * the body). There is no traceparent parser in this build.
 *
 * Input: header values separated by '\n' (a header value can hold neither
 * CR, LF nor NUL once http-parser accepted it, but the code is fed them
 * anyway). Checks what each function promises:
 *   - a presented key points inside one of the two values, never at a
 *     space, never empty;
 *   - a parsed tier round-trips through its name;
 *   - the client IP is the peer or a valid address from the list, and
 *     NUL-terminated within its buffer;
 *   - CORS headers are well-formed "Name: value\r\n" lines whose values
 *     hold no control byte: nothing a client sends can add a header. */
#include <arpa/inet.h>
#include <assert.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api/scan.h"
#include "core/arena.h"
#include "routing/tier.h"
#include "security/auth.h"
#include "security/cors.h"
#include "security/ratelimit.h"

#define MAX_VALUES 4

static void check_header_block(const char *h)
{
    if (!h) return;
    const char *p = h;
    while (*p) {
        const char *eol = strstr(p, "\r\n");
        assert(eol); /* every line is terminated */
        const char *colon = memchr(p, ':', (size_t)(eol - p));
        assert(colon && colon > p);
        for (const char *c = p; c < eol; c++) {
            unsigned char u = (unsigned char)*c;
            assert(u >= 0x20 && u != 0x7f); /* no CR, LF or other control byte */
        }
        p = eol + 2;
    }
}

static bool valid_ip(const char *s)
{
    unsigned char tmp[16];
    return inet_pton(AF_INET, s, tmp) == 1 || inet_pton(AF_INET6, s, tmp) == 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 64 * 1024) return 0;
    /* Values split at '\n'; a NUL inside one cuts it there, as C strings do. */
    char *copy = malloc(size + 1);
    memcpy(copy, data, size);
    copy[size] = '\0';
    const char *v[MAX_VALUES] = {"", "", "", ""};
    size_t nv = 0;
    char *s = copy;
    while (nv < MAX_VALUES) {
        v[nv++] = s;
        char *nl = memchr(s, '\n', (size_t)(copy + size - s));
        if (!nl) break;
        *nl = '\0';
        s = nl + 1;
    }

    /* Authorization / x-api-key */
    const char *authz = nv > 0 ? v[0] : NULL;
    const char *xkey = nv > 1 ? v[1] : NULL;
    const char *k = auth_presented_key(authz, xkey);
    if (k) {
        bool in_a = authz && k >= authz && k < authz + strlen(authz);
        bool is_x = xkey && k == xkey;
        assert(in_a || is_x);
        assert(*k != '\0');
        if (in_a) assert(*k != ' ');
    }
    assert(auth_presented_key(NULL, NULL) == NULL);

    /* x-task-tier */
    enum task_tier tt;
    if (task_tier_parse(v[0], &tt)) {
        assert(tt < TASK_COUNT);
        assert(strcmp(task_tier_name(tt), v[0]) == 0);
    }

    /* X-Forwarded-For behind trusted proxies */
    char *trusted[] = {"127.0.0.1", "10.0.0.0/8", "::1", "fd00::/8"};
    char ip[64];
    rl_client_ip("127.0.0.1", v[0], trusted, 4, ip, sizeof ip);
    assert(memchr(ip, '\0', sizeof ip));
    assert(strcmp(ip, "127.0.0.1") == 0 || valid_ip(ip));
    rl_client_ip("192.0.2.7", v[0], trusted, 4, ip, sizeof ip);
    assert(strcmp(ip, "192.0.2.7") == 0); /* an untrusted peer is never overridden */

    /* CORS: Origin and Access-Control-Request-Headers are reflected. */
    struct arena a;
    arena_init(&a);
    check_header_block(cors_response_headers(&a, v[0]));
    check_header_block(cors_preflight_headers(&a, v[0], nv > 1 ? v[1] : NULL));

    /* The content analyser over the whole input as a body. */
    struct req_facts facts;
    struct scan_error serr;
    if (scan_request(SCAN_CHAT, (const char *)data, size, &facts, &serr) == 0) {
        char why[128];
        enum task_tier t = tier_analyse((const char *)data, size, &facts, why, sizeof why);
        assert(t < TASK_COUNT);
        assert(memchr(why, '\0', sizeof why));
    }
    arena_free(&a);
    free(copy);
    return 0;
}
