//! First-start credentials: when no admin or service token is configured, generate one
//! of each, write them to a file only the owner can read, and reuse that file on later
//! starts. The tokens themselves are never logged; the file's path is.

use super::random_secret;
use crate::config::Secret;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::Path;

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TokenFile {
    admin_token: String,
    service_token: String,
}

/// Reads the token file, creating it with fresh tokens when missing.
/// Returns `(admin, service)`.
pub fn load_or_create(path: &Path) -> std::io::Result<(Secret, Secret)> {
    match std::fs::read(path) {
        Ok(bytes) => {
            let file: TokenFile = serde_json::from_slice(&bytes).map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{}: {e}", path.display()),
                )
            })?;
            Ok((
                Secret::new(file.admin_token),
                Secret::new(file.service_token),
            ))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let file = TokenFile {
                admin_token: format!("eqa_{}", random_secret()),
                service_token: format!("eqs_{}", random_secret()),
            };
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                options.mode(0o600);
            }
            let mut f = options.open(path)?;
            let json = serde_json::to_vec_pretty(&file).map_err(std::io::Error::other)?;
            f.write_all(&json)?;
            f.sync_all()?;
            Ok((
                Secret::new(file.admin_token),
                Secret::new(file.service_token),
            ))
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_an_owner_only_file_once_and_reuses_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/tokens.json");
        let (a1, s1) = load_or_create(&path).unwrap();
        assert!(a1.expose().starts_with("eqa_") && s1.expose().starts_with("eqs_"));
        assert_ne!(a1, s1);
        let (a2, s2) = load_or_create(&path).unwrap();
        assert_eq!((a1, s1), (a2, s2));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
