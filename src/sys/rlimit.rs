//! Resource limits. A proxy holds two descriptors per request in flight (the
//! client's and the upstream's) plus pipes for splice, so the 1024 soft
//! RLIMIT_NOFILE most distributions start processes with caps it at a few
//! hundred clients. The hard limit is what the administrator allows; raising
//! the soft limit to it is what nginx's `worker_rlimit_nofile` and systemd's
//! own services do. Running out anyway shows as EMFILE or ENFILE
//! ([`is_descriptor_exhaustion`]).

use rustix::io::Errno;
use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};

/// What [`raise_nofile`] found and did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NofileRaise {
    /// Soft limit before.
    pub before: u64,
    /// Soft limit now (equal to `before` when nothing changed or it failed).
    pub after: u64,
    /// The hard limit.
    pub hard: u64,
}

/// Raises the soft RLIMIT_NOFILE to the hard limit. Never lowers it; an
/// error leaves the limit as it was.
pub fn raise_nofile() -> std::io::Result<NofileRaise> {
    let (soft, hard) = nofile();
    if soft >= hard {
        return Ok(NofileRaise {
            before: soft,
            after: soft,
            hard,
        });
    }
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(hard),
            maximum: Some(hard),
        },
    )?;
    let (after, hard) = nofile();
    Ok(NofileRaise {
        before: soft,
        after,
        hard,
    })
}

/// The (soft, hard) RLIMIT_NOFILE; "unlimited" reads as `u64::MAX`.
pub fn nofile() -> (u64, u64) {
    let l = getrlimit(Resource::Nofile);
    (l.current.unwrap_or(u64::MAX), l.maximum.unwrap_or(u64::MAX))
}

/// Whether `e` says the process (EMFILE) or the system (ENFILE) has no
/// descriptor left to give: what the descriptor budget exists to avoid,
/// and what callers answer by shedding or falling back, never by retrying
/// at once.
pub fn is_descriptor_exhaustion(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(code) if code == Errno::MFILE.raw_os_error() || code == Errno::NFILE.raw_os_error()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raise_reaches_the_hard_limit_and_never_lowers() {
        let (soft, hard) = nofile();
        let r = raise_nofile().expect("raise");
        assert_eq!(r.before, soft);
        assert_eq!(r.hard, hard);
        assert_eq!(r.after, hard);
        let (now, _) = nofile();
        assert_eq!(now, hard);
    }

    #[test]
    fn emfile_and_enfile_are_exhaustion_and_nothing_else_is() {
        let os = std::io::Error::from_raw_os_error;
        assert!(is_descriptor_exhaustion(&os(Errno::MFILE.raw_os_error())));
        assert!(is_descriptor_exhaustion(&os(Errno::NFILE.raw_os_error())));
        assert!(!is_descriptor_exhaustion(&os(
            Errno::CONNREFUSED.raw_os_error()
        )));
        assert!(!is_descriptor_exhaustion(
            &std::io::ErrorKind::TimedOut.into()
        ));
    }
}
