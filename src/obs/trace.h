/* trace: OpenTelemetry spans for requests, exported over OTLP/HTTP (JSON)
 * to observability.tracing.endpoint + "/v1/traces".
 *
 * One SERVER span per request (from the completion hook) and one CLIENT
 * child span per upstream attempt, with the GenAI semantic-convention
 * attributes (gen_ai.system, gen_ai.operation.name, gen_ai.request.model,
 * gen_ai.response.model, gen_ai.usage.input_tokens / output_tokens) and
 * the http.* / url.* / server.* basics. An incoming W3C `traceparent` is
 * continued (parsed strictly: a malformed one starts a new trace) and each
 * attempt sends its own traceparent upstream.
 *
 * Off the hot path: workers copy a finished span into a bounded queue
 * (TRACE_QUEUE_MAX; past it the span is dropped and counted) and one
 * exporter thread batches them (up to TRACE_BATCH_MAX, at least every
 * TRACE_FLUSH_MS) and POSTs each batch with a short timeout. A collector
 * that is down or refusing costs the dropped-spans counter, nothing else.
 * Plain http:// endpoints only (the blocking probe client). Never a secret
 * in a span: names of keys and providers, never keys or headers. */
#ifndef AIPROXY_OBS_TRACE_H
#define AIPROXY_OBS_TRACE_H

#include <stdbool.h>
#include <stdint.h>

struct config;
struct http_request;

#define TRACE_QUEUE_MAX 4096
#define TRACE_BATCH_MAX 256
#define TRACE_FLUSH_MS 500
#define TRACE_EXPORT_TIMEOUT_MS 2000
#define TRACE_MAX_OPEN 4 /* attempt spans open at once per request (hedging) */

/* Starts the exporter thread (idle while tracing is off). Call once. */
void trace_start(void);
/* Applies observability.tracing of `cfg` (enabled, endpoint, service_name,
 * sample_ratio) and node.id; call at start and on every reload. */
void trace_configure(const struct config *cfg);
/* Exports what is queued (one last attempt, bounded by the timeout) and
 * stops the thread. */
void trace_stop(void);

struct trace_counters {
    uint64_t exported, dropped;
};
void trace_counters(struct trace_counters *out);

/* ---- per request (worker thread) ---- */

/* Attaches the request's context (req->trace, arena-owned): continues a
 * valid incoming traceparent or starts a trace, and decides sampling.
 * Always attaches one, traced or not (the completion hook relies on it).
 * GET /health, /ready and /metrics are never traced. */
void trace_request_begin(struct http_request *req);

/* An upstream attempt starts. `key` identifies it until it ends (the
 * candidate: hedged legs run at once). Returns the header line to add to
 * the provider request ("traceparent: 00-...-01\r\n", arena-owned), or
 * NULL when the request is not sampled. `ptype` is the provider type name
 * (gen_ai.system), `upstream_model` the provider's model id, `endpoint` its
 * base URL (only the host is recorded). */
const char *trace_attempt_begin(struct http_request *req, const void *key, const char *provider,
                                const char *ptype, const char *upstream_model, const char *endpoint);
/* The attempt `key` ended: `status` is the upstream HTTP status (0: none),
 * `ok` its outcome, `timeout` whether it timed out. No-op when it is not
 * open. Attempts never ended are closed by trace_request_end. */
void trace_attempt_end(struct http_request *req, const void *key, int status, bool ok,
                       bool timeout);

/* A stream's first event reached the client `us` after the request began:
 * feeds the TTFT histograms (global and per provider) and remembers it for
 * the dashboard's timeline. */
void trace_first_token(struct http_request *req, const char *provider, int64_t us);
/* What trace_first_token noted, or -1. */
int64_t trace_ttft_us(const struct http_request *req);

/* The request is complete (or aborted): ends an open attempt and queues the
 * server span. `ptype` is the answering provider's type name (NULL when
 * none answered), `key_name` the caller's key name (NULL when none). */
void trace_request_end(struct http_request *req, const char *ptype, const char *key_name);

/* ---- pure helpers (tests) ---- */

/* Parses a W3C traceparent "00-<32 hex>-<16 hex>-<2 hex>" strictly
 * (lowercase hex, version 00 exactly 55 chars; a future version may carry
 * more after a '-'; all-zero ids invalid; version ff invalid). Returns
 * true and fills the ids and flags on success. */
bool trace_parse_traceparent(const char *s, uint8_t trace_id[16], uint8_t span_id[8],
                             uint8_t *flags);

#endif
