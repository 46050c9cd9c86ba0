//! Which outcomes run the fallback: every kind of outcome × every
//! configuration, with what the caller gets.

use std::time::Duration;

use http::{Response, StatusCode};
use steadfast::circuit_breaker::CircuitState;
use steadfast::classify::{Classify, HttpClassifier};
use steadfast::fallback::{Failed, FallbackLayer};
use steadfast::{BoxError, BulkheadFull, CircuitOpen, DeadlineExceeded, Elapsed, Rejection};
use tower::{service_fn, Layer, ServiceExt};

use crate::Runs;

type Res = Response<&'static str>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Case {
    Ok200,
    Failed503,
    Transport,
    CircuitOpen,
    BulkheadFull,
    Elapsed,
    DeadlineExceeded,
}

const CASES: [Case; 7] = [
    Case::Ok200,
    Case::Failed503,
    Case::Transport,
    Case::CircuitOpen,
    Case::BulkheadFull,
    Case::Elapsed,
    Case::DeadlineExceeded,
];

impl Case {
    fn result(self) -> Result<Res, BoxError> {
        match self {
            Case::Ok200 => Ok(Response::new("ok")),
            Case::Failed503 => Ok(Response::builder()
                .status(StatusCode::SERVICE_UNAVAILABLE)
                .body("unavailable")
                .unwrap()),
            Case::Transport => Err(std::io::Error::other("connection reset").into()),
            Case::CircuitOpen => {
                Err(CircuitOpen::new(CircuitState::Open, Some(Duration::from_secs(5))).into())
            }
            Case::BulkheadFull => Err(BulkheadFull::new(
                steadfast::bulkhead::error::FullReason::QueueFull,
                8,
                Duration::ZERO,
            )
            .into()),
            Case::Elapsed => Err(Elapsed::new(Duration::from_secs(2)).into()),
            Case::DeadlineExceeded => Err(DeadlineExceeded::new(None).into()),
        }
    }

    fn is_rejection(self) -> bool {
        !matches!(self, Case::Ok200 | Case::Failed503 | Case::Transport)
    }
}

/// What the fallback saw, as a short string.
fn seen(failed: &Failed<'_, Res>) -> String {
    match (failed.rejection(), failed.error(), failed.response()) {
        (Some(r), Some(_), None) => format!("rejection {r}"),
        (None, Some(e), None) => format!("error {e}"),
        (None, None, Some(res)) => format!("response {}", res.status().as_u16()),
        other => panic!("inconsistent helpers: {other:?}"),
    }
}

/// Calls a service made by `layer` around one answering `case`; returns
/// whether the fallback ran, and what the caller got.
async fn run<L>(layer: L, case: Case) -> Result<Res, BoxError>
where
    L: Layer<
        tower::util::ServiceFn<
            Box<dyn FnMut(()) -> std::future::Ready<Result<Res, BoxError>> + Send>,
        >,
    >,
    L::Service: tower::Service<(), Response = Res, Error = BoxError>,
{
    let inner: Box<dyn FnMut(()) -> std::future::Ready<Result<Res, BoxError>> + Send> =
        Box::new(move |()| std::future::ready(case.result()));
    layer.layer(service_fn(inner)).oneshot(()).await
}

#[derive(Debug, Clone, Copy)]
enum Config {
    Default,
    OnlyRejections,
    OnlyErrors,
    ErrorsAndResponses,
    OnlyResponses,
    Nothing,
}

impl Config {
    fn runs_on(self, case: Case) -> bool {
        let rejection = case.is_rejection();
        let transport = case == Case::Transport;
        let failed_response = case == Case::Failed503;
        match self {
            Config::Default => rejection || transport,
            Config::OnlyRejections => rejection,
            Config::OnlyErrors => transport,
            Config::ErrorsAndResponses => rejection || transport || failed_response,
            Config::OnlyResponses => failed_response,
            Config::Nothing => false,
        }
    }
}

async fn run_config(config: Config, case: Case, runs: &Runs) -> Result<Res, BoxError> {
    let fallback = {
        let runs = runs.clone();
        move |_: Failed<'_, Res>| -> Result<Res, BoxError> {
            runs.hit();
            Ok(Response::new("fallback"))
        }
    };
    let base = FallbackLayer::new(fallback);
    match config {
        Config::Default => run(base, case).await,
        Config::OnlyRejections => run(base.on_errors(false), case).await,
        Config::OnlyErrors => run(base.on_rejections(false), case).await,
        Config::ErrorsAndResponses => {
            run(base.on_failed_responses(HttpClassifier::new()), case).await
        }
        Config::OnlyResponses => {
            run(
                base.on_rejections(false)
                    .on_errors(false)
                    .on_failed_responses(HttpClassifier::new()),
                case,
            )
            .await
        }
        Config::Nothing => run(base.on_rejections(false).on_errors(false), case).await,
    }
}

#[tokio::test]
async fn runs_on_exactly_the_configured_outcomes() {
    let configs = [
        Config::Default,
        Config::OnlyRejections,
        Config::OnlyErrors,
        Config::ErrorsAndResponses,
        Config::OnlyResponses,
        Config::Nothing,
    ];
    for config in configs {
        for case in CASES {
            let runs = Runs::default();
            let got = run_config(config, case, &runs).await;
            let ran = config.runs_on(case);
            assert_eq!(runs.get(), usize::from(ran), "{config:?} × {case:?}");
            match (ran, got) {
                (true, Ok(res)) => assert_eq!(*res.body(), "fallback", "{config:?} × {case:?}"),
                (false, Ok(res)) => {
                    let expected = case.result().expect("an answer");
                    assert_eq!(res.status(), expected.status(), "{config:?} × {case:?}");
                    assert_eq!(res.body(), expected.body(), "{config:?} × {case:?}");
                }
                (false, Err(e)) => {
                    let expected = case.result().expect_err("an error");
                    assert_eq!(e.to_string(), expected.to_string(), "{config:?} × {case:?}");
                    assert_eq!(
                        Rejection::of(&e),
                        Rejection::of(&expected),
                        "{config:?} × {case:?}: the original error, untouched"
                    );
                }
                (true, Err(e)) => panic!("{config:?} × {case:?}: fallback ran but got {e}"),
            }
        }
    }
}

#[tokio::test]
async fn the_fallback_sees_what_went_wrong() {
    for case in CASES {
        let saw = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let layer = FallbackLayer::new({
            let saw = saw.clone();
            move |failed: Failed<'_, Res>| {
                *saw.lock().unwrap() = seen(&failed);
                Ok(Response::new("fallback"))
            }
        })
        .on_failed_responses(HttpClassifier::new());
        let _ = run(layer, case).await;
        let expected = match case {
            Case::Ok200 => String::new(),
            Case::Failed503 => "response 503".to_owned(),
            Case::Transport => "error connection reset".to_owned(),
            rejection => {
                let err = rejection.result().unwrap_err();
                format!("rejection {}", Rejection::of(&err).unwrap())
            }
        };
        assert_eq!(*saw.lock().unwrap(), expected, "{case:?}");
    }
}

#[tokio::test]
async fn a_failed_response_can_be_passed_on() {
    // The fallback owns the 503: it may hand it back, changed.
    let layer = FallbackLayer::new(|failed: Failed<'_, Res>| {
        let mut res = failed.into_response().ok_or("not a response")?;
        res.headers_mut()
            .insert("x-fallback", http::HeaderValue::from_static("passed"));
        Ok(res)
    })
    .on_failed_responses(HttpClassifier::new());
    let res = run(layer, Case::Failed503).await.unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(res.headers()["x-fallback"], "passed");
    assert!(HttpClassifier::new()
        .classify(&Ok::<_, ()>(res))
        .is_failure());
}
