//! The figures of one run, and the tables.
//!
//! Phases: *before* `[0, from)`, *outage* `[from, to)` (the flapping
//! stretch in scenario B), *after* `[to, end)`. A call belongs to the phase
//! it was offered in, an attempt to the phase it reached the backend in.
//!
//! - **amplification**: attempts that reached the backend while it was
//!   failing, ÷ calls offered during the outage. No middleware: 1; three
//!   attempts a call: 3; a breaker that spares the backend: near 0.
//! - **detect**: from the outage's start to the first call that failed
//!   without reaching the backend (a rejection that spared it).
//! - **recover**: from the backend's return to the start of the first 1-s
//!   window of offered calls of which ≥ 99 % succeeded (to the
//!   millisecond).
//! - **ok after**: calls offered after the outage that succeeded; **ok
//!   after recovery**: the same from the end of *recover* on (a client that
//!   recovers and stays up: 100 %).
//! - **max 1 s**: the most attempts in any 1-s window inside the outage,
//!   ÷ the 1,000 calls offered in it.

use std::fmt::Write as _;
use std::time::Duration;

use super::backend::Counts;
use super::Scenario;

/// Calls offered per second.
pub const RATE: usize = 1000;

/// Calls and attempts in one phase.
#[derive(Clone, Copy, Debug, Default)]
pub struct Phase {
    /// Calls offered.
    pub calls: u64,
    /// Attempts that reached the backend.
    pub attempts: u64,
    /// Attempts the backend served.
    pub served: u64,
    /// Calls that succeeded.
    pub ok: u64,
    /// Calls that failed (rejections included) or never finished.
    pub failed: u64,
}

/// The figures of one client in one scenario.
#[derive(Clone, Debug)]
pub struct Figures {
    /// The client's name.
    pub client: &'static str,
    /// Before, during and after the outage.
    pub phases: [Phase; 3],
    /// See the module docs.
    pub amplification: f64,
    /// See the module docs; `None`: never.
    pub detect: Option<Duration>,
    /// See the module docs; `None`: never.
    pub recover: Option<Duration>,
    /// Percent of the calls after the outage that succeeded.
    pub ok_after: f64,
    /// Percent of the calls from the recovery on that succeeded.
    pub ok_after_recovery: Option<f64>,
    /// See the module docs.
    pub max_window: f64,
    /// How long the run went on after the outage.
    pub after: Duration,
    /// Scenario B: how many times the backend came back and served.
    pub recoveries: u64,
}

fn ms(d: Duration) -> usize {
    usize::try_from(d.as_millis()).expect("a short run")
}

/// The figures of `client`'s run through `scenario`.
pub fn measure(client: &'static str, scenario: &Scenario, counts: &Counts) -> Figures {
    let (from, to) = scenario.trouble();
    let (from, to, end) = (ms(from), ms(to), ms(scenario.run_for));
    let phase = |a: usize, b: usize, last: bool| {
        // The drain after the last call belongs to the last phase.
        let b_attempts = if last { counts.attempts.len() } else { b };
        let attempts: u64 = counts.attempts[a..b_attempts]
            .iter()
            .map(|&n| u64::from(n))
            .sum();
        let served: u64 = counts.served[a..b_attempts]
            .iter()
            .map(|&n| u64::from(n))
            .sum();
        let ok = counts.outcome[a..b]
            .iter()
            .filter(|o| **o == Some(true))
            .count() as u64;
        let calls = (b - a) as u64;
        Phase {
            calls,
            attempts,
            served,
            ok,
            failed: calls - ok,
        }
    };
    let phases = [
        phase(0, from, false),
        phase(from, to, false),
        phase(to, end, true),
    ];
    let outage = phases[1];
    let amplification = (outage.attempts - outage.served) as f64 / outage.calls as f64;
    let detect = (from..to)
        .find(|&i| counts.outcome[i] == Some(false) && counts.attempts_of[i] == 0)
        .map(|i| Duration::from_millis((i - from) as u64));
    // Sliding 1-s windows of offered calls from the backend's return on.
    let ok = |i: usize| usize::from(counts.outcome[i] == Some(true));
    let mut in_window: usize = (to..to + RATE).map(ok).sum();
    let mut recover = None;
    for start in to..=end - RATE {
        if start > to {
            in_window = in_window + ok(start + RATE - 1) - ok(start - 1);
        }
        if in_window * 100 >= RATE * 99 {
            recover = Some(start - to);
            break;
        }
    }
    let percent =
        |a: usize, b: usize| (a..b).map(ok).sum::<usize>() as f64 * 100.0 / (b - a).max(1) as f64;
    let mut max_window = 0;
    let mut sum: u64 = counts.attempts[from..from + RATE]
        .iter()
        .map(|&n| u64::from(n))
        .sum();
    for start in from..=to - RATE {
        if start > from {
            sum = sum + u64::from(counts.attempts[start + RATE - 1])
                - u64::from(counts.attempts[start - 1]);
        }
        max_window = max_window.max(sum);
    }
    Figures {
        client,
        phases,
        amplification,
        detect,
        recover: recover.map(|r| Duration::from_millis(r as u64)),
        ok_after: percent(to, end),
        ok_after_recovery: recover.map(|r| percent(to + r, end)),
        max_window: max_window as f64 / RATE as f64,
        after: scenario.run_for - scenario.trouble().1,
        recoveries: counts.recoveries,
    }
}

fn secs(d: Option<Duration>) -> String {
    d.map_or_else(|| "never".into(), |d| format!("{:.3} s", d.as_secs_f64()))
}

/// `recover`, or "> N s" when it did not happen within the run.
fn recover_secs(f: &Figures) -> String {
    f.recover.map_or_else(
        || format!("> {} s", f.after.as_secs() - 1),
        |d| format!("{:.3} s", d.as_secs_f64()),
    )
}

/// The two tables of a scenario, as Markdown: the phases, then the figures.
pub fn tables(scenario: &Scenario, figures: &[Figures]) -> String {
    let mut out = String::new();
    let (from, to) = scenario.trouble();
    let trouble = match scenario.behaviour {
        super::Behaviour::Outage { .. } => "outage",
        super::Behaviour::Flapping { .. } => "flapping",
    };
    let _ = writeln!(
        out,
        "phases: before 0–{} s, {trouble} {}–{} s, after {}–{} s; calls / attempts at the backend / calls ok / calls failed\n",
        from.as_secs(),
        from.as_secs(),
        to.as_secs(),
        to.as_secs(),
        scenario.run_for.as_secs()
    );
    let _ = writeln!(
        out,
        "| client | before | {trouble} | after |\n|---|---:|---:|---:|"
    );
    for f in figures {
        let cell = |p: &Phase| format!("{} / {} / {} / {}", p.calls, p.attempts, p.ok, p.failed);
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} |",
            f.client,
            cell(&f.phases[0]),
            cell(&f.phases[1]),
            cell(&f.phases[2])
        );
    }
    let _ = writeln!(
        out,
        "\n| client | amplification | detect | recover | ok after | ok after recovery | max 1 s ÷ offered |\n|---|---:|---:|---:|---:|---:|---:|"
    );
    for f in figures {
        let _ = writeln!(
            out,
            "| {} | {:.4} | {} | {} | {:.1} % | {} | {:.2} |",
            f.client,
            f.amplification,
            secs(f.detect),
            recover_secs(f),
            f.ok_after,
            f.ok_after_recovery
                .map_or_else(|| "-".into(), |p| format!("{p:.1} %")),
            f.max_window
        );
    }
    if let super::Behaviour::Flapping { .. } = scenario.behaviour {
        let _ = writeln!(
            out,
            "\nthe flapping backend's load: attempts it failed (probes and calls after each close, until the breaker trips again), the times it came back and served, and the failed attempts per comeback\n\n| client | failed attempts | comebacks | failed per comeback | calls ok while flapping |\n|---|---:|---:|---:|---:|"
        );
        for f in figures {
            let p = &f.phases[1];
            let failed = p.attempts - p.served;
            let _ = writeln!(
                out,
                "| {} | {} | {} | {:.1} | {:.1} % |",
                f.client,
                failed,
                f.recoveries,
                failed as f64 / f.recoveries.max(1) as f64,
                p.ok as f64 * 100.0 / p.calls as f64
            );
        }
    }
    out
}

/// One target: what, the measured value, and whether it is met.
#[derive(Clone, Debug)]
pub struct Target {
    /// The target, e.g. `amplification ≤ 0.01`.
    pub name: &'static str,
    /// The measured value, formatted.
    pub value: String,
    /// Met?
    pub pass: bool,
}

/// The base open duration of the default breaker.
pub const BASE_OPEN: Duration = Duration::from_secs(5);

/// The #13 targets of the preset's defaults in a hard outage.
pub fn preset_targets(f: &Figures) -> Vec<Target> {
    let limit = BASE_OPEN + Duration::from_millis(100);
    vec![
        Target {
            name: "amplification ≤ 0.01",
            value: format!("{:.4}", f.amplification),
            pass: f.amplification <= 0.01,
        },
        Target {
            name: "detect ≤ 0.1 s",
            value: secs(f.detect),
            pass: f.detect.is_some_and(|d| d <= Duration::from_millis(100)),
        },
        Target {
            name: "recover ≤ base open duration (5 s) + 0.1 s",
            value: recover_secs(f),
            pass: f.recover.is_some_and(|d| d <= limit),
        },
        Target {
            name: "≥ 99.5 % ok after recovery",
            value: f
                .ok_after_recovery
                .map_or_else(|| "-".into(), |p| format!("{p:.2} %")),
            pass: f.ok_after_recovery.is_some_and(|p| p >= 99.5),
        },
    ]
}

/// The retry budget's target: no 1-s window above 1.5 × the offered load.
pub fn budget_target(f: &Figures) -> Target {
    Target {
        name: "max 1 s ÷ offered ≤ 1.5",
        value: format!("{:.2}", f.max_window),
        pass: f.max_window <= 1.5,
    }
}

/// Targets as lines: `  name: value PASS`.
pub fn target_lines(who: &str, targets: &[Target]) -> String {
    let mut out = String::new();
    for t in targets {
        let _ = writeln!(
            out,
            "- {who}: {} — {} **{}**",
            t.name,
            t.value,
            if t.pass { "PASS" } else { "FAIL" }
        );
    }
    out
}
