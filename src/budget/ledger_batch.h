/* ledger_batch: the packed form of ledger records, internal to budget/.
 * The append queues hold records packed (their numbers, then their text
 * fields' bytes, no NULs); the writer commits runs of them to SQLite
 * (ledger.c) or PostgreSQL (ledger_pg.c). */
#ifndef AIPROXY_BUDGET_LEDGER_BATCH_H
#define AIPROXY_BUDGET_LEDGER_BATCH_H

#include <stddef.h>
#include <stdint.h>

#include "budget/ledger.h"

/* The text fields, in their packed order (also their order among the
 * columns of the SQLite and PostgreSQL INSERTs and of the spool's read). */
enum ledger_text {
    LT_REQUEST_ID,
    LT_KEY_ID,
    LT_TENANT,
    LT_MODEL,
    LT_PROVIDER,
    LT_ORIGIN_NODE,
    LT_ROUTE,
    LT_NODE_ID,
    LT_CACHE,
    LT_COUNT
};

/* One record's head; its text bytes follow it, padded to 8 bytes: about
 * 100 bytes a record where struct ledger_record takes 600. */
struct packed {
    int64_t ts_ms, tokens_in, tokens_out, cost_nanos, saved_nanos, cached_tokens, cache_write_tokens;
    int32_t status;
    uint16_t len[LT_COUNT];
    uint8_t estimated;
    uint8_t via_peer;
};

static inline size_t packed_size(const struct packed *p)
{
    size_t n = sizeof *p;
    for (int i = 0; i < LT_COUNT; i++) n += p->len[i];
    return (n + 7) & ~(size_t)7;
}

static inline const struct packed *packed_next(const struct packed *p)
{
    return (const struct packed *)((const unsigned char *)p + packed_size(p));
}

/* The first text field's bytes; field i + 1 starts len[i] bytes after field i. */
static inline const char *packed_text(const struct packed *p)
{
    return (const char *)(p + 1);
}

/* A run of packed records. */
struct records {
    unsigned char *data;
    size_t bytes, cap, n;
};

/* Grows `r` to hold `more` bytes past its end. */
void ledger_records_reserve(struct records *r, size_t more);

/* Appends a packed copy of `rec` (NULL strings as "", each cut at
 * LEDGER_TEXT_MAX bytes). */
void ledger_records_push(struct records *r, const struct ledger_record *rec);

#endif
