// fuzz-sources: src/cluster/limits.c
// fuzz-libs: hiredis
/* fuzz_cluster_reply: libFuzzer driver for the shared store's reply
 * decoders (src/cluster/limits.c), fed as the daemon feeds them: bytes
 * from the Redis connection go through hiredis' reader, and every reply
 * it yields is read by cl_reserve_decode, cl_settle_decode and
 * cl_reconcile_decode; reserve and settle are batched (cluster/redis.c:
 * one reply per call, an array with one element per request), so each
 * element of an array reply is read by them too, as one request's reply.
 *
 *   byte 0        bits 0-1: the reserve's asks (0, 1, 2; 3 reads as 2),
 *                 bits 2-3: its scopes (0-3, also the settle's),
 *                 bits 4-7: the size of the chunks fed to the reader
 *                 (0: all at once)
 *   the rest      RESP bytes
 *
 * None may crash, and each decoder must accept exactly its script's
 * shape, which is computed here independently:
 *   reserve    an array of 3 + 5 asks + 5 + 2 scopes integers, code 0-3,
 *              index < asks for code 1, < scopes for code 3; then every
 *              decoded field is the integer it came from (a seed of -1,
 *              a scope without a limit, too)
 *   settle     an array of 1 + 2 scopes integers
 *   reconcile  an array of one integer (1 when it is not 0, else 0)
 * Inputs declaring an array of 10000 elements or more are skipped:
 * hiredis 0.14 allocates the element array as soon as it reads the
 * header (a 2^31-element header is 16 GB: libFuzzer's malloc limit, not
 * a fault of the decoders).
 *
 * The same bytes, cut at newlines and NULs, are also up to three scope
 * names (cl_scope_name) of a hold member (cl_hold_member), which the
 * scripts split on Lua's blanks (%s: \t \n \v \f \r and space): the
 * member must split back into exactly its request id, amount, day, month,
 * the count of scopes with a limit and those scopes' names; CL_MEMBER_MAX
 * must hold any member of a request id of ID_REQUEST_LEN (24) bytes; with
 * less room it is NULL, never cut. */
#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/limits.h"

#define check(ok) ((ok) ? (void)0 : failed(__LINE__, #ok))
static void failed(int line, const char *what)
{
    fprintf(stderr, "fuzz_cluster_reply.c:%d: invariant failed: %s\n", line, what);
    abort();
}

static bool ints(const redisReply *r, size_t n)
{
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != n) return false;
    for (size_t i = 0; i < n; i++)
        if (!r->element[i] || r->element[i]->type != REDIS_REPLY_INTEGER) return false;
    return true;
}

static long long at(const redisReply *r, size_t i)
{
    return r->element[i]->integer;
}

static void check_decision(const redisReply *r, size_t i, const struct rl_decision *d)
{
    check(d->allowed == (at(r, i) != 0));
    check(d->limit == at(r, i + 1));
    check(d->remaining == at(r, i + 2));
    check(d->reset_us == at(r, i + 3));
    check(d->retry_after_us == at(r, i + 4));
}

static void decode_all(const redisReply *r, int n_asks, int n_scopes)
{
    /* reserve */
    struct cl_reserve in;
    memset(&in, 0, sizeof in);
    in.n_asks = n_asks;
    in.n_scopes = n_scopes;
    struct cl_reserve_result res;
    int rc = cl_reserve_decode(r, &in, &res);
    check(rc == 0 || rc == -1);
    size_t want = 3 + 5 * (size_t)n_asks + 5 + 2 * (size_t)n_scopes;
    bool shape = ints(r, want);
    bool valid = shape && at(r, 0) >= 0 && at(r, 0) <= 3 &&
                 (at(r, 0) != CL_RATE || (at(r, 1) >= 0 && at(r, 1) < n_asks)) &&
                 (at(r, 0) != CL_BUDGET || (at(r, 1) >= 0 && at(r, 1) < n_scopes));
    check((rc == 0) == valid);
    if (rc == 0) {
        check(res.code >= CL_ADMITTED && res.code <= CL_BUDGET);
        check((long long)res.code == at(r, 0));
        if (res.code == CL_RATE) check(res.index >= 0 && res.index < n_asks);
        if (res.code == CL_BUDGET) check(res.index >= 0 && res.index < n_scopes);
        if (res.code == CL_RATE || res.code == CL_BUDGET) check(res.index == at(r, 1));
        check(res.monthly == (at(r, 2) != 0));
        for (int k = 0; k < n_asks; k++) check_decision(r, 3 + 5 * (size_t)k, &res.asks[k]);
        for (int k = n_asks; k < CL_MAX_ASKS; k++) check(!res.asks[k].allowed && !res.asks[k].limit);
        check_decision(r, 3 + 5 * (size_t)n_asks, &res.tokens);
        for (int k = 0; k < n_scopes; k++) {
            size_t i = 8 + 5 * (size_t)n_asks + 2 * (size_t)k;
            check(res.day_spent[k] == at(r, i));
            check(res.month_spent[k] == at(r, i + 1));
        }
        for (int k = n_scopes; k < CL_MAX_SCOPES; k++)
            check(res.day_spent[k] == 0 && res.month_spent[k] == 0);
    }

    /* settle */
    struct cl_settle_result sr;
    rc = cl_settle_decode(r, n_scopes, &sr);
    check(rc == 0 || rc == -1);
    check((rc == 0) == ints(r, 1 + 2 * (size_t)n_scopes));
    if (rc == 0) {
        check(sr.applied == (at(r, 0) != 0));
        for (int k = 0; k < n_scopes; k++) {
            check(sr.day_spent[k] == at(r, 1 + 2 * (size_t)k));
            check(sr.month_spent[k] == at(r, 2 + 2 * (size_t)k));
        }
        for (int k = n_scopes; k < CL_MAX_SCOPES; k++)
            check(sr.day_spent[k] == 0 && sr.month_spent[k] == 0);
    }

    /* reconcile */
    rc = cl_reconcile_decode(r);
    if (ints(r, 1)) check(rc == (at(r, 0) != 0 ? 1 : 0));
    else check(rc == -1);
}

/* A reply as a call's (an error reply goes to every request of a batch)
 * and, when it is an array, each element as one request's. */
static void decode_reply(const redisReply *r, int n_asks, int n_scopes)
{
    decode_all(r, n_asks, n_scopes);
    if (r->type != REDIS_REPLY_ARRAY) return;
    for (size_t i = 0; i < r->elements; i++) decode_all(r->element[i], n_asks, n_scopes);
}

/* ---- hold members ---- */

static bool lua_blank(unsigned char c)
{
    return c == ' ' || (c >= '\t' && c <= '\r');
}

/* Splits s as the scripts' split() does (Lua's %S+): up to `max` fields,
 * their starts and lengths. Returns the count (max + 1 when there are more). */
static int lua_split(const char *s, const char **start, size_t *len, int max)
{
    int n = 0;
    for (const char *p = s; *p;) {
        while (*p && lua_blank((unsigned char)*p)) p++;
        if (!*p) break;
        const char *b = p;
        while (*p && !lua_blank((unsigned char)*p)) p++;
        if (n == max) return max + 1;
        start[n] = b;
        len[n++] = (size_t)(p - b);
    }
    return n;
}

static bool field_is(const char *f, size_t n, const char *want)
{
    return strlen(want) == n && memcmp(f, want, n) == 0;
}

static void check_member(const uint8_t *p, size_t n, uint8_t flags)
{
    /* up to three names: the input cut at newlines and NULs, each cut at 400 bytes */
    char raw[CL_MAX_SCOPES][401], names[CL_MAX_SCOPES][CL_SCOPE_MAX];
    struct cl_reserve in;
    memset(&in, 0, sizeof in);
    size_t off = 0;
    for (int i = 0; i < CL_MAX_SCOPES; i++) {
        size_t k = 0;
        while (off < n && p[off] != '\n' && p[off] != '\0') {
            if (k < sizeof raw[i] - 1) raw[i][k++] = (char)p[off];
            off++;
        }
        raw[i][k] = '\0';
        if (off < n) off++;
        cl_scope_name("gkt"[i], raw[i], names[i], sizeof names[i]);
        check(strlen(names[i]) >= 1 && strlen(names[i]) < CL_SCOPE_MAX);
        in.scopes[i].name = names[i];
        /* which have a limit: bits 4-6 of byte 0, one per scope (bit 7: a monthly limit) */
        if (flags & (0x10 << i)) {
            if (flags & 0x80) in.scopes[i].monthly = (nanos_t)n + 1;
            else in.scopes[i].daily = (nanos_t)n + 1;
        } else if (flags & 0x80) {
            in.scopes[i].daily = -(nanos_t)n; /* no limit */
        }
    }
    in.n_scopes = (flags >> 2) & 3;
    /* numbers from the size: negative, past CL_NUM_MAX, the widest */
    in.amount = (flags & 1) ? INT64_MAX - (int64_t)n : (int64_t)n - 2;
    in.day = (flags & 2) ? INT64_MIN + (int64_t)n : 20261204;
    in.month = (flags & 2) ? INT64_MIN : 202612 + (int64_t)n;
    const char *id = "req_0123456789abcdef0123"; /* ids_request's length */

    char m[CL_MEMBER_MAX];
    check(cl_hold_member(&in, id, m, sizeof m) == m);
    size_t mlen = strlen(m);
    check(mlen < sizeof m);
    const char *f[8 + CL_MAX_SCOPES];
    size_t fl[8 + CL_MAX_SCOPES];
    int nf = lua_split(m, f, fl, 7 + CL_MAX_SCOPES);
    int held = 0;
    for (int i = 0; i < in.n_scopes; i++) held += in.scopes[i].daily > 0 || in.scopes[i].monthly > 0;
    check(nf == 5 + held);
    char num[32];
    int64_t amount = in.amount < 0 ? 0 : in.amount > CL_NUM_MAX ? CL_NUM_MAX : in.amount;
    check(field_is(f[0], fl[0], id));
    snprintf(num, sizeof num, "%lld", (long long)amount);
    check(field_is(f[1], fl[1], num));
    snprintf(num, sizeof num, "%lld", (long long)in.day);
    check(field_is(f[2], fl[2], num));
    snprintf(num, sizeof num, "%lld", (long long)in.month);
    check(field_is(f[3], fl[3], num));
    snprintf(num, sizeof num, "%d", held);
    check(field_is(f[4], fl[4], num));
    for (int i = 0, j = 5; i < in.n_scopes; i++)
        if (in.scopes[i].daily > 0 || in.scopes[i].monthly > 0) {
            check(field_is(f[j], fl[j], names[i]));
            j++;
        }

    /* less room: NULL, never a cut member; the exact room: the same */
    size_t cap = n > 1 ? ((size_t)p[0] << 8 | p[1]) % (mlen + 2) : mlen + 1;
    if (cap == 0) cap = 1;
    char small[CL_MEMBER_MAX];
    char *got = cl_hold_member(&in, id, small, cap);
    if (cap > mlen) check(got == small && strcmp(small, m) == 0);
    else check(got == NULL);
}

/* An array header of 5 digits or more ('*', an optional sign, digits). */
static bool huge_array(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i] != '*') continue;
        size_t j = i + 1, digits = 0;
        if (j < n && (p[j] == '-' || p[j] == '+')) j++;
        while (j < n && p[j] >= '0' && p[j] <= '9') {
            j++;
            digits++;
        }
        if (digits >= 5) return true;
    }
    return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    int n_asks = data[0] & 3, n_scopes = (data[0] >> 2) & 3;
    if (n_asks > CL_MAX_ASKS) n_asks = CL_MAX_ASKS;
    size_t chunk = data[0] >> 4;
    const uint8_t *p = data + 1;
    size_t n = size - 1;
    if (huge_array(p, n)) return 0;
    if (chunk == 0) chunk = n ? n : 1;

    /* no reply at all */
    struct cl_reserve none = {.n_asks = n_asks, .n_scopes = n_scopes};
    struct cl_reserve_result res;
    struct cl_settle_result sr;
    check(cl_reserve_decode(NULL, &none, &res) == -1);
    check(cl_settle_decode(NULL, n_scopes, &sr) == -1);
    check(cl_reconcile_decode(NULL) == -1);

    check_member(p, n, data[0]);

    redisReader *reader = redisReaderCreate();
    check(reader != NULL);
    bool broken = false;
    for (size_t off = 0; off < n && !broken; off += chunk) {
        size_t len = n - off < chunk ? n - off : chunk;
        if (redisReaderFeed(reader, (const char *)p + off, len) != REDIS_OK) break;
        for (;;) {
            void *reply = NULL;
            if (redisReaderGetReply(reader, &reply) != REDIS_OK) {
                broken = true; /* a protocol error: the connection would be closed */
                break;
            }
            if (!reply) break; /* wants more bytes */
            decode_reply(reply, n_asks, n_scopes);
            freeReplyObject(reply);
        }
    }
    redisReaderFree(reader);
    return 0;
}
