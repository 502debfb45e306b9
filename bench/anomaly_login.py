#!/usr/bin/env python3
"""Evaluate the per-account login anomaly detector on generated months and on real logs.

    python3 bench/anomaly_login.py [--accounts 20] [--days 182] [--seed 7] [--no-lof]

Part 1 generates months of successful logins for several kinds of account (office hours,
night owl, on-call sysadmin, a mail client polling IMAP; home ISP with DHCP churn, office,
CGNAT mobile addresses geolocated only to the country, trips to neighbouring countries, a
few accounts living in two countries), injects labelled anomalies after a two-week warm-up,
streams everything through ``LoginModel.observe`` in time order and prints, per detector,
recall per anomaly type, precision, and false alerts per account-month after warm-up.
False alerts are acknowledged at once (``learn``), as the administrator is meant to; the
figure without acknowledgement is printed too. Detectors: the robust frequency model
(tailban's), scikit-learn's LocalOutlierFactor fitted per account on the same features
(when scikit-learn is installed; refitted weekly on what it accepted), and the naive
baseline "any new country".

Part 2 runs the model over the real successful logins in ../shared/corpus/real/ (sshd
``Accepted``, dovecot ``Login:``, postfix ``sasl_username=``) and lists what it raises.
Deterministic (fixed seed), no root, no network, well under a minute.
"""

from __future__ import annotations

import argparse
import math
import random
import re
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from tailban.anomaly.login import Judgement, LoginEvent, LoginModel  # noqa: E402

CORPUS = ROOT.parent / "shared" / "corpus" / "real"
DAY = 86400.0
START = datetime(2026, 1, 5, tzinfo=UTC).timestamp()  # a Monday
WARMUP_DAYS = 14

CITY = {  # capital (or main city) of each country: where GeoIP puts its addresses
    "NL": (52.37, 4.90), "DE": (52.52, 13.40), "FR": (48.86, 2.35), "BE": (50.85, 4.35),
    "GB": (51.51, -0.13), "ES": (40.42, -3.70), "IT": (41.90, 12.50), "PL": (52.23, 21.01),
    "SE": (59.33, 18.07), "AT": (48.21, 16.37), "CH": (47.37, 8.54), "DK": (55.68, 12.57),
    "CZ": (50.08, 14.44), "PT": (38.72, -9.14), "LU": (49.61, 6.13), "NO": (59.91, 10.75),
    "US": (40.71, -74.01), "CN": (39.90, 116.41), "RU": (55.76, 37.62),
    "BR": (-23.55, -46.63), "VN": (21.03, 105.85), "IN": (19.08, 72.88),
    "KR": (37.57, 126.98), "ID": (-6.20, 106.85), "NG": (6.52, 3.38), "TR": (41.01, 28.98),
    "IR": (35.69, 51.39), "UA": (50.45, 30.52), "AR": (-34.60, -58.38), "TH": (13.76, 100.50),
    "JP": (35.68, 139.69),
}
CENTROID = {"US": (39.83, -98.58)}  # GeoIP's country-only answer for a large country
NEIGHBOURS = {
    "NL": ["BE", "DE", "LU"], "DE": ["NL", "AT", "PL", "CZ", "DK", "CH", "FR"],
    "FR": ["BE", "DE", "ES", "CH", "IT", "LU"], "BE": ["NL", "FR", "DE", "LU"],
    "GB": ["FR", "NL", "BE"], "ES": ["FR", "PT"], "IT": ["FR", "CH", "AT"],
    "PL": ["DE", "CZ"], "SE": ["NO", "DK"], "AT": ["DE", "CH", "IT", "CZ"],
}
HOMES = list(NEIGHBOURS)
ATTACKER_COUNTRIES = ["CN", "RU", "BR", "VN", "IN", "KR", "ID", "NG", "TR", "IR", "UA",
                      "AR", "TH", "US"]
DNSBL = ("zen.spamhaus.org",)


# -- addresses ----------------------------------------------------------------------------

@dataclass
class Net:
    """A /16 announced by one AS and geolocated to one place (± noise)."""

    asn: int
    prefix: str
    country: str
    lat: float
    lon: float
    noise_deg: float = 0.05

    def address(self, rng: random.Random, pool: int = 0) -> str:
        """A random address, or one of the first ``pool`` (a CGNAT pool reuses its few)."""
        k = rng.randrange(pool) if pool else rng.randrange(65536)
        return f"{self.prefix}.{(k * 37) % 256}.{1 + k % 253}"

    def where(self, rng: random.Random) -> tuple[float, float]:
        return (self.lat + rng.uniform(-self.noise_deg, self.noise_deg),
                self.lon + rng.uniform(-self.noise_deg, self.noise_deg))


class Internet:
    """Hands out /16s and AS numbers so that nothing collides."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.next_prefix = 0
        self.next_asn = 64600
        self.isps: dict[str, list[Net]] = {}
        self.mobile: dict[str, Net] = {}

    def net(self, country: str, noise: float = 0.05) -> Net:
        a, b = divmod(self.next_prefix, 200)
        self.next_prefix += 1
        self.next_asn += 1
        lat, lon = CITY[country]
        return Net(self.next_asn, f"{31 + a}.{b + 20}", country, lat, lon, noise)

    def isp(self, country: str) -> Net:
        pool = self.isps.setdefault(country, [self.net(country) for _ in range(2)])
        return self.rng.choice(pool)

    def carrier(self, country: str) -> Net:
        if country not in self.mobile:
            net = self.net(country, noise=1.0)
            if country in CENTROID:
                net.lat, net.lon = CENTROID[country]
            self.mobile[country] = net
        return self.mobile[country]


# -- accounts -----------------------------------------------------------------------------

@dataclass
class Account:
    name: str
    kind: str  # office | nightowl | sysadmin | poller
    service: str
    method: str
    home: str
    rate: float  # logins per active day
    second: str | None = None
    home_net: Net | None = None
    home_ip: str = ""
    office_net: Net | None = None
    office_ips: list[str] = field(default_factory=list)
    jump_ip: str = ""
    jump_net: Net | None = None
    second_net: Net | None = None
    second_ip: str = ""
    mobile_share: float = 0.2


def sample_hour(kind: str, rng: random.Random) -> float:
    """An hour of day (fractional) from the account kind's habit."""
    r = rng.random()
    if kind == "office":
        if r < 0.95:
            return min(18.5, max(7.5, rng.gauss(12.5, 2.8)))
        return rng.uniform(19, 23) if r < 0.995 else rng.uniform(0, 24)
    if kind == "nightowl":
        if r < 0.75:
            return rng.gauss(23, 2.0) % 24
        return rng.uniform(10, 19) if r < 0.95 else rng.uniform(0, 24)
    if kind == "sysadmin":
        if r < 0.85:
            return min(21.0, max(6.0, rng.gauss(13, 3.5)))
        return rng.uniform(18, 24) if r < 0.95 else rng.uniform(0, 24)
    return rng.uniform(8, 22)  # poller: a desktop mail client, on while the user is


QUIET = {"office": 3.5, "nightowl": 7.5, "sysadmin": 4.5, "poller": 3.5}  # least usual hour


def make_accounts(n: int, rng: random.Random, net: Internet) -> list[Account]:
    kinds = ["office", "office", "nightowl", "sysadmin", "office", "poller", "office",
             "nightowl", "sysadmin", "office"]
    accounts = []
    for i in range(n):
        kind = kinds[i % len(kinds)]
        mail = kind == "poller" or i % 3 == 1
        home = HOMES[i % len(HOMES)]
        acct = Account(
            name=f"user{i:02d}", kind=kind, service="imap" if mail else "ssh",
            method="password" if mail or i % 4 == 3 else "publickey", home=home,
            rate={"poller": 40.0, "sysadmin": 10.0}.get(kind, rng.uniform(3, 8)),
            mobile_share=rng.choice([0.05, 0.15, 0.3]))
        if i % 5 == 4:
            acct.second = "US" if i % 10 == 9 else rng.choice(["ES", "PT", "SE", "IT"])
        acct.home_net = net.isp(home)
        acct.home_ip = acct.home_net.address(rng)
        if kind in ("office", "sysadmin"):
            acct.office_net = net.net(home)
            acct.office_ips = [acct.office_net.address(rng) for _ in range(rng.choice([1, 2]))]
        if kind == "sysadmin":
            acct.jump_net = net.net(rng.choice(NEIGHBOURS[home]))
            acct.jump_ip = acct.jump_net.address(rng)
        if acct.second:
            acct.second_net = net.isp(acct.second)
            acct.second_ip = acct.second_net.address(rng)
        accounts.append(acct)
    return accounts


def event(acct: Account, t: float, ip: str, netw: Net, rng: random.Random,
          method: str | None = None, dnsbl: tuple[str, ...] = ()) -> LoginEvent:
    lat, lon = netw.where(rng)
    return LoginEvent(acct.name, ip, t, acct.service, method or acct.method, netw.country,
                      netw.asn, round(lat, 4), round(lon, 4), dnsbl)


def normal_logins(acct: Account, days: int, rng: random.Random,
                  net: Internet) -> list[LoginEvent]:
    """The account's genuine logins: habits, DHCP churn, trips, a second country."""
    assert acct.home_net is not None
    out: list[LoginEvent] = []
    trips: list[tuple[int, int, Net]] = []
    for _ in range(rng.choice([1, 1, 2])):
        start = rng.randrange(WARMUP_DAYS, days - 7)
        trips.append((start, start + rng.randint(3, 6), net.net(
            rng.choice(NEIGHBOURS[acct.home]))))
    abroad: set[int] = set()
    if acct.second:
        for month in range(days // 30):
            if rng.random() < 0.5:
                s = month * 30 + rng.randrange(0, 20)
                abroad.update(range(s, s + 7))
    next_churn = rng.randint(20, 90)
    for day in range(days):
        if day == next_churn:
            acct.home_ip = acct.home_net.address(rng)
            next_churn += rng.randint(20, 90)
        weekday = (day % 7) < 5
        rate = acct.rate * (1.0 if weekday or acct.kind in ("nightowl", "poller") else 0.25)
        trip = next((tr for tr in trips if tr[0] <= day < tr[1]), None)
        for _ in range(poisson(rate, rng)):
            hour = sample_hour(acct.kind, rng)
            t = START + day * DAY + hour * 3600
            mobile = rng.random() < acct.mobile_share
            if trip is not None:
                netw = trip[2]
                ip = netw.address(rng, pool=3)
            elif day in abroad and acct.second_net is not None:
                netw = net.carrier(acct.second) if mobile and acct.second else acct.second_net
                ip = netw.address(rng, pool=40) if mobile else acct.second_ip
            elif mobile:
                netw = net.carrier(acct.home)
                ip = netw.address(rng, pool=60)
            elif (acct.office_net is not None and weekday and 8 <= hour <= 18
                  and rng.random() < 0.85):
                netw, ip = acct.office_net, rng.choice(acct.office_ips)
            elif acct.jump_net is not None and rng.random() < 0.2:
                netw, ip = acct.jump_net, acct.jump_ip
            else:
                netw, ip = acct.home_net, acct.home_ip
            out.append(event(acct, t, ip, netw, rng))
    return out


def poisson(lam: float, rng: random.Random) -> int:
    if lam > 30:
        return max(0, round(rng.gauss(lam, math.sqrt(lam))))
    limit, k, p = math.exp(-lam), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def inject(accounts: list[Account], normal: dict[str, list[LoginEvent]], days: int,
           rng: random.Random, net: Internet) -> list[tuple[LoginEvent, str]]:
    """Labelled attacks: each a successful login an administrator would want to hear of."""
    out: list[tuple[LoginEvent, str]] = []

    def when(acct: Account, hour: float | None = None) -> float:
        day = rng.randrange(WARMUP_DAYS, days)
        h = sample_hour(acct.kind, rng) if hour is None else hour
        return START + day * DAY + h * 3600

    hosting = {c: net.net(c) for c in ATTACKER_COUNTRIES}
    for acct in accounts:
        assert acct.home_net is not None
        for _ in range(2):  # stolen credentials used from far away at a plausible hour
            far = hosting[rng.choice([c for c in ATTACKER_COUNTRIES if c != acct.second])]
            out.append((event(acct, when(acct), far.address(rng), far, rng), "new country"))
        for _ in range(2):  # someone else, far away, minutes after the user's own login
            prev = rng.choice([e for e in normal[acct.name]
                               if e.time > START + WARMUP_DAYS * DAY])
            t = prev.time + rng.uniform(5, 60) * 60
            if acct.second_net is not None and prev.country == acct.home:
                netw, ip = acct.second_net, acct.second_ip  # a place the account knows
            else:
                netw = hosting[rng.choice(ATTACKER_COUNTRIES)]
                ip = netw.address(rng)
            out.append((event(acct, t, ip, netw, rng), "impossible travel"))
        for _ in range(2):  # the user's own address, at the hour they never log in
            hour = QUIET[acct.kind] + rng.uniform(-0.4, 0.4)
            out.append((event(acct, when(acct, hour), acct.home_ip, acct.home_net, rng),
                        "odd hour"))
        for _ in range(2):  # an infected machine in the user's own ISP, listed on a DNSBL
            ip = acct.home_net.address(rng)
            out.append((event(acct, when(acct), ip, acct.home_net, rng, dnsbl=DNSBL),
                        "DNSBL-listed source"))
    # a sudden campaign: 50 proxies (half in the victim's country) succeed within 40 min
    for acct in (accounts[1], accounts[2]):
        t0 = when(acct, 14.0)
        for k in range(50):
            c = acct.home if k % 2 == 0 else rng.choice(ATTACKER_COUNTRIES)
            netw = net.isp(c) if c in NEIGHBOURS else hosting[c]
            out.append((event(acct, t0 + k * 48 + rng.uniform(0, 30), netw.address(rng), netw,
                              rng, method="password"), "50-address campaign"))
    # a slow botnet: one success every few weeks per account, from all over, any hour
    botnet = [net.net(rng.choice(ATTACKER_COUNTRIES + HOMES)) for _ in range(40)]
    for acct in (accounts[3], accounts[6], accounts[9]):
        for _ in range(8):
            netw = rng.choice(botnet)
            listed = DNSBL if rng.random() < 0.3 else ()
            out.append((event(acct, when(acct, rng.uniform(0, 24)), netw.address(rng), netw,
                              rng, method="password", dnsbl=listed), "slow botnet"))
    return out


# -- detectors and scoring ----------------------------------------------------------------

TYPES = ["new country", "impossible travel", "odd hour", "DNSBL-listed source",
         "50-address campaign", "slow botnet"]


@dataclass
class Tally:
    detected: Counter[str] = field(default_factory=Counter)
    injected: Counter[str] = field(default_factory=Counter)
    tp: int = 0
    fp: int = 0
    fp_by_reason: Counter[str] = field(default_factory=Counter)
    tp_by_reason: Counter[str] = field(default_factory=Counter)

    def add(self, label: str | None, alert: bool, reason: str) -> None:
        if label:
            self.injected[label] += 1
            if alert:
                self.detected[label] += 1
                self.tp += 1
                self.tp_by_reason[reason] += 1
        elif alert:
            self.fp += 1
            self.fp_by_reason[reason] += 1

    def precision(self) -> float:
        return self.tp / max(1, self.tp + self.fp)

    def recall(self) -> float:
        return sum(self.detected.values()) / max(1, sum(self.injected.values()))


def reason_kind(j: Judgement) -> str:
    if not j.reasons:
        return "-"
    text = j.reasons[0]
    for key, kind in (("new country", "new country"), ("travel", "impossible travel"),
                      ("hour", "hour of day"), ("listed", "DNSBL"), ("logins in", "burst"),
                      ("new addresses", "new addresses"), ("countries in", "countries"),
                      ("AS", "AS"), ("method", "auth method"), ("address", "address"),
                      ("network", "address"), ("service", "service")):
        if key in text:
            return kind
    return "other"


LOF_FEATURES = ("country_bits", "asn_bits", "network_bits", "address_bits", "s_method",
                "s_dnsbl", "burst_z", "new_addresses_z", "countries")


def lof_vector(j: Judgement) -> list[float]:
    f = j.features
    h = f["hour"] / 24 * 2 * math.pi
    travel = math.log2(1 + f.get("travel_kmh", 0.0) / 100)
    vec = [2 * math.sin(h), 2 * math.cos(h), travel]
    for key in LOF_FEATURES:
        novel = key.replace("_bits", "_new")
        value = f.get(key, 0.0) if key.endswith("_bits") and f.get(novel) else (
            0.0 if key.endswith("_bits") else f.get(key, 0.0))
        vec.append(value)
    return vec


def run_stream(stream: list[tuple[LoginEvent, str | None]], ack: bool,
               model: LoginModel) -> tuple[Tally, list[tuple[LoginEvent, str | None,
                                                             Judgement]]]:
    tally = Tally()
    judged = []
    for ev, label in stream:
        j = model.observe(ev)
        judged.append((ev, label, j))
        if j.warming_up:
            continue
        tally.add(label, j.unusual, reason_kind(j))
        if ack and j.unusual and label is None:
            model.learn(ev)  # the administrator says: that was me
    return tally, judged


def run_lof(judged: list[tuple[LoginEvent, str | None, Judgement]],
            thresholds: list[float]) -> dict[float, Tally]:
    """LOF per account, fitted on the events it accepted, refitted each week."""
    from sklearn.neighbors import LocalOutlierFactor

    by_acct: dict[str, list[tuple[LoginEvent, str | None, Judgement]]] = defaultdict(list)
    for item in judged:
        by_acct[item[0].account].append(item)
    out = {th: Tally() for th in thresholds}
    week = 7 * DAY
    for th in thresholds:
        tally = out[th]
        for items in by_acct.values():
            history: list[list[float]] = []
            i = 0
            while i < len(items):
                t_end = START + (math.floor((items[i][0].time - START) / week) + 1) * week
                batch = []
                while i < len(items) and items[i][0].time < t_end:
                    batch.append(items[i])
                    i += 1
                vecs = [lof_vector(j) for _, _, j in batch]
                if len(history) < 20 or batch[0][2].warming_up:
                    history.extend(vecs)  # warm-up: everything is taken as normal
                    continue
                lof = LocalOutlierFactor(n_neighbors=20, novelty=True)
                lof.fit(history[-1000:])
                scores = -lof.score_samples(vecs)
                for v, (_, label, _), s in zip(vecs, batch, scores, strict=True):
                    alert = bool(s > th)
                    tally.add(label, alert, "LOF")
                    if not alert or label is None:  # flagged genuine logins are acked
                        history.append(v)
    return out


def baseline_new_country(judged: list[tuple[LoginEvent, str | None, Judgement]]) -> Tally:
    tally = Tally()
    for _, label, j in judged:
        if not j.warming_up:
            tally.add(label, bool(j.features.get("country_new")), "new country")
    return tally


# -- report -------------------------------------------------------------------------------

def account_months(judged: list[tuple[LoginEvent, str | None, Judgement]]) -> float:
    first: dict[str, float] = {}
    last: dict[str, float] = {}
    for ev, _, j in judged:
        if not j.warming_up:
            first.setdefault(ev.account, ev.time)
            last[ev.account] = ev.time
    return sum((last[a] - first[a]) / (30.44 * DAY) for a in first)


def table(rows: dict[str, Tally], months: float) -> str:
    names = list(rows)
    head = "| | " + " | ".join(names) + " |\n|---|" + "---:|" * len(names) + "\n"
    lines = []
    for typ in TYPES:
        cells = []
        for t in rows.values():
            d, n = t.detected[typ], t.injected[typ]
            cells.append(f"{d / max(1, n):.2f} ({d}/{n})")
        lines.append(f"| recall: {typ} | " + " | ".join(cells) + " |")
    lines.append("| **recall, all** | " + " | ".join(
        f"**{t.recall():.3f}**" for t in rows.values()) + " |")
    lines.append("| **precision** | " + " | ".join(
        f"**{t.precision():.3f}** ({t.tp}/{t.tp + t.fp})" for t in rows.values()) + " |")
    lines.append("| **false alerts per account-month** | " + " | ".join(
        f"**{t.fp / months:.3f}** ({t.fp})" for t in rows.values()) + " |")
    return head + "\n".join(lines)


def reason_table(t: Tally) -> str:
    kinds = sorted(set(t.tp_by_reason) | set(t.fp_by_reason),
                   key=lambda k: -(t.tp_by_reason[k] + t.fp_by_reason[k]))
    out = ["| strongest reason of the alert | alerts | true | false | precision |",
           "|---|---:|---:|---:|---:|"]
    for k in kinds:
        tp, fp = t.tp_by_reason[k], t.fp_by_reason[k]
        out.append(f"| {k} | {tp + fp} | {tp} | {fp} | {tp / (tp + fp):.3f} |")
    return "\n".join(out)


# -- real logs ----------------------------------------------------------------------------

MONTHS = {m: i for i, m in enumerate(
    ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"], 1)}
STAMP = re.compile(r"^(?:(?P<iso>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:?\d\d)?)"
                   r"|(?P<mon>[A-Z][a-z]{2}) +(?P<day>\d{1,2}) (?P<hms>\d\d:\d\d:\d\d))"
                   r" (?P<host>\S+) ")
SSHD = re.compile(r"sshd\[\d+\]: Accepted (?P<method>password|publickey|keyboard-interactive)"
                  r"(?:/\S+)? for (?P<user>.+?) from (?P<ip>[0-9A-Fa-f.:]+) port \d+")
DOVECOT = re.compile(r"dovecot(?:\[\d+\])?: (?P<service>\w+)-login: Login: user=<(?P<user>[^>]*)>"
                     r", method=(?P<method>[\w-]+), rip=(?P<ip>[0-9A-Fa-f.:]+),")
POSTFIX = re.compile(r"postfix/[\w/-]+\[\d+\]: \w+: client=\S*\[(?P<ip>[0-9A-Fa-f.:]+)\]"
                     r", sasl_method=(?P<method>[\w-]+), sasl_username=(?P<user>\S+)")


def parse_real(path: Path) -> Iterator[LoginEvent]:
    for raw in path.read_bytes().decode("utf-8", "replace").splitlines():
        m = STAMP.match(raw)
        if not m:
            continue
        if m["iso"]:
            t = datetime.fromisoformat(m["iso"]).replace(year=2026).timestamp()
        else:
            h, mi, s = (int(x) for x in m["hms"].split(":"))
            t = datetime(2026, MONTHS[m["mon"]], int(m["day"]), h, mi, s,
                         tzinfo=UTC).timestamp()
        rest = raw[m.end():]
        for rx, service in ((SSHD, "ssh"), (DOVECOT, None), (POSTFIX, "smtp")):
            hit = rx.search(rest)
            if hit:
                svc = service or hit["service"]
                method = hit["method"].lower()
                yield LoginEvent(f"{m['host']}/{hit['user']}", hit["ip"], t, svc, method)
                break


def real_corpus(min_days: float = 7.0) -> str:
    if not CORPUS.is_dir():
        return f"(no corpus at {CORPUS})"
    model = LoginModel(min_days=min_days)
    lines, counts = [], Counter[str]()
    top: list[tuple[float, str]] = []
    for path in sorted(CORPUS.glob("*.log")):
        for ev in parse_real(path):
            counts[path.name] += 1
            j = model.observe(ev)
            stamp = f"{datetime.fromtimestamp(ev.time, UTC):%m-%d %H:%M:%S}"
            top.append((j.score, f"{ev.account[:40]} {stamp} score {j.score:.1f}"
                                 f"{' (warming up)' if j.warming_up else ''}: "
                                 f"{'; '.join(j.reasons[:3]) or '-'}"))
            if j.unusual:
                lines.append(f"| {path.name[:28]} | {ev.account[:40]} | "
                             f"{datetime.fromtimestamp(ev.time, UTC):%m-%d %H:%M:%S} | "
                             f"{j.score:.1f} | {'; '.join(j.reasons[:3])} |")
    per_acct = Counter(a for a in model._accounts)  # noqa: SLF001 - bench introspection
    head = [f"Successful logins parsed: {sum(counts.values())} "
            f"({', '.join(f'{k}: {v}' for k, v in sorted(counts.items()))}); "
            f"{len(per_acct)} accounts: " + ", ".join(
                f"{a} ({model.history(a)} learned)" for a in sorted(per_acct)),
            "No GeoIP/AS/DNSBL data offline: country, AS, travel and DNSBL features are "
            "absent; only address, network, method, service, hour and rates count.",
            f"Alerts after warm-up ({model.min_history} logins over {model.min_days:g} "
            f"days): {len(lines)}"]
    if lines:
        head += ["", "| log | account | time (UTC) | score | reasons |",
                 "|---|---|---|---:|---|", *lines]
    top.sort(key=lambda x: -x[0])
    head += ["", "Highest scores, warm-up included (what it would say with more history):", ""]
    head += [f"* {text}" for _, text in top[:6]]
    return "\n".join(head)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--accounts", type=int, default=20)
    ap.add_argument("--days", type=int, default=182)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--threshold", type=float, default=None)
    ap.add_argument("--no-lof", action="store_true")
    args = ap.parse_args()
    started = time.perf_counter()
    rng = random.Random(args.seed)
    net = Internet(rng)
    accounts = make_accounts(args.accounts, rng, net)
    normal = {a.name: normal_logins(a, args.days, rng, net) for a in accounts}
    attacks = inject(accounts, normal, args.days, rng, net)
    stream: list[tuple[LoginEvent, str | None]] = [
        (relist(ev, net), None) for evs in normal.values() for ev in evs]
    stream += [(ev, label) for ev, label in attacks]
    stream.sort(key=lambda x: x[0].time)
    n_normal = sum(len(v) for v in normal.values())
    make: Callable[[], LoginModel] = (
        (lambda: LoginModel(threshold=args.threshold)) if args.threshold is not None
        else LoginModel)
    t0 = time.perf_counter()
    tally, judged = run_stream(stream, ack=True, model=make())
    per_event_us = (time.perf_counter() - t0) / len(stream) * 1e6
    no_ack, _ = run_stream(stream, ack=False, model=make())
    months = account_months(judged)
    rows: dict[str, Tally] = {"robust model (tailban)": tally}
    lof_note = ""
    if not args.no_lof:
        try:
            thresholds = [3.0, 5.0, 10.0]
            lof = run_lof(judged, thresholds)
            for th in thresholds:
                rows[f"LOF > {th:g}"] = lof[th]
        except ImportError:
            lof_note = "\n(scikit-learn is not installed: no LOF column)"
    rows["baseline: any new country"] = baseline_new_country(judged)
    print(f"# Login anomaly evaluation (seed {args.seed})\n")
    print(f"{args.accounts} accounts x {args.days} days: {n_normal:,} genuine logins, "
          f"{len(attacks)} injected; {months:.1f} account-months after warm-up; "
          f"robust model {per_event_us:.0f} us per login.\n")
    print(table(rows, months) + lof_note)
    print(f"\nRobust model without acknowledging false alerts: {no_ack.fp} false alerts "
          f"({no_ack.fp / months:.3f} per account-month), recall {no_ack.recall():.3f}, "
          f"precision {no_ack.precision():.3f}.\n")
    print(reason_table(tally))
    print("\n| robust model threshold | recall | precision | false alerts per account-month |")
    print("|---:|---:|---:|---:|")
    default, main_th = LoginModel().threshold, make().threshold
    for th in sorted({4.0, 5.0, main_th, 7.0}):
        t = tally if th == main_th else run_stream(stream, True, LoginModel(threshold=th))[0]
        print(f"| {th:g}{' (default)' if th == default else ''} | "
              f"{t.recall():.3f} | {t.precision():.3f} | {t.fp / months:.3f} |")
    print("\n## Real successful logins (../shared/corpus/real)\n")
    print(real_corpus())
    # The real logs span days, not weeks: no account leaves the default warm-up. With the
    # 7-day condition dropped (20 logins suffice) the one busy account is judged too.
    print("\n### The same with min_days = 0 (warm-up by 20 logins only)\n")
    print(real_corpus(min_days=0.0))
    print(f"\n({time.perf_counter() - started:.1f} s)")
    return 0


def relist(ev: LoginEvent, net: Internet) -> LoginEvent:
    """A genuine login from a DNSBL-listed CGNAT address (about 1 in 60 of those addresses)."""
    carrier = next((c for c in net.mobile.values() if ev.asn == c.asn), None)
    if carrier is not None and ev.ip.endswith(".7"):
        return replace(ev, dnsbl=DNSBL)
    return ev


if __name__ == "__main__":
    sys.exit(main())
