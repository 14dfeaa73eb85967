/* internal: helpers shared by the provider adapters and inbound translators
 * (not part of the adapter interface). JSON documents are built with
 * jansson and copied into the call's arena; the OpenAI splicing request
 * builder is shared by every OpenAI-format adapter (openai, local, ocf). */
#ifndef AIPROXY_PROVIDERS_INTERNAL_H
#define AIPROXY_PROVIDERS_INTERNAL_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "core/arena.h"
#include "providers/provider.h"

/* The base URL a call goes to: call->endpoint, else the provider's. */
static inline const char *provider_call_endpoint(const struct provider_call *call)
{
    return call->endpoint ? call->endpoint : call->provider->endpoint;
}

/* Parses `len` bytes as one JSON value (NULs inside strings refused).
 * Returns a new reference the caller json_decref()s, or NULL. */
json_t *pj_load(const char *s, size_t len);

/* Serialises `v` compactly (15 significant digits for reals) into the
 * arena; `*len` gets the length when non-NULL. Never NULL. */
char *pj_dump(struct arena *a, const json_t *v, size_t *len);

struct jsonw;

/* Writes `v` as pj_dump would into `w`. */
void pj_write(struct jsonw *w, const json_t *v);

/* Where a top-level member sits in an object's text (pj_span.c). */
struct pj_span {
    size_t value_off, value_len; /* its value */
    size_t cut_off, cut_end;     /* the member with one comma next to it */
};

/* Finds the top-level member `key` (spelled without escapes) of the JSON
 * object text `s`, whose value must be an object that jansson would write
 * back unchanged (strings without \u escapes, plain short numbers). Returns
 * 1 (found once: *out), 0 (absent), or -1: cannot tell (another shape,
 * twice, invalid text): the caller parses it all. Values of the other
 * members are skipped, not checked. */
int pj_member_span(const char *s, size_t len, const char *key, struct pj_span *out);

/* Typed field readers: NULL / false / `def` when absent or of another type. */
const char *pj_str(const json_t *obj, const char *key);
bool pj_int(const json_t *obj, const char *key, int64_t *out);
bool pj_true(const json_t *obj, const char *key);

/* Sets `key` to a new string / integer, stealing nothing from the caller. */
void pj_set_str(json_t *obj, const char *key, const char *s);
void pj_set_int(json_t *obj, const char *key, int64_t v);

/* Joins the text of an OpenAI message `content` (a string, or an array of
 * parts whose text parts are concatenated with `sep`) into the arena.
 * Returns NULL when content has another shape or holds a non-text part
 * (the part's type goes to `*bad_part` when non-NULL). */
char *pj_content_text(struct arena *a, const json_t *content, const char *sep,
                      const char **bad_part);

/* Copies a printf-style message into err (bounded). */
void perr(char *err, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Whether a credential can go into a header line as it is. */
bool header_value_ok(const char *v);

/* Emits one OpenAI chat.completion.chunk: `delta` (stolen) for choice 0
 * with `finish` (NULL: null), or, when delta is NULL, a usage-only chunk
 * (choices []) carrying `usage` (stolen; may be NULL). */
void pj_emit_chunk(struct arena *a, const char *id, int64_t created, const char *model,
                   json_t *delta, const char *finish, json_t *usage, provider_emit_cb emit,
                   void *ctx);

struct inbound_error;
struct inbound_routing;

/* The common start of an inbound translator's request_to_openai: clears
 * `err` and `routing` (no options given), then parses the client's body.
 * Returns the JSON object (a new reference), or NULL with `err` filled
 * (invalid_json) when the body is not a JSON object. */
json_t *pj_inbound_begin(const char *body, size_t len, struct inbound_routing *routing,
                         struct inbound_error *err);

/* Seconds since the epoch, for the `created` fields adapters must invent. */
int64_t pj_now(void);

/* The path under an OpenAI-format base URL for `kind`: "/chat/completions",
 * "/completions", "/embeddings", "/images/generations" (openai.c; the mesh
 * adapter forwards to peers at the same paths). */
const char *openai_path_for(enum api_kind kind);

/* The OpenAI-format request builder (openai.c): the client's body with the
 * model token swapped for the upstream id and stream usage requested
 * (spliced, or rewritten when the provider's preset has a quirk), sent to
 * `url` with the provider's bearer key. */
int openai_build_request(const struct provider_call *call, const char *url,
                         struct provider_request *out, char *err, size_t err_cap);

#endif
