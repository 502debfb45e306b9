"""Distributed attacks: many addresses of one network, each trying few passwords.

A botnet that gives every address one or two tries stays under any per-address ``maxretry``
and, by spraying many different accounts, under per-account counting too. What gives it away
is the network: many addresses of one /24 (IPv4), one /64 (IPv6, where one machine owns the
whole prefix) or one autonomous system, failing against many different accounts in a short
window. This detector counts that per network and reports each network at most once per
window, unless the attack doubles. An AS is big enough for unrelated scanners to meet in it,
so it needs ``asn_min_addresses`` addresses that each stayed at or under
``asn_max_per_address`` failures in the window, no more than that per address on average
(a botnet spreads thin, a crowd of scanners does not), and ``asn_surge`` times the AS's
usual number of addresses (a big cloud always holds a few scanners).

Pure: no clock, file or thread; the caller passes the time of each failure and calls
``expire(now)`` periodically.
"""

from __future__ import annotations

import ipaddress
import math
import unicodedata
from collections import Counter, OrderedDict, deque
from dataclasses import asdict, dataclass, replace
from typing import Any

from tailban.core.addresses import normalise_ip, prefix_of

STATE_VERSION = 1
MAX_ADDRESSES = 50  # in an alert; the count is exact
MAX_EXAMPLES = 5
MAX_ACCOUNT = 64  # characters of an example account, after cleaning
_KEPT_ACCOUNT = 256  # characters of an account kept for counting (bounds memory)


def clean_account(name: str) -> str:
    """An account name safe to print in a mail or a log line.

    Control and format characters are dropped (a user name is attacker-chosen text: ANSI
    escapes, bidi overrides and newlines must not reach a terminal or a mail header).
    """
    text = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C")
    return text if len(text) <= MAX_ACCOUNT else text[: MAX_ACCOUNT - 1] + "\u2026"


@dataclass(frozen=True, slots=True)
class NetAlert:
    """One network caught spreading failures over many accounts.

    ``ban_target`` is what to ban when the policy bans networks: the CIDR itself, or for an
    ASN alert every /24 or /64 of it that took part (not the whole AS, which is unknown here
    and may hold innocent customers).
    """

    network: str
    asn: int | None
    addresses: tuple[str, ...]
    address_count: int
    accounts: int
    account_examples: tuple[str, ...]
    failures: int
    first: float
    last: float
    reasons: str
    ban_target: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class DistributedConfig:
    window: float = 600.0
    min_addresses: int = 5
    min_accounts: int = 5
    min_failures: int = 20
    ipv4_prefix: int = 24
    ipv6_prefix: int = 64
    max_networks: int = 4096
    max_events: int = 200_000
    realert_factor: float = 2.0
    asn_min_addresses: int = 10
    asn_max_per_address: int = 5
    asn_surge: float = 3.0
    asn_memory: float = 21600.0

    def __post_init__(self) -> None:
        if self.window <= 0:
            raise ValueError("window must be positive")
        for name in ("min_addresses", "min_accounts", "min_failures", "max_networks",
                     "max_events", "asn_min_addresses", "asn_max_per_address"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if not 8 <= self.ipv4_prefix <= 32 or not 16 <= self.ipv6_prefix <= 128:
            raise ValueError("prefix lengths must be 8-32 (IPv4) and 16-128 (IPv6)")
        if self.realert_factor <= 1.0:
            raise ValueError("realert_factor must exceed 1")
        if self.asn_surge < 1.0 or self.asn_memory <= 0:
            raise ValueError("asn_surge must be at least 1 and asn_memory positive")


class _Window:
    """Failures of one network within the sliding window, with counts kept up to date."""

    __slots__ = ("events", "ips", "users", "prefixes")

    def __init__(self) -> None:
        self.events: deque[tuple[float, str, str | None, str]] = deque()
        self.ips: Counter[str] = Counter()
        self.users: Counter[str] = Counter()
        self.prefixes: Counter[str] = Counter()

    def add(self, when: float, ip: str, user: str | None, prefix: str) -> None:
        self.events.append((when, ip, user, prefix))
        self.ips[ip] += 1
        self.prefixes[prefix] += 1
        if user is not None:
            self.users[user] += 1

    def pop(self) -> None:
        _, ip, user, prefix = self.events.popleft()
        _decrement(self.ips, ip)
        _decrement(self.prefixes, prefix)
        if user is not None:
            _decrement(self.users, user)

    def expire(self, cutoff: float) -> int:
        dropped = 0
        while self.events and self.events[0][0] < cutoff:
            self.pop()
            dropped += 1
        return dropped

    @property
    def last(self) -> float:
        return self.events[-1][0] if self.events else -math.inf


def _decrement(counter: Counter[str], key: str) -> None:
    left = counter[key] - 1
    if left > 0:
        counter[key] = left
    else:
        del counter[key]


def _network_sort_key(text: str) -> tuple[int, int]:
    net = ipaddress.ip_network(text, strict=False)
    return net.version, int(net.network_address)


def _address_sort_key(text: str) -> tuple[int, int]:
    addr = ipaddress.ip_address(text)
    return addr.version, int(addr)


def _span(seconds: float) -> str:
    if seconds < 60:
        return f"{max(seconds, 0):.0f} s"
    return f"{math.ceil(seconds / 60 - 1e-9)} min"


class DistributedDetector:
    """Counts failures per network (and per AS when told) over a sliding window.

    Memory is bounded: at most ``max_networks`` networks and ``max_events`` failures in all;
    beyond that the least recently active network is forgotten first.
    """

    def __init__(self, window: float | None = None, min_addresses: int | None = None,
                 min_accounts: int | None = None, min_failures: int | None = None, *,
                 config: DistributedConfig | None = None, **overrides: Any) -> None:
        """Defaults: window=600 s, min_addresses=5, min_accounts=5, min_failures=20."""
        given = {"window": window, "min_addresses": min_addresses,
                 "min_accounts": min_accounts, "min_failures": min_failures}
        overrides.update({k: v for k, v in given.items() if v is not None})
        self.config = replace(config if config is not None else DistributedConfig(),
                              **overrides)
        self._windows: OrderedDict[str, _Window] = OrderedDict()  # LRU order
        self._alerted: dict[str, tuple[float, int, int]] = {}  # key -> time, failures, addrs
        # AS -> (usual addresses in a window, time of that figure), least recent first
        self._asn_level: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._events = 0

    def __len__(self) -> int:
        """Networks tracked now."""
        return len(self._windows)

    @property
    def events(self) -> int:
        """Failures held in all windows."""
        return self._events

    def observe(self, time: float, ip: str, user: str | None,
                asn: int | None = None) -> list[NetAlert]:
        """Count one failure; return the alerts it completes (usually none).

        ``user`` None or empty counts towards failures and addresses but not accounts. An
        ``ip`` that is not an address is ignored.
        """
        addr = normalise_ip(ip)
        if addr is None:
            return []
        cfg = self.config
        prefix = prefix_of(addr, cfg.ipv4_prefix, cfg.ipv6_prefix)
        if prefix == addr:  # a full-length prefix is an address: keep it a CIDR
            prefix = f"{addr}/{128 if ':' in addr else 32}"
        account = user[:_KEPT_ACCOUNT] if user else None
        keys = [prefix] if asn is None or asn <= 0 else [prefix, f"AS{asn}"]
        alerts: list[NetAlert] = []
        for key in keys:
            win = self._windows.get(key)
            if win is None:
                win = self._windows[key] = _Window()
            else:
                self._windows.move_to_end(key)
                self._events -= win.expire(time - cfg.window)
            # Out-of-order times are clamped so each window stays sorted.
            win.add(max(time, win.last), addr, account, prefix)
            self._events += 1
            is_asn = key.startswith("AS")
            if is_asn:
                self._learn_level(key, win)
            alert = self._check(key, win, asn if is_asn else None)
            if alert is not None:
                alerts.append(alert)
        self._enforce_bounds(len(keys))
        return alerts

    def expire(self, now: float) -> None:
        """Forget failures older than the window and alerts whose window has passed."""
        cutoff = now - self.config.window
        for key in list(self._windows):
            win = self._windows[key]
            self._events -= win.expire(cutoff)
            if not win.events:
                del self._windows[key]
        for key in [k for k, (when, _, _) in self._alerted.items() if when <= cutoff]:
            del self._alerted[key]
        faded = now - 5 * self.config.asn_memory  # the level has decayed below 1 %
        for key in [k for k, (_, when) in self._asn_level.items() if when <= faded]:
            del self._asn_level[key]

    def _learn_level(self, key: str, win: _Window) -> None:
        """Time-weighted average of the AS's addresses per window (memory ``asn_memory``).

        An AS that always holds a dozen scanners (a big cloud) then needs a real surge;
        a quiet one alerts at ``asn_min_addresses``. A botnet's own minutes barely move a
        six-hour average, so it does not raise its own bar before it is caught.
        """
        now = win.events[-1][0]
        level, when = self._asn_level.pop(key, (0.0, now))
        keep = math.exp(-max(now - when, 0.0) / self.config.asn_memory)
        self._asn_level[key] = (keep * level + (1.0 - keep) * len(win.ips), now)
        while len(self._asn_level) > self.config.max_networks:
            self._asn_level.popitem(last=False)

    def _check(self, key: str, win: _Window, asn: int | None) -> NetAlert | None:
        cfg = self.config
        failures, n_addr, n_users = len(win.events), len(win.ips), len(win.users)
        if failures < cfg.min_failures or n_addr < cfg.min_addresses \
                or n_users < cfg.min_accounts:
            return None
        if asn is not None:
            if len(win.prefixes) < 2:
                return None  # one network of the AS: its CIDR alert says it better
            # Independent scanners meet in a big hosting AS all the time; what a botnet does
            # and they do not is keep each address under the per-address limit.
            if failures > cfg.asn_max_per_address * n_addr:
                return None
            light = sum(1 for n in win.ips.values() if n <= cfg.asn_max_per_address)
            usual = self._asn_level.get(key, (0.0, 0.0))[0]
            if light < max(cfg.asn_min_addresses, cfg.min_addresses, cfg.asn_surge * usual):
                return None
        now = win.events[-1][0]
        prev = self._alerted.get(key)
        if prev is not None:
            when, prev_failures, prev_addr = prev
            doubled = (failures >= cfg.realert_factor * prev_failures
                       or n_addr >= cfg.realert_factor * prev_addr)
            if now - when < cfg.window and not doubled:
                return None
        self._alerted[key] = (now, failures, n_addr)
        if len(self._alerted) > cfg.max_networks:
            oldest = min(self._alerted, key=lambda k: self._alerted[k][0])
            del self._alerted[oldest]
        return self._alert(key, win, asn)

    def _alert(self, key: str, win: _Window, asn: int | None) -> NetAlert:
        first, last = win.events[0][0], win.events[-1][0]
        busiest = sorted(win.ips.items(), key=lambda kv: (-kv[1], _address_sort_key(kv[0])))
        addresses = tuple(ip for ip, _ in busiest[:MAX_ADDRESSES])
        examples = tuple(clean_account(u) for u, _ in win.users.most_common(MAX_EXAMPLES))
        n_addr, n_users, failures = len(win.ips), len(win.users), len(win.events)
        span = _span(last - first)
        if asn is None:
            where = f"of {key}"
            targets: tuple[str, ...] = (key,)
        else:
            targets = tuple(sorted(win.prefixes, key=_network_sort_key))
            where = f"in {len(targets)} networks of {key}"
        reasons = (f"{n_addr} addresses {where} tried {n_users} different accounts in "
                   f"{span} ({failures} failures)")
        return NetAlert(network=key, asn=asn, addresses=addresses, address_count=n_addr,
                        accounts=n_users, account_examples=examples, failures=failures,
                        first=first, last=last, reasons=reasons, ban_target=targets)

    def _enforce_bounds(self, protect: int = 0) -> None:
        """Forget least recently active networks; ``protect`` = how many at the end are in use."""
        cfg = self.config
        while len(self._windows) > cfg.max_networks or self._events > cfg.max_events:
            key, win = next(iter(self._windows.items()))
            if len(self._windows) > protect:
                self._events -= len(win.events)
                del self._windows[key]
                continue
            # Only the networks of this failure are left: drop their oldest failures instead.
            win.pop()
            self._events -= 1
            if not win.events:
                del self._windows[key]

    # -- persistence ---------------------------------------------------------------------

    def to_state(self) -> dict[str, Any]:
        """Windows (least recently active first) and recent alerts, as JSON-able values."""
        return {"version": STATE_VERSION, "config": asdict(self.config),
                "windows": {key: [list(ev) for ev in win.events]
                            for key, win in self._windows.items()},
                "alerted": {key: list(val) for key, val in self._alerted.items()},
                "asn_level": {key: list(val) for key, val in self._asn_level.items()}}

    @classmethod
    def from_state(cls, data: dict[str, Any]) -> DistributedDetector:
        if data.get("version") != STATE_VERSION:
            raise ValueError(f"unsupported distributed detector state version "
                             f"{data.get('version')!r}")
        det = cls(config=DistributedConfig(**data["config"]))
        for key, events in data["windows"].items():
            win = det._windows[str(key)] = _Window()
            for when, ip, user, prefix in events:
                win.add(float(when), str(ip), None if user is None else str(user), str(prefix))
            det._events += len(win.events)
        det._alerted = {str(key): (float(when), int(fails), int(addrs))
                        for key, (when, fails, addrs) in data["alerted"].items()}
        for key, (level, when) in data.get("asn_level", {}).items():
            det._asn_level[str(key)] = (float(level), float(when))
        det._enforce_bounds()
        return det


class LayeredDetector:
    """A fast window (minutes) and a slow one (hours) over the same failures.

    The slow layer catches botnets that spread 100 tries over hours; it needs more
    addresses and accounts (a hosting network collects unrelated scanners over hours) and
    works on networks only, not on ASes. Defaults chosen with bench/anomaly_waves.py: slow
    /24 and /64 botnets of 15+ addresses found, no false alert on either background.
    """

    def __init__(self, fast: DistributedDetector | None = None,
                 slow: DistributedDetector | None = None) -> None:
        self.fast = fast if fast is not None else DistributedDetector()
        self.slow = slow if slow is not None else DistributedDetector(
            window=21600.0, min_addresses=12, min_accounts=40, min_failures=90)

    def __len__(self) -> int:
        return len(self.fast) + len(self.slow)

    def observe(self, time: float, ip: str, user: str | None,
                asn: int | None = None) -> list[NetAlert]:
        return self.fast.observe(time, ip, user, asn) + self.slow.observe(time, ip, user, None)

    def expire(self, now: float) -> None:
        self.fast.expire(now)
        self.slow.expire(now)

    def to_state(self) -> dict[str, Any]:
        return {"fast": self.fast.to_state(), "slow": self.slow.to_state()}

    @classmethod
    def from_state(cls, data: dict[str, Any]) -> LayeredDetector:
        if "fast" not in data:  # a state saved before the slow layer existed
            return cls(DistributedDetector.from_state(data))
        return cls(DistributedDetector.from_state(data["fast"]),
                   DistributedDetector.from_state(data["slow"]))
