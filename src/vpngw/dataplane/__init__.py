"""The data plane: strongSwan charons in network namespaces, driven from the store.

Pure parts: ``desired`` (specs in the API's words), ``from_store`` (the desired state of
every gateway), ``proposals`` and ``render`` (VICI messages), ``topology`` (the lab's
names and addresses), ``observe`` (Status from SAs), ``diagnosis`` (why negotiation
fails). Impure parts: ``vici_client``/``vici_events`` (charon's socket), ``lab``,
``lab_network``, ``lab_peer`` (namespaces, links, charons), ``prober`` (health checks),
``acquire`` (on-demand), ``gateway_agent`` (one gateway) and ``reconciler`` (the loop).
docs/dataplane.md explains how they fit.
"""
