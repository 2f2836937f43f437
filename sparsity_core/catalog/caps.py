"""Bounds on every input, in one place: specs enforce them, pages show them in their help.

Each number says why it is what it is; a run beyond them is refused before it is queued.
"""

MAX_SEED = 2**32 - 1  # numpy's and torch's seeds are 32-bit here
NAME_CHARS = 200
MODEL_CHARS = 500  # an hf: hub id or local path; the store's model column holds this much
TEXT_CHARS = 5000  # a typed sentence to explain
SPEC_BYTES = 64 * 1024  # a spec's JSON: the largest real one (a 64-pixel drawing) is ~2 KB; 10 MB made the Runs page take 11 s
MAX_ROWS = 10_000_000  # evaluation / training row caps: beyond every bundled dataset (digits: 1,797 rows)

# pruning
SPARSITIES = 32  # targets per run: each is a prune + evaluation (~10 s on digits-mlp); 20,000 queued ~56 min
CALIBRATION_SAMPLES = 4096
SEQ_LEN = 4096
TRAIN_STEPS = 100_000
BATCH_ROWS = 4096
# ingredients of a sparse model soup: each is a whole fine-tune (k x the training time), and the compare
# table keeps a metric's series as columns up to 8 (reports/compare.py MAX_SERIES_IN_SUMMARY)
SOUP_INGREDIENTS = 8

# SAE
SAE_EXPANSION = 256  # 256 x 576 (smollm2) = 147k latents: already more than any run here can train
SAE_TOKENS = (4096, 100_000_000)
SAE_CONTEXT = (8, 4096)
SAE_BATCH_TOKENS = (64, 65536)
# the downstream evaluation ("splicing"): a fixed set of the test split, whatever the token budget
SAE_PROBE_TRAIN = 400  # Rotten Tomatoes snippets (~11k tokens) the encoder's probe is fitted on, once, clean
SAE_PROBE_TEST = 200  # held-out snippets (~5.5k tokens) embedded clean, with the SAE, zeroed: accuracy +-3 points (1 sd)
SAE_CE_WINDOWS = 32  # LM windows (~4k tokens at context 128) scored clean / with the SAE / zeroed

# kernels
KERNEL_TOKENS = 65536
KERNEL_WEIGHTS = 1 << 28  # 268M weights = 1 GiB in fp32: beyond any real layer
KERNEL_SHAPES = 64  # layer shapes per sweep: a whole model's distinct shapes are a handful
KERNEL_TOKEN_COUNTS = 32  # token counts per sweep: powers of two from 1 to 65536 are 17
KERNEL_SPARSITIES = 32
# points timed = shapes x token counts x sparsities x layouts x modes; the default sweep is 3 x 2 x 4 x 3 x 1
# = 72 points (~170 s here), so 2,000 is over an hour: beyond that, split the sweep
KERNEL_SWEEP_POINTS = 2000
# a sweep may take this share of the free memory it is measured on (the rest: the app, the worker, the OS)
KERNEL_MEMORY_SHARE = 0.8
KERNEL_BATCH = 1024
KERNEL_REPEATS = (3, 10_000)
KERNEL_WARMUP = (1, 1000)
KERNEL_THREADS = 1024

# explanations
TOP_K = 100
LAMBDA = 1e6  # L2 strength of the last-layer fit: the paper's 0.003; beyond 1e6 every weight is ~0
IG_STEPS = (4, 512)
