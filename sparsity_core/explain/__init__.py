"""Explanations lab: representer points (Yeh et al. 2018) with captum's attributions and influence.

    representer.py     the math: stationary last layer, alpha, values, reconstruction
    models.py          any classifier seen as body -> features -> head (images, encoders, hf)
    splits.py          the train/test splits and their sizes (no torch)
    prepare.py/cache   features, heads, checkpoints and fits, cached as safetensors
    captum_methods.py  IntegratedGradients / LayerIntegratedGradients, TracInCPFast, SimilarityInfluence
    debugging.py       the flipped-label detection experiment (computed once per setup, then cached)
    run.py             the job (kind `explain`), `run_explain(spec, ctx)`
    checks.py          its pre-run check, `preflight_explain(spec, parent)` (no torch for bundled models)
"""
