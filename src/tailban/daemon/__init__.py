"""The daemon: wires sources, jails, store, firewall and control socket on one event loop."""
