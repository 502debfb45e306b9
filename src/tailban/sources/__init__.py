"""Log sources: follow files across rotation and learn when their directories change."""

from tailban.sources.follower import FINGERPRINT_BYTES, FileFollower, Position
from tailban.sources.watch import DirectoryWatcher, expand

__all__ = ["FINGERPRINT_BYTES", "DirectoryWatcher", "FileFollower", "Position", "expand"]
