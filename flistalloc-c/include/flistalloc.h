/* flistalloc.h: the flistalloc_* functions of libflistalloc.so, the
 * flistalloc allocator as the C allocator (malloc, free, calloc, realloc,
 * reallocarray, aligned_alloc, posix_memalign, memalign, valloc, pvalloc,
 * malloc_usable_size, cfree and glibc's __libc_* aliases are exported with
 * their standard prototypes from <stdlib.h> and <malloc.h>).
 *
 * Use: LD_PRELOAD=/path/to/libflistalloc.so program
 * or link with -lflistalloc. See the README, "The C library (LD_PRELOAD)". */
#ifndef FLISTALLOC_H
#define FLISTALLOC_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Process-wide figures (mirrors the Rust flistalloc::Stats; bytes or counts). */
struct flistalloc_stats {
    size_t mapped;           /* bytes of segments mapped for flist pools */
    size_t flist_pool_bytes; /* bytes in flist pools in use */
    size_t fallback_live;    /* bytes of live large blocks (pages they span) */
    size_t pools_in_use;     /* pools in use, held by live threads or abandoned */
    size_t pools_abandoned;  /* pools in segments of exited threads, not yet adopted */
    size_t pools_returned;   /* pools returned to the OS so far (cumulative) */
    size_t threads;          /* threads that have a flist heap now */
    size_t reserve_bytes;    /* bytes of empty pools kept for reuse, all threads */
};

/* The backend serving new allocations: "flist", "malloc" or "jemalloc"
 * (a static string), from FLISTALLOC_BACKEND; reads the configuration now
 * if nothing was allocated yet. */
const char *flistalloc_backend(void);

/* Gives the calling thread's empty pools and the cached free large mappings
 * back to the OS; returns the bytes given back. errno is unchanged. */
size_t flistalloc_trim(void);

/* Fills *out (out_size = sizeof *out, or more) and returns 0; returns -1
 * with errno = EINVAL when out_size is smaller than the struct. */
int flistalloc_stats(struct flistalloc_stats *out, size_t out_size);

#ifdef __cplusplus
}
#endif

#endif
