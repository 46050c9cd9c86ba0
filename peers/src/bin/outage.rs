//! The outage simulation of issue #13: every client through scenarios A
//! (dead 10–40 s), A' (dead 10–310 s) and B (flapping), on tokio's paused
//! clock. Prints the tables (Markdown) and the preset's targets, and
//! writes `docs/outage/<scenario>.svg`.
//!
//! ```text
//! cargo run --release -p steadfast-peers --bin outage
//! ```

use std::path::PathBuf;

use steadfast_peers::sim::clients::PRESET;
use steadfast_peers::sim::report::{budget_target, preset_targets, tables, target_lines};
use steadfast_peers::sim::{measure, plot, run, Behaviour, BoxError, Scenario, CLIENTS};

fn main() -> Result<(), BoxError> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/outage");
    std::fs::create_dir_all(&dir)?;
    for scenario in [Scenario::A, Scenario::A_LONG, Scenario::B] {
        // One thread per client: each run is alone on its thread, with
        // its own runtime and clocks, so the results do not depend on it.
        let runs: Vec<_> = std::thread::scope(|s| {
            let threads: Vec<_> = CLIENTS
                .iter()
                .map(|client| s.spawn(move || (client.name, run(client, &scenario).counts())))
                .collect();
            threads
                .into_iter()
                .map(|t| t.join().expect("a run"))
                .collect()
        });
        let figures: Vec<_> = runs
            .iter()
            .map(|(name, counts)| measure(name, &scenario, counts))
            .collect();
        println!(
            "### {}; run to {} s\n",
            scenario.title,
            scenario.run_for.as_secs()
        );
        println!("{}", tables(&scenario, &figures));
        if let Behaviour::Outage { .. } = scenario.behaviour {
            let preset = figures
                .iter()
                .find(|f| f.client == PRESET)
                .expect("the preset");
            print!("{}", target_lines(PRESET, &preset_targets(preset)));
            let retry = figures
                .iter()
                .find(|f| f.client == "steadfast retry")
                .expect("the retry");
            print!(
                "{}",
                target_lines("steadfast retry", &[budget_target(retry)])
            );
            println!();
        }
        let path = dir.join(format!("{}.svg", scenario.name));
        plot::svg(&path, &scenario, &runs)?;
        println!("wrote docs/outage/{}.svg\n", scenario.name);
    }
    Ok(())
}
