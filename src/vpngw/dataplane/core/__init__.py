"""The reconciler and the gateway agent: the store made real through a backend and charon."""
