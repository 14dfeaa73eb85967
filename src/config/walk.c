/* walk: the generic half of the configuration loader (see walk.h): scalar
 * parsers, defaults from the table rows, and the walk that applies one map
 * of the document tree to a struct through its table. */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "config/walk.h"
#include "core/alloc.h"
#include "core/log.h"

void walk_report(struct parse_ctx *cx, enum diag_severity s, int line, const char *path,
                 const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    diag_list_addf(cx->diags, s, "%s:%d: %s: %s", cx->file, line, path, msg);
}

char *walk_path_key(const char *path, const char *key)
{
    return path[0] ? xasprintf("%s.%s", path, key) : xstrdup(key);
}

char *walk_path_index(const char *path, size_t i)
{
    return xasprintf("%s[%zu]", path, i);
}

/* ---- scalar parsers (shared by defaults and the walk) ---- */

static bool walk_int64(const char *s, int64_t *out)
{
    if (!*s) return false;
    errno = 0;
    char *end;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || !(isdigit((unsigned char)s[0]) || s[0] == '-' || s[0] == '+'))
        return false;
    *out = v;
    return true;
}

/* Digits then a unit; returns the number and points `unit` at the rest. */
static bool split_number(const char *s, uint64_t *num, const char **unit)
{
    uint64_t v = 0;
    const char *p = s;
    if (!isdigit((unsigned char)*p)) return false;
    for (; isdigit((unsigned char)*p); p++) {
        if (v > (UINT64_MAX - 9) / 10 || p - s > 18) return false;
        v = v * 10 + (uint64_t)(*p - '0');
    }
    while (*p == ' ')
        p++;
    *num = v;
    *unit = p;
    return true;
}

/* "250ms", "5s", "2m", "1h", "7d"; a bare number is seconds. */
static bool walk_duration(const char *s, int64_t *ms)
{
    uint64_t v;
    const char *u;
    if (!split_number(s, &v, &u)) return false;
    uint64_t mult;
    if (!*u || strcmp(u, "s") == 0)
        mult = 1000;
    else if (strcmp(u, "ms") == 0)
        mult = 1;
    else if (strcmp(u, "m") == 0)
        mult = 60000;
    else if (strcmp(u, "h") == 0)
        mult = 3600000;
    else if (strcmp(u, "d") == 0)
        mult = 86400000;
    else
        return false;
    if (v > (uint64_t)INT64_MAX / mult) return false;
    *ms = (int64_t)(v * mult);
    return true;
}

/* "512KB", "10MB", "1GB" (powers of 1024; K/M/G, KiB.. and B accepted, any
 * case); a bare number is bytes. */
static bool walk_size(const char *s, int64_t *bytes)
{
    uint64_t v;
    const char *u;
    if (!split_number(s, &v, &u)) return false;
    uint64_t mult;
    if (!*u || strcasecmp(u, "b") == 0)
        mult = 1;
    else if (strcasecmp(u, "k") == 0 || strcasecmp(u, "kb") == 0 || strcasecmp(u, "kib") == 0)
        mult = 1024;
    else if (strcasecmp(u, "m") == 0 || strcasecmp(u, "mb") == 0 || strcasecmp(u, "mib") == 0)
        mult = 1024 * 1024;
    else if (strcasecmp(u, "g") == 0 || strcasecmp(u, "gb") == 0 || strcasecmp(u, "gib") == 0)
        mult = 1024 * 1024 * 1024;
    else
        return false;
    if (v > (uint64_t)INT64_MAX / mult) return false;
    *bytes = (int64_t)(v * mult);
    return true;
}

static bool walk_bool(const char *s, bool *out)
{
    static const char *yes[] = {"true", "yes", "on"}, *no[] = {"false", "no", "off"};
    for (int i = 0; i < 3; i++) {
        if (strcasecmp(s, yes[i]) == 0) return *out = true, true;
        if (strcasecmp(s, no[i]) == 0) return *out = false, true;
    }
    return false;
}

static const char *const strategy_list =
    "cost_optimized, latency_optimized, availability, round_robin, least_loaded, weighted";

/* Parses `text` for row `k` into `dst`. Returns NULL, or what was expected
 * (written into `buf` when it needs numbers). */
static const char *walk_scalar(const struct key_spec *k, const char *text, void *dst, char *buf,
                               size_t cap)
{
    int64_t v;
    switch (k->type) {
    case KT_STR:
    case KT_SECRET: {
        char **p = dst;
        free(*p);
        *p = xstrdup(text);
        return NULL;
    }
    case KT_BOOL:
        return walk_bool(text, dst) ? NULL : "expected true or false";
    case KT_INT:
        if (!walk_int64(text, &v) || v < k->min || v > k->max) {
            snprintf(buf, cap, "expected an integer from %lld to %lld", (long long)k->min,
                     (long long)k->max);
            return buf;
        }
        *(int *)dst = (int)v;
        return NULL;
    case KT_DURATION:
        if (!walk_duration(text, &v)) return "expected a duration like 250ms, 5s, 2m, 1h, 7d";
        if (v < k->min || v > k->max) {
            snprintf(buf, cap, "duration out of range (%lldms to %lldms)", (long long)k->min,
                     (long long)k->max);
            return buf;
        }
        *(int64_t *)dst = v;
        return NULL;
    case KT_SIZE:
        if (!walk_size(text, &v)) return "expected a size like 512KB, 10MB, 1GB";
        if (v < k->min || v > k->max) {
            snprintf(buf, cap, "size out of range (%lld to %lld bytes)", (long long)k->min,
                     (long long)k->max);
            return buf;
        }
        *(int64_t *)dst = v;
        return NULL;
    case KT_MONEY: {
        const char *t = text;
        while (*t == ' ')
            t++;
        if (*t == '-') return "must not be negative (expected a USD amount like 0.0025)";
        if (!money_parse_usd(t, strlen(t), dst))
            return "expected a USD amount like 0.0025 (plain decimal, no exponent)";
        return NULL;
    }
    case KT_RATIO: {
        char *end;
        errno = 0;
        double d = strtod(text, &end);
        if (!*text || *end || errno || !isfinite(d) || d < 0 || d > 1)
            return "expected a ratio from 0 to 1, like 0.5";
        *(double *)dst = d;
        return NULL;
    }
    case KT_STRATEGY:
        if (!routing_strategy_parse(text, dst)) {
            snprintf(buf, cap, "unknown value '%s' (expected %s)", text, strategy_list);
            return buf;
        }
        return NULL;
    case KT_LOG_LEVEL: {
        enum log_level l;
        if (!log_level_parse(text, &l)) {
            snprintf(buf, cap, "unknown value '%s' (expected debug, info, warn, error)", text);
            return buf;
        }
        *(int *)dst = (int)l;
        return NULL;
    }
    case KT_LOG_FORMAT:
        if (strcmp(text, "json") == 0)
            *(enum log_format *)dst = LOG_FORMAT_JSON;
        else if (strcmp(text, "text") == 0)
            *(enum log_format *)dst = LOG_FORMAT_TEXT;
        else {
            snprintf(buf, cap, "unknown value '%s' (expected json, text)", text);
            return buf;
        }
        return NULL;
    case KT_ALERT_ACTION:
        if (strcmp(text, "log") == 0)
            *(enum alert_action *)dst = ALERT_LOG;
        else if (strcmp(text, "disable_paid_providers") == 0)
            *(enum alert_action *)dst = ALERT_DISABLE_PAID;
        else if (strcmp(text, "block") == 0)
            *(enum alert_action *)dst = ALERT_BLOCK;
        else {
            snprintf(buf, cap, "unknown value '%s' (expected log, disable_paid_providers, block)",
                     text);
            return buf;
        }
        return NULL;
    default:
        return "not a scalar setting";
    }
}

void walk_free_strlist(char ***list, size_t *n)
{
    for (size_t i = 0; i < *n; i++)
        free((*list)[i]);
    free(*list);
    *list = NULL;
    *n = 0;
}

/* Applies every row's default to `base` (recursing into sections). */
void walk_defaults(const struct key_spec *tbl, void *base)
{
    char buf[160];
    for (const struct key_spec *k = tbl; k->name; k++) {
        char *dst = (char *)base + k->offset;
        if (k->type == KT_SECTION)
            walk_defaults(k->sub, base);
        else if (k->type == KT_CUSTOM && k->def) {
            struct cnode n = {
                .kind = CNODE_SCALAR, .text = (char *)k->def, .len = strlen(k->def), .line = 0};
            struct diag_list scratch = {0};
            struct parse_ctx cx = {.file = "<defaults>", .diags = &scratch};
            k->parse(&cx, &n, k->name, base);
            diag_list_cleanup(&scratch);
        } else if (k->def && k->type != KT_CUSTOM && k->type != KT_IGNORE && k->type != KT_STRLIST)
            walk_scalar(k, k->def, dst, buf, sizeof buf);
    }
}

bool walk_is_null(const struct cnode *v)
{
    return v->kind == CNODE_SCALAR && v->is_null;
}

const char *walk_kind_name(const struct cnode *v)
{
    return v->kind == CNODE_MAP ? "a map" : v->kind == CNODE_SEQ ? "a list" : "a value";
}

/* A scalar's text for a non-secret key, or NULL when it should be treated as
 * absent (null, or only an unset ${VAR}: warned). Reports non-scalars. */
const char *walk_scalar_text(struct parse_ctx *cx, const struct cnode *v, const char *path,
                             const char *what)
{
    if (v->kind != CNODE_SCALAR) {
        ERR(cx, v->line, path, "expected %s, found %s", what, walk_kind_name(v));
        return NULL;
    }
    if (v->is_null) return NULL;
    if (v->env_var && v->len == 0) {
        WARN(cx, v->line, path, "environment variable %s is %s; using the default", v->env_var,
             v->env_empty ? "empty" : "not set");
        return NULL;
    }
    return v->text;
}

void walk_strlist(struct parse_ctx *cx, const struct cnode *v, const char *path, char ***list,
                  size_t *n)
{
    walk_free_strlist(list, n);
    if (walk_is_null(v)) return;
    if (v->kind == CNODE_SCALAR) { /* a single string is a one-item list */
        *list = xcalloc(1, sizeof **list);
        (*list)[(*n)++] = xstrdup(v->text);
        return;
    }
    if (v->kind != CNODE_SEQ) {
        ERR(cx, v->line, path, "expected a list of strings, found %s", walk_kind_name(v));
        return;
    }
    *list = xcalloc(v->n ? v->n : 1, sizeof **list);
    for (size_t i = 0; i < v->n; i++) {
        const struct cnode *it = v->items[i];
        if (it->kind != CNODE_SCALAR || it->is_null) {
            char *p = walk_path_index(path, i);
            ERR(cx, it->line, p, "expected a string, found %s", walk_kind_name(it));
            free(p);
            continue;
        }
        (*list)[(*n)++] = xstrdup(it->text);
    }
}

/* Applies map `map` to `base` through `tbl`. Returns a bit per row seen
 * (rows beyond 63 are not tracked). */
uint64_t walk_map(struct parse_ctx *cx, const struct cnode *map, const char *path,
                  const struct key_spec *tbl, void *base)
{
    uint64_t seen = 0;
    char buf[256];
    if (walk_is_null(map)) return 0;
    if (map->kind != CNODE_MAP) {
        ERR(cx, map->line, path[0] ? path : "(top level)", "expected a map, found %s",
            walk_kind_name(map));
        return 0;
    }
    for (size_t i = 0; i < map->n; i++) {
        const struct cnode_pair *pr = &map->pairs[i];
        const struct cnode *v = pr->value;
        char *kp = walk_path_key(path, pr->key);
        const struct key_spec *k = tbl;
        while (k->name && strcmp(k->name, pr->key) != 0)
            k++;
        if (!k->name) {
            WARN(cx, pr->line, kp, "unknown key (ignored)");
            free(kp);
            continue;
        }
        size_t row = (size_t)(k - tbl);
        char *dst = (char *)base + k->offset;
        switch (k->type) {
        case KT_IGNORE:
            break;
        case KT_SECTION:
            walk_map(cx, v, kp, k->sub, base);
            if (!walk_is_null(v)) seen |= row < 64 ? 1ull << row : 0;
            break;
        case KT_CUSTOM:
            k->parse(cx, v, kp, base);
            if (!walk_is_null(v)) seen |= row < 64 ? 1ull << row : 0;
            break;
        case KT_STRLIST:
            walk_strlist(cx, v, kp, (char ***)dst, (size_t *)((char *)base + k->count_offset));
            seen |= row < 64 ? 1ull << row : 0;
            break;
        case KT_SECRET:
            if (v->kind != CNODE_SCALAR) {
                ERR(cx, v->line, kp, "expected a string, found %s", walk_kind_name(v));
            } else if (v->env_var || v->is_null || v->len == 0) {
                char **p = (char **)dst;
                free(*p);
                *p = NULL;
                if (!cx->secret_reason) {
                    const char *rel = strlen(kp) > cx->reason_skip ? kp + cx->reason_skip : kp;
                    if (v->env_var)
                        cx->secret_reason =
                            xasprintf("%s: environment variable %s is %s", rel, v->env_var,
                                      v->env_empty ? "empty" : "not set");
                    else
                        cx->secret_reason = xasprintf("%s: is empty", rel);
                }
                seen |= row < 64 ? 1ull << row : 0;
            } else {
                walk_scalar(k, v->text, dst, buf, sizeof buf);
                seen |= row < 64 ? 1ull << row : 0;
            }
            break;
        default: {
            const char *t = walk_scalar_text(cx, v, kp, "a value");
            if (!t) break;
            const char *bad = walk_scalar(k, t, dst, buf, sizeof buf);
            if (bad)
                ERR(cx, v->line, kp, "%s", bad);
            else
                seen |= row < 64 ? 1ull << row : 0;
            break;
        }
        }
        free(kp);
    }
    return seen;
}

bool walk_seen_key(const struct key_spec *tbl, uint64_t seen, const char *name)
{
    for (size_t i = 0; tbl[i].name && i < 64; i++)
        if (strcmp(tbl[i].name, name) == 0) return (seen >> i) & 1;
    return false;
}

/* Calls `item` for every element of list `v` that is a map. */
void walk_each_item(struct parse_ctx *cx, const struct cnode *v, const char *path,
                    void (*item)(struct parse_ctx *, const struct cnode *, const char *, void *),
                    void *base)
{
    if (walk_is_null(v)) return;
    if (v->kind != CNODE_SEQ) {
        ERR(cx, v->line, path, "expected a list, found %s", walk_kind_name(v));
        return;
    }
    for (size_t i = 0; i < v->n; i++) {
        char *ip = walk_path_index(path, i);
        if (v->items[i]->kind != CNODE_MAP)
            ERR(cx, v->items[i]->line, ip, "expected a map, found %s", walk_kind_name(v->items[i]));
        else
            item(cx, v->items[i], ip, base);
        free(ip);
    }
}
