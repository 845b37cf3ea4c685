//! One full planning cycle of a simulated 1,000-node, 50,000-pod cluster,
//! as `Controller::cycle` runs it minus the API calls: the managed set and
//! the node snapshots built from the watched Kubernetes objects (50,000
//! `Pod`s of a realistic shape, 1,000 `Node`s, PDBs and PrescientPolicies,
//! held in a `ClusterState` as the watches hold them), usage learnt, then
//! forecast + solve per node. Pods' usage is replayed from the shared
//! traces. Two phases: a cold start (a controller started without
//! history: every container on its forecaster), then the steady state
//! (each container's tails warm from 20 hours of history, full windows,
//! forecasters gone; each cycle, the fifth of the nodes whose tail step
//! starts takes a sample). Prints, per
//! phase, the median wall time of several cycles (2 rayon threads) split
//! by stage and the slowest, the peak memory (VmHWM, which includes the
//! stored objects; reset before the steady state) and the memory the
//! stored objects took, next to a reference measured in the same run
//! (sorting 50,000 x 4 f64s).
//!
//! `cargo bench -p prescient-kube --bench cluster`
//! Targets: < 1 s a cycle, < 1 GiB.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Node;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use prescient_core::Resource;
use prescient_kube::controller::ClusterState;
use prescient_kube::plan::{Planner, PlannerConfig};
use prescient_kube::snapshot::{Usage, UsageMap, WatchedPod, trim};
use prescient_kube::{Action, Mode, PrescientPolicy};
use serde_json::json;

const NODES: usize = 1_000;
const PODS_PER_NODE: usize = 50;
const NAMESPACES: usize = 20;
/// Apps (each with a PDB) per namespace.
const APPS_PER_NAMESPACE: usize = 50;
const WARMUP: usize = 4;
const CYCLES: usize = 7;
/// Steady-state cycles run before those measured (the first samples every
/// node's tails at once; from then on each node samples in its own cycle
/// of five).
const STEADY_WARMUP: usize = 5;
/// Steady-state cycles measured.
const STEADY_CYCLES: usize = 10;
/// Steps of history each container's tails learn before the steady state
/// (20 hours of 1-minute steps: a full tail window at 5 minutes).
const HISTORY_STEPS: usize = 1_200;
/// Steps kept per series (a day of PlanetLab's; history and cycles go
/// round them).
const STEPS: usize = 288;
const STEP_MS: i64 = 60_000;
const T0: i64 = 1_700_000_000_000;
const MIB: f64 = 1_048_576.0;

fn traces() -> (Vec<PathBuf>, &'static str) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let shared = root.join("../shared/traces");
    let list = |dir: &Path| -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
            .map(|d| {
                d.filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.to_string_lossy().ends_with(".csv.gz"))
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    };
    let files = list(&shared);
    if !files.is_empty() {
        return (files, "../shared/traces");
    }
    eprintln!(
        "NOTE: the shared traces ({}) are absent: using the committed sample data/sample/, \
         its series reused round-robin",
        shared.display()
    );
    (list(&root.join("data/sample")), "data/sample")
}

/// CPU series and memory series (first STEPS values of each).
fn load() -> (Vec<Vec<f64>>, Vec<Vec<f64>>, &'static str) {
    let (files, from) = traces();
    let mut series: BTreeMap<(String, String, Resource), Vec<f64>> = BTreeMap::new();
    for f in files {
        let reader = prescient_trace::TraceReader::open(&f)
            .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        for rec in reader {
            let rec = rec.unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            if !matches!(rec.resource, Resource::Cpu | Resource::Memory) {
                continue;
            }
            let v = series
                .entry((rec.host, rec.workload, rec.resource))
                .or_default();
            if v.len() < STEPS {
                v.push(rec.value);
            }
        }
    }
    let mut cpu = Vec::new();
    let mut mem = Vec::new();
    for ((_, _, r), v) in series {
        if v.len() < WARMUP + CYCLES {
            continue;
        }
        match r {
            Resource::Cpu => cpu.push(v),
            _ => mem.push(v),
        }
    }
    assert!(
        !cpu.is_empty() && !mem.is_empty(),
        "no usable series in {from}"
    );
    (cpu, mem, from)
}

fn vm_hwm_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_string))
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn vm_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_string))
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// A pod as the API server serves it (one container with the usual spec
/// and status, a managedFields entry of another manager and ours for the
/// resize subresource), deserialized from its JSON as the watch does it.
#[allow(clippy::too_many_arguments)]
fn pod_object(
    ns: &str,
    name: &str,
    node: &str,
    k: usize,
    mut labels: serde_json::Value,
    mean_cpu: f64,
    mean_mem: f64,
    restart_memory: bool,
) -> WatchedPod {
    let app = format!("app-{}", k % APPS_PER_NAMESPACE);
    labels["app"] = json!(app);
    labels["pod-template-hash"] = json!("7d9f8b6c5d");
    let memory_policy = if restart_memory {
        "RestartContainer"
    } else {
        "NotRequired"
    };
    let json = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": name, "namespace": ns, "uid": format!("6f1c2d3e-0000-4000-8000-{k:012}"),
            "resourceVersion": format!("{}", 100_000 + k), "generateName": format!("{app}-7d9f8b6c5d-"),
            "creationTimestamp": "2023-11-01T00:00:00Z", "labels": labels,
            "annotations": {"kubectl.kubernetes.io/restartedAt": "2023-11-01T00:00:00Z"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": format!("{app}-7d9f8b6c5d"),
                                 "uid": "0a1b2c3d-0000-4000-8000-000000000000", "controller": true, "blockOwnerDeletion": true}],
            "managedFields": [
                {"manager": "kube-controller-manager", "operation": "Update", "apiVersion": "v1",
                 "time": "2023-11-01T00:00:00Z", "fieldsType": "FieldsV1",
                 "fieldsV1": {"f:metadata": {"f:generateName": {}, "f:labels": {".": {}, "f:app": {}}},
                              "f:spec": {"f:containers": {"k:{\"name\":\"app\"}": {".": {}, "f:image": {}, "f:resources": {}}}}}},
                {"manager": "prescient-kube", "operation": "Update", "apiVersion": "v1", "subresource": "resize",
                 "time": "2023-11-14T20:00:00Z", "fieldsType": "FieldsV1",
                 "fieldsV1": {"f:spec": {"f:containers": {"k:{\"name\":\"app\"}": {"f:resources": {}}}}}}
            ]
        },
        "spec": {
            "nodeName": node, "restartPolicy": "Always", "schedulerName": "default-scheduler",
            "serviceAccountName": "default", "terminationGracePeriodSeconds": 30, "dnsPolicy": "ClusterFirst",
            "containers": [{
                "name": "app", "image": "registry.example/app:1.4.2", "imagePullPolicy": "IfNotPresent",
                "ports": [{"containerPort": 8080, "protocol": "TCP", "name": "http"}],
                "env": [{"name": "LOG_LEVEL", "value": "info"}, {"name": "PORT", "value": "8080"},
                        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                "resources": {
                    "requests": {"cpu": format!("{}m", ((1.5 * mean_cpu).max(0.05) * 1000.0) as u64),
                                 "memory": format!("{}", (1.5 * mean_mem + 64.0 * MIB) as u64)},
                    "limits": {"cpu": format!("{}m", ((3.0 * mean_cpu).max(0.1) * 1000.0) as u64),
                               "memory": format!("{}", (3.0 * mean_mem + 128.0 * MIB) as u64)}},
                "resizePolicy": [{"resourceName": "cpu", "restartPolicy": "NotRequired"},
                                 {"resourceName": "memory", "restartPolicy": memory_policy}],
                "livenessProbe": {"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 10},
                "volumeMounts": [{"name": "kube-api-access", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": true}],
                "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File"
            }],
            "volumes": [{"name": "kube-api-access", "projected": {"sources": [{"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}}]}}]
        },
        "status": {
            "phase": "Running", "qosClass": "Burstable", "hostIP": "10.0.0.1", "podIP": "10.244.0.1",
            "startTime": "2023-11-01T00:00:05Z",
            "conditions": [
                {"type": "PodReadyToStartContainers", "status": "True", "lastTransitionTime": "2023-11-01T00:00:06Z"},
                {"type": "Initialized", "status": "True", "lastTransitionTime": "2023-11-01T00:00:05Z"},
                {"type": "Ready", "status": "True", "lastTransitionTime": "2023-11-01T00:00:09Z"},
                {"type": "ContainersReady", "status": "True", "lastTransitionTime": "2023-11-01T00:00:09Z"},
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2023-11-01T00:00:00Z"}
            ],
            "containerStatuses": [{
                "name": "app", "ready": true, "started": true, "restartCount": 0,
                "image": "registry.example/app:1.4.2", "imageID": "registry.example/app@sha256:0123456789abcdef",
                "containerID": format!("containerd://{k:064}"),
                "state": {"running": {"startedAt": "2023-11-01T00:00:07Z"}}
            }]
        }
    });
    serde_json::from_slice(&serde_json::to_vec(&json).unwrap()).expect("a valid Pod")
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// The environment variable that selects a phase in a child process.
const PHASE_VAR: &str = "PRESCIENT_CLUSTER_PHASE";

fn main() {
    // `cargo bench` passes --bench; a filter that is not ours skips the run.
    if std::env::args()
        .skip(1)
        .any(|a| !a.starts_with('-') && !"cluster".contains(&a))
    {
        return;
    }
    // Each phase runs in a process of its own, so that its peak memory is
    // its own (memory freed by one phase would stay in the heap of the
    // next).
    let cold = match std::env::var(PHASE_VAR).as_deref() {
        Ok("cold") => true,
        Ok("steady") => false,
        _ => {
            let exe = std::env::current_exe().expect("the bench's path");
            for phase in ["cold", "steady"] {
                let status = std::process::Command::new(&exe)
                    .args(std::env::args().skip(1))
                    .env(PHASE_VAR, phase)
                    .status()
                    .expect("the bench runs");
                assert!(status.success(), "phase {phase}: {status}");
            }
            return;
        }
    };
    run(cold);
}

/// Builds the cluster and runs the cold start (`cold`) or the steady
/// state.
fn run(cold: bool) {
    rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build_global()
        .expect("a 2-thread pool");
    let (cpu, mem, from) = load();
    println!(
        "cluster: {NODES} nodes x {PODS_PER_NODE} pods, usage from {from} ({} cpu and {} memory series, reused round-robin)",
        cpu.len(),
        mem.len()
    );
    // The cluster, as the watches hold it.
    let rss_before = vm_rss_kib();
    let mut state = ClusterState::default();
    let mut keys = Vec::with_capacity(NODES * PODS_PER_NODE);
    let mut k = 0usize;
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    for ns in 0..NAMESPACES {
        // Pods labelled `policy: ppol` in every namespace are managed by its
        // policy; a PDB per app.
        state.policies.insert(
            serde_json::from_value::<PrescientPolicy>(json!({
                "apiVersion": "prescient.io/v1alpha1", "kind": "PrescientPolicy",
                "metadata": {"name": "ppol", "namespace": format!("ns-{ns}")},
                "spec": {"selector": {"matchLabels": {"policy": "ppol"}}, "sloQuantile": 0.95}
            }))
            .unwrap(),
        );
        for app in 0..APPS_PER_NAMESPACE {
            state.pdbs.insert(
                serde_json::from_value::<PodDisruptionBudget>(json!({
                    "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
                    "metadata": {"name": format!("app-{app}"), "namespace": format!("ns-{ns}")},
                    "spec": {"selector": {"matchLabels": {"app": format!("app-{app}")}}, "maxUnavailable": 1},
                    "status": {"disruptionsAllowed": 1, "currentHealthy": 3, "desiredHealthy": 2, "expectedPods": 3}
                }))
                .unwrap(),
            );
        }
    }
    for n in 0..NODES {
        let (mut sum_cpu, mut sum_mem) = (0.0, 0.0);
        for p in 0..PODS_PER_NODE {
            let c = &cpu[k % cpu.len()];
            let m = &mem[(k * 7 + 3) % mem.len()];
            let (mc, mm) = (mean(c), mean(m));
            sum_cpu += mc;
            sum_mem += mm;
            let ns = format!("ns-{}", n % NAMESPACES);
            let name = format!("pod-{n}-{p}");
            // 45% opted in by label, 45% by policy, 10% not managed.
            let labels = match p % 20 {
                18 | 19 => json!({}),
                x if x % 2 == 0 => json!({"prescient.io/managed": "true"}),
                _ => json!({"policy": "ppol"}),
            };
            if p % 20 < 18 {
                keys.push((ns.clone(), name.clone(), "app".to_string(), k));
            }
            let mut pod = pod_object(
                &ns,
                &name,
                &format!("node-{n}"),
                k,
                labels,
                mc,
                mm,
                p % 5 == 0,
            );
            trim(&mut pod);
            state.pods.insert(pod);
            k += 1;
        }
        state.nodes.insert(
            serde_json::from_value::<Node>(json!({
                "apiVersion": "v1", "kind": "Node",
                "metadata": {"name": format!("node-{n}"), "resourceVersion": "1",
                             "labels": {"kubernetes.io/hostname": format!("node-{n}")}},
                "status": {"allocatable": {
                    // Room for the mean, not always for the peaks: contended.
                    "cpu": format!("{}m", ((1.2 * sum_cpu + 1.0) * 1000.0) as u64),
                    "memory": format!("{}", (1.3 * sum_mem + 1024.0 * MIB) as u64),
                    "pods": "110"}}
            }))
            .unwrap(),
        );
    }
    let stored_mib = vm_rss_kib().saturating_sub(rss_before) as f64 / 1024.0;
    // What the stored pods take, without the building's garbage: the RSS
    // growth of one copy of them (dropped at once).
    let before_copy = vm_rss_kib();
    let copy: Vec<WatchedPod> = state.pods.iter().cloned().collect();
    let pods_mib = vm_rss_kib().saturating_sub(before_copy) as f64 / 1024.0;
    drop(copy);
    let usage_at = |t: usize| -> UsageMap {
        keys.iter()
            .map(|(ns, pod, c, k)| {
                let cs = &cpu[k % cpu.len()];
                let ms = &mem[(k * 7 + 3) % mem.len()];
                (
                    (ns.clone(), pod.clone(), c.clone()),
                    Usage {
                        cpu: Some(cs[t % cs.len()]),
                        memory: Some(ms[t % ms.len()]),
                    },
                )
            })
            .collect()
    };
    let mut planner = Planner::new(PlannerConfig {
        mode: Mode::Enforce,
        step_ms: STEP_MS,
        ..Default::default()
    });
    // One cycle at step `t`, as `Controller::cycle` runs it (steps 1 to
    // 3): its stage times, resizes planned and managed pods.
    let cycle = |planner: &mut Planner, t: usize| -> ([Duration; 4], usize, usize) {
        // What the usage source answers (I/O in the controller; not timed).
        let usage = usage_at(t);
        let now = T0 + t as i64 * STEP_MS;
        let start = Instant::now();
        let managed = state.managed_pods(None);
        let t1 = Instant::now();
        let (snapshots, problems) = state.snapshots(None, &usage);
        drop(usage);
        let t2 = Instant::now();
        let live: HashSet<(&str, &str)> = managed
            .iter()
            .map(|(ns, pod)| (ns.as_str(), pod.as_str()))
            .collect();
        planner.observe(&snapshots, now);
        planner.retain(|ns, pod| live.contains(&(ns, pod)));
        let t3 = Instant::now();
        let plans = planner.plan_nodes(&snapshots, now + STEP_MS);
        let end = Instant::now();
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(plans.len(), NODES);
        let resizes = plans
            .iter()
            .flat_map(|p| &p.pods)
            .filter(|p| p.action == Action::Resize)
            .count();
        (
            [t1 - start, t2 - t1, t3 - t2, end - t3],
            resizes,
            managed.len(),
        )
    };
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let mib = |kib: u64| kib as f64 / 1024.0;
    let report = |what: &str, runs: &[[Duration; 4]]| {
        let total: Vec<Duration> = runs.iter().map(|s| s.iter().sum()).collect();
        let stage = |i: usize| ms(median(runs.iter().map(|s| s[i]).collect()));
        let worst = runs
            .iter()
            .max_by_key(|s| s.iter().sum::<Duration>())
            .copied()
            .unwrap_or_default();
        println!(
            "  {what}: median {:.1} ms of {} (managed set {:.1}, snapshots {:.1}, observe {:.1}, forecast + solve {:.1} ms); slowest {:.1} ms ({:.1}, {:.1}, {:.1}, {:.1})",
            ms(median(total.clone())),
            runs.len(),
            stage(0),
            stage(1),
            stage(2),
            stage(3),
            ms(total.iter().copied().max().unwrap_or_default()),
            ms(worst[0]),
            ms(worst[1]),
            ms(worst[2]),
            ms(worst[3]),
        );
        median(total)
    };

    let (phase, first, cycles) = if cold {
        // A controller started without history: every container planned
        // from its forecaster, the tails learning.
        for t in 0..WARMUP {
            cycle(&mut planner, t);
        }
        ("cold start", WARMUP, CYCLES)
    } else {
        // The steady state: the tails warm (20 hours of history at the
        // step, as Prometheus gives it: 240 samples at 5 minutes each),
        // no forecaster. Containers are placed by a first observation
        // without usage (which creates no forecaster), as history read
        // after a container is seen is learnt.
        let (snapshots, _) = state.snapshots(None, &UsageMap::new());
        planner.observe(&snapshots, T0 - STEP_MS);
        drop(snapshots);
        let t_history = Instant::now();
        let mut points = Vec::with_capacity(HISTORY_STEPS);
        for (ns, pod, c, k) in &keys {
            let key = (ns.clone(), pod.clone(), c.clone());
            for (resource, series) in [
                (Resource::Cpu, &cpu[k % cpu.len()]),
                (Resource::Memory, &mem[(k * 7 + 3) % mem.len()]),
            ] {
                points.clear();
                for i in 0..HISTORY_STEPS {
                    let t = T0 - (HISTORY_STEPS - i) as i64 * STEP_MS;
                    points.push((t, series[i % series.len()]));
                }
                planner.learn_history(&key, resource, &points);
            }
        }
        println!(
            "history: 20 h at 1 min for {} containers x 2 resources, learnt in {:.0} ms",
            keys.len(),
            ms(t_history.elapsed())
        );
        for t in 0..STEADY_WARMUP {
            cycle(&mut planner, t);
        }
        ("steady state", STEADY_WARMUP, STEADY_CYCLES)
    };
    let rss_ready = vm_rss_kib();
    // The peak of the measured cycles (with what is resident).
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let mut runs = Vec::new();
    let mut last = (0, 0);
    for t in first..first + cycles {
        let (stages, resizes, managed) = cycle(&mut planner, t);
        runs.push(stages);
        last = (resizes, managed);
    }
    let hwm = vm_hwm_kib();
    let rss_end = vm_rss_kib();
    println!(
        "{phase}: planning cycle (managed set, snapshots from {} Pod objects, observe, forecast + solve; {} managed pods, {} containers, {} on forecasters, 2 threads; {} resizes planned in the last{})",
        state.pods.len(),
        last.1,
        planner.series_count(),
        planner.forecaster_count(),
        last.0,
        if cold {
            ""
        } else {
            "; a tail sample every 5 min, each node in its own cycle: about a fifth of the nodes take one each cycle"
        }
    );
    let cycle_time = report(phase, &runs);
    // The reference: sorting 50,000 x 4 f64s, in the same run.
    let data: Vec<f64> = (0..200_000u64)
        .map(|i| ((i.wrapping_mul(2_654_435_761) % 1_000_003) as f64).sin())
        .collect();
    let mut ref_times = Vec::new();
    for _ in 0..CYCLES {
        let mut v = data.clone();
        let s = Instant::now();
        v.sort_by(f64::total_cmp);
        ref_times.push(s.elapsed());
        std::hint::black_box(&v);
    }
    let reference = median(ref_times);
    println!(
        "  reference (sort 50,000 x 4 f64s): median {:.2} ms; cycle / reference = {:.0}",
        ms(reference),
        cycle_time.as_secs_f64() / reference.as_secs_f64(),
    );
    println!(
        "  stored pods: {pods_mib:.0} MiB ({:.1} KiB a pod, the RSS growth of a copy of them)",
        pods_mib * 1024.0 / state.pods.len() as f64
    );
    println!(
        "  peak memory (VmHWM): {:.0} MiB; RSS: {:.0} MiB before the cluster, +{stored_mib:.0} MiB building the stored objects (trimmed as the watches store them), {:.0} MiB before the measured cycles, {:.0} MiB at the end",
        mib(hwm),
        mib(rss_before),
        mib(rss_ready),
        mib(rss_end),
    );
    println!(
        "  targets: < 1 s a cycle ({}), < 1 GiB ({})",
        if cycle_time < Duration::from_secs(1) {
            "met"
        } else {
            "MISSED"
        },
        if hwm < 1024 * 1024 { "met" } else { "MISSED" }
    );
}
