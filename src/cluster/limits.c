/* limits: script arguments and replies for the shared limits and budgets. */
#include "cluster/limits.h"

#include <hiredis/hiredis.h>

#include "core/alloc.h"
#include "core/str.h"
#include <stdio.h>
#include <string.h>

void cl_scope_name(char kind, const char *name, char *out, size_t cap)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = 0;
    if (cap < 4) {
        if (cap) out[0] = '\0';
        return;
    }
    out[n++] = kind;
    if (kind != 'g') out[n++] = ':';
    for (const unsigned char *p = (const unsigned char *)(name ? name : ""); *p; p++) {
        bool plain = *p > 0x20 && *p != 0x7f && *p != '%';
        if (n + (plain ? 1 : 3) >= cap) break;
        if (plain) {
            out[n++] = (char)*p;
        } else {
            out[n++] = '%';
            out[n++] = hex[*p >> 4];
            out[n++] = hex[*p & 15];
        }
    }
    out[n] = '\0';
}

static int64_t clamp(int64_t v)
{
    return v < 0 ? 0 : v > CL_NUM_MAX ? CL_NUM_MAX : v;
}

static void add_str(struct cl_argv *a, const char *s)
{
    if (a->argc >= CL_MAX_ARGS) return;
    a->argv[a->argc] = s ? s : "";
    a->lens[a->argc] = strlen(a->argv[a->argc]);
    a->argc++;
}

static void add_num(struct cl_argv *a, int64_t v)
{
    if (a->argc >= CL_MAX_ARGS || a->n_nums >= CL_MAX_ARGS) return;
    char *buf = a->nums[a->n_nums++];
    const char *s = str_i64(v, buf); /* (no printf: a request formats some 30 numbers) */
    a->argv[a->argc] = s;
    a->lens[a->argc] = (size_t)(buf + STR_I64_LEN - 1 - s);
    a->argc++;
}

char *cl_hold_member(const struct cl_reserve *in, const char *request_id, char *out, size_t cap)
{
    int held = 0;
    for (int i = 0; i < in->n_scopes; i++) held += in->scopes[i].daily > 0 || in->scopes[i].monthly > 0;
    int n = snprintf(out, cap, "%s %lld %lld %lld %d", request_id, (long long)clamp(in->amount),
                     (long long)in->day, (long long)in->month, held);
    if (n < 0 || (size_t)n >= cap) return NULL;
    for (int i = 0; i < in->n_scopes; i++) {
        if (!(in->scopes[i].daily > 0 || in->scopes[i].monthly > 0)) continue;
        int m = snprintf(out + n, cap - (size_t)n, " %s", in->scopes[i].name);
        if (m < 0 || (size_t)(n + m) >= cap) return NULL;
        n += m;
    }
    return out;
}

void cl_reserve_argv(const struct cl_reserve *in, struct cl_argv *out)
{
    memset(out, 0, sizeof *out);
    add_str(out, in->prefix);
    add_str(out, in->member);
    add_num(out, clamp(in->hold_ms));
    add_num(out, in->n_asks);
    for (int i = 0; i < in->n_asks; i++) {
        add_str(out, in->asks[i].who);
        add_num(out, clamp(in->asks[i].per_hour));
        add_num(out, clamp(in->asks[i].per_minute));
    }
    add_str(out, in->tpm_who ? in->tpm_who : "");
    add_num(out, in->tpm_who ? clamp(in->tpm_limit) : 0);
    add_num(out, clamp(in->est_tokens));
    add_num(out, clamp(in->amount));
    add_num(out, in->day);
    add_num(out, in->month);
    add_num(out, in->n_scopes);
    for (int i = 0; i < in->n_scopes; i++) {
        add_str(out, in->scopes[i].name);
        add_num(out, clamp(in->scopes[i].daily));
        add_num(out, clamp(in->scopes[i].monthly));
    }
}

static bool int_at(const redisReply *r, size_t i, int64_t *v)
{
    if (i >= r->elements || r->element[i]->type != REDIS_REPLY_INTEGER) return false;
    *v = r->element[i]->integer;
    return true;
}

static bool decision_at(const redisReply *r, size_t i, struct rl_decision *d)
{
    int64_t allowed, limit, remaining, reset, retry;
    if (!int_at(r, i, &allowed) || !int_at(r, i + 1, &limit) || !int_at(r, i + 2, &remaining) ||
        !int_at(r, i + 3, &reset) || !int_at(r, i + 4, &retry))
        return false;
    d->allowed = allowed != 0;
    d->limit = limit;
    d->remaining = remaining;
    d->reset_us = reset;
    d->retry_after_us = retry;
    return true;
}

int cl_reserve_decode(const struct redisReply *r, const struct cl_reserve *in,
                      struct cl_reserve_result *out)
{
    memset(out, 0, sizeof *out);
    if (!r || r->type != REDIS_REPLY_ARRAY || in->n_asks < 0 || in->n_asks > CL_MAX_ASKS ||
        in->n_scopes < 0 || in->n_scopes > CL_MAX_SCOPES)
        return -1;
    size_t want = 3 + 5 * (size_t)in->n_asks + 5 + 2 * (size_t)in->n_scopes;
    if (r->elements != want) return -1;
    int64_t code, index, monthly;
    if (!int_at(r, 0, &code) || !int_at(r, 1, &index) || !int_at(r, 2, &monthly)) return -1;
    if (code < CL_ADMITTED || code > CL_BUDGET) return -1;
    if (code == CL_RATE && (index < 0 || index >= in->n_asks)) return -1;
    if (code == CL_BUDGET && (index < 0 || index >= in->n_scopes)) return -1;
    out->code = (enum cl_code)code;
    out->index = (int)index;
    out->monthly = monthly != 0;
    size_t i = 3;
    for (int k = 0; k < in->n_asks; k++, i += 5)
        if (!decision_at(r, i, &out->asks[k])) return -1;
    if (!decision_at(r, i, &out->tokens)) return -1;
    i += 5;
    for (int k = 0; k < in->n_scopes; k++, i += 2)
        if (!int_at(r, i, &out->day_spent[k]) || !int_at(r, i + 1, &out->month_spent[k]))
            return -1;
    return 0;
}

static const char *keep(char **p, const char *s)
{
    if (!s) return NULL;
    size_t n = strlen(s) + 1;
    memcpy(*p, s, n);
    const char *out = *p;
    *p += n;
    return out;
}

struct cl_settle *cl_settle_copy(const struct cl_settle *in)
{
    size_t n = sizeof *in + strlen(in->member) + 1 + (in->tpm_who ? strlen(in->tpm_who) + 1 : 0);
    for (int i = 0; i < in->n_scopes; i++) n += strlen(in->scopes[i]) + 1;
    struct cl_settle *c = xmalloc(n);
    *c = *in;
    char *p = (char *)(c + 1);
    c->member = keep(&p, in->member);
    c->tpm_who = keep(&p, in->tpm_who);
    for (int i = 0; i < in->n_scopes; i++) c->scopes[i] = keep(&p, in->scopes[i]);
    return c;
}

void cl_settle_argv(const struct cl_settle *in, struct cl_argv *out)
{
    memset(out, 0, sizeof *out);
    add_str(out, in->prefix);
    add_str(out, in->member);
    add_num(out, clamp(in->cost));
    add_num(out, clamp(in->first_cost));
    add_num(out, in->day);
    add_num(out, in->month);
    add_str(out, in->tpm_who ? in->tpm_who : "");
    add_num(out, in->tpm_who ? clamp(in->tpm_limit) : 0);
    int64_t d = in->tpm_delta;
    add_num(out, d > CL_NUM_MAX ? CL_NUM_MAX : d < -CL_NUM_MAX ? -CL_NUM_MAX : d);
    add_num(out, in->n_scopes);
    for (int i = 0; i < in->n_scopes; i++) add_str(out, in->scopes[i]);
}

int cl_settle_decode(const struct redisReply *r, int n_scopes, struct cl_settle_result *out)
{
    memset(out, 0, sizeof *out);
    if (!r || r->type != REDIS_REPLY_ARRAY || n_scopes < 0 || n_scopes > CL_MAX_SCOPES ||
        r->elements != 1 + 2 * (size_t)n_scopes)
        return -1;
    int64_t applied;
    if (!int_at(r, 0, &applied)) return -1;
    out->applied = applied != 0;
    for (int k = 0; k < n_scopes; k++)
        if (!int_at(r, 1 + 2 * (size_t)k, &out->day_spent[k]) ||
            !int_at(r, 2 + 2 * (size_t)k, &out->month_spent[k]))
            return -1;
    return 0;
}

void cl_reconcile_argv(const char *prefix, const char *batch_id, const struct cl_delta *d,
                       int n, struct cl_argv *out)
{
    memset(out, 0, sizeof *out);
    if (n > CL_RECONCILE_BATCH) n = CL_RECONCILE_BATCH;
    add_str(out, prefix);
    add_str(out, batch_id);
    add_num(out, n);
    for (int i = 0; i < n; i++) {
        add_str(out, d[i].scope);
        out->argv[out->argc] = d[i].kind == 'm' ? "m" : "d";
        out->lens[out->argc++] = 1;
        add_num(out, d[i].period);
        add_num(out, clamp(d[i].amount));
    }
}

int cl_reconcile_decode(const struct redisReply *r)
{
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 1 ||
        r->element[0]->type != REDIS_REPLY_INTEGER)
        return -1;
    return r->element[0]->integer ? 1 : 0;
}
