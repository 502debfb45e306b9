"""Bans: which addresses are blocked, until when, and what the firewall still owes."""
