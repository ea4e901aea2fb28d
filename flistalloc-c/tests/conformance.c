/* C semantics of the malloc family (issue 11, item 3): one named check per
 * case, errno set to a sentinel before every call and checked after it
 * (success and free leave it unchanged; failure sets the stated value).
 *
 * Runs with or without libflistalloc.so. When `flistalloc_backend` is found
 * (dlsym(RTLD_DEFAULT)), every check is applied. Without it (glibc, or a
 * preloaded jemalloc) the checks marked library-only are still run but their
 * failures are printed as "deviation" lines and not counted: they are where
 * glibc 2.36 or jemalloc differ from C17/POSIX (aligned_alloc with an invalid
 * alignment, memalign rounding, the cfree and __posix_memalign symbols, ...).
 *
 * Environment:
 *   FLISTALLOC_EXPECT_BACKEND=name  flistalloc_backend() must return it.
 *   CONFORMANCE_CAPACITY=1          only the flistalloc_* checks and the
 *                                   FLISTALLOC_CAPACITY one (needs the
 *                                   library and FLISTALLOC_CAPACITY=64M).
 * Prints one line per failing check and a summary; exits 1 on any failure. */
#include "common.h"

#include <limits.h>
#include <malloc.h>
#include <stdbool.h>
#include <sys/mman.h>

#if defined(__has_include)
#if __has_include(<flistalloc.h>)
#include <flistalloc.h>
#define HAVE_HEADER 1
#endif
#endif
#ifndef HAVE_HEADER
/* Mirrors flistalloc::Stats (c-interface.md): all size_t. */
struct flistalloc_stats {
    size_t mapped, flist_pool_bytes, fallback_live, pools_in_use, pools_abandoned, pools_returned,
        threads, reserve_bytes;
};
#endif

#define SENT 7919 /* the errno sentinel: no real error code */

/* Calls through volatile pointers, so the compiler cannot fold or elide any
 * of them (GCC knows malloc's semantics; -fno-builtin is also passed). */
static void *(*volatile p_malloc)(size_t) = malloc;
static void (*volatile p_free)(void *) = free;
static void *(*volatile p_calloc)(size_t, size_t) = calloc;
static void *(*volatile p_realloc)(void *, size_t) = realloc;
static void *(*volatile p_reallocarray)(void *, size_t, size_t) = reallocarray;
static void *(*volatile p_aligned_alloc)(size_t, size_t) = aligned_alloc;
static int (*volatile p_posix_memalign)(void **, size_t, size_t) = posix_memalign;
static void *(*volatile p_memalign)(size_t, size_t) = memalign;
static void *(*volatile p_valloc)(size_t) = valloc;
static void *(*volatile p_pvalloc)(size_t) = pvalloc;
static size_t (*volatile p_usable)(void *) = malloc_usable_size;

static bool lib;            /* flistalloc_backend found */
static const char *cur;     /* the running check */
static bool cur_libonly;    /* its failures count only with the library */
static bool soft;           /* the expectation being tested is library-only */
static bool cur_failed, cur_deviated;
static int cur_lines;
static int n_checks, n_failed, n_deviations;
static size_t page;
static bool have_pvalloc = true; /* pvalloc comes from malloc's library */
static bool have_aliases = true; /* so do all the __libc_* aliases */

/* Records a failed expectation of the running check. Library-only ones
 * (the whole check, or `soft` set around one expectation) count only with
 * the library; without it they print as deviations. At most 8 lines per
 * check are printed. */
static void report(const char *fmt, ...) {
    char msg[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    bool dev = (cur_libonly || soft) && !lib;
    if (dev) {
        if (!cur_deviated && !cur_failed) n_deviations++;
        cur_deviated = true;
    } else {
        if (!cur_failed) n_failed++;
        if (cur_deviated) n_deviations--, cur_deviated = false;
        cur_failed = true;
    }
    if (++cur_lines <= 8)
        printf("%s %s: %s\n", dev ? "deviation (library-only, not counted without the library)" : "FAIL", cur, msg);
    else if (cur_lines == 9)
        printf("%s %s: (further lines of this check not shown)\n", dev ? "deviation" : "FAIL", cur);
    fflush(stdout);
}

#define expect(cond, ...) \
    do {                  \
        if (!(cond)) report(__VA_ARGS__); \
    } while (0)

/* errno after a call must be `want` (SENT: unchanged). */
static void errno_is(int got, int want, const char *call) {
    if (got == want) return;
    if (want == SENT)
        report("%s changed errno from the sentinel to %d (%s)", call, got, strerror(got));
    else if (got == SENT)
        report("%s left errno unchanged, want %d (%s)", call, want, strerror(want));
    else
        report("%s set errno %d (%s), want %d (%s)", call, got, strerror(got), want, strerror(want));
}

/* Wrappers: sentinel before, errno captured after. `e` gets errno. */
static int e;
static void *M(size_t n) { errno = SENT; void *p = p_malloc(n); e = errno; return p; }
static void F(void *p) {
    errno = SENT;
    p_free(p);
    e = errno;
    char what[64];
    snprintf(what, sizeof what, "free(%p)", p);
    errno_is(e, SENT, what);
}
static void *C(size_t n, size_t s) { errno = SENT; void *p = p_calloc(n, s); e = errno; return p; }
static void *R(void *q, size_t n) { errno = SENT; void *p = p_realloc(q, n); e = errno; return p; }
static void *RA(void *q, size_t n, size_t s) { errno = SENT; void *p = p_reallocarray(q, n, s); e = errno; return p; }
static void *AA(size_t a, size_t n) { errno = SENT; void *p = p_aligned_alloc(a, n); e = errno; return p; }
static int PM(void **out, size_t a, size_t n) { errno = SENT; int r = p_posix_memalign(out, a, n); e = errno; return r; }
static void *MA(size_t a, size_t n) { errno = SENT; void *p = p_memalign(a, n); e = errno; return p; }
static void *VA(size_t n) { errno = SENT; void *p = p_valloc(n); e = errno; return p; }
static void *PV(size_t n) { errno = SENT; void *p = p_pvalloc(n); e = errno; return p; }
static size_t U(void *p) { errno = SENT; size_t n = p_usable(p); e = errno; return n; }

static void begin(const char *name, bool libonly) {
    cur = name;
    cur_libonly = libonly;
    cur_failed = cur_deviated = false;
    cur_lines = 0;
    soft = false;
    n_checks++;
}

/* The smallest alignment expected of a block of n bytes: 16, but without the
 * library 8 below 16 bytes (jemalloc's 8-byte class; checked library-only
 * by align16_small). */
static size_t min_align(size_t n) { return lib || n >= 16 ? 16 : 8; }

/* A successful allocation: non-null, errno unchanged, aligned to at least
 * max(align, 16), usable size >= n, the whole usable size writable (filled
 * with the block's pattern, checked again by done()). */
static size_t good(void *p, size_t n, size_t align, const char *call) {
    if (!p) {
        report("%s returned NULL (errno %d %s)", call, e, strerror(e));
        return 0;
    }
    errno_is(e, SENT, call);
    size_t a = align <= 16 ? min_align(n) : align;
    expect((uintptr_t)p % a == 0, "%s = %p is not %zu-byte aligned", call, p, a);
    size_t u = U(p);
    errno_is(e, SENT, "malloc_usable_size");
    expect(u >= n, "%s: malloc_usable_size %zu < request %zu", call, u, n);
    pat_fill(p, (uintptr_t)p, u, u);
    return u;
}

/* Checks the pattern that good() wrote, then frees. */
static void done(void *p, const char *call) {
    if (!p) return;
    size_t u = U(p);
    size_t bad = pat_check(p, (uintptr_t)p, u, u);
    expect(bad == u, "%s = %p: byte %zu of %zu changed while the block was live", call, p, bad, u);
    F(p);
}

/* A failed allocation: NULL with errno `want`. */
static void fails(void *p, int want, const char *call) {
    expect(p == NULL, "%s returned %p, want NULL", call, p);
    if (p) p_free(p);
    errno_is(e, want, call);
}

/* As fails(), the errno part library-only: jemalloc 5.3 returns NULL without
 * setting errno from realloc, memalign, valloc and aligned_alloc when the
 * size is too large. */
static void fails_errno_lo(void *p, int want, const char *call) {
    expect(p == NULL, "%s returned %p, want NULL", call, p);
    if (p) p_free(p);
    soft = true;
    errno_is(e, want, call);
    soft = false;
}

/* ---------------------------------------------------------------- checks */

/* Every function of the family comes from the library that has malloc.
 * jemalloc 5.3 does not export pvalloc (nor cfree, __posix_memalign, ...):
 * preloaded, glibc's pvalloc then hands out glibc blocks that jemalloc's
 * free cannot take, so the pvalloc checks are skipped in that case. */
static void t_one_library(void) {
    begin("one_library: every function of the malloc family resolves to malloc's library", true);
    static const char *names[] = {"free", "calloc", "realloc", "reallocarray", "aligned_alloc", "posix_memalign",
                                  "memalign", "valloc", "pvalloc", "malloc_usable_size", "cfree", "__libc_malloc",
                                  "__libc_calloc", "__libc_realloc", "__libc_free", "__libc_memalign",
                                  "__libc_valloc", "__libc_pvalloc", "__posix_memalign"};
    Dl_info mi, fi;
    void *m = dlsym(RTLD_DEFAULT, "malloc");
    if (!m || !dladdr(m, &mi)) { report("dladdr(malloc) failed"); return; }
    printf("malloc comes from %s\n", mi.dli_fname);
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        void *f = dlsym(RTLD_DEFAULT, names[i]);
        bool same = f && dladdr(f, &fi) && fi.dli_fbase == mi.dli_fbase;
        if (!same) {
            report("%s %s%s", names[i], f ? "comes from " : "is not found", f ? fi.dli_fname : "");
            if (!strncmp(names[i], "__libc_", 7)) have_aliases = false;
            if (!strcmp(names[i], "pvalloc")) {
                have_pvalloc = false;
                printf("note: pvalloc is not malloc's: the pvalloc checks are skipped\n");
            }
        }
    }
}

static void t_align16_small(void) {
    begin("align16_small: malloc/calloc/realloc/aligned_alloc of 1..15 bytes are 16-byte aligned", true);
    for (size_t n = 0; n < 16; n++)
        for (int k = 0; k < 40; k++) {
            void *ps[4] = {M(n), C(1, n), R(NULL, n), AA(1, n)};
            for (int i = 0; i < 4; i++) {
                expect(ps[i] && (uintptr_t)ps[i] % 16 == 0, "%s%zu) = %p is not 16-byte aligned",
                       (const char *[]){"malloc(", "calloc(1, ", "realloc(NULL, ", "aligned_alloc(1, "}[i], n, ps[i]);
            }
            for (int i = 0; i < 4; i++) p_free(ps[i]);
        }
}

static void t_align16(void) {
    begin("align16: malloc/calloc/realloc of 0..2048 bytes are 16-byte aligned (8 below 16 bytes without the library)", false);
    void *ps[64];
    for (size_t n = 0; n <= 2048; n += (n < 64 ? 1 : 37)) {
        for (int i = 0; i < 64; i++) ps[i] = M(n), good(ps[i], n, 16, "malloc");
        for (int i = 0; i < 64; i++) done(ps[i], "malloc");
        void *c = C(1, n);
        good(c, n, 16, "calloc");
        void *r = R(NULL, n);
        good(r, n, 16, "realloc(NULL, n)");
        void *r2 = R(r, n * 2 + 1);
        good(r2, n * 2 + 1, 16, "realloc(p, 2n+1)");
        done(c, "calloc");
        done(r2, "realloc");
    }
}

static void t_malloc0(void) {
    begin("malloc0: malloc(0) returns unique, freeable pointers", false);
    void *a = M(0);
    good(a, 0, 16, "malloc(0)");
    void *b = M(0);
    good(b, 0, 16, "malloc(0)");
    expect(a != b || !a, "malloc(0) twice returned the same pointer %p", a);
    done(a, "malloc(0)");
    done(b, "malloc(0)");
}

static void t_realloc_null0(void) {
    begin("realloc_null0: realloc(NULL, 0) returns a unique freeable pointer", false);
    void *a = R(NULL, 0);
    good(a, 0, 16, "realloc(NULL, 0)");
    void *b = R(NULL, 0);
    good(b, 0, 16, "realloc(NULL, 0)");
    expect(a != b || !a, "realloc(NULL, 0) twice returned the same pointer %p", a);
    done(a, "realloc(NULL, 0)");
    done(b, "realloc(NULL, 0)");
}

static void t_realloc_p0(void) {
    begin("realloc_p0: realloc(p, 0) frees p and returns NULL, errno unchanged", false);
    size_t sizes[] = {1, 100, 5000, 300000, 4u << 20};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        void *p = M(sizes[i]);
        good(p, sizes[i], 16, "malloc");
        void *r = R(p, 0);
        expect(r == NULL, "realloc(p of %zu bytes, 0) returned %p, want NULL", sizes[i], r);
        errno_is(e, SENT, "realloc(p, 0)");
        if (r) p_free(r);
    }
    /* p was freed: the memory is reusable (no leak): 10000 rounds stay bounded. */
    for (int i = 0; i < 10000; i++) {
        void *p = M(256);
        if (!p) { report("malloc(256) failed after %d realloc(p, 0) rounds", i); break; }
        void *r = R(p, 0);
        if (r || e != SENT) { report("realloc(p, 0) round %d: %p errno %d", i, r, e); break; }
    }
}

static void t_free_null(void) {
    begin("free_null: free(NULL) is a no-op, errno unchanged", false);
    for (int i = 0; i < 3; i++) F(NULL);
}

static void t_enomem(void) {
    begin("enomem: malloc/calloc/realloc/... too large return NULL with ENOMEM", false);
    size_t big = (size_t)PTRDIFF_MAX + 1;
    fails(M(big), ENOMEM, "malloc(PTRDIFF_MAX + 1)");
    fails(M(SIZE_MAX), ENOMEM, "malloc(SIZE_MAX)");
    fails(M(SIZE_MAX - 4095), ENOMEM, "malloc(SIZE_MAX - 4095)");
    fails(M((size_t)PTRDIFF_MAX), ENOMEM, "malloc(PTRDIFF_MAX)");
    fails(C(SIZE_MAX / 2, 3), ENOMEM, "calloc(SIZE_MAX / 2, 3)");
    fails(C(3, SIZE_MAX / 2), ENOMEM, "calloc(3, SIZE_MAX / 2)");
    fails(C(SIZE_MAX, SIZE_MAX), ENOMEM, "calloc(SIZE_MAX, SIZE_MAX)");
    fails(C((size_t)1 << 32, (size_t)1 << 32), ENOMEM, "calloc(2^32, 2^32)");
    fails(C(2, (size_t)1 << 63), ENOMEM, "calloc(2, 2^63)");
    fails(C(1, SIZE_MAX), ENOMEM, "calloc(1, SIZE_MAX)");
    fails(C((size_t)PTRDIFF_MAX / 16 + 1, 16), ENOMEM, "calloc(PTRDIFF_MAX / 16 + 1, 16)");
    fails(R(NULL, SIZE_MAX), ENOMEM, "realloc(NULL, SIZE_MAX)");
    fails(RA(NULL, SIZE_MAX / 2, 3), ENOMEM, "reallocarray(NULL, SIZE_MAX / 2, 3)");
    if (have_pvalloc) {
        fails(PV(SIZE_MAX - 100), ENOMEM, "pvalloc(SIZE_MAX - 100)");
        fails(PV(SIZE_MAX), ENOMEM, "pvalloc(SIZE_MAX)");
    }
    fails_errno_lo(VA(SIZE_MAX), ENOMEM, "valloc(SIZE_MAX)");
    fails_errno_lo(MA(64, SIZE_MAX), ENOMEM, "memalign(64, SIZE_MAX)");
    fails(AA(64, SIZE_MAX), ENOMEM, "aligned_alloc(64, SIZE_MAX)");
    fails(AA(4096, big), ENOMEM, "aligned_alloc(4096, PTRDIFF_MAX + 1)");
    void *q = (void *)0x1234;
    int r = PM(&q, 64, SIZE_MAX);
    expect(r == ENOMEM, "posix_memalign(64, SIZE_MAX) returned %d, want ENOMEM", r);
    expect(q == (void *)0x1234, "posix_memalign(64, SIZE_MAX) changed *memptr to %p", q);
}

static void t_failed_realloc_intact(void) {
    begin("realloc_fail_intact: failed realloc/reallocarray leave the block intact", false);
    size_t sizes[] = {24, 1000, 70000, 3u << 20};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        size_t n = sizes[i];
        void *p = M(n);
        if (!good(p, n, 16, "malloc")) continue;
        fails_errno_lo(R(p, SIZE_MAX), ENOMEM, "realloc(p, SIZE_MAX)");
        fails_errno_lo(R(p, (size_t)PTRDIFF_MAX + 1), ENOMEM, "realloc(p, PTRDIFF_MAX + 1)");
        fails(RA(p, SIZE_MAX / 2, 3), ENOMEM, "reallocarray(p, SIZE_MAX / 2, 3)");
        fails(RA(p, (size_t)1 << 32, (size_t)1 << 32), ENOMEM, "reallocarray(p, 2^32, 2^32)");
        done(p, "block after failed reallocs");
    }
    begin("reallocarray_ok: reallocarray without overflow behaves as realloc", false);
    void *a = RA(NULL, 25, 4);
    if (a) {
        errno_is(e, SENT, "reallocarray(NULL, 25, 4)");
        pat_fill(a, 77, 100, 100);
        void *b = RA(a, 300, 4);
        if (b) {
            errno_is(e, SENT, "reallocarray(p, 300, 4)");
            size_t bad = pat_check(b, 77, 100, 100);
            expect(bad == 100, "reallocarray(p, 300, 4) lost byte %zu of the 100 old bytes", bad);
            F(b);
        } else {
            report("reallocarray(p, 300, 4) returned NULL");
            F(a);
        }
    } else
        report("reallocarray(NULL, 25, 4) returned NULL");
}

static void t_posix_memalign(void) {
    begin("posix_memalign_einval: alignment 0, not a power of two, or not a multiple of sizeof(void*) -> EINVAL, *memptr untouched, errno unchanged", false);
    size_t bad[] = {0, 1, 2, 4, 3, 12, 24, 48, 96, 100, 4095, ((size_t)1 << 63) + 8, SIZE_MAX};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        void *q = (void *)0x5678;
        int r = PM(&q, bad[i], 64);
        char what[80];
        snprintf(what, sizeof what, "posix_memalign(&q, %zu, 64)", bad[i]);
        expect(r == EINVAL, "%s returned %d, want EINVAL", what, r);
        errno_is(e, SENT, what);
        expect(q == (void *)0x5678, "%s changed *memptr to %p", what, q);
    }
    struct { size_t a, n; } cases[] = {{(size_t)1 << 63, 1}, {(size_t)1 << 63, 0}, {(size_t)1 << 62, 16},
                                       {16, SIZE_MAX}, {4096, (size_t)PTRDIFF_MAX + 1}};
    /* Two passes: the return value and *memptr (everyone), then errno
     * (glibc 2.36 leaves ENOMEM in errno here, POSIX says posix_memalign
     * does not set it: library-only). */
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 0)
            begin("posix_memalign_enomem: alignment 2^63 or huge size -> ENOMEM, *memptr untouched", false);
        else
            begin("posix_memalign_enomem_errno: posix_memalign failing with ENOMEM leaves errno unchanged", true);
        for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
            void *q = (void *)0x5678;
            int r = PM(&q, cases[i].a, cases[i].n);
            char what[80];
            snprintf(what, sizeof what, "posix_memalign(&q, %zu, %zu)", cases[i].a, cases[i].n);
            if (pass == 0) {
                expect(r == ENOMEM, "%s returned %d, want ENOMEM", what, r);
                expect(q == (void *)0x5678, "%s changed *memptr to %p", what, q);
            } else
                errno_is(e, SENT, what);
            if (r == 0 && q != (void *)0x5678) p_free(q);
        }
    }
    begin("posix_memalign_ok: valid alignments 8..2^20 succeed, errno unchanged", false);
    for (size_t a = 8; a <= ((size_t)1 << 20); a <<= 1) {
        for (size_t n = 0; n <= 3 * a; n += a / 2 + 1) {
            void *q = NULL;
            int r = PM(&q, a, n);
            char what[80];
            snprintf(what, sizeof what, "posix_memalign(&q, %zu, %zu)", a, n);
            expect(r == 0, "%s returned %d", what, r);
            if (r == 0) {
                good(q, n, a, what);
                done(q, what);
            } else
                errno_is(e, SENT, what);
        }
    }
}

static void t_aligned_alloc(void) {
    begin("aligned_alloc_einval: alignment 0 or not a power of two -> NULL, EINVAL (C17 DR460)", true);
    size_t bad[] = {0, 3, 5, 12, 24, 48, 100, 4097, ((size_t)1 << 20) + 16};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char what[64];
        snprintf(what, sizeof what, "aligned_alloc(%zu, 64)", bad[i]);
        fails(AA(bad[i], 64), EINVAL, what);
    }
    begin("aligned_alloc_any_size: power-of-two alignments 1..2^20, size not a multiple of the alignment", false);
    for (size_t a = 1; a <= ((size_t)1 << 20); a <<= 1) {
        size_t sizes[] = {0, 1, a + 1, 3 * a / 2 + 5};
        for (size_t i = 0; i < 4; i++) {
            char what[64];
            snprintf(what, sizeof what, "aligned_alloc(%zu, %zu)", a, sizes[i]);
            void *p = AA(a, sizes[i]);
            good(p, sizes[i], a, what);
            done(p, what);
        }
    }
}

static void t_memalign(void) {
    begin("memalign_roundup: non-power-of-two alignment is rounded up", true);
    size_t odd[] = {3, 24, 48, 100, 1000, 5000, 40000};
    for (size_t i = 0; i < sizeof odd / sizeof *odd; i++) {
        size_t up = 1;
        while (up < odd[i]) up <<= 1;
        char what[64];
        snprintf(what, sizeof what, "memalign(%zu, 100)", odd[i]);
        void *p = MA(odd[i], 100);
        good(p, 100, up, what);
        done(p, what);
    }
    begin("memalign_einval: impossible alignment (SIZE_MAX, 2^63 + 1) -> NULL, EINVAL", false);
    fails_errno_lo(MA(SIZE_MAX, 1), EINVAL, "memalign(SIZE_MAX, 1)");
    fails_errno_lo(MA(((size_t)1 << 63) + 1, 1), EINVAL, "memalign(2^63 + 1, 1)");
    begin("memalign_ok: power-of-two alignments 1..2^20, errno unchanged", false);
    for (size_t a = 1; a <= ((size_t)1 << 20); a <<= 1) {
        char what[64];
        snprintf(what, sizeof what, "memalign(%zu, %zu)", a, a + 3);
        void *p = MA(a, a + 3);
        good(p, a + 3, a, what);
        done(p, what);
    }
}

static void t_valloc_pvalloc(void) {
    begin("valloc: page aligned, errno unchanged", false);
    size_t sizes[] = {0, 1, 100, page, page + 1, 10 * page + 3, 1u << 20};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        char what[64];
        snprintf(what, sizeof what, "valloc(%zu)", sizes[i]);
        void *p = VA(sizes[i]);
        good(p, sizes[i], page, what);
        done(p, what);
    }
    if (!have_pvalloc) return;
    begin("pvalloc: page aligned, size rounded up to whole pages (usable and writable)", false);
    size_t ps[] = {1, 100, page - 1, page, page + 1, 10 * page + 3, (1u << 20) + 1};
    for (size_t i = 0; i < sizeof ps / sizeof *ps; i++) {
        size_t whole = (ps[i] + page - 1) / page * page;
        char what[64];
        snprintf(what, sizeof what, "pvalloc(%zu)", ps[i]);
        void *p = PV(ps[i]);
        good(p, whole, page, what); /* usable >= whole pages, all written */
        done(p, what);
    }
}

static void t_big_alignments(void) {
    begin("align_2p27: alignments up to 2^27 work (posix_memalign, aligned_alloc, memalign)", false);
    for (size_t a = (size_t)1 << 21; a <= ((size_t)1 << 27); a <<= 1) {
        size_t sizes[] = {1, a + 1};
        for (int i = 0; i < 2; i++) {
            size_t n = sizes[i];
            char what[80];
            void *q = NULL;
            snprintf(what, sizeof what, "posix_memalign(&q, %zu, %zu)", a, n);
            int r = PM(&q, a, n);
            expect(r == 0, "%s returned %d", what, r);
            if (r == 0) {
                errno_is(e, SENT, what);
                expect((uintptr_t)q % a == 0, "%s = %p misaligned", what, q);
                size_t u = U(q);
                expect(u >= n, "%s: usable %zu < %zu", what, u, n);
                /* touch the first, last and every 64 KiB-th byte */
                unsigned char *b = q;
                for (size_t k = 0; k < u; k += 65536) b[k] = (unsigned char)k;
                b[u - 1] = 0x5a;
                expect(b[u - 1] == 0x5a && b[0] == 0, "%s: writes did not stick", what);
                F(q);
            }
            snprintf(what, sizeof what, "aligned_alloc(%zu, %zu)", a, n);
            void *p = AA(a, n);
            if (!p) report("%s returned NULL (errno %d)", what, e);
            else {
                errno_is(e, SENT, what);
                expect((uintptr_t)p % a == 0, "%s = %p misaligned", what, p);
                expect(U(p) >= n, "%s: usable < %zu", what, n);
                ((unsigned char *)p)[n - 1] = 1;
                F(p);
            }
            snprintf(what, sizeof what, "memalign(%zu, %zu)", a, n);
            p = MA(a, n);
            if (!p) report("%s returned NULL (errno %d)", what, e);
            else {
                errno_is(e, SENT, what);
                expect((uintptr_t)p % a == 0, "%s = %p misaligned", what, p);
                ((unsigned char *)p)[n - 1] = 1;
                F(p);
            }
        }
    }
}

static void t_usable(void) {
    begin("usable_null: malloc_usable_size(NULL) is 0, errno unchanged", false);
    size_t u = U(NULL);
    expect(u == 0, "malloc_usable_size(NULL) = %zu", u);
    errno_is(e, SENT, "malloc_usable_size(NULL)");
    begin("usable_writable: usable size >= request, whole usable size writable without touching neighbours", false);
    enum { N = 48 };
    void *ps[N];
    for (size_t n = 1; n < (1u << 22); n = n * 5 / 3 + 1) {
        for (int i = 0; i < N; i++) ps[i] = M(n);
        for (int i = 0; i < N; i++) good(ps[i], n, 16, "malloc");
        for (int i = 0; i < N; i++) done(ps[i], "malloc");
        if (n > 100000) n = n * 3; /* fewer large rounds */
    }
}

static void t_realloc_copy(void) {
    begin("realloc_copy: realloc keeps min(old usable size, new size) bytes, growing and shrinking, plain and aligned blocks", false);
    size_t sizes[] = {1, 8, 16, 24, 100, 256, 1000, 4096, 5000, 65536, 100000, 300000, 1u << 20, 5u << 20};
    size_t ns = sizeof sizes / sizeof *sizes;
    for (int aligned = 0; aligned < 2; aligned++)
        for (size_t i = 0; i < ns; i++)
            for (size_t j = 0; j < ns; j++) {
                size_t a = sizes[i], b = sizes[j];
                void *p;
                if (aligned) {
                    p = NULL;
                    int r = PM(&p, 4096, a);
                    if (r != 0) { report("posix_memalign(4096, %zu) = %d", a, r); continue; }
                } else
                    p = M(a);
                if (!p) { report("malloc(%zu) returned NULL", a); continue; }
                errno_is(e, SENT, "malloc");
                size_t ua = U(p);
                pat_fill(p, 999, ua, ua);
                void *q = R(p, b);
                char what[80];
                snprintf(what, sizeof what, "realloc(p of %zu%s, %zu)", a, aligned ? " aligned 4096" : "", b);
                if (!q) { report("%s returned NULL (errno %d)", what, e); p_free(p); continue; }
                errno_is(e, SENT, what);
                expect((uintptr_t)q % 16 == 0, "%s = %p not 16-byte aligned", what, q);
                size_t keep = ua < b ? ua : b;
                size_t bad = pat_check(q, 999, ua, keep);
                expect(bad == keep, "%s: byte %zu of %zu kept bytes differs", what, bad, keep);
                size_t uq = U(q);
                expect(uq >= b, "%s: usable %zu < %zu", what, uq, b);
                memset(q, 0x11, uq);
                F(q);
            }
}

static void t_calloc_zero(void) {
    begin("calloc_zero: calloc memory is zero, also reused chunks and large blocks", false);
    size_t sizes[] = {1, 16, 48, 200, 1000, 4000, 20000, 100000, 400000, 1u << 20, 3u << 20, 16u << 20};
    enum { N = 32 };
    void *ps[N];
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        size_t n = sizes[i];
        int k = n >= (1u << 20) ? 3 : N;
        for (int r = 0; r < 3; r++) {
            /* dirty blocks of this size, free them, calloc the same size */
            for (int j = 0; j < k; j++) {
                ps[j] = M(n);
                if (ps[j]) memset(ps[j], 0xa5, U(ps[j]));
            }
            for (int j = 0; j < k; j++) p_free(ps[j]);
            for (int j = 0; j < k; j++) {
                void *c = (j & 1) ? C(n, 1) : C(1, n);
                ps[j] = c;
                if (!c) { report("calloc(%zu) returned NULL", n); continue; }
                errno_is(e, SENT, "calloc");
                size_t u = U(c);
                const unsigned char *b = c;
                size_t nz = u;
                for (size_t x = 0; x < n; x++)
                    if (b[x]) { nz = x; break; }
                expect(nz == u || nz >= n, "calloc(%zu) round %d: byte %zu is 0x%02x, not 0", n, r, nz, b[nz]);
            }
            for (int j = 0; j < k; j++) p_free(ps[j]);
        }
    }
    /* array form with a product that does not overflow */
    void *c = C(1000, 1000);
    if (!c) report("calloc(1000, 1000) returned NULL");
    else {
        errno_is(e, SENT, "calloc(1000, 1000)");
        const unsigned char *b = c;
        for (size_t x = 0; x < 1000000; x++)
            if (b[x]) { report("calloc(1000, 1000): byte %zu not 0", x); break; }
        F(c);
    }
}

static void t_large_free_errno(void) {
    begin("free_errno_large: malloc/free of large blocks (mmap/munmap/madvise inside) leave errno unchanged", false);
    for (int r = 0; r < 4; r++) {
        void *ps[8];
        for (int i = 0; i < 8; i++) {
            size_t n = ((size_t)(i + 1) << 20) + 4096 * i + 13;
            ps[i] = M(n);
            good(ps[i], n, 16, "malloc(large)");
        }
        for (int i = 0; i < 8; i++) done(ps[i], "malloc(large)");
        void *g = M(64u << 20);
        good(g, 64u << 20, 16, "malloc(64 MiB)");
        done(g, "malloc(64 MiB)");
    }
    /* Many small blocks freed: empty pools go back (madvise/munmap). */
    enum { N = 20000 };
    void **ps = M(N * sizeof *ps);
    if (!ps) { report("malloc(array) failed"); return; }
    for (int r = 0; r < 3; r++) {
        for (int i = 0; i < N; i++) { ps[i] = M(64 + (i % 7) * 16); errno_is(e, SENT, "malloc(small)"); }
        for (int i = 0; i < N; i++) F(ps[i]);
    }
    F(ps);
}

static void t_symbols(void) {
    /* The aliases glibc's "Replacing malloc" lists; found with dlsym. */
    begin("aliases: __libc_malloc/__libc_calloc/__libc_realloc/__libc_free/__libc_memalign/__libc_valloc/__libc_pvalloc work with free and malloc_usable_size", false);
    void *(*lm)(size_t) = (void *(*)(size_t))dlsym(RTLD_DEFAULT, "__libc_malloc");
    void *(*lc)(size_t, size_t) = (void *(*)(size_t, size_t))dlsym(RTLD_DEFAULT, "__libc_calloc");
    void *(*lr)(void *, size_t) = (void *(*)(void *, size_t))dlsym(RTLD_DEFAULT, "__libc_realloc");
    void (*lf)(void *) = (void (*)(void *))dlsym(RTLD_DEFAULT, "__libc_free");
    void *(*lma)(size_t, size_t) = (void *(*)(size_t, size_t))dlsym(RTLD_DEFAULT, "__libc_memalign");
    void *(*lv)(size_t) = (void *(*)(size_t))dlsym(RTLD_DEFAULT, "__libc_valloc");
    void *(*lpv)(size_t) = (void *(*)(size_t))dlsym(RTLD_DEFAULT, "__libc_pvalloc");
    if (!have_aliases) {
        soft = true;
        report("the __libc_* aliases are not all malloc's library's: skipped (see one_library)");
        soft = false;
        lm = NULL;
    }
    if (!lm) {
    } else     if (!lm || !lc || !lr || !lf || !lma || !lv || !lpv)
        report("missing: %s%s%s%s%s%s%s", lm ? "" : "__libc_malloc ", lc ? "" : "__libc_calloc ",
               lr ? "" : "__libc_realloc ", lf ? "" : "__libc_free ", lma ? "" : "__libc_memalign ",
               lv ? "" : "__libc_valloc ", lpv ? "" : "__libc_pvalloc ");
    else {
        errno = SENT; void *a = lm(100); e = errno; good(a, 100, 16, "__libc_malloc(100)");
        errno = SENT; void *b = lc(10, 10); e = errno; good(b, 100, 16, "__libc_calloc(10, 10)");
        errno = SENT; void *c = lr(NULL, 50); e = errno; good(c, 50, 16, "__libc_realloc(NULL, 50)");
        errno = SENT; void *d = lma(256, 10); e = errno; good(d, 10, 256, "__libc_memalign(256, 10)");
        errno = SENT; void *v = lv(10); e = errno; good(v, 10, page, "__libc_valloc(10)");
        errno = SENT; void *w = lpv(10); e = errno; good(w, page, page, "__libc_pvalloc(10)");
        if (a) {
            pat_fill(a, 5, 100, 100);
            errno = SENT; void *a2 = lr(a, 5000); e = errno;
            if (!a2) report("__libc_realloc(p, 5000) returned NULL");
            else {
                errno_is(e, SENT, "__libc_realloc(p, 5000)");
                expect(pat_check(a2, 5, 100, 100) == 100, "__libc_realloc lost content");
                a = a2;
            }
        }
        /* freed crosswise: __libc_free of malloc's blocks, free of __libc_*'s */
        void *m = M(77);
        errno = SENT; lf(m); errno_is(errno, SENT, "__libc_free(malloc'd)");
        errno = SENT; lf(NULL); errno_is(errno, SENT, "__libc_free(NULL)");
        F(a); F(b); F(c); F(d);
        errno = SENT; lf(v); errno_is(errno, SENT, "__libc_free(__libc_valloc'd)");
        F(w);
    }
    begin("alias_posix_memalign: __posix_memalign exists and behaves as posix_memalign", true);
    int (*lpm)(void **, size_t, size_t) = (int (*)(void **, size_t, size_t))dlsym(RTLD_DEFAULT, "__posix_memalign");
    if (!lpm) report("__posix_memalign not found");
    else {
        void *q = (void *)0x99;
        errno = SENT; int r = lpm(&q, 3, 10); e = errno;
        expect(r == EINVAL && q == (void *)0x99, "__posix_memalign(&q, 3, 10) = %d, q %p", r, q);
        errno_is(e, SENT, "__posix_memalign(bad)");
        errno = SENT; r = lpm(&q, 1024, 10); e = errno;
        expect(r == 0, "__posix_memalign(&q, 1024, 10) = %d", r);
        if (r == 0) { good(q, 10, 1024, "__posix_memalign(1024, 10)"); done(q, "__posix_memalign"); }
    }
    begin("cfree: cfree exists (default version) and frees", true);
    void (*cf)(void *) = (void (*)(void *))dlsym(RTLD_DEFAULT, "cfree");
    if (!cf) report("cfree not found by dlsym(RTLD_DEFAULT)");
    else {
        void *p = M(100);
        good(p, 100, 16, "malloc(100)");
        errno = SENT; cf(p); errno_is(errno, SENT, "cfree(p)");
        errno = SENT; cf(NULL); errno_is(errno, SENT, "cfree(NULL)");
    }
}

static void t_library(void) {
    if (!lib) {
        printf("note: flistalloc_backend not found: the flistalloc_* checks are skipped\n");
        return;
    }
    begin("backend: flistalloc_backend() names a backend (FLISTALLOC_EXPECT_BACKEND if set), errno unchanged", false);
    const char *(*fb)(void) = (const char *(*)(void))dlsym(RTLD_DEFAULT, "flistalloc_backend");
    errno = SENT; const char *b = fb(); e = errno;
    errno_is(e, SENT, "flistalloc_backend()");
    const char *want = getenv("FLISTALLOC_EXPECT_BACKEND");
    if (!b) report("flistalloc_backend() returned NULL");
    else {
        expect(!strcmp(b, "flist") || !strcmp(b, "malloc") || !strcmp(b, "jemalloc"), "flistalloc_backend() = \"%s\"", b);
        if (want) expect(!strcmp(b, want), "flistalloc_backend() = \"%s\", FLISTALLOC_EXPECT_BACKEND = \"%s\"", b, want);
        printf("flistalloc_backend() = %s\n", b);
    }
    begin("trim: flistalloc_trim() runs, errno unchanged", false);
    size_t (*ft)(void) = (size_t (*)(void))dlsym(RTLD_DEFAULT, "flistalloc_trim");
    if (!ft) report("flistalloc_trim not found");
    else {
        void *ps[1000];
        for (int i = 0; i < 1000; i++) ps[i] = M(200);
        for (int i = 0; i < 1000; i++) F(ps[i]);
        errno = SENT; size_t n = ft(); e = errno;
        errno_is(e, SENT, "flistalloc_trim()");
        printf("flistalloc_trim() gave back %zu bytes\n", n);
        void *p = M(200);
        good(p, 200, 16, "malloc after trim");
        done(p, "malloc after trim");
    }
    begin("stats: flistalloc_stats fills the struct (0), -1 EINVAL when out_size is too small", false);
    int (*fs)(struct flistalloc_stats *, size_t) =
        (int (*)(struct flistalloc_stats *, size_t))dlsym(RTLD_DEFAULT, "flistalloc_stats");
    if (!fs) report("flistalloc_stats not found");
    else {
        struct flistalloc_stats st;
        size_t small[] = {0, 1, sizeof st - 1, sizeof st - sizeof(size_t)};
        for (int i = 0; i < 4; i++) {
            memset(&st, 0xee, sizeof st);
            errno = SENT; int r = fs(&st, small[i]); e = errno;
            expect(r == -1, "flistalloc_stats(&st, %zu) = %d, want -1", small[i], r);
            errno_is(e, EINVAL, "flistalloc_stats(too small)");
        }
        void *big = M(8u << 20);
        void *sm = M(64);
        memset(&st, 0xee, sizeof st);
        errno = SENT; int r = fs(&st, sizeof st); e = errno;
        expect(r == 0, "flistalloc_stats(&st, sizeof st) = %d, want 0", r);
        errno_is(e, SENT, "flistalloc_stats(&st, sizeof st)");
        if (r == 0 && b && !strcmp(b, "flist")) {
            expect(st.mapped > 0 && st.mapped != (size_t)0xeeeeeeeeeeeeeeeeull, "stats.mapped = %zu with live blocks", st.mapped);
            expect(st.threads >= 1 && st.threads < 100000, "stats.threads = %zu", st.threads);
        }
        struct { struct flistalloc_stats s; char pad[64]; } larger;
        errno = SENT; r = fs(&larger.s, sizeof larger); e = errno;
        expect(r == 0, "flistalloc_stats(&st, sizeof st + 64) = %d, want 0", r);
        errno_is(e, SENT, "flistalloc_stats(larger)");
        F(big);
        F(sm);
    }
}

/* FLISTALLOC_CAPACITY=64M: free() does not get a size, so the usable size
 * is what is counted and given back. Rounds of "allocate until ENOMEM, free
 * all" reach the same count every time (a drift shows a counting mismatch). */
static void t_capacity(void) {
    if (!getenv("CONFORMANCE_CAPACITY")) return;
    begin("capacity: FLISTALLOC_CAPACITY=64M stops allocation with ENOMEM, the same number of blocks each round", false);
    if (!lib) { report("needs the library"); return; }
    const char *cap = getenv("FLISTALLOC_CAPACITY");
    if (!cap || strcmp(cap, "64M")) { report("FLISTALLOC_CAPACITY must be 64M, is %s", cap ? cap : "unset"); return; }
    enum { MAXB = 200000 };
    void **ps = mmap(NULL, MAXB * sizeof(void *), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (ps == MAP_FAILED) { report("mmap failed"); return; }
    size_t sizes[] = {1000 + 17, 40000 + 3, (1u << 20) + 5};
    for (int s = 0; s < 3; s++) {
        size_t n = sizes[s];
        int first = -1;
        for (int round = 0; round < 6; round++) {
            int k = 0;
            for (; k < MAXB; k++) {
                ps[k] = M(n);
                if (!ps[k]) break;
                errno_is(e, SENT, "malloc under capacity");
                ((char *)ps[k])[0] = 1;
            }
            if (k == MAXB) { report("%d blocks of %zu bytes (%zu MiB) fit under 64M", k, n, (size_t)k * n >> 20); }
            else errno_is(e, ENOMEM, "malloc past capacity");
            expect((size_t)k * n <= (64u << 20), "size %zu: %d blocks = %zu bytes > 64 MiB", n, k, (size_t)k * n);
            for (int i = 0; i < k; i++) F(ps[i]);
            if (round == 0) {
                first = k;
                printf("capacity: %d blocks of %zu bytes fit under 64M\n", k, n);
            } else
                expect(k >= first - first / 50 - 1, "size %zu round %d: %d blocks fit, round 0: %d (capacity leaks on free)", n, round, k, first);
        }
    }
    munmap(ps, MAXB * sizeof(void *));
}

int main(void) {
    page = (size_t)sysconf(_SC_PAGESIZE);
    lib = dlsym(RTLD_DEFAULT, "flistalloc_backend") != NULL;
    printf("conformance: %s\n", lib ? "libflistalloc loaded: every check applies"
                                    : "no libflistalloc: library-only checks report deviations only");
    if (getenv("CONFORMANCE_CAPACITY")) {
        /* alone: the other checks need more than 64 MiB (2^27 alignments) */
        t_library();
        t_capacity();
        printf("conformance (capacity): %d checks, %d failed\n", n_checks, n_failed);
        return n_failed ? 1 : 0;
    }
    t_library();
    t_one_library();
    t_align16_small();
    t_align16();
    t_malloc0();
    t_realloc_null0();
    t_realloc_p0();
    t_free_null();
    t_enomem();
    t_failed_realloc_intact();
    t_posix_memalign();
    t_aligned_alloc();
    t_memalign();
    t_valloc_pvalloc();
    t_big_alignments();
    t_usable();
    t_realloc_copy();
    t_calloc_zero();
    t_large_free_errno();
    t_symbols();
    printf("conformance: %d checks, %d failed, %d deviations not counted\n", n_checks, n_failed, n_deviations);
    return n_failed ? 1 : 0;
}
