//! The shared runtime as users meet it: settings errors, health that follows the
//! database, reflection through the real grpcurl, trace context across a hop, and
//! graceful shutdown.

// The harness and helpers of a test fail the test by panicking, like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use platform::{
    grpc::{GrpcServer, ServerLimits},
    proto::notify::v1::{
        self as pb,
        notify_service_server::{NotifyService, NotifyServiceServer},
    },
};
use std::{process::Command, time::Duration};
use support::{db::TestDb, grpcurl, process, services};
use tonic::{Request, Response, Status};
use tonic_health::pb::health_check_response::ServingStatus;

#[test]
fn a_wrong_setting_stops_the_binary_with_one_line_naming_it() {
    let cases: [(&str, &str, &str); 8] = [
        ("booking-svc", "LISTEN_ADDR", "not-an-address"),
        ("booking-svc", "INLINE_ASSIGN", "maybe"),
        ("booking-svc", "INLINE_ASSIGN_TIMEOUT_MS", "0"),
        ("booking-svc", "ASSIGN_URL", "127.0.0.1:50052"),
        ("assign-svc", "DATABASE_URL", "mysql:/nope"),
        ("assign-svc", "LOG_FORMAT", "xml"),
        ("notify-svc", "SMTP_URL", "ftp://mail.example"),
        ("notify-svc", "MAIL_FROM", "not an address"),
    ];
    for (bin, variable, value) in cases {
        let output = Command::new(process::binary(bin)).env(variable, value).output().expect("run binary");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{bin} {variable}={value}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{bin} {variable}={value}: not one line: {stderr}");
        assert!(stderr.contains(variable), "{bin} {variable}={value}: does not name the setting: {stderr}");
    }
}

#[test]
fn help_lists_every_setting_with_its_variable_and_default() {
    let output = Command::new(process::binary("booking-svc")).arg("--help").output().expect("run --help");
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for variable in [
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
    ] {
        assert!(help.contains(&format!("env: {variable}")), "--help misses {variable}:\n{help}");
    }
    assert!(
        help.contains("0.0.0.0:50051") && help.contains("http://127.0.0.1:50052") && help.contains("[default: 800]")
    );
}

#[tokio::test]
async fn health_is_serving_only_while_the_database_answers() {
    let db = TestDb::missing();
    let assign = services::Running::start_unready({
        let settings = assign_svc::Settings::for_database(&db.url);
        move |l, s| assign_svc::run(settings, l, s)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(services::health(&assign.url, "").await, Some(ServingStatus::NotServing));
    assert_eq!(services::health(&assign.url, "assign.v1.AssignService").await, Some(ServingStatus::NotServing));

    db.create().await;
    services::wait_serving(&assign.url, Duration::from_secs(20)).await;
    assert_eq!(services::health(&assign.url, "assign.v1.AssignService").await, Some(ServingStatus::Serving));

    db.drop_now().await;
    support::eventually(Duration::from_secs(10), "NOT_SERVING after the database is gone", || async {
        (services::health(&assign.url, "").await == Some(ServingStatus::NotServing)).then_some(())
    })
    .await;
    assign.stop().await.expect("clean stop");
}

#[tokio::test]
async fn grpcurl_lists_and_describes_every_service_without_proto_files() {
    let db = TestDb::new().await;
    let assign = services::assign(&db.url).await;
    let mut notify_settings = notify_svc::Settings::for_database(&db.url);
    let mail = tempfile::tempdir().expect("mail dir");
    notify_settings.mail_dir = mail.path().to_path_buf();
    let notify = services::notify_with(notify_settings).await;
    let booking = services::booking_with(booking_svc::Settings::for_database(&db.url, &assign.url, &notify.url)).await;

    for (running, service) in [
        (&booking, "booking.v1.BookingService"),
        (&assign, "assign.v1.AssignService"),
        (&notify, "notify.v1.NotifyService"),
    ] {
        let addr = running.addr.to_string();
        let (ok, listed, stderr) = grpcurl::run(&[&addr, "list"]).await;
        assert!(ok, "grpcurl list on {addr}: {stderr}");
        let mut names: Vec<&str> = listed.lines().collect();
        names.sort();
        let mut expected = vec![
            service,
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection",
        ];
        expected.sort();
        assert_eq!(names, expected);
        let (ok, described, stderr) = grpcurl::run(&[&addr, "describe", service]).await;
        assert!(ok, "grpcurl describe {service}: {stderr}");
        assert!(described.contains("is a service:") && described.contains("// "), "no documentation: {described}");
        let health =
            grpcurl::call(&addr, "grpc.health.v1.Health/Check", &serde_json::json!({ "service": service })).await;
        assert_eq!(health["status"], "SERVING");
    }
    let (ok, described, stderr) =
        grpcurl::run(&[&booking.addr.to_string(), "describe", "booking.v1.EditBookingRequest"]).await;
    assert!(ok, "{stderr}");
    assert!(described.contains("expected_version") && described.contains("idempotency_key"), "{described}");
}

/// A NotifyService whose SendOnce takes a while, to hold a call in flight.
struct Slow(Duration);

#[tonic::async_trait]
impl NotifyService for Slow {
    async fn send_once(&self, _: Request<pb::SendOnceRequest>) -> Result<Response<pb::SendOnceResponse>, Status> {
        tokio::time::sleep(self.0).await;
        Ok(Response::new(pb::SendOnceResponse { delivery: None, duplicate: true }))
    }
    async fn get_delivery(
        &self,
        _: Request<pb::GetDeliveryRequest>,
    ) -> Result<Response<pb::GetDeliveryResponse>, Status> {
        Err(Status::not_found("none"))
    }
    async fn list_deliveries(
        &self,
        _: Request<pb::ListDeliveriesRequest>,
    ) -> Result<Response<pb::ListDeliveriesResponse>, Status> {
        Ok(Response::new(pb::ListDeliveriesResponse::default()))
    }
}

fn limits() -> ServerLimits {
    ServerLimits {
        request_timeout: Duration::from_secs(30),
        max_concurrent_requests: 64,
        max_message_bytes: 1 << 20,
        shutdown_grace: Duration::from_secs(5),
    }
}

#[tokio::test]
async fn graceful_shutdown_finishes_the_call_in_flight_and_refuses_new_ones() {
    let server = services::Running::start_unready(|listener, shutdown| async move {
        GrpcServer::new(limits())
            .add_service(NotifyServiceServer::new(Slow(Duration::from_millis(800))))
            .serve(listener, shutdown)
            .await
    })
    .await;
    let mut client = services::notify_client(&server.url);
    let in_flight = tokio::spawn(async move { client.send_once(pb::SendOnceRequest::default()).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = std::time::Instant::now();
    server.begin_shutdown();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut late = services::notify_client(&server.url);
    let refused = late.send_once(pb::SendOnceRequest::default()).await;
    assert!(refused.is_err(), "a call after shutdown began must not be served");

    let answer = in_flight.await.expect("join").expect("the in-flight call completes");
    assert!(answer.into_inner().duplicate);
    server.stop().await.expect("server stops cleanly");
    assert!(started.elapsed() < Duration::from_secs(3), "shutdown waited {:?}", started.elapsed());
}

#[tokio::test]
async fn sigterm_stops_a_real_process_cleanly() {
    let db = TestDb::new().await;
    let mut assign = process::ServiceProcess::start_serving("assign-svc", &[("DATABASE_URL", &db.url)]).await;
    let started = std::time::Instant::now();
    let status = assign.terminate().await;
    assert!(status.success(), "exit status {status:?}\n{}", assign.log_text());
    assert!(started.elapsed() < Duration::from_secs(3), "SIGTERM took {:?} to stop an idle server", started.elapsed());
    assert!(assign.log_text().contains("shutdown signal received"));
}

#[tokio::test]
async fn trace_context_crosses_a_client_server_hop() {
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
    use tracing::Instrument;
    use tracing_subscriber::layer::SubscriberExt;

    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder().with_simple_exporter(exporter.clone()).build();
    let subscriber =
        tracing_subscriber::registry().with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
    tracing::subscriber::set_global_default(subscriber).expect("subscriber");

    let server = services::Running::start_unready(|listener, shutdown| async move {
        GrpcServer::new(limits())
            .add_service(NotifyServiceServer::new(Slow(Duration::from_millis(1))))
            .serve(listener, shutdown)
            .await
    })
    .await;
    let mut client = services::notify_client(&server.url);
    let caller = tracing::info_span!("caller");
    client.send_once(pb::SendOnceRequest::default()).instrument(caller).await.expect("call");
    server.stop().await.expect("stop");
    provider.force_flush().expect("flush");

    let spans = exporter.get_finished_spans().expect("spans");
    let find = |name: &str, kind: opentelemetry::trace::SpanKind| {
        spans
            .iter()
            .find(|s| s.name == name && s.span_kind == kind)
            .unwrap_or_else(|| {
                panic!("no {name} {kind:?} span in {:?}", spans.iter().map(|s| &s.name).collect::<Vec<_>>())
            })
            .clone()
    };
    let caller = spans.iter().find(|s| s.name == "caller").expect("caller span");
    let client_span = find("notify.v1.NotifyService/SendOnce", opentelemetry::trace::SpanKind::Client);
    let server_span = find("notify.v1.NotifyService/SendOnce", opentelemetry::trace::SpanKind::Server);
    let trace = caller.span_context.trace_id();
    assert_eq!(client_span.span_context.trace_id(), trace);
    assert_eq!(server_span.span_context.trace_id(), trace, "the server span joined the caller's trace");
    assert_eq!(server_span.parent_span_id, client_span.span_context.span_id());
    let attribute = |span: &opentelemetry_sdk::trace::SpanData, key: &str| {
        span.attributes.iter().find(|kv| kv.key.as_str() == key).map(|kv| kv.value.to_string())
    };
    assert_eq!(attribute(&server_span, "rpc.system").as_deref(), Some("grpc"));
    assert_eq!(attribute(&server_span, "rpc.service").as_deref(), Some("notify.v1.NotifyService"));
    assert_eq!(attribute(&server_span, "rpc.method").as_deref(), Some("SendOnce"));
    assert_eq!(attribute(&server_span, "rpc.grpc.status_code").as_deref(), Some("0"));
}
