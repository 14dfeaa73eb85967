/* scan: one incremental yajl pass over an OpenAI-shaped JSON body, with no
 * tree. For requests it validates the body while pulling the fields the
 * gateway needs (model and where it sits, stream flags, token limits, text
 * size for estimates, images, tools). For responses and stream events it
 * finds usage, a top-level error, and where the top-level object closes so
 * that the x-aiproxy object can be spliced in without re-serialising. */
#ifndef AIPROXY_API_SCAN_H
#define AIPROXY_API_SCAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum scan_kind {
    SCAN_CHAT,        /* POST /v1/chat/completions */
    SCAN_COMPLETIONS, /* POST /v1/completions */
    SCAN_EMBEDDINGS,  /* POST /v1/embeddings */
    SCAN_IMAGES,      /* POST /v1/images/generations: model and a string prompt */
};

#define SCAN_MAX_DEPTH 64      /* deeper nesting is refused */
#define SCAN_MODEL_MAX 256     /* longer model names are refused */

struct req_facts {
    /* model: unescaped value, and the byte range of the whole JSON string
     * token (quotes included) in the body, for replacing it. */
    char model[SCAN_MODEL_MAX + 1];
    size_t model_off, model_len;

    bool stream;
    bool has_stream_options;   /* a stream_options key is present */
    bool include_usage;        /* stream_options.include_usage == true */
    int64_t max_tokens;        /* max_completion_tokens, else max_tokens; -1 absent */
    int64_t n;                 /* choices; 1 when absent */
    double temperature;        /* -1 when absent */
    size_t text_bytes;         /* bytes of user-visible text: message contents, prompt, input */
    int64_t n_inputs;          /* embeddings: number of inputs */
    bool has_images;           /* an image_url part */
    bool has_tools;            /* tools or functions present and non-empty */
    bool has_cache_control;    /* a "cache_control" key anywhere (Anthropic prompt caching) */
    size_t root_open_off;      /* offset of the top-level '{' */
};

/* Result of a failed scan: an OpenAI-shaped 400 needs a message, and the
 * offending field in `param` (empty when the body is not JSON at all). */
struct scan_error {
    char message[256];
    char param[64];
    bool invalid_json; /* code invalid_json rather than invalid_request_error */
};

/* Validates and scans a request body of `kind`. Required fields: chat
 * `model` (non-empty string, no control bytes) and `messages` (non-empty
 * array of objects each with a string `role` of system, developer, user,
 * assistant, tool or function); completions `model` and `prompt` (string or
 * array); embeddings `model` and `input` (non-empty string or array). Type
 * checks: stream bool, stream_options object, max_tokens /
 * max_completion_tokens integers in 1..10000000, n integer 1..128,
 * temperature number 0..2, top_p number 0..1. Returns 0 and fills `out`,
 * or -1 and fills `err`. */
int scan_request(enum scan_kind kind, const char *body, size_t len, struct req_facts *out,
                 struct scan_error *err);

/* scan_request_flags: SCAN_MODEL_OPTIONAL accepts a body without `model`
 * (routing.auto_tier picks one); out->model is then "" and model_len 0 (a
 * present model is still checked as above). */
#define SCAN_MODEL_OPTIONAL 1u
/* SCAN_WALK_ALL: walk every container, even those the scan skips because
 * nothing in them matters (a tool's schema, a choice); the facts must be
 * the same either way (tests compare the two). */
#define SCAN_WALK_ALL 2u
int scan_request_flags(enum scan_kind kind, const char *body, size_t len, struct req_facts *out,
                       struct scan_error *err, unsigned flags);

struct usage {
    bool present;
    int64_t prompt_tokens;
    int64_t completion_tokens;
    int64_t total_tokens;
    /* Prompt caching (SPEC section 9); both are part of prompt_tokens, as
     * in OpenAI's usage. cached_tokens: prompt_tokens_details.cached_tokens,
     * else usage.cache_read_input_tokens (the Anthropic name, which some
     * OpenAI-compatible servers report too); cache_write_tokens: the
     * gateway's prompt_tokens_details.cache_write_tokens (also OpenRouter's),
     * else usage.cache_creation_input_tokens. 0 when absent. */
    int64_t cached_tokens;
    int64_t cache_write_tokens;
};

/* An aiproxy node's own x-aiproxy object in the root of its answer (a mesh
 * peer's: what it served, where, at what cost). */
struct resp_relay {
    bool present;      /* node, provider and cost_nanos were all read */
    bool cuttable;     /* `,"x-aiproxy":{...}` spans [start_off, end_off) */
    size_t start_off;  /* the comma before the key */
    size_t end_off;    /* just past the object's '}' */
    char node[64];
    char provider[128];
    int64_t cost_nanos;
    bool cost_present;
    size_t route_off, route_len; /* the route array's text; len 0: none */
    /* "usage":{"prompt_tokens","completion_tokens","total_tokens",
     * "cached_tokens","cache_write_tokens"}: what the serving node counted;
     * present only with all five */
    struct usage usage;
    unsigned usage_fields;
};

struct resp_facts {
    struct usage usage;      /* top-level "usage" object when it is one (null ignored) */
    bool has_error;          /* a top-level "error" key whose value is not null */
    char error_message[256]; /* error.message when present (or error as a string) */
    bool choices_empty;      /* top-level "choices" is [] */
    bool has_choices;        /* a top-level "choices" key is present */
    size_t close_off;        /* offset of the top-level object's closing '}' */
    bool root_empty;         /* the top-level object has no keys ("{}") */
    struct resp_relay relay; /* the last top-level "x-aiproxy" object */
};

/* Scans a response body or one stream event's data. Returns 0 when `body`
 * is one valid JSON object (trailing whitespace allowed), else -1. */
int scan_response(const char *body, size_t len, struct resp_facts *out);
/* The same with flags (SCAN_WALK_ALL). */
int scan_response_flags(const char *body, size_t len, struct resp_facts *out, unsigned flags);

/* Rough token estimate from text size: ceil(bytes / 4), at least 1 for
 * non-empty text. */
int64_t scan_estimate_tokens(size_t text_bytes);

#endif
