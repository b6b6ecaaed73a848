//! Transport security as callers meet it, over real TLS on loopback with certificates made
//! at test time: mutual TLS round trips that hand the caller's certificate to the service,
//! callers without a certificate or with one from another CA refused, the whole edit flow
//! with mutual TLS on, certificates rotated under load without a failed call, plain-text
//! health on HEALTH_ADDR, and the real grpcurl with -cacert/-cert/-key.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use booking_tools::pki::{Ca, DEFAULT_TRUST_DOMAIN, LocalPki};
use platform::{
    grpc::{GrpcServer, ServerLimits, Transport},
    proto::{
        booking::v1 as bpb,
        notify::v1::{
            self as pb,
            notify_service_client::NotifyServiceClient,
            notify_service_server::{NotifyService, NotifyServiceServer},
        },
        timestamp,
    },
    tls::{ClientTls, RELOAD_CHECK, ServerTls},
};
use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};
use support::{
    eventually, grpcurl,
    services::{self, Running},
    stack::{self, Options, Stack, create_request, edit_request, slot},
};
use tonic::{
    Request, Response, Status,
    transport::server::{TcpConnectInfo, TlsConnectInfo},
};
use tonic_health::pb::health_check_response::ServingStatus;

fn limits() -> ServerLimits {
    ServerLimits {
        request_timeout: Duration::from_secs(30),
        max_concurrent_requests: 64,
        max_message_bytes: 1 << 20,
        shutdown_grace: Duration::from_secs(2),
    }
}

/// What a [`Who`] server saw of its last caller's connection.
#[derive(Clone, Debug, Default, PartialEq)]
struct Seen {
    tls: bool,
    tcp: bool,
    peer_certs: Option<Vec<Vec<u8>>>,
}

/// A NotifyService whose SendOnce records what the request's extensions say of the caller.
#[derive(Clone, Default)]
struct Who(Arc<Mutex<Seen>>);

#[tonic::async_trait]
impl NotifyService for Who {
    async fn send_once(&self, request: Request<pb::SendOnceRequest>) -> Result<Response<pb::SendOnceResponse>, Status> {
        let tls = request.extensions().get::<TlsConnectInfo<TcpConnectInfo>>();
        let seen = Seen {
            tls: tls.is_some(),
            tcp: request.extensions().get::<TcpConnectInfo>().is_some(),
            peer_certs: tls
                .and_then(|info| info.peer_certs())
                .map(|certs| certs.iter().map(|cert| cert.as_ref().to_vec()).collect()),
        };
        *self.0.lock().unwrap() = seen;
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

/// A [`Who`] server with `transport`, serving.
async fn who_server(who: Who, transport: Transport, tls: Option<ClientTls>) -> Running {
    Running::start_tls(
        move |listener, shutdown| async move {
            let server = GrpcServer::new(limits()).add_service(NotifyServiceServer::new(who)).transport(transport);
            server.health().await.set_serving(true).await;
            server.serve(listener, shutdown).await
        },
        tls,
    )
    .await
}

/// Certificates for the services and a `staff` caller, in a temporary folder.
fn make_pki() -> (tempfile::TempDir, LocalPki, Ca) {
    let dir = tempfile::tempdir().unwrap();
    let names = ["booking-svc", "assign-svc", "notify-svc", "staff"];
    let (pki, ca) = LocalPki::create(dir.path(), DEFAULT_TRUST_DOMAIN, &names).unwrap();
    (dir, pki, ca)
}

fn mutual(pki: &LocalPki, name: &str) -> Transport {
    let tls = ServerTls::new(&pki.cert(name), &pki.key(name), Some(&pki.ca())).unwrap();
    Transport { tls: Some(tls), health_addr: None }
}

fn der(pem_path: &std::path::Path) -> Vec<u8> {
    use tokio_rustls::rustls::pki_types::{CertificateDer, pem::PemObject};
    CertificateDer::from_pem_file(pem_path).unwrap().as_ref().to_vec()
}

/// A call refused at the connection: no answer of the service, an alert or a failed
/// connect (tonic reports a TLS alert received after the handshake as `UNKNOWN`).
fn assert_refused(status: &Status, alert: &str) {
    assert!(matches!(status.code(), tonic::Code::Unavailable | tonic::Code::Unknown), "{status:?}");
    assert!(format!("{status:?}").contains(alert), "expected {alert}: {status:?}");
}

async fn send_once(url: &str, tls: Option<&ClientTls>) -> Result<pb::SendOnceResponse, Status> {
    let mut client = NotifyServiceClient::new(platform::grpc::connect_with(url, tls).unwrap());
    let mut request = Request::new(pb::SendOnceRequest::default());
    request.set_timeout(Duration::from_secs(5));
    client.send_once(request).await.map(Response::into_inner)
}

#[tokio::test]
async fn mutual_tls_round_trip_hands_the_callers_certificate_to_the_service() {
    let (_dir, pki, _ca) = make_pki();
    let staff = stack::client_tls(&pki, "staff");
    let who = Who::default();
    let server = who_server(who.clone(), mutual(&pki, "notify-svc"), Some(staff.clone())).await;

    send_once(&server.url, Some(&staff)).await.expect("a caller with a certificate of the CA is served");
    let seen = who.0.lock().unwrap().clone();
    assert!(seen.tls && !seen.tcp, "{seen:?}");
    assert_eq!(seen.peer_certs, Some(vec![der(&pki.cert("staff"))]), "the caller's chain reaches the service");

    // In plain text the extensions hold the TCP connection's info.
    let plain = Who::default();
    let server = who_server(plain.clone(), Transport::default(), None).await;
    send_once(&server.url, None).await.expect("plain text");
    assert_eq!(*plain.0.lock().unwrap(), Seen { tls: false, tcp: true, peer_certs: None });
}

#[tokio::test]
async fn a_caller_without_a_client_certificate_is_refused() {
    let (_dir, pki, _ca) = make_pki();
    let who = Who::default();
    let server = who_server(who.clone(), mutual(&pki, "notify-svc"), Some(stack::client_tls(&pki, "staff"))).await;

    let anonymous = ClientTls::new(&pki.ca(), None).unwrap();
    let refused = send_once(&server.url, Some(&anonymous)).await.expect_err("no client certificate");
    assert_refused(&refused, "CertificateRequired");
    let refused = send_once(&server.url, None).await.expect_err("plain text to a TLS server");
    assert!(matches!(refused.code(), tonic::Code::Unavailable | tonic::Code::Unknown), "{refused:?}");
    assert_eq!(*who.0.lock().unwrap(), Seen::default(), "no refused call reached the service");
}

#[tokio::test]
async fn a_certificate_from_another_ca_is_refused_both_ways() {
    let (_dir, pki, _ca) = make_pki();
    let (_other_dir, other, _other_ca) = make_pki();
    let who = Who::default();
    let server = who_server(who.clone(), mutual(&pki, "notify-svc"), Some(stack::client_tls(&pki, "staff"))).await;

    // A caller whose certificate another CA signed (it trusts the server's CA).
    let stranger = ClientTls::new(&pki.ca(), Some((&other.cert("staff"), &other.key("staff")))).unwrap();
    let refused = send_once(&server.url, Some(&stranger)).await.expect_err("a certificate from another CA");
    // Both CAs bear the same name: the signature does not verify (a CA of another name
    // gives UnknownCA, as after the rotation below).
    assert_refused(&refused, "DecryptError");
    assert_eq!(*who.0.lock().unwrap(), Seen::default());

    // A server whose certificate another CA signed: the client refuses it.
    let impostor =
        who_server(Who::default(), mutual(&other, "notify-svc"), Some(stack::client_tls(&other, "staff"))).await;
    let refused =
        send_once(&impostor.url, Some(&stack::client_tls(&pki, "staff"))).await.expect_err("a server of another CA");
    assert!(matches!(refused.code(), tonic::Code::Unavailable | tonic::Code::Unknown), "{refused:?}");
    assert!(format!("{refused:?}").contains("certificate"), "{refused:?}");
}

#[tokio::test]
async fn health_addr_serves_only_health_in_plain_text() {
    let (_dir, pki, _ca) = make_pki();
    let port = support::free_port();
    let mut transport = mutual(&pki, "notify-svc");
    transport.health_addr = Some(format!("127.0.0.1:{port}").parse().unwrap());
    let server = who_server(Who::default(), transport, Some(stack::client_tls(&pki, "staff"))).await;

    let health_url = format!("http://127.0.0.1:{port}");
    assert_eq!(services::health(&health_url, "").await, Some(ServingStatus::Serving));
    assert_eq!(services::health(&health_url, "notify.v1.NotifyService").await, Some(ServingStatus::Serving));
    let other = send_once(&health_url, None).await.expect_err("only health is served there");
    assert_eq!(other.code(), tonic::Code::Unimplemented, "{other:?}");
    // The main listener stays TLS only.
    assert_eq!(services::health(&server.url, "").await, None);
}

#[tokio::test]
async fn grpcurl_calls_a_mutual_tls_server_with_cacert_cert_and_key() {
    let (_dir, pki, _ca) = make_pki();
    let db = support::db::TestDb::new().await;
    let mut settings = assign_svc::Settings::for_database(&db.url);
    stack::secure(&mut settings.common, &pki, "assign-svc");
    let server =
        Running::start_tls(move |l, s| assign_svc::run(settings, l, s), Some(stack::client_tls(&pki, "staff"))).await;
    let (ca, cert, key) = (
        pki.ca().display().to_string(),
        pki.cert("staff").display().to_string(),
        pki.key("staff").display().to_string(),
    );
    let addr = format!("localhost:{}", server.addr.port());

    let (ok, stdout, stderr) = grpcurl::run_tls(&[
        "-cacert",
        &ca,
        "-cert",
        &cert,
        "-key",
        &key,
        "-d",
        r#"{"service":"assign.v1.AssignService"}"#,
        &addr,
        "grpc.health.v1.Health/Check",
    ])
    .await;
    assert!(ok, "grpcurl with a client certificate: {stderr}");
    assert!(stdout.contains("SERVING"), "{stdout}");
    let (ok, listed, stderr) = grpcurl::run_tls(&["-cacert", &ca, "-cert", &cert, "-key", &key, &addr, "list"]).await;
    assert!(ok && listed.contains("assign.v1.AssignService"), "{listed} {stderr}");

    // grpcurl retries a refused connection until its connect timeout.
    let (ok, _, stderr) = grpcurl::run_tls(&["-connect-timeout", "2", "-cacert", &ca, &addr, "list"]).await;
    assert!(!ok, "grpcurl without a client certificate must be refused");
    let (ok, _, _) = grpcurl::run(&["-connect-timeout", "2", &addr, "list"]).await;
    assert!(!ok, "grpcurl in plain text must be refused: {stderr}");
}

async fn wait_status(
    client: &mut bpb::booking_service_client::BookingServiceClient<platform::grpc::Channel>,
    id: &str,
    status: bpb::BookingStatus,
    version: i64,
) -> bpb::Booking {
    eventually(Duration::from_secs(20), &format!("booking {id} {status:?} v{version}"), || {
        let mut client = client.clone();
        async move {
            let booking = stack::get_booking(&mut client, id).await;
            (booking.status == status as i32 && booking.version == version).then_some(booking)
        }
    })
    .await
}

#[tokio::test]
async fn the_whole_edit_flow_passes_with_mutual_tls_on() {
    let mut stack = Stack::start(Options {
        tables: vec![("t1", 4), ("t2", 6)],
        assign_process: true,
        inline_timeout_ms: 300,
        tls: true,
        ..Default::default()
    })
    .await;
    let mut client = stack.booking();

    // Inline confirm of a create and an edit.
    let created = client.create_booking(create_request(slot(1, 19), 4)).await.expect("create").into_inner();
    assert_eq!(created.outcome, bpb::Outcome::Confirmed as i32, "{created:?}");
    let id = created.booking.expect("booking").id;
    stack.wait_for_mail(&id, "BOOKING_CONFIRMED", 1).await;
    let mut edit = edit_request(&id);
    edit.party_size = Some(5);
    let edited = client.edit_booking(edit).await.expect("edit").into_inner();
    assert_eq!(edited.outcome, bpb::Outcome::Confirmed as i32, "{edited:?}");
    stack.wait_for_mail(&id, "MODIFICATION_CONFIRMED", 2).await;

    // Timeout -> pending -> background confirm, through the frozen assign-svc.
    stack.assign.process().freeze();
    let mut edit = edit_request(&id);
    edit.start_time = Some(timestamp(slot(1, 21)));
    let answer = client.edit_booking(edit).await.expect("an inline timeout is still a successful edit").into_inner();
    assert_eq!(answer.outcome, bpb::Outcome::Pending as i32, "{answer:?}");
    assert_eq!(answer.booking.expect("booking").status, bpb::BookingStatus::Pending as i32);
    stack.wait_for_mail(&id, "MODIFICATION_REQUESTED", 3).await;
    stack.assign.process().thaw();
    let confirmed = wait_status(&mut client, &id, bpb::BookingStatus::Confirmed, 3).await;
    assert_eq!(confirmed.table_ids, vec!["t2"]);

    stack.settle(&[&id]).await;
    assert_eq!(
        stack.mails_for(&id),
        vec!["BOOKING_CONFIRMED:1", "MODIFICATION_CONFIRMED:2", "MODIFICATION_CONFIRMED:3", "MODIFICATION_REQUESTED:3"],
        "one mail each"
    );
}

#[tokio::test]
async fn certificates_rotate_under_load_without_a_failed_call() {
    let stack =
        Stack::start(Options { tables: vec![("t1", 4), ("t2", 4), ("t3", 4)], tls: true, ..Default::default() }).await;
    let pki = stack.pki.clone().unwrap();
    let booking_url = stack.booking.as_ref().unwrap().url();
    let names = ["booking-svc", "assign-svc", "notify-svc", "staff"];

    // Callers keep creating bookings on long-lived channels and reading them over fresh
    // connections (each one a new handshake) while the certificates change.
    let stop = Arc::new(AtomicBool::new(false));
    let (calls, failures) = (Arc::new(AtomicU64::new(0)), Arc::new(Mutex::new(Vec::<String>::new())));
    let mut load = Vec::new();
    for worker in 0..4u64 {
        let (stop, calls, failures) = (stop.clone(), calls.clone(), failures.clone());
        let mut client = stack.booking();
        let (url, tls) = (booking_url.clone(), stack.client_tls.clone());
        load.push(tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let mut create = create_request(slot(2 + (worker * 1000 + i) % 300, 12), 2);
                create.idempotency_key = format!("rotation-{worker}-{i}");
                match client.create_booking(create).await {
                    Ok(answer) => {
                        let id = answer.into_inner().booking.unwrap().id;
                        let mut fresh = bpb::booking_service_client::BookingServiceClient::new(
                            platform::grpc::connect_with(&url, tls.as_ref()).unwrap(),
                        );
                        if let Err(status) = fresh.get_booking(bpb::GetBookingRequest { booking_id: id }).await {
                            failures.lock().unwrap().push(format!("fresh GetBooking: {status:?}"));
                        }
                    }
                    Err(status) => failures.lock().unwrap().push(format!("CreateBooking: {status:?}")),
                }
                calls.fetch_add(2, Ordering::Relaxed);
            }
        }));
    }
    let settle = RELOAD_CHECK * 2 + Duration::from_millis(500);
    tokio::time::sleep(Duration::from_secs(1)).await;

    // A new CA: trusted beside the old one first, then every certificate is re-issued by
    // it, then the old CA is dropped.
    let old_ca_pem = std::fs::read_to_string(pki.ca()).unwrap();
    let new_ca = Ca::new("rotated CA").unwrap();
    let old_staff = (std::fs::read(pki.cert("staff")).unwrap(), std::fs::read(pki.key("staff")).unwrap());
    std::fs::write(pki.dir.join("bundle.pem"), format!("{old_ca_pem}{}", new_ca.cert_pem())).unwrap();
    std::fs::rename(pki.dir.join("bundle.pem"), pki.ca()).unwrap();
    tokio::time::sleep(settle).await;
    for name in names {
        pki.install(name, &new_ca.issue(name, DEFAULT_TRUST_DOMAIN, &[]).unwrap()).unwrap();
    }
    tokio::time::sleep(settle).await;
    pki.install_ca(&new_ca).unwrap();
    tokio::time::sleep(settle).await;
    // booking-svc renews its peers' endpoints at its next resolution (every 5 s).
    tokio::time::sleep(Duration::from_secs(6)).await;
    let before = calls.load(Ordering::Relaxed);
    let after_rotation = Instant::now();
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }
    let failures = failures.lock().unwrap().clone();
    assert_eq!(failures, Vec::<String>::new(), "no call may fail during the rotation");
    let total = calls.load(Ordering::Relaxed);
    assert!(
        total > before && total >= 40,
        "load kept running after the rotation ({before} then {total} calls, {:?})",
        after_rotation.elapsed()
    );

    // New connections now meet only the new CA: the old staff certificate is refused, a new
    // one is served, and booking-svc reaches assign-svc with its new certificate (inline
    // confirmation).
    let old_dir = tempfile::tempdir().unwrap();
    let old = LocalPki { dir: old_dir.path().to_path_buf() };
    std::fs::write(old.cert("staff"), &old_staff.0).unwrap();
    std::fs::write(old.key("staff"), &old_staff.1).unwrap();
    let stale = ClientTls::new(&pki.ca(), Some((&old.cert("staff"), &old.key("staff")))).unwrap();
    let mut stale_client = bpb::booking_service_client::BookingServiceClient::new(
        platform::grpc::connect_with(&booking_url, Some(&stale)).unwrap(),
    );
    let refused =
        stale_client.get_booking(bpb::GetBookingRequest { booking_id: "x".into() }).await.expect_err("old CA");
    assert_refused(&refused, "UnknownCA");
    let fresh_tls = stack::client_tls(&pki, "staff");
    let mut fresh = bpb::booking_service_client::BookingServiceClient::new(
        platform::grpc::connect_with(&booking_url, Some(&fresh_tls)).unwrap(),
    );
    let created =
        fresh.create_booking(create_request(slot(1, 9), 2)).await.expect("create after rotation").into_inner();
    assert_eq!(created.outcome, bpb::Outcome::Confirmed as i32, "{created:?}");
}

#[tokio::test]
async fn without_tls_a_service_says_so_once_and_probes_find_health_with_tls_on() {
    let db = support::db::TestDb::new().await;
    let plain = support::process::ServiceProcess::start_serving("assign-svc", &[("DATABASE_URL", &db.url)]).await;
    let warned = plain.log_text().lines().filter(|l| l.contains("WARN") && l.contains("TLS is off")).count();
    assert_eq!(warned, 1, "one WARN line at start-up:\n{}", plain.log_text());

    let (_dir, pki, _ca) = make_pki();
    let env = stack::secure_env(&pki, "assign-svc");
    let mut env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    env.push(("DATABASE_URL", &db.url));
    let secure = support::process::ServiceProcess::start_serving("assign-svc", &env).await;
    assert!(!secure.log_text().contains("TLS is off"), "{}", secure.log_text());
    let listen = format!("127.0.0.1:{}", secure.port);
    let probe = |without_health_addr: bool| {
        let mut command = std::process::Command::new(support::process::binary("assign-svc"));
        command.envs(env.iter().copied()).env("LISTEN_ADDR", &listen).arg("--health-probe");
        if without_health_addr {
            command.env_remove("HEALTH_ADDR");
        }
        command.output().unwrap()
    };
    // On HEALTH_ADDR in plain text, and without it over TLS with the service's own certificate.
    for without_health_addr in [false, true] {
        let output = probe(without_health_addr);
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    }
}
