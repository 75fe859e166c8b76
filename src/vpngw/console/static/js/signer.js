// ACS3-HMAC-SHA256 request signing with WebCrypto, byte for byte what the server's
// verifier (src/vpngw/auth/signatures.py, canonical_request) recomputes:
//
//   CanonicalRequest = METHOD \n "/" \n CanonicalQuery \n CanonicalHeaders \n SignedHeaders \n hex(sha256(body))
//   StringToSign     = "ACS3-HMAC-SHA256\n" + hex(sha256(CanonicalRequest))
//   Signature        = hex(HMAC-SHA256(AccessKeySecret, StringToSign))
//
// Every API parameter travels in the form body (covered by the payload hash), never in
// the URL, so neither a Psk nor anything else of a call shows in a request URL. The
// secret itself is held only as a non-extractable CryptoKey (see importSecret).

export const ALGORITHM = "ACS3-HMAC-SHA256";
export const API_VERSION = "2016-04-28";

const encoder = new TextEncoder();

/** RFC 3986 percent-encoding: A-Z a-z 0-9 - _ . ~ stay, everything else is %XX (upper case). */
export function pct(text) {
  return encodeURIComponent(text).replace(
    /[!'()*]/g,
    (ch) => "%" + ch.charCodeAt(0).toString(16).toUpperCase(),
  );
}

function hex(buffer) {
  return Array.from(new Uint8Array(buffer), (b) => b.toString(16).padStart(2, "0")).join("");
}

export async function sha256Hex(text) {
  return hex(await crypto.subtle.digest("SHA-256", encoder.encode(text)));
}

/** The secret as an HMAC key that script cannot read back (extractable: false). */
export async function importSecret(secret) {
  return crypto.subtle.importKey(
    "raw",
    encoder.encode(secret),
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign"],
  );
}

/** YYYY-MM-DDThh:mm:ssZ in UTC, the form the SDKs send. */
export function acsDate(now = new Date()) {
  return now.toISOString().replace(/\.\d{3}Z$/, "Z");
}

export function newNonce() {
  return hex(crypto.getRandomValues(new Uint8Array(16)));
}

/** The form body: pct(key)=pct(value) joined by &, in the given order. */
export function formBody(params) {
  return Object.entries(params)
    .map(([key, value]) => `${pct(key)}=${pct(String(value))}`)
    .join("&");
}

/**
 * Headers for POST / with `body` (a form-encoded string): the x-acs-* headers, the
 * content type and the Authorization. `host` is signed as the browser will send it
 * (location.host: name and, when not the default, the port).
 */
export async function signedHeaders({ action, body, accessKeyId, key, host, now, nonce }) {
  const headers = {
    "content-type": "application/x-www-form-urlencoded",
    host,
    "x-acs-action": action,
    "x-acs-content-sha256": await sha256Hex(body),
    "x-acs-date": acsDate(now),
    "x-acs-signature-nonce": nonce || newNonce(),
    "x-acs-version": API_VERSION,
  };
  const names = Object.keys(headers).sort();
  const canonicalHeaders = names.map((name) => `${name}:${String(headers[name]).trim()}\n`).join("");
  const signedNames = names.join(";");
  const canonicalRequest = [
    "POST",
    "/",
    "", // no query: every parameter is in the body
    canonicalHeaders,
    signedNames,
    headers["x-acs-content-sha256"],
  ].join("\n");
  const stringToSign = `${ALGORITHM}\n${await sha256Hex(canonicalRequest)}`;
  const signature = hex(await crypto.subtle.sign("HMAC", key, encoder.encode(stringToSign)));
  const sent = { ...headers };
  delete sent.host; // the browser sends Host itself (a script may not set it)
  sent.authorization = `${ALGORITHM} Credential=${accessKeyId},SignedHeaders=${signedNames},Signature=${signature}`;
  return sent;
}
