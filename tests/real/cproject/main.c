/* wordcount: counts 300,000 generated words in a hash table, then prints
 * the table size and the five most frequent words. */
#include <stdio.h>
#include <stdlib.h>
#include "wordcount.h"

int main(void) {
    struct table t;
    table_init(&t);
    for (unsigned long n = 0; n < 300000; n++) {
        char *w = make_word(n);
        table_add(&t, w);
        free(w);
    }
    struct entry **v = table_sorted(&t);
    printf("distinct words: %zu\n", t.size);
    for (int i = 0; i < 5 && v[i] != NULL; i++) {
        printf("%s %ld\n", v[i]->word, v[i]->count);
    }
    free(v);
    table_free(&t);
    return 0;
}
