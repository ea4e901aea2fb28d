//! Checksums the workloads sum: over the work done, never over addresses or
//! orders, so every allocator gives the same one.

use std::hash::Hasher as _;

/// FNV-1a (64-bit) over every byte: for short strings, and as a fixed hash
/// (the same probe sequences, hence allocations, for every allocator).
#[inline]
pub fn fnv(bytes: &[u8]) -> u64 {
    let mut h = fnv::FnvHasher::default();
    h.write(bytes);
    h.finish()
}

/// FNV-1a (64-bit) over everything `r` yields, read in 64 KiB pieces (the
/// same value as [`fnv()`] over those bytes), and how many bytes there were.
///
/// # Errors
/// The first read error of `r` (other than `Interrupted`).
pub fn fnv_reader(mut r: impl std::io::Read) -> std::io::Result<(u64, u64)> {
    let mut h = fnv::FnvHasher::default();
    let mut buf = vec![0u8; 64 << 10];
    let mut len = 0u64;
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        h.write(&buf[..n]);
        len += n as u64;
    }
    Ok((h.finish(), len))
}

/// A cheap 64-bit mixer (the first half of MurmurHash3's finalizer).
#[inline]
pub fn mix(x: u64) -> u64 {
    let x = (x ^ (x >> 33)).wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^ (x >> 29)
}

/// A digest of a buffer's length, its ends and one byte per 256: checks that
/// buffers kept their contents without making the workload about hashing.
#[inline]
pub fn sample_hash(bytes: &[u8]) -> u64 {
    let mut h = bytes.len() as u64;
    for i in (0..bytes.len()).step_by(256) {
        h = mix(h ^ bytes[i] as u64);
    }
    if let Some(&last) = bytes.last() {
        h = mix(h ^ ((last as u64) << 8));
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_matches_the_definition() {
        let by_hand = |bytes: &[u8]| {
            let mut h = 0xcbf2_9ce4_8422_2325u64;
            for &b in bytes {
                h ^= b as u64;
                h = h.wrapping_mul(0x100_0000_01b3);
            }
            h
        };
        for s in ["", "a", "foobar", "user:0000002a:42"] {
            assert_eq!(fnv(s.as_bytes()), by_hand(s.as_bytes()));
        }
        assert_eq!(fnv(b"a"), 0xaf63_dc4c_8601_ec8c); // the published vector
    }

    #[test]
    fn sample_hash_sees_length_and_ends() {
        let a = vec![1u8; 1000];
        let mut b = a.clone();
        assert_eq!(sample_hash(&a), sample_hash(&b));
        *b.last_mut().unwrap() = 2;
        assert_ne!(sample_hash(&a), sample_hash(&b));
        assert_ne!(sample_hash(&a[..999]), sample_hash(&a));
        assert_eq!(sample_hash(&[]), 0);
    }
}
