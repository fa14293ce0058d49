//! Tests of the verified-credential cache and the hash pool.
#![allow(clippy::unwrap_used)]

use super::*;

fn db(user: &str, pass: &str) -> Htpasswd {
    let hash = bcrypt::hash(pass, 4).expect("bcrypt");
    Htpasswd::parse(&format!("{user}:{hash}\n")).expect("valid htpasswd")
}

const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

fn no_limit() -> Limiter {
    Limiter::new(0, Duration::from_secs(60), 16)
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
        .build()
        .expect("runtime")
        .block_on(f)
}

#[test]
fn hashes_once_then_serves_from_cache() {
    let users = db("alice", "pw");
    let v = Verifier::start(Duration::from_secs(60), 1, 8, no_limit()).expect("start");
    let local = LocalVerifier::new(v.clone());
    let good = Credentials::new("alice", b"pw");
    let bad = Credentials::new("alice", b"nope");
    block_on(async {
        assert_eq!(local.authenticate(&users, &good, IP).await, Ok(()));
        assert_eq!(local.authenticate(&users, &good, IP).await, Ok(()));
        assert_eq!(
            local.authenticate(&users, &bad, IP).await,
            Err(AuthFailure::Invalid)
        );
    });
    assert_eq!(v.hash_runs(), 2);
}

#[test]
fn other_worker_reuses_shared_entry() {
    let users = db("alice", "pw");
    let v = Verifier::start(Duration::from_secs(60), 1, 8, no_limit()).expect("start");
    let a = LocalVerifier::new(v.clone());
    let b = LocalVerifier::new(v.clone());
    let good = Credentials::new("alice", b"pw");
    block_on(async {
        assert_eq!(a.authenticate(&users, &good, IP).await, Ok(()));
        assert_eq!(b.authenticate(&users, &good, IP).await, Ok(()));
    });
    assert_eq!(v.hash_runs(), 1);
}

#[test]
fn changed_password_invalidates_at_once() {
    let v = Verifier::start(Duration::from_secs(60), 1, 8, no_limit()).expect("start");
    let local = LocalVerifier::new(v.clone());
    let old = Credentials::new("alice", b"pw");
    let new = Credentials::new("alice", b"pw2");
    block_on(async {
        let v1 = db("alice", "pw");
        assert_eq!(local.authenticate(&v1, &old, IP).await, Ok(()));
        let v2 = db("alice", "pw2");
        assert_eq!(
            local.authenticate(&v2, &old, IP).await,
            Err(AuthFailure::Invalid)
        );
        assert_eq!(local.authenticate(&v2, &new, IP).await, Ok(()));
        let v3 = db("bob", "pw2");
        assert_eq!(
            local.authenticate(&v3, &new, IP).await,
            Err(AuthFailure::Invalid)
        );
    });
}

#[test]
fn expired_entry_is_hashed_again() {
    let users = db("alice", "pw");
    let v = Verifier::start(Duration::from_millis(1), 1, 8, no_limit()).expect("start");
    let local = LocalVerifier::new(v.clone());
    let good = Credentials::new("alice", b"pw");
    block_on(async {
        assert_eq!(local.authenticate(&users, &good, IP).await, Ok(()));
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(local.authenticate(&users, &good, IP).await, Ok(()));
    });
    assert_eq!(v.hash_runs(), 2);
}

#[test]
fn unknown_user_costs_a_hash_and_fails() {
    let users = db("alice", "pw");
    let v = Verifier::start(Duration::from_secs(60), 1, 8, no_limit()).expect("start");
    let local = LocalVerifier::new(v.clone());
    block_on(async {
        let who = Credentials::new("mallory", b"pw");
        assert_eq!(
            local.authenticate(&users, &who, IP).await,
            Err(AuthFailure::Invalid)
        );
    });
    assert_eq!(v.hash_runs(), 1);
}

#[test]
fn limit_stops_hash_work_but_not_cached_users() {
    let users = db("alice", "pw");
    let limiter = Limiter::new(2, Duration::from_secs(60), 16);
    let v = Verifier::start(Duration::from_secs(60), 1, 8, limiter).expect("start");
    let local = LocalVerifier::new(v.clone());
    let good = Credentials::new("alice", b"pw");
    block_on(async {
        assert_eq!(local.authenticate(&users, &good, IP).await, Ok(()));
        for guess in [b"x1", b"x2"] {
            let bad = Credentials::new("alice", guess);
            assert_eq!(
                local.authenticate(&users, &bad, IP).await,
                Err(AuthFailure::Invalid)
            );
        }
        let bad = Credentials::new("alice", b"x3");
        assert!(matches!(
            local.authenticate(&users, &bad, IP).await,
            Err(AuthFailure::Limited(_))
        ));
        // Still served from the cache while the address is blocked.
        assert_eq!(local.authenticate(&users, &good, IP).await, Ok(()));
    });
    assert_eq!(v.hash_runs(), 3);
}

#[test]
fn cheap_schemes_are_checked_inline_with_the_same_accounting() {
    // `htpasswd -nbm dave x`
    let users = Htpasswd::parse("dave:$apr1$HRIsn3nP$Y6tKzox320eJmP6PjdD3s.\n")
        .expect("valid")
        .with_unknown_user_dummy();
    let limiter = Limiter::new(2, Duration::from_secs(60), 16);
    // No hash threads would be needed: a queue of 0 refuses every job,
    // so any pooled check would come back Busy.
    let v = Verifier::start(Duration::from_secs(60), 1, 0, limiter).expect("start");
    let local = LocalVerifier::new(v.clone());
    block_on(async {
        let good = Credentials::new("dave", b"x");
        assert_eq!(local.authenticate(&users, &good, IP).await, Ok(()));
        let unknown = Credentials::new("mallory", b"x");
        assert_eq!(
            local.authenticate(&users, &unknown, IP).await,
            Err(AuthFailure::Invalid)
        );
        let wrong = Credentials::new("dave", b"y");
        assert_eq!(
            local.authenticate(&users, &wrong, IP).await,
            Err(AuthFailure::Invalid)
        );
        // Two failures: the address is limited, inline as in the pool.
        let again = Credentials::new("dave", b"z");
        assert!(matches!(
            local.authenticate(&users, &again, IP).await,
            Err(AuthFailure::Limited(_))
        ));
    });
    assert_eq!(v.hash_runs(), 3);
}

#[test]
fn unknown_users_go_through_the_pool_at_the_files_cost() {
    let hash = bcrypt::hash("pw", 4).expect("bcrypt");
    let users = Htpasswd::parse(&format!("alice:{hash}\n"))
        .expect("valid")
        .with_unknown_user_dummy();
    assert_eq!(
        users.unknown_user_dummy().and_then(|d| d.bcrypt_cost()),
        Some(4)
    );
    let v = Verifier::start(Duration::from_secs(60), 1, 8, no_limit()).expect("start");
    let local = LocalVerifier::new(v.clone());
    block_on(async {
        let who = Credentials::new("mallory", b"pw");
        assert_eq!(
            local.authenticate(&users, &who, IP).await,
            Err(AuthFailure::Invalid)
        );
    });
    assert_eq!(v.hash_runs(), 1);
}

#[test]
fn a_full_queue_still_takes_known_good_pairs() {
    let users = db("alice", "pw");
    let limiter = Limiter::new(100, Duration::from_secs(60), 64);
    // Fill the normal lane as a flood from many addresses would, with
    // checks slow enough (bcrypt cost 11, ~100 ms each on one thread)
    // that it is still full when alice's logins arrive.
    let slow = dummy_hash(11);
    let v = Verifier::start(Duration::from_secs(60), 1, 4, limiter).expect("start");
    let runner: IpAddr = "192.0.2.10".parse().unwrap();
    v.limiter
        .lock()
        .unwrap()
        .record_success(runner, "alice", Instant::now());
    let job = |check: &PasswordHash| Job {
        key: [0; 32],
        password: zeroize::Zeroizing::new(Vec::new()),
        check: check.clone(),
        real: false,
        attempt: v
            .limiter
            .lock()
            .unwrap()
            .begin(IP, None, Instant::now())
            .unwrap(),
    };
    // Keep the one hash thread busy first (cost 13, hundreds of ms), so
    // that it cannot take a job off the full lane below before the
    // stranger's check arrives, however late the thread got going.
    let busy = IpKey::of("192.0.2.99".parse().unwrap());
    v.enqueue(Lane::Normal, busy, job(&dummy_hash(13)))
        .expect("room");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !v.pool.queue.lock().unwrap().jobs.is_empty() {
        assert!(Instant::now() < deadline, "the hash thread never started");
        std::thread::sleep(Duration::from_millis(1));
    }
    {
        let mut state = v.pool.queue.lock().unwrap();
        for i in 0..10u32 {
            let addr = IpKey::of(IpAddr::V4(std::net::Ipv4Addr::from(i)));
            let _ = state.jobs.push(Lane::Normal, addr, job(&slow));
        }
        assert_eq!(state.jobs.len(), 3, "a quarter is held back");
    }
    block_on(async {
        let local = LocalVerifier::new(v.clone());
        let good = Credentials::new("alice", b"pw");
        // From a new address: no room.
        let stranger: IpAddr = "203.0.113.1".parse().unwrap();
        assert_eq!(
            local.authenticate(&users, &good, stranger).await,
            Err(AuthFailure::Busy)
        );
        // From the runner: the reserve.
        assert_eq!(local.authenticate(&users, &good, runner).await, Ok(()));
    });
}

#[test]
fn keys_depend_on_user_and_password() {
    let v = Verifier::start(Duration::from_secs(60), 1, 8, no_limit()).expect("start");
    let k1 = v.key_of(&Credentials::new("alice", b"pw"));
    let k2 = v.key_of(&Credentials::new("alice", b"pw "));
    let k3 = v.key_of(&Credentials::new("alic", b"epw"));
    assert_ne!(k1, k2);
    assert_ne!(k1, k3);
}
