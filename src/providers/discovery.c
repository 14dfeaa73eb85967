/* discovery: model id lists from /v1/models and Ollama's /api/tags
 * (discovery.h). Ids are copied to the heap; control bytes, empty and
 * over-long ids are skipped, duplicates dropped. */
#include "providers/discovery.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"

static bool id_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > DISCOVERY_MAX_ID) return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) return false;
    return true;
}

static void add_id(struct discovery_list *l, const char *id)
{
    if (!id || !id_ok(id) || l->count >= DISCOVERY_MAX_MODELS) return;
    for (size_t i = 0; i < l->count; i++)
        if (strcmp(l->ids[i], id) == 0) return;
    l->ids = xrealloc(l->ids, (l->count + 1) * sizeof *l->ids);
    l->ids[l->count++] = xstrdup(id);
}

/* Reads `array_key` of the document, taking each item's first string field
 * among `fields`. */
static int parse_list(const char *json, size_t len, const char *array_key,
                      const char *const *fields, struct discovery_list *out)
{
    json_error_t e;
    out->ids = NULL;
    out->count = 0;
    json_t *root = json_loadb(json, len, 0, &e);
    json_t *arr = json_object_get(root, array_key);
    if (!json_is_array(arr)) {
        json_decref(root);
        return -1;
    }
    size_t i;
    json_t *item;
    json_array_foreach(arr, i, item) {
        for (const char *const *f = fields; *f; f++) {
            json_t *v = json_object_get(item, *f);
            if (json_is_string(v)) {
                add_id(out, json_string_value(v));
                break;
            }
        }
    }
    json_decref(root);
    return 0;
}

int discovery_parse_openai_models(const char *json, size_t len, struct discovery_list *out)
{
    static const char *const fields[] = {"id", NULL};
    return parse_list(json, len, "data", fields, out);
}

int discovery_parse_ollama_tags(const char *json, size_t len, struct discovery_list *out)
{
    static const char *const fields[] = {"name", "model", NULL};
    return parse_list(json, len, "models", fields, out);
}

int discovery_parse_models(const char *json, size_t len, struct discovery_list *out)
{
    if (discovery_parse_openai_models(json, len, out) == 0) return 0;
    return discovery_parse_ollama_tags(json, len, out);
}

void discovery_list_cleanup(struct discovery_list *l)
{
    for (size_t i = 0; i < l->count; i++) free(l->ids[i]);
    free(l->ids);
    l->ids = NULL;
    l->count = 0;
}
