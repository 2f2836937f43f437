"""Feature absorption (sae/absorption.py): the per-word rules by hand, the main-latent search, a planted
absorber found at the rate planted, the prompts on a real tokenizer, and the run's wiring."""

import numpy as np
import pytest
import torch

from sparsity_core.jobs.context import RunContext
from sparsity_core.sae import absorption as A
from sparsity_core.sae.checks import preflight_sae
from sparsity_core.specs import SpecError, parse_spec


def test_full_absorption_and_the_absorption_fraction_follow_saebenchs_rules_word_by_word():
    # 5 words, 4 latents, main latent 0; cosines with the probe: latent 2 (0.05) counts for full
    # absorption (>= 0.025) but not as an absorber of the fraction (< 0.1)
    cos = torch.tensor([0.9, 0.5, 0.05, 0.3])
    contrib = torch.tensor([[0.8, 0.1, 0.0, 0.0],   # main fires and carries most: neither
                            [0.0, 0.7, 0.0, 0.1],   # main silent, latent 1 carries 0.7 >= 0.4: full; fraction 1
                            [0.3, 0.5, 0.9, 0.0],   # main fires: not full; latent 1 takes 0.5 of 0.7 left -> 0.5/0.8
                            [0.0, 0.0, 0.6, 0.0],   # full (cos 0.05 >= 0.025), but no absorber of cos >= 0.1: 0
                            [0.0, 0.7, 0.0, 0.0]])  # the word's projection is negative: never absorption
    x_proj = torch.tensor([1.0, 1.0, 1.0, 1.0, -1.0])
    z_main = torch.tensor([[2.0], [0.0], [1.0], [0.0], [0.0]])
    full, fraction, top = A.word_absorption(x_proj, contrib, cos, [0], z_main)
    assert full.tolist() == [False, True, False, True, False]
    assert fraction.tolist() == pytest.approx([0.0, 1.0, 0.625, 0.0, 0.0])
    assert top.tolist() == [0, 1, 2, 2, 1]


def test_the_main_latents_are_the_planted_one_or_the_two_a_letter_is_split_across():
    n = 200
    letter = np.arange(n) % 4 == 0  # a quarter of the words have the letter
    z = np.zeros((n, 6))
    z[:, 5] = (np.arange(n) % 3 == 0)  # noise that fires on a third of all words
    one = z.copy()
    one[letter, 2] = 1.0
    main, scores = A.main_latents(one[:120], letter[:120], one[120:], letter[120:])
    assert main == [2] and scores == [1.0]  # one latent finds every word: no jump to a second
    split = z.copy()
    first_half = letter & (np.arange(n) % 8 == 0)
    split[first_half, 1] = 1.0
    split[letter & ~first_half, 3] = 1.0
    main, scores = A.main_latents(split[:120], letter[:120], split[120:], letter[120:])
    assert sorted(main) == [1, 3] and scores[-1] == 1.0 and scores[0] < 0.7  # half the words each


def test_a_planted_absorber_is_found_at_the_rate_it_was_planted(identity_sae):
    # activations: dimension c is "starts with letter c", dimension 26 "this is a lion-like word";
    # 10 test words per letter, 4 of the L-words also carry dimension 26
    L = A.LETTERS.index("l")
    rng = np.random.default_rng(0)

    def words(per_letter, absorbed=0):
        x, y, w = [], [], []
        for c in range(26):
            for i in range(per_letter):
                row = np.zeros(27, np.float32)
                row[c] = 1.0 + 0.1 * rng.random()
                if c == L and i < absorbed:
                    row[26] = 1.0
                x.append(row)
                y.append(c)
                w.append(f"{A.LETTERS[c]}word{i}")
        return torch.tensor(np.array(x)), np.array(y), w

    train, test = words(20), words(10, absorbed=4)
    probe = A.ground_truth_probe(train[0].numpy(), train[1], test[0].numpy(), test[1])
    assert (probe[1] == test[1]).all()  # the probe reads every letter
    # the SAE: latent c reads letter c, latent 26 fires on dimension 26 and silences latent L there;
    # its decoder row carries the L direction (what absorption is)
    sae = identity_sae("relu_l1", d=27, k=1)
    with torch.no_grad():
        sae.W_enc[26, L] = -2.0
        sae.W_dec[26] = torch.zeros(27)
        sae.W_dec[26, [L, 26]] = 2 ** -0.5
    rows, summary = A.score_letters(train, test, probe, sae, 1.0)
    by = {r["letter"]: r for r in rows}
    assert len(rows) == 26 and by["l"]["main"] == [L] and by["l"]["true_positives"] == 10
    assert (by["l"]["full"], by["l"]["fraction"]) == (pytest.approx(0.4), pytest.approx(0.4))
    assert by["l"]["examples"] == [[f"lword{i}", 26] for i in range(4)]
    assert all(r["full"] == 0 and r["fraction"] == 0 for r in rows if r["letter"] != "l")
    assert summary["absorption_rate"] == pytest.approx(0.4 / 26)
    assert summary["absorption_split"] == 1.0
    assert A.absorption_labels(rows)[L] == ["first letter L"]


def test_prompts_put_the_word_where_the_activation_is_read():
    from transformers import AutoTokenizer

    from sparsity_core.zoo.minilm import model_dir

    tok = AutoTokenizer.from_pretrained(model_dir())
    words = A.spelled_words(tok)
    lion = dict(words["l"])["lion"]
    assert tok(" lion", add_special_tokens=False)["input_ids"] == [lion]
    assert all(len(w) >= 2 and w.isalpha() and w[0] == letter for letter, ws in words.items() for w, _ in ws)
    train, test = A.split_words(words, seed=0, per_letter=10)
    assert len(test) == 3 * len(words) and len(train) + len(test) == 10 * len(words)  # 30% of each letter
    ids, pos, kept = A.prompts(tok, [("lion", lion)], train, seed=0)
    assert kept == [0] and ids[0][pos[0]] == lion
    assert ids[0][0] == tok.cls_token_id and A._trailing_specials(tok) == 1  # [CLS] ... lion has ... : [SEP]
    assert tok.decode(ids[0][pos[0]:]) == "lion has the first letter : [SEP]"
    examples = A.examples_for("lion", train, 0)
    assert len(examples) == A.ICL_EXAMPLES and "lion" not in examples
    assert A.prompt_text("lion", ["tartan"]) == " tartan has the first letter: T\n lion has the first letter:"


def test_an_absorption_run_on_a_model_that_cannot_spell_says_so_and_stores_no_rate(tiny_models, monkeypatch):
    from sparsity_core.sae.run import run_sae

    monkeypatch.setattr("sparsity_core.sae.run.EVAL_TOKENS", 4096)
    monkeypatch.setattr(A, "WORDS_PER_LETTER", 12)
    ctx = RunContext()
    run_sae(parse_spec({"kind": "sae", "model": tiny_models["llama"], "data": "rotten_tomatoes", "tokens": 8192,
                        "batch_tokens": 1024, "context": 64, "expansion": 4, "k": 4, "layer": 1,
                        "downstream": False, "absorption": True}), ctx)
    facts = ctx.facts["absorption"]
    assert facts["train_words"] + facts["test_words"] == 12 * 26
    assert facts["letters_scored"] == len(facts["letters"])
    final = {m["key"] for m in ctx.metrics if m["x"] is None}
    # a random tiny model's residual stream: its probe reads too few letters for a rate to mean anything
    assert ("absorption_rate" in final) == (facts["letters_scored"] > 0)
    assert facts["seconds"] > 0 and facts["template"] == "{word} has the first letter:"


def test_absorption_is_refused_for_the_digits_classifier():
    spec = parse_spec({"kind": "sae", "model": "digits-mlp", "site": "hidden", "data": "digits", "layer": 1,
                       "tokens": 8192, "batch_tokens": 256, "expansion": 1, "k": 8, "absorption": True})
    with pytest.raises(SpecError) as err:
        preflight_sae(spec, None)
    assert "spells words" in err.value.errors["absorption"]
