use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use steadfast::chaos::{Fault, FaultLayer};
use tokio::time::{advance, Instant};
use tower::{Layer, Service};

use crate::{counting, Boom, Seen, RESPONDED};

const S: fn(u64) -> Duration = Duration::from_secs;

/// "From 10 s to 40 s everything fails": a call at exactly 10 s fails, one
/// a nanosecond before passes; a call a nanosecond before 40 s fails, one at
/// exactly 40 s passes.
#[tokio::test(start_paused = true)]
async fn window_is_half_open_at_exact_virtual_instants() {
    let started = Arc::new(AtomicUsize::new(0));
    let layer = FaultLayer::builder()
        .window(S(10), S(40), Fault::error(|| Boom))
        .build()
        .unwrap();
    let start = layer.start();
    assert_eq!(start, Instant::now());
    let mut svc = layer.layer(counting(&started));
    let ns = Duration::from_nanos(1);
    assert_eq!(at(&mut svc, start, Duration::ZERO).await, Seen::Ok);
    assert_eq!(at(&mut svc, start, S(10) - ns).await, Seen::Ok);
    assert_eq!(at(&mut svc, start, S(10)).await, Seen::Error);
    assert_eq!(at(&mut svc, start, S(25)).await, Seen::Error);
    assert_eq!(at(&mut svc, start, S(40) - ns).await, Seen::Error);
    assert_eq!(at(&mut svc, start, S(40)).await, Seen::Ok);
    assert_eq!(at(&mut svc, start, S(1_000)).await, Seen::Ok);

    let snap = layer.handle().snapshot();
    assert_eq!((snap.calls, snap.errors, snap.passed), (7, 3, 4));
    assert_eq!(snap.windows, vec![3]);
}

/// Moves the paused clock to `start + offset` and makes one call there.
async fn at<S>(svc: &mut S, start: Instant, offset: Duration) -> Seen
where
    S: Service<u32, Response = u32, Error = steadfast::BoxError>,
{
    advance((start + offset) - Instant::now()).await;
    assert_eq!(Instant::now() - start, offset);
    Seen::of(svc.call(1).now_or_never())
}

/// Windows override the rated faults, the first added wins where they
/// overlap, and each window counts its own calls.
#[tokio::test(start_paused = true)]
async fn overlapping_windows_and_rates() {
    let started = Arc::new(AtomicUsize::new(0));
    let layer = FaultLayer::builder()
        .fault(1.0, Fault::reset())
        .window(S(10), S(20), Fault::refused())
        .window(S(15), S(30), Fault::respond(|| RESPONDED))
        .build()
        .unwrap();
    let mut svc = layer.layer(counting(&started));
    let mut seen = Vec::new();
    for _ in 0..35 {
        seen.push(Seen::of(svc.call(1).now_or_never()));
        advance(S(1)).await;
    }
    let expected: Vec<Seen> = (0..35)
        .map(|t| match t {
            10..=19 => Seen::Refused,
            20..=29 => Seen::Responded,
            _ => Seen::Reset,
        })
        .collect();
    assert_eq!(seen, expected);
    let snap = layer.handle().snapshot();
    assert_eq!(snap.windows, vec![10, 10]);
    assert_eq!((snap.refused, snap.responses, snap.reset), (10, 10, 15));
}

/// `start_at` moves the origin of the windows: a layer built late can
/// share a schedule with another.
#[tokio::test(start_paused = true)]
async fn start_at_sets_the_origin() {
    let started = Arc::new(AtomicUsize::new(0));
    let origin = Instant::now();
    advance(S(12)).await;
    let layer = FaultLayer::builder()
        .start_at(origin)
        .window(S(10), S(20), Fault::refused())
        .build()
        .unwrap();
    assert_eq!(layer.start(), origin);
    let mut svc = layer.layer(counting(&started));
    assert_eq!(Seen::of(svc.call(1).now_or_never()), Seen::Refused);
    advance(S(8)).await;
    assert_eq!(Seen::of(svc.call(1).now_or_never()), Seen::Ok);
}

/// A window with a rate: over 100,000 calls inside it, its share is within
/// 5σ of the rate; the calls it spares fall through to the rated faults;
/// outside it only the rated faults apply.
#[tokio::test(start_paused = true)]
async fn window_with_rate_is_a_brownout() {
    const CALLS: u64 = 100_000;
    let started = Arc::new(AtomicUsize::new(0));
    let layer = FaultLayer::builder()
        .seed(99)
        .fault(0.2, Fault::reset())
        .window_with_rate(S(10), S(40), 0.5, Fault::error(|| Boom))
        .build()
        .unwrap();
    let mut svc = layer.layer(counting(&started));
    let before = count(&mut svc, CALLS);
    assert_eq!(before.get(&Seen::Error), None);
    advance(S(10)).await;
    let during = count(&mut svc, CALLS);

    let sigma = |p: f64| (CALLS as f64 * p * (1.0 - p)).sqrt();
    let within = |got: u64, p: f64| (got as f64 - CALLS as f64 * p).abs() <= 5.0 * sigma(p);
    let errors = during[&Seen::Error];
    assert!(within(errors, 0.5), "{errors}");
    // Resets: 20 % of the half the window spared.
    let resets = during[&Seen::Reset];
    assert!(within(resets, 0.1), "{resets}");
    assert!(
        within(before[&Seen::Reset], 0.2),
        "{}",
        before[&Seen::Reset]
    );

    let snap = layer.handle().snapshot();
    assert_eq!(snap.windows, vec![errors]);
    assert_eq!(snap.errors, errors);
    assert_eq!(snap.reset, resets + before[&Seen::Reset]);
    assert_eq!(snap.calls, 2 * CALLS);
}

/// Makes `calls` calls at the current instant and counts what they returned.
fn count<S>(svc: &mut S, calls: u64) -> std::collections::HashMap<Seen, u64>
where
    S: Service<u32, Response = u32, Error = steadfast::BoxError>,
{
    let mut seen = std::collections::HashMap::new();
    for i in 0..calls {
        *seen
            .entry(Seen::of(svc.call(i as u32).now_or_never()))
            .or_default() += 1;
    }
    seen
}
