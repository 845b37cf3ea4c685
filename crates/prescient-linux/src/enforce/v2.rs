//! The cgroup v2 backend: `cpu.max`, `cpu.weight`, `memory.high`,
//! `memory.max`, `io.max`, confined to the v2 hierarchy's base.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{
    CpuMax, EnforceError, Enforcer, IoLimit, Knob, MemoryLimit, Observed, Setting, page_align,
};
use crate::cgroup_files::Device;
use std::io::Read;

use crate::io::{ReadError, write_existing};
use crate::layout::{CgroupFs, Hierarchy};
use crate::parse::{ParseError, for_each_nested, parse_single_u64, u64_at};
use crate::path::CgroupPath;

/// Writes v2 limit files under the v2 hierarchy's base (the subtree it was
/// configured with), and nowhere else.
#[derive(Debug, Clone)]
pub struct V2Enforcer {
    subtree: Subtree,
}

/// A directory the enforcer may write under, resolved once.
#[derive(Debug, Clone)]
pub(crate) struct Subtree {
    hierarchy: Hierarchy,
    real_base: PathBuf,
}

impl Subtree {
    pub(crate) fn new(hierarchy: &Hierarchy) -> Result<Subtree, EnforceError> {
        let real_base = hierarchy.base_dir().canonicalize().map_err(|e| {
            if crate::io::is_vanished(&e) {
                EnforceError::Vanished {
                    cgroup: hierarchy.base.clone(),
                    path: hierarchy.base_dir().to_path_buf(),
                }
            } else {
                EnforceError::Read(ReadError::Io {
                    path: hierarchy.base_dir().to_path_buf(),
                    source: e,
                })
            }
        })?;
        Ok(Subtree {
            hierarchy: hierarchy.clone(),
            real_base,
        })
    }

    /// The directory of `cgroup`, checked to be inside the subtree: the
    /// base was resolved when the enforcer was made, and `cgroup` holds no
    /// `..`, so the one way out is a symlink below the base; each component
    /// is checked not to be one (cgroupfs has none; a fixture tree or a
    /// mistaken mount might). Cheaper than resolving the whole path.
    pub(crate) fn dir(&self, cgroup: &CgroupPath) -> Result<PathBuf, EnforceError> {
        let mut dir = self.real_base.clone();
        for c in cgroup.components() {
            dir.push(c);
            match dir.symlink_metadata() {
                Ok(m) if m.file_type().is_symlink() => {
                    let resolved = dir.canonicalize().unwrap_or_else(|_| dir.clone());
                    if !resolved.starts_with(&self.real_base) {
                        return Err(EnforceError::OutsideSubtree {
                            path: resolved,
                            root: self.real_base.clone(),
                        });
                    }
                    // A link that stays inside still is not a cgroup.
                    return Err(EnforceError::OutsideSubtree {
                        path: dir,
                        root: self.real_base.clone(),
                    });
                }
                Ok(m) if m.is_dir() => {}
                Ok(_) => {
                    return Err(EnforceError::Vanished {
                        cgroup: cgroup.clone(),
                        path: dir,
                    });
                }
                Err(e) if crate::io::is_vanished(&e) => {
                    return Err(EnforceError::Vanished {
                        cgroup: cgroup.clone(),
                        path: dir,
                    });
                }
                Err(source) => return Err(EnforceError::Read(ReadError::Io { path: dir, source })),
            }
        }
        Ok(dir)
    }

    /// Writes `value` to `file` of `cgroup`: never to a symlink, never
    /// creating the file.
    pub(crate) fn write(
        &self,
        cgroup: &CgroupPath,
        knob: Knob,
        file: &str,
        value: &str,
    ) -> Result<(), EnforceError> {
        let path = self.dir(cgroup)?.join(file);
        write_existing(&path, value).map_err(|source| {
            if crate::io::is_symlink_error(&source) {
                EnforceError::OutsideSubtree {
                    path: path.clone(),
                    root: self.real_base.clone(),
                }
            } else if source.kind() == std::io::ErrorKind::NotFound {
                EnforceError::ControllerUnavailable {
                    cgroup: cgroup.clone(),
                    knob,
                    file: path.clone(),
                }
            } else {
                EnforceError::Write {
                    path: path.clone(),
                    value: value.to_string(),
                    source,
                }
            }
        })
    }

    /// Reads and parses `file` of the cgroup in `dir` (never through a
    /// symlink); `None` when absent.
    pub(crate) fn read<T>(
        &self,
        dir: &Path,
        file: &str,
        parse: impl FnOnce(&str) -> Result<T, ParseError>,
    ) -> Result<Option<T>, EnforceError> {
        let path = dir.join(file);
        let mut text = String::new();
        let res =
            crate::io::open_nofollow(&path, false).and_then(|mut f| f.read_to_string(&mut text));
        match res {
            Ok(_) => parse(&text)
                .map(Some)
                .map_err(|source| EnforceError::Read(ReadError::Parse { path, source })),
            Err(e) if crate::io::is_symlink_error(&e) => Err(EnforceError::OutsideSubtree {
                path,
                root: self.real_base.clone(),
            }),
            Err(e) if crate::io::is_vanished(&e) => Ok(None),
            Err(source) => Err(EnforceError::Read(ReadError::Io { path, source })),
        }
    }

    /// The unresolved path of `file`, for audit targets.
    pub(crate) fn target(&self, cgroup: &CgroupPath, file: &str) -> PathBuf {
        self.hierarchy.dir(cgroup).join(file)
    }
}

impl V2Enforcer {
    /// An enforcer for the v2 hierarchy of `fs`, confined to its base.
    pub fn new(fs: &CgroupFs) -> Result<V2Enforcer, EnforceError> {
        let h = fs.v2().ok_or_else(|| EnforceError::Vanished {
            cgroup: CgroupPath::root(),
            path: fs.root().join("/sys/fs/cgroup"),
        })?;
        Ok(V2Enforcer {
            subtree: Subtree::new(h)?,
        })
    }
}

/// Parses `cpu.max`: `max 100000` or `50000 100000` (a lone number is a
/// quota with the default period).
pub fn parse_cpu_max(text: &str) -> Result<CpuMax, ParseError> {
    let mut it = text.split_ascii_whitespace();
    let quota = it
        .next()
        .ok_or_else(|| ParseError::new(1, "empty cpu.max", text))?;
    let quota_us = match quota {
        "max" => None,
        q => Some(u64_at(1, "quota", q)?),
    };
    let period_us = match it.next() {
        Some(p) => u64_at(1, "period", p)?,
        None => super::CPU_PERIOD_DEFAULT_US,
    };
    Ok(CpuMax {
        quota_us,
        period_us,
    })
}

/// Parses `memory.high` / `memory.max`: `max` or bytes.
pub fn parse_memory_limit(text: &str) -> Result<MemoryLimit, ParseError> {
    match text.trim() {
        "max" => Ok(MemoryLimit::Max),
        t => Ok(MemoryLimit::Bytes(u64_at(1, "memory limit", t)?)),
    }
}

/// Parses `io.max`: `8:16 rbps=2097152 wbps=max riops=max wiops=120`.
pub fn parse_io_max(text: &str) -> Result<BTreeMap<Device, IoLimit>, ParseError> {
    let mut out = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let (dev, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        let dev = Device::parse(n, dev)?;
        let mut l = IoLimit::default();
        for_each_nested(n, rest, |k, v| {
            let val = if v == "max" {
                None
            } else {
                Some(u64_at(n, k, v)?)
            };
            match k {
                "rbps" => l.rbps = val,
                "wbps" => l.wbps = val,
                "riops" => l.riops = val,
                "wiops" => l.wiops = val,
                _ => {}
            }
            Ok(())
        })?;
        if !l.is_unlimited() {
            out.insert(dev, l);
        }
    }
    Ok(out)
}

impl Enforcer for V2Enforcer {
    fn name(&self) -> &'static str {
        "v2"
    }

    fn read(&self, cgroup: &CgroupPath) -> Result<Observed, EnforceError> {
        let all = [
            Knob::CpuMax,
            Knob::CpuWeight,
            Knob::MemoryMax,
            Knob::IoMax(Device { major: 0, minor: 0 }),
        ];
        self.read_knobs(cgroup, &all)
    }

    fn read_knobs(&self, cgroup: &CgroupPath, knobs: &[Knob]) -> Result<Observed, EnforceError> {
        let s = &self.subtree;
        let dir = s.dir(cgroup)?;
        let (cpu_max, cpu_weight, memory, io) = super::needs(knobs);
        let mut o = Observed::default();
        if cpu_max {
            o.cpu_max = s.read(&dir, "cpu.max", parse_cpu_max)?;
        }
        if cpu_weight {
            o.cpu_weight = s.read(&dir, "cpu.weight", parse_single_u64)?;
        }
        if memory {
            o.memory_high = s.read(&dir, "memory.high", parse_memory_limit)?;
            o.memory_max = s.read(&dir, "memory.max", parse_memory_limit)?;
            o.memory_usage = s.read(&dir, "memory.current", parse_single_u64)?;
        }
        if io {
            o.io_max = s.read(&dir, "io.max", parse_io_max)?;
        }
        Ok(o)
    }

    fn write(&mut self, cgroup: &CgroupPath, setting: &Setting) -> Result<(), EnforceError> {
        let (file, value) = match setting {
            Setting::CpuMax(_) => ("cpu.max", setting.v2_text()),
            Setting::CpuWeight(_) => ("cpu.weight", setting.v2_text()),
            Setting::MemoryHigh(m) => ("memory.high", Setting::MemoryHigh(aligned(*m)).v2_text()),
            Setting::MemoryMax(m) => ("memory.max", Setting::MemoryMax(aligned(*m)).v2_text()),
            Setting::IoMax(..) => ("io.max", setting.v2_text()),
        };
        self.subtree.write(cgroup, setting.knob(), file, &value)
    }

    fn target(&self, cgroup: &CgroupPath, knob: Knob) -> String {
        let file = match knob {
            Knob::CpuMax => "cpu.max",
            Knob::CpuWeight => "cpu.weight",
            Knob::MemoryHigh => "memory.high",
            Knob::MemoryMax => "memory.max",
            Knob::IoMax(_) => "io.max",
        };
        self.subtree.target(cgroup, file).display().to_string()
    }
}

fn aligned(m: MemoryLimit) -> MemoryLimit {
    match m {
        MemoryLimit::Max => MemoryLimit::Max,
        MemoryLimit::Bytes(b) => MemoryLimit::Bytes(page_align(b)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_files() {
        assert_eq!(parse_cpu_max("max 100000\n").unwrap(), CpuMax::UNLIMITED);
        assert_eq!(parse_cpu_max("50000 100000\n").unwrap(), CpuMax::cores(0.5));
        assert_eq!(parse_cpu_max("50000").unwrap(), CpuMax::cores(0.5));
        assert!(parse_cpu_max("").is_err());
        assert!(parse_cpu_max("x 1").is_err());
        assert_eq!(parse_memory_limit("max\n").unwrap(), MemoryLimit::Max);
        assert_eq!(
            parse_memory_limit("4096\n").unwrap(),
            MemoryLimit::Bytes(4096)
        );
        let io = parse_io_max("8:16 rbps=2097152 wbps=max riops=max wiops=120\n8:0 rbps=max wbps=max riops=max wiops=max\n").unwrap();
        assert_eq!(io.len(), 1, "an all-max line is no limit");
        let l = io[&Device {
            major: 8,
            minor: 16,
        }];
        assert_eq!((l.rbps, l.wbps, l.wiops), (Some(2097152), None, Some(120)));
        // What is written is what is read back.
        let s = Setting::IoMax(
            Device {
                major: 8,
                minor: 16,
            },
            l,
        );
        assert_eq!(
            parse_io_max(&s.v2_text()).unwrap()[&Device {
                major: 8,
                minor: 16
            }],
            l
        );
    }
}
