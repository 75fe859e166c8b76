"""The actions of the API, one module per resource family, and the registry of them all."""
