//! Classifiers: HTTP and gRPC classes and overrides, closures,
//! `ErrorsAsFailures`, and the error-chain helpers.
#![cfg(feature = "http")]

#[path = "../support/mod.rs"]
mod support;

use std::error::Error;
use std::fmt;
use std::io;

use http::{HeaderValue, Response, StatusCode};
use proptest::prelude::*;
use steadfast::classify::{
    Classify, ErrorsAsFailures, GrpcClassifier, GrpcCode, HttpClassifier, Outcome,
};
use steadfast::{cause_ref, is_caused_by, BoxError};

use Outcome::{Failure, Ignored, Success};

fn status(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap()
}

fn http(code: u16) -> Result<Response<()>, BoxError> {
    Ok(Response::builder().status(code).body(()).unwrap())
}

/// A response with HTTP status `code` and, if given, a `grpc-status` header.
fn grpc(code: u16, grpc_status: Option<&[u8]>) -> Result<Response<()>, BoxError> {
    let mut res = Response::builder().status(code).body(()).unwrap();
    if let Some(v) = grpc_status {
        res.headers_mut()
            .insert("grpc-status", HeaderValue::from_bytes(v).unwrap());
    }
    Ok(res)
}

// === HttpClassifier ===

#[test]
fn http_default_classes_at_each_boundary() {
    let c = HttpClassifier::new();
    let table = [
        (100, Success),
        (200, Success),
        (204, Success),
        (399, Success),
        (400, Ignored),
        (404, Ignored),
        (407, Ignored),
        (408, Failure),
        (409, Ignored),
        (428, Ignored),
        (429, Failure),
        (430, Ignored),
        (499, Ignored),
        (500, Failure),
        (503, Failure),
        (599, Failure),
    ];
    for (code, want) in table {
        assert_eq!(c.outcome_of(status(code)), want, "{code}");
        assert_eq!(c.classify(&http(code)), want, "{code} as a response");
        let (parts, ()) = http(code).unwrap().into_parts();
        assert_eq!(
            c.classify(&Ok::<_, BoxError>(parts)),
            want,
            "{code} as parts"
        );
    }
    assert_eq!(HttpClassifier::default(), c);
}

#[test]
fn http_transport_error_is_a_failure() {
    let c = HttpClassifier::new();
    let err: Result<Response<()>, BoxError> = Err("connection reset".into());
    assert_eq!(c.classify(&err), Failure);
    let io: Result<Response<()>, io::Error> = Err(io::ErrorKind::TimedOut.into());
    assert_eq!(c.classify(&io), Failure);
}

#[test]
fn http_overrides_move_one_status_only() {
    let c = HttpClassifier::new()
        .failure(StatusCode::NOT_FOUND)
        .success(StatusCode::NOT_IMPLEMENTED)
        .ignore(StatusCode::SERVICE_UNAVAILABLE)
        .ignore(StatusCode::OK);
    assert_eq!(c.classify(&http(404)), Failure);
    assert_eq!(c.classify(&http(501)), Success);
    assert_eq!(c.classify(&http(503)), Ignored);
    assert_eq!(c.classify(&http(200)), Ignored);
    // Their neighbours keep the defaults.
    for (code, want) in [
        (403, Ignored),
        (405, Ignored),
        (500, Failure),
        (502, Failure),
    ] {
        assert_eq!(c.outcome_of(status(code)), want, "{code}");
    }
    assert_eq!(c.outcome_of(status(201)), Success);
    assert_ne!(c, HttpClassifier::new());
}

#[test]
fn http_the_last_override_wins() {
    let c = HttpClassifier::new()
        .failure(StatusCode::NOT_FOUND)
        .ignore(StatusCode::NOT_FOUND);
    assert_eq!(c.outcome_of(StatusCode::NOT_FOUND), Ignored);
    let c = c.success(StatusCode::NOT_FOUND);
    assert_eq!(c.outcome_of(StatusCode::NOT_FOUND), Success);
    let c = c.failure(StatusCode::NOT_FOUND);
    assert_eq!(c.outcome_of(StatusCode::NOT_FOUND), Failure);
    // A 429 made a success, then a failure again.
    let c = HttpClassifier::new()
        .success(StatusCode::TOO_MANY_REQUESTS)
        .failure(StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(c, HttpClassifier::new());
}

#[test]
fn http_classifier_debug_lists_its_classes() {
    let text = format!("{:?}", HttpClassifier::new().failure(StatusCode::CONFLICT));
    assert!(text.starts_with("HttpClassifier"), "{text}");
    assert!(text.contains("409"), "{text}");
}

// === GrpcClassifier ===

#[test]
fn grpc_status_header_values() {
    let c = GrpcClassifier::new();
    let table: [(&[u8], Outcome); 9] = [
        (b"0", Success),
        (b"14", Failure), // UNAVAILABLE
        (b"4", Failure),  // DEADLINE_EXCEEDED
        (b"8", Failure),  // RESOURCE_EXHAUSTED
        (b"13", Failure), // INTERNAL
        (b"2", Failure),  // UNKNOWN
        (b"5", Ignored),  // NOT_FOUND
        (b"3", Ignored),  // INVALID_ARGUMENT
        (b"16", Ignored), // UNAUTHENTICATED
    ];
    for (value, want) in table {
        let shown = String::from_utf8_lossy(value);
        assert_eq!(c.classify(&grpc(200, Some(value))), want, "{shown}");
    }
}

#[test]
fn grpc_unknown_or_garbage_values_are_unknown() {
    let c = GrpcClassifier::new();
    for value in [
        &b"99"[..],
        b"17",
        b"abc",
        b"",
        b"1a",
        b"007",
        b"-1",
        b" 0",
        b"0 ",
        b"+4",
    ] {
        let shown = String::from_utf8_lossy(value);
        assert_eq!(
            GrpcCode::from_header_bytes(value),
            GrpcCode::Unknown,
            "{shown:?}"
        );
        assert_eq!(c.classify(&grpc(200, Some(value))), Failure, "{shown:?}");
    }
    // Not a failure once UNKNOWN is taken out of the failure set.
    let lenient = GrpcClassifier::new().not_failure(GrpcCode::Unknown);
    assert_eq!(lenient.classify(&grpc(200, Some(b"abc"))), Ignored);
}

#[test]
fn grpc_header_wins_over_http_status() {
    let c = GrpcClassifier::new();
    assert_eq!(c.classify(&grpc(503, Some(b"0"))), Success);
    assert_eq!(c.classify(&grpc(200, Some(b"14"))), Failure);
    assert_eq!(c.classify(&grpc(404, Some(b"14"))), Failure);
}

#[test]
fn grpc_without_the_header_maps_the_http_status() {
    let c = GrpcClassifier::new();
    let table = [
        (200, None, Success),
        (400, Some(GrpcCode::Internal), Failure),
        (401, Some(GrpcCode::Unauthenticated), Ignored),
        (403, Some(GrpcCode::PermissionDenied), Ignored),
        (404, Some(GrpcCode::Unimplemented), Ignored),
        (429, Some(GrpcCode::Unavailable), Failure),
        (500, Some(GrpcCode::Unknown), Failure),
        (502, Some(GrpcCode::Unavailable), Failure),
        (503, Some(GrpcCode::Unavailable), Failure),
        (504, Some(GrpcCode::Unavailable), Failure),
        (301, Some(GrpcCode::Unknown), Failure),
    ];
    for (code, grpc_code, want) in table {
        let res = grpc(code, None).unwrap();
        assert_eq!(
            GrpcCode::from_response_head(res.status(), res.headers()),
            grpc_code,
            "{code}"
        );
        if let Some(g) = grpc_code {
            assert_eq!(GrpcCode::from_http_status(status(code)), g, "{code}");
        }
        assert_eq!(c.classify(&Ok::<_, BoxError>(res)), want, "{code}");
    }
}

#[test]
fn grpc_transport_error_is_a_failure() {
    let err: Result<Response<()>, BoxError> = Err("h2 goaway".into());
    assert_eq!(GrpcClassifier::new().classify(&err), Failure);
}

#[test]
fn grpc_overrides() {
    let c = GrpcClassifier::new()
        .failure(GrpcCode::Aborted)
        .not_failure(GrpcCode::Unavailable);
    assert_eq!(c.classify(&grpc(200, Some(b"10"))), Failure);
    assert_eq!(c.classify(&grpc(200, Some(b"14"))), Ignored);
    assert_eq!(
        c.classify(&grpc(503, None)),
        Ignored,
        "503 maps to UNAVAILABLE"
    );
    // The rest keep the defaults.
    assert_eq!(c.outcome_of(GrpcCode::Internal), Failure);
    assert_eq!(c.outcome_of(GrpcCode::NotFound), Ignored);
    assert_eq!(c.outcome_of(GrpcCode::Ok), Success);
    // OK as a failure, and back.
    let odd = GrpcClassifier::new().failure(GrpcCode::Ok);
    assert_eq!(odd.classify(&grpc(200, Some(b"0"))), Failure);
    assert_eq!(odd.not_failure(GrpcCode::Ok), GrpcClassifier::new());
    assert_eq!(GrpcClassifier::default(), GrpcClassifier::new());
}

#[test]
fn grpc_default_failure_set() {
    let c = GrpcClassifier::new();
    for value in 0..=16 {
        let code = GrpcCode::from_i32(value);
        let want = match code {
            GrpcCode::Ok => Success,
            GrpcCode::Unavailable
            | GrpcCode::DeadlineExceeded
            | GrpcCode::ResourceExhausted
            | GrpcCode::Internal
            | GrpcCode::Unknown => Failure,
            _ => Ignored,
        };
        assert_eq!(c.outcome_of(code), want, "{code}");
    }
}

#[test]
fn grpc_code_from_i32_covers_0_to_16() {
    for value in 0..=16 {
        let code = GrpcCode::from_i32(value);
        assert_eq!(code.as_i32(), value);
        assert_eq!(
            GrpcCode::from_header_bytes(value.to_string().as_bytes()),
            code
        );
    }
    assert_eq!(GrpcCode::from_i32(14), GrpcCode::Unavailable);
    assert_eq!(GrpcCode::from_i32(16), GrpcCode::Unauthenticated);
    for value in [-1, 17, 99, i32::MIN, i32::MAX] {
        assert_eq!(GrpcCode::from_i32(value), GrpcCode::Unknown, "{value}");
    }
    assert_eq!(GrpcCode::Unavailable.to_string(), "Unavailable");
}

proptest! {
    #[test]
    fn grpc_code_from_header_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..8)) {
        let code = GrpcCode::from_header_bytes(&bytes);
        // Whatever it returns is a code it could also have read as digits.
        let round = GrpcCode::from_header_bytes(code.as_i32().to_string().as_bytes());
        prop_assert_eq!(round, code);
        // One or two ASCII digits without a leading zero name the code of
        // their value; "00".."09" are not canonical and read as Unknown.
        let canonical = !(bytes.len() == 2 && bytes[0] == b'0');
        if !bytes.is_empty()
            && bytes.len() <= 2
            && canonical
            && bytes.iter().all(u8::is_ascii_digit)
        {
            let value: i32 = std::str::from_utf8(&bytes).unwrap().parse().unwrap();
            prop_assert_eq!(code, GrpcCode::from_i32(value));
        } else {
            prop_assert_eq!(code, GrpcCode::Unknown);
        }
    }

    #[test]
    fn grpc_classify_never_panics_on_header_values(value in proptest::collection::vec(any::<u8>(), 0..8)) {
        if let Ok(v) = HeaderValue::from_bytes(&value) {
            let mut res = Response::new(());
            res.headers_mut().insert("grpc-status", v);
            let _ = GrpcClassifier::new().classify(&Ok::<_, BoxError>(res));
        }
    }
}

/// A transport error that wraps another, as tonic's and hyper's do.
#[derive(Debug)]
struct Wrapped(BoxError);

impl fmt::Display for Wrapped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("transport error")
    }
}

impl Error for Wrapped {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(self.0.as_ref())
    }
}

#[test]
fn grpc_code_of_our_errors_anywhere_in_the_chain() {
    use std::time::Duration;
    use steadfast::bulkhead::error::{BulkheadFull, FullReason};
    use steadfast::circuit_breaker::{error::CircuitOpen, CircuitState};
    use steadfast::timeout::error::{DeadlineExceeded, Elapsed};

    let cases: [(BoxError, Option<GrpcCode>); 7] = [
        (
            Box::new(CircuitOpen::new(CircuitState::Open, None)),
            Some(GrpcCode::Unavailable),
        ),
        (
            Box::new(BulkheadFull::new(FullReason::QueueFull, 4, Duration::ZERO)),
            Some(GrpcCode::Unavailable),
        ),
        (
            Box::new(DeadlineExceeded::new(None)),
            Some(GrpcCode::DeadlineExceeded),
        ),
        (
            Box::new(Elapsed::new(Duration::from_secs(1))),
            Some(GrpcCode::DeadlineExceeded),
        ),
        (
            Box::new(Wrapped(Box::new(CircuitOpen::new(
                CircuitState::ForcedOpen,
                None,
            )))),
            Some(GrpcCode::Unavailable),
        ),
        (
            io::Error::from(io::ErrorKind::ConnectionRefused).into(),
            None,
        ),
        (Box::new(Wrapped(io::Error::other("reset").into())), None),
    ];
    for (err, code) in cases {
        assert_eq!(GrpcCode::of_error(err.as_ref()), code, "{err}");
    }
}

/// tonic's `Channel` fails a call whose `grpc-timeout` passed with
/// `TimeoutExpired` (CANCELLED, by tonic's own mapping): for us it is an
/// attempt timeout, DEADLINE_EXCEEDED.
#[cfg(feature = "tonic")]
#[test]
fn grpc_code_of_tonics_timeout_is_deadline_exceeded() {
    let err = Wrapped(Box::new(tonic::TimeoutExpired(())));
    assert_eq!(GrpcCode::of_error(&err), Some(GrpcCode::DeadlineExceeded));
}

// === closures and ErrorsAsFailures ===

#[test]
fn closures_are_classifiers() {
    // A backend that reports overload in-band.
    let c = |res: &Result<&str, String>| match res {
        Ok("overloaded") => Failure,
        Ok("") => Ignored,
        Ok(_) => Success,
        Err(_) => Failure,
    };
    assert_eq!(c.classify(&Ok("overloaded")), Failure);
    assert_eq!(c.classify(&Ok("")), Ignored);
    assert_eq!(c.classify(&Ok("fine")), Success);
    assert_eq!(c.classify(&Err("nope".to_owned())), Failure);

    fn takes_classifier<C: Classify<u8, ()>>(c: &C, r: Result<u8, ()>) -> Outcome {
        c.classify(&r)
    }
    let even_ok = |r: &Result<u8, ()>| match r {
        Ok(n) if n % 2 == 0 => Success,
        _ => Failure,
    };
    assert_eq!(takes_classifier(&even_ok, Ok(2)), Success);
    assert_eq!(takes_classifier(&even_ok, Ok(3)), Failure);
}

#[test]
fn errors_as_failures() {
    let c = ErrorsAsFailures::new();
    assert_eq!(c.classify(&Ok::<_, BoxError>(())), Success);
    assert_eq!(c.classify(&Err::<(), _>(io::Error::other("x"))), Failure);
    assert_eq!(c, ErrorsAsFailures);
    assert!(Failure.is_failure());
    assert!(!Success.is_failure());
    assert!(!Ignored.is_failure());
}

// === cause_ref / is_caused_by ===

#[derive(Debug)]
struct Outer {
    source: Middle,
}

#[derive(Debug)]
struct Middle {
    attempt: u32,
    source: io::Error,
}

impl fmt::Display for Outer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("request failed")
    }
}

impl Error for Outer {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&self.source)
    }
}

impl fmt::Display for Middle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "attempt {} failed", self.attempt)
    }
}

impl Error for Middle {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&self.source)
    }
}

#[test]
fn cause_helpers_walk_the_source_chain() {
    let err: BoxError = Box::new(Outer {
        source: Middle {
            attempt: 3,
            source: io::Error::new(io::ErrorKind::ConnectionRefused, "refused"),
        },
    });
    let err = err.as_ref();
    assert!(is_caused_by::<Outer>(err));
    assert!(is_caused_by::<Middle>(err));
    assert!(is_caused_by::<io::Error>(err));
    assert!(!is_caused_by::<fmt::Error>(err));
    assert_eq!(cause_ref::<Middle>(err).map(|m| m.attempt), Some(3));
    assert_eq!(
        cause_ref::<io::Error>(err).map(io::Error::kind),
        Some(io::ErrorKind::ConnectionRefused)
    );
    // Starting lower in the chain does not look upwards.
    let middle = cause_ref::<Middle>(err).unwrap();
    assert!(!is_caused_by::<Outer>(middle));
    assert!(cause_ref::<fmt::Error>(err).is_none());
    support::trace_init();
}
