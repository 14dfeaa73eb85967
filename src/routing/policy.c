/* policy: the rule language's lexer, recursive-descent parser, compiled
 * form and evaluation. Conditions compile to a small tree of nodes kept in
 * one array per set (children by index); actions to a flat struct. */
#include "routing/policy.h"

#include <ctype.h>
#include <fnmatch.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/alloc.h"

#define MAX_RULE_TEXT 4096 /* a longer rule is refused */
#define MAX_DEPTH 32       /* parentheses and `not` nesting */

/* ---- fields ---- */

enum vtype { V_STR, V_INT, V_MONEY, V_BOOL, V_CAPS };

enum field {
    F_REQ_MODEL,
    F_REQ_TOKENS,
    F_REQ_MAX_TOKENS,
    F_REQ_STREAM,
    F_REQ_CAPS,
    F_REQ_TIER,
    F_PROV_TYPE,
    F_PROV_NAME,
    F_PROV_PRIORITY,
    F_PROV_WEIGHT,
    F_PROV_COST_1K,
    F_PROV_COST,
    F_PROV_LATENCY,
    F_PROV_LOAD,
};

static const struct {
    const char *name;
    enum field f;
    enum vtype t;
    bool orderable;
} fields[] = {
    {"request.model", F_REQ_MODEL, V_STR, false},
    {"request.tokens", F_REQ_TOKENS, V_INT, false},
    {"request.max_tokens", F_REQ_MAX_TOKENS, V_INT, false},
    {"request.stream", F_REQ_STREAM, V_BOOL, false},
    {"request.capabilities", F_REQ_CAPS, V_CAPS, false},
    {"request.tier", F_REQ_TIER, V_STR, false},
    {"provider.type", F_PROV_TYPE, V_STR, true},
    {"provider.name", F_PROV_NAME, V_STR, true},
    {"provider.priority", F_PROV_PRIORITY, V_INT, true},
    {"provider.weight", F_PROV_WEIGHT, V_INT, true},
    {"provider.cost_per_1k_tokens", F_PROV_COST_1K, V_MONEY, true},
    {"provider.cost", F_PROV_COST, V_MONEY, true},
    {"provider.latency_ms", F_PROV_LATENCY, V_INT, true},
    {"provider.load", F_PROV_LOAD, V_INT, true},
};
#define N_FIELDS (sizeof fields / sizeof fields[0])

static const struct {
    const char *name;
    unsigned bit;
} cap_names[] = {
    {"text-generation", CAP_TEXT}, {"chat", CAP_TEXT},
    {"vision", CAP_VISION},        {"embeddings", CAP_EMBEDDINGS},
    {"code-generation", CAP_CODE}, {"text-to-image", CAP_IMAGE_GEN},
    {"tools", CAP_TOOLS},          {"function-calling", CAP_TOOLS},
    {"image-classification", CAP_IMAGE_CLASS},
};

/* ---- compiled form ---- */

enum nkind { N_AND, N_OR, N_NOT, N_CMP, N_MATCH, N_CONTAINS, N_TRUTH };
enum cmp { C_EQ, C_NE, C_LT, C_LE, C_GT, C_GE };

struct node {
    enum nkind kind;
    enum cmp op;
    enum field field;
    int a, b;    /* children (and/or: both; not: a) */
    int64_t num; /* int, money (nanos) or bool */
    char *str;   /* string or glob */
    unsigned caps;
};

enum akind { A_ORDER, A_PRIORITY, A_PREFER, A_REQUIRE };

/* A provider reference in prefer/require: a provider's name, or, when no
 * provider has that name, a provider type. */
struct provref {
    char *text;
    bool by_type;
};

struct action {
    enum akind kind;
    enum field field; /* A_ORDER */
    bool desc;
    int64_t value;    /* A_PRIORITY */
    struct provref *refs;
    size_t n_refs;
};

struct rule {
    int cond; /* node index; -1 for else */
    size_t lo, hi; /* the condition's nodes */
    struct action act;
    char *text; /* the action as written, for notes */
};

struct policy {
    char *name;
    bool any_strategy;
    enum routing_strategy strategy;
    struct rule *rules;
    size_t n_rules;
};

struct policy_set {
    const struct config *cfg; /* for provider names; only while compiling */
    struct policy *pols;
    size_t n_pols;
    struct node *nodes;
    size_t n_nodes, cap_nodes;
};

/* ---- lexer ---- */

enum tok {
    T_END,
    T_IDENT, /* letters, digits, '_', '-' ; a field is IDENT '.' IDENT */
    T_STRING,
    T_NUMBER,
    T_LPAREN,
    T_RPAREN,
    T_DOT,
    T_EQ,
    T_NE,
    T_LT,
    T_LE,
    T_GT,
    T_GE,
    T_ASSIGN,
    T_AND,
    T_OR,
    T_NOT,
    T_BAD,
};

struct lexer {
    const char *src;
    size_t pos;
    /* the current token */
    enum tok t;
    size_t start, len;    /* in src; a string's content excludes the quotes */
    size_t tok_start;     /* where the token began (quote included) */
    struct policy_error *err;
    bool failed;
    int depth;
};

static bool fail_at(struct lexer *lx, size_t pos, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static bool fail_at(struct lexer *lx, size_t pos, const char *fmt, ...)
{
    if (lx->failed) return false;
    lx->failed = true;
    lx->err->col = (int)pos + 1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(lx->err->msg, sizeof lx->err->msg, fmt, ap);
    va_end(ap);
    return false;
}

static bool ident_char(char c)
{
    return isalnum((unsigned char)c) || c == '_' || c == '-';
}

static void next(struct lexer *lx)
{
    const char *s = lx->src;
    size_t p = lx->pos;
    while (s[p] == ' ' || s[p] == '\t' || s[p] == '\n' || s[p] == '\r') p++;
    lx->tok_start = lx->start = p;
    lx->len = 0;
    char c = s[p];
    if (!c) {
        lx->t = T_END;
    } else if (isalpha((unsigned char)c) || c == '_') {
        while (ident_char(s[p])) p++;
        lx->t = T_IDENT;
        lx->len = p - lx->start;
    } else if (isdigit((unsigned char)c) || (c == '-' && isdigit((unsigned char)s[p + 1]))) {
        p++;
        while (isdigit((unsigned char)s[p])) p++;
        if (s[p] == '.' && isdigit((unsigned char)s[p + 1])) {
            p++;
            while (isdigit((unsigned char)s[p])) p++;
        }
        lx->t = T_NUMBER;
        lx->len = p - lx->start;
    } else if (c == '\'' || c == '"') {
        size_t q = p + 1;
        while (s[q] && s[q] != c) q++;
        if (!s[q]) {
            lx->t = T_BAD;
            fail_at(lx, p, "unterminated string (no closing %c)", c);
            lx->pos = q;
            return;
        }
        lx->t = T_STRING;
        lx->start = p + 1;
        lx->len = q - p - 1;
        p = q + 1;
    } else {
        static const struct {
            const char *s;
            enum tok t;
        } ops[] = {{"==", T_EQ},  {"!=", T_NE},  {"<=", T_LE}, {">=", T_GE},
                   {"&&", T_AND}, {"||", T_OR},  {"<", T_LT},  {">", T_GT},
                   {"=", T_ASSIGN}, {"!", T_NOT}, {"(", T_LPAREN}, {")", T_RPAREN},
                   {".", T_DOT}};
        lx->t = T_BAD;
        for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
            size_t n = strlen(ops[i].s);
            if (strncmp(s + p, ops[i].s, n) == 0) {
                lx->t = ops[i].t;
                lx->len = n;
                p += n;
                break;
            }
        }
        if (lx->t == T_BAD) {
            if ((unsigned char)c < 0x20 || (unsigned char)c >= 0x7f)
                fail_at(lx, p, "unexpected byte 0x%02x", (unsigned char)c);
            else
                fail_at(lx, p, "unexpected character '%c'", c);
            lx->pos = p + 1;
            return;
        }
    }
    lx->pos = p;
}

/* The identifier is `kw`, in any case (and/or/not/asc/...). */
static bool is_kw(const struct lexer *lx, const char *kw)
{
    return lx->t == T_IDENT && lx->len == strlen(kw) && strncasecmp(lx->src + lx->start, kw, lx->len) == 0;
}

static void describe(const struct lexer *lx, char *buf, size_t cap)
{
    if (lx->t == T_END) snprintf(buf, cap, "the end of the rule");
    else if (lx->t == T_STRING) snprintf(buf, cap, "a string");
    else snprintf(buf, cap, "'%.*s'", (int)(lx->len > 40 ? 40 : lx->len), lx->src + lx->start);
}

static bool expected(struct lexer *lx, const char *what)
{
    char got[64];
    describe(lx, got, sizeof got);
    return fail_at(lx, lx->tok_start, "expected %s, found %s", what, got);
}

/* ---- parser: conditions ---- */

static int add_node(struct policy_set *set, struct node n)
{
    if (set->n_nodes == set->cap_nodes) {
        set->cap_nodes = set->cap_nodes ? set->cap_nodes * 2 : 32;
        set->nodes = xrealloc(set->nodes, set->cap_nodes * sizeof *set->nodes);
    }
    set->nodes[set->n_nodes] = n;
    return (int)set->n_nodes++;
}

/* field := IDENT '.' IDENT, one of `fields`. Leaves the lexer after it. */
static int parse_field(struct lexer *lx, size_t *at)
{
    if (lx->t != T_IDENT) return expected(lx, "a field such as request.tokens or provider.type"), -1;
    size_t start = lx->start;
    *at = start;
    size_t a_len = lx->len;
    if (!((a_len == 7 && strncmp(lx->src + start, "request", 7) == 0) ||
          (a_len == 8 && strncmp(lx->src + start, "provider", 8) == 0)))
        return fail_at(lx, start, "expected a field starting with request. or provider."), -1;
    next(lx);
    if (lx->t != T_DOT) return expected(lx, "'.' after the object name"), -1;
    next(lx);
    if (lx->t != T_IDENT) return expected(lx, "a field name after '.'"), -1;
    size_t total = lx->start + lx->len - start;
    for (size_t i = 0; i < N_FIELDS; i++) {
        if (strlen(fields[i].name) == total && memcmp(fields[i].name, lx->src + start, total) == 0) {
            next(lx);
            return (int)i;
        }
    }
    return fail_at(lx, start, "unknown field '%.*s'", (int)(total > 60 ? 60 : total), lx->src + start), -1;
}

static bool parse_int_text(const char *p, size_t n, int64_t *out)
{
    int64_t v = 0;
    size_t i = 0;
    bool neg = n && p[0] == '-';
    if (neg) i++;
    if (i == n) return false;
    for (; i < n; i++) {
        if (!isdigit((unsigned char)p[i])) return false;
        if (v > (INT64_MAX - 9) / 10) return false;
        v = v * 10 + (p[i] - '0');
    }
    *out = neg ? -v : v;
    return true;
}

/* A literal of the field's type after a comparison operator. */
static bool parse_value(struct lexer *lx, enum vtype t, struct node *n)
{
    size_t at = lx->tok_start;
    switch (t) {
    case V_STR:
        if (lx->t != T_STRING) return expected(lx, "a quoted string");
        n->str = xstrndup(lx->src + lx->start, lx->len);
        break;
    case V_INT:
        if (lx->t != T_NUMBER) return expected(lx, "a number");
        if (!parse_int_text(lx->src + lx->start, lx->len, &n->num))
            return fail_at(lx, at, "expected a whole number, found '%.*s'", (int)lx->len,
                           lx->src + lx->start);
        break;
    case V_MONEY:
        if (lx->t != T_NUMBER) return expected(lx, "an amount in USD such as 0.002");
        if (lx->src[lx->start] == '-' ||
            !money_parse_usd(lx->src + lx->start, lx->len, &n->num))
            return fail_at(lx, at, "expected a non-negative amount in USD, found '%.*s'",
                           (int)lx->len, lx->src + lx->start);
        break;
    case V_BOOL:
        if (is_kw(lx, "true")) n->num = 1;
        else if (is_kw(lx, "false")) n->num = 0;
        else return expected(lx, "true or false");
        break;
    case V_CAPS:
        return fail_at(lx, at, "request.capabilities is compared with 'contains'");
    }
    next(lx);
    return true;
}

static int parse_or(struct lexer *lx, struct policy_set *set);

/* comparison := field (cmpop value | 'matches' string | 'contains' string)?
 * (a bare field is allowed for booleans only) */
static int parse_comparison(struct lexer *lx, struct policy_set *set)
{
    size_t at;
    int fi = parse_field(lx, &at);
    if (fi < 0) return -1;
    struct node n = {.field = fields[fi].f};
    enum vtype t = fields[fi].t;
    if (is_kw(lx, "matches")) {
        if (t != V_STR) return fail_at(lx, lx->tok_start, "'matches' needs a text field (%s is not)", fields[fi].name), -1;
        next(lx);
        if (lx->t != T_STRING) return expected(lx, "a quoted glob such as 'llama-*'"), -1;
        n.kind = N_MATCH;
        n.str = xstrndup(lx->src + lx->start, lx->len);
        next(lx);
        return add_node(set, n);
    }
    if (is_kw(lx, "contains")) {
        if (t != V_CAPS) return fail_at(lx, lx->tok_start, "'contains' applies to request.capabilities"), -1;
        next(lx);
        if (lx->t != T_STRING) return expected(lx, "a quoted capability such as 'vision'"), -1;
        size_t i = 0, nn = sizeof cap_names / sizeof cap_names[0];
        while (i < nn && !(strlen(cap_names[i].name) == lx->len &&
                           memcmp(cap_names[i].name, lx->src + lx->start, lx->len) == 0))
            i++;
        if (i == nn)
            return fail_at(lx, lx->tok_start, "unknown capability '%.*s' (expected vision, tools, "
                                              "embeddings, text-generation, ...)",
                           (int)(lx->len > 40 ? 40 : lx->len), lx->src + lx->start), -1;
        n.kind = N_CONTAINS;
        n.caps = cap_names[i].bit;
        next(lx);
        return add_node(set, n);
    }
    if (lx->t >= T_EQ && lx->t <= T_GE) {
        n.kind = N_CMP;
        n.op = (enum cmp)(lx->t - T_EQ);
        size_t op_at = lx->tok_start;
        if ((t == V_STR || t == V_BOOL) && n.op != C_EQ && n.op != C_NE)
            return fail_at(lx, op_at, "%s can only be compared with == or !=", fields[fi].name), -1;
        if (t == V_CAPS)
            return fail_at(lx, op_at, "request.capabilities is compared with 'contains'"), -1;
        next(lx);
        if (!parse_value(lx, t, &n)) {
            free(n.str);
            return -1;
        }
        return add_node(set, n);
    }
    if (lx->t == T_ASSIGN)
        return fail_at(lx, lx->tok_start, "'=' assigns; compare with '=='"), -1;
    if (t == V_BOOL) {
        n.kind = N_TRUTH;
        return add_node(set, n);
    }
    return expected(lx, "a comparison (==, !=, <, <=, >, >=, matches or contains)"), -1;
}

/* primary := '(' or ')' | comparison ;  unary := ('not' | '!') unary | primary */
static int parse_unary(struct lexer *lx, struct policy_set *set)
{
    if (++lx->depth > MAX_DEPTH) return fail_at(lx, lx->tok_start, "nested too deeply"), -1;
    int r;
    if (is_kw(lx, "not") || lx->t == T_NOT) {
        next(lx);
        int a = parse_unary(lx, set);
        r = a < 0 ? -1 : add_node(set, (struct node){.kind = N_NOT, .a = a});
    } else if (lx->t == T_LPAREN) {
        size_t open = lx->tok_start;
        next(lx);
        r = parse_or(lx, set);
        if (r >= 0 && lx->t != T_RPAREN) {
            if (lx->t == T_END) fail_at(lx, open, "unbalanced '(': no matching ')'");
            else expected(lx, "')' or and/or");
            r = -1;
        }
        if (r >= 0) next(lx);
    } else {
        r = parse_comparison(lx, set);
    }
    lx->depth--;
    return r;
}

static int parse_and(struct lexer *lx, struct policy_set *set)
{
    int a = parse_unary(lx, set);
    while (a >= 0 && (is_kw(lx, "and") || lx->t == T_AND)) {
        next(lx);
        int b = parse_unary(lx, set);
        a = b < 0 ? -1 : add_node(set, (struct node){.kind = N_AND, .a = a, .b = b});
    }
    return a;
}

static int parse_or(struct lexer *lx, struct policy_set *set)
{
    int a = parse_and(lx, set);
    while (a >= 0 && (is_kw(lx, "or") || lx->t == T_OR)) {
        next(lx);
        int b = parse_and(lx, set);
        a = b < 0 ? -1 : add_node(set, (struct node){.kind = N_OR, .a = a, .b = b});
    }
    return a;
}

static bool check_text(struct lexer *lx, const char *text)
{
    size_t n = strlen(text);
    if (n > MAX_RULE_TEXT) return fail_at(lx, MAX_RULE_TEXT, "the rule is too long (at most %d bytes)", MAX_RULE_TEXT);
    for (size_t i = 0; i < n; i++)
        if (text[i] != '\0' && (unsigned char)text[i] < 0x20 && text[i] != ' ' && text[i] != '\t' &&
            text[i] != '\n' && text[i] != '\r')
            return fail_at(lx, i, "unexpected byte 0x%02x", (unsigned char)text[i]);
    return true;
}

static int compile_condition(struct policy_set *set, const char *text, struct policy_error *err)
{
    struct lexer lx = {.src = text, .err = err};
    if (!check_text(&lx, text)) return -1;
    next(&lx);
    if (lx.t == T_END) return fail_at(&lx, 0, "empty condition"), -1;
    size_t mark = set->n_nodes;
    int root = parse_or(&lx, set);
    if (root >= 0 && lx.t != T_END) {
        expected(&lx, "and, or or the end of the condition");
        root = -1;
    }
    if (root < 0 || lx.failed) {
        for (size_t i = mark; i < set->n_nodes; i++) free(set->nodes[i].str);
        set->n_nodes = mark;
        return -1;
    }
    return root;
}

/* ---- parser: actions ---- */

static bool parse_provref(struct lexer *lx, struct policy_set *set, struct provref *out)
{
    if (!(lx->t == T_IDENT && lx->len == 8 && strncmp(lx->src + lx->start, "provider", 8) == 0))
        return expected(lx, "provider.NAME");
    next(lx);
    if (lx->t != T_DOT) return expected(lx, "'.' after provider");
    next(lx);
    if (lx->t != T_IDENT) return expected(lx, "a provider name or type after 'provider.'");
    out->text = xstrndup(lx->src + lx->start, lx->len);
    out->by_type = set->cfg && !config_find_provider(set->cfg, out->text);
    next(lx);
    return true;
}

static void action_cleanup(struct action *a)
{
    for (size_t i = 0; i < a->n_refs; i++) free(a->refs[i].text);
    free(a->refs);
    a->refs = NULL;
    a->n_refs = 0;
}

/* action := field ('ASC'|'DESC') | 'priority' '=' INT
 *         | 'prefer' provref ('>' provref)* | 'require' provref */
static bool compile_action(struct policy_set *set, const char *text, struct action *a,
                           struct policy_error *err)
{
    struct lexer lx = {.src = text, .err = err};
    memset(a, 0, sizeof *a);
    if (!check_text(&lx, text)) return false;
    next(&lx);
    if (lx.t == T_END) return fail_at(&lx, 0, "empty action (expected provider.FIELD ASC|DESC, "
                                              "priority = N, prefer or require)");
    bool ok = true;
    if (is_kw(&lx, "priority")) {
        a->kind = A_PRIORITY;
        next(&lx);
        if (lx.t != T_ASSIGN) ok = expected(&lx, "'=' after priority");
        if (ok) next(&lx);
        if (ok && lx.t != T_NUMBER) ok = expected(&lx, "a whole number");
        if (ok && !parse_int_text(lx.src + lx.start, lx.len, &a->value))
            ok = fail_at(&lx, lx.tok_start, "expected a whole number, found '%.*s'", (int)lx.len,
                         lx.src + lx.start);
        if (ok) next(&lx);
    } else if (is_kw(&lx, "prefer") || is_kw(&lx, "require")) {
        bool prefer = is_kw(&lx, "prefer");
        a->kind = prefer ? A_PREFER : A_REQUIRE;
        next(&lx);
        do {
            if (a->n_refs && prefer) next(&lx); /* the '>' */
            struct provref r = {0};
            if (!(ok = parse_provref(&lx, set, &r))) break;
            a->refs = xrealloc(a->refs, (a->n_refs + 1) * sizeof *a->refs);
            a->refs[a->n_refs++] = r;
        } while (prefer && lx.t == T_GT && a->n_refs < 64);
    } else {
        size_t at;
        int fi = parse_field(&lx, &at);
        if (fi < 0) {
            ok = false;
        } else if (!fields[fi].orderable) {
            ok = fail_at(&lx, at, "cannot order by %s (order by a provider field)", fields[fi].name);
        } else {
            a->kind = A_ORDER;
            a->field = fields[fi].f;
            if (is_kw(&lx, "asc")) a->desc = false;
            else if (is_kw(&lx, "desc")) a->desc = true;
            else ok = expected(&lx, "ASC or DESC");
            if (ok) next(&lx);
        }
    }
    if (ok && lx.t != T_END) ok = expected(&lx, a->kind == A_PREFER ? "'>' or the end of the action"
                                                                     : "the end of the action");
    if (!ok || lx.failed) {
        action_cleanup(a);
        return false;
    }
    return true;
}

/* ---- the set ---- */

struct policy_set *policy_set_new(const struct config *cfg)
{
    struct policy_set *set = xcalloc(1, sizeof *set);
    set->cfg = cfg;
    return set;
}

void policy_set_free(struct policy_set *set)
{
    if (!set) return;
    for (size_t i = 0; i < set->n_pols; i++) {
        struct policy *p = &set->pols[i];
        for (size_t j = 0; j < p->n_rules; j++) {
            action_cleanup(&p->rules[j].act);
            free(p->rules[j].text);
        }
        free(p->rules);
        free(p->name);
    }
    free(set->pols);
    for (size_t i = 0; i < set->n_nodes; i++) free(set->nodes[i].str);
    free(set->nodes);
    free(set);
}

static void free_hook(void *p)
{
    policy_set_free(p);
}

size_t policy_set_count(const struct policy_set *set)
{
    return set ? set->n_pols : 0;
}

static struct policy *start_policy(struct policy_set *set, const char *name, const char *type)
{
    set->pols = xrealloc(set->pols, (set->n_pols + 1) * sizeof *set->pols);
    struct policy *p = &set->pols[set->n_pols++];
    memset(p, 0, sizeof *p);
    p->name = xstrdup(name ? name : "");
    p->any_strategy = !type || !routing_strategy_parse(type, &p->strategy);
    return p;
}

static int add_rule(struct policy_set *set, struct policy *p, const char *if_text,
                    const char *then_text, struct policy_error *err)
{
    int cond = -1;
    size_t lo = set->n_nodes;
    if (if_text && (cond = compile_condition(set, if_text, err)) < 0) return -1;
    struct action a;
    if (!compile_action(set, then_text ? then_text : "", &a, err)) return -2;
    p->rules = xrealloc(p->rules, (p->n_rules + 1) * sizeof *p->rules);
    p->rules[p->n_rules++] = (struct rule){.cond = cond, .lo = lo, .hi = set->n_nodes, .act = a,
                                           .text = xstrdup(then_text ? then_text : "")};
    return 0;
}

int policy_add_rule(struct policy_set *set, const char *policy, const char *type,
                    const char *if_text, const char *then_text, struct policy_error *err)
{
    memset(err, 0, sizeof *err);
    struct policy *p = set->n_pols ? &set->pols[set->n_pols - 1] : NULL;
    if (!p || strcmp(p->name, policy ? policy : "") != 0) p = start_policy(set, policy, type);
    return add_rule(set, p, if_text, then_text, err);
}

/* Warnings for rules that parse but likely do not say what was meant. */
static void lint_rule(struct policy_set *set, const struct rule *r, const char *file, int line, const char *path, struct diag_list *diags)
{
    for (size_t i = r->lo; i < r->hi; i++) {
        const struct node *n = &set->nodes[i];
        if (n->kind == N_CMP && n->str && strpbrk(n->str, "*?[")) {
            diag_list_addf(diags, DIAG_WARNING,
                           "%s:%d: %s.if: '%s' compares literally; write matches '%s' for a glob",
                           file, line, path, n->op == C_EQ ? "==" : "!=", n->str);
            break;
        }
    }
    for (size_t i = 0; i < r->act.n_refs; i++) {
        const char *t = r->act.refs[i].text;
        if (!r->act.refs[i].by_type) continue;
        bool is_type = false;
        for (int k = 0; k <= PROVIDER_OCF; k++)
            if (strcmp(provider_type_name((enum provider_type)k), t) == 0) is_type = true;
        if (!is_type)
            diag_list_addf(diags, DIAG_WARNING,
                           "%s:%d: %s.then: no provider is named '%s' and it is not a provider "
                           "type",
                           file, line, path, t);
    }
}

bool routing_compile_policies(struct config *cfg, struct diag_list *diags)
{
    if (cfg->compiled_policies && cfg->free_compiled_policies)
        cfg->free_compiled_policies(cfg->compiled_policies);
    cfg->compiled_policies = NULL;
    cfg->free_compiled_policies = free_hook;
    if (cfg->routing.n_policies == 0) return true;
    size_t errors = diags->errors;
    const char *file = cfg->source ? cfg->source : "<config>";
    struct policy_set *set = policy_set_new(cfg);
    for (size_t i = 0; i < cfg->routing.n_policies; i++) {
        const struct config_policy *cp = &cfg->routing.policies[i];
        struct policy *p = start_policy(set, cp->name, cp->type);
        bool after_else = false;
        for (size_t j = 0; j < cp->n_rules; j++) {
            const struct config_rule *cr = &cp->rules[j];
            char path[96];
            if (cp->bare) snprintf(path, sizeof path, "routing.policies[%zu]", cp->item + j);
            else snprintf(path, sizeof path, "routing.policies[%zu].rules[%zu]", cp->item, j);
            if (!cr->then_expr) continue; /* a malformed item, reported by the loader */
            if (after_else)
                diag_list_addf(diags, DIAG_WARNING, "%s:%d: %s: never applies (after an else)",
                               file, cr->line, path);
            struct policy_error err;
            int rc = add_rule(set, p, cr->if_expr, cr->then_expr, &err);
            if (rc == -1)
                diag_list_addf(diags, DIAG_ERROR, "%s:%d:%d: %s.if: %s", file, cr->line, err.col,
                               path, err.msg);
            else if (rc == -2)
                diag_list_addf(diags, DIAG_ERROR, "%s:%d:%d: %s.%s: %s", file,
                               cr->then_line ? cr->then_line : cr->line, err.col, path,
                               cr->if_expr ? "then" : "else", err.msg);
            else
                lint_rule(set, &p->rules[p->n_rules - 1], file, cr->line, path, diags);
            if (!cr->if_expr) after_else = true;
        }
    }
    set->cfg = NULL; /* the snapshot owns the set; no back-reference is needed after this */
    if (diags->errors != errors) {
        policy_set_free(set);
        return false;
    }
    cfg->compiled_policies = set;
    return true;
}

/* ---- evaluation ---- */

static int64_t field_num(enum field f, const struct policy_request *rq,
                         const struct policy_provider *pp)
{
    switch (f) {
    case F_REQ_TOKENS: return rq->tokens;
    case F_REQ_MAX_TOKENS: return rq->max_tokens;
    case F_REQ_STREAM: return rq->stream;
    case F_PROV_PRIORITY: return pp->priority;
    case F_PROV_WEIGHT: return pp->provider ? pp->provider->weight : 0;
    case F_PROV_COST_1K: return pp->cost_per_1k;
    case F_PROV_COST: return pp->est_cost;
    case F_PROV_LATENCY: return pp->latency_ms;
    case F_PROV_LOAD: return pp->load_permille;
    default: return 0;
    }
}

static const char *field_str(enum field f, const struct policy_request *rq,
                             const struct policy_provider *pp)
{
    switch (f) {
    case F_REQ_MODEL: return rq->model ? rq->model : "";
    case F_REQ_TIER: return rq->tier ? rq->tier : "";
    case F_PROV_TYPE: return pp->provider ? provider_type_name(pp->provider->type) : "";
    case F_PROV_NAME: return pp->provider ? pp->provider->name : "";
    default: return "";
    }
}

static bool field_is_str(enum field f)
{
    return f == F_REQ_MODEL || f == F_REQ_TIER || f == F_PROV_TYPE || f == F_PROV_NAME;
}

static bool eval(const struct policy_set *set, int i, const struct policy_request *rq,
                 const struct policy_provider *pp)
{
    const struct node *n = &set->nodes[i];
    switch (n->kind) {
    case N_AND: return eval(set, n->a, rq, pp) && eval(set, n->b, rq, pp);
    case N_OR: return eval(set, n->a, rq, pp) || eval(set, n->b, rq, pp);
    case N_NOT: return !eval(set, n->a, rq, pp);
    case N_TRUTH: return field_num(n->field, rq, pp) != 0;
    case N_MATCH: return fnmatch(n->str, field_str(n->field, rq, pp), 0) == 0;
    case N_CONTAINS: return (rq->caps & n->caps) != 0;
    case N_CMP: {
        int c;
        if (field_is_str(n->field)) {
            c = strcmp(field_str(n->field, rq, pp), n->str);
        } else {
            int64_t v = field_num(n->field, rq, pp);
            c = v < n->num ? -1 : v > n->num;
        }
        switch (n->op) {
        case C_EQ: return c == 0;
        case C_NE: return c != 0;
        case C_LT: return c < 0;
        case C_LE: return c <= 0;
        case C_GT: return c > 0;
        case C_GE: return c >= 0;
        }
    }
    }
    return false;
}

static bool ref_matches(const struct provref *r, const struct config_provider *p)
{
    if (!p) return false;
    return r->by_type ? strcmp(provider_type_name(p->type), r->text) == 0
                      : strcmp(p->name, r->text) == 0;
}

static const struct rule *first_match(const struct policy_set *set, const struct policy *pol,
                                      const struct policy_request *rq,
                                      const struct policy_provider *pp)
{
    for (size_t j = 0; j < pol->n_rules; j++) {
        const struct rule *r = &pol->rules[j];
        if (r->cond < 0 || eval(set, r->cond, rq, pp)) return r;
    }
    return NULL;
}

static bool applies(const struct policy *pol, enum routing_strategy s)
{
    return pol->any_strategy || pol->strategy == s;
}

static void note(struct policy_outcome *o, const struct policy *pol, const struct rule *r)
{
    size_t len = strlen(o->note);
    if (len + 8 >= sizeof o->note) return;
    snprintf(o->note + len, sizeof o->note - len, "%spolicy %s: %s", len ? "; " : "", pol->name,
             r->text);
}

size_t policy_apply(const struct policy_set *set, enum routing_strategy strategy,
                    const struct policy_request *rq, const struct policy_provider *provs,
                    size_t n, struct policy_outcome *out)
{
    for (size_t i = 0; i < n; i++) {
        memset(&out[i], 0, sizeof out[i]);
        out[i].priority = provs[i].priority;
    }
    if (!set) return 0;
    /* Pass 1: priority assignments and requirements (the last assignment
     * wins); conditions see the configured priority. */
    for (size_t k = 0; k < set->n_pols; k++) {
        const struct policy *pol = &set->pols[k];
        if (!applies(pol, strategy)) continue;
        for (size_t i = 0; i < n; i++) {
            const struct rule *r = first_match(set, pol, rq, &provs[i]);
            if (!r) continue;
            if (r->act.kind == A_PRIORITY) {
                out[i].priority = r->act.value;
                note(&out[i], pol, r);
            } else if (r->act.kind == A_REQUIRE && !ref_matches(&r->act.refs[0], provs[i].provider)) {
                out[i].excluded = true;
                snprintf(out[i].note, sizeof out[i].note, "policy %s requires provider %s",
                         pol->name, r->act.refs[0].text);
            }
        }
    }
    /* Pass 2: one ordering key per applicable policy. */
    size_t nk = 0;
    for (size_t k = 0; k < set->n_pols && nk < POLICY_MAX_KEYS; k++) {
        const struct policy *pol = &set->pols[k];
        if (!applies(pol, strategy)) continue;
        for (size_t i = 0; i < n; i++) {
            if (out[i].excluded) continue;
            const struct rule *r = first_match(set, pol, rq, &provs[i]);
            int64_t key = INT64_MAX; /* providers no rule matched come after */
            if (r) {
                switch (r->act.kind) {
                case A_PRIORITY: key = r->act.value; break;
                case A_REQUIRE: key = 0; break;
                case A_PREFER:
                    key = (int64_t)r->act.n_refs;
                    for (size_t j = 0; j < r->act.n_refs; j++)
                        if (ref_matches(&r->act.refs[j], provs[i].provider)) {
                            key = (int64_t)j;
                            break;
                        }
                    if (key < (int64_t)r->act.n_refs) note(&out[i], pol, r);
                    break;
                case A_ORDER: {
                    int64_t v;
                    if (r->act.field == F_PROV_PRIORITY) v = out[i].priority;
                    else if (r->act.field == F_PROV_NAME || r->act.field == F_PROV_TYPE) {
                        /* names order by their first 8 bytes, big-endian */
                        const char *s = field_str(r->act.field, rq, &provs[i]);
                        uint64_t u = 0;
                        for (int b = 0; b < 8; b++) u = (u << 8) | (unsigned char)(*s ? *s++ : 0);
                        v = (int64_t)(u >> 1);
                    } else v = field_num(r->act.field, rq, &provs[i]);
                    key = r->act.desc ? -v : v;
                    break;
                }
                }
            }
            out[i].keys[nk] = key;
        }
        nk++;
    }
    return nk;
}
