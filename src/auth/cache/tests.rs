//! Tests of the verified-credential cache and the hash pool.
#![allow(clippy::unwrap_used)]

use super::*;

/// A file of one bcrypt cost-4 user, loaded as for serving.
fn db(user: &str, pass: &str) -> Htpasswd {
    let hash = bcrypt::hash(pass, 4).expect("bcrypt");
    Htpasswd::parse(&format!("{user}:{hash}\n"))
        .expect("valid htpasswd")
        .with_unknown_user_dummy()
}

// `htpasswd -nbs carol x` and `htpasswd -nbm dave x`.
const SHA_CAROL: &str = "carol:{SHA}EfatjsUqKYSrqv18O1FlA3hcIHI=\n";
const APR1_DAVE: &str = "dave:$apr1$HRIsn3nP$Y6tKzox320eJmP6PjdD3s.\n";

/// A file mixing costs, loaded as for serving: carol ({SHA}), dave (apr1),
/// bob (bcrypt cost 4) and erin (bcrypt `erin_cost`, the costliest), all
/// with the password `x`.
fn mixed(erin_cost: u32) -> Htpasswd {
    let bob = bcrypt::hash("x", 4).expect("bcrypt");
    let erin = bcrypt::hash("x", erin_cost).expect("bcrypt");
    Htpasswd::parse(&format!("{SHA_CAROL}{APR1_DAVE}bob:{bob}\nerin:{erin}\n"))
        .expect("valid htpasswd")
        .with_unknown_user_dummy()
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
        check: Some(check.clone()),
        real: false,
        pad: None,
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

/// (hash runs, padding runs) that one check of `user` with `password`
/// added, and its answer.
fn runs_of(
    v: &Verifier,
    local: &LocalVerifier,
    users: &Htpasswd,
    (user, password): (&str, &str),
) -> (u64, u64, Result<(), AuthFailure>) {
    let (hashes, padding) = (v.hash_runs(), v.padding_runs());
    let creds = Credentials::new(user, password.as_bytes());
    let answer = block_on(local.authenticate(users, &creds, IP));
    (v.hash_runs() - hashes, v.padding_runs() - padding, answer)
}

#[test]
fn failures_of_cheaper_users_also_run_the_standin_and_successes_do_not() {
    let users = mixed(5);
    assert_eq!(
        users.unknown_user_dummy().and_then(|d| d.bcrypt_cost()),
        Some(5)
    );
    // No cache: every success below is checked again.
    let v = Verifier::start(Duration::ZERO, 1, 8, no_limit()).expect("start");
    let local = LocalVerifier::new(v.clone());
    let bad = Err(AuthFailure::Invalid);
    for user in ["carol", "dave", "bob"] {
        // Cheaper than the stand-in: a success runs only the user's hash,
        // a failure the stand-in too.
        assert_eq!(
            runs_of(&v, &local, &users, (user, "x")),
            (1, 0, Ok(())),
            "{user}"
        );
        assert_eq!(
            runs_of(&v, &local, &users, (user, "y")),
            (2, 1, bad),
            "{user}"
        );
    }
    // The costliest user and unknown users cost one check of that price.
    assert_eq!(runs_of(&v, &local, &users, ("erin", "x")), (1, 0, Ok(())));
    assert_eq!(runs_of(&v, &local, &users, ("erin", "y")), (1, 0, bad));
    assert_eq!(runs_of(&v, &local, &users, ("mallory", "x")), (1, 0, bad));
}

#[test]
fn padding_goes_through_the_queue_and_the_limiter_like_an_unknown_user() {
    let users = mixed(5);
    // A queue of 0 refuses every pooled check: the stand-in's runs are
    // pooled checks, so a cheap user's failure gets the unknown user's
    // Busy, while her success never needs the pool.
    let v = Verifier::start(Duration::ZERO, 1, 0, no_limit()).expect("start");
    let local = LocalVerifier::new(v.clone());
    let busy = Err(AuthFailure::Busy);
    assert_eq!(runs_of(&v, &local, &users, ("carol", "x")), (1, 0, Ok(())));
    assert_eq!(runs_of(&v, &local, &users, ("carol", "y")).2, busy);
    assert_eq!(runs_of(&v, &local, &users, ("mallory", "y")).2, busy);
    // One limiter charge per padded failure, as for any failure.
    let limiter = Limiter::new(2, Duration::from_secs(60), 16);
    let v = Verifier::start(Duration::ZERO, 1, 8, limiter).expect("start");
    let local = LocalVerifier::new(v.clone());
    let bad = Err(AuthFailure::Invalid);
    assert_eq!(runs_of(&v, &local, &users, ("carol", "y")), (2, 1, bad));
    assert_eq!(runs_of(&v, &local, &users, ("carol", "z")), (2, 1, bad));
    assert!(matches!(
        runs_of(&v, &local, &users, ("carol", "w")),
        (0, 0, Err(AuthFailure::Limited(_)))
    ));
}

#[test]
fn the_padding_follows_the_file_as_loaded() {
    let bad = Err(AuthFailure::Invalid);
    // A queue of 0: any pooled check would come back Busy.
    let v = Verifier::start(Duration::ZERO, 1, 0, no_limit()).expect("start");
    let local = LocalVerifier::new(v.clone());
    // Alone, carol's hash is the costliest kind: nothing to pad.
    let alone = Htpasswd::parse(SHA_CAROL)
        .expect("valid")
        .with_unknown_user_dummy();
    assert_eq!(runs_of(&v, &local, &alone, ("carol", "y")), (1, 0, bad));
    // Next to apr1, the apr1 stand-in pads her failure, inline as cheap
    // checks run.
    let with_apr1 = Htpasswd::parse(&format!("{SHA_CAROL}{APR1_DAVE}"))
        .expect("valid")
        .with_unknown_user_dummy();
    assert_eq!(runs_of(&v, &local, &with_apr1, ("carol", "y")), (2, 1, bad));
    // Next to bcrypt, the bcrypt stand-in, on the pool.
    let v = Verifier::start(Duration::ZERO, 1, 8, no_limit()).expect("start");
    let local = LocalVerifier::new(v.clone());
    assert_eq!(runs_of(&v, &local, &mixed(4), ("carol", "y")), (2, 1, bad));
}

/// Polls two futures on one task until both are done.
async fn both<A: std::future::Future, B: std::future::Future>(
    a: A,
    b: B,
) -> (A::Output, B::Output) {
    use std::task::Poll;
    let (mut a, mut b) = (std::pin::pin!(a), std::pin::pin!(b));
    let (mut ra, mut rb) = (None, None);
    std::future::poll_fn(|cx| {
        if ra.is_none() {
            ra = match a.as_mut().poll(cx) {
                Poll::Ready(v) => Some(v),
                Poll::Pending => None,
            };
        }
        if rb.is_none() {
            rb = match b.as_mut().poll(cx) {
                Poll::Ready(v) => Some(v),
                Poll::Pending => None,
            };
        }
        match (ra.take(), rb.take()) {
            (Some(x), Some(y)) => Poll::Ready((x, y)),
            (x, y) => {
                (ra, rb) = (x, y);
                Poll::Pending
            }
        }
    })
    .await
}

#[test]
fn identical_padded_failures_in_flight_share_one_run_as_unknown_users_do() {
    // A stand-in slow enough (bcrypt cost 10, tens of ms) to be in flight
    // when the second request looks.
    let users = mixed(10);
    let v = Verifier::start(Duration::ZERO, 1, 8, no_limit()).expect("start");
    let local = LocalVerifier::new(v.clone());
    let bad = Err(AuthFailure::Invalid);
    for (user, own_runs, padding_runs) in [("carol", 1, 1), ("mallory", 0, 0)] {
        let (before, padded) = (v.hash_runs(), v.padding_runs());
        let creds = Credentials::new(user, b"y");
        let answers = block_on(both(
            local.authenticate(&users, &creds, IP),
            local.authenticate(&users, &creds, IP),
        ));
        assert_eq!(answers, (bad, bad), "{user}");
        // One stand-in run for the pair; carol's own {SHA} check ran once,
        // for the first request only.
        assert_eq!(v.hash_runs() - before, own_runs + 1, "{user}");
        assert_eq!(v.padding_runs() - padded, padding_runs, "{user}");
    }
}
