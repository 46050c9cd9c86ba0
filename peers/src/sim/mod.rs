//! The outage simulation of issue #13, on tokio's paused clock.
//!
//! One client (a bare backend, a retry, a peer's breaker, the steadfast
//! preset, …) is offered one call per millisecond, 1,000 calls/s at an even
//! rate, against a backend that dies and comes back (on a schedule, or by
//! its load when it flaps).
//! Every attempt that reaches the backend is counted at the backend, every
//! call's outcome at the caller, by the millisecond; [`measure`]
//! turns that into the figures of the tables and [`plot`] into the SVGs.
//!
//! # Time
//!
//! Everything runs on one thread, in one current-thread runtime with
//! tokio's clock paused: the driver spawns call `n` at `n` ms and sleeps
//! until the next millisecond, and tokio jumps its clock from timer to
//! timer, so a 330 s run takes well under a second of real time and every
//! run is the same. The peers that keep their own clock follow it in
//! 1-ms steps, advanced by the driver right after tokio's:
//!
//! - seatbelt reads a `tick::Clock`; the driver gives it one made by a
//!   `tick::ClockControl` (feature `test-util`) and advances that;
//! - failsafe reads `failsafe::clock::now()`, which is a thread-local
//!   mock clock inside `failsafe::clock::freeze` (public but
//!   `#[doc(hidden)]`: failsafe's own tests drive it the same way); the
//!   whole run happens inside `freeze`.
//!
//! Randomness is seeded: steadfast's breaker and retry take a seed,
//! seatbelt's retry jitter draws from the thread-local `fastrand` generator,
//! which the driver seeds before each run.

pub mod backend;
pub mod clients;
pub mod plot;
pub mod report;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use tokio::time::Instant;

pub use self::backend::{Backend, Behaviour, Recorder};
pub use self::clients::{Client, CLIENTS};
pub use self::report::{measure, Figures};

/// The error every client's calls end with.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// One call: its number, which is also the millisecond it was offered at,
/// and the deadline the steadfast preset gives it.
#[derive(Clone, Debug)]
pub struct Call {
    /// The call's number: offered at `id` ms.
    pub id: u64,
    deadline: Option<steadfast::deadline::Deadline>,
}

impl Call {
    /// Call number `id`.
    pub const fn new(id: u64) -> Self {
        Self { id, deadline: None }
    }
}

impl steadfast::deadline::CarriesDeadline for Call {
    fn deadline(&self) -> Option<steadfast::deadline::Deadline> {
        self.deadline
    }
    fn set_deadline(&mut self, deadline: steadfast::deadline::Deadline) {
        self.deadline = Some(deadline);
    }
}

/// A call made through a client: the future of its outcome.
pub type CallFuture = Pin<Box<dyn Future<Output = Result<(), BoxError>>>>;

/// A client, built: makes one call.
pub type MakeCall = Box<dyn FnMut(Call) -> CallFuture>;

/// The clocks a client may read besides tokio's, handed to its builder.
#[derive(Clone)]
pub struct Clocks {
    /// seatbelt's clock, advanced by the driver.
    pub tick: tick::Clock,
}

/// What the backend does and for how long calls are offered.
#[derive(Clone, Copy, Debug)]
pub struct Scenario {
    /// A short name, also the SVG's file name.
    pub name: &'static str,
    /// A one-line description for the table's heading.
    pub title: &'static str,
    /// The backend's behaviour.
    pub behaviour: Behaviour,
    /// Calls are offered from 0 to `run_for`, one per millisecond.
    pub run_for: Duration,
}

impl Scenario {
    /// Scenario A: dead from 10 s to 40 s, run to 60 s.
    pub const A: Self = Self::outage("a", "A: backend dead from 10 s to 40 s", 10, 40, 60);
    /// Scenario A': dead from 10 s to 310 s, run to 330 s.
    pub const A_LONG: Self = Self::outage(
        "a-long",
        "A': backend dead from 10 s to 310 s",
        10,
        310,
        330,
    );
    /// Scenario B: flapping from 10 s to 130 s (dead 2 s, then healthy for
    /// 1 s after its first success), run to 150 s.
    pub const B: Self = Self {
        name: "b-flapping",
        title:
            "B: backend flapping from 10 s to 130 s (dead 2 s, then up 1 s from its first success)",
        behaviour: Behaviour::Flapping {
            from: Duration::from_secs(10),
            to: Duration::from_secs(130),
            dead_for: Duration::from_secs(2),
            healthy_for: Duration::from_secs(1),
        },
        run_for: Duration::from_secs(150),
    };

    /// Dead from `from` to `to` seconds, calls offered until `run_for`.
    pub const fn outage(
        name: &'static str,
        title: &'static str,
        from: u64,
        to: u64,
        run_for: u64,
    ) -> Self {
        Self {
            name,
            title,
            behaviour: Behaviour::Outage {
                from: Duration::from_secs(from),
                to: Duration::from_secs(to),
            },
            run_for: Duration::from_secs(run_for),
        }
    }

    /// The same scenario, `1/factor` as long (for a test in debug builds).
    pub fn scaled_down(mut self, factor: u32) -> Self {
        self.run_for /= factor;
        self.behaviour = match self.behaviour {
            Behaviour::Outage { from, to } => Behaviour::Outage {
                from: from / factor,
                to: to / factor,
            },
            b => b,
        };
        self
    }

    /// When the backend is unhealthy: `[from, to)`.
    pub fn trouble(&self) -> (Duration, Duration) {
        match self.behaviour {
            Behaviour::Outage { from, to } | Behaviour::Flapping { from, to, .. } => (from, to),
        }
    }
}

/// How long the driver goes on after the last call is offered, so that
/// calls in their retries finish.
const DRAIN: Duration = Duration::from_secs(10);

/// Runs `client` through `scenario`: returns what the backend and the
/// callers saw, by the millisecond.
pub fn run(client: &Client, scenario: &Scenario) -> Recorder {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a current-thread runtime");
    let tasks = tokio::task::LocalSet::new();
    // seatbelt's retry jitter: the thread-local generator, seeded.
    fastrand::seed(13);
    failsafe::clock::freeze(|failsafe_clock| {
        tasks.block_on(&runtime, async {
            let start = Instant::now();
            let control = tick::ClockControl::new();
            let clocks = Clocks {
                tick: control.to_clock(),
            };
            let calls = u64::try_from(scenario.run_for.as_millis()).expect("a short run");
            let recorder = Recorder::new(start, calls, scenario.run_for + DRAIN);
            let backend = Backend::new(scenario.behaviour, start, recorder.clone());
            let mut make_call = (client.build)(backend, &clocks);
            let step = Duration::from_millis(1);
            let mut now = start;
            let end = start + scenario.run_for + DRAIN;
            let mut id = 0;
            while now < end {
                if id < calls {
                    let call = make_call(Call::new(id));
                    let outcomes = recorder.clone();
                    tokio::task::spawn_local(async move {
                        let result = call.await;
                        outcomes.finish(id, result.is_ok());
                    });
                    id += 1;
                }
                now += step;
                tokio::time::sleep_until(now).await;
                control.advance(step);
                failsafe_clock.advance(step);
            }
            recorder
        })
    })
}
