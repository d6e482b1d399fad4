/* Native float32 kernels of visionnets' locally connected layer (x86-64 with AVX-512F).

   Compiled on first use by visionnets/nn/_native.py with the system C compiler and loaded with
   ctypes; where that is not possible the layer keeps its torch (bmm) kernels. Why native: per
   output location the layer multiplies a small (O x K) matrix by a (K x B) one. Through torch
   the (K x B) operand must first be gathered from the input (an unfolded copy) and the GEMM
   library packs both operands again on every call; here the GEMM micro-kernels read the
   operands where they lie, with one row pointer per k (input rows of the batch-last input),
   so nothing is unfolded, and the input gradient is added onto the input rows directly.

   Layouts (all float32, row-major, contiguous):
     xt   the batch-last input (C, Hp, Wp, B): a "row" of B numbers per (c, y, x).
     W    weights (L, O, K), K = C*kh*kw in (c, p, q) order.
     Yt   forward output (L, O, B).  G: output gradient (L, O, B).  Gt: the same as (L, B, O).
     loff[l]  offset of location l's window origin in xt;  koff[k]  offset of k = (c, p, q)
              within a window.  So input row k of location l starts at xt + loff[l] + koff[k].
   Each function splits the locations between nt OpenMP threads. visionnets/nn/_native.py links
   the library against the OpenMP runtime torch has loaded, so these are torch's own threads
   (a second runtime's threads would fight torch's spinning ones for the cores).
*/
#include <immintrin.h>
#include <stdint.h>
#include <stdlib.h>

typedef int64_t idx;

#define MR 6 /* rows of C per micro-tile; NV vectors of 16 columns */

/* C[r][n] (+)= sum_k A_r[k * sak] * B_k[n] for r < mr, n < 16 * (NV - 1) + popcount(tail), with
   A_r = A + aoff[r], B_k = B + boff[k], C_r = C + coff[r]. Rows past mr reuse row 0's pointer
   (computed, never stored) so that the hot loop has no conditions. The accumulators are named
   variables, not an array: GCC keeps an array of vectors in memory (measured: 41 against
   96 GFLOP/s on one Zen 4 core). */
#define ACC_ROW(r) __m512 c##r##0 = _mm512_setzero_ps(), c##r##1 = c##r##0, c##r##2 = c##r##0, c##r##3 = c##r##0;
#define FMA_ROW(r)                                                                               \
    {                                                                                            \
        __m512 av = _mm512_set1_ps(a##r[o]);                                                     \
        c##r##0 = _mm512_fmadd_ps(av, b0, c##r##0);                                              \
        if (nv > 1) c##r##1 = _mm512_fmadd_ps(av, b1, c##r##1);                                  \
        if (nv > 2) c##r##2 = _mm512_fmadd_ps(av, b2, c##r##2);                                  \
        if (nv > 3) c##r##3 = _mm512_fmadd_ps(av, b3, c##r##3);                                  \
    }
#define STORE_VEC(r, v)                                                                          \
    if (nv > v) {                                                                                \
        __mmask16 m = nv == v + 1 ? tail : (__mmask16)0xFFFF;                                    \
        float *c = C + coff[r] + 16 * v;                                                         \
        __m512 x = c##r##v;                                                                      \
        if (acc_in) x = _mm512_add_ps(x, _mm512_maskz_loadu_ps(m, c));                           \
        _mm512_mask_storeu_ps(c, m, x);                                                          \
    }
#define STORE_ROW(r)                                                                             \
    if (mr > r) { STORE_VEC(r, 0) STORE_VEC(r, 1) STORE_VEC(r, 2) STORE_VEC(r, 3) }
#define LOAD_VEC(v) \
    __m512 b##v = nv == v + 1 ? _mm512_maskz_loadu_ps(tail, b + 16 * v) : nv > v ? _mm512_loadu_ps(b + 16 * v) : _mm512_setzero_ps();
#define DEFINE_TILE(NV)                                                                          \
    static void tile_##NV(idx K, const float *A, const idx *aoff, int mr, idx sak,             \
                          const float *B, const idx *boff, float *C, const idx *coff,           \
                          __mmask16 tail, int acc_in) {                                          \
        const int nv = NV;                                                                       \
        ACC_ROW(0) ACC_ROW(1) ACC_ROW(2) ACC_ROW(3) ACC_ROW(4) ACC_ROW(5)                        \
        const float *a0 = A + aoff[0], *a1 = A + aoff[mr > 1 ? 1 : 0];                           \
        const float *a2 = A + aoff[mr > 2 ? 2 : 0], *a3 = A + aoff[mr > 3 ? 3 : 0];              \
        const float *a4 = A + aoff[mr > 4 ? 4 : 0], *a5 = A + aoff[mr > 5 ? 5 : 0];              \
        for (idx k = 0; k < K; k++) {                                                            \
            const float *b = B + boff[k];                                                        \
            LOAD_VEC(0) LOAD_VEC(1) LOAD_VEC(2) LOAD_VEC(3)                                      \
            idx o = k * sak;                                                                     \
            FMA_ROW(0) FMA_ROW(1) FMA_ROW(2) FMA_ROW(3) FMA_ROW(4) FMA_ROW(5)                    \
        }                                                                                        \
        STORE_ROW(0) STORE_ROW(1) STORE_ROW(2) STORE_ROW(3) STORE_ROW(4) STORE_ROW(5)            \
    }

DEFINE_TILE(1)
DEFINE_TILE(2)
DEFINE_TILE(3)
DEFINE_TILE(4)

typedef void (*tile_fn)(idx, const float *, const idx *, int, idx, const float *, const idx *,
                        float *, const idx *, __mmask16, int);
static const tile_fn TILES[4] = {tile_1, tile_2, tile_3, tile_4};

/* C (M x N) (+)= A (M x K) @ B (K x N), every row through an offset table (see tile_NV). */
static void gemm(idx M, idx N, idx K, const float *A, const idx *aoff, idx sak, const float *B,
                 const idx *boff, float *C, const idx *coff, int acc_in) {
    for (idx n0 = 0; n0 < N; n0 += 64) {
        idx nn = N - n0 < 64 ? N - n0 : 64;
        int nv = (int)((nn + 15) / 16);
        int rem = (int)(nn - 16 * (nv - 1));
        __mmask16 tail = (__mmask16)((1u << rem) - 1u);
        for (idx m0 = 0; m0 < M; m0 += MR) {
            int mr = (int)(M - m0 < MR ? M - m0 : MR);
            TILES[nv - 1](K, A, aoff + m0, mr, sak, B + n0, boff, C + n0, coff + m0, tail, acc_in);
        }
    }
}

/* In-register transpose of 16 rows of 16 floats: r[j][i] <- r[i][j]. */
static inline void transpose16(__m512 r[16]) {
    __m512 t[16], c[16];
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    /* c[4g + j], 128-bit lane L: column 4L + j of rows 4g .. 4g + 3 */
    for (int g = 0; g < 4; g++) {
        c[4 * g + 0] = _mm512_shuffle_ps(t[4 * g], t[4 * g + 2], 0x44);
        c[4 * g + 1] = _mm512_shuffle_ps(t[4 * g], t[4 * g + 2], 0xEE);
        c[4 * g + 2] = _mm512_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0x44);
        c[4 * g + 3] = _mm512_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0xEE);
    }
    for (int j = 0; j < 4; j++) { /* a 4 x 4 transpose of 128-bit lanes */
        __m512 a = _mm512_shuffle_f32x4(c[j], c[4 + j], 0x44);
        __m512 b = _mm512_shuffle_f32x4(c[j], c[4 + j], 0xEE);
        __m512 d = _mm512_shuffle_f32x4(c[8 + j], c[12 + j], 0x44);
        __m512 e = _mm512_shuffle_f32x4(c[8 + j], c[12 + j], 0xEE);
        r[j] = _mm512_shuffle_f32x4(a, d, 0x88);
        r[4 + j] = _mm512_shuffle_f32x4(a, d, 0xDD);
        r[8 + j] = _mm512_shuffle_f32x4(b, e, 0x88);
        r[12 + j] = _mm512_shuffle_f32x4(b, e, 0xDD);
    }
}

/* D[n * ldd + m] = sum_k A_m[k] * B[k * ldb + n] for m < M, n < N: the product written
   transposed, 16 x 16 tiles transposed in registers. A_m = A + aoff[m], contiguous in k. */
static void gemm_t(idx M, idx N, idx K, const float *A, const idx *aoff, const float *B, idx ldb,
                   float *D, idx ldd) {
    for (idx n0 = 0; n0 < N; n0 += 16) {
        int nn = (int)(N - n0 < 16 ? N - n0 : 16);
        __mmask16 nmask = (__mmask16)((1u << nn) - 1u);
        for (idx m0 = 0; m0 < M; m0 += 16) {
            int mr = (int)(M - m0 < 16 ? M - m0 : 16);
            __mmask16 mmask = (__mmask16)((1u << mr) - 1u);
            const float *a[16];
            for (int r = 0; r < 16; r++) a[r] = A + aoff[m0 + (r < mr ? r : 0)];
#define T_ACC(r) __m512 t##r = _mm512_setzero_ps(); const float *p##r = a[r];
            T_ACC(0) T_ACC(1) T_ACC(2) T_ACC(3) T_ACC(4) T_ACC(5) T_ACC(6) T_ACC(7)
            T_ACC(8) T_ACC(9) T_ACC(10) T_ACC(11) T_ACC(12) T_ACC(13) T_ACC(14) T_ACC(15)
            for (idx k = 0; k < K; k++) {
                __m512 bv = _mm512_maskz_loadu_ps(nmask, B + k * ldb + n0);
#define T_FMA(r) t##r = _mm512_fmadd_ps(_mm512_set1_ps(p##r[k]), bv, t##r);
                T_FMA(0) T_FMA(1) T_FMA(2) T_FMA(3) T_FMA(4) T_FMA(5) T_FMA(6) T_FMA(7)
                T_FMA(8) T_FMA(9) T_FMA(10) T_FMA(11) T_FMA(12) T_FMA(13) T_FMA(14) T_FMA(15)
            }
            __m512 acc[16] = {t0, t1, t2, t3, t4, t5, t6, t7, t8, t9, t10, t11, t12, t13, t14, t15};
            transpose16(acc);
            for (int n = 0; n < 16; n++) /* constant bounds keep acc in registers */
                if (n < nn) _mm512_mask_storeu_ps(D + (n0 + n) * ldd + m0, mmask, acc[n]);
        }
    }
}

static idx *iota(idx n, idx step) {
    idx *v = (idx *)malloc((size_t)(n > 0 ? n : 1) * sizeof(idx));
    if (v)
        for (idx i = 0; i < n; i++) v[i] = i * step;
    return v;
}

#ifdef _OPENMP
int omp_get_thread_num(void);
int omp_get_num_threads(void);
#define PARALLEL _Pragma("omp parallel num_threads(nt)")
#define THREAD omp_get_thread_num()
#define THREADS omp_get_num_threads()
#else
#define PARALLEL
#define THREAD 0
#define THREADS 1
#endif

/* This thread's share [*l0, *l1) of L locations. */
static void share(idx L, idx *l0, idx *l1) {
    idx t = THREAD, n = THREADS, step = (L + n - 1) / n;
    *l0 = t * step < L ? t * step : L;
    *l1 = *l0 + step < L ? *l0 + step : L;
}

/* Yt[l] (O x B) = W[l] (O x K) @ X_l, X_l row k = xt + loff[l] + koff[k]. On nt threads (OpenMP
   shares torch's runtime and threads). Returns 0, or -1 when out of memory. */
int vn_lc_fwd(int nt, idx L, idx O, idx B, idx K, const float *W, const float *xt,
              const idx *loff, const idx *koff, float *Yt) {
    int failed = 0;
    PARALLEL
    {
        idx l0, l1, *aoff = iota(O, K), *coff = iota(O, B);
        share(L, &l0, &l1);
        if (!aoff || !coff) failed = 1;
        else
            for (idx l = l0; l < l1; l++)
                gemm(O, B, K, W + l * O * K, aoff, 1, xt + loff[l], koff, Yt + l * O * B, coff, 0);
        free(aoff); free(coff);
    }
    return failed ? -1 : 0;
}

/* gxt rows of location l += W[l]^T (K x O) @ G[l] (O x B): the input gradient. Windows of
   neighbouring locations overlap, so thread t accumulates into its own gxt + t * gsize (nt
   zeroed buffers; the caller sums them). */
int vn_lc_bwd_x(int nt, idx L, idx O, idx B, idx K, const float *W, const float *G,
                const idx *loff, const idx *koff, float *gxt, idx gsize) {
    int failed = 0;
    PARALLEL
    {
        idx l0, l1, *aoff = iota(K, 1), *boff = iota(O, B);
        float *mine = gxt + THREAD * gsize;
        share(L, &l0, &l1);
        if (!aoff || !boff) failed = 1;
        else
            for (idx l = l0; l < l1; l++)
                gemm(K, B, O, W + l * O * K, aoff, K, G + l * O * B, boff, mine + loff[l], koff, 1);
        free(aoff); free(boff);
    }
    return failed ? -1 : 0;
}

/* dW[l] (O x K) = G[l] (O x B) @ X_l^T, computed as (X_l (K x B) @ Gt[l] (B x O))^T. */
int vn_lc_bwd_w(int nt, idx L, idx O, idx B, idx K, const float *xt, const float *Gt,
                const idx *loff, const idx *koff, float *dW) {
    int failed = 0;
    PARALLEL
    {
        idx l0, l1, *aoff = (idx *)malloc((size_t)(K > 0 ? K : 1) * sizeof(idx));
        share(L, &l0, &l1);
        if (!aoff) failed = 1;
        else
            for (idx l = l0; l < l1; l++) {
                for (idx k = 0; k < K; k++) aoff[k] = loff[l] + koff[k];
                gemm_t(K, O, B, xt, aoff, Gt + l * B * O, O, dW + l * O * K, K);
            }
        free(aoff);
    }
    return failed ? -1 : 0;
}
