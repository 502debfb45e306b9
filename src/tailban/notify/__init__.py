"""Mail notifications: ban, digest and start/stop mails, built safely from untrusted facts."""
