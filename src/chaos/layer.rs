use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tower_layer::Layer;

use super::draw::{self, Draws};
use super::fault::{Fault, Kind, Latency};
use super::handle::{Decision, FaultHandle, Stats};
use super::service::FaultService;
use crate::error::InvalidConfig;

/// Wraps services in a [`FaultService`] that injects latency, errors,
/// hangs and outages; every service it makes, and every clone of those,
/// draws from one seeded sequence and counts into one snapshot.
///
/// `Res` is the inner service's response type. It is inferred from the
/// service the layer wraps; name it (`FaultLayer::<Response>::builder()`)
/// where the layer is built with no service in sight.
/// See the [module docs](super).
pub struct FaultLayer<Res> {
    shared: Arc<Shared<Res>>,
}

/// A window of virtual time, `[from, to)` after the layer's start, in which
/// a fraction `rate` of the calls get `fault`.
struct Window<Res> {
    from: Duration,
    to: Duration,
    rate: f64,
    fault: Fault<Res>,
}

/// The configuration, read by every call, and the counters.
pub(super) struct Shared<Res> {
    seed: u64,
    start: Instant,
    latency: Option<(f64, Latency)>,
    /// Each fault with the cumulative rate up to and including it.
    faults: Box<[(f64, Fault<Res>)]>,
    windows: Box<[Window<Res>]>,
    pub(super) stats: Arc<Stats>,
}

/// What one call gets: the chosen fault (if any), its delay (if any), and
/// the window it fell in.
pub(super) struct Plan<'a, Res> {
    pub(super) fault: Option<&'a Fault<Res>>,
    pub(super) delay: Option<Duration>,
}

impl<Res> Shared<Res> {
    /// Draws call `n`'s faults at `now` and counts them.
    pub(super) fn plan(&self, now: Instant) -> Plan<'_, Res> {
        let n = self.stats.next_call();
        let draws = Draws::new(self.seed, n);
        let mut delay = match &self.latency {
            Some((rate, latency)) if draws.unit(draw::LATENCY_GATE) < *rate => {
                Some(latency.sample(draws.unit(draw::LATENCY_VALUE)))
            }
            _ => None,
        };
        let mut window = None;
        let mut fault = None;
        if !self.windows.is_empty() {
            let elapsed = now.saturating_duration_since(self.start);
            if let Some((i, w)) = self.windows.iter().enumerate().find(|(i, w)| {
                w.from <= elapsed
                    && elapsed < w.to
                    && (w.rate >= 1.0 || draws.unit(draw::WINDOW + *i as u64) < w.rate)
            }) {
                window = Some(i);
                fault = Some(&w.fault);
            }
        }
        if window.is_none() && !self.faults.is_empty() {
            let u = draws.unit(draw::FAULT_PICK);
            fault = self
                .faults
                .iter()
                .find(|(upto, _)| u < *upto)
                .map(|(_, f)| f);
        }
        let decision = match fault.map(|f| &f.kind) {
            None => Decision::Passed,
            Some(Kind::Delay(latency)) => {
                let extra = latency.sample(draws.unit(draw::FAULT_DELAY));
                delay = Some(delay.map_or(extra, |d| d.saturating_add(extra)));
                Decision::Passed
            }
            Some(Kind::Error(_)) => Decision::Error,
            Some(Kind::Respond(_)) => Decision::Response,
            #[cfg(feature = "http")]
            Some(Kind::Http { .. }) => Decision::Response,
            Some(Kind::Hang) => Decision::Hang,
            Some(Kind::Refused) => Decision::Refused,
            Some(Kind::Reset) => Decision::Reset,
        };
        self.stats.record(decision, delay.is_some(), window);
        Plan { fault, delay }
    }
}

impl<Res> FaultLayer<Res> {
    /// A builder for a fault layer. With nothing set, the layer passes
    /// every call through untouched (and counts it).
    pub fn builder() -> FaultBuilder<Res> {
        FaultBuilder {
            seed: 0,
            start: None,
            latency: None,
            latency_rate: 1.0,
            faults: Vec::new(),
            windows: Vec::new(),
            name: None,
        }
    }

    /// A handle on the layer's counters.
    pub fn handle(&self) -> FaultHandle {
        FaultHandle::new(self.shared.stats.clone())
    }

    /// The instant the windows are measured from.
    pub fn start(&self) -> Instant {
        self.shared.start
    }
}

impl<Res> Clone for FaultLayer<Res> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<Res> fmt::Debug for FaultLayer<Res> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.shared.fmt(f)
    }
}

impl<Res> fmt::Debug for Shared<Res> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultLayer")
            .field("name", &self.stats.name)
            .field("seed", &self.seed)
            .field("latency", &self.latency)
            .field("faults", &self.faults.len())
            .field("windows", &self.windows.len())
            .finish_non_exhaustive()
    }
}

impl<S, Res> Layer<S> for FaultLayer<Res> {
    type Service = FaultService<S, Res>;

    fn layer(&self, inner: S) -> Self::Service {
        FaultService::new(inner, self.shared.clone())
    }
}

/// Builds a [`FaultLayer`]; made by [`FaultLayer::builder`].
///
/// [`build`](Self::build) checks the values and names the first bad field.
pub struct FaultBuilder<Res> {
    seed: u64,
    start: Option<Instant>,
    latency: Option<Latency>,
    latency_rate: f64,
    faults: Vec<(f64, Fault<Res>)>,
    windows: Vec<Window<Res>>,
    name: Option<Cow<'static, str>>,
}

impl<Res> FaultBuilder<Res> {
    /// The seed of the layer's random draws (default 0). The same seed,
    /// with the calls made in the same order at the same virtual instants,
    /// gives the same faults.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Delays calls by `latency` before anything else happens to them (a
    /// fault, or the inner call). Every call by default; see
    /// [`latency_rate`](Self::latency_rate).
    pub fn latency(mut self, latency: Latency) -> Self {
        self.latency = Some(latency);
        self
    }

    /// The fraction of calls that get the [`latency`](Self::latency), in
    /// `[0, 1]` (default 1: every call).
    pub fn latency_rate(mut self, rate: f64) -> Self {
        self.latency_rate = rate;
        self
    }

    /// Gives a fraction `rate` of the calls, in `[0, 1]`, this fault.
    ///
    /// May be called more than once: the faults are exclusive — each call
    /// gets at most one of them — so their rates must add up to at most 1.
    /// Calls in a [window](Self::window) get the window's fault instead.
    pub fn fault(mut self, rate: f64, fault: Fault<Res>) -> Self {
        self.faults.push((rate, fault));
        self
    }

    /// Gives every call made in `[from, to)` after the layer's
    /// [start](Self::start_at) this fault: a call at exactly `from` gets
    /// it, one at exactly `to` does not. Time is tokio's, so a paused test
    /// clock moves windows exactly.
    ///
    /// May be called more than once; where windows overlap, the one added
    /// first wins. Inside a window the [rated faults](Self::fault) are not
    /// drawn; the [latency](Self::latency) still is.
    pub fn window(self, from: Duration, to: Duration, fault: Fault<Res>) -> Self {
        self.window_with_rate(from, to, 1.0, fault)
    }

    /// Like [`window`](Self::window), but only a fraction `rate` of the
    /// calls made in `[from, to)`, in `[0, 1]`, get the fault: a brownout
    /// rather than an outage ("from 10 s to 40 s, half the calls fail").
    ///
    /// A call the window's draw spares is treated as if the window were not
    /// there: a later window, or the [rated faults](Self::fault), may still
    /// give it a fault.
    pub fn window_with_rate(
        mut self,
        from: Duration,
        to: Duration,
        rate: f64,
        fault: Fault<Res>,
    ) -> Self {
        self.windows.push(Window {
            from,
            to,
            rate,
            fault,
        });
        self
    }

    /// The instant windows are measured from (default: when
    /// [`build`](Self::build) runs, by tokio's clock).
    pub fn start_at(mut self, start: Instant) -> Self {
        self.start = Some(start);
        self
    }

    /// A name for the layer's snapshot.
    pub fn name(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Checks the values and makes the layer.
    ///
    /// # Errors
    ///
    /// [`InvalidConfig`] naming the first bad field:
    ///
    /// - `chaos.latency_rate`, `chaos.faults[i].rate`,
    ///   `chaos.windows[i].rate`: not a finite number in `[0, 1]`;
    /// - `chaos.faults`: the rates add up to more than 1;
    /// - `chaos.latency`, `chaos.faults[i].delay`, `chaos.windows[i].delay`:
    ///   a uniform latency whose `min` exceeds its `max`;
    /// - `chaos.windows[i]`: a window that is empty (`from >= to`);
    /// - `chaos.faults[i].retry_after`, `….grpc_message` (and the same under
    ///   `chaos.windows[i]`): a setter used on a fault it does not apply to.
    pub fn build(self) -> Result<FaultLayer<Res>, InvalidConfig> {
        check_rate("chaos.latency_rate", self.latency_rate)?;
        if let Some(latency) = &self.latency {
            latency.check(|| "chaos.latency".to_owned())?;
        }
        let mut total = 0.0;
        let mut faults = Vec::with_capacity(self.faults.len());
        for (i, (rate, fault)) in self.faults.into_iter().enumerate() {
            check_rate(&format!("chaos.faults[{i}].rate"), rate)?;
            fault.check(&format!("chaos.faults[{i}]"))?;
            total += rate;
            faults.push((total, fault));
        }
        // A little room for rounding: 0.1 + 0.2 + 0.7 is 1.0000000000000002.
        if total > 1.0 + 1e-9 {
            return Err(InvalidConfig::new(
                "chaos.faults",
                format!("the rates add up to {total}, more than 1"),
            ));
        }
        for (i, w) in self.windows.iter().enumerate() {
            if w.from >= w.to {
                return Err(InvalidConfig::new(
                    format!("chaos.windows[{i}]"),
                    format!(
                        "must not be empty: from {:?} is not before to {:?}",
                        w.from, w.to
                    ),
                ));
            }
            check_rate(&format!("chaos.windows[{i}].rate"), w.rate)?;
            w.fault.check(&format!("chaos.windows[{i}]"))?;
        }
        let stats = Arc::new(Stats::new(self.name, self.windows.len()));
        Ok(FaultLayer {
            shared: Arc::new(Shared {
                seed: self.seed,
                start: self.start.unwrap_or_else(Instant::now),
                latency: self.latency.map(|l| (self.latency_rate, l)),
                faults: faults.into_boxed_slice(),
                windows: self.windows.into_boxed_slice(),
                stats,
            }),
        })
    }
}

fn check_rate(field: &str, rate: f64) -> Result<(), InvalidConfig> {
    if rate.is_finite() && (0.0..=1.0).contains(&rate) {
        Ok(())
    } else {
        Err(InvalidConfig::new(
            field.to_owned(),
            format!("must be a finite number in [0, 1], got {rate}"),
        ))
    }
}

impl<Res> fmt::Debug for FaultBuilder<Res> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultBuilder")
            .field("seed", &self.seed)
            .field("latency", &self.latency)
            .field("latency_rate", &self.latency_rate)
            .field("faults", &self.faults)
            .field("windows", &self.windows.len())
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}
