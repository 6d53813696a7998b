//! The result of a run: one JSON line (machine-readable, mergeable across
//! shards) and a readable table; plus `merge` (shards of one run into one
//! report) and `summary` (median and spread of repeated runs).

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::stats::latency_histogram;

/// Latency percentiles, in microseconds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Percentiles {
    pub count: u64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub max: u64,
    pub mean: f64,
}

impl Percentiles {
    pub fn of(h: &Histogram<u64>) -> Option<Percentiles> {
        (!h.is_empty()).then(|| Percentiles {
            count: h.len(),
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p99: h.value_at_quantile(0.99),
            max: h.max(),
            mean: (h.mean() * 10.0).round() / 10.0,
        })
    }
}

/// A histogram as `[value, count]` pairs of its recorded buckets: enough to
/// rebuild it exactly when merging shards, with no extra dependency.
pub fn buckets(h: &Histogram<u64>) -> Vec<(u64, u64)> {
    h.iter_recorded().map(|v| (v.value_iterated_to(), v.count_at_value())).collect()
}

fn rebuild(parts: &[&[(u64, u64)]]) -> Histogram<u64> {
    let mut h = latency_histogram();
    for part in parts {
        for &(v, n) in *part {
            h.saturating_record_n(v, n);
        }
    }
    h
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct Report {
    pub scenario: String,
    /// Free text given with `--label` (e.g. "sync=full").
    pub label: String,
    pub run_id: String,
    /// `i/n`; merged reports say `merged(n)`.
    pub shard: String,
    pub params: serde_json::Value,
    pub ok: bool,
    pub failure: Option<String>,
    /// Time to open and set up every connection.
    pub setup_s: f64,
    /// The measured window: from the start signal to the last expected event.
    pub elapsed_s: f64,
    pub connections: u64,
    pub connect_failures: u64,
    pub connections_per_s: Option<f64>,
    pub deliveries: u64,
    pub deliveries_per_s: f64,
    pub acks: u64,
    pub acks_per_s: f64,
    pub lost: u64,
    pub duplicated: u64,
    pub errors: u64,
    pub unexpected_closes: u64,
    pub recovered: u64,
    pub reconnects: u64,
    pub conflicts: u64,
    pub cycles: u64,
    pub cycles_per_s: Option<f64>,
    pub latency_us: Option<Percentiles>,
    pub ack_latency_us: Option<Percentiles>,
    /// Share of one core over the measured window (1.0 = one core busy).
    pub server_cpu: Option<f64>,
    pub harness_cpu: Option<f64>,
    /// The harness thread was (nearly) saturated: throughput figures then
    /// measure the harness as much as the server.
    pub harness_saturated: bool,
    pub rss_before_kb: Option<u64>,
    pub rss_after_kb: Option<u64>,
    pub rss_end_kb: Option<u64>,
    pub bytes_per_connection: Option<f64>,
    pub server: Option<String>,
    pub latency_hist: Vec<(u64, u64)>,
    pub ack_latency_hist: Vec<(u64, u64)>,
}

/// Above this share of one core, the harness is taken as saturated.
pub const SATURATED: f64 = 0.90;

impl Report {
    pub fn json_line(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"error\":\"cannot encode report: {e}\"}}"))
    }

    /// A readable table of one report.
    pub fn table(&self) -> String {
        let mut rows: Vec<(String, String)> = Vec::new();
        let mut row = |k: &str, v: String| rows.push((k.to_owned(), v));
        let verdict = if self.ok { "ok".to_owned() } else { format!("FAILED: {}", self.failure.as_deref().unwrap_or("?")) };
        row("scenario", format!("{} {} [{}] shard {}", self.scenario, self.params, self.label, self.shard));
        row("result", verdict);
        row("setup", format!("{:.2} s, {} connections ({} failed){}", self.setup_s, self.connections, self.connect_failures,
            self.connections_per_s.map(|r| format!(", {r:.0} conn/s")).unwrap_or_default()));
        row("measured", format!("{:.2} s", self.elapsed_s));
        if self.ok {
            row("deliveries", format!("{} ({:.0}/s)", self.deliveries, self.deliveries_per_s));
            row("acks", format!("{} ({:.0}/s)", self.acks, self.acks_per_s));
        } else {
            // A run that lost anything is a failure, not a throughput figure.
            row("deliveries", format!("{} (no rate: run failed)", self.deliveries));
        }
        row("lost / duplicated", format!("{} / {}", self.lost, self.duplicated));
        if self.errors + self.unexpected_closes > 0 {
            row("errors / closes", format!("{} / {}", self.errors, self.unexpected_closes));
        }
        if self.recovered + self.reconnects > 0 {
            row("recovery", format!("{} reconnects, {} messages recovered", self.reconnects, self.recovered));
        }
        if self.conflicts > 0 {
            row("version conflicts", self.conflicts.to_string());
        }
        if let Some(r) = self.cycles_per_s {
            row("churn cycles", format!("{} ({r:.0}/s)", self.cycles));
        }
        let pct = |p: &Option<Percentiles>| match p {
            Some(p) => format!("p50 {} p90 {} p99 {} max {} µs (n={})", p.p50, p.p90, p.p99, p.max, p.count),
            None => "-".into(),
        };
        row("latency (e2e)", pct(&self.latency_us));
        row("latency (ack)", pct(&self.ack_latency_us));
        let cpu = |c: Option<f64>| c.map_or("-".into(), |c| format!("{:.0}% of a core", c * 100.0));
        row("server CPU", cpu(self.server_cpu));
        let mut h = cpu(self.harness_cpu);
        if self.harness_saturated {
            h.push_str("  << SATURATED: figures measure the harness, not the server");
        }
        row("harness CPU", h);
        if let Some(b) = self.bytes_per_connection {
            row("memory", format!("RSS {} -> {} kB, {:.0} bytes per connection",
                self.rss_before_kb.unwrap_or(0), self.rss_end_kb.or(self.rss_after_kb).unwrap_or(0), b));
        }
        let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        rows.iter().map(|(k, v)| format!("  {k:<width$}  {v}\n")).collect()
    }
}

/// Merges the shards of each run (same `run_id` and scenario) into one report.
pub fn merge(reports: Vec<Report>) -> Vec<Report> {
    let mut groups: BTreeMap<(String, String), Vec<Report>> = BTreeMap::new();
    for r in reports {
        groups.entry((r.run_id.clone(), r.scenario.clone())).or_default().push(r);
    }
    groups.into_values().map(merge_one).collect()
}

fn merge_one(shards: Vec<Report>) -> Report {
    if shards.len() == 1 {
        return shards.into_iter().next().unwrap_or_default();
    }
    let n = shards.len();
    let first = shards[0].clone();
    let sum = |f: fn(&Report) -> u64| shards.iter().map(f).sum::<u64>();
    let maxf = |f: fn(&Report) -> f64| shards.iter().map(f).fold(0.0, f64::max);
    let elapsed = maxf(|r| r.elapsed_s);
    let setup = maxf(|r| r.setup_s);
    let lat = rebuild(&shards.iter().map(|r| r.latency_hist.as_slice()).collect::<Vec<_>>());
    let ack = rebuild(&shards.iter().map(|r| r.ack_latency_hist.as_slice()).collect::<Vec<_>>());
    let per_s = |x: u64, secs: f64| if secs > 0.0 { x as f64 / secs } else { 0.0 };
    let opt_mean = |f: fn(&Report) -> Option<f64>| {
        let v: Vec<f64> = shards.iter().filter_map(f).collect();
        (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
    };
    let connections = sum(|r| r.connections);
    let cycles = sum(|r| r.cycles);
    // Shards run at the same time against one server: its memory before is
    // the lowest reading, after is the highest.
    let rss_before = shards.iter().filter_map(|r| r.rss_before_kb).min();
    let rss_end = shards.iter().filter_map(|r| r.rss_end_kb.or(r.rss_after_kb)).max();
    let failures: Vec<String> =
        shards.iter().filter_map(|r| r.failure.as_ref().map(|f| format!("shard {}: {f}", r.shard))).collect();
    Report {
        shard: format!("merged({n})"),
        ok: shards.iter().all(|r| r.ok),
        failure: (!failures.is_empty()).then(|| failures.join("; ")),
        setup_s: setup,
        elapsed_s: elapsed,
        connections,
        connect_failures: sum(|r| r.connect_failures),
        connections_per_s: (setup > 0.0).then(|| connections as f64 / setup),
        deliveries: sum(|r| r.deliveries),
        deliveries_per_s: per_s(sum(|r| r.deliveries), elapsed),
        acks: sum(|r| r.acks),
        acks_per_s: per_s(sum(|r| r.acks), elapsed),
        lost: sum(|r| r.lost),
        duplicated: sum(|r| r.duplicated),
        errors: sum(|r| r.errors),
        unexpected_closes: sum(|r| r.unexpected_closes),
        recovered: sum(|r| r.recovered),
        reconnects: sum(|r| r.reconnects),
        conflicts: sum(|r| r.conflicts),
        cycles,
        cycles_per_s: first.cycles_per_s.map(|_| per_s(cycles, elapsed)),
        latency_us: Percentiles::of(&lat),
        ack_latency_us: Percentiles::of(&ack),
        server_cpu: opt_mean(|r| r.server_cpu),
        // Each shard is its own process: their shares add up.
        harness_cpu: {
            let v: Vec<f64> = shards.iter().filter_map(|r| r.harness_cpu).collect();
            (!v.is_empty()).then(|| v.iter().sum())
        },
        harness_saturated: shards.iter().any(|r| r.harness_saturated),
        rss_before_kb: rss_before,
        rss_after_kb: None,
        rss_end_kb: rss_end,
        bytes_per_connection: match (rss_before, rss_end) {
            (Some(b), Some(e)) if connections > 0 => Some((e.saturating_sub(b) * 1024) as f64 / connections as f64),
            _ => None,
        },
        latency_hist: buckets(&lat),
        ack_latency_hist: buckets(&ack),
        ..first
    }
}

/// Reads one figure out of a report (none: not applicable).
type Figure = dyn Fn(&Report) -> Option<f64>;

/// One line per group of repeated runs (same scenario, params and label):
/// the median of each figure and its spread (min..max).
pub fn summary(reports: &[Report]) -> String {
    let mut groups: BTreeMap<String, Vec<&Report>> = BTreeMap::new();
    for r in reports {
        groups.entry(format!("{} {} [{}]", r.scenario, r.params, r.label)).or_default().push(r);
    }
    let mut out = String::new();
    for (key, runs) in groups {
        let failed = runs.iter().filter(|r| !r.ok).count();
        out.push_str(&format!("{key}: {} runs, {failed} failed\n", runs.len()));
        let ok: Vec<&&Report> = runs.iter().filter(|r| r.ok).collect();
        let line = |name: &str, f: &Figure, unit: &str| -> Option<String> {
            let mut v: Vec<f64> = ok.iter().filter_map(|r| f(r)).collect();
            if v.is_empty() {
                return None;
            }
            v.sort_by(f64::total_cmp);
            let median = if v.len() % 2 == 1 { v[v.len() / 2] } else { (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0 };
            Some(format!("  {name:<22} median {} {unit}  (min {}, max {}, n={})\n", fmt(median), fmt(v[0]), fmt(v[v.len() - 1]), v.len()))
        };
        let rows: [(&str, &Figure, &str); 14] = [
            ("deliveries/s", &|r| (r.deliveries > 0).then_some(r.deliveries_per_s), ""),
            ("acks/s", &|r| (r.acks > 0).then_some(r.acks_per_s), ""),
            ("latency p50", &|r| r.latency_us.as_ref().map(|p| p.p50 as f64), "µs"),
            ("latency p90", &|r| r.latency_us.as_ref().map(|p| p.p90 as f64), "µs"),
            ("latency p99", &|r| r.latency_us.as_ref().map(|p| p.p99 as f64), "µs"),
            ("latency max", &|r| r.latency_us.as_ref().map(|p| p.max as f64), "µs"),
            ("ack latency p50", &|r| r.ack_latency_us.as_ref().map(|p| p.p50 as f64), "µs"),
            ("ack latency p99", &|r| r.ack_latency_us.as_ref().map(|p| p.p99 as f64), "µs"),
            ("server CPU", &|r| r.server_cpu.map(|c| c * 100.0), "% core"),
            ("harness CPU", &|r| r.harness_cpu.map(|c| c * 100.0), "% core"),
            ("connections/s", &|r| r.connections_per_s, ""),
            ("cycles/s", &|r| r.cycles_per_s, ""),
            ("bytes/connection", &|r| r.bytes_per_connection, "B"),
            ("conflicts", &|r| r.scenario.starts_with("docs").then_some(r.conflicts as f64), ""),
        ];
        for (name, f, unit) in rows {
            if let Some(l) = line(name, f, unit) {
                out.push_str(&l);
            }
        }
        if ok.iter().any(|r| r.harness_saturated) {
            out.push_str("  note: the harness was saturated in some runs; throughput there measures the harness\n");
        }
    }
    out
}

fn fmt(x: f64) -> String {
    if x.abs() >= 100.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merging_shards_adds_counts_and_rebuilds_histograms() {
        let mut a = latency_histogram();
        a.record(100).unwrap();
        let mut b = latency_histogram();
        b.record(300).unwrap();
        b.record(300).unwrap();
        let shard = |i: u32, h: &Histogram<u64>, d: u64| Report {
            scenario: "conns".into(),
            run_id: "r".into(),
            shard: format!("{i}/2"),
            ok: true,
            elapsed_s: 2.0,
            setup_s: 1.0,
            connections: 10,
            deliveries: d,
            rss_before_kb: Some(1000 + u64::from(i)),
            rss_end_kb: Some(2000 + u64::from(i)),
            latency_hist: buckets(h),
            ..Default::default()
        };
        let merged = merge(vec![shard(0, &a, 4), shard(1, &b, 6)]);
        assert_eq!(merged.len(), 1);
        let m = &merged[0];
        assert_eq!((m.deliveries, m.connections), (10, 20));
        assert_eq!(m.deliveries_per_s, 5.0);
        let p = m.latency_us.as_ref().unwrap();
        assert_eq!((p.count, p.p50 / 10, p.max / 10), (3, 30, 30));
        assert_eq!(m.bytes_per_connection, Some((1001 * 1024) as f64 / 20.0));
    }
}
