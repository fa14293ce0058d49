use super::*;

fn d(n: u32) -> BlobDigest {
    BlobDigest::parse(&format!("sha256:{n:064x}")).expect("valid")
}

const S: Duration = Duration::from_secs(1);

#[test]
fn fresh_then_stale_then_unknown() {
    let mut c = Confirmations::default();
    let t0 = Instant::now();
    assert_eq!(c.check("a", &d(1), t0, S, S), Confirmed::Unknown);
    c.record("a", &d(1), t0);
    let (ttl, stale) = (10 * S, 60 * S);
    assert_eq!(c.check("a", &d(1), t0, ttl, stale), Confirmed::Fresh);
    assert_eq!(
        c.check("a", &d(1), t0 + 9 * S, ttl, stale),
        Confirmed::Fresh
    );
    assert_eq!(
        c.check("a", &d(1), t0 + 10 * S, ttl, stale),
        Confirmed::Stale
    );
    assert_eq!(
        c.check("a", &d(1), t0 + 59 * S, ttl, stale),
        Confirmed::Stale
    );
    assert_eq!(
        c.check("a", &d(1), t0 + 60 * S, ttl, stale),
        Confirmed::Unknown
    );
    // A clock handed in from before the record counts as age 0.
    assert_eq!(
        c.check("a", &d(1), t0 - S.min(t0.elapsed()), ttl, stale),
        Confirmed::Fresh
    );
}

#[test]
fn defaults_of_zero_are_never_fresh_nor_stale() {
    let mut c = Confirmations::default();
    let t0 = Instant::now();
    c.record("a", &d(1), t0);
    let zero = Duration::ZERO;
    assert_eq!(c.check("a", &d(1), t0, zero, zero), Confirmed::Unknown);
    assert_eq!(c.check("a", &d(1), t0, zero, S), Confirmed::Stale);
    assert_eq!(c.check("a", &d(1), t0 + S, zero, S), Confirmed::Unknown);
    // stale_if_error shorter than the ttl: never stale.
    assert_eq!(c.check("a", &d(1), t0 + 2 * S, 3 * S, S), Confirmed::Fresh);
    assert_eq!(
        c.check("a", &d(1), t0 + 3 * S, 3 * S, S),
        Confirmed::Unknown
    );
}

#[test]
fn per_repository_and_digest() {
    let mut c = Confirmations::default();
    let t0 = Instant::now();
    c.record("a", &d(1), t0);
    assert_eq!(c.check("b", &d(1), t0, S, S), Confirmed::Unknown);
    assert_eq!(c.check("a", &d(2), t0, S, S), Confirmed::Unknown);
    c.record("b", &d(1), t0);
    c.forget("a", &d(1));
    assert_eq!(c.check("a", &d(1), t0, S, S), Confirmed::Unknown);
    assert_eq!(c.check("b", &d(1), t0, S, S), Confirmed::Fresh);
    c.forget("a", &d(1));
    c.forget("z", &d(9));
    assert_eq!(c.len(), 1);
}

#[test]
fn bounded_forgetting_the_least_recently_recorded() {
    let mut c = Confirmations::new(3);
    let t0 = Instant::now();
    for n in 1..=3 {
        c.record("a", &d(n), t0);
    }
    c.record("a", &d(1), t0 + S); // renewed: 2 is now the oldest
    c.record("a", &d(4), t0);
    assert_eq!(c.len(), 3);
    assert_eq!(c.check("a", &d(2), t0, S, S), Confirmed::Unknown);
    for n in [1, 3, 4] {
        assert_ne!(c.check("a", &d(n), t0, S, S), Confirmed::Unknown, "{n}");
    }
    for n in 0..10_000 {
        c.record(&format!("r{n}"), &d(n), t0);
    }
    assert_eq!(c.len(), 3);
    assert_eq!(c.by_digest.len(), 3, "no empty inner maps left");
}
