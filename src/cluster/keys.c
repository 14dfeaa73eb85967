/* keys: the shared store's managed-key records (see keys.h). */
#include "cluster/keys.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "core/arena.h"

char *shared_key_encode(const struct key_view *v)
{
    json_t *o = json_object();
    json_object_set_new(o, "id", json_string(v->id));
    json_object_set_new(o, "name", json_string(v->name ? v->name : ""));
    if (v->tenant) json_object_set_new(o, "tenant", json_string(v->tenant));
    json_object_set_new(o, "admin", json_boolean(v->admin));
    json_t *m = json_array();
    for (size_t i = 0; i < v->n_models; i++) json_array_append_new(m, json_string(v->models[i]));
    json_object_set_new(o, "models", m);
    json_object_set_new(o, "daily_limit", json_integer(v->daily_limit));
    json_object_set_new(o, "monthly_limit", json_integer(v->monthly_limit));
    json_object_set_new(o, "rate_limit_per_hour", json_integer(v->rate_limit_per_hour));
    json_object_set_new(o, "requests_per_minute", json_integer(v->requests_per_minute));
    json_object_set_new(o, "tokens_per_minute", json_integer(v->tokens_per_minute));
    json_object_set_new(o, "expires_at", json_integer(v->expires_at));
    json_object_set_new(o, "created_at", json_integer(v->created_at));
    json_object_set_new(o, "revoked_at", json_integer(v->revoked_at));
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return s;
}

static bool get_int(json_t *o, const char *k, long long lo, long long hi, long long *out)
{
    json_t *v = json_object_get(o, k);
    if (!v) {
        *out = 0;
        return true;
    }
    if (!json_is_integer(v)) return false;
    long long x = json_integer_value(v);
    if (x < lo || x > hi) return false;
    *out = x;
    return true;
}

static bool plain(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n == 0 || n > max) return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) return false;
    return true;
}

int shared_key_decode(const char *json, size_t len, struct key_view *out, struct arena *a)
{
    memset(out, 0, sizeof *out);
    json_error_t e;
    json_t *o = json_loadb(json, len, 0, &e);
    int rc = -1;
    if (!json_is_object(o)) goto out;
    json_t *id = json_object_get(o, "id"), *name = json_object_get(o, "name");
    json_t *tenant = json_object_get(o, "tenant"), *models = json_object_get(o, "models");
    if (!json_is_string(id) || json_string_length(id) != KEYSTORE_ID_LEN ||
        strncmp(json_string_value(id), "key_", 4) != 0)
        goto out;
    if (!json_is_string(name) || !plain(json_string_value(name), 256)) goto out;
    if (tenant && !(json_is_string(tenant) && plain(json_string_value(tenant), 256))) goto out;
    memcpy(out->id, json_string_value(id), KEYSTORE_ID_LEN + 1);
    out->name = arena_strdup(a, json_string_value(name));
    out->tenant = tenant ? arena_strdup(a, json_string_value(tenant)) : NULL;
    out->admin = json_is_true(json_object_get(o, "admin"));
    if (models) {
        if (!json_is_array(models) || json_array_size(models) > KEYSTORE_MAX_MODELS) goto out;
        size_t n = json_array_size(models);
        const char **m = arena_alloc(a, (n ? n : 1) * sizeof *m);
        for (size_t i = 0; i < n; i++) {
            json_t *x = json_array_get(models, i);
            if (!json_is_string(x) || !plain(json_string_value(x), 256)) goto out;
            m[i] = arena_strdup(a, json_string_value(x));
        }
        out->models = m;
        out->n_models = n;
    }
    long long d, mo, rph, rpm, tpm, exp, cr, rev;
    const long long money_max = (long long)1 << 53, count_max = 1000000000LL, t_max = 1LL << 40;
    if (!get_int(o, "daily_limit", 0, money_max, &d) ||
        !get_int(o, "monthly_limit", 0, money_max, &mo) ||
        !get_int(o, "rate_limit_per_hour", 0, count_max, &rph) ||
        !get_int(o, "requests_per_minute", 0, count_max, &rpm) ||
        !get_int(o, "tokens_per_minute", 0, count_max, &tpm) ||
        !get_int(o, "expires_at", 0, t_max, &exp) || !get_int(o, "created_at", 0, t_max, &cr) ||
        !get_int(o, "revoked_at", 0, t_max, &rev))
        goto out;
    out->daily_limit = d;
    out->monthly_limit = mo;
    out->rate_limit_per_hour = (int)rph;
    out->requests_per_minute = (int)rpm;
    out->tokens_per_minute = (int)tpm;
    out->expires_at = exp;
    out->created_at = cr;
    out->revoked_at = rev;
    rc = 0;
out:
    json_decref(o);
    return rc;
}
