"""ipset sets driven in batches: one ``ipset restore -exist`` process per batch, never one per
address.

Sets are ``hash:ip`` (single addresses) or ``hash:net`` (networks in CIDR form) with
``timeout 0``: no default timeout, but every element may carry its
own, so the kernel ends a ban even while tailban is not running. ipset's largest timeout is
2147483 s (about 24.8 days); a longer ban is added without a timeout and the daemon's unban
ends it. ``ipset restore`` applies line by line (not atomically); every batch is idempotent
(``-exist`` turns a repeated add into a timeout update and a missing delete into a no-op), so
a batch retried after a failure lands whole. ``replace`` IS atomic: it fills a temporary set
and ``swap``s it in.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

from tailban.core.addresses import normalise_target
from tailban.firewall.commands import CommandRunner, tool

MAX_TIMEOUT = 2_147_483  # seconds; ipset refuses larger values
MAXELEM = 1_048_576

Element = tuple[str, int | None]  # address or CIDR, timeout in seconds (None: no timeout)
SetSpec = tuple[int, bool]  # family (4 or 6), True for a hash:net set of networks


def timeout_for(remaining: float | None) -> int | None | bool:
    """Seconds for ipset, None for no timeout, False when the ban is already over."""
    if remaining is None:
        return None
    if remaining <= 0:
        return False
    seconds = max(1, math.ceil(remaining))
    return None if seconds > MAX_TIMEOUT else seconds


class IpsetSets:
    """Creates, fills, lists and destroys ipsets through one runner call per operation."""

    def __init__(self, runner: CommandRunner) -> None:
        self.runner = runner
        self.binary = tool("ipset")

    def restore(self, lines: Sequence[str]) -> None:
        if lines:
            self.runner.run([self.binary, "restore", "-exist"], "\n".join(lines) + "\n")

    @staticmethod
    def create_line(name: str, spec: SetSpec) -> str:
        family, networks = spec
        inet = "inet6" if family == 6 else "inet"
        kind = "hash:net" if networks else "hash:ip"
        return f"create {name} {kind} family {inet} maxelem {MAXELEM} timeout 0"

    @staticmethod
    def add_line(name: str, element: Element) -> str:
        address, timeout = element
        return f"add {name} {address}" + ("" if timeout is None else f" timeout {timeout}")

    def ensure(self, sets: Mapping[str, SetSpec]) -> None:
        """Create the sets (name -> (family, networks)) that do not exist yet."""
        self.restore([self.create_line(name, spec) for name, spec in sets.items()])

    def change(self, adds: Mapping[str, Iterable[Element]],
               deletes: Mapping[str, Iterable[str]]) -> None:
        lines = [f"del {name} {address}" for name, addresses in deletes.items()
                 for address in addresses]
        lines.extend(self.add_line(name, element) for name, elements in adds.items()
                     for element in elements)
        self.restore(lines)

    def replace(self, contents: Mapping[str, tuple[SetSpec, Iterable[Element]]]) -> None:
        """Make each set (name -> (spec, elements)) hold exactly these, set by set atomically."""
        lines: list[str] = []
        for name, (spec, elements) in contents.items():
            # At most 31 characters, and distinct per set even when the names are shortened
            # (they differ only in their last two characters, e.g. v4/n4/v6/n6).
            temporary = f"{name[:27]}-t{name[-2:]}"
            lines.append(self.create_line(name, spec))
            lines.append(self.create_line(temporary, spec))
            lines.append(f"flush {temporary}")
            lines.extend(self.add_line(temporary, element) for element in elements)
            lines.append(f"swap {temporary} {name}")
            lines.append(f"destroy {temporary}")
        self.restore(lines)

    def names(self) -> set[str]:
        return set(self.runner.run([self.binary, "list", "-n"]).split())

    def members(self, wanted: Iterable[str] | None = None) -> dict[str, set[str]]:
        """Addresses (and networks, in CIDR form) per set, from one ``ipset save``."""
        keep = None if wanted is None else set(wanted)
        found: dict[str, set[str]] = {} if keep is None else {name: set() for name in keep}
        for line in self.runner.run([self.binary, "save"]).splitlines():
            words = line.split()
            if len(words) >= 3 and words[0] == "add" and (keep is None or words[1] in keep):
                address = normalise_target(words[2])
                if address is not None:
                    found.setdefault(words[1], set()).add(address)
        return found

    def destroy(self, names: Iterable[str]) -> None:
        self.restore([f"destroy {name}" for name in sorted(names)])
