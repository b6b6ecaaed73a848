//! What a long run of `booking-bench` (a soak) reports beside the edits: each table's rows
//! and size, the services' resident memory, and the figures per window of the run.

use hdrhistogram::Histogram;
use std::collections::BTreeMap;

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

/// Resident memory now (`VmRSS`) of each local booking-svc, assign-svc and notify-svc
/// started from the directory of this benchmark's own binary (as `booking-stack` starts
/// them: copies run by others, from elsewhere, are left out), in MiB, by name (the largest
/// copy when several run).
pub fn rss_now() -> BTreeMap<String, f64> {
    memory("VmRSS:")
}

/// The peak resident memory (`VmHWM`) of the same processes as [`rss_now`].
pub fn rss_peak() -> BTreeMap<String, f64> {
    memory("VmHWM:")
}

fn memory(field: &str) -> BTreeMap<String, f64> {
    let mut now = BTreeMap::new();
    let here = std::env::current_exe().ok().and_then(|exe| exe.parent().map(|dir| dir.to_path_buf()));
    let Ok(entries) = std::fs::read_dir("/proc") else { return now };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(comm) = std::fs::read_to_string(path.join("comm")) else { continue };
        let name = comm.trim();
        if !matches!(name, "booking-svc" | "assign-svc" | "notify-svc") {
            continue;
        }
        let dir = std::fs::read_link(path.join("exe")).ok().and_then(|exe| exe.parent().map(|d| d.to_path_buf()));
        if here.is_some() && dir != here {
            continue;
        }
        let Ok(status) = std::fs::read_to_string(path.join("status")) else { continue };
        let kib = status
            .lines()
            .find(|line| line.starts_with(field))
            .and_then(|line| line.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0);
        let mib = (kib / 1024.0 * 10.0).round() / 10.0;
        let entry = now.entry(name.to_string()).or_insert(0.0);
        if mib > *entry {
            *entry = mib;
        }
    }
    now
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
