//! Hedge layer behaviour on paused virtual time.
//!
//! * `schedule`: the exact instant of each hedge; the first answer wins
//!   and the losers are dropped; non-fatal results send the next hedge at
//!   once; a non-retryable failure is the answer;
//! * `cancel`: dropping the response future drops every attempt and
//!   refunds a hedge not sent;
//! * `budget`: hedges draw on the retry budget; it caps them in an outage;
//!   a hedge refused waits on the attempts already sent;
//! * `compose`: each hedge is a call the bulkhead and the breaker see;
//!   losers give their slots back;
//! * `safety`: only requests safe to repeat are hedged (feature `http`);
//!   gRPC hedges carry their number and the time left;
//! * `deadline`: no hedge at or after the deadline;
//! * `percentile`: the delay follows the latency percentile of the window;
//! * `alloc`: a call answered at once allocates nothing;
//! * `config`: bad settings are an `InvalidConfig` naming the field;
//! * `tail`: a simulation of a heavy-tailed backend, p99 and p99.9 with and
//!   without hedging (`--nocapture` prints the figures).

#[path = "../support/mod.rs"]
mod support;

mod harness;

#[allow(dead_code, unreachable_pub)]
#[path = "../alloc/cases.rs"]
mod cases;

mod alloc;

mod budget;
mod cancel;
mod compose;
mod config;
#[cfg(feature = "http")]
mod deadline;
mod percentile;
#[cfg(feature = "http")]
mod safety;
mod schedule;
mod sim;
mod tail;
