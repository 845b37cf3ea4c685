//! The real observer (`LinuxObserver`) on fixture trees: a pure v2 host
//! written in the kernel's formats in a temp directory, with processes in
//! network namespaces of their own, in the host's, and shared; and a
//! process workload observed from /proc in recommend mode.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use prescient_agent::config::Config;
use prescient_agent::{LinuxObserver, Observer, Usage, cgroup_fs};
use prescient_core::Resource;
use prescient_linux::{CgroupPath, ProcFs, Root};

const HOST_NS: u64 = 4026531840;
const WEB_NS: u64 = 4026532100;
const POD_NS: u64 = 4026532300;
const BATCH_NS: u64 = 4026532400;

fn write(root: &Path, rel: &str, text: &str) {
    let f = root.join(rel);
    fs::create_dir_all(f.parent().unwrap()).unwrap();
    fs::write(f, text).unwrap();
}

/// A v2 cgroup with `usage_usec` of CPU and these processes.
fn cgroup(root: &Path, cg: &str, usage_usec: u64, pids: &[i32]) {
    let d = format!("sys/fs/cgroup{cg}");
    write(
        root,
        &format!("{d}/cpu.stat"),
        &format!(
            "usage_usec {usage_usec}\nuser_usec {usage_usec}\nsystem_usec 0\nnr_periods 0\nnr_throttled 0\nthrottled_usec 0\n"
        ),
    );
    write(root, &format!("{d}/memory.current"), "1048576\n");
    write(root, &format!("{d}/io.stat"), "");
    let procs: String = pids.iter().map(|p| format!("{p}\n")).collect();
    write(root, &format!("{d}/cgroup.procs"), &procs);
}

/// `/proc/<pid>`: stat (CPU `ticks` as utime, started at `start`),
/// status (resident `rss_kb`), io, cmdline, its network namespace.
#[allow(clippy::too_many_arguments)]
fn process(root: &Path, pid: i32, comm: &str, ticks: u64, rss_kb: u64, read: u64, ns: u64) {
    let d = format!("proc/{pid}");
    write(
        root,
        &format!("{d}/stat"),
        &format!(
            "{pid} ({comm}) S 1 {pid} {pid} 0 -1 4194304 0 0 0 0 {ticks} 0 0 0 20 0 1 0 5000 1000000 250 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n"
        ),
    );
    write(
        root,
        &format!("{d}/status"),
        &format!(
            "Name:\t{comm}\nTgid:\t{pid}\nPPid:\t1\nUid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\nVmRSS:\t   {rss_kb} kB\nThreads:\t1\n"
        ),
    );
    write(
        root,
        &format!("{d}/io"),
        &format!(
            "rchar: 0\nwchar: 0\nsyscr: 0\nsyscw: 0\nread_bytes: {read}\nwrite_bytes: 0\ncancelled_write_bytes: 0\n"
        ),
    );
    write(root, &format!("{d}/cmdline"), &format!("/usr/bin/{comm}\0"));
    fs::create_dir_all(root.join(format!("{d}/ns"))).unwrap();
    let link = root.join(format!("{d}/ns/net"));
    let _ = fs::remove_file(&link);
    std::os::unix::fs::symlink(format!("net:[{ns}]"), link).unwrap();
}

/// `/proc/<pid>/net/dev` with loopback and one link's counters.
fn net_dev(root: &Path, pid: i32, lo: u64, rx: u64, tx: u64) {
    write(
        root,
        &format!("proc/{pid}/net/dev"),
        &format!(
            "Inter-|   Receive                                                |  Transmit\n \
             face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    \
             lo: {lo:>7}      29    0    0    0     0          0         0 {lo:>8}      29    0    0    0     0       0          0\n  \
             eth0: {rx:>9}   33350    0    0    0     0          0         0 {tx:>8}   26272    0    0    0     0       0          0\n"
        ),
    );
}

/// The tree at its first pass.
fn tree(root: &Path) {
    let mountinfo = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../prescient-linux/tests/fixtures/v2/proc/self/mountinfo");
    write(
        root,
        "proc/self/mountinfo",
        &fs::read_to_string(mountinfo).unwrap(),
    );
    write(root, "proc/self/cgroup", "0::/\n");
    fs::create_dir_all(root.join("proc/self/ns")).unwrap();
    std::os::unix::fs::symlink(format!("net:[{HOST_NS}]"), root.join("proc/self/ns/net")).unwrap();
    write(
        root,
        "sys/fs/cgroup/cgroup.controllers",
        "cpu io memory pids\n",
    );
    // The batch processes are in the root cgroup, which no workload is.
    write(root, "sys/fs/cgroup/cgroup.procs", "1\n400\n401\n");
    // `web` has a process of its own and one in a child cgroup, both in
    // its own namespace.
    cgroup(root, "/web", 1_000_000, &[100]);
    write(
        root,
        "sys/fs/cgroup/web/io.stat",
        "8:0 rbytes=4096 wbytes=0 rios=10 wios=4 dbytes=0 dios=0\n",
    );
    cgroup(root, "/web/worker", 0, &[101]);
    process(root, 100, "nginx", 0, 100, 0, WEB_NS);
    process(root, 101, "nginx", 0, 100, 0, WEB_NS);
    net_dev(root, 100, 3193, 1_000, 2_000);
    net_dev(root, 101, 3193, 1_000, 2_000);
    // `hosty` is in the host's namespace.
    cgroup(root, "/hosty", 0, &[200]);
    process(root, 200, "cron", 0, 100, 0, HOST_NS);
    net_dev(root, 200, 0, 9_000_000, 9_000_000);
    // Two pods sharing one namespace.
    cgroup(root, "/pod-a", 0, &[300]);
    cgroup(root, "/pod-b", 0, &[301]);
    process(root, 300, "app", 0, 100, 0, POD_NS);
    process(root, 301, "sidecar", 0, 100, 0, POD_NS);
    net_dev(root, 300, 0, 5_000, 5_000);
    // The batch job: matched by command, in a namespace of its own.
    process(root, 400, "batchjob", 100, 1_000, 0, BATCH_NS);
    process(root, 401, "batchjob", 50, 3_000, 0, BATCH_NS);
    net_dev(root, 400, 0, 10_000, 20_000);
}

/// The tree 2 s later.
fn advance(root: &Path) {
    cgroup(root, "/web", 3_000_000, &[100]);
    // 8 KiB, 40 reads and 20 writes more on 8:0.
    write(
        root,
        "sys/fs/cgroup/web/io.stat",
        "8:0 rbytes=12288 wbytes=0 rios=50 wios=24 dbytes=0 dios=0\n",
    );
    net_dev(root, 100, 9_000_000, 5_000, 10_000);
    net_dev(root, 200, 0, 19_000_000, 19_000_000);
    net_dev(root, 300, 0, 15_000, 15_000);
    // 200 and 100 ticks more (at 100 ticks/s over 2 s: 1 and 0.5 core).
    process(root, 400, "batchjob", 300, 1_000, 8_192, BATCH_NS);
    process(root, 401, "batchjob", 150, 3_000, 0, BATCH_NS);
    net_dev(root, 400, 0, 14_000, 60_000);
}

fn config() -> Config {
    Config::from_toml(
        r#"
[[workload]]
name = "web"
cgroup = "/web"
[[workload]]
name = "hosty"
cgroup = "/hosty"
[[workload]]
name = "pods"
cgroup = "/pod-*"
[[workload]]
name = "batch"
command = "batchjob"
"#,
        Path::new("observer-test.toml"),
    )
    .unwrap()
}

fn by_cgroup(v: Vec<(CgroupPath, Usage)>) -> BTreeMap<String, Usage> {
    v.into_iter().map(|(c, u)| (c.to_string(), u)).collect()
}

#[test]
fn network_is_counted_only_for_namespaces_a_workload_has_to_itself() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    tree(root);
    let c = config();
    let fs = cgroup_fs(Root::new(root), &c.cgroup).unwrap();
    let mut o = LinuxObserver::new(fs, ProcFs::new(Root::new(root)));
    let found = o.discover(&c.workloads, false).unwrap();
    let mut ids: Vec<&str> = found.iter().map(|f| f.id.0.as_str()).collect();
    ids.sort();
    assert_eq!(ids, ["batch", "hosty", "pod-a", "pod-b", "web"]);
    let cgroups: Vec<CgroupPath> = found.iter().map(|f| f.cgroup.clone()).collect();

    let first = by_cgroup(o.observe(&cgroups, 0));
    let first_raw = o.take_counters();
    // A first pass has no rates.
    assert!(
        first
            .values()
            .all(|u| u.net_rx.is_none() && u.cpu_cores.is_none())
    );
    advance(root);
    let u = by_cgroup(o.observe(&cgroups, 2_000));

    // Its own namespace (read once, through either process): 4,000 bytes
    // received and 8,000 sent in 2 s; loopback's 9 MB not counted.
    assert_eq!(u["/web"].net_rx, Some(2_000.0));
    assert_eq!(u["/web"].net_tx, Some(4_000.0));
    assert_eq!(u["/web"].cpu_cores, Some(1.0));
    // Block I/O from io.stat: bytes and operations per second.
    assert_eq!(u["/web"].io_read, Some(4_096.0));
    assert_eq!(u["/web"].io_read_ops, Some(20.0));
    assert_eq!(u["/web"].io_write_ops, Some(10.0));
    // The host's namespace: its bytes are everybody's.
    assert!(u["/hosty"].cpu_cores.is_some());
    assert_eq!((u["/hosty"].net_rx, u["/hosty"].net_tx), (None, None));
    // A namespace two workloads share: neither gets its bytes.
    for pod in ["/pod-a", "/pod-b"] {
        assert_eq!((u[pod].net_rx, u[pod].net_tx), (None, None), "{pod}");
    }
    // The process workload, in recommend mode: from /proc, summed, and
    // its namespace is its own.
    let b = &u["/batch"];
    assert_eq!(b.cpu_cores, Some(1.5));
    assert_eq!(b.memory_bytes, Some(4_000.0 * 1024.0));
    assert_eq!(b.io_read, Some(4_096.0));
    // /proc/<pid>/io counts syscalls, not block operations: no IOPS.
    assert_eq!((b.io_read_ops, b.io_write_ops), (None, None));
    assert_eq!(b.net_rx, Some(2_000.0));
    assert_eq!(b.net_tx, Some(20_000.0));

    // The raw counters those rates came from, for the store.
    let raw = o.take_counters();
    let of = |cg: &str, r: Resource| -> Vec<(String, u64)> {
        raw.iter()
            .filter(|(c, x)| c.to_string() == cg && x.resource == r)
            .map(|(_, x)| (x.name.clone(), x.value))
            .collect()
    };
    assert_eq!(of("/web", Resource::Cpu), [(String::new(), 3_000_000)]);
    assert_eq!(
        of("/web", Resource::NetTx),
        [(format!("net:[{WEB_NS}]/eth0"), 10_000)]
    );
    assert!(of("/hosty", Resource::NetRx).is_empty());
    // Per device: bytes and operations.
    assert_eq!(of("/web", Resource::IoRead), [("8:0".to_string(), 12_288)]);
    assert_eq!(of("/web", Resource::IoReadOps), [("8:0".to_string(), 50)]);
    assert_eq!(of("/web", Resource::IoWriteOps), [("8:0".to_string(), 24)]);
    assert!(of("/batch", Resource::IoReadOps).is_empty());
    // Per process: CPU time in µs (300 ticks at 100 a second), bytes read.
    assert_eq!(
        of("/batch", Resource::Cpu),
        [
            ("pid 400 started 5000".to_string(), 3_000_000),
            ("pid 401 started 5000".to_string(), 1_500_000)
        ]
    );
    assert_eq!(of("/batch", Resource::IoRead)[0].1, 8_192);
    // The same rates, derived again from them by the store's function.
    let pass = |raw: &[(CgroupPath, prescient_agent::ports::RawCounter)], ts, cg: &str, r| {
        raw.iter()
            .filter(|(c, x)| c.to_string() == cg && x.resource == r)
            .map(|(_, x)| prescient_store::Counter::new(ts, x.name.clone(), x.value))
            .collect::<Vec<_>>()
    };
    let mut both = pass(&first_raw, 0, "/batch", Resource::Cpu);
    both.extend(pass(&raw, 2_000, "/batch", Resource::Cpu));
    assert_eq!(
        prescient_store::rates_from_counters(&both, 1e6),
        [prescient_core::Sample::new(2_000, 1.5)]
    );
    let scale = Resource::IoWriteOps.counter_scale().unwrap();
    let mut both = pass(&first_raw, 0, "/web", Resource::IoWriteOps);
    both.extend(pass(&raw, 2_000, "/web", Resource::IoWriteOps));
    assert_eq!(
        prescient_store::rates_from_counters(&both, scale),
        [prescient_core::Sample::new(2_000, 10.0)]
    );
    assert!(o.take_counters().is_empty(), "taken");
}

#[test]
fn recommend_mode_observes_process_workloads_where_they_are() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    tree(root);
    let c = config();
    let fs = cgroup_fs(Root::new(root), &c.cgroup).unwrap();
    let mut o = LinuxObserver::new(fs, ProcFs::new(Root::new(root)));
    let found = o.discover(&c.workloads, false).unwrap();
    let batch = found.iter().find(|f| f.id.0 == "batch").unwrap();
    assert_eq!(batch.cgroup.to_string(), "/batch");
    assert_eq!(batch.labels["kind"], "process-group");
    // Nothing was made or moved.
    assert!(!root.join("sys/fs/cgroup/batch").exists());
    assert_eq!(
        fs::read_to_string(root.join("sys/fs/cgroup/cgroup.procs")).unwrap(),
        "1\n400\n401\n"
    );
    // Memory from the first pass on; CPU from the second.
    let cg = [batch.cgroup.clone()];
    let first = by_cgroup(o.observe(&cg, 0));
    assert_eq!(first["/batch"].memory_bytes, Some(4_000.0 * 1024.0));
    assert_eq!(first["/batch"].cpu_cores, None);
    advance(root);
    // One of the processes exits: the other still counts.
    fs::remove_dir_all(root.join("proc/401")).unwrap();
    let u = by_cgroup(o.observe(&cg, 2_000));
    assert_eq!(u["/batch"].cpu_cores, Some(1.0));
    assert_eq!(u["/batch"].memory_bytes, Some(1_000.0 * 1024.0));
    // All of them gone: no sample.
    fs::remove_dir_all(root.join("proc/400")).unwrap();
    assert!(o.observe(&cg, 4_000).is_empty());
}
