"""Firewall backends: the only code that changes the kernel's packet filter."""
