#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "wordcount.h"

static const char *syllables[] = {"ka", "lo", "mi", "ne", "sa", "tu", "re", "vo"};

char *make_word(unsigned long n) {
    unsigned long x = n * 2654435761u % 40009;
    size_t len = 1 + x % 5;
    char *w = malloc(len * 2 + 1);
    if (w == NULL) {
        perror("malloc");
        exit(1);
    }
    w[0] = '\0';
    for (size_t i = 0; i < len; i++) {
        strcat(w, syllables[(x >> (3 * i)) % 8]);
    }
    return w;
}
