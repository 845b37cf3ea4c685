//! Path globs over cgroup paths: `*` and `?` within one component, `**`
//! for any number of components (none included), `[abc]` / `[a-z]` /
//! `[!a]` for one character of a set.

use std::fmt;

/// A glob that cannot be compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("glob {glob:?}: {why}")]
pub struct GlobError {
    /// The glob as given.
    pub glob: String,
    /// What is wrong with it.
    pub why: String,
}

/// A compiled cgroup path glob, e.g. `/system.slice/*.service` or
/// `/kubepods.slice/**/cri-containerd-*.scope`.
#[derive(Clone, PartialEq, Eq)]
pub struct Glob {
    text: String,
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    /// `**`
    AnyDepth,
    /// One component's pattern.
    Component(Vec<Tok>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Lit(char),
    AnyOne,
    AnyRun,
    Set {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

impl Glob {
    /// Compiles `text`; a leading `/` is optional.
    pub fn new(text: &str) -> Result<Glob, GlobError> {
        let err = |why: &str| GlobError {
            glob: text.to_string(),
            why: why.to_string(),
        };
        let mut parts = Vec::new();
        for comp in text.split('/').filter(|c| !c.is_empty()) {
            if comp == "**" {
                if parts.last() != Some(&Part::AnyDepth) {
                    parts.push(Part::AnyDepth);
                }
                continue;
            }
            if comp.contains("**") {
                return Err(err("'**' must be a whole path component"));
            }
            if comp == "." || comp == ".." {
                return Err(err("'.' and '..' components are not allowed"));
            }
            let mut toks = Vec::new();
            let mut chars = comp.chars().peekable();
            while let Some(c) = chars.next() {
                match c {
                    '*' => toks.push(Tok::AnyRun),
                    '?' => toks.push(Tok::AnyOne),
                    '[' => {
                        let negated = matches!(chars.peek(), Some('!') | Some('^'));
                        if negated {
                            chars.next();
                        }
                        let mut ranges = Vec::new();
                        let mut closed = false;
                        let mut first = true;
                        while let Some(c) = chars.next() {
                            if c == ']' && !first {
                                closed = true;
                                break;
                            }
                            first = false;
                            if chars.peek() == Some(&'-') {
                                chars.next();
                                match chars.next() {
                                    Some(']') => {
                                        ranges.push((c, c));
                                        ranges.push(('-', '-'));
                                        closed = true;
                                        break;
                                    }
                                    Some(hi) if hi >= c => ranges.push((c, hi)),
                                    Some(_) => return Err(err("a range in [] runs backwards")),
                                    None => break,
                                }
                            } else {
                                ranges.push((c, c));
                            }
                        }
                        if !closed {
                            return Err(err("'[' without a closing ']'"));
                        }
                        toks.push(Tok::Set { negated, ranges });
                    }
                    c => toks.push(Tok::Lit(c)),
                }
            }
            parts.push(Part::Component(toks));
        }
        Ok(Glob {
            text: text.to_string(),
            parts,
        })
    }

    /// The glob as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether `path` (`/a/b/c`) matches the whole glob.
    pub fn matches(&self, path: &str) -> bool {
        let comps: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
        match_parts(&self.parts, &comps)
    }

    /// Whether some path below `path` could still match: lets a tree walk
    /// skip subtrees.
    pub fn may_match_below(&self, path: &str) -> bool {
        let comps: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
        prefix_viable(&self.parts, &comps)
    }
}

fn match_parts(parts: &[Part], comps: &[&str]) -> bool {
    match parts.split_first() {
        None => comps.is_empty(),
        Some((Part::AnyDepth, rest)) => {
            (0..=comps.len()).any(|skip| match_parts(rest, &comps[skip..]))
        }
        Some((Part::Component(toks), rest)) => match comps.split_first() {
            Some((c, more)) => {
                match_component(toks, &c.chars().collect::<Vec<_>>()) && match_parts(rest, more)
            }
            None => false,
        },
    }
}

/// Whether some path strictly below `comps` can match `parts`.
fn prefix_viable(parts: &[Part], comps: &[&str]) -> bool {
    match parts.split_first() {
        None => false,
        Some((Part::AnyDepth, _)) => true,
        Some((Part::Component(toks), rest)) => match comps.split_first() {
            None => true,
            Some((c, more)) => {
                match_component(toks, &c.chars().collect::<Vec<_>>()) && prefix_viable(rest, more)
            }
        },
    }
}

fn match_component(toks: &[Tok], s: &[char]) -> bool {
    match toks.split_first() {
        None => s.is_empty(),
        Some((Tok::AnyRun, rest)) => (0..=s.len()).any(|k| match_component(rest, &s[k..])),
        Some((t, rest)) => match s.split_first() {
            None => false,
            Some((&c, more)) => {
                let ok = match t {
                    Tok::Lit(l) => *l == c,
                    Tok::AnyOne => true,
                    Tok::Set { negated, ranges } => {
                        ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) != *negated
                    }
                    Tok::AnyRun => unreachable!("handled above"),
                };
                ok && match_component(rest, more)
            }
        },
    }
}

impl fmt::Debug for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Glob({:?})", self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(g: &str, p: &str) -> bool {
        Glob::new(g).unwrap().matches(p)
    }

    #[test]
    fn components() {
        assert!(m("/system.slice/*.service", "/system.slice/nginx.service"));
        assert!(!m("/system.slice/*.service", "/system.slice/nginx.scope"));
        assert!(
            !m("/system.slice/*.service", "/system.slice/a/nginx.service"),
            "* stays in its component"
        );
        assert!(m(
            "system.slice/ng?nx.service",
            "/system.slice/nginx.service"
        ));
        assert!(m("/docker/[0-9a-f]*", "/docker/3f4a"));
        assert!(!m("/docker/[!0-9]*", "/docker/3f4a"));
        assert!(m("/", "/"));
        assert!(!m("/", "/a"));
    }

    #[test]
    fn any_depth() {
        let g = "/kubepods.slice/**/cri-containerd-*.scope";
        assert!(m(
            g,
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-podX.slice/cri-containerd-ab.scope"
        ));
        assert!(
            m(g, "/kubepods.slice/cri-containerd-ab.scope"),
            "** matches no component too"
        );
        assert!(!m(g, "/system.slice/cri-containerd-ab.scope"));
        assert!(m("/**", "/a/b/c"));
        assert!(m(
            "/**/*.scope",
            "/user.slice/user-1000.slice/session-3.scope"
        ));
    }

    #[test]
    fn pruning() {
        let g = Glob::new("/system.slice/*.service").unwrap();
        assert!(g.may_match_below("/"));
        assert!(g.may_match_below("/system.slice"));
        assert!(!g.may_match_below("/user.slice"));
        assert!(!g.may_match_below("/system.slice/a.service"));
        assert!(Glob::new("/**/x").unwrap().may_match_below("/any/where"));
    }

    #[test]
    fn bad_globs() {
        assert!(Glob::new("/a**b").is_err());
        assert!(Glob::new("/a/[bc").is_err());
        assert!(Glob::new("/a/../b").is_err());
        assert!(Glob::new("/[z-a]").is_err());
    }
}
