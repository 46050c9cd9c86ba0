//! A scripted backend that logs when each attempt was sent, how it ended
//! and whether it was dropped unfinished.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use steadfast::hedge::{HedgeConfig, HedgeConfigBuilder, HedgeSnapshot};
use steadfast::BoxError;
use tokio::time::Instant;

pub(crate) fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A fixed delay of `delay` ms, `attempts` in flight, no budget.
pub(crate) fn fixed(delay: u64, attempts: u32) -> HedgeConfigBuilder {
    HedgeConfig::builder()
        .delay(ms(delay))
        .max_attempts(attempts)
        .no_budget()
}

/// What the backend does with attempt number `n` (0-based, in the order the
/// backend is called, across calls).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Step {
    /// Answers `Ok(n)` after this many ms.
    Ok(u64),
    /// Fails after this many ms.
    Err(u64),
    /// Never answers.
    Hang,
}

#[derive(Debug, Default)]
struct Log {
    /// When each attempt was sent, from the log's start.
    sent: Vec<Duration>,
    /// Attempts dropped before they finished (cancelled).
    cancelled: Vec<usize>,
    finished: Vec<usize>,
}

/// A backend that follows a script (the last step repeats) and logs.
#[derive(Clone)]
pub(crate) struct Backend {
    script: Arc<Vec<Step>>,
    log: Arc<Mutex<Log>>,
    start: Instant,
}

/// Logs the attempt as cancelled unless it finished.
struct Guard {
    n: usize,
    log: Arc<Mutex<Log>>,
    done: bool,
}

impl Drop for Guard {
    fn drop(&mut self) {
        let mut log = self.log.lock().unwrap();
        if self.done {
            log.finished.push(self.n);
        } else {
            log.cancelled.push(self.n);
        }
    }
}

pub(crate) type Reply = Pin<Box<dyn Future<Output = Result<usize, BoxError>> + Send>>;

impl Backend {
    pub(crate) fn new(script: &[Step]) -> Self {
        Self {
            script: Arc::new(script.to_vec()),
            log: Arc::default(),
            start: Instant::now(),
        }
    }

    /// Takes attempt `n`: logs it and returns what it will do.
    pub(crate) fn attempt(&self) -> Reply {
        let n = {
            let mut log = self.log.lock().unwrap();
            log.sent.push(self.start.elapsed());
            log.sent.len() - 1
        };
        let step = *self.script.get(n).or(self.script.last()).expect("a script");
        let guard = Guard {
            n,
            log: self.log.clone(),
            done: false,
        };
        Box::pin(async move {
            let mut guard = guard; // the whole guard, not its field
            let result = match step {
                Step::Ok(t) => {
                    tokio::time::sleep(ms(t)).await;
                    Ok(n)
                }
                Step::Err(t) => {
                    tokio::time::sleep(ms(t)).await;
                    Err(format!("attempt {n} failed").into())
                }
                Step::Hang => std::future::pending().await,
            };
            guard.done = true;
            result
        })
    }

    /// A `tower::Service<u32>` over this backend.
    pub(crate) fn service(
        &self,
    ) -> impl tower::Service<u32, Response = usize, Error = BoxError, Future = Reply> + Clone {
        let backend = self.clone();
        tower::service_fn(move |_: u32| backend.attempt())
    }

    /// When each attempt was sent, in ms from the start.
    pub(crate) fn sent_ms(&self) -> Vec<u64> {
        let log = self.log.lock().unwrap();
        log.sent.iter().map(|d| d.as_millis() as u64).collect()
    }

    /// The attempts dropped unfinished, sorted.
    pub(crate) fn cancelled(&self) -> Vec<usize> {
        let mut c = self.log.lock().unwrap().cancelled.clone();
        c.sort_unstable();
        c
    }
}

/// The counters that matter, as a tuple: (calls, hedges, won, refused,
/// deadline, unsafe).
pub(crate) fn counts(s: &HedgeSnapshot) -> (u64, u64, u64, u64, u64, u64) {
    (
        s.calls,
        s.hedges,
        s.hedges_won,
        s.refused_by_budget,
        s.deadline_reached,
        s.skipped_unsafe,
    )
}
