"""Pruning quality benchmark: what each method costs in quality, time and memory on real models.

    nice -n 10 .venv/bin/python benchmarks/pruning_quality.py            # every table
    nice -n 10 .venv/bin/python benchmarks/pruning_quality.py lm         # table 1 only
    nice -n 10 .venv/bin/python benchmarks/pruning_quality.py calib wanda/sequential/uniform   # one variant
    nice -n 10 .venv/bin/python benchmarks/pruning_quality.py memory sparsegpt/one_pass/16     # one variant

Table 1 (`lm`): SmolLM2-135M, 64 calibration sequences of 256 tokens (BBC News train), perplexity
on BBC News test (16 windows of 512 tokens). Dense, then magnitude / wanda / sparsegpt / dsnot
(wanda start) at 50% unstructured, 2:4 and 4:8, each pruned from the same dense weights in one
process, statistics from one pass of the dense model. Pruning time includes the calibration pass
the method needs. Peak memory is the process's peak RSS so far.

Table 2 (`calib`): the same model and data, at 50% and 70% unstructured and 2:4: wanda and
sparsegpt with `one_pass` vs `sequential` calibration (pruning/calibrate.py), and wanda with the
`owl` allocation (M 5, lambda 0.08; unstructured targets only) against uniform. Each variant runs
in a fresh process through the job's own functions (pruning/run.py `calibrate` + `prune_target`),
so its peak RSS is its own; "over loaded" is the peak above the RSS right after the model, its
evaluation windows and the dense CPU copy were in memory: the high-water mark is reset there and
before each prune, and read before each evaluation, so a row's peak is its calibration and its
prune (one_pass runs the whole model with its LM head once: 8 x 256 x 49k float32 logits a batch).
Time per row: everything from the dense weights to that pruned model (one_pass: its one
calibration pass + the prune; sequential: the block-by-block pass of that target).

Table 3 (`memory`): a Llama-shaped checkpoint of ~0.9B parameters (hidden 2048, intermediate
5632, 32 heads / 4 KV heads as TinyLlama, SmolLM2's 49k vocabulary, 16 layers; and the same with 8
layers), random weights written once with LlamaConfig + save_pretrained (safetensors) under
SPARSITY_HOME/cache/bench, loaded through `hf:`. SparseGPT at 50%, calibration 8 x 128 tokens
(small, to keep the table within minutes on 2 cores): peak RSS above the loaded model, one_pass vs
sequential, each in a fresh process (one_pass also runs the LM head: 8 x 128 x 49k float32 logits,
0.2 GB). One block's statistics here are its four Hessians (attention
input, o_proj input, MLP input: 2048^2 each; down_proj input: 5632^2) = 0.18 GB in float32; the
one-pass run holds every block's at once (16 x 0.18 GB = 2.9 GB). `MEMORY_SHAPE=small` runs a
narrower model (hidden 1024, intermediate 2816: ~0.28B at 16 layers) where the full shape is too
slow for the machine.

Every measured row is kept in SPARSITY_HOME/benchmarks/pruning_quality.json (with the load
average it ran under), so a table can be completed variant by variant; a table prints every row
kept for it. Exits 1 when a target is missed or a row it needs was not measured.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

from sparsity_core.data.calibration import calibration_set  # noqa: E402
from sparsity_core.jobs.context import RunContext, Stage  # noqa: E402
from sparsity_core.paths import cache_dir, home  # noqa: E402
from sparsity_core.pruning import METHODS  # noqa: E402
from sparsity_core.pruning.calibrate import collect_stats  # noqa: E402
from sparsity_core.pruning.evaluate import Perplexity  # noqa: E402
from sparsity_core.pruning.record import restore_dense  # noqa: E402
from sparsity_core.pruning.run import calibrate, dense_copy, prune_target  # noqa: E402
from sparsity_core.specs import parse_spec  # noqa: E402
from sparsity_core.zoo import load_model, prunable_linears  # noqa: E402

CALIB_SAMPLES, SEQ_LEN = 64, 256  # the papers' setup scaled to a CPU (they use 128 x 2048)
SETTINGS = [("50%", "unstructured", 0.5), ("2:4", "2:4", 0.5), ("4:8", "4:8", 0.5)]
METHOD_ORDER = ("magnitude", "wanda", "sparsegpt", "dsnot")
LIMITS_S = {"wanda": 120.0, "sparsegpt": 300.0}  # issue targets on a 2-core CPU
RSS_LIMIT_GB = 6.0
BETTER_THAN_MAGNITUDE = 0.8  # "well below": at most 80% of magnitude's perplexity


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2  # ru_maxrss is KiB on Linux


def timed(fn: Callable, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def table_lm() -> tuple[list[dict], list[str]]:
    """Table 1: SmolLM2-135M perplexity / pruning time / peak RSS per method and pattern."""
    torch.manual_seed(0)
    handle = load_model("smollm2-135m")
    linears = prunable_linears(handle)
    dense = {n: m.weight.detach().clone() for n, m in linears.items()}
    evaluate = Perplexity(handle, seed=0, limit=None)
    calib = calibration_set(handle, CALIB_SAMPLES, SEQ_LEN, seed=0)
    # calibration passes, timed per kind of statistic (Wanda/DSnoT: norms + means; SparseGPT: Hessians)
    light, t_light = timed(collect_stats, handle.model, linears, calib.batches, {"norm", "mean"})
    heavy, t_heavy = timed(collect_stats, handle.model, linears, calib.batches, {"hessian"})
    calibration = {"magnitude": (None, 0.0), "wanda": (light, t_light), "dsnot": (light, t_light),
                   "sparsegpt": (heavy, t_heavy)}
    rows = [{"method": "dense", "pattern": "-", **_row(evaluate(handle)["perplexity"], 0.0, 0.0)}]
    _print_row(rows[-1])
    for label, pattern, target in SETTINGS:
        for name in METHOD_ORDER:
            with torch.no_grad():
                for n, m in linears.items():
                    m.weight.copy_(dense[n])
            stats, t_cal = calibration[name]
            _, t_prune = timed(METHODS[name](seed=0).prune, linears, target, pattern=pattern, stats=stats)
            zeros = sum(int((m.weight == 0).sum()) for m in linears.values())
            ppl = evaluate(handle)["perplexity"]
            rows.append({"method": name, "pattern": label, **_row(ppl, t_cal + t_prune,
                                                                 zeros / sum(w.numel() for w in dense.values()))})
            _print_row(rows[-1])
    return rows, _check_lm(rows)


def _row(ppl: float, seconds: float, sparsity: float) -> dict:
    return {"perplexity": ppl, "time_s": seconds, "sparsity": sparsity, "peak_rss_gb": peak_rss_gb()}


def _print_row(r: dict) -> None:
    print(f"| {r['method']:<10} | {r['pattern']:<7} | {r['sparsity']:>8.3f} | {r['perplexity']:>10.2f} "
          f"| {r['time_s']:>8.1f} | {r['peak_rss_gb']:>11.2f} |", flush=True)


def _check_lm(rows: list[dict]) -> list[str]:
    missed = []
    ppl = {(r["method"], r["pattern"]): r["perplexity"] for r in rows}
    for r in rows:
        limit = LIMITS_S.get(r["method"])
        if limit and r["time_s"] > limit:
            missed.append(f"{r['method']} {r['pattern']}: {r['time_s']:.0f} s > {limit:.0f} s")
    if max(r["peak_rss_gb"] for r in rows) > RSS_LIMIT_GB:
        missed.append(f"peak RSS {max(r['peak_rss_gb'] for r in rows):.2f} GB > {RSS_LIMIT_GB} GB")
    for pattern in ("50%", "2:4"):
        for name in ("wanda", "sparsegpt"):
            if ppl[(name, pattern)] > BETTER_THAN_MAGNITUDE * ppl[("magnitude", pattern)]:
                missed.append(f"{name} {pattern}: perplexity {ppl[(name, pattern)]:.1f} not well below "
                              f"magnitude's {ppl[('magnitude', pattern)]:.1f}")
    return missed



# ---------------------------------------------------------------- shared by tables 2 and 3
RESULTS = home() / "benchmarks" / "pruning_quality.json"
CHILD_TIMEOUT_S = 1500  # one variant in its own process


def rss_gb() -> float:
    return _status_kb("VmRSS") / 1024 ** 2


def hwm_gb() -> float:
    """Peak RSS since the last `reset_peak` (Linux VmHWM)."""
    return _status_kb("VmHWM") / 1024 ** 2


def reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS (Linux >= 4.0)


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def stored(table: str) -> dict[str, dict]:
    data = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    return data.get(table, {})


def store(table: str, variant: str, result: dict) -> None:
    data = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    data.setdefault(table, {})[variant] = {**result, "loadavg": Path("/proc/loadavg").read_text().split()[:3],
                                           "measured_at": time.strftime("%Y-%m-%d %H:%M:%S")}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(data, indent=1))


def run_child(table: str, variant: str) -> dict:
    """One variant in a fresh interpreter (its peak RSS is its own); its result, stored."""
    cmd = [sys.executable, os.path.abspath(__file__), "_child", table, variant]
    start = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=CHILD_TIMEOUT_S)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")]
    if out.returncode != 0 or not lines:
        raise RuntimeError(f"{table} {variant} failed (rc {out.returncode}):\n{out.stderr[-3000:]}")
    result = json.loads(lines[-1][len("RESULT "):])
    result["wall_s"] = time.perf_counter() - start
    store(table, variant, result)
    return result


def zeros_fraction(linears) -> float:
    return sum(int((m.weight == 0).sum()) for m in linears.values()) / sum(m.weight.numel() for m in linears.values())


# ---------------------------------------------------------------- table 2: calibration and allocation
CALIB_SETTINGS = [("50%", "unstructured", 0.5), ("70%", "unstructured", 0.7), ("2:4", "2:4", 0.5)]
CALIB_VARIANTS = ("wanda/one_pass/uniform", "wanda/sequential/uniform", "sparsegpt/one_pass/uniform",
                  "sparsegpt/sequential/uniform", "wanda/sequential/owl")
NOISE = 1.03  # sequential may be at most 3% above one-pass (16 windows: ~1% between seeds, see evaluate.py)


def child_calib(variant: str) -> dict:
    method_name, mode, allocation = variant.split("/")
    torch.manual_seed(0)
    handle = load_model("smollm2-135m")
    evaluate = Perplexity(handle, seed=0, limit=None)
    dense = dense_copy(prunable_linears(handle))
    loaded = rss_gb()
    reset_peak()
    base = parse_spec({"kind": "prune", "model": "smollm2-135m", "method": method_name, "calibration": mode,
                       "allocation": allocation, "sparsities": [0.5], "calibration_samples": CALIB_SAMPLES,
                       "seq_len": SEQ_LEN})
    method = METHODS[method_name](seed=0, **base.params)
    ctx = RunContext()
    cal, t_cal = timed(calibrate, base, handle, method, Stage(ctx, 0.0, 1.0))
    cal_peak = hwm_gb()  # the one calibration pass (and the tokenised data)
    rows = []
    for label, pattern, target in CALIB_SETTINGS:
        if allocation != "uniform" and pattern != "unstructured":
            continue  # OWL gives layers different sparsities: unstructured only
        spec = base.model_copy(update={"pattern": pattern, "sparsities": [target]})
        restore_dense(handle, dense)
        reset_peak()  # the previous row's evaluation is not this row's pruning
        _, t_prune = timed(prune_target, spec, handle, method, cal, target)
        peak = max(cal_peak, hwm_gb())  # calibration + this prune, before its evaluation
        rows.append({"variant": variant, "setting": label, "sparsity": zeros_fraction(prunable_linears(handle)),
                     "perplexity": evaluate(handle)["perplexity"], "time_s": t_cal + t_prune,
                     "peak_rss_gb": peak, "over_loaded_gb": peak - loaded})
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    return {"rows": rows, "loaded_gb": loaded, "outlier_ratios": (ctx.facts.get("allocation") or {}).get("outlier_ratios")}


def table_calib(variants: list[str]) -> tuple[list[dict], list[str]]:
    for variant in variants:
        if variant != "report":  # `calib report`: print what is stored, run nothing
            run_child("calib", variant)
    results = stored("calib")
    print(CALIB_HEADER)
    rows = [r for v in CALIB_VARIANTS if v in results for r in results[v]["rows"]]
    for r in rows:
        m, c, a = r["variant"].split("/")
        print(f"| {m:<9} | {c:<10} | {a:<7} | {r['setting']:<4} | {r['sparsity']:>8.3f} | {r['perplexity']:>10.2f} "
              f"| {r['time_s']:>7.1f} | {r['peak_rss_gb']:>8.2f} | {r['over_loaded_gb']:>11.2f} |")
    for v in CALIB_VARIANTS:
        if v in results:
            print(f"  {v}: measured {results[v]['measured_at']}, load average {' '.join(results[v]['loadavg'])}, "
                  f"wall {results[v]['wall_s']:.0f} s")
    return rows, _check_calib(rows)


def _check_calib(rows: list[dict]) -> list[str]:
    ppl = {(r["variant"], r["setting"]): r["perplexity"] for r in rows}
    missed = []

    def need(*keys):
        absent = [k for k in keys if k not in ppl]
        if absent:
            missed.append(f"not measured: {', '.join('/'.join(k) for k in absent)}")
        return not absent

    uniform, owl = ("wanda/sequential/uniform", "70%"), ("wanda/sequential/owl", "70%")
    if need(uniform, owl) and ppl[owl] >= ppl[uniform]:
        missed.append(f"OWL + Wanda at 70%: perplexity {ppl[owl]:.1f} not below uniform Wanda's {ppl[uniform]:.1f}")
    for name in ("wanda", "sparsegpt"):
        for setting in ("50%", "70%", "2:4"):
            seq, one = (f"{name}/sequential/uniform", setting), (f"{name}/one_pass/uniform", setting)
            if need(seq, one) and ppl[seq] > NOISE * ppl[one]:
                missed.append(f"{name} {setting}: sequential {ppl[seq]:.1f} worse than one-pass {ppl[one]:.1f} "
                              f"beyond noise ({NOISE:.2f}x)")
    return missed


CALIB_HEADER = ("| method    | calibration | alloc   | at   | sparsity | perplexity | time s  | peak GB  | over loaded |\n"
                "|-----------|------------|---------|------|----------|------------|---------|----------|-------------|")


# ---------------------------------------------------------------- table 3: memory on a ~1B Llama shape
SHAPES = {
    # TinyLlama-1.1B's block shape with SmolLM2's tokenizer: 16 layers = 0.91B parameters
    "full": {"hidden_size": 2048, "intermediate_size": 5632, "num_attention_heads": 32, "num_key_value_heads": 4},
    "small": {"hidden_size": 1024, "intermediate_size": 2816, "num_attention_heads": 16, "num_key_value_heads": 4},
    "tiny": {"hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4, "num_key_value_heads": 2},  # smoke
}
MEMORY_SHAPE = os.environ.get("MEMORY_SHAPE", "full")
MEMORY_VARIANTS = ("sparsegpt/one_pass/8", "sparsegpt/sequential/8", "sparsegpt/one_pass/16",
                   "sparsegpt/sequential/16")
MEMORY_CALIB = (8, 128)  # sequences x tokens: small, so the 0.9B table fits in minutes on 2 cores
# what any run adds whatever the model: the tokenised BBC News train stream, the tokenizer's and the
# allocator's slack (measured: 0.12 GB over loaded for a sequential run of the `tiny` shape)
BASELINE_GB = 0.25


def checkpoint(layers: int, shape: str = MEMORY_SHAPE) -> Path:
    """The random-weight Llama checkpoint of `layers` blocks, written once (safetensors)."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    folder = cache_dir("bench") / f"llama-{shape}-{layers}l"
    if (folder / "config.json").is_file():
        return folder
    load_model("smollm2-135m")  # makes sure its converted folder (and tokenizer) exists
    tok = AutoTokenizer.from_pretrained(cache_dir("models") / "smollm2-135m")
    config = LlamaConfig(vocab_size=len(tok), num_hidden_layers=layers, max_position_embeddings=2048,
                         tie_word_embeddings=False, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                         **SHAPES[shape])
    torch.manual_seed(0)
    tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
    LlamaForCausalLM(config).save_pretrained(tmp, safe_serialization=True)
    tok.save_pretrained(tmp)
    tmp.replace(folder)  # atomic: a half-written checkpoint is never read
    return folder


def statistics_gb(layers: int, shape: str = MEMORY_SHAPE) -> dict[str, float]:
    """What the memory should be, from the shapes (float32): one block's Hessians (the attention
    input, o_proj's, the MLP input: hidden^2 each; down_proj's intermediate^2), the calibration
    activations a block pass holds (inputs + outputs), and SparseGPT's working set on its widest
    layer (the Hessian in float64, its Cholesky factor and inverse, the float32 factor, and about
    four copies of the weight)."""
    h, i = SHAPES[shape]["hidden_size"], SHAPES[shape]["intermediate_size"]
    gib = 1024 ** 3  # as the RSS columns
    block = (3 * h * h + i * i) * 4 / gib
    tokens = MEMORY_CALIB[0] * MEMORY_CALIB[1]
    activations = 2 * tokens * h * 4 / gib
    working = (3 * i * i * 8 + i * i * 4 + 4 * h * i * 4) / gib
    return {"block": block, "all_blocks": layers * block, "activations": activations, "working": working}


def child_memory(variant: str) -> dict:
    method_name, mode, layers = variant.split("/")
    folder = checkpoint(int(layers))
    handle = load_model(f"hf:{folder}")
    with torch.no_grad():  # weights may come memory-mapped: page them all in, so "loaded" is the model
        for p in handle.model.parameters():
            float(p.sum())
    loaded = rss_gb()
    reset_peak()
    start = time.perf_counter()
    dense = dense_copy(prunable_linears(handle))  # what the run keeps to restore targets (CPU)
    dense_gb = sum(t.numel() * t.element_size() for t in dense.values()) / 1024 ** 3
    spec = parse_spec({"kind": "prune", "model": f"hf:{folder}", "method": method_name, "calibration": mode,
                       "sparsities": [0.5], "calibration_samples": MEMORY_CALIB[0], "seq_len": MEMORY_CALIB[1]})
    method = METHODS[method_name](seed=0, **spec.params)
    cal = calibrate(spec, handle, method, Stage(RunContext(), 0.0, 1.0))
    masks, _ = prune_target(spec, handle, method, cal, 0.5)  # kept by the run for its stored artifact
    peak = hwm_gb()
    masks_gb = sum(m.numel() * m.element_size() for m in masks.values()) / 1024 ** 3
    return {"variant": variant, "shape": MEMORY_SHAPE, "layers": int(layers), "params": handle.num_params(),
            "loaded_gb": loaded, "peak_gb": peak, "over_loaded_gb": peak - loaded, "dense_copy_gb": dense_gb,
            "masks_gb": masks_gb, "time_s": time.perf_counter() - start, "sparsity": zeros_fraction(prunable_linears(handle))}


def table_memory(variants: list[str]) -> tuple[list[dict], list[str]]:
    for variant in (v for v in variants if v != "report"):
        checkpoint(int(variant.split("/")[2]))  # written here, once, so the child only loads
        run_child(f"memory-{MEMORY_SHAPE}", variant)
    results = stored(f"memory-{MEMORY_SHAPE}")
    print(MEMORY_HEADER)
    rows = [results[v] for v in MEMORY_VARIANTS if v in results]
    for r in rows:  # bool masks: one byte per float32 weight of the dense copy (rows stored before masks_gb)
        r["masks_gb"] = r.get("masks_gb", r["dense_copy_gb"] / 4)
        r["rest_gb"] = r["over_loaded_gb"] - r["dense_copy_gb"] - r["masks_gb"]
    for r in rows:
        _, mode, _ = r["variant"].split("/")
        print(f"| {r['shape']:<5} | {r['layers']:>6} | {r['params'] / 1e9:>6.2f} | {mode:<10} | {r['loaded_gb']:>9.2f} "
              f"| {r['peak_gb']:>7.2f} | {r['over_loaded_gb']:>11.2f} | {r['dense_copy_gb']:>8.2f} "
              f"| {r['masks_gb']:>8.2f} | {r['rest_gb']:>10.2f} | {r['time_s']:>7.0f} | {r['sparsity']:>8.3f} |")
    for r in rows:
        print(f"  {r['variant']}: measured {r['measured_at']}, load average {' '.join(r['loadavg'])}")
    for layers in (8, 16):
        est = statistics_gb(layers)
        print(f"  expected at {layers} layers (GiB): one block's Hessians {est['block']:.2f} (all blocks "
              f"{est['all_blocks']:.2f}), calibration activations {est['activations']:.3f}, SparseGPT's "
              f"working set on the widest layer {est['working']:.2f}")
    return rows, _check_memory(rows)


def _check_memory(rows: list[dict]) -> list[str]:
    by = {(r["variant"].split("/")[1], r["layers"]): r["rest_gb"] for r in rows}
    missed = [f"not measured: sparsegpt/{m}/{n}" for m in ("one_pass", "sequential") for n in (8, 16)
              if (m, n) not in by]
    if missed:
        return missed
    est = statistics_gb(16)
    budget = est["block"] + est["activations"] + est["working"] + BASELINE_GB
    if by[("sequential", 16)] > budget:
        missed.append(f"sequential overhead {by[('sequential', 16)]:.2f} GB above one block's statistics + "
                      f"activations + SparseGPT's working set ({budget:.2f} GB)")
    if by[("sequential", 16)] - by[("sequential", 8)] > est["block"]:
        missed.append(f"sequential overhead grows with depth: {by[('sequential', 8)]:.2f} GB at 8 layers, "
                      f"{by[('sequential', 16)]:.2f} GB at 16")
    if by[("sequential", 16)] >= by[("one_pass", 16)]:
        missed.append("sequential does not use less memory than one_pass at 16 layers")
    return missed


# over loaded = dense CPU copy + masks (both grow with depth in either mode: what the run keeps to restore
# targets and to store the masks) + the rest (statistics, activations, SparseGPT's working set)
MEMORY_HEADER = ("| shape | layers | params B | calibration | loaded GiB | peak GiB | over loaded | dense copy "
                 "| masks    | rest       | time s  | sparsity |\n"
                 "|-------|--------|--------|------------|-----------|---------|-------------|----------"
                 "|----------|------------|---------|----------|")


# ---------------------------------------------------------------- entry
def table_lm_all(_variants: list[str]) -> tuple[list[dict], list[str]]:
    print("| method     | pattern | sparsity | perplexity | prune s  | peak RSS GB |\n"
          "|------------|---------|----------|------------|----------|-------------|", flush=True)
    return table_lm()


TABLES: dict[str, tuple[str, Callable, tuple[str, ...]]] = {
    "lm": ("Table 1: SmolLM2-135M, BBC News perplexity (64 x 256 calibration tokens), one-pass statistics",
           table_lm_all, ()),
    "calib": ("Table 2: SmolLM2-135M (64 x 256), one_pass vs sequential calibration, uniform vs OWL",
              table_calib, CALIB_VARIANTS),
    "memory": (f"Table 3: Llama-shaped checkpoint ({MEMORY_SHAPE} shape), SparseGPT 50%, calibration "
               f"{MEMORY_CALIB[0]} x {MEMORY_CALIB[1]}: memory above the loaded model", table_memory, MEMORY_VARIANTS),
}
CHILDREN = {"calib": child_calib, f"memory-{MEMORY_SHAPE}": child_memory}


def main(argv: list[str]) -> int:
    if argv[:1] == ["_child"]:
        print("RESULT " + json.dumps(CHILDREN[argv[1]](argv[2])), flush=True)
        return 0
    chosen = [argv[0]] if argv else list(TABLES)
    missed: list[str] = []
    for key in chosen:
        title, fn, variants = TABLES[key]
        print(f"\n{title}", flush=True)
        _, problems = fn(argv[1:] or list(variants))  # named variants, or all of the table's
        missed += problems
    for problem in missed:
        print(f"MISSED: {problem}")
    print("all targets met" if not missed else f"{len(missed)} target(s) missed")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
