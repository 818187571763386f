//! Progress and messages, chosen once per run and passed down: a terminal
//! gets spinners, anything else plain lines; `--json` keeps stdout for the
//! one JSON document. Stages never print on their own.

use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Human,
    Json,
    Quiet,
}

#[derive(Debug, Clone)]
pub struct Reporter {
    pub mode: Mode,
    pub verbose: bool,
    tty: bool,
    /// When set, warnings are kept here instead of printed (`lbuild watch`
    /// shows them with the rebuild they belong to, not on every re-check).
    held: Option<Arc<Mutex<Vec<String>>>>,
}

impl Reporter {
    pub fn new(mode: Mode, verbose: bool) -> Self {
        Reporter {
            mode,
            verbose,
            tty: std::io::stderr().is_terminal(),
            held: None,
        }
    }

    /// A reporter that prints nothing (tests, benchmarks).
    pub fn silent() -> Self {
        Reporter {
            mode: Mode::Quiet,
            verbose: false,
            tty: false,
            held: None,
        }
    }

    /// A line of progress for humans (stderr).
    pub fn info(&self, msg: impl AsRef<str>) {
        if self.mode == Mode::Human {
            eprintln!("{}", msg.as_ref());
        }
    }

    /// Detail shown with `-v`.
    pub fn detail(&self, msg: impl AsRef<str>) {
        if self.verbose && self.mode != Mode::Quiet {
            eprintln!("{}", msg.as_ref());
        }
    }

    /// Warnings always go to stderr, even with --json.
    pub fn warn(&self, msg: impl AsRef<str>) {
        if let Some(held) = &self.held {
            held.lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(msg.as_ref().to_string());
        } else if self.mode != Mode::Quiet {
            eprintln!("warning: {}", msg.as_ref());
        }
    }

    /// The same reporter, except that warnings are held for
    /// [`Reporter::take_warnings`] instead of printed.
    pub fn holding_warnings(&self) -> Reporter {
        Reporter {
            held: Some(Arc::default()),
            ..self.clone()
        }
    }

    /// The warnings held since the last call.
    pub fn take_warnings(&self) -> Vec<String> {
        self.held
            .as_ref()
            .map(|h| std::mem::take(&mut *h.lock().unwrap_or_else(|e| e.into_inner())))
            .unwrap_or_default()
    }

    /// A spinner for long work, shown only on a terminal in human mode.
    pub fn spinner(&self, msg: &str) -> Spinner {
        if self.tty && self.mode == Mode::Human {
            let pb = ProgressBar::new_spinner();
            pb.set_style(
                ProgressStyle::with_template("{spinner} {prefix} {wide_msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            pb.set_prefix(msg.to_string());
            pb.enable_steady_tick(Duration::from_millis(100));
            Spinner(Some(pb))
        } else {
            Spinner(None)
        }
    }
}

/// A running spinner; dropping it clears the line.
pub struct Spinner(Option<ProgressBar>);

impl Spinner {
    pub fn set_message(&self, msg: impl Into<String>) {
        if let Some(pb) = &self.0 {
            pb.set_message(msg.into());
        }
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        if let Some(pb) = &self.0 {
            pb.finish_and_clear();
        }
    }
}
