/* y[out] = W[:, idx] @ vals for W^T stored (in, out) row-major fp32: the batch-1 GEMV of activation
 * sparsity (WINA / TEAL), reading only the kept rows of W^T, i.e. the kept columns of W.
 *
 * Why not torch's embedding_bag (the same arithmetic): on SmolLM2's layers it pays a fixed cost per
 * call that eats what the skipped columns save (576 x 576 at 65% skipped, 1 thread: 35 us against
 * 29 us for the dense torch.mv; this kernel 12 us). Here y (at most a few KB) stays in L1 while
 * four kept rows at a time stream through it, one fused multiply-add per element each, vectorised
 * by the compiler (-O3 -march=native). Threads (OpenMP) split the outputs, each walks every kept
 * row over its own slice, so no sums are shared. Compiled at first use (native/__init__.py).
 */
#include <stdint.h>

#define SLICE 512 /* outputs per thread task: 2 KB of y */

static void rows_into(const float *wt, const int64_t *idx, const float *vals, int64_t k, int64_t out,
                      int64_t o0, int64_t o1, float *y) {
    for (int64_t o = o0; o < o1; o++) y[o] = 0.f;
    int64_t j = 0;
    for (; j + 4 <= k; j += 4) {
        const float *r0 = wt + idx[j] * out, *r1 = wt + idx[j + 1] * out;
        const float *r2 = wt + idx[j + 2] * out, *r3 = wt + idx[j + 3] * out;
        const float v0 = vals[j], v1 = vals[j + 1], v2 = vals[j + 2], v3 = vals[j + 3];
        for (int64_t o = o0; o < o1; o++) y[o] += v0 * r0[o] + v1 * r1[o] + v2 * r2[o] + v3 * r3[o];
    }
    for (; j < k; j++) {
        const float *r = wt + idx[j] * out;
        const float v = vals[j];
        for (int64_t o = o0; o < o1; o++) y[o] += v * r[o];
    }
}

/* Returns 0, or 1 (y untouched) when an index is outside [0, in). */
int gather_gemv(const float *wt, const int64_t *idx, const float *vals, int64_t k, int64_t in, int64_t out,
                float *y, int threads) {
    for (int64_t j = 0; j < k; j++)
        if (idx[j] < 0 || idx[j] >= in) return 1;
    int64_t tasks = (out + SLICE - 1) / SLICE;
    if (threads <= 1 || tasks <= 1) {
        rows_into(wt, idx, vals, k, out, 0, out, y);
        return 0;
    }
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t t = 0; t < tasks; t++) {
        int64_t o0 = t * SLICE, o1 = o0 + SLICE < out ? o0 + SLICE : out;
        rows_into(wt, idx, vals, k, out, o0, o1, y);
    }
    return 0;
}
