// A VPN gateway's page: its details and all its connections in one topology picture.

import * as api from "../api.js";
import { clear, fmtTime, h } from "../dom.js";
import { topologySvg } from "./topology.js";

export async function loadTopology(vpnGatewayId) {
  const gateway = await api.call("DescribeVpnGateway", { VpnGatewayId: vpnGatewayId });
  const [vpcs, connections, customers] = await Promise.all([
    api.call("DescribeVpcs", { VpcId: gateway.VpcId }).then((r) => r.Vpcs.Vpc),
    api.call("DescribeVpnConnections", { VpnGatewayId: vpnGatewayId, PageSize: 50 }).then((r) => r.VpnConnections.VpnConnection),
    api.call("DescribeCustomerGateways", { PageSize: 50 }).then((r) => r.CustomerGateways.CustomerGateway),
  ]);
  const byId = Object.fromEntries(customers.map((c) => [c.CustomerGatewayId, c]));
  // Customer gateways past the first 50: fetched one by one.
  for (const c of connections) {
    if (!byId[c.CustomerGatewayId]) byId[c.CustomerGatewayId] = await api.call("DescribeCustomerGateway", { CustomerGatewayId: c.CustomerGatewayId });
  }
  return { gateway, vpc: vpcs[0] || null, connections, customers: byId };
}

/** On a narrow screen the picture scrolls sideways: start with its middle (the tunnels) in view. */
export function centre(wrap) {
  if (wrap.scrollWidth > wrap.clientWidth) wrap.scrollLeft = (wrap.scrollWidth - wrap.clientWidth) / 2;
}

export function gatewayView(vpnGatewayId) {
  const details = h("div");
  const picture = h("div", { class: "topo-wrap" });
  const error = h("div", { class: "error", role: "alert", hidden: true });
  async function refresh() {
    let data;
    try {
      data = await loadTopology(vpnGatewayId);
    } catch (e) {
      error.textContent = `${e.code}: ${e.message}`;
      error.hidden = false;
      throw e;
    }
    error.hidden = true;
    const g = data.gateway;
    clear(details).append(
      h("dl", { class: "kv card" },
        h("dt", {}, "VpnGatewayId"), h("dd", { class: "mono" }, g.VpnGatewayId),
        h("dt", {}, "VPC"), h("dd", { class: "mono" }, g.VpcId),
        h("dt", {}, "InternetIp"), h("dd", { class: "mono" }, g.InternetIp),
        h("dt", {}, "Node"), h("dd", {}, g.NodeName || "none runs it now"),
        h("dt", {}, "Status"), h("dd", {}, g.Status),
        h("dt", {}, "Spec"), h("dd", {}, g.Spec),
        h("dt", {}, "Created"), h("dd", {}, fmtTime(g.CreateTime)),
        h("dt", {}, "Connections"), h("dd", {}, h("a", { href: `#/connections` }, `${data.connections.length}`)),
      ),
    );
    clear(picture).append(topologySvg(data));
    centre(picture);
  }
  return { el: h("section", { "data-testid": "gateway-page" }, h("h1", {}, `VPN gateway ${vpnGatewayId}`), error, h("div", { class: "card" }, h("h2", {}, "Topology"), picture), details), refresh };
}
