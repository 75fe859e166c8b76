// The console's shell: the secure-context check, sign-in and sign-out, the region
// chooser, the hash router (#/connections, #/connection/vco-..., ...) and live refresh.

import * as api from "./api.js";
import { clear, h } from "./dom.js";
import { signInView } from "./views/signin.js";
import { connectionsView, customerGatewaysView, gatewaysView, vpcsView } from "./views/lists.js";
import { connectionFormView } from "./views/connection_form.js";
import { connectionView } from "./views/connection.js";
import { gatewayView } from "./views/gateway.js";
import { nodesView } from "./views/nodes.js";

const REFRESH_MS = 5000;
const main = document.getElementById("main");
let current = null; // { refresh?: () => Promise<void>, dispose?: () => void }
let refreshing = false;

export function secureEnough() {
  return Boolean(window.isSecureContext && window.crypto && window.crypto.subtle);
}

function routes(path) {
  const parts = path.replace(/^#\/?/, "").split("/").filter(Boolean).map(decodeURIComponent);
  const [head, id, sub] = parts;
  switch (head) {
    case undefined:
    case "connections":
      return ["connections", () => connectionsView()];
    case "gateways":
      return ["gateways", () => gatewaysView()];
    case "customer-gateways":
      return ["customer-gateways", () => customerGatewaysView()];
    case "vpcs":
      return ["vpcs", () => vpcsView()];
    case "nodes":
      return ["nodes", () => nodesView()];
    case "new-connection":
      return ["connections", () => connectionFormView(null)];
    case "connection":
      if (sub === "edit") return ["connections", () => connectionFormView(id)];
      return ["connections", () => connectionView(id)];
    case "gateway":
      return ["gateways", () => gatewayView(id)];
    default:
      return ["", () => ({ el: h("p", { class: "error" }, `No page at ${path}.`) })];
  }
}

async function show() {
  if (current && current.dispose) current.dispose();
  current = null;
  clear(main);
  if (!api.signedIn()) {
    document.getElementById("nav").hidden = true;
    document.getElementById("who").hidden = true;
    main.append(signInView({ secure: secureEnough(), onSignedIn }).el);
    return;
  }
  const [name, make] = routes(location.hash);
  for (const link of document.querySelectorAll("#nav a")) {
    link.classList.toggle("current", link.dataset.view === name);
  }
  const view = make();
  current = view;
  main.append(view.el);
  if (view.refresh) await safeRefresh(view);
}

async function safeRefresh(view) {
  try {
    await view.refresh();
  } catch (error) {
    // A view shows its own errors; this only keeps the loop alive.
    console.warn("refresh failed", error && error.code);
  }
}

function onSignedIn(regions) {
  const select = document.getElementById("region");
  clear(select);
  for (const region of regions) {
    select.append(h("option", { value: region.RegionId }, `${region.RegionId} (${region.LocalName})`));
  }
  select.value = api.region();
  document.getElementById("key-id").textContent = api.accessKeyId();
  document.getElementById("nav").hidden = false;
  document.getElementById("who").hidden = false;
  // The operator's page is offered to the account that may read it.
  api
    .call("DescribeNodes", {}, { regional: false })
    .then(() => (document.getElementById("nav-nodes").hidden = false))
    .catch(() => (document.getElementById("nav-nodes").hidden = true));
  if (!location.hash || location.hash === "#/") {
    location.hash = "#/connections"; // hashchange shows it
  } else {
    show();
  }
}

function signOut() {
  api.signOut();
  document.getElementById("key-id").textContent = "";
  document.getElementById("nav-nodes").hidden = true;
  clear(document.getElementById("region"));
  show();
}

function start() {
  document.getElementById("insecure").hidden = secureEnough();
  document.getElementById("sign-out").addEventListener("click", signOut);
  document.getElementById("region").addEventListener("change", (event) => {
    api.setRegion(event.target.value);
    show();
  });
  window.addEventListener("hashchange", show);
  setInterval(async () => {
    const live = document.getElementById("live");
    if (!current || !current.refresh || !live.checked || refreshing || document.hidden) return;
    refreshing = true;
    try {
      await safeRefresh(current);
    } finally {
      refreshing = false;
    }
  }, REFRESH_MS);
  show();
}

start();
