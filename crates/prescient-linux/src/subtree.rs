//! Removing cgroup subtrees a process made for itself (the loadgen's, the
//! kernel tests' and benches'): a whole tree, children first, and trees
//! left by a process that was killed before it could remove its own.

use std::fs;
use std::io;
use std::path::Path;
use std::thread::sleep;
use std::time::Duration;

/// How often, and how long apart, an rmdir refused with a busy cgroup is
/// tried again: 100 × 20 ms = 2 s.
const RMDIR_TRIES: u32 = 100;
const RMDIR_PAUSE: Duration = Duration::from_millis(20);

/// rmdir `dir` and every cgroup below it, children first. A cgroup whose
/// last process just exited may refuse for a moment (EBUSY): retried for
/// up to 2 s. A directory already gone is fine.
///
/// # Errors
/// The last error of rmdir on `dir` when it is still there after the
/// retries (a cgroup that still holds processes, say).
pub fn remove_cgroup_tree(dir: &Path) -> io::Result<()> {
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                // A child that stays makes the rmdir of `dir` fail below,
                // which is the error reported.
                let _ = remove_cgroup_tree(&e.path());
            }
        }
    }
    let mut last = None;
    for _ in 0..RMDIR_TRIES {
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => {
                last = Some(e);
                sleep(RMDIR_PAUSE);
            }
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("rmdir was not tried")))
}

/// Removes the subtrees `<prefix><pid>` or `<prefix><pid>-...` directly
/// under `base` whose process is gone (no `/proc/<pid>`): ones left by a
/// process killed before it could clean up. Only names of that shape are
/// touched, never this process's own, and rmdir refuses a cgroup that
/// still has processes, so nothing running is disturbed. What cannot be
/// removed is left, with a log line.
pub fn remove_stale_subtrees(base: &Path, prefix: &str) {
    let Ok(rd) = fs::read_dir(base) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = owner_pid(&name, prefix) else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let path = e.path();
            if let Err(err) = remove_cgroup_tree(&path) {
                log::warn!("could not remove stale cgroup {}: {err}", path.display());
            }
        }
    }
}

/// The pid in `<prefix><pid>` or `<prefix><pid>-...`.
fn owner_pid(name: &str, prefix: &str) -> Option<u32> {
    let rest = name.strip_prefix(prefix)?;
    rest.split('-').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_owner_pid_is_read_from_the_name() {
        assert_eq!(
            owner_pid("prescient-test-42-name-0", "prescient-test-"),
            Some(42)
        );
        assert_eq!(
            owner_pid("prescient-loadgen-7", "prescient-loadgen-"),
            Some(7)
        );
        assert_eq!(owner_pid("prescient-test-x-1", "prescient-test-"), None);
        assert_eq!(owner_pid("prescient-test-42x", "prescient-test-"), None);
        assert_eq!(owner_pid("other-42", "prescient-test-"), None);
    }

    #[test]
    fn a_tree_is_removed_children_first_and_a_missing_one_is_fine() {
        let tmp = tempfile::tempdir().unwrap();
        let top = tmp.path().join("top");
        fs::create_dir_all(top.join("a/b/c")).unwrap();
        fs::create_dir_all(top.join("d")).unwrap();
        remove_cgroup_tree(&top).unwrap();
        assert!(!top.exists());
        remove_cgroup_tree(&top).unwrap();
    }

    #[test]
    fn only_stale_subtrees_of_the_prefix_are_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let me = std::process::id();
        // pid_max is at most 2^22: this pid cannot exist.
        let gone = 1u32 << 23;
        for name in [
            format!("prescient-test-{gone}-x-0"),
            format!("prescient-test-{me}-x-0"),
            format!("prescient-bench-{gone}-x-0"),
            "prescient-test-notapid".to_string(),
        ] {
            fs::create_dir_all(tmp.path().join(name).join("child")).unwrap();
        }
        remove_stale_subtrees(tmp.path(), "prescient-test-");
        let mut left: Vec<String> = fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                format!("prescient-bench-{gone}-x-0"),
                format!("prescient-test-{me}-x-0"),
                "prescient-test-notapid".to_string(),
            ]
        );
    }
}
