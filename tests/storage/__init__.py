"""Tests of chatd.storage."""
