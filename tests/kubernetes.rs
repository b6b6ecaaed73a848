//! The Kubernetes manifests of deploy/k8s held to what the services need, beyond what the
//! schemas check (CI renders them with kustomize and validates them strictly: see
//! `.ci/validate-k8s.py`): every file listed in its kustomization, each service replicated,
//! probed on its health port, drained within its grace period, on its own database, with
//! its certificates and keys mounted where its settings say; only booking-svc reaching the
//! headless assign-svc and notify-svc.

// The harness and helpers of a test fail the test by panicking, like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use support::yaml;

const SERVICES: [&str; 3] = ["booking-svc", "assign-svc", "notify-svc"];

/// Every resource of the base, by (kind, name).
fn base() -> BTreeMap<(String, String), Value> {
    let kustomization = yaml::load("deploy/k8s/base/kustomization.yaml");
    let mut resources = BTreeMap::new();
    for file in kustomization["resources"].as_array().expect("resources") {
        for doc in yaml::load_all(&format!("deploy/k8s/base/{}", file.as_str().expect("file name"))) {
            let key = (doc["kind"].as_str().expect("kind").to_string(), name(&doc).to_string());
            assert!(resources.insert(key.clone(), doc).is_none(), "{key:?} twice");
        }
    }
    resources
}

fn name(doc: &Value) -> &str {
    doc["metadata"]["name"].as_str().expect("metadata.name")
}

fn get<'a>(resources: &'a BTreeMap<(String, String), Value>, kind: &str, name: &str) -> &'a Value {
    resources.get(&(kind.to_string(), name.to_string())).unwrap_or_else(|| panic!("no {kind} {name}"))
}

/// The shared settings of the ConfigMap every service reads.
fn shared_env(resources: &BTreeMap<(String, String), Value>) -> BTreeMap<String, String> {
    let data = get(resources, "ConfigMap", "booking-platform-env")["data"].as_object().expect("data");
    data.iter().map(|(k, v)| (k.clone(), v.as_str().expect("string value").to_string())).collect()
}

/// The service's container and its env values (those given as plain values).
fn container(resources: &BTreeMap<(String, String), Value>, service: &str) -> (Value, BTreeMap<String, Value>) {
    let deployment = get(resources, "Deployment", service);
    let container = deployment["spec"]["template"]["spec"]["containers"][0].clone();
    let env = container["env"]
        .as_array()
        .expect("env")
        .iter()
        .map(|e| (e["name"].as_str().expect("env name").to_string(), e.clone()))
        .collect();
    (container, env)
}

/// `host:port` -> port.
fn port_of(addr: &str) -> i64 {
    addr.rsplit(':').next().and_then(|p| p.trim_end_matches('/').parse().ok()).expect("a port")
}

/// `64Mi` -> bytes.
fn mebibytes(quantity: &Value) -> u64 {
    let text = quantity.as_str().expect("a quantity");
    text.strip_suffix("Mi").and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("{text}: expected NNMi"))
}

#[test]
fn every_manifest_is_listed_in_its_kustomization_and_every_listed_one_exists() {
    for folder in ["deploy/k8s/base", "deploy/k8s/components/cert-manager"] {
        let kustomization = yaml::load(&format!("{folder}/kustomization.yaml"));
        let listed: BTreeSet<String> = kustomization["resources"]
            .as_array()
            .expect("resources")
            .iter()
            .map(|r| r.as_str().expect("file").to_string())
            .collect();
        let files: BTreeSet<String> = std::fs::read_dir(support::workspace_root().join(folder))
            .expect("folder")
            .map(|f| f.expect("entry").file_name().to_string_lossy().to_string())
            .filter(|f| f.ends_with(".yaml") && f != "kustomization.yaml")
            .collect();
        assert_eq!(listed, files, "{folder}: the kustomization's resources against the folder's files");
    }
    assert_eq!(yaml::load("deploy/k8s/kustomization.yaml")["resources"], serde_json::json!(["base"]));
    let overlay = yaml::load("deploy/k8s/overlays/cert-manager/kustomization.yaml");
    assert_eq!(overlay["resources"], serde_json::json!(["../../base"]));
    assert_eq!(overlay["components"], serde_json::json!(["../../components/cert-manager"]));
    assert_eq!(overlay["namespace"], yaml::load("deploy/k8s/base/kustomization.yaml")["namespace"]);
}

#[test]
fn the_collector_runs_on_the_configuration_compose_uses() {
    let kustomization = yaml::load("deploy/k8s/base/kustomization.yaml");
    let generator = &kustomization["configMapGenerator"][0];
    assert_eq!(generator["name"], "otel-collector-config");
    assert_eq!(generator["files"], serde_json::json!(["config.yaml=../../otel-collector/config.yaml"]));
    let compose = yaml::load("docker-compose.yml");
    let mounts = compose["services"]["otel-collector"]["volumes"].as_array().expect("volumes");
    assert!(mounts.iter().any(|m| m.as_str().is_some_and(|m| m.starts_with("./deploy/otel-collector/config.yaml:"))));
    let resources = base();
    let collector = get(&resources, "Deployment", "otel-collector");
    assert_eq!(collector["spec"]["template"]["spec"]["volumes"][0]["configMap"]["name"], "otel-collector-config");
    assert_eq!(shared_env(&resources)["OTEL_EXPORTER_OTLP_ENDPOINT"], "http://otel-collector:4317");
}

#[test]
fn each_service_is_replicated_probed_on_its_health_port_and_drained_within_its_grace() {
    let resources = base();
    let env = shared_env(&resources);
    let health_port = port_of(&env["HEALTH_ADDR"]);
    let grace_ms: u64 = env["SHUTDOWN_GRACE_MS"].parse().expect("SHUTDOWN_GRACE_MS");
    for service in SERVICES {
        let deployment = get(&resources, "Deployment", service);
        let pod = &deployment["spec"]["template"]["spec"];
        assert!(deployment["spec"]["replicas"].as_i64() >= Some(2), "{service}: replicas");
        assert_eq!(pod["serviceAccountName"], service);
        get(&resources, "ServiceAccount", service);

        let (container, _) = container(&resources, service);
        for probe in ["readinessProbe", "livenessProbe"] {
            assert_eq!(container[probe]["grpc"]["port"].as_i64(), Some(health_port), "{service}: {probe}");
        }
        let ports: Vec<i64> =
            container["ports"].as_array().expect("ports").iter().filter_map(|p| p["containerPort"].as_i64()).collect();
        assert!(ports.contains(&health_port), "{service}: the health port is declared");

        // Measured peak RSS under load: about 12 MiB per service (bench/README.md).
        let resources_of = &container["resources"];
        for kind in ["requests", "limits"] {
            assert!(resources_of[kind]["cpu"].is_string(), "{service}: {kind}.cpu");
            assert!(mebibytes(&resources_of[kind]["memory"]) >= 24, "{service}: {kind}.memory");
        }

        let pre_stop_s: u64 = container["lifecycle"]["preStop"]["exec"]["command"][1]
            .as_str()
            .and_then(|s| s.parse().ok())
            .expect("preStop sleep seconds");
        let termination_s = pod["terminationGracePeriodSeconds"].as_u64().expect("terminationGracePeriodSeconds");
        assert!(termination_s * 1000 > pre_stop_s * 1000 + 2 * grace_ms, "{service}: {termination_s} s to drain");

        let pdb = get(&resources, "PodDisruptionBudget", service);
        assert_eq!(pdb["spec"]["selector"]["matchLabels"], deployment["spec"]["selector"]["matchLabels"]);
    }
}

#[test]
fn each_service_has_its_own_database_certificate_and_keys_mounted_where_its_settings_say() {
    let resources = base();
    let env = shared_env(&resources);
    let urls = &get(&resources, "Secret", "database-urls")["stringData"];
    let databases: BTreeSet<String> = SERVICES
        .iter()
        .map(|s| urls[*s].as_str().expect("a URL").rsplit('/').next().expect("db").to_string())
        .collect();
    assert_eq!(databases.len(), 3, "three databases: {databases:?}");
    for service in SERVICES {
        let (container, vars) = container(&resources, service);
        let secret = &vars["DATABASE_URL"]["valueFrom"]["secretKeyRef"];
        assert_eq!((secret["name"].as_str(), secret["key"].as_str()), (Some("database-urls"), Some(service)));
        assert_eq!(vars["OTEL_SERVICE_NAME"]["value"], service);
        assert_eq!(vars["AUTH_AUDIENCE"]["value"], service);

        let pod = &get(&resources, "Deployment", service)["spec"]["template"]["spec"];
        let volumes: BTreeMap<&str, &Value> = pod["volumes"]
            .as_array()
            .expect("volumes")
            .iter()
            .map(|v| (v["name"].as_str().expect("name"), v))
            .collect();
        let mounts: BTreeMap<&str, &str> = container["volumeMounts"]
            .as_array()
            .expect("mounts")
            .iter()
            .map(|m| (m["mountPath"].as_str().expect("path"), m["name"].as_str().expect("name")))
            .collect();
        let tls_secret = format!("{service}-tls");
        for (setting, secret) in [
            ("TLS_CERT", tls_secret.as_str()),
            ("TLS_KEY", &tls_secret),
            ("TLS_CLIENT_CA", &tls_secret),
            ("TLS_CA", &tls_secret),
            ("AUTH_JWKS", "staff-jwks"),
        ] {
            let (dir, _) = env[setting].rsplit_once('/').expect("a path");
            let volume = mounts.get(dir).unwrap_or_else(|| panic!("{service}: nothing mounted at {dir} for {setting}"));
            assert_eq!(volumes[volume]["secret"]["secretName"], secret, "{service}: {setting}");
        }
    }
}

#[test]
fn assign_and_notify_are_headless_and_only_booking_svc_reaches_them() {
    let resources = base();
    let (_, booking) = container(&resources, "booking-svc");
    assert!(booking["RESOLVE_INTERVAL_MS"]["value"].as_str().is_some_and(|v| v.parse::<u64>().is_ok()));
    assert!(get(&resources, "Service", "booking-svc")["spec"]["clusterIP"].is_null(), "booking-svc: a ClusterIP");
    for (service, url) in [("assign-svc", "ASSIGN_URL"), ("notify-svc", "NOTIFY_URL")] {
        let svc = get(&resources, "Service", service);
        assert_eq!(svc["spec"]["clusterIP"], "None", "{service}: headless");
        let port = svc["spec"]["ports"][0]["port"].as_i64().expect("port");
        let url = booking[url]["value"].as_str().expect("a URL");
        assert_eq!(url.split("://").nth(1), Some(format!("{service}:{port}").as_str()), "{url}");
        let (_, vars) = container(&resources, service);
        assert_eq!(port_of(vars["LISTEN_ADDR"]["value"].as_str().expect("LISTEN_ADDR")), port);

        // The policy of the service lets only booking-svc's pods reach its gRPC port.
        let policy = get(&resources, "NetworkPolicy", service);
        assert_eq!(policy["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/name"], service);
        for rule in policy["spec"]["ingress"].as_array().expect("ingress") {
            let ports: Vec<i64> =
                rule["ports"].as_array().expect("ports").iter().filter_map(|p| p["port"].as_i64()).collect();
            if ports.contains(&port) {
                let from = rule["from"].as_array().expect("a `from` on the gRPC port");
                assert_eq!(from.len(), 1);
                assert_eq!(from[0]["podSelector"]["matchLabels"]["app.kubernetes.io/name"], "booking-svc");
                assert!(from[0]["namespaceSelector"].is_null());
            }
        }
    }
    let deny = get(&resources, "NetworkPolicy", "default-deny");
    assert_eq!(deny["spec"]["podSelector"], serde_json::json!({}));
    assert_eq!(deny["spec"]["policyTypes"], serde_json::json!(["Ingress", "Egress"]));

    let hpa = get(&resources, "HorizontalPodAutoscaler", "booking-svc");
    assert_eq!(hpa["spec"]["scaleTargetRef"]["name"], "booking-svc");
    assert!(hpa["spec"]["minReplicas"].as_i64() >= Some(2));
}

#[test]
fn cert_manager_certificates_carry_each_service_identity() {
    let env = shared_env(&base());
    let certificates: BTreeMap<String, Value> = yaml::load_all("deploy/k8s/components/cert-manager/certificates.yaml")
        .into_iter()
        .filter(|d| d["kind"] == "Certificate")
        .map(|d| (name(&d).to_string(), d))
        .collect();
    for service in SERVICES {
        let spec = &certificates[&format!("{service}-tls")]["spec"];
        assert_eq!(spec["secretName"], format!("{service}-tls"));
        let identity = format!("spiffe://{}/{service}", env["TRUST_DOMAIN"]);
        assert_eq!(spec["uris"], serde_json::json!([identity]));
        assert!(spec["dnsNames"].as_array().expect("dnsNames").contains(&Value::from(service)));
        for usage in ["server auth", "client auth"] {
            assert!(spec["usages"].as_array().expect("usages").contains(&Value::from(usage)), "{service}: {usage}");
        }
    }
}
