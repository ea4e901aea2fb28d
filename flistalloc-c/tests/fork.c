/* fork while other threads allocate (issue 11, item 6): first one fork
 * while the process is single-threaded; then 4 threads allocate,
 * check and free in a loop (also handing blocks to each other); main forks
 * 12 times (and one worker forks too). Each child allocates and frees,
 * checks the contents of blocks it inherited from the parent's main thread,
 * starts and joins threads that allocate, forks a grandchild that does the
 * same, and exits 0. An alarm (20 s) in each child turns a deadlock into a
 * SIGALRM death. The parent checks every status. */
#include "common.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/wait.h>
#include <time.h>

static void fail(const char *what) { fail_now("fork", what); }

static atomic_int stop;
static pthread_mutex_t xlock = PTHREAD_MUTEX_INITIALIZER;
static void *xchg[64];

static void churn(uint64_t *s, int rounds) {
    void *ps[64];
    size_t ns[64];
    for (int r = 0; r < rounds; r++) {
        for (int i = 0; i < 64; i++) {
            uint64_t x = rnd(s);
            ns[i] = x % 64 == 0 ? 100000 + x % 900000 : 1 + x % 2000;
            ps[i] = malloc(ns[i]);
            if (!ps[i]) fail("malloc returned NULL");
            pat_fill(ps[i], (uintptr_t)ps[i], ns[i], ns[i]);
        }
        for (int i = 0; i < 64; i++) {
            if (pat_check(ps[i], (uintptr_t)ps[i], ns[i], ns[i]) != ns[i]) fail("block content changed");
            free(ps[i]);
        }
    }
}

static void *child_thread(void *arg) {
    uint64_t s = (uintptr_t)arg | 1;
    churn(&s, 4);
    return NULL;
}

/* What every child (and grandchild) does; returns the exit status. */
static int child(int depth, void *inherited, size_t inherited_n) {
    alarm(20);
    if (pat_check(inherited, (uintptr_t)inherited, inherited_n, inherited_n) != inherited_n)
        fail("child: inherited block changed");
    free(inherited); /* a block the parent allocated before fork */
    uint64_t s = 77 + depth;
    churn(&s, 4);
    /* the exchange slots hold the workers' blocks: free what is there */
    pthread_mutex_lock(&xlock); /* consistent in the child: held across fork (pthread_atfork) */
    for (int i = 0; i < 64; i++) {
        free(xchg[i]);
        xchg[i] = NULL;
    }
    pthread_mutex_unlock(&xlock);
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        if (pthread_create(&t[i], NULL, child_thread, (void *)(intptr_t)(i * 1000 + depth)) != 0)
            fail("child: pthread_create");
    for (int i = 0; i < 4; i++)
        if (pthread_join(t[i], NULL) != 0) fail("child: pthread_join");
    if (depth == 0) {
        void *g = malloc(1000);
        pat_fill(g, (uintptr_t)g, 1000, 1000);
        pid_t pid = fork();
        if (pid < 0) fail("child: fork");
        if (pid == 0) _exit(child(1, g, 1000));
        free(g);
        int st;
        if (waitpid(pid, &st, 0) != pid) fail("child: waitpid");
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) fail("grandchild failed");
    }
    churn(&s, 2);
    return 0;
}

static void *worker(void *arg) {
    uint64_t s = (uintptr_t)arg | 1;
    while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
        churn(&s, 1);
        pthread_mutex_lock(&xlock);
        int i = rnd(&s) % 64;
        free(xchg[i]);
        xchg[i] = malloc(1 + rnd(&s) % 5000);
        pthread_mutex_unlock(&xlock);
    }
    return NULL;
}

static int forks_checked;
static void fork_and_check(const char *who) {
    void *p = malloc(3000);
    if (!p) fail("malloc");
    pat_fill(p, (uintptr_t)p, 3000, 3000);
    pid_t pid = fork();
    if (pid < 0) fail("fork");
    if (pid == 0) {
        fflush(stdout);
        _exit(child(0, p, 3000)); /* _exit: the parent's stdio buffers are not the child's to flush */
    }
    free(p);
    int st;
    if (waitpid(pid, &st, 0) != pid) fail("waitpid");
    if (WIFSIGNALED(st)) {
        char m[120];
        snprintf(m, sizeof m, "child of %s killed by signal %d%s", who, WTERMSIG(st),
                 WTERMSIG(st) == SIGALRM ? " (SIGALRM: it hung for 20 s)" : "");
        fail(m);
    }
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) fail("child exited with a non-zero status");
    __atomic_add_fetch(&forks_checked, 1, __ATOMIC_RELAXED);
}

static void *forking_worker(void *arg) {
    (void)arg;
    for (int i = 0; i < 3; i++) {
        uint64_t s = 5 + i;
        churn(&s, 3);
        fork_and_check("a worker thread");
    }
    return NULL;
}

static void atfork_prepare(void) { pthread_mutex_lock(&xlock); }
static void atfork_parent(void) { pthread_mutex_unlock(&xlock); }
static void atfork_child(void) { pthread_mutex_unlock(&xlock); }

int main(void) {
    printf("fork: backend %s\n", test_backend() ? test_backend() : "(no libflistalloc)");
    fflush(stdout);
    /* 0. single-threaded: a fork before any thread exists (as `timeout`,
     * a shell or make do) */
    fork_and_check("main, before any thread");
    if (pthread_atfork(atfork_prepare, atfork_parent, atfork_child) != 0) fail("pthread_atfork");
    pthread_t t[4], ft;
    for (int i = 0; i < 4; i++)
        if (pthread_create(&t[i], NULL, worker, (void *)(intptr_t)((i + 1) * 7919)) != 0) fail("pthread_create");
    if (pthread_create(&ft, NULL, forking_worker, NULL) != 0) fail("pthread_create");
    for (int i = 0; i < 12; i++) {
        struct timespec ts = {0, 3 * 1000 * 1000};
        nanosleep(&ts, NULL);
        fork_and_check("main");
    }
    if (pthread_join(ft, NULL) != 0) fail("pthread_join");
    atomic_store(&stop, 1);
    for (int i = 0; i < 4; i++)
        if (pthread_join(t[i], NULL) != 0) fail("pthread_join");
    for (int i = 0; i < 64; i++) free(xchg[i]);
    printf("fork: ok: %d children (each with a grandchild) exited 0\n", forks_checked);
    return 0;
}
