/* metrics: Prometheus counters and histograms for the gateway, updated
 * with relaxed atomics (no lock on the hot path) and rendered as text
 * exposition for GET /metrics. Label sets are fixed and small: endpoint
 * families and status classes; per-provider series come from
 * routing/stats.h, bounded by the configured providers. */
#ifndef AIPROXY_OBS_METRICS_H
#define AIPROXY_OBS_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct http_request;

/* Notes the start time; call once before the workers start. */
void metrics_init(void);
/* Records a finished request (called from the access-log hook). */
void metrics_record_request(const struct http_request *req);
void metrics_stream_open(void);
void metrics_stream_close(void);
void metrics_record_ttft(int64_t us);
void metrics_failover(void);

/* Renders the exposition text into a heap buffer the caller frees. */
char *metrics_render(size_t *len);

#endif
