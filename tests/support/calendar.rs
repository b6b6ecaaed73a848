//! An empty calendar that receives the invitations a test's SMTP server got, applied as
//! RFC 5546 says by an independent parser (`calendar_store.py`, on PyPI's `icalendar`).

use serde_json::Value;
use std::{path::PathBuf, process::Command};

/// Applies the invitations in `files` (emails), in that order, to an empty calendar.
pub fn calendar_after(files: &[PathBuf]) -> Value {
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_string());
    let output = Command::new(python)
        .arg(super::workspace_root().join("tests/support/calendar_store.py"))
        .args(files)
        .output()
        .expect("run calendar_store.py (python3 with icalendar: pip install icalendar)");
    assert!(output.status.success(), "calendar_store.py failed: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("calendar_store.py prints JSON")
}
