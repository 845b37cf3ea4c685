//! [`CgroupPath`]: a cgroup named by its path inside a hierarchy, checked
//! so that it can never climb out of the directory it is resolved under.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A cgroup path that cannot be used: it would climb out of its
/// hierarchy (`..`), or holds a character no path component may hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// A `..` or `.` component.
    #[error("cgroup path {path:?}: component {component:?} is not allowed (no '.' or '..')")]
    DotComponent {
        /// The path as given.
        path: String,
        /// The component.
        component: String,
    },
    /// A NUL or newline.
    #[error("cgroup path {path:?}: contains a NUL or newline")]
    BadCharacter {
        /// The path as given.
        path: String,
    },
}

/// A cgroup's path within a hierarchy (or below a configured subtree):
/// `/` for the top, `/system.slice/nginx.service` below it.
///
/// Always starts with `/`, never ends with one (but for `/` itself), and
/// holds no empty, `.` or `..` component, so that joining it under a
/// directory always stays under that directory (symlinks aside: the
/// enforcer checks those on the real path).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CgroupPath(String);

impl CgroupPath {
    /// The top of the hierarchy (or subtree).
    pub fn root() -> Self {
        CgroupPath("/".into())
    }

    /// Checks and normalises `s`: a leading `/` is optional, repeated and
    /// trailing slashes are dropped.
    pub fn parse(s: &str) -> Result<Self, PathError> {
        if s.contains(['\0', '\n']) {
            return Err(PathError::BadCharacter { path: s.into() });
        }
        let mut out = String::with_capacity(s.len() + 1);
        for c in s.split('/').filter(|c| !c.is_empty()) {
            if c == "." || c == ".." {
                return Err(PathError::DotComponent {
                    path: s.into(),
                    component: c.into(),
                });
            }
            out.push('/');
            out.push_str(c);
        }
        if out.is_empty() {
            out.push('/');
        }
        Ok(CgroupPath(out))
    }

    /// The path as text, starting with `/`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The path without its leading `/` (empty for the root): what to join
    /// under a directory.
    pub fn relative(&self) -> &str {
        &self.0[1..]
    }

    /// Whether this is the top.
    pub fn is_root(&self) -> bool {
        self.0 == "/"
    }

    /// The components, top first.
    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.0.split('/').filter(|c| !c.is_empty())
    }

    /// The last component (empty for the root).
    pub fn name(&self) -> &str {
        self.components().last().unwrap_or("")
    }

    /// The parent, `None` for the root.
    pub fn parent(&self) -> Option<CgroupPath> {
        if self.is_root() {
            return None;
        }
        let cut = self.0.rfind('/').unwrap_or(0);
        Some(if cut == 0 {
            CgroupPath::root()
        } else {
            CgroupPath(self.0[..cut].to_string())
        })
    }

    /// `self/child`, where `child` is checked like [`CgroupPath::parse`].
    pub fn join(&self, child: &str) -> Result<CgroupPath, PathError> {
        let child = CgroupPath::parse(child)?;
        Ok(self.join_path(&child))
    }

    /// `self/child` for an already checked `child`.
    pub fn join_path(&self, child: &CgroupPath) -> CgroupPath {
        if self.is_root() {
            child.clone()
        } else if child.is_root() {
            self.clone()
        } else {
            CgroupPath(format!("{}{}", self.0, child.0))
        }
    }

    /// Whether `self` is `base` or below it (component-wise: `/a/bc` is not
    /// below `/a/b`).
    pub fn starts_with(&self, base: &CgroupPath) -> bool {
        self.strip_prefix(base).is_some()
    }

    /// `self` relative to `base`, or `None` when it is not below `base`.
    pub fn strip_prefix(&self, base: &CgroupPath) -> Option<CgroupPath> {
        if base.is_root() {
            return Some(self.clone());
        }
        let rest = self.0.strip_prefix(base.as_str())?;
        if rest.is_empty() {
            Some(CgroupPath::root())
        } else if rest.starts_with('/') {
            Some(CgroupPath(rest.to_string()))
        } else {
            None
        }
    }

    /// Every ancestor from the top down to the parent, then `self`.
    pub fn ancestors_and_self(&self) -> Vec<CgroupPath> {
        let mut out = vec![CgroupPath::root()];
        let mut cur = String::new();
        for c in self.components() {
            cur.push('/');
            cur.push_str(c);
            out.push(CgroupPath(cur.clone()));
        }
        out
    }
}

impl fmt::Display for CgroupPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for CgroupPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl TryFrom<String> for CgroupPath {
    type Error = PathError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        CgroupPath::parse(&s)
    }
}

impl From<CgroupPath> for String {
    fn from(p: CgroupPath) -> String {
        p.0
    }
}

impl std::str::FromStr for CgroupPath {
    type Err = PathError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CgroupPath::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> CgroupPath {
        CgroupPath::parse(s).unwrap()
    }

    #[test]
    fn normalises() {
        assert_eq!(p("").as_str(), "/");
        assert_eq!(p("/").as_str(), "/");
        assert_eq!(p("a//b/").as_str(), "/a/b");
        assert_eq!(p("/a/b").relative(), "a/b");
        assert_eq!(p("/a/b").name(), "b");
        assert_eq!(p("/a/b").parent().unwrap(), p("/a"));
        assert_eq!(p("/a").parent().unwrap(), CgroupPath::root());
        assert!(CgroupPath::root().parent().is_none());
    }

    #[test]
    fn refuses_climbing_out() {
        for bad in ["..", "/a/../b", "a/./b", "/a/..", "x\0y", "x\ny"] {
            assert!(CgroupPath::parse(bad).is_err(), "{bad:?}");
        }
        assert!(p("/a").join("../b").is_err());
        // Dots inside a name are fine.
        assert_eq!(p("/a").join("b..c").unwrap().as_str(), "/a/b..c");
    }

    #[test]
    fn prefixes_are_component_wise() {
        assert!(p("/a/b/c").starts_with(&p("/a/b")));
        assert!(p("/a/b").starts_with(&p("/a/b")));
        assert!(!p("/a/bc").starts_with(&p("/a/b")));
        assert_eq!(p("/a/b/c").strip_prefix(&p("/a")).unwrap(), p("/b/c"));
        assert_eq!(p("/a").strip_prefix(&p("/a")).unwrap(), CgroupPath::root());
        assert_eq!(p("/a").strip_prefix(&CgroupPath::root()).unwrap(), p("/a"));
        assert_eq!(p("/a").join_path(&p("/b/c")), p("/a/b/c"));
        assert_eq!(
            p("/a/b").ancestors_and_self(),
            vec![p("/"), p("/a"), p("/a/b")]
        );
    }

    #[test]
    fn serde_checks_paths() {
        let ok: CgroupPath = serde_json::from_str("\"/a/b\"").unwrap();
        assert_eq!(ok, p("/a/b"));
        assert!(serde_json::from_str::<CgroupPath>("\"/a/../b\"").is_err());
    }
}
