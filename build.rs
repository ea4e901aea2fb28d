//! Builds `csrc/slot.c`, the C library's initial-exec thread-local slot,
//! when the `c-library` feature is on (only the `libflistalloc.so` crate
//! turns it on); otherwise does nothing.

fn main() {
    println!("cargo:rerun-if-changed=csrc/slot.c");
    #[cfg(feature = "c-library")]
    cc::Build::new()
        .file("csrc/slot.c")
        .opt_level(2)
        .flag_if_supported("-fPIC")
        .compile("flistalloc_slot");
}
