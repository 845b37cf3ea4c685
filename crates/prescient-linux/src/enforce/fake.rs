//! A recording fake [`Enforcer`] for tests: cgroups held in memory, every
//! write recorded, failures and outside changes scripted.

use std::collections::{BTreeMap, VecDeque};

use rustix::io::Errno;

use super::{EnforceError, Enforcer, Knob, MemoryLimit, Observed, Setting, page_align};
use crate::path::CgroupPath;

/// An in-memory [`Enforcer`] that records what it is asked to do.
#[derive(Debug, Default)]
pub struct FakeEnforcer {
    cgroups: BTreeMap<CgroupPath, Observed>,
    /// Every successful write, in order.
    pub writes: Vec<(CgroupPath, Setting)>,
    /// Every attempted write that failed, in order.
    pub failed_writes: Vec<(CgroupPath, Setting)>,
    /// How many times `read` was called.
    pub reads: std::cell::Cell<usize>,
    failures: VecDeque<(CgroupPath, Knob, Errno)>,
}

impl FakeEnforcer {
    /// No cgroups.
    pub fn new() -> Self {
        FakeEnforcer::default()
    }

    /// Adds (or replaces) a cgroup in state `o`.
    pub fn add(&mut self, cgroup: &CgroupPath, o: Observed) {
        self.cgroups.insert(cgroup.clone(), o);
    }

    /// Removes a cgroup, as if it was deleted.
    pub fn remove(&mut self, cgroup: &CgroupPath) {
        self.cgroups.remove(cgroup);
    }

    /// The cgroup's state.
    pub fn state(&self, cgroup: &CgroupPath) -> Option<&Observed> {
        self.cgroups.get(cgroup)
    }

    /// Sets the memory in use.
    pub fn set_usage(&mut self, cgroup: &CgroupPath, bytes: u64) {
        if let Some(o) = self.cgroups.get_mut(cgroup) {
            o.memory_usage = Some(bytes);
        }
    }

    /// Someone else writes `s` (drift).
    pub fn external_write(&mut self, cgroup: &CgroupPath, s: Setting) {
        if let Some(o) = self.cgroups.get_mut(cgroup) {
            o.set(s);
        }
    }

    /// The next write of `knob` to `cgroup` fails with `errno`.
    pub fn fail_next(&mut self, cgroup: &CgroupPath, knob: Knob, errno: Errno) {
        self.failures.push_back((cgroup.clone(), knob, errno));
    }
}

impl Enforcer for FakeEnforcer {
    fn name(&self) -> &'static str {
        "fake"
    }

    fn read(&self, cgroup: &CgroupPath) -> Result<Observed, EnforceError> {
        self.reads.set(self.reads.get() + 1);
        self.cgroups
            .get(cgroup)
            .cloned()
            .ok_or_else(|| EnforceError::Vanished {
                cgroup: cgroup.clone(),
                path: format!("fake:{cgroup}").into(),
            })
    }

    fn write(&mut self, cgroup: &CgroupPath, setting: &Setting) -> Result<(), EnforceError> {
        let knob = setting.knob();
        if let Some(i) = self
            .failures
            .iter()
            .position(|(c, k, _)| c == cgroup && *k == knob)
        {
            let (_, _, errno) = self.failures.remove(i).expect("position is in range");
            self.failed_writes.push((cgroup.clone(), *setting));
            return Err(EnforceError::Write {
                path: self.target(cgroup, knob).into(),
                value: setting.v2_text(),
                source: errno.into(),
            });
        }
        let Some(o) = self.cgroups.get_mut(cgroup) else {
            return Err(EnforceError::Write {
                path: self.target(cgroup, knob).into(),
                value: setting.v2_text(),
                source: Errno::NODEV.into(),
            });
        };
        if o.get(knob).is_none() {
            return Err(EnforceError::ControllerUnavailable {
                cgroup: cgroup.clone(),
                knob,
                file: self.target(cgroup, knob).into(),
            });
        }
        // The kernel keeps memory limits in whole pages.
        let stored = match *setting {
            Setting::MemoryHigh(MemoryLimit::Bytes(b)) => {
                Setting::MemoryHigh(MemoryLimit::Bytes(page_align(b)))
            }
            Setting::MemoryMax(MemoryLimit::Bytes(b)) => {
                Setting::MemoryMax(MemoryLimit::Bytes(page_align(b)))
            }
            s => s,
        };
        o.set(stored);
        self.writes.push((cgroup.clone(), *setting));
        Ok(())
    }

    fn target(&self, cgroup: &CgroupPath, knob: Knob) -> String {
        format!("fake:{cgroup}/{knob}")
    }
}
