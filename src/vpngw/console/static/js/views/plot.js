// The traffic plot: an inline SVG drawn here, no library. It shows the history's
// counters as they were read: those of the connection's current CHILD_SAs, so the line
// rises with traffic and drops to 0 when an SA is rekeyed or renegotiated (a new SA
// counts from 0). Between points the counters did not change: the line holds its level.

import { fmtBytes, s } from "../dom.js";

const W = 560;
const H = 220;
const PAD = { left: 64, right: 12, top: 12, bottom: 26 };

/**
 * An SVG chart of two series (in and out) over [from, to] (unix ms).
 * series: [{ name, cls, points: [[t, y]] }]; format(y) labels the axis.
 */
export function lineChart({ title, from, to, series, format, testid }) {
  const ymax = Math.max(1, ...series.flatMap((x) => x.points.map((p) => p[1])));
  const x = (t) => PAD.left + ((t - from) / Math.max(1, to - from)) * (W - PAD.left - PAD.right);
  const y = (v) => H - PAD.bottom - (v / ymax) * (H - PAD.top - PAD.bottom);
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": title, "data-testid": testid, "data-max": String(ymax) });
  svg.append(s("title", {}, title));
  // Axes and grid: three horizontal lines with labels.
  for (const frac of [0, 0.5, 1]) {
    const v = ymax * frac;
    svg.append(s("line", { x1: PAD.left, x2: W - PAD.right, y1: y(v), y2: y(v), stroke: "#e3e7ee" }));
    svg.append(s("text", { x: PAD.left - 6, y: y(v) + 4, "text-anchor": "end", "font-size": 11, fill: "#5d6778" }, format(v)));
  }
  for (const frac of [0, 0.5, 1]) {
    const t = from + (to - from) * frac;
    const label = new Date(t).toISOString().slice(11, 16) + " UTC";
    svg.append(s("text", { x: x(t), y: H - 8, "text-anchor": frac === 0 ? "start" : frac === 1 ? "end" : "middle", "font-size": 11, fill: "#5d6778" }, label));
  }
  for (const line of series) {
    if (!line.points.length) continue;
    // A step line held to "now": counters unchanged since the last point stay level.
    const pts = [...line.points, [to, line.points[line.points.length - 1][1]]];
    let d = `M${x(pts[0][0]).toFixed(1)},${y(pts[0][1]).toFixed(1)}`;
    for (let i = 1; i < pts.length; i += 1) d += ` H${x(pts[i][0]).toFixed(1)} V${y(pts[i][1]).toFixed(1)}`;
    svg.append(s("path", { d, fill: "none", class: `series ${line.cls}`, stroke: line.cls === "in" ? "#2457c5" : "#d9730d", "stroke-width": 2, "data-last": String(line.points[line.points.length - 1][1]) }));
  }
  if (!series.some((line) => line.points.length)) {
    svg.append(s("text", { x: W / 2, y: H / 2, "text-anchor": "middle", fill: "#5d6778", "font-size": 13 }, "No traffic observed in this window"));
  }
  return svg;
}

export function trafficCharts(history, span = "the last hour") {
  const from = history.From * 1000;
  const to = history.To * 1000;
  const points = history.TrafficPoints.TrafficPoint;
  const series = (key) => points.map((p) => [p.Time, p[key]]);
  return [
    lineChart({ title: `Bytes in and out, ${span} (counters of the current SAs)`, from, to, format: fmtBytes, testid: "plot-bytes", series: [
      { name: "in", cls: "in", points: series("BytesIn") },
      { name: "out", cls: "out", points: series("BytesOut") },
    ] }),
    lineChart({ title: `Packets in and out, ${span} (counters of the current SAs)`, from, to, format: (v) => (v < 10 && v % 1 ? v.toFixed(1) : String(Math.round(v))), testid: "plot-packets", series: [
      { name: "in", cls: "in", points: series("PacketsIn") },
      { name: "out", cls: "out", points: series("PacketsOut") },
    ] }),
  ];
}
