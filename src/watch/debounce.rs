//! Debouncing: kept changes (what [`super::filter`] leaves of the
//! watcher's events) are gathered into one [`Batch`] until none arrived for
//! the quiet period, as watchexec does. notify-debouncer-mini is not used:
//! it debounces each path on its own timer and can split one multi-file
//! save into two batches a few milliseconds apart, the first seeing the
//! file deleted.
//!
//! [`Debouncer`] is the whole rule and takes the time as an argument, so
//! the unit tests drive it with made-up instants; [`next_batch`] only feeds
//! it from a channel.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// What one event contributes to a batch.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Change {
    /// Absolute paths, none of them ignored.
    pub paths: Vec<PathBuf>,
    /// The kernel's event queue overflowed: anything may have changed.
    pub rescan: bool,
    /// Something was created, removed or renamed: the set of directories
    /// to watch may differ (a plain write cannot change it).
    pub structural: bool,
}

/// The changes gathered for one rebuild.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Batch {
    pub paths: BTreeSet<PathBuf>,
    pub rescan: bool,
    pub structural: bool,
}

impl Batch {
    fn add(&mut self, change: Change) {
        self.paths.extend(change.paths);
        self.rescan |= change.rescan;
        self.structural |= change.structural;
    }
}

/// When a batch closes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Window {
    /// No change for this long closes the batch (`--debounce-ms`).
    pub quiet: Duration,
    /// A stream of changes that never goes quiet is cut this long after its
    /// first change (never before `quiet`).
    pub max: Duration,
}

/// One batch being gathered.
#[derive(Debug)]
pub(crate) struct Debouncer {
    window: Window,
    /// (first, last) change of the open batch.
    open: Option<(Instant, Instant)>,
    batch: Batch,
}

impl Debouncer {
    pub(crate) fn new(window: Window) -> Debouncer {
        Debouncer {
            window,
            open: None,
            batch: Batch::default(),
        }
    }

    /// Adds a change seen at `at`.
    pub(crate) fn add(&mut self, change: Change, at: Instant) {
        let first = self.open.map_or(at, |(first, _)| first);
        self.open = Some((first, at.max(first)));
        self.batch.add(change);
    }

    /// When the open batch closes if nothing else arrives; `None` when no
    /// batch is open (wait as long as it takes).
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.open.map(|(first, last)| {
            (last + self.window.quiet).min(first + self.window.max.max(self.window.quiet))
        })
    }

    /// The open batch, if it is due at `now`; it is then closed.
    pub(crate) fn take_due(&mut self, now: Instant) -> Option<Batch> {
        if self.deadline()? <= now {
            self.take()
        } else {
            None
        }
    }

    /// The open batch, due or not.
    fn take(&mut self) -> Option<Batch> {
        self.open.take()?;
        Some(std::mem::take(&mut self.batch))
    }
}

/// What a message from the watcher means for the batch.
pub(crate) enum Step {
    /// Stop watching.
    Stop,
    /// Nothing to rebuild for (dropped by the filter, or a warning).
    Skip,
    Keep(Change),
}

/// Waits for the next batch: `classify` turns each message into a
/// [`Step`]; the batch closes as [`Debouncer`] decides. `carry` opens the
/// batch with changes already known (a rebuild a save interrupted: it is
/// tried again after the next quiet period, events or not). `None` means
/// stop (asked to, or nothing can arrive any more).
pub(crate) fn next_batch<M>(
    rx: &Receiver<M>,
    window: Window,
    carry: Option<Batch>,
    mut classify: impl FnMut(M) -> Step,
) -> Option<Batch> {
    let mut debouncer = Debouncer::new(window);
    if let Some(carried) = carry {
        debouncer.add(
            Change {
                paths: carried.paths.into_iter().collect(),
                rescan: carried.rescan,
                structural: carried.structural,
            },
            Instant::now(),
        );
    }
    loop {
        // Checked before receiving, so that a flood of events that never
        // goes quiet still closes at `window.max`.
        if let Some(batch) = debouncer.take_due(Instant::now()) {
            return Some(batch);
        }
        let msg = match debouncer.deadline() {
            None => rx.recv().ok()?,
            Some(deadline) => {
                match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                    Ok(msg) => msg,
                    Err(RecvTimeoutError::Timeout) => continue,
                    // The last changes still count; the next call stops.
                    Err(RecvTimeoutError::Disconnected) => return debouncer.take(),
                }
            }
        };
        match classify(msg) {
            Step::Stop => return None,
            Step::Skip => {}
            Step::Keep(change) => debouncer.add(change, Instant::now()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: Window = Window {
        quiet: Duration::from_millis(50),
        max: Duration::from_millis(1000),
    };

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn change(path: &str, structural: bool) -> Change {
        Change {
            paths: vec![PathBuf::from(path)],
            rescan: false,
            structural,
        }
    }

    #[test]
    fn a_rename_save_within_the_quiet_period_is_one_batch() {
        let t0 = Instant::now();
        let mut d = Debouncer::new(WINDOW);
        assert_eq!(d.deadline(), None, "nothing open: no deadline");
        // Temp file written, original renamed away, temp renamed over it.
        d.add(change("/p/app.py___jb_tmp___", true), t0);
        d.add(change("/p/app.py", true), t0 + ms(20));
        d.add(change("/p/app.py", false), t0 + ms(40));
        assert_eq!(d.deadline(), Some(t0 + ms(90)));
        assert_eq!(
            d.take_due(t0 + ms(89)),
            None,
            "still within the quiet period"
        );
        let batch = d.take_due(t0 + ms(90)).unwrap();
        let paths: Vec<_> = batch.paths.iter().map(|p| p.to_str().unwrap()).collect();
        assert_eq!(paths, ["/p/app.py", "/p/app.py___jb_tmp___"]);
        assert!(batch.structural && !batch.rescan);
        assert_eq!(d.deadline(), None, "taken: closed");
        assert_eq!(d.take_due(t0 + ms(1000)), None);
    }

    #[test]
    fn changes_after_a_quiet_period_start_the_next_batch() {
        let t0 = Instant::now();
        let mut d = Debouncer::new(WINDOW);
        d.add(change("/p/a.py", false), t0);
        assert_eq!(d.take_due(t0 + ms(50)).unwrap().paths.len(), 1);
        d.add(change("/p/b.py", false), t0 + ms(60));
        let second = d.take_due(t0 + ms(110)).unwrap();
        assert_eq!(
            second.paths.into_iter().collect::<Vec<_>>(),
            [PathBuf::from("/p/b.py")]
        );
        assert!(
            !second.structural,
            "flags do not leak from the previous batch"
        );
    }

    #[test]
    fn a_stream_that_never_goes_quiet_is_cut_at_the_maximum_wait() {
        let t0 = Instant::now();
        let mut d = Debouncer::new(WINDOW);
        for i in 0..=40 {
            d.add(change(&format!("/p/{i}.log"), false), t0 + ms(i * 30));
        }
        // The last change was at 1200 ms, but the batch opened at 0.
        assert_eq!(d.deadline(), Some(t0 + ms(1000)));
        assert_eq!(d.take_due(t0 + ms(1000)).unwrap().paths.len(), 41);
    }

    #[test]
    fn a_quiet_period_longer_than_the_maximum_is_kept() {
        let t0 = Instant::now();
        let window = Window {
            quiet: ms(2000),
            max: ms(1000),
        };
        let mut d = Debouncer::new(window);
        d.add(change("/p/a.py", false), t0);
        assert_eq!(d.deadline(), Some(t0 + ms(2000)));
    }

    #[test]
    fn next_batch_merges_kept_changes_and_skips_the_rest() {
        let (tx, rx) = std::sync::mpsc::channel();
        for msg in ["a.py", "skip", "b.py", "a.py"] {
            tx.send(msg).unwrap();
        }
        // Nothing else can arrive: the batch closes without waiting.
        drop(tx);
        let classify = |m: &str| match m {
            "skip" => Step::Skip,
            "stop" => Step::Stop,
            path => Step::Keep(change(path, false)),
        };
        let batch = next_batch(&rx, WINDOW, None, classify).unwrap();
        let paths: Vec<_> = batch.paths.iter().map(|p| p.to_str().unwrap()).collect();
        assert_eq!(paths, ["a.py", "b.py"]);
        assert!(
            next_batch(&rx, WINDOW, None, classify).is_none(),
            "disconnected"
        );
    }

    #[test]
    fn next_batch_stops_on_stop_even_with_changes_pending() {
        let (tx, rx) = std::sync::mpsc::channel();
        tx.send("a.py").unwrap();
        tx.send("stop").unwrap();
        let classify = |m: &str| match m {
            "stop" => Step::Stop,
            path => Step::Keep(change(path, false)),
        };
        assert!(next_batch(&rx, WINDOW, None, classify).is_none());
    }

    #[test]
    fn a_carried_batch_closes_after_the_quiet_period_without_events() {
        let (tx, rx) = std::sync::mpsc::channel::<&str>();
        let carry = Batch {
            paths: [PathBuf::from("a.py")].into(),
            ..Batch::default()
        };
        let started = Instant::now();
        let batch = next_batch(&rx, WINDOW, Some(carry.clone()), |_| Step::Skip).unwrap();
        assert_eq!(batch, carry);
        assert!(started.elapsed() >= WINDOW.quiet);
        drop(tx);
    }
}
