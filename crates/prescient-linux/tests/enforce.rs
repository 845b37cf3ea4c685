//! The enforcer: the v2 and v1 backends on fixture trees (what lands in
//! the files is exactly right), and the reconciler's guardrails, drift,
//! retries and audit through the recording fake.

mod common;

use std::collections::BTreeMap;
use std::fs;

use common::copy_fixture;
use prescient_core::{HostId, Plan, PlanEntry, Resource, WorkloadId};
use prescient_linux::enforce::{
    Action, Capacity, CpuMax, Desired, Device, EnforceError, Enforcer, FakeEnforcer, Guarantee,
    Guardrails, IoLimit, Knob, Limits, MaxStep, MemoryLimit, Observed, PlanStyle, Reconciler,
    RetryPolicy, Setting, V1Enforcer, V2Enforcer, desired_from_plan,
};
use prescient_linux::layout::HierarchyId;
use prescient_linux::{CgroupFs, CgroupPath, Root};
use rustix::io::Errno;

const MIB: u64 = 1 << 20;

fn p(s: &str) -> CgroupPath {
    CgroupPath::parse(s).unwrap()
}

fn rails() -> Guardrails {
    Guardrails::new(Capacity {
        cpu_cores: 8.0,
        memory_bytes: 16 << 30,
    })
}

fn desired(limits: Limits) -> BTreeMap<CgroupPath, Desired> {
    let mut m = BTreeMap::new();
    m.insert(
        p("/web"),
        Desired {
            limits,
            guarantee: Guarantee::default(),
            reason: "plan 1".into(),
        },
    );
    m
}

fn wrote(actions: &[Action]) -> Vec<Setting> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Wrote { setting, .. } => Some(*setting),
            _ => None,
        })
        .collect()
}

// ------------------------------------------------------------- v2 backend

/// A v2 fixture whose enforcer is confined to /system.slice.
fn v2_tree() -> (tempfile::TempDir, V2Enforcer) {
    let tmp = copy_fixture("v2");
    let fs = CgroupFs::detect(Root::new(tmp.path()))
        .unwrap()
        .with_base(&HierarchyId::V2, p("/system.slice"))
        .unwrap();
    let e = V2Enforcer::new(&fs).unwrap();
    (tmp, e)
}

#[test]
fn v2_reads_and_writes_exactly_the_kernel_format() {
    let (tmp, mut e) = v2_tree();
    let dir = tmp.path().join("sys/fs/cgroup/system.slice/nginx.service");
    let cg = p("/nginx.service");
    let o = e.read(&cg).unwrap();
    assert_eq!(o.cpu_max, Some(CpuMax::cores(0.5)));
    assert_eq!(o.cpu_weight, Some(200));
    assert_eq!(o.memory_high, Some(MemoryLimit::Bytes(268435456)));
    assert_eq!(o.memory_max, Some(MemoryLimit::Bytes(536870912)));
    assert_eq!(o.memory_usage, Some(52662272));
    let dev = Device {
        major: 8,
        minor: 16,
    };
    assert_eq!(o.io_max.as_ref().unwrap()[&dev].wiops, Some(120));

    e.write(&cg, &Setting::CpuMax(CpuMax::cores(1.25))).unwrap();
    e.write(&cg, &Setting::CpuWeight(300)).unwrap();
    e.write(&cg, &Setting::MemoryHigh(MemoryLimit::Max))
        .unwrap();
    e.write(&cg, &Setting::MemoryMax(MemoryLimit::Bytes(300 * MIB + 5)))
        .unwrap();
    e.write(
        &cg,
        &Setting::IoMax(
            dev,
            IoLimit {
                rbps: Some(1 << 20),
                ..IoLimit::default()
            },
        ),
    )
    .unwrap();
    let f = |n: &str| fs::read_to_string(dir.join(n)).unwrap();
    assert_eq!(f("cpu.max"), "125000 100000");
    assert_eq!(f("cpu.weight"), "300");
    assert_eq!(f("memory.high"), "max");
    assert_eq!(f("memory.max"), (300 * MIB).to_string(), "page-aligned");
    assert_eq!(
        f("io.max"),
        "8:16 rbps=1048576 wbps=max riops=max wiops=max"
    );
    // A file that is not there is a missing controller, and is not created.
    fs::remove_file(dir.join("cpu.weight")).unwrap();
    let err = e.write(&cg, &Setting::CpuWeight(50)).unwrap_err();
    assert!(
        matches!(
            err,
            EnforceError::ControllerUnavailable {
                knob: Knob::CpuWeight,
                ..
            }
        ),
        "{err}"
    );
    assert!(!dir.join("cpu.weight").exists());
    assert_eq!(e.read(&cg).unwrap().cpu_weight, None);
    // A cgroup that does not exist.
    assert!(matches!(
        e.read(&p("/gone.service")),
        Err(EnforceError::Vanished { .. })
    ));
}

#[test]
fn writes_stay_inside_the_subtree() {
    let (tmp, mut e) = v2_tree();
    let cg_root = tmp.path().join("sys/fs/cgroup");
    // A symlinked directory leading out of the subtree.
    std::os::unix::fs::symlink(
        cg_root.join("user.slice"),
        cg_root.join("system.slice/escape"),
    )
    .unwrap();
    let err = e.write(&p("/escape"), &Setting::CpuWeight(1)).unwrap_err();
    match &err {
        EnforceError::OutsideSubtree { path, root } => {
            assert!(path.ends_with("user.slice"), "{}", path.display());
            assert!(root.ends_with("system.slice"), "{}", root.display());
        }
        e => panic!("{e}"),
    }
    assert_eq!(
        fs::read_to_string(cg_root.join("user.slice/cpu.weight"))
            .unwrap()
            .trim(),
        "100"
    );
    // A symlinked limit file.
    let dir = cg_root.join("system.slice/postgresql.service");
    fs::remove_file(dir.join("cpu.max")).unwrap();
    std::os::unix::fs::symlink(cg_root.join("user.slice/cpu.max"), dir.join("cpu.max")).unwrap();
    assert!(matches!(
        e.write(
            &p("/postgresql.service"),
            &Setting::CpuMax(CpuMax::cores(1.0))
        ),
        Err(EnforceError::OutsideSubtree { .. })
    ));
    assert_eq!(
        fs::read_to_string(cg_root.join("user.slice/cpu.max"))
            .unwrap()
            .trim(),
        "max 100000"
    );
    // '..' never gets as far as a path.
    assert!(CgroupPath::parse("/../user.slice").is_err());
    assert!(p("/").join("..").is_err());
}

#[test]
fn reconcile_on_a_v2_tree_is_idempotent_detects_drift_and_restores() {
    let (tmp, e) = v2_tree();
    let dir = tmp.path().join("sys/fs/cgroup/system.slice/nginx.service");
    let f = |n: &str| fs::read_to_string(dir.join(n)).unwrap();
    let mut r = Reconciler::new(e, rails());
    let mut want = BTreeMap::new();
    want.insert(
        p("/nginx.service"),
        Desired {
            limits: Limits {
                cpu_max: Some(CpuMax::cores(2.0)),
                cpu_weight: Some(200),
                memory_max: Some(MemoryLimit::Bytes(1 << 30)),
                ..Limits::default()
            },
            guarantee: Guarantee::default(),
            reason: "plan of h at 0".into(),
        },
    );
    let a = r.reconcile(&want, 1);
    // The weight is already 200: only cpu.max and memory.max are written.
    assert_eq!(
        wrote(&a),
        vec![
            Setting::MemoryMax(MemoryLimit::Bytes(1 << 30)),
            Setting::CpuMax(CpuMax::cores(2.0))
        ]
    );
    let audit = a
        .iter()
        .find_map(|a| a.audit().filter(|r| r.target.ends_with("cpu.max")))
        .unwrap();
    assert_eq!(audit.before.as_deref(), Some("50000 100000"));
    assert_eq!(audit.after.as_deref(), Some("200000 100000"));
    assert_eq!(audit.action, "cgroup.write");
    assert_eq!(audit.actor, "agent");
    assert_eq!(audit.reason, "plan of h at 0");
    assert_eq!(audit.ts, 1);
    assert_eq!(f("cpu.max"), "200000 100000");
    // Again: nothing to do.
    assert!(r.reconcile(&want, 2).is_empty());
    // Someone else changes cpu.max: drift reported, value set back.
    fs::write(dir.join("cpu.max"), "max 100000\n").unwrap();
    let a = r.reconcile(&want, 3);
    assert!(matches!(
        &a[0],
        Action::Drift { knob: Knob::CpuMax, expected, found, .. }
            if *expected == Setting::CpuMax(CpuMax::cores(2.0)) && *found == Setting::CpuMax(CpuMax::UNLIMITED)
    ));
    assert_eq!(wrote(&a), vec![Setting::CpuMax(CpuMax::cores(2.0))]);
    assert_eq!(f("cpu.max"), "200000 100000");
    // Shutdown restores the originals.
    let a = r.shutdown(4);
    assert_eq!(wrote(&a).len(), 2);
    assert_eq!(f("cpu.max"), "50000 100000");
    assert_eq!(f("memory.max"), "536870912");
    assert_eq!(f("cpu.weight").trim(), "200");
}

#[test]
fn a_plan_of_a_large_host_reaches_every_file_of_a_v2_tree() {
    // 100 workloads (a large host), each with a hard CPU cap, a weight and
    // memory.high: 300 writes. How fast that is lives in a benchmark
    // (`cargo bench -p prescient-agent --bench reaction`), not here.
    let tmp = common::copy_fixture_in_memory("v2");
    let base = tmp.path().join("sys/fs/cgroup/prescient");
    let mut workloads = BTreeMap::new();
    let mut entries = Vec::new();
    for i in 0..100 {
        let d = base.join(format!("w{i}"));
        fs::create_dir_all(&d).unwrap();
        for (file, text) in [
            ("cpu.max", "max 100000\n"),
            ("cpu.weight", "1\n"),
            ("memory.high", "max\n"),
            ("memory.max", "max\n"),
            ("memory.current", "1048576\n"),
            ("io.max", ""),
        ] {
            fs::write(d.join(file), text).unwrap();
        }
        let w = WorkloadId(format!("w{i}"));
        workloads.insert(w.clone(), (p(&format!("/w{i}")), Guarantee::default()));
        for (resource, allocation) in [
            (Resource::Cpu, 0.5 + i as f64 / 100.0),
            (Resource::Memory, 256e6),
        ] {
            entries.push(PlanEntry {
                workload: w.clone(),
                resource,
                allocation,
                coverage: 0.95,
                expected_unmet: 0.0,
                reason: "p95".into(),
            });
        }
    }
    let fs = CgroupFs::detect(Root::new(tmp.path()))
        .unwrap()
        .with_base(&HierarchyId::V2, p("/prescient"))
        .unwrap();
    let mut r = Reconciler::new(V2Enforcer::new(&fs).unwrap(), rails());
    let style = PlanStyle {
        hard_cpu: true,
        ..PlanStyle::default()
    };
    let plan = Plan {
        made_at: 0,
        pool: HostId("h".into()),
        degraded: false,
        entries,
    };
    let want = desired_from_plan(&plan, &workloads, &style);
    let actions = r.reconcile(&want, 0);
    assert_eq!(
        wrote(&actions).len(),
        300,
        "{:?}",
        actions.iter().find(|a| a.audit().is_none())
    );
    assert_eq!(
        fs::read_to_string(base.join("w99/cpu.max")).unwrap(),
        "149000 100000"
    );
    assert_eq!(
        fs::read_to_string(base.join("w0/cpu.weight")).unwrap(),
        "50"
    );
}

/// A plan's io_read_ops / io_write_ops become `io.max` riops / wiops on
/// the style's devices, through the reconciler: audited, idempotent, drift
/// set back, the original line restored at shutdown.
#[test]
fn io_ops_allocations_reach_io_max_with_drift_and_restore() {
    let (tmp, e) = v2_tree();
    let dir = tmp.path().join("sys/fs/cgroup/system.slice/nginx.service");
    let f = |n: &str| fs::read_to_string(dir.join(n)).unwrap();
    let dev = Device {
        major: 8,
        minor: 16,
    };
    let entry = |resource, allocation| PlanEntry {
        workload: WorkloadId("nginx".into()),
        resource,
        allocation,
        coverage: 0.95,
        expected_unmet: 0.0,
        reason: "p95".into(),
    };
    let plan = Plan {
        made_at: 0,
        pool: HostId("h".into()),
        degraded: false,
        entries: vec![
            entry(Resource::IoRead, 4.0 * MIB as f64),
            entry(Resource::IoReadOps, 300.0),
            entry(Resource::IoWriteOps, 80.0),
        ],
    };
    let workloads = BTreeMap::from([(
        WorkloadId("nginx".into()),
        (p("/nginx.service"), Guarantee::default()),
    )]);
    let style = PlanStyle {
        io_devices: vec![dev],
        ..PlanStyle::default()
    };
    let want = desired_from_plan(&plan, &workloads, &style);
    let mut r = Reconciler::new(e, rails());
    let a = r.reconcile(&want, 1);
    let set = Setting::IoMax(
        dev,
        IoLimit {
            rbps: Some(4 * MIB),
            wbps: None,
            riops: Some(300),
            wiops: Some(80),
        },
    );
    assert_eq!(wrote(&a), vec![set]);
    let line = "8:16 rbps=4194304 wbps=max riops=300 wiops=80";
    assert_eq!(f("io.max"), line);
    let audit = a.iter().find_map(Action::audit).unwrap();
    assert!(audit.target.ends_with("io.max"), "{}", audit.target);
    assert_eq!(
        audit.before.as_deref(),
        Some("8:16 rbps=2097152 wbps=max riops=max wiops=120")
    );
    assert_eq!(audit.after.as_deref(), Some(line));
    assert!(
        audit.reason.contains("io_write_ops: p95"),
        "{}",
        audit.reason
    );
    // Again: nothing to do.
    assert!(r.reconcile(&want, 2).is_empty());
    // Someone lifts the read ops cap: drift, set back.
    fs::write(
        dir.join("io.max"),
        "8:16 rbps=4194304 wbps=max riops=max wiops=80\n",
    )
    .unwrap();
    let a = r.reconcile(&want, 3);
    assert!(
        matches!(&a[0], Action::Drift { knob: Knob::IoMax(d), expected, .. }
            if *d == dev && *expected == set),
        "{a:?}"
    );
    assert_eq!(wrote(&a), vec![set]);
    assert_eq!(f("io.max"), line);
    // Below a guarantee of read ops: refused before the kernel.
    let mut low = want.clone();
    low.get_mut(&p("/nginx.service")).unwrap().guarantee = Guarantee {
        io_read_ops_per_sec: 500,
        ..Guarantee::default()
    };
    let a = r.reconcile(&low, 4);
    assert!(
        a.iter().any(|a| matches!(
            a,
            Action::Refused {
                error: EnforceError::IoBelowGuarantee {
                    unit: "ops/s",
                    limit: 300,
                    guarantee: 500,
                    ..
                },
                ..
            }
        )),
        "{a:?}"
    );
    assert_eq!(f("io.max"), line);
    // Shutdown restores the original line.
    let a = r.shutdown(5);
    assert_eq!(wrote(&a).len(), 1, "{a:?}");
    assert_eq!(
        f("io.max"),
        "8:16 rbps=2097152 wbps=max riops=max wiops=120"
    );
}

// ------------------------------------------------------------- v1 backend

/// A v1 tree in the format of this machine's files (co-mounted cpu,cpuacct
/// as most v1 distributions do, memory, blkio).
fn v1_tree() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    fs::create_dir_all(root.join("proc/self")).unwrap();
    fs::write(
        root.join("proc/self/mountinfo"),
        "29 25 0:26 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:13 - cgroup cgroup rw,cpu,cpuacct\n\
         30 25 0:27 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:14 - cgroup cgroup rw,memory\n\
         31 25 0:28 / /sys/fs/cgroup/blkio rw,nosuid,nodev,noexec,relatime shared:15 - cgroup cgroup rw,blkio\n",
    )
    .unwrap();
    let files: [(&str, &[(&str, &str)]); 3] = [
        (
            "cpu,cpuacct",
            &[
                ("cpu.cfs_quota_us", "-1\n"),
                ("cpu.cfs_period_us", "100000\n"),
                ("cpu.shares", "1024\n"),
            ],
        ),
        (
            "memory",
            &[
                ("memory.limit_in_bytes", "9223372036854771712\n"),
                ("memory.soft_limit_in_bytes", "9223372036854771712\n"),
                ("memory.usage_in_bytes", "104857600\n"),
            ],
        ),
        (
            "blkio",
            &[
                ("blkio.throttle.read_bps_device", ""),
                ("blkio.throttle.write_bps_device", ""),
                ("blkio.throttle.read_iops_device", ""),
                ("blkio.throttle.write_iops_device", ""),
            ],
        ),
    ];
    for (h, fs_) in files {
        let d = root.join("sys/fs/cgroup").join(h).join("prescient/web");
        fs::create_dir_all(&d).unwrap();
        for (n, t) in fs_ {
            fs::write(d.join(n), t).unwrap();
        }
    }
    tmp
}

fn v1_enforcer(root: &std::path::Path) -> V1Enforcer {
    let mut fs = CgroupFs::detect(Root::new(root)).unwrap();
    for c in ["cpu", "memory", "blkio"] {
        fs = fs
            .with_base(&HierarchyId::V1(c.into()), p("/prescient"))
            .unwrap();
    }
    V1Enforcer::new(&fs).unwrap()
}

#[test]
fn v1_converts_to_the_v1_files() {
    let tmp = v1_tree();
    let mut e = v1_enforcer(tmp.path());
    let cg = p("/web");
    let o = e.read(&cg).unwrap();
    assert_eq!(o.cpu_max, Some(CpuMax::UNLIMITED));
    assert_eq!(o.cpu_weight, Some(100), "shares 1024 is weight 100");
    assert_eq!(o.memory_max, Some(MemoryLimit::Max));
    assert_eq!(o.memory_usage, Some(100 * MIB));
    assert_eq!(o.io_max, Some(BTreeMap::new()));
    let base = tmp.path().join("sys/fs/cgroup");
    let f =
        |h: &str, n: &str| fs::read_to_string(base.join(h).join("prescient/web").join(n)).unwrap();

    e.write(&cg, &Setting::CpuMax(CpuMax::cores_per(0.2, 50_000)))
        .unwrap();
    assert_eq!(f("cpu,cpuacct", "cpu.cfs_period_us"), "50000");
    assert_eq!(f("cpu,cpuacct", "cpu.cfs_quota_us"), "10000");
    e.write(&cg, &Setting::CpuMax(CpuMax::UNLIMITED)).unwrap();
    assert_eq!(f("cpu,cpuacct", "cpu.cfs_quota_us"), "-1");
    assert_eq!(f("cpu,cpuacct", "cpu.cfs_period_us"), "100000");
    e.write(&cg, &Setting::CpuWeight(50)).unwrap();
    assert_eq!(f("cpu,cpuacct", "cpu.shares"), "512");
    e.write(
        &cg,
        &Setting::MemoryMax(MemoryLimit::Bytes(512 * MIB + 100)),
    )
    .unwrap();
    assert_eq!(
        f("memory", "memory.limit_in_bytes"),
        (512 * MIB).to_string()
    );
    e.write(&cg, &Setting::MemoryHigh(MemoryLimit::Max))
        .unwrap();
    assert_eq!(f("memory", "memory.soft_limit_in_bytes"), "-1");
    let dev = Device {
        major: 254,
        minor: 0,
    };
    e.write(
        &cg,
        &Setting::IoMax(
            dev,
            IoLimit {
                rbps: Some(10 * MIB),
                wiops: Some(100),
                ..IoLimit::default()
            },
        ),
    )
    .unwrap();
    assert_eq!(
        f("blkio", "blkio.throttle.read_bps_device"),
        "254:0 10485760"
    );
    assert_eq!(
        f("blkio", "blkio.throttle.write_bps_device"),
        "254:0 0",
        "0 removes the rule"
    );
    assert_eq!(f("blkio", "blkio.throttle.write_iops_device"), "254:0 100");
    assert_eq!(f("blkio", "blkio.throttle.read_iops_device"), "254:0 0");
    // Read ops and write ops caps, read back as the limit written.
    let both = IoLimit {
        riops: Some(250),
        wiops: Some(40),
        ..IoLimit::default()
    };
    e.write(&cg, &Setting::IoMax(dev, both)).unwrap();
    assert_eq!(f("blkio", "blkio.throttle.read_iops_device"), "254:0 250");
    assert_eq!(f("blkio", "blkio.throttle.write_iops_device"), "254:0 40");
    assert_eq!(f("blkio", "blkio.throttle.read_bps_device"), "254:0 0");
    // (Only io: a fixture file keeps memory's "-1" as written, where the
    // kernel would show its largest limit.)
    let o = e.read_knobs(&cg, &[Knob::IoMax(dev)]).unwrap();
    assert_eq!(o.io_max.unwrap()[&dev], both);
    assert!(
        e.target(&cg, Knob::CpuMax)
            .ends_with("cpu.cfs_quota_us (+cpu.cfs_period_us)")
    );
}

// ------------------------------------------------------------- reconciler (fake)

fn fake_with(o: Observed) -> FakeEnforcer {
    let mut f = FakeEnforcer::new();
    f.add(&p("/web"), o);
    f
}

#[test]
fn memory_shrinks_through_memory_high_first() {
    let mut o = Observed::unlimited();
    o.memory_usage = Some(900 * MIB);
    let mut r = Reconciler::new(fake_with(o), rails());
    let want = desired(Limits {
        memory_max: Some(MemoryLimit::Bytes(512 * MIB)),
        ..Limits::default()
    });
    let a = r.reconcile(&want, 0);
    assert!(a.iter().any(|a| matches!(a,
        Action::Refused { knob: Knob::MemoryMax, error: EnforceError::MemoryBelowUsage { limit, usage, headroom, .. }, .. }
            if *limit == 512 * MIB && *usage == 900 * MIB && *headroom == 90 * MIB)));
    assert_eq!(
        wrote(&a),
        vec![Setting::MemoryHigh(MemoryLimit::Bytes(512 * MIB))]
    );
    let audit = a.iter().find_map(Action::audit).unwrap();
    assert!(
        audit.reason.contains("shrinking through memory.high"),
        "{}",
        audit.reason
    );
    assert_eq!(
        r.enforcer().state(&p("/web")).unwrap().memory_max,
        Some(MemoryLimit::Max)
    );
    // Still too much in use: nothing new (the refusal is not repeated).
    assert!(r.reconcile(&want, 1).is_empty());
    // Usage came down under the new memory.high: memory.max follows.
    r.enforcer_mut().set_usage(&p("/web"), 400 * MIB);
    let a = r.reconcile(&want, 2);
    assert_eq!(
        wrote(&a),
        vec![Setting::MemoryMax(MemoryLimit::Bytes(512 * MIB))]
    );
    assert!(r.reconcile(&want, 3).is_empty());
    // Both limits are handed back, memory.high included though it was
    // never asked for.
    let a = r.shutdown(4);
    assert_eq!(
        wrote(&a),
        vec![
            Setting::MemoryMax(MemoryLimit::Max),
            Setting::MemoryHigh(MemoryLimit::Max)
        ]
    );
}

#[test]
fn lowering_writes_memory_high_before_memory_max_and_raising_the_reverse() {
    let mut o = Observed::unlimited();
    o.memory_usage = Some(10 * MIB);
    let mut r = Reconciler::new(fake_with(o), rails());
    let down = desired(Limits {
        memory_high: Some(MemoryLimit::Bytes(256 * MIB)),
        memory_max: Some(MemoryLimit::Bytes(512 * MIB)),
        ..Limits::default()
    });
    let a = r.reconcile(&down, 0);
    assert_eq!(
        wrote(&a),
        vec![
            Setting::MemoryHigh(MemoryLimit::Bytes(256 * MIB)),
            Setting::MemoryMax(MemoryLimit::Bytes(512 * MIB))
        ]
    );
    let up = desired(Limits {
        memory_high: Some(MemoryLimit::Bytes(1024 * MIB)),
        memory_max: Some(MemoryLimit::Bytes(2048 * MIB)),
        ..Limits::default()
    });
    let a = r.reconcile(&up, 1);
    assert_eq!(
        wrote(&a),
        vec![
            Setting::MemoryMax(MemoryLimit::Bytes(2048 * MIB)),
            Setting::MemoryHigh(MemoryLimit::Bytes(1024 * MIB))
        ]
    );
}

#[test]
fn a_large_change_takes_several_steps() {
    let mut rl = rails();
    rl.max_step = MaxStep {
        cpu_cores: Some(1.0),
        ..MaxStep::default()
    };
    let mut r = Reconciler::new(fake_with(Observed::unlimited()), rl);
    let want = desired(Limits {
        cpu_max: Some(CpuMax::cores(2.5)),
        ..Limits::default()
    });
    let mut path = Vec::new();
    for t in 0..10 {
        for s in wrote(&r.reconcile(&want, t)) {
            if let Setting::CpuMax(c) = s {
                path.push(c.as_cores().unwrap());
            }
        }
    }
    // From "max" (8 cores of capacity): 7, 6, 5, 4, 3, then 2.5.
    assert_eq!(path, vec![7.0, 6.0, 5.0, 4.0, 3.0, 2.5]);
}

#[test]
fn guarantees_refuse_and_are_reported_once() {
    let mut r = Reconciler::new(fake_with(Observed::unlimited()), rails());
    let mut want = desired(Limits {
        cpu_max: Some(CpuMax::cores(0.5)),
        ..Limits::default()
    });
    want.get_mut(&p("/web")).unwrap().guarantee.cpu_cores = 1.0;
    let a = r.reconcile(&want, 0);
    assert_eq!(a.len(), 1);
    assert!(matches!(
        &a[0],
        Action::Refused {
            error: EnforceError::CpuBelowGuarantee { .. },
            ..
        }
    ));
    assert!(r.reconcile(&want, 1).is_empty());
    assert!(r.enforcer().writes.is_empty());
}

#[test]
fn ebusy_is_retried_with_backoff_on_a_paused_clock() {
    let mut r =
        Reconciler::new(fake_with(Observed::unlimited()), rails()).with_retry(RetryPolicy {
            first_delay_ms: 100,
            max_delay_ms: 1000,
            max_attempts: 3,
        });
    let want = desired(Limits {
        cpu_weight: Some(300),
        ..Limits::default()
    });
    let web = p("/web");
    r.enforcer_mut()
        .fail_next(&web, Knob::CpuWeight, Errno::BUSY);
    r.enforcer_mut()
        .fail_next(&web, Knob::CpuWeight, Errno::BUSY);
    let a = r.reconcile(&want, 1000);
    assert!(
        matches!(
            &a[0],
            Action::Failed {
                attempt: 1,
                retry_at: 1100,
                ..
            }
        ),
        "{a:?}"
    );
    // Before the backoff is over: not even tried.
    assert!(r.reconcile(&want, 1099).is_empty());
    assert_eq!(r.enforcer().failed_writes.len(), 1);
    let a = r.reconcile(&want, 1100);
    assert!(
        matches!(
            &a[0],
            Action::Failed {
                attempt: 2,
                retry_at: 1300,
                ..
            }
        ),
        "{a:?}"
    );
    let a = r.reconcile(&want, 1300);
    assert_eq!(wrote(&a), vec![Setting::CpuWeight(300)]);
    assert_eq!(r.enforcer().state(&web).unwrap().cpu_weight, Some(300));
}

#[test]
fn too_many_failures_and_einval_are_dropped_until_the_value_changes() {
    let mut r =
        Reconciler::new(fake_with(Observed::unlimited()), rails()).with_retry(RetryPolicy {
            first_delay_ms: 10,
            max_delay_ms: 10,
            max_attempts: 2,
        });
    let web = p("/web");
    for _ in 0..3 {
        r.enforcer_mut()
            .fail_next(&web, Knob::CpuWeight, Errno::BUSY);
    }
    let want = desired(Limits {
        cpu_weight: Some(300),
        ..Limits::default()
    });
    assert!(matches!(
        r.reconcile(&want, 0)[0],
        Action::Failed { attempt: 1, .. }
    ));
    assert!(matches!(
        r.reconcile(&want, 10)[0],
        Action::Failed { attempt: 2, .. }
    ));
    assert!(matches!(
        r.reconcile(&want, 20)[0],
        Action::Dropped {
            knob: Some(Knob::CpuWeight),
            ..
        }
    ));
    assert!(r.reconcile(&want, 1000).is_empty(), "dropped: not retried");
    // EINVAL is dropped at once.
    r.enforcer_mut()
        .fail_next(&web, Knob::CpuWeight, Errno::INVAL);
    let other = desired(Limits {
        cpu_weight: Some(400),
        ..Limits::default()
    });
    assert!(matches!(
        r.reconcile(&other, 2000)[0],
        Action::Dropped { .. }
    ));
    assert!(r.reconcile(&other, 3000).is_empty());
    // A new value is tried again.
    let third = desired(Limits {
        cpu_weight: Some(500),
        ..Limits::default()
    });
    assert_eq!(
        wrote(&r.reconcile(&third, 4000)),
        vec![Setting::CpuWeight(500)]
    );
}

#[test]
fn a_vanished_cgroup_is_dropped_and_forgotten_without_a_panic() {
    let mut r = Reconciler::new(fake_with(Observed::unlimited()), rails());
    let want = desired(Limits {
        cpu_weight: Some(300),
        ..Limits::default()
    });
    assert_eq!(wrote(&r.reconcile(&want, 0)).len(), 1);
    r.enforcer_mut().remove(&p("/web"));
    let a = r.reconcile(&want, 1);
    assert!(matches!(
        &a[0],
        Action::Dropped {
            knob: None,
            error: EnforceError::Vanished { .. },
            ..
        }
    ));
    assert!(r.originals().is_empty());
    // Back again (a restarted unit): managed afresh, no drift reported.
    r.enforcer_mut().add(&p("/web"), Observed::unlimited());
    let a = r.reconcile(&want, 2);
    assert_eq!(a.len(), 1);
    assert_eq!(wrote(&a), vec![Setting::CpuWeight(300)]);
}

#[test]
fn a_missing_controller_is_dropped_once() {
    let mut o = Observed::unlimited();
    o.io_max = None;
    let mut r = Reconciler::new(fake_with(o), rails());
    let dev = Device { major: 8, minor: 0 };
    let mut limits = Limits::default();
    limits.io_max.insert(
        dev,
        IoLimit {
            rbps: Some(MIB),
            ..IoLimit::default()
        },
    );
    let want = desired(limits);
    let a = r.reconcile(&want, 0);
    assert!(matches!(
        &a[0],
        Action::Dropped {
            error: EnforceError::ControllerUnavailable { .. },
            ..
        }
    ));
    assert!(r.reconcile(&want, 1).is_empty());
}

#[test]
fn a_cgroup_leaving_the_plan_gets_its_originals_back() {
    let mut o = Observed::unlimited();
    o.cpu_weight = Some(250);
    let mut r = Reconciler::new(fake_with(o), rails());
    let want = desired(Limits {
        cpu_weight: Some(50),
        ..Limits::default()
    });
    r.reconcile(&want, 0);
    assert_eq!(r.originals()[&p("/web")], vec![Setting::CpuWeight(250)]);
    let a = r.reconcile(&BTreeMap::new(), 1);
    assert_eq!(wrote(&a), vec![Setting::CpuWeight(250)]);
    assert!(
        a[0].audit()
            .unwrap()
            .reason
            .contains("no longer in the plan")
    );
    assert!(r.originals().is_empty());
}

#[test]
fn restore_keeps_the_memory_guard() {
    let mut o = Observed::unlimited();
    o.memory_max = Some(MemoryLimit::Bytes(100 * MIB));
    o.memory_usage = Some(50 * MIB);
    let mut r = Reconciler::new(fake_with(o), rails());
    let want = desired(Limits {
        memory_max: Some(MemoryLimit::Bytes(1024 * MIB)),
        ..Limits::default()
    });
    assert_eq!(wrote(&r.reconcile(&want, 0)).len(), 1);
    // The workload grew past its original limit: restoring it would OOM.
    r.enforcer_mut().set_usage(&p("/web"), 300 * MIB);
    let a = r.restore(1);
    assert!(matches!(
        &a[0],
        Action::Refused {
            error: EnforceError::MemoryBelowUsage { .. },
            ..
        }
    ));
    assert_eq!(
        r.enforcer().state(&p("/web")).unwrap().memory_max,
        Some(MemoryLimit::Bytes(1024 * MIB))
    );
}
