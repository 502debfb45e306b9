"""Log sources: follow files across rotation (follower), learn when their directories change
(watch), read the systemd journal (journal). Each module is imported where it is used:
`tailban replay` needs no inotify."""
