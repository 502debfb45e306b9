"""Stores: where bans, ban history and log positions outlive the process."""
