/* errors: status, type and code lookups and the OpenAI-shaped error body. */
#include "http/errors.h"

#include <string.h>

#include "core/jsonw.h"

static const struct {
    int status;
    const char *type, *code;
} rows[] = {
#define X(name, status, type, code) {status, type, code},
    GW_ERROR_MAP(X)
#undef X
};

int gw_error_status(enum gw_error e)
{
    return rows[e].status;
}

size_t gw_error_body(enum gw_error e, const char *message, const char *param, char *buf,
                     size_t cap)
{
    struct jsonw w;
    /* Cut the message (not the JSON) when it could not fit: each byte may
     * escape to at most six. */
    size_t max_raw = cap > 200 ? (cap - 200) / 6 : 0;
    size_t mlen = strlen(message);
    jsonw_init(&w, buf, cap);
    jsonw_raw(&w, "{\"error\":{\"message\":");
    jsonw_strn(&w, message, mlen < max_raw ? mlen : max_raw);
    jsonw_raw(&w, ",\"type\":");
    jsonw_str(&w, rows[e].type);
    jsonw_raw(&w, ",\"param\":");
    jsonw_str(&w, param && *param ? param : NULL);
    jsonw_raw(&w, ",\"code\":");
    jsonw_str(&w, rows[e].code);
    jsonw_raw(&w, "}}");
    return jsonw_len(&w);
}
