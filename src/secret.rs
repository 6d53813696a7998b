//! The generated JWT secret, for installs that set none: created once by
//! the server with mode 0600 beside the database and reused on every start,
//! so that tokens minted with `huddle token` (which only reads it) keep
//! working across restarts.

use std::fs::OpenOptions;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::db::connection::Target;

/// Where the generated secret lives for a database.
pub fn path_for(target: &Target) -> PathBuf {
    match target {
        Target::Sqlite(p) if p != ":memory:" => PathBuf::from(format!("{p}.jwt-secret")),
        _ => PathBuf::from("huddle.jwt-secret"),
    }
}

/// Reads the secret at `path`, creating it if missing. Returns the secret
/// and whether it was created now.
pub fn load_or_create(path: &Path) -> Result<(String, bool), String> {
    match OpenOptions::new().write(true).create_new(true).mode(0o600).open(path) {
        Ok(mut file) => {
            let mut bytes = [0u8; 32];
            getrandom::fill(&mut bytes).map_err(|e| format!("no randomness for a secret: {e}"))?;
            let secret: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            file.write_all(secret.as_bytes())
                .and_then(|_| file.sync_all())
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            Ok((secret, true))
        }
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {
            let secret = load(path)?.ok_or_else(|| format!("{} vanished while it was read", path.display()))?;
            Ok((secret, false))
        }
        Err(e) => Err(format!("cannot create {}: {e}", path.display())),
    }
}

/// Reads the secret at `path`; `None` if there is no file.
pub fn load(path: &Path) -> Result<Option<String>, String> {
    let mut secret = String::new();
    match std::fs::File::open(path).and_then(|mut f| f.read_to_string(&mut secret)) {
        Ok(_) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    }
    let secret = secret.trim().to_owned();
    if secret.is_empty() {
        return Err(format!("{} is empty; delete it to generate a new secret", path.display()));
    }
    Ok(Some(secret))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn created_once_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.jwt-secret");
        let (a, created) = load_or_create(&path).unwrap();
        assert!(created);
        assert_eq!(a.len(), 64);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let (b, created) = load_or_create(&path).unwrap();
        assert!(!created);
        assert_eq!(a, b);
        assert_eq!(load(&path).unwrap(), Some(a));
    }

    #[test]
    fn loading_never_creates() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.jwt-secret");
        assert_eq!(load(&path).unwrap(), None);
        assert!(!path.exists());
    }
}
