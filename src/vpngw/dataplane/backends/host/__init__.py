"""The host backend: gateways on a real machine's uplink and VPC-side interface."""
