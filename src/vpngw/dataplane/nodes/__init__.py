"""Several nodes on one database: which node runs which gateway (leases, placement)."""
