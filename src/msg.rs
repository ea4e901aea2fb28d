//! One-line messages on stderr, written without allocating (the allocator
//! may be the one that would serve the allocation): warnings about the
//! configuration, and the report of misuse before an abort.

/// Writes `flistalloc: <parts...>\n` to stderr with one `write`, from a
/// stack buffer (a longer message is cut at 319 bytes).
///
/// ```text
/// warn(&[b"unknown FLISTALLOC_BACKEND=", value, b" (valid values: ...)"]);
/// ```
pub(crate) fn warn(parts: &[&[u8]]) {
    let mut buf = [0u8; 320];
    let mut n = 0;
    let prefix: &[u8] = b"flistalloc: ";
    for part in core::iter::once(&prefix).chain(parts) {
        for &c in *part {
            if n < buf.len() - 1 {
                buf[n] = c;
                n += 1;
            }
        }
    }
    buf[n] = b'\n';
    n += 1;
    // SAFETY: writes `n` initialised bytes of a stack buffer to fd 2; a
    // failed write is ignored (there is nowhere else to report it).
    unsafe { libc::write(2, buf.as_ptr().cast(), n) };
}

/// Reports misuse on one line of stderr (`flistalloc: <what>0x<addr>`),
/// without allocating, and aborts: going on could corrupt memory.
#[cold]
#[inline(never)]
pub(crate) fn die(what: &[u8], addr: usize) -> ! {
    let mut hex = [0u8; 18];
    hex[0] = b'0';
    hex[1] = b'x';
    for i in 0..16 {
        let nib = (addr >> ((15 - i) * 4)) & 0xf;
        hex[2 + i] = b"0123456789abcdef"[nib];
    }
    warn(&[what, &hex]);
    // SAFETY: abort has no preconditions and never returns.
    unsafe { libc::abort() }
}
