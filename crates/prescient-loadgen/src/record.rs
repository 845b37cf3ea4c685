//! What the loadgen asked for and what the workloads got, per workload
//! and step, and its summary: unserved CPU is the sum over (workload,
//! step) of `max(0, asked - got)`, in core-seconds of wall time.

use std::collections::BTreeMap;
use std::io::Write;

use serde::{Deserialize, Serialize};

/// One workload in one step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRow {
    /// The step, from 0 (the first step played).
    pub step: usize,
    /// The trace timestamp the step plays, seconds.
    pub trace_ts: i64,
    /// When the step started, seconds since the loadgen started.
    pub start_s: f64,
    /// How long the step lasted in wall time, seconds (the last step may
    /// be cut short by a stop).
    pub wall_s: f64,
    /// The workload (its trace name).
    pub workload: String,
    /// CPU asked for, cores.
    pub cpu_asked: f64,
    /// CPU got, cores: the cgroup's usage counter's growth over the step,
    /// divided by its wall time (`None`: the counter could not be read).
    pub cpu_got: Option<f64>,
    /// Memory asked for, bytes.
    pub mem_asked: u64,
    /// Memory held by the cgroup at the end of the step, bytes.
    pub mem_held: Option<u64>,
    /// Times the workload's worker had died (OOM kill, ...) and was
    /// restarted, up to the end of this step.
    pub restarts: u32,
}

impl StepRow {
    /// CPU asked for but not got, cores: `max(0, asked - got)` (all of it
    /// when the usage could not be read).
    pub fn cpu_unserved(&self) -> f64 {
        (self.cpu_asked - self.cpu_got.unwrap_or(0.0)).max(0.0)
    }
}

/// Every row so far, in step order (workloads in the order they were
/// started within a step).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// The rows.
    pub rows: Vec<StepRow>,
}

/// One workload's (or the total's) sums.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Totals {
    /// Steps counted.
    pub steps: usize,
    /// Wall seconds counted (summed over the steps).
    pub wall_s: f64,
    /// CPU asked for, core-seconds.
    pub cpu_asked: f64,
    /// CPU got, core-seconds.
    pub cpu_got: f64,
    /// CPU unserved, core-seconds: the sum of `max(0, asked - got)` times
    /// each step's wall time.
    pub cpu_unserved: f64,
    /// Memory asked for, byte-seconds.
    pub mem_asked: f64,
    /// Memory held, byte-seconds (steps where it could not be read count
    /// as zero).
    pub mem_held: f64,
    /// Worker restarts.
    pub restarts: u32,
}

impl Totals {
    fn add(&mut self, r: &StepRow) {
        let w = r.wall_s.max(0.0);
        self.steps += 1;
        self.wall_s += w;
        self.cpu_asked += r.cpu_asked * w;
        self.cpu_got += r.cpu_got.unwrap_or(0.0) * w;
        self.cpu_unserved += r.cpu_unserved() * w;
        self.mem_asked += r.mem_asked as f64 * w;
        self.mem_held += r.mem_held.unwrap_or(0) as f64 * w;
    }

    /// Unserved over asked CPU (0 when nothing was asked).
    pub fn unserved_share(&self) -> f64 {
        if self.cpu_asked > 0.0 {
            self.cpu_unserved / self.cpu_asked
        } else {
            0.0
        }
    }
}

/// Per workload and overall sums of a [`Record`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Per workload, by name.
    pub workloads: BTreeMap<String, Totals>,
    /// Over every workload.
    pub total: Totals,
    /// Steps played (distinct step numbers).
    pub steps: usize,
}

impl Record {
    /// Sums per workload and overall.
    pub fn summary(&self) -> Summary {
        let mut s = Summary::default();
        let mut last_step = None;
        for r in &self.rows {
            let t = s.workloads.entry(r.workload.clone()).or_default();
            t.add(r);
            t.restarts = t.restarts.max(r.restarts);
            s.total.add(r);
            if last_step != Some(r.step) {
                s.steps += 1;
                last_step = Some(r.step);
            }
        }
        s.total.restarts = s.workloads.values().map(|t| t.restarts).sum();
        s
    }

    /// The rows of one workload.
    pub fn workload<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a StepRow> + 'a {
        self.rows.iter().filter(move |r| r.workload == name)
    }

    /// Writes the rows as CSV with a header: `step,trace_ts,start_s,wall_s,
    /// workload,cpu_asked,cpu_got,cpu_unserved,mem_asked,mem_held,restarts`
    /// (values not read are empty).
    pub fn write_csv<W: Write>(&self, w: W) -> std::io::Result<()> {
        let mut out = csv::Writer::from_writer(w);
        let e = |e: csv::Error| std::io::Error::other(e.to_string());
        out.write_record([
            "step",
            "trace_ts",
            "start_s",
            "wall_s",
            "workload",
            "cpu_asked",
            "cpu_got",
            "cpu_unserved",
            "mem_asked",
            "mem_held",
            "restarts",
        ])
        .map_err(e)?;
        let opt = |v: Option<String>| v.unwrap_or_default();
        for r in &self.rows {
            out.write_record([
                r.step.to_string(),
                r.trace_ts.to_string(),
                format!("{:.3}", r.start_s),
                format!("{:.3}", r.wall_s),
                r.workload.clone(),
                format!("{:.4}", r.cpu_asked),
                opt(r.cpu_got.map(|g| format!("{g:.4}"))),
                format!("{:.4}", r.cpu_unserved()),
                r.mem_asked.to_string(),
                opt(r.mem_held.map(|m| m.to_string())),
                r.restarts.to_string(),
            ])
            .map_err(e)?;
        }
        out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(step: usize, w: &str, asked: f64, got: Option<f64>) -> StepRow {
        StepRow {
            step,
            trace_ts: step as i64 * 300,
            start_s: step as f64 * 2.0,
            wall_s: 2.0,
            workload: w.into(),
            cpu_asked: asked,
            cpu_got: got,
            mem_asked: 100,
            mem_held: Some(50),
            restarts: 0,
        }
    }

    #[test]
    fn unserved_is_summed_per_step_not_netted() {
        let rec = Record {
            rows: vec![
                row(0, "a", 1.0, Some(0.5)),
                row(0, "b", 0.2, Some(0.3)),
                row(1, "a", 0.5, Some(0.9)),
                row(1, "b", 0.4, None),
            ],
        };
        let s = rec.summary();
        assert_eq!(s.steps, 2);
        let a = &s.workloads["a"];
        // Step 1's surplus does not pay for step 0's shortfall.
        assert!((a.cpu_unserved - 1.0).abs() < 1e-12, "{a:?}");
        assert!((a.cpu_asked - 3.0).abs() < 1e-12);
        assert!((a.cpu_got - 2.8).abs() < 1e-12);
        let b = &s.workloads["b"];
        // Not read: all of it unserved.
        assert!((b.cpu_unserved - 0.8).abs() < 1e-12, "{b:?}");
        assert!((s.total.cpu_unserved - 1.8).abs() < 1e-12);
        assert!((s.total.unserved_share() - 1.8 / 4.2).abs() < 1e-12);
        assert!((s.total.mem_asked - 800.0).abs() < 1e-9);
        assert_eq!(Totals::default().unserved_share(), 0.0);
        assert_eq!(rec.workload("a").count(), 2);
    }

    #[test]
    fn csv_has_a_header_and_one_line_per_row() {
        let rec = Record {
            rows: vec![row(0, "a,b", 1.0, Some(0.25)), row(0, "c", 1.0, None)],
        };
        let mut out = Vec::new();
        rec.write_csv(&mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "step,trace_ts,start_s,wall_s,workload,cpu_asked,cpu_got,cpu_unserved,mem_asked,mem_held,restarts"
        );
        assert_eq!(
            lines[1],
            "0,0,0.000,2.000,\"a,b\",1.0000,0.2500,0.7500,100,50,0"
        );
        assert_eq!(lines[2], "0,0,0.000,2.000,c,1.0000,,1.0000,100,50,0");
    }
}
