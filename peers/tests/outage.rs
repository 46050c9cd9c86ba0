//! The #13 targets of the steadfast preset's defaults in the outage
//! simulation (`steadfast_peers::sim`), on tokio's paused clock: scenario A
//! (1,000 calls/s, backend dead from 10 s to 40 s, run to 60 s) and A'
//! (dead from 10 s to 310 s, run to 330 s), full scale — the runs take a
//! few seconds in a debug build.
//!
//! Every target of the defaults is asserted.

use std::time::Duration;

use steadfast_peers::sim::clients::PRESET;
use steadfast_peers::sim::report::{budget_target, preset_targets, Figures, Target};
use steadfast_peers::sim::{measure, run, Scenario, CLIENTS};

fn figures(client: &'static str, scenario: &Scenario) -> Figures {
    let c = CLIENTS
        .iter()
        .find(|c| c.name == client)
        .expect("a client of that name");
    measure(c.name, scenario, &run(c, scenario).counts())
}

fn target<'a>(targets: &'a [Target], name: &str) -> &'a Target {
    targets
        .iter()
        .find(|t| t.name.starts_with(name))
        .expect("a target of that name")
}

fn assert_met(t: &Target) {
    assert!(t.pass, "{}: {}", t.name, t.value);
}

/// Scenario A: the backend is spared, the outage is seen at once, and
/// once the preset is back it stays back.
#[test]
fn preset_detects_fast_and_spares_the_backend() {
    let f = figures(PRESET, &Scenario::A);
    let targets = preset_targets(&f);
    assert_met(target(&targets, "amplification"));
    assert_met(target(&targets, "detect"));
    assert_met(target(&targets, "≥ 99.5 %"));
    // Nothing before the outage failed, nothing was left unfinished.
    assert_eq!(f.phases[0].failed, 0);
    assert_eq!(f.phases[0].attempts, f.phases[0].calls);
}

/// The same calls at the same instants give the same counts: the run
/// depends on nothing but virtual time and seeds.
#[test]
fn runs_are_deterministic() {
    let c = CLIENTS
        .iter()
        .find(|c| c.name == PRESET)
        .expect("the preset");
    let scenario = Scenario::A.scaled_down(4);
    let (a, b) = (run(c, &scenario).counts(), run(c, &scenario).counts());
    assert_eq!(a.attempts, b.attempts);
    assert_eq!(a.outcome, b.outcome);
}

/// Scenario A: back within one base open duration (5 s) + 0.1 s of the
/// backend's return. Failed probes do not grow the open duration and jitter
/// only shortens it, so this holds for any jitter seed.
#[test]
fn preset_recovers_within_the_base_open_duration_after_30s() {
    let f = figures(PRESET, &Scenario::A);
    assert_met(target(&preset_targets(&f), "recover"));
    assert!(f.recover.is_some_and(|r| r <= Duration::from_millis(5_100)));
}

/// Scenario A': the same after a 300-s outage: the open duration has not
/// grown during it (it grows only when the backend flaps).
#[test]
fn preset_recovers_within_the_base_open_duration_after_300s() {
    let f = figures(PRESET, &Scenario::A_LONG);
    let targets = preset_targets(&f);
    assert_met(target(&targets, "recover"));
    assert_met(target(&targets, "≥ 99.5 %"));
    assert_met(target(&targets, "amplification"));
}

/// The retry budget alone spends smoothly: no 1-s window of the outage
/// with more attempts than 1.5 × the offered calls (each tenth of the
/// budget's window spends at most a tenth of its allowance; before #13 a
/// window's whole allowance went at once, 2.95 × for a second in ten).
#[test]
fn retry_budget_spends_smoothly() {
    let f = figures("steadfast retry", &Scenario::A);
    assert_met(&budget_target(&f));
}
