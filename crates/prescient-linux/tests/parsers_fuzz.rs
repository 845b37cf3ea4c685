//! Property tests of the parsers: no input panics (arbitrary text, and
//! mutations of real files), and what the enforcer writes reads back as
//! what it meant.

mod common;

use proptest::prelude::*;

use prescient_linux::CgroupPath;
use prescient_linux::cgroup_files::*;
use prescient_linux::enforce::{CpuMax, Device, IoLimit, MemoryLimit, Setting};
use prescient_linux::glob::Glob;
use prescient_linux::layout::{Layout, parse_proc_cgroup};
use prescient_linux::parse::parse_single_u64;
use prescient_linux::procfs::*;

/// Every text parser of the crate, run on `t`; results ignored.
fn parse_everything(t: &str) {
    let _ = parse_cpu_stat(t);
    let _ = parse_memory_stat(t);
    let _ = parse_memory_events(t);
    let _ = parse_io_stat(t);
    let _ = parse_pressure(t);
    let _ = parse_v1_cpu_stat(t);
    let _ = parse_cpuacct_stat(t);
    let _ = parse_cpuacct_percpu(t);
    let _ = parse_v1_oom_control(t);
    let _ = parse_blkio_rwstat(t);
    let _ = parse_single_u64(t);
    let _ = Layout::from_mountinfo(t);
    let _ = parse_proc_cgroup(t);
    let _ = parse_stat(t);
    let _ = parse_status(t);
    let _ = parse_io(t);
    let _ = parse_cmdline(t.as_bytes());
    let _ = parse_maps_libraries(t);
    let _ = parse_net_dev(t);
    let _ = parse_ns_link(t);
    let _ = parse_passwd(t);
    let _ = prescient_linux::enforce::v2_parsers::parse_cpu_max(t);
    let _ = prescient_linux::enforce::v2_parsers::parse_memory_limit(t);
    let _ = prescient_linux::enforce::v2_parsers::parse_io_max(t);
    let _ = prescient_linux::enforce::v1_parsers::parse_cfs_quota(t);
    let _ = prescient_linux::enforce::v1_parsers::parse_v1_memory_limit(t);
    let _ = prescient_linux::enforce::v1_parsers::parse_blkio_throttle(t);
    if let Ok(p) = CgroupPath::parse(t) {
        // A parsed path re-parses to itself and never climbs out.
        assert_eq!(CgroupPath::parse(p.as_str()).unwrap(), p);
        assert!(!p.components().any(|c| c == ".." || c == "."));
    }
    if let Ok(g) = Glob::new(t) {
        let _ = g.matches(t);
        let _ = g.may_match_below(t);
    }
}

/// Real files to mutate: every fixture text file (read once).
fn fixture_texts() -> &'static [String] {
    static TEXTS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    TEXTS.get_or_init(read_fixture_texts)
}

fn read_fixture_texts() -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![common::fixture("")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let t = e.file_type().unwrap();
            if t.is_dir() {
                stack.push(e.path());
            } else if t.is_file()
                && let Ok(s) = std::fs::read_to_string(e.path())
            {
                out.push(s);
            }
        }
    }
    out.sort();
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_text_never_panics(t in "\\PC*") {
        parse_everything(&t);
    }

    #[test]
    fn kernel_shaped_text_never_panics(
        t in "([a-z_]{1,12}( |=|:)[-0-9a-z.:=]{0,24}[ \n]{0,2}){0,12}"
    ) {
        parse_everything(&t);
    }

    #[test]
    fn mutated_real_files_never_panic(
        which in any::<prop::sample::Index>(),
        cut in any::<prop::sample::Index>(),
        insert in "[\\x00-\\x7f]{0,8}",
    ) {
        let texts = fixture_texts();
        let t = which.get(texts);
        // Cut at a char boundary and splice junk in.
        let mut at = cut.index(t.len() + 1);
        while !t.is_char_boundary(at) { at -= 1; }
        let m = format!("{}{}{}", &t[..at], insert, &t[at..]);
        parse_everything(&m);
        parse_everything(&t[..at]);
    }

    #[test]
    fn what_the_enforcer_writes_reads_back_exactly(
        quota in proptest::option::of(1000u64..=10_000_000),
        period in 1000u64..=1_000_000,
        mem in proptest::option::of(0u64..=(1 << 50)),
        rbps in proptest::option::of(1u64..u64::MAX / 2),
        wiops in proptest::option::of(1u64..1_000_000),
        major in 0u32..4096, minor in 0u32..1 << 20,
    ) {
        use prescient_linux::enforce::v2_parsers::*;
        let c = CpuMax { quota_us: quota, period_us: period };
        prop_assert_eq!(parse_cpu_max(&Setting::CpuMax(c).v2_text()).unwrap(), c);
        let m = mem.map_or(MemoryLimit::Max, MemoryLimit::Bytes);
        prop_assert_eq!(parse_memory_limit(&Setting::MemoryMax(m).v2_text()).unwrap(), m);
        let d = Device { major, minor };
        let l = IoLimit { rbps, wiops, ..IoLimit::default() };
        let back = parse_io_max(&Setting::IoMax(d, l).v2_text()).unwrap();
        prop_assert_eq!(back.get(&d).copied().unwrap_or_default(), l);
    }
}
