"""The lab backend: gateways, peers and nodes in namespaces of one machine, on a lab WAN."""
