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


IMAGE_MAX_DENSITY = 0.5  # an image run's rows are whole images: 8 of 128 latents fire on each


def default_max_density(contexts: pd.DataFrame) -> float:
    """The density filter a run's browser opens with: per token for text, per image for images."""
    return IMAGE_MAX_DENSITY if "pixels" in contexts else MAX_DENSITY


def _shade(value: float, top: float) -> str:
    # 0.15 floor for a token that fires at all: the weakest shown context still reads as marked
    share = max(0.0, value / top)
    return f"rgba(255,140,0,{0.15 + 0.85 * share:.2f})" if value > 0 else "transparent"


def _hover(value: float, top: float) -> str:
    return html.escape(f"activation {value:.3g} ({max(0.0, value / top):.0%} of this latent's top context)", quote=True)


def contexts_html(contexts: pd.DataFrame) -> str:
    """One latent's top contexts, one line each: its activation, then the text with every token
    shaded by the latent's activation on it (darker = nearer the latent's strongest), the value on
    hover; image runs show the 8x8 pictures instead (`pictures_html`). Every piece of text is
    escaped: tokens come from arbitrary corpora. Runs stored before per-token activations shade
    the firing token only."""
    if contexts.empty:
        return "<i>this latent never fired on the held-out tokens</i>"
    if "pixels" in contexts:
        return pictures_html(contexts)
    top = float(contexts["activation"].max()) or 1.0
    lines = []
    for r in contexts.sort_values("activation", ascending=False).itertuples():
        if "acts" in contexts and r.tokens is not None and len(r.tokens) == len(r.acts):
            spans = "".join(
                f"<span title=\"{_hover(float(a), top)}\" style='background:{_shade(float(a), top)};"
                f"border-radius:3px{';font-weight:bold' if i == r.focus else ''}'>{html.escape(str(t))}</span>"
                for i, (t, a) in enumerate(zip(r.tokens, r.acts)))
            lines.append("<div style='font-family:monospace;line-height:1.8;white-space:pre-wrap'>"
                         f"<b style='display:inline-block;min-width:4.5em'>{float(r.activation):.2f}</b>{spans}</div>")
            continue
        value = float(r.activation)
        shade, hover = _shade(value, top), _hover(value, top)
        lines.append(
            "<div style='font-family:monospace;line-height:1.8'>"
            f"<b style='display:inline-block;min-width:4.5em'>{value:.2f}</b>"
            f"{html.escape(str(r.left))} "
            f"<span title=\"{hover}\" style='background:{shade};padding:1px 3px;border-radius:3px'>"
            f"{html.escape(str(r.token))}</span> {html.escape(str(r.right))}</div>")
    return "\n".join(lines)


def pictures_html(contexts: pd.DataFrame, cell: int = 8) -> str:
    """An image run's top images as 8x8 pictures (ink dark on white, pixels 0..16), each with its
    label and the latent's activation, strongest first."""
    top = float(contexts["activation"].max()) or 1.0
    tiles = []
    for r in contexts.sort_values("activation", ascending=False).itertuples():
        pixels = [max(0, min(16, int(v))) for v in r.pixels]
        cells = "".join(f"<div style='background:rgb({g},{g},{g})'></div>"
                        for g in (255 - v * 255 // 16 for v in pixels))
        tiles.append(
            f"<figure title=\"{_hover(float(r.activation), top)}\" style='margin:4px;text-align:center'>"
            f"<div style='display:grid;grid-template-columns:repeat(8,{cell}px);grid-auto-rows:{cell}px;"
            f"border:3px solid {_shade(float(r.activation), top)}'>{cells}</div>"
            f"<figcaption style='font:12px monospace'>{html.escape(str(r.token))} · {float(r.activation):.2f}"
            "</figcaption></figure>")
    return ("<div style='display:flex;flex-wrap:wrap;align-items:flex-start'>" + "".join(tiles) + "</div>"
            "<div style='font-size:12px;color:#666'>each picture: a test digit that switches this latent on, "
            "its label and the latent's activation; the frame is darker the stronger it fires</div>")
