/* log: leveled event logging to a file descriptor, one write per line. */
#include "core/log.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/jsonw.h"

static enum log_level current_level = LOG_INFO;
static bool as_json = true;
static int out_fd = STDOUT_FILENO;
static char *out_path;
static pthread_mutex_t reopen_lock = PTHREAD_MUTEX_INITIALIZER;

static const char *level_names[] = {"debug", "info", "warn", "error"};

bool log_level_parse(const char *s, enum log_level *out)
{
    for (int i = 0; i < 4; i++) {
        if (strcmp(s, level_names[i]) == 0) {
            *out = (enum log_level)i;
            return true;
        }
    }
    if (strcmp(s, "warning") == 0) {
        *out = LOG_WARN;
        return true;
    }
    return false;
}

int log_configure(enum log_level level, bool json, const char *output)
{
    int fd;
    if (!output || strcmp(output, "stdout") == 0) {
        fd = STDOUT_FILENO;
    } else if (strcmp(output, "stderr") == 0) {
        fd = STDERR_FILENO;
    } else {
        fd = open(output, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
        if (fd < 0) return -1;
    }
    pthread_mutex_lock(&reopen_lock);
    int old = out_fd;
    out_fd = fd;
    free(out_path);
    out_path = (fd > STDERR_FILENO) ? xstrdup(output) : NULL;
    if (old > STDERR_FILENO && old != fd) close(old);
    pthread_mutex_unlock(&reopen_lock);
    current_level = level;
    as_json = json;
    return 0;
}

void log_reopen(void)
{
    pthread_mutex_lock(&reopen_lock);
    if (out_path) {
        int fd = open(out_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
        if (fd >= 0) {
            int old = out_fd;
            out_fd = fd;
            close(old);
        }
    }
    pthread_mutex_unlock(&reopen_lock);
}

bool log_enabled(enum log_level level)
{
    return level >= current_level;
}

void log_write_line(const char *line, unsigned long len)
{
    ssize_t n = write(out_fd, line, len);
    (void)n; /* a log line that cannot be written is dropped, not retried */
}

void log_event(enum log_level level, const char *event, const char *fmt, ...)
{
    if (!log_enabled(level)) return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);

    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char when[64];
    snprintf(when, sizeof when, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
             (int)(ts.tv_nsec / 1000000) % 1000);

    char line[2048];
    struct jsonw w;
    jsonw_init(&w, line, sizeof line - 1);
    if (as_json) {
        jsonw_raw(&w, "{\"ts\":");
        jsonw_str(&w, when);
        jsonw_raw(&w, ",\"level\":");
        jsonw_str(&w, level_names[level]);
        jsonw_raw(&w, ",\"event\":");
        jsonw_str(&w, event);
        jsonw_raw(&w, ",\"msg\":");
        jsonw_str(&w, msg);
        jsonw_raw(&w, "}");
    } else {
        jsonw_raw(&w, when);
        jsonw_raw(&w, " ");
        jsonw_raw(&w, level_names[level]);
        jsonw_raw(&w, " ");
        jsonw_raw(&w, event);
        jsonw_raw(&w, ": ");
        jsonw_escaped(&w, msg); /* control bytes escaped even in text */
    }
    size_t n = jsonw_len(&w);
    line[n++] = '\n';
    log_write_line(line, n);
}
