"""The pure core: values and rules with no file, socket, clock or firewall inside."""
