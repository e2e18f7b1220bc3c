"""The project's schemas as package data (message JSON Schemas, SQL)."""
