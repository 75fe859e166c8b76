"""charon, strongSwan's IKE daemon: starting it, its VICI client and its event stream."""
