"""The host backend's charon profile: production settings for a gateway facing the Internet.

* **DoS protection on** (strongSwan's defaults, written out so that they are seen and
  pinned by a golden file): IKE_SA_INIT cookies once 30 half-open IKE_SAs exist, or 3 from
  one peer address; at most 5 half-open IKE_SAs per peer address; new IKE_SA_INITs
  dropped beyond 1000 half-open IKE_SAs in all, so a flood cannot exhaust the daemon.
* **Standard retransmission**: 4 s, base 1.8, 5 tries (about 165 s before a peer is given
  up), so a lossy Internet path is not mistaken for a dead peer.
* **Logging for journald/syslog**: everything at level 1 to the ``daemon`` facility and
  the IKE_SA audit lines (level 0) to ``auth``, each line prefixed with the connection's
  name (its ``vco-`` id) and tagged ``charon-vpngw``; no time stamps (the journal adds them) and
  no file to rotate. ``charon.log`` is not written; vpngw itself reads charon's log
  through VICI, whatever the profile.
* Aggressive mode with a PSK is allowed on the responder: it is an ``IkeMode`` the API
  offers, and a customer who chooses it must be able to connect.
"""

from __future__ import annotations

from pathlib import Path

from vpngw.dataplane.charon.daemon import plugins_section

SYSLOG_IDENTIFIER = "charon-vpngw"


def strongswan_conf(vici_path: str, log_path: Path) -> str:
    del log_path  # production charons log to syslog, not to a file
    return f"""charon {{
  load_modular = yes
  i_dont_care_about_security_and_use_aggressive_mode_psk = yes
  dos_protection = yes
  cookie_threshold = 30
  cookie_threshold_ip = 3
  block_threshold = 5
  init_limit_half_open = 1000
  retransmit_timeout = 4.0
  retransmit_base = 1.8
  retransmit_tries = 5
{plugins_section(vici_path)}  syslog {{
    identifier = {SYSLOG_IDENTIFIER}
    daemon {{
      default = 1
      ike_name = yes
    }}
    auth {{
      default = -1
      ike = 0
      ike_name = yes
    }}
  }}
}}
"""
