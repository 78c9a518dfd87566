"""canary-guard exporter."""
