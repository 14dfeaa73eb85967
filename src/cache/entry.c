/* entry: the byte form of a cached answer (entry.h). Layout, all integers
 * little-endian:
 *
 *   "AIPC"  version (1 byte, 2)
 *   created_ms expires_ms prompt_tokens completion_tokens cached_tokens
 *   cost_nanos                              (int64 each)
 *   flags (1 byte: bit 0 usage_estimated; other bits must be 0)
 *   scope model endpoint provider upstream_model body
 *                                           (uint32 length, bytes, NUL each)
 *
 * Decoding trusts nothing: the blob may come from Redis, written by
 * another program, or cut short. It accepts exactly what encoding produces,
 * so decode-then-encode gives the blob back. */
#include "cache/entry.h"

#include <string.h>

#define ENTRY_MAGIC "AIPC"
#define ENTRY_MAGIC_LEN 4
#define ENTRY_VERSION 2 /* 2: upstream_model */
#define ENTRY_FLAG_USAGE_ESTIMATED 0x01u
#define ENTRY_INTS 6
#define ENTRY_STRINGS 6
#define ENTRY_FIXED (ENTRY_MAGIC_LEN + 1 + 8 * ENTRY_INTS + 1)

/* ---- encode ---- */

static unsigned char *put_u64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
    return p + 8;
}

static unsigned char *put_str(unsigned char *p, const char *s, size_t n)
{
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)((uint32_t)n >> (8 * i));
    p += 4;
    if (n) memcpy(p, s, n);
    p[n] = '\0';
    return p + n + 1;
}

char *cache_entry_encode(struct arena *a, const struct cache_entry *e, size_t *out_len)
{
    const char *s[ENTRY_STRINGS] = {e->scope,    e->model,          e->endpoint,
                                    e->provider, e->upstream_model, e->body};
    size_t n[ENTRY_STRINGS];
    size_t total = ENTRY_FIXED;
    for (int i = 0; i < ENTRY_STRINGS; i++) {
        if (!s[i]) s[i] = "";
        n[i] = i == ENTRY_STRINGS - 1 ? (e->body ? e->body_len : 0) : strlen(s[i]);
        if (n[i] > UINT32_MAX) { /* a 4 GB answer: not cacheable */
            if (out_len) *out_len = 0;
            return NULL;
        }
        total += 4 + n[i] + 1;
    }
    unsigned char *blob = arena_alloc(a, total), *p = blob;
    memcpy(p, ENTRY_MAGIC, ENTRY_MAGIC_LEN);
    p += ENTRY_MAGIC_LEN;
    *p++ = ENTRY_VERSION;
    const int64_t ints[ENTRY_INTS] = {e->created_ms,        e->expires_ms,    e->prompt_tokens,
                                      e->completion_tokens, e->cached_tokens, e->cost_nanos};
    for (int i = 0; i < ENTRY_INTS; i++) p = put_u64(p, (uint64_t)ints[i]);
    *p++ = e->usage_estimated ? ENTRY_FLAG_USAGE_ESTIMATED : 0;
    for (int i = 0; i < ENTRY_STRINGS; i++) p = put_str(p, s[i], n[i]);
    if (out_len) *out_len = total;
    return (char *)blob;
}

/* ---- decode ---- */

static int64_t get_i64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i);
    int64_t out;
    memcpy(&out, &v, sizeof out); /* two's complement, without an implementation-defined cast */
    return out;
}

/* Reads one string at `*off`: its length must fit in what is left, and
 * its NUL must follow. A string other than the body must hold no NUL of
 * its own (it is used as a C string, and encoding would shorten it). */
static int get_str(const unsigned char *b, size_t len, size_t *off, bool binary,
                   const char **s, size_t *n)
{
    if (len - *off < 4) return -1;
    const unsigned char *p = b + *off;
    size_t m = (size_t)p[0] | (size_t)p[1] << 8 | (size_t)p[2] << 16 | (size_t)p[3] << 24;
    size_t rest = len - *off - 4;
    if (m >= rest) return -1; /* the bytes and the NUL must both fit */
    p += 4;
    if (p[m] != '\0') return -1;
    if (!binary && memchr(p, '\0', m)) return -1;
    *s = (const char *)p;
    *n = m;
    *off += 4 + m + 1;
    return 0;
}

int cache_entry_decode(const char *blob, size_t len, struct cache_entry *out)
{
    memset(out, 0, sizeof *out);
    const unsigned char *b = (const unsigned char *)blob;
    if (!blob || len < ENTRY_FIXED) return -1;
    if (memcmp(b, ENTRY_MAGIC, ENTRY_MAGIC_LEN) != 0 || b[ENTRY_MAGIC_LEN] != ENTRY_VERSION)
        return -1;
    size_t off = ENTRY_MAGIC_LEN + 1;
    int64_t ints[ENTRY_INTS];
    for (int i = 0; i < ENTRY_INTS; i++, off += 8) ints[i] = get_i64(b + off);
    unsigned flags = b[off++];
    if (flags & ~ENTRY_FLAG_USAGE_ESTIMATED) return -1; /* a bit this version does not know */
    const char *s[ENTRY_STRINGS];
    size_t n[ENTRY_STRINGS];
    for (int i = 0; i < ENTRY_STRINGS; i++)
        if (get_str(b, len, &off, i == ENTRY_STRINGS - 1, &s[i], &n[i]) != 0) return -1;
    if (off != len) return -1; /* trailing bytes */

    out->created_ms = ints[0];
    out->expires_ms = ints[1];
    out->prompt_tokens = ints[2];
    out->completion_tokens = ints[3];
    out->cached_tokens = ints[4];
    out->cost_nanos = ints[5];
    out->usage_estimated = flags & ENTRY_FLAG_USAGE_ESTIMATED;
    out->scope = s[0];
    out->model = s[1];
    out->endpoint = s[2];
    out->provider = s[3];
    out->upstream_model = s[4];
    out->body = s[5];
    out->body_len = n[5];
    return 0;
}
