//! `KeyedRateLimitLayer`: a limit per key, shared by clones; recovered keys
//! forgotten exactly; a key cap whose overflow shares one limit; the
//! ready-made keys (feature `http`).

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use steadfast::rate_limit::{KeyedRateLimitBuilder, KeyedRateLimitLayer, Rejected};
use steadfast::Rejection;

use super::*;

/// An always-ready service taking `(key, n)` and answering `n`.
#[derive(Clone, Copy, Debug)]
struct Echo;

impl Service<(u32, u32)> for Echo {
    type Response = u32;
    type Error = Infallible;
    type Future = Ready<Result<u32, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, (_, n): (u32, u32)) -> Self::Future {
        ready(Ok(n))
    }
}

type KeyFn = fn(&(u32, u32)) -> u32;

fn key_of(req: &(u32, u32)) -> u32 {
    req.0
}

fn builder(rate: u64, period: Duration) -> KeyedRateLimitBuilder<KeyFn> {
    KeyedRateLimitLayer::builder(rate, period, key_of as KeyFn)
}

/// Calls `svc` for `key` once: `Ok(n)` admitted, `Err` rejected (never
/// pending: a keyed limiter does not wait).
#[track_caller]
fn hit<S>(svc: &mut S, key: u32, n: u32) -> Result<u32, RateLimited>
where
    S: Service<(u32, u32), Response = u32, Error = BoxError>,
{
    let mut cx = Context::from_waker(std::task::Waker::noop());
    assert!(svc.poll_ready(&mut cx).is_ready());
    let mut fut = std::pin::pin!(svc.call((key, n)));
    match fut.as_mut().poll(&mut cx) {
        Poll::Ready(Ok(n)) => Ok(n),
        Poll::Ready(Err(e)) => Err(limited(e)),
        Poll::Pending => panic!("a keyed limiter never waits"),
    }
}

#[tokio::test(start_paused = true)]
async fn each_key_has_a_limit_of_its_own() {
    // 2 a second (one every 500 ms), burst 2.
    let layer = builder(2, Duration::from_secs(1)).build().unwrap();
    let mut svc = layer.layer(Echo);
    assert_eq!(hit(&mut svc, 1, 10), Ok(10));
    assert_eq!(hit(&mut svc, 1, 11), Ok(11));
    let err = hit(&mut svc, 1, 12).unwrap_err();
    // The next cell of key 1 conforms 500 ms from now.
    assert_eq!(err.retry_after(), 500 * MS);
    assert_eq!(err.waited(), Duration::ZERO);
    // Key 2 is untouched by key 1's exhaustion.
    assert_eq!(hit(&mut svc, 2, 20), Ok(20));
    assert_eq!(hit(&mut svc, 2, 21), Ok(21));
    assert!(hit(&mut svc, 2, 22).is_err());
    // 499 ms later key 1 is still over; at 500 ms it gets one cell, not two.
    tokio::time::advance(499 * MS).await;
    assert_eq!(hit(&mut svc, 1, 13).unwrap_err().retry_after(), MS);
    tokio::time::advance(MS).await;
    assert_eq!(hit(&mut svc, 1, 14), Ok(14));
    assert!(hit(&mut svc, 1, 15).is_err());
    let snap = layer.handle().snapshot();
    assert_eq!(snap.keys, 2);
    assert_eq!(snap.rejected, 4);
    assert_eq!(snap.overflowed, 0);
    assert_eq!(snap.burst, 2);
    assert_eq!(snap.interval, 500 * MS);
}

#[tokio::test(start_paused = true)]
async fn every_clone_and_every_service_of_the_layer_share_each_key() {
    let layer = builder(3, Duration::from_secs(1)).build().unwrap();
    let mut a = layer.layer(Echo);
    let mut b = a.clone();
    let mut c = layer.clone().layer(Echo);
    assert!(hit(&mut a, 7, 1).is_ok());
    assert!(hit(&mut b, 7, 2).is_ok());
    assert!(hit(&mut c, 7, 3).is_ok());
    // The fourth call of key 7, whichever service makes it, is over.
    assert!(hit(&mut a, 7, 4).is_err());
    assert!(hit(&mut b, 7, 5).is_err());
    assert!(hit(&mut c, 7, 6).is_err());
    assert_eq!(a.handle().snapshot().rejected, 3);
}

#[tokio::test(start_paused = true)]
async fn the_rejection_is_ours_not_sent_and_reported() {
    let seen = Arc::new(AtomicU64::new(0));
    let counter = seen.clone();
    let layer = builder(1, Duration::from_secs(10))
        .name("per-user")
        .on_rejection(move |r: &Rejected| {
            assert_eq!(r.name(), Some("per-user"));
            assert_eq!(r.error().retry_after(), Duration::from_secs(10));
            counter.fetch_add(1, Relaxed);
        })
        .build()
        .unwrap();
    let mut svc = layer.layer(Echo);
    assert!(hit(&mut svc, 1, 1).is_ok());
    let mut cx = Context::from_waker(std::task::Waker::noop());
    let err = match std::pin::pin!(svc.call((1, 2))).poll(&mut cx) {
        Poll::Ready(Err(e)) => e,
        other => panic!("expected a rejection, got {other:?}"),
    };
    match Rejection::of(&err) {
        Some(r @ Rejection::RateLimited { .. }) => {
            assert!(r.is_not_sent());
            assert_eq!(r.retry_after(), Some(Duration::from_secs(10)));
        }
        other => panic!("expected Rejection::RateLimited, got {other:?}"),
    }
    assert_eq!(seen.load(Relaxed), 1);
    assert_eq!(layer.handle().snapshot().name.as_deref(), Some("per-user"));
}

#[tokio::test(start_paused = true)]
async fn a_recovered_key_is_forgotten_and_behaves_as_new() {
    let layer = builder(2, Duration::from_secs(1)).build().unwrap();
    let handle = layer.handle();
    let mut svc = layer.layer(Echo);
    for key in 0..10 {
        assert!(hit(&mut svc, key, 0).is_ok());
    }
    assert!(hit(&mut svc, 0, 0).is_ok());
    assert_eq!(handle.keys(), 10);
    // Keys 1..10 used one cell of two: recovered after 500 ms; key 0 used
    // both: it needs the whole second.
    tokio::time::advance(500 * MS).await;
    handle.evict_recovered();
    assert_eq!(handle.keys(), 1, "only key 0 is still recovering");
    assert_eq!(handle.snapshot().evicted, 9);
    // Key 0 kept its state: one cell back, not two.
    assert!(hit(&mut svc, 0, 0).is_ok());
    assert!(hit(&mut svc, 0, 0).is_err());
    // A forgotten key gets its whole burst, as a key never seen would.
    assert!(hit(&mut svc, 5, 0).is_ok());
    assert!(hit(&mut svc, 5, 0).is_ok());
    assert!(hit(&mut svc, 5, 0).is_err());
}

#[tokio::test(start_paused = true)]
async fn new_keys_past_the_cap_share_one_overflow_limit() {
    // One call an hour per key: no key recovers during the test.
    let layer = builder(1, Duration::from_secs(3600))
        .max_keys(16)
        .build()
        .unwrap();
    let handle = layer.handle();
    let mut svc = layer.layer(Echo);
    // Key 0 is used first and has its own limit.
    assert!(hit(&mut svc, 0, 0).is_ok());
    let mut admitted = 1;
    for key in 1..1_000 {
        admitted += u32::from(hit(&mut svc, key, 0).is_ok());
    }
    let snap = handle.snapshot();
    assert!(snap.keys <= 16, "{} keys held, cap 16", snap.keys);
    assert_eq!(snap.overflowed, 1_000 - snap.keys);
    // Each held key got its one cell; all the overflow keys together got
    // one (the overflow limit's burst), however many there were.
    assert_eq!(u64::from(admitted), snap.keys + 1);
    assert_eq!(snap.rejected, 1_000 - snap.keys - 1);
    // The flood did not reset key 0: its limit is still spent.
    assert!(hit(&mut svc, 0, 0).is_err());
    assert_eq!(handle.keys() as u64, snap.keys);
}

#[tokio::test(start_paused = true)]
async fn a_full_table_sweeps_its_recovered_keys_for_new_ones() {
    // One key at most (one shard), one call a second.
    let layer = builder(1, Duration::from_secs(1))
        .max_keys(1)
        .build()
        .unwrap();
    let handle = layer.handle();
    let mut svc = layer.layer(Echo);
    assert!(hit(&mut svc, 0, 0).is_ok());
    // Full: new keys share the overflow limit (one cell a second).
    assert!(hit(&mut svc, 1, 0).is_ok());
    assert!(hit(&mut svc, 2, 0).is_err());
    assert_eq!(handle.snapshot().overflowed, 2);
    // Key 0 has recovered: the next new key sweeps it out and takes its
    // place, with a limit of its own.
    tokio::time::advance(Duration::from_secs(1)).await;
    assert!(hit(&mut svc, 3, 0).is_ok());
    let snap = handle.snapshot();
    assert_eq!((snap.keys, snap.evicted, snap.overflowed), (1, 1, 2));
    // Key 3 is in use: the one after it overflows (and takes the overflow
    // limit's one cell); a sweep runs at most once per eighth of a
    // recovery, so a flood of new keys does not sweep on every call.
    assert!(hit(&mut svc, 4, 0).is_ok());
    assert!(hit(&mut svc, 5, 0).is_err());
    assert!(hit(&mut svc, 3, 0).is_err(), "key 3 kept its own limit");
    let snap = handle.snapshot();
    assert_eq!((snap.keys, snap.evicted, snap.overflowed), (1, 1, 4));
}

#[test]
fn bad_values_name_their_field() {
    let field = |b: KeyedRateLimitBuilder<KeyFn>| b.build().unwrap_err().field().to_owned();
    assert_eq!(field(builder(0, Duration::from_secs(1))), "rate_limit.rate");
    assert_eq!(field(builder(1, Duration::ZERO)), "rate_limit.period");
    assert_eq!(
        field(builder(1, Duration::from_secs(1)).burst(0)),
        "rate_limit.burst"
    );
    assert_eq!(
        field(builder(1, Duration::from_secs(1)).max_keys(0)),
        "keyed_rate_limit.max_keys"
    );
    assert_eq!(
        field(builder(1, Duration::from_secs(1)).max_keys(usize::MAX)),
        "keyed_rate_limit.max_keys"
    );
    assert!(builder(1, Duration::from_secs(1))
        .max_keys(1 << 24)
        .build()
        .is_ok());
}

#[cfg(feature = "http")]
mod http_keys {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

    use steadfast::rate_limit::keys::{ByClientIp, ByExtension, ByHeader};
    use steadfast::rate_limit::KeyOf;

    use super::*;

    fn req() -> http::Request<()> {
        http::Request::new(())
    }

    #[test]
    fn by_header_keys_on_the_value_and_missing_headers_share_none() {
        let key = ByHeader::new("x-api-key");
        let mut a = req();
        a.headers_mut()
            .insert("x-api-key", "alpha".parse().unwrap());
        let mut b = req();
        b.headers_mut().insert("x-api-key", "beta".parse().unwrap());
        assert_eq!(key.key_of(&a).unwrap(), "alpha");
        assert_ne!(key.key_of(&a), key.key_of(&b));
        assert_eq!(key.key_of(&req()), None);
    }

    #[test]
    fn by_client_ip_reads_ip_or_socket_addr_and_groups_ipv6_by_prefix() {
        let key = ByClientIp::new();
        let v4 = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
        let mut a = req();
        a.extensions_mut().insert(SocketAddr::new(v4, 4242));
        assert_eq!(key.key_of(&a), Some(v4));
        let host = |last: u16| {
            let mut r = req();
            r.extensions_mut().insert(IpAddr::V6(Ipv6Addr::new(
                0x2001, 0xdb8, 0, 1, 0, 0, 0, last,
            )));
            r
        };
        // Two addresses of one /64 share a key; another /64 does not.
        assert_eq!(key.key_of(&host(1)), key.key_of(&host(2)));
        let mut other = req();
        other
            .extensions_mut()
            .insert(IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 2, 0, 0, 0, 1)));
        assert_ne!(key.key_of(&host(1)), key.key_of(&other));
        // The full address, when asked; out-of-range prefixes clamp to 128.
        let full = ByClientIp::new().ipv6_prefix(200);
        assert_ne!(full.key_of(&host(1)), full.key_of(&host(2)));
        assert_eq!(
            ByClientIp::new().ipv6_prefix(0).key_of(&host(1)),
            Some(IpAddr::V6(Ipv6Addr::UNSPECIFIED))
        );
        assert_eq!(key.key_of(&req()), None);
    }

    #[derive(Clone)]
    struct ConnectInfo(SocketAddr);

    #[tokio::test(start_paused = true)]
    async fn by_extension_keys_a_server_per_peer() {
        let key = ByExtension::new(|c: &ConnectInfo| c.0.ip());
        let layer = KeyedRateLimitLayer::builder(1, Duration::from_secs(1), key)
            .build()
            .unwrap();
        let svc = layer.layer(tower::service_fn(|_: http::Request<()>| async {
            Ok::<_, Infallible>(())
        }));
        let from = |last: u8| {
            let mut r = req();
            r.extensions_mut().insert(ConnectInfo(SocketAddr::new(
                IpAddr::V4(Ipv4Addr::new(10, 0, 0, last)),
                1000,
            )));
            r
        };
        use tower::ServiceExt;
        assert!(svc.clone().oneshot(from(1)).await.is_ok());
        assert!(svc.clone().oneshot(from(2)).await.is_ok());
        let err = svc.clone().oneshot(from(1)).await.unwrap_err();
        assert!(err.is::<RateLimited>());
        // Requests without the extension share the key `None`.
        assert!(svc.clone().oneshot(req()).await.is_ok());
        assert!(svc.clone().oneshot(req()).await.is_err());
        assert_eq!(layer.handle().keys(), 3);
    }
}
