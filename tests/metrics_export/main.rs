//! The exporters of `steadfast::metrics`, on real layers over
//! `tower::service_fn` and paused time:
//!
//! * `prometheus`: the text parses back (with `prometheus-parse`, and a
//!   strict reader of our own that also unescapes label values) with the
//!   documented families, types, labels and exact values;
//! * `facade` (feature `metrics`): the `metrics` facade's debugging
//!   recorder receives the documented metrics, described once, and each
//!   histogram only the values recorded since the last publish.

mod scenario;

#[cfg(feature = "metrics")]
mod facade;
mod prometheus;
