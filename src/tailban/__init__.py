"""tailban: follow authentication logs, count failures, ban in the host firewall."""

__version__ = "0.1.0"
