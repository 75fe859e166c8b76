// Create or modify a connection with every parameter of CreateVpnConnection: the
// IkeConfig, IpsecConfig and HealthCheckConfig sub-forms start from the spec's defaults
// (or the stored values), a ClientToken is made per submitted content (so a double
// click creates one connection), and an API error is shown at the field it names.

import * as api from "../api.js";
import { h } from "../dom.js";

const ENC = ["aes", "aes192", "aes256", "des", "3des"];
const AUTH = ["md5", "sha1", "sha256", "sha384", "sha512"];
const GROUPS = ["group1", "group2", "group5", "group14", "group24"];

// The spec's defaults (src/vpngw/rules/tunnel_config.py).
export const DEFAULTS = {
  IkeConfig: { Psk: "", IkeVersion: "ikev1", IkeMode: "main", IkeEncAlg: "aes", IkeAuthAlg: "md5", IkePfs: "group2", IkeLifetime: 86400, LocalId: "", RemoteId: "" },
  IpsecConfig: { IpsecEncAlg: "aes", IpsecAuthAlg: "md5", IpsecPfs: "group2", IpsecLifetime: 86400 },
  HealthCheckConfig: { Enable: false, Sip: "", Dip: "", Interval: 3, Retry: 3, Policy: "revoke_route" },
};

const SUBFORMS = {
  IkeConfig: [
    ["Psk", "text", null, "blank: 16 random letters and digits"],
    ["IkeVersion", "select", ["ikev1", "ikev2"]],
    ["IkeMode", "select", ["main", "aggressive"]],
    ["IkeEncAlg", "select", ENC],
    ["IkeAuthAlg", "select", AUTH],
    ["IkePfs", "select", GROUPS],
    ["IkeLifetime", "number", null, "0–86400 s"],
    ["LocalId", "text", null, "blank: the gateway's InternetIp"],
    ["RemoteId", "text", null, "blank: the customer gateway's IP"],
  ],
  IpsecConfig: [
    ["IpsecEncAlg", "select", ENC],
    ["IpsecAuthAlg", "select", AUTH],
    ["IpsecPfs", "select", ["disabled", ...GROUPS]],
    ["IpsecLifetime", "number", null, "0–86400 s"],
  ],
  HealthCheckConfig: [
    ["Enable", "checkbox"],
    ["Sip", "text", null, "an address of LocalSubnet"],
    ["Dip", "text", null, "an address of RemoteSubnet"],
    ["Interval", "number", null, "1–60 s"],
    ["Retry", "number", null, "1–10"],
    ["Policy", "select", ["revoke_route", "reserve_route"]],
  ],
};

/** The form field an error code names: IllegalParam.LocalSubnet -> LocalSubnet, ... */
export function fieldOfError(code) {
  const special = {
    InvalidName: "Name",
    "InvalidVpnGatewayInstanceId.NotFound": "VpnGatewayId",
    "InvalidCustomerGatewayInstanceId.NotFound": "CustomerGatewayId",
    "VpnConnection.SubnetConflict": "LocalSubnet",
    "OperationUnsupported.DestinationRouting": "LocalSubnet",
    "OperationUnsupported.Bgp": "BgpConfig",
    "Resource.QuotaFull": "VpnGatewayId",
  };
  if (special[code]) return special[code];
  const [kind, ...rest] = code.split(".");
  if (["IllegalParam", "InvalidParameter", "MissingParameter"].includes(kind) && rest.length) return rest.join(".");
  return "";
}

function control(id, type, choices, hint, value) {
  if (type === "select") {
    return h("select", { id }, choices.map((c) => h("option", { value: c, selected: String(value) === c }, c)));
  }
  if (type === "checkbox") return h("input", { type: "checkbox", id, checked: Boolean(value) });
  return h("input", { type: type === "number" ? "number" : "text", id, value: value === undefined ? "" : String(value), placeholder: hint || "", autocomplete: "off", spellcheck: "false" });
}

function slot(field, label, input, hint) {
  return h(
    "div",
    { class: "field", dataset: { field } },
    input.type === "checkbox" ? h("label", { class: "inline", for: input.id }, input, label) : [h("label", { for: input.id }, label), input],
    hint && input.type !== "checkbox" ? h("div", { class: "muted small" }, hint) : null,
    h("div", { class: "field-error", role: "alert", hidden: true }),
  );
}

export function connectionFormView(connectionId) {
  const editing = Boolean(connectionId);
  const el = h("section", { "data-testid": editing ? "modify-connection" : "create-connection" });
  const banner = h("div", { class: "error", role: "alert", hidden: true, "data-testid": "form-error" });
  const inputs = {};
  let lastSent = null; // { content, token }
  let initial = null; // the parameters as the form opened

  async function build() {
    let current = null;
    if (editing) {
      try {
        current = await api.call("DescribeVpnConnection", { VpnConnectionId: connectionId });
      } catch (e) {
        el.append(h("p", { class: "error" }, `${e.code}: ${e.message}`));
        return;
      }
    }
    const [gateways, customers] = editing ? [[], []] : await Promise.all([allOf("DescribeVpnGateways", (r) => r.VpnGateways.VpnGateway), allOf("DescribeCustomerGateways", (r) => r.CustomerGateways.CustomerGateway)]);
    const top = [];
    const add = (field, label, input, hint) => {
      inputs[field] = input;
      top.push(slot(field, label, input, hint));
    };
    add("Name", "Name", control("f-Name", "text", null, "2–128 characters; blank: the id", current ? current.Name : ""));
    if (editing) {
      top.push(h("div", {}, h("label", {}, "VpnGatewayId"), h("div", { class: "mono" }, current.VpnGatewayId)));
      top.push(h("div", {}, h("label", {}, "CustomerGatewayId"), h("div", { class: "mono" }, current.CustomerGatewayId)));
    } else {
      add("VpnGatewayId", "VpnGatewayId", h("select", { id: "f-VpnGatewayId" }, gateways.map((g) => h("option", { value: g.VpnGatewayId }, `${g.VpnGatewayId} · ${g.Name} · ${g.InternetIp}`))));
      add("CustomerGatewayId", "CustomerGatewayId", h("select", { id: "f-CustomerGatewayId" }, customers.map((c) => h("option", { value: c.CustomerGatewayId }, `${c.CustomerGatewayId} · ${c.Name} · ${c.IpAddress}`))));
    }
    add("LocalSubnet", "LocalSubnet", control("f-LocalSubnet", "text", null, "10.1.1.0/24,10.1.2.0/24", current ? current.LocalSubnet : ""));
    add("RemoteSubnet", "RemoteSubnet", control("f-RemoteSubnet", "text", null, "10.10.1.0/24", current ? current.RemoteSubnet : ""));
    const checks = [];
    for (const [field, value] of [
      ["EffectImmediately", current ? current.EffectImmediately : false],
      ["AutoConfigRoute", current ? current.AutoConfigRoute : false],
      ["EnableDpd", current ? current.EnableDpd : true],
      ["EnableNatTraversal", current ? current.EnableNatTraversal : true],
    ]) {
      inputs[field] = control(`f-${field}`, "checkbox", null, null, value);
      checks.push(slot(field, field, inputs[field]));
    }
    const stored = current
      ? {
          IkeConfig: current.IkeConfig,
          IpsecConfig: current.IpsecConfig,
          HealthCheckConfig: {
            Enable: current.VcoHealthCheck.Enable === "true",
            Sip: current.VcoHealthCheck.Sip,
            Dip: current.VcoHealthCheck.Dip,
            Interval: current.VcoHealthCheck.Interval,
            Retry: current.VcoHealthCheck.Retry,
            Policy: current.VcoHealthCheck.Policy,
          },
        }
      : DEFAULTS;
    const sets = Object.entries(SUBFORMS).map(([param, keys]) =>
      h(
        "fieldset",
        { dataset: { field: param } },
        h("legend", {}, param),
        h("div", { class: "field-error", role: "alert", hidden: true }),
        h(
          "div",
          { class: "grid" },
          keys.map(([key, type, choices, hint]) => {
            const field = `${param}.${key}`;
            inputs[field] = control(`f-${param}-${key}`, type, choices, hint, stored[param][key]);
            return slot(field, key, inputs[field], type === "number" ? hint : null);
          }),
        ),
      ),
    );
    inputs.BgpConfig = control("f-BgpConfig", "checkbox", null, null, false);
    const bgp = h("fieldset", { dataset: { field: "BgpConfig" } }, h("legend", {}, "BgpConfig"), slot("BgpConfig", "EnableBgp (BGP over IPsec is not offered by vpngw)", inputs.BgpConfig));
    const submit = h("button", { type: "submit", class: "primary", "data-testid": "submit-connection" }, editing ? "Save changes" : "Create connection");
    const form = h(
      "form",
      { class: "card", novalidate: true },
      h("div", { class: "grid" }, top),
      h("div", { class: "checks" }, checks),
      sets,
      bgp,
      banner,
      h("div", { class: "actions" }, submit, h("a", { href: editing ? `#/connection/${connectionId}` : "#/connections", class: "btn" }, "Cancel")),
    );
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      if (submit.disabled) return;
      submit.disabled = true;
      try {
        await send();
      } finally {
        submit.disabled = false;
      }
    });
    el.append(h("h1", {}, editing ? `Modify ${current.Name}` : "Create an IPsec connection"), form);
    initial = params();
  }

  function params() {
    const value = (field) => {
      const input = inputs[field];
      return input.type === "checkbox" ? input.checked : input.value.trim();
    };
    const out = {};
    for (const field of ["Name", "VpnGatewayId", "CustomerGatewayId", "LocalSubnet", "RemoteSubnet"]) {
      if (inputs[field] && value(field) !== "") out[field] = value(field);
    }
    for (const field of ["EffectImmediately", "AutoConfigRoute", "EnableDpd", "EnableNatTraversal"]) out[field] = value(field) ? "true" : "false";
    for (const [param, keys] of Object.entries(SUBFORMS)) {
      const config = {};
      for (const [key, type] of keys) {
        const v = value(`${param}.${key}`);
        if (type === "checkbox") config[key] = v;
        else if (v !== "") config[key] = type === "number" && /^-?\d+$/.test(v) ? Number(v) : v;
      }
      out[param] = JSON.stringify(config);
    }
    out.BgpConfig = JSON.stringify({ EnableBgp: inputs.BgpConfig.checked });
    return out;
  }

  function clearErrors() {
    banner.hidden = true;
    for (const box of el.querySelectorAll(".field-error")) box.hidden = true;
    for (const input of el.querySelectorAll(".invalid")) input.classList.remove("invalid");
  }

  function showError(error) {
    const field = fieldOfError(error.code || "");
    const text = `${error.code}: ${error.message}`;
    const holder = field ? el.querySelector(`[data-field="${CSS.escape(field)}"]`) || el.querySelector(`[data-field="${CSS.escape(field.split(".")[0])}"]`) : null;
    if (holder) {
      const box = holder.querySelector(".field-error");
      box.textContent = text;
      box.hidden = false;
      const input = inputs[field] || inputs[field.split(".")[0]];
      if (input) {
        input.classList.add("invalid");
        input.focus();
      }
      holder.scrollIntoView({ block: "center" });
    } else {
      banner.textContent = text;
      banner.hidden = false;
    }
  }

  async function send() {
    clearErrors();
    const given = params();
    if (editing) {
      // An unchanged health check is not resent: resending it restarts its verdict.
      for (const param of ["HealthCheckConfig", "BgpConfig"]) if (given[param] === initial[param]) delete given[param];
    }
    const content = JSON.stringify(given);
    // The same content submitted again (a double click, a retry) keeps its token, so
    // the API replays the first result instead of creating a second connection.
    if (!lastSent || lastSent.content !== content) lastSent = { content, token: crypto.randomUUID() };
    try {
      if (editing) {
        await api.call("ModifyVpnConnectionAttribute", { ...given, VpnConnectionId: connectionId, ClientToken: lastSent.token });
        location.hash = `#/connection/${connectionId}`;
      } else {
        const created = await api.call("CreateVpnConnection", { ...given, ClientToken: lastSent.token });
        location.hash = `#/connection/${created.VpnConnectionId}`;
      }
    } catch (error) {
      showError(error);
    }
  }

  build().catch((e) => el.append(h("p", { class: "error" }, `${e.code || "Error"}: ${e.message}`)));
  return { el };
}

async function allOf(action, items) {
  const all = [];
  for (let page = 1; page <= 20; page += 1) {
    const body = await api.call(action, { PageNumber: page, PageSize: 50 });
    all.push(...items(body));
    if (all.length >= body.TotalCount || !items(body).length) break;
  }
  return all;
}
