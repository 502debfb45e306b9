"""Attack waves per jail: an online change-point detector over failures and sources per minute.

Per-address counting bans one brute-forcer at a time; a wave (a botnet turning to this host,
a credential-stuffing run) shows first as the jail's *rate* jumping. Each of the two series
(failures/min, distinct sources/min) runs a ChangeFinder-style detector (Takeuchi & Yamanishi,
2006): an SDAR(k) model scores each minute (the running median of the last ``prefilter``
minutes, so a single burst minute is dropped) by its predictive log loss, the scores are averaged
over ``smooth1`` minutes, a second SDAR model learns that averaged score and its own log loss,
averaged over ``smooth2`` minutes, is the change score. Averaging then re-modelling is what
turns "one odd minute" (an outlier) into "the behaviour changed" (a change point).

A change point alone has no direction and no size, so a wave starts when a series is also
well above its calm baseline: the median of the last ``confirm_minutes`` minutes at least
``start_sigmas`` standard deviations up (a median, so one brute-forcer's burst minute is not
a wave), at least ``min_failures`` a minute, and the change score above a threshold learned
from calm minutes (median + k * MAD). It ends once both series stay within ``end_sigmas`` of
the baseline, or below ``end_fraction`` of the wave's excess over it, for ``end_minutes``
minutes (hysteresis: one alert each way).

The calm baseline follows the jail (about ``baseline_minutes``), but while the recent median
is above the end level and no wave has started, it learns at ``suspect_rate`` of its pace: a
small wave that has not yet passed the gates must not become the level it is judged against.

Counts are compared on the Anscombe scale (2 * sqrt(x + 3/8)), where Poisson noise has unit
variance whatever the rate: that is why one set of defaults fits a host with 1 failure/min
and one with 200.

Pure: no clock, file or thread. The caller passes the minute (epoch // 60).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

STATE_VERSION = 1
_MAD_SCALE = 1.4826  # MAD of a normal distribution -> its standard deviation
_SDAR_VAR_FLOOR = (1.0, 0.01)  # stage 1 (Anscombe scale: Poisson noise), stage 2 (log loss)


def anscombe(count: float) -> float:
    """Variance-stabilised count: Poisson noise has variance ~1 at any rate."""
    return 2.0 * math.sqrt(max(count, 0.0) + 0.375)


def _yule_walker(cov: list[float], order: int) -> list[float]:
    """AR coefficients from autocovariances (Levinson-Durbin): O(k^2), no matrix library.

    Reflection coefficients are clamped so a degenerate discounted covariance (a flat series)
    never yields an explosive model.
    """
    if cov[0] <= 1e-12:
        return [0.0] * order
    coef: list[float] = []
    err = cov[0]
    for m in range(1, order + 1):
        acc = cov[m] - sum(coef[i] * cov[m - 1 - i] for i in range(m - 1))
        refl = max(-0.99, min(0.99, acc / err))
        coef = [coef[i] - refl * coef[m - 2 - i] for i in range(m - 1)] + [refl]
        err *= 1.0 - refl * refl
        if err <= 1e-12:
            break
    return coef + [0.0] * (order - len(coef))


class _Sdar:
    """Sequentially discounting AR(k): forgets at rate ``discount`` so it follows slow drift.

    The first ``1/discount`` points use a plain running average (rate 1/n) so a fresh model is
    usable after a few minutes instead of after its whole memory.
    """

    __slots__ = ("order", "discount", "var_floor", "mean", "cov", "coef", "var", "history",
                 "seen")

    def __init__(self, order: int, discount: float, var_floor: float) -> None:
        self.order = order
        self.discount = discount
        self.var_floor = var_floor
        self.mean = 0.0
        self.cov = [0.0] * (order + 1)
        self.coef = [0.0] * order
        self.var = var_floor
        self.history: list[float] = []  # newest first, at most ``order``
        self.seen = 0

    def step(self, x: float) -> float:
        """Log loss of ``x`` under the model as it stood before ``x``; then learn ``x``."""
        if self.seen == 0:
            self.mean = x
            self.history = [x]
            self.seen = 1
            return 0.5 * math.log(2.0 * math.pi * self.var_floor)
        lags = zip(self.coef, self.history, strict=False)  # history is short at first
        pred = self.mean + sum(c * (h - self.mean) for c, h in lags)
        var = max(self.var, self.var_floor)
        err = x - pred
        loss = 0.5 * math.log(2.0 * math.pi * var) + err * err / (2.0 * var)
        self.seen += 1
        r = max(self.discount, 1.0 / self.seen)
        self.mean += r * (x - self.mean)
        dev = x - self.mean
        self.cov[0] += r * (dev * dev - self.cov[0])
        for j, past in enumerate(self.history[: self.order], start=1):
            self.cov[j] += r * (dev * (past - self.mean) - self.cov[j])
        self.coef = _yule_walker(self.cov, self.order)
        self.var += r * (err * err - self.var)
        self.history.insert(0, x)
        del self.history[self.order :]
        return loss

    def to_state(self) -> list[Any]:
        return [self.mean, list(self.cov), list(self.coef), self.var, list(self.history),
                self.seen]

    def load(self, data: list[Any]) -> None:
        mean, cov, coef, var, history, seen = data
        self.mean, self.var, self.seen = float(mean), float(var), int(seen)
        self.cov = [float(v) for v in cov]
        self.coef = [float(v) for v in coef]
        self.history = [float(v) for v in history]


class _Series:
    """One monitored series: its ChangeFinder, its calm baseline and its calibration."""

    def __init__(self, cfg: WaveConfig) -> None:
        self.stage1 = _Sdar(cfg.order, cfg.discount, _SDAR_VAR_FLOOR[0])
        self.stage2 = _Sdar(cfg.order, cfg.discount, _SDAR_VAR_FLOOR[1])
        self.smooth1: deque[float] = deque(maxlen=cfg.smooth1)
        self.smooth2: deque[float] = deque(maxlen=cfg.smooth2)
        self.calib: deque[float] = deque(maxlen=cfg.calibration_minutes)
        self.base_mean = 0.0  # Anscombe scale
        self.base_var = 1.0
        self.base_raw = 0.0  # per minute, for people
        self.base_seen = 0
        self.score = 0.0
        self.raw: deque[float] = deque(maxlen=cfg.prefilter)  # the last minutes, as they came

    def change_score(self, x: float) -> float:
        """The change score after minute ``x``.

        The first stage sees the running median of the last ``prefilter`` minutes: one
        brute-forcer's burst minute is an outlier, not a change, and left in it would teach
        the second stage that its input jumps about, blunting the score of a real wave.
        """
        self.raw.append(x)
        if len(self.raw) > 2:
            x = _median(sorted(self.raw))
        self.smooth1.append(self.stage1.step(x))
        smoothed = sum(self.smooth1) / len(self.smooth1)
        self.smooth2.append(self.stage2.step(smoothed))
        self.score = sum(self.smooth2) / len(self.smooth2)
        return self.score

    @property
    def base_sd(self) -> float:
        return math.sqrt(max(self.base_var, 1.0))

    def sigmas(self, x: float) -> float:
        return (x - self.base_mean) / self.base_sd

    def learn_baseline(self, x: float, raw: float, discount: float) -> None:
        """Huber-style update: one odd minute (or an outage of zeros) moves it a little only."""
        self.base_seen += 1
        r = max(discount, 1.0 / self.base_seen)
        if self.base_seen == 1:
            self.base_mean, self.base_raw = x, raw
            return
        limit = 3.0 * self.base_sd
        dev = max(-limit, min(limit, x - self.base_mean))
        self.base_mean += r * dev
        self.base_var += r * (dev * dev - self.base_var)
        self.base_raw += r * (min(raw, _from_anscombe(self.base_mean + limit)) - self.base_raw)

    def threshold(self, k: float) -> float:
        """median + k * MAD of calm change scores: the host's own notion of "unusual"."""
        if not self.calib:
            return math.inf
        ordered = sorted(self.calib)
        med = _median(ordered)
        mad = _median(sorted(abs(v - med) for v in ordered))
        spread = max(_MAD_SCALE * mad, 1e-3 * abs(med), 1e-6)
        return med + k * spread

    def rebase(self, level: float, raw: float, history: list[float]) -> None:
        """Move baseline and first-stage model to ``level``, keeping their noise estimates."""
        self.base_mean, self.base_raw = level, raw
        self.stage1.mean = level
        self.stage1.history = history[: self.stage1.order]

    def model_state(self) -> dict[str, Any]:
        return {"stage1": self.stage1.to_state(), "stage2": self.stage2.to_state(),
                "smooth1": list(self.smooth1), "smooth2": list(self.smooth2),
                "base": [self.base_mean, self.base_var, self.base_raw, self.base_seen]}

    def load_model(self, data: dict[str, Any]) -> None:
        mean, var, raw, seen = data["base"]
        self.base_mean, self.base_var, self.base_raw = float(mean), float(var), float(raw)
        self.base_seen = int(seen)
        self.stage1.load(data["stage1"])
        self.stage2.load(data["stage2"])
        self.smooth1.clear()
        self.smooth1.extend(float(v) for v in data["smooth1"])
        self.smooth2.clear()
        self.smooth2.extend(float(v) for v in data["smooth2"])

    def to_state(self) -> dict[str, Any]:
        return {**self.model_state(), "calib": list(self.calib), "score": self.score,
                "raw": list(self.raw)}

    def load(self, data: dict[str, Any]) -> None:
        self.load_model(data)
        self.calib.clear()
        self.calib.extend(float(v) for v in data["calib"])
        self.score = float(data["score"])
        self.raw.clear()
        self.raw.extend(float(v) for v in data.get("raw", ()))  # absent before prefilter


def _from_anscombe(y: float) -> float:
    return max((y / 2.0) ** 2 - 0.375, 0.0)


def _median(ordered: list[float]) -> float:
    n = len(ordered)
    mid = n // 2
    return ordered[mid] if n % 2 else (ordered[mid - 1] + ordered[mid]) / 2.0


@dataclass(frozen=True, slots=True)
class WaveConfig:
    """Tunables; the defaults are meant to need no tuning per host."""

    warmup_minutes: int = 60
    order: int = 2
    discount: float = 0.02
    smooth1: int = 5
    smooth2: int = 5
    start_sigmas: float = 2.5
    end_sigmas: float = 2.0
    end_fraction: float = 0.25
    score_k: float = 6.0
    confirm_minutes: int = 5
    end_minutes: int = 10
    min_failures: int = 6
    min_sources: int = 3
    prefilter: int = 3
    suspect_rate: float = 0.25
    baseline_minutes: int = 120
    calibration_minutes: int = 1440
    max_wave_minutes: int = 720
    max_gap_minutes: int = 60

    def __post_init__(self) -> None:
        for name in ("warmup_minutes", "order", "smooth1", "smooth2", "confirm_minutes",
                     "end_minutes", "baseline_minutes", "calibration_minutes",
                     "max_wave_minutes", "prefilter"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if not 0.0 < self.discount < 1.0:
            raise ValueError("discount must be between 0 and 1")
        if self.end_sigmas > self.start_sigmas:
            raise ValueError("end_sigmas must not exceed start_sigmas (hysteresis)")
        if not 0.0 <= self.end_fraction < 1.0:
            raise ValueError("end_fraction must be in [0, 1)")
        if not 0.0 < self.suspect_rate <= 1.0:
            raise ValueError("suspect_rate must be in (0, 1]")
        if self.max_gap_minutes < 0:
            raise ValueError("max_gap_minutes must not be negative")


@dataclass(frozen=True, slots=True)
class WaveEvent:
    """A wave starting or ending.

    ``failures``/``sources`` are per minute: over the elevated minutes up to the alert for
    "start", over the whole wave for "end"; the baselines are the calm rates the wave was
    judged against. ``started`` is the wave's first elevated minute, ``minute`` the alert's.
    ``trigger`` names the series that started it ("failures", "sources", "both"), or for an
    end "calm" or "timeout" (``forced``: after ``max_wave_minutes`` the level is taken as the
    new normal).
    """

    kind: Literal["start", "end"]
    minute: int
    started: int
    score: float
    threshold: float
    trigger: str
    failures: float
    sources: float
    baseline_failures: float
    baseline_sources: float
    duration: int
    peak_failures: int
    forced: bool = False

    @property
    def ratio(self) -> float:
        """How many times the calm failure rate (the calm rate counted as at least 0.5/min)."""
        return self.failures / max(self.baseline_failures, 0.5)

    def describe(self) -> str:
        rates = (f"{self.failures:.0f} failures/min from {self.sources:.0f} sources/min "
                 f"(calm: {self.baseline_failures:.1f} and {self.baseline_sources:.1f})")
        if self.kind == "start":
            return f"attack wave started: {rates}, change score {self.score:.1f} " \
                   f"over {self.threshold:.1f} on {self.trigger}"
        how = "ended" if not self.forced else "accepted as the new normal"
        return f"attack wave {how} after {self.duration} min: {rates}, " \
               f"peak {self.peak_failures}/min"


class WaveDetector:
    """Wave detection for one jail; feed it per-minute counts, get start/end events.

    Counts for the same minute add up; a minute is judged once a later minute arrives, so
    call ``update(now // 60, 0, 0)`` periodically (a tick) as well as when data arrives.
    Minutes skipped between calls count as zeros; a gap longer than ``max_gap_minutes`` is
    taken as an outage (the daemon was down) and skipped, so a busy host coming back from a
    restart is not a "wave". Data for an already judged minute is added to the open one.
    """

    def __init__(self, warmup_minutes: int | None = None, *, config: WaveConfig | None = None,
                 **overrides: Any) -> None:
        """``WaveDetector(warmup_minutes=60, end_minutes=15)``: any WaveConfig field."""
        if warmup_minutes is not None:
            overrides["warmup_minutes"] = warmup_minutes
        self.config = replace(config if config is not None else WaveConfig(), **overrides)
        self._fail = _Series(self.config)
        self._src = _Series(self.config)
        self._open: int | None = None
        self._open_counts = [0, 0]
        self._judged = 0  # minutes fed to the models
        self._cooldown = 0  # calm minutes left before scores count as calm again
        # Consecutive minutes above the end level: [first minute, minutes, sum f, sum s, peak]
        self._run: list[float] = []
        self._recent: deque[tuple[int, int, float, float]] = deque(
            maxlen=self.config.confirm_minutes)  # failures, sources and their Anscombe values
        self._wave: dict[str, float] | None = None
        # The models as they were before the wave: restored when it ends, because a model
        # that learnt the wave takes hours to forget it and would mis-score calm minutes.
        self._calm_models: dict[str, Any] | None = None

    # -- feeding -------------------------------------------------------------------------

    def update(self, minute: int, failures: int, sources: int) -> list[WaveEvent]:
        """Add counts for ``minute``; return events for every minute this closes."""
        failures, sources = max(int(failures), 0), max(int(sources), 0)
        if self._open is None:
            self._open = minute
            self._open_counts = [failures, sources]
            return []
        if minute <= self._open:
            self._open_counts[0] += failures
            self._open_counts[1] += sources
            return []
        events = self._judge(self._open, *self._open_counts)
        gap = minute - self._open - 1
        if 0 < gap <= self.config.max_gap_minutes:
            for quiet in range(self._open + 1, minute):
                events.extend(self._judge(quiet, 0, 0))
        self._open = minute
        self._open_counts = [failures, sources]
        return events

    def feed(self, counts: Iterable[tuple[int, int, int]]) -> list[WaveEvent]:
        """Several ``(minute, failures, sources)`` at once (replays, tests, benches)."""
        out: list[WaveEvent] = []
        for minute, failures, sources in counts:
            out.extend(self.update(minute, failures, sources))
        return out

    @property
    def in_wave(self) -> bool:
        return self._wave is not None

    @property
    def warmed_up(self) -> bool:
        return self._judged >= self.config.warmup_minutes

    def thresholds(self) -> tuple[float, float]:
        """Current change-score thresholds (failures, sources): inf until calibrated."""
        k = self.config.score_k
        return self._fail.threshold(k), self._src.threshold(k)

    # -- judging one closed minute -------------------------------------------------------

    def _judge(self, minute: int, failures: int, sources: int) -> list[WaveEvent]:
        cfg = self.config
        xf, xs = anscombe(failures), anscombe(sources)
        self._judged += 1
        self._recent.append((failures, sources, xf, xs))
        if self._wave is not None:
            self._fail.change_score(xf)
            self._src.change_score(xs)
            return self._in_wave(minute, failures, sources, xf, xs)
        elevated = self.warmed_up and (self._fail.sigmas(xf) >= cfg.end_sigmas
                                       or self._src.sigmas(xs) >= cfg.end_sigmas)
        if elevated:
            if not self._run:
                # Snapshot before the models see the run: if it becomes a wave, the models
                # go back to this state when it ends.
                self._calm_models = {"failures": self._fail.model_state(),
                                     "sources": self._src.model_state()}
                self._run = [float(minute), 0.0, 0.0, 0.0, 0.0]
            self._run[1] += 1
            self._run[2] += failures
            self._run[3] += sources
            self._run[4] = max(self._run[4], float(failures))
        else:
            self._run = []
            self._calm_models = None
        up_f, up_s = self._gates() if elevated else (False, False)
        score_f = self._fail.change_score(xf)
        score_s = self._src.change_score(xs)
        rate = 1.0 / cfg.baseline_minutes
        slow_f, slow_s = self._suspect() if elevated else (False, False)
        self._fail.learn_baseline(xf, failures, rate * (cfg.suspect_rate if slow_f else 1.0))
        self._src.learn_baseline(xs, sources, rate * (cfg.suspect_rate if slow_s else 1.0))
        if not (up_f or up_s):
            settle = 2 * (cfg.smooth1 + cfg.smooth2) + cfg.order
            if self._cooldown > 0:
                self._cooldown -= 1
            elif self._judged > settle:
                self._fail.calib.append(score_f)
                self._src.calib.append(score_s)
            return []
        fired: list[tuple[str, float, float]] = []
        for name, up, series, score in (("failures", up_f, self._fail, score_f),
                                        ("sources", up_s, self._src, score_s)):
            if up:
                limit = series.threshold(cfg.score_k)
                if score > limit:
                    fired.append((name, score, limit))
        if not fired:
            return []
        return [self._start(minute, fired)]

    def _gates(self) -> tuple[bool, bool]:
        """Is each series well above its baseline over the last ``confirm_minutes``?

        The median, not the mean: one brute-forcer's burst minute is not a wave, and it
        takes the wave's own level as soon as most of those minutes are in the wave.
        """
        cfg = self.config
        if len(self._recent) < cfg.confirm_minutes:
            return False, False
        failures = _median(sorted(float(r[0]) for r in self._recent))
        sources = _median(sorted(float(r[1]) for r in self._recent))
        level_f = _median(sorted(r[2] for r in self._recent))
        level_s = _median(sorted(r[3] for r in self._recent))
        enough = failures >= cfg.min_failures
        up_f = enough and self._fail.sigmas(level_f) >= cfg.start_sigmas
        up_s = (enough and sources >= cfg.min_sources
                and self._src.sigmas(level_s) >= cfg.start_sigmas)
        return up_f, up_s

    def _suspect(self) -> tuple[bool, bool]:
        """Is each series' recent median above the end level? Then the baseline learns
        slowly: a small wave that has not (yet) passed the start gates must not become the
        calm level it is judged against."""
        cfg = self.config
        level_f = _median(sorted(r[2] for r in self._recent))
        level_s = _median(sorted(r[3] for r in self._recent))
        return (self._fail.sigmas(level_f) >= cfg.end_sigmas,
                self._src.sigmas(level_s) >= cfg.end_sigmas)

    def _start(self, minute: int, fired: list[tuple[str, float, float]]) -> WaveEvent:
        started, n, sum_f, sum_s, peak = self._run
        self._run = []
        best = max(fired, key=lambda item: item[1] - item[2])
        trigger = "both" if len(fired) == 2 else best[0]
        self._wave = {"started": started, "minutes": n, "sum_f": sum_f, "sum_s": sum_s,
                      "peak": peak, "calm": 0.0, "last_active": float(minute),
                      "act_minutes": n, "act_f": sum_f, "act_s": sum_s,
                      "sum_xf": 0.0, "sum_xs": 0.0, "xn": 0.0,
                      "calm_xf": 0.0, "calm_xs": 0.0, "calm_f": 0.0, "calm_s": 0.0}
        return WaveEvent(kind="start", minute=minute, started=int(started), score=best[1],
                         threshold=best[2], trigger=trigger, failures=sum_f / n,
                         sources=sum_s / n, baseline_failures=self._fail.base_raw,
                         baseline_sources=self._src.base_raw, duration=int(n),
                         peak_failures=int(peak))

    def _end_level(self, series: _Series, wave_level: float) -> float:
        """Below this (Anscombe scale) a minute is calm again.

        Near the frozen baseline, or down by most of the wave's excess: during a long wave
        the baseline cannot follow the daily cycle, and a busy afternoon must not keep the
        wave open after the attack stopped.
        """
        cfg = self.config
        excess = max(wave_level - series.base_mean, 0.0)
        return series.base_mean + max(cfg.end_sigmas * series.base_sd,
                                      cfg.end_fraction * excess)

    def _in_wave(self, minute: int, failures: int, sources: int, xf: float,
                 xs: float) -> list[WaveEvent]:
        cfg = self.config
        wave = self._wave
        assert wave is not None
        wave["minutes"] += 1
        wave["sum_f"] += failures
        wave["sum_s"] += sources
        wave["sum_xf"] += xf
        wave["sum_xs"] += xs
        wave["xn"] += 1
        wave["peak"] = max(wave["peak"], float(failures))
        calm = (xf <= self._end_level(self._fail, wave["sum_xf"] / wave["xn"])
                and xs <= self._end_level(self._src, wave["sum_xs"] / wave["xn"]))
        if calm:
            wave["calm"] += 1
            wave["calm_xf"] += xf
            wave["calm_xs"] += xs
            wave["calm_f"] += failures
            wave["calm_s"] += sources
        else:
            wave["calm"] = 0.0
            wave["calm_xf"] = wave["calm_xs"] = wave["calm_f"] = wave["calm_s"] = 0.0
            wave["last_active"] = float(minute)
            wave["act_minutes"] = wave["minutes"]
            wave["act_f"], wave["act_s"] = wave["sum_f"], wave["sum_s"]
        forced = wave["minutes"] >= cfg.max_wave_minutes and not calm
        if wave["calm"] < cfg.end_minutes and not forced:
            return []
        if not forced and self._calm_models is not None:
            # Pre-wave noise figures, but today's level: after hours of wave the daily cycle
            # has moved on, and the old level would make the calm afternoon a "new wave".
            n_calm = wave["calm"]
            recent = list(self._recent)[::-1]
            for series, name, x_sum, raw_sum, idx in (
                    (self._fail, "failures", wave["calm_xf"], wave["calm_f"], 2),
                    (self._src, "sources", wave["calm_xs"], wave["calm_s"], 3)):
                series.load_model(self._calm_models[name])
                series.rebase(x_sum / n_calm, raw_sum / n_calm, [r[idx] for r in recent])
        self._calm_models = None
        if forced:
            # A "wave" this long is the new normal: adopt its level so it stops being one.
            for series, total in ((self._fail, wave["sum_xf"]), (self._src, wave["sum_xs"])):
                series.base_mean = total / wave["xn"]
            self._fail.base_raw = wave["sum_f"] / wave["minutes"]
            self._src.base_raw = wave["sum_s"] / wave["minutes"]
        n = max(wave["act_minutes"], 1.0)
        event = WaveEvent(kind="end", minute=minute, started=int(wave["started"]),
                          score=self._fail.score,
                          threshold=self._fail.threshold(cfg.score_k),
                          trigger="calm" if not forced
                          else "timeout", failures=wave["act_f"] / n,
                          sources=wave["act_s"] / n, baseline_failures=self._fail.base_raw,
                          baseline_sources=self._src.base_raw,
                          duration=int(wave["last_active"] - wave["started"]) + 1,
                          peak_failures=int(wave["peak"]), forced=forced)
        self._wave = None
        self._cooldown = cfg.smooth1 + cfg.smooth2 + cfg.order
        return [event]

    # -- persistence ---------------------------------------------------------------------

    def to_state(self) -> dict[str, Any]:
        """Everything needed to continue after a restart, as JSON-able values."""
        return {"version": STATE_VERSION, "config": asdict(self.config),
                "open": self._open, "open_counts": list(self._open_counts),
                "judged": self._judged, "cooldown": self._cooldown,
                "run": list(self._run), "recent": [list(r) for r in self._recent],
                "wave": dict(self._wave) if self._wave is not None else None,
                "calm_models": self._calm_models,
                "failures": self._fail.to_state(), "sources": self._src.to_state()}

    @classmethod
    def from_state(cls, data: dict[str, Any]) -> WaveDetector:
        """Rebuild from ``to_state()``; a state of another version is refused (ValueError)."""
        if data.get("version") != STATE_VERSION:
            raise ValueError(f"unsupported wave detector state version {data.get('version')!r}")
        saved = dict(data["config"])
        if "prefilter" not in saved:
            # Written by a version whose figures were all defaults but the warm-up (the one
            # [anomaly] knob): take today's defaults, they were chosen together.
            saved = {"warmup_minutes": saved.get("warmup_minutes", WaveConfig().warmup_minutes)}
        det = cls(config=WaveConfig(**saved))
        det._open = None if data["open"] is None else int(data["open"])
        det._open_counts = [int(v) for v in data["open_counts"]]
        det._judged = int(data["judged"])
        det._cooldown = int(data["cooldown"])
        det._run = [float(v) for v in data["run"]]
        det._recent.extend((int(f), int(s), float(xf), float(xs))
                           for f, s, xf, xs in data["recent"])
        wave = data["wave"]
        if wave is not None:
            det._wave = {str(k): float(v) for k, v in wave.items()}
            # States written before end_fraction existed: fill in what they lack.
            det._wave.setdefault("xn", det._wave["minutes"])
            for key in ("calm_xf", "calm_xs", "calm_f", "calm_s"):
                det._wave.setdefault(key, 0.0)
        det._calm_models = data.get("calm_models")
        det._fail.load(data["failures"])
        det._src.load(data["sources"])
        return det
