"""Keeping the store in step with the upstreams: the per-source loop, expansion into busy
rows, push channels, the registry of source kinds, sign-in, alerts on source state."""
