//! Full or quick sizes for a workload.

/// The sizes a sweep runs its workloads at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scale {
    /// The sizes the published figures come from.
    Full,
    /// Small sizes: a smoke test of a few seconds.
    Quick,
}

impl Scale {
    /// `full` or `quick`.
    pub fn name(self) -> &'static str {
        match self {
            Scale::Full => "full",
            Scale::Quick => "quick",
        }
    }

    /// The scale named `s`.
    pub fn parse(s: &str) -> Option<Scale> {
        [Scale::Full, Scale::Quick]
            .into_iter()
            .find(|x| x.name() == s)
    }

    /// `full` at full scale, `quick` at quick scale.
    pub fn pick<T>(self, full: T, quick: T) -> T {
        match self {
            Scale::Full => full,
            Scale::Quick => quick,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Scale;

    #[test]
    fn names_and_picks() {
        for s in [Scale::Full, Scale::Quick] {
            assert_eq!(Scale::parse(s.name()), Some(s));
        }
        assert_eq!(Scale::parse("medium"), None);
        assert_eq!(Scale::Quick.pick(10, 1), 1);
        assert_eq!(Scale::Full.pick("a", "b"), "a");
    }
}
