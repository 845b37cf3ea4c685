//! `prescient plan` end to end, on the committed sample traces.

use std::path::{Path, PathBuf};

mod common;
use common::{fails, ok, prescient, sample};

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// 09:00 on the sample day, in the trace's seconds.
const AT: &str = "32400";

#[test]
fn plan_table_has_every_workload_and_the_pool_lines() {
    let trace = sample("planetlab.csv.gz");
    let out = ok(&[
        "plan",
        "--trace",
        trace.to_str().unwrap(),
        "--at",
        AT,
        "--capacity",
        "cpu=4.5",
        "--host",
        "pl000",
    ]);
    assert!(out.contains("plan for 32400 s (day 1 09:00)"), "{out}");
    assert!(out.contains("pl000/vm00"), "{out}");
    assert!(out.contains("host pl000 cpu: capacity 4.5 cores"), "{out}");
    for col in [
        "allocation",
        "coverage",
        "expected unmet",
        "actual demand",
        "reason",
    ] {
        assert!(out.contains(col), "{col} missing:\n{out}");
    }
    assert!(!out.contains("pl001/"), "only the host asked for:\n{out}");
}

#[test]
fn plan_json_splits_each_host_within_its_capacity() {
    let trace = sample("gcd.csv.gz");
    let out = ok(&[
        "plan",
        "--trace",
        trace.to_str().unwrap(),
        "--at",
        AT,
        "--capacity",
        "cpu=1.5,memory=16GiB",
        "--format",
        "json",
    ]);
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    let plans = report["plans"].as_array().unwrap();
    assert_eq!(plans.len(), 2, "one plan per host");
    for plan in plans {
        assert_eq!(plan["degraded"], false);
        let entries = plan["entries"].as_array().unwrap();
        for (resource, cap) in [("cpu", 1.5), ("memory", 16.0 * 1024.0 * 1024.0 * 1024.0)] {
            let total: f64 = entries
                .iter()
                .filter(|e| e["resource"] == resource)
                .map(|e| e["allocation"].as_f64().unwrap())
                .sum();
            assert!(
                total > 0.0 && total <= cap * (1.0 + 1e-9),
                "{resource}: {total} > {cap}"
            );
        }
        for e in entries {
            let c = e["coverage"].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&c));
            assert!(!e["reason"].as_str().unwrap().is_empty());
        }
    }
    // Same input, same plan.
    let again = ok(&[
        "plan",
        "--trace",
        trace.to_str().unwrap(),
        "--at",
        AT,
        "--capacity",
        "cpu=1.5,memory=16GiB",
        "--format",
        "json",
    ]);
    assert_eq!(out, again);
}

#[test]
fn policy_file_sets_priorities_and_requests_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let policy = write(
        dir.path(),
        "policy.toml",
        r#"
[[workload]]
match = "vm0*"
priority = 5
slo_quantile = 0.99

[[workload]]
match = "pl000/vm10"
guarantee = 0.25
limit = 1

[[request]]
workload = "pl000/vm20"
resource = "cpu"
amount = 1.0
priority = 9
justification = "nightly build"
"#,
    );
    let trace = sample("planetlab.csv.gz");
    let out = ok(&[
        "plan",
        "--trace",
        trace.to_str().unwrap(),
        "--at",
        AT,
        "--capacity",
        "cpu=2",
        "--host",
        "pl000",
        "--policy-file",
        policy.to_str().unwrap(),
        "--format",
        "json",
    ]);
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    let entries = report["plans"][0]["entries"].as_array().unwrap();
    let alloc = |name: &str| {
        entries
            .iter()
            .find(|e| e["workload"] == name)
            .unwrap_or_else(|| panic!("{name} missing"))["allocation"]
            .as_f64()
            .unwrap()
    };
    assert!(alloc("pl000/vm10") >= 0.25 && alloc("pl000/vm10") <= 1.0);
    assert!(alloc("pl000/vm20") >= 1.0, "the request is granted first");
    let req = &report["requests"][0];
    assert_eq!(req["workload"], "pl000/vm20");
    assert_eq!(req["status"], "granted");
    assert_eq!(req["justification"], "nightly build");
    // The same policies as JSON.
    let json = write(
        dir.path(),
        "policy.json",
        r#"{"workload": [{"match": "vm0*", "priority": 5, "slo_quantile": 0.99},
                          {"match": "pl000/vm10", "guarantee": 0.25, "limit": 1}],
            "request": [{"workload": "pl000/vm20", "resource": "cpu", "amount": 1.0,
                         "priority": 9, "justification": "nightly build"}]}"#,
    );
    let out_json = ok(&[
        "plan",
        "--trace",
        trace.to_str().unwrap(),
        "--at",
        AT,
        "--capacity",
        "cpu=2",
        "--host",
        "pl000",
        "--policy-file",
        json.to_str().unwrap(),
        "--format",
        "json",
    ]);
    let a: serde_json::Value = serde_json::from_str(&out).unwrap();
    let b: serde_json::Value = serde_json::from_str(&out_json).unwrap();
    assert_eq!(a["plans"], b["plans"]);
    // The table says who lent what.
    let table = ok(&[
        "plan",
        "--trace",
        trace.to_str().unwrap(),
        "--at",
        AT,
        "--capacity",
        "cpu=2",
        "--host",
        "pl000",
        "--policy-file",
        policy.to_str().unwrap(),
    ]);
    assert!(
        table.contains("request pl000/vm20 cpu for 1 core (\"nightly build\"): granted"),
        "{table}"
    );
}

#[test]
fn guarantees_above_capacity_print_a_degraded_plan_and_fail() {
    let dir = tempfile::tempdir().unwrap();
    let policy = write(
        dir.path(),
        "p.toml",
        "[[workload]]\nmatch = \"*\"\nguarantee = 0.5\n",
    );
    let trace = sample("planetlab.csv.gz");
    let out = prescient(&[
        "plan",
        "--trace",
        trace.to_str().unwrap(),
        "--at",
        AT,
        "--capacity",
        "cpu=4",
        "--host",
        "pl000",
        "--policy-file",
        policy.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stdout.contains("DEGRADED"), "{stdout}");
    assert!(stdout.contains("guarantee cut from 0.5 core"), "{stdout}");
    assert!(
        stderr.contains("pool 'pl000' cpu: guarantees total")
            && stderr.contains("but the capacity is 4 cores"),
        "{stderr}"
    );
}

#[test]
fn tiers_split_each_host_and_moves_to_the_cheaper_tier_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let trace = sample("planetlab.csv.gz");
    // Every workload holds 0.25 core in the priced tier, more than it has
    // room for: the solver keeps what fits there and moves the rest to the
    // free tier.
    let policy = write(
        dir.path(),
        "tiers.toml",
        r#"
[[tier]]
name = "guaranteed"
capacity = { cpu = 3 }
[[tier]]
name = "burstable"
capacity = { cpu = 1.5 }
unit_cost = { cpu = 0.05 }

[[workload]]
match = "*"
current = 0.25
tier = "burstable"
"#,
    );
    let args = [
        "plan",
        "--trace",
        trace.to_str().unwrap(),
        "--at",
        AT,
        "--capacity",
        "cpu=4.5",
        "--host",
        "pl000",
        "--policy-file",
        policy.to_str().unwrap(),
    ];
    let out = ok(&[&args[..], &["--format", "json"]].concat());
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    let pool = &report["pools"][0];
    let tiers = pool["tiers"].as_array().unwrap();
    let by_tier: Vec<(&str, f64)> = tiers
        .iter()
        .map(|t| (t[0].as_str().unwrap(), t[1].as_f64().unwrap()))
        .collect();
    assert_eq!(
        by_tier[0].0, "guaranteed",
        "cheapest tier first: {by_tier:?}"
    );
    assert!(by_tier[0].1 <= 3.0 + 1e-9, "{by_tier:?}");
    let total: f64 = by_tier.iter().map(|t| t.1).sum();
    let allocated = pool["allocated"].as_f64().unwrap();
    assert!((total - allocated).abs() < 1e-9, "{total} vs {allocated}");
    let cost = pool["cost"].as_f64().unwrap();
    let burst = by_tier
        .iter()
        .find(|t| t.0 == "burstable")
        .map_or(0.0, |t| t.1);
    assert!(
        (cost - 0.05 * burst).abs() < 1e-9,
        "cost {cost}, burstable {burst}"
    );
    let moves = report["moves"].as_array().unwrap();
    assert!(!moves.is_empty(), "shares move to the free tier: {out}");
    for m in moves {
        assert_eq!(m["from"], "burstable");
        assert_eq!(m["to"], "guaranteed");
        assert!(m["cost_change"].as_f64().unwrap() < 0.0, "{m}");
    }
    let moved: f64 = moves.iter().map(|m| m["amount"].as_f64().unwrap()).sum();
    assert!(
        moved <= 3.0 + 1e-9,
        "at most the free tier's capacity moves: {moved}"
    );

    let table = ok(&args);
    assert!(table.contains("  tiers: "), "{table}");
    assert!(
        table.contains("from tier burstable to guaranteed"),
        "{table}"
    );
}

#[test]
fn bad_input_names_the_file_key_and_value() {
    let dir = tempfile::tempdir().unwrap();
    let trace = sample("planetlab.csv.gz");
    let run = |policy: &Path| {
        fails(&[
            "plan",
            "--trace",
            trace.to_str().unwrap(),
            "--at",
            AT,
            "--capacity",
            "cpu=4",
            "--policy-file",
            policy.to_str().unwrap(),
        ])
    };
    // (file, its text, what the error must say: each part in turn).
    let cases: [(&str, &str, &[&str]); 9] = [
        (
            "a.toml",
            "[[workload]]\nmatch = \"vm0*\"\nlimit = 1\nguarantee = 2\n",
            &[
                "a.toml: workload[0] (match 'vm0*')",
                "limit 1 is below the guarantee 2",
            ],
        ),
        (
            "b.toml",
            "[[workload]]\nmatch = \"vm0*\"\nslo_quantile = 1.5\n",
            &["SLO quantile 1.5 must be inside (0, 1)"],
        ),
        (
            "c.toml",
            "[[workload]]\nmatch = \"vm0*\"\nguarantee = \"lots\"\n",
            &["c.toml: key 'workload[0] (match 'vm0*').guarantee': value \"lots\""],
        ),
        (
            "d.toml",
            "[[workload]]\nmatch = \"db-*\"\n",
            &["d.toml: workload[0]: match 'db-*' matches no workload"],
        ),
        (
            "e.toml",
            "[[workload]]\nmatch = \"vm0*\"\nprioritty = 3\n",
            &["e.toml: not a valid policy file", "prioritty"],
        ),
        (
            "f.toml",
            "[[request]]\nworkload = \"ghost\"\nresource = \"cpu\"\namount = 1\n",
            &["f.toml: request[0]: workload 'ghost' is not in the trace"],
        ),
        (
            "g.toml",
            "[[tier]]\nname = \"gold\"\ncapacity = { cpu = 4 }\n[[workload]]\nmatch = \"vm0*\"\ntier = \"silver\"\n",
            &["g.toml: workload[0] (match 'vm0*').tier: no tier 'silver' (the file has: gold)"],
        ),
        (
            "h.toml",
            "[[tier]]\nname = \"gold\"\ncapacity = { cpu = 4 }\nunit_cost = { cpu = -1 }\n",
            &["h.toml: key 'tier[0].unit_cost.cpu': value -1 is not a cost >= 0"],
        ),
        (
            "i.toml",
            "[[tier]]\nname = \"gold\"\n[[tier]]\nname = \"gold\"\n",
            &["i.toml: tier[1]: name 'gold' is used by an earlier tier"],
        ),
    ];
    for (name, text, want) in cases {
        let err = run(&write(dir.path(), name, text));
        for w in want {
            assert!(err.contains(w), "{name}: {w:?} missing from:\n{err}");
        }
    }

    let err = fails(&[
        "plan",
        "--trace",
        trace.to_str().unwrap(),
        "--at",
        "0",
        "--capacity",
        "cpu=4",
    ]);
    assert!(
        err.contains("--at 0: there is no history before it"),
        "{err}"
    );
    let err = fails(&[
        "plan",
        "--trace",
        trace.to_str().unwrap(),
        "--at",
        AT,
        "--capacity",
        "cpu=-1",
    ]);
    assert!(err.contains("'-1' is not a positive amount"), "{err}");
    let err = fails(&[
        "plan",
        "--trace",
        trace.to_str().unwrap(),
        "--at",
        AT,
        "--capacity",
        "cpu=4",
        "--host",
        "nope",
    ]);
    assert!(err.contains("--host nope: no such host"), "{err}");
}
