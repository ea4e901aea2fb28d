/* Helpers shared by the C test programs of libflistalloc.so (issue 11, item 7).
 *
 * Every program runs with or without the library: `flistalloc_*` functions are
 * looked up with dlsym(RTLD_DEFAULT, ...), so the same binary also runs against
 * glibc's malloc or a preloaded jemalloc, which is how the tests themselves are
 * checked. Messages are written with write(2) where an allocation could hide the
 * failure (fail_now), otherwise with stdio. */
#ifndef FLISTALLOC_TEST_COMMON_H
#define FLISTALLOC_TEST_COMMON_H

#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The library's backend name, or NULL when flistalloc_backend is not loaded. */
static inline const char *test_backend(void) {
    const char *(*f)(void) = (const char *(*)(void))dlsym(RTLD_DEFAULT, "flistalloc_backend");
    return f ? f() : NULL;
}

/* One line on stderr without stdio or malloc, then _exit(1). */
static inline void fail_now(const char *prog, const char *what) {
    char buf[512];
    size_t n = 0;
    const char *parts[] = {prog, ": FAIL ", what, "\n"};
    for (int i = 0; i < 4; i++) {
        size_t l = strlen(parts[i]);
        if (n + l > sizeof buf) l = sizeof buf - n;
        memcpy(buf + n, parts[i], l);
        n += l;
    }
    ssize_t r = write(2, buf, n);
    (void)r;
    _exit(1);
}

/* The content pattern of a block: 8 bytes per 8-byte word, derived from a
 * tag (the block's address, or any other number) and the requested size, so
 * a block written over by another block, or moved without its content, shows.
 * Byte i of the pattern is byte (i % 8) of pat_word(tag, size, i / 8). */
static inline uint64_t pat_word(uintptr_t tag, size_t size, size_t w) {
    uint64_t x = (uint64_t)tag * 0x9E3779B97F4A7C15ull ^ (uint64_t)size * 0xC2B2AE3D27D4EB4Full;
    x ^= (uint64_t)w * 0x165667B19E3779F9ull;
    x ^= x >> 29;
    return x;
}

/* Fills [p, p+n) with the pattern of (tag, size). */
static inline void pat_fill(void *p, uintptr_t tag, size_t size, size_t n) {
    unsigned char *b = p;
    for (size_t i = 0; i < n; i += 8) {
        uint64_t x = pat_word(tag, size, i >> 3);
        memcpy(b + i, &x, n - i < 8 ? n - i : 8);
    }
}

/* Index of the first byte of [p, p+n) that differs from the pattern, or n. */
static inline size_t pat_check(const void *p, uintptr_t tag, size_t size, size_t n) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i += 8) {
        uint64_t x = pat_word(tag, size, i >> 3);
        size_t k = n - i < 8 ? n - i : 8;
        if (memcmp(b + i, &x, k) != 0)
            for (size_t j = 0; j < k; j++)
                if (b[i + j] != (unsigned char)(x >> (8 * j))) return i + j;
    }
    return n;
}

/* xorshift64* */
static inline uint64_t rnd(uint64_t *s) {
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1Dull;
}

#endif
