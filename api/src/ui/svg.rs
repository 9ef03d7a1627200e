//! The dashboard's plots, drawn as SVG on the server: no JavaScript, no chart library, and
//! readable without colour (issue #18 asks that no information is in colour alone).
//!
//! - [`bars`]: one horizontal bar per label, each with its label and number written beside it.
//! - [`stacked_days`]: a column per day stacking the day's count of each series; every series
//!   has its own fill pattern as well as its colour, the legend shows both, and each segment
//!   carries a `<title>` (a tooltip; screen readers read it).
//!
//! Every text is escaped here; the templates insert the result as trusted markup. Each plot is
//! an `<svg role="img">` with a `<title>` and a `<desc>` that states its numbers, and the pages
//! show the same numbers in a table beside it.

use std::fmt::Write;

/// Escapes `text` for SVG/XML text and attribute values.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// A bar of [`bars`]: its label, value and CSS class (which gives its colour).
#[derive(Clone, Debug)]
pub struct Bar {
    pub label: String,
    pub value: i64,
    pub class: &'static str,
}

const BAR_HEIGHT: i64 = 22;
const LABEL_WIDTH: i64 = 110;
const PLOT_WIDTH: i64 = 300;
const NUMBER_WIDTH: i64 = 70;

/// Horizontal bars, scaled to the largest value; zero draws no bar but keeps its label and 0.
pub fn bars(id: &str, title: &str, items: &[Bar]) -> String {
    let max = items.iter().map(|b| b.value).max().unwrap_or(0).max(1);
    let height = BAR_HEIGHT * i64::try_from(items.len()).unwrap_or(0) + 8;
    let width = LABEL_WIDTH + PLOT_WIDTH + NUMBER_WIDTH;
    let desc = items
        .iter()
        .map(|b| format!("{}: {}", b.label, b.value))
        .collect::<Vec<_>>()
        .join(", ");
    let mut svg = String::new();
    let _ = write!(
        svg,
        "<svg class=\"plot\" role=\"img\" aria-labelledby=\"{id}-t {id}-d\" \
         viewBox=\"0 0 {width} {height}\" width=\"100%\" preserveAspectRatio=\"xMinYMin meet\" \
         xmlns=\"http://www.w3.org/2000/svg\"><title id=\"{id}-t\">{}</title><desc id=\"{id}-d\">{}</desc>",
        esc(title),
        esc(&desc),
    );
    for (i, bar) in items.iter().enumerate() {
        let y = BAR_HEIGHT * i64::try_from(i).unwrap_or(0) + 4;
        let w = bar.value.max(0) * PLOT_WIDTH / max;
        let _ = write!(
            svg,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\" class=\"label\">{}</text>",
            LABEL_WIDTH - 6,
            y + 15,
            esc(&bar.label)
        );
        if w > 0 {
            let _ = write!(
                svg,
                "<rect x=\"{LABEL_WIDTH}\" y=\"{y}\" width=\"{w}\" height=\"{}\" class=\"{}\"><title>{}: {}</title></rect>",
                BAR_HEIGHT - 6,
                bar.class,
                esc(&bar.label),
                bar.value
            );
        }
        let _ = write!(
            svg,
            "<text x=\"{}\" y=\"{}\" class=\"number\">{}</text>",
            LABEL_WIDTH + w + 6,
            y + 15,
            bar.value
        );
    }
    svg.push_str("</svg>");
    svg
}

/// A series of [`stacked_days`]: its name, CSS class (colour) and fill pattern.
#[derive(Clone, Debug)]
pub struct Series {
    pub name: String,
    pub class: &'static str,
    pub pattern: Pattern,
}

/// A fill that tells series apart without colour.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pattern {
    Solid,
    Hatched,
    Dotted,
    Crossed,
}

impl Pattern {
    /// The patterns in the order series take them.
    pub const ALL: [Self; 4] = [Self::Solid, Self::Hatched, Self::Dotted, Self::Crossed];

    /// The pattern's definition, drawn in the colour of `class` (`ink-<class>` in the
    /// stylesheet).
    fn def(self, id: &str, class: &str) -> String {
        let shape = match self {
            Self::Solid => return String::new(),
            Self::Hatched => format!("<path d=\"M0,6 L6,0\" class=\"ink ink-{class}\"/>"),
            Self::Dotted => {
                format!("<circle cx=\"3\" cy=\"3\" r=\"1.3\" class=\"ink ink-{class}\"/>")
            }
            Self::Crossed => {
                format!("<path d=\"M0,0 L6,6 M0,6 L6,0\" class=\"ink ink-{class}\"/>")
            }
        };
        format!(
            "<pattern id=\"{id}\" width=\"6\" height=\"6\" patternUnits=\"userSpaceOnUse\">\
             <rect width=\"6\" height=\"6\" class=\"paper\"/>{shape}</pattern>"
        )
    }
}

const DAY_WIDTH: i64 = 30;
const DAYS_HEIGHT: i64 = 140;
const AXIS_HEIGHT: i64 = 34;
const LEGEND_HEIGHT: i64 = 22;

/// One column per day of `days`, stacking `values[s][d]` (series `s`, day `d`) from the first
/// series up. The legend names each series with its swatch; each day is labelled day/month.
pub fn stacked_days(
    id: &str,
    title: &str,
    days: &[chrono::NaiveDate],
    series: &[Series],
    values: &[Vec<i64>],
) -> String {
    let total = |d: usize| -> i64 { values.iter().map(|v| v.get(d).copied().unwrap_or(0)).sum() };
    let busiest = (0..days.len()).map(total).max().unwrap_or(0);
    let max = busiest.max(1);
    let n_days = i64::try_from(days.len()).unwrap_or(0);
    // Wide enough for the days and for the legend's row.
    let legend: i64 = series
        .iter()
        .map(|s| 26 + 7 * i64::try_from(s.name.chars().count()).unwrap_or(0))
        .sum();
    let width = (DAY_WIDTH * n_days + 40).max(38 + legend).max(320);
    let height = DAYS_HEIGHT + AXIS_HEIGHT + LEGEND_HEIGHT;
    let sums = series
        .iter()
        .zip(values)
        .map(|(s, v)| format!("{}: {}", s.name, v.iter().sum::<i64>()))
        .collect::<Vec<_>>()
        .join(", ");
    let desc = format!(
        "{} days from {} to {}; totals {sums}; at most {busiest} in a day (the series stack)",
        days.len(),
        days.first().map(ToString::to_string).unwrap_or_default(),
        days.last().map(ToString::to_string).unwrap_or_default(),
    );
    let mut svg = String::new();
    let _ = write!(
        svg,
        "<svg class=\"plot\" role=\"img\" aria-labelledby=\"{id}-t {id}-d\" \
         viewBox=\"0 0 {width} {height}\" width=\"100%\" preserveAspectRatio=\"xMinYMin meet\" \
         xmlns=\"http://www.w3.org/2000/svg\"><title id=\"{id}-t\">{}</title><desc id=\"{id}-d\">{}</desc><defs>",
        esc(title),
        esc(&desc),
    );
    // A stylesheet's `fill` beats a `fill` attribute: a patterned segment carries no colour
    // class, its pattern is drawn in the colour instead.
    let fill = |i: usize, s: &Series| -> String {
        if s.pattern == Pattern::Solid {
            format!(" class=\"{} seg\"", s.class)
        } else {
            format!(" class=\"seg\" fill=\"url(#{id}-p{i})\"")
        }
    };
    for (i, s) in series.iter().enumerate() {
        svg.push_str(&s.pattern.def(&format!("{id}-p{i}"), s.class));
    }
    svg.push_str("</defs>");
    // The axis: the busiest day's count at the top, 0 at the bottom.
    let _ = write!(
        svg,
        "<text x=\"0\" y=\"10\" class=\"axis\">{max}</text><text x=\"0\" y=\"{DAYS_HEIGHT}\" class=\"axis\">0</text>\
         <line x1=\"34\" y1=\"{DAYS_HEIGHT}\" x2=\"{width}\" y2=\"{DAYS_HEIGHT}\" class=\"baseline\"/>"
    );
    for (d, day) in days.iter().enumerate() {
        let x = 38 + DAY_WIDTH * i64::try_from(d).unwrap_or(0);
        let mut top = DAYS_HEIGHT;
        for (i, (s, v)) in series.iter().zip(values).enumerate() {
            let value = v.get(d).copied().unwrap_or(0);
            if value <= 0 {
                continue;
            }
            let h = (value * (DAYS_HEIGHT - 14) / max).max(1);
            top -= h;
            let _ = write!(
                svg,
                "<rect x=\"{x}\" y=\"{top}\" width=\"{}\" height=\"{h}\"{}><title>{}: {} on {}</title></rect>",
                DAY_WIDTH - 6,
                fill(i, s),
                esc(&s.name),
                value,
                day
            );
        }
        // Every other day is labelled when there are many, counting back from the last: labels
        // must not run into each other (each segment's title still names its day).
        if days.len() <= 8 || (days.len() - 1 - d).is_multiple_of(2) {
            let _ = write!(
                svg,
                "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" class=\"axis\">{}</text>",
                x + (DAY_WIDTH - 6) / 2,
                DAYS_HEIGHT + 14,
                day.format("%d/%m")
            );
        }
    }
    let mut x = 38;
    let y = DAYS_HEIGHT + AXIS_HEIGHT;
    for (i, s) in series.iter().enumerate() {
        let _ = write!(
            svg,
            "<rect x=\"{x}\" y=\"{}\" width=\"14\" height=\"14\"{}/>\
             <text x=\"{}\" y=\"{}\" class=\"label\">{}</text>",
            y - 2,
            fill(i, s),
            x + 18,
            y + 10,
            esc(&s.name)
        );
        x += 26 + 7 * i64::try_from(s.name.chars().count()).unwrap_or(0);
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped() {
        let svg = bars(
            "b",
            "<script>",
            &[Bar {
                label: "a\"&<b>".into(),
                value: 3,
                class: "c",
            }],
        );
        assert!(!svg.contains("<script>"));
        assert!(!svg.contains("a\"&<b>"));
        assert!(svg.contains("a&quot;&amp;&lt;b&gt;"));
    }

    #[test]
    fn bars_scale_to_the_largest_and_write_every_number() {
        let svg = bars(
            "b",
            "t",
            &[
                Bar {
                    label: "active".into(),
                    value: 10,
                    class: "ok",
                },
                Bar {
                    label: "revoked".into(),
                    value: 0,
                    class: "bad",
                },
                Bar {
                    label: "suspended".into(),
                    value: 5,
                    class: "warn",
                },
            ],
        );
        assert!(svg.contains(&format!("width=\"{PLOT_WIDTH}\"")));
        assert!(svg.contains(&format!("width=\"{}\"", PLOT_WIDTH / 2)));
        // A zero draws no bar but states its 0.
        assert_eq!(svg.matches("<rect").count(), 2);
        assert!(svg.contains(">0</text>"));
        assert!(svg.contains("<desc id=\"b-d\">active: 10, revoked: 0, suspended: 5</desc>"));
    }

    #[test]
    fn stacked_days_use_a_pattern_per_series() {
        let days = [
            chrono::NaiveDate::from_ymd_opt(2026, 12, 1).unwrap(),
            chrono::NaiveDate::from_ymd_opt(2026, 12, 2).unwrap(),
        ];
        let series = ["ok", "refused"]
            .iter()
            .zip(Pattern::ALL)
            .map(|(n, pattern)| Series {
                name: (*n).into(),
                class: "c",
                pattern,
            })
            .collect::<Vec<_>>();
        let svg = stacked_days("s", "t", &days, &series, &[vec![2, 0], vec![1, 4]]);
        // Three non-zero segments and two legend swatches: the solid ones in their colour, the
        // patterned ones without it (a stylesheet's fill would hide the pattern).
        assert_eq!(svg.matches("class=\"c seg\"").count(), 2);
        assert_eq!(svg.matches("class=\"seg\" fill=\"url(#s-p1)\"").count(), 3);
        assert!(svg.contains("class=\"ink ink-c\""));
        assert!(svg.contains("<pattern id=\"s-p1\""));
        assert!(svg.contains("refused: 4 on 2026-12-02"));
        assert!(svg.contains("totals ok: 2, refused: 5; at most 4 in a day"));
    }
}
