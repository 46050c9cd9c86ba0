//! One limit for everything a layer makes (tower's `RateLimit` is per
//! clone, so a service cloned per request is not limited at all).

use tower::ServiceExt;

use super::*;

/// Admitted calls among `calls` through `svc`, each through a fresh clone.
async fn admitted_through_clones(svc: &Limited, calls: u32) -> usize {
    let mut admitted = 0;
    for n in 0..calls {
        if svc.clone().oneshot(n).await.is_ok() {
            admitted += 1;
        }
    }
    admitted
}

#[tokio::test(start_paused = true)]
async fn clones_of_a_service_share_one_limit() {
    let layer = layer(5, Duration::from_secs(1), 5);
    let (svc, rec) = service(&layer);
    let mut clones: Vec<Limited> = (0..8).map(|_| svc.clone()).collect();
    let mut admitted = 0;
    for (k, c) in clones.iter_mut().enumerate() {
        for n in 0..3 {
            if let Some(Ok(_)) = try_call(c, (k * 10 + n) as u32) {
                admitted += 1;
            }
        }
    }
    assert_eq!(admitted, 5);
    assert_eq!(rec.requests().len(), 5);
    assert_eq!(layer.handle().snapshot().rejected, 8 * 3 - 5);
    // One interval later, one more for all of them together.
    tokio::time::advance(Duration::from_millis(200)).await;
    assert_eq!(admitted_through_clones(&svc, 10).await, 1);
}

#[tokio::test(start_paused = true)]
async fn a_service_cloned_per_request_is_still_limited() {
    let layer = layer(3, Duration::from_secs(1), 3);
    let (svc, _) = service(&layer);
    assert_eq!(admitted_through_clones(&svc, 100).await, 3);
}

#[tokio::test(start_paused = true)]
async fn services_of_one_layer_and_its_clones_share() {
    let layer = layer(4, Duration::from_secs(1), 4);
    let (mut a, _) = service(&layer);
    let (mut b, _) = service(&layer.clone());
    let mut results = Vec::new();
    for n in 0..4 {
        results.push(try_call(&mut a, n).unwrap().is_ok());
        results.push(try_call(&mut b, n).unwrap().is_ok());
    }
    assert_eq!(results.iter().filter(|&&ok| ok).count(), 4);
    assert_eq!(results[..4], [true; 4]);
    // The handle of either service reads the same limiter.
    assert_eq!(a.handle().snapshot().rejected, 4);
    assert_eq!(b.handle().snapshot(), layer.handle().snapshot());
}

#[tokio::test(start_paused = true)]
async fn a_second_layer_has_its_own_limit() {
    let first = layer(2, Duration::from_secs(1), 2);
    let second = layer(2, Duration::from_secs(1), 2);
    let (a, _) = service(&first);
    let (b, _) = service(&second);
    assert_eq!(admitted_through_clones(&a, 5).await, 2);
    assert_eq!(admitted_through_clones(&b, 5).await, 2);
    assert_eq!(first.handle().snapshot().rejected, 3);
    assert_eq!(second.handle().snapshot().rejected, 3);
}
