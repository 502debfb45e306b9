#!/usr/bin/env python3
"""Evaluate the attack-wave and distributed-attack detectors on simulated traffic (no root).

    python3 bench/anomaly_waves.py                 # 5 x 3 months per wave host, ~4 min
    python3 bench/anomaly_waves.py --wave-runs 1 --no-variants --json /tmp/anomaly.json
    python3 bench/anomaly_waves.py --cost          # the distributed detector's us/failure

Waves: months of per-minute failure counts for a quiet host (~1 failure/min) and a busy one
(~200/min, overdispersed, with a daily cycle), both with one-minute bursts of single
brute-forcers (the jail's business, not a wave), and injected waves of several sizes and
lengths, half of them botnet-like (1-2 tries per address), half a few heavy sources. A wave
is detected when a start event falls between its first minute and its last; the delay is
counted from its first minute to the end of the minute that raised the alert. Any other
start event is a false alert; a second start within one wave is a split. ``--wave-runs``
repeats this with that many seeds (seed, seed + 1, ...) and adds the counts up.

Distributed: a month of background scanners (one address trying common and random accounts
for a few minutes, a third of them from a few hosting networks and ASes, where independent
scanners do meet) with injected botnets spraying many accounts from one /24, one /64, or
several /24s of one AS, at three paces. Recall counts a botnet found when an alert names
its network (or its AS, or a /24 of an AS botnet) between its start and ten minutes after
its end; false alerts are all others. The detector is fed as the daemon feeds it: ``expire``
at every tick (5 s). Then harder variants of the same botnets (unless ``--no-variants``):
each account tried three times (three passwords), 30 % of the tries on the scanners' common
accounts, every address walking the same list, the AS botnets placed inside the busiest
hosting AS, and no AS known at all (no ``asn_db``).

Fixed seed, deterministic; prints Markdown tables.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from tailban.anomaly.distributed import LayeredDetector, NetAlert  # noqa: E402
from tailban.anomaly.waves import WaveDetector, WaveEvent  # noqa: E402

MONTH = 30 * 1440  # minutes


def poisson(rng: random.Random, lam: float) -> int:
    if lam <= 0:
        return 0
    if lam < 30:
        limit, k, p = math.exp(-lam), 0, 1.0
        while True:
            p *= rng.random()
            if p <= limit:
                return k
            k += 1
    return max(0, round(rng.gauss(lam, math.sqrt(lam))))


def percentile(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


# -- waves ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Host:
    name: str
    sources: float  # background sources per minute (daily mean)
    extra_tries: float  # background failures per source beyond the first (Poisson mean)
    daily: float  # amplitude of the daily cycle
    burst_every: int  # minutes between single brute-forcer bursts (mean)
    sizes: tuple[int, ...]  # extra failures/min of the injected waves


QUIET = Host("quiet", 0.5, 0.6, 0.5, 240, (5, 10, 25, 100))
BUSY = Host("busy", 60.0, 2.3, 0.3, 60, (100, 200, 600, 2000))
LENGTHS = (5, 15, 60, 240)


@dataclass(frozen=True)
class Wave:
    start: int
    length: int
    size: int
    botnet: bool

    @property
    def end(self) -> int:
        return self.start + self.length


def schedule(rng: random.Random, host: Host, minutes: int) -> list[Wave]:
    """Waves every ~30 h (at least 8 h apart), after a quiet first day."""
    waves: list[Wave] = []
    t = 1440 + rng.randrange(600)
    while True:
        length = rng.choice(LENGTHS)
        if t + length + 60 >= minutes:
            return waves
        waves.append(Wave(t, length, rng.choice(host.sizes), rng.random() < 0.5))
        t += length + 480 + rng.randrange(2 * 1440)


def simulate_host(rng: random.Random, host: Host, minutes: int,
                  waves: list[Wave]) -> list[tuple[int, int]]:
    """(failures, sources) per minute."""
    extra: dict[int, Wave] = {}
    for w in waves:
        for m in range(w.start, w.end):
            extra[m] = w
    phase = rng.random() * 2 * math.pi
    rows = []
    for m in range(minutes):
        level = 1 + host.daily * math.sin(2 * math.pi * m / 1440 + phase)
        src = poisson(rng, host.sources * level)
        fails = src + poisson(rng, src * host.extra_tries)
        if rng.randrange(host.burst_every) == 0:  # one brute-forcer, banned within the minute
            src += 1
            fails += rng.randint(6, 20)
        wave = extra.get(m)
        if wave is not None:
            f = poisson(rng, wave.size)
            per_source = 1.5 if wave.botnet else 10.0
            s = min(f, max(1, round(f / per_source)))
            fails += f
            src += s
        rows.append((fails, min(src, fails) if fails else 0))
    return rows


def evaluate_waves(host: Host, months: int, seeds: list[int]) -> dict[str, Any]:
    waves: list[Wave] = []
    detected: dict[Wave, int] = {}
    false_alerts = splits = ended = 0
    elapsed = 0.0
    total_failures = 0
    for seed in seeds:
        rng = random.Random(f"{seed}-{host.name}")
        minutes = months * MONTH
        run_waves = schedule(rng, host, minutes)
        rows = simulate_host(rng, host, minutes, run_waves)
        total_failures += sum(f for f, _ in rows)
        det = WaveDetector()
        began = time.perf_counter()
        starts: list[WaveEvent] = []
        ends: list[WaveEvent] = []
        for m, (fails, src) in enumerate(rows):
            for event in det.update(m, fails, src):
                (starts if event.kind == "start" else ends).append(event)
        elapsed += time.perf_counter() - began
        by_start = sorted(run_waves, key=lambda w: w.start)
        found: dict[Wave, int] = {}
        for event in starts:
            home = next((w for w in by_start if w.start <= event.minute < w.end), None)
            if home is None:
                # still in the tail of a wave (its end not yet confirmed) counts as a split
                tail = next((w for w in by_start if w.end <= event.minute < w.end + 30), None)
                if tail is not None:
                    splits += 1
                else:
                    false_alerts += 1
            elif home in found:
                splits += 1
            else:
                found[home] = event.minute + 1 - home.start
        ended += sum(1 for w in found if any(w.end <= e.minute <= w.end + 30 for e in ends))
        # Waves of different runs are told apart by their run: (seed, wave) keys.
        for w in run_waves:
            key = Wave(w.start + seed * 10**7, w.length, w.size, w.botnet)
            waves.append(key)
            if w in found:
                detected[key] = found[w]
    runs = len(seeds)
    minutes = months * MONTH * runs
    per_size = []
    for size in host.sizes:
        group = [w for w in waves if w.size == size]
        delays = [float(detected[w]) for w in group if w in detected]
        per_size.append({"size": size, "waves": len(group), "detected": len(delays),
                         "median_delay": statistics.median(delays) if delays else math.nan,
                         "p95_delay": percentile(delays, 0.95)})
    per_length = []
    for length in LENGTHS:
        group = [w for w in waves if w.length == length]
        per_length.append({"length": length, "waves": len(group),
                           "detected": sum(1 for w in group if w in detected)})
    return {"host": host.name, "months": months * runs, "seeds": seeds, "minutes": minutes,
            "mean_failures": total_failures / minutes, "waves": len(waves),
            "detected": len(detected), "ended_cleanly": ended, "false_alerts": false_alerts,
            "splits": splits, "per_size": per_size, "per_length": per_length,
            "us_per_minute": elapsed / minutes * 1e6}


# -- distributed ---------------------------------------------------------------------------

COMMON_USERS = ("root", "admin", "test", "user", "ubuntu", "oracle", "postgres", "git", "pi",
                "guest", "ftp", "deploy", "www", "mysql", "support", "dev", "jenkins")


@dataclass(frozen=True)
class Botnet:
    kind: str  # "/24", "/64", "AS"
    pace: str
    start: float
    duration: float
    failures: int
    addresses: tuple[str, ...]
    network: str  # what an alert must name
    asn: int


PACES = {  # name -> (failures, seconds)
    "burst: 60 in 10 min": (60, 600.0),
    "steady: 150 in 1 h": (150, 3600.0),
    "slow: 100 in 6 h": (100, 21600.0),
}
BOT_SIZES = (8, 15, 30)  # addresses per botnet
KINDS = ("/24", "/64", "AS")


def hosting_pool(rng: random.Random) -> list[tuple[str, int]]:
    """300 busy /24s ("a.b.c") in 40 hosting ASes; Pareto-weighted, so one AS holds half."""
    pool = []
    for _ in range(300):
        asn = 16000 + min(int(rng.paretovariate(1.2)), 39)
        pool.append((f"{rng.randint(1, 223)}.{rng.randrange(256)}.{rng.randrange(256)}", asn))
    return pool


def make_botnets(rng: random.Random, seconds: float, reps: int) -> list[Botnet]:
    """Every kind x pace x size ``reps`` times, at random times (they may overlap)."""
    botnets = []
    n = 0
    for kind in KINDS:
        for pace, (failures, duration) in PACES.items():
            for k in BOT_SIZES:
                for _ in range(reps):
                    n += 1
                    start = rng.uniform(0, seconds - duration)
                    asn = 64000 + n  # its own AS: the /24 alert must not repeat as an AS one
                    if kind == "/24":
                        net = f"100.{64 + n % 64}.{n // 64 % 256}"
                        addrs = tuple(f"{net}.{i}" for i in rng.sample(range(1, 255), k))
                        network = f"{net}.0/24"
                    elif kind == "/64":
                        net = f"2001:db8:{n:x}:{rng.randrange(65536):x}"
                        addrs = tuple(f"{net}:{rng.randrange(1, 65536):x}::{i:x}"
                                      for i in range(1, k + 1))
                        network = f"{net}::/64"
                    else:
                        nets = [f"100.{n % 64}.{rng.randrange(256)}" for _ in range(k // 3)]
                        addrs = tuple(f"{nets[i % len(nets)]}.{i + 1}" for i in range(k))
                        network = f"AS{asn}"
                    botnets.append(Botnet(kind, pace, start, duration, failures, addrs,
                                          network, asn))
    return botnets


def background(rng: random.Random, seconds: float, every: float,
               pool: list[tuple[str, int]]) -> list[tuple[float, str, str, int]]:
    """Scanner sessions: one address, 3-30 tries of mostly common accounts, 0.5-15 min."""
    events: list[tuple[float, str, str, int]] = []
    t = 0.0
    while True:
        t += rng.expovariate(1 / every)
        if t >= seconds:
            return events
        if rng.random() < 0.33:
            net, asn = rng.choice(pool)
            ip = f"{net}.{rng.randint(1, 254)}"
        else:
            a, b, c = rng.randint(1, 223), rng.randrange(256), rng.randrange(256)
            ip = f"{a}.{b}.{c}.{rng.randint(1, 254)}"
            asn = 1000 + (a * 65536 + b * 256 + c) // 16 % 5000  # 16 /24s per AS
        tries = rng.randint(3, 30)
        span = rng.uniform(30, 900)
        for i in range(tries):
            user = rng.choice(COMMON_USERS) if rng.random() < 0.7 else f"u{rng.randrange(10**6)}"
            events.append((t + span * i / tries, ip, user, asn))


@dataclass(frozen=True)
class Variant:
    name: str
    tries_per_account: int = 1  # passwords per account, tried in a row
    common_share: float = 0.0  # share of tries on the scanners' common accounts
    shared_list: bool = False  # every address walks the same list
    hosting_as: bool = False  # AS botnets inside the busiest hosting AS
    asn_known: bool = True  # False: no asn_db, the detector never learns an AS


BASE = Variant("as injected")
VARIANTS = (Variant("3 passwords per account", tries_per_account=3),
            Variant("30 % of tries on common accounts", common_share=0.3),
            Variant("every address walks the same list", shared_list=True),
            Variant("AS botnets inside the busiest hosting AS", hosting_as=True),
            Variant("no AS known (no asn_db)", asn_known=False))
TICK = 5.0  # seconds between the daemon's calls of expire()


def evaluate_distributed(label: str, days: float, every: float, reps: int, seed: int,
                         variant: Variant = BASE) -> dict[str, Any]:
    rng = random.Random(f"{seed}-distributed-{label}")
    seconds = days * 86400.0
    pool = hosting_pool(rng)
    events: list[tuple[float, str, str, int | None]] = list(background(rng, seconds, every,
                                                                       pool))
    n_background = len(events)
    botnets = make_botnets(rng, seconds, reps)
    if variant.hosting_as:
        busiest = Counter(asn for _, asn in pool).most_common(1)[0][0]
        botnets = [replace(b, asn=busiest, network=f"AS{busiest}") if b.kind == "AS" else b
                   for b in botnets]
    for bot in botnets:
        names = [f"{rng.choice(('j', 'm', 'a', 'k'))}{rng.randrange(10**5)}"
                 for _ in range(bot.failures)]
        for i in range(bot.failures):
            when = bot.start + bot.duration * i / bot.failures
            if variant.shared_list:
                ip = bot.addresses[i % len(bot.addresses)]
                user = names[i // len(bot.addresses)]
            else:
                ip = rng.choice(bot.addresses)
                user = names[i // variant.tries_per_account]
            if variant.common_share and rng.random() < variant.common_share:
                user = rng.choice(COMMON_USERS)
            events.append((when, ip, user, bot.asn))
    events.sort(key=lambda e: e[0])
    if not variant.asn_known:
        events = [(when, ip, user, None) for when, ip, user, _ in events]
    det = LayeredDetector()  # what the daemon runs: a 10-minute and a 6-hour window
    began = time.perf_counter()
    alerts: list[NetAlert] = []
    next_expire = 0.0
    for when, ip, user, asn in events:
        if when >= next_expire:
            det.expire(when)
            next_expire = when + TICK
        alerts.extend(det.observe(when, ip, user, asn))
    elapsed = time.perf_counter() - began
    owner: dict[str, list[Botnet]] = {}
    for bot in botnets:
        owner.setdefault(bot.network, []).append(bot)
        if bot.kind == "AS":  # a /24 of an AS botnet caught on its own counts too
            for net in {addr.rsplit(".", 1)[0] + ".0/24" for addr in bot.addresses}:
                owner.setdefault(net, []).append(bot)
    found: dict[Botnet, float] = {}  # botnet -> delay of its first alert
    false_alerts = 0
    for alert in alerts:
        hits = [b for b in owner.get(alert.network, ())
                if b.start <= alert.last <= b.start + b.duration + 600]
        for bot in hits:
            found.setdefault(bot, alert.last - bot.start)
        if not hits:
            false_alerts += 1
    rows = []
    for kind in KINDS:
        for pace in PACES:
            cells = []
            for k in BOT_SIZES:
                group = [b for b in botnets if b.kind == kind and b.pace == pace
                         and len(b.addresses) == k]
                cells.append((sum(1 for b in group if b in found), len(group)))
            rows.append({"kind": kind, "pace": pace, "found_by_size": cells})
    delays = {pace: [found[b] for b in botnets if b.pace == pace and b in found]
              for pace in PACES}
    return {"label": label, "variant": variant.name, "days": days, "session_every_s": every,
            "background_failures": n_background, "alerts": len(alerts),
            "false_alerts": false_alerts, "false_per_month": false_alerts * 30 / days,
            "rows": rows, "botnets": len(botnets), "found": len(found), "delays": delays,
            "us_per_event": elapsed / max(len(events), 1) * 1e6}


# -- report --------------------------------------------------------------------------------


def fmt(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:g}"


def markdown(waves: list[dict[str, Any]], dist: list[dict[str, Any]],
             variants: list[dict[str, Any]]) -> str:
    seeds = ", ".join(str(s) for s in waves[0]["seeds"])
    out = [f"### Attack waves (WaveDetector defaults; seeds {seeds})", "",
           "| host | wave (extra failures/min) | waves | recall | median delay (min) "
           "| p95 delay (min) |", "|---|---|---|---|---|---|"]
    for res in waves:
        for row in res["per_size"]:
            recall = row["detected"] / row["waves"] if row["waves"] else math.nan
            out.append(f"| {res['host']} (~{res['mean_failures']:.0f}/min) | +{row['size']} "
                       f"| {row['waves']} | {fmt(round(recall, 2))} "
                       f"| {fmt(row['median_delay'])} | {fmt(row['p95_delay'])} |")
    out += ["", "| host | months | waves | recall | recall by length (5/15/60/240 min) "
            "| false wave alerts / month | split waves | ended cleanly | cost |",
            "|---|---|---|---|---|---|---|---|---|"]
    for res in waves:
        by_len = " / ".join(f"{r['detected']}/{r['waves']}" for r in res["per_length"])
        out.append(f"| {res['host']} | {res['months']} | {res['waves']} "
                   f"| {res['detected'] / max(res['waves'], 1):.3f} | {by_len} "
                   f"| {res['false_alerts'] / res['months']:.2f} | {res['splits']} "
                   f"| {res['ended_cleanly']}/{res['detected']} "
                   f"| {res['us_per_minute']:.0f} us/min |")
    out += ["", "### Distributed attacks (LayeredDetector as the daemon runs it, expire "
            "every 5 s: 10 min, 5 addresses, 5 accounts, 20 failures, AS: 8 addresses of at "
            "most 10 failures; plus 6 h, 8 addresses, 30 accounts, 60 failures, AS too; "
            "60 % of the failures on uncommon accounts in both)", "",
            "| botnet | pace | " + " | ".join(f"found, {k} addresses" for k in BOT_SIZES)
            + " |", "|---|---|" + "---|" * len(BOT_SIZES)]
    first = dist[0]
    for i, row in enumerate(first["rows"]):
        cells = []
        for k in range(len(BOT_SIZES)):
            found = sum(d["rows"][i]["found_by_size"][k][0] for d in dist)
            total = sum(d["rows"][i]["found_by_size"][k][1] for d in dist)
            cells.append(f"{found}/{total}")
        out.append(f"| {row['kind']} | {row['pace']} | " + " | ".join(cells) + " |")
    found_all = sum(d["found"] for d in dist)
    total_all = sum(d["botnets"] for d in dist)
    out += ["", f"Recall {found_all}/{total_all} = {found_all / max(total_all, 1):.2f}.", "",
            "| pace | found | median delay | p95 delay |", "|---|---|---|---|"]
    for pace in PACES:
        delays = [x for d in dist for x in d["delays"][pace]]
        out.append(f"| {pace} | {len(delays)} | {_minutes(statistics.median(delays))} "
                   f"| {_minutes(percentile(delays, 0.95))} |" if delays
                   else f"| {pace} | 0 | - | - |")
    out += ["", "| background | failures | alerts | false alerts | false alerts / month "
            "| cost |", "|---|---|---|---|---|---|"]
    for d in dist:
        out.append(f"| {d['label']}: a scanner every {d['session_every_s']:g} s for "
                   f"{d['days']:g} days | {d['background_failures']:,} | {d['alerts']} "
                   f"| {d['false_alerts']} | {d['false_per_month']:.1f} "
                   f"| {d['us_per_event']:.1f} us/failure |")
    if variants:
        out += ["", "#### Harder botnets (same backgrounds, same botnets otherwise)", "",
                "| variant | found /24 | found /64 | found AS | recall "
                "| false / month (normal, heavy) |", "|---|---|---|---|---|---|"]
        by_name: dict[str, list[dict[str, Any]]] = {}
        for d in variants:
            by_name.setdefault(d["variant"], []).append(d)
        for name, group in by_name.items():
            cells = []
            for kind in KINDS:
                rows = [r for d in group for r in d["rows"] if r["kind"] == kind]
                hit = sum(c[0] for r in rows for c in r["found_by_size"])
                total = sum(c[1] for r in rows for c in r["found_by_size"])
                cells.append(f"{hit}/{total}")
            hit = sum(d["found"] for d in group)
            total = sum(d["botnets"] for d in group)
            false = ", ".join(f"{d['false_per_month']:.1f}" for d in group)
            out.append(f"| {name} | " + " | ".join(cells)
                       + f" | {hit / max(total, 1):.2f} | {false} |")
    return "\n".join(out)


def distributed_cost(seed: int, failures: int = 200_000, repeat: int = 3) -> str:
    """The detector alone: the first ``failures`` of each background, best of ``repeat``."""
    out = ["| background | us/failure (LayeredDetector, expire every 5 s, best of "
           f"{repeat}) |", "|---|---|"]
    for label, days, every in (("normal", 30, 120), ("heavy", 4, 15)):
        rng = random.Random(f"{seed}-distributed-{label}")
        events = background(rng, days * 86400.0, every, hosting_pool(rng))[:failures]
        best = math.inf
        for _ in range(repeat):
            det = LayeredDetector()
            next_expire = 0.0
            began = time.perf_counter()
            for when, ip, user, asn in events:
                if when >= next_expire:
                    det.expire(when)
                    next_expire = when + TICK
                det.observe(when, ip, user, asn)
            best = min(best, (time.perf_counter() - began) / len(events) * 1e6)
        out.append(f"| {label} | {best:.1f} |")
    return "\n".join(out)


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--months", type=int, default=3, help="simulated months per wave run")
    ap.add_argument("--wave-runs", type=int, default=5,
                    help="wave runs per host, with seeds seed, seed + 1, ...")
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--no-variants", action="store_true",
                    help="skip the harder botnet variants")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    ap.add_argument("--cost", action="store_true",
                    help="only time the distributed detector on the backgrounds")
    args = ap.parse_args()
    if args.cost:
        print(distributed_cost(args.seed))
        return 0
    began = time.perf_counter()
    seeds = [args.seed + i for i in range(args.wave_runs)]
    waves = [evaluate_waves(host, args.months, seeds) for host in (QUIET, BUSY)]
    dist = [evaluate_distributed("normal", 30, 120, 2, args.seed),
            evaluate_distributed("heavy", 4, 15, 1, args.seed)]
    variants = [] if args.no_variants else [
        evaluate_distributed(label, days, every, reps, args.seed, variant)
        for variant in VARIANTS
        for label, days, every, reps in (("normal", 30, 120, 2), ("heavy", 4, 15, 1))]
    print(markdown(waves, dist, variants))
    print(f"\n({time.perf_counter() - began:.1f} s, seed {args.seed})")
    if args.json:
        args.json.write_text(json.dumps({"waves": waves, "distributed": dist,
                                         "variants": variants}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
