//! Latency by percentile, one curve per system, as a hand-written SVG: the
//! x axis is the percentile on the usual HdrHistogram log scale
//! (1/(1-p): 0, 90, 99, 99.9, 99.99 %...), the y axis the latency in
//! microseconds on a log scale.

use std::fmt::Write as _;

/// One curve: a label and (percentile in 0..=100, latency in µs) points.
#[derive(Debug, Clone)]
pub struct Series {
    /// Legend text.
    pub label: String,
    /// Points, percentile ascending.
    pub points: Vec<(f64, f64)>,
}

const COLORS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];
const DASHES: [&str; 2] = ["", "6,4"];

fn x_of(p: f64) -> f64 {
    // log10(1/(1-p)); capped so p = 100 % stays on the chart.
    let q = (1.0 - p / 100.0).max(1e-7);
    (1.0 / q).log10()
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Renders `series` as an SVG document. `dash_second_half`: curves in the
/// second half of the list are dashed (e.g. a second CPU placement).
pub fn svg(title: &str, series: &[Series], dash_second_half: bool) -> String {
    let (w, h) = (900.0, 560.0);
    let (l, r, t, b) = (80.0, 250.0, 50.0, 60.0);
    let pw = w - l - r;
    let ph = h - t - b;
    let mut max_x: f64 = 3.0;
    let (mut ymin, mut ymax) = (f64::MAX, f64::MIN);
    for s in series {
        for &(p, v) in &s.points {
            max_x = max_x.max(x_of(p).ceil());
            if v > 0.0 {
                ymin = ymin.min(v);
                ymax = ymax.max(v);
            }
        }
    }
    if ymin > ymax {
        (ymin, ymax) = (1.0, 10.0);
    }
    let lo = ymin.log10().floor();
    let mut hi = ymax.log10().ceil();
    if hi <= lo {
        hi = lo + 1.0;
    }
    let max_x = max_x.min(7.0);
    let px = |x: f64| l + x / max_x * pw;
    let py = |v: f64| t + ph - (v.max(10f64.powf(lo)).log10() - lo) / (hi - lo) * ph;

    let mut o = String::new();
    let _ = writeln!(
        o,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="13">"#
    );
    let _ = writeln!(o, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        o,
        r#"<text x="{}" y="28" text-anchor="middle" font-size="16" font-weight="bold">{}</text>"#,
        l + pw / 2.0,
        esc(title)
    );
    // Grid and axes.
    for i in 0..=(max_x as i32) {
        let x = px(f64::from(i));
        let label = match i {
            0 => "0%".to_string(),
            1 => "90%".to_string(),
            2 => "99%".to_string(),
            n => format!("99.{}%", "9".repeat((n - 2) as usize)),
        };
        let _ = writeln!(
            o,
            r##"<line x1="{x:.1}" y1="{t}" x2="{x:.1}" y2="{:.1}" stroke="#ddd"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{label}</text>"##,
            t + ph,
            t + ph + 20.0
        );
    }
    let mut e = lo;
    while e <= hi + 1e-9 {
        for m in [1.0, 2.0, 5.0] {
            let v = m * 10f64.powf(e);
            if v.log10() > hi + 1e-9 {
                break;
            }
            let y = py(v);
            let major = m == 1.0;
            let _ = writeln!(
                o,
                r##"<line x1="{l}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="{}"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
                l + pw,
                if major { "#bbb" } else { "#eee" },
                l - 6.0,
                y + 4.0,
                fmt_us(v)
            );
        }
        e += 1.0;
    }
    let _ = writeln!(
        o,
        r##"<rect x="{l}" y="{t}" width="{pw}" height="{ph}" fill="none" stroke="#333"/>"##
    );
    let _ = writeln!(
        o,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">percentile (log scale of 1/(1-p))</text>"#,
        l + pw / 2.0,
        h - 15.0
    );
    let _ = writeln!(
        o,
        r#"<text transform="translate(22,{:.1}) rotate(-90)" text-anchor="middle">one-way latency (µs, log scale)</text>"#,
        t + ph / 2.0
    );
    // Curves and legend.
    let half = series.len().div_ceil(2);
    for (i, s) in series.iter().enumerate() {
        let (ci, dash) = if dash_second_half && series.len() > 1 {
            (i % half, DASHES[usize::from(i >= half)])
        } else {
            (i, "")
        };
        let color = COLORS[ci % COLORS.len()];
        let pts: Vec<String> = s
            .points
            .iter()
            .filter(|&&(p, v)| v > 0.0 && x_of(p) <= max_x)
            .map(|&(p, v)| format!("{:.1},{:.1}", px(x_of(p)), py(v)))
            .collect();
        if pts.is_empty() {
            continue;
        }
        let _ = writeln!(
            o,
            r#"<polyline fill="none" stroke="{color}" stroke-width="2" stroke-dasharray="{dash}" points="{}"/>"#,
            pts.join(" ")
        );
        let ly = t + 10.0 + i as f64 * 22.0;
        let lx = l + pw + 15.0;
        let _ = writeln!(
            o,
            r#"<line x1="{lx}" y1="{ly}" x2="{}" y2="{ly}" stroke="{color}" stroke-width="2" stroke-dasharray="{dash}"/><text x="{}" y="{:.1}">{}</text>"#,
            lx + 28.0,
            lx + 34.0,
            ly + 4.0,
            esc(&s.label)
        );
    }
    o.push_str("</svg>\n");
    o
}

fn fmt_us(v: f64) -> String {
    if v >= 1000.0 {
        format!("{} ms", v / 1000.0)
    } else {
        format!("{v} µs")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_every_series_with_a_legend() {
        let s = vec![
            Series {
                label: "mtugate <confined>".into(),
                points: vec![(0.0, 10.0), (50.0, 20.0), (99.0, 80.0), (99.99, 400.0)],
            },
            Series {
                label: "kernel".into(),
                points: vec![(0.0, 15.0), (50.0, 30.0), (100.0, 2000.0)],
            },
        ];
        let out = svg("latency", &s, false);
        assert!(out.starts_with("<svg"));
        assert_eq!(out.matches("<polyline").count(), 2);
        assert!(out.contains("mtugate &lt;confined&gt;"));
        assert!(out.contains("99.9%"));
        assert!(out.contains("ms"));
        // An empty chart still renders.
        assert!(svg("none", &[], true).contains("</svg>"));
    }
}
