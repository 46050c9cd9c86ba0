//! The bulkhead's semaphore: a lock-free fast path and a FIFO queue.
//!
//! One state word holds the free permits and a `SLOW` flag:
//! `[free permits: 63 | SLOW: 1]`.
//!
//! * **Acquire**: when `SLOW` is clear and a permit is free, one
//!   compare-and-swap takes it. Nothing else: no lock, no allocation.
//! * **Release**: one `fetch_add` gives the permit back. If `SLOW` was set,
//!   the releaser then takes the queue lock and *settles*: the permit goes to
//!   the oldest waiter.
//! * `SLOW` is set, under the lock, exactly while someone is owed a permit:
//!   callers wait in the queue, or the limit was lowered below the permits in
//!   use (the excess is *debt*, paid by the next releases). While it is set,
//!   the fast path stays away, so a newcomer can never take a permit ahead of
//!   a queued caller, and a free permit is only ever transient: whoever added
//!   it settles right after.
//!
//! The queue holds `(id, waker)` pairs in arrival order; ids grow by one per
//! waiter, so a waiter is found by binary search. A permit is handed to a
//! waiter by taking it out of the queue: a waiter whose id is no longer
//! queued owns a permit. Only the waiter itself ever removes its entry
//! otherwise (when it gives up or is dropped), so "not found" cannot be
//! mistaken.
//!
//! # The seam for an adaptive limit
//!
//! [`Semaphore::set_limit`] changes the limit at any time: raising it hands
//! the new permits to the debt, then to the waiters, then to the free pool;
//! lowering it takes free permits away and records the rest as debt, so the
//! calls already in flight finish undisturbed. An adaptive limit (AIMD,
//! Gradient) needs only this and an observation of each call's outcome and
//! latency, which the response future has where it drops its permit.
//! Today [`BulkheadHandle::set_max_concurrent`](super::BulkheadHandle::set_max_concurrent)
//! is its only user.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release};
use std::task::Waker;

use crate::metrics::CachePadded;
use crate::sync::{lock, AtomicU64, Mutex};

/// Set while someone is owed a permit (waiters or debt).
const SLOW: u64 = 1;
/// One permit in the state word.
const ONE: u64 = 2;

/// The largest limit: far beyond any real concurrency, and small enough
/// that no sum in the state word can overflow.
pub(crate) const MAX_PERMITS: usize = u32::MAX as usize;

/// What [`Semaphore::acquire_or_enqueue`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    /// A permit was taken; the caller owns it.
    Acquired,
    /// The caller waits in the queue under this id.
    Queued(u64),
    /// No permit, and the queue is at its bound.
    Full,
}

pub(crate) struct Semaphore {
    /// `[free: 63 | SLOW: 1]`, alone on its cache lines: every call writes it.
    state: CachePadded<AtomicU64>,
    /// Mirrors of values kept under the lock, for lock-free reading.
    limit: AtomicU64,
    debt: AtomicU64,
    waiting: AtomicU64,
    queue: Mutex<Queue>,
}

struct Queue {
    /// Waiters, oldest first; ids strictly increasing.
    waiters: VecDeque<Waiter>,
    next_id: u64,
    limit: u64,
    /// Permits in use beyond the limit, after the limit was lowered.
    debt: u64,
}

struct Waiter {
    id: u64,
    waker: Waker,
}

impl Queue {
    fn find(&self, id: u64) -> Option<usize> {
        self.waiters.binary_search_by_key(&id, |w| w.id).ok()
    }

    fn owed(&self) -> bool {
        self.debt > 0 || !self.waiters.is_empty()
    }
}

/// Wakers to wake once the lock is released.
struct WakeList {
    wakers: [Option<Waker>; 4],
    len: usize,
}

impl WakeList {
    fn new() -> Self {
        Self {
            wakers: Default::default(),
            len: 0,
        }
    }

    fn push(&mut self, waker: Waker) {
        if self.len == self.wakers.len() {
            // Only a large raise of the limit grants this many at once.
            self.wake_all();
        }
        self.wakers[self.len] = Some(waker);
        self.len += 1;
    }

    fn wake_all(&mut self) {
        for w in &mut self.wakers[..self.len] {
            if let Some(w) = w.take() {
                w.wake();
            }
        }
        self.len = 0;
    }
}

impl Semaphore {
    /// A semaphore of `limit` permits (`1..=MAX_PERMITS`, checked by the
    /// builder).
    pub(crate) fn new(limit: usize) -> Self {
        let limit = limit.min(MAX_PERMITS) as u64;
        Self {
            state: CachePadded(AtomicU64::new(limit * ONE)),
            limit: AtomicU64::new(limit),
            debt: AtomicU64::new(0),
            waiting: AtomicU64::new(0),
            queue: Mutex::new(Queue {
                waiters: VecDeque::new(),
                next_id: 0,
                limit,
                debt: 0,
            }),
        }
    }

    /// Takes a permit if one is free and nobody is owed one. Lock-free.
    #[inline]
    pub(crate) fn try_acquire(&self) -> bool {
        let mut s = self.state.load(Relaxed);
        loop {
            if s & SLOW != 0 || s < ONE {
                return false;
            }
            match self
                .state
                .compare_exchange_weak(s, s - ONE, Acquire, Relaxed)
            {
                Ok(_) => return true,
                Err(actual) => s = actual,
            }
        }
    }

    /// Takes a permit, or joins the back of the queue when fewer than
    /// `max_waiting` callers wait there already. `waker` is woken when the
    /// queued caller is handed a permit.
    pub(crate) fn acquire_or_enqueue(&self, max_waiting: usize, waker: &Waker) -> Admission {
        let mut wake = WakeList::new();
        let admission = {
            let mut q = lock(&self.queue);
            self.settle(&mut q, &mut wake);
            if self.try_acquire() {
                Admission::Acquired
            } else if q.waiters.len() >= max_waiting {
                Admission::Full
            } else {
                let id = q.next_id;
                q.next_id = q.next_id.wrapping_add(1);
                q.waiters.push_back(Waiter {
                    id,
                    waker: waker.clone(),
                });
                // Sets SLOW, or hands over a permit released meanwhile.
                self.settle(&mut q, &mut wake);
                self.mirror_waiting(&q);
                match q.find(id) {
                    Some(_) => Admission::Queued(id),
                    None => Admission::Acquired,
                }
            }
        };
        wake.wake_all();
        admission
    }

    /// `true` once waiter `id` has been handed a permit (it then owns it);
    /// otherwise stores `waker` to be woken when that happens.
    pub(crate) fn poll_waiter(&self, id: u64, waker: &Waker) -> bool {
        let mut q = lock(&self.queue);
        match q.find(id) {
            Some(i) => {
                let stored = &mut q.waiters[i].waker;
                if !stored.will_wake(waker) {
                    stored.clone_from(waker);
                }
                false
            }
            None => true,
        }
    }

    /// Takes waiter `id` out of the queue. Returns `true` if it had been
    /// handed a permit already: the caller owns that permit and must use or
    /// release it.
    pub(crate) fn cancel_waiter(&self, id: u64) -> bool {
        let mut wake = WakeList::new();
        let granted = {
            let mut q = lock(&self.queue);
            match q.find(id) {
                Some(i) => {
                    q.waiters.remove(i);
                    self.settle(&mut q, &mut wake);
                    self.mirror_waiting(&q);
                    false
                }
                None => true,
            }
        };
        wake.wake_all();
        granted
    }

    /// Gives a permit back; it goes to the oldest waiter if there is one.
    #[inline]
    pub(crate) fn release(&self) {
        let prev = self.state.fetch_add(ONE, Release);
        if prev & SLOW != 0 {
            self.release_slow();
        }
    }

    #[cold]
    #[inline(never)]
    fn release_slow(&self) {
        let mut wake = WakeList::new();
        {
            let mut q = lock(&self.queue);
            self.settle(&mut q, &mut wake);
            self.mirror_waiting(&q);
        }
        wake.wake_all();
    }

    /// Changes the limit to `limit` (`1..=MAX_PERMITS`). Calls in flight
    /// are never cut short: when more are in flight than the new limit,
    /// the next releases are kept back until the count is under it.
    pub(crate) fn set_limit(&self, limit: usize) {
        let new = limit.clamp(1, MAX_PERMITS) as u64;
        let mut wake = WakeList::new();
        {
            let mut q = lock(&self.queue);
            let old = q.limit;
            q.limit = new;
            self.limit.store(new, Relaxed);
            if new > old {
                let mut add = new - old;
                let paid = add.min(q.debt);
                q.debt -= paid;
                add -= paid;
                if add > 0 {
                    self.state.fetch_add(add * ONE, AcqRel);
                }
            } else {
                let mut take = old - new;
                let mut s = self.state.load(Acquire);
                while take > 0 && s >= ONE {
                    let t = take.min(s >> 1);
                    match self.state.compare_exchange(s, s - t * ONE, AcqRel, Acquire) {
                        Ok(_) => {
                            take -= t;
                            s -= t * ONE;
                        }
                        Err(actual) => s = actual,
                    }
                }
                q.debt += take;
            }
            self.settle(&mut q, &mut wake);
            self.debt.store(q.debt, Relaxed);
            self.mirror_waiting(&q);
        }
        wake.wake_all();
    }

    /// Under the lock: hands free permits to the debt, then to the oldest
    /// waiters, and sets `SLOW` exactly when someone is still owed one.
    fn settle(&self, q: &mut Queue, wake: &mut WakeList) {
        let mut s = self.state.load(Acquire);
        loop {
            let owed = q.owed();
            if owed && s >= ONE {
                match self.state.compare_exchange(s, s - ONE, AcqRel, Acquire) {
                    Ok(_) => {
                        s -= ONE;
                        if q.debt > 0 {
                            q.debt -= 1;
                            self.debt.store(q.debt, Relaxed);
                        } else if let Some(w) = q.waiters.pop_front() {
                            wake.push(w.waker);
                        }
                    }
                    Err(actual) => s = actual,
                }
                continue;
            }
            let want = if owed { s | SLOW } else { s & !SLOW };
            if want == s {
                return;
            }
            // A release may have added a permit meanwhile: look again.
            match self.state.compare_exchange(s, want, AcqRel, Acquire) {
                Ok(_) => return,
                Err(actual) => s = actual,
            }
        }
    }

    fn mirror_waiting(&self, q: &Queue) {
        self.waiting.store(q.waiters.len() as u64, Relaxed);
    }

    /// The current limit.
    pub(crate) fn limit(&self) -> usize {
        self.limit.load(Relaxed) as usize
    }

    /// Permits in use (handed to waiters included). Exact when nothing
    /// moves; a moment's mix of old and new values otherwise.
    pub(crate) fn in_flight(&self) -> usize {
        let free = self.state.load(Acquire) >> 1;
        let held = self
            .limit
            .load(Relaxed)
            .saturating_add(self.debt.load(Relaxed));
        held.saturating_sub(free) as usize
    }

    /// Callers waiting in the queue.
    pub(crate) fn waiting(&self) -> usize {
        self.waiting.load(Relaxed) as usize
    }

    /// Free permits (for the tests).
    #[cfg(test)]
    pub(crate) fn free(&self) -> u64 {
        self.state.load(Acquire) >> 1
    }

    /// Whether the slow flag is set (for the tests).
    #[cfg(test)]
    pub(crate) fn is_slow(&self) -> bool {
        self.state.load(Acquire) & SLOW != 0
    }
}

impl fmt::Debug for Semaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Semaphore")
            .field("limit", &self.limit())
            .field("in_flight", &self.in_flight())
            .field("waiting", &self.waiting())
            .finish()
    }
}

#[cfg(all(test, not(steadfast_loom)))]
mod tests {
    use super::*;

    fn noop() -> &'static Waker {
        Waker::noop()
    }

    fn queued(sem: &Semaphore) -> u64 {
        match sem.acquire_or_enqueue(usize::MAX, noop()) {
            Admission::Queued(id) => id,
            other => panic!("expected to queue, got {other:?}"),
        }
    }

    #[test]
    fn fast_path_takes_and_returns() {
        let sem = Semaphore::new(2);
        assert!(sem.try_acquire());
        assert!(sem.try_acquire());
        assert!(!sem.try_acquire());
        assert_eq!(sem.in_flight(), 2);
        sem.release();
        assert_eq!(sem.in_flight(), 1);
        assert!(sem.try_acquire());
        sem.release();
        sem.release();
        assert_eq!((sem.free(), sem.in_flight(), sem.is_slow()), (2, 0, false));
    }

    #[test]
    fn release_goes_to_the_oldest_waiter_and_newcomers_queue_behind() {
        let sem = Semaphore::new(1);
        assert!(sem.try_acquire());
        let a = queued(&sem);
        let b = queued(&sem);
        assert!(sem.is_slow());
        assert_eq!(sem.waiting(), 2);
        sem.release();
        assert!(sem.poll_waiter(a, noop()));
        assert!(!sem.poll_waiter(b, noop()));
        // A newcomer neither barges on the fast path nor the slow one.
        assert!(!sem.try_acquire());
        let c = queued(&sem);
        sem.release(); // a's permit
        assert!(sem.poll_waiter(b, noop()));
        assert!(!sem.poll_waiter(c, noop()));
        sem.release();
        assert!(sem.poll_waiter(c, noop()));
        sem.release();
        assert_eq!((sem.free(), sem.waiting(), sem.is_slow()), (1, 0, false));
    }

    #[test]
    fn queue_bound_and_cancellation() {
        let sem = Semaphore::new(1);
        assert!(sem.try_acquire());
        let a = match sem.acquire_or_enqueue(1, noop()) {
            Admission::Queued(id) => id,
            other => panic!("{other:?}"),
        };
        assert_eq!(sem.acquire_or_enqueue(1, noop()), Admission::Full);
        assert_eq!(sem.acquire_or_enqueue(0, noop()), Admission::Full);
        // A waiter that leaves frees its place and the slow flag.
        assert!(!sem.cancel_waiter(a));
        assert_eq!(sem.waiting(), 0);
        assert!(!sem.is_slow());
        sem.release();
        assert!(sem.try_acquire());
        // A waiter that leaves after being handed a permit owns it.
        let b = queued(&sem);
        sem.release();
        assert!(sem.cancel_waiter(b));
        assert_eq!(sem.in_flight(), 1);
        sem.release();
        assert_eq!((sem.free(), sem.in_flight()), (1, 0));
    }

    #[test]
    fn waking_the_granted_waiter() {
        use std::sync::atomic::AtomicUsize;
        use std::sync::Arc;
        use std::task::Wake;

        struct Count(AtomicUsize);
        impl Wake for Count {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, Relaxed);
            }
        }
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let sem = Semaphore::new(1);
        assert!(sem.try_acquire());
        let id = match sem.acquire_or_enqueue(8, noop()) {
            Admission::Queued(id) => id,
            other => panic!("{other:?}"),
        };
        // The waker of the latest poll is the one woken.
        assert!(!sem.poll_waiter(id, &waker));
        assert_eq!(count.0.load(Relaxed), 0);
        sem.release();
        assert_eq!(count.0.load(Relaxed), 1);
        assert!(sem.poll_waiter(id, &waker));
    }

    #[test]
    fn raising_the_limit_serves_waiters_first() {
        let sem = Semaphore::new(1);
        assert!(sem.try_acquire());
        let ids: Vec<u64> = (0..6).map(|_| queued(&sem)).collect();
        sem.set_limit(6); // five new permits: to the five oldest waiters
        let granted: Vec<bool> = ids.iter().map(|&id| sem.poll_waiter(id, noop())).collect();
        assert_eq!(granted, [true, true, true, true, true, false]);
        assert_eq!((sem.limit(), sem.in_flight(), sem.free()), (6, 6, 0));
        sem.set_limit(8);
        assert!(sem.poll_waiter(ids[5], noop()));
        assert_eq!((sem.in_flight(), sem.free(), sem.is_slow()), (7, 1, false));
    }

    #[test]
    fn lowering_the_limit_keeps_releases_back() {
        let sem = Semaphore::new(4);
        for _ in 0..3 {
            assert!(sem.try_acquire());
        }
        sem.set_limit(1); // one free permit removed, two owed back
        assert_eq!((sem.limit(), sem.in_flight(), sem.free()), (1, 3, 0));
        assert!(!sem.try_acquire());
        sem.release();
        sem.release();
        assert!(!sem.try_acquire(), "still one in flight, the new limit");
        assert_eq!(sem.in_flight(), 1);
        sem.release();
        assert!(sem.try_acquire());
        assert!(!sem.try_acquire());
        sem.release();
        assert_eq!((sem.free(), sem.in_flight(), sem.is_slow()), (1, 0, false));
        // Raising it again while in debt pays the debt first.
        let sem = Semaphore::new(2);
        assert!(sem.try_acquire());
        assert!(sem.try_acquire());
        sem.set_limit(1);
        sem.set_limit(3);
        assert_eq!((sem.in_flight(), sem.free(), sem.is_slow()), (2, 1, false));
    }
}

/// Model checks of admission and release: run with
/// `RUSTFLAGS="--cfg steadfast_loom" cargo test --release --lib loom`.
#[cfg(all(test, steadfast_loom))]
mod loom_tests {
    use super::*;
    use loom::sync::atomic::AtomicUsize;
    use loom::sync::Arc;
    use loom::thread;

    fn noop() -> &'static Waker {
        Waker::noop()
    }

    /// Wakes a parked loom thread.
    struct Unpark(thread::Thread);

    impl std::task::Wake for Unpark {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.unpark();
        }
    }

    /// Takes a permit, waiting in the queue if need be: parked until the
    /// waker given to the queue is woken.
    fn acquire(sem: &Semaphore) {
        if sem.try_acquire() {
            return;
        }
        let waker = Waker::from(std::sync::Arc::new(Unpark(thread::current())));
        match sem.acquire_or_enqueue(usize::MAX, &waker) {
            Admission::Acquired => {}
            Admission::Queued(id) => {
                while !sem.poll_waiter(id, &waker) {
                    thread::park();
                }
            }
            Admission::Full => unreachable!("the queue is unbounded"),
        }
    }

    fn settled(sem: &Semaphore, limit: u64) {
        assert_eq!(sem.free(), limit);
        assert_eq!(sem.in_flight(), 0);
        assert_eq!(sem.waiting(), 0);
        assert!(!sem.is_slow());
    }

    /// `callers` threads (the main one included) each take the one permit,
    /// hold it, and give it back.
    fn take_turns(callers: usize) {
        let sem = Arc::new(Semaphore::new(1));
        let inside = Arc::new(AtomicUsize::new(0));
        let turn = {
            let (sem, inside) = (sem.clone(), inside.clone());
            move || {
                acquire(&sem);
                assert_eq!(inside.fetch_add(1, Relaxed), 0, "two in flight");
                inside.fetch_sub(1, Relaxed);
                sem.release();
            }
        };
        let threads: Vec<_> = (1..callers).map(|_| thread::spawn(turn.clone())).collect();
        turn();
        for t in threads {
            t.join().unwrap();
        }
        settled(&sem, 1);
    }

    #[test]
    fn loom_never_more_than_max_in_flight_no_lost_permit() {
        loom::model(|| take_turns(2));
    }

    /// Three callers, with preemptions bounded so the model stays small.
    #[test]
    fn loom_three_callers_take_turns() {
        let mut model = loom::model::Builder::new();
        model.preemption_bound = Some(2);
        model.check(|| take_turns(3));
    }

    #[test]
    fn loom_try_acquire_races_release() {
        loom::model(|| {
            let sem = Arc::new(Semaphore::new(2));
            assert!(sem.try_acquire());
            assert!(sem.try_acquire());
            let s1 = sem.clone();
            let releaser = thread::spawn(move || s1.release());
            let s2 = sem.clone();
            let taker = thread::spawn(move || {
                let got = s2.try_acquire();
                if got {
                    s2.release();
                }
                got
            });
            releaser.join().unwrap();
            taker.join().unwrap();
            sem.release();
            settled(&sem, 2);
        });
    }

    #[test]
    fn loom_released_permit_goes_to_the_oldest_waiter() {
        loom::model(|| {
            let sem = Arc::new(Semaphore::new(1));
            assert!(sem.try_acquire());
            let a = match sem.acquire_or_enqueue(usize::MAX, noop()) {
                Admission::Queued(id) => id,
                other => panic!("{other:?}"),
            };
            let b = match sem.acquire_or_enqueue(usize::MAX, noop()) {
                Admission::Queued(id) => id,
                other => panic!("{other:?}"),
            };
            let s1 = sem.clone();
            let releaser = thread::spawn(move || s1.release());
            // A newcomer racing the release never gets ahead of a and b.
            let s2 = sem.clone();
            let newcomer = thread::spawn(move || {
                if s2.try_acquire() {
                    return None;
                }
                match s2.acquire_or_enqueue(usize::MAX, noop()) {
                    Admission::Queued(id) => Some(id),
                    Admission::Acquired | Admission::Full => None,
                }
            });
            releaser.join().unwrap();
            let c = newcomer.join().unwrap().expect("the newcomer barged");
            assert!(sem.poll_waiter(a, noop()), "a is oldest");
            assert!(!sem.poll_waiter(b, noop()));
            assert!(!sem.poll_waiter(c, noop()));
            sem.release();
            assert!(sem.poll_waiter(b, noop()));
            sem.release();
            assert!(sem.poll_waiter(c, noop()));
            sem.release();
            settled(&sem, 1);
        });
    }

    #[test]
    fn loom_cancelled_waiter_passes_its_permit_on() {
        loom::model(|| {
            let sem = Arc::new(Semaphore::new(1));
            assert!(sem.try_acquire());
            let a = match sem.acquire_or_enqueue(usize::MAX, noop()) {
                Admission::Queued(id) => id,
                other => panic!("{other:?}"),
            };
            let b = match sem.acquire_or_enqueue(usize::MAX, noop()) {
                Admission::Queued(id) => id,
                other => panic!("{other:?}"),
            };
            let s1 = sem.clone();
            let releaser = thread::spawn(move || s1.release());
            let s2 = sem.clone();
            let canceller = thread::spawn(move || {
                // What a dropped waiting future does.
                if s2.cancel_waiter(a) {
                    s2.release();
                }
            });
            releaser.join().unwrap();
            canceller.join().unwrap();
            assert!(sem.poll_waiter(b, noop()), "the permit reached b");
            assert_eq!(sem.in_flight(), 1);
            sem.release();
            settled(&sem, 1);
        });
    }

    #[test]
    fn loom_lowered_limit_is_never_exceeded() {
        loom::model(|| {
            let sem = Arc::new(Semaphore::new(2));
            assert!(sem.try_acquire());
            assert!(sem.try_acquire());
            let s1 = sem.clone();
            let lower = thread::spawn(move || s1.set_limit(1));
            let s2 = sem.clone();
            let release = thread::spawn(move || s2.release());
            lower.join().unwrap();
            release.join().unwrap();
            assert_eq!(sem.in_flight(), 1);
            assert!(!sem.try_acquire());
            sem.release();
            settled(&sem, 1);
        });
    }
}
