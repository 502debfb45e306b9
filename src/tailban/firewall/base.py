"""The contract every firewall backend keeps: start, apply, reconcile, stop, list.

Like sshguard's five functions, nothing more: the core never knows which backend runs,
and every backend receives whole batches so no backend spawns a process per ban.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from tailban.core.events import Ban, Unban


class FirewallError(Exception):
    """A firewall change failed; the caller keeps the batch and retries it."""


@dataclass(frozen=True, slots=True)
class JailFirewall:
    """What a backend needs to know about a jail to block its traffic."""

    name: str
    ports: tuple[str, ...]  # "22", "1000-2000"; empty with allports
    protocol: str  # tcp | udp | sctp | dccp | all
    allports: bool
    blocktype: str  # drop | reject


@dataclass(slots=True)
class FirewallBatch:
    """Bans and unbans to apply in one transaction; the last word on an address wins."""

    bans: dict[tuple[str, str], Ban] = field(default_factory=dict)
    unbans: dict[tuple[str, str], Unban] = field(default_factory=dict)

    def ban(self, ban: Ban) -> None:
        key = (ban.jail, ban.ip)
        self.unbans.pop(key, None)
        self.bans[key] = ban

    def unban(self, unban: Unban) -> None:
        key = (unban.jail, unban.ip)
        self.bans.pop(key, None)
        self.unbans[key] = unban

    def merge(self, later: FirewallBatch) -> None:
        for unban in later.unbans.values():
            self.unban(unban)
        for ban in later.bans.values():
            self.ban(ban)

    def __len__(self) -> int:
        return len(self.bans) + len(self.unbans)

    def __bool__(self) -> bool:
        return bool(self.bans or self.unbans)


class FirewallBackend(Protocol):
    name: str

    def start(self, jails: Sequence[JailFirewall]) -> None:
        """Create (or adopt) the backend's objects for these jails; idempotent."""

    def apply(self, batch: FirewallBatch, now: float) -> None:
        """Apply every ban and unban of the batch at once, or raise FirewallError."""

    def reconcile(self, bans: Sequence[Ban], now: float) -> None:
        """Make the kernel hold exactly these bans, atomically."""

    def stop(self, flush: bool) -> None:
        """Release resources; with flush remove every object the backend created."""

    def list(self) -> dict[str, set[str]]:
        """Addresses currently blocked, per jail, as the kernel sees them."""
