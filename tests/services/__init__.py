"""Tests of chatd.services."""
