""""Try this" presets: prepared comparisons a teacher runs in one click on the bundled models.

A preset is a name, what the student should notice, the specs it queues and how long it takes
here; the page's `preset_button(lab)` submits them all and links to the compare page with the new
runs selected. Each lab's presets are a teaching sequence: the first is the quickest and shows the
lab's main idea, later ones add one idea each. Labs add theirs with `register_preset(lab, Preset(...))`.

`expected_s` is measured, not guessed: the preset's specs run one after another through the core
(`run_<kind>(parse_spec(s), RunContext())`, each in a fresh process as the worker runs it, after a
warm-up run filled the model, data and activation caches) on the 2-core development machine,
shared, under load averages of 1.6 to 3.9; the slowest of two such rounds, rounded up.
`benchmarks/demo.py` measures them again through the browser.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

PRESETS: dict[str, list["Preset"]] = {}
FAST_S = 60  # a preset a class can wait for: the issue-14 bar for "fast", warm caches, this machine


@dataclass(frozen=True)
class Preset:
    name: str
    explanation: str
    expected_s: int  # seconds for all its runs here with warm caches (see the module docstring)
    specs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def fast(self) -> bool:
        return self.expected_s <= FAST_S


def register_preset(lab: str, preset: Preset) -> None:
    if any(p.name == preset.name for p in PRESETS.get(lab, [])):
        raise ValueError(f"lab {lab!r} has a preset named {preset.name!r} already")
    PRESETS.setdefault(lab, []).append(preset)


def presets(lab: str) -> list[Preset]:
    return list(PRESETS.get(lab, []))


# ---------------------------------------------------------------- pruning (digits-mlp, then SmolLM2)
DIGITS_CURVE = [0.0, 0.5, 0.7, 0.8, 0.9, 0.95]

register_preset("pruning", Preset(
    "Layer vs global magnitude on digits",
    "Prunes the small digits classifier by weight size, once with every layer cut to the same "
    "fraction and once with one threshold for the whole network. Notice in the per-layer bars that "
    "one global threshold cuts the first layer, which reads the pixels, less than the second, and "
    "that this holds more accuracy at 70-80%; by 95% both have collapsed.",
    3,
    [{"kind": "prune", "model": "digits-mlp", "method": "magnitude", "scope": scope,
      "sparsities": DIGITS_CURVE, "name": f"preset: magnitude {scope}"}
     for scope in ("layer", "global")]))

register_preset("pruning", Preset(
    "Weight size alone vs Wanda on digits",
    "Magnitude keeps the largest weights; Wanda multiplies each weight by how strongly its input "
    "is used on 64 calibration images. Notice that here Wanda is the worse of the two from 70% on: "
    "it was made for large language models, whose few huge activations weight size alone misses, "
    "and this small network has none. The SmolLM2 preset shows the other side.",
    3,
    [{"kind": "prune", "model": "digits-mlp", "method": method, "sparsities": DIGITS_CURVE,
      "name": f"preset: digits {method}"} for method in ("magnitude", "wanda")]))

register_preset("pruning", Preset(
    "Free zeros vs 2:4 vs 4x4 blocks at 50% on digits",
    "The same half of the weights removed three ways: anywhere, two of every four in a row (what "
    "sparse tensor cores run), or whole 4x4 blocks. Notice that the more regular the pattern, the "
    "more accuracy 50% costs: regularity is what buys speed on hardware.",
    5,
    [{"kind": "prune", "model": "digits-mlp", "method": "magnitude", "pattern": pattern,
      "sparsities": [0.0, 0.5], "name": f"preset: digits {pattern} 50%"}
     for pattern in ("unstructured", "2:4", "block:4x4")]))

register_preset("pruning", Preset(
    "Magnitude vs Wanda vs SparseGPT on SmolLM2 at 50%",
    "Prunes half the weights of a real 135M-parameter language model three ways: by weight size "
    "alone (magnitude), by weight size times how strongly each input is used (Wanda), and by "
    "solving for the weights that best keep each layer's output (SparseGPT). Perplexity shows what "
    "each costs; lower is better. The last two look at 64 calibration texts first. Notice how far "
    "apart the three land at the same 50%. Slow here: about 5 minutes on this CPU (the very first "
    "run also converts the model, 2 minutes more): start it before the class.",
    295,
    [{"kind": "prune", "model": "smollm2-135m", "method": method, "sparsities": [0.0, 0.5],
      "name": f"preset: SmolLM2 {method} 50%"} for method in ("magnitude", "wanda", "sparsegpt")]))

# ---------------------------------------------------------------- SAE (digits-mlp, then minilm-l6)
# The digits classifier's last hidden layer (128 ReLU units) on its 1,258 training images: the SAE
# makes ~80 passes over them in seconds, and each latent's top images are pictures a student reads
DIGITS_SAE = {"kind": "sae", "model": "digits-mlp", "layer": 1, "site": "hidden", "data": "digits",
              "tokens": 100_000, "batch_tokens": 256, "k": 8}

register_preset("sae", Preset(
    "What an SAE learns inside the digits classifier",
    "TopK autoencoders, 8 active latents per image, on the classifier's two hidden layers (256 and "
    "128 units). Notice in each one's feature browser: on the last layer many latents' top images are all "
    "one digit (a '3' latent, a '5' latent) and 'promotes' names the classes a latent pushes the "
    "classifier toward; the first layer's latents mix digits more, as strokes they share. Spliced "
    "into the model both SAEs keep the test accuracy (97-98%) that zeroing the layer destroys (8-12%).",
    15,
    [{**DIGITS_SAE, "layer": layer, "variant": "topk", "expansion": 1, "name": f"preset: digits TopK layer {layer}"}
     for layer in (0, 1)]))

register_preset("sae", Preset(
    "Dead latents: TopK vs feature choice on digits",
    "Twice as many latents (256) as hidden units. TopK lets each image pick its latents and most "
    "latents are never picked (dead); feature choice lets each latent pick its images, so almost "
    "none is dead. Notice the price in the table: feature choice rebuilds the layer less well "
    "(lower FVE, lower accuracy with the SAE spliced in).",
    14,
    [{**DIGITS_SAE, "variant": variant, "expansion": 2, "name": f"preset: digits {variant}"}
     for variant in ("topk", "feature_choice")]))

# 16k training tokens: a budget that trains in seconds here, enough for the L0 / FVE contrast to show
SMALL_SAE = {"kind": "sae", "model": "minilm-l6", "layer": 3, "tokens": 16_384, "expansion": 4}

register_preset("sae", Preset(
    "Few vs many active latents: TopK with k = 8 and k = 32",
    "Two sparse autoencoders on the same activations of MiniLM's layer 3, one allowed 8 active "
    "latents per token, one 32. Notice the trade: more active latents rebuild the activation "
    "better (higher FVE, lower NMSE) but each token is explained by more features.",
    41,
    [{**SMALL_SAE, "variant": "topk", "k": k, "name": f"preset: TopK k={k}"} for k in (8, 32)]))

register_preset("sae", Preset(
    "Chosen vs penalised sparsity: TopK vs ReLU + L1",
    "TopK keeps exactly k latents per token; ReLU + L1 lets every latent fire and pays a penalty "
    "for it, steered toward the same average L0 of 16. Notice that on this small budget the "
    "penalty misses its L0, rebuilds the activation far worse (FVE) and leaves many more latents "
    "dead: choosing the sparsity directly is why TopK became the default.",
    26,
    [{**SMALL_SAE, "variant": variant, "k": 16, "name": f"preset: {variant} k=16"}
     for variant in ("topk", "relu_l1")]))

register_preset("sae", Preset(
    "An early vs a late layer",
    "The same TopK autoencoder on the residual stream after block 1 and after block 5. Notice "
    "that the later layer is harder to rebuild with the same 16 latents (lower FVE); then open "
    "the feature browser of each and compare what their top contexts have in common.",
    38,
    [{**SMALL_SAE, "layer": layer, "variant": "topk", "k": 16, "name": f"preset: layer {layer}"}
     for layer in (1, 5)]))

register_preset("sae", Preset(
    "An SAE inside a language model: SmolLM2's middle layer",
    "TopK autoencoders with 16 and with 64 active latents on the residual stream after block 15 of "
    "SmolLM2-135M's 30, on BBC News. Notice two numbers that disagree: with 16 latents the SAE "
    "rebuilds well under half of the activation's variance (FVE), yet spliced into the model in "
    "place of the real activation it keeps most of the next-token loss the layer is worth (CE "
    "recovered near 0.9): variance is not what the model uses. Four times the latents buys more of "
    "both. Then open a latent: beside its contexts are the tokens its direction makes the model say.",
    87,
    [{"kind": "sae", "model": "smollm2-135m", "layer": 15, "data": "bbc_news", "tokens": 16_384,
      "expansion": 4, "k": k, "variant": "topk", "name": f"preset: SmolLM2 block 15, k={k}"} for k in (16, 64)]))

# ---------------------------------------------------------------- explanations (digits-mlp)
# captum and the flipped-label experiment off: the representer points alone, seconds per point
QUICK_EXPLAIN = {"kind": "explain", "model": "digits-mlp", "dataset": "digits", "captum": False,
                 "flip_fraction": 0.0}

register_preset("explain", Preset(
    "Which training digits explain a prediction",
    "Explains two test digits by representer points: every training image pushes the prediction "
    "towards its own label (excitatory) or away from it (inhibitory). Notice that the strongest "
    "proponents are training images of the same digit, and the opponents come from the digits the "
    "model could take it for.",
    4,
    [{**QUICK_EXPLAIN, "test_index": index, "name": f"preset: test digit #{index}"} for index in (2, 4)]))

register_preset("explain", Preset(
    "How faithful the explanation is: lambda 0.003 vs 1",
    "Lambda is the L2 strength of the last-layer fit the explanation decomposes. Notice the "
    "self-check: with the paper's 0.003 the representer values rebuild the model's outputs almost "
    "exactly (Pearson 0.999); with 1 the fit is smoothed (about 0.94) and what is explained is "
    "no longer quite the model.",
    5,
    [{**QUICK_EXPLAIN, "test_index": 2, "lambda": lam, "name": f"preset: lambda {lam:g}"} for lam in (0.003, 1.0)]))

register_preset("explain", Preset(
    "Representer points next to captum, and finding flipped labels",
    "The same digit explained with captum's pixel attributions and influence methods alongside, "
    "and 10% of the training labels flipped on purpose. Notice the detection curve: checking the "
    "training points with the largest |alpha| first finds nearly all flipped labels within the "
    "first 10% checked, where random checking finds about 10%. The second digit reuses the first "
    "one's flipped-label experiment.",
    6,
    [{"kind": "explain", "model": "digits-mlp", "dataset": "digits", "test_index": index,
      "name": f"preset: test digit #{index} with captum"} for index in (2, 4)]))

# ---------------------------------------------------------------- kernels (small CPU sweeps)
# MiniLM's MLP layer (1536 x 384), 30 timed rounds (10 left speedups at 99% varying 1x..4x between runs)
SMALL_SWEEP = {"kind": "kernel", "shapes": [[1536, 384]], "sparsities": [0.5, 0.9, 0.99], "repeats": 30}

register_preset("kernels", Preset(
    "One token vs a batch: when a sparse kernel beats dense",
    "Times MiniLM's MLP layer dense and in two sparse formats at 50%, 90% and 99% zeros, for one "
    "token at a time (generation) and for 256 at once (a batch). Notice that for one token both "
    "sparse formats lose at 50% zeros, paying an index for every kept weight, and win only near "
    "99%; for 256 tokens the lab's tiled CSR kernel is ahead even at 50%, since every weight it "
    "loads serves many tokens.",
    5,
    [{**SMALL_SWEEP, "tokens": [tokens], "layouts": ["dense", "csr", "csr_tiled"],
      "name": f"preset: {tokens} token(s)"} for tokens in (1, 256)]))

register_preset("kernels", Preset(
    "Sparse formats side by side: CSR, COO and blocks",
    "The same layer at 32 tokens in the compressed-row, coordinate and block-sparse formats, "
    "with blocks of 4x4 and 32x32. Notice that at 50% zeros none of them reliably beats dense, "
    "and at 99% CSR does. This CPU is shared with other work, so single timings jump: run the "
    "preset twice and trust only what repeats.",
    11,
    [{**SMALL_SWEEP, "tokens": [32], "layouts": ["dense", "csr", "coo", "bsr"], "block": block,
      "name": f"preset: formats, block {block}"} for block in (4, 32)]))
