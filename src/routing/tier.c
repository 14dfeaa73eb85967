/* tier: tier names, tier -> model resolution and the content analyser. */
#include "routing/tier.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "api/scan.h"
#include "config/config.h"

static const char *const tier_names[TIER_COUNT] = {"cheap", "balanced", "premium", "free",
                                                   "local"};
static const char *const task_names[TASK_COUNT] = {"trivial", "operational", "standard",
                                                   "complex", "deep"};

const char *tier_name(enum model_tier t)
{
    return (unsigned)t < TIER_COUNT ? tier_names[t] : "unknown";
}

const char *task_tier_name(enum task_tier t)
{
    return (unsigned)t < TASK_COUNT ? task_names[t] : "unknown";
}

bool tier_parse(const char *name, enum model_tier *out)
{
    for (int i = 0; i < TIER_COUNT; i++)
        if (strcmp(name, tier_names[i]) == 0) return *out = (enum model_tier)i, true;
    return false;
}

bool task_tier_parse(const char *name, enum task_tier *out)
{
    for (int i = 0; i < TASK_COUNT; i++)
        if (strcmp(name, task_names[i]) == 0) return *out = (enum task_tier)i, true;
    return false;
}

enum model_tier task_tier_model_tier(enum task_tier t)
{
    switch (t) {
    case TASK_TRIVIAL:
    case TASK_OPERATIONAL: return TIER_CHEAP;
    case TASK_STANDARD: return TIER_BALANCED;
    case TASK_COMPLEX:
    case TASK_DEEP:
    case TASK_COUNT: break;
    }
    return TIER_PREMIUM;
}

/* ---- resolution ---- */

#define MAX_TIER_MODELS 256

struct priced {
    const struct config_model *m;
    nanos_t price;
    bool local;
};

static size_t collect(const struct config *cfg, bool available_only, struct priced *out)
{
    size_t n = 0;
    for (size_t i = 0; i < cfg->n_providers; i++) {
        const struct config_provider *p = &cfg->providers[i];
        if (available_only && !p->available) continue;
        for (size_t j = 0; j < p->n_models && n < MAX_TIER_MODELS; j++) {
            const struct config_model *m = &p->models[j];
            if (!(m->capabilities & CAP_TEXT)) continue;
            out[n++] = (struct priced){m, m->price_in_per_1k + m->price_out_per_1k,
                                       p->type == PROVIDER_LOCAL};
        }
    }
    return n;
}

static const char *derive(const struct config *cfg, enum model_tier t, char *why, size_t cap)
{
    struct priced all[MAX_TIER_MODELS];
    size_t n = collect(cfg, true, all);
    if (n == 0) n = collect(cfg, false, all);
    if (n == 0) return NULL;
    size_t best = SIZE_MAX;
    switch (t) {
    case TIER_FREE:
        for (size_t i = 0; i < n && best == SIZE_MAX; i++)
            if (all[i].price == 0 && all[i].m->price_per_generation == 0) best = i;
        snprintf(why, cap, "first free model");
        break;
    case TIER_LOCAL:
        for (size_t i = 0; i < n && best == SIZE_MAX; i++)
            if (all[i].local) best = i;
        snprintf(why, cap, "first local model");
        break;
    case TIER_CHEAP:
    case TIER_PREMIUM:
        for (int pass = 0; pass < 2 && best == SIZE_MAX; pass++) {
            for (size_t i = 0; i < n; i++) {
                if (t == TIER_CHEAP && pass == 0 && all[i].price == 0) continue;
                if (best == SIZE_MAX || (t == TIER_CHEAP ? all[i].price < all[best].price
                                                         : all[i].price > all[best].price))
                    best = i;
            }
        }
        snprintf(why, cap, t == TIER_CHEAP ? "cheapest model" : "most expensive model");
        break;
    case TIER_BALANCED: {
        /* lower median by price, paid models first; insertion sort keeps
         * config order among equal prices */
        size_t idx[MAX_TIER_MODELS], k = 0;
        for (int pass = 0; pass < 2 && k == 0; pass++)
            for (size_t i = 0; i < n; i++)
                if (pass == 1 || all[i].price > 0) idx[k++] = i;
        for (size_t i = 1; i < k; i++) {
            size_t v = idx[i], j = i;
            while (j > 0 && all[idx[j - 1]].price > all[v].price) {
                idx[j] = idx[j - 1];
                j--;
            }
            idx[j] = v;
        }
        best = idx[(k - 1) / 2];
        snprintf(why, cap, "median-priced model");
        break;
    }
    case TIER_COUNT: break;
    }
    return best == SIZE_MAX ? NULL : all[best].m->name;
}

static const char *configured(const struct config *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->routing.n_tiers; i++)
        if (strcmp(cfg->routing.tiers[i].name, name) == 0) return cfg->routing.tiers[i].model;
    return NULL;
}

const char *tier_resolve(const struct config *cfg, const char *name, char *why, size_t why_cap)
{
    if (why_cap) why[0] = '\0';
    const char *m = configured(cfg, name);
    if (m) {
        snprintf(why, why_cap, "routing.tiers.%s", name);
        return m;
    }
    enum model_tier t;
    enum task_tier tt;
    if (task_tier_parse(name, &tt)) {
        t = task_tier_model_tier(tt);
        if ((m = configured(cfg, tier_name(t)))) {
            snprintf(why, why_cap, "routing.tiers.%s", tier_name(t));
            return m;
        }
    } else if (!tier_parse(name, &t)) {
        return NULL;
    }
    return derive(cfg, t, why, why_cap);
}

/* ---- the analyser ---- */

struct keyword {
    const char *text;
    enum task_tier tier;
};

/* Lower-case; matched case-insensitively anywhere in the scanned text. */
static const struct keyword keywords[] = {
    {"step by step", TASK_DEEP},      {"race condition", TASK_DEEP},
    {"deadlock", TASK_DEEP},          {"prove ", TASK_DEEP},
    {"root cause", TASK_DEEP},        {"architecture", TASK_DEEP},
    {"trade-off", TASK_DEEP},         {"tradeoff", TASK_DEEP},
    {"formal", TASK_DEEP},            {"refactor", TASK_COMPLEX},
    {"microservice", TASK_COMPLEX},   {"migrate", TASK_COMPLEX},
    {"entire", TASK_COMPLEX},         {"across", TASK_COMPLEX},
    {"redesign", TASK_COMPLEX},       {"optimi", TASK_COMPLEX},
    {"implement", TASK_STANDARD},     {"write a", TASK_STANDARD},
    {"create a", TASK_STANDARD},      {"build a", TASK_STANDARD},
    {"endpoint", TASK_STANDARD},      {"debug", TASK_STANDARD},
    {"unit test", TASK_STANDARD},     {"what does", TASK_OPERATIONAL},
    {"what is", TASK_OPERATIONAL},    {"explain", TASK_OPERATIONAL},
    {"summari", TASK_OPERATIONAL},    {"how do", TASK_OPERATIONAL},
    {"translate", TASK_OPERATIONAL},  {"typo", TASK_TRIVIAL},
    {"rename", TASK_TRIVIAL},         {"spelling", TASK_TRIVIAL},
};
#define N_KEYWORDS (sizeof keywords / sizeof keywords[0])

static unsigned char lower(unsigned char c)
{
    return c >= 'A' && c <= 'Z' ? (unsigned char)(c + 32) : c;
}

struct signals {
    int kw;            /* highest keyword tier, -1 none */
    const char *kw_text;
    int fences;
    int code_marks;    /* ";\n", "){", "def ", "#include" ... */
    int roles;         /* "role" keys: messages */
};

static bool at(const char *p, const char *end, const char *lit)
{
    for (; *lit; lit++, p++)
        if (p >= end || lower((unsigned char)*p) != (unsigned char)*lit) return false;
    return true;
}

static void scan_range(const char *p, const char *end, struct signals *s)
{
    for (; p < end; p++) {
        unsigned char c = lower((unsigned char)*p);
        if (c == '`' && at(p, end, "```")) {
            s->fences++;
            p += 2;
            continue;
        }
        if (c == '"' && at(p, end, "\"role\"")) s->roles++;
        if ((c == '#' && at(p, end, "#include")) || (c == 'd' && at(p, end, "def ")) ||
            (c == ')' && at(p, end, ") {")) || (c == ';' && at(p, end, ";\\n")) ||
            (c == '=' && at(p, end, "=>")))
            s->code_marks++;
        for (size_t k = 0; k < N_KEYWORDS; k++) {
            if ((unsigned char)keywords[k].text[0] != c) continue;
            if ((int)keywords[k].tier <= s->kw) continue;
            if (at(p, end, keywords[k].text)) {
                s->kw = (int)keywords[k].tier;
                s->kw_text = keywords[k].text;
            }
        }
    }
}

enum task_tier tier_analyse(const char *body, size_t len, const struct req_facts *facts,
                            char *why, size_t why_cap)
{
    struct signals s = {.kw = -1};
    if (body) {
        if (len <= TIER_SCAN_MAX) {
            scan_range(body, body + len, &s);
        } else {
            scan_range(body, body + TIER_SCAN_MAX / 2, &s);
            scan_range(body + len - TIER_SCAN_MAX / 2, body + len, &s);
        }
    }
    int64_t tokens = scan_estimate_tokens(facts ? facts->text_bytes : len);
    int size_tier = tokens < 50 ? TASK_TRIVIAL : tokens < 500 ? TASK_OPERATIONAL
                  : tokens < 2000 ? TASK_STANDARD : tokens < 8000 ? TASK_COMPLEX : TASK_DEEP;
    int tier = size_tier;
    const char *cause = "size";
    if (s.kw > tier) {
        tier = s.kw;
        cause = "keyword";
    }
    bool code = s.fences > 0 || s.code_marks >= 3;
    if (code && tier < TASK_STANDARD) {
        tier = TASK_STANDARD;
        cause = "code";
    }
    if (s.roles > 6 && tier < TASK_DEEP) {
        tier++;
        cause = "conversation depth";
    }
    if (why_cap) {
        if (cause[0] == 'k')
            snprintf(why, why_cap, "keyword '%s', ~%lld tokens, %d messages", s.kw_text,
                     (long long)tokens, s.roles);
        else
            snprintf(why, why_cap, "%s, ~%lld tokens, %d messages%s", cause, (long long)tokens,
                     s.roles, code ? ", code" : "");
    }
    return (enum task_tier)tier;
}
