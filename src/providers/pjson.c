/* pjson: the small JSON and error helpers the adapters share (internal.h). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/jsonw.h"
#include "providers/inbound.h"
#include "providers/internal.h"

json_t *pj_load(const char *s, size_t len)
{
    json_error_t e;
    if (!s) return NULL;
    return json_loadb(s, len, 0, &e);
}

static int dump_into(const char *s, size_t n, void *w)
{
    jsonw_rawn(w, s, n);
    return 0;
}

/* One pass into a growing arena buffer (json_dumpb would need two: one to
 * size the buffer, one to fill it). */
char *pj_dump(struct arena *a, const json_t *v, size_t *len)
{
    struct jsonw w;
    jsonw_init_arena(&w, a, 256);
    if (json_dump_callback(v, dump_into, &w, JSON_COMPACT | JSON_REAL_PRECISION(15) | JSON_ENCODE_ANY) != 0)
        w.len = 0; /* as json_dumpb's failure: "" */
    w.buf[w.len] = '\0';
    if (len) *len = w.len;
    return w.buf;
}

void pj_write(struct jsonw *w, const json_t *v)
{
    size_t at = w->len;
    if (json_dump_callback(v, dump_into, w, JSON_COMPACT | JSON_REAL_PRECISION(15) | JSON_ENCODE_ANY) != 0)
        w->len = at;
    if (w->cap) w->buf[w->len] = '\0';
}

const char *pj_str(const json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

bool pj_int(const json_t *obj, const char *key, int64_t *out)
{
    json_t *v = json_object_get(obj, key);
    if (!json_is_integer(v)) return false;
    *out = (int64_t)json_integer_value(v);
    return true;
}

bool pj_true(const json_t *obj, const char *key)
{
    return json_is_true(json_object_get(obj, key));
}

void pj_set_str(json_t *obj, const char *key, const char *s)
{
    json_object_set_new(obj, key, json_string(s ? s : ""));
}

void pj_set_int(json_t *obj, const char *key, int64_t v)
{
    json_object_set_new(obj, key, json_integer((json_int_t)v));
}

char *pj_content_text(struct arena *a, const json_t *content, const char *sep,
                      const char **bad_part)
{
    if (json_is_string(content)) return arena_strdup(a, json_string_value(content));
    if (!json_is_array(content)) return NULL;
    size_t total = 1, i;
    json_t *part;
    size_t seplen = strlen(sep);
    json_array_foreach(content, i, part) {
        const char *type = pj_str(part, "type");
        const char *text = pj_str(part, "text");
        if (!type || strcmp(type, "text") != 0 || !text) {
            if (bad_part) *bad_part = type ? type : "(untyped)";
            return NULL;
        }
        total += strlen(text) + seplen;
    }
    char *out = arena_alloc(a, total);
    size_t off = 0;
    json_array_foreach(content, i, part) {
        const char *text = pj_str(part, "text");
        size_t n = strlen(text);
        if (i && seplen) {
            memcpy(out + off, sep, seplen);
            off += seplen;
        }
        memcpy(out + off, text, n);
        off += n;
    }
    out[off] = '\0';
    return out;
}

void perr(char *err, size_t cap, const char *fmt, ...)
{
    if (!err || !cap) return;
    va_list ap;
    va_start(ap, fmt);
    (void)vsnprintf(err, cap, fmt, ap);
    va_end(ap);
}

bool header_value_ok(const char *v)
{
    return v && *v && !strpbrk(v, "\r\n");
}

int64_t pj_now(void)
{
    return (int64_t)time(NULL);
}

void pj_emit_chunk(struct arena *a, const char *id, int64_t created, const char *model,
                   json_t *delta, const char *finish, json_t *usage, provider_emit_cb emit,
                   void *ctx)
{
    json_t *c = json_object();
    pj_set_str(c, "id", id);
    pj_set_str(c, "object", "chat.completion.chunk");
    pj_set_int(c, "created", created);
    pj_set_str(c, "model", model);
    json_t *choices = json_array();
    if (delta) {
        json_t *ch = json_object();
        pj_set_int(ch, "index", 0);
        json_object_set_new(ch, "delta", delta);
        json_object_set_new(ch, "finish_reason", finish ? json_string(finish) : json_null());
        json_array_append_new(choices, ch);
    }
    json_object_set_new(c, "choices", choices);
    if (usage) json_object_set_new(c, "usage", usage);
    size_t len;
    char *json = pj_dump(a, c, &len);
    json_decref(c);
    emit(ctx, json, len);
}

json_t *pj_inbound_begin(const char *body, size_t len, struct inbound_routing *routing,
                         struct inbound_error *err)
{
    memset(err, 0, sizeof *err);
    if (routing) {
        routing->strategy[0] = '\0';
        routing->max_cost_nanos = -1;
        routing->timeout_ms = 0;
    }
    json_t *in = pj_load(body, len);
    if (!json_is_object(in)) {
        json_decref(in);
        snprintf(err->message, sizeof err->message, "The request body is not a JSON object.");
        err->invalid_json = true;
        return NULL;
    }
    return in;
}
