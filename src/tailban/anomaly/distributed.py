"""Distributed attacks: many addresses of one network, each trying few passwords.

A botnet that gives every address one or two tries stays under any per-address ``maxretry``
and, by spraying many different accounts, under per-account counting too. What gives it away
is the network: many addresses of one /24 (IPv4), one /64 (IPv6, where one machine owns the
whole prefix) or one autonomous system, failing against many different accounts. This
detector counts that per network over a sliding window and reports each network at most
once per window, unless the attack doubles.

What separates a campaign from the background of independent scanners that happen to share
a network is, besides the number of addresses, the *accounts*: scanners everywhere hammer
the same names (root, admin, test), a spraying botnet works through its own list. The
detector learns which accounts are common (tried lately from ``COMMON_SPREAD`` different
networks or ASes) and ``min_rare_share`` says which share of a network's failures must be
on the others: that holds however many passwords the botnet tries per account.

An AS is big enough for unrelated scanners to meet in it, so it needs
``asn_min_addresses`` addresses that each stayed at or under ``asn_max_per_address``
failures in the window, no more than that per address on average (a botnet spreads thin, a
crowd of scanners does not), and ``asn_surge`` times the AS's usual number of addresses in
a window, learnt online over ``asn_memory`` (a big cloud always holds a few scanners).

Pure: no clock, file or thread; the caller passes the time of each failure and calls
``expire(now)`` periodically. Memory is bounded (networks, failures, cached addresses), and
a failure costs a few dict and list operations per layer.
"""

from __future__ import annotations

import ipaddress
import math
import unicodedata
from collections import OrderedDict
from dataclasses import asdict, dataclass, replace
from operator import countOf, itemgetter
from typing import Any, TypeAlias

from tailban.core.addresses import normalise_ip, prefix_of

STATE_VERSION = 1
MAX_ADDRESSES = 50  # in an alert; the count is exact
MAX_EXAMPLES = 5
MAX_ACCOUNT = 64  # characters of an example account, after cleaning
_KEPT_ACCOUNT = 256  # characters of an account kept for counting (bounds memory)
_ADDRESS_CACHE = 4096  # parsed addresses kept (a scanner's tries repeat its address soon)
_LEVEL_STEP = 60.0  # seconds between updates of an AS's usual level
COMMON_SPREAD = 3  # an account tried from this many networks (or ASes) is a common one
COMMON_MEMORY = 86400.0  # ... within this many seconds of its last try
_MAX_ACCOUNTS = 50_000  # accounts whose spread is followed (bounds memory)
_REFRESH = 600.0  # seconds: how stale an account's last-try time may get


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
    """One layer's figures. The defaults are the fast (10-minute) layer's."""

    window: float = 600.0
    min_addresses: int = 5
    min_accounts: int = 5
    min_failures: int = 20
    min_rare_share: float = 0.6  # share of the window's failures on uncommon accounts
    ipv4_prefix: int = 24
    ipv6_prefix: int = 64
    max_networks: int = 4096
    max_events: int = 200_000
    realert_factor: float = 2.0
    count_asn: bool = True  # count ASes too (when the caller knows them)
    asn_min_addresses: int = 8
    asn_max_per_address: int = 10
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
        if not 0.0 <= self.min_rare_share <= 1.0:
            raise ValueError("min_rare_share must be between 0 and 1")


# The slow layer: botnets that spread their tries over hours. A hosting network collects
# unrelated scanners over six hours, so it asks for more accounts and failures and, above
# all, for uncommon accounts. Chosen with bench/anomaly_waves.py.
SLOW_CONFIG = DistributedConfig(window=21600.0, min_addresses=8, min_accounts=30,
                                min_failures=60, min_rare_share=0.6, asn_min_addresses=8,
                                asn_max_per_address=60, asn_memory=86400.0)

Event: TypeAlias = tuple[float, str, str | None, str, bool]  # time, address, account, network, rare
_SMALL = 16  # failures a window holds before it keeps per-address and per-account counts
_GONE: Event = (0.0, "", None, "", False)  # in place of a failure that left the window


class _Window:
    """Failures of one network within the sliding window, with counts kept up to date.

    ``named`` is the number of failures that name an account, ``rare`` those on accounts
    that were uncommon when tried, and, in an AS's window (the one that counts
    ``prefixes``), ``light`` the number of addresses with at most ``limit`` failures; all
    are kept as failures come and go (no scan over the window). The failures are in time
    order (the caller clamps late ones).

    Compact, since a storm of scanners leaves thousands of windows of one to three
    failures: the failures are a list read from ``_head`` on (a deque costs 760 bytes
    however short), and the per-address and per-account counts (``ips``, ``users``) are
    built only once the window holds more than ``_SMALL`` failures, someone asks for them,
    or an account's oldest failure leaves while it has others (built later, the accounts'
    order, which breaks ties between examples, would differ); until then an address's
    count is found by scanning those few failures.
    """

    __slots__ = ("_events", "_head", "_ips", "_users", "prefixes", "light", "limit", "named",
                 "rare")

    def __init__(self, limit: int, by_prefix: bool) -> None:
        self._events: list[Event] = []
        self._head = 0  # failures before it have left the window
        self._ips: dict[str, int] | None = None  # None: not built (small window)
        self._users: dict[str, int] | None = None
        self.prefixes: dict[str, int] | None = {} if by_prefix else None
        self.light = 0
        self.limit = limit
        self.named = 0
        self.rare = 0

    def __len__(self) -> int:
        """Failures in the window."""
        return len(self._events) - self._head

    @property
    def events(self) -> list[Event]:
        """The failures in the window, oldest first (a copy)."""
        return self._events[self._head:]

    @property
    def first(self) -> float:
        return self._events[self._head][0] if len(self._events) > self._head else math.inf

    @property
    def last(self) -> float:
        return self._events[-1][0] if len(self._events) > self._head else -math.inf

    @property
    def ips(self) -> dict[str, int]:
        """Address -> its failures in the window."""
        if self._ips is None:
            self._build()
            assert self._ips is not None
        return self._ips

    @property
    def users(self) -> dict[str, int]:
        """Account -> its failures in the window."""
        if self._users is None:
            self._build()
            assert self._users is not None
        return self._users

    def _build(self) -> None:
        ips: dict[str, int] = {}
        users: dict[str, int] = {}
        for i in range(self._head, len(self._events)):
            _, ip, user, _, _ = self._events[i]
            ips[ip] = ips.get(ip, 0) + 1
            if user is not None:
                users[user] = users.get(user, 0) + 1
        self._ips, self._users = ips, users

    def add(self, when: float, ip: str, user: str | None, prefix: str, rare: bool) -> None:
        self.push((when, ip, user, prefix, rare))

    def push(self, event: Event) -> None:
        """Add one failure, ``(when, address, account, network, rare)``."""
        _, ip, user, prefix, rare = event
        events = self._events
        events.append(event)
        if rare:
            self.rare += 1
        if user is not None:
            self.named += 1
        ips = self._ips
        if ips is None:
            if len(events) - self._head > _SMALL:
                self._build()  # counts this failure (address and account) too
                ips = self._ips
        else:
            ips[ip] = ips.get(ip, 0) + 1
            if user is not None:
                users = self._users
                assert users is not None
                users[user] = users.get(user, 0) + 1
        prefixes = self.prefixes
        if prefixes is not None:
            prefixes[prefix] = prefixes.get(prefix, 0) + 1
            n = ips[ip] if ips is not None else countOf(map(_IP, events[self._head:]), ip)
            if n == 1:
                self.light += 1
            elif n == self.limit + 1:
                self.light -= 1

    def pop(self) -> None:
        events = self._events
        head = self._head
        _, ip, user, prefix, rare = events[head]
        ips = self._ips
        if ips is None and user is not None and user in map(_USER, events[head + 1:]):
            # The account stays in the window: count now, while the failures still say when
            # it came (ties between example accounts go to the one that came first).
            self._build()
            ips = self._ips
        head += 1
        if head == len(events):
            events.clear()
            head = 0
        elif head >= _SMALL and 2 * head >= len(events):
            del events[:head]
            head = 0
        else:
            events[head - 1] = _GONE  # let the failure go now
        self._head = head
        if rare:
            self.rare -= 1
        if user is not None:
            self.named -= 1
        n = 0
        if ips is not None:
            n = ips[ip] - 1
            if n:
                ips[ip] = n
            else:
                del ips[ip]
            if user is not None:
                assert self._users is not None
                _decrement(self._users, user)
        prefixes = self.prefixes
        if prefixes is not None:
            _decrement(prefixes, prefix)
            if ips is None:
                n = countOf(map(_IP, events[head:]), ip)
            if not n:
                self.light -= 1
            elif n == self.limit:
                self.light += 1

    def expire(self, cutoff: float) -> int:
        """Drop the failures older than ``cutoff``; how many."""
        events = self._events  # pop() changes it in place
        head = self._head
        if len(events) == head or events[head][0] >= cutoff:
            return 0
        if events[-1][0] < cutoff:  # all of them: as if each was popped
            dropped = len(events) - head
            events.clear()
            self._head = 0
            self._ips = self._users = None
            if self.prefixes is not None:
                self.prefixes = {}
            self.light = self.named = self.rare = 0
            return dropped
        dropped = 0
        while len(events) > self._head and events[self._head][0] < cutoff:
            self.pop()
            dropped += 1
        return dropped


_IP = itemgetter(1)  # of an event
_USER = itemgetter(2)


def _decrement(counter: dict[str, int], key: str) -> None:
    left = counter[key] - 1
    if left > 0:
        counter[key] = left
    else:
        del counter[key]


class _Networks:
    """Address -> (normalised address, its network), cached and bounded.

    ``ipaddress`` costs several microseconds an address; a scanner's tries repeat it.
    """

    __slots__ = ("ipv4_prefix", "ipv6_prefix", "cache")

    def __init__(self, ipv4_prefix: int, ipv6_prefix: int) -> None:
        self.ipv4_prefix = ipv4_prefix
        self.ipv6_prefix = ipv6_prefix
        self.cache: dict[str, tuple[str, str] | None] = {}

    def get(self, ip: str) -> tuple[str, str] | None:
        try:
            return self.cache[ip]
        except KeyError:
            pass
        addr = normalise_ip(ip)
        found: tuple[str, str] | None = None
        if addr == ip:
            addr = ip  # one string kept, not two equal ones
        if addr is not None:
            prefix = prefix_of(addr, self.ipv4_prefix, self.ipv6_prefix)
            if prefix == addr:  # a full-length prefix is an address: keep it a CIDR
                prefix = f"{addr}/{128 if ':' in addr else 32}"
            found = (addr, prefix)
        if len(self.cache) >= _ADDRESS_CACHE:
            self.cache.clear()
        self.cache[ip] = found
        return found


class _Accounts:
    """Which accounts are common: tried from ``COMMON_SPREAD`` different groups (an AS when
    known, else the network) with no pause longer than ``COMMON_MEMORY``.

    Learnt online from all failures, so "common" is what the scanners reaching this host
    try, not a fixed list. Bounded: at most ``_MAX_ACCOUNTS`` accounts are followed, least
    recently tried first out; the dict is kept in that order (to within ``_REFRESH``), so
    forgetting costs only what is forgotten.
    """

    __slots__ = ("seen",)

    def __init__(self) -> None:
        # account -> [last try (to within _REFRESH), groups tried from (None once common)]
        self.seen: dict[str, list[Any]] = {}

    def rare(self, account: str | None, group: str, now: float) -> bool:
        """Is ``account`` uncommon? Counts this try first. No account is not rare."""
        if account is None:
            return False
        seen = self.seen
        entry = seen.get(account)
        if entry is None:
            if len(seen) >= _MAX_ACCOUNTS:
                del seen[next(iter(seen))]
            seen[account] = [now, (group,)]
            return COMMON_SPREAD > 1
        if now - entry[0] > _REFRESH:  # move it to the recent end
            del seen[account]
            seen[account] = entry
            entry[0] = now
        groups = entry[1]
        if groups is None:
            return False
        if group not in groups:
            if len(groups) + 1 >= COMMON_SPREAD:
                entry[1] = None
                return False
            entry[1] = (*groups, group)
        return True

    def sweep(self, now: float) -> None:
        """Forget accounts not tried for ``COMMON_MEMORY``."""
        seen = self.seen
        cutoff = now - COMMON_MEMORY
        while seen:
            account = next(iter(seen))
            if seen[account][0] >= cutoff:
                return
            del seen[account]


def _network_sort_key(text: str) -> tuple[int, int]:
    net = ipaddress.ip_network(text, strict=False)
    return net.version, int(net.network_address)


def _address_sort_key(text: str) -> tuple[int, int]:
    addr = ipaddress.ip_address(text)
    return addr.version, int(addr)


def _span(seconds: float) -> str:
    if seconds < 60:
        return f"{max(seconds, 0):.0f} s"
    if seconds < 5400:
        return f"{math.ceil(seconds / 60 - 1e-9)} min"
    return f"{seconds / 3600:.1f} h"


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
        self._config = replace(config if config is not None else DistributedConfig(),
                               **overrides)
        self._networks = _Networks(self._config.ipv4_prefix, self._config.ipv6_prefix)
        self._windows: OrderedDict[str, _Window] = OrderedDict()  # LRU order
        self._alerted: dict[str, tuple[float, int, int]] = {}  # key -> time, failures, addrs
        # AS -> (usual addresses in a window, time of that figure), least recent first
        self._asn_level: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._events = 0
        self._swept = -math.inf  # time of the last full expiry sweep
        self._accounts = _Accounts()
        # the last failure counted, shared with the other windows (and layers) that count
        # the same: one tuple, not one per window
        self._last: list[Event] = [_GONE]

    @property
    def config(self) -> DistributedConfig:
        return self._config

    @config.setter
    def config(self, value: DistributedConfig) -> None:
        """New figures apply at once; windows counted so far are kept."""
        self._config = value
        if (value.ipv4_prefix, value.ipv6_prefix) != (self._networks.ipv4_prefix,
                                                      self._networks.ipv6_prefix):
            self._networks = _Networks(value.ipv4_prefix, value.ipv6_prefix)
        for key, win in list(self._windows.items()):
            if key.startswith("AS") and win.limit != value.asn_max_per_address:
                self._windows[key] = _rebuilt(win, value.asn_max_per_address)

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
        parsed = self._networks.get(ip)
        if parsed is None:
            return []
        account = user[:_KEPT_ACCOUNT] if user else None
        as_key = f"AS{asn}" if asn is not None and asn > 0 else None
        rare = self._accounts.rare(account, parsed[1] if as_key is None else as_key, time)
        return self._observe(time, parsed[0], parsed[1], account, asn, as_key, rare)

    def _observe(self, time: float, addr: str, prefix: str, account: str | None,
                 asn: int | None, as_key: str | None, rare: bool) -> list[NetAlert]:
        alerts: list[NetAlert] = []
        alert = self._count(prefix, time, addr, account, prefix, rare, None)
        if alert is not None:
            alerts.append(alert)
        counted = 1
        if as_key is not None and self._config.count_asn:
            alert = self._count(as_key, time, addr, account, prefix, rare, asn)
            if alert is not None:
                alerts.append(alert)
            counted = 2
        cfg = self._config
        if len(self._windows) > cfg.max_networks or self._events > cfg.max_events:
            self._enforce_bounds(counted)
        return alerts

    def _count(self, key: str, time: float, addr: str, account: str | None, prefix: str,
               rare: bool, asn: int | None) -> NetAlert | None:
        cfg = self._config
        win = self._windows.get(key)
        when = time
        if win is None:
            win = self._windows[key] = _Window(cfg.asn_max_per_address, asn is not None)
        else:
            self._windows.move_to_end(key)
            events = win._events
            if len(events) > win._head:
                if events[win._head][0] < time - cfg.window:
                    self._events -= win.expire(time - cfg.window)
                # Out-of-order times are clamped so each window stays sorted.
                if len(events) > win._head and events[-1][0] > when:
                    when = events[-1][0]
        event = self._last[0]
        if not (event[1] is addr and event[0] == when and event[2] is account
                and event[3] is prefix and event[4] is rare):
            event = self._last[0] = (when, addr, account, prefix, rare)
        win.push(event)
        self._events += 1
        if asn is not None:
            level = self._asn_level.get(key)
            if level is None or when - level[1] >= _LEVEL_STEP:
                self._learn_level(key, win, when)
        # The cheap gates first: most failures complete nothing. Mostly accounts that every
        # scanner tries: not a campaign of its own.
        if len(win._events) - win._head < cfg.min_failures \
                or len(win.ips) < cfg.min_addresses \
                or len(win.users) < cfg.min_accounts or win.rare < cfg.min_rare_share * win.named:
            return None
        return self._check(key, win, asn)

    def expire(self, now: float) -> None:
        """Forget failures older than the window and alerts whose window has passed.

        A full sweep runs at most every twentieth of the window (a window is also brought
        up to date whenever its network fails again), so frequent calls cost nothing.
        """
        cfg = self._config
        if self._swept <= now < self._swept + cfg.window / 20:
            return
        self._swept = now
        cutoff = now - cfg.window
        for key in list(self._windows):
            win = self._windows[key]
            events = win._events
            if len(events) > win._head and events[win._head][0] < cutoff:
                self._events -= win.expire(cutoff)
            if len(events) == win._head:
                del self._windows[key]
        for key in [k for k, (when, _, _) in self._alerted.items() if when <= cutoff]:
            del self._alerted[key]
        faded = now - 5 * cfg.asn_memory  # the level has decayed below 1 %
        levels = self._asn_level  # least recently updated first
        while levels and next(iter(levels.values()))[1] <= faded:
            levels.popitem(last=False)
        self._accounts.sweep(now)

    def _learn_level(self, key: str, win: _Window, now: float) -> None:
        """Time-weighted average of the AS's addresses per window (memory ``asn_memory``).

        An AS that always holds a dozen scanners (a big cloud) then needs a real surge;
        a quiet one alerts at ``asn_min_addresses``. A botnet's own minutes barely move a
        six-hour average, so it does not raise its own bar before it is caught. Updated at
        most once a minute per AS.
        """
        entry = self._asn_level.get(key)
        if entry is None:
            self._asn_level[key] = (0.0, now)
            while len(self._asn_level) > self._config.max_networks:
                self._asn_level.popitem(last=False)
            return
        level, when = entry
        if now - when < _LEVEL_STEP:
            return
        keep = math.exp(-(now - when) / self._config.asn_memory)
        self._asn_level[key] = (keep * level + (1.0 - keep) * len(win.ips), now)
        self._asn_level.move_to_end(key)

    def _check(self, key: str, win: _Window, asn: int | None) -> NetAlert | None:
        cfg = self._config
        failures, n_addr = len(win), len(win.ips)
        if asn is not None:
            if win.prefixes is None or len(win.prefixes) < 2:
                return None  # one network of the AS: its CIDR alert says it better
            # Independent scanners meet in a big hosting AS all the time; what a botnet does
            # and they do not is keep each address under the per-address limit (and try
            # uncommon accounts, checked for every network already).
            if failures > cfg.asn_max_per_address * n_addr:
                return None
            usual = self._asn_level.get(key, (0.0, 0.0))[0]
            if win.light < max(cfg.asn_min_addresses, cfg.min_addresses,
                               cfg.asn_surge * usual):
                return None
        now = win.last
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
        first, last = win.first, win.last
        busiest = sorted(win.ips.items(), key=lambda kv: (-kv[1], _address_sort_key(kv[0])))
        addresses = tuple(ip for ip, _ in busiest[:MAX_ADDRESSES])
        common = sorted(win.users.items(), key=lambda kv: -kv[1])[:MAX_EXAMPLES]
        examples = tuple(clean_account(u) for u, _ in common)
        n_addr, n_users, failures = len(win.ips), len(win.users), len(win)
        span = _span(last - first)
        if asn is None or win.prefixes is None:
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
        cfg = self._config
        while len(self._windows) > cfg.max_networks or self._events > cfg.max_events:
            key, win = next(iter(self._windows.items()))
            if len(self._windows) > protect:
                self._events -= len(win)
                del self._windows[key]
                continue
            # Only the networks of this failure are left: drop their oldest failures instead.
            win.pop()
            self._events -= 1
            if not len(win):
                del self._windows[key]

    # -- persistence ---------------------------------------------------------------------

    def to_state(self) -> dict[str, Any]:
        """Windows (least recently active first) and recent alerts, as JSON-able values."""
        return {"version": STATE_VERSION, "config": asdict(self._config),
                "windows": {key: [list(ev) for ev in win.events]
                            for key, win in self._windows.items()},
                "alerted": {key: list(val) for key, val in self._alerted.items()},
                "asn_level": {key: list(val) for key, val in self._asn_level.items()}}

    @classmethod
    def from_state(cls, data: dict[str, Any],
                   config: DistributedConfig | None = None) -> DistributedDetector:
        """Rebuild from ``to_state()``; ``config`` replaces the saved figures when given."""
        if data.get("version") != STATE_VERSION:
            raise ValueError(f"unsupported distributed detector state version "
                             f"{data.get('version')!r}")
        if config is None:
            config = DistributedConfig(**data["config"])
        det = cls(config=config)
        limit = det._config.asn_max_per_address
        for key, events in data["windows"].items():
            key = str(key)
            win = det._windows[key] = _Window(limit, key.startswith("AS"))
            for when, ip, user, prefix, *rare in events:  # states before 0.x had no flag
                win.add(float(when), str(ip), None if user is None else str(user), str(prefix),
                        bool(rare[0]) if rare else False)
            det._events += len(win)
        det._alerted = {str(key): (float(when), int(fails), int(addrs))
                        for key, (when, fails, addrs) in data["alerted"].items()}
        for key, (level, when) in data.get("asn_level", {}).items():
            det._asn_level[str(key)] = (float(level), float(when))
        det._enforce_bounds()
        return det


def _rebuilt(win: _Window, limit: int) -> _Window:
    fresh = _Window(limit, win.prefixes is not None)
    for when, ip, user, prefix, rare in win.events:
        fresh.add(when, ip, user, prefix, rare)
    return fresh


class LayeredDetector:
    """A fast window (minutes) and a slow one (hours) over the same failures.

    The slow layer catches botnets that spread 100 tries over hours; it asks for uncommon
    accounts (a hosting network collects unrelated scanners over hours, and they all try
    root). Each address is parsed, and each account judged common or not, once for both.
    """

    def __init__(self, fast: DistributedDetector | None = None,
                 slow: DistributedDetector | None = None) -> None:
        self.fast = fast if fast is not None else DistributedDetector()
        self.slow = slow if slow is not None else DistributedDetector(config=SLOW_CONFIG)
        self.slow._last = self.fast._last  # the layers count the same failures

    def __len__(self) -> int:
        return len(self.fast) + len(self.slow)

    def observe(self, time: float, ip: str, user: str | None,
                asn: int | None = None) -> list[NetAlert]:
        fast, slow = self.fast, self.slow
        parsed = fast._networks.get(ip)
        if parsed is None:
            return []
        account = user[:_KEPT_ACCOUNT] if user else None
        as_key = f"AS{asn}" if asn is not None and asn > 0 else None
        rare = fast._accounts.rare(account, parsed[1] if as_key is None else as_key, time)
        alerts = fast._observe(time, parsed[0], parsed[1], account, asn, as_key, rare)
        if slow._networks.ipv4_prefix == fast._networks.ipv4_prefix \
                and slow._networks.ipv6_prefix == fast._networks.ipv6_prefix:
            more = slow._observe(time, parsed[0], parsed[1], account, asn, as_key, rare)
        else:
            more = slow.observe(time, ip, user, asn)
        return alerts + more if more else alerts

    def expire(self, now: float) -> None:
        self.fast.expire(now)
        self.slow.expire(now)

    def to_state(self) -> dict[str, Any]:
        return {"fast": self.fast.to_state(), "slow": self.slow.to_state()}

    @classmethod
    def from_state(cls, data: dict[str, Any]) -> LayeredDetector:
        """What was counted and learnt comes from the state; the figures from this code.

        The daemon then applies the ``[anomaly]`` knobs to the fast layer. A state saved
        before the slow layer existed gets a fresh slow layer.
        """
        if "fast" not in data:
            return cls(DistributedDetector.from_state(data, DistributedConfig()))
        return cls(DistributedDetector.from_state(data["fast"], DistributedConfig()),
                   DistributedDetector.from_state(data["slow"], SLOW_CONFIG))
