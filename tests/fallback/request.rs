//! `with_request` and `with_key` hand the fallback what was taken before
//! the call.

use steadfast::fallback::{Failed, FallbackLayer};
use steadfast::BoxError;
use tower::{service_fn, Layer, ServiceExt};

#[derive(Debug, Clone, PartialEq)]
struct Query {
    id: u32,
    name: String,
}

#[tokio::test]
async fn with_request_gets_a_clone_of_the_request() {
    let layer = FallbackLayer::with_request(|req: Query, failed: Failed<'_, String>| {
        Ok(format!("cached {} for {} after {failed}", req.id, req.name))
    });
    let svc = layer.layer(service_fn(|req: Query| async move {
        Err::<String, BoxError>(format!("{} is down", req.name).into())
    }));
    let got = svc
        .oneshot(Query {
            id: 7,
            name: "products".into(),
        })
        .await
        .unwrap();
    assert_eq!(got, "cached 7 for products after products is down");
}

#[tokio::test]
async fn with_key_gets_the_key() {
    let layer = FallbackLayer::with_key(
        |req: &Query| req.id,
        |id: u32, _: Failed<'_, String>| Ok(format!("cached {id}")),
    );
    let svc = layer.layer(service_fn(|_: Query| async {
        Err::<String, BoxError>("down".into())
    }));
    for id in [1, 2, 3] {
        let got = svc
            .clone()
            .oneshot(Query {
                id,
                name: String::new(),
            })
            .await
            .unwrap();
        assert_eq!(got, format!("cached {id}"));
    }
}

#[tokio::test]
async fn the_happy_path_passes_the_response() {
    let layer = FallbackLayer::with_key(
        |req: &Query| req.id,
        |_: u32, _: Failed<'_, String>| Ok("fallback".to_owned()),
    );
    let svc = layer.layer(service_fn(|req: Query| async move {
        Ok::<_, BoxError>(req.name)
    }));
    let got = svc
        .oneshot(Query {
            id: 1,
            name: "fresh".into(),
        })
        .await
        .unwrap();
    assert_eq!(got, "fresh");
}
