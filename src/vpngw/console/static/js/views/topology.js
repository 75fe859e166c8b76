// The topology: VPC subnets, the VPN gateway (and the node running it), one tunnel per
// connection, the customer gateways and their remote subnets, coloured by live state,
// with the reason on hover (an SVG <title>).

import { STATUS_WORDS, s } from "../dom.js";

const COLOURS = { up: "#1f8a3b", partial: "#c98a00", down: "#c3362b", unknown: "#7a8290" };
const ROW = 112;

/** Text cut to what fits `width` (about 7 px a character), the whole of it on hover. */
function fitted(text, width, attrs) {
  const max = Math.max(4, Math.floor(width / 7.2));
  const cut = text.length > max ? text.slice(0, max - 1) + "…" : text;
  const el = s("text", attrs, cut);
  if (cut !== text) el.append(s("title", {}, text));
  return el;
}

function box(x, y, w, hgt, lines, { stroke = "#9aa5b8", fill = "#fff", cls = "" } = {}) {
  const g = s("g", { class: `node ${cls}` });
  g.append(s("rect", { x, y, width: w, height: hgt, rx: 8, fill, stroke, "stroke-width": 1.5 }));
  lines.forEach((line, i) => {
    g.append(
      fitted(String(line), w - 16, { x: x + 10, y: y + 20 + i * 17, "font-size": i === 0 ? 13 : 12, "font-weight": i === 0 ? 700 : 400, fill: "#1d2330" }),
    );
  });
  return g;
}

export function toneOf(status) {
  return (STATUS_WORDS[status] || ["unknown"])[0];
}

/**
 * gateway: DescribeVpnGateway; vpc: a DescribeVpcs item or null; connections: connection
 * items; customers: {cgw id: item}.
 */
export function topologySvg({ gateway, vpc, connections, customers }) {
  const n = Math.max(1, connections.length);
  const height = 40 + n * ROW;
  const svg = s("svg", { viewBox: `0 0 900 ${height}`, role: "img", "aria-label": `Topology of ${gateway.VpnGatewayId}`, "data-testid": "topology" });
  const mid = height / 2;
  const locals = [...new Set(connections.flatMap((c) => c.LocalSubnet.split(",")))];
  const vpcLines = [vpc ? `VPC ${vpc.VpcName || vpc.VpcId}` : `VPC ${gateway.VpcId}`, vpc ? vpc.CidrBlock : "", ...locals.slice(0, 5).map((l) => `▸ ${l}`)];
  if (locals.length > 5) vpcLines.push(`… ${locals.length - 5} more`);
  const vpcH = Math.max(60, 26 + vpcLines.length * 17);
  svg.append(box(10, mid - vpcH / 2, 180, vpcH, vpcLines.filter(Boolean), { fill: "#f3f6fb" }));
  const gwLines = [gateway.Name, gateway.InternetIp, gateway.NodeName ? `node ${gateway.NodeName}` : "no node runs it"];
  svg.append(s("line", { x1: 190, y1: mid, x2: 240, y2: mid, stroke: "#9aa5b8", "stroke-width": 2 }));
  const gw = box(240, mid - 40, 170, 80, gwLines, { stroke: gateway.NodeName ? "#2457c5" : COLOURS.down, cls: "gateway" });
  gw.prepend(s("title", {}, `VPN gateway ${gateway.VpnGatewayId}: ${gateway.NodeName ? `runs on node ${gateway.NodeName}` : "no data-plane node runs it now"}`));
  svg.append(gw);
  if (!connections.length) {
    svg.append(s("text", { x: 440, y: mid + 4, "font-size": 13, fill: "#5d6778" }, "No IPsec connection on this gateway yet"));
  }
  connections.forEach((c, i) => {
    const y = 20 + i * ROW + ROW / 2;
    const tone = toneOf(c.Status);
    const colour = COLOURS[tone];
    const word = (STATUS_WORDS[c.Status] || ["", c.Status])[1];
    const reason = `${c.Name} (${c.VpnConnectionId}): ${word} [${c.Status}]` + (c.Diagnosis ? `\n${c.Diagnosis}` : "");
    const g = s("g", { class: `tunnel ${tone}`, "data-state": tone, "data-connection": c.VpnConnectionId });
    g.append(s("title", {}, reason));
    g.append(s("path", { d: `M410,${mid} C470,${mid} 470,${y} 530,${y}`, fill: "none", stroke: colour, "stroke-width": tone === "up" ? 5 : 3, "stroke-dasharray": tone === "up" ? "" : "8 5" }));
    g.append(fitted(word, 110, { x: 414, y: y - 8, "font-size": 11, fill: colour, "font-weight": 700 }));
    const customer = customers[c.CustomerGatewayId] || {};
    g.append(box(530, y - 36, 170, 72, [customer.Name || c.CustomerGatewayId, customer.IpAddress || "", c.Name], { stroke: colour }));
    g.append(s("line", { x1: 700, y1: y, x2: 730, y2: y, stroke: colour, "stroke-width": 2 }));
    const remotes = c.RemoteSubnet.split(",");
    const rLines = ["Remote subnets", ...remotes.slice(0, 3)];
    if (remotes.length > 3) rLines.push(`… ${remotes.length - 3} more`);
    g.append(box(730, y - 36, 160, Math.max(72, 26 + rLines.length * 17), rLines, { stroke: colour, fill: "#fbfcfe" }));
    svg.append(g);
  });
  return svg;
}
