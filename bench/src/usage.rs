//! Where the machine goes: CPU time and resident memory of the local services, of
//! PostgreSQL and of the benchmark itself, read from `/proc`.

use std::collections::BTreeMap;

/// Processes whose CPU time the benchmark reports: the local services, PostgreSQL's
/// processes (every process named `postgres` on this machine) and the benchmark itself.
const MEASURED: [&str; 5] = ["postgres", "booking-svc", "assign-svc", "notify-svc", "booking-bench"];

/// CPU time (user + system) used so far by each measured process, in seconds, by pid, with
/// the process's name (from `/proc/<pid>/stat`).
pub fn cpu_seconds_by_process() -> BTreeMap<u32, (&'static str, f64)> {
    // utime and stime count clock ticks of USER_HZ, which Linux fixes at 100 per second on
    // x86-64 and arm64.
    const TICKS_PER_SECOND: f64 = 100.0;
    let mut usage = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir("/proc") else { return usage };
    let me = std::process::id();
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|name| name.parse::<u32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        // The name is in parentheses and may itself hold spaces or parentheses.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else { continue };
        let comm = if pid == me { "booking-bench" } else { &stat[open + 1..close] };
        let Some(name) = MEASURED.iter().copied().find(|measured| *measured == comm) else { continue };
        // After the name: state, ppid, pgrp, session, tty, tpgid, flags, 4 fault counts,
        // then utime and stime.
        let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        let ticks = |index: usize| fields.get(index).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        usage.insert(pid, (name, (ticks(11) + ticks(12)) as f64 / TICKS_PER_SECOND));
    }
    usage
}

/// Says so when a service runs more than once on this machine (say, left over from another
/// run): the CPU and RSS figures, read by process name, then cover every copy.
pub fn warn_about_other_copies(usage: &BTreeMap<u32, (&'static str, f64)>) {
    for name in ["booking-svc", "assign-svc", "notify-svc"] {
        let copies = usage.values().filter(|(n, _)| *n == name).count();
        if copies > 1 {
            eprintln!(
                "booking-bench: warning: {copies} {name} processes run here; CPU and RSS figures cover all of them"
            );
        }
    }
}

/// CPU milliseconds per measured edit by process name, and their total, between two
/// [`cpu_seconds_by_process`] readings. A process started in between counts whole; one
/// that ended in between is missing (PostgreSQL's pooled backends and the services live
/// through a run).
pub fn cpu_ms_per_edit(
    before: &BTreeMap<u32, (&'static str, f64)>,
    after: &BTreeMap<u32, (&'static str, f64)>,
    edits: u64,
) -> serde_json::Value {
    let mut by_name = serde_json::Map::new();
    if edits == 0 {
        return serde_json::Value::Object(by_name);
    }
    let mut total = 0.0;
    for name in MEASURED {
        let mut running = after.iter().filter(|(_, (n, _))| *n == name).peekable();
        if running.peek().is_none() {
            // Not a local process (e.g. a service on another machine): nothing to report.
            continue;
        }
        let seconds = running.fold(0.0, |sum, (pid, (_, used))| {
            sum + used - before.get(pid).filter(|(n, _)| *n == name).map_or(0.0, |(_, u)| *u)
        });
        let ms = seconds * 1000.0 / edits as f64;
        total += ms;
        by_name.insert(name.to_string(), serde_json::json!((ms * 1000.0).round() / 1000.0));
    }
    by_name.insert("total".to_string(), serde_json::json!((total * 1000.0).round() / 1000.0));
    serde_json::Value::Object(by_name)
}

/// Peak resident set size (VmHWM) of every local booking-svc, assign-svc and notify-svc
/// process, wherever it was started from, in MiB, by process name.
pub fn peak_rss_of_services() -> serde_json::Value {
    memory("VmHWM:", false).into_iter().map(|(name, mib)| (name, serde_json::json!(mib))).collect()
}

/// Resident memory now (`VmRSS`) of each local booking-svc, assign-svc and notify-svc
/// started from the directory of this benchmark's own binary (as `booking-stack` starts
/// them: copies run by others, from elsewhere, are left out), in MiB, by name (the largest
/// copy when several run).
pub fn rss_now() -> BTreeMap<String, f64> {
    memory("VmRSS:", true)
}

/// The peak resident memory (`VmHWM`) of the same processes as [`rss_now`].
pub fn rss_peak() -> BTreeMap<String, f64> {
    memory("VmHWM:", true)
}

/// `field` of `/proc/<pid>/status` in MiB, the largest copy by name, of every local
/// service process; with `beside_me`, only of those started from this binary's directory.
fn memory(field: &str, beside_me: bool) -> BTreeMap<String, f64> {
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
        if beside_me && here.is_some() && dir != here {
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
