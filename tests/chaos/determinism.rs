use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use steadfast::chaos::{Fault, FaultLayer, Latency};
use tokio::time::{sleep, timeout, Instant};
use tower::{Layer, Service, ServiceExt};

use crate::{counting, Boom, Seen, RESPONDED};

const CALLS: u32 = 1_000;

fn layer(seed: u64) -> FaultLayer<u32> {
    let ms = Duration::from_millis;
    FaultLayer::builder()
        .seed(seed)
        .latency(Latency::exponential(ms(20), ms(200)))
        .latency_rate(0.3)
        .fault(0.1, Fault::error(|| Boom))
        .fault(0.1, Fault::refused())
        .fault(0.05, Fault::reset())
        .fault(0.05, Fault::respond(|| RESPONDED))
        .fault(0.02, Fault::hang())
        .fault(0.1, Fault::delay(Latency::uniform(ms(1), ms(50))))
        .window(
            Duration::from_secs(10),
            Duration::from_secs(20),
            Fault::refused(),
        )
        .build()
        .unwrap()
}

/// One run: a call every 25 ms of virtual time, each recorded with what it
/// returned and how long it took (hangs are cut at 1 s).
async fn run(layer: FaultLayer<u32>) -> Vec<(Seen, Duration)> {
    let started = Arc::new(AtomicUsize::new(0));
    let mut svc = layer.layer(counting(&started));
    let mut seen = Vec::with_capacity(CALLS as usize);
    let origin = Instant::now();
    for i in 0..CALLS {
        // Calls start on a fixed schedule, whatever the last one took.
        tokio::time::sleep_until(origin + Duration::from_millis(25) * i).await;
        let start = Instant::now();
        let result = timeout(Duration::from_secs(1), svc.ready().await.unwrap().call(i))
            .await
            .ok();
        seen.push((Seen::of(result), start.elapsed()));
    }
    seen
}

/// The same seed on the same virtual-time schedule gives the same
/// sequence, call by call, latencies included; another seed does not.
#[tokio::test(start_paused = true)]
async fn same_seed_same_sequence() {
    let first = run(layer(2024)).await;
    sleep(Duration::from_secs(3)).await;
    let second = run(layer(2024)).await;
    assert_eq!(first, second);

    // Every kind of outcome happened, so the comparison means something.
    for kind in [
        Seen::Ok,
        Seen::Responded,
        Seen::Error,
        Seen::Refused,
        Seen::Reset,
        Seen::Hang,
    ] {
        assert!(first.iter().any(|(s, _)| *s == kind), "no {kind:?}");
    }
    // 10 s to 20 s at 25 ms per call: calls 400 to 799 all hit the window
    // (unless their latency was drawn, they are refused at once).
    assert!(first[400..800].iter().all(|(s, _)| *s == Seen::Refused));

    let other = run(layer(2025)).await;
    assert_ne!(first, other);
    let differ = first.iter().zip(&other).filter(|(a, b)| a != b).count();
    assert!(differ > 100, "only {differ} of {CALLS} calls differ");
}

/// The sequence belongs to the layer: calls spread over clones and over
/// services made by the layer draw the same faults as calls through one
/// service, in the order they are made.
#[tokio::test(start_paused = true)]
async fn clones_share_one_sequence() {
    let started = Arc::new(AtomicUsize::new(0));
    let single = layer(9);
    let mut one = single.layer(counting(&started));
    let shared = layer(9);
    let mut a = shared.layer(counting(&started));
    let mut b = a.clone();
    let mut c = shared.layer(counting(&started));
    for i in 0..300u32 {
        let expected = Seen::of(timeout(Duration::from_secs(1), one.call(i)).await.ok());
        let svc = match i % 3 {
            0 => &mut a,
            1 => &mut b,
            _ => &mut c,
        };
        let got = Seen::of(timeout(Duration::from_secs(1), svc.call(i)).await.ok());
        assert_eq!(got, expected, "call {i}");
    }
    assert_eq!(
        single.handle().snapshot().calls,
        shared.handle().snapshot().calls
    );
}
