//! The chaos soak as CI runs it: the real `booking-chaos` binary (two replicas of each
//! service, a real SMTP server, every fault at random moments, judged from outside) for
//! 20 s twice: once on a fixed seed, once on a random one (printed: `booking-chaos --seed
//! <seed>` replays its operations and faults). The long run is in the README.

// The harness and helpers of a test fail the test by panicking, like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

/// The seed CI always runs (its first 20 s of faults hold every kind).
const FIXED_SEED: u64 = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_chaos_soak_passes_on_a_fixed_and_a_random_seed() {
    let random = fastrand::u64(..);
    println!("chaos soak seeds: {FIXED_SEED} (fixed) and {random} (random)");
    for seed in [FIXED_SEED, random] {
        let output = tokio::process::Command::new(support::process::binary("booking-chaos"))
            .args(["--seed", &seed.to_string(), "--duration", "20s", "--settle-timeout", "60s", "--json"])
            .args(["--database-url", &support::db::admin_url()])
            .output()
            .await
            .expect("run booking-chaos");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success(),
            "booking-chaos --seed {seed} exited with {}:\n{stdout}\n{stderr}",
            output.status
        );
        println!("{stdout}");
        let last = stdout.lines().last().expect("booking-chaos printed nothing");
        let summary: serde_json::Value = serde_json::from_str(last).expect("the last line is one JSON object");
        assert_eq!(summary["verdict"], "PASS", "{stdout}");
        assert_eq!(summary["seed"].as_u64(), Some(seed));
        // The soak did what it is for: a real load, faults, and mails to judge.
        let count = |field: &str| summary[field].as_u64().unwrap_or_default();
        assert!(count("operations_total") >= 100, "too few operations to judge: {summary}");
        assert!(summary["fault_log"].as_array().is_some_and(|f| f.len() >= 5), "too few faults: {summary}");
        assert!(count("mails") >= 20, "too few mails to judge: {summary}");
    }
}
