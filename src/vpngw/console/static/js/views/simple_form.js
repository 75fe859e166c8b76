// Small create forms (a VPC, a VPN gateway, a customer gateway) and a row's delete:
// the same rules as the connection form (a ClientToken per submitted content, the
// API's error at the field it names, delete asks once).

import * as api from "../api.js";
import { h } from "../dom.js";
import { fieldOfError } from "./connection_form.js";

/**
 * spec: { title, action, fields: [{ param, label, type?, choices?, placeholder?, value? }],
 *         errorFields?: { code: param }, done(response) }
 * A field's choices may be a function returning a promise of [value, label] pairs.
 */
export function createPanel(spec) {
  const inputs = {};
  const banner = h("div", { class: "error", role: "alert", hidden: true });
  let lastSent = null;
  const slots = spec.fields.map((f) => {
    const id = `c-${spec.action}-${f.param}`;
    let input;
    if (f.choices) {
      input = h("select", { id });
      Promise.resolve(typeof f.choices === "function" ? f.choices() : f.choices).then((pairs) => {
        for (const [value, label] of pairs) input.append(h("option", { value, selected: String(f.value) === value }, label));
      });
    } else {
      input = h("input", { type: "text", id, value: f.value || "", placeholder: f.placeholder || "", autocomplete: "off", spellcheck: "false" });
    }
    inputs[f.param] = input;
    return h("div", { class: "field", dataset: { field: f.param } }, h("label", { for: id }, f.label), input, h("div", { class: "field-error", role: "alert", hidden: true }));
  });
  const submit = h("button", { type: "submit", class: "primary" }, spec.title);
  const form = h("form", { class: "card", novalidate: true, "data-testid": `create-${spec.action}` }, h("div", { class: "grid" }, slots), banner, h("div", { class: "actions" }, submit));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (submit.disabled) return;
    banner.hidden = true;
    for (const box of form.querySelectorAll(".field-error")) box.hidden = true;
    for (const input of form.querySelectorAll(".invalid")) input.classList.remove("invalid");
    const params = {};
    for (const [param, input] of Object.entries(inputs)) if (input.value.trim() !== "") params[param] = input.value.trim();
    const content = JSON.stringify(params);
    if (!lastSent || lastSent.content !== content) lastSent = { content, token: crypto.randomUUID() };
    submit.disabled = true;
    try {
      const response = await api.call(spec.action, { ...params, ClientToken: lastSent.token });
      for (const [param, input] of Object.entries(inputs)) if (input.tagName === "INPUT") input.value = (spec.fields.find((f) => f.param === param) || {}).value || "";
      lastSent = null;
      details.open = false;
      await spec.done(response);
    } catch (error) {
      const field = (spec.errorFields || {})[error.code] || fieldOfError(error.code || "");
      const holder = field && form.querySelector(`[data-field="${CSS.escape(field)}"]`);
      const text = `${error.code}: ${error.message}`;
      if (holder) {
        const box = holder.querySelector(".field-error");
        box.textContent = text;
        box.hidden = false;
        inputs[field].classList.add("invalid");
      } else {
        banner.textContent = text;
        banner.hidden = false;
      }
    } finally {
      submit.disabled = false;
    }
  });
  const details = h("details", { class: "create" }, h("summary", { class: "btn primary" }, `${spec.title}…`), form);
  return details;
}

/** A row's Delete… that asks once, then calls `action` with `params`. */
export function deleteButton({ action, params, done, what }) {
  const error = h("div", { class: "field-error", role: "alert", hidden: true });
  const confirmBox = h(
    "span",
    { hidden: true, class: "confirm" },
    `Delete ${what}? `,
    h("button", { type: "button", class: "danger", onclick: () => remove() }, "Yes, delete"),
    " ",
    h("button", { type: "button", onclick: () => (confirmBox.hidden = true) }, "Keep it"),
  );
  async function remove() {
    try {
      await api.call(action, { ...params, ClientToken: crypto.randomUUID() });
      await done();
    } catch (e) {
      error.textContent = `${e.code}: ${e.message}`;
      error.hidden = false;
      confirmBox.hidden = true;
    }
  }
  return h("div", { class: "row-actions" }, h("button", { type: "button", class: "danger", onclick: () => ((confirmBox.hidden = false), (error.hidden = true)) }, "Delete…"), confirmBox, error);
}
