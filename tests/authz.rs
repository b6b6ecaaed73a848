//! Who may call what, as callers meet it: staff tokens (`authorization: Bearer <JWT>`)
//! verified against a JWKS file, the per-method allow-list with its built-in defaults and
//! the operator's policy file, refusals as `UNAUTHENTICATED` / `PERMISSION_DENIED`, and
//! real grpcurl with a bearer token. Real PostgreSQL, real gRPC over loopback (plain
//! text: the certificate paths are tested with the TLS transport).

// The harness and helpers of a test fail the test by panicking, like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use platform::{
    auth::jwt::{Claims, SigningKey},
    proto::{assign::v1 as assign_pb, booking::v1 as booking_pb, notify::v1 as notify_pb},
};
use std::{path::PathBuf, time::Duration};
use support::{
    db::TestDb,
    grpcurl,
    process::ServiceProcess,
    services,
    stack::{create_request, detail_str, edit_request, slot},
};
use tonic::Code;

const HOUR: Duration = Duration::from_secs(3600);

/// A signing key and its JWKS file in a temporary folder.
struct Issuer {
    key: SigningKey,
    dir: tempfile::TempDir,
}

impl Issuer {
    fn new() -> Self {
        let key = SigningKey::generate_ed25519("test-key").unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("jwks.json"), key.jwks_json().unwrap()).unwrap();
        Self { key, dir }
    }

    fn jwks(&self) -> PathBuf {
        self.dir.path().join("jwks.json")
    }

    /// A valid token of `subject` with `roles` for `audience`.
    fn token(&self, subject: &str, roles: &[&str], audience: &str) -> String {
        self.key.mint(&Claims::new(subject, roles, "booking-platform", &[audience], HOUR)).unwrap()
    }
}

fn with_token<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

fn plan() -> assign_pb::PutFloorPlanRequest {
    assign_pb::PutFloorPlanRequest {
        restaurant_id: "bistro".into(),
        tables: vec![assign_pb::Table { id: "t1".into(), seats: 4, combine_group: String::new() }],
    }
}

async fn assign_with_jwks(db: &TestDb, issuer: &Issuer, policy: Option<PathBuf>) -> services::Running {
    let mut settings = assign_svc::Settings::for_database(&db.url);
    settings.common.auth.auth_jwks = Some(issuer.jwks());
    settings.common.auth.authz_policy = policy;
    services::assign_with(settings).await
}

#[tokio::test]
async fn floor_plans_need_a_valid_floor_admin_token() {
    let db = TestDb::new().await;
    let issuer = Issuer::new();
    let assign = assign_with_jwks(&db, &issuer, None).await;
    let mut client = services::assign_client(&assign.url);

    let refused = client.put_floor_plan(plan()).await.expect_err("no credentials");
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");

    let mut expired = Claims::new("ann", &["floor-admin"], "booking-platform", &["assign-svc"], HOUR);
    expired.exp -= 2 * 3600;
    let forger = SigningKey::generate_ed25519("test-key").unwrap();
    let bad_tokens = [
        ("expired", issuer.key.mint(&expired).unwrap()),
        (
            "forged",
            forger.mint(&Claims::new("ann", &["floor-admin"], "booking-platform", &["assign-svc"], HOUR)).unwrap(),
        ),
        ("wrong audience", issuer.token("ann", &["floor-admin"], "notify-svc")),
        (
            "wrong issuer",
            issuer.key.mint(&Claims::new("ann", &["floor-admin"], "elsewhere", &["assign-svc"], HOUR)).unwrap(),
        ),
        ("garbage", "abc.def.ghi".to_string()),
    ];
    for (what, token) in &bad_tokens {
        let refused = client.put_floor_plan(with_token(plan(), token)).await.expect_err(what);
        assert_eq!(refused.code(), Code::Unauthenticated, "{what}: {refused:?}");
    }

    let staff = issuer.token("sam", &["staff"], "assign-svc");
    let denied = client.put_floor_plan(with_token(plan(), &staff)).await.expect_err("staff");
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
    assert!(denied.message().contains("PutFloorPlan"), "{}", denied.message());

    let admin = issuer.token("ann", &["floor-admin"], "assign-svc");
    let stored = client.put_floor_plan(with_token(plan(), &admin)).await.expect("floor-admin may");
    assert_eq!(stored.into_inner().floor_plan.unwrap().tables.len(), 1);

    // Reads for staff; booking-svc's methods are for booking-svc only.
    let read = assign_pb::GetFloorPlanRequest { restaurant_id: "bistro".into() };
    client.get_floor_plan(with_token(read, &staff)).await.expect("staff reads");
    let release = assign_pb::ReleaseRequest::default();
    let denied = client.release(with_token(release, &admin)).await.expect_err("not booking-svc");
    assert_eq!(denied.code(), Code::PermissionDenied);

    // Health and reflection stay open.
    assert_eq!(
        services::health(&assign.url, "").await,
        Some(tonic_health::pb::health_check_response::ServingStatus::Serving)
    );
}

#[tokio::test]
async fn staff_may_not_send_mail() {
    let db = TestDb::new().await;
    let issuer = Issuer::new();
    let mut settings = notify_svc::Settings::for_database(&db.url);
    settings.common.auth.auth_jwks = Some(issuer.jwks());
    let notify = services::notify_with(settings).await;
    let mut client = services::notify_client(&notify.url);
    let staff = issuer.token("sam", &["staff", "floor-admin"], "notify-svc");
    let denied = client.send_once(with_token(notify_pb::SendOnceRequest::default(), &staff)).await.expect_err("staff");
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
    let refused = client.send_once(notify_pb::SendOnceRequest::default()).await.expect_err("anonymous");
    assert_eq!(refused.code(), Code::Unauthenticated);
}

#[tokio::test]
async fn the_policy_file_overrides_the_defaults() {
    let db = TestDb::new().await;
    let issuer = Issuer::new();
    let policy = issuer.dir.path().join("policy.json");
    std::fs::write(
        &policy,
        r#"{"methods": {
            "/assign.v1.AssignService/PutFloorPlan": {"roles": ["staff"]},
            "/assign.v1.AssignService/GetFloorPlan": {}
        }}"#,
    )
    .unwrap();
    let assign = assign_with_jwks(&db, &issuer, Some(policy)).await;
    let mut client = services::assign_client(&assign.url);
    let staff = issuer.token("sam", &["staff"], "assign-svc");
    client.put_floor_plan(with_token(plan(), &staff)).await.expect("staff may, by policy");
    let admin = issuer.token("ann", &["floor-admin"], "assign-svc");
    let denied = client.put_floor_plan(with_token(plan(), &admin)).await.expect_err("no longer floor-admin");
    assert_eq!(denied.code(), Code::PermissionDenied);
    let read = assign_pb::GetFloorPlanRequest { restaurant_id: "bistro".into() };
    let closed = client.get_floor_plan(with_token(read, &staff)).await.expect_err("closed by policy");
    assert_eq!(closed.code(), Code::PermissionDenied);
}

#[tokio::test]
async fn grpcurl_with_a_token_from_booking_token() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let (key, jwks) = (dir.path().join("signing-key.pem"), dir.path().join("jwks.json"));
    let mint = |subject: &str, roles: &str| {
        let output = std::process::Command::new(support::process::binary("booking-token"))
            .args(["--subject", subject, "--roles", roles, "--key"])
            .arg(&key)
            .arg("--jwks")
            .arg(&jwks)
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).unwrap().trim().to_string()
    };
    let staff = mint("sam", "staff");
    let mut settings = booking_svc::Settings::for_database(&db.url, "http://127.0.0.1:1", "http://127.0.0.1:1");
    settings.common.auth.auth_jwks = Some(jwks.clone());
    let booking = services::booking_with(settings).await;
    let addr = booking.addr.to_string();
    let body = serde_json::json!({ "restaurant_id": "bistro" }).to_string();
    let method = "booking.v1.BookingService/GetRestaurant";

    let (ok, _, stderr) = grpcurl::run(&["-d", &body, &addr, method]).await;
    assert!(!ok && stderr.contains("Unauthenticated"), "{stderr}");

    let header = format!("authorization: Bearer {staff}");
    let (ok, stdout, stderr) = grpcurl::run(&["-H", &header, "-d", &body, &addr, method]).await;
    assert!(ok, "{stderr}");
    let answer: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(answer["restaurant"]["id"], "bistro", "{answer}");

    // A second token from the same key file verifies against the same JWKS; a floor
    // plan write needs floor-admin.
    let put = serde_json::json!({ "restaurant": { "id": "bistro", "name": "Bistro", "time_zone": "Europe/Paris" } });
    let put = put.to_string();
    let (ok, _, stderr) =
        grpcurl::run(&["-H", &header, "-d", &put, &addr, "booking.v1.BookingService/PutRestaurant"]).await;
    assert!(!ok && stderr.contains("PermissionDenied"), "{stderr}");
    let admin = format!("authorization: Bearer {}", mint("ann", "staff,floor-admin"));
    let (ok, _, stderr) =
        grpcurl::run(&["-H", &admin, "-d", &put, &addr, "booking.v1.BookingService/PutRestaurant"]).await;
    assert!(ok, "{stderr}");

    // Reflection needs no token, so grpcurl can describe the API.
    let (ok, listed, stderr) = grpcurl::run(&[&addr, "list"]).await;
    assert!(ok && listed.contains("booking.v1.BookingService"), "{stderr}");
}

#[tokio::test]
async fn a_refusal_is_one_log_line_without_the_token() {
    let db = TestDb::new().await;
    let issuer = Issuer::new();
    let jwks = issuer.jwks();
    let mut assign = ServiceProcess::start_serving(
        "assign-svc",
        &[("DATABASE_URL", db.url.as_str()), ("AUTH_JWKS", jwks.to_str().unwrap()), ("LOG_FORMAT", "json")],
    )
    .await;
    let mut client = services::assign_client(&assign.url);
    let staff = issuer.token("sam", &["staff"], "assign-svc");
    let mut expired = Claims::new("ann", &["floor-admin"], "booking-platform", &["assign-svc"], HOUR);
    expired.exp -= 2 * 3600;
    let expired = issuer.key.mint(&expired).unwrap();
    client.put_floor_plan(with_token(plan(), &staff)).await.expect_err("denied");
    client.put_floor_plan(with_token(plan(), &expired)).await.expect_err("unauthenticated");
    assign.terminate().await;
    let log = assign.log_text();
    let refusals: Vec<&str> = log.lines().filter(|line| line.contains("call refused")).collect();
    assert_eq!(refusals.len(), 2, "{log}");
    assert!(refusals[0].contains("subject sam") && refusals[0].contains("/assign.v1.AssignService/PutFloorPlan"));
    assert!(refusals[0].contains("PermissionDenied"), "{}", refusals[0]);
    assert!(refusals[1].contains("Unauthenticated") && refusals[1].contains("token expired"), "{}", refusals[1]);
    for token in [&staff, &expired] {
        let signature = token.rsplit('.').next().unwrap();
        assert!(!log.contains(signature), "a token in the log");
    }
}

#[tokio::test]
async fn creates_edits_and_cancels_record_their_actor() {
    let db = TestDb::new().await;
    let issuer = Issuer::new();
    let mut settings = booking_svc::Settings::for_database(&db.url, "http://127.0.0.1:1", "http://127.0.0.1:1");
    settings.common.auth.auth_jwks = Some(issuer.jwks());
    settings.inline_assign = false;
    let booking = services::booking_with(settings).await;
    let mut client = services::booking_client(&booking.url);
    let alice = issuer.token("alice", &["staff"], "booking-svc");
    let bob = issuer.token("bob", &["staff"], "booking-svc");

    let created = client.create_booking(with_token(create_request(slot(2, 19), 4), &alice)).await.unwrap();
    let id = created.into_inner().booking.unwrap().id;
    let edit = booking_pb::EditBookingRequest { party_size: Some(5), ..edit_request(&id) };
    client.edit_booking(with_token(edit, &bob)).await.unwrap();
    let cancel = booking_pb::CancelBookingRequest { booking_id: id.clone(), ..Default::default() };
    client.cancel_booking(with_token(cancel, &alice)).await.unwrap();

    let request = booking_pb::GetBookingHistoryRequest { booking_id: id.clone() };
    let events = client.get_booking_history(with_token(request, &bob)).await.unwrap().into_inner().events;
    let actors: Vec<(i32, Option<String>)> = events
        .iter()
        .filter(|e| {
            use booking_pb::BookingEventType as E;
            [E::Created as i32, E::Edited as i32, E::Cancelled as i32].contains(&e.r#type)
        })
        .map(|e| (e.r#type, detail_str(e, "actor")))
        .collect();
    use booking_pb::BookingEventType as E;
    assert_eq!(
        actors,
        [
            (E::Created as i32, Some("alice".to_string())),
            (E::Edited as i32, Some("bob".to_string())),
            (E::Cancelled as i32, Some("alice".to_string()))
        ]
    );

    let watch = booking_pb::WatchBookingChangesRequest { from_start: true, ..Default::default() };
    let mut stream = client.watch_booking_changes(with_token(watch, &bob)).await.unwrap().into_inner();
    let mut seen = Vec::new();
    while !seen.iter().any(|(kind, _)| *kind == booking_pb::ChangeType::Cancelled as i32) {
        let change = tokio::time::timeout(Duration::from_secs(10), stream.message())
            .await
            .expect("the cancel in the feed within 10 s")
            .unwrap()
            .expect("stream open");
        seen.push((change.change_type, change.actor));
    }
    use booking_pb::ChangeType as T;
    let by_kind = |kind: T| seen.iter().find(|(k, _)| *k == kind as i32).map(|(_, actor)| actor.clone());
    assert_eq!(by_kind(T::Created).as_deref(), Some("alice"));
    assert_eq!(by_kind(T::Edited).as_deref(), Some("bob"));
    assert_eq!(by_kind(T::Cancelled).as_deref(), Some("alice"));
}

/// Certificates for the three services, a `staff` client and an `intruder` service, in a
/// temporary folder.
fn make_pki() -> (tempfile::TempDir, booking_tools::pki::LocalPki) {
    let dir = tempfile::tempdir().unwrap();
    let names = ["booking-svc", "assign-svc", "notify-svc", "staff"];
    let (pki, _ca) =
        booking_tools::pki::LocalPki::create(dir.path(), booking_tools::pki::DEFAULT_TRUST_DOMAIN, &names).unwrap();
    (dir, pki)
}

fn mutual_tls(common: &mut platform::settings::CommonSettings, pki: &booking_tools::pki::LocalPki, name: &str) {
    common.tls_cert = Some(pki.cert(name));
    common.tls_key = Some(pki.key(name));
    common.tls_client_ca = Some(pki.ca());
    common.tls_ca = Some(pki.ca());
}

#[tokio::test]
async fn service_certificates_name_the_caller_under_mutual_tls() {
    use platform::proto::{
        assign::v1::assign_service_client::AssignServiceClient, notify::v1::notify_service_client::NotifyServiceClient,
    };
    let db = TestDb::new().await;
    let (_dir, pki) = make_pki();
    let issuer = Issuer::new();
    let as_service = |name: &str| support::stack::client_tls(&pki, name);

    // notify-svc with mutual TLS and the built-in policy: SendOnce only from booking-svc.
    let mut settings = notify_svc::Settings::for_database(&db.url);
    mutual_tls(&mut settings.common, &pki, "notify-svc");
    let notify =
        services::Running::start_tls(move |l, s| notify_svc::run(settings, l, s), Some(as_service("booking-svc")))
            .await;
    let send_as = |name: &str| {
        let channel = platform::grpc::connect_with(&notify.url, Some(&as_service(name))).unwrap();
        async move { NotifyServiceClient::new(channel).send_once(notify_pb::SendOnceRequest::default()).await }
    };
    let passed = send_as("booking-svc").await.expect_err("an empty request is invalid, but booking-svc may call");
    assert_eq!(passed.code(), Code::InvalidArgument, "booking-svc's certificate passes the allow-list: {passed:?}");
    let denied = send_as("staff").await.expect_err("staff");
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
    let denied = send_as("assign-svc").await.expect_err("the wrong service");
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");

    // assign-svc: a valid certificate of the wrong service is denied Assign; a staff
    // certificate with a floor-admin token may put a floor plan, and is the token's subject.
    let mut settings = assign_svc::Settings::for_database(&db.url);
    mutual_tls(&mut settings.common, &pki, "assign-svc");
    settings.common.auth.auth_jwks = Some(issuer.jwks());
    let assign =
        services::Running::start_tls(move |l, s| assign_svc::run(settings, l, s), Some(as_service("booking-svc")))
            .await;
    let client_as = |name: &str| {
        AssignServiceClient::new(platform::grpc::connect_with(&assign.url, Some(&as_service(name))).unwrap())
    };
    let denied = client_as("notify-svc").assign(assign_pb::AssignRequest::default()).await.expect_err("notify-svc");
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
    assert!(denied.message().contains("spiffe://booking.internal/notify-svc"), "{}", denied.message());
    let passed = client_as("booking-svc").assign(assign_pb::AssignRequest::default()).await.expect_err("invalid");
    assert_eq!(passed.code(), Code::InvalidArgument, "{passed:?}");
    let denied = client_as("staff").put_floor_plan(plan()).await.expect_err("a certificate alone has no role");
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
    let admin = issuer.token("ann", &["floor-admin"], "assign-svc");
    client_as("staff").put_floor_plan(with_token(plan(), &admin)).await.expect("certificate and floor-admin token");
}
