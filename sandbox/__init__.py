"""canary-guard sandbox."""
