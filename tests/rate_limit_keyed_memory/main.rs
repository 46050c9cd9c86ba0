//! What a keyed rate limiter holds under 1,000,000 distinct keys: the live
//! heap (a counting global allocator on the test's own thread) and the
//! process's resident set (`VmRSS` of `/proc/self/status`), against the cap.
//!
//! In its own binary because the allocator is global.

use std::sync::Mutex;
use std::time::Duration;

use steadfast::rate_limit::KeyedRateLimitLayer;
use tower_layer::Layer;

#[path = "../support/live_heap.rs"]
mod live_heap;

use live_heap::{call_once as admitted, start_counting, stop_counting, Bare, Counting};

#[global_allocator]
static GLOBAL: Counting = Counting;

/// The tests run one at a time: the resident set is the whole process's.
static SERIAL: Mutex<()> = Mutex::new(());

/// A 256-byte key, distinct for each `i`: only its fingerprint is kept.
fn key_of(i: u64) -> Vec<u8> {
    let mut key = vec![b'k'; 256];
    key[..8].copy_from_slice(&i.to_le_bytes());
    key
}

/// The resident set of this process, in bytes (Linux), if readable.
fn rss() -> Option<i64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse::<i64>()
        .ok()?;
    Some(kib * 1024)
}

/// The documented cost of one key ("about 36 bytes"), with room for the
/// table's growth step (a table doubles, so up to twice that just after).
const BYTES_PER_KEY: i64 = 80;
/// Slack for the allocator and one-off allocations.
const CONSTANT: i64 = 256 << 10;

/// 1,000,000 distinct keys, each calling once an hour, against a cap of
/// 10,000: the limiter holds at most the cap, the rest share the overflow
/// limit, and neither the live heap nor the resident set grows with the
/// number of keys sent.
#[test]
fn a_million_keys_hold_no_more_than_the_cap() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    const CAP: usize = 10_000;
    const CALLS: u64 = 1_000_000;
    let layer =
        KeyedRateLimitLayer::builder(1, Duration::from_secs(3600), |req: &u64| key_of(*req))
            .max_keys(CAP)
            .build()
            .expect("valid config");
    let handle = layer.handle();
    let mut svc = layer.layer(Bare);
    let rss_before = rss();
    let base = start_counting();
    let mut admitted_calls = 0_u64;
    for i in 0..CALLS {
        admitted_calls += u64::from(admitted(&mut svc, i));
    }
    let (held, peak) = stop_counting(base);
    let rss_after = rss();
    let snap = handle.snapshot();
    assert!(
        snap.keys <= CAP as u64 && snap.keys > CAP as u64 * 9 / 10,
        "{snap:?}"
    );
    assert_eq!(snap.overflowed, CALLS - snap.keys);
    // Each held key its one call, the overflow keys one between them.
    assert_eq!(admitted_calls, snap.keys + 1);
    let bound = CAP as i64 * BYTES_PER_KEY + CONSTANT;
    println!(
        "{} keys held: live heap {held} B (peak {peak} B, {} B per key); RSS {:?} -> {:?}",
        snap.keys,
        held / snap.keys as i64,
        rss_before,
        rss_after
    );
    assert!(
        held <= bound && peak <= bound,
        "{} keys hold {held} bytes (peak {peak}), bound {bound}",
        snap.keys
    );
    // Without the cap the fingerprints alone would take ~36 MB; with it
    // the resident set grows by far less (the allocator's own slack
    // included).
    if let (Some(before), Some(after)) = (rss_before, rss_after) {
        let grown = after - before;
        assert!(grown < 8 << 20, "RSS grew by {grown} bytes");
    }
}

/// The documented bytes per key hold: 100,000 `u64` keys of their own.
#[test]
fn bytes_per_key_match_the_docs() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    const KEYS: u64 = 100_000;
    let layer = KeyedRateLimitLayer::builder(1, Duration::from_secs(3600), |req: &u64| *req)
        .max_keys(4 * KEYS as usize)
        .build()
        .expect("valid config");
    let mut svc = layer.layer(Bare);
    let base = start_counting();
    for i in 0..KEYS {
        assert!(admitted(&mut svc, i));
    }
    let (held, _) = stop_counting(base);
    assert_eq!(layer.handle().keys(), KEYS as usize);
    let per_key = held / KEYS as i64;
    println!("{per_key} B per key");
    // 16 bytes of entry + 1 control byte, at a load factor between 7/16 and 7/8.
    assert!(
        (17..=BYTES_PER_KEY).contains(&per_key),
        "{per_key} B per key"
    );
}
