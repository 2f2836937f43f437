"""Bounds on every input, in one place: specs enforce them, pages show them in their help.

Each number says why it is what it is; a run beyond them is refused before it is queued.
"""

MAX_SEED = 2**32 - 1  # numpy's and torch's seeds are 32-bit here
NAME_CHARS = 200
TEXT_CHARS = 5000  # a typed sentence to explain

# pruning
CALIBRATION_SAMPLES = 4096
SEQ_LEN = 4096
TRAIN_STEPS = 100_000
BATCH_ROWS = 4096

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
KERNEL_BATCH = 1024
KERNEL_REPEATS = (3, 10_000)
KERNEL_WARMUP = (1, 1000)
KERNEL_THREADS = 1024

# explanations
TOP_K = 100
IG_STEPS = (4, 512)
