/* log: leveled event logging, one line per event, as JSON or text, to stdout,
 * stderr or a file. Thread-safe (one write(2) per line). Never pass a secret:
 * callers log names, not keys. */
#ifndef AIPROXY_CORE_LOG_H
#define AIPROXY_CORE_LOG_H

#include <stdbool.h>

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };

/* Configures the process-wide logger. `output` is "stdout", "stderr" or a
 * file path (opened for append). Returns 0, or -1 when the file cannot be
 * opened (the previous output is kept). */
int log_configure(enum log_level level, bool json, const char *output);

/* Parses "debug", "info", "warn"/"warning", "error". */
bool log_level_parse(const char *s, enum log_level *out);

/* True when messages at `level` are written; check before formatting
 * anything costly. */
bool log_enabled(enum log_level level);

/* Logs `event` (a short snake_case name) with a printf-style message. In JSON
 * format the line is {"ts":..,"level":..,"event":..,"msg":..}. */
void log_event(enum log_level level, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Writes a preformatted line (the access log builds its own JSON). */
void log_write_line(const char *line, unsigned long len);

/* Reopens a file output (SIGUSR1, for log rotation). */
void log_reopen(void);

#endif
