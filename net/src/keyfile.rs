//! Private key files: created with mode 0600 from the first byte, refused when others can read.
//!
//! Generic over the bytes: the node keeps every secret here (TLS key, BLS share, consensus
//! signing key). Invariant: a file written by [`write_private`] is never, even briefly,
//! readable by group or other, because the mode is given to `open(2)` itself (and the file
//! must not exist yet, so an existing wider file is never reused).

use std::io::Write;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// A key file could not be written or read.
#[derive(Debug, Error)]
pub enum KeyFileError {
    /// The file is readable or writable by group or other.
    #[error(
        "key file {path} has mode {mode:04o}: group/other may access it; run `chmod 600 {path}`"
    )]
    TooOpen {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The path already exists; keys are never overwritten in place.
    #[error("key file {path} already exists; refusing to overwrite a key")]
    AlreadyExists {
        /// The file.
        path: PathBuf,
    },
    /// Any other I/O failure, with the path.
    #[error("key file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The failure.
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> KeyFileError + '_ {
    move |source| KeyFileError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Creates `path` with mode 0600 and writes `bytes`, fsynced. Fails if `path` exists.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), KeyFileError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            KeyFileError::AlreadyExists {
                path: path.to_owned(),
            }
        } else {
            KeyFileError::Io {
                path: path.to_owned(),
                source: e,
            }
        }
    })?;
    // The umask can only remove bits, so 0600 stays 0600 or narrower; check anyway.
    check_mode(path, &file)?;
    file.write_all(bytes).map_err(io(path))?;
    file.sync_all().map_err(io(path))?;
    Ok(())
}

/// Reads a private key file, refusing it if group or other have any access.
pub fn read_private(path: &Path) -> Result<Vec<u8>, KeyFileError> {
    let file = std::fs::File::open(path).map_err(io(path))?;
    check_mode(path, &file)?;
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut &file, &mut bytes).map_err(io(path))?;
    Ok(bytes)
}

#[cfg(unix)]
fn check_mode(path: &Path, file: &std::fs::File) -> Result<(), KeyFileError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = file.metadata().map_err(io(path))?.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(KeyFileError::TooOpen {
            path: path.to_owned(),
            mode,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_mode(_path: &Path, _file: &std::fs::File) -> Result<(), KeyFileError> {
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn written_key_has_mode_0600_and_reads_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("k.pem");
        write_private(&path, b"secret").expect("write");
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(read_private(&path).expect("read"), b"secret");
    }

    #[test]
    fn group_or_world_readable_key_is_refused_naming_path_and_mode() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("k.pem");
        write_private(&path, b"secret").expect("write");
        for mode in [0o640, 0o604, 0o660, 0o644] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
            match read_private(&path) {
                Err(KeyFileError::TooOpen { path: p, mode: m }) => {
                    assert_eq!(p, path);
                    assert_eq!(m, mode);
                    assert!(format!("{}", KeyFileError::TooOpen { path: p, mode: m })
                        .contains(&format!("{mode:04o}")));
                }
                other => panic!("mode {mode:o} must be refused, got {other:?}"),
            }
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).expect("chmod");
        assert_eq!(read_private(&path).expect("0400 is private"), b"secret");
    }

    #[test]
    fn existing_file_is_never_overwritten() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("k.pem");
        std::fs::write(&path, b"old").expect("write");
        assert!(matches!(
            write_private(&path, b"new"),
            Err(KeyFileError::AlreadyExists { .. })
        ));
        assert_eq!(std::fs::read(&path).expect("read"), b"old");
    }
}
