/* registry: provider type -> adapter ops. Adding a provider type is one
 * file and one line here. */
#include <stddef.h>
#include <stdio.h>

#include "config/config.h"
#include "providers/provider.h"

extern const struct provider_ops provider_openai_ops;
extern const struct provider_ops provider_anthropic_ops;
extern const struct provider_ops provider_cloudflare_ops;
extern const struct provider_ops provider_ocf_ops;
extern const struct provider_ops provider_mesh_ops;

const struct provider_ops *provider_ops_for(const struct config_provider *p)
{
    switch (p->type) {
    case PROVIDER_OPENAI:
    case PROVIDER_LOCAL:
        return &provider_openai_ops;
    case PROVIDER_OCF:
        return &provider_ocf_ops;
    case PROVIDER_ANTHROPIC:
        return &provider_anthropic_ops;
    case PROVIDER_CLOUDFLARE:
        return &provider_cloudflare_ops;
    case PROVIDER_MESH:
        return &provider_mesh_ops;
    }
    return NULL;
}
