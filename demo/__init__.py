"""canary-guard demo."""
