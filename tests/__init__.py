"""chatd's trial test suite."""
