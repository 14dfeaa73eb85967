/* registry: provider type -> adapter ops. Adding a provider type is one
 * file and one line here. */
#include <stddef.h>
#include <stdio.h>

#include "config/config.h"
#include "providers/provider.h"

extern const struct provider_ops provider_openai_ops;

const struct provider_ops *provider_ops_for(const struct config_provider *p)
{
    switch (p->type) {
    case PROVIDER_OPENAI:
    case PROVIDER_LOCAL:
    case PROVIDER_OCF: /* OCF forwards OpenAI requests as they are */
        return &provider_openai_ops;
    case PROVIDER_ANTHROPIC:
    case PROVIDER_CLOUDFLARE:
        return NULL; /* adapters land with issue 3 */
    }
    return NULL;
}
