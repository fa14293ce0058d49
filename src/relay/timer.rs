//! One timer per connection, re-armed for each wait of its requests.
//!
//! `monoio::time::timeout` makes a timer entry for every wait: built, filed
//! in the timer wheel on its first poll, taken out again when the wait ends,
//! and moved along with the future it guards (the entry is 640 bytes,
//! cache-padded). An authenticated small request waits four times (its
//! head, the request head's write, the registry's head, the response's
//! write).
//!
//! A connection keeps one entry instead, boxed at its first timed wait, and
//! each wait moves its deadline. Moving a deadline later is a store: monoio,
//! like tokio, files the entry again only when its old deadline comes round
//! and finds a later one; moving it earlier files it again at once. So a
//! wait costs a clock read and, at most, one re-filing. Measured with
//! `bench/profile`: 4% fewer instructions per plain small request, 3% over
//! TLS (bench/journal/2026-11-30-one-timer-per-connection.md).
//!
//! The entry stays armed after a wait ends. If its deadline passes while the
//! connection does something untimed, it wakes the connection's task once
//! for nothing; every timed wait re-arms it before anything else.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use monoio::time::{Instant, Sleep};
use pin_project_lite::pin_project;

/// The longest wait a deadline is set for: a longer timeout (a config's
/// "never") waits this long, as monoio's own `timeout` does, instead of
/// overflowing the clock.
const FAR_FUTURE: Duration = Duration::from_secs(86_400 * 365 * 30);

/// A connection's reusable deadline. Every wait through it must run on the
/// connection's own task: the entry keeps the waker of the task that first
/// polled it until it fires.
#[derive(Debug, Default)]
pub struct Timer {
    /// `None` until the first timed wait: a connection that never sends a
    /// request (its first head is bounded by `admission`'s sweep) holds no
    /// timer entry (640 bytes, 128-aligned).
    sleep: Option<Pin<Box<Sleep>>>,
}

/// The wait's deadline passed first; the future was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed;

impl Timer {
    pub const fn new() -> Self {
        Self { sleep: None }
    }

    /// Runs `fut` to completion, or drops it once `timeout` has passed,
    /// whichever comes first. The deadline is set now, not at the first
    /// poll. `fut` is polled before the deadline is, so work that is ready
    /// is never refused for a deadline that passed while nothing polled.
    pub fn within<F: Future>(&mut self, timeout: Duration, fut: F) -> Within<'_, F> {
        let now = Instant::now();
        let deadline = now.checked_add(timeout.min(FAR_FUTURE)).unwrap_or(now);
        if let Some(sleep) = &mut self.sleep {
            sleep.as_mut().reset(deadline);
        }
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(monoio::time::sleep_until(deadline)));
        Within {
            fut,
            sleep: sleep.as_mut(),
        }
    }
}

pin_project! {
    /// [`Timer::within`]'s future: the guarded future and a borrow of the
    /// connection's entry, so it is no larger than the future it guards
    /// (an `async fn` would keep the future twice: as its argument and
    /// pinned).
    #[must_use = "futures do nothing unless awaited"]
    pub struct Within<'a, F> {
        #[pin]
        fut: F,
        sleep: Pin<&'a mut Sleep>,
    }
}

impl<F: Future> Future for Within<'_, F> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(out) = this.fut.poll(cx) {
            return Poll::Ready(Ok(out));
        }
        this.sleep.as_mut().poll(cx).map(|()| Err(Elapsed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rt() -> monoio::Runtime<monoio::time::TimeDriver<monoio::LegacyDriver>> {
        monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .expect("runtime")
    }

    #[test]
    fn ready_work_wins_and_no_entry_is_made_before_the_first_wait() {
        rt().block_on(async {
            let mut timer = Timer::new();
            assert!(timer.sleep.is_none());
            assert_eq!(timer.within(Duration::ZERO, async { 7 }).await, Ok(7));
            assert!(timer.sleep.is_some());
        });
    }

    /// A wait that would last a minute is dropped at `timeout`, well
    /// before a generous bound.
    async fn gives_up_at(timer: &mut Timer, timeout: Duration) {
        let started = std::time::Instant::now();
        let never = monoio::time::sleep(Duration::from_secs(60));
        assert_eq!(timer.within(timeout, never).await, Err(Elapsed));
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn a_wait_past_its_deadline_is_dropped() {
        rt().block_on(gives_up_at(&mut Timer::new(), Duration::from_millis(20)));
    }

    #[test]
    fn each_wait_gets_its_own_deadline() {
        rt().block_on(async {
            let mut timer = Timer::new();
            // A short deadline that fires, then longer ones on the same
            // entry, then a short one again after a long one was set: each
            // wait is bounded by its own timeout, not an earlier one.
            gives_up_at(&mut timer, Duration::from_millis(10)).await;
            let pause = monoio::time::sleep(Duration::from_millis(30));
            assert_eq!(timer.within(Duration::from_secs(5), pause).await, Ok(()));
            let pause = monoio::time::sleep(Duration::from_millis(30));
            assert_eq!(timer.within(Duration::from_secs(5), pause).await, Ok(()));
            gives_up_at(&mut timer, Duration::from_millis(10)).await;
        });
    }

    #[test]
    fn an_armed_entry_that_fires_between_waits_does_no_harm() {
        rt().block_on(async {
            let mut timer = Timer::new();
            assert_eq!(
                timer.within(Duration::from_millis(5), async {}).await,
                Ok(())
            );
            // The entry fires while nothing waits on it.
            monoio::time::sleep(Duration::from_millis(30)).await;
            let pause = monoio::time::sleep(Duration::from_millis(20));
            assert_eq!(timer.within(Duration::from_secs(5), pause).await, Ok(()));
        });
    }

    #[test]
    fn a_timeout_past_the_clock_waits_without_overflow() {
        rt().block_on(async {
            let mut timer = Timer::new();
            assert_eq!(timer.within(Duration::MAX, async { 1 }).await, Ok(1));
        });
    }
}
