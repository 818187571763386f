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
    /// `lbuild explain`: say why each stage ran.
    pub explain: bool,
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
            explain: false,
            tty: std::io::stderr().is_terminal(),
            held: None,
        }
    }

    /// A reporter that prints nothing (tests, benchmarks).
    pub fn silent() -> Self {
        Reporter {
            mode: Mode::Quiet,
            verbose: false,
            explain: false,
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

    /// A line of the command's result on stdout (a CodeSha256, a table):
    /// what scripts read, so never decorated. The caller decides by mode.
    pub fn result(&self, line: impl AsRef<str>) {
        println!("{}", line.as_ref());
    }

    /// The one JSON document of `--json`, on stdout.
    pub fn json(&self, doc: &serde_json::Value) {
        println!("{doc}");
    }

    /// A line for the person at the terminal (stderr) that the command was
    /// asked for (`lbuild explain`'s reasons), whatever the mode.
    pub fn say(&self, msg: impl AsRef<str>) {
        eprintln!("{}", msg.as_ref());
    }

    /// An error, on stderr, in every mode.
    pub fn error(&self, text: impl AsRef<str>) {
        eprintln!("{}", text.as_ref());
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
            eprintln!("{} {}", label("warning"), msg.as_ref());
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

    /// A spinner for long work in human mode: animated on a terminal;
    /// elsewhere (CI logs) a plain line at most every
    /// [`PLAIN_PROGRESS_EVERY`], and only once the work has lasted that
    /// long, so quick work prints nothing.
    pub fn spinner(&self, msg: &str) -> Spinner {
        if self.mode != Mode::Human {
            return Spinner::None;
        }
        if self.tty {
            let pb = ProgressBar::new_spinner();
            pb.set_style(
                ProgressStyle::with_template("{spinner} {prefix} {wide_msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            pb.set_prefix(msg.to_string());
            pb.enable_steady_tick(Duration::from_millis(100));
            Spinner::Bar(pb)
        } else {
            Spinner::Plain(PlainProgress::start(msg.to_string(), PLAIN_PROGRESS_EVERY))
        }
    }
}

/// How often long work says it is still going when stderr is not a
/// terminal.
pub(crate) const PLAIN_PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// A running spinner; dropping it clears the line (or stops the plain
/// progress lines).
pub enum Spinner {
    None,
    Bar(ProgressBar),
    Plain(PlainProgress),
}

impl Spinner {
    /// Whether anything is displayed (not in `--json` or `-q` mode).
    pub fn is_shown(&self) -> bool {
        !matches!(self, Spinner::None)
    }

    pub fn set_message(&self, msg: impl Into<String>) {
        match self {
            Spinner::None => {}
            Spinner::Bar(pb) => pb.set_message(msg.into()),
            Spinner::Plain(p) => p.set_message(msg.into()),
        }
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        if let Spinner::Bar(pb) = self {
            pb.finish_and_clear();
        }
    }
}

/// `installing dependencies (uv): 10 s` lines on stderr, one per period
/// while the work lasts, from a thread that stops when this is dropped.
pub struct PlainProgress {
    state: Arc<(Mutex<(bool, String)>, std::sync::Condvar)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl PlainProgress {
    fn start(prefix: String, every: Duration) -> PlainProgress {
        let state = Arc::new((
            Mutex::new((false, String::new())),
            std::sync::Condvar::new(),
        ));
        let shared = Arc::clone(&state);
        let started = std::time::Instant::now();
        let thread = std::thread::spawn(move || {
            let (lock, cvar) = &*shared;
            let mut guard = lock.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                let (g, timeout) = cvar
                    .wait_timeout_while(guard, every, |(done, _)| !*done)
                    .unwrap_or_else(|e| e.into_inner());
                guard = g;
                if guard.0 || !timeout.timed_out() {
                    return;
                }
                let secs = started.elapsed().as_secs();
                if guard.1.is_empty() {
                    eprintln!("{prefix}: {secs} s");
                } else {
                    eprintln!("{prefix}: {} ({secs} s)", guard.1);
                }
            }
        });
        PlainProgress {
            state,
            thread: Some(thread),
        }
    }

    fn set_message(&self, msg: String) {
        self.state.0.lock().unwrap_or_else(|e| e.into_inner()).1 = msg;
    }
}

impl Drop for PlainProgress {
    fn drop(&mut self) {
        let (lock, cvar) = &*self.state;
        lock.lock().unwrap_or_else(|e| e.into_inner()).0 = true;
        cvar.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Whether stderr gets colours, as cargo decides: it is a terminal and
/// `NO_COLOR` is unset or empty. Checked once per process.
pub(crate) fn colour() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| {
        std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
    })
}

/// `error:` (red, bold), `warning:` (yellow, bold), `note:` (bold),
/// `hint:` (cyan), coloured only when [`colour`] says so.
pub(crate) fn label(word: &str) -> String {
    if !colour() {
        return format!("{word}:");
    }
    let code = match word {
        "error" => "1;31",
        "warning" => "1;33",
        "hint" => "36",
        _ => "1",
    };
    format!("\x1b[{code}m{word}:\x1b[0m")
}

/// An error with its hint (`Error::with_hint`'s text), each label coloured:
/// `error: MESSAGE` then `  hint: HINT`. A message that starts with a
/// position (`path:line:col: rest`) is printed as `path:line:col: error:
/// rest`, the line editors' problem matchers and Vim's errorformat parse.
pub fn error_text(message: &str, hint: Option<&str>) -> String {
    error_text_about("", message, hint)
}

/// [`error_text`] with `about` (`function orders: `) before the message.
pub(crate) fn error_text_about(about: &str, message: &str, hint: Option<&str>) -> String {
    let mut out = match split_position(message) {
        Some((at, rest)) => format!("{at}: {} {about}{rest}", label("error")),
        None => format!("{} {about}{message}", label("error")),
    };
    if let Some(h) = hint {
        out.push_str(&format!("\n  {} {h}", label("hint")));
    }
    out
}

/// `path:line:col: rest` -> (`path:line:col`, `rest`) when the message
/// starts with a position (`path:line: rest` too, for a path without
/// spaces: requirements files point at lines).
pub(crate) fn split_position(message: &str) -> Option<(&str, &str)> {
    let first = message.lines().next()?;
    let end = first.find(": ")?;
    let head = &first[..end];
    let numeric = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let (before, last) = head.rsplit_once(':')?;
    let line_col = before
        .rsplit_once(':')
        .is_some_and(|(path, line)| !path.is_empty() && numeric(line));
    let line_only = !before.is_empty() && !before.contains(char::is_whitespace);
    let positioned = numeric(last) && (line_col || line_only);
    positioned.then(|| (&message[..end], &message[end + 2..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_progress_stops_when_the_work_ends_not_at_its_next_line() {
        // A period of an hour: dropping must not wait for it.
        let p = PlainProgress::start("packaging".into(), Duration::from_secs(3600));
        p.set_message("3 entries".into());
        drop(p);
    }

    #[test]
    fn positions_are_split_off_for_the_problem_matcher_line() {
        assert_eq!(
            split_position("lambda.toml:3:11: unknown field `x`\nmore"),
            Some(("lambda.toml:3:11", "unknown field `x`\nmore"))
        );
        assert_eq!(split_position("cannot read a: b"), None);
        assert_eq!(split_position("no position 12: b"), None);
        assert_eq!(
            split_position("requirements.txt:4: bad line"),
            Some(("requirements.txt:4", "bad line"))
        );
        if !colour() {
            assert_eq!(
                error_text("a b/c.toml:1:2: oops", Some("fix it")),
                "a b/c.toml:1:2: error: oops\n  hint: fix it"
            );
        }
    }
}
