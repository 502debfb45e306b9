"""A jail: one filter's matcher feeding one counting policy. Pure: chunk + now -> bans."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import tzinfo

from tailban.bans.ledger import BanLedger
from tailban.config.model import JailConfig
from tailban.core.events import Ban, Failure, Success
from tailban.filters.factory import make_matcher
from tailban.jails.policy import JailPolicy


@dataclass(slots=True)
class FeedResult:
    failures: list[Failure]
    bans: list[Ban]
    successes: list[Success] = field(default_factory=list)


class Jail:
    """Everything the daemon does with a chunk of a jail's log, without any I/O."""

    __slots__ = ("config", "matcher", "policy")

    def __init__(self, config: JailConfig, ledger: BanLedger, tz: tzinfo | None = None, *,
                 previous_bans: dict[str, int] | None = None,
                 jitter: Callable[[], float] = lambda: 0.0) -> None:
        self.config = config
        self.matcher = make_matcher(config.filter, tz)
        self.policy = JailPolicy(config.rules, ledger, previous_bans=previous_bans,
                                 jitter=jitter)

    @property
    def name(self) -> str:
        return self.config.name

    def feed(self, chunk: bytes, now: float, *, replay: bool = False) -> FeedResult:
        """Failures found in ``chunk`` and the bans they cause.

        Live, ``now`` is the daemon's clock; in replay each failure's own time is "now".
        """
        events = self.matcher.scan(chunk, now)
        at = None if replay else now
        if not self.config.reset_on_success:
            failures = [e for e in events if isinstance(e, Failure)]
            return FeedResult(failures, self.policy.observe(failures, at) if failures else [],
                              [e for e in events if isinstance(e, Success)]
                              if len(failures) != len(events) else [])
        # A success clears what came before it, not what follows: feed in runs.
        all_failures: list[Failure] = []
        bans: list[Ban] = []
        run: list[Failure] = []
        seen: list[Success] = []
        for event in events:
            if isinstance(event, Failure):
                run.append(event)
                continue
            seen.append(event)
            if run:
                bans.extend(self.policy.observe(run, at))
                all_failures.extend(run)
                run = []
            self.policy.forget(event.ip)
        if run:
            bans.extend(self.policy.observe(run, at))
            all_failures.extend(run)
        return FeedResult(all_failures, bans, seen)
