/* pq_dl: libpq loaded on demand (see pq_dl.h). */
#define PQ_DL_IMPLEMENTATION
#include "budget/pq_dl.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

struct pq_api pq_api;

static pthread_once_t once = PTHREAD_ONCE_INIT;
static char load_error[200];

static void load(void)
{
    void *h = dlopen("libpq.so.5", RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        snprintf(load_error, sizeof load_error, "libpq.so.5 is not installed (Debian: apt-get "
                 "install libpq5); a postgres:// budget.cost_db needs it");
        return;
    }
    struct pq_api t;
#define X(name)                                                                                \
    *(void **)(&t.name##_fn) = dlsym(h, #name);                                                \
    if (!t.name##_fn) {                                                                        \
        snprintf(load_error, sizeof load_error, "libpq.so.5 lacks %s (too old?)", #name);      \
        return;                                                                                \
    }
    PQ_FUNCTIONS(X)
#undef X
    pq_api = t; /* (the handle stays open for the process's life) */
}

int pq_load(char *err, size_t errcap)
{
    pthread_once(&once, load);
    if (load_error[0]) {
        snprintf(err, errcap, "%s", load_error);
        return -1;
    }
    return 0;
}
