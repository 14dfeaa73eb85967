/* load_yaml: libyaml's event parser feeding the tree builder, keeping each
 * node's line (yaml marks are 0-based; ours are 1-based). Aliases and
 * anchors are refused: they buy little in a config file and make sizes
 * unbounded ("billion laughs"). */
#include <string.h>
#include <yaml.h>

#include "config/tree.h"
#include "core/alloc.h"

static bool plain_null(const yaml_event_t *ev)
{
    if (ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE) return false;
    if (ev->data.scalar.tag && strcmp((const char *)ev->data.scalar.tag, "!!null") != 0 &&
        strcmp((const char *)ev->data.scalar.tag, YAML_NULL_TAG) != 0)
        return false;
    const char *v = (const char *)ev->data.scalar.value;
    size_t n = ev->data.scalar.length;
    return n == 0 || (n == 1 && v[0] == '~') || (n == 4 && (memcmp(v, "null", 4) == 0 ||
                                                            memcmp(v, "Null", 4) == 0 ||
                                                            memcmp(v, "NULL", 4) == 0));
}

struct cnode *tree_load_yaml(const char *text, size_t len, const char *file,
                             struct diag_list *diags)
{
    yaml_parser_t parser;
    struct tree_builder b;
    bool done = false;

    tree_builder_init(&b, file, diags);
    if (!yaml_parser_initialize(&parser)) {
        diag_list_addf(diags, DIAG_ERROR, "%s: cannot initialise the YAML parser", file);
        return NULL;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    int docs = 0;
    while (!done && !b.failed) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&parser, &ev)) {
            const char *problem = parser.problem ? parser.problem : "syntax error";
            int line = (int)parser.problem_mark.line + 1;
            if (parser.context)
                diag_list_addf(diags, DIAG_ERROR, "%s:%d: YAML syntax error: %s %s", file, line,
                               problem, parser.context);
            else
                diag_list_addf(diags, DIAG_ERROR, "%s:%d: YAML syntax error: %s", file, line,
                               problem);
            b.failed = true;
            break;
        }
        int line = (int)ev.start_mark.line + 1;
        switch (ev.type) {
        case YAML_STREAM_END_EVENT:
            done = true;
            break;
        case YAML_DOCUMENT_START_EVENT:
            if (++docs > 1) {
                diag_list_addf(diags, DIAG_ERROR,
                               "%s:%d: more than one YAML document (only one is allowed)", file,
                               line);
                b.failed = true;
            }
            break;
        case YAML_ALIAS_EVENT:
            diag_list_addf(diags, DIAG_ERROR, "%s:%d: YAML aliases (*name) are not supported",
                           file, line);
            b.failed = true;
            break;
        case YAML_SCALAR_EVENT:
            tree_builder_scalar(&b, (const char *)ev.data.scalar.value, ev.data.scalar.length,
                                line, ev.data.scalar.style != YAML_PLAIN_SCALAR_STYLE,
                                plain_null(&ev));
            break;
        case YAML_SEQUENCE_START_EVENT:
            tree_builder_start(&b, CNODE_SEQ, line);
            break;
        case YAML_MAPPING_START_EVENT:
            tree_builder_start(&b, CNODE_MAP, line);
            break;
        case YAML_SEQUENCE_END_EVENT:
        case YAML_MAPPING_END_EVENT:
            tree_builder_end(&b);
            break;
        default:
            break;
        }
        yaml_event_delete(&ev);
    }
    yaml_parser_delete(&parser);
    if (b.failed) {
        tree_builder_cleanup(&b);
        return NULL;
    }
    struct cnode *root = b.root;
    b.root = NULL;
    tree_builder_cleanup(&b);
    if (!root) diag_list_addf(diags, DIAG_ERROR, "%s:1: the file has no settings", file);
    return root;
}
