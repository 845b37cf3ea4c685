//! What waits to be written to the store: samples in batches, and records
//! (plans, audit entries, profiles, state). When the store cannot be
//! written (a full disk), everything stays here, bounded, and goes out
//! when writes succeed again; the agent keeps running either way.

use std::collections::VecDeque;

use prescient_core::{DemandProfile, HostId, Plan, Sample, SeriesKey, TimestampMs};
use prescient_linux::enforce::AuditRecord;
use prescient_store::Counter;

use crate::ports::{Found, Sink, SinkError};

/// Samples per store transaction.
const BATCH: usize = 10_000;
/// Records held at most (the oldest are dropped beyond).
const MAX_RECORDS: usize = 10_000;

/// A record to write.
#[derive(Debug, Clone)]
pub enum Record {
    /// A plan.
    Plan(Plan),
    /// An audit entry.
    Audit(AuditRecord),
    /// A demand profile.
    Profile(SeriesKey, TimestampMs, DemandProfile),
    /// A blob of state: key, version, bytes.
    State(String, u32, Vec<u8>),
    /// A workload's metadata.
    Meta(HostId, Found, TimestampMs),
}

/// The queue in front of the store.
#[derive(Debug)]
pub struct Outbox {
    samples: VecDeque<(SeriesKey, Sample)>,
    /// Raw counter readings, bounded like the samples (on their own).
    counters: VecDeque<(SeriesKey, Counter)>,
    records: VecDeque<Record>,
    max_samples: usize,
    /// Samples dropped because the queue was full.
    pub dropped_samples: u64,
    /// Counter readings dropped (queue full, or refused by the store).
    pub dropped_counters: u64,
    /// Records dropped (queue full, or refused repeatedly).
    pub dropped_records: u64,
    /// Samples written.
    pub stored_samples: u64,
    /// Flushes that failed.
    pub failures: u64,
    /// The error of the current failure streak, if writes are failing.
    pub failing: Option<String>,
}

impl Outbox {
    /// An empty queue holding at most `max_samples` samples.
    pub fn new(max_samples: usize) -> Self {
        Outbox {
            samples: VecDeque::new(),
            counters: VecDeque::new(),
            records: VecDeque::new(),
            max_samples: max_samples.max(1),
            dropped_samples: 0,
            dropped_counters: 0,
            dropped_records: 0,
            stored_samples: 0,
            failures: 0,
            failing: None,
        }
    }

    /// Changes the bound (a reload).
    pub fn set_max_samples(&mut self, n: usize) {
        self.max_samples = n.max(1);
        self.trim();
    }

    /// Queues a sample, dropping the oldest when full.
    pub fn push_sample(&mut self, key: SeriesKey, s: Sample) {
        self.samples.push_back((key, s));
        self.trim();
    }

    /// Queues a raw counter reading, dropping the oldest when full.
    pub fn push_counter(&mut self, key: SeriesKey, c: Counter) {
        self.counters.push_back((key, c));
        self.trim();
    }

    fn trim(&mut self) {
        while self.samples.len() > self.max_samples {
            self.samples.pop_front();
            self.dropped_samples += 1;
        }
        while self.counters.len() > self.max_samples {
            self.counters.pop_front();
            self.dropped_counters += 1;
        }
    }

    /// Counter readings waiting.
    pub fn counters_len(&self) -> usize {
        self.counters.len()
    }

    /// Queues a record; a state record replaces a queued one of the same key.
    pub fn push(&mut self, r: Record) {
        if let Record::State(key, ..) = &r
            && let Some(i) = self
                .records
                .iter()
                .position(|x| matches!(x, Record::State(k, ..) if k == key))
        {
            self.records[i] = r;
            return;
        }
        self.records.push_back(r);
        while self.records.len() > MAX_RECORDS {
            self.records.pop_front();
            self.dropped_records += 1;
        }
    }

    /// Samples waiting.
    pub fn samples_len(&self) -> usize {
        self.samples.len()
    }

    /// Records waiting.
    pub fn records_len(&self) -> usize {
        self.records.len()
    }

    /// Writes what is queued, samples first. On a failure the rest stays
    /// queued, the error is logged (once per streak of failures) and
    /// returned; the first success after failures logs that writes
    /// resumed.
    pub fn flush(&mut self, sink: &mut dyn Sink) -> Result<(), SinkError> {
        let r = self.try_flush(sink);
        match &r {
            Ok(()) => {
                if let Some(prev) = self.failing.take() {
                    log::info!(
                        "store writes resumed (they had failed: {prev}); {} samples dropped meanwhile",
                        self.dropped_samples
                    );
                }
            }
            Err(e) => {
                self.failures += 1;
                if self.failing.is_none() {
                    log::error!(
                        "store write failed: {e}; holding {} samples (at most {}) and {} records in memory, retrying",
                        self.samples.len(),
                        self.max_samples,
                        self.records.len()
                    );
                }
                self.failing = Some(e.0.clone());
            }
        }
        r
    }

    fn try_flush(&mut self, sink: &mut dyn Sink) -> Result<(), SinkError> {
        let mut wrote_samples = false;
        while !self.samples.is_empty() {
            let n = self.samples.len().min(BATCH);
            let batch: Vec<(SeriesKey, Sample)> = self.samples.range(..n).cloned().collect();
            sink.ingest(&batch)?;
            self.samples.drain(..n);
            self.stored_samples += n as u64;
            wrote_samples = true;
        }
        while !self.counters.is_empty() {
            let n = self.counters.len().min(BATCH);
            let batch: Vec<(SeriesKey, Counter)> = self.counters.range(..n).cloned().collect();
            match sink.ingest_counters(&batch) {
                Ok(()) => {}
                // The store took the samples but not these: holding them
                // would hold up everything behind them.
                Err(e) if wrote_samples => {
                    log::error!("dropping {n} counter readings the store refuses: {e}");
                    self.dropped_counters += n as u64;
                }
                Err(e) => return Err(e),
            }
            self.counters.drain(..n);
            wrote_samples = true;
        }
        while let Some(r) = self.records.front() {
            // A run of profiles or of audit records goes in one
            // transaction; if the store refuses the run, it is written
            // record by record below, so that one bad record cannot hold
            // up the others.
            let run = match r {
                Record::Profile(..) | Record::Audit(..) => self
                    .records
                    .iter()
                    .take_while(|x| std::mem::discriminant(*x) == std::mem::discriminant(r))
                    .count(),
                _ => 1,
            };
            if run > 1 {
                let batch = self.records.range(..run);
                let res = match r {
                    Record::Profile(..) => {
                        let items: Vec<_> = batch
                            .filter_map(|x| match x {
                                Record::Profile(k, at, p) => Some((k.clone(), *at, p.clone())),
                                _ => None,
                            })
                            .collect();
                        sink.save_profiles(&items)
                    }
                    _ => {
                        let items: Vec<_> = batch
                            .filter_map(|x| match x {
                                Record::Audit(a) => Some(a.clone()),
                                _ => None,
                            })
                            .collect();
                        sink.append_audits(&items)
                    }
                };
                match res {
                    Ok(()) => {
                        self.records.drain(..run);
                        continue;
                    }
                    // The store is down: keep everything and retry later.
                    Err(e) if !wrote_samples => return Err(e),
                    // The store takes writes but not this run: one by one.
                    Err(_) => {}
                }
            }
            let r = &self.records[0];
            let res = match r {
                Record::Plan(p) => sink.save_plan(p),
                Record::Audit(a) => sink.append_audit(a),
                Record::Profile(k, at, p) => sink.save_profile(k, *at, p),
                Record::State(k, v, b) => sink.save_state(k, *v, b),
                Record::Meta(h, f, at) => sink.set_workload_meta(h, f, *at),
            };
            match res {
                Ok(()) => {
                    self.records.pop_front();
                }
                Err(e) if wrote_samples => {
                    // The store takes writes, but not this one: holding it
                    // would block everything behind it.
                    log::error!("dropping a record the store refuses: {e}");
                    self.records.pop_front();
                    self.dropped_records += 1;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prescient_core::{Resource, WorkloadId};

    /// Records which calls reached it; refuses profiles of workload `bad`.
    #[derive(Default)]
    struct Calls(Vec<String>);

    impl Sink for Calls {
        fn ingest(&mut self, batch: &[(SeriesKey, Sample)]) -> Result<(), SinkError> {
            self.0.push(format!("ingest {}", batch.len()));
            Ok(())
        }
        fn ingest_counters(&mut self, batch: &[(SeriesKey, Counter)]) -> Result<(), SinkError> {
            if batch.iter().any(|(k, _)| k.workload.0 == "bad") {
                return Err(SinkError("no such series".into()));
            }
            self.0.push(format!("counters {}", batch.len()));
            Ok(())
        }
        fn save_plan(&mut self, _: &Plan) -> Result<(), SinkError> {
            self.0.push("plan".into());
            Ok(())
        }
        fn append_audit(&mut self, _: &AuditRecord) -> Result<(), SinkError> {
            self.0.push("audit".into());
            Ok(())
        }
        fn append_audits(&mut self, r: &[AuditRecord]) -> Result<(), SinkError> {
            self.0.push(format!("audits {}", r.len()));
            Ok(())
        }
        fn save_profile(
            &mut self,
            k: &SeriesKey,
            _: TimestampMs,
            _: &DemandProfile,
        ) -> Result<(), SinkError> {
            if k.workload.0 == "bad" {
                return Err(SinkError("no such series".into()));
            }
            self.0.push("profile".into());
            Ok(())
        }
        fn save_profiles(
            &mut self,
            b: &[(SeriesKey, TimestampMs, DemandProfile)],
        ) -> Result<(), SinkError> {
            if b.iter().any(|(k, ..)| k.workload.0 == "bad") {
                return Err(SinkError("no such series".into()));
            }
            self.0.push(format!("profiles {}", b.len()));
            Ok(())
        }
        fn save_state(&mut self, _: &str, _: u32, _: &[u8]) -> Result<(), SinkError> {
            Ok(())
        }
        fn load_state(&mut self, _: &str) -> Result<Option<(u32, Vec<u8>)>, SinkError> {
            Ok(None)
        }
        fn latest_plan(&mut self, _: &HostId) -> Result<Option<Plan>, SinkError> {
            Ok(None)
        }
        fn set_workload_meta(
            &mut self,
            _: &HostId,
            _: &Found,
            _: TimestampMs,
        ) -> Result<(), SinkError> {
            Ok(())
        }
        fn events(&mut self) -> Result<Vec<prescient_store::Event>, SinkError> {
            Ok(Vec::new())
        }
    }

    fn key(w: &str) -> SeriesKey {
        SeriesKey {
            host: HostId("h".into()),
            workload: WorkloadId(w.into()),
            resource: Resource::Cpu,
        }
    }

    fn profile(w: &str) -> Record {
        let p = DemandProfile::new(0, 1000, vec![0.5], vec![1.0]).unwrap();
        Record::Profile(key(w), 0, p)
    }

    fn audit() -> Record {
        Record::Audit(AuditRecord {
            ts: 0,
            actor: "agent".into(),
            action: "cgroup.write".into(),
            target: "x".into(),
            before: None,
            after: None,
            reason: String::new(),
        })
    }

    #[test]
    fn runs_of_profiles_and_audits_go_in_one_call_each_in_order() {
        let mut o = Outbox::new(100);
        for r in [profile("a"), profile("b"), profile("c"), audit(), audit()] {
            o.push(r);
        }
        o.push(Record::Plan(Plan {
            made_at: 0,
            pool: HostId("host".into()),
            degraded: false,
            entries: vec![],
        }));
        o.push(profile("d"));
        let mut sink = Calls::default();
        o.flush(&mut sink).unwrap();
        assert_eq!(sink.0, ["profiles 3", "audits 2", "plan", "profile"]);
        assert_eq!(o.records_len(), 0);
    }

    #[test]
    fn a_refused_run_is_written_one_by_one_and_only_the_bad_record_dropped() {
        let mut o = Outbox::new(100);
        o.push_sample(key("a"), Sample::new(0, 1.0));
        for w in ["a", "bad", "c"] {
            o.push(profile(w));
        }
        let mut sink = Calls::default();
        o.flush(&mut sink).unwrap();
        assert_eq!(sink.0, ["ingest 1", "profile", "profile"]);
        assert_eq!(o.dropped_records, 1);
        assert_eq!(o.records_len(), 0);
    }

    #[test]
    fn counters_go_after_the_samples_and_a_refused_batch_does_not_block() {
        let mut o = Outbox::new(2);
        o.push_sample(key("a"), Sample::new(0, 1.0));
        for v in 0..3 {
            o.push_counter(key("a"), Counter::new(v, "", v as u64));
        }
        assert_eq!((o.counters_len(), o.dropped_counters), (2, 1), "bounded");
        let mut sink = Calls::default();
        o.flush(&mut sink).unwrap();
        assert_eq!(sink.0, ["ingest 1", "counters 2"]);
        assert_eq!(o.counters_len(), 0);
        // Refused while the samples go in: dropped, not held.
        o.push_sample(key("a"), Sample::new(1, 1.0));
        o.push_counter(key("bad"), Counter::new(1, "", 1));
        o.flush(&mut sink).unwrap();
        assert_eq!((o.counters_len(), o.dropped_counters), (0, 2));
        // Refused with nothing else written: held for the next flush.
        o.push_counter(key("bad"), Counter::new(2, "", 2));
        assert!(o.flush(&mut sink).is_err());
        assert_eq!(o.counters_len(), 1);
    }
}
