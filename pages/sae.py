"""SAE lab: train a sparse autoencoder on a model's activations and browse the features it finds."""

import pandas as pd
import streamlit as st

from db import repo
from pages._ui import RUN_ID, ErrorPlaces, estimate_line, preset_button, run_label, show_url_run
from sparsity_core.catalog import MODELS, SITES, VARIANTS, caps
from sparsity_core.catalog.sae import (
    CORPORA,
    HIDDEN_LAYERS,
    IMAGE_DATA,
    MATRYOSHKA_PREFIX_CHOICES,
    MATRYOSHKA_PREFIXES,
    TEXT_SITES,
)
from sparsity_core.reports import browser, feature_diff, figures, loaders
from sparsity_core.reports import sae as figs
from sparsity_core.specs import SAESpec

st.title("🔬 SAE features")
st.markdown(
    "A sparse autoencoder (SAE) rewrites each activation of a model as a sum of a few directions, "
    "'latents', out of thousands. Pick a model, a block and an SAE variant: the lab records the "
    "model's activations on real text (or, for the digits classifier, a hidden layer on its 8x8 "
    "images), trains the SAE, measures how much of the activation it explains with how few latents, "
    "and opens a browser where each latent shows the words (or the digits) that switch it on. Runs "
    "on a pruned parent show what pruning did to the features.")
preset_button("sae")

HF = "hf:<hub id or local path>"
TEXT_MODELS = [m for m, info in MODELS.items() if info.task in ("encoder", "causal_lm")]
IMAGE_MODELS = list(HIDDEN_LAYERS)  # MLP classifiers: their hidden layers, on their own images
DEFAULTS = {name: info.default for name, info in SAESpec.model_fields.items()}
# every field this page sends -> the widget that sets it (its message shows right below)
PLACES = ErrorPlaces(SAESpec, {
    "model": "sae_model", "layer": "sae_layer", "site": "sae_site", "data": "sae_data", "variant": "sae_variant",
    "k": "sae_k", "expansion": "sae_expansion", "l1_coeff": "sae_l1", "tokens": "sae_tokens", "lr": "sae_lr",
    "batch_tokens": "sae_batch", "parent_run": "sae_parent", "parent_sparsity": "sae_parent_sparsity",
    "seed": "sae_seed", "name": "sae_name", "k_sweep": "sae_k_sweep", "probing": "sae_probing", "prefixes": "sae_prefixes",
    "absorption": "sae_absorption"})

left, mid, right = st.columns(3)
with left:
    choice = st.selectbox("Model", [*TEXT_MODELS, *IMAGE_MODELS, HF], key="sae_model",
                          format_func=lambda m: f"{m} (hidden layers, 8x8 digits)" if m in IMAGE_MODELS else m)
    hf_ref = st.text_input("Hub id or local path (for hf:)", placeholder="org/model or ./checkpoint", key="sae_hf")
    PLACES.field_error("model")
    image = choice in IMAGE_MODELS
    widths = HIDDEN_LAYERS.get(choice, ())
    sites = ["hidden"] if image else list(TEXT_SITES)
    datas = [IMAGE_DATA[choice]] if image else ["all", *CORPORA]
    if st.session_state.get("_sae_image") != image:  # text <-> image model: that kind's layer, site and data
        st.session_state.update(_sae_image=image, sae_layer=len(widths) - 1 if image else DEFAULTS["layer"],
                                sae_site=sites[0], sae_data=datas[0])
    layer = st.number_input("Hidden layer" if image else "Block (layer index)", min_value=0, step=1, key="sae_layer",
                            help=("widths " + ", ".join(f"{i}: {w}" for i, w in enumerate(widths))) if image else None)
    PLACES.field_error("layer")
    site = st.radio("Site", sites, horizontal=True, key="sae_site",
                    help="; ".join(f"{k}: {SITES[k]}" for k in sites))
    PLACES.field_error("site")
    data = st.selectbox("Data", datas, key="sae_data",
                        help="the images the classifier was trained on" if image else
                             "the text corpus (all: the three interleaved)")
    PLACES.field_error("data")
with mid:
    variant = st.selectbox("Variant", list(VARIANTS), index=list(VARIANTS).index(DEFAULTS["variant"]),
                           format_func=lambda v: f"{v} — {VARIANTS[v].description}", key="sae_variant")
    PLACES.field_error("variant")
    k = st.number_input("k (target active latents per token)", min_value=1, value=DEFAULTS["k"], step=1,
                        key="sae_k")
    PLACES.field_error("k")
    sweep = st.text_input("L0 sweep: more k values (optional, comma separated)", key="sae_k_sweep",
                          placeholder="e.g. 16, 64",
                          help="one more SAE per k on the same activations, measured the same way: FVE, "
                               "downstream cost, dead and dense latents against L0 (SAEBench sweeps L0 because "
                               "most metrics move with it); the browser shows the SAE at k")
    PLACES.field_error("k_sweep")
    probing = st.checkbox("Sparse probing (k-sparse probes on BBC topic, Rotten Tomatoes and tweet sentiment)",
                          key="sae_probing", value=DEFAULTS["probing"],
                          help="SAEBench's k-sparse probe (k = 1, 2, 5, 20) on the latents, on the raw activations and "
                               "on their principal components; the first run on a site captures the documents "
                               "(~170k tokens, a minute or two on a laptop), later runs reuse them")
    PLACES.field_error("probing")
    absorb = st.checkbox("Feature absorption (first-letter task; for LMs whose tokens spell words, e.g. SmolLM2)",
                         key="sae_absorption", value=DEFAULTS["absorption"], disabled=image,
                         help="SAEBench's absorption: a probe reads each word's first letter, k-sparse probes find "
                              "the SAE's latents for each letter, and the rate counts the words on which those "
                              "stay silent while another latent carries the letter (~2,000 prompts, captured once "
                              "per site: about 90 s on SmolLM2 on a 2-core laptop, 2 s after)")
    PLACES.field_error("absorption")
    expansion = st.number_input("Expansion (latents = expansion x width)", min_value=1,
                                value=DEFAULTS["expansion"], step=1, key="sae_expansion",
                                help=f"at most {caps.SAE_EXPANSION}")
    PLACES.field_error("expansion")
    l1 = st.number_input("Penalty coefficient (relu_l1, flops; 0 = steer to L0 = k)", min_value=0.0, value=0.0,
                         key="sae_l1")
    PLACES.field_error("l1_coeff")
    nested = VARIANTS[variant].prefixes  # Matryoshka variants: the nested dictionary sizes
    if nested:
        prefixes = st.multiselect(
            "Matryoshka prefixes (fractions of the latents; 1 = all of them, always the last level)",
            list(MATRYOSHKA_PREFIX_CHOICES), default=list(MATRYOSHKA_PREFIXES), key="sae_prefixes",
            format_func=lambda f: "1 (all latents)" if f == 1 else f"1/{round(1 / f)}",
            help="each prefix of the dictionary is trained to reconstruct on its own: the first latents learn "
                 "general features, later ones refinements (Bussmann et al. 2025)")
        PLACES.field_error("prefixes")
with right:
    tokens = st.number_input("Training tokens", min_value=4096, value=DEFAULTS["tokens"], step=50_000,
                             key="sae_tokens")
    PLACES.field_error("tokens")
    lr = st.number_input("Learning rate", min_value=1e-6, value=DEFAULTS["lr"], format="%.5f", key="sae_lr")
    PLACES.field_error("lr")
    batch = st.number_input("Tokens per step", min_value=64, value=DEFAULTS["batch_tokens"], step=256,
                            key="sae_batch",
                            help="a 1M-token budget needs small batches: the number of steps decides quality")
    PLACES.field_error("batch_tokens")
    prune_runs = repo.list_runs(kind="prune", status="succeeded", limit=50)
    parent = st.selectbox("Pruned parent (optional)", [None, *prune_runs], key="sae_parent",
                          format_func=lambda r: "none (dense model)" if r is None else run_label(r))
    PLACES.field_error("parent_run")
    parent_sparsity = st.number_input("Parent sparsity (-1 = its highest)", min_value=-1.0, max_value=0.99,
                                      value=-1.0, key="sae_parent_sparsity")
    PLACES.field_error("parent_sparsity")
    seed = st.number_input("Seed", min_value=0, value=0, step=1, key="sae_seed")
    PLACES.field_error("seed")
    name = st.text_input("Run name (optional)", key="sae_name")
    PLACES.field_error("name")

spec = {
    "kind": "sae", "model": f"hf:{hf_ref.strip()}" if choice == HF else choice, "variant": variant,
    "layer": int(layer), "site": site, "data": data, "tokens": int(tokens), "expansion": int(expansion),
    "k": int(k), "l1_coeff": float(l1) or None, "lr": float(lr), "batch_tokens": int(batch), "seed": int(seed),
    "name": name or None, "parent_run": parent.id if parent else None,
    "parent_sparsity": None if parent_sparsity < 0 else float(parent_sparsity),
    "k_sweep": [int(t) if t.strip().isdigit() else t.strip() for t in sweep.split(",") if t.strip()],
    "probing": bool(probing), "absorption": bool(absorb) and not image,
    **({"prefixes": sorted(prefixes)} if nested else {})}
estimate_line(spec)
if st.button("Train", type="primary", key="sae_submit"):
    PLACES.submit(spec)
PLACES.other_errors()


@st.cache_data(max_entries=8)
def _table(run_id: int, name: str) -> pd.DataFrame:
    return pd.read_parquet(repo.artifact_path(run_id, name))


def url_latent(features: pd.DataFrame):
    """The latent the URL names (`&latent=N`) when this run has it; otherwise None, with a line
    saying why when the URL names one."""
    text = st.query_params.get("latent")
    if text is None:
        return None
    if RUN_ID.fullmatch(text.strip()) and int(text) in set(features["latent"]):
        return int(text)
    st.warning(f"`latent={text[:40].replace('`', '')}` in this address is not a latent of this run", icon="⚠️")
    return None


def draw_browser(run) -> None:
    features, contexts = _table(run.id, "features"), _table(run.id, "contexts")
    st.subheader("Feature browser")
    c1, c2, c3, c4 = st.columns([3, 2, 2, 2])
    query = c1.text_input("Search latents by token or text", key="sae-query")
    by = c2.radio("Match", ["token", "text"], horizontal=True, key="sae-by")
    order = c3.selectbox("Sort by", list(browser.ORDERS), key="sae-order", help=browser.ORDER_HELP)
    unit = "images" if "pixels" in contexts else "tokens"
    limit = c4.number_input(f"Hide denser than (% of {unit})", 0.0, 100.0,
                            100 * browser.default_max_density(contexts), step=0.5, format="%g", key="sae-max-density",
                            help="latents that fire on more than this share of held-out tokens are left out of "
                                 "the list: dense ones (punctuation, a text's first token) are seldom the ones "
                                 "worth reading first; 100 shows every latent")
    found, hidden = browser.browsable(figs.search_features(features, contexts, query, by), contexts,
                                      limit / 100, order)
    if "matches" in found:  # a search lists the latents with most matching contexts first
        found = found.sort_values("matches", ascending=False, kind="stable")
    if hidden:
        st.caption(f"{hidden} of {len(features)} latents fire on more than {limit:g}% of {unit} and are hidden "
                   "(raise the limit to list them)")
    cols = [c for c in ("latent", "labels", "density", "selectivity", "max_activation", "top_tokens", "promoted",
                        "matches")
            if c in found]
    st.dataframe(found[cols].head(500), width="stretch", hide_index=True,
                 column_config={"density": st.column_config.NumberColumn(f"fires on (% of {unit})", format="percent"),
                                "top_tokens": "top labels" if unit == "images" else "top tokens",
                                "labels": "predicts (probes, absorption)",
                                "selectivity": st.column_config.NumberColumn(format="%.2f"),
                                "max_activation": st.column_config.NumberColumn("max activation", format="%.2f")})
    if found.empty:
        st.info("no latent matches")
        return
    options = found["latent"].head(500).tolist()
    wanted = url_latent(features)
    if wanted is not None and wanted not in options and not query:  # sorted or filtered out, not searched away
        options.insert(0, wanted)
    if wanted in options and "sae-latent" not in st.session_state:  # a fresh page opens the URL's latent
        st.session_state["sae-latent"] = wanted
    latent = st.selectbox("Latent", options, key="sae-latent")
    if st.query_params.get("latent") != str(latent):  # the address always names the latent shown
        st.query_params["latent"] = str(latent)
    row = features[features["latent"] == latent].iloc[0]
    mine = contexts[contexts["latent"] == latent]
    left, right = st.columns([3, 2])
    with left:
        st.markdown(f"**Latent {latent}** · fires on {row['density']:.3%} of held-out {unit} · max activation "
                    f"{row['max_activation']:.2f}, mean when firing {row['mean_activation']:.2f}")
        if row.get("labels"):  # what the run's probes found it predicts (sparse probing, absorption)
            st.text(f"Predicts: {row['labels']}")
        st.caption("Its top images: the test digits that switch it on most, with their labels" if unit == "images"
                   else "Its top contexts: the number is the latent's activation on the bold token; every token "
                        "is shaded by the latent's activation on it (darker = stronger; hover for the value)")
        st.html(browser.contexts_html(mine))
    with right:
        st.plotly_chart(figs.activation_histogram(row), key="sae-acthist")
        if "promoted" in row:
            what = "classes" if unit == "images" else "tokens"
            st.text(f"Promotes ({what}): {row['promoted']}")  # text, not markdown: a vocabulary may hold anything
            st.text(f"Suppresses ({what}): {row['suppressed']}")


def draw_compare(run) -> None:
    others = [r for r in repo.list_runs(kind="sae", status="succeeded", limit=30) if r.id != run.id]
    # an SAE on a pruned model opens compared with the same SAE on the dense model, when there is one
    dense = feature_diff.dense_counterpart(run.spec or {}, [(r.id, r.spec or {}) for r in others])
    start = next((i + 1 for i, r in enumerate(others) if r.id == dense), 0)
    other = st.selectbox("Compare with another SAE run", [None, *others], index=start,
                         format_func=lambda r: "—" if r is None else run_label(r), key="sae-other",
                         help="an SAE on a pruned model opens compared with the same SAE on the dense model")
    if other is None:
        return
    labels = {run.id: run_label(run), other.id: run_label(other)}
    frame = repo.metrics_frame([run.id, other.id])
    st.dataframe(figs.final_metrics(frame, labels), width="stretch")
    st.plotly_chart(figs.density_histogram(frame, labels), key="sae-cmp-density")
    decoders = {r.id: loaders.sae_decoder(r.id) for r in (run, other)}  # read once for every view below
    if any(d is None for d in decoders.values()):
        st.warning("one of the two runs saved no SAE weights to match")
        return
    try:
        matches = figs.match_features(decoders[run.id], decoders[other.id])
    except ValueError as exc:  # the two read activations of different widths
        st.warning(str(exc))
        return
    st.metric(f"latents with a match above {figs.MATCH_THRESHOLD} cosine",
              f"{(matches['cosine'] > figs.MATCH_THRESHOLD).mean():.1%}")
    st.plotly_chart(figs.match_histogram(matches, f"#{run.id}", f"#{other.id}"), key="sae-matches")
    draw_splitting(run, other, decoders)
    draw_fates(run, other, decoders, matches)


def draw_fates(run, other, decoders: dict, matches: pd.DataFrame) -> None:
    """Dense vs pruned: which of the dense SAE's features the pruned model's SAE kept, turned or
    lost, and which are new, with a pair's top contexts side by side. `matches`: run's latents
    matched in other's dictionary (the reverse is computed here)."""
    pruned, dense = (run, other) if (run.spec or {}).get("parent_run") else (other, run)
    if (pruned.spec or {}).get("parent_run") is None or (dense.spec or {}).get("parent_run") is not None:
        st.caption("Pick an SAE on a pruned model and one on the dense model to see what pruning did to the features.")
        return
    reverse = figs.match_features(decoders[other.id], decoders[run.id])
    forward, backward = (matches, reverse) if dense is run else (reverse, matches)
    fates = feature_diff.feature_fates(forward, backward, _table(dense.id, "features"), _table(pruned.id, "features"))
    st.markdown(f"**What pruning did to the features**: the dense model's SAE #{dense.id} against SAE #{pruned.id} "
                f"on the model pruned by run #{pruned.spec['parent_run']}, latent by latent (decoder cosine)")
    counts = feature_diff.fate_counts(fates)
    for col, fate in zip(st.columns(len(counts)), counts):
        col.metric(f"{fate} latents", f"{counts[fate]:,}", help=feature_diff.FATE_HELP[fate])
    fate = st.radio("Show the latents that were", feature_diff.FATES, horizontal=True, key="sae-fate")
    shown = fates[fates["fate"] == fate]
    if shown.empty:
        st.info(f"no {fate} latents")
        return
    st.dataframe(shown.head(500), hide_index=True, width="stretch", column_config={
        "latent_a": st.column_config.NumberColumn(f"dense #{dense.id} latent", format="%d"),
        "latent_b": st.column_config.NumberColumn(f"pruned #{pruned.id} latent", format="%d"),
        "density_a": st.column_config.NumberColumn("dense: fires on", format="percent"),
        "density_b": st.column_config.NumberColumn("pruned: fires on", format="percent"),
        "top_tokens_a": "dense: top tokens", "top_tokens_b": "pruned: top tokens", "cosine": "decoder cosine"})
    pairs = list(zip(shown["latent_a"].head(500), shown["latent_b"].head(500)))
    a, b = st.selectbox("Read a pair's top contexts side by side", pairs, key="sae-fate-pair",
                        format_func=lambda p: f"dense latent {p[0]} ↔ pruned latent {p[1]}")
    left, right = st.columns(2)
    for col, side, latent in ((left, dense, a), (right, pruned, b)):
        contexts = _table(side.id, "contexts")
        col.markdown(f"**{'dense' if side is dense else 'pruned'} #{side.id}, latent {latent}**")
        col.html(browser.contexts_html(contexts[contexts["latent"] == latent]))


def draw_suite(frame: pd.DataFrame, labels: dict, run=None) -> None:
    """The SAEBench-style evaluation this run made: dense / dead latents, the L0 sweep, sparse probing,
    feature absorption (its per-letter table from the run's info)."""
    keys = set(frame["key"])
    helps = [f"**{figures.metric_label(k)}**: {figures.metric_help(k)}" for k in ("dense_fraction", "eval_dead_fraction")
             if k in keys]
    if helps:
        st.caption(" · ".join(helps))
    if "sweep_fve" in keys:
        st.subheader("L0 sweep")
        st.caption("One SAE per k on the same activations, each point one SAE at the L0 it measured on held-out "
                   "tokens: up and to the left is better. The compare page overlays several runs (one line per "
                   "variant) on the same axes.")
        down = figs.downstream_key(frame)
        shown = ["fve", *([down] if down else []), "dense_fraction", "eval_dead_fraction",
                 *(["absorption_rate"] if "sweep_absorption_rate" in keys else [])]
        for col, key in zip([c for _ in range(-(-len(shown) // 2)) for c in st.columns(2)], shown):
            col.plotly_chart(figs.pareto_figure(frame, key, labels), key=f"sae-pareto-{key}")
            col.caption(figures.metric_help(key))
    if "sparse_probe_accuracy" in keys:
        st.subheader("Sparse probing")
        st.caption(figures.metric_help("sparse_probe_accuracy") + ". The latents beating the raw activations at "
                   "small k is what sparse probing shows: single latents that name a topic or a sentiment.")
        st.plotly_chart(figs.sparse_probing_figure(frame, labels), key="sae-probing")
    info = (run.info or {}).get("absorption") if run is not None else None
    if info:
        st.subheader("Feature absorption")
        if not info.get("letters"):
            st.info(f"No letter was scored: the first-letter probe's mean test F1 on this site is "
                    f"{info.get('probe_f1_mean', 0):.2f}, and a letter needs at least "
                    f"{info.get('thresholds', {}).get('min_probe_f1', 0.6)} (and enough words read right). This "
                    "site does not spell its words linearly enough to tell absorption apart; SAEBench uses causal "
                    "LMs (here: smollm2-135m, middle layers).")
            return
        st.caption(f"**{figures.metric_label('absorption_rate')}**: {figures.metric_help('absorption_rate')}. "
                   f"**{figures.metric_label('absorption_latent_f1')}**: {figures.metric_help('absorption_latent_f1')}.")
        st.plotly_chart(figs.absorption_figure(frame), key="sae-absorption")
        table = figs.absorption_table(info["letters"])
        st.dataframe(table, width="stretch", hide_index=True, column_config={
            c: st.column_config.NumberColumn(format="percent") for c in ("full absorption", "absorption fraction")})
        st.caption(f"{info.get('train_words', 0):,} train and {info.get('test_words', 0):,} test words, each read "
                   f"in a prompt like: {info.get('example', '')!r}. The latents are the browser's latents below: "
                   "open one by its number.")


def draw_splitting(run, other, dec: dict) -> None:
    """Feature splitting between two dictionary sizes: each latent of the smaller matched to the
    bigger one's latents above the cosine threshold (`dec`: both decoders, of one width)."""
    if len(dec[run.id]) == len(dec[other.id]):
        return
    small, big = sorted((run, other), key=lambda r: len(dec[r.id]))
    children = figs.split_counts(dec[small.id], dec[big.id])
    st.plotly_chart(figs.splitting_histogram(children, f"#{small.id}", f"#{big.id}"), key="sae-splitting")
    st.caption(f"Feature splitting: {len(dec[small.id]):,} latents of #{small.id} against {len(dec[big.id]):,} of "
               f"#{big.id}. 1: the feature is kept as it was; 2 or more: the bigger dictionary split it into finer "
               "ones; 0: no latent of the bigger one points the same way.")


def draw_results(run) -> None:
    frame = repo.metrics_frame([run.id])
    labels = {run.id: run_label(run)}
    st.dataframe(figs.final_metrics(frame, labels), width="stretch")
    cols = st.columns(3)
    for col, key in zip(cols, ("train_fve", "train_l0", "dead_fraction")):
        col.plotly_chart(figs.training_curve(frame, key, labels), key=f"sae-curve-{key}")
    st.plotly_chart(figs.density_histogram(frame, labels), key="sae-density")
    draw_suite(frame, labels, run)
    draw_browser(run)
    st.subheader("Side by side")
    draw_compare(run)
    st.caption(f"SAELens export: {repo.artifact_path(run.id, 'saelens')} (cfg.json + sae_weights.safetensors)")


if not show_url_run("sae", draw_results):
    earlier = repo.list_runs(kind="sae", status="succeeded", limit=20)
    if earlier:
        pick = st.selectbox("Or open an earlier SAE run", [None, *earlier],
                            format_func=lambda r: "—" if r is None else run_label(r))
        if pick is not None:
            st.query_params.from_dict({"run": pick.id})
            st.rerun()
