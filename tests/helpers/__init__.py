"""Modules shared by several test files (import them as `helpers.<name>`)."""
