//! Unit tests: opening, refusing and migrating files, and every kind of
//! record. (The crash test, which needs a child process, is in tests/.)

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use prescient_core::{
    DemandProfile, HostId, Plan, PlanEntry, Resource, Sample, SeriesKey, WorkloadId,
};
use proptest::prelude::*;
use rusqlite::Connection;

use crate::schema::{self, MIGRATIONS, Migration};
use crate::*;

const MIN: i64 = 60_000;
const HOUR: i64 = 3_600_000;
const DAY: i64 = 86_400_000;

fn temp() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("store.db");
    (dir, path)
}

fn key(workload: &str, resource: Resource) -> SeriesKey {
    SeriesKey::new("host-a", workload, resource)
}

fn side_files(path: &Path) -> Vec<PathBuf> {
    ["-wal", "-shm", "-journal"]
        .into_iter()
        .map(|s| {
            let mut name = path.as_os_str().to_owned();
            name.push(s);
            PathBuf::from(name)
        })
        .filter(|p| p.exists())
        .collect()
}

/// `(count, sum, min, max)` per bucket, computed here from raw samples.
type Aggregates = BTreeMap<(i64, i64), (i64, f64, f64, f64)>;

fn aggregate_raw(rows: &[(i64, i64, f64)], width: i64) -> Aggregates {
    let mut out = Aggregates::new();
    for &(series, ts, v) in rows {
        let e = out
            .entry((series, ts.div_euclid(width) * width))
            .or_insert((0, 0.0, f64::INFINITY, f64::NEG_INFINITY));
        e.0 += 1;
        e.1 += v;
        e.2 = e.2.min(v);
        e.3 = e.3.max(v);
    }
    out
}

fn raw_rows(conn: &Connection) -> Vec<(i64, i64, f64)> {
    let mut stmt = conn
        .prepare("SELECT series_id, ts, value FROM samples ORDER BY series_id, ts")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap()
}

fn rollup_rows(conn: &Connection, table: &str) -> Aggregates {
    let mut stmt = conn
        .prepare(&format!(
            "SELECT series_id, ts_bucket, count, sum, min, max FROM {table}"
        ))
        .unwrap();
    stmt.query_map([], |r| {
        Ok((
            (r.get(0)?, r.get(1)?),
            (r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?),
        ))
    })
    .unwrap()
    .collect::<rusqlite::Result<_>>()
    .unwrap()
}

/// Checks that both rollup tables equal an aggregation of the raw table,
/// computed here independently of the store.
fn assert_rollups_match_raw(conn: &Connection) {
    let raw = raw_rows(conn);
    for (table, width) in [("rollup_1m", MIN), ("rollup_1h", HOUR)] {
        let expected = aggregate_raw(&raw, width);
        let stored = rollup_rows(conn, table);
        assert_eq!(
            expected.keys().collect::<Vec<_>>(),
            stored.keys().collect::<Vec<_>>(),
            "{table}: buckets"
        );
        for (k, e) in &expected {
            let s = stored[k];
            assert_eq!(e.0, s.0, "{table} {k:?}: count");
            assert!(
                (e.1 - s.1).abs() <= 1e-9 * e.1.abs().max(1.0),
                "{table} {k:?}: sum {} vs {}",
                e.1,
                s.1
            );
            assert_eq!((e.2, e.3), (s.2, s.3), "{table} {k:?}: min, max");
        }
    }
}

// ---------------------------------------------------------------- opening

#[test]
fn creates_a_new_file_in_wal_mode_at_the_latest_version() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/dir/store.db");
    let store = Store::open(&path).unwrap();
    assert!(path.is_file());
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    assert_eq!(SCHEMA_VERSION as usize, MIGRATIONS.len());
    let c = &store.conn;
    let q = |sql: &str| {
        c.query_row(sql, [], |r| r.get::<_, rusqlite::types::Value>(0))
            .unwrap()
    };
    use rusqlite::types::Value;
    assert_eq!(q("PRAGMA journal_mode"), Value::Text("wal".into()));
    assert_eq!(q("PRAGMA synchronous"), Value::Integer(1), "NORMAL");
    assert_eq!(q("PRAGMA foreign_keys"), Value::Integer(1));
    assert_eq!(q("PRAGMA busy_timeout"), Value::Integer(5000));
    assert_eq!(
        q("PRAGMA application_id"),
        Value::Integer(schema::APPLICATION_ID as i64)
    );
    assert_eq!(store.retention().unwrap(), RetentionPolicy::default());
    drop(store);
    // Opening again changes nothing and migrates nothing.
    let store = Store::open(&path).unwrap();
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
}

#[test]
fn an_empty_file_is_a_new_store() {
    let (_dir, path) = temp();
    std::fs::write(&path, b"").unwrap();
    let store = Store::open(&path).unwrap();
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
}

#[test]
fn the_schema_doc_names_every_table() {
    let (_dir, path) = temp();
    let store = Store::open(&path).unwrap();
    let doc: String = include_str!("lib.rs")
        .lines()
        .take_while(|l| l.starts_with("//!"))
        .collect::<Vec<_>>()
        .join("\n");
    let mut stmt = store
        .conn
        .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
        .unwrap();
    let tables: Vec<String> = stmt
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(tables.len() >= 10, "{tables:?}");
    for t in tables {
        assert!(
            doc.contains(&format!("`{t}`")),
            "table {t} is not described at the top of lib.rs"
        );
    }
    assert!(
        doc.contains(&format!("# Schema (version {SCHEMA_VERSION})")),
        "the doc names another version"
    );
}

/// Data written at version `v` by `SEEDS[v - 1]` directly in SQL, with the
/// schema of that version, and checked through the API by `CHECKS[v - 1]`
/// once the file has been migrated to the latest version. A new migration
/// needs a new seed and check (the array lengths make that a compile error).
const SEEDS: [fn(&Connection); SCHEMA_VERSION as usize] = [seed_v1, seed_v2, seed_v3];
const CHECKS: [fn(&mut Store); SCHEMA_VERSION as usize] = [check_v1, check_v2, check_v3];

fn seed_v1(c: &Connection) {
    c.execute_batch(
        "INSERT INTO workloads (id, host, name, selector, labels, created_at, updated_at)
             VALUES (7, 'h1', 'web', '/sys/fs/cgroup/web.slice', '{\"tier\":\"front\"}', 1, 2);
         INSERT INTO series (id, workload_id, resource) VALUES (70, 7, 'cpu'), (71, 7, 'memory');
         INSERT INTO samples VALUES (70, 0, 1.5), (70, 10000, 2.5), (71, 0, 1048576.0);
         INSERT INTO rollup_1m VALUES (70, 0, 2, 4.0, 1.5, 2.5), (71, 0, 1, 1048576.0, 1048576.0, 1048576.0);
         INSERT INTO rollup_1h VALUES (70, 0, 2, 4.0, 1.5, 2.5), (71, 0, 1, 1048576.0, 1048576.0, 1048576.0);
         UPDATE retention SET keep_ms = 259200000 WHERE level = 'raw';",
    )
    .unwrap();
}

fn check_v1(store: &mut Store) {
    let cpu = SeriesKey::new("h1", "web", Resource::Cpu);
    assert_eq!(store.series_id(&cpu).unwrap(), SeriesId(70));
    let list = store.series_list().unwrap();
    assert!(list.contains(&(SeriesId(71), SeriesKey::new("h1", "web", Resource::Memory))));
    assert_eq!(
        store.range(SeriesId(70), 0, DAY, Resolution::Raw).unwrap(),
        vec![Sample::new(0, 1.5), Sample::new(10_000, 2.5)]
    );
    assert_eq!(
        store
            .range(SeriesId(70), 0, DAY, Resolution::Minute)
            .unwrap(),
        vec![Sample::new(0, 2.0)]
    );
    assert_eq!(store.retention().unwrap().raw_ms, 3 * DAY);
    let w = &store.workloads().unwrap()[0];
    assert_eq!(
        (w.selector.as_str(), w.labels["tier"].as_str()),
        ("/sys/fs/cgroup/web.slice", "front")
    );
}

fn profile() -> DemandProfile {
    DemandProfile::new(1_000, 300_000, vec![0.5, 0.9], vec![1.0, 2.0, 1.5, 3.0]).unwrap()
}

fn plan(pool: &str, made_at: i64, allocation: f64) -> Plan {
    Plan {
        made_at,
        pool: HostId(pool.into()),
        degraded: false,
        entries: vec![PlanEntry {
            workload: WorkloadId("web".into()),
            resource: Resource::Cpu,
            allocation,
            coverage: 0.95,
            expected_unmet: 0.01,
            reason: "p95 of the forecast".into(),
        }],
    }
}

fn seed_v2(c: &Connection) {
    c.execute(
        "INSERT INTO profiles (series_id, made_at, start, step_ms, body) VALUES (70, 500, 1000, 300000, ?1)",
        [serde_json::to_string(&profile()).unwrap()],
    )
    .unwrap();
    c.execute(
        "INSERT INTO plans (pool, made_at, degraded, body) VALUES ('h1', 600, 0, ?1)",
        [serde_json::to_string(&plan("h1", 600, 2.0)).unwrap()],
    )
    .unwrap();
    c.execute_batch(
        "INSERT INTO events (kind, selector, start_ms, end_ms, effect, created_by, created_at)
             VALUES ('sale', 'web*', 1000, 2000, '{\"scale\":2}', 'alice', 10);
         INSERT INTO audit (ts, actor, action, target, before, after, reason)
             VALUES (20, 'agent', 'cgroup.write', 'h1/web/cpu.max', '100000 100000', '200000 100000', 'plan 1');
         INSERT INTO model_state (key, version, blob, updated_at) VALUES ('ets/70', 3, x'010203', 30);",
    )
    .unwrap();
}

fn check_v2(store: &mut Store) {
    assert_eq!(
        store.latest_profile(SeriesId(70)).unwrap(),
        Some((500, profile()))
    );
    assert_eq!(
        store.latest_plan(&HostId("h1".into())).unwrap().unwrap().1,
        plan("h1", 600, 2.0)
    );
    let events = store.events(0, 10_000, false).unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].event.effect, serde_json::json!({"scale": 2}));
    let audit = store.audit_since(0, 10).unwrap();
    assert_eq!(audit[0].1.after.as_deref(), Some("200000 100000"));
    assert_eq!(
        store.load_model_state("ets/70").unwrap(),
        Some((3, vec![1, 2, 3]))
    );
}

fn seed_v3(c: &Connection) {
    c.execute_batch(
        "INSERT INTO counters (series_id, name, ts, value) VALUES
             (70, '', 0, 1000000), (70, '', 10000, 16000000);",
    )
    .unwrap();
}

fn check_v3(store: &mut Store) {
    assert_eq!(
        store.counters(SeriesId(70), 0, DAY).unwrap(),
        vec![
            Counter::new(0, "", 1_000_000),
            Counter::new(10_000, "", 16_000_000)
        ]
    );
    // 15 s of CPU in 10 s.
    assert_eq!(
        store.rates_from_counters(SeriesId(70), 0, DAY).unwrap(),
        vec![Sample::new(10_000, 1.5)]
    );
}

#[test]
fn migrates_every_earlier_version_with_its_data() {
    for k in 0..SCHEMA_VERSION as usize {
        let (_dir, path) = temp();
        {
            let mut c = Connection::open(&path).unwrap();
            assert_eq!(schema::migrate(&mut c, &MIGRATIONS[..k]).unwrap(), 0);
            let v: u32 = c
                .pragma_query_value(None, "user_version", |r| r.get(0))
                .unwrap();
            assert_eq!(v, k as u32);
            for seed in &SEEDS[..k] {
                seed(&c);
            }
        }
        let mut store = Store::open(&path).unwrap_or_else(|e| panic!("from version {k}: {e}"));
        assert_eq!(
            store.schema_version().unwrap(),
            SCHEMA_VERSION,
            "from version {k}"
        );
        for check in &CHECKS[..k] {
            check(&mut store);
        }
        // What the newer versions added works on the migrated file.
        let id = store.series_id(&key("new", Resource::Cpu)).unwrap();
        store.ingest(&[(id, Sample::new(0, 1.0))]).unwrap();
        store.save_model_state("k", 1, b"x").unwrap();
        store
            .ingest_counters(&[(id, Counter::new(0, "", 7))])
            .unwrap();
        assert_eq!(store.counters(id, 0, 1).unwrap()[0].value, 7);
        assert_rollups_match_raw(&store.conn);
    }
}

#[test]
fn a_failed_migration_is_rolled_back_whole() {
    let (_dir, path) = temp();
    let mut c = Connection::open(&path).unwrap();
    schema::migrate(&mut c, &MIGRATIONS[..1]).unwrap();
    seed_v1(&c);
    let broken = [
        Migration {
            description: MIGRATIONS[0].description,
            sql: MIGRATIONS[0].sql,
        },
        Migration {
            description: "half good, then broken",
            sql: "CREATE TABLE half_done (x INTEGER); INSERT INTO samples VALUES (70, 0, 9.0);",
        },
    ];
    match schema::migrate(&mut c, &broken) {
        Err(schema::MigrateError::Failed { from: 1, to: 2, .. }) => {}
        other => panic!("expected a failed migration 1 -> 2, got {other:?}"),
    }
    let v: u32 = c
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(v, 1);
    let half: i64 = c
        .query_row(
            "SELECT count(*) FROM sqlite_schema WHERE name = 'half_done'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        half, 0,
        "the migration's first statement was not rolled back"
    );
    let n: i64 = c
        .query_row("SELECT count(*) FROM samples", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 3);
}

/// A file at the latest version whose version is then bumped past it.
fn newer_file(path: &Path) {
    let mut c = Connection::open(path).unwrap();
    schema::migrate(&mut c, MIGRATIONS).unwrap();
    c.pragma_update(None, "journal_mode", "WAL").unwrap();
    seed_v1(&c);
    c.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
        .unwrap();
}

#[test]
fn refuses_a_newer_schema_and_leaves_the_file_unchanged() {
    let (_dir, path) = temp();
    newer_file(&path);
    assert!(
        side_files(&path).is_empty(),
        "closing should have checkpointed the WAL"
    );
    let before = std::fs::read(&path).unwrap();
    let err = Store::open(&path).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, StoreError::TooNew { found, supported, .. }
        if found == SCHEMA_VERSION + 1 && supported == SCHEMA_VERSION),
        "{err:?}"
    );
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert!(
        msg.contains(&format!("version {}", SCHEMA_VERSION + 1)),
        "{msg}"
    );
    assert!(msg.contains(&format!("({SCHEMA_VERSION})")), "{msg}");
    assert!(msg.contains("upgrade prescient"), "{msg}");
    assert_eq!(std::fs::read(&path).unwrap(), before, "the file changed");
    assert!(side_files(&path).is_empty(), "left {:?}", side_files(&path));
}

#[test]
fn refuses_a_newer_schema_that_is_still_in_the_wal() {
    // Another process holds the file open; its version bump is in the WAL,
    // not yet in the main file's header.
    let (_dir, path) = temp();
    let mut c = Connection::open(&path).unwrap();
    schema::migrate(&mut c, MIGRATIONS).unwrap();
    c.pragma_update(None, "journal_mode", "WAL").unwrap();
    c.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
    c.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
        .unwrap();
    let header = std::fs::read(&path).unwrap();
    assert_eq!(
        u32::from_be_bytes(header[60..64].try_into().unwrap()),
        SCHEMA_VERSION
    );
    let err = Store::open(&path).unwrap_err();
    assert!(matches!(err, StoreError::TooNew { .. }), "{err:?}");
    assert_eq!(std::fs::read(&path).unwrap(), header, "the file changed");
    let v: u32 = c
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(v, SCHEMA_VERSION + 1);
}

#[test]
fn refuses_files_that_are_not_databases_and_leaves_them_unchanged() {
    let mut wal_header = b"SQLite format 3\0".to_vec();
    wal_header.extend_from_slice(&[0x10, 0x00, 2, 2]); // page size 4096, WAL read/write versions
    wal_header.extend((0..4076u32).map(|i| (i * 7919 % 251) as u8));
    let mut cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "text",
            b"timestamp,host,workload,resource,value\n0,a,b,cpu,1\n".to_vec(),
        ),
        ("short", b"SQLite".to_vec()),
        (
            "short header",
            b"SQLite format 3\0 and then nothing".to_vec(),
        ),
        (
            "binary",
            (0..8192u32).map(|i| (i * 31 % 256) as u8).collect(),
        ),
        ("header then garbage", {
            let mut v = b"SQLite format 3\0".to_vec();
            v.extend((0..8192u32).map(|i| (i * 13 % 256) as u8));
            v
        }),
        ("wal header then garbage", wal_header),
    ];
    // A real WAL-mode database whose first page is then overwritten: the
    // header passes, SQLite opens it (with -wal and -shm), then finds the damage.
    let damaged = {
        let (_dir, path) = temp();
        let c = Connection::open(&path).unwrap();
        c.execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE t (x); INSERT INTO t VALUES (1);")
            .unwrap();
        drop(c);
        let mut bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes[18..20], [2, 2], "WAL mode in the header");
        for (i, b) in bytes[100..4096].iter_mut().enumerate() {
            *b = (i * 37 % 256) as u8;
        }
        bytes
    };
    cases.push(("damaged first page", damaged));
    for (name, bytes) in cases {
        let (_dir, path) = temp();
        std::fs::write(&path, &bytes).unwrap();
        let err = Store::open(&path).unwrap_err();
        let msg = err.to_string();
        assert!(
            matches!(err, StoreError::NotADatabase { .. }),
            "{name}: {err:?}"
        );
        assert!(msg.contains(&path.display().to_string()), "{name}: {msg}");
        assert_eq!(
            std::fs::read(&path).unwrap(),
            bytes,
            "{name}: the file changed"
        );
        assert!(
            side_files(&path).is_empty(),
            "{name}: left {:?}",
            side_files(&path)
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let err = Store::open(dir.path()).unwrap_err();
    assert!(
        matches!(err, StoreError::NotADatabase { .. }),
        "a directory: {err:?}"
    );
}

#[test]
fn refuses_another_programs_database_and_leaves_it_unchanged() {
    for (name, sql) in [
        (
            "no application id",
            "CREATE TABLE notes (body TEXT); INSERT INTO notes VALUES ('hi');",
        ),
        ("its own user_version", "PRAGMA user_version = 1;"),
        (
            "another application id",
            "PRAGMA application_id = 42; PRAGMA user_version = 1;",
        ),
    ] {
        let (_dir, path) = temp();
        Connection::open(&path).unwrap().execute_batch(sql).unwrap();
        let before = std::fs::read(&path).unwrap();
        let err = Store::open(&path).unwrap_err();
        assert!(
            matches!(err, StoreError::NotPrescient { .. }),
            "{name}: {err:?}"
        );
        assert!(err.to_string().contains(&path.display().to_string()));
        assert_eq!(
            std::fs::read(&path).unwrap(),
            before,
            "{name}: the file changed"
        );
        assert!(
            side_files(&path).is_empty(),
            "{name}: left {:?}",
            side_files(&path)
        );
    }
}

// ---------------------------------------------------------------- series

#[test]
fn series_ids_are_created_once_and_survive_reopening() {
    let (_dir, path) = temp();
    let mut store = Store::open(&path).unwrap();
    let cpu = store.series_id(&key("web", Resource::Cpu)).unwrap();
    let mem = store.series_id(&key("web", Resource::Memory)).unwrap();
    let db = store.series_id(&key("db", Resource::Cpu)).unwrap();
    assert_ne!(cpu, mem);
    assert_eq!(store.series_id(&key("web", Resource::Cpu)).unwrap(), cpu);
    assert!(
        store
            .series_id(&SeriesKey::new("", "x", Resource::Cpu))
            .is_err()
    );
    drop(store);
    let mut store = Store::open(&path).unwrap();
    assert_eq!(store.series_id(&key("web", Resource::Memory)).unwrap(), mem);
    assert_eq!(
        store.series_list().unwrap(),
        vec![
            (cpu, key("web", Resource::Cpu)),
            (mem, key("web", Resource::Memory)),
            (db, key("db", Resource::Cpu))
        ]
    );
    let names: Vec<_> = store
        .workloads()
        .unwrap()
        .into_iter()
        .map(|w| w.name.0)
        .collect();
    assert_eq!(names, ["db", "web"]);
    assert_eq!(
        store.series_key(db).unwrap(),
        Some(key("db", Resource::Cpu))
    );
    assert_eq!(store.series_key(SeriesId(999)).unwrap(), None);
}

/// Series name their resource as text (`Resource::as_str`), not by
/// position: every resource, the operations ones included, comes back
/// after reopening; a name this build does not know (from a newer one) is
/// left out of the list rather than failing it.
#[test]
fn series_of_every_resource_are_stored_by_name() {
    let (_dir, path) = temp();
    let mut store = Store::open(&path).unwrap();
    let ids: Vec<SeriesId> = Resource::ALL
        .into_iter()
        .map(|r| store.series_id(&key("web", r)).unwrap())
        .collect();
    let ops = ids[Resource::ALL.len() - 2];
    // A counter series: read operations, 1,500 more in 10 s on one device.
    store
        .ingest_counters(&[
            (ops, Counter::new(0, "8:0", 1_000)),
            (ops, Counter::new(10_000, "8:0", 2_500)),
        ])
        .unwrap();
    drop(store);
    let c = Connection::open(&path).unwrap();
    let name: String = c
        .query_row("SELECT resource FROM series WHERE id = ?1", [ops.0], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(name, "io_read_ops");
    c.execute_batch(
        "INSERT INTO series (id, workload_id, resource)
             SELECT 999, workload_id, 'gpu' FROM series LIMIT 1;",
    )
    .unwrap();
    drop(c);
    let mut store = Store::open(&path).unwrap();
    let list = store.series_list().unwrap();
    let want: Vec<(SeriesId, SeriesKey)> = ids
        .iter()
        .zip(Resource::ALL)
        .map(|(id, r)| (*id, key("web", r)))
        .collect();
    assert_eq!(list, want);
    assert_eq!(
        store.rates_from_counters(ops, 0, DAY).unwrap(),
        vec![Sample::new(10_000, 150.0)]
    );
}

#[test]
fn workload_metadata_is_stored_and_audited_when_it_changes() {
    let (_dir, path) = temp();
    let mut store = Store::open(&path).unwrap();
    let (host, name) = (HostId("h".into()), WorkloadId("web".into()));
    let labels = BTreeMap::from([("team".to_string(), "shop".to_string())]);
    store
        .set_workload_meta(&host, &name, "/web.slice", &labels, "discovery", 100)
        .unwrap();
    store
        .set_workload_meta(&host, &name, "/web.slice", &labels, "discovery", 200)
        .unwrap();
    let w = &store.workloads().unwrap()[0];
    assert_eq!(
        (w.selector.as_str(), &w.labels, w.updated_at),
        ("/web.slice", &labels, 100)
    );
    let audit = store.audit_since(0, 10).unwrap();
    assert_eq!(
        audit.len(),
        1,
        "an unchanged setting was audited: {audit:?}"
    );
    assert_eq!(
        (audit[0].1.action.as_str(), audit[0].1.target.as_str()),
        ("workload.meta", "h/web")
    );
    assert!(audit[0].1.after.as_deref().unwrap().contains("shop"));
    // A series of the same workload reuses the row.
    store
        .series_id(&SeriesKey::new("h", "web", Resource::Cpu))
        .unwrap();
    assert_eq!(store.workloads().unwrap().len(), 1);
    // The labels column only takes a JSON object.
    let bad = store
        .conn
        .execute("UPDATE workloads SET labels = '[1]'", []);
    assert!(bad.is_err());
}

// ---------------------------------------------------------------- samples

#[test]
fn ingest_and_range_round_trip() {
    let (_dir, path) = temp();
    let mut store = Store::open(&path).unwrap();
    let a = store.series_id(&key("a", Resource::Cpu)).unwrap();
    let b = store.series_id(&key("b", Resource::Cpu)).unwrap();
    // Out of order, two series interleaved.
    let batch: Vec<_> = (0..100i64)
        .rev()
        .flat_map(|i| {
            [
                (a, Sample::new(i * 1000, i as f64)),
                (b, Sample::new(i * 1000, -(i as f64))),
            ]
        })
        .collect();
    let report = store.ingest(&batch).unwrap();
    assert_eq!(
        report,
        IngestReport {
            inserted: 200,
            duplicates: 0,
            too_old: 0
        }
    );
    let got = store.range(a, 10_000, 20_000, Resolution::Raw).unwrap();
    assert_eq!(
        got,
        (10..20)
            .map(|i| Sample::new(i * 1000, i as f64))
            .collect::<Vec<_>>(),
        "half-open [from, to)"
    );
    assert_eq!(
        store.range(b, 99_000, 1_000_000, Resolution::Raw).unwrap(),
        vec![Sample::new(99_000, -99.0)]
    );
    assert!(
        store
            .range(a, 500_000, 600_000, Resolution::Raw)
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .range(SeriesId(12345), 0, DAY, Resolution::Raw)
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store.summary().unwrap(),
        StoreSummary {
            series: 2,
            samples: 200,
            first_ts: Some(0),
            last_ts: Some(99_000)
        }
    );
    assert_rollups_match_raw(&store.conn);
    // An empty batch is fine.
    assert_eq!(store.ingest(&[]).unwrap(), IngestReport::default());
}

#[test]
fn rollup_queries_give_means_at_bucket_starts() {
    let (_dir, path) = temp();
    let mut store = Store::open(&path).unwrap();
    let s = store.series_id(&key("a", Resource::Cpu)).unwrap();
    // Every 10 s for two hours: value = the minute number, plus 0..5 within it.
    let batch: Vec<_> = (0..720i64)
        .map(|i| (s, Sample::new(i * 10_000, (i / 6) as f64 + (i % 6) as f64)))
        .collect();
    store.ingest(&batch).unwrap();
    let minutes = store.range(s, 0, 2 * HOUR, Resolution::Minute).unwrap();
    assert_eq!(minutes.len(), 120);
    assert_eq!(minutes[3], Sample::new(3 * MIN, 3.0 + 2.5));
    let buckets = store
        .range_buckets(s, 30 * MIN + 1, 33 * MIN, Resolution::Minute)
        .unwrap();
    assert_eq!(
        buckets.len(),
        3,
        "buckets overlapping the window, starting with the one holding `from`"
    );
    assert_eq!(
        buckets[0],
        Bucket {
            ts: 30 * MIN,
            count: 6,
            mean: 32.5,
            min: 30.0,
            max: 35.0
        }
    );
    let hours = store.range_buckets(s, 0, DAY, Resolution::Hour).unwrap();
    assert_eq!(hours.len(), 2);
    assert_eq!(
        (hours[1].ts, hours[1].count, hours[1].min, hours[1].max),
        (HOUR, 360, 60.0, 124.0)
    );
    let raw = store.range_buckets(s, 0, 20_000, Resolution::Raw).unwrap();
    assert_eq!(
        raw[1],
        Bucket {
            ts: 10_000,
            count: 1,
            mean: 1.0,
            min: 1.0,
            max: 1.0
        }
    );
}

#[test]
fn duplicates_are_ignored_and_not_counted_twice() {
    let (_dir, path) = temp();
    let mut store = Store::open(&path).unwrap();
    let s = store.series_id(&key("a", Resource::Cpu)).unwrap();
    let batch: Vec<_> = (0..300i64)
        .map(|i| (s, Sample::new(i * 1000, i as f64)))
        .collect();
    store.ingest(&batch).unwrap();
    let rollups = rollup_rows(&store.conn, "rollup_1m");
    // The same batch again, and the same timestamps with other values.
    assert_eq!(
        store.ingest(&batch).unwrap(),
        IngestReport {
            inserted: 0,
            duplicates: 300,
            too_old: 0
        }
    );
    let changed: Vec<_> = batch
        .iter()
        .map(|&(s, x)| (s, Sample::new(x.ts, 1e6)))
        .collect();
    assert_eq!(store.ingest(&changed).unwrap().duplicates, 300);
    assert_eq!(rollup_rows(&store.conn, "rollup_1m"), rollups);
    assert_eq!(
        store.range(s, 0, 1000, Resolution::Raw).unwrap(),
        vec![Sample::new(0, 0.0)],
        "first value wins"
    );
    // Overlapping: half old, half new; and a repeat inside one batch.
    let mut overlap: Vec<_> = (150..450i64)
        .map(|i| (s, Sample::new(i * 1000, i as f64)))
        .collect();
    overlap.push((s, Sample::new(400_000, -1.0)));
    assert_eq!(
        store.ingest(&overlap).unwrap(),
        IngestReport {
            inserted: 150,
            duplicates: 151,
            too_old: 0
        }
    );
    assert_eq!(
        store.range(s, 400_000, 400_001, Resolution::Raw).unwrap(),
        vec![Sample::new(400_000, 400.0)]
    );
    assert_rollups_match_raw(&store.conn);
}

#[test]
fn a_second_writer_behind_the_cache_is_caught_by_the_key() {
    let (_dir, path) = temp();
    let mut a = Store::open(&path).unwrap();
    let mut b = Store::open(&path).unwrap();
    let s = a.series_id(&key("a", Resource::Cpu)).unwrap();
    assert_eq!(b.series_id(&key("a", Resource::Cpu)).unwrap(), s);
    let samples = |r: std::ops::Range<i64>| {
        r.map(|i| (s, Sample::new(i * 1000, i as f64)))
            .collect::<Vec<_>>()
    };
    b.ingest(&samples(0..4)).unwrap(); // b now believes the newest stored ts is 3 s
    a.ingest(&samples(4..11)).unwrap();
    let report = b.ingest(&samples(5..13)).unwrap();
    assert_eq!(
        report,
        IngestReport {
            inserted: 2,
            duplicates: 6,
            too_old: 0
        }
    );
    assert_eq!(
        a.range(s, 0, DAY, Resolution::Raw).unwrap(),
        samples(0..13).into_iter().map(|x| x.1).collect::<Vec<_>>()
    );
    assert_rollups_match_raw(&a.conn);
}

#[test]
fn a_non_finite_value_refuses_the_whole_batch() {
    let (_dir, path) = temp();
    let mut store = Store::open(&path).unwrap();
    let s = store.series_id(&key("web", Resource::Cpu)).unwrap();
    for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        let batch = [
            (s, Sample::new(1000, 1.0)),
            (s, Sample::new(2000, bad)),
            (s, Sample::new(3000, 1.0)),
        ];
        let err = store.ingest(&batch).unwrap_err();
        let msg = err.to_string();
        assert!(
            matches!(err, StoreError::NonFinite { ts: 2000, .. }),
            "{err:?}"
        );
        assert!(
            msg.contains("host-a/web/cpu") && msg.contains("2000"),
            "{msg}"
        );
    }
    assert_eq!(store.summary().unwrap().samples, 0);
    assert!(rollup_rows(&store.conn, "rollup_1m").is_empty());
}

#[test]
fn an_unknown_series_refuses_the_whole_batch() {
    let (_dir, path) = temp();
    let mut store = Store::open(&path).unwrap();
    let s = store.series_id(&key("web", Resource::Cpu)).unwrap();
    let err = store
        .ingest(&[
            (s, Sample::new(0, 1.0)),
            (SeriesId(s.0 + 41), Sample::new(0, 1.0)),
        ])
        .unwrap_err();
    assert!(
        matches!(err, StoreError::UnknownSeries { series, .. } if series == SeriesId(s.0 + 41)),
        "{err:?}"
    );
    assert!(err.to_string().contains(&format!("id {}", s.0 + 41)));
    assert_eq!(store.summary().unwrap().samples, 0);
}

#[test]
fn retention_deletes_per_level_and_refuses_older_samples_after() {
    let (_dir, path) = temp();
    let mut store = Store::open(&path).unwrap();
    let s = store.series_id(&key("a", Resource::Cpu)).unwrap();
    let t = store.series_id(&key("b", Resource::Memory)).unwrap();
    let policy = RetentionPolicy {
        raw_ms: 2 * HOUR,
        minute_ms: 4 * HOUR,
        hour_ms: 6 * HOUR,
    };
    store.set_retention(&policy, "alice", 5).unwrap();
    assert_eq!(store.retention().unwrap(), policy);
    let audit = store.audit_since(0, 10).unwrap();
    assert_eq!(audit[0].1.action, "retention.set");
    assert!(audit[0].1.before.as_deref().unwrap().contains("172800000"));
    // Every 30 s for 8 h, on two series.
    let batch: Vec<_> = (0..960i64)
        .flat_map(|i| {
            [
                (s, Sample::new(i * 30_000, 1.0)),
                (t, Sample::new(i * 30_000, 2.0)),
            ]
        })
        .collect();
    store.ingest(&batch).unwrap();
    // The CPU series' raw counter at the same times.
    let counters: Vec<_> = (0..960i64)
        .map(|i| (s, Counter::new(i * 30_000, "", i as u64 * 30_000_000)))
        .collect();
    store.ingest_counters(&counters).unwrap();

    let now = 8 * HOUR + 90_000; // 8 h 1.5 min
    let report = store.apply_retention(now).unwrap();
    // raw: ts < now - 2 h = 6 h 1.5 min: 723 samples per series (0 .. 6:01:30)
    // 1m: buckets < 4 h 1 min (rounded down): 241 per series
    // 1h: buckets < 2 h: 2 per series
    assert_eq!(
        report,
        RetentionReport {
            raw: 2 * 723,
            counters: 723,
            minute: 2 * 241,
            hour: 2 * 2
        }
    );
    // Counters go with the raw samples; below the cutoff they are refused.
    assert_eq!(store.counters(s, 0, DAY).unwrap()[0].ts, 6 * HOUR + 90_000);
    assert_eq!(
        store
            .ingest_counters(&[(s, Counter::new(HOUR, "", 1))])
            .unwrap()
            .too_old,
        1
    );
    let raw = store.range(s, 0, DAY, Resolution::Raw).unwrap();
    assert_eq!(raw.first().unwrap().ts, 6 * HOUR + 90_000);
    assert_eq!(
        store
            .range(s, 0, DAY, Resolution::Minute)
            .unwrap()
            .first()
            .unwrap()
            .ts,
        4 * HOUR + MIN
    );
    assert_eq!(
        store
            .range(s, 0, DAY, Resolution::Hour)
            .unwrap()
            .first()
            .unwrap()
            .ts,
        2 * HOUR
    );
    // Again at the same time, or earlier: nothing more.
    assert_eq!(
        store.apply_retention(now).unwrap(),
        RetentionReport::default()
    );
    assert_eq!(
        store.apply_retention(0).unwrap(),
        RetentionReport::default()
    );

    // Below the newest cutoff (6 h 1.5 min): refused, and counted.
    let late = [
        (s, Sample::new(6 * HOUR, 5.0)),
        (s, Sample::new(6 * HOUR + 60_000, 5.0)),
        (s, Sample::new(9 * HOUR, 5.0)),
    ];
    assert_eq!(
        store.ingest(&late).unwrap(),
        IngestReport {
            inserted: 1,
            duplicates: 0,
            too_old: 2
        }
    );
    // A policy that keeps longer does not bring the cutoffs back.
    store
        .set_retention(&RetentionPolicy::default(), "alice", 6)
        .unwrap();
    assert_eq!(
        store.apply_retention(now).unwrap(),
        RetentionReport::default()
    );
    assert_eq!(store.ingest(&late[..1]).unwrap().too_old, 1);
    for bad in [0, -1] {
        let p = RetentionPolicy {
            raw_ms: bad,
            ..RetentionPolicy::default()
        };
        assert!(matches!(
            store.set_retention(&p, "x", 0),
            Err(StoreError::Invalid { .. })
        ));
    }
}

#[derive(Debug, Clone)]
struct Op {
    series: usize,
    ts: i64,
    value: f64,
}

fn ops() -> impl Strategy<Value = Vec<Vec<Op>>> {
    let op =
        (0usize..3, 0i64..(3 * HOUR / 7_000), -1e3f64..1e3).prop_map(|(series, step, value)| Op {
            series,
            ts: step * 7_000 - HOUR, // some before 0, to check buckets of negative ts
            value: (value * 8.0).round() / 8.0,
        });
    prop::collection::vec(prop::collection::vec(op, 0..400), 1..6)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Raw holds the first value of every (series, ts) ingested, and the
    /// rollups equal an aggregation of raw computed here, whatever the
    /// order, overlap and repeats of the batches.
    #[test]
    fn rollups_equal_an_aggregation_of_raw(batches in ops()) {
        let (_dir, path) = temp();
        let mut store = Store::open(&path).unwrap();
        let ids: Vec<SeriesId> = ["a", "b", "c"].iter().map(|w| store.series_id(&key(w, Resource::Cpu)).unwrap()).collect();
        let mut model: HashMap<(i64, i64), f64> = HashMap::new();
        let mut total = IngestReport::default();
        for batch in &batches {
            let rows: Vec<_> = batch.iter().map(|o| (ids[o.series], Sample::new(o.ts, o.value))).collect();
            let r = store.ingest(&rows).unwrap();
            prop_assert_eq!(r.inserted + r.duplicates, rows.len() as u64);
            total.inserted += r.inserted;
            for o in batch {
                model.entry((ids[o.series].0, o.ts)).or_insert(o.value);
            }
        }
        let mut expected: Vec<(i64, i64, f64)> = model.into_iter().map(|((s, t), v)| (s, t, v)).collect();
        expected.sort_by_key(|&(s, t, _)| (s, t));
        prop_assert_eq!(total.inserted, expected.len() as u64);
        prop_assert_eq!(raw_rows(&store.conn), expected);
        assert_rollups_match_raw(&store.conn);
    }
}

// ---------------------------------------------------------------- records

#[test]
fn profiles_keep_the_newest_and_a_bounded_history() {
    let (_dir, path) = temp();
    let mut store = Store::open(&path).unwrap();
    let s = store.series_id(&key("a", Resource::Cpu)).unwrap();
    assert_eq!(store.latest_profile(s).unwrap(), None);
    // 53 profiles in one 5-minute bucket, then one in the next.
    let n = PROFILE_HISTORY as i64 + 5;
    for i in 0..n {
        let p = DemandProfile::new(i * 1000, 300_000, vec![0.5], vec![i as f64]).unwrap();
        store.save_profile(s, i * 1000, &p).unwrap();
    }
    assert_eq!(
        store.profile_history(s, 1000).unwrap().len(),
        n as usize,
        "thinning waits for the next bucket"
    );
    let p = DemandProfile::new(PROFILE_BUCKET_MS, 300_000, vec![0.5], vec![99.0]).unwrap();
    store.save_profile(s, PROFILE_BUCKET_MS, &p).unwrap();
    let (made_at, latest) = store.latest_profile(s).unwrap().unwrap();
    assert_eq!(made_at, PROFILE_BUCKET_MS);
    assert_eq!(latest.step(0).unwrap().values(), [99.0]);
    let history = store.profile_history(s, 1000).unwrap();
    let times: Vec<i64> = history.iter().map(|(t, _)| *t).collect();
    // The newest 48 (47 of the first bucket and the new one), then the
    // newest of the first bucket's other six.
    let mut expected: Vec<i64> = vec![PROFILE_BUCKET_MS];
    expected.extend((n - 47..n).rev().map(|i| i * 1000));
    expected.push((n - 48) * 1000);
    assert_eq!(times, expected);
    assert!(matches!(
        store.save_profile(SeriesId(999), 0, &profile()),
        Err(StoreError::UnknownSeries { .. })
    ));
    // A damaged row is an error naming it, not a panic or a bad profile.
    store
        .conn
        .execute("UPDATE profiles SET body = '{\"start\":0,\"step_ms\":1,\"levels\":[],\"values\":[]}' WHERE made_at = ?1", [made_at])
        .unwrap();
    let err = store.latest_profile(s).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
    assert!(err.to_string().contains("profiles row"), "{err}");
}

/// Saves a one-level profile of `series` made at `t` (value: `t` in s).
fn save_at(store: &mut Store, series: SeriesId, t: i64) {
    let p = DemandProfile::new(t + 10_000, 10_000, vec![0.5], vec![(t / 1000) as f64]).unwrap();
    store.save_profile(series, t, &p).unwrap();
}

/// The `made_at` of every stored profile of `series`, oldest first.
fn profile_times(store: &Store, series: SeriesId) -> Vec<i64> {
    let mut stmt = store
        .conn
        .prepare("SELECT made_at FROM profiles WHERE series_id = ?1 ORDER BY made_at, id")
        .unwrap();
    stmt.query_map([series.0], |r| r.get(0))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap()
}

/// What thinning should keep of profiles made at `times` (increasing):
/// the newest PROFILE_HISTORY, and the newest of each bucket of the rest.
fn thinned(times: &[i64]) -> Vec<i64> {
    let split = times.len().saturating_sub(PROFILE_HISTORY);
    let (old, newest) = times.split_at(split);
    let mut kept: Vec<i64> = Vec::new();
    for &t in old {
        if kept
            .last()
            .is_some_and(|&k| k.div_euclid(PROFILE_BUCKET_MS) == t.div_euclid(PROFILE_BUCKET_MS))
        {
            kept.pop();
        }
        kept.push(t);
    }
    kept.extend_from_slice(newest);
    kept
}

#[test]
fn a_day_of_profiles_every_10_s_is_thinned_to_one_per_5_minutes() {
    let (_dir, path) = temp();
    let mut store = Store::open(&path).unwrap();
    let a = store.series_id(&key("a", Resource::Cpu)).unwrap();
    let b = store.series_id(&key("b", Resource::Cpu)).unwrap();
    let step = 10_000;
    let per_bucket = (PROFILE_BUCKET_MS / step) as usize;
    let bound = PROFILE_HISTORY + 288 * 7;
    let mut times = Vec::new();
    // A day and one step: the last save starts a new bucket.
    for i in 0..=(DAY / step) {
        let t = i * step;
        save_at(&mut store, a, t);
        times.push(t);
        if i % 7 == 0 {
            // Series b every 70 s: thinning one series leaves the other be.
            save_at(&mut store, b, t);
        }
        if i % 500 == 0 {
            let n = profile_times(&store, a).len();
            // Between two crossings, at most one bucket's worth waits.
            assert!(n <= bound + per_bucket, "{n} profiles after {i} saves");
        }
    }
    let kept = profile_times(&store, a);
    assert!(kept.len() <= bound, "{} > {bound}", kept.len());
    assert_eq!(
        kept,
        thinned(&times),
        "the newest 48, then the newest of each bucket"
    );
    // Every 5 minutes of the day holds exactly one of the older profiles,
    // its newest.
    let old = &kept[..kept.len() - PROFILE_HISTORY];
    assert_eq!(
        old.len(),
        288 - 1,
        "every bucket but those of the newest 48"
    );
    for (j, t) in old.iter().enumerate() {
        // The last bucket's newest profiles are among the newest 48.
        let newest = (j as i64 + 1) * PROFILE_BUCKET_MS - step;
        assert_eq!(*t, newest.min(DAY - PROFILE_HISTORY as i64 * step));
    }
    let mut b_times: Vec<i64> = (0..=(DAY / step)).step_by(7).map(|i| i * step).collect();
    // Its last save did not start a bucket: the profiles that left its
    // newest 48 since the last one that did are still there.
    let waiting = profile_times(&store, b);
    assert!(waiting.len() > thinned(&b_times).len());
    assert!(thinned(&b_times).iter().all(|t| waiting.contains(t)));
    save_at(&mut store, b, DAY);
    b_times.push(DAY);
    assert_eq!(profile_times(&store, b), thinned(&b_times));

    // The range read: oldest first, bounded, and the profiles themselves.
    let hour = store.profiles_between(a, 2 * HOUR, 3 * HOUR, 1000).unwrap();
    assert_eq!(hour.len(), 12);
    assert!(hour.windows(2).all(|w| w[0].0 < w[1].0));
    assert_eq!(hour[0].0, 2 * HOUR + PROFILE_BUCKET_MS - step);
    assert_eq!(hour[0].1.start, hour[0].0 + 10_000);
    assert_eq!(
        hour[0].1.step(0).unwrap().values(),
        [(hour[0].0 / 1000) as f64]
    );
    let day = store.profiles_between(a, 0, 2 * DAY, 1000).unwrap();
    assert_eq!(day.len(), kept.len());
    assert_eq!(store.profiles_between(a, 0, 2 * DAY, 5).unwrap().len(), 5);
    assert!(store.profiles_between(a, DAY, 0, 10).unwrap().is_empty());
}

#[test]
fn profiles_older_than_7_days_are_dropped_but_never_the_newest_48() {
    let (_dir, path) = temp();
    let mut store = Store::open(&path).unwrap();
    let s = store.series_id(&key("a", Resource::Cpu)).unwrap();
    // Eight days, one profile every 150 s (two per bucket).
    let step = 150_000;
    let mut times = Vec::new();
    for i in 0..=(8 * DAY / step) {
        save_at(&mut store, s, i * step);
        times.push(i * step);
    }
    let newest = *times.last().unwrap();
    let keep_from = newest.div_euclid(PROFILE_BUCKET_MS) * PROFILE_BUCKET_MS + PROFILE_BUCKET_MS
        - PROFILE_KEEP_MS;
    let kept = profile_times(&store, s);
    let expected: Vec<i64> = thinned(&times)
        .into_iter()
        .filter(|&t| t >= keep_from)
        .collect();
    assert_eq!(kept, expected);
    assert!(kept.len() <= PROFILE_HISTORY + 288 * 7, "{}", kept.len());
    assert_eq!(kept.len(), PROFILE_HISTORY + 2016 - PROFILE_HISTORY / 2);

    // After a long pause, the newest 48 stay however old they are.
    let later = newest + 30 * DAY;
    save_at(&mut store, s, later);
    let kept = profile_times(&store, s);
    assert_eq!(kept.len(), PROFILE_HISTORY);
    assert_eq!(kept[..47], times[times.len() - 47..]);
    assert_eq!(kept[47], later);
}

#[test]
fn an_out_of_order_profile_is_thinned_into_its_bucket() {
    let (_dir, path) = temp();
    let mut store = Store::open(&path).unwrap();
    let s = store.series_id(&key("a", Resource::Cpu)).unwrap();
    let mut times = Vec::new();
    for i in 0..=360 {
        save_at(&mut store, s, i * 10_000);
        times.push(i * 10_000);
    }
    // Late profiles: one newer than its bucket's kept one, one older.
    for t in [5_000, 295_005, 3_595_000] {
        save_at(&mut store, s, t);
        times.push(t);
    }
    times.sort_unstable();
    assert_eq!(profile_times(&store, s), thinned(&times));
}

#[test]
fn plans_round_trip_by_pool_and_time() {
    let (_dir, path) = temp();
    let mut store = Store::open(&path).unwrap();
    let h1 = HostId("h1".into());
    let ids: Vec<PlanId> = [100, 200, 300]
        .into_iter()
        .map(|t| store.save_plan(&plan("h1", t, t as f64)).unwrap())
        .collect();
    store.save_plan(&plan("h2", 250, 9.0)).unwrap();
    let got = store.plans(&h1, 150, 300).unwrap();
    assert_eq!(got, vec![(ids[1], plan("h1", 200, 200.0))]);
    assert_eq!(
        store.latest_plan(&h1).unwrap(),
        Some((ids[2], plan("h1", 300, 300.0)))
    );
    assert_eq!(store.latest_plan(&HostId("none".into())).unwrap(), None);
    let err = store.save_plan(&plan("h1", 400, f64::NAN)).unwrap_err();
    assert!(matches!(err, StoreError::Invalid { .. }), "{err:?}");
    assert_eq!(store.plans(&h1, 0, 1000).unwrap().len(), 3);
}

#[test]
fn events_are_created_listed_and_cancelled_with_audit() {
    let (_dir, path) = temp();
    let mut store = Store::open(&path).unwrap();
    let new = |kind: &str, start, end| NewEvent {
        kind: kind.into(),
        selector: "web-*".into(),
        start,
        end,
        effect: serde_json::json!({"scale": 1.5}),
        created_by: "alice".into(),
        created_at: 50,
    };
    let sale = store.create_event(&new("sale", 1000, 2000)).unwrap();
    let release = store.create_event(&new("release", 3000, 3000)).unwrap();
    let listed = store.events(1500, 3001, false).unwrap();
    assert_eq!(
        listed.iter().map(|e| e.id).collect::<Vec<_>>(),
        [sale, release]
    );
    assert_eq!(listed[0].event, new("sale", 1000, 2000));
    assert!(
        store.events(2001, 3000, false).unwrap().is_empty(),
        "[from, to) misses both"
    );
    store.cancel_event(sale, "bob", 60, "postponed").unwrap();
    assert_eq!(store.events(0, 5000, false).unwrap().len(), 1);
    let all = store.events(0, 5000, true).unwrap();
    assert_eq!(all[0].cancelled_at, Some(60));
    assert!(matches!(
        store.cancel_event(sale, "bob", 70, ""),
        Err(StoreError::EventAlreadyCancelled { at: 60, .. })
    ));
    assert!(matches!(
        store.cancel_event(EventId(99), "bob", 70, ""),
        Err(StoreError::UnknownEvent { .. })
    ));
    assert!(matches!(
        store.create_event(&new("bad", 10, 5)),
        Err(StoreError::Invalid { .. })
    ));
    let audit: Vec<_> = store
        .audit_since(0, 100)
        .unwrap()
        .into_iter()
        .map(|(_, e)| (e.action, e.actor, e.reason))
        .collect();
    assert_eq!(
        audit,
        [
            (
                "event.create".to_string(),
                "alice".to_string(),
                String::new()
            ),
            ("event.create".into(), "alice".into(), String::new()),
            ("event.cancel".into(), "bob".into(), "postponed".into()),
        ]
    );
}

#[test]
fn the_audit_log_is_append_only() {
    let (_dir, path) = temp();
    let mut store = Store::open(&path).unwrap();
    let entry = |ts| AuditEntry {
        ts,
        actor: "agent".into(),
        action: "cgroup.write".into(),
        target: "h/web/cpu.max".into(),
        before: Some("max 100000".into()),
        after: Some("50000 100000".into()),
        reason: "plan 7".into(),
    };
    let first = store.append_audit(&entry(10)).unwrap();
    let second = store.append_audit(&entry(30)).unwrap();
    store.append_audit(&entry(20)).unwrap();
    assert!(second > first);
    let since = store.audit_since(15, 10).unwrap();
    assert_eq!(
        since.iter().map(|(_, e)| e.ts).collect::<Vec<_>>(),
        [20, 30],
        "ordered by ts"
    );
    assert_eq!(since[1], (second, entry(30)));
    assert_eq!(store.audit_since(0, 2).unwrap().len(), 2);
    for sql in ["UPDATE audit SET actor = 'mallory'", "DELETE FROM audit"] {
        let err = store.conn.execute(sql, []).unwrap_err();
        assert!(err.to_string().contains("append-only"), "{sql}: {err}");
    }
    assert_eq!(store.audit_since(0, 10).unwrap().len(), 3);
}

#[test]
fn the_audit_log_pages_by_id_both_ways() {
    let (_dir, path) = temp();
    let mut store = Store::open(&path).unwrap();
    let entry = |ts: i64| AuditEntry {
        ts,
        actor: "agent".into(),
        action: "cgroup.write".into(),
        target: format!("t{ts}"),
        before: None,
        after: None,
        reason: String::new(),
    };
    // Times not in append order: paging follows the ids.
    let ts = [50, 10, 40, 30, 20, 60, 70];
    let ids: Vec<i64> = ts
        .iter()
        .map(|&t| store.append_audit(&entry(t)).unwrap())
        .collect();
    let got = |rows: Vec<(i64, AuditEntry)>| rows.into_iter().map(|(id, _)| id).collect::<Vec<_>>();
    assert_eq!(
        got(store.audit_before(None, i64::MIN, 3).unwrap()),
        [ids[6], ids[5], ids[4]]
    );
    assert_eq!(
        got(store.audit_before(Some(ids[4]), i64::MIN, 3).unwrap()),
        [ids[3], ids[2], ids[1]]
    );
    assert_eq!(
        got(store.audit_before(Some(ids[1]), i64::MIN, 3).unwrap()),
        [ids[0]]
    );
    assert!(
        store
            .audit_before(Some(ids[0]), i64::MIN, 3)
            .unwrap()
            .is_empty()
    );
    // `since` filters by time.
    assert_eq!(
        got(store.audit_before(None, 45, 10).unwrap()),
        [ids[6], ids[5], ids[0]]
    );
    assert_eq!(
        got(store.audit_after(ids[1], i64::MIN, 2).unwrap()),
        [ids[2], ids[3]]
    );
    assert_eq!(got(store.audit_after(ids[4], 65, 10).unwrap()), [ids[6]]);
    assert!(store.audit_after(ids[6], i64::MIN, 10).unwrap().is_empty());
    let (id, e) = &store.audit_before(Some(ids[1]), i64::MIN, 1).unwrap()[0];
    assert_eq!((*id, e), (ids[0], &entry(50)));
}

#[test]
fn model_state_round_trips_and_is_replaced() {
    let (_dir, path) = temp();
    let mut store = Store::open(&path).unwrap();
    assert_eq!(store.load_model_state("ets/1").unwrap(), None);
    store.save_model_state("ets/1", 1, &[0, 1, 2, 255]).unwrap();
    store.save_model_state("ets/2", 1, &[]).unwrap();
    store.save_model_state("ets/1", 2, b"newer").unwrap();
    drop(store);
    let store = Store::open(&path).unwrap();
    assert_eq!(
        store.load_model_state("ets/1").unwrap(),
        Some((2, b"newer".to_vec()))
    );
    assert_eq!(store.load_model_state("ets/2").unwrap(), Some((1, vec![])));
}

#[test]
fn profiles_saved_together_are_all_or_none_and_thinned_as_one_by_one() {
    let (_d, path) = temp();
    let mut store = Store::open(&path).unwrap();
    let a = store.series_id(&key("a", Resource::Cpu)).unwrap();
    let b = store.series_id(&key("b", Resource::Cpu)).unwrap();
    let p = profile();
    // A day every 10 s for a, in batches of a plan's worth; b alongside.
    let mut solo = Store::open(path.with_extension("solo.db")).unwrap();
    let sa = solo.series_id(&key("a", Resource::Cpu)).unwrap();
    for step in 0..8640i64 {
        let t = step * 10_000;
        store.save_profiles(&[(a, t, &p), (b, t, &p)]).unwrap();
        solo.save_profile(sa, t, &p).unwrap();
    }
    assert_eq!(profile_times(&store, a), profile_times(&solo, sa));
    assert_eq!(profile_times(&store, a), profile_times(&store, b));
    // An unknown series refuses the whole batch: nothing of it is saved.
    let before = profile_times(&store, a).len();
    let e = store
        .save_profiles(&[(a, 90_000_000, &p), (SeriesId(999), 90_000_000, &p)])
        .unwrap_err();
    assert!(e.to_string().contains("999"), "{e}");
    assert_eq!(profile_times(&store, a).len(), before);
}

// ---------------------------------------------------------------- counters

#[test]
fn counters_are_stored_raw_and_give_the_rates_again() {
    let (_dir, path) = temp();
    let mut store = Store::open(&path).unwrap();
    let rx = store.series_id(&key("web", Resource::NetRx)).unwrap();
    let mem = store.series_id(&key("web", Resource::Memory)).unwrap();
    // Two interfaces of a namespace, every second; eth1 appears at 2 s.
    let mut batch = Vec::new();
    for i in 0..5i64 {
        batch.push((rx, Counter::new(i * 1000, "net:[1]/eth0", 1_000 * i as u64)));
        if i >= 2 {
            batch.push((rx, Counter::new(i * 1000, "net:[1]/eth1", 500 * i as u64)));
        }
    }
    assert_eq!(store.ingest_counters(&batch).unwrap().inserted, 8);
    // Again: nothing new.
    let again = store.ingest_counters(&batch).unwrap();
    assert_eq!((again.inserted, again.duplicates), (0, 8));
    let back = store.counters(rx, 0, 10_000).unwrap();
    assert_eq!(back.len(), 8);
    assert_eq!(back[2], Counter::new(2_000, "net:[1]/eth0", 2_000));
    assert_eq!(back[3], Counter::new(2_000, "net:[1]/eth1", 1_000));
    assert_eq!(
        store.rates_from_counters(rx, 0, 10_000).unwrap(),
        vec![
            Sample::new(1_000, 1_000.0),
            Sample::new(2_000, 1_000.0),
            Sample::new(3_000, 1_500.0),
            Sample::new(4_000, 1_500.0),
        ]
    );
    // A window: its first reading is only the previous of the second.
    assert_eq!(
        store.rates_from_counters(rx, 3_000, 10_000).unwrap(),
        vec![Sample::new(4_000, 1_500.0)]
    );

    // Refused whole, naming the series: a gauge, an unknown series, a
    // value beyond SQLite's integers.
    let e = store
        .ingest_counters(&[
            (rx, Counter::new(9_000, "x", 1)),
            (mem, Counter::new(9_000, "", 1)),
        ])
        .unwrap_err()
        .to_string();
    assert!(e.contains("memory is a gauge"), "{e}");
    assert!(e.contains("web"), "{e}");
    assert!(matches!(
        store.ingest_counters(&[(SeriesId(999), Counter::new(0, "", 1))]),
        Err(StoreError::UnknownSeries { .. })
    ));
    let e = store
        .ingest_counters(&[(rx, Counter::new(9_000, "eth0", u64::MAX))])
        .unwrap_err()
        .to_string();
    assert!(e.contains("beyond"), "{e}");
    assert_eq!(store.counters(rx, 9_000, 10_000).unwrap(), vec![]);
    assert!(store.rates_from_counters(mem, 0, 1).is_err());
}
