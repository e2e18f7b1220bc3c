"""Everything about talking to the Tesla Energy Gateway's local API."""
