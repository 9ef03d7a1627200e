//! Progress of a long walk over the log: a bar with events/s and ETA when stderr is a terminal,
//! plain lines every few seconds otherwise (CI logs, pipes), so both a person and a log reader see
//! that work goes on. Always on stderr: stdout carries results (`--json`).

use std::io::IsTerminal;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How often the plain reporter prints a line.
const PLAIN_EVERY: Duration = Duration::from_secs(2);

/// A progress reporter, shared by the tasks of one walk.
pub struct Progress {
    label: String,
    total: u64,
    done: AtomicU64,
    started: Instant,
    mode: Mode,
}

enum Mode {
    Bar(ProgressBar),
    Lines { last: Mutex<Instant> },
    Quiet,
}

impl Progress {
    /// A reporter for `total` events; a bar when stderr is a terminal.
    pub fn new(label: &str, total: u64) -> Self {
        let mode = if std::io::stderr().is_terminal() {
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template(
                    "{msg} [{elapsed_precise}] {wide_bar} {human_pos}/{human_len} events, {per_sec}, ETA {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar.set_message(label.to_owned());
            Mode::Bar(bar)
        } else {
            Mode::Lines {
                last: Mutex::new(Instant::now()),
            }
        };
        Self::with_mode(label, total, mode)
    }

    /// A reporter that prints nothing (library callers, tests).
    pub fn quiet(label: &str, total: u64) -> Self {
        Self::with_mode(label, total, Mode::Quiet)
    }

    fn with_mode(label: &str, total: u64, mode: Mode) -> Self {
        Self {
            label: label.to_owned(),
            total,
            done: AtomicU64::new(0),
            started: Instant::now(),
            mode,
        }
    }

    /// Counts `n` more events done.
    pub fn inc(&self, n: u64) {
        let done = self.done.fetch_add(n, Ordering::Relaxed) + n;
        match &self.mode {
            Mode::Bar(bar) => bar.inc(n),
            Mode::Lines { last } => {
                let Ok(mut last) = last.try_lock() else {
                    return; // another task is printing
                };
                if last.elapsed() >= PLAIN_EVERY {
                    *last = Instant::now();
                    eprintln!("{}", self.line(done));
                }
            }
            Mode::Quiet => {}
        }
    }

    /// Events done so far.
    pub fn done(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
    }

    /// Events per second so far.
    pub fn rate(&self) -> f64 {
        let secs = self.started.elapsed().as_secs_f64();
        if secs > 0.0 {
            self.done() as f64 / secs
        } else {
            0.0
        }
    }

    fn line(&self, done: u64) -> String {
        let rate = self.rate();
        let percent = if self.total > 0 {
            (done as f64 * 100.0 / self.total as f64).min(100.0)
        } else {
            100.0
        };
        let eta = if rate > 0.0 && self.total > done {
            format!("{:.0}s", (self.total - done) as f64 / rate)
        } else {
            "0s".to_owned()
        };
        format!(
            "{}: {done}/{} events ({percent:.0}%), {rate:.0} events/s, ETA {eta}",
            self.label, self.total
        )
    }

    /// Ends the report with a final line.
    pub fn finish(&self) {
        match &self.mode {
            Mode::Bar(bar) => bar.finish_and_clear(),
            Mode::Lines { .. } => {}
            Mode::Quiet => return,
        }
        eprintln!(
            "{}: {} events in {:.1}s ({:.0} events/s)",
            self.label,
            self.done(),
            self.started.elapsed().as_secs_f64(),
            self.rate()
        );
    }
}
