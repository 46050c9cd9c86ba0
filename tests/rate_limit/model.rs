//! Model-based property test: the limiter against a reference GCRA on
//! integer nanoseconds.
//!
//! Random configurations (rates, periods that the rate does and does not
//! divide, bursts) and random sequences of `(advance, call)` operations run
//! against the real limiter, through its public `Service` API on a paused
//! tokio clock, and against [`Gcra`], written from the module docs. Every
//! admit/reject decision, every `retry_after`, and `available()` after
//! every operation must agree exactly.

use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

use super::*;

/// The reference: one `tat`, in nanoseconds since the limiter was built.
#[derive(Debug)]
struct Gcra {
    interval: u64,
    burst: u64,
    tat: u64,
}

impl Gcra {
    fn new(rate: u64, period: Duration, burst: u64) -> Self {
        // The period divided by the rate, rounded up: never more than configured.
        Self {
            interval: nanos(period).div_ceil(rate),
            burst,
            tat: 0,
        }
    }

    /// A call at `now`: `Ok` admitted, `Err(retry_after)` rejected.
    fn call(&mut self, now: u64) -> Result<(), u64> {
        let next = self.tat.max(now) + self.interval;
        let span = self.burst * self.interval;
        if next - now <= span {
            self.tat = next;
            Ok(())
        } else {
            Err(next - now - span)
        }
    }

    fn available(&self, now: u64) -> u64 {
        let used = self.tat.saturating_sub(now);
        (self.burst * self.interval).saturating_sub(used) / self.interval
    }
}

#[derive(Debug, Clone, Copy)]
enum Op {
    /// Moves the clock on by this many nanoseconds.
    Advance(u64),
    /// Makes this many calls at the current instant.
    Call(u32),
}

#[derive(Debug, Clone, Copy)]
struct Cfg {
    rate: u64,
    period: Duration,
    burst: u64,
}

fn cfg_strategy() -> impl Strategy<Value = Cfg> {
    (
        1..=12u64,
        prop::sample::select(vec![
            Duration::from_nanos(12),
            Duration::from_nanos(1_000),
            Duration::from_nanos(1_001),
            Duration::from_micros(7),
            Duration::from_millis(1),
            Duration::from_secs(1),
        ]),
        1..=6u64,
    )
        .prop_map(|(rate, period, burst)| Cfg {
            rate,
            period,
            burst,
        })
}

/// Operations whose gaps are on the scale of the interval, so the sequence
/// crosses the limit both ways.
fn case_strategy() -> impl Strategy<Value = (Cfg, Vec<Op>)> {
    cfg_strategy().prop_flat_map(|cfg| {
        let interval = nanos(cfg.period).div_ceil(cfg.rate);
        let op = prop_oneof![
            3 => (0..=3 * interval).prop_map(Op::Advance),
            1 => (0..=interval / 3).prop_map(Op::Advance),
            1 => Just(Op::Advance(interval * cfg.burst)),
            4 => (1..=3u32).prop_map(Op::Call),
        ];
        (Just(cfg), prop::collection::vec(op, 1..120))
    })
}

/// Runs `ops` against the limiter and the reference on a fresh paused
/// runtime; `Err` describes the first disagreement.
fn run(cfg: Cfg, ops: &[Op]) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async {
        let start = Instant::now();
        let layer = layer(cfg.rate, cfg.period, cfg.burst);
        let handle = layer.handle();
        let (mut svc, _rec) = service(&layer);
        let mut model = Gcra::new(cfg.rate, cfg.period, cfg.burst);
        let (mut req, mut rejected) = (0, 0);
        for (i, &op) in ops.iter().enumerate() {
            match op {
                Op::Advance(ns) => tokio::time::advance(Duration::from_nanos(ns)).await,
                Op::Call(n) => {
                    for _ in 0..n {
                        let now = nanos(Instant::now() - start);
                        let expected = model.call(now);
                        let got = match try_call(&mut svc, req) {
                            Some(Ok(_)) => Ok(()),
                            Some(Err(l)) => {
                                if l.waited() != Duration::ZERO {
                                    return Err(format!("op {i}: waited {:?}", l.waited()));
                                }
                                rejected += 1;
                                Err(nanos(l.retry_after()))
                            }
                            None => return Err(format!("op {i}: the call waits")),
                        };
                        if got != expected {
                            return Err(format!(
                                "op {i} at {now} ns: limiter {got:?}, reference {expected:?} ({model:?})"
                            ));
                        }
                        req += 1;
                    }
                }
            }
            let now = nanos(Instant::now() - start);
            if handle.available() != model.available(now) {
                return Err(format!(
                    "op {i} at {now} ns: available {}, reference {}",
                    handle.available(),
                    model.available(now)
                ));
            }
        }
        let s = handle.snapshot();
        if (s.rejected, s.waiting, s.waited) != (rejected, 0, 0) {
            return Err(format!("snapshot {s:?}, {rejected} rejected"));
        }
        Ok(())
    })
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
        max_shrink_iters: 10_000,
        // Relative to the package root, where `cargo test` runs.
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "tests/proptest-regressions/rate_limit_model.txt",
        ))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn limiter_matches_reference_gcra((cfg, ops) in case_strategy()) {
        if let Err(msg) = run(cfg, &ops) {
            return Err(TestCaseError::fail(format!("{cfg:?}\n{msg}")));
        }
    }
}

/// A fixed sequence through the same comparison: burst spent, a rejection
/// with the exact wait, the cell taken at that instant, the interval that
/// does not divide the period (1001 / 3 rounds up to 334 ns).
#[test]
fn fixed_sequence_matches_reference() {
    let cfg = Cfg {
        rate: 3,
        period: Duration::from_nanos(1_001),
        burst: 2,
    };
    let ops = [
        Op::Call(3),
        Op::Advance(333),
        Op::Call(1),
        Op::Advance(1),
        Op::Call(2),
        Op::Advance(5_000),
        Op::Call(3),
    ];
    run(cfg, &ops).unwrap();
    let mut g = Gcra::new(cfg.rate, cfg.period, cfg.burst);
    assert_eq!(g.interval, 334);
    assert_eq!(
        (g.call(0), g.call(0), g.call(0)),
        (Ok(()), Ok(()), Err(334))
    );
    assert_eq!((g.call(333), g.call(334)), (Err(1), Ok(())));
}
