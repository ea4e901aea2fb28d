/* dlopen of a library with 24 KiB of __thread variables after threads have
 * started (issue 11, item 7): the TLS blocks of the running threads are then
 * allocated lazily by __tls_get_addr through malloc, inside the thread, on
 * its first touch. 8 threads start first (half allocate before, half make no
 * allocator call before touching the TLS), main dlopens the library, every
 * thread (main included) touches its TLS and allocates, 8 more threads start
 * after the dlopen; then dlclose, dlopen again and once more.
 *   dltls /path/to/libdltls.so */
#include "common.h"

#include <pthread.h>
#include <stdatomic.h>

static void fail(const char *what) { fail_now("dltls", what); }

typedef int (*touch_fn)(unsigned, int);
static _Atomic(touch_fn) touch;
static pthread_barrier_t started, loaded, finished;

static void use(unsigned id, int round) {
    touch_fn f = atomic_load(&touch);
    int r = f(id, round);
    if (r) {
        char m[80];
        snprintf(m, sizeof m, "thread %u round %d: dltls_touch returned %d", id, round, r);
        fail(m);
    }
    void *p = malloc(100 + id);
    if (!p) fail("malloc");
    memset(p, 1, 100 + id);
    free(p);
}

static void *early(void *arg) {
    unsigned id = (unsigned)(uintptr_t)arg;
    if (id % 2) free(malloc(64)); /* half the threads have allocated before */
    for (int gen = 0; gen < 2; gen++) {
        pthread_barrier_wait(&started);
        pthread_barrier_wait(&loaded);
        for (int round = 0; round < 5; round++) use(id, round);
        pthread_barrier_wait(&finished);
    }
    return NULL;
}

static void *late(void *arg) {
    unsigned id = (unsigned)(uintptr_t)arg;
    for (int round = 0; round < 5; round++) use(id, round);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 2) fail("usage: dltls /path/to/libdltls.so");
    printf("dltls: backend %s\n", test_backend() ? test_backend() : "(no libflistalloc)");
    fflush(stdout);
    enum { N = 8 };
    pthread_barrier_init(&started, NULL, N + 1);
    pthread_barrier_init(&loaded, NULL, N + 1);
    pthread_barrier_init(&finished, NULL, N + 1);
    pthread_t t[N], l[N];
    for (int i = 0; i < N; i++)
        if (pthread_create(&t[i], NULL, early, (void *)(uintptr_t)(i + 1)) != 0) fail("pthread_create");
    for (int gen = 0; gen < 2; gen++) {
        pthread_barrier_wait(&started);
        void *h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
        if (!h) {
            fprintf(stderr, "dltls: dlopen: %s\n", dlerror());
            fail("dlopen failed");
        }
        touch_fn f = (touch_fn)dlsym(h, "dltls_touch");
        if (!f) fail("dlsym dltls_touch");
        atomic_store(&touch, f);
        pthread_barrier_wait(&loaded);
        for (int round = 0; round < 5; round++) use(100, round);
        for (int i = 0; i < N; i++)
            if (pthread_create(&l[i], NULL, late, (void *)(uintptr_t)(200 + i)) != 0) fail("pthread_create late");
        for (int i = 0; i < N; i++)
            if (pthread_join(l[i], NULL) != 0) fail("pthread_join late");
        pthread_barrier_wait(&finished);
        if (dlclose(h) != 0) fail("dlclose");
    }
    for (int i = 0; i < N; i++)
        if (pthread_join(t[i], NULL) != 0) fail("pthread_join");
    printf("dltls: ok: %d threads started before dlopen and %d after touched 24 KiB of dlopen'ed TLS, twice\n", N, 2 * N);
    return 0;
}
