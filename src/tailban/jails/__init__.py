"""Jails: per-service counting of failures and the decision to ban."""
