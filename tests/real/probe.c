/* Prints which loaded object serves this process's malloc, and the
 * flistalloc backend when libflistalloc.so is loaded:
 *   malloc=/path/to/libflistalloc.so backend=flist
 * Used by scripts/real-programs.sh to prove what each configuration preloads. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>

int main(void) {
    Dl_info info = {0};
    void *m = dlsym(RTLD_DEFAULT, "malloc");
    const char *(*backend)(void) = (const char *(*)(void))dlsym(RTLD_DEFAULT, "flistalloc_backend");
    if (m == NULL || dladdr(m, &info) == 0 || info.dli_fname == NULL) {
        fprintf(stderr, "probe: cannot find malloc's object\n");
        return 1;
    }
    printf("malloc=%s backend=%s\n", info.dli_fname, backend ? backend() : "-");
    return 0;
}
