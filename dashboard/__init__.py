"""canary-guard dashboard."""
