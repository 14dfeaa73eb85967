/* diag: the list of warnings and errors a config load produces. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "config/config.h"
#include "core/alloc.h"

void diag_list_addf(struct diag_list *d, enum diag_severity s, const char *fmt, ...)
{
    va_list ap, ap2;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *text = xmalloc(n > 0 ? (size_t)n + 1 : 1);
    if (n < 0 || vsnprintf(text, (size_t)n + 1, fmt, ap2) < 0) text[0] = '\0';
    va_end(ap2);
    if (d->count == d->cap) {
        d->cap = d->cap ? d->cap * 2 : 8;
        d->items = xrealloc(d->items, d->cap * sizeof *d->items);
    }
    d->items[d->count].severity = s;
    d->items[d->count].text = text;
    d->count++;
    if (s == DIAG_ERROR) d->errors++;
}

void diag_list_cleanup(struct diag_list *d)
{
    for (size_t i = 0; i < d->count; i++) free(d->items[i].text);
    free(d->items);
    d->items = NULL;
    d->count = d->cap = d->errors = 0;
}

void diag_list_print(const struct diag_list *d, FILE *out)
{
    for (size_t i = 0; i < d->count; i++)
        fprintf(out, "%s: %s\n", d->items[i].severity == DIAG_ERROR ? "error" : "warning",
                d->items[i].text);
}
