"""Integrations with web frameworks and other libraries."""
