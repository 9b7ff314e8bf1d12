"""The config file: the TOML reader and every table's frozen dataclasses (read by all)."""
