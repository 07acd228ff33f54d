//! Write mode's local directories (the rollback journals of `vfs::journal`, the default
//! buffer of `sync=<duration>`): private to the user who writes, so that another user on the
//! machine can neither read a transaction's pages, nor plant a file or symlink where ours
//! will be created, nor block our writes by owning the directory first.
//!
//! A directory is private when it is a real directory (not a symlink), owned by the
//! effective user, with no group or other permission bits. One of ours that only lacks the
//! last (a directory made 0755 by an older version, under a umask) is made private with
//! `fchmod` when nobody else could have written into it; one that anybody else can write
//! into, or owns, is refused with a sentence, since what they may have left in it cannot be
//! known. Every check runs on a descriptor opened with `O_NOFOLLOW`, so what is checked is
//! what is changed.

use nix::fcntl::OFlag;
use std::fs::{DirBuilder, File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The directory of write mode's local files that `sub` names (e.g. `journals`), under a
/// base of the user's own: `$XDG_RUNTIME_DIR/ltxvfs/<sub>` when that is set to a private
/// directory of this user, else `<temp dir>/ltxvfs-<euid>/<sub>`. Not created: see
/// [`ensure`].
pub(crate) fn local_dir(sub: &str) -> PathBuf {
    let runtime = std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|d| d.is_absolute() && check(d).is_ok());
    match runtime {
        Some(dir) => dir.join("ltxvfs").join(sub),
        None => std::env::temp_dir()
            .join(format!("ltxvfs-{}", nix::unistd::Uid::effective()))
            .join(sub),
    }
}

/// Makes `dir` and the parents of it that are missing (each 0700), then checks `dir` and
/// every parent it made or that is named `ltxvfs` or `ltxvfs-…` is private (see the module comment).
///
/// # Errors
/// A sentence naming the directory and what is wrong with it.
pub(crate) fn ensure(dir: &Path) -> Result<(), String> {
    // Ours from the first component that is not there yet, or that ltxvfs names: those
    // must be private; the ones above (/tmp, /run/user/0, ~/.local/state) are the system's
    // or the user's.
    let mut ours = Vec::new();
    let mut at = dir;
    loop {
        let named_by_us = at
            .file_name()
            .map(|n| n.to_string_lossy())
            .is_some_and(|n| n == "ltxvfs" || n.starts_with("ltxvfs-"));
        if named_by_us || std::fs::symlink_metadata(at).is_err() {
            ours.push(at.to_path_buf());
        } else if at != dir {
            break;
        }
        match at.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => at = parent,
            _ => break,
        }
    }
    if !ours.iter().any(|p| p == dir) {
        ours.insert(0, dir.to_path_buf());
    }
    for path in ours.iter().rev() {
        match DirBuilder::new().mode(0o700).create(path) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) => return Err(format!("cannot make the directory {}: {e}", path.display())),
        }
        make_private(path)?;
    }
    Ok(())
}

/// Checks `dir` is private, and makes it so if it is ours and nobody else could write into
/// it.
fn make_private(dir: &Path) -> Result<(), String> {
    let (file, mode) = open_dir(dir)?;
    if mode & 0o077 != 0 {
        file.set_permissions(std::fs::Permissions::from_mode(0o700))
            .map_err(|e| {
                format!(
                    "the directory {} is mode {:o} and cannot be made private: {e}",
                    dir.display(),
                    mode & 0o7777
                )
            })?;
    }
    Ok(())
}

/// Checks `dir` is private without changing it.
///
/// # Errors
/// A sentence naming the directory and what is wrong with it.
pub(crate) fn check(dir: &Path) -> Result<(), String> {
    let (_, mode) = open_dir(dir)?;
    if mode & 0o077 != 0 {
        return Err(format!(
            "the directory {} is mode {:o}: others may read it (chmod 700 it)",
            dir.display(),
            mode & 0o7777
        ));
    }
    Ok(())
}

/// `dir` opened without following a symlink, once it is known to be a directory owned by
/// this user that nobody else can write into, with its mode.
fn open_dir(dir: &Path) -> Result<(File, u32), String> {
    let shown = dir.display();
    let file = OpenOptions::new()
        .read(true)
        .custom_flags((OFlag::O_NOFOLLOW | OFlag::O_DIRECTORY).bits())
        .open(dir)
        .map_err(|e| match std::fs::symlink_metadata(dir) {
            Ok(m) if m.file_type().is_symlink() => {
                format!("{shown} is a symlink, not a directory of this user's own (remove it)")
            }
            Ok(m) if !m.is_dir() => format!("{shown} is not a directory (remove it)"),
            _ => format!("cannot open the directory {shown}: {e}"),
        })?;
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot read the directory {shown}: {e}"))?;
    let me = nix::unistd::Uid::effective().as_raw();
    if meta.uid() != me {
        return Err(format!(
            "the directory {shown} belongs to uid {}, not to this user (uid {me}): \
             remove it, or set TMPDIR to a directory of your own",
            meta.uid()
        ));
    }
    let mode = meta.mode();
    if mode & 0o022 != 0 {
        return Err(format!(
            "the directory {shown} is mode {:o}: others can write into it, so it cannot be \
             made private (remove it)",
            mode & 0o7777
        ));
    }
    Ok((file, mode))
}

/// Creates the new, empty file `path` (mode 0600, never through a symlink), removing what a
/// crash left at that name first: only for paths in a directory [`ensure`] made private.
///
/// # Errors
/// The I/O error of the create.
pub(crate) fn create_fresh(path: &Path) -> std::io::Result<File> {
    let open = || {
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(OFlag::O_NOFOLLOW.bits())
            .open(path)
    };
    match open() {
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {
            std::fs::remove_file(path)?;
            open()
        }
        other => other,
    }
}

/// Options that open (or create) a file of write mode's own: mode 0600, never through a
/// symlink.
pub(crate) fn private_file() -> OpenOptions {
    let mut options = OpenOptions::new();
    options.mode(0o600).custom_flags(OFlag::O_NOFOLLOW.bits());
    options
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("private-dir-test-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_default();
        dir
    }

    fn mode(path: &Path) -> u32 {
        std::fs::symlink_metadata(path).map_or(0, |m| m.mode() & 0o7777)
    }

    #[test]
    fn a_new_directory_and_its_new_parents_are_made_0700() -> Result<(), String> {
        let base = scratch("new");
        let dir = base.join("ltxvfs-1").join("journals");
        ensure(&dir)?;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&base.join("ltxvfs-1")), 0o700);
        // The base above was there already: left as it was.
        assert_ne!(mode(&base), 0);
        ensure(&dir)?;
        let _ = std::fs::remove_dir_all(base);
        Ok(())
    }

    #[test]
    fn a_symlinked_directory_is_refused_with_a_sentence() {
        let base = scratch("symlink");
        let elsewhere = base.join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap_or_default();
        let dir = base.join("ltxvfs-1");
        std::os::unix::fs::symlink(&elsewhere, &dir).unwrap_or_default();
        let err = ensure(&dir.join("journals")).err().unwrap_or_default();
        assert!(err.contains("is a symlink"), "{err}");
        assert!(err.contains("ltxvfs-1"), "{err}");
        assert!(!elsewhere.join("journals").exists());
        assert!(check(&dir).is_err());
        let _ = std::fs::remove_dir_all(base);
    }

    #[test]
    fn a_directory_others_can_write_into_is_refused_with_a_sentence() {
        let base = scratch("mode");
        let dir = base.join("ltxvfs-1");
        std::fs::create_dir(&dir).unwrap_or_default();
        let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777));
        let err = ensure(&dir.join("journals")).err().unwrap_or_default();
        assert!(err.contains("mode 777"), "{err}");
        assert!(err.contains("others can write into it"), "{err}");
        assert_eq!(mode(&dir), 0o777, "left as it was");
        let _ = std::fs::remove_dir_all(base);
    }

    #[test]
    fn a_readable_directory_of_ours_is_made_private() -> Result<(), String> {
        let base = scratch("readable");
        let dir = base.join("ltxvfs-1");
        std::fs::create_dir(&dir).unwrap_or_default();
        let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755));
        let err = check(&dir).err().unwrap_or_default();
        assert!(err.contains("mode 755"), "{err}");
        ensure(&dir)?;
        assert_eq!(mode(&dir), 0o700);
        check(&dir)?;
        let _ = std::fs::remove_dir_all(base);
        Ok(())
    }

    #[test]
    fn a_file_in_place_of_the_directory_is_refused() {
        let base = scratch("file");
        let dir = base.join("ltxvfs-1");
        std::fs::write(&dir, b"").unwrap_or_default();
        let err = ensure(&dir).err().unwrap_or_default();
        assert!(err.contains("ltxvfs-1"), "{err}");
        let _ = std::fs::remove_dir_all(base);
    }

    #[test]
    fn a_fresh_file_is_0600_and_never_written_through_a_symlink() -> std::io::Result<()> {
        let base = scratch("fresh");
        let target = base.join("target");
        std::fs::write(&target, b"keep")?;
        let path = base.join("app.db");
        std::os::unix::fs::symlink(&target, &path)?;
        create_fresh(&path)?;
        assert_eq!(std::fs::read(&target)?, b"keep");
        assert!(std::fs::symlink_metadata(&path)?.is_file());
        assert_eq!(mode(&path), 0o600);
        create_fresh(&path)?;
        let _ = std::fs::remove_dir_all(base);
        Ok(())
    }
}
