"""canary-guard webhook."""
