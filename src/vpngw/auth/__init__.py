"""Request authentication: verification of the Alibaba Cloud request signatures."""
