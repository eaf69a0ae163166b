"""Tests of chatd.server."""
