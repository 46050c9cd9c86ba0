//! `render_prometheus`: the text format 0.0.4, read back.

use std::collections::{BTreeMap, BTreeSet};

use prometheus_parse::{Scrape, Value as Parsed};
use steadfast::circuit_breaker::{CircuitBreakerConfig, CircuitBreakerLayer};
use steadfast::metrics::{families, render_prometheus, Kind, MetricsLayer};
use tower::{service_fn, Layer, ServiceExt};

use crate::scenario::{run, stack};

/// One sample line, its label values unescaped.
#[derive(Debug, Clone, PartialEq)]
struct Line {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// What the strict reader found: `HELP` and `TYPE` by family, the samples.
#[derive(Debug, Default)]
struct Text {
    help: BTreeMap<String, String>,
    types: BTreeMap<String, String>,
    lines: Vec<Line>,
}

impl Text {
    /// The value of the sample `name` whose labels are exactly `labels`.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let want: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let mut found = self
            .lines
            .iter()
            .filter(|l| l.name == name && l.labels == want);
        let line = found.next()?;
        assert!(found.next().is_none(), "{name} {labels:?} twice");
        Some(line.value)
    }

    #[track_caller]
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels)
            .unwrap_or_else(|| panic!("no sample {name} {labels:?}"))
    }
}

fn is_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn go_float(s: &str) -> f64 {
    match s {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        s => s.parse().unwrap_or_else(|_| panic!("not a number: {s:?}")),
    }
}

/// Reads the text as the 0.0.4 format defines it, and panics at anything
/// it does not allow: a family's `HELP` and `TYPE` once each and before its
/// samples, a sample that belongs to no `TYPE`d family (or a histogram's
/// sample other than `_bucket`, `_sum`, `_count`), a bad escape in a label
/// value.
fn read(text: &str) -> Text {
    let mut out = Text::default();
    let mut family: Option<(String, String)> = None;
    assert!(text.ends_with('\n'), "the last line ends in a line feed");
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').expect("HELP name text");
            assert!(is_name(name), "{line}");
            assert!(
                out.help.insert(name.to_owned(), help.to_owned()).is_none(),
                "HELP {name} twice"
            );
            assert!(!out.types.contains_key(name), "HELP {name} after its TYPE");
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
            assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
            assert!(out.help.contains_key(name), "TYPE {name} without HELP");
            assert!(
                out.types.insert(name.to_owned(), kind.to_owned()).is_none(),
                "TYPE {name} twice"
            );
            family = Some((name.to_owned(), kind.to_owned()));
            continue;
        }
        assert!(!line.starts_with('#') && !line.is_empty(), "{line:?}");
        let end = line.find(['{', ' ']).expect("a value");
        let name = &line[..end];
        assert!(is_name(name), "{line}");
        let mut rest = &line[end..];
        let mut labels = BTreeMap::new();
        if let Some(body) = rest.strip_prefix('{') {
            let mut chars = body.char_indices();
            loop {
                let label: String = chars
                    .by_ref()
                    .take_while(|(_, c)| *c != '=')
                    .map(|(_, c)| c)
                    .collect();
                assert!(is_name(&label), "label {label:?} in {line}");
                assert_eq!(chars.next().map(|(_, c)| c), Some('"'), "{line}");
                let mut value = String::new();
                loop {
                    match chars.next().expect("an unterminated label value").1 {
                        '"' => break,
                        '\\' => match chars.next().expect("an escape").1 {
                            '\\' => value.push('\\'),
                            '"' => value.push('"'),
                            'n' => value.push('\n'),
                            c => panic!("escape \\{c} in {line}"),
                        },
                        c => value.push(c),
                    }
                }
                assert!(
                    labels.insert(label, value).is_none(),
                    "a label twice: {line}"
                );
                match chars.next().expect("`,` or `}`") {
                    (_, ',') => continue,
                    (i, '}') => {
                        rest = &body[i + 1..];
                        break;
                    }
                    (_, c) => panic!("{c:?} after a label value in {line}"),
                }
            }
        }
        let value = rest.strip_prefix(' ').expect("a space before the value");
        assert!(!value.contains(' '), "a timestamp or junk: {line}");
        let (fam, kind) = family.as_ref().expect("a sample before any TYPE");
        let belongs = match kind.as_str() {
            "histogram" => ["_bucket", "_sum", "_count"]
                .iter()
                .any(|s| name.strip_suffix(s) == Some(fam)),
            _ => name == fam,
        };
        assert!(belongs, "{name} under TYPE {fam} {kind}");
        out.lines.push(Line {
            name: name.to_owned(),
            labels,
            value: go_float(value),
        });
    }
    out
}

fn scrape(text: &str) -> Scrape {
    Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("prometheus-parse reads it")
}

#[tokio::test(start_paused = true)]
async fn every_family_parses_back_with_its_type() {
    let (svc, registry) = stack("inventory");
    run(&svc).await;
    let text = registry.render_prometheus();
    println!("{text}");
    let scrape = scrape(&text);
    let strict = read(&text);

    // Families without samples in this run: no rate rule on the breaker, no
    // keyed breakers, no budget, no attempt histogram yet, no rate limiter,
    // no hedges, no adaptive limit.
    let absent: BTreeSet<&str> = [
        "resilience_circuit_failure_rate",
        "resilience_circuit_slow_call_rate",
        "resilience_circuit_keys",
        "resilience_retry_budget_available",
        "resilience_attempt_duration_seconds",
        "resilience_rate_limit_available",
        "resilience_rate_limit_waiting",
        "resilience_rate_limit_keys",
        "resilience_hedge_delay_seconds",
        "resilience_adaptive_limit",
        "resilience_adaptive_rtt_seconds",
    ]
    .into();
    for family in families() {
        let name = family.prometheus_name();
        if absent.contains(name) {
            assert!(!strict.types.contains_key(name), "{name}");
            continue;
        }
        assert_eq!(strict.types[name], family.kind().as_str(), "{name}");
        assert_eq!(scrape.docs[name], family.help(), "{name}");
        let samples: Vec<&Parsed> = scrape
            .samples
            .iter()
            .filter(|s| s.metric == name)
            .map(|s| &s.value)
            .collect();
        assert!(!samples.is_empty(), "{name}");
        for value in samples {
            let ok = match family.kind() {
                Kind::Counter => matches!(value, Parsed::Counter(_)),
                Kind::Gauge => matches!(value, Parsed::Gauge(_)),
                Kind::Histogram => matches!(value, Parsed::Histogram(b) if b.len() == 17),
                _ => false,
            };
            assert!(ok, "{name}: {value:?}");
        }
        // Every sample carries exactly the family's labels.
        for line in strict.lines.iter().filter(|l| l.name == name) {
            let keys: Vec<&str> = line.labels.keys().map(String::as_str).collect();
            let mut want: Vec<&str> = family.labels().to_vec();
            want.sort_unstable();
            assert_eq!(keys, want, "{name}");
        }
    }
}

#[tokio::test(start_paused = true)]
async fn samples_have_the_values_the_layers_counted() {
    let (svc, registry) = stack("inventory");
    run(&svc).await;
    let t = read(&registry.render_prometheus());
    let n = ("name", "inventory");
    let calls = |layer: &str, outcome: &str| {
        t.value(
            "resilience_calls_total",
            &[("layer", layer), n, ("outcome", outcome)],
        )
    };
    let event = |layer: &str, event: &str| {
        t.value(
            "resilience_events_total",
            &[("layer", layer), n, ("event", event)],
        )
    };
    let outcomes = ["success", "failure", "ignored", "cancelled"];
    assert_eq!(outcomes.map(|o| calls("metrics", o)), [1.0, 1.0, 1.0, 0.0]);
    assert_eq!(
        outcomes.map(|o| calls("circuit_breaker", o)),
        [1.0, 3.0, 0.0, 0.0]
    );
    assert_eq!(
        [
            "rejected_circuit_open",
            "rejected_bulkhead_full",
            "rejected_rate_limited",
            "deadline_exceeded",
            "timed_out"
        ]
        .map(|e| event("metrics", e)),
        [1.0, 0.0, 0.0, 0.0, 0.0]
    );
    assert_eq!(
        [
            "rejected",
            "slow_call",
            "late",
            "opened",
            "half_opened",
            "closed"
        ]
        .map(|e| event("circuit_breaker", e)),
        [1.0, 0.0, 0.0, 1.0, 0.0, 0.0]
    );
    // The retry layer has no name: its series carry `name=""`.
    let retry = |e: &str| {
        t.value(
            "resilience_events_total",
            &[("layer", "retry"), ("name", ""), ("event", e)],
        )
    };
    assert_eq!(
        [
            "retry",
            "budget_refused",
            "skipped_unsafe",
            "skipped_unreplayable",
            "exhausted",
            "deadline_reached",
            "server_hint"
        ]
        .map(retry),
        [2.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0]
    );
    assert_eq!(
        t.value("resilience_retry_attempts_total", &[("name", "")]),
        5.0
    );
    assert_eq!(
        [
            "admitted",
            "waited",
            "rejected_queue_full",
            "rejected_wait_timed_out",
            "cancelled_waiting"
        ]
        .map(|e| event("bulkhead", e)),
        [5.0, 0.0, 0.0, 0.0, 0.0]
    );
    for layer in ["metrics", "bulkhead"] {
        assert_eq!(t.value("resilience_in_flight", &[("layer", layer), n]), 0.0);
    }
    assert_eq!(t.value("resilience_bulkhead_waiting", &[n]), 0.0);
    assert_eq!(t.value("resilience_bulkhead_limit", &[n]), 4.0);
    for (state, v) in [
        ("closed", 0.0),
        ("open", 1.0),
        ("half_open", 0.0),
        ("forced_open", 0.0),
        ("disabled", 0.0),
    ] {
        assert_eq!(
            t.value("resilience_circuit_state", &[n, ("state", state)]),
            v,
            "{state}"
        );
    }
    // 2 ms, 4 + 10 + 4 ms, 4 + 10 ms.
    assert_eq!(t.value("resilience_call_duration_seconds_count", &[n]), 3.0);
    assert_eq!(t.value("resilience_call_duration_seconds_sum", &[n]), 0.034);
    let samples = t.lines.len();
    // The last 1: the metrics layer's `rejected_rate_limited` event.
    assert_eq!(samples, 4 + 4 + 4 + 6 + 1 + 7 + 5 + 2 + 1 + 1 + 5 + 19 + 1);
}

#[tokio::test(start_paused = true)]
async fn histogram_buckets_are_cumulative_and_inf_is_the_count() {
    let (metrics, handle) = MetricsLayer::new("slow");
    let svc = metrics.layer(service_fn(|ms: u64| async move {
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
        Ok::<_, steadfast::BoxError>(())
    }));
    let durations = [2, 4, 40, 400, 4_000, 90_000];
    for ms in durations {
        svc.clone().oneshot(ms).await.unwrap();
    }
    let text = render_prometheus(&[&handle]);
    let t = read(&text);
    let bucket = |le: &str| {
        t.value(
            "resilience_call_duration_seconds_bucket",
            &[("name", "slow"), ("le", le)],
        )
    };
    let expected = [
        ("0.0005", 0.0),
        ("0.001", 0.0),
        ("0.0025", 1.0),
        ("0.005", 2.0),
        ("0.01", 2.0),
        ("0.025", 2.0),
        ("0.05", 3.0),
        ("0.1", 3.0),
        ("0.25", 3.0),
        ("0.5", 4.0),
        ("1", 4.0),
        ("2.5", 4.0),
        ("5", 5.0),
        ("10", 5.0),
        ("30", 5.0),
        ("60", 5.0),
        ("+Inf", 6.0),
    ];
    for (le, n) in expected {
        assert_eq!(bucket(le), n, "le={le}");
    }
    let count = t.value(
        "resilience_call_duration_seconds_count",
        &[("name", "slow")],
    );
    assert_eq!(bucket("+Inf"), count);
    assert_eq!(
        t.value("resilience_call_duration_seconds_sum", &[("name", "slow")]),
        94.446
    );
    // In the order written, the buckets never go down.
    let written: Vec<f64> = t
        .lines
        .iter()
        .filter(|l| l.name == "resilience_call_duration_seconds_bucket")
        .map(|l| l.value)
        .collect();
    assert_eq!(written.len(), 17);
    assert!(written.windows(2).all(|w| w[0] <= w[1]), "{written:?}");
    // prometheus-parse reads the same buckets.
    let scrape = scrape(&text);
    let Parsed::Histogram(buckets) = &scrape
        .samples
        .iter()
        .find(|s| s.metric == "resilience_call_duration_seconds")
        .unwrap()
        .value
    else {
        panic!("not a histogram")
    };
    let parsed: Vec<(f64, f64)> = buckets.iter().map(|b| (b.less_than, b.count)).collect();
    let want: Vec<(f64, f64)> = expected.iter().map(|(le, n)| (go_float(le), *n)).collect();
    assert_eq!(parsed, want);
}

#[tokio::test(start_paused = true)]
async fn hostile_names_are_escaped_and_read_back() {
    let hostile = "a\"b\\c\nd";
    let (svc, registry) = stack(hostile);
    run(&svc).await;
    let text = registry.render_prometheus();
    println!("{text}");
    assert!(text.contains(r#"name="a\"b\\c\nd""#), "{text}");
    let t = read(&text);
    let names: BTreeSet<&str> = t
        .lines
        .iter()
        .filter_map(|l| l.labels.get("name").map(String::as_str))
        .collect();
    // The retry layer's series are unnamed.
    assert_eq!(names, [hostile, ""].into());
    assert_eq!(
        t.value(
            "resilience_calls_total",
            &[
                ("layer", "metrics"),
                ("name", hostile),
                ("outcome", "success")
            ]
        ),
        1.0
    );
    // prometheus-parse keeps escapes as written but still reads every line.
    let scrape = scrape(&text);
    assert_eq!(
        scrape.samples.len(),
        // Its 17 bucket lines read as one histogram sample.
        t.lines.len() - 16,
    );
}

#[tokio::test(start_paused = true)]
async fn help_and_type_once_per_family_across_handles() {
    let (a, registry) = stack("inventory");
    let (b, other) = stack("pricing");
    // A third layer named like the first: its series add to the first's.
    let (again, again_handle) = MetricsLayer::new("inventory");
    registry.register(other).register(again_handle);
    run(&a).await;
    run(&b).await;
    let again = again.layer(service_fn(|_: ()| async {
        Ok::<_, steadfast::BoxError>(())
    }));
    again.oneshot(()).await.unwrap();

    let text = registry.render_prometheus();
    let t = read(&text); // panics on a second HELP or TYPE
    for family in families() {
        let name = family.prometheus_name();
        let helps = text.matches(&format!("# HELP {name} ")).count();
        let types = text.matches(&format!("# TYPE {name} ")).count();
        assert_eq!(
            (helps, types),
            (
                t.help.contains_key(name) as usize,
                t.types.contains_key(name) as usize
            )
        );
        assert!(helps <= 1 && types <= 1, "{name}");
    }
    let success = |name: &str| {
        t.value(
            "resilience_calls_total",
            &[("layer", "metrics"), ("name", name), ("outcome", "success")],
        )
    };
    assert_eq!((success("inventory"), success("pricing")), (2.0, 1.0));
    assert_eq!(
        t.value(
            "resilience_call_duration_seconds_count",
            &[("name", "inventory")]
        ),
        4.0
    );
    // Two unnamed retry layers: one series, the sum.
    assert_eq!(
        t.value("resilience_retry_attempts_total", &[("name", "")]),
        10.0
    );
    // Each family's samples stand together, after its TYPE.
    let mut seen = Vec::new();
    for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
        seen.push(line.split(' ').nth(2).unwrap());
    }
    let order: Vec<&str> = families()
        .iter()
        .map(|f| f.prometheus_name())
        .filter(|n| seen.contains(n))
        .collect();
    assert_eq!(seen, order, "families in the table's order");
}

#[tokio::test(start_paused = true)]
async fn breaker_rates_are_ratios() {
    let breaker = CircuitBreakerLayer::new(
        CircuitBreakerConfig::builder()
            .name("rates")
            .slow_call_duration(std::time::Duration::from_millis(100))
            .slow_call_rate(90.0)
            .build()
            .unwrap(),
    );
    let handle = breaker.handle();
    let svc = breaker.layer(service_fn(|ms: u64| async move {
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
        if ms > 100 {
            Err(steadfast::BoxError::from("slow and failed"))
        } else {
            Ok(())
        }
    }));
    for ms in [1, 1, 1, 200] {
        let _ = svc.clone().oneshot(ms).await;
    }
    let t = read(&render_prometheus(&[&handle]));
    let name = [("name", "rates")];
    assert_eq!(t.value("resilience_circuit_failure_rate", &name), 0.25);
    assert_eq!(t.value("resilience_circuit_slow_call_rate", &name), 0.25);
    assert_eq!(
        t.value("resilience_circuit_state", &[name[0], ("state", "closed")]),
        1.0
    );
}

#[cfg(feature = "http")]
#[tokio::test(start_paused = true)]
async fn the_preset_stack_exports_its_pieces() {
    let (_layer, handle) = steadfast::ResilienceLayer::http()
        .bulkhead(8)
        .circuit_breaker_per_authority(CircuitBreakerConfig::builder().name("upstream"))
        .build()
        .unwrap();
    let registry = steadfast::metrics::Registry::new();
    registry.register(handle);
    let t = read(&registry.render_prometheus());
    let up = ("name", "upstream");
    assert_eq!(t.value("resilience_circuit_keys", &[up]), 0.0);
    for e in ["overflowed", "evicted"] {
        assert_eq!(
            t.value(
                "resilience_events_total",
                &[("layer", "circuit_breaker"), up, ("event", e)]
            ),
            0.0
        );
    }
    assert_eq!(t.value("resilience_bulkhead_limit", &[("name", "")]), 8.0);
    assert!(t
        .get("resilience_retry_attempts_total", &[("name", "")])
        .is_some());
    assert!(t
        .get("resilience_retry_budget_available", &[("name", "")])
        .is_some());
}

/// The preset's handle alone exports its metrics piece too (call counts and
/// the call-duration histogram), named as the piece is; a fault layer's
/// handle exports what it injected.
#[cfg(feature = "http")]
#[tokio::test(start_paused = true)]
async fn the_preset_handle_exports_its_metrics_piece_and_faults_export_their_injections() {
    use std::time::Duration;
    use steadfast::chaos::{Fault, FaultLayer, Latency};
    use steadfast::retry::body::ReplayBody;

    let faults = FaultLayer::builder()
        .name("inventory-faults")
        .seed(7)
        .latency(Latency::fixed(Duration::from_millis(5)))
        .fault(
            0.5,
            Fault::http_status(http::StatusCode::SERVICE_UNAVAILABLE),
        )
        .build()
        .unwrap();
    let (layer, handle) = steadfast::ResilienceLayer::http()
        .metrics("inventory")
        .no_retry()
        .build()
        .unwrap();
    let backend = service_fn(|_req: http::Request<ReplayBody<String>>| async {
        Ok::<_, std::io::Error>(http::Response::new(String::from("ok")))
    });
    let svc = layer.layer(faults.layer(backend));
    for _ in 0..20 {
        let req = http::Request::get("http://inventory/1")
            .body(String::new())
            .unwrap();
        svc.clone().oneshot(req).await.unwrap();
    }
    let registry = steadfast::metrics::Registry::new();
    registry.register(handle).register(faults.handle());
    let t = read(&registry.render_prometheus());
    let name = ("name", "inventory");
    let calls: f64 = ["success", "failure"]
        .iter()
        .map(|o| {
            t.value(
                "resilience_calls_total",
                &[("layer", "metrics"), name, ("outcome", o)],
            )
        })
        .sum();
    assert_eq!(calls, 20.0);
    assert_eq!(
        t.value("resilience_call_duration_seconds_count", &[name]),
        20.0
    );
    let fault = |event| {
        t.value(
            "resilience_events_total",
            &[
                ("layer", "chaos"),
                ("name", "inventory-faults"),
                ("event", event),
            ],
        )
    };
    let snapshot = faults.handle().snapshot();
    assert_eq!(fault("delayed"), 20.0);
    assert_eq!(fault("injected_response"), snapshot.responses as f64);
    assert_eq!(fault("passed"), snapshot.passed as f64);
    assert_eq!(fault("injected_response") + fault("passed"), 20.0);
    assert!(fault("injected_response") > 0.0 && fault("passed") > 0.0);
}
