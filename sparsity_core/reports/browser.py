"""The SAE feature browser's builders: which latents it lists, in what order, and their top contexts
with the firing token shaded by its activation.

    shown, hidden = browsable(features, contexts, max_density=0.01, order="selectivity")
    st.html(contexts_html(contexts[contexts["latent"] == 7]))

A latent that fires on many tokens (punctuation, the start of a text) is rarely the one a person
wants to read first, so latents denser than `max_density` are hidden (and counted), and the list
opens on the most selective latent: the one whose top activations stand furthest above its usual
firing. Pure: frames in, frames and HTML text out.
"""

from __future__ import annotations

import html

import pandas as pd

MAX_DENSITY = 0.01  # hide latents that fire on more than 1% of held-out tokens, unless asked
ORDERS = {  # the sort a person picks -> (column, descending)
    "selectivity (high first)": ("selectivity", True),
    "max activation (high first)": ("max_activation", True),
    "density (low first)": ("density", False),
    "density (high first)": ("density", True),
    "latent": ("latent", False),
}
ORDER_HELP = ("selectivity = the mean of a latent's top-context activations / its mean activation over every "
              "token it fires on: high when a few contexts switch it on far more than its usual firing. "
              "Dead latents (no contexts) come last.")


def selectivity(features: pd.DataFrame, contexts: pd.DataFrame) -> pd.Series:
    """Per latent (aligned with `features`): mean activation of its stored top contexts divided by
    its mean activation over all tokens it fires on; NaN for a latent with no context (dead)."""
    top = contexts.groupby("latent")["activation"].mean()
    mean = features["mean_activation"].where(features["mean_activation"] > 0)
    return features["latent"].map(top) / mean


def browsable(features: pd.DataFrame, contexts: pd.DataFrame, max_density: float = MAX_DENSITY,
              order: str = "selectivity (high first)") -> tuple[pd.DataFrame, int]:
    """(latents firing on at most `max_density` of tokens with a `selectivity` column, sorted by
    `order` (a key of ORDERS; NaN last), how many latents were hidden for being denser)."""
    column, descending = ORDERS[order]
    frame = features.assign(selectivity=selectivity(features, contexts))
    dense = frame["density"] > max_density
    shown = frame[~dense].sort_values(column, ascending=not descending, na_position="last", kind="stable")
    return shown, int(dense.sum())


def contexts_html(contexts: pd.DataFrame) -> str:
    """One latent's top contexts, one line each: its activation, then the text with the firing token
    shaded by activation (darker = nearer the latent's strongest), its value on hover. Every piece
    of text is escaped: tokens come from arbitrary corpora."""
    if contexts.empty:
        return "<i>this latent never fired on the held-out tokens</i>"
    top = float(contexts["activation"].max()) or 1.0
    lines = []
    for r in contexts.sort_values("activation", ascending=False).itertuples():
        value = float(r.activation)
        share = max(0.0, value / top)
        # 0.15 floor: the weakest shown context still reads as marked
        shade = f"rgba(255,140,0,{0.15 + 0.85 * share:.2f})"
        hover = html.escape(f"activation {value:.3g} ({share:.0%} of this latent's top context)", quote=True)
        lines.append(
            "<div style='font-family:monospace;line-height:1.8'>"
            f"<b style='display:inline-block;min-width:4.5em'>{value:.2f}</b>"
            f"{html.escape(str(r.left))} "
            f"<span title=\"{hover}\" style='background:{shade};padding:1px 3px;border-radius:3px'>"
            f"{html.escape(str(r.token))}</span> {html.escape(str(r.right))}</div>")
    return "\n".join(lines)
