/* git_dl: libgit2 loaded on demand (see git_dl.h). */
#define GIT_DL_IMPLEMENTATION
#include "context/git_dl.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>

struct git_api git_api;

static pthread_once_t once = PTHREAD_ONCE_INIT;
static char load_error[200];

static void load(void)
{
    void *h = dlopen("libgit2.so.1.5", RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        snprintf(load_error, sizeof load_error, "libgit2.so.1.5 is not installed (Debian: "
                 "apt-get install libgit2-1.5); the context buffer's diffs need it");
        return;
    }
    struct git_api t;
#define X(name)                                                                                \
    *(void **)(&t.name##_fn) = dlsym(h, #name);                                                \
    if (!t.name##_fn) {                                                                        \
        snprintf(load_error, sizeof load_error, "libgit2.so.1.5 lacks %s", #name);             \
        return;                                                                                \
    }
    GIT_FUNCTIONS(X)
#undef X
    git_api = t; /* (the handle stays open for the process's life) */
    git_api.git_libgit2_init_fn();
}

int git_load(char *err, size_t errcap)
{
    pthread_once(&once, load);
    if (load_error[0]) {
        if (err) snprintf(err, errcap, "%s", load_error);
        return -1;
    }
    return 0;
}
