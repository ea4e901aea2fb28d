//! Environment lookups that do not allocate.
//!
//! `std::env::var` allocates, so a `#[global_allocator]` cannot call it from
//! its first allocation. (flistalloc has the same reader for
//! `FLISTALLOC_BACKEND`, private to the library.)

use std::ffi::CStr;

/// Whether environment variable `name` is set to exactly `value`, read with
/// `getenv`, without allocating.
pub fn var_is(name: &CStr, value: &[u8]) -> bool {
    // SAFETY: `name` is NUL-terminated (a `CStr`); getenv returns null or a
    // pointer to a NUL-terminated value in the environment block, which stays
    // valid while we compare it, since these programs never modify their
    // environment (no setenv/set_var).
    unsafe {
        let v = libc::getenv(name.as_ptr());
        !v.is_null() && CStr::from_ptr(v).to_bytes() == value
    }
}

#[cfg(test)]
mod tests {
    #[test]
    #[cfg_attr(miri, ignore)] // foreign function getenv
    fn reads_the_environment() {
        // PATH is set when cargo runs tests; this name is not.
        assert!(!super::var_is(c"FLISTALLOC_SUPPORT_UNSET_VARIABLE", b""));
        let path = std::env::var("PATH").expect("PATH");
        assert!(super::var_is(c"PATH", path.as_bytes()));
        assert!(!super::var_is(c"PATH", b"surely not the PATH"));
    }
}
