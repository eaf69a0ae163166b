"""Persistence: the store, its two database backends and the message writer."""
