"""The HTTP front: two wire dialects over one action registry."""
