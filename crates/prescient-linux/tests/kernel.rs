//! Tests on the real kernel. Each one works under the test process's own
//! cgroup in each hierarchy it uses (read from /proc/self/cgroup and
//! /proc/self/mountinfo), in a uniquely named subtree it creates; it moves
//! only processes it started, kills only those (by their pid, through the
//! `Child` handles), and removes its whole subtree when it ends, on a panic
//! too (an RAII guard).
//!
//! They need root and a cgroup filesystem. Without them they print why and
//! skip, unless PRESCIENT_REQUIRE_KERNEL_TESTS=1 (as CI sets), when they
//! fail instead. The subtree guard, the skip and the CPU lock are
//! `prescient_linux::testing`'s, shared with the other crates' kernel tests.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread::sleep;
use std::time::{Duration, Instant};

use prescient_core::{HostId, Plan, PlanEntry, Resource, WorkloadId};
use prescient_linux::discover::{CommandMatch, Rule};
use prescient_linux::enforce::{
    Action, Capacity, CpuMax, Desired, EnforceError, Enforcer, Guarantee, Guardrails, IoLimit,
    Knob, Limits, MemoryLimit, PlanStyle, Setting, V1Enforcer, V2Enforcer, desired_from_plan,
    enforcer_for, page_align,
};
use prescient_linux::layout::{HierarchyId, Version, parse_proc_cgroup};
use prescient_linux::testing::{TestTree, V1_USED, cpu_lock, live, root_disk, skip_or_fail};
use prescient_linux::{
    CgroupPath, Collector, Discovery, Grouper, LayoutKind, ProcFs, Reconciler, Root, Selector,
};

const MIB: u64 = 1 << 20;

/// Makes the `sleep` arguments the tests look their children up by unique.
static SEQ: AtomicU32 = AtomicU32::new(0);

fn p(s: &str) -> CgroupPath {
    CgroupPath::parse(s).unwrap()
}

fn cpu_usage_usec(c: &mut Collector, cg: &CgroupPath) -> u64 {
    let mut errors = Vec::new();
    let s = c.sample(cg, 0, &mut errors).expect("the cgroup exists");
    assert!(errors.is_empty(), "{errors:?}");
    s.cpu.and_then(|c| c.usage_usec).expect("cpu usage is read")
}

fn rails() -> Guardrails {
    Guardrails::new(Capacity {
        cpu_cores: std::thread::available_parallelism()
            .map(|n| n.get() as f64)
            .unwrap_or(1.0),
        memory_bytes: 1 << 40,
    })
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

fn v1_file(tree: &TestTree, controller: &str, cg: &CgroupPath, file: &str) -> String {
    let h = tree
        .fs
        .hierarchy(&HierarchyId::V1(controller.into()))
        .unwrap();
    fs::read_to_string(h.dir(cg).join(file))
        .unwrap()
        .trim()
        .to_string()
}

// ---------------------------------------------------------------- tests

#[test]
fn layout_and_own_cgroups_of_this_machine() {
    let test = "layout_and_own_cgroups_of_this_machine";
    let Some(fs) = live(test) else { return };
    let layout = fs.layout();
    let own = parse_proc_cgroup(&fs::read_to_string("/proc/self/cgroup").unwrap()).unwrap();
    // Every hierarchy in /proc/self/cgroup is one detected from mountinfo.
    for line in &own {
        if line.is_v2() {
            assert!(layout.v2.is_some(), "0::{} but no cgroup2 mount", line.path);
        } else if !line.controllers.is_empty() {
            let c = &line.controllers[0];
            assert!(layout.v1.iter().any(|m| m.has(c)), "no v1 mount for {c}");
        }
    }
    let expect = match (
        layout.v2.is_some(),
        own.iter()
            .any(|l| !l.is_v2() && l.controllers.iter().any(|c| V1_USED.contains(&c.as_str()))),
    ) {
        (true, true) => LayoutKind::Hybrid,
        (true, false) => LayoutKind::V2,
        (false, true) => LayoutKind::V1,
        (false, false) => LayoutKind::None,
    };
    assert_eq!(layout.kind(), expect);
    eprintln!(
        "layout: {}; v2 controllers: {:?}",
        layout.kind(),
        layout.v2.as_ref().map(|m| &m.controllers)
    );
    // Based at our own cgroups, the collector reads our own usage.
    let based = fs
        .clone()
        .based_at_process("self", &CgroupPath::root())
        .unwrap();
    if let Some(mem) = own
        .iter()
        .find(|l| l.controllers.iter().any(|c| c == "memory"))
    {
        assert_eq!(based.for_controller("memory").unwrap().base, p(&mem.path));
    }
    let mut errors = Vec::new();
    let s = Collector::new(&based)
        .sample(&CgroupPath::root(), 0, &mut errors)
        .unwrap();
    assert!(errors.is_empty(), "{errors:?}");
    assert!(s.cpu.unwrap().usage_usec.unwrap() > 0);
    assert!(
        s.memory_current.unwrap() > 0,
        "this process's memory is charged to its cgroup"
    );
    if layout.v2.is_some() {
        assert!(s.cpu_pressure.is_some() || !Path::new("/proc/pressure").exists());
    }
}

#[test]
fn proc_readers_on_live_processes() {
    let test = "proc_readers_on_live_processes";
    let Some(mut tree) = TestTree::for_test(test) else {
        return;
    };
    let procfs = ProcFs::new(Root::live());
    let arg = format!(
        "3600.{}{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    );
    let pid = tree.spawn(Command::new("sleep").arg(&arg)).unwrap();
    let me = std::process::id() as i32;
    // The child may not have exec'd sleep yet; and while exec runs, the
    // new name shows before the new command line does.
    let t0 = Instant::now();
    let stat = loop {
        let s = procfs.stat(pid, None).unwrap().unwrap();
        let cmd = procfs.cmdline(pid).unwrap().unwrap();
        if (s.comm == "sleep" && !cmd.is_empty()) || t0.elapsed() > Duration::from_secs(5) {
            break s;
        }
        sleep(Duration::from_millis(10));
    };
    assert_eq!(
        (stat.pid, stat.comm.as_str(), stat.ppid),
        (pid, "sleep", me)
    );
    assert_eq!(
        procfs.cmdline(pid).unwrap().unwrap(),
        vec!["sleep".to_string(), arg]
    );
    let status = procfs.status(pid, None).unwrap().unwrap();
    assert_eq!(status.ppid, Some(me));
    assert_eq!(procfs.owner(pid).unwrap().unwrap().0, 0);
    assert!(procfs.io(pid, None).unwrap().is_some());
    let libs = procfs.libraries(me).unwrap().unwrap();
    assert!(libs.iter().any(|l| l.contains("libc.so")), "{libs:?}");
    assert_eq!(procfs.net_ns(pid).unwrap(), procfs.net_ns(me).unwrap());
    let by_ns = procfs.net_by_namespace(&[me, pid]).unwrap();
    assert_eq!(by_ns.len(), 1);
    assert!(
        by_ns
            .values()
            .next()
            .unwrap()
            .iter()
            .any(|d| d.interface == "lo")
    );
    assert_eq!(
        procfs.cgroups(pid).unwrap().unwrap(),
        procfs.cgroups(me).unwrap().unwrap()
    );
    // Threads of this (multi-threaded) test process.
    let tids = procfs.tids(me).unwrap().unwrap();
    assert!(tids.contains(&me));
    for t in &tids {
        // A thread may end between listing and reading: None, not an error.
        let _ = procfs.stat(me, Some(*t)).unwrap();
    }
    assert!(procfs.pids().unwrap().contains(&pid));
    // Gone: every reader says None.
    tree.child(pid).unwrap().kill().unwrap();
    tree.child(pid).unwrap().wait().unwrap();
    assert!(procfs.stat(pid, None).unwrap().is_none());
    assert!(procfs.status(pid, None).unwrap().is_none());
    assert!(procfs.sample(pid, None, 0).unwrap().is_none());
    assert!(procfs.net_ns(pid).unwrap().is_none());
}

#[test]
fn processes_are_grouped_and_their_cpu_is_read_in_every_hierarchy() {
    let test = "processes_are_grouped";
    let Some(mut tree) = TestTree::for_test(test) else {
        return;
    };
    let busy = tree.spawn_busy().unwrap();
    let marker = format!(
        "3600.{}{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    );
    let sleeper = tree.spawn(Command::new("sleep").arg(&marker)).unwrap();
    sleep(Duration::from_millis(100));
    let procfs = ProcFs::new(Root::live());
    // Discovery: a process selector matching only our sleeper.
    let sel = Selector {
        name: "sleeper".into(),
        rule: Rule::Process {
            command: Some(CommandMatch::Regex(format!(
                "^sleep {}$",
                marker.replace('.', "\\.")
            ))),
            user: None,
        },
        labels: BTreeMap::from([("test".to_string(), "yes".to_string())]),
    };
    let d = Discovery::new(vec![sel], CgroupPath::root()).unwrap();
    let found = d.discover(&tree.fs, &procfs).unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].pids, vec![sleeper]);
    assert_eq!(found[0].cgroup, p("/sleeper"));
    let grouper = Grouper::new(&tree.fs);
    assert!(!grouper.hierarchies().is_empty());
    grouper.ensure_group(&found[0].cgroup).unwrap();
    let r = grouper.move_pids(&found[0].cgroup, &found[0].pids);
    assert_eq!(r.moved, vec![sleeper], "{r:?}");
    // A busy process in a nested group.
    let busy_cg = p("/busy/inner");
    grouper.ensure_group(&busy_cg).unwrap();
    assert_eq!(grouper.move_pids(&busy_cg, &[busy]).moved, vec![busy]);
    // A pid that is gone is reported, not an error.
    let gone = tree.spawn(&mut Command::new("true")).unwrap();
    tree.child(gone).unwrap().wait().unwrap();
    assert_eq!(grouper.move_pids(&busy_cg, &[gone]).vanished, vec![gone]);
    // /proc/<pid>/cgroup shows the move in every hierarchy used.
    let lines = procfs.cgroups(busy).unwrap().unwrap();
    for h in grouper.hierarchies() {
        let line = lines
            .iter()
            .find(|l| match h.mount.version {
                Version::V2 => l.is_v2(),
                Version::V1 => !l.is_v2() && l.controllers.iter().any(|c| h.has(c)),
            })
            .unwrap();
        assert!(
            line.path.ends_with(&format!("{}/busy/inner", tree.name)),
            "{}",
            line.path
        );
    }
    // CPU usage grows, read where the collector reads it...
    let mut c = Collector::new(&tree.fs);
    let a = cpu_usage_usec(&mut c, &busy_cg);
    sleep(Duration::from_millis(700));
    let b = cpu_usage_usec(&mut c, &busy_cg);
    let cores = (b - a) as f64 / 700_000.0;
    eprintln!("busy process: {cores:.2} cores");
    assert!(cores > 0.05, "{cores}");
    // ...and in v2's cpu.stat and PSI files, which always exist there.
    if let Some(v2) = tree.fs.v2() {
        let read = |f: &str| fs::read_to_string(v2.dir(&busy_cg).join(f)).unwrap();
        let u1 = prescient_linux::cgroup_files::parse_cpu_stat(&read("cpu.stat"))
            .unwrap()
            .usage_usec
            .unwrap();
        sleep(Duration::from_millis(300));
        let u2 = prescient_linux::cgroup_files::parse_cpu_stat(&read("cpu.stat"))
            .unwrap()
            .usage_usec
            .unwrap();
        assert!(u2 > u1, "v2 cpu.stat usage {u1} then {u2}");
        // The parent counts its children.
        let parent = prescient_linux::cgroup_files::parse_cpu_stat(
            &fs::read_to_string(v2.dir(&p("/busy")).join("cpu.stat")).unwrap(),
        )
        .unwrap();
        assert!(parent.usage_usec.unwrap() >= u2);
        if v2.dir(&busy_cg).join("cpu.pressure").exists() {
            prescient_linux::cgroup_files::parse_pressure(&read("cpu.pressure")).unwrap();
            prescient_linux::cgroup_files::parse_pressure(&read("memory.pressure")).unwrap();
            prescient_linux::cgroup_files::parse_pressure(&read("io.pressure")).unwrap();
        }
        // Where v2 has no controllers (hybrid), its limit files are not
        // there: the v2 backend says so and creates nothing.
        if !v2.has("cpu") {
            let mut e = V2Enforcer::new(&tree.fs).unwrap();
            let o = e.read(&busy_cg).unwrap();
            assert_eq!(o.cpu_max, None);
            let err = e
                .write(&busy_cg, &Setting::CpuMax(CpuMax::cores(0.5)))
                .unwrap_err();
            assert!(
                matches!(err, EnforceError::ControllerUnavailable { .. }),
                "{err}"
            );
            assert!(!v2.dir(&busy_cg).join("cpu.max").exists());
        }
    }
    // Discovery by glob on the real tree finds the groups.
    let d = Discovery::new(vec![Selector::cgroup("groups", "/*")], CgroupPath::root()).unwrap();
    let ids: Vec<String> = d
        .discover(&tree.fs, &procfs)
        .unwrap()
        .into_iter()
        .map(|w| w.id.0)
        .collect();
    assert_eq!(ids, vec!["busy".to_string(), "sleeper".to_string()]);
}

#[test]
fn v1_cpu_quota_really_caps_a_busy_process() {
    let test = "v1_cpu_quota";
    let Some(mut tree) = TestTree::for_test(test) else {
        return;
    };
    if !tree.has_v1(test, &["cpu", "cpuacct"]) {
        return;
    }
    let cg = p("/capped");
    let grouper = Grouper::new(&tree.fs);
    grouper.ensure_group(&cg).unwrap();
    let busy = tree.spawn_busy().unwrap();
    assert_eq!(grouper.move_pids(&cg, &[busy]).moved, vec![busy]);
    let mut c = Collector::new(&tree.fs);
    let u0 = cpu_usage_usec(&mut c, &cg);
    let t0 = Instant::now();
    sleep(Duration::from_millis(1000));
    let free = (cpu_usage_usec(&mut c, &cg) - u0) as f64 / t0.elapsed().as_micros() as f64;
    eprintln!("uncapped: {free:.2} cores");

    let mut r = Reconciler::new(V1Enforcer::new(&tree.fs).unwrap(), rails());
    let mut want = BTreeMap::new();
    want.insert(
        cg.clone(),
        Desired {
            limits: Limits {
                cpu_max: Some(CpuMax::cores(0.2)),
                cpu_weight: Some(50),
                ..Limits::default()
            },
            guarantee: Guarantee {
                cpu_cores: 0.1,
                ..Guarantee::default()
            },
            reason: "kernel test: 0.2 cores".into(),
        },
    );
    let a = r.reconcile(&want, 1);
    assert_eq!(
        wrote(&a),
        vec![Setting::CpuMax(CpuMax::cores(0.2)), Setting::CpuWeight(50)],
        "{a:?}"
    );
    let audit = a[0].audit().unwrap();
    assert_eq!(audit.before.as_deref(), Some("max 100000"));
    assert_eq!(audit.after.as_deref(), Some("20000 100000"));
    assert!(
        audit
            .target
            .ends_with("capped/cpu.cfs_quota_us (+cpu.cfs_period_us)"),
        "{}",
        audit.target
    );
    assert_eq!(v1_file(&tree, "cpu", &cg, "cpu.cfs_quota_us"), "20000");
    assert_eq!(v1_file(&tree, "cpu", &cg, "cpu.shares"), "512");
    let throttled0 = v1_file(&tree, "cpu", &cg, "cpu.stat");

    let u1 = cpu_usage_usec(&mut c, &cg);
    let t1 = Instant::now();
    sleep(Duration::from_millis(2000));
    let capped = (cpu_usage_usec(&mut c, &cg) - u1) as f64 / t1.elapsed().as_micros() as f64;
    eprintln!("capped at 0.2: {capped:.3} cores");
    assert!(capped <= 0.3, "capped at 0.2 cores but used {capped:.3}");
    assert!(capped >= 0.05, "the capped process hardly ran: {capped:.3}");
    let mut errors = Vec::new();
    let s = c.sample(&cg, 0, &mut errors).unwrap();
    assert!(
        s.cpu.unwrap().nr_throttled.unwrap() > 0,
        "before: {throttled0}"
    );

    // Idempotent.
    assert!(r.reconcile(&want, 2).is_empty());
    // Someone else raises the quota: drift, set back.
    fs::write(
        tree.fs
            .hierarchy(&HierarchyId::V1("cpu".into()))
            .unwrap()
            .dir(&cg)
            .join("cpu.cfs_quota_us"),
        "50000",
    )
    .unwrap();
    let a = r.reconcile(&want, 3);
    assert!(
        matches!(
            &a[0],
            Action::Drift {
                knob: Knob::CpuMax,
                ..
            }
        ),
        "{a:?}"
    );
    assert_eq!(v1_file(&tree, "cpu", &cg, "cpu.cfs_quota_us"), "20000");
    // Below the guarantee: refused before the kernel.
    want.get_mut(&cg).unwrap().limits.cpu_max = Some(CpuMax::cores(0.05));
    let a = r.reconcile(&want, 4);
    assert!(
        matches!(
            &a[0],
            Action::Refused {
                error: EnforceError::CpuBelowGuarantee { .. },
                ..
            }
        ),
        "{a:?}"
    );
    assert_eq!(v1_file(&tree, "cpu", &cg, "cpu.cfs_quota_us"), "20000");
    // Shutdown restores the originals.
    let a = r.shutdown(5);
    assert_eq!(wrote(&a).len(), 2, "{a:?}");
    assert_eq!(v1_file(&tree, "cpu", &cg, "cpu.cfs_quota_us"), "-1");
    assert_eq!(v1_file(&tree, "cpu", &cg, "cpu.shares"), "1024");
}

#[test]
fn v1_memory_limits_are_guarded_by_usage() {
    let test = "v1_memory_limits";
    let Some(mut tree) = TestTree::for_test(test) else {
        return;
    };
    if !tree.has_v1(test, &["memory"]) {
        return;
    }
    let cg = p("/mem");
    let grouper = Grouper::new(&tree.fs);
    grouper.ensure_group(&cg).unwrap();
    // dd allocates a 64 MiB buffer but touches it only as it reads stdin:
    // moved first, then fed, its memory is charged to our group. It then
    // blocks writing to a stdout pipe nobody reads, holding the memory.
    tree.hog_cpu().unwrap();
    let dd = tree
        .spawn(
            Command::new("dd")
                .args(["bs=64M", "count=1", "iflag=fullblock"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::null()),
        )
        .unwrap();
    assert_eq!(grouper.move_pids(&cg, &[dd]).moved, vec![dd]);
    let mut stdin = tree.child(dd).unwrap().stdin.take().unwrap();
    stdin.write_all(&vec![b'x'; 64 << 20]).unwrap();
    let e = V1Enforcer::new(&tree.fs).unwrap();
    let t0 = Instant::now();
    let usage = loop {
        let u = e.read(&cg).unwrap().memory_usage.unwrap();
        if u >= 60 * MIB || t0.elapsed() > Duration::from_secs(5) {
            break u;
        }
        sleep(Duration::from_millis(20));
    };
    eprintln!("group memory usage: {} MiB", usage / MIB);
    assert!(usage >= 60 * MIB, "usage {usage}");

    let mut r = Reconciler::new(V1Enforcer::new(&tree.fs).unwrap(), rails());
    let limit = usage + 256 * MIB;
    let mut want = BTreeMap::new();
    want.insert(
        cg.clone(),
        Desired {
            limits: Limits {
                memory_max: Some(MemoryLimit::Bytes(limit)),
                ..Limits::default()
            },
            guarantee: Guarantee::default(),
            reason: "kernel test".into(),
        },
    );
    let a = r.reconcile(&want, 1);
    assert_eq!(
        wrote(&a),
        vec![Setting::MemoryMax(MemoryLimit::Bytes(page_align(limit)))],
        "{a:?}"
    );
    assert_eq!(
        v1_file(&tree, "memory", &cg, "memory.limit_in_bytes"),
        page_align(limit).to_string()
    );
    assert_eq!(
        e.read(&cg).unwrap().memory_max,
        Some(MemoryLimit::Bytes(page_align(limit)))
    );
    assert!(
        r.reconcile(&want, 2).is_empty(),
        "read back equal: nothing to do"
    );

    // Under usage: refused before the kernel; the soft limit comes down
    // instead.
    want.get_mut(&cg).unwrap().limits.memory_max = Some(MemoryLimit::Bytes(16 * MIB));
    let a = r.reconcile(&want, 3);
    assert!(
        a.iter().any(|a| matches!(a, Action::Refused { knob: Knob::MemoryMax, error: EnforceError::MemoryBelowUsage { limit, usage: u, .. }, .. }
            if *limit == 16 * MIB && *u >= 60 * MIB)),
        "{a:?}"
    );
    assert_eq!(
        wrote(&a),
        vec![Setting::MemoryHigh(MemoryLimit::Bytes(16 * MIB))]
    );
    assert_eq!(
        v1_file(&tree, "memory", &cg, "memory.limit_in_bytes"),
        page_align(limit).to_string()
    );
    assert_eq!(
        v1_file(&tree, "memory", &cg, "memory.soft_limit_in_bytes"),
        (16 * MIB).to_string()
    );

    // The memory counters of the group.
    let mut errors = Vec::new();
    let s = Collector::new(&tree.fs)
        .sample(&cg, 0, &mut errors)
        .unwrap();
    assert!(errors.is_empty(), "{errors:?}");
    assert!(s.memory_stat.unwrap().anon.unwrap() >= 60 * MIB);
    assert_eq!(s.memory_events.unwrap().oom_kill, Some(0));

    let a = r.shutdown(4);
    assert_eq!(wrote(&a).len(), 2, "{a:?}");
    assert_eq!(e.read(&cg).unwrap().memory_max, Some(MemoryLimit::Max));
    assert_eq!(e.read(&cg).unwrap().memory_high, Some(MemoryLimit::Max));
    drop(stdin);
}

#[test]
fn v1_blkio_throttle_rules_are_written_and_removed() {
    let test = "v1_blkio";
    let Some(tree) = TestTree::for_test(test) else {
        return;
    };
    if !tree.has_v1(test, &["blkio"]) {
        return;
    }
    let Some(dev) = root_disk() else {
        skip_or_fail(test, "cannot tell the disk that holds /");
        return;
    };
    let cg = p("/io");
    Grouper::new(&tree.fs).ensure_group(&cg).unwrap();
    let mut r = Reconciler::new(V1Enforcer::new(&tree.fs).unwrap(), rails());
    let mut limits = Limits::default();
    limits.io_max.insert(
        dev,
        IoLimit {
            rbps: Some(10 * MIB),
            wiops: Some(500),
            ..IoLimit::default()
        },
    );
    let want = BTreeMap::from([(
        cg.clone(),
        Desired {
            limits,
            guarantee: Guarantee::default(),
            reason: "kernel test".into(),
        },
    )]);
    let a = r.reconcile(&want, 1);
    assert_eq!(wrote(&a).len(), 1, "{a:?}");
    assert_eq!(
        v1_file(&tree, "blkio", &cg, "blkio.throttle.read_bps_device"),
        format!("{dev} {}", 10 * MIB)
    );
    assert_eq!(
        v1_file(&tree, "blkio", &cg, "blkio.throttle.write_iops_device"),
        format!("{dev} 500")
    );
    assert!(r.reconcile(&want, 2).is_empty());
    r.shutdown(3);
    assert_eq!(
        v1_file(&tree, "blkio", &cg, "blkio.throttle.read_bps_device"),
        ""
    );

    // A plan's bandwidth and operations allocations, through the style's
    // device: all four throttle files, read back by the enforcer.
    let entry = |resource, allocation| PlanEntry {
        workload: WorkloadId("io".into()),
        resource,
        allocation,
        coverage: 0.95,
        expected_unmet: 0.0,
        reason: "kernel test".into(),
    };
    let plan = Plan {
        made_at: 0,
        pool: HostId("h".into()),
        degraded: false,
        entries: vec![
            entry(Resource::IoRead, (20 * MIB) as f64),
            entry(Resource::IoWrite, (5 * MIB) as f64),
            entry(Resource::IoReadOps, 300.0),
            entry(Resource::IoWriteOps, 80.0),
        ],
    };
    let style = PlanStyle {
        io_devices: vec![dev],
        ..PlanStyle::default()
    };
    let workloads = BTreeMap::from([(WorkloadId("io".into()), (cg.clone(), Guarantee::default()))]);
    let want = desired_from_plan(&plan, &workloads, &style);
    let limit = IoLimit {
        rbps: Some(20 * MIB),
        wbps: Some(5 * MIB),
        riops: Some(300),
        wiops: Some(80),
    };
    let mut r = Reconciler::new(V1Enforcer::new(&tree.fs).unwrap(), rails());
    let a = r.reconcile(&want, 4);
    assert_eq!(wrote(&a), vec![Setting::IoMax(dev, limit)], "{a:?}");
    for (file, v) in [
        ("blkio.throttle.read_bps_device", 20 * MIB),
        ("blkio.throttle.write_bps_device", 5 * MIB),
        ("blkio.throttle.read_iops_device", 300),
        ("blkio.throttle.write_iops_device", 80),
    ] {
        assert_eq!(
            v1_file(&tree, "blkio", &cg, file),
            format!("{dev} {v}"),
            "{file}"
        );
    }
    let reader = V1Enforcer::new(&tree.fs).unwrap();
    assert_eq!(
        reader.read(&cg).unwrap().io_max,
        Some(BTreeMap::from([(dev, limit)]))
    );
    assert!(r.reconcile(&want, 5).is_empty());
    // Someone else lifts the read ops cap: drift, set back.
    let blkio = tree
        .fs
        .hierarchy(&HierarchyId::V1("blkio".into()))
        .unwrap()
        .dir(&cg);
    fs::write(
        blkio.join("blkio.throttle.read_iops_device"),
        format!("{dev} 0"),
    )
    .unwrap();
    let a = r.reconcile(&want, 6);
    assert!(
        matches!(&a[0], Action::Drift { knob: Knob::IoMax(d), .. } if *d == dev),
        "{a:?}"
    );
    assert_eq!(
        v1_file(&tree, "blkio", &cg, "blkio.throttle.read_iops_device"),
        format!("{dev} 300")
    );
    r.shutdown(7);
    for file in [
        "blkio.throttle.read_bps_device",
        "blkio.throttle.write_bps_device",
        "blkio.throttle.read_iops_device",
        "blkio.throttle.write_iops_device",
    ] {
        assert_eq!(v1_file(&tree, "blkio", &cg, file), "", "{file}");
    }
    assert_eq!(reader.read(&cg).unwrap().io_max, Some(BTreeMap::new()));
}

/// The v2 backend on the kernel's own files, where this test's cgroup has
/// the cpu and memory controllers (skipped, with the reason, on a host
/// whose v2 hierarchy does not give them to it, as on hybrid hosts that
/// keep them in v1).
#[test]
fn v2_limits_are_written_and_read_back_where_the_controllers_are() {
    let test = "v2_limits";
    let Some(mut tree) = TestTree::for_test(test) else {
        return;
    };
    if !tree.has_v2(test, &["cpu", "memory"]) {
        return;
    }
    let cg = p("/lim");
    // Enables cpu, memory (and io) for the tree's children.
    Grouper::new(&tree.fs).ensure_group(&cg).unwrap();
    let sleeper = tree.spawn_sleep().unwrap();
    let g = Grouper::new(&tree.fs);
    assert_eq!(g.move_pids(&cg, &[sleeper]).moved, vec![sleeper]);
    let mut e = V2Enforcer::new(&tree.fs).unwrap();
    let before = e.read(&cg).unwrap();
    assert_eq!(before.cpu_weight, Some(100), "{before:?}");
    assert_eq!(before.cpu_max, Some(CpuMax::UNLIMITED));
    assert_eq!(before.memory_high, Some(MemoryLimit::Max));
    assert!(before.memory_usage.is_some_and(|u| u > 0), "{before:?}");
    let high = page_align(256 * MIB + 5);
    for s in [
        Setting::CpuWeight(300),
        Setting::CpuMax(CpuMax::cores(0.5)),
        Setting::MemoryHigh(MemoryLimit::Bytes(256 * MIB + 5)),
        Setting::MemoryMax(MemoryLimit::Bytes(512 * MIB)),
    ] {
        e.write(&cg, &s)
            .unwrap_or_else(|err| panic!("{test}: writing {s:?}: {err}"));
    }
    let v2 = tree.fs.v2().unwrap().dir(&cg);
    let f = |n: &str| fs::read_to_string(v2.join(n)).unwrap().trim().to_string();
    assert_eq!(f("cpu.weight"), "300");
    assert_eq!(f("cpu.max"), "50000 100000");
    assert_eq!(f("memory.high"), high.to_string());
    assert_eq!(f("memory.max"), (512 * MIB).to_string());
    let after = e.read(&cg).unwrap();
    assert_eq!(after.cpu_weight, Some(300));
    assert_eq!(after.cpu_max, Some(CpuMax::cores(0.5)));
    assert_eq!(after.memory_high, Some(MemoryLimit::Bytes(high)));
    // Out-of-range values are the kernel's to refuse, and are reported.
    assert!(e.write(&cg, &Setting::CpuWeight(0)).is_err());
    assert_eq!(f("cpu.weight"), "300");
    // io.max bandwidth and operations caps, where the tree has io too.
    if tree.v2_controllers().iter().any(|c| c == "io")
        && let Some(dev) = root_disk()
    {
        let limit = IoLimit {
            rbps: Some(10 * MIB),
            riops: Some(300),
            wiops: Some(80),
            ..IoLimit::default()
        };
        e.write(&cg, &Setting::IoMax(dev, limit))
            .unwrap_or_else(|err| panic!("{test}: writing io.max: {err}"));
        assert_eq!(
            f("io.max"),
            format!("{dev} rbps={} wbps=max riops=300 wiops=80", 10 * MIB)
        );
        assert_eq!(e.read(&cg).unwrap().io_max.unwrap()[&dev], limit);
        e.write(&cg, &Setting::IoMax(dev, IoLimit::default()))
            .unwrap();
        assert_eq!(f("io.max"), "");
    }
}

#[test]
fn a_plan_reaches_the_kernel_files_within_100ms() {
    let test = "plan_latency";
    let _alone = cpu_lock(true).unwrap();
    let Some(tree) = TestTree::for_test(test) else {
        return;
    };
    if !tree.can_enforce(test, &["cpu", "memory"]) {
        return;
    }
    let e = enforcer_for(&tree.fs)
        .unwrap_or_else(|err| panic!("{test}: the controllers are there, yet no enforcer: {err}"));
    let grouper = Grouper::new(&tree.fs);
    let mut workloads = BTreeMap::new();
    for i in 0..20 {
        let cg = p(&format!("/w{i}"));
        grouper.ensure_group(&cg).unwrap();
        workloads.insert(WorkloadId(format!("w{i}")), (cg, Guarantee::default()));
    }
    // Three plans in turn, each moving every knob of every group.
    let plan = |k: usize| {
        let mut entries = Vec::new();
        for i in 0..20 {
            for (resource, allocation) in [
                (Resource::Cpu, 0.26 + i as f64 * 0.05 + k as f64 * 0.1),
                (Resource::Memory, 256e6 * (k + 1) as f64),
            ] {
                entries.push(PlanEntry {
                    workload: WorkloadId(format!("w{i}")),
                    resource,
                    allocation,
                    coverage: 0.95,
                    expected_unmet: 0.0,
                    reason: "kernel test".into(),
                });
            }
        }
        Plan {
            made_at: k as i64,
            pool: HostId("test".into()),
            degraded: false,
            entries,
        }
    };
    let mut r = Reconciler::new(e, rails());
    let style = PlanStyle {
        hard_cpu: true,
        ..PlanStyle::default()
    };
    let mut took = Vec::new();
    for k in 0..3 {
        // The plan is made here; the clock runs until its last write.
        let made = Instant::now();
        let want = desired_from_plan(&plan(k), &workloads, &style);
        let actions = r.reconcile(&want, k as i64);
        took.push(made.elapsed());
        assert!(
            actions.iter().all(|a| matches!(a, Action::Wrote { .. })),
            "{actions:?}"
        );
        assert_eq!(
            wrote(&actions).len(),
            60,
            "cpu.max, cpu.weight and memory.high of 20 groups"
        );
    }
    eprintln!(
        "plans of 20 workloads ({} backend), 60 writes each, reached the files in {took:?}",
        r.enforcer().name()
    );
    for t in &took {
        assert!(*t < Duration::from_millis(100), "took {took:?}");
    }
    let back = r.enforcer().read(&p("/w19")).unwrap();
    assert_eq!(back.cpu_max, Some(CpuMax::cores(0.26 + 19.0 * 0.05 + 0.2)));
    r.shutdown(3);
}

#[test]
fn the_guard_removes_everything_even_on_panic() {
    let test = "guard_on_panic";
    let Some(fs) = live(test) else { return };
    let mut dirs = Vec::new();
    let mut pid = 0;
    let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut tree = TestTree::for_test(test).unwrap();
        dirs = tree.dirs().to_vec();
        let g = Grouper::new(&tree.fs);
        g.ensure_group(&p("/a/b/c")).unwrap();
        pid = tree.spawn(Command::new("sleep").arg("3600")).unwrap();
        assert_eq!(g.move_pids(&p("/a/b/c"), &[pid]).moved, vec![pid]);
        panic!("on purpose");
    }));
    assert!(res.is_err());
    assert!(!dirs.is_empty());
    for d in &dirs {
        assert!(!d.exists(), "{} left behind", d.display());
    }
    // The sleeper was killed and reaped.
    assert!(!Path::new(&format!("/proc/{pid}")).exists());
    drop(fs);
}

#[test]
fn a_removed_cgroup_reads_as_gone_and_a_recreated_one_afresh() {
    let test = "removed_and_recreated";
    let Some(mut tree) = TestTree::for_test(test) else {
        return;
    };
    let cg = p("/g");
    let grouper = Grouper::new(&tree.fs);
    grouper.ensure_group(&cg).unwrap();
    let busy = tree.spawn_busy().unwrap();
    assert_eq!(grouper.move_pids(&cg, &[busy]).moved, vec![busy]);
    sleep(Duration::from_millis(300));
    let mut c = Collector::new(&tree.fs);
    let first = c.collect(std::slice::from_ref(&cg), 0);
    assert!(first.errors.is_empty(), "{:?}", first.errors);
    let used = first.samples[0].cpu.unwrap().usage_usec.unwrap();
    assert!(used > 0);
    assert!(c.open_files() > 0, "files are kept open between passes");
    // Remove the group while its files are open in the collector.
    tree.child(busy).unwrap().kill().unwrap();
    tree.child(busy).unwrap().wait().unwrap();
    let t0 = Instant::now();
    while grouper.remove_group(&cg).is_err() && t0.elapsed() < Duration::from_secs(2) {
        sleep(Duration::from_millis(20));
    }
    let gone = c.collect(std::slice::from_ref(&cg), 1);
    assert!(gone.samples.is_empty(), "{:?}", gone.samples);
    assert!(
        gone.errors.is_empty(),
        "a vanished cgroup is no error: {:?}",
        gone.errors
    );
    // The same name again: a new cgroup, read from scratch.
    grouper.ensure_group(&cg).unwrap();
    let again = c.collect(std::slice::from_ref(&cg), 2);
    assert!(again.errors.is_empty(), "{:?}", again.errors);
    let fresh = again.samples[0].cpu.unwrap().usage_usec.unwrap();
    assert!(
        fresh < used,
        "a new cgroup starts from zero: {fresh} after {used}"
    );
}
