//! What a keyed breaker holds, in bytes: a counting global allocator follows
//! the live heap of the test's own thread while keys pour in.
//!
//! In its own binary because the allocator is global; it counts only the
//! thread that switched counting on, so the harness's threads never show up.

use std::process::Command;

use steadfast::circuit_breaker::{CircuitBreakerConfig, KeyedCircuitBreakerLayer};
use tower_layer::Layer;

#[path = "../support/live_heap.rs"]
mod live_heap;

use live_heap::{call_once, start_counting, stop_counting, Bare, Counting};

#[global_allocator]
static GLOBAL: Counting = Counting;

/// A 1 KiB key, distinct for each `i`.
fn key_of(i: u64) -> Vec<u8> {
    let mut key = vec![b'k'; 1024];
    key[..8].copy_from_slice(&i.to_le_bytes());
    key
}

fn consecutive_only() -> CircuitBreakerConfig {
    CircuitBreakerConfig::builder()
        .without_failure_rate()
        .build()
        .expect("valid config")
}

// --- the tests ---

/// The documented bound on what one key of its own costs, key included, for
/// the default config (a 10 s time window in 10 buckets); see the module
/// docs of `circuit_breaker::keyed`.
const BYTES_PER_KEY: i64 = 2_048;
/// The layer itself and the overflow breaker, which are made before counting
/// starts here, plus the allocator's and the table's slack.
const CONSTANT: i64 = 1 << 20;

/// 1,000,000 distinct 1 KiB keys against a cap of 10,000: the live heap never
/// passes 10,000 keys' worth plus a constant, however long the keys are.
#[test]
fn a_million_long_keys_hold_no_more_than_the_cap() {
    const CAP: usize = 10_000;
    const CALLS: u64 = 1_000_000;
    let layer = KeyedCircuitBreakerLayer::builder(|req: &u64| key_of(*req))
        .max_keys(CAP)
        .build()
        .expect("valid config");
    let handle = layer.handle();
    let mut svc = layer.layer(Bare);
    let base = start_counting();
    for i in 0..CALLS {
        assert!(call_once(&mut svc, i));
    }
    let (held, peak) = stop_counting(base);
    assert_eq!(handle.len(), CAP);
    assert_eq!(handle.overflowed(), CALLS - CAP as u64);
    let bound = CAP as i64 * BYTES_PER_KEY + CONSTANT;
    assert!(
        held <= bound && peak <= bound,
        "{CAP} keys hold {held} bytes (peak {peak}), bound {bound}: {} bytes per key",
        held / CAP as i64
    );
}

/// The heap one key of its own adds (table slot included), measured over
/// `n` `u64` keys, for the default config (time window) and for consecutive
/// failures only.
fn bytes_per_key(n: u64) -> (i64, i64) {
    let measure = |cfg: CircuitBreakerConfig| {
        let layer = KeyedCircuitBreakerLayer::builder(|req: &u64| *req)
            .config(cfg)
            .max_keys(4 * n as usize)
            .build()
            .expect("valid config");
        let mut svc = layer.layer(Bare);
        let base = start_counting();
        for i in 0..n {
            assert!(call_once(&mut svc, i));
        }
        let (held, _) = stop_counting(base);
        assert_eq!(layer.handle().len(), n as usize);
        held / n as i64
    };
    (
        measure(CircuitBreakerConfig::default()),
        measure(consecutive_only()),
    )
}

const CHILD: &str = "STEADFAST_KEYED_MEMORY_CHILD";

/// Run in a child process pinned to some CPUs: prints the bytes per key.
#[test]
fn child_bytes_per_key() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    let (time_window, consecutive) = bytes_per_key(2_000);
    println!("BYTES_PER_KEY {time_window} {consecutive}");
}

/// Runs [`child_bytes_per_key`] pinned to `cpus` and reads its figures.
fn bytes_per_key_on(cpus: &str) -> (i64, i64) {
    let exe = std::env::current_exe().expect("test binary");
    let out = Command::new("taskset")
        .args(["-c", cpus])
        .arg(exe)
        .args([
            "--exact",
            "child_bytes_per_key",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, "1")
        .output()
        .expect("taskset runs (util-linux)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "child on CPUs {cpus} failed: {stdout}"
    );
    let line = stdout
        .lines()
        .find_map(|l| l.split("BYTES_PER_KEY ").nth(1))
        .unwrap_or_else(|| panic!("no figures from the child on CPUs {cpus}: {stdout}"));
    let mut it = line.split(' ').map(|n| n.parse::<i64>().expect("a number"));
    (
        it.next().expect("two figures"),
        it.next().expect("two figures"),
    )
}

/// A key's state does not grow with the number of cores: the same bytes per
/// key on one CPU as on every CPU of the machine (which changes the number of
/// counter stripes the unkeyed breaker uses).
#[test]
fn bytes_per_key_do_not_depend_on_the_core_count() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cores < 2 {
        eprintln!("one CPU only: cannot vary the core count, skipped");
        return;
    }
    let one = bytes_per_key_on("0");
    let all = bytes_per_key_on(&format!("0-{}", cores - 1));
    // A few bytes of noise: one-off allocations (the thread's stripe slot,
    // lazily made statics) spread over the keys. A stripe is 128 bytes.
    let close = |a: i64, b: i64| (a - b).abs() <= 16;
    assert!(
        close(one.0, all.0) && close(one.1, all.1),
        "bytes per key (time window, consecutive only): {one:?} on 1 CPU, {all:?} on {cores}"
    );
    assert!(one.0 <= BYTES_PER_KEY && one.1 <= BYTES_PER_KEY, "{one:?}");
}
