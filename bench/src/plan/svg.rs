//! The SVG plot of a sweep: brokers and cores per broker against the ingest rate, each point
//! labelled with its limiting resource.

use super::model::Plan;

const W: f64 = 760.0;
const H: f64 = 420.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 30.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 60.0;

/// A line of the plot: name, colour, the figure of a plan.
type Series = (&'static str, &'static str, fn(&Plan) -> f64);

pub fn plot(rows: &[(f64, Plan)], broker: &str) -> String {
    let x_max = rows.iter().map(|r| r.0).fold(1.0, f64::max) / 1e6;
    let y_max = rows
        .iter()
        .map(|r| r.1.brokers.max(r.1.cores_per_broker) as f64)
        .fold(1.0, f64::max)
        * 1.1;
    let x = |mb: f64| LEFT + (W - LEFT - RIGHT) * mb / x_max;
    let y = |v: f64| H - BOTTOM - (H - TOP - BOTTOM) * v / y_max;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{LEFT}\" y=\"22\" font-size=\"15\">spate plan --sweep ({broker}): brokers and cores per broker by ingest</text>\n\
         <line x1=\"{LEFT}\" y1=\"{b}\" x2=\"{r}\" y2=\"{b}\" stroke=\"black\"/>\n\
         <line x1=\"{LEFT}\" y1=\"{TOP}\" x2=\"{LEFT}\" y2=\"{b}\" stroke=\"black\"/>\n\
         <text x=\"{mid}\" y=\"{xl}\" text-anchor=\"middle\">ingest, MB/s</text>\n",
        b = H - BOTTOM,
        r = W - RIGHT,
        mid = (W + LEFT - RIGHT) / 2.0,
        xl = H - 15.0,
    );
    for i in 0..=4 {
        let (vx, vy) = (x_max * i as f64 / 4.0, y_max * i as f64 / 4.0);
        s += &format!(
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{vx:.0}</text>\n<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{vy:.0}</text>\n",
            x(vx), H - BOTTOM + 18.0, LEFT - 6.0, y(vy) + 4.0
        );
    }
    let series: [Series; 2] = [
        ("brokers", "#1f77b4", |p| p.brokers as f64),
        ("cores per broker", "#d62728", |p| p.cores_per_broker as f64),
    ];
    for (i, (name, colour, f)) in series.iter().enumerate() {
        let points: Vec<String> = rows
            .iter()
            .map(|(b, p)| format!("{:.1},{:.1}", x(b / 1e6), y(f(p))))
            .collect();
        s += &format!(
            "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" points=\"{}\"/>\n\
             <text x=\"{:.1}\" y=\"{:.1}\" fill=\"{colour}\">{name}</text>\n",
            points.join(" "),
            LEFT + 10.0 + 150.0 * i as f64,
            TOP + 4.0
        );
    }
    for (b, p) in rows {
        s += &format!(
            "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"#1f77b4\"><title>{:.0} MB/s: {} brokers x {} cores, limit {}, p99 {:.2} ms</title></circle>\n\
             <text x=\"{:.1}\" y=\"{:.1}\" font-size=\"9\" text-anchor=\"middle\">{}</text>\n",
            x(b / 1e6), y(p.brokers as f64), b / 1e6, p.brokers, p.cores_per_broker, p.limit, p.p99_ms,
            x(b / 1e6), y(p.brokers as f64) - 8.0, p.limit
        );
    }
    s + "</svg>\n"
}

#[cfg(test)]
mod tests {
    use super::super::model::Load;
    use super::super::profile::{tests::FIXED, Profile};
    use super::*;

    #[test]
    fn the_plot_has_one_point_per_step() {
        let profile = Profile::parse(FIXED).expect("valid");
        let rows = super::super::sweep::plans(&Load::default(), &profile, (1e8, 1e9), 4).unwrap();
        let svg = plot(&rows, "spate");
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<circle").count(), 4);
        assert_eq!(svg.matches("<polyline").count(), 2);
    }
}
