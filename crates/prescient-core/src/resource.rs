use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A kind of resource a workload uses and Prescient allocates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Resource {
    /// CPU time, in cores.
    Cpu,
    /// Memory, in bytes.
    Memory,
    /// Block-device reads, in bytes per second.
    IoRead,
    /// Block-device writes, in bytes per second.
    IoWrite,
    /// Network bytes received per second.
    NetRx,
    /// Network bytes sent per second.
    NetTx,
    /// Disk activity as a percentage of the machine (as some public traces give it).
    DiskIo,
    /// Block-device read operations per second (IOPS).
    ///
    /// Appended after [`Resource::DiskIo`] so that the order of the older
    /// variants (the derived `Ord`, `Resource::ALL`, `as u8` in solver
    /// internals) is unchanged; stored data names resources by
    /// [`Resource::as_str`], which old data never uses for these.
    IoReadOps,
    /// Block-device write operations per second (IOPS).
    IoWriteOps,
}

/// A resource name that is not one of [`Resource::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown resource '{name}' (expected one of: cpu, memory, io_read, io_write, net_rx, net_tx, disk_io, io_read_ops, io_write_ops)"
)]
pub struct UnknownResource {
    /// The name as given.
    pub name: String,
}

impl Resource {
    /// Every resource, in a stable order.
    pub const ALL: [Resource; 9] = [
        Resource::Cpu,
        Resource::Memory,
        Resource::IoRead,
        Resource::IoWrite,
        Resource::NetRx,
        Resource::NetTx,
        Resource::DiskIo,
        Resource::IoReadOps,
        Resource::IoWriteOps,
    ];

    /// The name used in traces, the store, the API and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Resource::Cpu => "cpu",
            Resource::Memory => "memory",
            Resource::IoRead => "io_read",
            Resource::IoWrite => "io_write",
            Resource::NetRx => "net_rx",
            Resource::NetTx => "net_tx",
            Resource::DiskIo => "disk_io",
            Resource::IoReadOps => "io_read_ops",
            Resource::IoWriteOps => "io_write_ops",
        }
    }

    /// The unit its values are in.
    pub fn unit(self) -> &'static str {
        match self {
            Resource::Cpu => "cores",
            Resource::Memory => "bytes",
            Resource::IoRead | Resource::IoWrite | Resource::NetRx | Resource::NetTx => "bytes/s",
            Resource::DiskIo => "percent",
            Resource::IoReadOps | Resource::IoWriteOps => "ops/s",
        }
    }

    /// The default granularity of allocations: 1/8 core, 64 MiB, 1 MiB/s,
    /// 1 %, 10 ops/s.
    pub fn default_allocation_unit(self) -> f64 {
        match self {
            Resource::Cpu => 0.125,
            Resource::Memory => 64.0 * 1024.0 * 1024.0,
            Resource::IoRead | Resource::IoWrite | Resource::NetRx | Resource::NetTx => {
                1024.0 * 1024.0
            }
            Resource::DiskIo => 1.0,
            // 10 ops/s: a spinning disk does ~100-200 random ops/s, so a
            // unit is 5-10 % of one, about as coarse as 1/8 core of a small
            // machine; an NVMe device's 10^5-10^6 ops/s is 10^4-10^5 units,
            // far below the solver's MAX_UNITS. 1 op/s would be noise for
            // any device (a cap that low stalls a workload outright).
            Resource::IoReadOps | Resource::IoWriteOps => 10.0,
        }
    }

    /// For a resource measured as the rate of a cumulative counter: how
    /// many counter units one unit of the resource for one second is (CPU:
    /// 1e6, the counter being CPU time in µs; bytes/s: 1, the counter being
    /// bytes; ops/s: 1, the counter being completed operations). `None` for
    /// gauges (memory in use, disk activity), which are stored as they are
    /// read.
    pub fn counter_scale(self) -> Option<f64> {
        match self {
            Resource::Cpu => Some(1e6),
            Resource::IoRead | Resource::IoWrite | Resource::NetRx | Resource::NetTx => Some(1.0),
            Resource::IoReadOps | Resource::IoWriteOps => Some(1.0),
            Resource::Memory | Resource::DiskIo => None,
        }
    }

    /// Whether running short slows a workload down (CPU, I/O, network) rather
    /// than killing it (memory: an out-of-memory kill).
    pub fn is_compressible(self) -> bool {
        !matches!(self, Resource::Memory)
    }
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Resource {
    type Err = UnknownResource;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Resource::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| UnknownResource {
                name: s.to_string(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for r in Resource::ALL {
            assert_eq!(r.as_str().parse::<Resource>().unwrap(), r);
            assert_eq!(
                serde_json::to_string(&r).unwrap(),
                format!("\"{}\"", r.as_str())
            );
        }
    }

    #[test]
    fn unknown_resource_names_the_input_and_the_choices() {
        let err = "gpu".parse::<Resource>().unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("'gpu'"), "{msg}");
        assert!(msg.contains("cpu, memory"), "{msg}");
        for r in Resource::ALL {
            assert!(msg.contains(r.as_str()), "{msg} lacks {r}");
        }
    }

    /// The IOPS resources came after data was stored: the older variants
    /// keep their names, serde encodings and positions (`Resource::ALL` and
    /// the derived order), so old stores, plans and traces still decode.
    #[test]
    fn older_resources_keep_their_names_and_order() {
        let old = [
            (Resource::Cpu, "cpu"),
            (Resource::Memory, "memory"),
            (Resource::IoRead, "io_read"),
            (Resource::IoWrite, "io_write"),
            (Resource::NetRx, "net_rx"),
            (Resource::NetTx, "net_tx"),
            (Resource::DiskIo, "disk_io"),
        ];
        for (i, (r, name)) in old.into_iter().enumerate() {
            assert_eq!(Resource::ALL[i], r);
            assert_eq!(r as u8 as usize, i);
            assert_eq!(name.parse::<Resource>().unwrap(), r);
            assert_eq!(
                serde_json::from_str::<Resource>(&format!("\"{name}\"")).unwrap(),
                r
            );
        }
        assert_eq!(Resource::ALL[7], Resource::IoReadOps);
        assert_eq!(Resource::ALL[8], Resource::IoWriteOps);
        assert!(Resource::DiskIo < Resource::IoReadOps);
    }

    #[test]
    fn iops_resources() {
        for r in [Resource::IoReadOps, Resource::IoWriteOps] {
            assert_eq!(r.unit(), "ops/s");
            assert_eq!(r.counter_scale(), Some(1.0));
            assert_eq!(r.default_allocation_unit(), 10.0);
            assert!(r.is_compressible());
        }
        assert_eq!("io_read_ops".parse::<Resource>(), Ok(Resource::IoReadOps));
        assert_eq!("io_write_ops".parse::<Resource>(), Ok(Resource::IoWriteOps));
    }
}
