// fuzz-sources: src/providers/ocf.c src/providers/discovery.c src/providers/pjson.c src/providers/openai.c
/* fuzz_ocf: libFuzzer driver for the discovery parsers. The first byte
 * picks: 0 an OCF /v1/dnt/table for ocf_parse_table, 1 a /v1/models or
 * /api/tags answer for discovery_parse_models, 2 /api/tags for
 * discovery_parse_ollama_tags. The lists must hold unique, non-empty
 * names without control bytes, sorted for OCF, every model with a peer. */
#include <assert.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "providers/discovery.h"
#include "providers/ocf.h"

static void check_name(const char *s)
{
    assert(s && *s);
    for (const char *p = s; *p; p++) assert((unsigned char)*p >= 0x20 && *p != 0x7f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    int mode = data[0] % 3;
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    if (mode == 0) {
        struct ocf_model_list l;
        int rc = ocf_parse_table(text, len, &l);
        if (rc != 0) assert(l.count == 0);
        for (size_t i = 0; i < l.count; i++) {
            check_name(l.items[i].name);
            if (i) assert(strcmp(l.items[i - 1].name, l.items[i].name) < 0);
            assert(l.items[i].n_peers > 0);
            for (size_t k = 0; k < l.items[i].n_peers; k++) check_name(l.items[i].peers[k]);
        }
        ocf_model_list_cleanup(&l);
    } else {
        struct discovery_list l;
        int rc = mode == 1 ? discovery_parse_models(text, len, &l)
                           : discovery_parse_ollama_tags(text, len, &l);
        if (rc != 0) assert(l.count == 0);
        for (size_t i = 0; i < l.count; i++) {
            check_name(l.ids[i]);
            for (size_t k = 0; k < i; k++) assert(strcmp(l.ids[k], l.ids[i]) != 0);
        }
        discovery_list_cleanup(&l);
    }
    return 0;
}
