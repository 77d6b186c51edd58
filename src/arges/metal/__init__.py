"""Decisions about servers, as pure functions on plain data (no I/O, no clock of their own)."""
