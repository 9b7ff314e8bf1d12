"""fbproxy's server side, one folder a role; the map is docs/architecture.md."""
