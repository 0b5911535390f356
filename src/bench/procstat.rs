//! What another process costs, thread by thread, read from `/proc/PID/task/*`: CPU time,
//! wake-ups (context switches) and thread names, and the process's peak resident set.
//!
//! CPU time comes from each thread's `schedstat` (nanoseconds the scheduler ran it) when the
//! kernel has it, else from `stat`'s user and system times (clock ticks, 10 ms on most
//! kernels: too coarse for an idle process watched for a few seconds). Wake-ups are the
//! voluntary plus involuntary context switches of `status`: each is a sleep or a
//! preemption the thread paid for.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

/// One thread at one instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TaskSample {
    pub(crate) tid: u32,
    /// Its name (`comm`, at most 15 bytes).
    pub(crate) name: String,
    /// CPU time used so far, user and system.
    pub(crate) cpu: Duration,
    pub(crate) voluntary: u64,
    pub(crate) involuntary: u64,
}

/// Every thread of a process at one instant.
#[derive(Debug, Clone)]
pub(crate) struct ProcSnapshot {
    pub(crate) at: Instant,
    pub(crate) tasks: Vec<TaskSample>,
}

/// `voluntary_ctxt_switches`, `nonvoluntary_ctxt_switches` and `VmHWM` (KiB) of a
/// `status` file; each `None` when missing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct StatusFields {
    pub(crate) voluntary: Option<u64>,
    pub(crate) involuntary: Option<u64>,
    pub(crate) vm_hwm_kb: Option<u64>,
}

/// Reads the fields [`StatusFields`] names from the text of a `status` file.
pub(crate) fn parse_status(text: &str) -> StatusFields {
    let mut out = StatusFields::default();
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let number = || {
            value
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        };
        match key.trim() {
            "voluntary_ctxt_switches" => out.voluntary = number(),
            "nonvoluntary_ctxt_switches" => out.involuntary = number(),
            "VmHWM" => out.vm_hwm_kb = number(),
            _ => {}
        }
    }
    out
}

/// User and system time in clock ticks (fields 14 and 15) from the text of a `stat` file.
/// The name (field 2) is in parentheses and may itself hold spaces and parentheses, so the
/// fields are counted from the last `)`.
pub(crate) fn parse_stat(text: &str) -> Option<(u64, u64)> {
    let after = &text[text.rfind(')')? + 1..];
    // After the name: state (3), ppid (4), ... utime (14), stime (15).
    let mut fields = after.split_whitespace().skip(11);
    let utime = fields.next()?.parse().ok()?;
    let stime = fields.next()?.parse().ok()?;
    Some((utime, stime))
}

/// Nanoseconds on the CPU (the first field) from the text of a `schedstat` file.
pub(crate) fn parse_schedstat(text: &str) -> Option<u64> {
    text.split_whitespace().next()?.parse().ok()
}

/// Clock ticks per second (`USER_HZ`).
fn ticks_per_second() -> u64 {
    // SAFETY: sysconf only reads a constant of the system.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(hz).ok().filter(|&h| h > 0).unwrap_or(100)
}

/// One thread's sample from its folder; `None` when it ended meanwhile.
fn sample_task(dir: &Path, tid: u32, hz: u64) -> Option<TaskSample> {
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).ok();
    let status = parse_status(&read("status")?);
    let cpu = match read("schedstat").as_deref().and_then(parse_schedstat) {
        Some(ns) => Duration::from_nanos(ns),
        None => {
            let (u, s) = parse_stat(&read("stat")?)?;
            Duration::from_secs_f64((u + s) as f64 / hz as f64)
        }
    };
    Some(TaskSample {
        tid,
        name: read("comm").unwrap_or_default().trim_end().to_string(),
        cpu,
        voluntary: status.voluntary.unwrap_or(0),
        involuntary: status.involuntary.unwrap_or(0),
    })
}

/// Every thread of process `pid` now.
pub(crate) fn sample(pid: u32) -> std::io::Result<ProcSnapshot> {
    let hz = ticks_per_second();
    let dir = Path::new("/proc").join(pid.to_string()).join("task");
    let mut tasks = Vec::new();
    for entry in std::fs::read_dir(&dir)? {
        let entry = entry?;
        let Some(tid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        if let Some(t) = sample_task(&entry.path(), tid, hz) {
            tasks.push(t);
        }
    }
    tasks.sort_by_key(|t| t.tid);
    Ok(ProcSnapshot {
        at: Instant::now(),
        tasks,
    })
}

/// The peak resident set of process `pid` in KiB (`VmHWM`).
pub(crate) fn peak_rss_kb(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_status(&text).vm_hwm_kb
}

/// What the threads of one name used between two snapshots.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ThreadUsage {
    pub(crate) name: String,
    /// Threads of that name seen.
    pub(crate) threads: usize,
    pub(crate) cpu: Duration,
    pub(crate) wakeups: u64,
}

/// What a process used between two snapshots.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Usage {
    pub(crate) wall: Duration,
    /// Sum over the threads (a thread that ended between the snapshots is left out).
    pub(crate) cpu: Duration,
    pub(crate) wakeups: u64,
    /// By thread name, the busiest first.
    pub(crate) threads: Vec<ThreadUsage>,
}

impl Usage {
    /// What each thread used from `before` to `after`; a thread born in between counts
    /// from zero.
    pub(crate) fn between(before: &ProcSnapshot, after: &ProcSnapshot) -> Usage {
        let mut by_name: BTreeMap<&str, ThreadUsage> = BTreeMap::new();
        for t in &after.tasks {
            let start = before.tasks.iter().find(|b| b.tid == t.tid);
            let cpu = t
                .cpu
                .saturating_sub(start.map_or(Duration::ZERO, |b| b.cpu));
            let switches = |s: &TaskSample| s.voluntary + s.involuntary;
            let wakeups = switches(t).saturating_sub(start.map_or(0, switches));
            let u = by_name.entry(&t.name).or_insert_with(|| ThreadUsage {
                name: t.name.clone(),
                threads: 0,
                cpu: Duration::ZERO,
                wakeups: 0,
            });
            u.threads += 1;
            u.cpu += cpu;
            u.wakeups += wakeups;
        }
        let mut threads: Vec<ThreadUsage> = by_name.into_values().collect();
        threads.sort_by(|a, b| b.cpu.cmp(&a.cpu).then_with(|| a.name.cmp(&b.name)));
        Usage {
            wall: after.at.saturating_duration_since(before.at),
            cpu: threads.iter().map(|t| t.cpu).sum(),
            wakeups: threads.iter().map(|t| t.wakeups).sum(),
            threads,
        }
    }

    /// CPU time per wall-clock time, in percent of one core.
    pub(crate) fn percent_of_core(&self) -> f64 {
        percent(self.cpu, self.wall)
    }

    /// Wake-ups per second of wall-clock time.
    pub(crate) fn wakeups_per_s(&self) -> f64 {
        self.wakeups as f64 / self.wall.as_secs_f64().max(1e-9)
    }
}

/// `cpu` per `wall` in percent of one core.
pub(crate) fn percent(cpu: Duration, wall: Duration) -> f64 {
    100.0 * cpu.as_secs_f64() / wall.as_secs_f64().max(1e-9)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_name_whatever_it_holds() {
        let stat = "4242 (tokio) rt (w) 1) S 1 4242 4242 0 -1 4194560 379 0 0 0 \
                    137 42 0 0 20 0 9 0 12345 1000 200 18446744073709551615";
        assert_eq!(parse_stat(stat), Some((137, 42)));
        let plain = "14633 (cat) R 14630 14630 12804 0 -1 4194304 101 0 0 0 7 3 0 0 20 0 1";
        assert_eq!(parse_stat(plain), Some((7, 3)));
        assert_eq!(parse_stat("1 (x) S 1 2"), None);
        assert_eq!(parse_stat("no parenthesis"), None);
        assert_eq!(parse_stat(""), None);
    }

    #[test]
    fn status_gives_switches_and_peak_memory() {
        let status = "Name:\tzello-gateway\nVmPeak:\t  100000 kB\nVmHWM:\t   11520 kB\n\
                      Threads:\t9\nvoluntary_ctxt_switches:\t231\n\
                      nonvoluntary_ctxt_switches:\t7\n";
        assert_eq!(
            parse_status(status),
            StatusFields {
                voluntary: Some(231),
                involuntary: Some(7),
                vm_hwm_kb: Some(11520),
            }
        );
        // A task's status has no VmHWM; nonsense is no number.
        let task = "voluntary_ctxt_switches:\tmany\nnonvoluntary_ctxt_switches:\t0\n";
        assert_eq!(
            parse_status(task),
            StatusFields {
                voluntary: None,
                involuntary: Some(0),
                vm_hwm_kb: None,
            }
        );
        assert_eq!(parse_schedstat("264682 12694618 2\n"), Some(264682));
        assert_eq!(parse_schedstat(""), None);
    }

    fn task(tid: u32, name: &str, cpu_ms: u64, switches: u64) -> TaskSample {
        TaskSample {
            tid,
            name: name.into(),
            cpu: Duration::from_millis(cpu_ms),
            voluntary: switches,
            involuntary: 1,
        }
    }

    #[test]
    fn usage_is_summed_by_thread_name_and_counts_new_threads_from_zero() {
        let t0 = Instant::now();
        let before = ProcSnapshot {
            at: t0,
            tasks: vec![
                task(1, "main", 10, 5),
                task(2, "worker", 100, 50),
                task(3, "worker", 200, 60),
                task(4, "gone", 5, 5),
            ],
        };
        let after = ProcSnapshot {
            at: t0 + Duration::from_secs(2),
            tasks: vec![
                task(1, "main", 10, 5),
                task(2, "worker", 130, 150),
                task(3, "worker", 210, 80),
                task(5, "new", 40, 9),
            ],
        };
        let u = Usage::between(&before, &after);
        assert_eq!(u.wall, Duration::from_secs(2));
        assert_eq!(u.cpu, Duration::from_millis(80));
        // worker: 100 + 20; new: 9 + 1 (from zero); main: 0.
        assert_eq!(u.wakeups, 130);
        let names: Vec<&str> = u.threads.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["new", "worker", "main"]);
        assert_eq!(u.threads[1].threads, 2);
        assert_eq!(u.threads[1].cpu, Duration::from_millis(40));
        assert_eq!(u.percent_of_core(), 4.0);
        assert_eq!(u.wakeups_per_s(), 65.0);
    }

    #[test]
    fn this_process_can_be_sampled() {
        let pid = std::process::id();
        let a = sample(pid).unwrap();
        assert!(!a.tasks.is_empty());
        assert!(a.tasks.iter().any(|t| t.tid == pid));
        let mut x = 0u64;
        for i in 0..1_000_000u64 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
        }
        let b = sample(pid).unwrap();
        assert!(Usage::between(&a, &b).cpu > Duration::ZERO);
        assert!(peak_rss_kb(pid).is_some_and(|kb| kb > 0));
        assert!(sample(u32::MAX).is_err());
    }
}
