/* access_log: formats and writes the per-request access line. */
#include "obs/access_log.h"

#include <string.h>
#include <time.h>

#include "core/clock.h"
#include "core/jsonw.h"
#include "core/log.h"
#include "core/money.h"
#include "http/server.h"

void access_log_request(struct http_request *req)
{
    if (!log_enabled(LOG_INFO)) return;
    /* Answered heartbeats arrive every few seconds from every peer: they
     * are logged at debug level only (refused ones stay visible). */
    if (req->from_peer && req->status == 200 && req->path &&
        strcmp(req->path, "/aiproxy/mesh/heartbeat") == 0 && !log_enabled(LOG_DEBUG))
        return;
    /* The line's time is to the second: format it once per second per
     * thread, not on every request (strftime and gmtime are not cheap). */
    static _Thread_local time_t when_sec = -1;
    static _Thread_local char when[40];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (ts.tv_sec != when_sec) {
        struct tm tm;
        gmtime_r(&ts.tv_sec, &tm);
        strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
        when_sec = ts.tv_sec;
    }

    char line[2048];
    struct jsonw w;
    jsonw_init(&w, line, sizeof line - 1);
    jsonw_raw(&w, "{\"ts\":\"");
    jsonw_raw(&w, when);
    jsonw_raw(&w, "Z\",\"level\":\"info\",\"event\":\"access\",\"request_id\":");
    jsonw_str(&w, req->id);
    jsonw_raw(&w, ",\"client\":");
    jsonw_str(&w, req->client_ip);
    jsonw_raw(&w, ",\"method\":");
    jsonw_str(&w, req->method_name ? req->method_name : "-");
    jsonw_raw(&w, ",\"path\":");
    jsonw_str(&w, req->path ? req->path : "-");
    jsonw_raw(&w, ",\"status\":");
    jsonw_int(&w, req->status);
    jsonw_raw(&w, ",\"latency_ms\":");
    jsonw_int(&w, (clock_mono_us() - req->start_us) / 1000);
    if (req->acct.model) {
        jsonw_raw(&w, ",\"model\":");
        jsonw_str(&w, req->acct.model);
        jsonw_raw(&w, ",\"provider\":");
        jsonw_str(&w, req->acct.provider);
        jsonw_raw(&w, ",\"stream\":");
        jsonw_raw(&w, req->acct.stream ? "true" : "false");
        jsonw_raw(&w, ",\"tokens_in\":");
        jsonw_int(&w, req->acct.tokens_in);
        jsonw_raw(&w, ",\"tokens_out\":");
        jsonw_int(&w, req->acct.tokens_out);
        char usd[32];
        money_format_usd(req->acct.cost_nanos, usd, sizeof usd);
        jsonw_raw(&w, ",\"cost\":");
        jsonw_raw(&w, usd);
        jsonw_raw(&w, ",\"estimated\":");
        jsonw_raw(&w, req->acct.estimated ? "true" : "false");
        jsonw_raw(&w, ",\"failovers\":");
        jsonw_int(&w, req->acct.failovers);
    }
    jsonw_raw(&w, ",\"bytes_out\":");
    jsonw_int(&w, req->bytes_out);
    jsonw_raw(&w, "}");
    size_t n = jsonw_len(&w);
    line[n++] = '\n';
    log_write_line(line, n);
}
