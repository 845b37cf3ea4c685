//! The readers on fixture trees: `hybrid/` captured verbatim from a real
//! machine, `v2/` written in the kernel documentation's formats.

mod common;

use std::collections::BTreeMap;
use std::fs;

use common::{copy_fixture, fixture};
use prescient_core::WorkloadId;
use prescient_linux::cgroup_files::Device;
use prescient_linux::discover::{CommandMatch, Rule, UserMatch};
use prescient_linux::layout::HierarchyId;
use prescient_linux::rates::{cgroup_rates, process_rates};
use prescient_linux::{
    CgroupFs, CgroupPath, Collector, Discovery, LayoutKind, ProcFs, ReadError, Reads, Root,
    Selector,
};

fn p(s: &str) -> CgroupPath {
    CgroupPath::parse(s).unwrap()
}

#[test]
fn hybrid_machine_root_sample_reads_each_counter_where_its_controller_is() {
    let fs = CgroupFs::detect(Root::new(fixture("hybrid"))).unwrap();
    assert_eq!(fs.layout().kind(), LayoutKind::Hybrid);
    assert_eq!(
        fs.v2().unwrap().mount.controllers,
        vec!["hugetlb".to_string()]
    );
    let mut c = Collector::new(&fs);
    let mut errors = Vec::new();
    let s = c.sample(&CgroupPath::root(), 5, &mut errors).unwrap();
    assert!(errors.is_empty(), "{errors:?}");
    // CPU from v1 cpuacct (ns → µs): usage_user + usage_sys files.
    let cpu = s.cpu.unwrap();
    let usage_ns: u64 = fs::read_to_string(fixture("hybrid/sys/fs/cgroup/cpuacct/cpuacct.usage"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(cpu.usage_usec, Some(usage_ns / 1000));
    assert!(cpu.user_usec.unwrap() > cpu.system_usec.unwrap());
    // Throttling from v1 cpu.stat.
    assert_eq!(cpu.nr_periods, Some(0));
    // Memory from v1 memory; no oom_control captured at the root.
    assert!(s.memory_current.unwrap() > 0);
    assert!(s.memory_stat.unwrap().anon.is_some());
    assert_eq!(s.memory_events, None);
    // PSI from the unified hierarchy.
    assert_eq!(s.cpu_pressure.unwrap().some.unwrap().total_usec, 913173806);
    // No blkio files captured at the root: missing, not an error.
    assert_eq!(s.io, None);
}

#[test]
fn a_pure_v1_host_is_told_and_the_collector_reads_each_controller_in_its_hierarchy() {
    let fs = CgroupFs::detect(Root::new(fixture("v1"))).unwrap();
    assert_eq!(fs.layout().kind(), LayoutKind::V1);
    assert!(fs.v2().is_none());
    for c in ["cpu", "cpuacct", "memory", "blkio"] {
        let h = fs.for_controller(c).unwrap();
        assert!(h.base_dir().ends_with(format!("sys/fs/cgroup/{c}")), "{c}");
    }
    assert!(
        fs.primary().unwrap().has("memory"),
        "discovery walks memory's"
    );
    let cg = p("/prescient-capture");
    let mut c = Collector::new(&fs);
    let mut errors = Vec::new();
    let s = c.sample(&cg, 5, &mut errors).unwrap();
    assert!(errors.is_empty(), "{errors:?}");
    let usage_ns: u64 = fs::read_to_string(fixture(
        "v1/sys/fs/cgroup/cpuacct/prescient-capture/cpuacct.usage",
    ))
    .unwrap()
    .trim()
    .parse()
    .unwrap();
    let cpu = s.cpu.unwrap();
    assert_eq!(cpu.usage_usec, Some(usage_ns / 1000), "cpuacct, ns to µs");
    assert_eq!(cpu.nr_periods, Some(0), "cpu.stat of the cpu hierarchy");
    assert_eq!(s.memory_current, Some(7450624));
    assert_eq!(s.memory_events.unwrap().oom_kill, Some(0));
    // Block I/O from blkio: 8 MiB read and 8 MiB written on 254:0.
    let io = s.io.unwrap();
    assert_eq!(io.len(), 1, "{io:?}");
    assert_eq!(
        io[0].device,
        Some(Device {
            major: 254,
            minor: 0
        })
    );
    assert_eq!((io[0].rbytes, io[0].wbytes), (8 << 20, 8 << 20));
    assert_eq!((io[0].rios, io[0].wios), (16, 8));
    // No v2: no pressure.
    assert_eq!(
        (s.cpu_pressure, s.memory_pressure, s.io_pressure),
        (None, None, None)
    );
}

#[test]
fn v1_blkio_is_read_through_the_collector_on_a_hybrid_host() {
    let fs = CgroupFs::detect(Root::new(fixture("hybrid"))).unwrap();
    let cg = p("/prescient-capture");
    let mut c = Collector::new(&fs).with_reads(Reads::USAGE);
    let pass = c.collect(std::slice::from_ref(&cg), 0);
    assert!(pass.errors.is_empty(), "{:?}", pass.errors);
    // The cgroup exists only in blkio: I/O is read, the rest is missing.
    let s = &pass.samples[0];
    assert_eq!(s.cpu, None);
    assert_eq!(s.memory_current, None);
    let io = s.io.as_ref().unwrap();
    assert_eq!(
        io[0].device,
        Some(Device {
            major: 254,
            minor: 0
        })
    );
    assert_eq!((io[0].rbytes, io[0].wbytes), (8 << 20, 8 << 20));
    // A second pass 2 s later with 2 MiB more read: 1 MiB/s.
    let tmp = copy_fixture("hybrid");
    let f = tmp
        .path()
        .join("sys/fs/cgroup/blkio/prescient-capture/blkio.throttle.io_service_bytes");
    let fs2 = CgroupFs::detect(Root::new(tmp.path())).unwrap();
    let mut c2 = Collector::new(&fs2).with_reads(Reads::USAGE);
    let a = c2.collect(std::slice::from_ref(&cg), 0).samples.remove(0);
    let text = fs::read_to_string(&f)
        .unwrap()
        .replace("254:0 Read 8388608", "254:0 Read 10485760");
    fs::write(&f, text).unwrap();
    // ...in 64 more read operations (blkio.throttle.io_serviced): 32 ops/s.
    let f = f.with_file_name("blkio.throttle.io_serviced");
    let text = fs::read_to_string(&f)
        .unwrap()
        .replace("254:0 Read 16", "254:0 Read 80");
    fs::write(&f, text).unwrap();
    let b = c2
        .collect(std::slice::from_ref(&cg), 2_000)
        .samples
        .remove(0);
    let r = cgroup_rates(&b, &a, 2_000);
    assert_eq!(r.io_read_bytes_per_sec, Some(1_048_576.0));
    assert_eq!(r.io_write_bytes_per_sec, Some(0.0));
    assert_eq!(r.io_read_ops_per_sec, Some(32.0));
    assert_eq!(r.io_write_ops_per_sec, Some(0.0));
}

#[test]
fn discovery_of_systemd_scopes_finds_sessions_and_container_scopes() {
    let fs = CgroupFs::detect(Root::new(fixture("v2"))).unwrap();
    let procfs = ProcFs::new(Root::new(fixture("v2")));
    let d = Discovery::new(vec![Selector::systemd_scopes()], p("/prescient")).unwrap();
    let w = d.discover(&fs, &procfs).unwrap();
    let ids: Vec<&str> = w.iter().map(|w| w.id.0.as_str()).collect();
    assert_eq!(
        ids,
        [
            "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod6c1a2b3d_4e5f_6789_abcd_ef0123456789.slice/cri-containerd-9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b.scope",
            "system.slice/docker-3f4a1c2b9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a.scope",
            "user.slice/user-1000.slice/session-3.scope",
        ]
    );
    assert!(w.iter().all(|w| w.selector == "systemd-scopes"));
    // Each labelled by what the path tells.
    assert_eq!(w[0].labels["kind"], "containerd");
    assert_eq!(w[1].labels["kind"], "docker");
    assert_eq!(w[1].labels["container_id"].len(), 64);
    assert_eq!(w[2].labels["kind"], "systemd-scope");
    // Services and slices are not scopes.
    assert!(
        !ids.iter()
            .any(|i| i.ends_with(".service") || i.ends_with(".slice"))
    );
}

#[test]
fn based_at_own_cgroups_the_memory_cgroup_is_the_process_api_one() {
    let fs = CgroupFs::detect(Root::new(fixture("hybrid")))
        .unwrap()
        .based_at_process("self", &CgroupPath::root())
        .unwrap();
    let mem = fs.hierarchy(&HierarchyId::V1("memory".into())).unwrap();
    assert_eq!(mem.base, p("/process_api/a1eaec25681f9e416ac77a6942c369a3"));
    assert_eq!(
        fs.hierarchy(&HierarchyId::V1("cpu".into())).unwrap().base,
        CgroupPath::root()
    );
    let mut errors = Vec::new();
    let s = Collector::new(&fs)
        .sample(&CgroupPath::root(), 0, &mut errors)
        .unwrap();
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(s.memory_current, Some(7450624));
    assert_eq!(s.memory_events.unwrap().oom_kill, Some(0));
}

#[test]
fn usage_only_reads_leave_the_optional_counters_out() {
    for (tree, cg) in [
        ("hybrid", CgroupPath::root()),
        ("v2", p("/system.slice/nginx.service")),
    ] {
        let fs = CgroupFs::detect(Root::new(fixture(tree))).unwrap();
        let mut errors = Vec::new();
        let all = Collector::new(&fs).sample(&cg, 1, &mut errors).unwrap();
        let usage = Collector::new(&fs)
            .with_reads(Reads::USAGE)
            .sample(&cg, 1, &mut errors)
            .unwrap();
        assert!(errors.is_empty(), "{tree}: {errors:?}");
        let (a, u) = (all.cpu.unwrap(), usage.cpu.unwrap());
        assert_eq!(u.usage_usec, a.usage_usec, "{tree}");
        assert_eq!(u.nr_throttled, a.nr_throttled, "{tree}");
        assert_eq!(usage.memory_current, all.memory_current, "{tree}");
        assert_eq!(usage.io, all.io, "{tree}");
        assert!(
            all.memory_stat.is_some() && usage.memory_stat.is_none(),
            "{tree}"
        );
        assert!(usage.memory_events.is_none(), "{tree}");
        assert!(usage.cpu_pressure.is_none() && usage.io_pressure.is_none());
    }
}

#[test]
fn v2_service_sample_has_every_counter() {
    let fs = CgroupFs::detect(Root::new(fixture("v2"))).unwrap();
    assert_eq!(fs.layout().kind(), LayoutKind::V2);
    let mut errors = Vec::new();
    let s = Collector::new(&fs)
        .sample(&p("/system.slice/nginx.service"), 7, &mut errors)
        .unwrap();
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(s.ts, 7);
    assert_eq!(s.cpu.unwrap().throttled_usec, Some(4_203_117));
    assert_eq!(s.memory_current, Some(52_662_272));
    assert_eq!(s.memory_stat.unwrap().file_mapped, Some(1_622_016));
    assert_eq!(s.memory_events.unwrap().oom_kill, Some(2));
    let io = s.io.unwrap();
    assert_eq!(
        io[0].device,
        Some(Device {
            major: 8,
            minor: 16
        })
    );
    assert_eq!(io[1].dios, 3021);
    assert_eq!(s.memory_pressure.unwrap().full.unwrap().total_usec, 40113);
}

#[test]
fn a_vanished_file_is_a_missing_value_and_a_vanished_cgroup_no_sample() {
    let tmp = copy_fixture("v2");
    let fs = CgroupFs::detect(Root::new(tmp.path())).unwrap();
    let dir = tmp.path().join("sys/fs/cgroup/system.slice/nginx.service");
    fs::remove_file(dir.join("memory.stat")).unwrap();
    fs::remove_file(dir.join("io.pressure")).unwrap();
    let mut c = Collector::new(&fs);
    let mut errors = Vec::new();
    let s = c
        .sample(&p("/system.slice/nginx.service"), 0, &mut errors)
        .unwrap();
    assert!(errors.is_empty());
    assert_eq!(s.memory_stat, None);
    assert_eq!(s.io_pressure, None);
    assert!(s.memory_current.is_some());
    assert!(
        c.sample(&p("/system.slice/gone.service"), 0, &mut errors)
            .is_none()
    );
    assert!(errors.is_empty());
    // A pass skips it too.
    let pass = c.collect(
        &[
            p("/system.slice/gone.service"),
            p("/system.slice/nginx.service"),
        ],
        0,
    );
    assert_eq!(pass.samples.len(), 1);
}

#[test]
fn a_malformed_file_is_an_error_naming_file_and_line_and_the_rest_is_read() {
    let tmp = copy_fixture("v2");
    let fs = CgroupFs::detect(Root::new(tmp.path())).unwrap();
    let dir = tmp.path().join("sys/fs/cgroup/system.slice/nginx.service");
    fs::write(dir.join("cpu.stat"), "usage_usec 12\nuser_usec twelve\n").unwrap();
    let mut errors = Vec::new();
    let s = Collector::new(&fs)
        .sample(&p("/system.slice/nginx.service"), 0, &mut errors)
        .unwrap();
    assert_eq!(s.cpu, None);
    assert!(s.memory_current.is_some());
    assert_eq!(errors.len(), 1);
    let msg = errors[0].to_string();
    assert!(
        msg.contains(
            "nginx.service/cpu.stat: line 2: user_usec: expected an unsigned integer: \"twelve\""
        ),
        "{msg}"
    );
    assert!(matches!(errors[0], ReadError::Parse { .. }));
}

#[test]
fn rates_between_two_passes_of_a_changing_tree() {
    let tmp = copy_fixture("v2");
    let fs = CgroupFs::detect(Root::new(tmp.path())).unwrap();
    let mut c = Collector::new(&fs);
    let cg = p("/system.slice/nginx.service");
    let mut errors = Vec::new();
    let a = c.sample(&cg, 10_000, &mut errors).unwrap();
    let dir = tmp.path().join("sys/fs/cgroup/system.slice/nginx.service");
    let text = fs::read_to_string(dir.join("cpu.stat")).unwrap();
    // +3 s of CPU over 2 s: 1.5 cores.
    fs::write(
        dir.join("cpu.stat"),
        text.replace("usage_usec 183417245", "usage_usec 186417245"),
    )
    .unwrap();
    // io.stat: 8:16 did 20 more writes, 8:0 30 more; read ops unchanged:
    // 25 write ops/s summed over the devices.
    let text = fs::read_to_string(dir.join("io.stat")).unwrap();
    fs::write(
        dir.join("io.stat"),
        text.replace("wios=353", "wios=373")
            .replace("wios=1252", "wios=1282"),
    )
    .unwrap();
    let b = c.sample(&cg, 12_000, &mut errors).unwrap();
    let r = cgroup_rates(&b, &a, b.ts - a.ts);
    assert_eq!(r.cpu_cores, Some(1.5));
    assert_eq!(r.oom_kills, Some(0));
    assert_eq!(r.io_read_bytes_per_sec, Some(0.0));
    assert_eq!(r.io_read_ops_per_sec, Some(0.0));
    assert_eq!(r.io_write_ops_per_sec, Some(25.0));
}

#[test]
fn proc_readers_on_a_captured_process() {
    let procfs = ProcFs::new(Root::new(fixture("hybrid")));
    let pid = 18692;
    assert_eq!(procfs.pids().unwrap(), vec![pid]);
    let stat = procfs.stat(pid, None).unwrap().unwrap();
    assert_eq!(
        (stat.pid, stat.comm.as_str(), stat.state, stat.ppid),
        (pid, "python3", 'S', 18689)
    );
    assert_eq!((stat.utime, stat.stime, stat.num_threads), (4, 2, 3));
    let status = procfs.status(pid, None).unwrap().unwrap();
    assert_eq!(status.uid, Some([0, 0, 0, 0]));
    assert_eq!(status.vm_rss_kb, Some(13596));
    assert_eq!(status.threads, Some(3));
    let io = procfs.io(pid, None).unwrap().unwrap();
    assert_eq!(
        (io.rchar, io.read_bytes, io.write_bytes),
        (1685830, 40960, 0)
    );
    let cmd = procfs.cmdline(pid).unwrap().unwrap();
    assert_eq!(cmd[0], "/root/.pyenv/versions/3.11.7/bin/python3");
    assert_eq!(cmd[1], "-c");
    let libs = procfs.libraries(pid).unwrap().unwrap();
    assert!(libs.iter().any(|l| l.ends_with("/libc.so.6")), "{libs:?}");
    assert!(libs.iter().all(|l| l.contains(".so")));
    let cg = procfs.cgroups(pid).unwrap().unwrap();
    assert_eq!(cg.len(), 10);
    assert_eq!(
        procfs.owner(pid).unwrap(),
        Some((0, Some("root".to_string())))
    );
    // Threads.
    let tids = procfs.tids(pid).unwrap().unwrap();
    assert_eq!(tids, vec![18692, 18750, 18751]);
    let t = procfs.stat(pid, Some(18750)).unwrap().unwrap();
    assert_eq!(t.pid, 18750);
    assert!(procfs.io(pid, Some(18751)).unwrap().is_some());
    // Network, per namespace.
    assert_eq!(procfs.net_ns(pid).unwrap(), Some(4026531833));
    let by_ns = procfs.net_by_namespace(&[pid, pid]).unwrap();
    let devs = &by_ns[&4026531833];
    let eth0 = devs.iter().find(|d| d.interface == "eth0").unwrap();
    assert_eq!((eth0.rx_bytes, eth0.tx_bytes), (527966603, 2347077));
    assert_eq!(devs.len(), 4);
    // A process that is gone is None, not an error.
    assert!(procfs.stat(4242, None).unwrap().is_none());
    assert!(procfs.sample(4242, None, 0).unwrap().is_none());
    assert!(procfs.tids(4242).unwrap().is_none());
    assert!(procfs.net_ns(4242).unwrap().is_none());
    let s1 = procfs.sample(pid, None, 0).unwrap().unwrap();
    let mut s2 = s1.clone();
    s2.ts = 1000;
    s2.stat.utime += 50;
    let r = process_rates(&s2, &s1, 1000, 100);
    assert_eq!(r.cpu_cores, Some(0.5));
    // A reused pid (another start time) gives no rate.
    s2.stat.starttime += 1;
    assert_eq!(process_rates(&s2, &s1, 1000, 100).cpu_cores, None);
}

#[test]
fn discovery_by_cgroup_globs_with_labels() {
    let fs = CgroupFs::detect(Root::new(fixture("v2"))).unwrap();
    let procfs = ProcFs::new(Root::new(fixture("v2")));
    let mut svc = Selector::systemd_services();
    svc.labels.insert("team".into(), "web".into());
    let mut selectors = vec![svc];
    selectors.extend(Selector::docker());
    selectors.extend(Selector::kubernetes_pods());
    selectors.push(Selector::cgroup(
        "containers",
        "/kubepods.slice/**/cri-containerd-*.scope",
    ));
    let d = Discovery::new(selectors, p("/prescient")).unwrap();
    let w = d.discover(&fs, &procfs).unwrap();
    let ids: Vec<&str> = w.iter().map(|w| w.id.0.as_str()).collect();
    assert!(ids.contains(&"system.slice/nginx.service"), "{ids:?}");
    assert!(ids.contains(&"system.slice/postgresql.service"));
    assert!(ids.contains(&"system.slice/prescient.service"));
    let nginx = w
        .iter()
        .find(|w| w.id.0 == "system.slice/nginx.service")
        .unwrap();
    assert_eq!(nginx.labels["team"], "web");
    assert_eq!(nginx.labels["kind"], "systemd-service");
    assert_eq!(nginx.selector, "systemd-services");
    let docker = w.iter().find(|w| w.selector == "docker").unwrap();
    assert_eq!(docker.labels["kind"], "docker");
    assert_eq!(docker.labels["container_id"].len(), 64);
    let pod = w.iter().find(|w| w.selector == "kubepods").unwrap();
    assert_eq!(
        pod.labels["k8s_pod_uid"],
        "6c1a2b3d-4e5f-6789-abcd-ef0123456789"
    );
    assert_eq!(pod.labels["k8s_qos"], "burstable");
    let ctr = w.iter().find(|w| w.selector == "containers").unwrap();
    assert_eq!(ctr.labels["kind"], "containerd");
    // The session scope matches no selector here; each cgroup once.
    assert!(!ids.iter().any(|i| i.contains("session-3")));
    let mut seen = std::collections::BTreeSet::new();
    assert!(w.iter().all(|w| seen.insert(w.cgroup.clone())));
    // Ids are stable: a second pass gives the same list.
    assert_eq!(d.discover(&fs, &procfs).unwrap(), w);
}

#[test]
fn discovery_by_process_command_and_user() {
    let fs = CgroupFs::detect(Root::new(fixture("v2"))).unwrap();
    let procfs = ProcFs::new(Root::new(fixture("hybrid")));
    let sel = |name: &str, command: Option<CommandMatch>, user: Option<UserMatch>| Selector {
        name: name.into(),
        rule: Rule::Process { command, user },
        labels: BTreeMap::new(),
    };
    let cases = [
        (Some(CommandMatch::Glob("python3*".into())), None, true),
        (Some(CommandMatch::Glob("python3.11".into())), None, false),
        (
            Some(CommandMatch::Regex(r"threading.*time\.sleep\(30\)".into())),
            None,
            true,
        ),
        (Some(CommandMatch::Regex("^sleep".into())), None, false),
        (None, Some(UserMatch::Name("root".into())), true),
        (None, Some(UserMatch::Uid(33)), false),
        (
            Some(CommandMatch::Glob("python*".into())),
            Some(UserMatch::Name("www-data".into())),
            false,
        ),
    ];
    for (command, user, hit) in cases {
        let d = Discovery::new(
            vec![sel("py", command.clone(), user.clone())],
            p("/prescient"),
        )
        .unwrap();
        let w = d.discover(&fs, &procfs).unwrap();
        assert_eq!(!w.is_empty(), hit, "{command:?} {user:?}");
        if hit {
            assert_eq!(w[0].id, WorkloadId("py".into()));
            assert_eq!(w[0].pids, vec![18692]);
            assert_eq!(w[0].cgroup, p("/prescient/py"));
            assert_eq!(w[0].labels["kind"], "process-group");
        }
    }
}

#[test]
fn a_pass_over_threads_gives_the_same_samples_in_the_same_order() {
    let fs = CgroupFs::detect(Root::new(fixture("v2"))).unwrap();
    let d = Discovery::new(vec![Selector::cgroup("all", "/**")], p("/prescient")).unwrap();
    let procfs = ProcFs::new(Root::new(fixture("v2")));
    let cgroups: Vec<CgroupPath> = d
        .discover(&fs, &procfs)
        .unwrap()
        .into_iter()
        .map(|w| w.cgroup)
        .collect();
    assert!(cgroups.len() > 10);
    let one = Collector::new(&fs).collect(&cgroups, 3);
    let mut c3 = Collector::new(&fs).with_threads(3);
    let three = c3.collect(&cgroups, 3);
    assert_eq!(one.samples, three.samples);
    assert!(three.errors.is_empty());
    // Files stay open for the next pass, and close with their cgroups.
    assert!(c3.open_files() > 0);
    c3.collect(&cgroups[..1], 4);
    assert!(c3.open_files() <= 8, "{}", c3.open_files());
    let none = Collector::new(&fs).with_open_files(0).collect(&cgroups, 3);
    assert_eq!(none.samples, one.samples);
}
