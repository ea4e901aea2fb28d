//! Median and geometric mean.

/// The median (the mean of the two middle values for an even count, rounded
/// down); 0 for no values.
pub fn median(xs: &[u64]) -> u64 {
    let mut v = xs.to_vec();
    v.sort_unstable();
    let n = v.len();
    match n {
        0 => 0,
        _ if n % 2 == 1 => v[n / 2],
        _ => (v[n / 2 - 1] + v[n / 2]) / 2,
    }
}

/// The geometric mean of positive values; 1 for none.
pub fn geo_mean(xs: impl IntoIterator<Item = f64>) -> f64 {
    let (sum, n) = xs
        .into_iter()
        .fold((0.0, 0usize), |(s, n), x| (s + x.ln(), n + 1));
    (sum / n.max(1) as f64).exp()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(&[]), 0);
        assert_eq!(median(&[5]), 5);
        assert_eq!(median(&[9, 1, 5]), 5);
        assert_eq!(median(&[4, 1, 3, 2]), 2);
    }

    #[test]
    fn geometric_means() {
        assert_eq!(geo_mean([]), 1.0);
        assert!((geo_mean([2.0, 8.0]) - 4.0).abs() < 1e-12);
        assert!((geo_mean([1.5]) - 1.5).abs() < 1e-12);
    }
}
