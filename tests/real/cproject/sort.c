#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "wordcount.h"

static int by_count(const void *a, const void *b) {
    const struct entry *x = *(const struct entry *const *)a;
    const struct entry *y = *(const struct entry *const *)b;
    if (x->count != y->count) {
        return x->count < y->count ? 1 : -1;
    }
    return strcmp(x->word, y->word);
}

struct entry **table_sorted(const struct table *t) {
    struct entry **v = malloc((t->size + 1) * sizeof *v);
    if (v == NULL) {
        perror("malloc");
        exit(1);
    }
    size_t k = 0;
    for (size_t i = 0; i < t->nbuckets; i++) {
        for (struct entry *e = t->buckets[i]; e != NULL; e = e->next) {
            v[k++] = e;
        }
    }
    qsort(v, k, sizeof *v, by_count);
    v[k] = NULL;
    return v;
}
