//! The whole booking stack for one test: a fresh database, a real SMTP server, assign-svc
//! (in-process, or as a real process that can be frozen), notify-svc delivering to the SMTP
//! server, and booking-svc (in-process, or as real processes that can be killed and
//! restarted), with short worker intervals and a floor plan. Plus the checks a user makes:
//! bookings, history, and the mails the SMTP server received. With `tls`, everything runs
//! with mutual TLS on certificates made for the test, and its clients present a `staff`
//! certificate.

use super::{db::TestDb, eventually, process::ServiceProcess, services::Running, smtp::SmtpSink};
use booking_tools::pki::{DEFAULT_TRUST_DOMAIN, LocalPki};
use platform::proto::{
    assign::v1::{self as apb, assign_service_client::AssignServiceClient},
    booking::v1::{self as pb, booking_service_client::BookingServiceClient},
    notify::v1::{self as npb, notify_service_client::NotifyServiceClient},
};
use platform::{settings::CommonSettings, tls::ClientTls};
use std::time::{Duration, SystemTime};

/// The restaurant every stack sets up.
pub const RESTAURANT: &str = "r1";

/// A service either in this process or as its own process.
pub enum Svc {
    InProcess(Running),
    Process(ServiceProcess),
}

impl Svc {
    /// Its URL.
    pub fn url(&self) -> String {
        match self {
            Svc::InProcess(running) => running.url.clone(),
            Svc::Process(process) => process.url.clone(),
        }
    }

    /// The real process (panics for an in-process service).
    pub fn process(&mut self) -> &mut ServiceProcess {
        match self {
            Svc::Process(process) => process,
            Svc::InProcess(_) => panic!("this service runs in-process"),
        }
    }
}

/// How to build the stack.
#[derive(Clone, Debug)]
pub struct Options {
    /// Tables of RESTAURANT's floor plan: (id, seats).
    pub tables: Vec<(&'static str, i32)>,
    /// assign-svc as a real process (to freeze, kill or restart it).
    pub assign_process: bool,
    /// notify-svc as a real process (to freeze, kill or restart it).
    pub notify_process: bool,
    /// assign-svc's background retry delays (base, cap) in ms: short by default; long ones
    /// show that only freed capacity wakes a waiting job within a test.
    pub reassign_backoff_ms: (u64, u64),
    /// booking-svc in-process (false: the test starts booking processes itself).
    pub booking_in_process: bool,
    /// INLINE_ASSIGN.
    pub inline_assign: bool,
    /// INLINE_ASSIGN_TIMEOUT_MS.
    pub inline_timeout_ms: u64,
    /// IDEMPOTENCY_RETENTION_S.
    pub idempotency_retention_s: u64,
    /// The PostgreSQL server to create the test's database on (its admin URL), instead of
    /// the shared local one: a private cluster that the test may stop and restart.
    pub database_server: Option<String>,
    /// A database per service (three `DATABASE_URL`s) instead of one shared by all three.
    pub database_per_service: bool,
    /// Mutual TLS everywhere (certificates made for the test); processes then report
    /// health on a plain-text `HEALTH_ADDR`.
    pub tls: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            tables: vec![("t1", 4)],
            assign_process: false,
            notify_process: false,
            reassign_backoff_ms: (100, 1_000),
            booking_in_process: true,
            inline_assign: true,
            inline_timeout_ms: 800,
            idempotency_retention_s: 604_800,
            database_server: None,
            database_per_service: false,
            tls: false,
        }
    }
}

/// The running stack.
pub struct Stack {
    pub booking: Option<Svc>,
    pub notify: Svc,
    pub assign: Svc,
    pub smtp: SmtpSink,
    /// booking-svc's database (every service's, unless `database_per_service`).
    pub db: TestDb,
    /// assign-svc's and notify-svc's own databases, with `database_per_service`.
    pub own_dbs: Option<(TestDb, TestDb)>,
    pub options: Options,
    /// The test's certificates, with `tls`.
    pub pki: Option<LocalPki>,
    /// How the test's clients reach the services: over TLS as `staff`, with `tls`.
    pub client_tls: Option<ClientTls>,
    _pki_dir: tempfile::TempDir,
    _mail_dir: tempfile::TempDir,
}

/// The test clients' service identity `staff` listed as a booking client: with mutual TLS
/// the services check callers (deny by default), and the tests' clients present the
/// `staff` certificate, without a token.
const STAFF_CLIENT_POLICY: &str = r#"{"methods": {
    "/booking.v1.BookingService/CreateBooking": {"services": ["staff"], "roles": ["staff"]},
    "/booking.v1.BookingService/EditBooking": {"services": ["staff"], "roles": ["staff"]},
    "/booking.v1.BookingService/CancelBooking": {"services": ["staff"], "roles": ["staff"]},
    "/booking.v1.BookingService/GetBooking": {"services": ["staff"], "roles": ["staff"]},
    "/booking.v1.BookingService/ListBookings": {"services": ["staff"], "roles": ["staff"]},
    "/booking.v1.BookingService/GetBookingHistory": {"services": ["staff"], "roles": ["staff"]},
    "/booking.v1.BookingService/WatchBookingChanges": {"services": ["staff"], "roles": ["staff"]},
    "/booking.v1.BookingService/GetRestaurant": {"services": ["staff"], "roles": ["staff"]},
    "/booking.v1.BookingService/PutRestaurant": {"services": ["staff"], "roles": ["floor-admin"]},
    "/assign.v1.AssignService/PutFloorPlan": {"services": ["staff"], "roles": ["floor-admin"]},
    "/assign.v1.AssignService/GetFloorPlan": {"services": ["staff"], "roles": ["staff", "floor-admin"]},
    "/notify.v1.NotifyService/GetDelivery": {"services": ["staff"], "roles": ["staff"]},
    "/notify.v1.NotifyService/ListDeliveries": {"services": ["staff"], "roles": ["staff"]}
}}"#;

/// The policy file of the test stack (written beside `pki`'s certificates).
pub fn staff_client_policy(pki: &LocalPki) -> std::path::PathBuf {
    let path = pki.dir.join("authz-policy.json");
    std::fs::write(&path, STAFF_CLIENT_POLICY).expect("write the policy");
    path
}

/// Sets the TLS settings of `name` from `pki` (mutual TLS, clients checking `pki`'s CA),
/// and the policy that lets the test clients (`staff` certificate) in.
pub fn secure(common: &mut CommonSettings, pki: &LocalPki, name: &str) {
    common.tls_cert = Some(pki.cert(name));
    common.tls_key = Some(pki.key(name));
    common.tls_client_ca = Some(pki.ca());
    common.tls_ca = Some(pki.ca());
    common.auth.authz_policy = Some(staff_client_policy(pki));
}

/// The TLS variables of `name` from `pki` plus a free plain-text `HEALTH_ADDR`, for a process.
pub fn secure_env(pki: &LocalPki, name: &str) -> Vec<(&'static str, String)> {
    vec![
        ("TLS_CERT", pki.cert(name).display().to_string()),
        ("TLS_KEY", pki.key(name).display().to_string()),
        ("TLS_CLIENT_CA", pki.ca().display().to_string()),
        ("TLS_CA", pki.ca().display().to_string()),
        ("HEALTH_ADDR", format!("127.0.0.1:{}", super::free_port())),
        ("AUTHZ_POLICY", staff_client_policy(pki).display().to_string()),
    ]
}

/// Clients checking `pki`'s CA and presenting `name`'s certificate.
pub fn client_tls(pki: &LocalPki, name: &str) -> ClientTls {
    ClientTls::new(&pki.ca(), Some((&pki.cert(name), &pki.key(name)))).expect("client TLS")
}

impl Stack {
    /// Starts everything per `options` and puts RESTAURANT's floor plan.
    pub async fn start(options: Options) -> Self {
        let db = match &options.database_server {
            Some(server) => TestDb::new_on(server).await,
            None => TestDb::new().await,
        };
        let own_dbs = match options.database_per_service {
            true => Some((TestDb::new().await, TestDb::new().await)),
            false => None,
        };
        let (assign_url, notify_url) = match &own_dbs {
            Some((assign, notify)) => (assign.url.clone(), notify.url.clone()),
            None => (db.url.clone(), db.url.clone()),
        };
        let smtp = SmtpSink::start().await;
        let pki_dir = tempfile::tempdir().expect("certificate dir");
        let pki = options.tls.then(|| {
            let names = ["booking-svc", "assign-svc", "notify-svc", "staff"];
            LocalPki::create(pki_dir.path(), DEFAULT_TRUST_DOMAIN, &names).expect("test certificates").0
        });
        let client_tls = pki.as_ref().map(|pki| client_tls(pki, "staff"));
        let process_env = |mut env: Vec<(&'static str, String)>, name: &str| {
            if let Some(pki) = &pki {
                env.extend(secure_env(pki, name));
            }
            env
        };
        let assign = if options.assign_process {
            let (base, cap) = (options.reassign_backoff_ms.0.to_string(), options.reassign_backoff_ms.1.to_string());
            let mut env: Vec<(&'static str, String)> =
                assign_env(&assign_url).into_iter().map(|(k, v)| (k, v.to_string())).collect();
            env.retain(|(k, _)| !k.starts_with("REASSIGN_BACKOFF"));
            env.extend([("REASSIGN_BACKOFF_BASE_MS", base), ("REASSIGN_BACKOFF_CAP_MS", cap)]);
            let env = process_env(env, "assign-svc");
            let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
            Svc::Process(ServiceProcess::start_serving("assign-svc", &env).await)
        } else {
            let mut settings = assign_svc::Settings::for_database(&assign_url);
            settings.reassign_backoff_base_ms = options.reassign_backoff_ms.0;
            settings.reassign_backoff_cap_ms = options.reassign_backoff_ms.1;
            settings.reassign_lease_ms = 3_000;
            if let Some(pki) = &pki {
                secure(&mut settings.common, pki, "assign-svc");
            }
            Svc::InProcess(Running::start_tls(move |l, s| assign_svc::run(settings, l, s), client_tls.clone()).await)
        };
        let mail_dir = tempfile::tempdir().expect("mail dir");
        let notify = if options.notify_process {
            let mail_dir = mail_dir.path().display().to_string();
            let env = process_env(notify_env(&notify_url, &smtp.url(), &mail_dir), "notify-svc");
            let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
            Svc::Process(ServiceProcess::start_serving("notify-svc", &env).await)
        } else {
            let mut notify_settings = notify_svc::Settings::for_database(&notify_url);
            notify_settings.smtp_url = Some(smtp.url());
            notify_settings.mail_dir = mail_dir.path().to_path_buf();
            notify_settings.retry_base_ms = 100;
            notify_settings.retry_cap_ms = 1_000;
            notify_settings.worker_poll_ms = 500;
            notify_settings.smtp_timeout_ms = 3_000;
            if let Some(pki) = &pki {
                secure(&mut notify_settings.common, pki, "notify-svc");
            }
            Svc::InProcess(
                Running::start_tls(move |l, s| notify_svc::run(notify_settings, l, s), client_tls.clone()).await,
            )
        };
        let mut stack = Self {
            booking: None,
            notify,
            assign,
            smtp,
            db,
            own_dbs,
            options: options.clone(),
            pki,
            client_tls,
            _pki_dir: pki_dir,
            _mail_dir: mail_dir,
        };
        stack.put_floor_plan(RESTAURANT, &options.tables).await;
        if options.booking_in_process {
            let settings = stack.booking_settings();
            let tls = stack.client_tls.clone();
            stack.booking =
                Some(Svc::InProcess(Running::start_tls(move |l, s| booking_svc::run(settings, l, s), tls).await));
        }
        stack
    }

    /// booking-svc settings for this stack: short intervals so tests stay quick.
    pub fn booking_settings(&self) -> booking_svc::Settings {
        let mut s = booking_svc::Settings::for_database(&self.db.url, &self.assign.url(), &self.notify.url());
        s.inline_assign = self.options.inline_assign;
        s.inline_assign_timeout_ms = self.options.inline_timeout_ms;
        s.idempotency_retention_s = self.options.idempotency_retention_s;
        s.inline_record_grace_ms = 300;
        s.worker_lease_ms = 3_000;
        s.worker_backoff_base_ms = 50;
        s.worker_backoff_max_ms = 1_000;
        s.worker_poll_ms = 500;
        s.peer_timeout_ms = 1_500;
        if let Some(pki) = &self.pki {
            secure(&mut s.common, pki, "booking-svc");
        }
        s
    }

    /// The same settings as environment variables, for a booking-svc process.
    pub fn booking_env(&self) -> Vec<(String, String)> {
        let s = self.booking_settings();
        vec![
            ("DATABASE_URL".into(), self.db.url.clone()),
            ("ASSIGN_URL".into(), s.assign_url.clone()),
            ("NOTIFY_URL".into(), s.notify_url.clone()),
            ("INLINE_ASSIGN".into(), s.inline_assign.to_string()),
            ("INLINE_ASSIGN_TIMEOUT_MS".into(), s.inline_assign_timeout_ms.to_string()),
            ("INLINE_RECORD_GRACE_MS".into(), s.inline_record_grace_ms.to_string()),
            ("IDEMPOTENCY_RETENTION_S".into(), s.idempotency_retention_s.to_string()),
            ("WORKER_LEASE_MS".into(), s.worker_lease_ms.to_string()),
            ("WORKER_BACKOFF_BASE_MS".into(), s.worker_backoff_base_ms.to_string()),
            ("WORKER_BACKOFF_MAX_MS".into(), s.worker_backoff_max_ms.to_string()),
            ("WORKER_POLL_MS".into(), s.worker_poll_ms.to_string()),
            ("PEER_TIMEOUT_MS".into(), s.peer_timeout_ms.to_string()),
            ("SHUTDOWN_GRACE_MS".into(), "2000".into()),
        ]
        .into_iter()
        .chain(self.pki.iter().flat_map(|pki| secure_env(pki, "booking-svc")).map(|(k, v)| (k.to_string(), v)))
        .collect()
    }

    /// Starts a booking-svc process with this stack's settings plus `extra` variables
    /// (e.g. `CRASH_AT`), waiting until it serves.
    pub async fn booking_process(&self, extra: &[(&str, &str)]) -> ServiceProcess {
        let mut env = self.booking_env();
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        ServiceProcess::start_serving("booking-svc", &env).await
    }

    /// A client of the in-process booking-svc.
    pub fn booking(&self) -> BookingServiceClient<platform::grpc::Channel> {
        let url = self.booking.as_ref().expect("booking-svc runs in-process").url();
        BookingServiceClient::new(self.channel(&url))
    }

    /// A channel to `url` as this stack's clients reach its services.
    pub fn channel(&self, url: &str) -> platform::grpc::Channel {
        platform::grpc::connect_with(url, self.client_tls.as_ref()).expect("channel")
    }

    /// A client of assign-svc.
    pub fn assign(&self) -> AssignServiceClient<platform::grpc::Channel> {
        AssignServiceClient::new(self.channel(&self.assign.url()))
    }

    /// A client of notify-svc.
    pub fn notify(&self) -> NotifyServiceClient<platform::grpc::Channel> {
        NotifyServiceClient::new(self.channel(&self.notify.url()))
    }

    /// Replaces a restaurant's floor plan.
    pub async fn put_floor_plan(&self, restaurant: &str, tables: &[(&str, i32)]) {
        let tables: Vec<(&str, i32, &str)> = tables.iter().map(|(id, seats)| (*id, *seats, "")).collect();
        self.put_floor_plan_with_groups(restaurant, &tables).await;
    }

    /// Replaces a restaurant's floor plan: (id, seats, combination group) per table.
    pub async fn put_floor_plan_with_groups(&self, restaurant: &str, tables: &[(&str, i32, &str)]) {
        let tables = tables
            .iter()
            .map(|(id, seats, group)| apb::Table {
                id: id.to_string(),
                seats: *seats,
                combine_group: group.to_string(),
            })
            .collect();
        self.assign()
            .put_floor_plan(apb::PutFloorPlanRequest { restaurant_id: restaurant.to_string(), tables })
            .await
            .expect("put floor plan");
    }

    /// Waits until nothing more can be mailed about `bookings`: no email queued in
    /// booking-svc's outbox, no open reassign job, no version still handed to its request
    /// (the background would take it over), every delivery of notify-svc final, and
    /// every SENT delivery at the SMTP server.
    pub async fn settle(&self, bookings: &[&str]) {
        let client = self.db.client().await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let Err(last) = self.settled(&client, bookings).await else { return };
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out after 20s waiting for the outbox, jobs and deliveries to settle: {last}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `Ok` once settled (see [`Stack::settle`]), else what is still moving.
    async fn settled(&self, client: &tokio_postgres::Client, bookings: &[&str]) -> Result<(), String> {
        let open = client
            .query(
                "SELECT 'outbox ' || kind || ':' || version || ' attempts ' || attempts || ' due in ' \
                        || round(EXTRACT(EPOCH FROM due_at - now())::numeric, 2) || 's, last error ' \
                        || COALESCE(last_error, '-') FROM booking.outbox WHERE state = 'QUEUED' \
                 UNION ALL SELECT 'reassign job v' || version FROM booking.reassign_jobs WHERE state = 'OPEN' \
                 UNION ALL SELECT 'hand-off of v' || version FROM booking.bookings WHERE handoff_due_at IS NOT NULL",
                &[],
            )
            .await
            .map_err(|e| format!("reading the queues: {e}"))?;
        if !open.is_empty() {
            let open: Vec<String> = open.iter().map(|r| r.get(0)).collect();
            return Err(open.join("; "));
        }
        let mut sent = 0;
        for id in bookings {
            let deliveries = self
                .notify()
                .list_deliveries(npb::ListDeliveriesRequest { booking_id: id.to_string() })
                .await
                .map_err(|status| format!("ListDeliveries: {status:?}"))?
                .into_inner()
                .deliveries;
            if let Some(queued) = deliveries.iter().find(|d| d.state == npb::DeliveryState::Queued as i32) {
                return Err(format!("delivery queued: {queued:?}"));
            }
            sent += deliveries.iter().filter(|d| d.state == npb::DeliveryState::Sent as i32).count();
        }
        let at_smtp = self.smtp.mails().iter().filter(|m| bookings.contains(&m.booking_id().as_str())).count();
        if at_smtp < sent {
            return Err(format!("{sent} deliveries SENT, {at_smtp} mails at the SMTP server"));
        }
        Ok(())
    }

    /// Mails received for `booking` as `KIND:version` strings, sorted.
    pub fn mails_for(&self, booking: &str) -> Vec<String> {
        let mut mails: Vec<String> = self
            .smtp
            .mails()
            .iter()
            .filter(|m| m.booking_id() == booking)
            .map(|m| format!("{}:{}", m.kind(), m.version()))
            .collect();
        mails.sort();
        mails
    }

    /// Waits until `booking` has the mail `KIND:version`.
    pub async fn wait_for_mail(&self, booking: &str, kind: &str, version: i64) {
        eventually(Duration::from_secs(15), &format!("{kind} v{version} at the SMTP server"), || async {
            (self.smtp.count_key(booking, kind, version) > 0).then_some(())
        })
        .await
    }

    /// A value read from booking-svc's own tables (for checks the API does not show).
    pub async fn count(&self, sql: &str) -> i64 {
        self.db.client().await.query_one(sql, &[]).await.expect("count query").get(0)
    }
}

/// Environment of an assign-svc process on `database_url`, with quick retries.
pub fn assign_env(database_url: &str) -> Vec<(&'static str, &str)> {
    vec![
        ("DATABASE_URL", database_url),
        ("REASSIGN_BACKOFF_BASE_MS", "100"),
        ("REASSIGN_BACKOFF_CAP_MS", "1000"),
        ("REASSIGN_LEASE_MS", "3000"),
    ]
}

/// Environment of a notify-svc process on `database_url` sending to `smtp_url`, with the
/// same quick retries as the in-process one.
pub fn notify_env(database_url: &str, smtp_url: &str, mail_dir: &str) -> Vec<(&'static str, String)> {
    vec![
        ("DATABASE_URL", database_url.to_string()),
        ("SMTP_URL", smtp_url.to_string()),
        ("MAIL_DIR", mail_dir.to_string()),
        ("RETRY_BASE_MS", "100".to_string()),
        ("RETRY_CAP_MS", "1000".to_string()),
        ("WORKER_POLL_MS", "500".to_string()),
        ("SMTP_TIMEOUT_MS", "3000".to_string()),
        ("DELIVERY_LEASE_MS", "4000".to_string()),
    ]
}

/// A time `days` days and `hours` hours after the next midnight UTC: far enough ahead and
/// on a whole hour, so slots are easy to reason about.
pub fn slot(days: u64, hours: u64) -> SystemTime {
    let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).expect("clock").as_secs();
    let midnight = (now / 86_400 + 1) * 86_400;
    SystemTime::UNIX_EPOCH + Duration::from_secs(midnight + days * 86_400 + hours * 3_600)
}

/// A create request for RESTAURANT at `start` for `party` guests (90 minutes).
pub fn create_request(start: SystemTime, party: i32) -> pb::CreateBookingRequest {
    pb::CreateBookingRequest {
        restaurant_id: RESTAURANT.to_string(),
        guest: Some(pb::Guest { name: "Ada Lovelace".into(), email: "ada@example.com".into(), phone: String::new() }),
        party_size: party,
        start_time: Some(platform::proto::timestamp(start)),
        duration: None,
        notes: String::new(),
        suppress_emails: false,
        idempotency_key: String::new(),
    }
}

/// An edit request for `booking_id` that changes nothing yet.
pub fn edit_request(booking_id: &str) -> pb::EditBookingRequest {
    pb::EditBookingRequest { booking_id: booking_id.to_string(), ..Default::default() }
}

/// The booking as booking-svc answers it now.
pub async fn get_booking(client: &mut BookingServiceClient<platform::grpc::Channel>, booking_id: &str) -> pb::Booking {
    client
        .get_booking(pb::GetBookingRequest { booking_id: booking_id.to_string() })
        .await
        .expect("get booking")
        .into_inner()
        .booking
        .expect("booking")
}

/// The history of `booking_id` as `TYPE:version` strings.
pub async fn history(
    client: &mut BookingServiceClient<platform::grpc::Channel>,
    booking_id: &str,
) -> Vec<pb::BookingEvent> {
    client
        .get_booking_history(pb::GetBookingHistoryRequest { booking_id: booking_id.to_string() })
        .await
        .expect("history")
        .into_inner()
        .events
}

/// `TYPE:version` of each event, e.g. `EDITED:2`.
pub fn event_names(events: &[pb::BookingEvent]) -> Vec<String> {
    events
        .iter()
        .map(|e| {
            let name = pb::BookingEventType::try_from(e.r#type)
                .map(|t| t.as_str_name().trim_start_matches("BOOKING_EVENT_TYPE_").to_string())
                .unwrap_or_default();
            format!("{name}:{}", e.version)
        })
        .collect()
}

/// The string field `key` of an event's detail.
pub fn detail_str(event: &pb::BookingEvent, key: &str) -> Option<String> {
    use prost_types::value::Kind;
    match event.detail.as_ref()?.fields.get(key)?.kind.as_ref()? {
        Kind::StringValue(s) => Some(s.clone()),
        _ => None,
    }
}

/// The boolean field `key` of an event's detail.
pub fn detail_bool(event: &pb::BookingEvent, key: &str) -> Option<bool> {
    use prost_types::value::Kind;
    match event.detail.as_ref()?.fields.get(key)?.kind.as_ref()? {
        Kind::BoolValue(b) => Some(*b),
        _ => None,
    }
}
