//! One full planning cycle of a simulated 1,000-node, 50,000-pod cluster
//! (forecast + solve for every node; no API calls), pods' usage replayed
//! from the shared traces. Prints the median wall time of several cycles
//! (2 rayon threads) and the peak memory (VmHWM), next to a reference
//! measured in the same run (sorting 50,000 x 4 f64s).
//!
//! `cargo bench -p prescient-kube --bench cluster`
//! Targets: < 1 s a cycle, < 1 GiB.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use prescient_core::Resource;
use prescient_kube::plan::{Planner, PlannerConfig};
use prescient_kube::policy::PodPolicy;
use prescient_kube::snapshot::{
    ContainerSnapshot, NodeSnapshot, OptIn, PodSnapshot, ResizeStatus, ResourceState, Usage,
    UsageMap,
};
use prescient_kube::{Action, Mode};

const NODES: usize = 1_000;
const PODS_PER_NODE: usize = 50;
const WARMUP: usize = 4;
const CYCLES: usize = 7;
/// Steps kept per series (warm-up plus measured cycles, with room).
const STEPS: usize = 32;
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

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    // `cargo bench` passes --bench; a filter that is not ours skips the run.
    if std::env::args()
        .skip(1)
        .any(|a| !a.starts_with('-') && !"cluster".contains(&a))
    {
        return;
    }
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
    // The cluster.
    let mut nodes = Vec::with_capacity(NODES);
    let mut keys = Vec::with_capacity(NODES * PODS_PER_NODE);
    let mut k = 0usize;
    for n in 0..NODES {
        let mut pods = Vec::with_capacity(PODS_PER_NODE);
        let (mut sum_cpu, mut sum_mem) = (0.0, 0.0);
        for p in 0..PODS_PER_NODE {
            let c = &cpu[k % cpu.len()];
            let m = &mem[(k * 7 + 3) % mem.len()];
            let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
            let (mc, mm) = (mean(c), mean(m));
            sum_cpu += mc;
            sum_mem += mm;
            let name = format!("pod-{n}-{p}");
            // As the controller does, only managed pods' usage is learnt.
            if p % 10 != 9 {
                keys.push((format!("ns-{}", n % 20), name.clone(), "app".to_string(), k));
            }
            pods.push(PodSnapshot {
                namespace: format!("ns-{}", n % 20),
                name,
                resource_version: Some("1".into()),
                opt_in: if p % 10 == 9 {
                    None
                } else {
                    Some(OptIn::Label)
                },
                policy: Ok(PodPolicy {
                    priority: (p % 3) as u32,
                    ..Default::default()
                }),
                containers: vec![ContainerSnapshot {
                    name: "app".into(),
                    cpu: ResourceState {
                        request: Some((1.5 * mc).max(0.05)),
                        limit: Some((3.0 * mc).max(0.1)),
                        restart_on_resize: false,
                        usage: None,
                    },
                    memory: ResourceState {
                        request: Some(1.5 * mm + 64.0 * MIB),
                        limit: Some(3.0 * mm + 128.0 * MIB),
                        restart_on_resize: p % 5 == 0,
                        usage: None,
                    },
                }],
                pdb: None,
                resize: ResizeStatus::default(),
                qos: prescient_kube::snapshot::QosClass::Burstable,
                last_resize: None,
            });
            k += 1;
        }
        nodes.push(NodeSnapshot {
            name: format!("node-{n}"),
            // Room for the mean, not always for the peaks: contended.
            allocatable_cpu: 1.2 * sum_cpu + 1.0,
            allocatable_memory: 1.3 * sum_mem + 1024.0 * MIB,
            pods,
            problems: Vec::new(),
        });
    }
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
    let set_usage = |nodes: &mut Vec<NodeSnapshot>, u: &UsageMap| {
        for n in nodes.iter_mut() {
            for p in &mut n.pods {
                for c in &mut p.containers {
                    let got = u.get(&(p.namespace.clone(), p.name.clone(), c.name.clone()));
                    c.cpu.usage = got.and_then(|u| u.cpu);
                    c.memory.usage = got.and_then(|u| u.memory);
                }
            }
        }
    };
    let mut planner = Planner::new(PlannerConfig {
        mode: Mode::Enforce,
        step_ms: STEP_MS,
        ..Default::default()
    });
    for t in 0..WARMUP {
        planner.observe(&usage_at(t), T0 + t as i64 * STEP_MS);
    }
    let mut times = Vec::new();
    let mut plan_times = Vec::new();
    let mut resizes = 0;
    for t in WARMUP..WARMUP + CYCLES {
        let usage = usage_at(t);
        set_usage(&mut nodes, &usage);
        let now = T0 + t as i64 * STEP_MS;
        let start = Instant::now();
        planner.observe(&usage, now);
        let mid = Instant::now();
        let plans = planner.plan_nodes(&nodes, now + STEP_MS);
        let end = Instant::now();
        times.push(end - start);
        plan_times.push(end - mid);
        resizes = plans
            .iter()
            .flat_map(|p| &p.pods)
            .filter(|p| p.action == Action::Resize)
            .count();
        assert_eq!(plans.len(), NODES);
    }
    let hwm = vm_hwm_kib();
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
    let cycle = median(times);
    let reference = median(ref_times);
    println!(
        "planning cycle (observe + forecast + solve, {} containers, 2 threads): median {:.1} ms of {CYCLES} (of which forecast+solve {:.1} ms); {resizes} resizes planned in the last",
        planner.series_count(),
        cycle.as_secs_f64() * 1e3,
        median(plan_times).as_secs_f64() * 1e3
    );
    println!(
        "reference (sort 50,000 x 4 f64s): median {:.2} ms; cycle / reference = {:.0}",
        reference.as_secs_f64() * 1e3,
        cycle.as_secs_f64() / reference.as_secs_f64()
    );
    println!("peak memory (VmHWM): {:.0} MiB", hwm as f64 / 1024.0);
    println!(
        "targets: < 1 s a cycle ({}), < 1 GiB ({})",
        if cycle < Duration::from_secs(1) {
            "met"
        } else {
            "MISSED"
        },
        if hwm < 1024 * 1024 { "met" } else { "MISSED" }
    );
}
