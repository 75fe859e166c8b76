"""The lab's charon profile: the strongswan.conf of every charon in a lab (gateways, peers).

Test-friendly settings, for one machine where everything is ours: no DoS cookies or
half-open limits (parallel initiations between the same two IPs otherwise stall for
seconds), fast retransmits (IKEv2 DPD and the IKEv1 aggressive-mode race both wait on
them: a dead peer is noticed in seconds), and a log file beside the charon with a short
time stamp, for people reading a lab by hand. A real host runs
:mod:`vpngw.dataplane.backends.host.charon_profile` instead.
"""

from __future__ import annotations

from pathlib import Path

from vpngw.dataplane.charon.daemon import plugins_section


def strongswan_conf(vici_path: str, log_path: Path) -> str:
    # Aggressive mode with a PSK is an IkeMode the API offers: the responder must allow it.
    return f"""charon {{
  load_modular = yes
  i_dont_care_about_security_and_use_aggressive_mode_psk = yes
  dos_protection = no
  retransmit_timeout = 1.0
  retransmit_base = 1.4
  retransmit_tries = 3
{plugins_section(vici_path)}  filelog {{
    lab {{
      path = {log_path}
      time_format = %H:%M:%S
      default = 1
      flush_line = yes
    }}
  }}
  syslog {{
    daemon {{ default = -1 }}
    auth {{ default = -1 }}
  }}
}}
"""
