"""Per-account login anomaly detection: is this *successful* login unlike the account's past?

Counting failures cannot see an attacker who already has the password or key; only the
account's own habits can. This is a sans-I/O core: no clock (time comes with each event), no
files, no threads, no look-ups (country, AS, position and DNSBL listings are filled in by the
caller's enrichment). The model is a per-account frequency profile scored in bits of surprise:

* where from, as a chain country > AS > /24 (/48) network > address: only the broadest level
  that is new costs, because it implies the rest (a new country's AS is bound to be new). An
  unseen value costs ``log2((days + 2) / (distinct + 1))`` bits: the inverse of the rate at
  which the account has met new values per active day (rule of succession; per day, not per
  login, so a mail client polling every minute does not make novelty look rarer). A roaming
  account is thus less surprised by one more address than one that never moved, and a new
  country counts fully only when it is >= 2,000 km from every place the account was seen (a
  neighbouring country is a trip, not a takeover; a quarter at <= 200 km), and then scores at
  least ``far_country_floor`` however short the history (or without any position);
* a new auth method or service, scored the same way;
* hour of day: a circular, kernel-smoothed 24-bin histogram with a uniform prior, scored as
  the surprise above the account's own entropy (a night owl is not surprised by 03:00);
* activity in the recent window (logins in ``burst_minutes``; addresses that were new when
  they appeared and countries in ``window_minutes``) as robust z-scores against the median /
  MAD of the account's own learned values;
* hard evidence: a hop faster than ``travel_kmh`` over >= ``travel_min_km`` (haversine) from
  the last learned position, unless that hop (AS to AS) was acknowledged before (a VPN, a
  jump host, GeoIP placing a mobile carrier at a country's centroid); a DNSBL listing (a third
  of the weight for an address already learned).

The weighted sum is the score; ``unusual`` means score >= threshold once the account has
``min_history`` logins spread over ``min_days`` (during warm-up everything is learned, so an
intruder already there becomes the habit). Scikit-learn's Local Outlier Factor on the same
features was evaluated in ``bench/anomaly_login.py`` and did far worse at every threshold, so
tailban does not depend on it.

Hour of day is computed from ``event.time`` in the *model's* ``tz`` (one zone for the whole
model, normally the server's): a habit is only comparable within one frame of reference, the
histogram is relative to the account anyway (a user living in another zone simply has their
own shifted habit), and keeping the zone off the event keeps events plain data.

Everything in a reason that came from a log or a look-up is attacker-influenced: it is shown
bare only when made of harmless characters, else repr-quoted (control and bidi characters
escaped), and cut at 64 characters.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

STATE_VERSION = 1
_EARTH_KM = 6371.0088
_KERNEL = ((0, 1.0), (1, 0.5), (-1, 0.5), (2, 0.25), (-2, 0.25))
_KERNEL_SUM = sum(w for _, w in _KERNEL)
_HIST_MAX = 64  # window counts above this are clamped: bounded histograms
_SAFE = re.compile(r"[A-Za-z0-9._:@+/-]{1,64}")
_MAX_TEXT = 64


@dataclass(frozen=True, slots=True)
class LoginEvent:
    """One successful login, already enriched by the caller (unknown facts stay None)."""

    account: str
    ip: str
    time: float
    service: str = "ssh"
    method: str | None = None
    country: str | None = None
    asn: int | None = None
    latitude: float | None = None
    longitude: float | None = None
    dnsbl: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Judgement:
    """The verdict on one login; ``features`` holds every number behind it for review."""

    score: float
    unusual: bool
    reasons: tuple[str, ...]
    features: dict[str, float]
    warming_up: bool


@dataclass(frozen=True, slots=True)
class Weights:
    """How many score points one bit (or one z unit) of each kind of evidence is worth.

    The defaults were set on the synthetic evaluation in ``bench/anomaly_login.py``.
    """

    country: float = 1.75
    far_country_floor: float = 6.0  # a new country >= 2,000 km away: at least this, any history
    asn: float = 1.0
    network: float = 0.6
    address: float = 0.4
    method: float = 1.0
    service: float = 0.3
    hour: float = 1.0
    hour_slack_bits: float = 1.0
    hour_cap_bits: float = 8.0
    novelty_cap_bits: float = 8.0
    travel: float = 8.0
    dnsbl: float = 6.0
    dnsbl_extra_zone: float = 1.0
    burst: float = 1.0
    burst_z0: float = 3.0
    new_addresses: float = 1.5
    new_addresses_z0: float = 1.0
    countries: float = 2.5
    countries_z0: float = 0.5


def quote(text: str) -> str:
    """Attacker-influenced text made safe to show: bare if harmless, else repr, max 64 chars."""
    cut = text[:_MAX_TEXT]
    if _SAFE.fullmatch(cut) and cut == text:
        return cut
    return repr(cut) + ("..." if len(text) > _MAX_TEXT else "")


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance; good to ~0.5 %, far below GeoIP's own error."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * _EARTH_KM * math.asin(min(1.0, math.sqrt(a)))


def network_of(ip: str) -> str:
    """The /24 (IPv4) or /48 (IPv6) around an address: DHCP churn stays inside it."""
    parts = ip.split(".")
    if len(parts) == 4 and all(p.isdigit() and len(p) <= 3 for p in parts):
        return f"{int(parts[0])}.{int(parts[1])}.{int(parts[2])}.0/24"  # the common case, fast
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return ip[:_MAX_TEXT]
    prefix = 24 if addr.version == 4 else 48
    return str(ipaddress.ip_network(f"{addr}/{prefix}", strict=False))


def _hist_stats(hist: list[int]) -> tuple[float, float, float]:
    """Median, MAD and 90th percentile of small integers kept as a histogram (exact)."""
    items = [(v, c) for v, c in enumerate(hist) if c]
    total = sum(c for _, c in items)
    med = _quantile(items, total, 0.5)
    devs: dict[int, int] = {}
    for v, c in items:
        d = int(abs(v - med))
        devs[d] = devs.get(d, 0) + c
    mad = _quantile(sorted(devs.items()), total, 0.5)
    return med, mad, _quantile(items, total, 0.9)


def _quantile(items: list[tuple[int, int]], total: int, q: float) -> float:
    seen = 0
    for value, count in items:
        seen += count
        if seen >= q * total:
            return float(value)
    return float(items[-1][0]) if items else 0.0


def _novel_bits(days: int, distinct: int) -> float:
    """Surprise of a new value: its rate so far is (distinct + 1) / (days + 2) at most 1."""
    return max(0.0, math.log2((days + 2) / (distinct + 1)))


def _fmt_hour(hour: float) -> str:
    h = int(hour) % 24
    return f"{h:02d}:{int(round((hour - int(hour)) * 60)) % 60:02d}"


class _Account:
    """One account's learned profile plus its recent activity (learned or not)."""

    __slots__ = ("n", "days", "last_day", "first", "last", "addresses", "networks",
                 "countries", "asns", "methods", "services", "places", "hours", "burst_hist",
                 "newaddr_hist", "country_hist", "recent", "last_pos", "hops", "cache")

    def __init__(self) -> None:
        self.n = 0
        self.days = 0  # distinct active days: novelty rates are per day, not per login
        self.last_day = -1
        self.first: float | None = None
        self.last: float | None = None
        # value -> [count, last seen]; dict order is recency order (LRU eviction)
        self.addresses: dict[str, list[float]] = {}
        self.networks: dict[str, list[float]] = {}
        self.countries: dict[str, int] = {}
        self.asns: dict[int, int] = {}
        self.methods: dict[str, int] = {}
        self.services: dict[str, int] = {}
        self.places: dict[str, list[float]] = {}  # "lat,lon" rounded -> [lat, lon, count]
        self.hours = [0.0] * 24
        self.burst_hist = [0] * (_HIST_MAX + 1)
        self.newaddr_hist = [0] * (_HIST_MAX + 1)
        self.country_hist = [0] * (_HIST_MAX + 1)
        # [time, ip, country or "", address was unknown (0/1)]
        self.recent: list[list[Any]] = []
        self.last_pos: list[Any] | None = None  # [time, lat, lon, country or "", hop key]
        self.hops: list[list[str]] = []  # fast hops an administrator confirmed (VPN, jump)
        self.cache: dict[str, Any] = {}  # derived from the above; emptied by every learn

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.n, "days": self.days, "last_day": self.last_day,
            "first": self.first, "last": self.last,
            "addresses": self.addresses, "networks": self.networks,
            "countries": self.countries, "asns": {str(k): v for k, v in self.asns.items()},
            "methods": self.methods, "services": self.services, "places": self.places,
            "hours": self.hours, "burst_hist": self.burst_hist,
            "newaddr_hist": self.newaddr_hist, "country_hist": self.country_hist,
            "recent": self.recent, "last_pos": self.last_pos, "hops": self.hops,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> _Account:
        a = cls()
        a.n = int(d["n"])
        a.days, a.last_day = int(d["days"]), int(d["last_day"])
        a.first = None if d["first"] is None else float(d["first"])
        a.last = None if d["last"] is None else float(d["last"])
        a.addresses = {str(k): [float(x) for x in v] for k, v in d["addresses"].items()}
        a.networks = {str(k): [float(x) for x in v] for k, v in d["networks"].items()}
        a.countries = {str(k): int(v) for k, v in d["countries"].items()}
        a.asns = {int(k): int(v) for k, v in d["asns"].items()}
        a.methods = {str(k): int(v) for k, v in d["methods"].items()}
        a.services = {str(k): int(v) for k, v in d["services"].items()}
        a.places = {str(k): [float(x) for x in v] for k, v in d["places"].items()}
        a.hours = [float(x) for x in d["hours"]][:24] + [0.0] * max(0, 24 - len(d["hours"]))
        a.burst_hist = _load_hist(d["burst_hist"])
        a.newaddr_hist = _load_hist(d["newaddr_hist"])
        a.country_hist = _load_hist(d["country_hist"])
        a.recent = [[float(t), str(ip), str(c), int(u)] for t, ip, c, u in d["recent"]]
        lp = d["last_pos"]
        a.last_pos = None if lp is None else [float(lp[0]), float(lp[1]), float(lp[2]),
                                              str(lp[3]), str(lp[4])]
        a.hops = [[str(x), str(y)] for x, y in d["hops"]]
        return a


def _load_hist(values: list[Any]) -> list[int]:
    hist = [0] * (_HIST_MAX + 1)
    for i, v in enumerate(values[: _HIST_MAX + 1]):
        hist[i] = int(v)
    return hist


def _bump_lru(table: dict[str, list[float]], key: str, when: float, cap: int) -> None:
    entry = table.pop(key, None)
    table[key] = [1.0, when] if entry is None else [entry[0] + 1, max(entry[1], when)]
    while len(table) > cap:
        del table[next(iter(table))]


def _bump_count(table: dict[Any, int], key: Any, cap: int) -> None:
    table[key] = table.get(key, 0) + 1
    if len(table) > cap:
        # the rarest value other than the one just seen goes: habits keep their mass
        victim = min((k for k in table if k != key), key=lambda k: table[k])
        del table[victim]


@dataclass
class _Window:
    burst: int = 0
    new_addresses: int = 0
    countries: int = 0
    country_names: list[str] = field(default_factory=list)


class LoginModel:
    """Learns each account's normal logins and judges new ones against it.

    ``judge`` never changes the model; ``observe`` judges, records the login in the recent
    activity window and learns it as normal only when it was not unusual, so an attacker's
    login does not become the account's habit. After an administrator confirms such a login
    was genuine, ``learn(event)`` teaches it. Memory is bounded: ``max_addresses`` addresses
    and networks per account (least recently seen dropped), ``max_accounts`` accounts (least
    recently active dropped).
    """

    def __init__(self, min_history: int = 20, threshold: float = 6.0,
                 window_minutes: float = 60.0, *, min_days: float = 7.0,
                 burst_minutes: float = 10.0, travel_kmh: float = 1000.0,
                 travel_min_km: float = 500.0, max_addresses: int = 256,
                 max_accounts: int = 100_000, tz: tzinfo = UTC,
                 weights: Weights | None = None) -> None:
        self.min_history = min_history
        self.threshold = threshold
        self.window_minutes = window_minutes
        self.min_days = min_days
        self.burst_minutes = burst_minutes
        self.travel_kmh = travel_kmh
        self.travel_min_km = travel_min_km
        self.max_addresses = max_addresses
        self.max_accounts = max_accounts
        self.tz = tz
        self.weights = weights or Weights()
        self._accounts: OrderedDict[str, _Account] = OrderedDict()

    # -- public API -------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._accounts)

    def history(self, account: str) -> int:
        """How many logins of ``account`` the model has learned as normal."""
        acct = self._accounts.get(account)
        return 0 if acct is None else acct.n

    def judge(self, event: LoginEvent) -> Judgement:
        """Score ``event`` against its account's profile without changing anything."""
        acct = self._accounts.get(event.account) or _Account()
        return self._judge(acct, event)

    def observe(self, event: LoginEvent) -> Judgement:
        """Judge, note the activity, and learn the login only if it looked normal."""
        acct = self._touch(event.account)
        verdict = self._judge(acct, event)
        self._note_recent(acct, event)
        if not verdict.unusual:
            self._learn(acct, event)
        return verdict

    def learn(self, event: LoginEvent) -> None:
        """Teach ``event`` as normal for its account (e.g. after an administrator's ack)."""
        acct = self._touch(event.account)
        self._note_recent(acct, event)
        self._learn(acct, event)

    def forget(self, account: str) -> None:
        """Drop an account's profile (account deleted, or its history was an attacker's)."""
        self._accounts.pop(account, None)

    def to_state(self) -> dict[str, Any]:
        """Everything as JSON-able plain data, so the profiles survive restarts."""
        params = {
            "min_history": self.min_history, "threshold": self.threshold,
            "window_minutes": self.window_minutes, "min_days": self.min_days,
            "burst_minutes": self.burst_minutes, "travel_kmh": self.travel_kmh,
            "travel_min_km": self.travel_min_km, "max_addresses": self.max_addresses,
            "max_accounts": self.max_accounts, "tz": _tz_to_state(self.tz),
            "weights": asdict(self.weights),
        }
        return {"version": STATE_VERSION, "params": params,
                "accounts": {name: a.to_dict() for name, a in self._accounts.items()}}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> LoginModel:
        """The model ``to_state`` described (accounts in the same LRU order)."""
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"unsupported login model state version {state.get('version')!r}")
        p = dict(state["params"])
        known = {f.name for f in fields(Weights)}
        weights = Weights(**{k: float(v) for k, v in p.pop("weights").items() if k in known})
        tz = _tz_from_state(p.pop("tz"))
        model = cls(weights=weights, tz=tz, **p)
        for name, data in state["accounts"].items():
            model._accounts[str(name)] = _Account.from_dict(data)
        return model

    # -- internals --------------------------------------------------------------------------

    def _touch(self, account: str) -> _Account:
        acct = self._accounts.get(account)
        if acct is None:
            acct = self._accounts[account] = _Account()
            while len(self._accounts) > self.max_accounts:
                self._accounts.popitem(last=False)
        else:
            self._accounts.move_to_end(account)
        return acct

    def _local_hour(self, t: float) -> float:
        dt = datetime.fromtimestamp(t, self.tz)
        return dt.hour + dt.minute / 60.0

    def _window(self, acct: _Account, event: LoginEvent) -> _Window:
        """Activity around ``event``: the recent list holds learned and unusual logins alike."""
        start_w = event.time - self.window_minutes * 60
        start_b = event.time - self.burst_minutes * 60
        burst = 1
        new_ips: set[str] = set()
        countries: dict[str, None] = {}
        for t, ip, country, unknown in acct.recent:
            if t > event.time or (t == event.time and ip == event.ip):
                continue
            if t >= start_b:
                burst += 1
            if t >= start_w:
                if unknown:  # new when it appeared, even if learned since: a ramp counts
                    new_ips.add(ip)
                if country:
                    countries[country] = None
        if event.ip not in acct.addresses:
            new_ips.add(event.ip)
        if event.country:
            countries[event.country] = None
        return _Window(burst, len(new_ips), len(countries), list(countries))

    def _note_recent(self, acct: _Account, event: LoginEvent) -> None:
        horizon = event.time - max(self.window_minutes, self.burst_minutes) * 60
        recent = [r for r in acct.recent if r[0] >= horizon]
        if not any(r[0] == event.time and r[1] == event.ip for r in recent):
            recent.append([event.time, event.ip, event.country or "",
                           int(event.ip not in acct.addresses)])
            recent.sort(key=lambda r: float(r[0]))
        acct.recent = recent[-4 * self.max_addresses:]

    def _learn(self, acct: _Account, event: LoginEvent) -> None:
        acct.cache.clear()
        win = self._window(acct, event)
        acct.burst_hist[min(win.burst, _HIST_MAX)] += 1
        acct.newaddr_hist[min(win.new_addresses, _HIST_MAX)] += 1
        acct.country_hist[min(win.countries, _HIST_MAX)] += 1
        acct.n += 1
        day = int(event.time // 86400)
        if day != acct.last_day:
            acct.days += 1
            acct.last_day = day
        acct.first = event.time if acct.first is None else min(acct.first, event.time)
        acct.last = event.time if acct.last is None else max(acct.last, event.time)
        _bump_lru(acct.addresses, event.ip, event.time, self.max_addresses)
        _bump_lru(acct.networks, network_of(event.ip), event.time, self.max_addresses)
        if event.country:
            _bump_count(acct.countries, event.country, 64)
        if event.asn is not None:
            _bump_count(acct.asns, event.asn, 128)
        if event.method:
            _bump_count(acct.methods, event.method, 16)
        _bump_count(acct.services, event.service, 16)
        hour = int(self._local_hour(event.time)) % 24
        acct.hours[hour] += 1.0
        if event.latitude is not None and event.longitude is not None:
            key = f"{round(event.latitude * 2) / 2:g},{round(event.longitude * 2) / 2:g}"
            place = acct.places.pop(key, None)
            acct.places[key] = ([event.latitude, event.longitude, 1.0] if place is None
                                else [place[0], place[1], place[2] + 1])
            while len(acct.places) > 64:
                del acct.places[next(iter(acct.places))]
            hop = self._hop(acct, event)
            if hop is not None and hop[2] and sorted(hop[:2]) not in acct.hops:
                acct.hops.append(sorted(hop[:2]))  # learned, so confirmed (or in warm-up)
                del acct.hops[:-64]
            if acct.last_pos is None or event.time >= float(acct.last_pos[0]):
                acct.last_pos = [event.time, event.latitude, event.longitude,
                                 event.country or "", _hop_key(event)]

    def _judge(self, acct: _Account, event: LoginEvent) -> Judgement:
        w = self.weights
        f: dict[str, float] = {"history": float(acct.n)}
        parts: list[tuple[float, str]] = []  # (points, reason)
        n = acct.n
        span_days = 0.0 if acct.first is None or acct.last is None else (
            (max(acct.last, event.time) - acct.first) / 86400)
        f["history_days"] = round(span_days, 3)
        warming = n < self.min_history or span_days < self.min_days
        who = quote(event.account)

        # Where from: country > AS > network > address. Only the broadest new level costs,
        # since it implies the rest (a new country's AS is bound to be new too).
        days = max(acct.days, 1)
        levels: list[tuple[str, bool, int]] = []
        if event.country:
            levels.append(("country", event.country not in acct.countries,
                           len(acct.countries)))
        if event.asn is not None:
            levels.append(("asn", event.asn not in acct.asns, len(acct.asns)))
        net = network_of(event.ip)
        levels.append(("network", net not in acct.networks, len(acct.networks)))
        levels.append(("address", event.ip not in acct.addresses, len(acct.addresses)))
        first_new = next((lv for lv in levels if lv[1]), None)
        for name, new, distinct in levels:
            f[f"{name}_new"] = float(new)
            f[f"{name}_bits"] = round(min(_novel_bits(days, distinct), w.novelty_cap_bits), 3)
        pts = 0.0
        if first_new is not None:
            name, bits = first_new[0], f[f"{first_new[0]}_bits"]
            if name == "country":
                assert event.country is not None
                km = self._nearest_place_km(acct, event)
                near = 1.0 if km is None else min(1.0, max(0.25, math.log10(max(km, 1) / 200)))
                if km is not None:
                    f["country_km"] = round(km, 1)
                pts = w.country * bits * near
                if near >= 1.0:
                    pts = max(pts, w.far_country_floor)
                seen = ", ".join(quote(c) for c in _top(acct.countries, 3)) or "none"
                far = "" if km is None else f", {km:,.0f} km from usual places"
                parts.append((pts, f"new country {quote(event.country)} for {who} "
                                   f"(seen before: {seen}){far}"))
            elif name == "asn":
                pts = w.asn * bits
                parts.append((pts, f"new AS {event.asn} (address {quote(event.ip)})"))
            elif name == "network":
                pts = w.network * bits
                parts.append((pts, f"new network {quote(net)} (address {quote(event.ip)})"))
            else:
                pts = w.address * bits
                parts.append((pts, f"new address {quote(event.ip)}"))
        f["s_place"] = pts

        pts = 0.0
        if event.method:
            count = acct.methods.get(event.method, 0)
            if count == 0:
                pts = w.method * min(_novel_bits(days, len(acct.methods)), w.novelty_cap_bits)
                parts.append((pts, f"new auth method {quote(event.method)}"))
            f["method_new"] = float(count == 0)
        f["s_method"] = pts

        pts = 0.0
        if event.service not in acct.services:
            pts = w.service * min(_novel_bits(days, len(acct.services)), w.novelty_cap_bits)
            parts.append((pts, f"new service {quote(event.service)}"))
        f["s_service"] = pts

        hour = self._local_hour(event.time)
        f["hour"] = round(hour, 3)
        excess, bits = self._hour_excess(acct, int(hour) % 24)
        f["hour_bits"], f["hour_excess"] = round(bits, 3), round(excess, 3)
        pts = w.hour * min(max(0.0, excess - w.hour_slack_bits), w.hour_cap_bits)
        f["s_hour"] = pts
        if pts >= 0.5:  # the usual span costs a scan: only for a reason that is shown
            parts.append((pts, f"login at {_fmt_hour(hour)}, unusual hour "
                               f"(usual {self._usual_hours(acct)})"))

        pts = 0.0
        hop = self._hop(acct, event)
        if hop is not None and acct.last_pos is not None:
            origin, here, fast, km, minutes = hop
            kmh = km / max(minutes / 60, 1 / 60)
            f["travel_km"], f["travel_kmh"] = round(km, 1), round(kmh, 1)
            if fast and sorted((origin, here)) not in acct.hops:
                pts = w.travel
                c0 = str(acct.last_pos[3])
                where = f"last login in {quote(c0)}" if c0 else "last login"
                parts.append((pts, f"impossible travel: {km:,.0f} km from {where} in "
                                   f"{minutes:,.0f} min ({kmh:,.0f} km/h)"))
        f["s_travel"] = pts

        pts = 0.0
        if event.dnsbl:
            zones = sorted({quote(z) for z in event.dnsbl})
            pts = w.dnsbl + w.dnsbl_extra_zone * min(len(zones) - 1, 2)
            if event.ip in acct.addresses:
                pts /= 3  # listed but already known (and so once acknowledged) as the user's
            shown = ", ".join(zones[:3]) + (f" and {len(zones) - 3} more" if len(zones) > 3
                                            else "")
            parts.append((pts, f"address listed on {shown}"))
        f["dnsbl"] = float(len(event.dnsbl))
        f["s_dnsbl"] = pts

        win = self._window(acct, event)
        f["burst"], f["new_addresses"], f["countries"] = (
            float(win.burst), float(win.new_addresses), float(win.countries))
        z, usual = self._robust_z(acct, "burst", acct.burst_hist, win.burst, 1.0)
        f["burst_z"] = round(z, 3)
        pts = w.burst * max(0.0, z - w.burst_z0)
        f["s_burst"] = pts
        parts.append((pts, f"{win.burst} logins in {self.burst_minutes:g} min "
                           f"(usual <= {usual:g})"))
        z, usual = self._robust_z(acct, "newaddr", acct.newaddr_hist, win.new_addresses, 0.0)
        f["new_addresses_z"] = round(z, 3)
        pts = w.new_addresses * max(0.0, z - w.new_addresses_z0)
        f["s_new_addresses"] = pts
        parts.append((pts, f"{win.new_addresses} new addresses in "
                           f"{self.window_minutes:g} min (usual <= {usual:g})"))
        z, usual = self._robust_z(acct, "country", acct.country_hist, win.countries, 1.0)
        f["countries_z"] = round(z, 3)
        pts = w.countries * max(0.0, z - w.countries_z0) if win.countries > 1 else 0.0
        f["s_countries"] = pts
        shown = ", ".join(quote(c) for c in win.country_names[:5])
        parts.append((pts, f"{win.countries} countries in {self.window_minutes:g} min "
                           f"({shown})"))

        score = round(sum(p for p, _ in parts), 3)
        f["score"] = score
        reasons = tuple(r for p, r in sorted(parts, key=lambda x: -x[0]) if p >= 0.5)
        unusual = not warming and score >= self.threshold
        return Judgement(score, unusual, reasons, f, warming)

    def _hop(self, acct: _Account, event: LoginEvent
             ) -> tuple[str, str, bool, float, float] | None:
        """From the last learned position to this one: (from, to, too fast?, km, minutes)."""
        if acct.last_pos is None or event.latitude is None or event.longitude is None:
            return None
        t0, lat0, lon0 = (float(x) for x in acct.last_pos[:3])
        km = haversine_km(lat0, lon0, event.latitude, event.longitude)
        minutes = abs(event.time - t0) / 60
        kmh = km / max(minutes / 60, 1 / 60)  # a minute's resolution: clocks differ
        fast = km >= self.travel_min_km and kmh > self.travel_kmh
        return str(acct.last_pos[4]), _hop_key(event), fast, km, minutes

    @staticmethod
    def _hour_excess(acct: _Account, hour: int) -> tuple[float, float]:
        """Surprise of ``hour`` above the account's own entropy (uniform prior of 1 login)."""
        cached = acct.cache.get("hours")
        if cached is None:
            sm = [0.0] * 24
            for h, c in enumerate(acct.hours):
                if c:
                    for off, k in _KERNEL:
                        sm[(h + off) % 24] += c * k / _KERNEL_SUM
            total = sum(sm) + 1.0
            probs = [(x + 1 / 24) / total for x in sm]
            entropy = -sum(p * math.log2(p) for p in probs)
            cached = acct.cache["hours"] = ([-math.log2(p) for p in probs], entropy)
        bits = cached[0][hour]
        return bits - cached[1], bits

    def _usual_hours(self, acct: _Account) -> str:
        """The shortest circular span of whole hours holding 90 % of the learned logins."""
        total = sum(acct.hours)
        if total == 0:
            return "unknown"
        start, length = 0, 24
        for span in range(1, 24):
            mass = sum(acct.hours[:span])
            for first in range(24):
                if mass >= 0.9 * total:
                    start, length = first, span
                    break
                mass += acct.hours[(first + span) % 24] - acct.hours[first]
            if length < 24:
                break
        if length == 24:
            return "any hour"
        return f"{start:02d}:00-{(start + length) % 24:02d}:00"

    def _nearest_place_km(self, acct: _Account, event: LoginEvent) -> float | None:
        if event.latitude is None or event.longitude is None or not acct.places:
            return None
        return min(haversine_km(p[0], p[1], event.latitude, event.longitude)
                   for p in acct.places.values())

    @staticmethod
    def _robust_z(acct: _Account, name: str, hist: list[int], value: int,
                  default_median: float) -> tuple[float, float]:
        """Robust z of a window count, and the usual upper value (90th percentile)."""
        cached = acct.cache.get(name)
        if cached is None:
            cached = acct.cache[name] = (_hist_stats(hist) if any(hist)
                                         else (default_median, 0.0, default_median))
        med, mad, usual = cached
        return (value - med) / max(1.4826 * mad, 1.0), usual


def _hop_key(event: LoginEvent) -> str:
    """Where a hop starts or ends: the AS (GeoIP places one AS's addresses alike), else ~1°."""
    if event.asn is not None:
        return f"AS{event.asn}"
    if event.latitude is None or event.longitude is None:
        return "?"
    return f"{round(event.latitude)},{round(event.longitude)}"


def _top(table: Mapping[str, int], k: int) -> list[str]:
    return [key for key, _ in sorted(table.items(), key=lambda kv: (-kv[1], kv[0]))[:k]]


def _tz_to_state(tz: tzinfo) -> str | float:
    if isinstance(tz, ZoneInfo):
        return tz.key
    offset = tz.utcoffset(None)
    return 0.0 if offset is None else offset.total_seconds()


def _tz_from_state(value: str | float) -> tzinfo:
    if isinstance(value, str):
        return ZoneInfo(value)
    if not value:
        return UTC
    return timezone(timedelta(seconds=float(value)))
