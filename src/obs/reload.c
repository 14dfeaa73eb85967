/* reload: tickets and the last outcome, under one small lock (reloads are
 * rare; no request path takes it). */
#include "obs/reload.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static atomic_ullong tickets;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t answered; /* every ticket <= this has an outcome */
static bool last_ok;
static char last_message[RELOAD_MESSAGE_MAX];
static struct reload_stats stats;

uint64_t reload_request(void)
{
    uint64_t t = atomic_fetch_add(&tickets, 1) + 1;
    kill(getpid(), SIGHUP);
    return t;
}

uint64_t reload_begin(void)
{
    return atomic_load(&tickets);
}

void reload_publish(uint64_t upto, bool ok, const char *message)
{
    pthread_mutex_lock(&lock);
    if (upto > answered) answered = upto;
    last_ok = ok;
    snprintf(last_message, sizeof last_message, "%s", message ? message : "");
    int64_t now = (int64_t)time(NULL);
    if (ok) {
        stats.ok++;
        stats.generation++;
        stats.last_ok_s = now;
    } else {
        stats.failed++;
        stats.last_failed_s = now;
    }
    pthread_mutex_unlock(&lock);
}

bool reload_outcome(uint64_t t, bool *ok, char *message, size_t cap, uint64_t *generation)
{
    pthread_mutex_lock(&lock);
    bool done = answered >= t;
    if (done) {
        *ok = last_ok;
        snprintf(message, cap, "%s", last_message);
        *generation = stats.generation;
    }
    pthread_mutex_unlock(&lock);
    return done;
}

void reload_stats(struct reload_stats *out)
{
    pthread_mutex_lock(&lock);
    *out = stats;
    pthread_mutex_unlock(&lock);
}
