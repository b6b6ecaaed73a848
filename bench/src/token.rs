//! The signing key of staff tokens, as `booking-token` and `booking-stack` keep it: a
//! PKCS#8 PEM file, made on first use and readable by its owner only; its key id derived
//! from the public key.

use platform::auth::jwt::SigningKey;
use std::path::Path;

/// The key in `path`, or a new Ed25519 key written there when the file does not exist.
pub fn load_or_create_key(path: &Path) -> anyhow::Result<SigningKey> {
    let key = match std::fs::read_to_string(path) {
        Ok(pem) => SigningKey::from_pem("", &pem).map_err(|e| anyhow::anyhow!("'{}': {e}", path.display()))?,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let key = SigningKey::generate_ed25519("")?;
            write_private(path, &key.to_pem())?;
            key
        }
        Err(error) => anyhow::bail!("cannot read '{}': {error}", path.display()),
    };
    let kid = key.derived_kid()?;
    Ok(key.with_kid(&kid))
}

/// Writes `text` to a new file at `path` that only its owner may read.
fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(|e| anyhow::anyhow!("cannot create '{}': {e}", path.display()))?;
    file.write_all(text.as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_made_once_and_keeps_its_kid() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("key.pem");
        let made = load_or_create_key(&path).expect("made");
        let loaded = load_or_create_key(&path).expect("loaded");
        assert_eq!(made.kid(), loaded.kid());
        assert_eq!(made.kid().len(), 16);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777, 0o600);
        }
    }
}
