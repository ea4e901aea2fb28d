#ifndef WORDCOUNT_H
#define WORDCOUNT_H
#include <stddef.h>

struct entry {
    char *word;
    long count;
    struct entry *next;
};

struct table {
    struct entry **buckets;
    size_t nbuckets;
    size_t size;
};

/* words.c: the n-th generated word (malloc'd, caller frees). */
char *make_word(unsigned long n);
/* table.c: a chained hash table of word counts that grows by doubling. */
void table_init(struct table *t);
void table_add(struct table *t, const char *word);
void table_free(struct table *t);
/* sort.c: the entries in an array sorted by count, then word. */
struct entry **table_sorted(const struct table *t);
#endif
