//! Workload discovery by selectors, and grouping of matched processes into
//! cgroups the agent creates under its own subtree.
//!
//! - A cgroup selector is a path glob (`/system.slice/*.service`): every
//!   cgroup that matches is a workload, named by its path.
//! - A process selector matches processes by command (glob or regex) and/or
//!   user: the matches form one workload, named by the selector, whose
//!   cgroup the agent creates (see [`Grouper`]) and moves them into.
//!
//! Each workload carries the selector's labels plus labels read off its
//! path (systemd unit, Docker or containerd container id, Kubernetes pod
//! uid and QoS class).

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};

use prescient_core::WorkloadId;
use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::glob::{Glob, GlobError};
use crate::io::{ReadError, is_vanished, read_text, write_existing};
use crate::layout::{CgroupFs, Hierarchy, Version};
use crate::path::{CgroupPath, PathError};
use crate::procfs::ProcFs;

/// How a workload is found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Selector {
    /// The selector's name: a process selector's workload id and group
    /// cgroup name.
    pub name: String,
    /// What it matches.
    pub rule: Rule,
    /// Labels given to every workload it finds.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// What a selector matches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Rule {
    /// Cgroups whose path matches the glob.
    Cgroup {
        /// e.g. `/system.slice/*.service`.
        glob: String,
    },
    /// Processes matching the command and/or the user (both when both are
    /// given).
    Process {
        /// The command.
        #[serde(default)]
        command: Option<CommandMatch>,
        /// The owner (real uid).
        #[serde(default)]
        user: Option<UserMatch>,
    },
}

/// How a process's command is matched.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommandMatch {
    /// A glob on the command name (`comm`) or on the base name of `argv[0]`.
    Glob(String),
    /// A regex searched in the whole command line (arguments joined by
    /// single spaces).
    Regex(String),
}

/// How a process's owner is matched.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UserMatch {
    /// A user name, looked up in `/etc/passwd` under the root.
    Name(String),
    /// A uid.
    Uid(u32),
}

/// Well-known cgroup selectors.
impl Selector {
    /// A cgroup-glob selector.
    pub fn cgroup(name: &str, glob: &str) -> Selector {
        Selector {
            name: name.into(),
            rule: Rule::Cgroup { glob: glob.into() },
            labels: BTreeMap::new(),
        }
    }

    /// systemd services: `/system.slice/*.service`.
    pub fn systemd_services() -> Selector {
        Selector::cgroup("systemd-services", "/system.slice/*.service")
    }

    /// systemd scopes anywhere (sessions, Docker and containerd scopes).
    pub fn systemd_scopes() -> Selector {
        Selector::cgroup("systemd-scopes", "/**/*.scope")
    }

    /// Docker containers under either cgroup driver.
    pub fn docker() -> Vec<Selector> {
        vec![
            Selector::cgroup("docker", "/system.slice/docker-*.scope"),
            Selector::cgroup("docker-cgroupfs", "/docker/*"),
        ]
    }

    /// Kubernetes pods under either cgroup driver.
    pub fn kubernetes_pods() -> Vec<Selector> {
        vec![
            Selector::cgroup("kubepods", "/kubepods.slice/**/kubepods-*-pod*.slice"),
            Selector::cgroup("kubepods-guaranteed", "/kubepods.slice/kubepods-pod*.slice"),
            Selector::cgroup("kubepods-cgroupfs", "/kubepods/**/pod*"),
        ]
    }
}

/// A selector that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SelectorError {
    /// Its name is empty or not a single cgroup path component.
    #[error("selector {name:?}: the name must be one cgroup path component (no '/', '.', '..')")]
    BadName {
        /// The name.
        name: String,
    },
    /// Two selectors with the same name.
    #[error("selector {name:?} is defined twice")]
    Duplicate {
        /// The name.
        name: String,
    },
    /// A bad glob.
    #[error("selector {name:?}: {source}")]
    Glob {
        /// The selector.
        name: String,
        /// The glob's problem.
        source: GlobError,
    },
    /// A bad regex.
    #[error("selector {name:?}: regex {regex:?}: {source}")]
    Regex {
        /// The selector.
        name: String,
        /// The regex.
        regex: String,
        /// The regex's problem.
        source: Box<regex::Error>,
    },
    /// A process selector with neither a command nor a user.
    #[error("selector {name:?}: a process selector needs a command, a user, or both")]
    EmptyProcessRule {
        /// The selector.
        name: String,
    },
}

/// A workload found by discovery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Workload {
    /// Stable id: the cgroup path without its leading `/` for cgroup
    /// selectors, the selector's name for process selectors.
    pub id: WorkloadId,
    /// The selector that found it.
    pub selector: String,
    /// Its cgroup (for a process selector: the group the agent creates).
    pub cgroup: CgroupPath,
    /// Selector labels, then labels read off the path.
    pub labels: BTreeMap<String, String>,
    /// For a process selector: the processes that matched, ascending.
    pub pids: Vec<i32>,
}

enum Compiled {
    Cgroup(Glob),
    Process {
        command: Option<CommandMatcher>,
        user: Option<UserMatch>,
    },
}

enum CommandMatcher {
    Glob(Glob),
    Regex(Regex),
}

/// Compiled selectors.
pub struct Discovery {
    selectors: Vec<(Selector, Compiled)>,
    group_parent: CgroupPath,
}

impl Discovery {
    /// Compiles `selectors`; process groups go under `group_parent` (the
    /// agent's own subtree, in the same terms as the cgroup paths found).
    pub fn new(
        selectors: Vec<Selector>,
        group_parent: CgroupPath,
    ) -> Result<Discovery, SelectorError> {
        let mut names = BTreeSet::new();
        let mut out = Vec::new();
        for s in selectors {
            let name = s.name.clone();
            if CgroupPath::parse(&name).map(|p| p.components().count()) != Ok(1) {
                return Err(SelectorError::BadName { name });
            }
            if !names.insert(name.clone()) {
                return Err(SelectorError::Duplicate { name });
            }
            let compiled = match &s.rule {
                Rule::Cgroup { glob } => {
                    Compiled::Cgroup(Glob::new(glob).map_err(|source| SelectorError::Glob {
                        name: name.clone(),
                        source,
                    })?)
                }
                Rule::Process { command, user } => {
                    if command.is_none() && user.is_none() {
                        return Err(SelectorError::EmptyProcessRule { name });
                    }
                    let command = match command {
                        None => None,
                        // A glob on one name: '/' would never match.
                        Some(CommandMatch::Glob(g)) => Some(CommandMatcher::Glob(
                            Glob::new(&g.replace('/', "?")).map_err(|source| {
                                SelectorError::Glob {
                                    name: name.clone(),
                                    source,
                                }
                            })?,
                        )),
                        Some(CommandMatch::Regex(r)) => {
                            Some(CommandMatcher::Regex(Regex::new(r).map_err(|source| {
                                SelectorError::Regex {
                                    name: name.clone(),
                                    regex: r.clone(),
                                    source: Box::new(source),
                                }
                            })?))
                        }
                    };
                    Compiled::Process {
                        command,
                        user: user.clone(),
                    }
                }
            };
            out.push((s, compiled));
        }
        Ok(Discovery {
            selectors: out,
            group_parent,
        })
    }

    /// Finds the workloads: cgroups walked in `fs`'s primary hierarchy
    /// (the one holding memory), processes listed in `procfs`. A cgroup
    /// matched by several selectors goes to the first; so does a process.
    /// Cgroups and processes that vanish during the walk are skipped.
    pub fn discover(&self, fs: &CgroupFs, procfs: &ProcFs) -> Result<Vec<Workload>, ReadError> {
        let mut out = Vec::new();
        let globs: Vec<(&Selector, &Glob)> = self
            .selectors
            .iter()
            .filter_map(|(s, c)| match c {
                Compiled::Cgroup(g) => Some((s, g)),
                _ => None,
            })
            .collect();
        if !globs.is_empty()
            && let Some(h) = fs.primary()
        {
            let mut found = Vec::new();
            walk(h, &CgroupPath::root(), &globs, &mut found)?;
            found.sort();
            for (path, idx) in found {
                let sel = globs[idx].0;
                let mut labels = sel.labels.clone();
                for (k, v) in cgroup_labels(&path) {
                    labels.entry(k).or_insert(v);
                }
                let id = if path.is_root() {
                    "/".to_string()
                } else {
                    path.relative().to_string()
                };
                out.push(Workload {
                    id: WorkloadId(id),
                    selector: sel.name.clone(),
                    cgroup: path,
                    labels,
                    pids: Vec::new(),
                });
            }
        }

        let procs: Vec<(&Selector, &Option<CommandMatcher>, &Option<UserMatch>)> = self
            .selectors
            .iter()
            .filter_map(|(s, c)| match c {
                Compiled::Process { command, user } => Some((s, command, user)),
                _ => None,
            })
            .collect();
        if !procs.is_empty() {
            let users = procfs.users()?;
            let mut matched: Vec<Vec<i32>> = vec![Vec::new(); procs.len()];
            for pid in procfs.pids()? {
                let Some(stat) = procfs.stat(pid, None)? else {
                    continue;
                };
                let Some(cmdline) = procfs.cmdline(pid)? else {
                    continue;
                };
                // Kernel threads and zombies have no command line, and
                // cannot be moved.
                if cmdline.is_empty() {
                    continue;
                }
                let mut uid = None;
                for (i, (_, command, user)) in procs.iter().enumerate() {
                    let command_ok = match command {
                        None => true,
                        Some(CommandMatcher::Glob(g)) => {
                            let argv0 = cmdline[0].rsplit('/').next().unwrap_or("");
                            g.matches(&stat.comm.replace('/', "?")) || g.matches(argv0)
                        }
                        Some(CommandMatcher::Regex(r)) => r.is_match(&cmdline.join(" ")),
                    };
                    if !command_ok {
                        continue;
                    }
                    let user_ok = match user {
                        None => true,
                        Some(want) => {
                            if uid.is_none() {
                                uid = procfs.status(pid, None)?.and_then(|s| s.uid).map(|u| u[0]);
                            }
                            match (want, uid) {
                                (_, None) => false,
                                (UserMatch::Uid(w), Some(u)) => *w == u,
                                (UserMatch::Name(n), Some(u)) => users.get(&u) == Some(n),
                            }
                        }
                    };
                    if user_ok {
                        matched[i].push(pid);
                        break;
                    }
                }
            }
            for ((sel, _, _), pids) in procs.into_iter().zip(matched) {
                if pids.is_empty() {
                    continue;
                }
                let cgroup = self
                    .group_parent
                    .join(&sel.name)
                    .expect("selector names are checked as one path component");
                let mut labels = sel.labels.clone();
                labels
                    .entry("kind".into())
                    .or_insert_with(|| "process-group".into());
                out.push(Workload {
                    id: WorkloadId(sel.name.clone()),
                    selector: sel.name.clone(),
                    cgroup,
                    labels,
                    pids,
                });
            }
        }
        Ok(out)
    }
}

/// Walks the cgroup directories of `h` below `at`, collecting
/// (path, index of the first glob matching it).
fn walk(
    h: &Hierarchy,
    at: &CgroupPath,
    globs: &[(&Selector, &Glob)],
    found: &mut Vec<(CgroupPath, usize)>,
) -> Result<(), ReadError> {
    if let Some(i) = globs.iter().position(|(_, g)| g.matches(at.as_str())) {
        found.push((at.clone(), i));
    }
    if !globs.iter().any(|(_, g)| g.may_match_below(at.as_str())) {
        return Ok(());
    }
    let dir = h.dir(at);
    let rd = match std::fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if is_vanished(&e) => return Ok(()),
        Err(source) => return Err(ReadError::Io { path: dir, source }),
    };
    let mut children: Vec<String> = Vec::new();
    for e in rd.flatten() {
        // Cgroups are directories; a symlink is never followed.
        if e.file_type().map(|t| t.is_dir()).unwrap_or(false)
            && let Some(name) = e.file_name().to_str()
        {
            children.push(name.to_string());
        }
    }
    children.sort();
    for name in children {
        if let Ok(child) = at.join(&name) {
            walk(h, &child, globs, found)?;
        }
    }
    Ok(())
}

/// Labels read off a cgroup path: the kind of workload (`systemd-service`,
/// `systemd-scope`, `systemd-slice`, `docker`, `containerd`, `crio`,
/// `kubernetes-pod`), and the unit, container id, pod uid and QoS class
/// where the path tells them.
pub fn cgroup_labels(path: &CgroupPath) -> BTreeMap<String, String> {
    let mut l = BTreeMap::new();
    let comps: Vec<&str> = path.components().collect();
    let name = path.name();
    fn set(l: &mut BTreeMap<String, String>, k: &str, v: &str) {
        l.insert(k.to_string(), v.to_string());
    }
    let container = |name: &str, prefix: &str| -> Option<String> {
        name.strip_prefix(prefix)?
            .strip_suffix(".scope")
            .map(str::to_string)
    };
    if let Some(id) = container(name, "docker-") {
        set(&mut l, "kind", "docker");
        set(&mut l, "container_id", &id);
    } else if let Some(id) = container(name, "cri-containerd-") {
        set(&mut l, "kind", "containerd");
        set(&mut l, "container_id", &id);
    } else if let Some(id) = container(name, "crio-") {
        set(&mut l, "kind", "crio");
        set(&mut l, "container_id", &id);
    } else if comps.len() >= 2 && comps[comps.len() - 2] == "docker" && is_hex_id(name) {
        set(&mut l, "kind", "docker");
        set(&mut l, "container_id", name);
    } else if name.ends_with(".service") {
        set(&mut l, "kind", "systemd-service");
        set(&mut l, "unit", name);
    } else if name.ends_with(".scope") {
        set(&mut l, "kind", "systemd-scope");
        set(&mut l, "unit", name);
    }
    if comps.first().is_some_and(|c| c.starts_with("kubepods")) {
        for c in &comps {
            for qos in ["burstable", "besteffort"] {
                if *c == qos || c.starts_with(&format!("kubepods-{qos}")) {
                    set(&mut l, "k8s_qos", qos);
                }
            }
            // systemd driver: kubepods-burstable-pod<uid with _>.slice;
            // cgroupfs driver: pod<uid>.
            let pod = c
                .rsplit_once("-pod")
                .map(|(_, rest)| rest)
                .or_else(|| c.strip_prefix("pod"))
                .map(|rest| rest.strip_suffix(".slice").unwrap_or(rest));
            if let Some(uid) = pod
                && uid.len() >= 32
            {
                set(&mut l, "k8s_pod_uid", &uid.replace('_', "-"));
                if !l.contains_key("kind") || comps.last() == Some(c) {
                    l.insert("kind".into(), "kubernetes-pod".into());
                }
            }
        }
        l.entry("k8s_qos".into())
            .or_insert_with(|| "guaranteed".into());
    }
    if !l.contains_key("kind") && name.ends_with(".slice") {
        l.insert("kind".into(), "systemd-slice".into());
    }
    l
}

fn is_hex_id(s: &str) -> bool {
    s.len() >= 12 && s.chars().all(|c| c.is_ascii_hexdigit())
}

/// A group cgroup that could not be made or filled.
#[derive(Debug, thiserror::Error)]
pub enum GroupError {
    /// A bad path.
    #[error(transparent)]
    Path(#[from] PathError),
    /// mkdir failed.
    #[error("creating cgroup {}: {source}", path.display())]
    Create {
        /// The directory.
        path: PathBuf,
        /// What the kernel said.
        source: io::Error,
    },
    /// rmdir failed.
    #[error("removing cgroup {}: {source}", path.display())]
    Remove {
        /// The directory.
        path: PathBuf,
        /// What the kernel said.
        source: io::Error,
    },
}

/// What moving processes into a group did.
#[derive(Debug, Default, PartialEq)]
pub struct MoveReport {
    /// Moved (into every hierarchy).
    pub moved: Vec<i32>,
    /// Exited before they could be moved.
    pub vanished: Vec<i32>,
    /// Could not be moved: pid, hierarchy directory, error.
    pub failed: Vec<(i32, PathBuf, String)>,
}

/// Creates group cgroups under the agent's subtree and moves processes
/// into them. Works in the v2 hierarchy and in the v1 hierarchies of the
/// controllers the agent reads and writes (cpu, cpuacct, memory, blkio);
/// never in other hierarchies (systemd's own is left alone).
#[derive(Debug, Clone)]
pub struct Grouper {
    hierarchies: Vec<Hierarchy>,
}

/// The v1 controllers whose hierarchies the agent groups processes in.
const GROUP_V1_CONTROLLERS: [&str; 4] = ["cpu", "cpuacct", "memory", "blkio"];

/// The v2 controllers the agent enables for its groups, when available.
const GROUP_V2_CONTROLLERS: [&str; 3] = ["cpu", "memory", "io"];

impl Grouper {
    /// Groups under the bases of `fs` (set them to the agent's subtree).
    pub fn new(fs: &CgroupFs) -> Self {
        let mut hierarchies: Vec<Hierarchy> = fs.v2().into_iter().cloned().collect();
        for h in fs.v1() {
            if h.mount
                .controllers
                .iter()
                .any(|c| GROUP_V1_CONTROLLERS.contains(&c.as_str()))
                && !hierarchies.iter().any(|x| x.mount == h.mount)
            {
                hierarchies.push(h.clone());
            }
        }
        Grouper { hierarchies }
    }

    /// The hierarchies it works in.
    pub fn hierarchies(&self) -> &[Hierarchy] {
        &self.hierarchies
    }

    /// Creates `cgroup` (and its missing parents) in every hierarchy. On v2
    /// it enables the cpu, memory and io controllers (those available) for
    /// the children of each ancestor from the base down, so the group gets
    /// their files; a failure there is logged, not fatal (the group then
    /// lacks those controllers, which the enforcer reports).
    pub fn ensure_group(&self, cgroup: &CgroupPath) -> Result<(), GroupError> {
        for h in &self.hierarchies {
            let chain = cgroup.ancestors_and_self();
            for (i, c) in chain.iter().enumerate() {
                let dir = h.dir(c);
                if i > 0 {
                    match std::fs::create_dir(&dir) {
                        Ok(()) => {}
                        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                        Err(source) => return Err(GroupError::Create { path: dir, source }),
                    }
                }
                if h.mount.version == Version::V2 && i + 1 < chain.len() {
                    enable_v2_controllers(&dir);
                }
            }
        }
        Ok(())
    }

    /// Moves `pids` into `cgroup` in every hierarchy (writing each pid to
    /// `cgroup.procs`, which moves the whole process with its threads).
    pub fn move_pids(&self, cgroup: &CgroupPath, pids: &[i32]) -> MoveReport {
        let mut r = MoveReport::default();
        'pids: for &pid in pids {
            for h in &self.hierarchies {
                let dir = h.dir(cgroup);
                match write_existing(&dir.join("cgroup.procs"), &pid.to_string()) {
                    Ok(()) => {}
                    Err(e) if e.raw_os_error() == Some(rustix::io::Errno::SRCH.raw_os_error()) => {
                        r.vanished.push(pid);
                        continue 'pids;
                    }
                    Err(e) => {
                        r.failed.push((pid, dir, e.to_string()));
                        continue 'pids;
                    }
                }
            }
            r.moved.push(pid);
        }
        r
    }

    /// Removes `cgroup` from every hierarchy (it must be empty of processes
    /// and children). A group already gone is fine.
    pub fn remove_group(&self, cgroup: &CgroupPath) -> Result<(), GroupError> {
        for h in &self.hierarchies {
            let dir = h.dir(cgroup);
            match std::fs::remove_dir(&dir) {
                Ok(()) => {}
                Err(e) if is_vanished(&e) => {}
                Err(source) => return Err(GroupError::Remove { path: dir, source }),
            }
        }
        Ok(())
    }
}

/// Enables the group controllers in `dir/cgroup.subtree_control` where
/// `dir/cgroup.controllers` offers them and they are not on yet.
fn enable_v2_controllers(dir: &Path) {
    let available = read_text(&dir.join("cgroup.controllers"))
        .ok()
        .flatten()
        .unwrap_or_default();
    let enabled = read_text(&dir.join("cgroup.subtree_control"))
        .ok()
        .flatten()
        .unwrap_or_default();
    let available: Vec<&str> = available.split_ascii_whitespace().collect();
    let enabled: Vec<&str> = enabled.split_ascii_whitespace().collect();
    let want: Vec<String> = GROUP_V2_CONTROLLERS
        .iter()
        .filter(|c| available.contains(c) && !enabled.contains(c))
        .map(|c| format!("+{c}"))
        .collect();
    if want.is_empty() {
        return;
    }
    if let Err(e) = write_existing(&dir.join("cgroup.subtree_control"), &want.join(" ")) {
        log::warn!(
            "enabling {} in {}/cgroup.subtree_control: {e}",
            want.join(" "),
            dir.display()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> CgroupPath {
        CgroupPath::parse(s).unwrap()
    }

    #[test]
    fn labels_from_paths() {
        let l = cgroup_labels(&p("/system.slice/nginx.service"));
        assert_eq!(l["kind"], "systemd-service");
        assert_eq!(l["unit"], "nginx.service");
        let l = cgroup_labels(&p("/system.slice/docker-3f4a1c2b9d8e.scope"));
        assert_eq!(
            (l["kind"].as_str(), l["container_id"].as_str()),
            ("docker", "3f4a1c2b9d8e")
        );
        let l = cgroup_labels(&p("/docker/3f4a1c2b9d8e7f6a"));
        assert_eq!(l["kind"], "docker");
        let pod = "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod6c1a2b3d_4e5f_6789_abcd_ef0123456789.slice";
        let l = cgroup_labels(&p(pod));
        assert_eq!(l["kind"], "kubernetes-pod");
        assert_eq!(l["k8s_qos"], "burstable");
        assert_eq!(l["k8s_pod_uid"], "6c1a2b3d-4e5f-6789-abcd-ef0123456789");
        let l = cgroup_labels(&p(&format!("{pod}/cri-containerd-9a8b.scope")));
        assert_eq!(l["kind"], "containerd");
        assert_eq!(l["container_id"], "9a8b");
        assert_eq!(l["k8s_pod_uid"], "6c1a2b3d-4e5f-6789-abcd-ef0123456789");
        let l = cgroup_labels(&p("/kubepods/pod6c1a2b3d-4e5f-6789-abcd-ef0123456789"));
        assert_eq!(l["k8s_qos"], "guaranteed");
        assert_eq!(l["kind"], "kubernetes-pod");
        assert_eq!(cgroup_labels(&p("/user.slice"))["kind"], "systemd-slice");
    }

    #[test]
    fn selectors_are_checked() {
        let root = CgroupPath::root();
        let bad_name = Selector::cgroup("a/b", "/x");
        assert!(matches!(
            Discovery::new(vec![bad_name], root.clone()),
            Err(SelectorError::BadName { .. })
        ));
        let dup = vec![Selector::cgroup("a", "/x"), Selector::cgroup("a", "/y")];
        assert!(matches!(
            Discovery::new(dup, root.clone()),
            Err(SelectorError::Duplicate { .. })
        ));
        let empty = Selector {
            name: "p".into(),
            rule: Rule::Process {
                command: None,
                user: None,
            },
            labels: BTreeMap::new(),
        };
        assert!(matches!(
            Discovery::new(vec![empty], root.clone()),
            Err(SelectorError::EmptyProcessRule { .. })
        ));
        let bad_re = Selector {
            name: "p".into(),
            rule: Rule::Process {
                command: Some(CommandMatch::Regex("(".into())),
                user: None,
            },
            labels: BTreeMap::new(),
        };
        let err = Discovery::new(vec![bad_re], root)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("regex \"(\""), "{err}");
    }

    #[test]
    fn selectors_read_from_json() {
        let s: Selector = serde_json::from_str(
            r#"{"name":"pg","rule":{"process":{"command":{"glob":"postgres*"},"user":{"name":"postgres"}}},"labels":{"tier":"db"}}"#,
        )
        .unwrap();
        assert!(matches!(
            s.rule,
            Rule::Process {
                command: Some(CommandMatch::Glob(_)),
                user: Some(UserMatch::Name(_))
            }
        ));
        let s: Selector = serde_json::from_str(
            r#"{"name":"svc","rule":{"cgroup":{"glob":"/system.slice/*.service"}}}"#,
        )
        .unwrap();
        assert_eq!(s, Selector::systemd_services().renamed("svc"));
    }

    impl Selector {
        fn renamed(mut self, n: &str) -> Selector {
            self.name = n.into();
            self
        }
    }
}
