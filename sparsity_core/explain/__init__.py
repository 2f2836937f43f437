"""Explanations lab: representer points (Yeh et al. 2018) with captum's attributions and influence.

    representer.py     the math: stationary last layer, alpha, values, reconstruction
    models.py          any classifier seen as body -> features -> head (digits, encoders, hf)
    prepare.py/cache   features, heads, checkpoints and fits, cached as safetensors
    captum_methods.py  IntegratedGradients / LayerIntegratedGradients, TracInCPFast, SimilarityInfluence
    debugging.py       the flipped-label detection experiment
    run.py / checks.py the job (kind `explain`) and its pre-run checks
"""
