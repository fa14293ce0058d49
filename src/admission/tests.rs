#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use super::*;

fn admission(limit: usize) -> Rc<Admission> {
    with_budget(limit, 1_000_000)
}

fn with_budget(limit: usize, fds: usize) -> Rc<Admission> {
    Admission::new(
        limit,
        fds,
        HEADER,
        Arc::new(vec![StateGauges::default()]),
        0,
    )
}

const HEADER: Duration = Duration::from_secs(10);

#[test]
fn expire_closes_fresh_connections_past_the_header_timeout_only() {
    let a = admission(10);
    let (old, _) = a.admit().unwrap();
    let (served, _) = a.admit().unwrap();
    served.busy();
    served.waiting(false);
    let (busy, _) = a.admit().unwrap();
    busy.busy();
    let now = Instant::now();
    assert_eq!(a.expire(now), 0, "nothing is late yet");
    let (young, _) = a.admit().unwrap();
    // The first three were admitted before `now`; `young` after.
    assert_eq!(a.expire(now + HEADER), 1);
    assert!(old.shed.get());
    assert!(!served.shed.get() && !busy.shed.get() && !young.shed.get());
    assert_eq!(a.expire(now + HEADER + Duration::from_secs(1)), 1);
    assert!(young.shed.get());
}

fn gauges(a: &Admission) -> (u64, u64, u64) {
    let g = &a.gauges[0];
    (
        g.head.load(Ordering::Relaxed),
        g.idle.load(Ordering::Relaxed),
        g.active.load(Ordering::Relaxed),
    )
}

#[test]
fn limits_derive_from_the_descriptor_limit() {
    // 20,000 descriptors, 2 workers: (20000 - 96) / 2.
    let l = Limits::resolve(None, None, 20_000, 2);
    assert_eq!(l.max_connections, 9_952);
    assert_eq!(l.per_worker, 4_976);
    assert_eq!(l.per_ip, Some(2_488));
    // The common soft limit: a few hundred, per-address floor 256.
    let l = Limits::resolve(None, None, 1_024, 2);
    assert_eq!(l.max_connections, 464);
    assert_eq!(l.per_ip, Some(256));
    // Explicit values win; per-address 0 is off; odd splits round up.
    let l = Limits::resolve(Some(1001), Some(0), 1_024, 2);
    assert_eq!(
        (l.max_connections, l.per_worker, l.per_ip),
        (1001, 501, None)
    );
    // A limit below the reserve still admits something.
    assert_eq!(derive_max_connections(10, 4), 1);
    // Each worker's descriptor budget: what the cap assumes, pipes and
    // pooled registry connections included.
    assert_eq!(Limits::resolve(None, None, 1_024, 2).fds_per_worker, 464);
    assert_eq!(Limits::resolve(Some(5), None, 1_024, 2).fds_per_worker, 464);
}

#[test]
fn admits_up_to_the_limit_then_sheds_fresh_connections_oldest_first() {
    let a = admission(3);
    let (first, _) = a.admit().expect("room");
    let (second, _) = a.admit().expect("room");
    let (third, _) = a.admit().expect("room");
    assert_eq!(gauges(&a), (3, 0, 0));
    let (_fourth, shed) = a.admit().expect("room made");
    assert!(shed);
    assert!(first.shed.get(), "the oldest fresh connection goes");
    assert!(!second.shed.get() && !third.shed.get());
    drop(first);
    assert_eq!(a.open(), 3);
}

#[test]
fn sheds_by_tier_fresh_then_served_then_trusted_never_busy() {
    let a = admission(3);
    let (trusted, _) = a.admit().unwrap();
    trusted.busy();
    trusted.waiting(true);
    let (served, _) = a.admit().unwrap();
    served.busy();
    served.waiting(false);
    let (fresh, _) = a.admit().unwrap();
    assert_eq!(gauges(&a), (1, 2, 0));

    let (n1, _) = a.admit().unwrap();
    assert!(fresh.shed.get());
    drop(fresh);
    n1.busy(); // mid-request: never a victim
    let (n2, _) = a.admit().unwrap();
    assert!(served.shed.get());
    drop(served);
    n2.busy();
    let (_n3, _) = a.admit().unwrap();
    assert!(trusted.shed.get());
    drop(trusted);
    // Everyone left is busy: the newcomer is refused.
    let (n4, _) = a.admit().unwrap_or_else(|_| panic!("n3 is fresh, shed it"));
    n4.busy();
    assert_eq!(a.admit().err(), Some(Refusal::Full));
}

#[test]
fn a_connection_that_moved_on_is_not_shed_for_its_old_phase() {
    let a = admission(1);
    let (c, _) = a.admit().unwrap();
    c.busy(); // the Fresh queue entry is now stale
    assert_eq!(a.admit().err(), Some(Refusal::Full));
    c.waiting(true);
    let (_n, shed) = a.admit().unwrap();
    assert!(shed && c.shed.get());
}

#[test]
fn queues_stay_bounded_by_open_connections() {
    let a = admission(10);
    let (c, _) = a.admit().unwrap();
    for _ in 0..10_000 {
        c.busy();
        c.waiting(true);
    }
    let longest = a.queues.iter().map(|q| q.borrow().len()).max().unwrap();
    assert!(longest <= 2 * a.open() + 65, "queue grew to {longest}");
}

#[test]
fn gauges_follow_phases_and_closing() {
    let a = admission(4);
    let (c, _) = a.admit().unwrap();
    assert_eq!(gauges(&a), (1, 0, 0));
    c.busy();
    assert_eq!(gauges(&a), (0, 0, 1));
    c.waiting(false);
    assert_eq!(gauges(&a), (0, 1, 0));
    drop(c);
    assert_eq!(gauges(&a), (0, 0, 0));
    assert_eq!(a.open(), 0);
}

#[test]
fn shed_signal_completes_once_shed() {
    use std::task::{Context, Poll, Waker};
    let a = admission(1);
    let (c, _) = a.admit().unwrap();
    let mut signal = c.shed_signal();
    let mut cx = Context::from_waker(Waker::noop());
    assert_eq!(Pin::new(&mut signal).poll(&mut cx), Poll::Pending);
    let _n = a.admit().unwrap();
    assert_eq!(Pin::new(&mut signal).poll(&mut cx), Poll::Ready(()));
}

#[test]
fn a_spent_descriptor_budget_sheds_a_waiting_connection_for_the_newcomer() {
    // The cap (10) is far; the budget (3 descriptors) is what is short.
    let a = with_budget(10, 3);
    let (waiting, _) = a.admit().unwrap();
    let (busy, _) = a.admit().unwrap();
    busy.busy();
    let (registry, shed) = a.room().unwrap();
    assert!(!shed, "the budget had room for the registry connection");
    assert_eq!(a.fds().used(), 3);
    // The waiting connection's descriptor goes to the newcomer.
    let (newcomer, shed) = a.admit().unwrap();
    assert!(shed && waiting.shed.get());
    assert_eq!(a.fds().used(), 3);
    drop(waiting);
    newcomer.busy();
    // Everyone is mid-request: refused for descriptors, not for the cap.
    assert_eq!(a.admit().err(), Some(Refusal::Descriptors));
    assert!(a.room().is_none());
    drop(registry);
    assert!(a.room().is_some());
}

#[test]
fn a_request_gets_its_registry_connection_by_shedding_a_waiting_one() {
    let a = with_budget(10, 2);
    let (idle, _) = a.admit().unwrap();
    idle.busy();
    idle.waiting(true);
    let (busy, _) = a.admit().unwrap();
    busy.busy();
    let (fd, shed) = a.room().unwrap();
    assert!(
        shed && idle.shed.get(),
        "even an authenticated keep-alive one"
    );
    assert_eq!(fd.count(), 1);
    assert_eq!(a.fds().used(), 2);
}

#[test]
fn idle_holders_are_closed_before_a_waiting_connection_is_shed() {
    let a = with_budget(10, 2);
    let pooled: Rc<RefCell<Vec<FdLease>>> = Rc::default();
    pooled.borrow_mut().push(a.fds().try_take(1).unwrap());
    let pool = pooled.clone();
    a.fds().on_short(move || pool.borrow_mut().pop().is_some());
    let (waiting, _) = a.admit().unwrap();
    // Full: the pooled descriptor is closed for the newcomer, not waiting.
    let (newcomer, shed) = a.admit().unwrap();
    assert!(!shed && !waiting.shed.get());
    assert!(pooled.borrow().is_empty());
    newcomer.busy();
    // The kernel says EMFILE anyway: nothing idle is left to close, and
    // the waiting connection is shed for whoever needs its descriptor.
    assert_eq!(a.reclaim_idle(), 0);
    assert!(a.shed_one() && waiting.shed.get());
    assert!(!a.shed_one(), "the newcomer is busy");
}

#[test]
fn counted_address_skips_balancers_that_name_clients_per_request() {
    let peer: IpAddr = "10.0.0.5".parse().unwrap();
    let client: IpAddr = "192.0.2.9".parse().unwrap();
    let mut fwd = ForwardingConfig::default();
    assert_eq!(counted_address(peer, None, &fwd), Some(peer));
    fwd.trust_forwarded_headers = true;
    assert_eq!(counted_address(peer, None, &fwd), None);
    fwd.trusted_proxies = vec!["10.0.0.0/8".parse().unwrap()];
    assert_eq!(counted_address(peer, None, &fwd), None);
    assert_eq!(counted_address(client, None, &fwd), Some(client));
    // A PROXY header names the client before any request.
    assert_eq!(counted_address(peer, Some(client), &fwd), Some(client));
    fwd.trust_forwarded_headers = false;
    assert_eq!(counted_address(peer, None, &fwd), None);
}
