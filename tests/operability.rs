//! What staff and on-call engineers touch: the compose file and the telemetry pipeline it
//! wires (collector, Jaeger, Prometheus, Grafana), the one-command stack, and traces
//! across the asynchronous hand-off.

// The harness and helpers of a test fail the test by panicking, like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::Value;
use std::process::Command;

/// docker-compose.yml as JSON.
fn compose() -> Value {
    support::yaml::load("docker-compose.yml")
}

fn env_of(service: &Value) -> serde_json::Map<String, Value> {
    service["environment"].as_object().cloned().unwrap_or_default()
}

#[test]
fn compose_file_wires_every_service_by_the_contract() {
    let compose = compose();
    let services = compose["services"].as_object().expect("services");
    let mut names: Vec<&str> = services.keys().map(String::as_str).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "assign-svc",
            "booking-svc",
            "certs",
            "grafana",
            "jaeger",
            "mailpit",
            "notify-svc",
            "otel-collector",
            "postgres",
            "prometheus"
        ]
    );

    // Ports and listen addresses from API.md.
    for (name, port) in [("booking-svc", 50051), ("assign-svc", 50052), ("notify-svc", 50053)] {
        let service = &services[name];
        let ports: Vec<String> =
            service["ports"].as_array().expect("ports").iter().map(|p| p.as_str().unwrap_or("").to_string()).collect();
        assert_eq!(ports, vec![format!("{port}:{port}")], "{name} ports");
        let env = env_of(service);
        assert_eq!(env["LISTEN_ADDR"], format!("0.0.0.0:{port}"), "{name} LISTEN_ADDR");
        assert_eq!(env["OTEL_SERVICE_NAME"], name);
        for common in ["DATABASE_URL", "RUST_LOG", "LOG_FORMAT", "OTEL_EXPORTER_OTLP_ENDPOINT"] {
            assert!(env.contains_key(common), "{name} lacks {common}");
        }
        assert!(env["DATABASE_URL"].as_str().unwrap_or("").contains("@postgres:5432/"), "{name} DATABASE_URL");
        assert_eq!(
            env["OTEL_EXPORTER_OTLP_ENDPOINT"], "http://otel-collector:4317",
            "{name} sends OTLP to the collector"
        );
        assert!(matches!(env["LOG_FORMAT"].as_str(), Some("json" | "pretty")));
        assert_eq!(service["build"]["target"], name, "{name} builds its own Dockerfile target");
        let probe = service["healthcheck"]["test"].as_array().expect("healthcheck");
        assert_eq!(probe.iter().filter_map(Value::as_str).collect::<Vec<_>>(), ["CMD", name, "--health-probe"]);
        // Only variables the contract (API.md) names, plus the standard OTel ones.
        let allowed = [
            "DATABASE_URL",
            "LISTEN_ADDR",
            "RUST_LOG",
            "LOG_FORMAT",
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "OTEL_SERVICE_NAME",
            "ASSIGN_URL",
            "NOTIFY_URL",
            "INLINE_ASSIGN",
            "INLINE_ASSIGN_TIMEOUT_MS",
            "SMTP_URL",
            "MAIL_DIR",
            "MAIL_FROM",
            "TLS_CERT",
            "TLS_KEY",
            "TLS_CLIENT_CA",
            "TLS_CA",
            "AUTH_JWKS",
            "HEALTH_ADDR",
        ];
        for key in env.keys() {
            assert!(allowed.contains(&key.as_str()), "{name} sets {key}, which API.md does not define");
        }
        // Mutual TLS on the certificates the one-shot `certs` made; probes on plain-text health.
        assert_eq!(env["TLS_CERT"], format!("/certs/{name}.pem"));
        assert_eq!(env["TLS_KEY"], format!("/certs/{name}-key.pem"));
        assert_eq!((&env["TLS_CLIENT_CA"], &env["TLS_CA"]), (&"/certs/ca.pem".into(), &"/certs/ca.pem".into()));
        assert!(env.contains_key("HEALTH_ADDR"), "{name}: probes cannot present a certificate");
        assert_eq!(env["AUTH_JWKS"], "/certs/jwks.json", "{name}: staff tokens checked against the JWKS certs made");
        assert_eq!(mounted_at(service, "certs"), "/certs");
        assert_eq!(service["depends_on"]["certs"]["condition"], "service_completed_successfully");
    }
    assert_eq!(mounted_at(&services["certs"], "certs"), "/certs");
    let booking = env_of(&services["booking-svc"]);
    assert_eq!(booking["ASSIGN_URL"], "https://assign-svc:50052");
    assert_eq!(booking["NOTIFY_URL"], "https://notify-svc:50053");
    assert!(matches!(booking["INLINE_ASSIGN"].as_str(), Some("true" | "false")));
    assert!(booking["INLINE_ASSIGN_TIMEOUT_MS"].as_str().unwrap_or("").parse::<u64>().is_ok());
    let notify = env_of(&services["notify-svc"]);
    assert_eq!(notify["SMTP_URL"], "smtp://mailpit:1025");

    // Mailpit takes SMTP and shows a web UI; the collector takes OTLP/gRPC (also from the
    // host), Jaeger shows traces, Prometheus and Grafana their UIs.
    let ports = |name: &str| -> Vec<String> {
        services[name]["ports"]
            .as_array()
            .expect("ports")
            .iter()
            .map(|p| p.as_str().unwrap_or("").to_string())
            .collect()
    };
    assert!(ports("mailpit").contains(&"1025:1025".to_string()) && ports("mailpit").contains(&"8025:8025".to_string()));
    assert!(ports("otel-collector").contains(&"4317:4317".to_string()));
    assert_eq!(ports("jaeger"), ["16686:16686"], "Jaeger takes OTLP from the collector only");
    assert_eq!(ports("prometheus"), ["9090:9090"]);
    assert_eq!(ports("grafana"), ["3000:3000"]);
    assert_eq!(services["jaeger"]["environment"]["COLLECTOR_OTLP_ENABLED"], "true");
    // booking-svc starts after the services it calls are healthy.
    for dependency in ["postgres", "assign-svc", "notify-svc"] {
        assert_eq!(services["booking-svc"]["depends_on"][dependency]["condition"], "service_healthy");
    }

    // Every build target exists in the one Dockerfile.
    let dockerfile = std::fs::read_to_string(support::workspace_root().join("Dockerfile")).expect("Dockerfile");
    for name in ["booking-svc", "assign-svc", "notify-svc"] {
        assert!(dockerfile.contains(&format!("AS {name}")), "Dockerfile has no {name} target");
    }
}

/// The `host:container` bind mounts of a compose service, host paths relative to the root.
fn mounts(service: &Value) -> Vec<(String, String)> {
    service["volumes"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter_map(Value::as_str)
        .filter(|v| v.starts_with("./"))
        .map(|v| {
            let mut parts = v.split(':');
            let host = parts.next().unwrap_or_default().trim_start_matches("./").to_string();
            (host, parts.next().unwrap_or_default().to_string())
        })
        .collect()
}

/// Where compose mounts the repository's `host` file or folder in `service`.
fn mounted_at(service: &Value, host: &str) -> String {
    mounts(service)
        .into_iter()
        .find(|(h, _)| h == host)
        .map(|(_, container)| container)
        .unwrap_or_else(|| panic!("{host} is not mounted"))
}

/// The strings of a YAML list (empty when missing).
fn strings(value: &Value) -> Vec<String> {
    value.as_array().map(Vec::as_slice).unwrap_or_default().iter().filter_map(Value::as_str).map(String::from).collect()
}

/// The port of a `host:port` endpoint.
fn port(endpoint: &str) -> &str {
    endpoint.rsplit(':').next().unwrap_or_default()
}

#[test]
fn compose_sends_telemetry_through_the_collector_to_jaeger_prometheus_and_grafana() {
    let compose = compose();
    let services = compose["services"].as_object().expect("services");
    let root = support::workspace_root();

    // Every image is pinned, and every file compose mounts from the repository exists.
    for (name, service) in services {
        if let Some(image) = service["image"].as_str() {
            let tag = image.rsplit_once(':').map(|(_, tag)| tag).unwrap_or_default();
            assert!(!tag.is_empty() && tag != "latest", "{name}'s image {image} is not pinned to a version");
        }
        // ./certs is no repository file: the one-shot `certs` makes it.
        for (host, _) in mounts(service).into_iter().filter(|(host, _)| host != "certs") {
            assert!(root.join(&host).exists(), "{name} mounts {host}, which does not exist");
        }
    }

    // The collector runs the configuration compose mounts; its OTLP/gRPC receiver listens on
    // the port the services send to (http://otel-collector:4317).
    let collector = &services["otel-collector"];
    let config_path = mounted_at(collector, "deploy/otel-collector/config.yaml");
    assert!(strings(&collector["command"]).contains(&format!("--config={config_path}")), "collector command");
    let config = support::yaml::load("deploy/otel-collector/config.yaml");
    assert_eq!(config["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"], "0.0.0.0:4317");
    for name in ["booking-svc", "assign-svc", "notify-svc"] {
        let endpoint = env_of(&services[name])["OTEL_EXPORTER_OTLP_ENDPOINT"].as_str().unwrap_or_default().to_string();
        assert_eq!(endpoint.strip_prefix("http://otel-collector:"), Some("4317"), "{name} sends OTLP to the collector");
    }

    // Every component a pipeline names is configured, and every configured one is used.
    let pipelines = config["service"]["pipelines"].as_object().expect("pipelines");
    for section in ["receivers", "processors", "exporters"] {
        let defined: Vec<&String> = config[section].as_object().expect(section).keys().collect();
        let mut used: Vec<String> = pipelines.values().flat_map(|p| strings(&p[section])).collect();
        for name in &used {
            assert!(defined.contains(&name), "a pipeline uses {section} {name}, which is not configured");
        }
        used.sort();
        used.dedup();
        for name in defined {
            assert!(used.contains(name), "{section} {name} is configured but in no pipeline");
        }
    }
    for extension in strings(&config["service"]["extensions"]) {
        assert!(config["extensions"].get(&extension).is_some(), "extension {extension} is not configured");
    }

    // Traces: from the services (OTLP) to Jaeger's OTLP/gRPC port, which Jaeger opens.
    let traces = &pipelines["traces"];
    assert!(strings(&traces["receivers"]).contains(&"otlp".to_string()));
    let trace_exporters = strings(&traces["exporters"]);
    assert_eq!(trace_exporters.len(), 1, "traces go to Jaeger only");
    assert!(trace_exporters[0].split('/').next() == Some("otlp_grpc"), "traces are exported over OTLP/gRPC");
    assert_eq!(config["exporters"][&trace_exporters[0]]["endpoint"], "jaeger:4317");
    assert_eq!(services["jaeger"]["environment"]["COLLECTOR_OTLP_ENABLED"], "true");

    // Metrics: from the services to the `prometheus` exporter, with the default translation
    // that tests/observability.rs implements, on the port Prometheus scrapes.
    let metrics = &pipelines["metrics"];
    assert!(strings(&metrics["receivers"]).contains(&"otlp".to_string()));
    assert_eq!(strings(&metrics["exporters"]), ["prometheus"]);
    let exporter = &config["exporters"]["prometheus"];
    assert_eq!(exporter["translation_strategy"], "UnderscoreEscapingWithSuffixes");
    let metrics_port = port(exporter["endpoint"].as_str().expect("prometheus exporter endpoint"));

    // Prometheus: its configuration and the alert rules are the ones mounted; it scrapes the
    // collector's exporter and keeps each service's own job and instance labels.
    let prometheus = &services["prometheus"];
    let prometheus_config = mounted_at(prometheus, "deploy/prometheus/prometheus.yml");
    assert!(strings(&prometheus["command"]).contains(&format!("--config.file={prometheus_config}")));
    let scrape = support::yaml::load("deploy/prometheus/prometheus.yml");
    assert_eq!(strings(&scrape["rule_files"]), [mounted_at(prometheus, "deploy/prometheus/alerts.yml")]);
    let jobs = scrape["scrape_configs"].as_array().expect("scrape_configs");
    let collector_target = format!("otel-collector:{metrics_port}");
    let collector_job = jobs
        .iter()
        .find(|job| {
            job["static_configs"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| strings(&c["targets"]).contains(&collector_target))
        })
        .unwrap_or_else(|| panic!("Prometheus does not scrape {collector_target}"));
    assert_eq!(collector_job["honor_labels"], true, "the services' job labels must survive the scrape");

    // Grafana: Prometheus and Jaeger provisioned at their compose addresses, the dashboard
    // folder provisioned from where compose mounts it, and every panel on a provisioned source.
    let grafana = &services["grafana"];
    let provisioning = mounted_at(grafana, "deploy/grafana/provisioning");
    assert_eq!(provisioning, "/etc/grafana/provisioning");
    let sources = support::yaml::load("deploy/grafana/provisioning/datasources/datasources.yaml");
    let sources = sources["datasources"].as_array().expect("datasources");
    let source = |kind: &str| {
        sources.iter().find(|s| s["type"] == kind).unwrap_or_else(|| panic!("no {kind} data source provisioned"))
    };
    assert_eq!(source("prometheus")["url"], "http://prometheus:9090");
    assert_eq!(source("jaeger")["url"], "http://jaeger:16686");
    let providers = support::yaml::load("deploy/grafana/provisioning/dashboards/dashboards.yaml");
    let dashboards = mounted_at(grafana, "deploy/grafana/dashboards");
    assert!(
        providers["providers"]
            .as_array()
            .expect("providers")
            .iter()
            .any(|p| p["options"]["path"] == dashboards.as_str()),
        "no dashboard provider reads {dashboards}"
    );
    let uids: Vec<&str> = sources.iter().filter_map(|s| s["uid"].as_str()).collect();
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("deploy/grafana/dashboards/edit-flow.json")).expect("edit-flow.json"),
    )
    .expect("edit-flow.json is JSON");
    for panel in dashboard["panels"].as_array().expect("panels").iter().filter(|p| p["type"] != "row") {
        let uid = panel["datasource"]["uid"].as_str().unwrap_or_default();
        assert!(uids.contains(&uid), "panel {} uses data source {uid:?}, which is not provisioned", panel["title"]);
    }
}

#[test]
fn compose_file_passes_docker_compose_validation() {
    let Ok(output) = Command::new("docker-compose")
        .args(["-f", "docker-compose.yml", "config", "-q"])
        .current_dir(support::workspace_root())
        .output()
    else {
        panic!("docker-compose is not installed: run .ci/setup");
    };
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
}

#[tokio::test]
async fn a_service_exports_its_spans_and_metrics_over_otlp_and_flushes_on_shutdown() {
    let collector = support::otlp::Collector::start().await;
    let db = support::db::TestDb::new().await;
    let mut assign = support::process::ServiceProcess::start_serving(
        "assign-svc",
        &[("DATABASE_URL", &db.url), ("OTEL_EXPORTER_OTLP_ENDPOINT", &collector.endpoint)],
    )
    .await;
    let mut client = support::services::assign_client(&assign.url);
    let _ = client
        .get_floor_plan(platform::proto::assign::v1::GetFloorPlanRequest { restaurant_id: "nowhere".into() })
        .await;
    let status = assign.terminate().await;
    assert!(status.success());

    let spans = collector.spans();
    let server =
        spans.iter().find(|s| s.name == "assign.v1.AssignService/GetFloorPlan" && s.kind == 2).unwrap_or_else(|| {
            panic!("no server span exported; got {:?}", spans.iter().map(|s| &s.name).collect::<Vec<_>>())
        });
    assert_eq!(server.service, "assign-svc");
    assert_eq!(server.attr("rpc.system"), Some("grpc"));
    assert_eq!(server.attr("rpc.service"), Some("assign.v1.AssignService"));
    assert_eq!(server.attr("rpc.method"), Some("GetFloorPlan"));
    assert!(server.attr("rpc.grpc.status_code").is_some());
    assert!(
        collector.metrics().contains(&("assign-svc".to_string(), "rpc.server.duration".to_string())),
        "metrics: {:?}",
        collector.metrics()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_command_stack_starts_secure_and_its_printed_grpcurl_lines_create_and_edit() {
    use std::time::Duration;
    use tokio::io::{AsyncBufReadExt, BufReader};

    let mail = tempfile::tempdir().expect("mail dir");
    let certs = tempfile::tempdir().expect("certificate dir");
    let (booking, assign, notify) = (support::free_port(), support::free_port(), support::free_port());
    let dead_database = format!("postgres://postgres@127.0.0.1:{}/postgres", support::free_port());
    let mut stack = tokio::process::Command::new(support::process::binary("booking-stack"))
        .env("DATABASE_URL", &dead_database)
        .env("MAIL_DIR", mail.path())
        .env("CERT_DIR", certs.path())
        .env("RUST_LOG", "warn")
        .args([
            "--booking-port",
            &booking.to_string(),
            "--assign-port",
            &assign.to_string(),
            "--notify-port",
            &notify.to_string(),
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start booking-stack");
    let _stop = StopOnDrop(stack.id());
    let stderr = stack.stderr.take().expect("stderr");
    let said = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let said_writer = said.clone();
    tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            said_writer.lock().expect("log").push_str(&(line + "\n"));
        }
    });
    let mut stdout = BufReader::new(stack.stdout.take().expect("stdout")).lines();
    let guide = tokio::time::timeout(Duration::from_secs(120), async {
        let mut up = false;
        let mut guide = Vec::new();
        while let Ok(Some(line)) = stdout.next_line().await {
            up |= line.contains("The stack is up");
            if up {
                guide.push(line.trim().to_string());
            }
            if line.contains("WatchBookingChanges") {
                break;
            }
        }
        guide
    })
    .await;
    let guide = guide.unwrap_or_else(|_| panic!("the stack did not come up:\n{}", said.lock().expect("log")));
    assert!(!guide.is_empty(), "the stack did not come up:\n{}", said.lock().expect("log"));
    assert!(
        said.lock().expect("log").contains("private throwaway cluster"),
        "it should say it started its own PostgreSQL"
    );
    assert!(said.lock().expect("log").contains(&certs.path().canonicalize().expect("certs").display().to_string()));

    // The printed lines work as printed: secure by default, with the staff certificate.
    let printed = guide.iter().find(|l| l.contains("/GetRestaurant")).expect("a GetRestaurant line").clone();
    assert!(printed.contains("-cacert") && printed.contains("-cert") && printed.contains("-key"), "{printed}");
    let output = Command::new("sh").args(["-c", &printed]).output().expect("run the printed line");
    assert!(output.status.success(), "{printed}: {}", String::from_utf8_lossy(&output.stderr));
    let profile: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(
        (&profile["restaurant"]["name"], &profile["restaurant"]["timeZone"]),
        (&"Demo Bistro".into(), &"Europe/Paris".into())
    );
    let (ok, _, _) = support::grpcurl::run(&[&format!("127.0.0.1:{booking}"), "list"]).await;
    assert!(!ok, "plain text must be refused by the secure stack");
    // The same transport flags and staff token for the rest of the walk, run as printed
    // (through a shell: the token header is quoted).
    assert!(printed.contains("-H \"authorization: Bearer "), "a staff token in the printed line: {printed}");
    let prefix = printed[printed.find("grpcurl").expect("grpcurl")..printed.find(" -d ").expect("-d")].to_string();
    let addr = format!("127.0.0.1:{booking}");
    let call = |method: &'static str, body: serde_json::Value| {
        let (prefix, addr) = (prefix.clone(), addr.clone());
        async move {
            let line = format!("{prefix} -d '{}' {addr} {method}", body);
            let output = tokio::process::Command::new("sh").args(["-c", &line]).output().await.expect("run grpcurl");
            assert!(output.status.success(), "grpcurl {method}: {}", String::from_utf8_lossy(&output.stderr));
            serde_json::from_slice::<serde_json::Value>(&output.stdout).expect("JSON")
        }
    };
    let start = prost_types::Timestamp {
        seconds: (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("now").as_secs() / 86_400
            + 2) as i64
            * 86_400
            + 19 * 3600,
        nanos: 0,
    };
    let later = prost_types::Timestamp { seconds: start.seconds + 3600, nanos: 0 };
    let created = call(
        "booking.v1.BookingService/CreateBooking",
        serde_json::json!({
            "restaurantId": "demo-bistro",
            "guest": { "name": "Ada Lovelace", "email": "ada@example.com" },
            "partySize": 4,
            "startTime": start.to_string(),
        }),
    )
    .await;
    assert_eq!(created["outcome"], "OUTCOME_CONFIRMED", "{created}");
    let id = created["booking"]["id"].as_str().expect("booking id").to_string();
    let edited = call(
        "booking.v1.BookingService/EditBooking",
        serde_json::json!({ "bookingId": id, "startTime": later.to_string(), "partySize": 6 }),
    )
    .await;
    assert_eq!(edited["outcome"], "OUTCOME_CONFIRMED", "{edited}");
    assert_eq!(edited["booking"]["version"], "2");

    // A file counts once its headers are written (the file transport creates it, then writes).
    let mut kinds = support::eventually(Duration::from_secs(20), "two written .eml files", || async {
        let files: Vec<std::fs::DirEntry> = std::fs::read_dir(mail.path())
            .map(|d| d.filter_map(|e| e.ok()).filter(|e| e.path().extension().is_some_and(|x| x == "eml")).collect())
            .unwrap_or_default();
        let kinds: Vec<String> = files
            .iter()
            .filter_map(|e| std::fs::read_to_string(e.path()).ok())
            .filter_map(|text| {
                text.lines()
                    .find(|l| l.starts_with("X-Notification-Key:"))
                    .map(|l| l.rsplit(':').nth(1).unwrap_or("").to_string())
            })
            .collect();
        (kinds.len() >= 2).then_some(kinds)
    })
    .await;
    kinds.sort();
    assert_eq!(kinds, ["BOOKING_CONFIRMED", "MODIFICATION_CONFIRMED"]);

    let pid = stack.id().expect("pid").to_string();
    let _ = std::process::Command::new("kill").args(["-TERM", &pid]).status();
    let status = tokio::time::timeout(Duration::from_secs(30), stack.wait()).await.expect("stack stops").expect("wait");
    assert!(status.success(), "{}", said.lock().expect("log"));
    assert!(said.lock().expect("log").contains("removing the private PostgreSQL cluster"));
}

/// Stops a booking-stack with SIGTERM when a test ends early (it then stops its services and
/// removes its private cluster; the SIGKILL of `kill_on_drop` would leave them running).
struct StopOnDrop(Option<u32>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        let Some(pid) = self.0 else { return };
        let running = || {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|stat| stat.rsplit(')').next().and_then(|rest| rest.split_whitespace().next()) != Some("Z"))
        };
        if !running() {
            return;
        }
        let _ = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status();
        for _ in 0..200 {
            if !running() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

/// Spans of `trace` and their names per service, for failure messages.
fn describe(spans: &[support::otlp::Span]) -> String {
    spans.iter().map(|s| format!("{}:{}:{}", s.service, s.name, &s.trace_id[..8])).collect::<Vec<_>>().join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_confirmed_in_the_background_is_traced_across_all_three_services() {
    use platform::proto::{
        assign::v1::{PutFloorPlanRequest, Table},
        booking::v1::{BookingStatus, CancelBookingRequest, GetBookingRequest, Outcome},
    };
    use std::time::Duration;
    use support::stack::{create_request, edit_request, slot};

    let collector = support::otlp::Collector::start().await;
    let db = support::db::TestDb::new().await;
    let smtp = support::smtp::SmtpSink::start().await;
    let otel = collector.endpoint.clone();
    let mut assign_env = support::stack::assign_env(&db.url);
    assign_env.push(("OTEL_EXPORTER_OTLP_ENDPOINT", &otel));
    let mut assign = support::process::ServiceProcess::start_serving("assign-svc", &assign_env).await;
    let smtp_url = smtp.url();
    let mut notify = support::process::ServiceProcess::start_serving(
        "notify-svc",
        &[("DATABASE_URL", &db.url), ("SMTP_URL", &smtp_url), ("OTEL_EXPORTER_OTLP_ENDPOINT", &otel)],
    )
    .await;
    let mut booking = support::process::ServiceProcess::start_serving(
        "booking-svc",
        &[
            ("DATABASE_URL", &db.url),
            ("ASSIGN_URL", &assign.url),
            ("NOTIFY_URL", &notify.url),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &otel),
            ("WORKER_POLL_MS", "200"),
        ],
    )
    .await;
    let mut plans = support::services::assign_client(&assign.url);
    plans
        .put_floor_plan(PutFloorPlanRequest {
            restaurant_id: support::stack::RESTAURANT.into(),
            tables: vec![Table { id: "t1".into(), seats: 4, combine_group: String::new() }],
        })
        .await
        .expect("floor plan");

    // One table: B holds 19:00, A is confirmed at 21:00 and then moved onto B's slot.
    let mut client = support::services::booking_client(&booking.url);
    let holder = client.create_booking(create_request(slot(1, 19), 2)).await.expect("create B").into_inner();
    let holder_id = holder.booking.expect("booking").id;
    let mover = client.create_booking(create_request(slot(1, 21), 2)).await.expect("create A").into_inner();
    let id = mover.booking.expect("booking").id;
    // Each guest reads their confirmation before anything else happens (an email still
    // queued when a newer version lands is dropped as stale, by design).
    for booking in [&holder_id, &id] {
        support::eventually(Duration::from_secs(20), "the first confirmation mail", || async {
            (smtp.count_key(booking, "BOOKING_CONFIRMED", 1) == 1).then_some(())
        })
        .await;
    }
    let mut edit = edit_request(&id);
    edit.start_time = Some(platform::proto::timestamp(slot(1, 19)));
    let edited = client.edit_booking(edit).await.expect("edit A").into_inner();
    assert_eq!(edited.outcome(), Outcome::Pending, "the slot is full, so the edit waits");
    // Capacity frees: the background assigns A and booking-svc confirms it.
    client
        .cancel_booking(CancelBookingRequest { booking_id: holder_id.clone(), ..Default::default() })
        .await
        .expect("cancel B");
    support::eventually(Duration::from_secs(20), "A confirmed in the background", || {
        let mut client = client.clone();
        let id = id.clone();
        async move {
            let booking = client.get_booking(GetBookingRequest { booking_id: id }).await.ok()?.into_inner().booking?;
            (booking.status() == BookingStatus::Confirmed && booking.version == 2).then_some(())
        }
    })
    .await;
    support::eventually(Duration::from_secs(20), "all five mails", || async {
        (smtp.count_key(&id, "MODIFICATION_CONFIRMED", 2) == 1
            && smtp.count_key(&id, "MODIFICATION_REQUESTED", 2) == 1
            && smtp.count_key(&holder_id, "BOOKING_CANCELLED", 1) == 1)
            .then_some(())
    })
    .await;
    for process in [&mut booking, &mut notify, &mut assign] {
        assert!(process.terminate().await.success(), "{} did not stop cleanly", process.bin);
    }

    let spans = collector.spans();
    let of = |service: &str, name: &str| -> Vec<&support::otlp::Span> {
        spans.iter().filter(|s| s.service == service && s.name == name).collect()
    };
    // 1. The edit's trace spans booking-svc -> assign-svc.
    let edit_span = of("booking-svc", "booking.v1.BookingService/EditBooking")
        .into_iter()
        .find(|s| s.kind == 2)
        .unwrap_or_else(|| panic!("no EditBooking server span:\n{}", describe(&spans)));
    let edit_trace = edit_span.trace_id.clone();
    let in_edit_trace: Vec<_> = spans.iter().filter(|s| s.trace_id == edit_trace).collect();
    let assign_server = in_edit_trace
        .iter()
        .find(|s| s.service == "assign-svc" && s.name == "assign.v1.AssignService/Assign" && s.kind == 2)
        .unwrap_or_else(|| panic!("the edit's trace does not reach assign-svc:\n{}", describe(&spans)));
    let parent = in_edit_trace.iter().find(|s| s.span_id == assign_server.parent_span_id).expect("Assign's parent");
    assert_eq!(
        (parent.service.as_str(), parent.kind),
        ("booking-svc", 3),
        "Assign is called by booking-svc's client span"
    );
    for span in [edit_span, *assign_server] {
        assert_eq!(span.attr("rpc.system"), Some("grpc"));
        assert!(span.attr("rpc.service").is_some() && span.attr("rpc.method").is_some());
        assert_eq!(span.attr("rpc.grpc.status_code"), Some("0"));
    }
    assert!(
        in_edit_trace
            .iter()
            .any(|s| s.attr("booking.id") == Some(id.as_str()) && s.attr("booking.version") == Some("2")),
        "the edit's trace names the booking and its version"
    );

    // 2. The background confirmation is a later trace of its own, linked to the edit's.
    let linked_to_edit =
        |s: &&support::otlp::Span| s.trace_id != edit_trace && s.links.iter().any(|(t, _)| *t == edit_trace);
    let confirmation = spans
        .iter()
        .filter(|s| s.service == "booking-svc" && s.attr("booking.id") == Some(id.as_str()))
        .find(|s| linked_to_edit(s) && s.attr("reassign.state") == Some("ASSIGNED"))
        .unwrap_or_else(|| panic!("no background confirmation span linked to the edit:\n{}", describe(&spans)));
    // ...and it links to assign-svc's background attempt, itself linked to the edit.
    let attempt = spans
        .iter()
        .find(|s| {
            s.service == "assign-svc" && confirmation.links.iter().any(|(t, sid)| *t == s.trace_id && *sid == s.span_id)
        })
        .unwrap_or_else(|| panic!("the confirmation does not link to assign-svc's attempt:\n{}", describe(&spans)));
    assert!(linked_to_edit(&attempt), "assign-svc's background attempt links to the edit");

    // 3. notify-svc spans for each email, naming its kind, under booking-svc's dispatch.
    for kind in ["BOOKING_CONFIRMED", "MODIFICATION_REQUESTED", "MODIFICATION_CONFIRMED", "BOOKING_CANCELLED"] {
        let sent =
            spans.iter().filter(|s| s.service == "notify-svc" && s.attr("notification.kind") == Some(kind)).count();
        assert!(sent >= 1, "no notify-svc span for {kind}:\n{}", describe(&spans));
    }
    let dispatch = spans
        .iter()
        .filter(|s| s.service == "notify-svc" && s.name == "notify.v1.NotifyService/SendOnce" && s.kind == 2)
        .count();
    assert!(dispatch >= 5, "one SendOnce server span per email (5 emails), saw {dispatch}");
    let confirmation_mail = spans
        .iter()
        .find(|s| s.service == "booking-svc" && s.attr("notification.kind") == Some("MODIFICATION_CONFIRMED"))
        .expect("booking-svc's dispatch span of the confirmation");
    assert!(
        linked_to_edit(&confirmation_mail) || confirmation_mail.links.iter().any(|(t, _)| *t == confirmation.trace_id),
        "the confirmation email's dispatch links to the work that caused it"
    );
    assert!(
        collector.metrics().iter().any(|(service, name)| service == "booking-svc" && name == "rpc.server.duration")
    );
}
