// The signed API client and the tab's session. The session lives in this module's
// variables only: no cookie, no localStorage or sessionStorage, nothing in a URL.
// Reloading the page or signing out forgets it.

import { formBody, importSecret, signedHeaders } from "./signer.js";

const REQUEST_TIMEOUT_MS = 30000;

let session = null; // { accessKeyId, key (non-extractable CryptoKey), regionId }

export class ApiError extends Error {
  constructor(status, body) {
    super(body.Message || `HTTP ${status}`);
    this.status = status;
    this.code = body.Code || "HTTP" + status;
    this.requestId = body.RequestId || "";
    this.body = body;
  }
}

export function signedIn() {
  return session !== null;
}

export function accessKeyId() {
  return session ? session.accessKeyId : "";
}

export function region() {
  return session ? session.regionId : "";
}

export function setRegion(regionId) {
  if (session) session.regionId = regionId;
}

export function signOut() {
  session = null;
}

/** One signed call; resolves to the response body, rejects with an ApiError. */
async function send(credentials, action, params) {
  const body = formBody(params);
  const headers = await signedHeaders({
    action,
    body,
    accessKeyId: credentials.accessKeyId,
    key: credentials.key,
    host: location.host,
  });
  const response = await fetch("/", {
    method: "POST",
    headers,
    body,
    credentials: "omit",
    cache: "no-store",
    redirect: "error",
    signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS), // a hung call must not stop live refresh
  });
  let parsed;
  try {
    parsed = await response.json();
  } catch {
    parsed = { Code: "InvalidResponse", Message: `The server answered ${response.status} without JSON.` };
  }
  if (!response.ok) throw new ApiError(response.status, parsed);
  return parsed;
}

/**
 * Sign in: the key pair must sign a DescribeRegions the server accepts. Only the
 * AccessKeyId and a non-extractable key are kept; returns the regions.
 */
export async function signIn(id, secret) {
  const credentials = { accessKeyId: id.trim(), key: await importSecret(secret) };
  const body = await send(credentials, "DescribeRegions", {});
  const regions = (body.Regions && body.Regions.Region) || [];
  session = { ...credentials, regionId: regions.length ? regions[0].RegionId : "" };
  return regions;
}

/** A call in the chosen region (RegionId added unless `regional` is false). */
export async function call(action, params = {}, { regional = true } = {}) {
  if (!session) throw new ApiError(401, { Code: "NotSignedIn", Message: "Sign in first." });
  const given = {};
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") given[key] = value;
  }
  if (regional && !("RegionId" in given)) given.RegionId = session.regionId;
  return send(session, action, given);
}
