//! Where the cgroup hierarchies are: the layout (pure v2, hybrid, v1) read
//! from `/proc/self/mountinfo`, a process's cgroups from
//! `/proc/<pid>/cgroup`, and [`CgroupFs`], which turns a cgroup path into
//! the directory that holds its files in each hierarchy.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::io::{ReadError, Root, read_parsed, read_text};
use crate::parse::ParseError;
use crate::path::CgroupPath;

/// Which cgroup version a hierarchy is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Version {
    /// cgroup v1: one hierarchy per controller (or set of co-mounted ones).
    V1,
    /// cgroup v2: the unified hierarchy.
    V2,
}

/// The layout of a host's cgroup hierarchies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LayoutKind {
    /// Only the unified (v2) hierarchy: every controller lives there.
    V2,
    /// v1 controller hierarchies and a v2 hierarchy beside them (systemd's
    /// "hybrid": v2 at `/sys/fs/cgroup/unified`, often with no controllers).
    Hybrid,
    /// Only v1 hierarchies.
    V1,
    /// No cgroup filesystem is mounted.
    None,
}

/// One mounted cgroup hierarchy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    /// v1 or v2.
    pub version: Version,
    /// Where it is mounted (as the kernel names it, without the [`Root`]).
    pub mount_point: PathBuf,
    /// The cgroup this mount shows as its top (`/` unless a subtree was
    /// bind-mounted or the mount is inside a cgroup namespace).
    pub mount_root: String,
    /// The controllers it holds: for v1 from the mount options (with
    /// `name=systemd` style named hierarchies kept as `name=...`), for v2
    /// from its `cgroup.controllers` (empty when not read).
    pub controllers: Vec<String>,
}

impl Mount {
    /// Whether this hierarchy holds `controller`.
    pub fn has(&self, controller: &str) -> bool {
        self.controllers.iter().any(|c| c == controller)
    }
}

/// The cgroup mounts of a host, in mountinfo order, one per hierarchy.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Layout {
    /// The v2 (unified) hierarchy, if mounted.
    pub v2: Option<Mount>,
    /// The v1 hierarchies.
    pub v1: Vec<Mount>,
}

/// The v1 controllers whose presence makes a layout v1 or hybrid.
const V1_RESOURCE_CONTROLLERS: [&str; 6] = ["cpu", "cpuacct", "memory", "blkio", "cpuset", "pids"];

impl Layout {
    /// Reads `/proc/self/mountinfo` under `root`, then the v2 hierarchy's
    /// `cgroup.controllers` (which controllers v2 holds decides where each
    /// resource is read and written).
    pub fn detect(root: &Root) -> Result<Layout, ReadError> {
        let path = root.join("/proc/self/mountinfo");
        let mut layout = read_parsed(&path, Layout::from_mountinfo)?.unwrap_or_default();
        if let Some(v2) = &mut layout.v2 {
            let file = root.join(&v2.mount_point).join("cgroup.controllers");
            if let Some(text) = read_text(&file)? {
                v2.controllers = text.split_ascii_whitespace().map(str::to_string).collect();
            }
        }
        Ok(layout)
    }

    /// The cgroup mounts listed in a mountinfo text (v2 controllers left
    /// empty: they are not in mountinfo). A hierarchy mounted twice is
    /// kept once, at its first mount with the widest root.
    pub fn from_mountinfo(text: &str) -> Result<Layout, ParseError> {
        let mut layout = Layout::default();
        let mut seen_devices = BTreeSet::new();
        for (i, line) in text.lines().enumerate() {
            let line_no = i + 1;
            if line.trim().is_empty() {
                continue;
            }
            let m = MountInfoLine::parse(line_no, line)?;
            let version = match m.fs_type {
                "cgroup2" => Version::V2,
                "cgroup" => Version::V1,
                _ => continue,
            };
            // The same hierarchy bind-mounted again has the same device.
            if !seen_devices.insert(m.device.to_string()) {
                continue;
            }
            let controllers = match version {
                Version::V2 => Vec::new(),
                Version::V1 => m
                    .super_options
                    .split(',')
                    .filter(|o| {
                        o.starts_with("name=")
                            || !matches!(
                                *o,
                                "rw" | "ro"
                                    | "noprefix"
                                    | "xattr"
                                    | "clone_children"
                                    | "cpuset_v2_mode"
                            ) && !o.contains('=')
                    })
                    .map(str::to_string)
                    .collect(),
            };
            let mount = Mount {
                version,
                mount_point: PathBuf::from(unescape_octal(m.mount_point)),
                mount_root: unescape_octal(m.root),
                controllers,
            };
            match version {
                Version::V2 => {
                    if layout.v2.is_none() {
                        layout.v2 = Some(mount);
                    }
                }
                Version::V1 => layout.v1.push(mount),
            }
        }
        Ok(layout)
    }

    /// Pure v2, hybrid, v1, or none.
    pub fn kind(&self) -> LayoutKind {
        let v1_controllers = self.v1.iter().any(|m| {
            m.controllers
                .iter()
                .any(|c| V1_RESOURCE_CONTROLLERS.contains(&c.as_str()))
        });
        match (self.v2.is_some(), v1_controllers) {
            (true, false) => LayoutKind::V2,
            (true, true) => LayoutKind::Hybrid,
            (false, true) => LayoutKind::V1,
            (false, false) => LayoutKind::None,
        }
    }

    /// The hierarchy that holds `controller`: v2 when the controller is
    /// available there, else the v1 hierarchy that has it.
    pub fn mount_for(&self, controller: &str) -> Option<&Mount> {
        if let Some(v2) = &self.v2
            && v2.has(controller)
        {
            return Some(v2);
        }
        self.v1.iter().find(|m| m.has(controller))
    }

    /// Every mount, v2 first.
    pub fn mounts(&self) -> impl Iterator<Item = &Mount> {
        self.v2.iter().chain(self.v1.iter())
    }
}

impl fmt::Display for LayoutKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LayoutKind::V2 => "v2",
            LayoutKind::Hybrid => "hybrid",
            LayoutKind::V1 => "v1",
            LayoutKind::None => "none",
        })
    }
}

/// The fields of a mountinfo line this crate uses.
struct MountInfoLine<'a> {
    device: &'a str,
    root: &'a str,
    mount_point: &'a str,
    fs_type: &'a str,
    super_options: &'a str,
}

impl<'a> MountInfoLine<'a> {
    /// `36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue`
    fn parse(line_no: usize, line: &'a str) -> Result<Self, ParseError> {
        let bad = |what: &str| ParseError::new(line_no, what, line);
        let (left, right) = line
            .split_once(" - ")
            .ok_or_else(|| bad("mountinfo line without the ' - ' separator"))?;
        let mut l = left.split_ascii_whitespace();
        let (_id, _parent, device, root, mount_point) =
            (l.next(), l.next(), l.next(), l.next(), l.next());
        let (Some(device), Some(root), Some(mount_point)) = (device, root, mount_point) else {
            return Err(bad("mountinfo line with fewer than 5 fields before ' - '"));
        };
        let mut r = right.split_ascii_whitespace();
        let fs_type = r
            .next()
            .ok_or_else(|| bad("mountinfo line without a filesystem type"))?;
        let _source = r.next();
        let super_options = r.next().unwrap_or("");
        Ok(MountInfoLine {
            device,
            root,
            mount_point,
            fs_type,
            super_options,
        })
    }
}

/// mountinfo escapes space, tab, newline and backslash as `\040` style
/// octal; anything else is kept as is.
fn unescape_octal(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') as u32 * 64
                + (b[i + 2] - b'0') as u32 * 8
                + (b[i + 3] - b'0') as u32;
            if let Ok(byte) = u8::try_from(v) {
                out.push(byte);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One line of `/proc/<pid>/cgroup`: `hierarchy-ID:controller-list:path`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcCgroup {
    /// The hierarchy id (0 for v2).
    pub hierarchy_id: u32,
    /// The controllers (empty for v2; `name=systemd` for named ones).
    pub controllers: Vec<String>,
    /// The cgroup path as the kernel prints it (relative to the reader's
    /// cgroup namespace; may hold `..` when the process is outside it).
    pub path: String,
}

impl ProcCgroup {
    /// Whether this is the v2 line (`0::/path`).
    pub fn is_v2(&self) -> bool {
        self.hierarchy_id == 0 && self.controllers.is_empty()
    }
}

/// Parses `/proc/<pid>/cgroup`.
pub fn parse_proc_cgroup(text: &str) -> Result<Vec<ProcCgroup>, ParseError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.is_empty() {
            continue;
        }
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(ctrl), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(ParseError::new(
                i + 1,
                "expected 'id:controllers:path'",
                line,
            ));
        };
        let hierarchy_id = crate::parse::u64_at(i + 1, "hierarchy id", id)?;
        let hierarchy_id = u32::try_from(hierarchy_id)
            .map_err(|_| ParseError::new(i + 1, "hierarchy id out of range", id))?;
        out.push(ProcCgroup {
            hierarchy_id,
            controllers: ctrl
                .split(',')
                .filter(|c| !c.is_empty())
                .map(str::to_string)
                .collect(),
            path: path.to_string(),
        });
    }
    Ok(out)
}

/// Identifies one hierarchy of a [`CgroupFs`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum HierarchyId {
    /// The v2 hierarchy.
    V2,
    /// The v1 hierarchy that holds this controller (or `name=...`).
    V1(String),
}

impl fmt::Display for HierarchyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HierarchyId::V2 => f.write_str("v2"),
            HierarchyId::V1(c) => write!(f, "v1:{c}"),
        }
    }
}

/// One hierarchy as this crate uses it: its mount, and the *base*, the
/// cgroup under which every [`CgroupPath`] handed to the crate is resolved
/// (`/` to address the whole hierarchy; a subtree to confine the enforcer
/// or, in tests, to work under the test's own cgroup).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    /// The mount.
    pub mount: Mount,
    /// The cgroup (in the hierarchy's own terms) paths are resolved under.
    pub base: CgroupPath,
    /// The base's directory under the [`Root`].
    base_dir: PathBuf,
}

impl Hierarchy {
    /// The directory of `cgroup` (relative to the base).
    pub fn dir(&self, cgroup: &CgroupPath) -> PathBuf {
        if cgroup.is_root() {
            self.base_dir.clone()
        } else {
            self.base_dir.join(cgroup.relative())
        }
    }

    /// The base's directory.
    pub fn base_dir(&self) -> &Path {
        &self.base_dir
    }

    /// Whether the hierarchy holds `controller`.
    pub fn has(&self, controller: &str) -> bool {
        self.mount.has(controller)
    }
}

/// The cgroup hierarchies of a host under a [`Root`], each with its base.
#[derive(Debug, Clone)]
pub struct CgroupFs {
    root: Root,
    layout: Layout,
    v2: Option<Hierarchy>,
    v1: Vec<Hierarchy>,
}

/// A base that cannot be set.
#[derive(Debug, thiserror::Error)]
pub enum BaseError {
    /// The hierarchy is not mounted.
    #[error("no {0} hierarchy is mounted")]
    NoHierarchy(HierarchyId),
    /// The process's cgroup is outside the mount (another cgroup namespace,
    /// or a bind mount of a different subtree).
    #[error(
        "cgroup {path:?} of hierarchy {hierarchy} is not under its mount's root {mount_root:?}"
    )]
    OutsideMount {
        /// The hierarchy.
        hierarchy: HierarchyId,
        /// The cgroup path as read.
        path: String,
        /// The mount's root.
        mount_root: String,
    },
    /// Reading `/proc/<pid>/cgroup` failed.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// `/proc/<pid>/cgroup` is gone.
    #[error("{0}: the process is gone")]
    Vanished(PathBuf),
}

impl CgroupFs {
    /// The hierarchies of `layout` under `root`, each based at its top.
    pub fn new(root: Root, layout: Layout) -> Self {
        let mk = |m: &Mount| {
            let base_dir = root.join(&m.mount_point);
            Hierarchy {
                mount: m.clone(),
                base: CgroupPath::root(),
                base_dir,
            }
        };
        let v2 = layout.v2.as_ref().map(mk);
        let v1 = layout.v1.iter().map(mk).collect();
        CgroupFs {
            root,
            layout,
            v2,
            v1,
        }
    }

    /// Detects the layout under `root` (see [`Layout::detect`]).
    pub fn detect(root: Root) -> Result<Self, ReadError> {
        let layout = Layout::detect(&root)?;
        Ok(CgroupFs::new(root, layout))
    }

    /// The root everything is read under.
    pub fn root(&self) -> &Root {
        &self.root
    }

    /// The layout.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The v2 hierarchy.
    pub fn v2(&self) -> Option<&Hierarchy> {
        self.v2.as_ref()
    }

    /// The v1 hierarchies.
    pub fn v1(&self) -> &[Hierarchy] {
        &self.v1
    }

    /// A hierarchy by id.
    pub fn hierarchy(&self, id: &HierarchyId) -> Option<&Hierarchy> {
        match id {
            HierarchyId::V2 => self.v2.as_ref(),
            HierarchyId::V1(c) => self.v1.iter().find(|h| h.has(c)),
        }
    }

    /// The hierarchy that holds `controller`: v2 when it is enabled there,
    /// else the v1 one.
    pub fn for_controller(&self, controller: &str) -> Option<&Hierarchy> {
        if let Some(v2) = &self.v2
            && v2.has(controller)
        {
            return Some(v2);
        }
        self.v1.iter().find(|h| h.has(controller))
    }

    /// The hierarchy to discover workloads in: the one holding memory, else
    /// cpu, else v2, else the first v1 one.
    pub fn primary(&self) -> Option<&Hierarchy> {
        self.for_controller("memory")
            .or_else(|| self.for_controller("cpu"))
            .or(self.v2.as_ref())
            .or_else(|| self.v1.first())
    }

    /// Every hierarchy, v2 first.
    pub fn hierarchies(&self) -> impl Iterator<Item = &Hierarchy> {
        self.v2.iter().chain(self.v1.iter())
    }

    /// The id of a hierarchy of this filesystem.
    pub fn id_of(&self, h: &Hierarchy) -> HierarchyId {
        match h.mount.version {
            Version::V2 => HierarchyId::V2,
            Version::V1 => {
                HierarchyId::V1(h.mount.controllers.first().cloned().unwrap_or_default())
            }
        }
    }

    /// Resolves every path of hierarchy `id` under `base` (a cgroup path in
    /// the hierarchy's own terms).
    pub fn with_base(mut self, id: &HierarchyId, base: CgroupPath) -> Result<Self, BaseError> {
        let root = self.root.clone();
        let h = match id {
            HierarchyId::V2 => self.v2.as_mut(),
            HierarchyId::V1(c) => self.v1.iter_mut().find(|h| h.has(c)),
        }
        .ok_or_else(|| BaseError::NoHierarchy(id.clone()))?;
        h.base_dir = root.join(&h.mount.mount_point).join(base.relative());
        if base.is_root() {
            h.base_dir = root.join(&h.mount.mount_point);
        }
        h.base = base;
        Ok(self)
    }

    /// Bases every hierarchy at the cgroup `pid` is in (read from
    /// `/proc/<pid>/cgroup`; `pid` may be `"self"`), then at `sub` below it.
    /// The tests use this to work under their own cgroups; an agent, to
    /// confine itself to a subtree of its own.
    pub fn based_at_process(mut self, pid: &str, sub: &CgroupPath) -> Result<Self, BaseError> {
        let file = self.root.join(format!("/proc/{pid}/cgroup"));
        let lines = read_parsed(&file, parse_proc_cgroup)?.ok_or(BaseError::Vanished(file))?;
        let ids: Vec<HierarchyId> = self.hierarchies().map(|h| self.id_of(h)).collect();
        for id in ids {
            let h = self.hierarchy(&id).expect("id comes from this fs");
            let line = lines.iter().find(|l| match &id {
                HierarchyId::V2 => l.is_v2(),
                HierarchyId::V1(_) => !l.is_v2() && l.controllers.iter().any(|c| h.has(c)),
            });
            let Some(line) = line else { continue };
            let inner = strip_mount_root(&line.path, &h.mount.mount_root).ok_or_else(|| {
                BaseError::OutsideMount {
                    hierarchy: id.clone(),
                    path: line.path.clone(),
                    mount_root: h.mount.mount_root.clone(),
                }
            })?;
            self = self.with_base(&id, inner.join_path(sub))?;
        }
        Ok(self)
    }
}

/// `path` (a cgroup as `/proc/<pid>/cgroup` prints it) relative to a
/// mount's root; `None` when outside it or not a plain path.
fn strip_mount_root(path: &str, mount_root: &str) -> Option<CgroupPath> {
    let path = CgroupPath::parse(path).ok()?;
    let root = CgroupPath::parse(mount_root).ok()?;
    path.strip_prefix(&root)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = include_str!("../tests/fixtures/hybrid/proc/self/mountinfo");

    #[test]
    fn hybrid_mountinfo_of_this_kind_of_machine() {
        let l = Layout::from_mountinfo(HYBRID).unwrap();
        assert_eq!(l.kind(), LayoutKind::Hybrid);
        let v2 = l.v2.as_ref().unwrap();
        assert_eq!(v2.mount_point, PathBuf::from("/sys/fs/cgroup/unified"));
        assert_eq!(
            l.mount_for("memory").unwrap().mount_point,
            PathBuf::from("/sys/fs/cgroup/memory")
        );
        assert_eq!(
            l.mount_for("cpuacct").unwrap().mount_point,
            PathBuf::from("/sys/fs/cgroup/cpuacct")
        );
        let systemd = l.v1.iter().find(|m| m.has("name=systemd")).unwrap();
        assert_eq!(systemd.controllers, vec!["name=systemd".to_string()]);
        assert_eq!(l.v1.len(), 9);
    }

    #[test]
    fn pure_v2_and_pure_v1() {
        let v2 = "30 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n";
        assert_eq!(Layout::from_mountinfo(v2).unwrap().kind(), LayoutKind::V2);
        let v1 = "\
25 18 0:22 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
26 25 0:23 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:10 - cgroup cgroup rw,xattr,release_agent=/usr/lib/systemd/systemd-cgroups-agent,name=systemd
29 25 0:26 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:13 - cgroup cgroup rw,cpu,cpuacct
30 25 0:27 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:14 - cgroup cgroup rw,memory
";
        let l = Layout::from_mountinfo(v1).unwrap();
        assert_eq!(l.kind(), LayoutKind::V1);
        let cpu = l.mount_for("cpu").unwrap();
        assert_eq!(
            cpu.controllers,
            vec!["cpu".to_string(), "cpuacct".to_string()]
        );
        assert_eq!(cpu.mount_point, PathBuf::from("/sys/fs/cgroup/cpu,cpuacct"));
        assert_eq!(l.mount_for("cpuacct").unwrap(), cpu);
        assert_eq!(Layout::from_mountinfo("").unwrap().kind(), LayoutKind::None);
    }

    #[test]
    fn escapes_and_bad_lines() {
        let l = Layout::from_mountinfo(
            "41 31 0:38 / /mnt/my\\040cgroups rw,relatime - cgroup2 cgroup2 rw\n",
        )
        .unwrap();
        assert_eq!(l.v2.unwrap().mount_point, PathBuf::from("/mnt/my cgroups"));
        let err = Layout::from_mountinfo("garbage\n").unwrap_err();
        assert_eq!(err.line, 1);
        assert_eq!(unescape_octal("a\\134b\\"), "a\\b\\");
        assert_eq!(unescape_octal("\\777"), "\\777");
    }

    #[test]
    fn proc_cgroup_lines() {
        let text = include_str!("../tests/fixtures/hybrid/proc/self/cgroup");
        let l = parse_proc_cgroup(text).unwrap();
        let mem = l.iter().find(|c| c.controllers == ["memory"]).unwrap();
        assert_eq!(mem.path, "/process_api/a1eaec25681f9e416ac77a6942c369a3");
        assert!(l.iter().any(|c| c.is_v2() && c.path == "/"));
        assert!(parse_proc_cgroup("x:y\n").is_err());
        // A path with a colon stays whole.
        assert_eq!(parse_proc_cgroup("0::/a:b\n").unwrap()[0].path, "/a:b");
    }

    #[test]
    fn mount_roots_are_stripped() {
        assert_eq!(strip_mount_root("/a/b", "/").unwrap().as_str(), "/a/b");
        assert_eq!(strip_mount_root("/a/b", "/a").unwrap().as_str(), "/b");
        assert!(strip_mount_root("/x", "/a").is_none());
        assert!(strip_mount_root("/../..", "/").is_none());
    }
}
