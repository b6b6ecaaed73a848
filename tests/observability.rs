//! The dashboard and the alert rules against what the services really export.
//!
//! The edit flow runs on the real stack (in-process, real PostgreSQL, gRPC and SMTP) with
//! OTLP sent to a receiver in this test. Every metric that
//! `deploy/grafana/dashboards/edit-flow.json` and `deploy/prometheus/alerts.yml` query must
//! be one of those, under the name the collector's Prometheus exporter gives it, and every
//! label they match on must be one of its attributes. A renamed metric fails here, not on
//! the dashboard in production.
//!
//! The stack test installs the process-wide OpenTelemetry providers: it is the only test
//! in this binary that starts services.

// The harness and helpers of a test fail the test by panicking, like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::Value;
use std::{collections::BTreeSet, time::Duration};
use support::otlp::{ExportedMetric, MetricKind};

// ------------------------------------------------------------ the collector's naming

/// OTLP units the translator spells out (opentelemetry-collector-contrib's `prometheus`
/// exporter, default `UnderscoreEscapingWithSuffixes`, through prometheus/otlptranslator).
const UNITS: &[(&str, &str)] = &[
    ("d", "days"),
    ("h", "hours"),
    ("min", "minutes"),
    ("s", "seconds"),
    ("ms", "milliseconds"),
    ("us", "microseconds"),
    ("ns", "nanoseconds"),
    ("By", "bytes"),
    ("KiBy", "kibibytes"),
    ("MiBy", "mebibytes"),
    ("GiBy", "gibibytes"),
    ("TiBy", "tibibytes"),
    ("KBy", "kilobytes"),
    ("MBy", "megabytes"),
    ("GBy", "gigabytes"),
    ("TBy", "terabytes"),
    ("m", "meters"),
    ("V", "volts"),
    ("A", "amperes"),
    ("J", "joules"),
    ("W", "watts"),
    ("g", "grams"),
    ("Cel", "celsius"),
    ("Hz", "hertz"),
    ("1", ""),
    ("%", "percent"),
];

/// The "per" part of a unit (`By/s`: bytes per second).
const PER_UNITS: &[(&str, &str)] =
    &[("s", "second"), ("m", "minute"), ("h", "hour"), ("d", "day"), ("w", "week"), ("mo", "month"), ("y", "year")];

fn lookup(table: &[(&str, &'static str)], unit: &str) -> String {
    table.iter().find(|(otel, _)| *otel == unit).map_or_else(|| unit.to_string(), |(_, prom)| prom.to_string())
}

/// A character a classic Prometheus metric name keeps as it is (`_` separates tokens).
fn kept(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == ':'
}

/// The unit's main and "per" suffixes, before clean-up: `{...}` annotations give none.
fn unit_suffixes(unit: &str) -> (String, String) {
    let mut parts = unit.splitn(2, '/');
    let main = parts.next().unwrap_or_default().trim();
    let main = if main.is_empty() || main.contains(['{', '}']) { String::new() } else { lookup(UNITS, main) };
    let per = match parts.next().map(str::trim) {
        Some(per) if !per.is_empty() && !per.contains(['{', '}']) => format!("per_{}", lookup(PER_UNITS, per)),
        _ => String::new(),
    };
    (main, per)
}

/// Other characters become `_`, runs of `_` one, and a leading `_` goes.
fn clean_unit(unit: &str) -> String {
    let mut cleaned = String::new();
    for c in unit.chars().map(|c| if kept(c) { c } else { '_' }) {
        if !(c == '_' && cleaned.ends_with('_')) {
            cleaned.push(c);
        }
    }
    cleaned.strip_prefix('_').map(str::to_string).unwrap_or(cleaned)
}

/// The name the collector's `prometheus` exporter gives an OTLP metric with its default
/// translation: the name split into tokens at every character other than letters, digits
/// and `:`, the unit's suffix added unless a token already says it (`s` → `seconds`, `ms`
/// → `milliseconds`, `By/s` → `bytes_per_second`, `{edit}` → nothing), `total` last for
/// monotonic sums, `ratio` last for gauges of unit `1`, joined by `_`, and `_` in front of
/// a leading digit.
fn prometheus_name(name: &str, unit: &str, kind: MetricKind) -> String {
    let mut tokens: Vec<String> = name.split(|c| !kept(c)).filter(|t| !t.is_empty()).map(str::to_string).collect();
    let (main, per) = unit_suffixes(unit);
    let (mut main, per) = (clean_unit(&main), clean_unit(&per));
    if tokens.contains(&main) {
        main.clear();
    }
    let per = match per.as_str() {
        "per_" => String::new(),
        per => {
            Some(per.strip_suffix('_').unwrap_or(per).to_string()).filter(|p| !tokens.contains(p)).unwrap_or_default()
        }
    };
    if !per.is_empty() && main.ends_with('_') {
        main.pop();
    }
    tokens.extend([main, per].into_iter().filter(|t| !t.is_empty()));
    if kind == MetricKind::Counter {
        tokens.retain(|t| t != "total");
        tokens.push("total".into());
    }
    if unit == "1" && kind == MetricKind::Gauge {
        tokens.retain(|t| t != "ratio");
        tokens.push("ratio".into());
    }
    let name = tokens.join("_");
    if name.starts_with(|c: char| c.is_ascii_digit()) { format!("_{name}") } else { name }
}

/// The series names Prometheus scrapes for one metric (histograms: buckets, sum, count).
fn prometheus_series(metric: &ExportedMetric) -> Vec<String> {
    let base = prometheus_name(&metric.name, &metric.unit, metric.kind);
    match metric.kind {
        MetricKind::Histogram => vec![format!("{base}_bucket"), format!("{base}_sum"), format!("{base}_count")],
        MetricKind::Summary => vec![format!("{base}_sum"), format!("{base}_count"), base],
        _ => vec![base],
    }
}

/// The label an attribute key becomes (`rpc.grpc.status_code` → `rpc_grpc_status_code`).
fn prometheus_label(key: &str) -> String {
    let label: String = key.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    if label.starts_with(|c: char| c.is_ascii_digit()) { format!("key_{label}") } else { label }
}

/// The labels a scraped series of `metric` can carry.
fn labels_of(metric: &ExportedMetric, series: &str) -> BTreeSet<String> {
    let mut labels: BTreeSet<String> = metric.attributes.iter().map(|k| prometheus_label(k)).collect();
    // From the resource (service.name, service.instance.id) and the instrumentation scope.
    labels.extend(
        ["job", "instance", "otel_scope_name", "otel_scope_version", "otel_scope_schema_url"].map(String::from),
    );
    if series.ends_with("_bucket") {
        labels.insert("le".into());
    }
    labels
}

// ------------------------------------------------------------ PromQL selectors

/// One metric selector of a PromQL expression.
#[derive(Debug, PartialEq)]
struct Selector {
    metric: String,
    /// (label, operator, value) of each matcher in braces.
    matchers: Vec<(String, String, String)>,
}

const AGGREGATIONS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
];
const GROUPING: &[&str] = &["by", "without", "on", "ignoring", "group_left", "group_right"];
const KEYWORDS: &[&str] = &["and", "or", "unless", "bool", "offset", "atan2", "inf", "nan"];

/// Index after the string literal starting at `i`.
fn skip_string(chars: &[char], mut i: usize) -> usize {
    let quote = chars[i];
    i += 1;
    while i < chars.len() {
        match chars[i] {
            '\\' if quote != '`' => i += 2,
            c if c == quote => return i + 1,
            _ => i += 1,
        }
    }
    i
}

/// Index after the first `close` from `i` on.
fn skip_past(chars: &[char], i: usize, close: char) -> usize {
    chars[i..].iter().position(|&c| c == close).map_or(chars.len(), |p| i + p + 1)
}

/// The matchers in the braces starting at `i`, and the index after them.
fn matchers(chars: &[char], mut i: usize) -> (Vec<(String, String, String)>, usize) {
    let mut found = Vec::new();
    i += 1;
    loop {
        while i < chars.len() && (chars[i].is_whitespace() || chars[i] == ',') {
            i += 1;
        }
        if i >= chars.len() || chars[i] == '}' {
            return (found, i + 1);
        }
        let start = i;
        while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
            i += 1;
        }
        let label: String = chars[start..i].iter().collect();
        while i < chars.len() && chars[i].is_whitespace() {
            i += 1;
        }
        let op_start = i;
        while i < chars.len() && matches!(chars[i], '=' | '!' | '~') {
            i += 1;
        }
        let op: String = chars[op_start..i].iter().collect();
        while i < chars.len() && chars[i].is_whitespace() {
            i += 1;
        }
        if label.is_empty() || op.is_empty() || i >= chars.len() || !matches!(chars[i], '"' | '\'' | '`') {
            panic!("cannot read the label matchers in {:?}", chars.iter().collect::<String>());
        }
        let end = skip_string(chars, i);
        let value: String = chars[i + 1..end - 1].iter().collect();
        found.push((label, op, value));
        i = end;
    }
}

/// Every metric selector in `expr`: names of functions, aggregations, keywords, grouping
/// labels, numbers, durations, strings and Grafana variables (`$__rate_interval`) are not.
fn selectors(expr: &str) -> Vec<Selector> {
    let chars: Vec<char> = expr.chars().collect();
    let mut found = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if matches!(c, '"' | '\'' | '`') {
            i = skip_string(&chars, i);
        } else if c == '#' {
            i = skip_past(&chars, i, '\n');
        } else if c == '[' {
            i = skip_past(&chars, i, ']');
        } else if c == '{' {
            let (matchers, next) = matchers(&chars, i);
            if let Some(name) = matchers.iter().find(|(l, op, _)| l == "__name__" && op == "=").map(|m| m.2.clone()) {
                let matchers = matchers.into_iter().filter(|(l, _, _)| l != "__name__").collect();
                found.push(Selector { metric: name, matchers });
            }
            i = next;
        } else if c == '$' {
            i += 1;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || matches!(chars[i], '_' | '{' | '}')) {
                i += 1;
            }
        } else if c.is_ascii_digit() || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) {
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':') {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let lower = word.to_ascii_lowercase();
            let mut next = i;
            while next < chars.len() && chars[next].is_whitespace() {
                next += 1;
            }
            let followed_by = chars.get(next).copied();
            if GROUPING.contains(&lower.as_str()) {
                if followed_by == Some('(') {
                    i = skip_past(&chars, next, ')');
                }
            } else if !(AGGREGATIONS.contains(&lower.as_str())
                || KEYWORDS.contains(&lower.as_str())
                || followed_by == Some('('))
            {
                let matchers = if followed_by == Some('{') {
                    let (matchers, after) = matchers(&chars, next);
                    i = after;
                    matchers
                } else {
                    Vec::new()
                };
                found.push(Selector { metric: word, matchers });
            }
        } else {
            i += 1;
        }
    }
    found
}

// ------------------------------------------------------------ the files

fn dashboard() -> Value {
    let path = support::workspace_root().join("deploy/grafana/dashboards/edit-flow.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("read edit-flow.json")).expect("edit-flow.json is JSON")
}

/// Every panel of the dashboard, those inside rows included (rows themselves are not).
fn panels(dashboard: &Value) -> Vec<Value> {
    let mut found = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        if panel["type"] == "row" {
            found.extend(panel["panels"].as_array().cloned().unwrap_or_default());
        } else {
            found.push(panel.clone());
        }
    }
    found
}

/// (where, PromQL) of every query on the dashboard and in the alert rules.
fn queries() -> Vec<(String, String)> {
    let mut found = Vec::new();
    for panel in panels(&dashboard()) {
        for target in panel["targets"].as_array().map(Vec::as_slice).unwrap_or_default() {
            if let Some(expr) = target["expr"].as_str() {
                found.push((format!("dashboard panel {}", panel["title"]), expr.to_string()));
            }
        }
    }
    let alerts = support::yaml::load("deploy/prometheus/alerts.yml");
    for group in alerts["groups"].as_array().expect("groups") {
        for rule in group["rules"].as_array().expect("rules") {
            let name = rule["alert"].as_str().or(rule["record"].as_str()).unwrap_or_default();
            found.push((format!("alert {name}"), rule["expr"].as_str().expect("expr").to_string()));
        }
    }
    found
}

// ------------------------------------------------------------ the edit flow, exported

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_dashboard_and_the_alerts_query_is_exported_by_the_edit_flow() {
    use platform::proto::booking::v1::{BookingStatus, CancelBookingRequest, Outcome};
    use support::stack::{Options, Stack, create_request, edit_request, get_booking, slot};

    let receiver = support::otlp::Collector::start().await;
    let mut common = platform::settings::CommonSettings::with_database_url(support::db::admin_url());
    common.otel_endpoint = Some(receiver.endpoint.clone());
    common.otel_service_name = Some("edit-flow".into());
    common.rust_log = "warn".into();
    let telemetry = platform::telemetry::init(&common, "edit-flow").expect("telemetry");

    // One table of four seats.
    let stack = Stack::start(Options::default()).await;
    let mut client = stack.booking();
    let ada = client.create_booking(create_request(slot(1, 19), 2)).await.expect("create").into_inner();
    assert_eq!(ada.outcome(), Outcome::Confirmed);
    let ada = ada.booking.expect("booking").id;
    stack.wait_for_mail(&ada, "BOOKING_CONFIRMED", 1).await;

    // An edit confirmed inline.
    let mut bigger = edit_request(&ada);
    bigger.party_size = Some(3);
    let edited = client.edit_booking(bigger).await.expect("edit").into_inner();
    assert_eq!(edited.outcome(), Outcome::Confirmed, "the table still fits");
    stack.wait_for_mail(&ada, "MODIFICATION_CONFIRMED", 2).await;

    // An edit into a full slot goes PENDING, then confirms in the background once it frees.
    let holder = client.create_booking(create_request(slot(1, 21), 2)).await.expect("create").into_inner();
    let holder = holder.booking.expect("booking").id;
    stack.wait_for_mail(&holder, "BOOKING_CONFIRMED", 1).await;
    let mut later = edit_request(&ada);
    later.start_time = Some(platform::proto::timestamp(slot(1, 21)));
    let edited = client.edit_booking(later).await.expect("edit").into_inner();
    assert_eq!(edited.outcome(), Outcome::Pending, "the slot is full");
    client
        .cancel_booking(CancelBookingRequest { booking_id: holder.clone(), ..Default::default() })
        .await
        .expect("cancel");
    support::eventually(Duration::from_secs(20), "the background confirmation", || {
        let mut client = client.clone();
        let ada = ada.clone();
        async move {
            let booking = get_booking(&mut client, &ada).await;
            (booking.status() == BookingStatus::Confirmed && booking.version == 3).then_some(())
        }
    })
    .await;

    // A no-op edit, then every mail out.
    let mut same = edit_request(&ada);
    same.party_size = Some(3);
    let unchanged = client.edit_booking(same).await.expect("no-op edit").into_inner();
    assert_eq!(unchanged.outcome(), Outcome::Unchanged);
    stack.settle(&[&ada, &holder]).await;
    stack.wait_for_mail(&ada, "MODIFICATION_CONFIRMED", 3).await;

    // Shutting the providers down exports what was measured, one last time.
    tokio::task::spawn_blocking(move || telemetry.shutdown()).await.expect("telemetry shutdown");
    let exported = receiver.exported_metrics();
    let mut series: Vec<(String, &ExportedMetric)> = Vec::new();
    for metric in &exported {
        series.extend(prometheus_series(metric).into_iter().map(|name| (name, metric)));
    }
    let available = || series.iter().map(|(name, _)| name.as_str()).collect::<Vec<_>>().join("\n  ");

    let mut problems = Vec::new();
    for (place, expr) in queries() {
        let found = selectors(&expr);
        assert!(!found.is_empty(), "{place} queries no metric: {expr}");
        for selector in found {
            let Some((name, metric)) = series.iter().find(|(name, _)| *name == selector.metric) else {
                problems.push(format!("{place}: {} is not exported", selector.metric));
                continue;
            };
            let labels = labels_of(metric, name);
            for (label, _, _) in &selector.matchers {
                if !labels.contains(label) {
                    problems.push(format!("{place}: {name} has no label {label} (it has {labels:?})"));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}\n\nexported, as Prometheus names them:\n  {}", problems.join("\n"), available());
}

// ------------------------------------------------------------ the files on their own

#[test]
fn every_dashboard_panel_has_a_query_and_a_one_line_description() {
    let dashboard = dashboard();
    let panels = panels(&dashboard);
    assert!(panels.len() >= 10, "the dashboard has {} panels", panels.len());
    for panel in panels {
        let title = panel["title"].as_str().unwrap_or_default();
        let description = panel["description"].as_str().unwrap_or_default();
        assert!(!title.is_empty(), "a panel without a title");
        assert!(!description.trim().is_empty() && !description.contains('\n'), "{title}: one line of description");
        let queries = panel["targets"].as_array().map(Vec::as_slice).unwrap_or_default();
        assert!(queries.iter().any(|t| t["expr"].as_str().is_some_and(|e| !e.is_empty())), "{title}: no query");
    }
}

#[test]
fn every_alert_has_a_runbook_section_and_names_services_as_compose_does() {
    let operations = std::fs::read_to_string(support::workspace_root().join("docs/operations.md")).expect("runbook");
    // GitHub's anchors: lower case, spaces to dashes, other punctuation dropped.
    let anchors: Vec<String> = operations
        .lines()
        .filter_map(|line| line.strip_prefix("## "))
        .map(|heading| {
            heading
                .trim()
                .to_lowercase()
                .chars()
                .filter_map(|c| match c {
                    ' ' => Some('-'),
                    c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
                    _ => None,
                })
                .collect()
        })
        .collect();
    let alerts = support::yaml::load("deploy/prometheus/alerts.yml");
    let rules: Vec<&Value> = alerts["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_array().expect("rules"))
        .collect();
    assert!(rules.len() >= 5);
    for rule in &rules {
        let name = rule["alert"].as_str().expect("an alert");
        let runbook = rule["annotations"]["runbook_url"].as_str().unwrap_or_default();
        let anchor = runbook.strip_prefix("docs/operations.md#").unwrap_or_else(|| panic!("{name}: runbook_url"));
        assert!(anchors.iter().any(|a| a == anchor), "{name}: docs/operations.md has no section #{anchor}");
        for key in ["summary", "description"] {
            assert!(rule["annotations"][key].as_str().is_some_and(|s| !s.is_empty()), "{name}: no {key}");
        }
    }

    // A `job` is a service.name: the ones compose gives the services.
    let compose = support::yaml::load("docker-compose.yml");
    let names: Vec<&str> = compose["services"]
        .as_object()
        .expect("services")
        .values()
        .filter_map(|s| s["environment"]["OTEL_SERVICE_NAME"].as_str())
        .collect();
    for (place, expr) in queries() {
        for selector in selectors(&expr) {
            for (label, op, value) in selector.matchers {
                if label == "job" && op == "=" {
                    assert!(
                        names.contains(&value.as_str()),
                        "{place}: job {value:?} is no service of docker-compose.yml"
                    );
                }
            }
        }
    }
}

#[test]
fn otlp_names_become_the_prometheus_exporters_names() {
    use MetricKind::*;
    // Examples of prometheus/otlptranslator's own tests, which the collector uses.
    for (name, unit, kind, expected) in [
        ("requests", "", Counter, "requests_total"),
        ("cpu_usage", "1", Gauge, "cpu_usage_ratio"),
        ("items", "1", Counter, "items_total"),
        ("response_time", "ms", Gauge, "response_time_milliseconds"),
        ("memory_usage", "By", Gauge, "memory_usage_bytes"),
        ("requests", "1/s", Gauge, "requests_per_second"),
        ("throughput", "By/s", Gauge, "throughput_bytes_per_second"),
        ("custom_metric", "custom_unit", Gauge, "custom_metric_custom_unit"),
        ("custom_metric", "{custom}", Gauge, "custom_metric"),
        ("custom_metric", "By/{custom}", Gauge, "custom_metric_bytes"),
        ("requests_total", "", Counter, "requests_total"),
        ("cpu_usage_ratio", "1", Gauge, "cpu_usage_ratio"),
        ("response_time_seconds", "s", Gauge, "response_time_seconds"),
        (
            "metric__with__multiple__underscores",
            "unit__multiple__underscores",
            Gauge,
            "metric_with_multiple_underscores_unit_multiple_underscores",
        ),
        ("custom_metric", "unit@with#special/chars", Gauge, "custom_metric_unit_with_special_per_chars"),
        ("request_duration", "s", Histogram, "request_duration_seconds"),
        ("active_connections", "", UpDownCounter, "active_connections"),
        ("uptime", "d", Gauge, "uptime_days"),
        ("metric@with#special$chars", "", Gauge, "metric_with_special_chars"),
        ("123metric", "", Gauge, "_123metric"),
        // And the OpenTelemetry shapes this project uses.
        ("rpc.server.duration", "ms", Histogram, "rpc_server_duration_milliseconds"),
        ("booking.outbox.oldest_age", "s", Gauge, "booking_outbox_oldest_age_seconds"),
        ("booking.edits", "{edit}", Counter, "booking_edits_total"),
        ("booking.outbox.depth", "", Gauge, "booking_outbox_depth"),
        ("system.network.io", "By", Counter, "system_network_io_bytes_total"),
        ("queue.size", "1", UpDownCounter, "queue_size"),
        ("2xx.responses", "", Counter, "_2xx_responses_total"),
    ] {
        assert_eq!(prometheus_name(name, unit, kind), expected, "{name} [{unit}] {kind:?}");
    }
    let histogram = ExportedMetric {
        service: "s".into(),
        name: "http.server.request.duration".into(),
        unit: "s".into(),
        kind: Histogram,
        attributes: BTreeSet::from(["http.response.status_code".to_string()]),
    };
    assert_eq!(
        prometheus_series(&histogram),
        [
            "http_server_request_duration_seconds_bucket",
            "http_server_request_duration_seconds_sum",
            "http_server_request_duration_seconds_count"
        ]
    );
    assert!(labels_of(&histogram, "http_server_request_duration_seconds_bucket").contains("http_response_status_code"));
    assert!(labels_of(&histogram, "http_server_request_duration_seconds_bucket").contains("le"));
    assert!(!labels_of(&histogram, "http_server_request_duration_seconds_count").contains("le"));
}

#[test]
fn promql_selectors_are_read_without_functions_keywords_or_labels() {
    let names = |expr: &str| selectors(expr).into_iter().map(|s| s.metric).collect::<Vec<_>>();
    assert_eq!(names("sum by (outcome) (rate(booking_edits_total[$__rate_interval]))"), ["booking_edits_total"]);
    assert_eq!(
        names("histogram_quantile(0.99, sum by (le, via) (rate(x_seconds_bucket{a=\"b\"}[5m])))"),
        ["x_seconds_bucket"]
    );
    assert_eq!(
        names("sum(rate(a_total{result!=\"sent\"}[10m]))\n  / sum(rate(a_total[10m]))\n> 0.5"),
        ["a_total", "a_total"]
    );
    assert_eq!(
        names("max by (job) (g) == 0\nor absent(g{job=\"booking-svc\"})\nor absent(h{job=\"x\"})"),
        ["g", "g", "h"]
    );
    assert_eq!(names("x offset 1h and on (job) group_left (instance) y * 1e3 unless z"), ["x", "y", "z"]);
    assert_eq!(names("sum(x) without (instance) / ignoring(le) count(y)"), ["x", "y"]);
    assert_eq!(names("{__name__=\"z\", job=\"j\"}"), ["z"]);
    assert_eq!(names("label_replace(u, \"dst\", \"$1\", \"src\", \"(.*)\")"), ["u"]);
    assert_eq!(names("max_over_time(w[1h:5m]) > bool 3 # w, not this"), ["w"]);
    let selector = &selectors("rate(r_count{rpc_service!~\"grpc[.](health|reflection).*\", code=~\"2|4\"}[5m])")[0];
    assert_eq!(selector.metric, "r_count");
    assert_eq!(
        selector.matchers,
        [
            ("rpc_service".to_string(), "!~".to_string(), "grpc[.](health|reflection).*".to_string()),
            ("code".to_string(), "=~".to_string(), "2|4".to_string())
        ]
    );
}
