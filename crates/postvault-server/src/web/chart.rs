//! Horizontal bar charts as inline SVG, drawn on the server: no script, no
//! style attribute (the page's policy allows neither inline), an accessible
//! name and description, and the same numbers in a table beside them for
//! readers who cannot see the chart.

use maud::{Markup, html};

const BAR_H: u32 = 22;
const LABEL_W: u32 = 220;
const PLOT_W: u32 = 360;
const WIDTH: u32 = LABEL_W + PLOT_W + 60;

/// A bar chart of `rows` (label, value) titled `title`, followed by its table.
pub(crate) fn bars(id: &str, title: &str, rows: &[(String, String, u64)]) -> Markup {
    let max = rows.iter().map(|r| r.2).max().unwrap_or(0).max(1);
    let height = BAR_H * (rows.len().max(1) as u32) + 8;
    let desc = rows
        .iter()
        .map(|(l, v, _)| format!("{l}: {v}"))
        .collect::<Vec<_>>()
        .join("; ");
    html! {
        figure.chart {
            figcaption id=(format!("{id}-title")) { (title) }
            @if rows.is_empty() {
                p.muted { "Nothing to show yet." }
            } @else {
                svg xmlns="http://www.w3.org/2000/svg" role="img"
                    aria-labelledby=(format!("{id}-title {id}-desc"))
                    viewBox=(format!("0 0 {WIDTH} {height}")) width=(WIDTH) height=(height) {
                    desc id=(format!("{id}-desc")) { (desc) }
                    @for (i, (label, shown, v)) in rows.iter().enumerate() {
                        @let y = 4 + BAR_H * i as u32;
                        @let w = ((*v as f64 / max as f64) * f64::from(PLOT_W)).round().max(if *v > 0 { 2.0 } else { 0.0 });
                        text x=(LABEL_W - 8) y=(y + 15) text-anchor="end" class="chart-label" { (label) }
                        rect x=(LABEL_W) y=(y + 3) width=(w) height=(BAR_H - 6) class="bar" {}
                        text x=(f64::from(LABEL_W) + w + 6.0) y=(y + 15) class="chart-value" { (shown) }
                    }
                }
                table.chart-data {
                    caption.visually-hidden { (title) }
                    thead { tr { th scope="col" { "What" } th scope="col" { "Count" } } }
                    tbody {
                        @for (label, shown, _) in rows {
                            tr { td { (label) } td { (shown) } }
                        }
                    }
                }
            }
        }
    }
}
