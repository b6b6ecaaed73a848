//! A fresh PostgreSQL database per test, created on the local server and dropped after.

use std::str::FromStr;
use tokio_postgres::NoTls;

/// The server the tests create their databases on (`TEST_DATABASE_URL`, default: local).
pub fn admin_url() -> String {
    std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

/// A database that exists for one test.
pub struct TestDb {
    pub name: String,
    pub url: String,
    admin: String,
}

impl TestDb {
    /// Creates a database with a unique name.
    pub async fn new() -> Self {
        Self::new_on(&admin_url()).await
    }

    /// Creates a database with a unique name on the server of `admin` (a private cluster).
    pub async fn new_on(admin: &str) -> Self {
        let admin = admin.to_string();
        let name = format!("t_{}", uuid::Uuid::new_v4().simple());
        let client = connect(&admin).await;
        client.batch_execute(&format!("CREATE DATABASE {name}")).await.expect("create test database");
        let mut config = tokio_postgres::Config::from_str(&admin).expect("admin url");
        config.dbname(&name);
        let url = url_with_db(&admin, &name);
        drop(config);
        Self { name, url, admin }
    }

    /// A name for a database that does not exist (yet), on the same server.
    pub fn missing() -> Self {
        let admin = admin_url();
        let name = format!("t_{}", uuid::Uuid::new_v4().simple());
        let url = url_with_db(&admin, &name);
        Self { name, url, admin }
    }

    /// Creates the database (for one made with [`TestDb::missing`]).
    pub async fn create(&self) {
        connect(&self.admin)
            .await
            .batch_execute(&format!("CREATE DATABASE {}", self.name))
            .await
            .expect("create database");
    }

    /// Drops the database now, cutting every connection to it.
    pub async fn drop_now(&self) {
        connect(&self.admin)
            .await
            .batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name))
            .await
            .expect("drop database");
    }

    /// A client connected to this database.
    pub async fn client(&self) -> tokio_postgres::Client {
        connect(&self.url).await
    }

    /// Waits until every other session on this database is idle (no statement running,
    /// none waiting, no transaction open): whatever was under way, a cut-off call's
    /// leftovers included, has finished.
    pub async fn wait_until_quiet(&self) {
        let client = self.client().await;
        super::eventually(std::time::Duration::from_secs(20), "every other session to be idle", || async {
            let busy: i64 = client
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
                     AND pid <> pg_backend_pid() AND state IS DISTINCT FROM 'idle'",
                    &[],
                )
                .await
                .ok()?
                .get(0);
            (busy == 0).then_some(())
        })
        .await
    }

    /// Waits until `n` sessions on this database wait for a lock (a row, an advisory lock),
    /// as PostgreSQL itself reports them, so a test acts once a contender is really queued
    /// rather than after a sleep that hopes so.
    pub async fn wait_for_lock_waiters(&self, n: i64) {
        let client = self.client().await;
        super::eventually(std::time::Duration::from_secs(20), &format!("{n} sessions waiting for a lock"), || async {
            let waiting: i64 = client
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
                    &[],
                )
                .await
                .ok()?
                .get(0);
            (waiting >= n).then_some(())
        })
        .await
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let admin = self.admin.clone();
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
            runtime.block_on(async move {
                if let Ok((client, connection)) = tokio_postgres::connect(&admin, NoTls).await {
                    tokio::spawn(connection);
                    let _ = client.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await;
                }
            });
        })
        .join();
    }
}

/// `url` with its database name replaced by `name`.
pub fn url_with_db(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let base = match base[scheme_end..].find('/') {
        Some(slash) => &base[..scheme_end + slash],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    }
}

/// A connected client (its connection driven on the current runtime).
pub async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await.expect("connect to PostgreSQL");
    tokio::spawn(connection);
    client
}
