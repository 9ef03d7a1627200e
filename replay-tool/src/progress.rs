//! Progress of a long walk over the log: a bar with events/s and ETA when stderr is a terminal,
//! plain lines every few seconds otherwise (CI logs, pipes), so both a person and a log reader see
//! that work goes on. Always on stderr: stdout carries results (`--json`).
//!
//! One rate, computed one way ([`rate`]): events counted so far divided by the wall time since
//! the reporter was created. The bar, the plain lines and the final figures ([`figures`]) all
//! use it, and a command that reports figures on stdout too (`rebuild`) passes the same ones to
//! [`Progress::finish_with`], so that stderr and stdout never show two different rates for one
//! run (issue #13: "76 events/s" on stdout, "105 events/s" on stderr, from two clocks).

use std::io::IsTerminal;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

/// How often the plain reporter prints a line.
const PLAIN_EVERY: Duration = Duration::from_secs(2);

/// How often the bar is redrawn while nothing is counted (preparing, building indexes,
/// swapping): without it a bar only appeared when events were counted, and a small rebuild
/// spent nearly all its time where none are.
const BAR_TICK: Duration = Duration::from_millis(200);

/// Events per second: `events` over `seconds` of wall time; 0 before any time has passed.
pub fn rate(events: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        events as f64 / seconds
    } else {
        0.0
    }
}

/// The figures of a finished walk, as both its last progress line and a command's summary show
/// them: `1234 events in 0.2 s (6170 events/s)`.
pub fn figures(events: u64, seconds: f64) -> String {
    format!(
        "{events} events in {seconds:.1} s ({:.0} events/s)",
        rate(events, seconds)
    )
}

/// A plain progress line: `rebuild: 5000/120000 events (4%), 2500 events/s, ETA 46s`.
fn line(label: &str, done: u64, total: u64, seconds: f64) -> String {
    let rate = rate(done, seconds);
    let percent = if total > 0 {
        (done as f64 * 100.0 / total as f64).min(100.0)
    } else {
        100.0
    };
    let eta = if rate > 0.0 && total > done {
        format!("{:.0}s", (total - done) as f64 / rate)
    } else {
        "0s".to_owned()
    };
    format!("{label}: {done}/{total} events ({percent:.0}%), {rate:.0} events/s, ETA {eta}")
}

/// The bar while the walk runs; `{rate}` is [`rate`] on the reporter's clock (`started`), not
/// indicatif's smoothed `{per_sec}`, so the bar's rate is the one the summary reports. The phase
/// comes last and the line holds nothing else, so that it fits 80 columns with a million events
/// (a line longer than the terminal wraps, and every redraw then leaves a line behind).
fn bar_style(started: Instant) -> Result<ProgressStyle, indicatif::style::TemplateError> {
    Ok(ProgressStyle::with_template(
        "{prefix} {wide_bar} {pos}/{len} events, {rate}, ETA {eta} {msg}",
    )?
    .with_key(
        "rate",
        move |state: &ProgressState, w: &mut dyn std::fmt::Write| {
            let _ = write!(
                w,
                "{:.0} events/s",
                rate(state.pos(), started.elapsed().as_secs_f64())
            );
        },
    ))
}

/// The bar once done: full, followed by the figures it was finished with.
fn finished_style() -> Result<ProgressStyle, indicatif::style::TemplateError> {
    ProgressStyle::with_template("{prefix} {wide_bar} {msg}")
}

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
    /// A reporter for `total` events, its clock started now; a bar when stderr is a terminal.
    pub fn new(label: &str, total: u64) -> Self {
        let started = Instant::now();
        let mode = if std::io::stderr().is_terminal() {
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            bar.set_style(bar_style(started).unwrap_or_else(|_| ProgressStyle::default_bar()));
            bar.set_prefix(label.to_owned());
            bar.enable_steady_tick(BAR_TICK);
            Mode::Bar(bar)
        } else {
            Mode::Lines {
                last: Mutex::new(started),
            }
        };
        Self::with_mode(label, total, started, mode)
    }

    /// A reporter that prints nothing (library callers, tests).
    pub fn quiet(label: &str, total: u64) -> Self {
        Self::with_mode(label, total, Instant::now(), Mode::Quiet)
    }

    fn with_mode(label: &str, total: u64, started: Instant, mode: Mode) -> Self {
        Self {
            label: label.to_owned(),
            total,
            done: AtomicU64::new(0),
            started,
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
                    eprintln!("{}", line(&self.label, done, self.total, self.seconds()));
                }
            }
            Mode::Quiet => {}
        }
    }

    /// Says what the walk is doing now (`"indexing"`; keep it short: see [`bar_style`]): the bar's message, or a
    /// line.
    pub fn phase(&self, what: &str) {
        match &self.mode {
            Mode::Bar(bar) => bar.set_message(format!("({what})")),
            Mode::Lines { .. } => eprintln!("{}: {what}", self.label),
            Mode::Quiet => {}
        }
    }

    /// Events done so far.
    pub fn done(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
    }

    /// Wall time since the reporter was created, in seconds: the clock of every rate it shows.
    pub fn seconds(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// Events per second so far ([`rate`] on this reporter's clock).
    pub fn rate(&self) -> f64 {
        rate(self.done(), self.seconds())
    }

    /// Ends the report with the figures of the walk as counted here ([`figures`]).
    pub fn finish(&self) {
        self.finish_with(&figures(self.done(), self.seconds()));
    }

    /// Ends the report with `figures`, those the command also prints as its result: the bar
    /// stays on screen, full, followed by them; otherwise a last line.
    pub fn finish_with(&self, figures: &str) {
        match &self.mode {
            Mode::Bar(bar) => {
                // Events appended while the walk ran make the count it started with too small.
                bar.set_length(bar.position().max(1));
                if let Ok(style) = finished_style() {
                    bar.set_style(style);
                }
                bar.finish_with_message(figures.to_owned());
                // indicatif leaves the cursor at the end of the bar's last frame: end the line,
                // or the summary printed next on the same terminal is glued to it.
                eprintln!();
            }
            Mode::Lines { .. } => eprintln!("{}: done, {figures}", self.label),
            Mode::Quiet => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_is_events_over_wall_time_and_zero_before_any_time_passed() {
        assert!((rate(76, 1.0) - 76.0).abs() < 1e-9);
        assert!((rate(1_000, 4.0) - 250.0).abs() < 1e-9);
        assert!(rate(10, 0.0).abs() < f64::EPSILON);
        assert!(rate(0, 3.0).abs() < f64::EPSILON);
    }

    #[test]
    fn figures_show_events_seconds_and_the_rate_of_exactly_those() {
        assert_eq!(figures(12, 0.158), "12 events in 0.2 s (76 events/s)");
        assert_eq!(
            figures(1_000_000, 9.5),
            "1000000 events in 9.5 s (105263 events/s)"
        );
    }

    #[test]
    fn plain_lines_show_progress_rate_and_eta() {
        assert_eq!(
            line("rebuild", 5_000, 120_000, 2.0),
            "rebuild: 5000/120000 events (4%), 2500 events/s, ETA 46s"
        );
        // More events than counted at the start (appended meanwhile): never past 100%.
        assert_eq!(
            line("rebuild", 12, 10, 1.0),
            "rebuild: 12/10 events (100%), 12 events/s, ETA 0s"
        );
    }

    #[test]
    fn the_bar_templates_parse() {
        // A template error would silently fall back to indicatif's default bar, without the rate.
        bar_style(Instant::now()).unwrap();
        finished_style().unwrap();
    }

    #[test]
    fn a_quiet_reporter_counts_on_its_clock() {
        let progress = Progress::quiet("test", 10);
        progress.inc(4);
        progress.inc(6);
        assert_eq!(progress.done(), 10);
        let seconds = progress.seconds();
        assert!(seconds >= 0.0);
        // The rate is the done count over the clock, read a moment later: never more than that.
        assert!(progress.rate() <= rate(10, seconds) + 1e-9);
        progress.phase("ignored");
        progress.finish();
    }
}
