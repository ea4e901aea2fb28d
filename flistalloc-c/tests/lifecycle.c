/* Thread lifecycle under the allocator (issue 11, items 5 and 7):
 *   - 40 pthread keys created by a constructor (priority 101) before main
 *     allocates; each thread of part 4 sets all 40 (keys >= 32 make glibc's
 *     pthread_setspecific call calloc), their destructors allocate and free;
 *   - a thread whose first allocator call is free() of main's block, another
 *     whose first call is free(NULL);
 *   - a thread that only frees (10,000 blocks main allocated, small to 2 MiB);
 *   - blocks allocated in key destructors (after the allocator's own thread
 *     teardown, when its key comes first) handed to main and freed there;
 *   - 300 short-lived threads, half detached;
 *   - atexit handlers (one registered by the constructor before any
 *     allocation) that allocate, check and free;
 *   - main ends with pthread_exit() while detached threads still allocate:
 *     the last thread to end runs exit(0) and the atexit handlers.
 * A failure prints one line and _exit(1)s. Success: the last atexit handler
 * prints "lifecycle: all checks passed" (the runner requires that line). */
#include "common.h"

#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#define NKEYS 40
static pthread_key_t keys[NKEYS];
static atomic_int destructor_runs, destructor_allocs;

static void fail(const char *what) { fail_now("lifecycle", what); }

/* A checked block: filled with its pattern by mk(), checked and freed by rm(). */
static void *mk(size_t n) {
    unsigned char *p = malloc(n + 16);
    if (!p) fail("malloc returned NULL");
    memcpy(p, &n, sizeof n);
    pat_fill(p + 16, (uintptr_t)p, n, n);
    return p;
}
static void rm(void *q) {
    unsigned char *p = q;
    size_t n;
    memcpy(&n, p, sizeof n);
    if (pat_check(p + 16, (uintptr_t)p, n, n) != n) fail("block content changed before free");
    free(p);
}

/* Blocks handed from dying threads (key destructors) to main. */
static pthread_mutex_t handed_lock = PTHREAD_MUTEX_INITIALIZER;
static void *handed[4096];
static int n_handed;
static void hand(void *p) {
    pthread_mutex_lock(&handed_lock);
    if (n_handed < 4096) handed[n_handed++] = p;
    else rm(p);
    pthread_mutex_unlock(&handed_lock);
}
static void free_handed(void) {
    pthread_mutex_lock(&handed_lock);
    for (int i = 0; i < n_handed; i++) rm(handed[i]);
    n_handed = 0;
    pthread_mutex_unlock(&handed_lock);
}

/* Key destructor: checks and frees the value, allocates and frees a few
 * blocks, hands one to main, and on the first round sets the key again
 * (glibc runs destructors up to 4 rounds) with a fresh block. */
static void key_destructor(void *v) {
    atomic_fetch_add(&destructor_runs, 1);
    rm(v);
    for (int i = 0; i < 8; i++) rm(mk(16 + i * 100));
    void *big = mk(300000);
    rm(big);
    hand(mk(48));
    atomic_fetch_add(&destructor_allocs, 1);
    static __thread int again;
    if (!again) {
        again = 1;
        for (int k = 0; k < NKEYS; k++)
            if (pthread_getspecific(keys[k]) == NULL) {
                if (pthread_setspecific(keys[k], mk(40)) != 0) fail("pthread_setspecific in a destructor");
                break;
            }
    }
}

static void atexit_early(void) {
    /* Registered by the constructor before any allocation; runs last. */
    void *ps[100];
    for (int i = 0; i < 100; i++) ps[i] = mk((size_t)i * 37 + 1);
    for (int i = 0; i < 100; i++) rm(ps[i]);
    free_handed();
    void *r = realloc(NULL, 10);
    r = realloc(r, 100000);
    if (!r) fail("realloc in atexit");
    free(r);
    if (atomic_load(&destructor_runs) < 40 * 8) fail("key destructors ran fewer times than expected");
    static const char ok[] = "lifecycle: all checks passed\n";
    ssize_t w = write(1, ok, sizeof ok - 1);
    (void)w;
}

static void atexit_late(void) {
    /* Registered by main after its threads: runs first, in the thread that
     * ended last (main called pthread_exit). */
    void *ps[1000];
    for (int i = 0; i < 1000; i++) ps[i] = mk((size_t)(i % 50) * 24 + 1);
    for (int i = 999; i >= 0; i--) rm(ps[i]);
    void *c = calloc(1000, 100);
    if (!c) fail("calloc in atexit");
    for (int i = 0; i < 100000; i++)
        if (((char *)c)[i]) fail("calloc memory not zero in atexit");
    free(c);
}

__attribute__((constructor(101))) static void make_keys(void) {
    for (int i = 0; i < NKEYS; i++)
        if (pthread_key_create(&keys[i], key_destructor) != 0) fail("pthread_key_create");
    if (atexit(atexit_early) != 0) fail("atexit");
}

/* flistalloc_stats().threads under the flist backend ("threads that have a
 * flist heap now"), or -1 without the library or under another backend. */
struct stats8 { size_t mapped, flist_pool_bytes, fallback_live, pools_in_use, pools_abandoned, pools_returned, threads, reserve_bytes; };
static long flist_threads(void) {
    const char *b = test_backend();
    int (*fs)(void *, size_t) = (int (*)(void *, size_t))dlsym(RTLD_DEFAULT, "flistalloc_stats");
    struct stats8 st;
    if (!b || strcmp(b, "flist") || !fs || fs(&st, sizeof st) != 0) return -1;
    return (long)st.threads;
}

/* After every thread but main has been joined (its key destructors and
 * __libc_thread_freeres done), only main may hold a flist heap: a thread
 * that allocated again after the allocator's own teardown must not have
 * attached a new heap (issue 11, item 5). */
static void only_main_attached(const char *when) {
    long n = flist_threads();
    if (n > 1) {
        char m[160];
        snprintf(m, sizeof m, "%s: flistalloc_stats().threads = %ld, want at most 1 (a heap attached after a thread's teardown?)", when, n);
        fail(m);
    }
}

/* --- the threads --- */

static void *first_call_free(void *arg) {
    free(arg); /* the thread's first allocator call */
    rm(mk(100));
    return NULL;
}

static void *first_call_free_null(void *arg) {
    (void)arg;
    free(NULL);
    void *p = mk(5000);
    rm(p);
    return NULL;
}

struct only_free { void **blocks; int n; };
static void *only_frees(void *arg) {
    struct only_free *o = arg;
    for (int i = 0; i < o->n; i++) rm(o->blocks[i]);
    return NULL;
}

static void *keyed(void *arg) {
    int id = (int)(intptr_t)arg;
    for (int k = 0; k < NKEYS; k++)
        if (pthread_setspecific(keys[k], mk((size_t)(k + id) % 200 + 1)) != 0) fail("pthread_setspecific");
    void *ps[64];
    for (int r = 0; r < 20; r++) {
        for (int i = 0; i < 64; i++) ps[i] = mk((size_t)(i * 13 + r) % 3000 + 1);
        for (int i = 0; i < 64; i++) rm(ps[i]);
    }
    return NULL;
}

static void *short_lived(void *arg) {
    int id = (int)(intptr_t)arg;
    void *p = mk((size_t)id % 500 + 1);
    if (id % 3 == 0) pthread_setspecific(keys[id % NKEYS], mk(24));
    if (id % 7 == 0) hand(mk(64));
    rm(p);
    return NULL;
}

static void *late_detached(void *arg) {
    int id = (int)(intptr_t)arg;
    /* still running after main's pthread_exit */
    struct timespec ts = {0, 20 * 1000 * 1000 + id * 1000 * 1000};
    nanosleep(&ts, NULL);
    for (int r = 0; r < 50; r++) {
        void *ps[32];
        for (int i = 0; i < 32; i++) ps[i] = mk((size_t)(i + r) * 31 + 1);
        for (int i = 0; i < 32; i++) rm(ps[i]);
    }
    pthread_setspecific(keys[NKEYS - 1 - id], mk(33));
    hand(mk(128));
    return NULL;
}

static void start(pthread_t *t, void *(*f)(void *), void *arg) {
    if (pthread_create(t, NULL, f, arg) != 0) fail("pthread_create");
}
static void join(pthread_t t) {
    if (pthread_join(t, NULL) != 0) fail("pthread_join");
}

int main(void) {
    pthread_t t;
    printf("lifecycle: backend %s\n", test_backend() ? test_backend() : "(no libflistalloc)");
    fflush(stdout);

    /* 1. first call free(p of main); first call free(NULL) */
    for (int i = 0; i < 20; i++) {
        start(&t, first_call_free, malloc((size_t)i * 1000 + 1));
        join(t);
        start(&t, first_call_free_null, NULL);
        join(t);
    }

    only_main_attached("after the first-call-free threads");

    /* 2. a thread that only frees main's blocks (small to 2 MiB) */
    struct only_free o = {malloc(10000 * sizeof(void *)), 10000};
    if (!o.blocks) fail("malloc");
    for (int i = 0; i < o.n; i++) o.blocks[i] = mk(i % 100 == 0 ? (size_t)(i % 2000 + 1) * 1000 : (size_t)(i % 300) + 1);
    start(&t, only_frees, &o);
    join(t);
    free(o.blocks);

    /* 3. all 40 keys set (index >= 32 included), destructors allocate */
    pthread_t kt[8];
    for (int i = 0; i < 8; i++) start(&kt[i], keyed, (void *)(intptr_t)i);
    for (int i = 0; i < 8; i++) join(kt[i]);
    if (atomic_load(&destructor_allocs) < 8 * NKEYS) fail("key destructors did not all run");
    free_handed();
    only_main_attached("after the threads whose key destructors allocate");

    /* 4. 300 short-lived threads, half detached */
    pthread_attr_t det;
    pthread_attr_init(&det);
    pthread_attr_setdetachstate(&det, PTHREAD_CREATE_DETACHED);
    for (int i = 0; i < 300; i++) {
        if (i % 2) {
            if (pthread_create(&t, &det, short_lived, (void *)(intptr_t)i) != 0) fail("pthread_create detached");
        } else {
            start(&t, short_lived, (void *)(intptr_t)i);
            join(t);
        }
    }

    /* 5. detached threads still running when main calls pthread_exit */
    for (int i = 0; i < 6; i++)
        if (pthread_create(&t, &det, late_detached, (void *)(intptr_t)i) != 0) fail("pthread_create late");
    pthread_attr_destroy(&det);
    if (atexit(atexit_late) != 0) fail("atexit");
    pthread_setspecific(keys[0], mk(77)); /* main's own destructors run at pthread_exit */
    printf("lifecycle: main calls pthread_exit\n");
    fflush(stdout);
    pthread_exit(NULL);
}
