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
