//! Keyed circuit breakers: isolation, the key cap, idle eviction, key functions.
#![cfg(feature = "http")]

use std::time::Duration;

use http::Request;
use steadfast::circuit_breaker::error::CircuitOpen;
use steadfast::circuit_breaker::{
    keys, CircuitBreakerConfig, CircuitState, KeyedCircuitBreakerLayer,
};
use steadfast::BoxError;
use tower::{service_fn, Layer, Service, ServiceExt};

fn trip_after(n: u32) -> CircuitBreakerConfig {
    CircuitBreakerConfig::builder()
        .without_failure_rate()
        .consecutive_failures(n)
        .open_jitter(0.0)
        .build()
        .unwrap()
}

/// A backend that fails every request for host `bad.example`.
fn backend() -> impl Service<
    Request<()>,
    Response = u16,
    Error = BoxError,
    Future = impl std::future::Future<Output = Result<u16, BoxError>> + Send,
> + Clone {
    service_fn(|req: Request<()>| async move {
        if req.uri().host() == Some("bad.example") {
            Err::<u16, BoxError>("backend down".into())
        } else {
            Ok(200)
        }
    })
}

fn get(uri: &str) -> Request<()> {
    Request::get(uri).body(()).unwrap()
}

#[tokio::test(start_paused = true)]
async fn keys_are_isolated() {
    let layer = KeyedCircuitBreakerLayer::builder(keys::authority::<()>)
        .config(trip_after(3))
        .build()
        .unwrap();
    let handle = layer.handle();
    let mut svc = layer.layer(backend());

    for _ in 0..3 {
        let res = svc
            .ready()
            .await
            .unwrap()
            .call(get("http://bad.example/x"))
            .await;
        assert!(res.is_err());
    }
    let err = svc
        .ready()
        .await
        .unwrap()
        .call(get("http://bad.example/x"))
        .await
        .unwrap_err();
    assert!(err.is::<CircuitOpen>(), "bad host is open: {err}");

    // Another host, and the same host under another scheme, are unaffected.
    for uri in ["http://good.example/", "https://bad.example/ok"] {
        let res = svc.ready().await.unwrap().call(get(uri)).await;
        match uri {
            "http://good.example/" => assert_eq!(res.unwrap(), 200),
            _ => assert!(!res.unwrap_err().is::<CircuitOpen>()),
        }
    }

    let bad = handle
        .get(&keys::authority(&get("http://bad.example/")))
        .unwrap();
    assert_eq!(bad.state(), CircuitState::Open);
    // Authorities compare case-insensitively: one breaker for BAD.example.
    let upper = handle
        .get(&keys::authority(&get("http://BAD.EXAMPLE/")))
        .unwrap();
    assert_eq!(upper.state(), CircuitState::Open);
    let good = handle
        .get(&keys::authority(&get("http://good.example/")))
        .unwrap();
    assert_eq!(good.state(), CircuitState::Closed);
    assert_eq!(handle.len(), 3);
}

#[tokio::test(start_paused = true)]
async fn key_cap_holds_under_100k_distinct_keys() {
    let layer =
        KeyedCircuitBreakerLayer::builder(|req: &Request<()>| req.uri().host().map(str::to_owned))
            .max_keys(100)
            .build()
            .unwrap();
    let handle = layer.handle();
    let mut svc = layer.layer(backend());

    for i in 0..100_000u32 {
        let uri = format!("http://h{i}.example/");
        let res = svc.ready().await.unwrap().call(get(&uri)).await;
        assert_eq!(res.unwrap(), 200);
        if i % 10_000 == 0 {
            assert!(handle.len() <= 100);
        }
    }
    assert!(handle.len() <= 100, "len {}", handle.len());
    // Nothing was idle (the clock did not move), so the rest overflowed.
    assert_eq!(handle.overflowed(), 100_000 - handle.len() as u64);
    assert_eq!(handle.evicted(), 0);
    assert_eq!(handle.overflow().snapshot().successes, handle.overflowed());
}

#[tokio::test(start_paused = true)]
async fn idle_keys_are_evicted_to_make_room() {
    let layer =
        KeyedCircuitBreakerLayer::builder(|req: &Request<()>| req.uri().host().map(str::to_owned))
            .max_keys(4)
            .idle_timeout(Duration::from_secs(60))
            .build()
            .unwrap();
    let handle = layer.handle();
    let mut svc = layer.layer(backend());

    for i in 0..4 {
        let uri = format!("http://h{i}.example/");
        svc.ready().await.unwrap().call(get(&uri)).await.unwrap();
    }
    let before = handle.len();
    assert!(before >= 1);

    tokio::time::advance(Duration::from_secs(61)).await;
    handle.evict_idle();
    assert_eq!(handle.len(), 0);
    assert_eq!(handle.evicted(), before as u64);

    // A key in use is not evicted before its idle timeout.
    svc.ready()
        .await
        .unwrap()
        .call(get("http://busy.example/"))
        .await
        .unwrap();
    tokio::time::advance(Duration::from_secs(30)).await;
    handle.evict_idle();
    let busy = Some("busy.example".to_owned());
    assert!(handle.get(&busy).is_some());
}

#[tokio::test(start_paused = true)]
async fn an_open_breaker_is_not_pushed_out_by_a_flood_of_new_keys() {
    let layer =
        KeyedCircuitBreakerLayer::builder(|req: &Request<()>| req.uri().host().map(str::to_owned))
            .config(trip_after(1))
            .max_keys(1)
            .build()
            .unwrap();
    let handle = layer.handle();
    let mut svc = layer.layer(backend());
    let _ = svc
        .ready()
        .await
        .unwrap()
        .call(get("http://bad.example/"))
        .await;
    let bad = Some("bad.example".to_owned());
    assert_eq!(handle.get(&bad).unwrap().state(), CircuitState::Open);

    for i in 0..1_000 {
        let uri = format!("http://flood{i}.example/");
        svc.ready().await.unwrap().call(get(&uri)).await.unwrap();
    }
    assert_eq!(handle.get(&bad).unwrap().state(), CircuitState::Open);
    let err = svc
        .ready()
        .await
        .unwrap()
        .call(get("http://bad.example/"))
        .await
        .unwrap_err();
    assert!(err.is::<CircuitOpen>());
}

#[test]
fn key_functions() {
    let req = Request::get("https://Api.Example:8443/v1/x?q=1")
        .body(())
        .unwrap();
    let key = keys::authority(&req);
    assert_eq!(key.scheme().map(|s| s.as_str()), Some("https"));
    assert_eq!(
        key.authority().map(|a| a.as_str()),
        Some("Api.Example:8443")
    );

    let relative = Request::get("/v1/x")
        .header("host", "svc.local:80")
        .body(())
        .unwrap();
    let key = keys::authority(&relative);
    assert_eq!(key.scheme(), None);
    assert_eq!(key.authority().map(|a| a.as_str()), Some("svc.local:80"));

    let garbage = Request::get("/")
        .header("host", "bad host\t")
        .body(())
        .unwrap();
    assert_eq!(keys::authority(&garbage).authority(), None);

    let grpc = Request::post("http://svc/pkg.Products/Get")
        .body(())
        .unwrap();
    assert_eq!(keys::path(&grpc).unwrap().as_str(), "/pkg.Products/Get");
}

#[test]
fn invalid_keyed_config() {
    let err = KeyedCircuitBreakerLayer::builder(keys::path::<()>)
        .max_keys(0)
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "keyed_circuit_breaker.max_keys");
    let err = KeyedCircuitBreakerLayer::builder(keys::path::<()>)
        .idle_timeout(Duration::ZERO)
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "keyed_circuit_breaker.idle_timeout");
}

/// A key's breaker has one set of counters, bumped with atomic adds from any
/// thread: concurrent calls on one key are all counted, and a failure-rate
/// window sees them all.
#[test]
fn one_key_counts_every_call_from_many_threads() {
    const THREADS: u64 = 4;
    const CALLS: u64 = 5_000;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let layer = KeyedCircuitBreakerLayer::builder(|_: &u64| "one")
        .config(
            CircuitBreakerConfig::builder()
                .window(steadfast::circuit_breaker::Window::count(1_000))
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let svc = layer.layer(service_fn(|fail: u64| async move {
        if fail % 100 == 0 {
            Err::<(), BoxError>("every hundredth call fails".into())
        } else {
            Ok(())
        }
    }));
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let mut svc = svc.clone();
            s.spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_time()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    for i in 0..CALLS {
                        let _ = svc.ready().await.unwrap().call(t * CALLS + i + 1).await;
                    }
                });
            });
        }
    });
    let snapshot = layer
        .handle()
        .get(&"one")
        .expect("the key has a breaker")
        .snapshot();
    assert_eq!(snapshot.state, CircuitState::Closed, "{snapshot:?}");
    assert_eq!(
        snapshot.successes + snapshot.failures,
        THREADS * CALLS,
        "{snapshot:?}"
    );
    assert_eq!(snapshot.failures, THREADS * CALLS / 100, "{snapshot:?}");
}
