"""Hooks: the only layer that talks to external systems."""
