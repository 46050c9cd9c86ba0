//! The backend every client calls, and the recorder that counts what it
//! and the callers saw.
//!
//! - [`Behaviour::Outage`]: steadfast's own [`FaultLayer`] around an
//!   always-healthy service, with one window in which every attempt is
//!   refused at once ([`Fault::refused`]).
//! - [`Behaviour::Flapping`]: a backend whose health depends on its load,
//!   which a fixed schedule cannot express: dead for `dead_for`, then able
//!   to serve again, and `healthy_for` after the first attempt it serves it
//!   dies again.
//!
//! Every attempt fails or succeeds at once: the simulation is about load,
//! not latency.

use std::convert::Infallible;
use std::future::{ready, Future, Ready};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use steadfast::chaos::{Fault, FaultLayer, FaultService};
use tokio::time::Instant;
use tower::{Layer, Service};

use super::{BoxError, Call};

/// What the backend does.
#[derive(Clone, Copy, Debug)]
pub enum Behaviour {
    /// Healthy, except in `[from, to)`, when every attempt is refused.
    Outage {
        /// When it dies.
        from: Duration,
        /// When it is back.
        to: Duration,
    },
    /// Healthy, except in `[from, to)`, when it flaps.
    Flapping {
        /// When it first dies.
        from: Duration,
        /// When it is healthy for good.
        to: Duration,
        /// How long each death lasts.
        dead_for: Duration,
        /// How long it serves after its first success following a death.
        healthy_for: Duration,
    },
}

/// The healthy service behind the faults.
#[derive(Clone, Copy, Debug)]
pub struct Healthy;

impl Service<Call> for Healthy {
    type Response = ();
    type Error = Infallible;
    type Future = Ready<Result<(), Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Call) -> Self::Future {
        ready(Ok(()))
    }
}

/// The flapping backend's state, shared by its clones.
#[derive(Debug)]
enum Flap {
    /// Dead since this instant.
    Dead(Instant),
    /// Can serve: died at least `dead_for` ago, no success yet.
    Back,
    /// Serving until this instant.
    Serving(Instant),
}

#[derive(Clone, Debug)]
enum Inner {
    Faults(FaultService<Healthy, ()>),
    Flapping {
        start: Instant,
        from: Duration,
        to: Duration,
        dead_for: Duration,
        healthy_for: Duration,
        state: Arc<Mutex<Flap>>,
    },
}

/// The backend: counts every attempt that reaches it, with its outcome.
#[derive(Clone, Debug)]
pub struct Backend {
    inner: Inner,
    recorder: Recorder,
}

impl Backend {
    /// The backend of `behaviour`, its schedule counted from `start`.
    pub fn new(behaviour: Behaviour, start: Instant, recorder: Recorder) -> Self {
        let inner = match behaviour {
            Behaviour::Outage { from, to } => {
                let faults = FaultLayer::builder()
                    .start_at(start)
                    .window(from, to, Fault::refused())
                    .build()
                    .expect("a valid fault schedule");
                Inner::Faults(faults.layer(Healthy))
            }
            Behaviour::Flapping {
                from,
                to,
                dead_for,
                healthy_for,
            } => Inner::Flapping {
                start,
                from,
                to,
                dead_for,
                healthy_for,
                state: Arc::new(Mutex::new(Flap::Serving(start + from))),
            },
        };
        Self { inner, recorder }
    }
}

/// The error of a flapping backend's dead attempt.
#[derive(Debug)]
pub struct Unavailable;

impl std::fmt::Display for Unavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("backend unavailable")
    }
}

impl std::error::Error for Unavailable {}

impl Service<Call> for Backend {
    type Response = ();
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        match &mut self.inner {
            Inner::Faults(faults) => faults.poll_ready(cx),
            Inner::Flapping { .. } => Poll::Ready(Ok(())),
        }
    }

    fn call(&mut self, call: Call) -> Self::Future {
        let id = call.id;
        self.recorder.attempt(id);
        let recorder = self.recorder.clone();
        match &mut self.inner {
            Inner::Faults(faults) => {
                let attempt = faults.call(call);
                Box::pin(async move {
                    let result = attempt.await;
                    recorder.attempt_ended(result.is_ok());
                    result
                })
            }
            Inner::Flapping {
                start,
                from,
                to,
                dead_for,
                healthy_for,
                state,
            } => {
                let now = Instant::now();
                let since = now - *start;
                let ok = if since < *from || since >= *to {
                    true
                } else {
                    let mut state = state.lock().unwrap();
                    loop {
                        match *state {
                            Flap::Dead(at) if now - at >= *dead_for => *state = Flap::Back,
                            Flap::Dead(_) => break false,
                            Flap::Back => {
                                *state = Flap::Serving(now + *healthy_for);
                                recorder.inner.lock().unwrap().recoveries += 1;
                                break true;
                            }
                            Flap::Serving(until) if now >= until => *state = Flap::Dead(until),
                            Flap::Serving(_) => break true,
                        }
                    }
                };
                recorder.attempt_ended(ok);
                let result = if ok { Ok(()) } else { Err(Unavailable.into()) };
                Box::pin(ready(result))
            }
        }
    }
}

/// Counts by the millisecond: attempts at the backend and how they ended,
/// calls offered and how they ended, attempts per call. Shared by the
/// backend and the driver.
#[derive(Clone, Debug)]
pub struct Recorder {
    start: Instant,
    inner: Arc<Mutex<Counts>>,
}

/// What a [`Recorder`] counted; index = millisecond (or call number).
#[derive(Debug, Default, Clone)]
pub struct Counts {
    /// Attempts that reached the backend, per ms.
    pub attempts: Vec<u32>,
    /// Of those, the ones it served, per ms.
    pub served: Vec<u32>,
    /// Per call: the attempts it made at the backend.
    pub attempts_of: Vec<u8>,
    /// Per call: `Some(true)` if it succeeded, `Some(false)` if it failed
    /// (a rejection included), `None` if it had not finished at the end.
    pub outcome: Vec<Option<bool>>,
    /// The flapping backend: how many times it came back and served.
    pub recoveries: u64,
}

impl Recorder {
    /// A recorder for `calls` calls and `span` of time from `start`.
    pub fn new(start: Instant, calls: u64, span: Duration) -> Self {
        let ms = usize::try_from(span.as_millis()).expect("a short run") + 1;
        let calls = usize::try_from(calls).expect("a short run");
        Self {
            start,
            inner: Arc::new(Mutex::new(Counts {
                attempts: vec![0; ms],
                served: vec![0; ms],
                attempts_of: vec![0; calls],
                outcome: vec![None; calls],
                recoveries: 0,
            })),
        }
    }

    fn now_ms(&self) -> usize {
        usize::try_from((Instant::now() - self.start).as_millis()).expect("a short run")
    }

    fn attempt(&self, id: u64) {
        let ms = self.now_ms();
        let mut counts = self.inner.lock().unwrap();
        counts.attempts[ms] += 1;
        let id = usize::try_from(id).expect("a short run");
        counts.attempts_of[id] = counts.attempts_of[id].saturating_add(1);
    }

    fn attempt_ended(&self, ok: bool) {
        if ok {
            let ms = self.now_ms();
            self.inner.lock().unwrap().served[ms] += 1;
        }
    }

    /// Records how call `id` ended.
    pub fn finish(&self, id: u64, ok: bool) {
        let id = usize::try_from(id).expect("a short run");
        self.inner.lock().unwrap().outcome[id] = Some(ok);
    }

    /// What was counted.
    pub fn counts(&self) -> Counts {
        self.inner.lock().unwrap().clone()
    }
}
