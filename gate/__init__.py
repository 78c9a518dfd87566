"""canary-guard gate."""
