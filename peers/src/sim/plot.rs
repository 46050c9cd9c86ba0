//! The picture of a scenario: one panel per client, four lines each, in
//! 100-ms bins scaled to calls per second — calls offered, attempts that
//! reached the backend, calls that succeeded, and calls the breaker
//! rejected without reaching the backend (the breaker's state as the
//! backend sees it: 1,000/s while it is open, a dip while it probes, 0
//! while it is closed).
//!
//! plotters' SVG backend without its `ttf` feature: text is written as SVG
//! `<text>` elements, sized by plotters' naive font metrics, and the
//! viewer's sans-serif font draws it. Runs of equal values are drawn as
//! their two ends only, which keeps the files small.

use std::path::Path;

use plotters::prelude::*;

use super::backend::Counts;
use super::{BoxError, Scenario};

/// Picks one line of a client's.
type Pick = fn(&Lines) -> &Vec<f64>;

/// Bin width in milliseconds.
const BIN: usize = 100;

/// One client's lines, per bin, in calls (or attempts) per second.
struct Lines {
    offered: Vec<f64>,
    attempts: Vec<f64>,
    ok: Vec<f64>,
    spared: Vec<f64>,
}

fn lines(scenario: &Scenario, counts: &Counts) -> Lines {
    let end = usize::try_from(scenario.run_for.as_millis()).expect("a short run");
    let bins = end / BIN;
    let per_second = (1000 / BIN) as f64;
    let mut l = Lines {
        offered: vec![0.0; bins],
        attempts: vec![0.0; bins],
        ok: vec![0.0; bins],
        spared: vec![0.0; bins],
    };
    for i in 0..bins * BIN {
        let b = i / BIN;
        l.offered[b] += per_second;
        l.attempts[b] += f64::from(counts.attempts[i]) * per_second;
        match counts.outcome[i] {
            Some(true) => l.ok[b] += per_second,
            Some(false) if counts.attempts_of[i] == 0 => l.spared[b] += per_second,
            _ => {}
        }
    }
    l
}

/// The points of a line, keeping of each run of equal values its ends.
fn points(values: &[f64]) -> Vec<(f64, f64)> {
    let x = |i: usize| (i * BIN + BIN / 2) as f64 / 1000.0;
    let mut out = Vec::new();
    for (i, &v) in values.iter().enumerate() {
        let same_before = i > 0 && values[i - 1] == v;
        let same_after = i + 1 < values.len() && values[i + 1] == v;
        if !(same_before && same_after) {
            out.push((x(i), v));
        }
    }
    out
}

/// Writes the SVG of `scenario` to `path`: one panel per `(client, counts)`.
pub fn svg(path: &Path, scenario: &Scenario, runs: &[(&str, Counts)]) -> Result<(), BoxError> {
    const PANEL: u32 = 150;
    let height = PANEL * u32::try_from(runs.len()).expect("a few clients") + 40;
    let root = SVGBackend::new(path, (960, height)).into_drawing_area();
    root.fill(&WHITE)?;
    let (title, panels) = root.split_vertically(40);
    title.draw(&Text::new(
        format!(
            "{} — 1,000 calls/s offered; per second, in 100-ms bins",
            scenario.title
        ),
        (10, 12),
        ("sans-serif", 15).into_font(),
    ))?;
    let end = scenario.run_for.as_secs_f64();
    let top = runs
        .iter()
        .map(|(_, c)| {
            let l = lines(scenario, c);
            l.attempts.iter().copied().fold(0.0, f64::max)
        })
        .fold(1000.0, f64::max)
        * 1.1;
    let (from, to) = scenario.trouble();
    let series: [(&str, RGBColor, Pick); 4] = [
        ("offered", RGBColor(150, 150, 150), |l| &l.offered),
        ("attempts at the backend", RGBColor(200, 30, 30), |l| {
            &l.attempts
        }),
        ("calls ok", RGBColor(20, 140, 40), |l| &l.ok),
        ("rejected by the breaker", RGBColor(40, 80, 200), |l| {
            &l.spared
        }),
    ];
    for (i, (area, (client, counts))) in panels
        .split_evenly((runs.len(), 1))
        .iter()
        .zip(runs)
        .enumerate()
    {
        let l = lines(scenario, counts);
        let mut chart = ChartBuilder::on(area)
            .caption(*client, ("sans-serif", 13))
            .margin(4)
            .margin_right(16)
            .x_label_area_size(18)
            .y_label_area_size(44)
            .build_cartesian_2d(0.0..end, 0.0..top)?;
        chart
            .configure_mesh()
            .disable_mesh()
            .x_labels(12)
            .y_labels(4)
            .label_style(("sans-serif", 10))
            .x_label_formatter(&|x| format!("{x:.0} s"))
            .y_label_formatter(&|y| format!("{y:.0}"))
            .draw()?;
        // The outage, shaded.
        chart.draw_series(std::iter::once(Rectangle::new(
            [(from.as_secs_f64(), 0.0), (to.as_secs_f64(), top)],
            RGBColor(250, 235, 235).filled(),
        )))?;
        for (name, color, get) in &series {
            let drawn = chart.draw_series(LineSeries::new(points(get(&l)), color))?;
            if i == 0 {
                let color = *color;
                drawn
                    .label(*name)
                    .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], color));
            }
        }
        if i == 0 {
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperRight)
                .label_font(("sans-serif", 10))
                .background_style(WHITE.mix(0.9))
                .border_style(BLACK)
                .draw()?;
        }
    }
    root.present()?;
    Ok(())
}
