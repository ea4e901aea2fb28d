/* Prints what flistalloc_backend() returns ("none" without the library),
 * before the program itself allocates anything. The runner checks that
 * FLISTALLOC_BACKEND=malloc under LD_PRELOAD gives "malloc". */
#include <dlfcn.h>
#include <string.h>
#include <unistd.h>

int main(void) {
    const char *(*f)(void) = (const char *(*)(void))dlsym(RTLD_DEFAULT, "flistalloc_backend");
    const char *b = f ? f() : "none";
    if (!b) b = "(null)";
    ssize_t r = write(1, b, strlen(b));
    r = write(1, "\n", 1);
    (void)r;
    return 0;
}
