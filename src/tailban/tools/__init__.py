"""Offline tools that reuse the daemon's pipeline without touching the firewall."""
