//! Wake-ups per thread: how often each of the process's threads went to sleep and was woken
//! (voluntary context switches) or was pushed off its core (involuntary ones), from the
//! kernel's counters in `/proc/self/task/TID/status`.
//!
//! On a small machine each sleep and wake-up costs tens of microseconds of CPU, as much as a
//! good part of an Opus frame: the pipeline's hand-offs between threads are counted per
//! packet beside its CPU time.

use std::collections::BTreeMap;
use std::ops::{Add, Sub};

/// Context switches of one thread (or the sum over several).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Switches {
    /// The thread slept (waited for something) and was woken.
    pub(crate) voluntary: u64,
    /// The thread was preempted while it could still run.
    pub(crate) involuntary: u64,
}

impl Switches {
    /// Both kinds: every time the thread left its core.
    pub(crate) fn total(self) -> u64 {
        self.voluntary + self.involuntary
    }
}

impl Add for Switches {
    type Output = Switches;
    fn add(self, o: Switches) -> Switches {
        Switches {
            voluntary: self.voluntary + o.voluntary,
            involuntary: self.involuntary + o.involuntary,
        }
    }
}

impl Sub for Switches {
    type Output = Switches;
    /// Counts since `o` (never below zero).
    fn sub(self, o: Switches) -> Switches {
        Switches {
            voluntary: self.voluntary.saturating_sub(o.voluntary),
            involuntary: self.involuntary.saturating_sub(o.involuntary),
        }
    }
}

/// One thread's name (as the kernel keeps it: at most 15 bytes) and counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ThreadSwitches {
    pub(crate) tid: u32,
    pub(crate) name: String,
    pub(crate) switches: Switches,
}

/// The name and the context switches in the text of a `status` file of `/proc`; `None` when
/// a field is missing.
pub(crate) fn parse_status(text: &str) -> Option<(String, Switches)> {
    let mut name = None;
    let mut voluntary = None;
    let mut involuntary = None;
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        match key {
            // The name may hold spaces: only the tab after the colon goes.
            "Name" => name = Some(value.strip_prefix('\t').unwrap_or(value).to_string()),
            "voluntary_ctxt_switches" => voluntary = value.trim().parse().ok(),
            "nonvoluntary_ctxt_switches" => involuntary = value.trim().parse().ok(),
            _ => {}
        }
    }
    Some((
        name?,
        Switches {
            voluntary: voluntary?,
            involuntary: involuntary?,
        },
    ))
}

/// Every thread of this process now. Threads that end while they are read are left out.
pub(crate) fn snapshot() -> Vec<ThreadSwitches> {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    let mut threads: Vec<ThreadSwitches> = tasks
        .flatten()
        .filter_map(|entry| {
            let tid = entry.file_name().to_str()?.parse().ok()?;
            let text = std::fs::read_to_string(entry.path().join("status")).ok()?;
            let (name, switches) = parse_status(&text)?;
            Some(ThreadSwitches {
                tid,
                name,
                switches,
            })
        })
        .collect();
    threads.sort_by_key(|t| t.tid);
    threads
}

/// The calling thread's counters now.
pub(crate) fn this_thread() -> Switches {
    std::fs::read_to_string("/proc/thread-self/status")
        .ok()
        .and_then(|text| parse_status(&text))
        .map(|(_, s)| s)
        .unwrap_or_default()
}

/// The threads of one name: how many there were and their context switches between two
/// snapshots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ThreadGroup {
    pub(crate) name: String,
    pub(crate) threads: usize,
    pub(crate) switches: Switches,
}

/// Context switches between `before` and `after`, summed over the threads of each name
/// whose name starts with `prefix`, by name. A thread that started in between counts from
/// its start; one that ended in between is not counted (tokio's blocking threads come and
/// go).
pub(crate) fn between(
    before: &[ThreadSwitches],
    after: &[ThreadSwitches],
    prefix: &str,
) -> Vec<ThreadGroup> {
    let mut groups: BTreeMap<&str, ThreadGroup> = BTreeMap::new();
    for t in after.iter().filter(|t| t.name.starts_with(prefix)) {
        let start = before
            .iter()
            .find(|b| b.tid == t.tid && b.name == t.name)
            .map_or(Switches::default(), |b| b.switches);
        let group = groups.entry(&t.name).or_insert_with(|| ThreadGroup {
            name: t.name.clone(),
            threads: 0,
            switches: Switches::default(),
        });
        group.threads += 1;
        group.switches = group.switches + (t.switches - start);
    }
    groups.into_values().collect()
}

/// The sum over groups.
pub(crate) fn total(groups: &[ThreadGroup]) -> Switches {
    groups
        .iter()
        .fold(Switches::default(), |sum, g| sum + g.switches)
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "Name:\tgw a-net\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t4242\n\
        Pid:\t4250\nVmRSS:\t   10240 kB\nThreads:\t9\nvoluntary_ctxt_switches:\t1503\n\
        nonvoluntary_ctxt_switches:\t27\n";

    #[test]
    fn a_status_file_gives_the_name_and_both_counters() {
        assert_eq!(
            parse_status(STATUS),
            Some((
                "gw a-net".to_string(),
                Switches {
                    voluntary: 1503,
                    involuntary: 27
                }
            ))
        );
        assert_eq!(
            parse_status("Name:\tx\nvoluntary_ctxt_switches:\t3\n"),
            None
        );
        assert_eq!(
            parse_status(
                "Name:\tx\nvoluntary_ctxt_switches:\tmany\nnonvoluntary_ctxt_switches:\t1"
            ),
            None
        );
    }

    fn t(tid: u32, name: &str, voluntary: u64, involuntary: u64) -> ThreadSwitches {
        ThreadSwitches {
            tid,
            name: name.into(),
            switches: Switches {
                voluntary,
                involuntary,
            },
        }
    }

    #[test]
    fn switches_are_counted_per_name_from_each_threads_start() {
        let before = [
            t(1, "main", 5, 0),
            t(2, "gw-a-rt", 100, 3),
            t(3, "gw-a-rt", 200, 4),
            t(4, "gw-a-net", 7, 0),
            t(5, "gw-b-net", 9, 9),
            t(6, "gw-a-rt", 50, 0),
        ];
        let after = [
            t(1, "main", 9, 0),
            t(2, "gw-a-rt", 150, 4),
            t(3, "gw-a-rt", 260, 4),
            t(4, "gw-a-net", 8, 1),
            t(5, "gw-b-net", 20, 9),
            // Thread 6 ended and a new thread took its id; thread 7 is new too. Both count
            // from zero.
            t(6, "gw-a-net", 3, 0),
            t(7, "gw-a-rt", 2, 1),
        ];
        let a = between(&before, &after, "gw-a");
        assert_eq!(
            a,
            [
                ThreadGroup {
                    name: "gw-a-net".into(),
                    threads: 2,
                    switches: Switches {
                        voluntary: 4,
                        involuntary: 1
                    },
                },
                ThreadGroup {
                    name: "gw-a-rt".into(),
                    threads: 3,
                    switches: Switches {
                        voluntary: 112,
                        involuntary: 2
                    },
                },
            ]
        );
        assert_eq!(total(&a).total(), 119);
        assert_eq!(between(&before, &after, "gw-b")[0].switches.voluntary, 11);
        assert!(between(&before, &after, "nothing").is_empty());
    }

    #[test]
    fn this_process_has_counters() {
        let threads = snapshot();
        assert!(!threads.is_empty());
        let me = this_thread();
        std::thread::sleep(std::time::Duration::from_millis(2));
        assert!(
            this_thread().voluntary > me.voluntary,
            "a sleep is a wake-up"
        );
    }
}
