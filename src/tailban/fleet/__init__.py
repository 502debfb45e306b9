"""Ban sharing between hosts: a pure judge of fleet rows and the threads that move them."""
