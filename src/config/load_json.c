/* load_json: yajl's callback parser feeding the tree builder. yajl reports
 * how many bytes it has consumed at each callback; counting newlines up to
 * that offset (incrementally, offsets only grow) gives each node's line.
 * Numbers arrive as their original text, so prices never touch a double. */
#include <string.h>
#include <yajl/yajl_parse.h>

#include "config/tree.h"
#include "core/alloc.h"

struct json_ctx {
    struct tree_builder b;
    yajl_handle h;
    const char *text;
    size_t len;
    size_t counted; /* newlines counted in text[0..counted) */
    int line;
};

static int current_line(struct json_ctx *c)
{
    size_t off = yajl_get_bytes_consumed(c->h);
    if (off > c->len) off = c->len;
    /* the consumed count points past the token; a token never spans lines
     * (JSON strings cannot hold a raw newline), so step back one byte. */
    size_t end = off > 0 ? off - 1 : 0;
    for (; c->counted < end; c->counted++)
        if (c->text[c->counted] == '\n') c->line++;
    return c->line;
}

static int on_null(void *ctx)
{
    struct json_ctx *c = ctx;
    return tree_builder_scalar(&c->b, "", 0, current_line(c), false, true);
}

static int on_boolean(void *ctx, int v)
{
    struct json_ctx *c = ctx;
    return tree_builder_scalar(&c->b, v ? "true" : "false", v ? 4 : 5, current_line(c), false,
                               false);
}

static int on_number(void *ctx, const char *s, size_t n)
{
    struct json_ctx *c = ctx;
    return tree_builder_scalar(&c->b, s, n, current_line(c), false, false);
}

static int on_string(void *ctx, const unsigned char *s, size_t n)
{
    struct json_ctx *c = ctx;
    return tree_builder_scalar(&c->b, (const char *)s, n, current_line(c), true, false);
}

static int on_start_map(void *ctx)
{
    struct json_ctx *c = ctx;
    return tree_builder_start(&c->b, CNODE_MAP, current_line(c));
}

static int on_start_array(void *ctx)
{
    struct json_ctx *c = ctx;
    return tree_builder_start(&c->b, CNODE_SEQ, current_line(c));
}

static int on_end(void *ctx)
{
    struct json_ctx *c = ctx;
    return tree_builder_end(&c->b);
}

static const yajl_callbacks callbacks = {
    .yajl_null = on_null,
    .yajl_boolean = on_boolean,
    .yajl_number = on_number,
    .yajl_string = on_string,
    .yajl_start_map = on_start_map,
    .yajl_map_key = on_string,
    .yajl_end_map = on_end,
    .yajl_start_array = on_start_array,
    .yajl_end_array = on_end,
};

struct cnode *tree_load_json(const char *text, size_t len, const char *file,
                             struct diag_list *diags)
{
    struct json_ctx c = {.text = text, .len = len, .line = 1};
    tree_builder_init(&c.b, file, diags);
    c.h = yajl_alloc(&callbacks, NULL, &c);
    yajl_config(c.h, yajl_allow_comments, 1);
    yajl_status st = yajl_parse(c.h, (const unsigned char *)text, len);
    if (st == yajl_status_ok) st = yajl_complete_parse(c.h);
    if (st != yajl_status_ok && !c.b.failed) {
        int line = current_line(&c);
        unsigned char *msg = yajl_get_error(c.h, 0, (const unsigned char *)text, len);
        const char *m = (const char *)msg;
        /* yajl prefixes "parse error: " / "lexical error: " and ends with a newline */
        size_t mlen = strlen(m);
        while (mlen > 0 && (m[mlen - 1] == '\n' || m[mlen - 1] == ' ')) mlen--;
        diag_list_addf(diags, DIAG_ERROR, "%s:%d: JSON syntax error: %.*s", file, line,
                       (int)mlen, m);
        yajl_free_error(c.h, msg);
        c.b.failed = true;
    }
    yajl_free(c.h);
    if (c.b.failed || c.b.depth != 0) {
        if (!c.b.failed)
            diag_list_addf(diags, DIAG_ERROR, "%s:%d: JSON syntax error: unexpected end", file,
                           c.line);
        tree_builder_cleanup(&c.b);
        return NULL;
    }
    struct cnode *root = c.b.root;
    c.b.root = NULL;
    tree_builder_cleanup(&c.b);
    if (!root) diag_list_addf(diags, DIAG_ERROR, "%s:1: the file is empty", file);
    return root;
}
