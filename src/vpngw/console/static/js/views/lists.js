// The lists: VPCs, VPN gateways, customer gateways and connections, with the API's
// own filters and paging, refreshed live by the shell.

import * as api from "../api.js";
import { clear, firstLine, fmtTime, h, statusPill } from "../dom.js";
import { createPanel, deleteButton } from "./simple_form.js";

const PAGE_SIZES = [10, 20, 50];

/**
 * A paged, filtered table of one Describe action.
 * spec: { title, action, items(body) -> [], filters: [{param, label}], columns: [{label, cell(item)}], tools }
 */
export function listView(spec) {
  const state = { page: 1, size: 10, filters: {} };
  const error = h("div", { class: "error", role: "alert", hidden: true });
  const body = h("tbody");
  const info = h("span", { class: "muted", "data-testid": "pager-info" });
  const prev = h("button", { type: "button", onclick: () => go(state.page - 1) }, "‹ Previous");
  const next = h("button", { type: "button", onclick: () => go(state.page + 1) }, "Next ›");
  const size = h(
    "select",
    { "aria-label": "Page size", onchange: (e) => ((state.size = Number(e.target.value)), go(1)) },
    PAGE_SIZES.map((n) => h("option", { value: String(n) }, `${n} a page`)),
  );
  const inputs = spec.filters.map((f) =>
    h("input", { type: "text", id: `filter-${f.param}`, name: f.param, placeholder: f.placeholder || "", autocomplete: "off" }),
  );
  const filterForm = h(
    "form",
    { class: "row", "data-testid": "filters" },
    spec.filters.map((f, i) => h("div", {}, h("label", { for: inputs[i].id }, f.label), inputs[i])),
    h("div", {}, h("button", { type: "submit" }, "Filter"), " ", h("button", { type: "reset" }, "Clear")),
  );
  filterForm.addEventListener("submit", (e) => {
    e.preventDefault();
    spec.filters.forEach((f, i) => (state.filters[f.param] = inputs[i].value.trim()));
    go(1);
  });
  filterForm.addEventListener("reset", () => {
    state.filters = {};
    setTimeout(() => go(1));
  });
  let total = 0;

  /** The live loop calls refresh(); a reader's own action (paging, a filter) forces it. */
  async function refresh(force = false) {
    // A live refresh would redraw the rows under an open "Delete?" question or its refusal: wait.
    if (!force && body.querySelector(".confirm:not([hidden]), .row-actions .field-error:not([hidden])")) return;
    let response;
    try {
      response = await api.call(spec.action, { ...state.filters, PageNumber: state.page, PageSize: state.size });
    } catch (e) {
      error.textContent = `${e.code}: ${e.message}`;
      error.hidden = false;
      throw e;
    }
    error.hidden = true;
    total = response.TotalCount || 0;
    const items = spec.items(response);
    const pages = Math.max(1, Math.ceil(total / state.size));
    info.textContent = `Page ${state.page} of ${pages} · ${total} in all`;
    prev.disabled = state.page <= 1;
    next.disabled = state.page >= pages;
    clear(body);
    if (!items.length) {
      body.append(h("tr", {}, h("td", { colspan: String(spec.columns.length + (spec.remove ? 1 : 0)), class: "muted" }, "Nothing here yet.")));
    }
    for (const item of items) {
      const cells = spec.columns.map((c) => h("td", { class: c.mono ? "mono" : "" }, c.cell(item)));
      if (spec.remove) cells.push(h("td", {}, deleteButton({ ...spec.remove(item), done: () => refresh(true) })));
      body.append(h("tr", { dataset: { id: spec.id(item) } }, cells));
    }
  }

  function go(page) {
    state.page = Math.max(1, page);
    refresh(true).catch(() => {});
  }

  const el = h(
    "section",
    { "data-testid": `list-${spec.action}` },
    h("div", { class: "row" }, h("h1", {}, spec.title), spec.tools || null),
    spec.create ? createPanel({ ...spec.create, done: () => go(1) }) : null,
    filterForm,
    error,
    h("div", { class: "table-wrap" }, h("table", {}, h("thead", {}, h("tr", {}, spec.columns.map((c) => h("th", {}, c.label)), spec.remove ? h("th", {}, "") : null)), body)),
    h("div", { class: "pager" }, prev, next, info, size),
  );
  return { el, refresh };
}

const link = (hash, text) => h("a", { href: hash }, text);

export function connectionsView() {
  return listView({
    title: "IPsec connections",
    action: "DescribeVpnConnections",
    items: (r) => r.VpnConnections.VpnConnection,
    id: (c) => c.VpnConnectionId,
    tools: h("div", { class: "actions" }, h("a", { href: "#/new-connection", class: "btn primary", "data-testid": "new-connection" }, "Create connection")),
    filters: [
      { param: "VpnConnectionId", label: "VpnConnectionId", placeholder: "vco-…" },
      { param: "VpnGatewayId", label: "VpnGatewayId", placeholder: "vpn-…" },
      { param: "CustomerGatewayId", label: "CustomerGatewayId", placeholder: "cgw-…" },
    ],
    columns: [
      { label: "Name / id", cell: (c) => [link(`#/connection/${c.VpnConnectionId}`, c.Name), h("div", { class: "mono muted" }, c.VpnConnectionId)] },
      { label: "Gateways", mono: true, cell: (c) => [link(`#/gateway/${c.VpnGatewayId}`, c.VpnGatewayId), h("br"), c.CustomerGatewayId] },
      { label: "Subnets (local ⇄ remote)", mono: true, cell: (c) => `${c.LocalSubnet} ⇄ ${c.RemoteSubnet}` },
      { label: "Status", cell: (c) => statusPill(c.Status) },
      { label: "Health check", cell: (c) => healthCell(c.VcoHealthCheck) },
      { label: "Diagnosis", cell: (c) => firstLine(c.Diagnosis) || h("span", { class: "muted" }, "—") },
    ],
  });
}

export function healthCell(check) {
  if (!check || check.Enable !== "true") return h("span", { class: "muted" }, "off");
  const tone = check.Status === "success" ? "up" : "down";
  return h("span", {}, h("span", { class: `dot ${tone}` }), `${check.Status} (${check.Sip} → ${check.Dip})`);
}

export function gatewaysView() {
  return listView({
    title: "VPN gateways",
    action: "DescribeVpnGateways",
    items: (r) => r.VpnGateways.VpnGateway,
    id: (g) => g.VpnGatewayId,
    create: {
      title: "Create VPN gateway",
      action: "CreateVpnGateway",
      fields: [
        { param: "VpcId", label: "VpcId", choices: () => api.call("DescribeVpcs", { PageSize: 50 }).then((r) => r.Vpcs.Vpc.map((v) => [v.VpcId, `${v.VpcId} · ${v.VpcName || v.CidrBlock}`])) },
        { param: "Bandwidth", label: "Bandwidth (Mbit/s)", value: "10", choices: ["5", "10", "20", "50", "100", "200", "500", "1000"].map((b) => [b, b]) },
        { param: "Name", label: "Name", placeholder: "blank: the id" },
        { param: "Description", label: "Description" },
      ],
      errorFields: { "InvalidVpcId.NotFound": "VpcId", InvalidDescription: "Description" },
    },
    remove: (g) => ({ action: "DeleteVpnGateway", params: { VpnGatewayId: g.VpnGatewayId }, what: g.VpnGatewayId }),
    filters: [
      { param: "VpnGatewayId", label: "VpnGatewayId", placeholder: "vpn-…" },
      { param: "VpcId", label: "VpcId", placeholder: "vpc-…" },
      { param: "Status", label: "Status", placeholder: "active" },
    ],
    columns: [
      { label: "Name / id", cell: (g) => [link(`#/gateway/${g.VpnGatewayId}`, g.Name), h("div", { class: "mono muted" }, g.VpnGatewayId)] },
      { label: "VPC", mono: true, cell: (g) => g.VpcId },
      { label: "InternetIp", mono: true, cell: (g) => g.InternetIp },
      { label: "Node", cell: (g) => g.NodeName || h("span", { class: "muted" }, "none") },
      { label: "Status", cell: (g) => h("span", {}, h("span", { class: `dot ${g.Status === "active" ? "up" : "partial"}` }), g.Status) },
      { label: "Spec", cell: (g) => g.Spec },
      { label: "Created", cell: (g) => fmtTime(g.CreateTime) },
    ],
  });
}

export function customerGatewaysView() {
  return listView({
    title: "Customer gateways",
    action: "DescribeCustomerGateways",
    items: (r) => r.CustomerGateways.CustomerGateway,
    id: (c) => c.CustomerGatewayId,
    create: {
      title: "Create customer gateway",
      action: "CreateCustomerGateway",
      fields: [
        { param: "IpAddress", label: "IpAddress", placeholder: "the peer's public IPv4 address" },
        { param: "Name", label: "Name", placeholder: "blank: the id" },
        { param: "Description", label: "Description" },
        { param: "Asn", label: "Asn", placeholder: "optional" },
      ],
      errorFields: { "InvalidIpAddress.WrongFormat": "IpAddress", "InvalidIpAddress.AlreadyExist": "IpAddress", InvalidDescription: "Description" },
    },
    remove: (c) => ({ action: "DeleteCustomerGateway", params: { CustomerGatewayId: c.CustomerGatewayId }, what: c.CustomerGatewayId }),
    filters: [{ param: "CustomerGatewayId", label: "CustomerGatewayId", placeholder: "cgw-…" }],
    columns: [
      { label: "Name / id", cell: (c) => [c.Name, h("div", { class: "mono muted" }, c.CustomerGatewayId)] },
      { label: "IpAddress", mono: true, cell: (c) => c.IpAddress },
      { label: "Asn", cell: (c) => (c.Asn ? String(c.Asn) : "—") },
      { label: "Description", cell: (c) => c.Description || "" },
      { label: "Created", cell: (c) => fmtTime(c.CreateTime) },
    ],
  });
}

export function vpcsView() {
  return listView({
    title: "VPCs",
    action: "DescribeVpcs",
    items: (r) => r.Vpcs.Vpc,
    id: (v) => v.VpcId,
    create: {
      title: "Create VPC",
      action: "CreateVpc",
      fields: [
        { param: "CidrBlock", label: "CidrBlock", value: "172.16.0.0/12" },
        { param: "VpcName", label: "VpcName" },
        { param: "Description", label: "Description" },
      ],
      errorFields: { "InvalidCidrBlock.Malformed": "CidrBlock", InvalidName: "VpcName", InvalidDescription: "Description" },
    },
    remove: (v) => ({ action: "DeleteVpc", params: { VpcId: v.VpcId }, what: v.VpcId }),
    filters: [
      { param: "VpcId", label: "VpcId", placeholder: "vpc-…" },
      { param: "VpcName", label: "VpcName" },
    ],
    columns: [
      { label: "Name / id", cell: (v) => [v.VpcName || h("span", { class: "muted" }, "(no name)"), h("div", { class: "mono muted" }, v.VpcId)] },
      { label: "CidrBlock", mono: true, cell: (v) => v.CidrBlock },
      { label: "Status", cell: (v) => v.Status },
      { label: "Created", cell: (v) => v.CreationTime },
    ],
  });
}
