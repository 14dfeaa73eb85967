/* internal: what config.c (lifecycle, defaults, summary) and parse.c (the
 * key tables and the walk over the document tree) share. Private. */
#ifndef AIPROXY_CONFIG_INTERNAL_H
#define AIPROXY_CONFIG_INTERNAL_H

#include "config/config.h"
#include "config/tree.h"

/* A fresh snapshot holding every table default (refcount 1). */
struct config *config_new_defaults(void);
/* Frees a snapshot regardless of its refcount. */
void config_free(struct config *c);
/* Fills `p` with the provider table's defaults for type `t`, named `name`. */
void config_provider_init(struct config_provider *p, const char *name, enum provider_type t);
void config_provider_cleanup(struct config_provider *p);
/* Applies the document `root` to `c`, reporting to `diags`. Returns false
 * when an error was reported. */
bool config_apply_tree(struct config *c, const struct cnode *root, const char *file,
                       struct diag_list *diags);
/* The type's default base URL, or NULL (ocf has none). */
const char *config_default_endpoint(enum provider_type t);

#endif
