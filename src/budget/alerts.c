/* alerts: crossing detection (atomic per-threshold marks) and the webhook
 * thread (a small queue of owned JSON bodies). */
#include "budget/alerts.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "budget/spend.h"
#include "config/config.h"
#include "core/alloc.h"
#include "core/log.h"
#include "upstream/probe.h"

struct webhook_job {
    char *url;
    char *body;
};

struct alerts {
    /* The period in which each threshold last fired, per window. */
    _Atomic int64_t fired_day[ALERTS_MAX];
    _Atomic int64_t fired_month[ALERTS_MAX];
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    struct webhook_job jobs[ALERTS_QUEUE_MAX];
    size_t n_jobs;
    bool stop;
    _Atomic uint64_t sent;
};

static const char *action_name(enum alert_action a)
{
    return a == ALERT_DISABLE_PAID ? "disable_paid_providers" : a == ALERT_BLOCK ? "block" : "log";
}

static void *webhook_main(void *arg)
{
    struct alerts *a = arg;
    pthread_mutex_lock(&a->lock);
    for (;;) {
        while (a->n_jobs == 0 && !a->stop) pthread_cond_wait(&a->wake, &a->lock);
        if (a->n_jobs == 0) break;
        struct webhook_job job = a->jobs[0];
        memmove(a->jobs, a->jobs + 1, (a->n_jobs - 1) * sizeof *a->jobs);
        a->n_jobs--;
        pthread_mutex_unlock(&a->lock);
        char *resp = NULL;
        size_t len = 0;
        int status = probe_request("POST", job.url, NULL, job.body, strlen(job.body),
                                   ALERTS_WEBHOOK_TIMEOUT_MS, 64 * 1024, &resp, &len);
        free(resp);
        atomic_fetch_add(&a->sent, 1);
        if (status < 200 || status >= 300)
            log_event(LOG_WARN, "alert_webhook_failed", "budget alert webhook %s: %s", job.url,
                      status < 0 ? "no answer within the timeout" : "non-2xx answer");
        free(job.url);
        free(job.body);
        pthread_mutex_lock(&a->lock);
    }
    pthread_mutex_unlock(&a->lock);
    return NULL;
}

struct alerts *alerts_start(void)
{
    struct alerts *a = xcalloc(1, sizeof *a);
    pthread_mutex_init(&a->lock, NULL);
    pthread_cond_init(&a->wake, NULL);
    if (pthread_create(&a->thread, NULL, webhook_main, a) != 0) abort();
    return a;
}

void alerts_stop(struct alerts *a)
{
    if (!a) return;
    pthread_mutex_lock(&a->lock);
    a->stop = true;
    pthread_cond_signal(&a->wake);
    pthread_mutex_unlock(&a->lock);
    pthread_join(a->thread, NULL);
    pthread_mutex_destroy(&a->lock);
    pthread_cond_destroy(&a->wake);
    free(a);
}

static void enqueue(struct alerts *a, const char *url, char *body)
{
    pthread_mutex_lock(&a->lock);
    if (a->n_jobs == ALERTS_QUEUE_MAX || a->stop) {
        pthread_mutex_unlock(&a->lock);
        log_event(LOG_WARN, "alert_webhook_dropped", "budget alert webhook queue full; dropped");
        free(body);
        return;
    }
    a->jobs[a->n_jobs].url = xstrdup(url);
    a->jobs[a->n_jobs].body = body;
    a->n_jobs++;
    pthread_cond_signal(&a->wake);
    pthread_mutex_unlock(&a->lock);
}

static void fire(struct alerts *a, const struct config *cfg, const struct config_alert *al,
                 const char *window, nanos_t spent, nanos_t limit)
{
    char s[32], l[32];
    money_format_usd(spent, s, sizeof s);
    money_format_usd(limit, l, sizeof l);
    log_event(LOG_WARN, "budget_alert", "budget alert: %s spend $%s reached %d%% of the $%s "
              "limit (action %s)", window, s, al->threshold_percent, l, action_name(al->action));
    if (!al->webhook || !*al->webhook) return;
    char *body = xasprintf("{\"event\":\"budget_alert\",\"node\":\"%s\",\"window\":\"%s\","
                           "\"threshold\":%d,\"action\":\"%s\",\"spent\":%s,\"limit\":%s}",
                           cfg->node.id ? cfg->node.id : "", window, al->threshold_percent,
                           action_name(al->action), s, l);
    enqueue(a, al->webhook, body);
}

void alerts_on_spend(struct alerts *a, const struct config *cfg, nanos_t before_day,
                     nanos_t before_month, nanos_t cost, int64_t day, int64_t month)
{
    if (!a || cost <= 0) return;
    for (size_t i = 0; i < cfg->budget.n_alerts && i < ALERTS_MAX; i++) {
        const struct config_alert *al = &cfg->budget.alerts[i];
        if (spend_crossed(before_day, before_day + cost, cfg->budget.daily_limit,
                          al->threshold_percent)) {
            int64_t prev = atomic_load(&a->fired_day[i]);
            if (prev != day && atomic_compare_exchange_strong(&a->fired_day[i], &prev, day))
                fire(a, cfg, al, "daily", before_day + cost, cfg->budget.daily_limit);
        }
        if (spend_crossed(before_month, before_month + cost, cfg->budget.monthly_limit,
                          al->threshold_percent)) {
            int64_t prev = atomic_load(&a->fired_month[i]);
            if (prev != month && atomic_compare_exchange_strong(&a->fired_month[i], &prev, month))
                fire(a, cfg, al, "monthly", before_month + cost, cfg->budget.monthly_limit);
        }
    }
}

bool alerts_active(const struct config *cfg, int action, nanos_t day_spent, nanos_t month_spent)
{
    for (size_t i = 0; i < cfg->budget.n_alerts; i++) {
        const struct config_alert *al = &cfg->budget.alerts[i];
        if ((int)al->action != action) continue;
        if (spend_at_or_over(day_spent, cfg->budget.daily_limit, al->threshold_percent) ||
            spend_at_or_over(month_spent, cfg->budget.monthly_limit, al->threshold_percent))
            return true;
    }
    return false;
}
