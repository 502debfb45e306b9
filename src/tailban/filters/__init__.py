"""Filters: log text in, failure events out. Data compiled once, matched per chunk."""
