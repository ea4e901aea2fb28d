/* Creates 40 pthread keys from a constructor, before anything else in the
 * process allocates (issue 11, item 5: "pthread_setspecific for a key index
 * of 32 or more"). Built as libkeys40.so and preloaded AFTER the library
 * (LD_PRELOAD="libflistalloc.so libkeys40.so"): ld.so runs the constructors
 * of unrelated preloaded objects in reverse order, so this one runs before
 * libflistalloc's own constructor, and the library's key (whether made there
 * or at its first call) gets an index of 40 or more, where glibc's
 * pthread_setspecific allocates its second-level array with calloc. Also
 * compiled into lifecycle.c (without the preload, the same keys come first
 * in that program). pthread_key_create itself does not allocate. */
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

pthread_key_t keys40_keys[40];
int keys40_done;

__attribute__((constructor(101))) static void keys40_make(void) {
    if (keys40_done) return;
    for (int i = 0; i < 40; i++)
        if (pthread_key_create(&keys40_keys[i], NULL) != 0) {
            static const char m[] = "keys40: pthread_key_create failed\n";
            ssize_t r = write(2, m, sizeof m - 1);
            (void)r;
            _exit(1);
        }
    keys40_done = 1;
}
