//! The view's counters: records by epoch, consumes that never over-admit, pending
//! counts handed over exactly once, refunds.

use super::*;
use std::sync::Arc;

fn view() -> (Catalogue, OrgView) {
    let c = Catalogue::from_toml(crate::config::DEFAULT_PLANS_TOML).unwrap();
    let v = OrgView::new(&c);
    v.publish_all(
        &c,
        PeriodKey::parse("2026-03").unwrap(),
        &c.free(),
        &HashMap::new(),
    );
    (c, v)
}

fn epoch(v: &OrgView) -> u64 {
    v.epoch(0).unwrap()
}

#[test]
fn a_record_from_an_older_epoch_never_lands_after_a_reset() {
    let (c, v) = view();
    let before = epoch(&v);
    v.add_used(0, before, 10);
    assert_eq!(v.used(0), 10);
    // A forced reset: a new epoch at 0; the late record of the old epoch is ignored.
    let mut zero = HashMap::new();
    zero.insert(Metric::api_call(), 0);
    v.publish_all(&c, v.period(), &c.free(), &zero);
    v.add_used(0, before, 12);
    assert_eq!(v.used(0), 0);
    v.add_used(0, epoch(&v), 3);
    assert_eq!(v.used(0), 3);
    assert!(v.check(0, 997, 0).decision.allow);
    assert!(!v.check(0, 998, 0).decision.allow);
}

#[test]
fn consumes_admit_exactly_the_included_amount_across_threads() {
    let (_, v) = view();
    let v = Arc::new(v);
    let allowed: u64 = (0..8)
        .map(|_| {
            let v = v.clone();
            std::thread::spawn(move || {
                (0..500)
                    .filter(|_| v.consume(0, 1, 0).decision.allow)
                    .count()
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().unwrap() as u64)
        .sum();
    assert_eq!(allowed, 1_000, "the free plan includes 1,000 calls");
    assert_eq!(v.used(0), 1_000);
    let taken = v.take_pending();
    assert_eq!(taken.consumed, vec![(0, 1_000)]);
    assert_eq!(taken.period.to_string(), "2026-03");
    assert!(v.take_pending().consumed.is_empty(), "taken once");
}

#[test]
fn a_consume_reports_the_remaining_after_it_and_a_denial_counts_nothing() {
    let (_, v) = view();
    v.add_used(0, epoch(&v), 997);
    let first = v.consume(0, 2, 0);
    assert!(first.decision.allow);
    assert_eq!(first.decision.remaining, 1);
    assert!(first.queue, "the first pending units queue the view");
    assert!(!v.consume(0, 1, 0).queue, "queued once");
    let denied = v.consume(0, 5, 0);
    assert!(!denied.decision.allow);
    assert_eq!(v.used(0), 1_000);
    assert_eq!(v.take_pending().consumed, vec![(0, 3)]);
}

#[test]
fn a_new_epoch_hands_over_what_was_pending_with_its_period() {
    let (c, v) = view();
    v.consume(0, 4, 0);
    let april = PeriodKey::parse("2026-04").unwrap();
    let left = v.publish_all(&c, april, &c.free(), &HashMap::new());
    assert_eq!(left.period.to_string(), "2026-03");
    assert_eq!(left.consumed, vec![(0, 4)]);
    assert!(v.take_pending().consumed.is_empty());
    let next = v.consume(0, 1, 0);
    assert_eq!(next.period, april);
    assert_eq!(v.used(0), 1);
}

#[test]
fn a_refund_gives_units_back_and_can_leave_a_negative_count_to_persist() {
    let (c, v) = view();
    let consumed = v.consume(0, 5, 0);
    assert_eq!(v.take_pending().consumed, vec![(0, 5)]);
    assert_eq!(v.refund(0, consumed.epoch, 5), Refund::Done { queue: true });
    assert_eq!(v.used(0), 0);
    assert_eq!(v.take_pending().consumed, vec![(0, -5)]);
    // After a new epoch, a refund of the old one is the caller's to persist.
    let old = v.consume(0, 1, 0);
    v.publish_all(&c, v.period(), &c.free(), &HashMap::new());
    assert_eq!(v.refund(0, old.epoch, 1), Refund::Late);
}

/// What a batch that skips the actor relies on (`quota::direct`): the stamp names the
/// epoch and period its records count in, changes with every move of the counters, and
/// is gone once the actor retired.
#[test]
fn the_stamp_changes_with_every_move_and_is_gone_after_retirement() {
    let (c, v) = view();
    let first = v.stamp().unwrap();
    assert_eq!(first >> 32, epoch(&v), "the stamp's epoch is the counters'");
    assert_eq!(PeriodKey::from_index(first as u32), v.period());
    v.add_used(0, epoch(&v), 5);
    v.publish_plan(&c, &c.free());
    assert_eq!(v.stamp(), Some(first), "records and plans do not move it");
    v.publish_all(&c, v.period(), &c.free(), &HashMap::new());
    let reset = v.stamp().unwrap();
    assert_ne!(reset, first, "a reset moves it");
    let april = PeriodKey::parse("2026-04").unwrap();
    v.publish_all(&c, april, &c.free(), &HashMap::new());
    let rolled = v.stamp().unwrap();
    assert_ne!(rolled, reset, "a roll moves it");
    assert_eq!(PeriodKey::from_index(rolled as u32), april);
    v.retire();
    assert_eq!(v.stamp(), None);
}
