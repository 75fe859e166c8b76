// A connection's page: both phases, the health check, the Diagnosis in full, its
// topology, the traffic of the last hour, charon's negotiation log with a filter, the
// configuration download and delete (asked once).

import * as api from "../api.js";
import { clear, fmtBytes, fmtTime, h, statusPill } from "../dom.js";
import { healthCell } from "./lists.js";
import { centre, loadTopology } from "./gateway.js";
import { saveFile, swanctlConf } from "./peer_config.js";
import { trafficCharts } from "./plot.js";
import { topologySvg } from "./topology.js";

/** [IKE SA, IPsec SA] as [tone, word] from the connection's Status. */
export function phases(status) {
  switch (status) {
    case "ipsec_sa_established":
      return [["up", "Established"], ["up", "Established"]];
    case "ike_sa_established":
      return [["up", "Established"], ["partial", "Negotiating"]];
    case "ipsec_sa_not_established":
      return [["up", "Established"], ["down", "Failed"]];
    default:
      return [["down", "Not established"], ["down", "Not established"]];
  }
}

const MAX_LOG_PAGES = 10;

export function connectionView(connectionId) {
  const head = h("div");
  const phaseBox = h("div", { class: "phases", "data-testid": "phases" });
  const diagnosis = h("div", { class: "diagnosis", "data-testid": "diagnosis" });
  const picture = h("div", { class: "topo-wrap", "data-testid": "connection-topology" });
  const plots = h("div", { "data-testid": "traffic" });
  const counters = h("p", { class: "muted", "data-testid": "counters" });
  const settings = h("div");
  const error = h("div", { class: "error", role: "alert", hidden: true });
  const WINDOWS = { 3600: "the last hour", 21600: "the last 6 hours", 86400: "the last 24 hours" };
  const trafficWindow = h("select", { id: "traffic-window", "aria-label": "Traffic window" }, Object.entries(WINDOWS).map(([s, label]) => h("option", { value: s }, label)));
  trafficWindow.addEventListener("change", () => loadTraffic().catch(showError));
  const logMinutes = h("select", { id: "log-minutes", "aria-label": "Log window" }, [1, 5, 10].map((m) => h("option", { value: String(m), selected: m === 10 }, `last ${m} min`)));
  const logFilter = h("input", { type: "text", id: "log-filter", placeholder: "e.g. IKE, authentication, NO_PROPOSAL", autocomplete: "off" });
  const logCount = h("span", { class: "muted", "data-testid": "log-count" });
  const logBox = h("pre", { class: "log", "data-testid": "log" });
  let logLines = [];
  let current = null;

  function renderLog() {
    const needle = logFilter.value.trim().toLowerCase();
    const shown = needle ? logLines.filter((line) => line.toLowerCase().includes(needle)) : logLines;
    // Oldest first, as charon wrote them: follow the newest line unless the reader scrolled up.
    const following = logBox.scrollTop + logBox.clientHeight >= logBox.scrollHeight - 4;
    logBox.textContent = shown.join("\n") || "(no line in this window)";
    if (following) logBox.scrollTop = logBox.scrollHeight;
    logCount.textContent = `${shown.length} of ${logLines.length} lines`;
  }
  logFilter.addEventListener("input", renderLog);
  logMinutes.addEventListener("change", () => loadLog().catch(() => {}));

  async function loadLog() {
    const lines = [];
    for (let page = 1; page <= MAX_LOG_PAGES; page += 1) {
      const r = await api.call("DescribeVpnConnectionLogs", { VpnConnectionId: connectionId, MinutePeriod: logMinutes.value, PageNumber: page, PageSize: 50 });
      lines.push(...r.Data.Logs);
      if (r.IsCompleted) break;
    }
    logLines = lines;
    renderLog();
  }

  async function loadTraffic() {
    const seconds = Number(trafficWindow.value);
    const history = await api.call("DescribeVpnConnectionTraffic", { VpnConnectionId: connectionId, From: Math.floor(Date.now() / 1000) - seconds });
    clear(plots).append(h("div", { class: "plot-legend" }, h("span", {}, h("span", { class: "swatch in" }), "in"), h("span", {}, h("span", { class: "swatch out" }), "out")), h("div", { class: "plots" }, ...trafficCharts(history, WINDOWS[seconds])));
  }

  async function download(kind) {
    const r = await api.call("DownloadVpnConnectionConfig", { VpnConnectionId: connectionId });
    if (kind === "json") saveFile(`${connectionId}.json`, JSON.stringify(r.VpnConnectionConfig, null, 2) + "\n", "application/json");
    else saveFile(`${connectionId}.swanctl.conf`, swanctlConf(connectionId, r.VpnConnectionConfig));
  }

  const confirmBox = h("span", { hidden: true, "data-testid": "confirm-delete" },
    "Delete this connection? ",
    h("button", { type: "button", class: "danger", onclick: () => remove() }, "Yes, delete"), " ",
    h("button", { type: "button", onclick: () => (confirmBox.hidden = true) }, "Keep it"),
  );
  async function remove() {
    try {
      await api.call("DeleteVpnConnection", { VpnConnectionId: connectionId, ClientToken: crypto.randomUUID() });
      location.hash = "#/connections";
    } catch (e) {
      error.textContent = `${e.code}: ${e.message}`;
      error.hidden = false;
    }
  }
  const actions = h("div", { class: "actions" },
    h("a", { class: "btn", href: `#/connection/${connectionId}/edit`, "data-testid": "modify" }, "Modify"),
    h("button", { type: "button", "data-testid": "download-swanctl", onclick: () => download("swanctl").catch(showError) }, "Download swanctl.conf"),
    h("button", { type: "button", "data-testid": "download-json", onclick: () => download("json").catch(showError) }, "Download JSON"),
    h("button", { type: "button", class: "danger", "data-testid": "delete", onclick: () => (confirmBox.hidden = false) }, "Delete…"),
    confirmBox,
  );

  function showError(e) {
    error.textContent = `${e.code || "Error"}: ${e.message}`;
    error.hidden = false;
  }

  async function refresh() {
    let c;
    try {
      c = await api.call("DescribeVpnConnection", { VpnConnectionId: connectionId });
    } catch (e) {
      showError(e);
      throw e;
    }
    error.hidden = true;
    current = c;
    clear(head).append(
      h("h1", {}, c.Name, " ", statusPill(c.Status)),
      h("p", { class: "mono muted" }, `${c.VpnConnectionId} · created ${fmtTime(c.CreateTime)} · State ${c.State}`),
    );
    const [ike, ipsec] = phases(c.Status);
    clear(phaseBox).append(
      phase("Phase 1 · IKE SA", ike, `IKE ${c.IkeConfig.IkeVersion}, ${c.IkeConfig.IkeEncAlg}/${c.IkeConfig.IkeAuthAlg}/${c.IkeConfig.IkePfs}`, "phase-ike"),
      phase("Phase 2 · IPsec SA", ipsec, `ESP ${c.IpsecConfig.IpsecEncAlg}/${c.IpsecConfig.IpsecAuthAlg}/${c.IpsecConfig.IpsecPfs}`, "phase-ipsec"),
      h("div", { class: "phase", "data-testid": "phase-health" }, h("div", { class: "name" }, "Health check"), h("div", { class: "state" }, healthCell(c.VcoHealthCheck))),
    );
    diagnosis.className = c.Diagnosis ? "diagnosis" : "diagnosis none";
    diagnosis.textContent = c.Diagnosis || "Nothing fails.";
    const t = c.TrafficStatistics;
    counters.textContent = `Current SAs: ${fmtBytes(t.BytesIn)} / ${t.PacketsIn} packets in, ${fmtBytes(t.BytesOut)} / ${t.PacketsOut} packets out.`;
    clear(settings).append(settingsList(c));
    const [topology] = await Promise.all([loadTopology(c.VpnGatewayId), loadTraffic(), loadLog()]);
    topology.connections = topology.connections.filter((x) => x.VpnConnectionId === connectionId);
    clear(picture).append(topologySvg(topology), h("p", {}, h("a", { href: `#/gateway/${c.VpnGatewayId}` }, "All connections of this gateway")));
    centre(picture);
  }

  const el = h(
    "section",
    { "data-testid": "connection-page" },
    head,
    error,
    actions,
    h("div", { class: "card" }, h("h2", {}, "Tunnel"), phaseBox),
    h("div", { class: "card" }, h("h2", {}, "Diagnosis"), diagnosis),
    h("div", { class: "card" }, h("h2", {}, "Topology"), picture),
    h("div", { class: "card" }, h("h2", {}, "Traffic"), h("div", { class: "row" }, h("div", {}, h("label", { for: "traffic-window" }, "Window"), trafficWindow), counters), plots),
    h("div", { class: "card" }, h("h2", {}, "Negotiation log"),
      h("div", { class: "row" }, h("div", {}, h("label", { for: "log-filter" }, "Filter"), logFilter), h("div", {}, h("label", { for: "log-minutes" }, "Window"), logMinutes), logCount),
      logBox),
    h("div", { class: "card" }, h("h2", {}, "Settings"), settings),
  );
  return { el, refresh, current: () => current };
}

function phase(name, [tone, word], detail, testid) {
  return h("div", { class: "phase", "data-testid": testid, dataset: { state: tone } }, h("div", { class: "name" }, name), h("div", { class: "state" }, h("span", { class: `dot ${tone}` }), word), h("div", { class: "muted" }, detail));
}

function settingsList(c) {
  const rows = [
    ["VpnGatewayId", h("a", { href: `#/gateway/${c.VpnGatewayId}` }, c.VpnGatewayId)],
    ["CustomerGatewayId", c.CustomerGatewayId],
    ["LocalSubnet", c.LocalSubnet],
    ["RemoteSubnet", c.RemoteSubnet],
    ["EffectImmediately", String(c.EffectImmediately)],
    ["AutoConfigRoute", String(c.AutoConfigRoute)],
    ["EnableDpd", String(c.EnableDpd)],
    ["EnableNatTraversal", String(c.EnableNatTraversal)],
    ["IkeConfig", Object.entries(c.IkeConfig).filter(([k]) => k !== "Psk").map(([k, v]) => `${k}=${v}`).join(", ") + ", Psk=(hidden; in the download)"],
    ["IpsecConfig", Object.entries(c.IpsecConfig).map(([k, v]) => `${k}=${v}`).join(", ")],
  ];
  return h("dl", { class: "kv" }, rows.flatMap(([k, v]) => [h("dt", {}, k), h("dd", { class: "mono" }, v)]));
}
