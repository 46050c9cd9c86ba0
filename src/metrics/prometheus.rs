//! Prometheus text exposition format 0.0.4.
//!
//! Families are written in the order of [`families`](super::families), each
//! once: `# HELP`, `# TYPE`, then its series. A counter family's name ends
//! in `_total` and its `TYPE` line names it so, as the Go client writes it;
//! a histogram writes `_bucket{le}` (cumulative, `+Inf` equal to `_count`),
//! `_sum` in seconds and `_count`.

use std::fmt::Write as _;

use super::export::{Collect, Family, Sample, Samples, Value, BUCKET_BOUNDS};

/// The media type of what [`render_prometheus`] writes, for a scrape
/// endpoint's `Content-Type`.
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Renders the samples of `sources` in the Prometheus text format (0.0.4).
///
/// Series with the same labels from two sources (two handles with one
/// name) are added up, so that every series appears once. See the
/// [module docs](crate::metrics#metric-families) for the families.
pub fn render_prometheus(sources: &[&dyn Collect]) -> String {
    render(&Samples::from_sources(sources))
}

pub(crate) fn render(samples: &Samples) -> String {
    let mut out = String::new();
    for (family, series) in samples.by_family() {
        write_family(&mut out, family, &series);
    }
    out
}

fn write_family(out: &mut String, family: &Family, series: &[Sample]) {
    let name = family.prometheus_name();
    let _ = writeln!(out, "# HELP {name} {}", escape_help(family.help()));
    let _ = writeln!(out, "# TYPE {name} {}", family.kind());
    for sample in series {
        match sample.value() {
            Value::Counter(n) => {
                line(out, name, "", sample, None, &n.to_string());
            }
            Value::Gauge(v) => {
                line(out, name, "", sample, None, &number(*v));
            }
            Value::Histogram(h) => {
                for (le, bound) in BUCKET_BOUNDS {
                    let n = h.count_at_or_below(bound);
                    line(out, name, "_bucket", sample, Some(le), &n.to_string());
                }
                let count = h.count().to_string();
                line(out, name, "_bucket", sample, Some("+Inf"), &count);
                let sum = number(h.sum().as_secs_f64());
                line(out, name, "_sum", sample, None, &sum);
                line(out, name, "_count", sample, None, &count);
            }
        }
    }
}

/// One sample line: `name{labels} value`.
fn line(out: &mut String, name: &str, suffix: &str, sample: &Sample, le: Option<&str>, v: &str) {
    out.push_str(name);
    out.push_str(suffix);
    let mut sep = '{';
    for (label, value) in sample.labels().chain(le.map(|le| ("le", le))) {
        out.push(sep);
        sep = ',';
        out.push_str(label);
        out.push_str("=\"");
        escape_label_value(out, value);
        out.push('"');
    }
    if sep == ',' {
        out.push('}');
    }
    out.push(' ');
    out.push_str(v);
    out.push('\n');
}

/// A label value as the format wants it: `\`, `"` and newline escaped.
fn escape_label_value(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// HELP text: `\` and newline escaped.
fn escape_help(help: &str) -> String {
    help.replace('\\', "\\\\").replace('\n', "\\n")
}

/// A float as Go's `ParseFloat` reads it: `+Inf`, `-Inf`, `NaN`, else
/// Rust's shortest round-trip form (never an exponent).
fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_owned()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.to_owned()
    } else {
        v.to_string()
    }
}

#[cfg(all(test, not(steadfast_loom)))]
mod tests {
    use super::*;

    #[test]
    fn escapes_label_values_and_help() {
        let mut out = String::new();
        escape_label_value(&mut out, "a\"b\\c\nd");
        assert_eq!(out, r#"a\"b\\c\nd"#);
        assert_eq!(escape_help("x\\y\nz \"q\""), "x\\\\y\\nz \"q\"");
    }

    #[test]
    fn numbers_are_go_floats() {
        assert_eq!(number(f64::INFINITY), "+Inf");
        assert_eq!(number(f64::NEG_INFINITY), "-Inf");
        assert_eq!(number(f64::NAN), "NaN");
        assert_eq!(number(0.5), "0.5");
        assert_eq!(number(3.0), "3");
        assert_eq!(number(1e-7), "0.0000001");
    }
}
