//! What a long run of `booking-bench` (a soak) reports beside the edits: each table's rows
//! and size, the services' resident memory, and the figures per window of the run, printed
//! with the targets of a steady state.

use hdrhistogram::Histogram;
use std::{collections::BTreeMap, time::Duration};

/// The schemas of the three services.
const SCHEMAS: [&str; 3] = ["booking", "assign", "notify"];

/// One table's rows and size (with its indexes and TOAST), in bytes.
#[derive(Clone, Debug)]
pub struct TableFigures {
    pub rows: i64,
    pub bytes: i64,
}

/// Every table of the services' schemas on `client`, by qualified name (rows counted
/// exactly, so read while the edits run it costs a scan of each table).
pub async fn tables(client: &tokio_postgres::Client) -> anyhow::Result<BTreeMap<String, TableFigures>> {
    let names = client
        .query(
            "SELECT n.nspname || '.' || c.relname, pg_total_relation_size(c.oid) FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind = 'r' AND n.nspname = ANY($1) AND c.relname NOT LIKE 'refinery%' ORDER BY 1",
            &[&SCHEMAS.as_slice()],
        )
        .await?;
    let mut figures = BTreeMap::new();
    for row in names {
        let name: String = row.try_get(0)?;
        let bytes: i64 = row.try_get(1)?;
        let rows: i64 = client.query_one(&format!("SELECT count(*) FROM {name}"), &[]).await?.try_get(0)?;
        figures.insert(name, TableFigures { rows, bytes });
    }
    Ok(figures)
}

/// The one-minute load average of the machine (other work on it shows here).
pub fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0.0)
}

/// The figures of one report interval of the run.
pub struct Interval {
    /// Seconds since measuring started, at the interval's end.
    pub at_s: f64,
    pub seconds: f64,
    pub edits: u64,
    pub errors: u64,
    pub latency: Histogram<u64>,
    pub rss_mib: BTreeMap<String, f64>,
    pub rows: BTreeMap<String, i64>,
    pub load: f64,
}

impl Interval {
    /// The interval as JSON (latency in ms).
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "at_s": round(self.at_s),
            "edits_per_sec": round(self.edits as f64 / self.seconds.max(1e-9)),
            "p50_ms": round(self.latency.value_at_quantile(0.50) as f64 / 1000.0),
            "p99_ms": round(self.latency.value_at_quantile(0.99) as f64 / 1000.0),
            "errors": self.errors,
            "rss_mib": self.rss_mib,
            "rows": self.rows,
            "load": self.load,
        })
    }
}

/// Intervals merged into windows of `per` intervals each: (edits/s, p99 ms, end in s).
pub fn windows(intervals: &[Interval], per: usize) -> Vec<(f64, f64, f64)> {
    intervals
        .chunks(per.max(1))
        .filter_map(|chunk| {
            let mut latency = chunk.first()?.latency.clone();
            latency.reset();
            for interval in chunk {
                let _ = latency.add(&interval.latency);
            }
            let seconds: f64 = chunk.iter().map(|i| i.seconds).sum();
            let edits: u64 = chunk.iter().map(|i| i.edits).sum();
            let end = chunk.last().map_or(0.0, |i| i.at_s);
            Some((edits as f64 / seconds.max(1e-9), latency.value_at_quantile(0.99) as f64 / 1000.0, end))
        })
        .collect()
}

fn round(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

/// Prints a soak's figures (per 5-minute window, the tables at the start and the end, the
/// services' memory) and the steady state's targets; returns them as JSON.
pub fn report(
    report_every: Duration,
    intervals: &[Interval],
    start: Option<&BTreeMap<String, TableFigures>>,
    end: Option<&BTreeMap<String, TableFigures>>,
) -> serde_json::Value {
    let per_window = (300.0 / report_every.as_secs_f64().max(1.0)).round().max(1.0) as usize;
    let windows = windows(intervals, per_window);
    println!("soak           {} intervals of {:?}", intervals.len(), report_every);
    for (edits_per_sec, p99, end) in &windows {
        println!("  window to {:>6.0}s  {:>7.1} edits/s  p99 {:>7.2} ms", end, edits_per_sec, p99);
    }
    // The last window may be short; the targets compare whole windows.
    let whole: Vec<_> = windows.iter().take(intervals.len() / per_window).collect();
    let ratio = match (whole.first(), whole.last()) {
        (Some(first), Some(last)) if whole.len() > 1 && first.0 > 0.0 => Some(last.0 / first.0),
        _ => None,
    };
    if let Some(ratio) = ratio {
        let met = if ratio >= 0.9 { "met" } else { "not met" };
        println!("  last window's edits/s / first's: {ratio:.3} (target >= 0.9: {met})");
    }
    let mut rss = serde_json::Map::new();
    let peaks = crate::usage::rss_peak();
    if let (Some(first), Some(last)) = (intervals.get(per_window.saturating_sub(1)), intervals.last()) {
        for (name, at_first) in &first.rss_mib {
            let at_end = last.rss_mib.get(name).copied().unwrap_or(0.0);
            let peak = peaks.get(name).copied().unwrap_or(0.0);
            let change = if *at_first > 0.0 { at_end / at_first - 1.0 } else { 0.0 };
            let met = if change.abs() <= 0.10 { "met" } else { "not met" };
            println!(
                "  RSS {name:<11} {at_first:.1} MiB after the first window, {at_end:.1} MiB at the end ({:+.1} %, target within 10 %: {met}), peak {peak:.1} MiB",
                change * 100.0
            );
            rss.insert(
                name.clone(),
                serde_json::json!({ "after_first_window": at_first, "end": at_end, "peak": peak }),
            );
        }
    }
    let mut tables = serde_json::Map::new();
    if let (Some(start), Some(end)) = (start, end) {
        println!("  {:<28} {:>10} {:>10} {:>10} {:>10}", "table", "rows start", "rows end", "MiB start", "MiB end");
        for (name, at_end) in end {
            let at_start = start.get(name).cloned().unwrap_or(TableFigures { rows: 0, bytes: 0 });
            let mib = |bytes: i64| bytes as f64 / 1_048_576.0;
            println!(
                "  {name:<28} {:>10} {:>10} {:>10.2} {:>10.2}",
                at_start.rows,
                at_end.rows,
                mib(at_start.bytes),
                mib(at_end.bytes)
            );
            tables.insert(
                name.clone(),
                serde_json::json!({ "rows": [at_start.rows, at_end.rows], "bytes": [at_start.bytes, at_end.bytes] }),
            );
        }
    }
    serde_json::json!({
        "intervals": intervals.iter().map(|i| i.json()).collect::<Vec<_>>(),
        "windows": windows.iter().map(|(e, p, end)| serde_json::json!({ "end_s": end, "edits_per_sec": e, "p99_ms": p })).collect::<Vec<_>>(),
        "last_to_first_edits_ratio": ratio,
        "rss_mib": rss,
        "tables": tables,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn interval(at_s: f64, edits: u64, latency_us: u64) -> Interval {
        let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("bounds");
        for _ in 0..edits {
            let _ = latency.record(latency_us);
        }
        Interval {
            at_s,
            seconds: 60.0,
            edits,
            errors: 0,
            latency,
            rss_mib: BTreeMap::new(),
            rows: BTreeMap::new(),
            load: 0.0,
        }
    }

    #[test]
    fn windows_merge_their_intervals() {
        let intervals: Vec<Interval> =
            (1..=7).map(|m| interval(m as f64 * 60.0, if m <= 5 { 600 } else { 1200 }, m * 1000)).collect();
        let windows = windows(&intervals, 5);
        assert_eq!(windows.len(), 2);
        assert_eq!(windows[0].0, 10.0);
        assert!((windows[0].1 - 5.0).abs() < 0.01, "p99 of the first five minutes: {}", windows[0].1);
        assert_eq!(windows[1].0, 20.0);
        assert_eq!(windows[1].2, 420.0);
    }
}
