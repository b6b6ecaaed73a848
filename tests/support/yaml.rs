//! The repository's YAML files (compose, deploy/ configuration) as JSON values.
//!
//! Parsed by PyYAML, which the machine's Python has, so no YAML crate enters the build for
//! tests alone.

use serde_json::Value;
use std::process::Command;

/// The YAML file at `relative` (to the workspace root) as JSON.
pub fn load(relative: &str) -> Value {
    let path = super::workspace_root().join(relative);
    let output = Command::new("python3")
        .args(["-c", "import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))"])
        .arg(&path)
        .output()
        .expect("run python3 with PyYAML");
    assert!(output.status.success(), "{relative}: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{relative} as JSON: {e}"))
}

/// Every document of the YAML file at `relative` (a multi-document file), as JSON.
pub fn load_all(relative: &str) -> Vec<Value> {
    let path = super::workspace_root().join(relative);
    let output = Command::new("python3")
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps([d for d in yaml.safe_load_all(open(sys.argv[1])) if d]))",
        ])
        .arg(&path)
        .output()
        .expect("run python3 with PyYAML");
    assert!(output.status.success(), "{relative}: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{relative} as JSON: {e}"))
}
