//! What a run counts, and how it reads CPU time and memory from `/proc`.
//!
//! The harness runs on one thread (one actix system), so every client
//! actor shares one [`Counters`] through `Rc<RefCell<_>>`: recording a
//! delivery is a few additions and one histogram increment, with no lock
//! and no allocation.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use tokio::sync::Notify;

/// Latencies are recorded in microseconds, from 1 µs to 10 minutes, with
/// three significant digits (HdrHistogram's usual precision).
const LATENCY_MAX_US: u64 = 600_000_000;

pub fn latency_histogram() -> Histogram<u64> {
    // Bounds are constants that HdrHistogram accepts; failing here is a bug.
    Histogram::new_with_bounds(1, LATENCY_MAX_US, 3).expect("valid histogram bounds")
}

/// Wall-clock nanoseconds since the Unix epoch. Send times travel inside
/// messages, possibly to another harness process, so they must be wall
/// clock, not `Instant`.
pub fn now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

/// Everything the clients of one run record.
pub struct Counters {
    /// Pushes counted as deliveries (chat messages, document updates).
    pub deliveries: u64,
    /// Acks of the measured requests (messages, updates), not of joins.
    pub acks: u64,
    /// Messages received as part of a recovery join.
    pub recovered: u64,
    pub lost: u64,
    pub duplicated: u64,
    /// `VERSION_CONFLICT` answers (docs).
    pub conflicts: u64,
    /// Reconnections made on purpose (recovery).
    pub reconnects: u64,
    /// Completed connect-join-leave-close cycles (churn).
    pub cycles: u64,
    /// Connections opened, and attempts that failed.
    pub connected: u64,
    pub connect_failures: u64,
    /// Clients that finished setting up (joined their room, ...).
    pub ready: u64,
    /// Clients that saw everything they expected.
    pub done: u64,
    /// Other `error` frames, and connections closed that should not have been.
    pub errors: u64,
    pub unexpected_closes: u64,
    pub first_problem: Option<String>,
    /// Every frame received: the orchestrator's "is anything moving" signal.
    pub frames: u64,
    /// Numbers all trackers were told to expect, and how far they got
    /// (gaps included): the difference is what never arrived.
    pub expected_positions: u64,
    pub consumed_positions: u64,
    /// End-to-end latency of deliveries (send time in the message to receipt).
    pub latency: Histogram<u64>,
    /// Request to ack latency.
    pub ack_latency: Histogram<u64>,
    pub first_delivery: Option<Instant>,
    pub last_delivery: Option<Instant>,
    /// Tells the orchestrator that a milestone was reached (a client ready
    /// or done, an error). Not signalled per delivery.
    pub notify: Rc<Notify>,
}

pub type Shared = Rc<RefCell<Counters>>;

impl Counters {
    pub fn new_shared() -> Shared {
        Rc::new(RefCell::new(Counters {
            deliveries: 0,
            acks: 0,
            recovered: 0,
            lost: 0,
            duplicated: 0,
            conflicts: 0,
            reconnects: 0,
            cycles: 0,
            connected: 0,
            connect_failures: 0,
            ready: 0,
            done: 0,
            errors: 0,
            unexpected_closes: 0,
            first_problem: None,
            frames: 0,
            expected_positions: 0,
            consumed_positions: 0,
            latency: latency_histogram(),
            ack_latency: latency_histogram(),
            first_delivery: None,
            last_delivery: None,
            notify: Rc::new(Notify::new()),
        }))
    }

    /// One push delivered; `sent_ns` is the send time it carried.
    #[inline]
    pub fn delivery(&mut self, sent_ns: Option<u64>, now_ns: u64) {
        self.deliveries += 1;
        if let Some(sent) = sent_ns {
            // Saturating: a clock step backwards records 1 µs, not a panic.
            let us = now_ns.saturating_sub(sent) / 1000;
            self.latency.saturating_record(us.max(1));
        }
        let now = Instant::now();
        if self.first_delivery.is_none() {
            self.first_delivery = Some(now);
        }
        self.last_delivery = Some(now);
    }

    #[inline]
    pub fn ack(&mut self, sent_ns: Option<u64>, now_ns: u64) {
        self.acks += 1;
        if let Some(sent) = sent_ns {
            let us = now_ns.saturating_sub(sent) / 1000;
            self.ack_latency.saturating_record(us.max(1));
        }
    }

    /// Records a problem (the first one is kept verbatim for the report).
    pub fn problem(&mut self, what: impl FnOnce() -> String) {
        self.errors += 1;
        if self.first_problem.is_none() {
            self.first_problem = Some(what());
        }
        self.notify.notify_one();
    }

    pub fn unexpected_close(&mut self, what: impl FnOnce() -> String) {
        self.unexpected_closes += 1;
        if self.first_problem.is_none() {
            self.first_problem = Some(what());
        }
        self.notify.notify_one();
    }

    pub fn mark_ready(&mut self) {
        self.ready += 1;
        self.notify.notify_one();
    }

    pub fn mark_done(&mut self) {
        self.done += 1;
        self.notify.notify_one();
    }
}

/// The frame text shown in a problem report, cut to a readable length.
pub fn excerpt(frame: &[u8]) -> String {
    let cut = &frame[..frame.len().min(300)];
    String::from_utf8_lossy(cut).into_owned()
}

/// Checks that one client sees a gapless, duplicate-free run of sequence
/// numbers (chat `seq`, document `version`) from `next` to `end`.
#[derive(Debug, Clone, Default)]
pub struct SeqTracker {
    /// The next number expected.
    pub next: u64,
    /// The last number expected (inclusive).
    pub end: u64,
    pub started: bool,
}

impl SeqTracker {
    /// Expect `count` numbers after `last`.
    pub fn start_after(&mut self, last: u64, count: u64, c: &mut Counters) {
        self.next = last + 1;
        self.end = last + count;
        self.started = true;
        c.expected_positions += count;
    }

    /// Records one number. Returns whether the range is now complete.
    #[inline]
    pub fn see(&mut self, n: u64, c: &mut Counters) -> bool {
        if n == self.next {
            self.next += 1;
            c.consumed_positions += 1;
        } else if n < self.next {
            c.duplicated += 1;
        } else {
            c.lost += n - self.next;
            c.consumed_positions += n + 1 - self.next;
            self.next = n + 1;
        }
        self.complete()
    }

    pub fn complete(&self) -> bool {
        self.started && self.next > self.end
    }

    /// Numbers still missing at the end of a run.
    pub fn missing(&self) -> u64 {
        if self.started {
            (self.end + 1).saturating_sub(self.next)
        } else {
            0
        }
    }
}

/// CPU time of a process, in clock ticks (utime + stime).
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    ticks_in(&format!("/proc/{pid}/stat"))
}

/// CPU time of this process's main thread, where every client actor runs
/// (the ceiling test's fake server runs on another thread of the process
/// and must not count as harness).
pub fn harness_ticks() -> Option<u64> {
    let pid = std::process::id();
    ticks_in(&format!("/proc/{pid}/task/{pid}/stat"))
}

fn ticks_in(path: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(path).ok()?;
    // The command name (field 2) may contain spaces; fields after it are
    // counted from the last ')'.
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // After ')', field 3 (state) is index 0, so utime (14) is 11, stime 12.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

pub fn ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// Resident set size of a process, in kB (`VmRSS` in /proc/PID/status).
/// `f` of every process in `pids`, summed; `None` without processes (or
/// when one cannot be read).
pub fn sum_over(pids: &[u32], f: fn(u32) -> Option<u64>) -> Option<u64> {
    if pids.is_empty() {
        return None;
    }
    pids.iter().map(|p| f(*p)).sum()
}

pub fn rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// CPU share (1.0 = one core busy) of a process over a measured window.
pub struct CpuWindow {
    read: fn(&[u32]) -> Option<u64>,
    pids: Vec<u32>,
    start_ticks: Option<u64>,
    start: Instant,
}

impl CpuWindow {
    /// A window on processes `pids`, summed (a cluster's nodes; none: no
    /// figure).
    pub fn processes(pids: &[u32]) -> CpuWindow {
        Self::with(|pids| sum_over(pids, cpu_ticks), pids.to_vec())
    }

    /// A window on the harness's own client thread.
    pub fn harness() -> CpuWindow {
        Self::with(|_| harness_ticks(), Vec::new())
    }

    fn with(read: fn(&[u32]) -> Option<u64>, pids: Vec<u32>) -> CpuWindow {
        CpuWindow { read, start_ticks: read(&pids), pids, start: Instant::now() }
    }

    pub fn share(&self) -> Option<f64> {
        let now = (self.read)(&self.pids)?;
        let secs = self.start.elapsed().as_secs_f64();
        if secs <= 0.0 {
            return None;
        }
        Some((now.saturating_sub(self.start_ticks?) as f64 / ticks_per_second()) / secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracker_counts_gaps_and_duplicates() {
        let shared = Counters::new_shared();
        let mut c = shared.borrow_mut();
        let mut t = SeqTracker::default();
        t.start_after(10, 5, &mut c);
        assert!(!t.see(11, &mut c));
        assert!(!t.see(11, &mut c));
        assert!(!t.see(13, &mut c));
        assert_eq!((c.lost, c.duplicated), (1, 1));
        assert_eq!(t.missing(), 2);
        t.see(14, &mut c);
        assert!(t.see(15, &mut c));
        assert_eq!(t.missing(), 0);
        assert_eq!(c.expected_positions, c.consumed_positions);
    }

    #[test]
    fn reads_own_cpu_and_rss() {
        let pid = std::process::id();
        assert!(cpu_ticks(pid).is_some());
        assert!(rss_kb(pid).unwrap_or(0) > 0);
    }
}
