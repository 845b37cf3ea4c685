//! The `prescient` binary end to end, on the committed sample traces.

mod common;
use common::{fails, ok, sample};

#[test]
fn replay_table_lists_every_reference_policy() {
    let trace = sample("planetlab.csv.gz");
    let out = ok(&["replay", "--trace", trace.to_str().unwrap()]);
    for name in [
        "vpa",
        "autopilot-mw",
        "autopilot-ml",
        "reactive",
        "window-max",
        "static-peak",
    ] {
        assert!(out.contains(name), "{name} missing from\n{out}");
    }
    assert!(out.contains("skipped: needs a host capacity"), "{out}");
    assert!(out.contains("uncontended"), "{out}");
}

#[test]
fn sweep_as_json_has_a_frontier_per_policy() {
    let trace = sample("gcd.csv.gz");
    let out = ok(&[
        "replay",
        "--trace",
        trace.to_str().unwrap(),
        "--resource",
        "memory",
        "--sweep",
        "--format",
        "json",
    ]);
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["resource"], "memory");
    assert_eq!(report["series"], 40);
    let names: Vec<&str> = report["policies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names[..2],
        ["prescient", "vpa"],
        "prescient first, then the references"
    );
    for p in &report["policies"].as_array().unwrap()[..2] {
        assert!(p["points"].as_array().unwrap().len() > 10, "{}", p["name"]);
        assert_eq!(p["slack_at"].as_array().unwrap().len(), 3);
    }
}

#[test]
fn contended_run_reports_the_oracle() {
    let trace = sample("planetlab.csv.gz");
    let out = ok(&[
        "replay",
        "--trace",
        trace.to_str().unwrap(),
        "--capacity",
        "cpu=4.5",
        "--format",
        "json",
    ]);
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    let oracle = report["oracle_unmet"].as_f64().unwrap();
    assert!(oracle > 0.0 && oracle < 0.05, "{oracle}");
    for p in report["policies"].as_array().unwrap() {
        let unmet = p["points"][0]["unmet"].as_f64().unwrap();
        assert!(unmet >= oracle, "{}: {unmet} < oracle {oracle}", p["name"]);
    }
}

#[test]
fn allocations_out_can_be_scored_by_another_tool() {
    let dir = tempfile::tempdir().unwrap();
    let out_csv = dir.path().join("alloc.csv");
    let trace = sample("planetlab.csv.gz");
    let report = ok(&[
        "replay",
        "--trace",
        trace.to_str().unwrap(),
        "--policy",
        "window-max",
        "--knob",
        "0.3",
        "--out",
        out_csv.to_str().unwrap(),
        "--format",
        "json",
    ]);
    let report: serde_json::Value = serde_json::from_str(&report).unwrap();
    let point = &report["policies"][0]["points"][0];
    assert_eq!(point["knob"], 0.3);

    // Score the written allocations against the trace, as DESIGN.md says.
    let mut demand = std::collections::HashMap::new();
    let text = std::io::read_to_string(flate2::read::GzDecoder::new(
        std::fs::File::open(&trace).unwrap(),
    ))
    .unwrap();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        demand.insert(
            (f[0].to_string(), f[1].to_string(), f[2].to_string()),
            f[4].parse::<f64>().unwrap(),
        );
    }
    let alloc = std::fs::read_to_string(&out_csv).unwrap();
    let mut lines = alloc.lines();
    assert_eq!(
        lines.next(),
        Some("timestamp,host,workload,resource,allocation")
    );
    let (mut n, mut short, mut d_sum, mut served, mut a_sum) = (0, 0, 0.0, 0.0, 0.0);
    let mut rows = 0;
    for line in lines {
        rows += 1;
        let f: Vec<&str> = line.split(',').collect();
        let ts: i64 = f[0].parse().unwrap();
        let a: f64 = f[4].parse().unwrap();
        let d = demand[&(f[0].to_string(), f[1].to_string(), f[2].to_string())];
        if ts >= 36 * 300 {
            n += 1;
            short += usize::from(d > a);
            d_sum += d;
            served += d.min(a);
            a_sum += a;
        }
    }
    assert_eq!(rows, demand.len());
    let close = |x: f64, key: &str| (x - point[key].as_f64().unwrap()).abs() < 1e-9;
    assert!(close(short as f64 / n as f64, "violation"));
    assert!(close((d_sum - served) / d_sum, "unmet"));
    assert!(close((a_sum - served) / a_sum, "slack"));
}

#[test]
fn bad_arguments_say_what_to_do() {
    let trace = sample("planetlab.csv.gz");
    let t = trace.to_str().unwrap();
    let err = fails(&["replay", "--trace", t, "--resource", "gpu"]);
    assert!(err.contains("unknown resource 'gpu'"), "{err}");
    assert!(err.contains("io_write_ops"), "{err}");
    // An operations resource is a name --resource takes: this trace just
    // has no such series.
    let err = fails(&["replay", "--trace", t, "--resource", "io_read_ops"]);
    assert!(err.contains("no 'io_read_ops' series"), "{err}");
    let err = fails(&["replay", "--trace", t, "--policy", "hpa"]);
    assert!(
        err.contains("unknown policy 'hpa'") && err.contains("vpa"),
        "{err}"
    );
    let err = fails(&["replay", "--trace", t, "--capacity", "cpu4.5"]);
    assert!(err.contains("expected RESOURCE=AMOUNT"), "{err}");
    let err = fails(&["replay", "--trace", t, "--capacity", "memory=4GiB"]);
    assert!(err.contains("no capacity for cpu"), "{err}");
    let err = fails(&["replay", "--trace", t, "--enforce", "shares"]);
    assert!(err.contains("needs a capacity"), "{err}");
    let err = fails(&["replay", "--trace", t, "--out", "/tmp/x.csv"]);
    assert!(err.contains("exactly one"), "{err}");
    let err = fails(&["replay", "--trace", t, "--policy", "vpa", "--knob", "7"]);
    assert!(err.contains("outside vpa's"), "{err}");
    let err = fails(&["replay", "--trace", t, "--resource", "memory"]);
    assert!(
        err.contains("no 'memory' series") && err.contains("cpu"),
        "{err}"
    );
    let err = fails(&["replay", "--trace", "/nonexistent/trace.csv"]);
    assert!(err.contains("/nonexistent/trace.csv"), "{err}");
}

#[test]
fn capacity_file_errors_name_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let caps = dir.path().join("caps.csv");
    std::fs::write(
        &caps,
        "host,resource,capacity\npl000,cpu,4\npl001,cpu,lots\n",
    )
    .unwrap();
    let trace = sample("planetlab.csv.gz");
    let err = fails(&[
        "replay",
        "--trace",
        trace.to_str().unwrap(),
        "--capacity-file",
        caps.to_str().unwrap(),
    ]);
    assert!(
        err.contains("caps.csv:3: column 3 (capacity)") && err.contains("'lots'"),
        "{err}"
    );
    // A host left out of the file is named.
    std::fs::write(&caps, "host,resource,capacity\npl000,cpu,4\n").unwrap();
    let err = fails(&[
        "replay",
        "--trace",
        trace.to_str().unwrap(),
        "--capacity-file",
        caps.to_str().unwrap(),
    ]);
    assert!(err.contains("no capacity given for host 'pl001'"), "{err}");
}

#[test]
fn a_broken_trace_names_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.csv");
    std::fs::write(
        &bad,
        "timestamp,host,workload,resource,value\n0,h,w,cpu,0.5\n300,h,w,cpu,zero\n",
    )
    .unwrap();
    let err = fails(&["replay", "--trace", bad.to_str().unwrap()]);
    assert!(
        err.contains("bad.csv:3: column 5 (value): malformed number \"zero\""),
        "{err}"
    );
}

#[test]
fn import_keeps_what_it_read_and_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("p.db");
    let db = db.to_str().unwrap();
    let trace = sample("gcd.csv.gz");
    let out = ok(&["import", trace.to_str().unwrap(), "--db", db]);
    assert!(out.contains("23040 new samples"), "{out}");
    assert!(out.contains("80 series, 23040 samples"), "{out}");
    let out = ok(&["import", trace.to_str().unwrap(), "--db", db]);
    assert!(out.contains("0 new samples, 23040 already stored"), "{out}");

    // A trace broken at line 4: the two rows before it are kept.
    let bad = dir.path().join("bad.csv");
    std::fs::write(
        &bad,
        "timestamp,host,workload,resource,value\n0,x,w,cpu,1\n300,x,w,cpu,2\n600,x,w,cpu,-1\n",
    )
    .unwrap();
    let err = fails(&["import", bad.to_str().unwrap(), "--db", db]);
    assert!(err.contains("bad.csv:4: column 5 (value)"), "{err}");
    assert!(err.contains("the 2 rows before it are in"), "{err}");
    let out = ok(&["import", trace.to_str().unwrap(), "--db", db]);
    assert!(out.contains("81 series, 23042 samples"), "{out}");

    // A file that is not a database is refused and left alone.
    let not_db = dir.path().join("notes.txt");
    std::fs::write(&not_db, "hello").unwrap();
    let err = fails(&[
        "import",
        trace.to_str().unwrap(),
        "--db",
        not_db.to_str().unwrap(),
    ]);
    assert!(err.contains("notes.txt"), "{err}");
    assert_eq!(std::fs::read_to_string(&not_db).unwrap(), "hello");
}
