// Sign in with an AccessKey pair. The secret is read from the field once, turned into
// a non-extractable CryptoKey, and the field is emptied: it is kept nowhere else.

import * as api from "../api.js";
import { h } from "../dom.js";

export function signInView({ secure, onSignedIn }) {
  const id = h("input", { type: "text", id: "access-key-id", name: "AccessKeyId", autocomplete: "off", spellcheck: "false", required: true });
  const secret = h("input", { type: "password", id: "access-key-secret", name: "AccessKeySecret", autocomplete: "off", required: true });
  const message = h("div", { class: "error", role: "alert", hidden: true, "data-testid": "signin-error" });
  const button = h("button", { type: "submit", class: "primary", disabled: !secure }, "Sign in");
  const form = h(
    "form",
    { class: "card", "data-testid": "signin-form" },
    h("h1", {}, "Sign in"),
    h("p", { class: "muted" }, "With an AccessKey pair of your vpngw account. The secret stays in this tab's memory only and is forgotten when you sign out or reload."),
    h("div", {}, h("label", { for: "access-key-id" }, "AccessKeyId"), id),
    h("div", { class: "spaced" }, h("label", { for: "access-key-secret" }, "AccessKeySecret"), secret),
    message,
    h("div", { class: "actions" }, button),
    secure ? null : h("p", { class: "error" }, "Signing needs a secure context (HTTPS, or loopback such as http://127.0.0.1). This page is not in one."),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    message.hidden = true;
    button.disabled = true;
    const given = secret.value;
    secret.value = "";
    try {
      const regions = await api.signIn(id.value, given);
      onSignedIn(regions);
    } catch (error) {
      message.textContent = `${error.code || "Error"}: ${error.message.split(" server string to sign is:")[0]}`;
      message.hidden = false;
      secret.focus();
    } finally {
      button.disabled = !secure;
    }
  });
  return { el: h("div", { class: "signin" }, form) };
}
