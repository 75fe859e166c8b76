// The operator's read-only view of the data-plane nodes (DescribeNodes; the operator's
// account only). Draining and moving stay with `vpngw node` on the operator's machine.

import * as api from "../api.js";
import { clear, fmtTime, h } from "../dom.js";

export function nodesView() {
  const body = h("tbody");
  const error = h("div", { class: "error", role: "alert", hidden: true });
  const info = h("p", { class: "muted" });
  async function refresh() {
    let r;
    try {
      r = await api.call("DescribeNodes", {}, { regional: false });
    } catch (e) {
      error.textContent = `${e.code}: ${e.message}`;
      error.hidden = false;
      throw e;
    }
    error.hidden = true;
    const nodes = r.Nodes.Node;
    info.textContent = `${r.TotalCount} node(s); a node is live while its heartbeat is younger than 5 s.`;
    clear(body);
    if (!nodes.length) body.append(h("tr", {}, h("td", { colspan: "7", class: "muted" }, "No data-plane node has registered (vpngw serve --no-dataplane?).")));
    for (const n of nodes) {
      const gateways = n.VpnGateways.VpnGateway;
      body.append(
        h("tr", { dataset: { id: n.NodeName } },
          h("td", {}, h("span", { class: `dot ${n.Live ? "up" : "down"}` }), h("strong", {}, n.NodeName), h("div", { class: "muted" }, n.Live ? "live" : "not live")),
          h("td", {}, n.Backend),
          h("td", {}, `${(n.HeartbeatAgeMs / 1000).toFixed(1)} s ago`, h("div", { class: "muted" }, fmtTime(n.HeartbeatTime))),
          h("td", {}, fmtTime(n.StartedTime)),
          h("td", {}, String(n.Capacity), n.Draining ? h("div", { class: "pill partial" }, "draining") : null),
          h("td", { class: "mono" }, n.Addresses.join(", ") || "—"),
          h("td", { class: "mono" }, gateways.length ? gateways.map((g) => h("div", {}, `${g.VpnGatewayId} (${g.InternetIp}, lease ${(g.LeaseLeftMs / 1000).toFixed(1)} s${g.PinnedNode ? `, pinned` : ""})`)) : "—"),
        ),
      );
    }
  }
  const el = h(
    "section",
    { "data-testid": "nodes-page" },
    h("h1", {}, "Data-plane nodes"),
    info,
    error,
    h("div", { class: "table-wrap" }, h("table", {}, h("thead", {}, h("tr", {}, ["Node", "Backend", "Heartbeat", "Started", "Capacity", "Addresses", "Gateways it runs"].map((t) => h("th", {}, t)))), body)),
  );
  return { el, refresh };
}
