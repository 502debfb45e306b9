"""Detectors for attacks that per-address counting misses: waves and spread-out networks."""
