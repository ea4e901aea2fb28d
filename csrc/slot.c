/* The thread-local slot of the C library (cargo feature `c-library`):
 * this thread's flist core, null, or 1 (detached).
 *
 * initial-exec TLS: a GOT load of the offset plus one thread-pointer `mov`,
 * never `__tls_get_addr` (which a Rust `thread_local!` in a cdylib calls,
 * and which may allocate). A library loaded with LD_PRELOAD, or at start-up,
 * always has room for it in the static TLS block; glibc keeps a surplus for
 * libraries loaded later with dlopen. Hidden, never exported: on x86_64 the
 * Rust code reads and writes the slot itself with inline assembly
 * (src/global/threads.rs); elsewhere it calls these accessors. */

__attribute__((visibility("hidden"))) __thread void *flistalloc_slot __attribute__((tls_model("initial-exec")));

__attribute__((visibility("hidden"))) void *flistalloc_slot_get(void) {
    return flistalloc_slot;
}

__attribute__((visibility("hidden"))) void flistalloc_slot_set(void *value) {
    flistalloc_slot = value;
}
