/* y[T, out] = x[T, in] @ W^T + b for a CSR weight W, on the CPU: the `csr_tiled` layout.
 *
 * Why not torch.sparse.mm: MKL's CSR x dense reads, for every kept weight (r, c), the whole row c
 * of x^T; with many tokens x^T outgrows the cache and the kernel waits on memory (0.6x dense at
 * 90% on minilm's 384x1536 layer with 1664 tokens). Here the tokens are cut into tiles of up to
 * 128: each tile of x is packed transposed (xt[c][t], in L2), then every output row keeps its
 * 128 partial sums in registers (8 AVX-512 vectors) while it walks its kept weights, one
 * broadcast-multiply-add of a packed row per weight. Sums are stored once, token-major, so the
 * result needs no transpose. Threads (OpenMP, torch's own runtime) split the tiles, or the rows
 * when there are fewer tiles than threads. Compiled at first use with -march=native (native.py).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_TILE 128 /* tokens per tile: 8 vectors of 16 floats */
#define ROW_BLOCK 16 /* output rows finished before they are written back token-major */

typedef float v16 __attribute__((vector_size(64), aligned(4)));

/* Rows [r0, r1) of one tile of `width` = 16 * NQ tokens; NQ is a constant at each call site, so
 * the accumulators unroll into registers. */
static inline void tile_rows(const int32_t *indptr, const int32_t *indices, const float *values,
                             const float *bias, const float *xt, float *y, int64_t t0, int64_t n,
                             int64_t out, int64_t r0, int64_t r1, const int NQ) {
    const int64_t width = 16 * NQ;
    float buf[ROW_BLOCK * MAX_TILE] __attribute__((aligned(64)));
    for (int64_t rb = r0; rb < r1; rb += ROW_BLOCK) {
        int64_t nr = r1 - rb < ROW_BLOCK ? r1 - rb : ROW_BLOCK;
        for (int64_t k = 0; k < nr; k++) {
            int64_t r = rb + k;
            v16 acc[8];
            for (int q = 0; q < NQ; q++) acc[q] = (v16){0} + (bias ? bias[r] : 0.f);
            for (int32_t j = indptr[r]; j < indptr[r + 1]; j++) {
                const v16 *src = (const v16 *)(xt + (int64_t)indices[j] * width);
                float v = values[j];
                for (int q = 0; q < NQ; q++) acc[q] += v * src[q];
            }
            for (int q = 0; q < NQ; q++) ((v16 *)(buf + k * MAX_TILE))[q] = acc[q];
        }
        for (int64_t t = 0; t < n; t++) { /* write back token-major: y[t0 + t][rb .. rb + nr) */
            float *dst = y + (t0 + t) * out + rb;
            for (int64_t k = 0; k < nr; k++) dst[k] = buf[k * MAX_TILE + t];
        }
    }
}

/* Pack tokens [t0, t0 + n) of x transposed into xt[c][t] (row stride `width`), zeros past n. */
static void pack(const float *x, float *xt, int64_t t0, int64_t n, int64_t in, int64_t width) {
    int64_t c0 = 0;
    for (; c0 + 16 <= in; c0 += 16)
        for (int64_t t = 0; t < n; t++) {
            v16 row = *(const v16 *)(x + (t0 + t) * in + c0);
            for (int k = 0; k < 16; k++) xt[(c0 + k) * width + t] = row[k];
        }
    for (; c0 < in; c0++)
        for (int64_t t = 0; t < n; t++) xt[c0 * width + t] = x[(t0 + t) * in + c0];
    if (n < width)
        for (int64_t c = 0; c < in; c++) memset(xt + c * width + n, 0, sizeof(float) * (width - n));
}

int csr_linear(const int32_t *indptr, const int32_t *indices, const float *values, const float *bias,
               const float *x, float *y, int64_t T, int64_t in, int64_t out, int threads) {
    /* the narrowest tile that holds the tokens: a batch of 20 tokens does not pay for 128 */
    const int nq = T > 64 ? 8 : T > 32 ? 4 : 2;
    const int64_t width = 16 * nq;
    const int64_t tiles = (T + width - 1) / width;
    const int64_t splits = tiles >= threads ? 1 : (threads + tiles - 1) / tiles; /* row groups */
    const int64_t rows_per = (out + splits - 1) / splits;
    int failed = 0;
    #pragma omp parallel num_threads(threads)
    {
        float *xt = aligned_alloc(64, sizeof(float) * width * in);
        if (!xt) {
            #pragma omp atomic write
            failed = 1;
        }
        #pragma omp for schedule(static)
        for (int64_t job = 0; job < tiles * splits; job++) {
            if (!xt) continue;
            int64_t tile = job / splits, part = job % splits;
            int64_t t0 = tile * width, n = T - t0 < width ? T - t0 : width;
            int64_t r0 = part * rows_per, r1 = r0 + rows_per < out ? r0 + rows_per : out;
            pack(x, xt, t0, n, in, width);
            if (nq == 8) tile_rows(indptr, indices, values, bias, xt, y, t0, n, out, r0, r1, 8);
            else if (nq == 4) tile_rows(indptr, indices, values, bias, xt, y, t0, n, out, r0, r1, 4);
            else tile_rows(indptr, indices, values, bias, xt, y, t0, n, out, r0, r1, 2);
        }
        free(xt);
    }
    return failed ? -1 : 0;
}
