"""canary-guard rules."""
