use std::fmt;

use serde::{Deserialize, Serialize};

use crate::Resource;

/// The machine (or pool) whose capacity a set of workloads shares.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct HostId(pub String);

/// A workload's stable name, unique within its host.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct WorkloadId(pub String);

/// One time series: a resource of a workload on a host.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SeriesKey {
    /// The host the workload runs on.
    pub host: HostId,
    /// The workload.
    pub workload: WorkloadId,
    /// The resource measured.
    pub resource: Resource,
}

impl SeriesKey {
    /// A key from its parts.
    pub fn new(host: impl Into<String>, workload: impl Into<String>, resource: Resource) -> Self {
        SeriesKey {
            host: HostId(host.into()),
            workload: WorkloadId(workload.into()),
            resource,
        }
    }
}

impl fmt::Display for HostId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for WorkloadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for SeriesKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.host, self.workload, self.resource)
    }
}

impl From<&str> for HostId {
    fn from(s: &str) -> Self {
        HostId(s.to_string())
    }
}

impl From<&str> for WorkloadId {
    fn from(s: &str) -> Self {
        WorkloadId(s.to_string())
    }
}
