//! The seam between this crate and the kernel: every path is read under a
//! [`Root`] (`/` on a live host, a fixture directory in tests), and every
//! read classifies "the file went away" apart from real errors.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use rustix::io::Errno;

use crate::parse::ParseError;

/// The directory every kernel path is resolved under: `/` on a live host,
/// a fixture tree in tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Root {
    dir: PathBuf,
}

impl Root {
    /// Paths resolve under `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Root { dir: dir.into() }
    }

    /// The live host: paths resolve as they are.
    pub fn live() -> Self {
        Root::new("/")
    }

    /// The root directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `abs` (an absolute path as the kernel names it, e.g.
    /// `/proc/1/stat`) under this root.
    pub fn join(&self, abs: impl AsRef<Path>) -> PathBuf {
        let abs = abs.as_ref();
        let rel = abs.strip_prefix("/").unwrap_or(abs);
        if rel.as_os_str().is_empty() {
            self.dir.clone()
        } else {
            self.dir.join(rel)
        }
    }
}

/// A kernel file that could not be read or understood.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// Reading failed for a reason other than the file going away.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the kernel said.
        source: io::Error,
    },
    /// The file was read but its text is not in the expected format.
    #[error("{}: {source}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// Where and what.
        source: ParseError,
    },
}

impl ReadError {
    /// The file at fault.
    pub fn path(&self) -> &Path {
        match self {
            ReadError::Io { path, .. } | ReadError::Parse { path, .. } => path,
        }
    }
}

/// Whether an error means that the file, its process or its cgroup went
/// away: `ENOENT` (a file or directory removed), `ESRCH` (a process that
/// exited between open and read), `ENODEV` (a cgroup removed while its file
/// was open).
pub fn is_vanished(e: &io::Error) -> bool {
    if e.kind() == io::ErrorKind::NotFound {
        return true;
    }
    matches!(
        Errno::from_io_error(e),
        Some(Errno::NOENT | Errno::SRCH | Errno::NODEV)
    )
}

/// Reads `path` into `buf` (cleared first). `Ok(false)` when the file
/// vanished (see [`is_vanished`]).
pub(crate) fn read_into(path: &Path, buf: &mut Vec<u8>) -> Result<bool, ReadError> {
    buf.clear();
    let res = File::open(path).and_then(|mut f| f.read_to_end(buf));
    match res {
        Ok(_) => Ok(true),
        Err(e) if is_vanished(&e) => Ok(false),
        Err(source) => Err(ReadError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Reads `path` as text (invalid UTF-8 replaced). `None` when it vanished.
pub(crate) fn read_text(path: &Path) -> Result<Option<String>, ReadError> {
    let mut buf = Vec::new();
    if !read_into(path, &mut buf)? {
        return Ok(None);
    }
    Ok(Some(match String::from_utf8(buf) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    }))
}

/// Reads and parses `path`; `None` when the file vanished.
pub(crate) fn read_parsed<T>(
    path: &Path,
    parse: impl FnOnce(&str) -> Result<T, ParseError>,
) -> Result<Option<T>, ReadError> {
    match read_text(path)? {
        None => Ok(None),
        Some(text) => parse(&text).map(Some).map_err(|source| ReadError::Parse {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Writes `value` to an existing kernel file in one `write(2)`, as a shell's
/// `echo value > file` does (`O_WRONLY|O_TRUNC`), but never creates the
/// file: a limit file that does not exist means the controller is not
/// there, and creating a plain file in its place would hide that.
pub(crate) fn write_existing(path: &Path, value: &str) -> io::Result<()> {
    let mut f = open_nofollow(path, true)?;
    // One write call: the kernel parses each write(2) on a cgroup file as
    // a whole, so the value must not be split.
    let n = f.write(value.as_bytes())?;
    if n != value.len() {
        return Err(io::Error::new(
            io::ErrorKind::WriteZero,
            format!("short write: {n} of {} bytes", value.len()),
        ));
    }
    Ok(())
}

/// Opens `path` for reading or (truncating) writing, never creating it and
/// never following a symlink in its last component: that fails with
/// `ELOOP` (see [`is_symlink_error`]) in the same system call, so nothing
/// can swap a link in between a check and the open.
pub(crate) fn open_nofollow(path: &Path, write: bool) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut o = std::fs::OpenOptions::new();
    if write {
        o.write(true).truncate(true);
    } else {
        o.read(true);
    }
    o.custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)
}

/// Whether an open failed because the path is a symlink (`ELOOP` under
/// `O_NOFOLLOW`).
pub(crate) fn is_symlink_error(e: &io::Error) -> bool {
    Errno::from_io_error(e) == Some(Errno::LOOP)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_joins_absolute_paths_under_itself() {
        let r = Root::new("/tmp/x");
        assert_eq!(r.join("/proc/1/stat"), PathBuf::from("/tmp/x/proc/1/stat"));
        assert_eq!(r.join("/"), PathBuf::from("/tmp/x"));
        assert_eq!(Root::live().join("/proc"), PathBuf::from("/proc"));
    }

    #[test]
    fn vanished_errors_are_told_apart() {
        assert!(is_vanished(&io::Error::from(io::ErrorKind::NotFound)));
        assert!(is_vanished(&Errno::SRCH.into()));
        assert!(is_vanished(&Errno::NODEV.into()));
        assert!(!is_vanished(&Errno::ACCESS.into()));
        assert!(!is_vanished(&Errno::BUSY.into()));
    }

    #[test]
    fn a_missing_file_reads_as_none_and_write_never_creates() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("nope");
        assert!(read_text(&p).unwrap().is_none());
        let err = write_existing(&p, "1").unwrap_err();
        assert!(is_vanished(&err));
        assert!(!p.exists());
        std::fs::write(&p, "old value that is long\n").unwrap();
        write_existing(&p, "new").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "new");
    }
}
