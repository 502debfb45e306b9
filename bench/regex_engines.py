#!/usr/bin/env python3
"""Which regex engine for the built-in filters' hot path (issue 6, point 2)?

Two jobs, each timed with the standard library ``re``, ``google-re2`` and, for the first,
plain ``bytes.find`` per literal and Intel's ``hyperscan`` (a multi-pattern engine; not a
dependency: measured when installed, ``pip install hyperscan``):

* candidate search: find every line of a chunk holding one of the sshd filter's literals
  (one alternation over the whole chunk);
* rule match: the ``Failed password`` rule (with its two-way check) on the messages of
  those lines.

    python3 bench/regex_engines.py [--lines 200000]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))


def best(fn: object, runs: int = 3) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, default=200_000)
    args = ap.parse_args()
    log = Path(f"/var/tmp/tb/auth-{args.lines}.log")
    if not log.exists():
        log.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, str(REPO.parent / "shared" / "bench" / "gen_authlog.py"),
                        "--lines", str(args.lines), "--seed", "1", "-o", str(log)], check=True)
    data = log.read_bytes()
    import re2  # type: ignore[import-not-found]

    from tailban.filters.builtin import resolve_filter

    spec = resolve_filter("sshd")
    literals = sorted({lit.encode() for r in spec.rules for lit in (r.literal, *r.also)},
                      key=len, reverse=True)
    alternation = b"|".join(re.escape(lit) for lit in literals)
    std = re.compile(alternation)
    fast = re2.compile(alternation)

    def lines_with(search: object) -> int:
        found = 0
        pos = 0
        while True:
            hit = search(data, pos)  # type: ignore[operator]
            if hit is None:
                return found
            found += 1
            end = data.find(b"\n", hit.end())
            pos = len(data) if end < 0 else end + 1

    def by_find() -> int:
        starts = set()
        for lit in literals:
            pos = data.find(lit)
            while pos >= 0:
                starts.add(data.rfind(b"\n", 0, pos))
                pos = data.find(lit, pos + 1)
        return len(starts)

    engines: list[tuple[str, object]] = [("re", lambda: lines_with(std.search)),
                                         ("re2", lambda: lines_with(fast.search)),
                                         ("bytes.find", by_find)]
    try:
        import hyperscan  # type: ignore[import-not-found]
    except ImportError:
        print("  (hyperscan not installed: pip install hyperscan)")
    else:
        database = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
        database.compile(expressions=literals, ids=list(range(len(literals))),
                         elements=len(literals), flags=[0] * len(literals))
        scratch = hyperscan.Scratch(database)

        def by_hyperscan() -> int:
            # a callback per literal found (the engine cannot stop at one per line);
            # the line of each, as the chunk search must know
            starts: set[int] = set()
            rfind = data.rfind

            def found(_id: int, _start: int, end: int, _flags: int, _context: object) -> None:
                starts.add(rfind(b"\n", 0, end))

            database.scan(data, match_event_handler=found, scratch=scratch)
            return len(starts)

        engines.append(("hyperscan", by_hyperscan))
    n = lines_with(std.search)
    print(f"{args.lines:,} lines, {len(literals)} literals, {n:,} candidate lines")
    for label, fn in engines:
        seconds = best(fn)
        print(f"  candidate search  {label:10s} {seconds:.3f} s  {args.lines / seconds / 1e6:.2f}M "
              "lines/s")
    rule = next(r for r in spec.rules if r.name == "sshd:failed-password" and r.check)
    messages = [m.group(1) for m in re.finditer(r"sshd\[\d+\]: (Failed password .*)",
                                                data.decode("utf-8", "replace"))]
    for label, engine in (("re", re), ("re2", re2)):
        # RE2 has no look-ahead: the rules' ``::ffff:(?=digit)`` is dropped for it
        main_text, check_text = rule.regex, rule.check or ""
        if engine is re2:
            main_text, check_text = (t.replace("(?=\\d)", "") for t in (main_text, check_text))
        main_rx, check_rx = engine.compile(main_text), engine.compile(check_text)

        def both(main_rx: object = main_rx, check_rx: object = check_rx) -> None:
            for msg in messages:
                main_rx.match(msg)  # type: ignore[attr-defined]
                check_rx.match(msg)  # type: ignore[attr-defined]

        seconds = best(both)
        print(f"  rule match        {label:10s} {seconds / len(messages) * 1e6:.2f} us per line "
              f"({len(messages):,} 'Failed password' lines)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
