//! Model-based property test of the circuit breaker.
//!
//! Random sequences of operations run against the real breaker, through its
//! public tower `Service` API on a paused tokio clock, and against
//! [`Model`]: a plain, single-threaded reference written from the documented
//! semantics. After every operation the two must agree on whether a call was
//! admitted (or rejected, in which state and with what `retry_after`), on the
//! breaker's state, on the snapshot counters, and on the transitions reported
//! to `on_transition`.

#[path = "../support/mod.rs"]
mod support;

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use steadfast::circuit_breaker::error::CircuitOpen;
use steadfast::circuit_breaker::{
    CircuitBreakerConfig, CircuitBreakerHandle, CircuitBreakerLayer, CircuitBreakerSnapshot,
    CircuitState, TransitionReason, Window,
};
use steadfast::classify::Outcome;
use steadfast::BoxError;
use tokio::sync::oneshot;
use tokio_test::task;
use tower::{service_fn, Layer, Service, ServiceExt};

const MS: u64 = 1_000_000;
const OPEN_MS: u64 = 100;
const MAX_OPEN_MS: u64 = 400;
/// A trip from closed less than this after probes closed the breaker grows
/// the open duration.
const FLAP_MS: u64 = 300;

// === configuration ===

#[derive(Debug, Clone, Copy)]
struct Cfg {
    window: u32,
    /// Percent; `None` turns the failure-rate rule off.
    failure_rate: Option<u32>,
    minimum_calls: u32,
    consecutive: Option<u32>,
    half_open_max: u32,
    success_threshold: u32,
    probe_timeout_ms: u64,
}

fn cfg_strategy() -> impl Strategy<Value = Cfg> {
    (2..=8u32)
        .prop_flat_map(|window| {
            (
                Just(window),
                prop_oneof![
                    1 => Just(None),
                    3 => prop::sample::select(vec![25u32, 50, 100]).prop_map(Some),
                ],
                1..=window,
                prop_oneof![1 => Just(None), 3 => (2..=5u32).prop_map(Some)],
                1..=3u32,
                1..=3u32,
                prop::sample::select(vec![150u64, 250, 1_000]),
            )
        })
        .prop_map(
            |(
                window,
                failure_rate,
                minimum_calls,
                consecutive,
                half_open_max,
                success_threshold,
                probe_timeout_ms,
            )| {
                // At least one trip rule must be on.
                let consecutive = if failure_rate.is_none() && consecutive.is_none() {
                    Some(3)
                } else {
                    consecutive
                };
                Cfg {
                    window,
                    failure_rate,
                    minimum_calls,
                    consecutive,
                    half_open_max,
                    success_threshold,
                    probe_timeout_ms,
                }
            },
        )
}

type Recorded = (
    CircuitState,
    CircuitState,
    TransitionReason,
    Option<Duration>,
);

fn build_config(cfg: &Cfg, log: Arc<Mutex<Vec<Recorded>>>) -> CircuitBreakerConfig {
    let mut b = CircuitBreakerConfig::builder()
        .window(Window::count(cfg.window))
        .minimum_calls(cfg.minimum_calls)
        .open_jitter(0.0)
        .open_duration(Duration::from_millis(OPEN_MS))
        .open_duration_multiplier(2.0)
        .max_open_duration(Duration::from_millis(MAX_OPEN_MS))
        .flap_window(Duration::from_millis(FLAP_MS))
        .half_open_max_calls(cfg.half_open_max)
        .success_threshold(cfg.success_threshold)
        .probe_timeout(Duration::from_millis(cfg.probe_timeout_ms))
        .on_transition(move |t| {
            log.lock()
                .unwrap()
                .push((t.from(), t.to(), t.reason(), t.open_for()))
        });
    b = match cfg.failure_rate {
        Some(p) => b.failure_rate(f64::from(p)),
        None => b.without_failure_rate(),
    };
    b = match cfg.consecutive {
        Some(n) => b.consecutive_failures(n),
        None => b.without_consecutive_failures(),
    };
    b.build().expect("valid config")
}

// === operations ===

#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    /// Call the service.
    Start,
    /// Call the service and, if the call is admitted, complete it at once.
    Call(Outcome),
    /// Complete an outstanding call with this outcome and poll it to the end.
    /// (Outstanding calls are numbered in the order they were admitted; the
    /// index is taken modulo their number.)
    Complete(usize, Outcome),
    /// Drop an outstanding call's future.
    Drop(usize),
    /// Move the paused clock forward by this many milliseconds.
    Advance(u64),
    /// `handle.force_open()`.
    ForceOpen,
    /// `handle.disable()`.
    Disable,
    /// `handle.reset()`.
    Reset,
}

impl fmt::Debug for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::Start => f.write_str("Start"),
            Op::Call(o) => write!(f, "Call({o:?})"),
            Op::Complete(i, o) => write!(f, "Complete({i}, {o:?})"),
            Op::Drop(i) => write!(f, "Drop({i:?})"),
            Op::Advance(ms) => write!(f, "Advance({ms}ms)"),
            Op::ForceOpen => f.write_str("ForceOpen"),
            Op::Disable => f.write_str("Disable"),
            Op::Reset => f.write_str("Reset"),
        }
    }
}

/// Operations for one case. `failure_weight` (1 to 6, out of 7 for
/// non-ignored outcomes) makes some cases mostly healthy and others mostly
/// failing, so both long closed phases and many open/half-open cycles occur;
/// manual control appears only in some cases, and rarely.
fn op_strategy(failure_weight: u32, manual: bool) -> impl Strategy<Value = Op> {
    let outcome = prop_oneof![
        7 - failure_weight => Just(Outcome::Success),
        failure_weight => Just(Outcome::Failure),
        1 => Just(Outcome::Ignored),
    ];
    let advance = prop_oneof![
        1 => Just(1u64),
        2 => prop::sample::select(vec![
            OPEN_MS - 1,
            OPEN_MS,
            2 * OPEN_MS,
            FLAP_MS - 1,
            FLAP_MS,
            MAX_OPEN_MS,
        ]),
        2 => (1..=8u64).prop_map(|k| k * 50),
        1 => 1..=500u64,
        1 => Just(1_000),
    ];
    prop_oneof![
        6 => Just(Op::Start),
        6 => (0..8usize, outcome.clone()).prop_map(|(i, o)| Op::Complete(i, o)),
        8 => outcome.prop_map(Op::Call),
        2 => (0..8usize).prop_map(Op::Drop),
        5 => advance.prop_map(Op::Advance),
        u32::from(manual) => prop_oneof![Just(Op::ForceOpen), Just(Op::Disable), Just(Op::Reset)],
    ]
}

fn case_strategy() -> impl Strategy<Value = (Cfg, Vec<Op>)> {
    (cfg_strategy(), 1..=6u32, prop::bool::weighted(0.25)).prop_flat_map(
        |(cfg, failure_weight, manual)| {
            (
                Just(cfg),
                prop::collection::vec(op_strategy(failure_weight, manual), 1..=60),
            )
        },
    )
}

// === the reference model ===

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Closed,
    Probe,
    Disabled,
}

/// What the model remembers about an admitted call.
#[derive(Debug, Clone, Copy)]
struct Ticket {
    kind: Kind,
    /// The number of state changes before the call was admitted.
    generation: u64,
}

/// The answer to `Start`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Admission {
    Admitted,
    Rejected(CircuitState, Option<Duration>),
}

/// The documented semantics, written out plainly. Time is nanoseconds since
/// the breaker was made.
#[derive(Debug)]
struct Model {
    cfg: Cfg,
    now: u64,
    state: CircuitState,
    /// Bumped by every state change (and by a reset of a closed breaker): a
    /// result of a call admitted in an earlier generation is late.
    generation: u64,
    /// Failure flags of the last `cfg.window` recorded outcomes of this closed phase.
    window: VecDeque<bool>,
    consecutive: u32,
    /// Growth steps of the open duration: each trip from closed less than
    /// `FLAP_MS` after probes closed the breaker adds one, any other trip
    /// from closed and any manual transition starts again at 0, and a failed
    /// probe keeps it.
    level: u32,
    /// When probes last closed the breaker.
    closed_at: Option<u64>,
    open_until: u64,
    open_since: Option<u64>,
    open_total: u64,
    probes_in_flight: u32,
    probe_successes: u32,
    probe_deadline: u64,
    successes: u64,
    failures: u64,
    ignored: u64,
    rejected: u64,
    late: u64,
    cancelled: u64,
    opened: u64,
    half_opened: u64,
    closed: u64,
    transitions: Vec<Recorded>,
}

impl Model {
    fn new(cfg: Cfg) -> Self {
        Self {
            cfg,
            now: 0,
            state: CircuitState::Closed,
            generation: 0,
            window: VecDeque::new(),
            consecutive: 0,
            level: 0,
            closed_at: None,
            open_until: 0,
            open_since: None,
            open_total: 0,
            probes_in_flight: 0,
            probe_successes: 0,
            probe_deadline: 0,
            successes: 0,
            failures: 0,
            ignored: 0,
            rejected: 0,
            late: 0,
            cancelled: 0,
            opened: 0,
            half_opened: 0,
            closed: 0,
            transitions: Vec::new(),
        }
    }

    /// base × 2^level, capped.
    fn open_duration(&self) -> u64 {
        let k = self.level.min(16);
        (OPEN_MS * MS * (1u64 << k)).min(MAX_OPEN_MS * MS)
    }

    fn transition(&mut self, to: CircuitState, reason: TransitionReason) {
        let from = self.state;
        if from == to && to != CircuitState::Closed {
            return;
        }
        if let Some(since) = self.open_since.take() {
            self.open_total += self.now - since;
        }
        if reason == TransitionReason::Manual {
            self.level = 0;
            self.closed_at = None;
        }
        let mut open_for = None;
        match to {
            CircuitState::Open => {
                if from == CircuitState::Closed {
                    let flap = self.closed_at.is_some_and(|c| self.now - c < FLAP_MS * MS);
                    // The level stops growing at the cap.
                    self.level = if !flap {
                        0
                    } else if self.open_duration() < MAX_OPEN_MS * MS {
                        self.level + 1
                    } else {
                        self.level
                    };
                }
                let d = self.open_duration();
                self.open_until = self.now + d;
                self.open_since = Some(self.now);
                self.opened += 1;
                open_for = Some(Duration::from_nanos(d));
            }
            CircuitState::ForcedOpen => {
                self.open_since = Some(self.now);
                self.opened += 1;
            }
            CircuitState::HalfOpen => {
                self.probe_deadline = self.now + self.cfg.probe_timeout_ms * MS;
                self.half_opened += 1;
            }
            CircuitState::Closed => {
                self.window.clear();
                self.consecutive = 0;
                if from == CircuitState::HalfOpen {
                    self.closed_at = Some(self.now);
                }
                if from != CircuitState::Closed {
                    self.closed += 1;
                }
            }
            _ => {}
        }
        self.generation += 1;
        self.state = to;
        // The call that enters half-open is its first probe.
        self.probes_in_flight = u32::from(to == CircuitState::HalfOpen);
        self.probe_successes = 0;
        if from != to {
            self.transitions.push((from, to, reason, open_for));
        }
    }

    fn reject(&mut self, state: CircuitState, retry_after: Option<u64>) -> Admission {
        self.rejected += 1;
        Admission::Rejected(state, retry_after.map(Duration::from_nanos))
    }

    fn start(&mut self) -> (Admission, Option<Ticket>) {
        let ticket = |kind, generation| Some(Ticket { kind, generation });
        match self.state {
            CircuitState::Closed => (Admission::Admitted, ticket(Kind::Closed, self.generation)),
            CircuitState::Disabled => {
                (Admission::Admitted, ticket(Kind::Disabled, self.generation))
            }
            CircuitState::ForcedOpen => (self.reject(CircuitState::ForcedOpen, None), None),
            CircuitState::Open => {
                if self.now < self.open_until {
                    let left = self.open_until - self.now;
                    return (self.reject(CircuitState::Open, Some(left)), None);
                }
                self.transition(CircuitState::HalfOpen, TransitionReason::OpenElapsed);
                (Admission::Admitted, ticket(Kind::Probe, self.generation))
            }
            CircuitState::HalfOpen => {
                if self.probes_in_flight < self.cfg.half_open_max {
                    self.probes_in_flight += 1;
                    self.probe_deadline = self.now + self.cfg.probe_timeout_ms * MS;
                    return (Admission::Admitted, ticket(Kind::Probe, self.generation));
                }
                if self.now < self.probe_deadline {
                    return (self.reject(CircuitState::HalfOpen, None), None);
                }
                // Every slot is taken and no probe finished in time: re-open,
                // and this call is rejected by the open breaker.
                self.transition(CircuitState::Open, TransitionReason::ProbeTimeout);
                let left = self.open_until - self.now;
                (self.reject(CircuitState::Open, Some(left)), None)
            }
            other => unreachable!("model never enters {other:?}"),
        }
    }

    fn current(&self, t: Ticket, state: CircuitState) -> bool {
        self.state == state && self.generation == t.generation
    }

    fn complete(&mut self, t: Ticket, outcome: Outcome) {
        match outcome {
            Outcome::Success => self.successes += 1,
            Outcome::Failure => self.failures += 1,
            Outcome::Ignored => self.ignored += 1,
        }
        match t.kind {
            // A call admitted while disabled never moves the breaker; its
            // result is late once the breaker has left that generation.
            Kind::Disabled => {
                if !self.current(t, CircuitState::Disabled) {
                    self.late += 1;
                }
            }
            Kind::Closed => {
                if !self.current(t, CircuitState::Closed) {
                    self.late += 1;
                    return;
                }
                let failure = match outcome {
                    Outcome::Ignored => return,
                    Outcome::Success => false,
                    Outcome::Failure => true,
                };
                if self.cfg.failure_rate.is_some() {
                    if self.window.len() == self.cfg.window as usize {
                        self.window.pop_front();
                    }
                    self.window.push_back(failure);
                }
                if !failure {
                    self.consecutive = 0;
                } else if let Some(limit) = self.cfg.consecutive {
                    self.consecutive += 1;
                    if self.consecutive >= limit {
                        let run = self.consecutive;
                        self.transition(
                            CircuitState::Open,
                            TransitionReason::ConsecutiveFailures(run),
                        );
                        return;
                    }
                }
                // The rate rule judges the window after every recorded
                // outcome: a success cannot raise the rate, but it can fill
                // the window up to `minimum_calls` over earlier failures.
                if let Some(rate) = self.cfg.failure_rate {
                    let calls = self.window.len() as u64;
                    let failures = self.window.iter().filter(|f| **f).count() as u64;
                    if calls >= u64::from(self.cfg.minimum_calls)
                        && failures * 100 >= u64::from(rate) * calls
                    {
                        let pct = 100.0 * failures as f64 / calls as f64;
                        self.transition(CircuitState::Open, TransitionReason::FailureRate(pct));
                    }
                }
            }
            Kind::Probe => {
                if !self.current(t, CircuitState::HalfOpen) {
                    self.late += 1;
                    return;
                }
                match outcome {
                    Outcome::Ignored => self.probes_in_flight -= 1,
                    Outcome::Failure => {
                        self.transition(CircuitState::Open, TransitionReason::ProbeFailed)
                    }
                    Outcome::Success => {
                        if self.probe_successes + 1 >= self.cfg.success_threshold {
                            self.transition(
                                CircuitState::Closed,
                                TransitionReason::ProbesSucceeded,
                            );
                        } else {
                            self.probe_successes += 1;
                            self.probes_in_flight -= 1;
                        }
                    }
                }
            }
        }
    }

    fn cancel(&mut self, t: Ticket) {
        self.cancelled += 1;
        if t.kind == Kind::Probe && self.current(t, CircuitState::HalfOpen) {
            self.probes_in_flight -= 1;
        }
    }

    fn manual(&mut self, to: CircuitState) {
        self.transition(to, TransitionReason::Manual);
    }

    /// The snapshot fields the model predicts.
    fn expected(&self) -> Expected {
        let calls = self.window.len() as u64;
        let failures = self.window.iter().filter(|f| **f).count() as u64;
        Expected {
            state: self.state,
            successes: self.successes,
            failures: self.failures,
            ignored: self.ignored,
            rejected: self.rejected,
            late: self.late,
            cancelled: self.cancelled,
            opened: self.opened,
            half_opened: self.half_opened,
            closed: self.closed,
            window_calls: calls,
            failure_rate: (calls > 0).then(|| 100.0 * failures as f64 / calls as f64),
            consecutive_failures: self.consecutive,
            time_open: Duration::from_nanos(
                self.open_total + self.open_since.map_or(0, |s| self.now - s),
            ),
            retry_after: (self.state == CircuitState::Open)
                .then(|| Duration::from_nanos(self.open_until.saturating_sub(self.now))),
            probes_in_flight: if self.state == CircuitState::HalfOpen {
                self.probes_in_flight
            } else {
                0
            },
        }
    }
}

/// The snapshot fields under comparison.
#[derive(Debug, Clone, PartialEq)]
struct Expected {
    state: CircuitState,
    successes: u64,
    failures: u64,
    ignored: u64,
    rejected: u64,
    late: u64,
    cancelled: u64,
    opened: u64,
    half_opened: u64,
    closed: u64,
    window_calls: u64,
    failure_rate: Option<f64>,
    consecutive_failures: u32,
    time_open: Duration,
    retry_after: Option<Duration>,
    probes_in_flight: u32,
}

impl From<CircuitBreakerSnapshot> for Expected {
    fn from(s: CircuitBreakerSnapshot) -> Self {
        Self {
            state: s.state,
            successes: s.successes,
            failures: s.failures,
            ignored: s.ignored,
            rejected: s.rejected,
            late: s.late,
            cancelled: s.cancelled,
            opened: s.opened,
            half_opened: s.half_opened,
            closed: s.closed,
            window_calls: s.window_calls,
            failure_rate: s.failure_rate,
            consecutive_failures: s.consecutive_failures,
            time_open: s.time_open,
            retry_after: s.retry_after,
            probes_in_flight: s.probes_in_flight,
        }
    }
}

// === running a sequence ===

type Classifier = fn(&Result<Outcome, BoxError>) -> Outcome;

fn classify(result: &Result<Outcome, BoxError>) -> Outcome {
    match result {
        Ok(outcome) => *outcome,
        Err(_) => Outcome::Failure,
    }
}

/// The backend: each request carries the receiver its response will come
/// from; a failure is an `Err`, the other outcomes are `Ok(outcome)`.
fn backend() -> impl Service<
    oneshot::Receiver<Outcome>,
    Response = Outcome,
    Error = BoxError,
    Future = impl Future<Output = Result<Outcome, BoxError>>,
> {
    service_fn(|rx: oneshot::Receiver<Outcome>| async move {
        match rx.await {
            Ok(Outcome::Failure) => Err(BoxError::from("backend failed")),
            Ok(outcome) => Ok(outcome),
            Err(_) => Err(BoxError::from("test dropped the sender")),
        }
    })
}

/// An outstanding call: the model's ticket, the sender of its response and
/// the breaker's response future.
struct Call<F> {
    ticket: Ticket,
    tx: oneshot::Sender<Outcome>,
    fut: task::Spawn<F>,
}

/// Calls the service and the model; `Ok(true)` when the call was admitted
/// (it is then the last of `outstanding`).
async fn start<S>(
    svc: &mut S,
    model: &mut Model,
    outstanding: &mut Vec<Call<S::Future>>,
) -> Result<bool, String>
where
    S: Service<
        oneshot::Receiver<Outcome>,
        Response = Outcome,
        Error = steadfast::circuit_breaker::error::BreakerError,
    >,
{
    let (tx, rx) = oneshot::channel();
    let fut = svc
        .ready()
        .await
        .expect("service_fn is always ready")
        .call(rx);
    let mut fut = task::spawn(fut);
    let real = match fut.poll() {
        Poll::Pending => Admission::Admitted,
        Poll::Ready(Ok(o)) => return Err(format!("finished before its response: {o:?}")),
        Poll::Ready(Err(e)) => match e.downcast_ref::<CircuitOpen>() {
            Some(open) => Admission::Rejected(open.state(), open.retry_after()),
            None => return Err(format!("unexpected error {e}")),
        },
    };
    let (want, ticket) = model.start();
    if real != want {
        return Err(format!("admission: breaker {real:?}, model {want:?}"));
    }
    match ticket {
        Some(ticket) => {
            outstanding.push(Call { ticket, tx, fut });
            Ok(true)
        }
        None => Ok(false),
    }
}

/// Sends `outcome` to outstanding call `i`, polls it to the end and tells the model.
fn complete<F>(
    model: &mut Model,
    outstanding: &mut Vec<Call<F>>,
    i: usize,
    outcome: Outcome,
) -> Result<(), String>
where
    F: Future<Output = Result<Outcome, steadfast::circuit_breaker::error::BreakerError>>,
{
    let Call {
        ticket,
        tx,
        mut fut,
    } = outstanding.remove(i);
    tx.send(outcome).expect("the call is still waiting");
    let result = match fut.poll() {
        Poll::Ready(r) => r,
        Poll::Pending => return Err("completed call still pending".into()),
    };
    match (&result, outcome) {
        (Ok(o), _) if *o == outcome => {}
        (Err(e), Outcome::Failure) if !e.is::<CircuitOpen>() => {}
        _ => return Err(format!("call resolved to {result:?}")),
    }
    model.complete(ticket, outcome);
    Ok(())
}

/// Runs `ops` against the real breaker and the model; `Err` describes the
/// first disagreement, `Ok` returns the model at the end.
fn run(cfg: Cfg, ops: &[Op]) -> Result<Model, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let log = Arc::new(Mutex::new(Vec::new()));
        // Made inside the runtime, so the breaker reads the paused clock.
        let layer = CircuitBreakerLayer::with_classifier(
            build_config(&cfg, log.clone()),
            classify as Classifier,
        );
        let handle: CircuitBreakerHandle = layer.handle();
        let mut svc = layer.layer(backend());
        let mut model = Model::new(cfg);
        let mut outstanding = Vec::new();

        for (step, op) in ops.iter().enumerate() {
            let now_ms = model_ms(model.now);
            let at = |what: String| format!("step {step} ({op:?}) at {now_ms} ms: {what}");
            let done = match *op {
                Op::Start => start(&mut svc, &mut model, &mut outstanding)
                    .await
                    .map(drop),
                Op::Call(outcome) => match start(&mut svc, &mut model, &mut outstanding).await {
                    Ok(true) => {
                        let last = outstanding.len() - 1;
                        complete(&mut model, &mut outstanding, last, outcome)
                    }
                    other => other.map(drop),
                },
                Op::Complete(i, outcome) => {
                    if outstanding.is_empty() {
                        continue;
                    }
                    let i = i % outstanding.len();
                    complete(&mut model, &mut outstanding, i, outcome)
                }
                Op::Drop(i) => {
                    if outstanding.is_empty() {
                        continue;
                    }
                    let call = outstanding.remove(i % outstanding.len());
                    drop(call.fut);
                    model.cancel(call.ticket);
                    Ok(())
                }
                Op::Advance(ms) => {
                    tokio::time::advance(Duration::from_millis(ms)).await;
                    model.now += ms * MS;
                    Ok(())
                }
                Op::ForceOpen => {
                    handle.force_open();
                    model.manual(CircuitState::ForcedOpen);
                    Ok(())
                }
                Op::Disable => {
                    handle.disable();
                    model.manual(CircuitState::Disabled);
                    Ok(())
                }
                Op::Reset => {
                    handle.reset();
                    model.manual(CircuitState::Closed);
                    Ok(())
                }
            };
            done.map_err(at)?;
            if handle.state() != model.state {
                return Err(at(format!(
                    "state: breaker {:?}, model {:?}",
                    handle.state(),
                    model.state
                )));
            }
            let real = Expected::from(handle.snapshot());
            let want = model.expected();
            if real != want {
                return Err(at(format!(
                    "snapshot:\n breaker {real:?}\n model   {want:?}"
                )));
            }
            let seen = log.lock().unwrap().clone();
            if seen != model.transitions {
                return Err(at(format!(
                    "transitions:\n breaker {seen:?}\n model   {:?}",
                    model.transitions
                )));
            }
        }
        Ok(model)
    })
}

fn model_ms(nanos: u64) -> f64 {
    nanos as f64 / MS as f64
}

fn env_cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

proptest! {
    #![proptest_config(ProptestConfig {
        // 256 unless `PROPTEST_CASES` asks for more (or fewer).
        cases: env_cases(256),
        // Shrinking re-runs whole sequences; this bound keeps a failure's
        // report to a few seconds and still ends at a short sequence.
        max_shrink_iters: 10_000,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("proptest-regressions"))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn breaker_matches_model((cfg, ops) in case_strategy()) {
        support::trace_init();
        if let Err(msg) = run(cfg, &ops) {
            return Err(TestCaseError::fail(format!("{cfg:?}\n{msg}")));
        }
    }
}

// === fixed sequences, so the interesting paths are always covered ===
//
// Each runs through the same comparison as the property test, then checks
// that the sequence took the path it is named for.

fn fixed(consecutive: Option<u32>, half_open_max: u32, success_threshold: u32) -> Cfg {
    Cfg {
        window: 4,
        failure_rate: Some(50),
        minimum_calls: 2,
        consecutive,
        half_open_max,
        success_threshold,
        probe_timeout_ms: 1_000,
    }
}

/// Runs a fixed sequence; returns the model so the test can check the path
/// it meant to take was taken.
fn check(cfg: Cfg, ops: &[Op]) -> Model {
    run(cfg, ops).unwrap_or_else(|msg| panic!("{cfg:?}\n{msg}"))
}

fn reasons(model: &Model) -> Vec<TransitionReason> {
    model.transitions.iter().map(|t| t.2).collect()
}

use Op::{Advance, Drop as Cancel, Start};
use TransitionReason::{
    ConsecutiveFailures, FailureRate, Manual, OpenElapsed, ProbeFailed, ProbeTimeout,
    ProbesSucceeded,
};

fn ok(i: usize) -> Op {
    Op::Complete(i, Outcome::Success)
}

fn fail(i: usize) -> Op {
    Op::Complete(i, Outcome::Failure)
}

fn ignore(i: usize) -> Op {
    Op::Complete(i, Outcome::Ignored)
}

#[test]
fn failed_probes_keep_the_open_duration_and_flaps_grow_it() {
    // Two failures in two calls trip the rate rule; a failed probe re-opens
    // for the same 100 ms (checked 1 ms before and at its end); the probe
    // after it closes.
    let mut ops = vec![Start, Start, fail(0), fail(0), Start, Advance(OPEN_MS)];
    ops.extend([Start, fail(0), Advance(OPEN_MS - 1), Start, Advance(1)]);
    ops.extend([Start, ok(0)]);
    // Each re-trip less than FLAP_MS after the close doubles it up to the
    // cap: 200, 400, 400 ms.
    for open in [2 * OPEN_MS, 4 * OPEN_MS, MAX_OPEN_MS] {
        ops.extend([Advance(FLAP_MS - 1), Start, Start, fail(0), fail(0)]);
        ops.extend([Advance(open - 1), Start, Advance(1), Start, ok(0)]);
    }
    // Closed for the whole flap window: back to 100 ms.
    ops.extend([Advance(FLAP_MS), Start, Start, fail(0), fail(0)]);
    let model = check(fixed(None, 1, 1), &ops);
    let mut want = vec![FailureRate(100.0), OpenElapsed, ProbeFailed];
    want.extend([OpenElapsed, ProbesSucceeded]);
    for _ in 0..3 {
        want.extend([FailureRate(100.0), OpenElapsed, ProbesSucceeded]);
    }
    want.push(FailureRate(100.0));
    assert_eq!(reasons(&model), want);
    let open_for: Vec<_> = model.transitions.iter().filter_map(|t| t.3).collect();
    let ms = Duration::from_millis;
    assert_eq!(
        open_for,
        [ms(100), ms(100), ms(200), ms(400), ms(400), ms(100)]
    );
}

#[test]
fn success_that_fills_the_window_judges_earlier_failures() {
    // 25 % over a window of 2 with minimum 2: the failure alone is too few
    // calls; the success that makes two calls trips (1 of 2 failed).
    let cfg = Cfg {
        window: 2,
        failure_rate: Some(25),
        minimum_calls: 2,
        consecutive: None,
        half_open_max: 1,
        success_threshold: 1,
        probe_timeout_ms: 1_000,
    };
    let model = check(
        cfg,
        &[Op::Call(Outcome::Failure), Op::Call(Outcome::Success)],
    );
    assert_eq!(reasons(&model), [FailureRate(50.0)]);
}

#[test]
fn consecutive_rule_and_late_results() {
    let model = check(
        fixed(Some(2), 1, 1),
        &[
            Start,
            Start,
            Start,
            Start,
            ignore(0), // does not break the run
            fail(0),
            fail(0), // trips
            Start,   // rejected: open
            Advance(OPEN_MS),
            Start,   // the first probe
            Start,   // rejected: the one slot is taken
            fail(0), // admitted while closed: late, moves nothing
            ok(0),   // the probe closes
            Start,
        ],
    );
    assert_eq!(
        reasons(&model),
        [ConsecutiveFailures(2), OpenElapsed, ProbesSucceeded]
    );
    assert_eq!((model.late, model.rejected), (1, 2));
}

#[test]
fn probe_slots_cancel_ignore_and_timeout() {
    let model = check(
        fixed(Some(2), 2, 2),
        &[
            Start,
            Start,
            fail(0),
            fail(0),
            Advance(OPEN_MS),
            Start,
            Start,
            Start,     // rejected: both slots taken
            Cancel(0), // frees a slot
            Start,
            ignore(1), // frees a slot
            Start,
            Start, // rejected
            ok(0), // one success of two: frees a slot
            Start,
            Start,          // rejected
            Advance(1_000), // no probe admitted for the probe timeout
            Start,          // re-opens (100 ms again) and is rejected
            Start,          // rejected: open
            Advance(OPEN_MS),
            Start,
            ok(0), // late (previous half-open phase)
            ok(0), // late
            ok(0), // one success
            Start,
            ok(0), // two: closed
        ],
    );
    assert_eq!(
        reasons(&model),
        [
            ConsecutiveFailures(2),
            OpenElapsed,
            ProbeTimeout,
            OpenElapsed,
            ProbesSucceeded
        ]
    );
    assert_eq!((model.late, model.cancelled), (2, 1));
    assert_eq!(model.state, CircuitState::Closed);
}

#[test]
fn manual_control() {
    let model = check(
        fixed(Some(3), 1, 1),
        &[
            Start,
            Op::ForceOpen,
            Start, // rejected: forced open
            ok(0), // late
            Advance(10),
            Op::Disable,
            Start,
            Start,
            fail(0),
            fail(0), // disabled: nothing trips
            Op::Reset,
            Start,
            Op::Reset, // closed → closed: a new generation, no event
            fail(0),   // late
        ],
    );
    assert_eq!(reasons(&model), [Manual, Manual, Manual]);
    assert_eq!(
        model.transitions.iter().map(|t| t.1).collect::<Vec<_>>(),
        [
            CircuitState::ForcedOpen,
            CircuitState::Disabled,
            CircuitState::Closed
        ]
    );
    assert_eq!((model.late, model.failures), (2, 3));
    assert_eq!(model.open_total, 10 * MS);
}

/// The module docs ("Late results": "A result from a call admitted in an
/// earlier generation ... is counted in the snapshot (`late`) but moves
/// nothing") and [`CircuitBreakerHandle::reset`] ("Calls in flight at that
/// moment belong to the old generation: their results are counted as late")
/// say this result is late.
#[tokio::test(start_paused = true)]
async fn result_admitted_while_disabled_is_late_after_reset() {
    let layer = CircuitBreakerLayer::with_classifier(
        build_config(&fixed(Some(3), 1, 1), Arc::default()),
        classify as Classifier,
    );
    let handle = layer.handle();
    let mut svc = layer.layer(backend());

    handle.disable();
    let (tx, rx) = oneshot::channel();
    let mut call = task::spawn(svc.ready().await.unwrap().call(rx));
    assert!(call.poll().is_pending());
    handle.reset();
    tx.send(Outcome::Failure).unwrap();
    assert!(matches!(call.poll(), Poll::Ready(Err(_))));

    let snap = handle.snapshot();
    assert_eq!((snap.state, snap.failures), (CircuitState::Closed, 1));
    assert_eq!(
        snap.late, 1,
        "a result from the disabled generation is late"
    );
}
