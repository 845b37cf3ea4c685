//! `GET /audit` pages exactly through the log both ways: newest first
//! with `order=desc` and `before`, oldest first by id with `after`.

use prescient_store::{AuditEntry, Store};

use crate::fixture::*;

fn ids(v: &serde_json::Value) -> Vec<i64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_i64().unwrap())
        .collect()
}

/// Appends `n` entries (after those the fixture made) (times out of order every third one, as a clock
/// stepping back would give), returning every id of the log, oldest first.
fn fill(f: &Fixture, n: i64) -> Vec<i64> {
    let mut s = Store::open(f._dir.path().join("api.db")).unwrap();
    for i in 0..n {
        s.append_audit(&AuditEntry {
            ts: NOW + if i % 3 == 2 { -i } else { i },
            actor: "agent".into(),
            action: "cgroup.write".into(),
            target: format!("web/cpu.max#{i}"),
            before: None,
            after: Some(format!("{i}")),
            reason: "plan".into(),
        })
        .unwrap();
    }
    s.audit_after(i64::MIN, i64::MIN, usize::MAX)
        .unwrap()
        .into_iter()
        .map(|(id, _)| id)
        .collect()
}

#[test]
fn newest_first_pages_back_with_before_exactly() {
    let f = Fixture::new();
    let all = fill(&f, 23);
    let n = all.len();
    assert!(n > 23, "the fixture's entries and 23");
    let mut newest_first = all.clone();
    newest_first.reverse();

    let mut seen: Vec<i64> = Vec::new();
    let mut url = "/api/v1/audit?order=desc&limit=10".to_string();
    loop {
        let page = ids(&f.get_json(&url));
        assert!(page.len() <= 10);
        if page.is_empty() {
            break;
        }
        seen.extend(&page);
        url = format!(
            "/api/v1/audit?order=desc&limit=10&before={}",
            page.last().unwrap()
        );
    }
    assert_eq!(seen, newest_first, "every entry once, newest first");

    // The first page holds the newest entry, whatever its time.
    let first = f.get_json("/api/v1/audit?order=desc&limit=1");
    assert_eq!(first[0]["target"], "web/cpu.max#22");
    // `since` still filters by time, newest first.
    let recent = ids(&f.get_json(&format!("/api/v1/audit?order=desc&since={}", NOW + 20)));
    assert_eq!(
        recent,
        [all[n - 1], all[n - 2]],
        "entries 22 and 21 (ts NOW+22, +21)"
    );
    assert!(ids(&f.get_json(&format!("/api/v1/audit?order=desc&before={}", all[0]))).is_empty());
}

#[test]
fn oldest_first_pages_forward_with_after_exactly() {
    let f = Fixture::new();
    let all = fill(&f, 23);
    let mut seen: Vec<i64> = Vec::new();
    let mut after = 0;
    loop {
        let page = ids(&f.get_json(&format!("/api/v1/audit?after={after}&limit=7")));
        if page.is_empty() {
            break;
        }
        seen.extend(&page);
        after = *page.last().unwrap();
    }
    assert_eq!(seen, all, "every entry once, by id");
    // Without a cursor the default stays: oldest first by time.
    let by_time = f.get_json("/api/v1/audit?limit=1000");
    let times: Vec<i64> = by_time
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["ts"].as_i64().unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
    assert_eq!(times.len(), all.len());
}
