#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "wordcount.h"

static unsigned long hash(const char *s) {
    unsigned long h = 1469598103934665603ul;
    for (; *s; s++) {
        h = (h ^ (unsigned char)*s) * 1099511628211ul;
    }
    return h;
}

static void *xcalloc(size_t n, size_t size) {
    void *p = calloc(n, size);
    if (p == NULL) {
        perror("calloc");
        exit(1);
    }
    return p;
}

void table_init(struct table *t) {
    t->nbuckets = 8;
    t->size = 0;
    t->buckets = xcalloc(t->nbuckets, sizeof *t->buckets);
}

static void grow(struct table *t) {
    size_t n = t->nbuckets * 2;
    struct entry **b = xcalloc(n, sizeof *b);
    for (size_t i = 0; i < t->nbuckets; i++) {
        struct entry *e = t->buckets[i];
        while (e != NULL) {
            struct entry *next = e->next;
            size_t j = hash(e->word) % n;
            e->next = b[j];
            b[j] = e;
            e = next;
        }
    }
    free(t->buckets);
    t->buckets = b;
    t->nbuckets = n;
}

void table_add(struct table *t, const char *word) {
    size_t i = hash(word) % t->nbuckets;
    for (struct entry *e = t->buckets[i]; e != NULL; e = e->next) {
        if (strcmp(e->word, word) == 0) {
            e->count++;
            return;
        }
    }
    struct entry *e = xcalloc(1, sizeof *e);
    e->word = strdup(word);
    e->count = 1;
    e->next = t->buckets[i];
    t->buckets[i] = e;
    if (++t->size > t->nbuckets) {
        grow(t);
    }
}

void table_free(struct table *t) {
    for (size_t i = 0; i < t->nbuckets; i++) {
        struct entry *e = t->buckets[i];
        while (e != NULL) {
            struct entry *next = e->next;
            free(e->word);
            free(e);
            e = next;
        }
    }
    free(t->buckets);
}
