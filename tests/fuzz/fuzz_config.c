/* fuzz_config: libFuzzer driver for the config loader (YAML and JSON, the
 * tree walk, ${VAR} expansion, the summary printer). Every input must be
 * either accepted or refused with diagnostics, never crash or leak. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "config/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct diag_list diags = {0};
    struct config *c = config_load_text((const char *)data, size, "fuzz.yaml", &diags);
    if (c) {
        FILE *sink = fopen("/dev/null", "w");
        if (sink) {
            config_print_summary(c, sink);
            fclose(sink);
        }
        config_unref(c);
    } else if (diags.errors == 0) {
        __builtin_trap(); /* a refusal must say why */
    }
    diag_list_cleanup(&diags);
    return 0;
}
