/* Loaded with dlopen by dltls.c: 24 KiB of __thread data (more than glibc's
 * static TLS surplus), so each thread's block for it is allocated by
 * __tls_get_addr with malloc, on the thread's first touch after dlopen. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

__thread unsigned char tls_a[8192];
__thread uint64_t tls_b[1024];
__thread int tls_init[1024] = {[0] = 7, [511] = 11, [1023] = 13}; /* .tdata: copied per thread */

/* Writes a per-thread pattern into the TLS arrays, allocates and frees in
 * between, and checks the pattern and the initial values. Returns 0 when
 * everything holds, else a number saying what broke. */
int dltls_touch(unsigned id, int round) {
    if (round == 0 && (tls_init[0] != 7 || tls_init[511] != 11 || tls_init[1023] != 13 || tls_init[5] != 0))
        return 1;
    for (int i = 0; i < 8192; i++) tls_a[i] = (unsigned char)(id * 31 + i + round);
    for (int i = 0; i < 1024; i++) tls_b[i] = (uint64_t)id << 32 | (unsigned)(i + round);
    tls_init[5] = (int)id;
    void *ps[16];
    for (int i = 0; i < 16; i++) {
        ps[i] = malloc((size_t)(i + 1) * 200);
        if (!ps[i]) return 2;
        memset(ps[i], 0x5a, (size_t)(i + 1) * 200);
    }
    for (int i = 0; i < 16; i++) free(ps[i]);
    for (int i = 0; i < 8192; i++)
        if (tls_a[i] != (unsigned char)(id * 31 + i + round)) return 3;
    for (int i = 0; i < 1024; i++)
        if (tls_b[i] != ((uint64_t)id << 32 | (unsigned)(i + round))) return 4;
    if (tls_init[5] != (int)id) return 5;
    return 0;
}
