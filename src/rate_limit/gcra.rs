//! The limiter: GCRA on one atomic word, and a FIFO queue for the callers
//! that wait.
//!
//! # The algorithm
//!
//! GCRA (the generic cell rate algorithm) keeps one number, the
//! *theoretical arrival time* `tat`: when the limiter would next be idle if
//! every admitted call had come exactly on schedule, one `interval` (the
//! period divided by the rate) apart. A call at `now` conforms when
//!
//! ```text
//! max(tat, now) + interval - now <= burst * interval      (the span)
//! ```
//!
//! and is then admitted by moving `tat` to `max(tat, now) + interval`. An
//! idle limiter (`tat <= now`) admits `burst` calls at once; after that, one
//! per `interval`. Over any window of length `w`, at most
//! `burst + floor(w / interval)` calls conform, whoever makes them.
//!
//! # The word
//!
//! `tat` is kept in nanoseconds since the limiter was built, shifted left by
//! one, with a `SLOW` flag in bit 0: `[tat: 63 | SLOW: 1]` (63 bits of
//! nanoseconds last 292 years).
//!
//! * **Admit** (fast path): when `SLOW` is clear and the call conforms, one
//!   compare-and-swap moves `tat`. No lock, no allocation.
//! * `SLOW` is set, under the queue lock, exactly while callers wait. The
//!   fast path then stays away, so a newcomer never overtakes a waiter, and
//!   `tat` is written only under the lock.
//! * **Waiting**: the waiters form a queue, oldest first, each with an id
//!   (strictly increasing, so found by binary search) and a waker. Only the
//!   head of the queue may take a cell: it sleeps until its call conforms,
//!   takes it under the lock and wakes the next head. A waiter that gives
//!   up or is dropped leaves the queue and, if it was the head, wakes the
//!   next one: it never took a cell, so nothing is lost and everyone behind
//!   it moves up.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed};
use std::task::Waker;
use std::time::Duration;

use tokio::time::Instant;

use crate::metrics::CachePadded;
use crate::sync::{lock, AtomicU64, Mutex};

/// Set while callers wait.
const SLOW: u64 = 1;

/// The largest `burst * interval`, in nanoseconds (2^61, about 73 years),
/// so that no sum of a time and a span overflows 63 bits.
pub(crate) const MAX_SPAN_NANOS: u64 = u64::MAX >> 3;

/// `now` in nanoseconds since `origin` (zero before it), in 64 bits, without
/// `Duration::as_nanos`'s `u128`: 2^62 ns, where it saturates, is 146
/// years, and the word holds 63 bits.
#[inline]
pub(crate) fn nanos_since(origin: Instant, now: Instant) -> u64 {
    let since = now.saturating_duration_since(origin);
    since
        .as_secs()
        .saturating_mul(1_000_000_000)
        .saturating_add(u64::from(since.subsec_nanos()))
        .min(u64::MAX >> 2)
}

/// What [`Limiter::enqueue`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Enqueued {
    /// The call conformed after all (the queue was empty): it is admitted.
    Admitted,
    /// The call waits in the queue under this id.
    Queued(u64),
    /// The call cannot be served in time (or the queue is at its bound); it
    /// would conform this long from now had nobody else come.
    Rejected(Duration),
}

/// What [`Limiter::poll_waiter`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Turn {
    /// The waiter took its cell and left the queue: it is admitted.
    Admitted,
    /// The waiter is at the head of the queue; its call conforms at this
    /// instant (nanoseconds since the limiter's origin). It should sleep
    /// until then and poll again.
    HeadAt(u64),
    /// Someone is ahead; the waiter is woken when it moves to the head.
    Behind,
}

/// A rate in the word's nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rate {
    /// Nanoseconds between two cells: the period divided by the rate,
    /// rounded up (so the limiter never admits more than configured).
    pub(crate) interval: u64,
    /// `burst * interval`.
    pub(crate) span: u64,
}

impl Rate {
    /// One cell per `interval` nanoseconds, `burst` at once. The caller
    /// has checked `interval >= 1`, `burst >= 1` and
    /// `interval * burst <= MAX_SPAN_NANOS`.
    pub(crate) const fn new(interval: u64, burst: u64) -> Self {
        Self {
            interval,
            span: interval * burst,
        }
    }

    /// The new `tat` if a call at `now` conforms to `tat`, else how long
    /// until it would (never zero).
    #[inline]
    pub(crate) fn conform(self, tat: u64, now: u64) -> Result<u64, u64> {
        let next = tat.max(now) + self.interval;
        let ahead = next - now;
        if ahead <= self.span {
            Ok(next)
        } else {
            Err(ahead - self.span)
        }
    }

    /// The cells a call at `now` could take at once.
    pub(crate) fn available(self, tat: u64, now: u64) -> u64 {
        let used = tat.saturating_sub(now);
        self.span.saturating_sub(used) / self.interval
    }
}

pub(crate) struct Limiter {
    /// `[tat: 63 | SLOW: 1]`, alone on its cache lines: every call writes it.
    state: CachePadded<AtomicU64>,
    rate: Rate,
    /// Time zero of the word.
    origin: Instant,
    /// A mirror of the queue's length, for lock-free reading.
    waiting: AtomicU64,
    queue: Mutex<Queue>,
}

struct Queue {
    /// Waiters, oldest first; ids strictly increasing.
    waiters: VecDeque<Waiter>,
    next_id: u64,
}

struct Waiter {
    id: u64,
    waker: Option<Waker>,
}

impl Queue {
    fn find(&self, id: u64) -> Option<usize> {
        self.waiters.binary_search_by_key(&id, |w| w.id).ok()
    }
}

impl Limiter {
    /// A limiter of `rate`, its word's time zero at `origin`.
    pub(crate) fn new(rate: Rate, origin: Instant) -> Self {
        Self {
            state: CachePadded(AtomicU64::new(0)),
            rate,
            origin,
            waiting: AtomicU64::new(0),
            queue: Mutex::new(Queue {
                waiters: VecDeque::new(),
                next_id: 0,
            }),
        }
    }

    /// `now` in the word's nanoseconds.
    #[inline]
    pub(crate) fn nanos(&self, now: Instant) -> u64 {
        nanos_since(self.origin, now)
    }

    /// The instant of `nanos` in the word's time.
    pub(crate) fn instant(&self, nanos: u64) -> Instant {
        self.origin + Duration::from_nanos(nanos)
    }

    /// The time between two cells, in nanoseconds.
    pub(crate) fn interval_nanos(&self) -> u64 {
        self.rate.interval
    }

    /// The time between two cells.
    pub(crate) fn interval(&self) -> Duration {
        Duration::from_nanos(self.rate.interval)
    }

    /// The cells an idle limiter admits at once.
    pub(crate) fn burst(&self) -> u64 {
        self.rate.span / self.rate.interval
    }

    /// Takes a cell if the call at `now` conforms and nobody waits.
    /// `Err(Some(wait))`: it would conform `wait` nanoseconds from now;
    /// `Err(None)`: callers are waiting (the queue decides).
    #[inline]
    pub(crate) fn try_acquire(&self, now: u64) -> Result<(), Option<u64>> {
        let mut current = self.state.load(Relaxed);
        loop {
            if current & SLOW != 0 {
                return Err(None);
            }
            let next = match self.conform(current >> 1, now) {
                Ok(next) => next,
                Err(wait) => return Err(Some(wait)),
            };
            match self
                .state
                .compare_exchange_weak(current, next << 1, AcqRel, Relaxed)
            {
                Ok(_) => return Ok(()),
                Err(actual) => current = actual,
            }
        }
    }

    #[inline]
    fn conform(&self, tat: u64, now: u64) -> Result<u64, u64> {
        self.rate.conform(tat, now)
    }

    /// How long until a call at `now` would conform, ignoring the queue:
    /// zero when it would now.
    pub(crate) fn wait_at(&self, now: u64) -> u64 {
        let tat = self.state.load(Acquire) >> 1;
        self.conform(tat, now).err().unwrap_or(0)
    }

    /// The cells a call at `now` could take at once, had nobody queued.
    pub(crate) fn available_at(&self, now: u64) -> u64 {
        self.rate.available(self.state.load(Acquire) >> 1, now)
    }

    /// The callers waiting now.
    pub(crate) fn waiting(&self) -> u64 {
        self.waiting.load(Relaxed)
    }

    /// The slow path of a call that did not conform at `now` and may wait
    /// until `until` (nanoseconds, absolute): admits it if it conforms after
    /// all and nobody waits, queues it if its turn comes by `until` with the
    /// queue as it is and fewer than `max_waiting` wait, else rejects it.
    /// `waker` is stored for the queued caller.
    pub(crate) fn enqueue(
        &self,
        now: u64,
        until: u64,
        max_waiting: usize,
        waker: &Waker,
    ) -> Enqueued {
        let mut q = lock(&self.queue);
        let tat = if q.waiters.is_empty() {
            // Shut the fast path out first, so that `tat` holds still.
            let before = self.state.fetch_or(SLOW, AcqRel);
            let tat = before >> 1;
            if let Ok(next) = self.conform(tat, now) {
                self.state.store(next << 1, Relaxed);
                return Enqueued::Admitted;
            }
            tat
        } else {
            self.state.load(Acquire) >> 1
        };
        // With `k` waiting ahead, this call's turn comes when `k + 1` more
        // cells conform: `tat + (k + 1) * interval - span`.
        let ahead = q.waiters.len() as u64;
        let turn = tat
            .saturating_add((ahead + 1).saturating_mul(self.rate.interval))
            .saturating_sub(self.rate.span)
            .max(now);
        if turn > until || q.waiters.len() >= max_waiting {
            if q.waiters.is_empty() {
                self.state.fetch_and(!SLOW, AcqRel);
            }
            // `turn > now` here: the call did not conform.
            return Enqueued::Rejected(Duration::from_nanos(turn.saturating_sub(now).max(1)));
        }
        let id = q.next_id;
        q.next_id += 1;
        q.waiters.push_back(Waiter {
            id,
            waker: Some(waker.clone()),
        });
        self.waiting.store(q.waiters.len() as u64, Relaxed);
        Enqueued::Queued(id)
    }

    /// Polls the waiter `id` at `now`: the head takes its cell when its call
    /// conforms. `waker` replaces the stored one.
    pub(crate) fn poll_waiter(&self, id: u64, now: u64, waker: &Waker) -> Turn {
        let mut q = lock(&self.queue);
        let Some(at) = q.find(id) else {
            // Only the waiter removes itself: it must be queued.
            debug_assert!(false, "a rate-limit waiter polled after it left the queue");
            return Turn::Admitted;
        };
        if at > 0 {
            set_waker(&mut q.waiters[at].waker, waker);
            return Turn::Behind;
        }
        let tat = self.state.load(Acquire) >> 1;
        match self.conform(tat, now) {
            Ok(next) => {
                q.waiters.pop_front();
                self.waiting.store(q.waiters.len() as u64, Relaxed);
                let slow = if q.waiters.is_empty() { 0 } else { SLOW };
                self.state.store(next << 1 | slow, Relaxed);
                let next_head = q.waiters.front_mut().and_then(|w| w.waker.take());
                drop(q);
                if let Some(w) = next_head {
                    w.wake();
                }
                Turn::Admitted
            }
            Err(wait) => {
                set_waker(&mut q.waiters[0].waker, waker);
                Turn::HeadAt(now + wait)
            }
        }
    }

    /// Takes the waiter `id` out of the queue (it gave up, or its future was
    /// dropped). If it was the head, the next one is woken to take over.
    pub(crate) fn cancel_waiter(&self, id: u64) {
        let mut q = lock(&self.queue);
        let Some(at) = q.find(id) else {
            return;
        };
        q.waiters.remove(at);
        self.waiting.store(q.waiters.len() as u64, Relaxed);
        if q.waiters.is_empty() {
            self.state.fetch_and(!SLOW, AcqRel);
            return;
        }
        if at == 0 {
            let next_head = q.waiters.front_mut().and_then(|w| w.waker.take());
            drop(q);
            if let Some(w) = next_head {
                w.wake();
            }
        }
    }
}

fn set_waker(slot: &mut Option<Waker>, waker: &Waker) {
    match slot {
        Some(w) if w.will_wake(waker) => {}
        _ => *slot = Some(waker.clone()),
    }
}

impl fmt::Debug for Limiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Limiter")
            .field("interval", &self.interval())
            .field("burst", &self.burst())
            .field("waiting", &self.waiting())
            .finish()
    }
}

/// Model checks of the compare-and-swap and of the queue: run with
/// `RUSTFLAGS="--cfg steadfast_loom" cargo test --release --lib loom`.
/// Time is fixed (nanoseconds since the origin), so each model checks
/// interleavings only.
#[cfg(all(test, steadfast_loom))]
mod loom_tests {
    use super::*;
    use loom::sync::Arc;
    use loom::thread;

    /// One cell every 10 ns.
    const INTERVAL: u64 = 10;

    fn limiter(burst: u64) -> Arc<Limiter> {
        Arc::new(Limiter::new(Rate::new(INTERVAL, burst), Instant::now()))
    }

    fn slow(l: &Limiter) -> bool {
        l.state.load(Acquire) & SLOW != 0
    }

    /// A call at `now` as the service makes it with a `max_wait` of zero
    /// but the queue machinery on (`until == now`): the fast path, then
    /// the slow one when callers wait. `true` when admitted.
    fn call_now(l: &Limiter, now: u64) -> bool {
        match l.try_acquire(now) {
            Ok(()) => true,
            Err(Some(_)) => false,
            Err(None) => l.enqueue(now, now, 16, Waker::noop()) == Enqueued::Admitted,
        }
    }

    /// `threads` callers at the same instant on an idle limiter of `burst`:
    /// exactly `burst` are admitted, and `tat` moved once per admission.
    fn concurrent_fast_path(threads: u64, burst: u64) {
        loom::model(move || {
            let l = limiter(burst);
            let handles: Vec<_> = (0..threads)
                .map(|_| {
                    let l = l.clone();
                    thread::spawn(move || l.try_acquire(0).is_ok())
                })
                .collect();
            let admitted = handles
                .into_iter()
                .map(|h| h.join().unwrap())
                .filter(|&ok| ok)
                .count() as u64;
            assert_eq!(admitted, burst.min(threads));
            assert_eq!(l.state.load(Acquire), (admitted * INTERVAL) << 1);
        });
    }

    #[test]
    fn loom_two_threads_burst_one_admit_one() {
        concurrent_fast_path(2, 1);
    }

    #[test]
    fn loom_three_threads_burst_two_admit_two() {
        concurrent_fast_path(3, 2);
    }

    /// The limiter at t = 0 with its one cell (burst 1) taken and one
    /// waiter queued for the cell at t = 10.
    fn with_waiter() -> (Arc<Limiter>, u64) {
        let l = limiter(1);
        assert_eq!(l.try_acquire(0), Ok(()));
        let Enqueued::Queued(id) = l.enqueue(0, 100, 16, Waker::noop()) else {
            panic!("the call should wait")
        };
        assert!(slow(&l));
        (l, id)
    }

    #[test]
    fn loom_cancelled_waiter_vs_newcomer_loses_no_cell() {
        loom::model(|| {
            let (l, id) = with_waiter();
            let l1 = l.clone();
            let newcomer = thread::spawn(move || call_now(&l1, INTERVAL));
            let l2 = l.clone();
            let cancel = thread::spawn(move || l2.cancel_waiter(id));
            let newcomer_admitted = newcomer.join().unwrap();
            cancel.join().unwrap();
            assert_eq!(l.waiting(), 0);
            assert!(!slow(&l), "SLOW left set with nobody waiting");
            // The cell at t = 10 went to the newcomer or is still there:
            // exactly one call at t = 10 gets it.
            let later = l.try_acquire(INTERVAL).is_ok();
            assert!(newcomer_admitted ^ later, "{newcomer_admitted} {later}");
        });
    }

    #[test]
    fn loom_head_waiter_vs_newcomer_head_gets_the_cell() {
        loom::model(|| {
            let (l, id) = with_waiter();
            let l1 = l.clone();
            let newcomer = thread::spawn(move || call_now(&l1, INTERVAL));
            let l2 = l.clone();
            let waiter = thread::spawn(move || l2.poll_waiter(id, INTERVAL, Waker::noop()));
            let newcomer_admitted = newcomer.join().unwrap();
            let turn = waiter.join().unwrap();
            // A newcomer never overtakes a waiter.
            assert_eq!(turn, Turn::Admitted);
            assert!(!newcomer_admitted);
            assert_eq!(l.waiting(), 0);
            assert!(!slow(&l));
            assert_eq!(l.state.load(Acquire), (2 * INTERVAL) << 1);
        });
    }
}
