"""How long a run will take, from how long similar runs took here; and a running run's ETA.

    est = estimate(spec, history)      # Estimate(seconds=40.2, basis="median of 3 similar runs here") or None
    left = eta(run.started_at, run.progress, now)     # seconds to go, or None before 5%

No cost model: with no similar run in the store's history there is no estimate (None), and the
page says nothing rather than a number nobody measured. Pure: `history` is a frame the caller
reads (`reports.loaders.estimate_for` reads the store).

The rule. A past run is similar when it succeeded and has the same kind, model and method (the
pruning method, the SAE variant; kernels and explanations have one each) and, per kind, the
same of what changes the work by more than its size does:
  prune    schedule and recovery (training runs take many times a one-shot prune)
  explain  captum on or off, the flipped-label experiment on or off, a pruned parent or not
           (with one, the run explains the dense and the pruned model: twice the work)
  kernel   device, and whether a parent's model is timed
Each similar run's duration is scaled by the new spec's size over its own, size being
  prune    the number of target sparsities (each is one prune + one evaluation)
  sae      the training token budget
  kernel   sweep points (shapes x tokens x sparsities x layouts x modes) x repeats
  explain  1 (a run is one point; captum and flipping are in the similarity instead)
(SAE runs are similar only with the same expansion and downstream setting: training time grows
with the number of latents) and the estimate is the median of the scaled durations of the `RECENT` newest similar runs. Scaling
puts start-up (loading a model, evaluating) in proportion too, so a run far bigger than every
similar one gets an upper bound, said in the basis. When the similar runs have at least two sizes,
seconds = fixed + per-size x size is fitted to them instead (least squares, both terms >= 0), which
splits the start-up from the part that grows.

SAE runs on text spend most of a first run capturing activations, which later runs on the same
model, layer, site and data read from the cache. Each run records what it captured and how long
that took (`info.activations.capture`); the estimate leaves the capture out of the past durations
and names it apart: "about 40 s (..., activations already captured); about 1.2 min more if these
activations are not captured yet (capture runs at 3,500 tokens/s here)", the rate being the median
of the store's captures on the same model and layer.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Optional

import numpy as np
import pandas as pd

from sparsity_core.specs import SPECS, BaseSpec

RECENT = 5  # newest similar runs the median is over: recent enough to reflect this machine's load now
ETA_FROM = 0.05  # below 5% done, elapsed / progress is mostly start-up time: no ETA yet
GROWTH_BOUND = 2  # a run this many times bigger than every similar one: its scaled time is an upper bound
HISTORY_COLUMNS = ["kind", "model", "method", "spec", "duration_s", "status", "info"]
CAPTURE_MIN_TOKENS = 4096  # a run that captured fewer tokens than this says little about capture speed


@dataclass(frozen=True)
class Estimate:
    seconds: float
    basis: str  # what the number comes from, in words: "median of 3 similar runs here"
    capture: Optional[tuple[float, float]] = None  # SAE: (seconds, tokens/s) a first capture adds

    @property
    def text(self) -> str:
        """`about 40 s (median of 3 similar runs here)`: what a page shows before launching."""
        text = f"about {duration_text(self.seconds)} ({self.basis})"
        if self.capture:
            seconds, rate = self.capture
            text += (f"; about {duration_text(seconds)} more if these activations are not captured yet "
                     f"(capture runs at {rate:,.0f} tokens/s here)")
        return text


def duration_text(seconds: float) -> str:
    """40 -> `40 s`, 150 -> `2.5 min`, 7200 -> `2.0 h`: one significant rounding a person reads."""
    if seconds < 90:
        return f"{max(1, math.ceil(seconds))} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _get(kind: str, spec: dict[str, Any], name: str) -> Any:
    """A field of a stored spec dict, or its default when the spec left it out."""
    return spec[name] if name in spec else SPECS[kind].model_fields[name].default


def _kernel_points(spec: dict[str, Any]) -> int:
    dims = ("tokens", "sparsities", "layouts", "modes")
    return max(1, len(_get("kernel", spec, "shapes"))) * math.prod(len(_get("kernel", spec, d)) for d in dims)


SIZE: dict[str, Callable[[dict[str, Any]], float]] = {
    "prune": lambda s: len(_get("prune", s, "sparsities")),
    "sae": lambda s: _get("sae", s, "tokens"),
    "kernel": lambda s: _kernel_points(s) * _get("kernel", s, "repeats"),
    "explain": lambda s: 1,
}
SIZE_WORDS = {"prune": "the number of targets", "sae": "the token budget", "kernel": "sweep points x repeats"}

SAME: dict[str, Callable[[dict[str, Any]], tuple]] = {
    "prune": lambda s: (_get("prune", s, "schedule"), _get("prune", s, "recovery")),
    "sae": lambda s: (_get("sae", s, "expansion"), bool(_get("sae", s, "downstream"))),
    "kernel": lambda s: (_get("kernel", s, "device"), _get("kernel", s, "parent_run") is not None),
    "explain": lambda s: (bool(_get("explain", s, "captum")), _get("explain", s, "flip_fraction") > 0,
                          _get("explain", s, "parent_run") is not None),
}


def estimate(spec: BaseSpec, history: pd.DataFrame) -> Optional[Estimate]:
    """The expected duration of `spec` from `history` (columns HISTORY_COLUMNS, newest first; `spec`
    a dict or JSON text as stored), or None when no similar run succeeded. See the module's rule."""
    kind, new = spec.kind, spec.model_dump()
    if history.empty:
        return None
    seconds = pd.to_numeric(history["duration_s"], errors="coerce")  # None (never started) -> NaN
    rows = history[(history["kind"] == kind) & (history["model"] == spec.model) & (history["status"] == "succeeded")
                   & history["method"].fillna("").eq(spec.method_name or "") & (seconds > 0)]
    similar = []  # (size, seconds) of the newest similar runs
    for stored, took, info in zip(rows["spec"], seconds[rows.index], rows["info"]):
        old = json.loads(stored) if isinstance(stored, str) else dict(stored)
        if SAME[kind](old) == SAME[kind](new) and SIZE[kind](old) > 0:
            similar.append((float(SIZE[kind](old)), float(took) - _capture(info)[1]))
            if len(similar) == RECENT:
                break
    if not similar:
        return None
    found = _estimate(kind, float(SIZE[kind](new)), similar)
    capture = _capture_cost(new, history) if kind == "sae" and new["site"] != "hidden" else None
    if capture:
        found = Estimate(found.seconds, found.basis + ", activations already captured", capture)
    return found


def _activations(info: Any) -> dict:
    """`info.activations` of a stored run (a dict or JSON text), {} when it has none."""
    return ((json.loads(info) if isinstance(info, str) else info) or {}).get("activations") or {}


def _capture(info: Any) -> tuple[float, float]:
    """(tokens, seconds) an SAE run spent capturing activations (`info.activations.capture`), or
    (0, 0): it read them from the cache, it is no SAE run, or it ran before captures were timed."""
    got = _activations(info).get("capture") or {}
    return float(got.get("tokens", 0)), float(got.get("seconds", 0))


def _capture_cost(new: dict[str, Any], history: pd.DataFrame) -> Optional[tuple[float, float]]:
    """(seconds, tokens/s) of capturing the new run's train and held-out activations, at the median
    rate of the store's runs on the same model and layer that captured at least CAPTURE_MIN_TOKENS."""
    same = history[(history["kind"] == "sae") & (history["model"] == new["model"])]
    rates, held_out = [], []
    for stored, info in zip(same["spec"], same["info"]):
        old = json.loads(stored) if isinstance(stored, str) else dict(stored)
        tokens, seconds = _capture(info)
        if _get("sae", old, "layer") == new["layer"] and tokens >= CAPTURE_MIN_TOKENS and seconds > 0:
            rates.append(tokens / seconds)
            held_out.append(float(_activations(info).get("eval_tokens", 0)))
    if not rates:
        return None
    rate = float(np.median(rates))
    return (new["tokens"] + max(held_out)) / rate, rate


def _estimate(kind: str, size: float, similar: list[tuple[float, float]]) -> Estimate:
    if len({s for s, _ in similar}) > 1 and (fit := _fixed_plus_per_size(similar)) is not None:
        fixed, per = fit
        return Estimate(fixed + per * size, f"fitted to {len(similar)} similar runs here of "
                                            f"{len({s for s, _ in similar})} sizes: {duration_text(round(fixed, 6))} fixed "
                                            f"+ the rest growing with {SIZE_WORDS.get(kind, 'size')}")
    scaled = [took * size / old for old, took in similar]
    n = len(scaled)
    basis = f"median of {n} similar runs here" if n > 1 else "1 similar run here"
    if kind in SIZE_WORDS:
        basis += f", scaled by {SIZE_WORDS[kind]}"
        if all(size > GROWTH_BOUND * old for old, _ in similar):
            basis += "; an upper bound, since the start-up part does not grow"
    return Estimate(float(pd.Series(scaled).median()), basis)


def _fixed_plus_per_size(points: list[tuple[float, float]]) -> Optional[tuple[float, float]]:
    """(a, b) of seconds = a + b x size, least squares over runs of at least two sizes, both
    non-negative; None when the runs say time falls with size (noise: scale instead)."""
    x = np.array([p[0] for p in points])
    y = np.array([p[1] for p in points])
    b, a = np.polyfit(x, y, 1)
    if b < 0:
        return None
    if a < 0:  # through the origin: pure proportional
        return 0.0, float((x * y).sum() / (x * x).sum())
    return float(a), float(b)


def eta(started_at: Optional[datetime], progress_fraction: Optional[float], now: datetime) -> Optional[float]:
    """Seconds left for a running run that started at `started_at` and is `progress_fraction` done
    at `now`, assuming the rest goes as fast as what is done: elapsed x (1 - f) / f. None before
    ETA_FROM done, with no progress or no start; 0 when done."""
    if started_at is None or progress_fraction is None or progress_fraction < ETA_FROM:
        return None
    if progress_fraction >= 1:
        return 0.0
    elapsed = max(0.0, (now - started_at).total_seconds())
    return elapsed * (1 - progress_fraction) / progress_fraction
