//! The pure quota decision: may one more call of `cost` units be made?

/// The answer to a quota check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allow: bool,
    /// `max(included - used, 0)` before this call.
    pub remaining: u64,
}

/// Allows when the call fits in what is left of the period's included amount.
///
/// ```
/// use edgequota::quota::decide;
/// // 999 of 1,000 used: one more call fits, two do not.
/// assert!(decide(999, 1_000, 1).allow);
/// assert!(!decide(999, 1_000, 2).allow);
/// // Usage may exceed the plan (recording never denies); remaining stays at 0.
/// assert_eq!(decide(1_500, 1_000, 1).remaining, 0);
/// ```
#[inline]
pub fn decide(used: u64, included: u64, cost: u64) -> Decision {
    let remaining = included.saturating_sub(used);
    Decision {
        allow: cost <= remaining,
        remaining,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_exactly_up_to_the_included_amount() {
        assert_eq!(
            decide(0, 10, 1),
            Decision {
                allow: true,
                remaining: 10
            }
        );
        assert_eq!(
            decide(9, 10, 1),
            Decision {
                allow: true,
                remaining: 1
            }
        );
        assert_eq!(
            decide(10, 10, 1),
            Decision {
                allow: false,
                remaining: 0
            }
        );
        assert_eq!(
            decide(9, 10, 2),
            Decision {
                allow: false,
                remaining: 1
            }
        );
    }

    #[test]
    fn overuse_never_underflows() {
        assert_eq!(
            decide(50, 10, 1),
            Decision {
                allow: false,
                remaining: 0
            }
        );
        assert_eq!(
            decide(u64::MAX, 0, 1),
            Decision {
                allow: false,
                remaining: 0
            }
        );
        assert!(!decide(0, 0, 1).allow);
    }
}
