//! Filesystem layer: instance folders under `fs_root`. The only module besides the stores that
//! touches the outside world.
//!
//! Safety rules: an instance folder is exactly `<fs_root>/<domain>` where the domain is one validated
//! path component; cozyform never acts through a symlink there; `fs_root` is absolute and never `/`.

use std::io;
use std::path::{Component, Path, PathBuf};

/// What is on disk for one instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct FsState {
    /// `<fs_root>/<domain>` is a real directory.
    pub root: bool,
    /// `<fs_root>/<domain>/.cozy_trash` is a real directory.
    pub trash: bool,
    /// `<fs_root>/<domain>` is a symlink (cozyform refuses to act through it).
    pub symlink: bool,
}

/// Errors of the filesystem layer.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    #[error("refusing to use {0}: it is a symbolic link")]
    Symlink(PathBuf),
    #[error("refusing to use {path}: {why}")]
    Unsafe { path: PathBuf, why: String },
    #[error("{op} {path}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
}

/// The folder of an instance, checked to be a direct child of `fs_root`.
pub fn instance_dir(fs_root: &Path, domain: &str) -> Result<PathBuf, FsError> {
    let unsafe_path = |why: &str| FsError::Unsafe {
        path: fs_root.join(domain),
        why: why.to_string(),
    };
    if !fs_root.is_absolute() || fs_root == Path::new("/") {
        return Err(unsafe_path("fs_root must be an absolute directory other than /"));
    }
    let mut comps = Path::new(domain).components();
    match (comps.next(), comps.next()) {
        (Some(Component::Normal(c)), None) if c == domain && !domain.contains('\0') && !domain.contains('\\') => {}
        _ => return Err(unsafe_path("the domain is not a single path component")),
    }
    Ok(fs_root.join(domain))
}

fn is_dir_no_follow(p: &Path) -> (bool, bool) {
    match std::fs::symlink_metadata(p) {
        Ok(m) if m.file_type().is_symlink() => (false, true),
        Ok(m) => (m.is_dir(), false),
        Err(_) => (false, false),
    }
}

/// Looks at an instance's folder.
pub fn probe(fs_root: &Path, domain: &str) -> FsState {
    let Ok(dir) = instance_dir(fs_root, domain) else {
        return FsState::default();
    };
    let (root, symlink) = is_dir_no_follow(&dir);
    let trash = root && is_dir_no_follow(&dir.join(crate::layout::TRASH_DIR_NAME)).0;
    FsState { root, trash, symlink }
}

/// Creates `<fs_root>/<domain>` and the given sub-folders (one component each), mode 0755, refusing
/// symlinks on the way. Existing folders are kept.
pub fn ensure_dirs(fs_root: &Path, domain: &str, subdirs: &[&str]) -> Result<(), FsError> {
    let dir = instance_dir(fs_root, domain)?;
    // fs_root itself may be a link to a mount point; only links inside it are refused.
    std::fs::create_dir_all(fs_root).map_err(|source| FsError::Io {
        op: "mkdir",
        path: fs_root.to_path_buf(),
        source,
    })?;
    mkdir_one(&dir)?;
    for sub in subdirs {
        let mut comps = Path::new(sub).components();
        if !matches!((comps.next(), comps.next()), (Some(Component::Normal(_)), None)) {
            return Err(FsError::Unsafe {
                path: dir.join(sub),
                why: "not a single path component".into(),
            });
        }
        mkdir_one(&dir.join(sub))?;
    }
    Ok(())
}

fn mkdir_one(p: &Path) -> Result<(), FsError> {
    let (is_dir, link) = is_dir_no_follow(p);
    if link {
        return Err(FsError::Symlink(p.to_path_buf()));
    }
    if is_dir {
        return Ok(());
    }
    let mut b = std::fs::DirBuilder::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o755);
    }
    match b.create(p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && is_dir_no_follow(p).0 => Ok(()),
        Err(source) => Err(FsError::Io {
            op: "mkdir",
            path: p.to_path_buf(),
            source,
        }),
    }
}

/// Whether `<fs_root>/<domain>/<sub>` exists as a directory (no symlink followed).
pub fn subdir_exists(fs_root: &Path, domain: &str, sub: &str) -> bool {
    instance_dir(fs_root, domain)
        .map(|d| is_dir_no_follow(&d.join(sub)).0)
        .unwrap_or(false)
}

/// Removes `<fs_root>/<domain>` and everything in it (`RemoveAll`). A missing folder is fine; a
/// symlink in its place is refused.
pub fn remove_instance_dir(fs_root: &Path, domain: &str) -> Result<(), FsError> {
    let dir = instance_dir(fs_root, domain)?;
    match std::fs::symlink_metadata(&dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(FsError::Io {
            op: "stat",
            path: dir,
            source,
        }),
        Ok(m) if m.file_type().is_symlink() => Err(FsError::Symlink(dir)),
        Ok(_) => std::fs::remove_dir_all(&dir).map_err(|source| FsError::Io {
            op: "remove",
            path: dir,
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_cannot_escape_fs_root() {
        let root = Path::new("/srv/cozy");
        for bad in ["..", ".", "a/b", "/etc", "a\\b", ""] {
            assert!(instance_dir(root, bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            instance_dir(root, "a.example:8080").unwrap(),
            PathBuf::from("/srv/cozy/a.example:8080")
        );
        assert!(instance_dir(Path::new("/"), "a.example").is_err());
        assert!(instance_dir(Path::new("rel"), "a.example").is_err());
    }

    #[test]
    fn refuses_symlinked_instance_dirs() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), tmp.path().join("evil.example")).unwrap();
        assert!(matches!(
            ensure_dirs(tmp.path(), "evil.example", &[".cozy_trash"]),
            Err(FsError::Symlink(_))
        ));
        assert!(matches!(
            remove_instance_dir(tmp.path(), "evil.example"),
            Err(FsError::Symlink(_))
        ));
        assert!(probe(tmp.path(), "evil.example").symlink);
        assert!(outside.path().exists());
    }

    #[test]
    fn ensure_then_remove() {
        let tmp = tempfile::tempdir().unwrap();
        ensure_dirs(tmp.path(), "a.example", &[".cozy_trash", "Photos"]).unwrap();
        let s = probe(tmp.path(), "a.example");
        assert!(s.root && s.trash && !s.symlink);
        remove_instance_dir(tmp.path(), "a.example").unwrap();
        assert!(!probe(tmp.path(), "a.example").root);
    }
}
