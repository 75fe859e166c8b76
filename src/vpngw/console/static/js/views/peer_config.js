// The configuration download as a file for a strongSwan peer: swanctl.conf rendered
// from DownloadVpnConnectionConfig (whose Local is the customer's side), with the same
// proposal keywords as vpngw's own side (src/vpngw/dataplane/proposals.py).

const ENCRYPTION = { aes: "aes128", aes192: "aes192", aes256: "aes256", des: "des", "3des": "3des" };
const DH = { group1: "modp768", group2: "modp1024", group5: "modp1536", group14: "modp2048", group24: "modp2048s256" };

export function ikeProposal(ike) {
  return `${ENCRYPTION[ike.IkeEncAlg]}-${ike.IkeAuthAlg}-prf${ike.IkeAuthAlg}-${DH[ike.IkePfs]}`;
}

export function espProposal(ipsec) {
  const base = `${ENCRYPTION[ipsec.IpsecEncAlg]}-${ipsec.IpsecAuthAlg}`;
  return ipsec.IpsecPfs === "disabled" ? base : `${base}-${DH[ipsec.IpsecPfs]}`;
}

function secretValue(psk) {
  if (/^[\x21-\x7e]+$/.test(psk) && !/["\\]/.test(psk)) return `"${psk}"`;
  return "0x" + Array.from(new TextEncoder().encode(psk), (b) => b.toString(16).padStart(2, "0")).join("");
}

/** swanctl.conf text for the peer of connection `name`. */
export function swanctlConf(name, config) {
  const ike = config.IkeConfig;
  const ipsec = config.IpsecConfig;
  const locals = config.LocalSubnet.split(",");
  const remotes = config.RemoteSubnet.split(",");
  const v1 = ike.IkeVersion === "ikev1";
  // IKEv1 negotiates one CHILD_SA per subnet pair; IKEv2 carries every subnet in one.
  const children = v1
    ? locals.flatMap((l, i) => remotes.map((r, j) => [`${name}-${i + 1}-${j + 1}`, l, r]))
    : [[name, locals.join(","), remotes.join(",")]];
  const lines = [
    `# swanctl.conf for the customer side of ${name}, made by the vpngw console from DownloadVpnConnectionConfig.`,
    `# Put it in /etc/swanctl/conf.d/ and run: swanctl --load-all`,
    "connections {",
    `  ${name} {`,
    `    version = ${v1 ? 1 : 2}`,
    v1 ? `    aggressive = ${ike.IkeMode === "aggressive" ? "yes" : "no"}` : null,
    `    local_addrs = ${config.Local}`,
    `    remote_addrs = ${config.Remote}`,
    `    proposals = ${ikeProposal(ike)}`,
    ike.IkeLifetime ? `    rekey_time = ${ike.IkeLifetime}s` : null,
    "    dpd_delay = 10s",
    "    local {",
    "      auth = psk",
    `      id = ${ike.LocalId}`,
    "    }",
    "    remote {",
    "      auth = psk",
    `      id = ${ike.RemoteId}`,
    "    }",
    "    children {",
    ...children.flatMap(([child, l, r]) => [
      `      ${child} {`,
      `        local_ts = ${l}`,
      `        remote_ts = ${r}`,
      `        esp_proposals = ${espProposal(ipsec)}`,
      ipsec.IpsecLifetime ? `        rekey_time = ${ipsec.IpsecLifetime}s` : null,
      "        start_action = start",
      "        dpd_action = restart",
      "      }",
    ]),
    "    }",
    "  }",
    "}",
    "secrets {",
    `  ike-${name} {`,
    `    id-local = ${ike.LocalId}`,
    `    id-remote = ${ike.RemoteId}`,
    `    secret = ${secretValue(ike.Psk)}`,
    "  }",
    "}",
    "",
  ];
  return lines.filter((line) => line !== null).join("\n");
}

/** Offer `text` as a file download (a blob URL, revoked right after). */
export function saveFile(filename, text, type = "text/plain") {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const a = document.createElement("a");
  a.href = url;
  a.download = filename;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}
