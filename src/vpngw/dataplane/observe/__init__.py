"""What comes back from charon: SA status and traffic, diagnosis, health checks, log lines."""
