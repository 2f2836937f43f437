"""Estimates from similar past runs, checked on numbers a person can redo by hand."""

from datetime import datetime, timedelta

import pandas as pd
import pytest

from db import repo
from sparsity_core.reports.estimate import HISTORY_COLUMNS, Estimate, duration_text, estimate, eta
from sparsity_core.reports.loaders import estimate_for
from sparsity_core.specs import parse_spec

PRUNE = {"kind": "prune", "model": "digits-mlp", "method": "magnitude", "sparsities": [0.5, 0.9]}


def history(*rows) -> pd.DataFrame:
    """(spec dict, seconds[, status[, info]]) rows, newest first, as the store's history frame."""
    out = []
    for spec, seconds, *rest in rows:
        parsed = parse_spec(spec)
        out.append({"kind": parsed.kind, "model": parsed.model, "method": parsed.method_name, "spec": spec,
                    "duration_s": seconds, "status": rest[0] if rest else "succeeded",
                    "info": rest[1] if len(rest) > 1 else {}})
    return pd.DataFrame(out, columns=HISTORY_COLUMNS)


def test_median_of_three_similar_runs():
    est = estimate(parse_spec(PRUNE), history((PRUNE, 10.0), (PRUNE, 30.0), (PRUNE, 20.0)))
    assert est == Estimate(20.0, "median of 3 similar runs here, scaled by the number of targets")


def test_twice_the_targets_take_twice_the_time():
    four = {**PRUNE, "sparsities": [0.5, 0.7, 0.8, 0.9]}
    assert estimate(parse_spec(four), history((PRUNE, 10.0))).seconds == 20.0
    assert estimate(parse_spec(four), history((PRUNE, 10.0))).basis.startswith("1 similar run here")


def test_no_similar_history_is_no_estimate():
    spec = parse_spec(PRUNE)
    assert estimate(spec, history()) is None
    other_method = {**PRUNE, "method": "wanda"}
    other_model = {**PRUNE, "model": "minilm-l6-rt"}
    training = {**PRUNE, "recovery": "finetune"}  # a fine-tuning run is not a one-shot prune's size
    assert estimate(spec, history((other_method, 10.0), (other_model, 10.0), (training, 10.0))) is None
    assert estimate(spec, history((PRUNE, 10.0, "failed"), (PRUNE, 10.0, "cancelled"))) is None


def test_sae_scales_by_tokens_and_reads_stored_json():
    small = {"kind": "sae", "model": "minilm-l6", "variant": "topk", "tokens": 10_000}
    frame = history((small, 8.0))
    frame["spec"] = frame["spec"].map(lambda s: '{"kind": "sae", "model": "minilm-l6", "variant": "topk", '
                                                '"tokens": 10000}')  # as the store's JSON text
    assert estimate(parse_spec({**small, "tokens": 40_000}), frame).seconds == 32.0
    assert estimate(parse_spec({**small, "variant": "relu_l1"}), frame) is None


def test_kernel_scales_by_points_times_repeats():
    # 1 shape x 1 token count x 2 sparsities x 2 layouts x 1 mode = 4 points, x 10 repeats
    old = {"kind": "kernel", "sparsities": [0.5, 0.9], "layouts": ["dense", "csr"], "repeats": 10}
    new = {**old, "sparsities": [0.5, 0.9, 0.99], "layouts": ["dense", "csr", "coo"], "repeats": 20}  # 9 x 20
    assert estimate(parse_spec(new), history((old, 4.0))).seconds == pytest.approx(4.0 * 180 / 40)


def test_explain_matches_captum_and_flipping_without_scaling():
    quick = {"kind": "explain", "model": "digits-mlp", "method": "representer", "captum": False, "flip_fraction": 0.0}
    full = {"kind": "explain", "model": "digits-mlp", "method": "representer"}  # captum on, 10% flipped
    frame = history((quick, 2.0), (full, 60.0), (quick, 4.0))
    assert estimate(parse_spec({**quick, "test_index": 7}), frame) == Estimate(3.0, "median of 2 similar runs here")
    assert estimate(parse_spec(full), frame).seconds == 60.0
    assert estimate(parse_spec({**quick, "flip_fraction": 0.1}), frame) is None
    assert estimate(parse_spec({**quick, "parent_run": 3}), frame) is None  # dense + pruned: two explanations


def test_runs_that_never_started_are_ignored():
    frame = history((PRUNE, None), (PRUNE, 12.0))
    assert estimate(parse_spec(PRUNE), frame) == Estimate(12.0, "1 similar run here, scaled by the number of targets")
    assert estimate(parse_spec(PRUNE), history((PRUNE, None))) is None


def test_only_the_newest_five_similar_runs_count():
    # newest first: five of 10 s, then older runs of 100 s that predate, say, a faster release
    frame = history(*[(PRUNE, 10.0)] * 5, *[(PRUNE, 100.0)] * 6)
    assert estimate(parse_spec(PRUNE), frame).seconds == 10.0


def test_eta_extrapolates_the_pace_so_far():
    start = datetime(2025, 1, 1, 12, 0, 0)
    assert eta(start, 0.25, start + timedelta(seconds=10)) == 30.0
    assert eta(start, 0.5, start + timedelta(seconds=10)) == 10.0
    assert eta(start, 1.0, start + timedelta(seconds=10)) == 0.0
    assert eta(start, 0.04, start + timedelta(seconds=10)) is None  # before 5%: mostly start-up
    assert eta(start, None, start) is None
    assert eta(None, 0.5, start) is None


def test_duration_text():
    assert [duration_text(s) for s in (0.2, 40, 89.5, 150, 7200)] == ["1 s", "40 s", "90 s", "2.5 min", "2.0 h"]
    assert Estimate(40.0, "median of 3 similar runs here").text == "about 40 s (median of 3 similar runs here)"


def test_estimate_for_reads_the_store_history():
    spec = parse_spec(PRUNE)
    assert estimate_for(spec) is None
    for seconds in (10, 20, 30):
        _finish_after(_stored(spec), seconds)
    _finish_after(_stored(spec), 500, status="failed")
    est = estimate_for(parse_spec({**PRUNE, "sparsities": [0.5, 0.7, 0.8, 0.9]}))
    assert est == Estimate(40.0, "median of 3 similar runs here, scaled by the number of targets")


def _stored(spec) -> int:
    return repo.create_run(kind=spec.kind, model=spec.model, spec=spec.model_dump(mode="json"), spec_version=2,
                           method=spec.method_name)


def _finish_after(run_id: int, seconds: float, status: str = "succeeded") -> None:
    from db.engine import session
    from db.models import Run

    start = datetime(2025, 1, 1, 12, 0, 0)
    with session() as s:
        run = s.get(Run, run_id)
        run.status, run.started_at, run.finished_at = status, start, start + timedelta(seconds=seconds)
        s.commit()


def test_two_sizes_split_the_fixed_start_up_from_the_part_that_grows():
    small = {"kind": "sae", "model": "minilm-l6", "variant": "topk", "tokens": 16_000}
    # 16k tokens in 30 s and 32k in 40 s: 20 s fixed + 10 s per 16k tokens -> 200k tokens: 20 + 125 = 145 s
    frame = history((small, 30.0), ({**small, "tokens": 32_000}, 40.0))
    est = estimate(parse_spec({**small, "tokens": 200_000}), frame)
    assert est.seconds == pytest.approx(145.0)
    assert est.basis == "fitted to 2 similar runs here of 2 sizes: 20 s fixed + the rest growing with the token budget"
    # one size only, 12.5 x bigger: plain scaling (375 s), said to be an upper bound
    one = estimate(parse_spec({**small, "tokens": 200_000}), history((small, 30.0)))
    assert one.seconds == pytest.approx(375.0) and one.basis.endswith("an upper bound, since the start-up part does not grow")


def _captured(tokens: int, seconds: float, eval_tokens: int = 32_768) -> dict:
    return {"activations": {"eval_tokens": eval_tokens, "capture": {"tokens": tokens, "seconds": seconds}}}


def test_sae_capture_is_left_out_of_past_runs_and_named_apart():
    run = {"kind": "sae", "model": "minilm-l6", "variant": "topk", "tokens": 100_000}
    # a cold run: 132,768 tokens captured in 40 s of its 70 s; a warm one of 30 s captured nothing
    frame = history((run, 30.0, "succeeded", _captured(0, 0.1)), (run, 70.0, "succeeded", _captured(132_768, 40.0)))
    est = estimate(parse_spec(run), frame)
    assert est.seconds == pytest.approx((29.9 + 30.0) / 2)  # both runs without their capture
    # the capture rate is 132,768 / 40 = 3,319 tokens/s; a first run of 100k + 32,768 held out: 40 s
    assert est.capture == pytest.approx((40.0, 3319.2))
    assert est.text == ("about 30 s (median of 2 similar runs here, scaled by the token budget, activations "
                        "already captured); about 40 s more if these activations are not captured yet "
                        "(capture runs at 3,319 tokens/s here)")
    # another layer has its own capture speed: no capture part without a capture there
    other = estimate(parse_spec({**run, "layer": 5}), frame)
    assert other.capture is None and other.seconds == pytest.approx(29.95)
    # more latents train slower per token: not similar
    assert estimate(parse_spec({**run, "expansion": 16}), frame) is None
