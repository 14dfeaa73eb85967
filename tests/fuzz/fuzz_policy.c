/* fuzz_policy: libFuzzer driver for the routing.policies rule language
 * (src/routing/policy.c). The input is "IF\nTHEN" (no newline: an else
 * rule). Whatever parses is evaluated against a few providers and requests;
 * whatever fails must report a column inside the text (or one past it). */
#include <assert.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "routing/policy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 8192) return 0;
    char *text = malloc(size + 1);
    memcpy(text, data, size);
    text[size] = '\0';
    char *nl = strchr(text, '\n');
    const char *if_text = NULL, *then_text = text;
    if (nl) {
        *nl = '\0';
        if_text = text;
        then_text = nl + 1;
    }
    struct config_provider provs[3] = {
        {.name = "local", .type = PROVIDER_LOCAL, .priority = 1, .weight = 1},
        {.name = "openai", .type = PROVIDER_OPENAI, .priority = 2, .weight = 3},
        {.name = "cf", .type = PROVIDER_CLOUDFLARE, .priority = 3, .weight = 0},
    };
    struct config cfg = {.providers = provs, .n_providers = 3};
    struct policy_set *set = policy_set_new(&cfg);
    struct policy_error err;
    int rc = policy_add_rule(set, "p", NULL, if_text, then_text, &err);
    if (rc == 0) {
        /* a second, fixed rule after it, as an else would be */
        rc = policy_add_rule(set, "p", NULL, NULL, "provider.cost ASC", &err);
        assert(rc == 0);
        struct policy_provider pp[3];
        for (int i = 0; i < 3; i++)
            pp[i] = (struct policy_provider){.provider = &provs[i], .priority = provs[i].priority,
                                             .cost_per_1k = i * 1000000, .est_cost = 7 - i,
                                             .latency_ms = 100 * i, .load_permille = 500};
        struct policy_outcome out[3];
        struct policy_request rqs[] = {
            {.model = "llama-3", .tokens = 10, .max_tokens = -1, .tier = ""},
            {.model = "gpt-4o", .tokens = 5000, .max_tokens = 100, .stream = true,
             .caps = CAP_VISION | CAP_TOOLS, .tier = "cheap"},
        };
        for (size_t r = 0; r < 2; r++) {
            size_t nk = policy_apply(set, STRATEGY_COST_OPTIMIZED, &rqs[r], pp, 3, out);
            assert(nk <= POLICY_MAX_KEYS);
            for (int i = 0; i < 3; i++) assert(memchr(out[i].note, '\0', sizeof out[i].note));
        }
    } else {
        const char *t = rc == -1 ? if_text : then_text;
        assert(rc == -1 || rc == -2);
        assert(err.col >= 1 && (size_t)err.col <= strlen(t) + 1);
        assert(err.msg[0]);
    }
    policy_set_free(set);
    free(text);
    return 0;
}
