//! A stacked bar chart as plain numbers for the `chart.html` template to draw
//! as SVG: one bar per day, one colour class per series. The template escapes
//! every label; nothing here writes markup.

/// One series: its label and a value per day.
pub struct Series {
    pub label: String,
    pub values: Vec<f64>,
}

pub struct Bar {
    pub x: f64,
    pub y: f64,
    pub width: f64,
    pub height: f64,
    /// CSS class of the series' colour (`s0` … `s6`).
    pub class: String,
    /// Shown on hover and read by screen readers.
    pub title: String,
}

pub struct Tick {
    pub y: f64,
    pub label: String,
}

pub struct DayLabel {
    pub x: f64,
    pub label: String,
}

pub struct Legend {
    pub class: String,
    pub label: String,
}

/// The chart, laid out in a `WIDTH` × `HEIGHT` view box.
pub struct Chart {
    pub bars: Vec<Bar>,
    pub ticks: Vec<Tick>,
    pub days: Vec<DayLabel>,
    pub legend: Vec<Legend>,
    /// What the chart shows, for its accessible name.
    pub caption: String,
    pub empty: bool,
}

pub const WIDTH: f64 = 720.0;
pub const HEIGHT: f64 = 240.0;
const LEFT: f64 = 64.0;
const BOTTOM: f64 = 24.0;
const TOP: f64 = 8.0;

impl Chart {
    pub fn width(&self) -> f64 {
        WIDTH
    }
    pub fn height(&self) -> f64 {
        HEIGHT
    }
    pub fn left(&self) -> f64 {
        LEFT
    }
    pub fn baseline(&self) -> f64 {
        HEIGHT - BOTTOM
    }
}

/// A "nice" axis maximum at or above `max`: 1, 2 or 5 times a power of ten.
fn nice_max(max: f64) -> f64 {
    if max <= 0.0 {
        return 1.0;
    }
    let magnitude = 10f64.powf(max.log10().floor());
    for m in [1.0, 2.0, 5.0, 10.0] {
        if m * magnitude >= max {
            return m * magnitude;
        }
    }
    10.0 * magnitude
}

/// Lays out `series` stacked over `days` (labels such as `2026-12-01`);
/// `value` writes an amount for the axis and the hover titles. The axis
/// reaches at least `min_top` (4 for counts, so that its quarters are whole).
pub fn stacked(
    caption: String,
    days: &[String],
    series: &[Series],
    min_top: f64,
    value: impl Fn(f64) -> String,
) -> Chart {
    let n = days.len().max(1);
    let totals: Vec<f64> = (0..days.len())
        .map(|d| {
            series
                .iter()
                .map(|s| s.values.get(d).copied().unwrap_or(0.0))
                .sum()
        })
        .collect();
    let top = nice_max(totals.iter().copied().fold(min_top, f64::max));
    // Quarters of a count axis are whole when its top is 4, 8, 20, 40…
    let top = if min_top >= 4.0 && top % 4.0 != 0.0 {
        top * 2.0
    } else {
        top
    };
    let plot_h = HEIGHT - BOTTOM - TOP;
    let slot = (WIDTH - LEFT) / n as f64;
    let bar_w = (slot * 0.7).max(1.0);
    let mut bars = Vec::new();
    for (d, day) in days.iter().enumerate() {
        let mut y = HEIGHT - BOTTOM;
        for (i, s) in series.iter().enumerate() {
            let v = s.values.get(d).copied().unwrap_or(0.0);
            if v <= 0.0 {
                continue;
            }
            let h = v / top * plot_h;
            y -= h;
            bars.push(Bar {
                x: round(LEFT + d as f64 * slot + (slot - bar_w) / 2.0),
                y: round(y),
                width: round(bar_w),
                height: round(h),
                class: format!("s{}", i.min(6)),
                title: format!("{day} · {}: {}", s.label, value(v)),
            });
        }
    }
    let ticks = (0..=4)
        .map(|i| {
            let v = top * i as f64 / 4.0;
            Tick {
                y: round(HEIGHT - BOTTOM - plot_h * i as f64 / 4.0),
                label: value(v),
            }
        })
        .collect();
    // At most about eight day labels, evenly spaced.
    let every = days.len().div_ceil(8).max(1);
    let day_labels = days
        .iter()
        .enumerate()
        .filter(|(d, _)| d % every == 0)
        .map(|(d, day)| DayLabel {
            x: round(LEFT + d as f64 * slot + slot / 2.0),
            label: day.get(5..).unwrap_or(day).to_string(),
        })
        .collect();
    Chart {
        empty: bars.is_empty(),
        bars,
        ticks,
        days: day_labels,
        legend: series
            .iter()
            .enumerate()
            .map(|(i, s)| Legend {
                class: format!("s{}", i.min(6)),
                label: s.label.clone(),
            })
            .collect(),
        caption,
    }
}

fn round(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_stack_within_the_plot_and_the_axis_is_round() {
        let days = vec!["2026-12-01".to_string(), "2026-12-02".to_string()];
        let series = vec![
            Series {
                label: "a".into(),
                values: vec![3.0, 0.0],
            },
            Series {
                label: "b".into(),
                values: vec![4.0, 1.0],
            },
        ];
        let c = stacked("requests".into(), &days, &series, 4.0, |v| format!("{v}"));
        assert_eq!(c.bars.len(), 3, "a zero value draws no bar");
        // 7 rounds up to 10, and quarters of 20 are whole.
        assert_eq!(c.ticks.last().unwrap().label, "20");
        assert_eq!(c.ticks[1].label, "5");
        for b in &c.bars {
            assert!(b.y >= TOP - 0.1 && b.y + b.height <= HEIGHT - BOTTOM + 0.1);
        }
        // The second series sits on the first on day one.
        let (a, b) = (&c.bars[0], &c.bars[1]);
        assert!((b.y + b.height - a.y).abs() < 0.2);
        assert_eq!(c.days[0].label, "12-01");
        assert_eq!(nice_max(0.0), 1.0);
        assert_eq!(nice_max(230.0), 500.0);
    }
}
