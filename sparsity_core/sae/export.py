"""Save and load SAEs: the lab's own weights file and SAELens' on-disk layout.

SAELens (`SAE.load_from_disk(folder)`) reads `cfg.json` + `sae_weights.safetensors` with W_enc
(d_in, d_sae), b_enc, W_dec (d_sae, d_in), b_dec. The lab trains on activations scaled by a
constant s; the export folds s into the weights (W_enc * s, W_dec / s, b_dec / s) so the exported
SAE reads raw model activations. Architectures: relu_l1 and flops -> "standard"; topk -> "topk"
(with k); jumprelu -> "jumprelu" with its trained per-latent thresholds; batchtopk,
matryoshka_batchtopk, mutual_choice and feature_choice -> "jumprelu" with their learned thresholds,
which is how SAELens itself ships BatchTopK SAEs for inference; gated -> "gated" (W_enc is the gate
path's W_gate, with b_gate, r_mag and b_mag, and no b_enc). Thresholds, b_gate and b_mag compare
with pre-activations, which the folding leaves unchanged, so they are written as trained.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from sparsity_core.sae.variants import SAE, VARIANTS, variant_options

SAELENS_ARCH = {"relu_l1": "standard", "flops": "standard", "topk": "topk", "batchtopk": "jumprelu",
                "mutual_choice": "jumprelu", "feature_choice": "jumprelu", "matryoshka_batchtopk": "jumprelu",
                "jumprelu": "jumprelu", "gated": "gated"}


def save_sae(sae: SAE, path: Path, scale: float) -> None:
    """The lab's weights file: state dict + config (in the safetensors metadata)."""
    meta = {"config": json.dumps({**sae.config(), "scale": scale})}
    save_file({k: v.detach().contiguous().cpu() for k, v in sae.state_dict().items()}, path, metadata=meta)


def load_sae(path: Path, device: str = "cpu") -> tuple[SAE, float]:
    """(SAE in eval mode, activation scale) from a file written by `save_sae`."""
    from safetensors import safe_open

    with safe_open(str(path), "pt") as fh:
        cfg = json.loads(fh.metadata()["config"])
    sae = VARIANTS[cfg["architecture"]](cfg["d_in"], cfg["d_sae"], cfg["k"],
                                        **variant_options(cfg["architecture"], cfg))
    sae.load_state_dict(load_file(path))
    return sae.to(device).eval(), float(cfg["scale"])


def export_saelens(sae: SAE, folder: Path, scale: float, *, model: str, hook_name: str, layer: int,
                   context: int, dataset: str) -> Path:
    """Write `cfg.json` + `sae_weights.safetensors` in SAELens' layout; returns the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    arch = SAELENS_ARCH[sae.name]
    # Step 1: fold the activation scale into the weights
    weights = {"W_enc": sae.W_enc.detach() * scale, "b_enc": sae.b_enc.detach(),
               "W_dec": sae.W_dec.detach() / scale, "b_dec": sae.b_dec.detach() / scale}
    if arch == "jumprelu":
        weights["threshold"] = _thresholds(sae)
    if arch == "gated":  # no b_enc: the gate and magnitude paths have their own biases
        W_gate, b_gate, r_mag, b_mag = (t.detach() for t in sae.gate_weights())
        weights.update(W_enc=W_gate * scale, b_gate=b_gate, r_mag=r_mag, b_mag=b_mag)
        del weights["b_enc"]
    save_file({k: v.float().contiguous().cpu() for k, v in weights.items()}, folder / "sae_weights.safetensors")
    # Step 2: the config keys SAELens reads (current flat keys plus the metadata block)
    meta = {"model_name": model, "hook_name": hook_name, "hook_layer": layer, "context_size": context,
            "dataset_path": dataset, "prepend_bos": False, "sae_lens_training_version": None,
            "trained_with": "sparsity-lab", "lab_variant": sae.name}
    cfg = {"architecture": arch, "d_in": sae.d_in, "d_sae": sae.d_sae, "dtype": "float32", "device": "cpu",
           "apply_b_dec_to_input": True, "normalize_activations": "none", "reshape_activations": "none",
           "activation_fn": "topk" if arch == "topk" else "relu",
           "activation_fn_kwargs": {"k": sae.k} if arch == "topk" else {},
           **({"k": sae.k} if arch == "topk" else {}),
           "finetuning_scaling_factor": False, "metadata": meta, **meta}
    (folder / "cfg.json").write_text(json.dumps(cfg, indent=2))
    return folder


def _thresholds(sae: SAE) -> torch.Tensor:
    """Per-latent thresholds (d_sae,): trained (jumprelu), learned per latent (feature / mutual
    choice) or one learned value for all (BatchTopK family)."""
    if hasattr(sae, "theta"):
        return sae.theta().detach()
    thr = getattr(sae, "thresholds", None)
    return thr.detach() if thr is not None else sae.threshold.detach().expand(sae.d_sae)


def hook_name(family: str, layer: int, site: str) -> str:
    """TransformerLens-style hook names, which SAELens configs use."""
    return {"resid": f"blocks.{layer}.hook_resid_post", "mlp": f"blocks.{layer}.hook_mlp_out",
            "attn": f"blocks.{layer}.hook_attn_out", "hidden": f"hidden.{layer}.hook_post"}[site]


def load_saelens_weights(folder: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """(cfg, weights) of an exported folder: what SAELens itself would read."""
    return json.loads((Path(folder) / "cfg.json").read_text()), load_file(Path(folder) / "sae_weights.safetensors")
