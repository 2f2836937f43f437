"""What the kernel lab offers, without importing torch (pages read this; kernels/layouts.py registers the
layouts under these same names, and a test keeps the two in step).
"""

# name -> what a person should know about the layout
LAYOUT_HELP: dict[str, str] = {
    "dense": "plain dense matmul (the baseline; zeros cost as much as any weight)",
    "csr": "compressed sparse rows: values + column index per non-zero (MKL / cuSPARSE)",
    "csr_tiled": "CSR through the lab's own C kernel (CPU, fp32): token tiles kept in cache, sums in registers",
    "coo": "coordinate list (row, column, value): the reference sparse format, rarely fast",
    "bsr": "block sparse rows: dense blocks of block x block (MKL on the CPU, cuSPARSE's bsrmm on CUDA)",
    "bsr_triton": "block sparse rows through torch's Triton kernel (CUDA, fp16 / bf16): blocks on the tensor cores",
    "semi24": "2:4 semi-structured, cuSPARSELt through torch's SparseSemiStructuredTensor (CUDA, sparse tensor cores)",
    "semi24_direct": "2:4 semi-structured, cuSPARSELt called directly: searched algorithm, no tensor-subclass dispatch",
    "semi24_cutlass": "2:4 semi-structured, CUTLASS backend (CUDA; torch builds it for sm 8.x only)",
    "shrunk": "a smaller dense layer without the pruned rows/columns (structured pruning)",
}

# layer shapes [out, in] of well-known models
PRESETS: dict[str, list[list[int]]] = {
    "bert-base": [[768, 768], [3072, 768], [768, 3072]],  # attention q/k/v/o, MLP up, MLP down
    "minilm": [[384, 384], [1536, 384], [384, 1536]],
    "llama-7b": [[4096, 4096], [11008, 4096], [4096, 11008]],  # attention, MLP gate/up, MLP down
}

MODES = ("eager", "cuda_graph", "compile")
