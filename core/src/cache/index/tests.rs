use super::*;

fn d(n: u32) -> BlobDigest {
    BlobDigest::parse(&format!("sha256:{n:064x}")).expect("valid")
}

#[test]
fn evicts_least_recently_used_first() {
    let mut ix = Index::new(100);
    assert!(ix.insert(d(1), 30).is_empty());
    assert!(ix.insert(d(2), 30).is_empty());
    assert!(ix.insert(d(3), 30).is_empty());
    assert_eq!((ix.len(), ix.used()), (3, 90));
    // Using 1 makes 2 the oldest.
    assert_eq!(ix.get(&d(1)), Some(30));
    assert_eq!(ix.insert(d(4), 30), vec![d(2)]);
    assert!(!ix.contains(&d(2)) && ix.contains(&d(1)));
    assert_eq!(ix.insert(d(5), 70), vec![d(3), d(1)]);
    assert_eq!((ix.len(), ix.used()), (2, 100));
    assert_eq!(ix.get(&d(2)), None);
}

#[test]
fn contains_does_not_touch() {
    let mut ix = Index::new(60);
    ix.insert(d(1), 30);
    ix.insert(d(2), 30);
    assert!(ix.contains(&d(1)));
    assert_eq!(ix.insert(d(3), 30), vec![d(1)]);
}

#[test]
fn never_evicts_the_new_entry_and_refuses_one_past_max() {
    let mut ix = Index::new(100);
    ix.insert(d(1), 10);
    assert_eq!(ix.insert(d(2), 100), vec![d(1)]);
    assert_eq!((ix.len(), ix.used()), (1, 100));
    assert_eq!(ix.insert(d(3), 101), vec![d(3)]);
    assert!(ix.contains(&d(2)), "a refused entry evicts nothing");
    // Re-inserting an entry too big drops the old one of that digest.
    assert_eq!(ix.insert(d(2), 101), vec![d(2)]);
    assert_eq!((ix.len(), ix.used()), (0, 0));
    assert!(ix.fits(100) && !ix.fits(101));
}

#[test]
fn reinsert_updates_size_and_use() {
    let mut ix = Index::new(100);
    ix.insert(d(1), 40);
    ix.insert(d(2), 40);
    assert!(ix.insert(d(1), 50).is_empty());
    assert_eq!(ix.used(), 90);
    assert_eq!(ix.insert(d(3), 10), vec![]);
    assert_eq!(ix.insert(d(4), 10), vec![d(2)]);
}

#[test]
fn reservations_make_room_and_count_against_inserts() {
    let mut ix = Index::new(100);
    ix.insert(d(1), 40);
    ix.insert(d(2), 40);
    assert_eq!(ix.reserve(30), vec![d(1)]);
    assert_eq!((ix.used(), ix.reserved()), (40, 30));
    // The fill ends: its room becomes its entry.
    ix.unreserve(30);
    assert!(ix.insert(d(3), 30).is_empty());
    assert_eq!((ix.used(), ix.reserved()), (70, 0));
    // With room reserved, an insert evicts others, never itself.
    assert_eq!(ix.reserve(60), vec![d(2)]);
    assert_eq!(ix.used(), 30);
    assert_eq!(ix.insert(d(4), 50), vec![d(3)]);
    assert_eq!(
        (ix.len(), ix.used()),
        (1, 50),
        "over max while the fill runs"
    );
    ix.unreserve(1000);
    assert_eq!(ix.reserved(), 0, "saturates");
}

#[test]
fn remove_forgets() {
    let mut ix = Index::new(100);
    ix.insert(d(1), 40);
    assert_eq!(ix.remove(&d(1)), Some(40));
    assert_eq!(ix.remove(&d(1)), None);
    assert!(ix.is_empty());
    assert_eq!(ix.used(), 0);
}

#[test]
fn load_keeps_the_newest_that_fit() {
    let mut ix = Index::new(100);
    let listed = (1..=6).map(|n| (d(n), 30));
    let mut evicted = ix.load(listed);
    assert_eq!(evicted, vec![d(1), d(2), d(3)]);
    assert_eq!((ix.len(), ix.used()), (3, 90));
    // The oldest loaded is the next to go.
    assert_eq!(ix.insert(d(7), 30), vec![d(4)]);
    let mut ix = Index::new(100);
    evicted = ix.load([(d(1), 10), (d(2), 500), (d(1), 20), (d(3), 80)]);
    assert_eq!(evicted, vec![d(2)], "too big, and a repeat is one entry");
    assert_eq!((ix.len(), ix.used()), (2, 100));
}

/// A model check: random operations agree with a naive list.
#[test]
fn agrees_with_a_naive_model() {
    let mut ix = Index::new(1000);
    let mut model: Vec<(u32, u64)> = Vec::new(); // oldest first
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..20_000 {
        let key = (next() % 40) as u32;
        match next() % 4 {
            0 | 1 => {
                let size = next() % 300;
                let got = ix.insert(d(key), size);
                model.retain(|&(k, _)| k != key);
                model.push((key, size));
                let mut want = Vec::new();
                while model.iter().map(|e| e.1).sum::<u64>() > 1000 {
                    let i = model.iter().position(|&(k, _)| k != key).expect("other");
                    want.push(d(model.remove(i).0));
                }
                assert_eq!(got, want);
            }
            2 => {
                let got = ix.get(&d(key));
                let want = model.iter().position(|&(k, _)| k == key).map(|i| {
                    let e = model.remove(i);
                    model.push(e);
                    e.1
                });
                assert_eq!(got, want);
            }
            _ => {
                let want = model
                    .iter()
                    .position(|&(k, _)| k == key)
                    .map(|i| model.remove(i).1);
                assert_eq!(ix.remove(&d(key)), want);
            }
        }
        assert_eq!(ix.len(), model.len());
        assert_eq!(ix.used(), model.iter().map(|e| e.1).sum::<u64>());
    }
}

/// 100,000 entries, each touched and replaced: O(log n) per operation.
#[test]
fn holds_a_hundred_thousand_entries() {
    let mut ix = Index::new(100_000 * 10);
    assert!(ix.load((0..100_000).map(|n| (d(n), 10))).is_empty());
    for n in (0..100_000).step_by(7) {
        assert_eq!(ix.get(&d(n)), Some(10));
    }
    let evicted = ix.insert(d(200_000), 1000);
    assert_eq!(evicted.len(), 100);
    assert_eq!(evicted.first(), Some(&d(1)), "0 was touched");
}
