// 4-bit and 8-bit weights times activations rounded to 8 bits, with AVX2 integer instructions: the products that
// run a generator's quantized layers on CPUs without bf16 or int8-product instructions (textsvc/avx2_kernels.py says
// why they are written here). Built at run time by torch.utils.cpp_extension; registers textsvc::int4_product and
// textsvc::int8_product.
//
// int4 weights, per tile of 8 output rows and block of 32 inputs, 160 bytes (avx2_kernels.pack_int4):
//   128 bytes of values q in 0..15: chunk c (0..3) of 32 bytes, byte 4k + i holding row k's inputs 4c + i (low
//   nibble) and 4c + 16 + i (high nibble); then the 8 rows' scales and the 8 rows' minima as float16.
//   weight = q * scale + minimum (llama.cpp's Q4_1 grid).
// int8 weights, per tile and block, 256 bytes (avx2_kernels.pack_int8): chunk c (0..7), byte 4k + i holding row k's
//   input 4c + i; one float32 scale per output row.
// Activations: each row's block of 32 rounded to int8 over its own largest magnitude (llama.cpp's Q8 rounding),
// so a row's result never depends on the rows beside it.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>
#include <immintrin.h>

#include <type_traits>

namespace {

constexpr int64_t BLOCK = 32;        // inputs per block
constexpr int64_t TILE = 8;          // output rows per tile: one float lane each
constexpr int64_t VALUE_BYTES = 128; // a tile's values for one block
constexpr int64_t BLOCK_BYTES = VALUE_BYTES + 2 * TILE * 2;  // an int4 tile's block: values, scales, minima
constexpr int64_t INT8_BLOCK_BYTES = TILE * BLOCK;

// rows (N, in) float32 -> int8 values (N, in), each block's step (N, blocks) and exact sum (N, blocks)
void round_rows(const float* x, int64_t rows, int64_t in, int8_t* values, float* steps, float* sums) {
  const int64_t blocks = in / BLOCK;
  const __m256 sign = _mm256_set1_ps(-0.0f);
  const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  for (int64_t n = 0; n < rows; ++n) {
    for (int64_t b = 0; b < blocks; ++b) {
      const float* v = x + n * in + b * BLOCK;
      const __m256 a0 = _mm256_loadu_ps(v), a1 = _mm256_loadu_ps(v + 8), a2 = _mm256_loadu_ps(v + 16),
                   a3 = _mm256_loadu_ps(v + 24);
      const __m256 m = _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(sign, a0), _mm256_andnot_ps(sign, a1)),
                                     _mm256_max_ps(_mm256_andnot_ps(sign, a2), _mm256_andnot_ps(sign, a3)));
      __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
      h = _mm_max_ps(h, _mm_movehl_ps(h, h));
      const float largest = _mm_cvtss_f32(_mm_max_ss(h, _mm_movehdup_ps(h)));
      const __m256 s = _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3));
      __m128 t = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
      t = _mm_add_ps(t, _mm_movehl_ps(t, t));
      sums[n * blocks + b] = _mm_cvtss_f32(_mm_add_ss(t, _mm_movehdup_ps(t)));
      steps[n * blocks + b] = largest / 127.0f;
      const __m256 inverse = _mm256_set1_ps(largest > 0.0f ? 127.0f / largest : 0.0f);
      // round to nearest (the default MXCSR mode); |value| <= 127 so the packs never saturate
      const __m256i i0 = _mm256_cvtps_epi32(_mm256_mul_ps(a0, inverse)),
                    i1 = _mm256_cvtps_epi32(_mm256_mul_ps(a1, inverse)),
                    i2 = _mm256_cvtps_epi32(_mm256_mul_ps(a2, inverse)),
                    i3 = _mm256_cvtps_epi32(_mm256_mul_ps(a3, inverse));
      // the packs interleave 128-bit lanes; the permutation restores the order 0..31
      const __m256i packed = _mm256_packs_epi16(_mm256_packs_epi32(i0, i1), _mm256_packs_epi32(i2, i3));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(values + n * in + b * BLOCK),
                          _mm256_permutevar8x32_epi32(packed, order));
    }
  }
}

inline __m256i broadcast_four(const int8_t* p) {
  int32_t four;
  __builtin_memcpy(&four, p, sizeof four);
  return _mm256_set1_epi32(four);
}

// one tile of 8 output rows times T activation rows: out[t * out_stride + k] for k in 0..7
template <int T>
void tile_product(const uint8_t* tile, const int8_t* values, const float* steps, const float* sums, int64_t in,
                  float* out, int64_t out_stride) {
  const int64_t blocks = in / BLOCK;
  const __m256i nibble = _mm256_set1_epi8(0x0F);
  const __m256i ones = _mm256_set1_epi16(1);
  __m256 total[T];
  for (int t = 0; t < T; ++t) total[t] = _mm256_setzero_ps();
  for (int64_t b = 0; b < blocks; ++b) {
    const uint8_t* block = tile + b * BLOCK_BYTES;
    __m256i dot[T];  // int16 pairs: 8 chunks x 2 x 15 x 127 = 30,480 at most, so no saturation
    for (int t = 0; t < T; ++t) dot[t] = _mm256_setzero_si256();
    for (int c = 0; c < 4; ++c) {
      const __m256i raw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block + 32 * c));
      const __m256i low = _mm256_and_si256(raw, nibble);
      const __m256i high = _mm256_and_si256(_mm256_srli_epi16(raw, 4), nibble);
      for (int t = 0; t < T; ++t) {
        const int8_t* a = values + t * in + b * BLOCK + 4 * c;
        dot[t] = _mm256_add_epi16(dot[t], _mm256_maddubs_epi16(low, broadcast_four(a)));
        dot[t] = _mm256_add_epi16(dot[t], _mm256_maddubs_epi16(high, broadcast_four(a + 16)));
      }
    }
    const __m256 scale = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(block + VALUE_BYTES)));
    const __m256 minimum = _mm256_cvtph_ps(
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(block + VALUE_BYTES + 2 * TILE)));
    for (int t = 0; t < T; ++t) {
      const __m256 products = _mm256_cvtepi32_ps(_mm256_madd_epi16(dot[t], ones));
      const int64_t at = t * blocks + b;
      total[t] = _mm256_fmadd_ps(products, _mm256_mul_ps(scale, _mm256_set1_ps(steps[at])), total[t]);
      total[t] = _mm256_fmadd_ps(minimum, _mm256_set1_ps(sums[at]), total[t]);  // sum of minimum * x
    }
  }
  for (int t = 0; t < T; ++t) _mm256_storeu_ps(out + t * out_stride, total[t]);
}

// calls product(rows, row) for the activation rows row..row + rows - 1, with `rows` a compile-time 4 as long as four
// are left, then the 1 to 3 left: each unpacked weight vector serves four rows, and a tile's weights stay in L1
// across the groups
template <typename Product>
void in_row_groups(int64_t n, Product product) {
  int64_t row = 0;
  for (; row + 4 <= n; row += 4) product(std::integral_constant<int, 4>{}, row);
  switch (n - row) {
    case 3: product(std::integral_constant<int, 3>{}, row); break;
    case 2: product(std::integral_constant<int, 2>{}, row); break;
    case 1: product(std::integral_constant<int, 1>{}, row); break;
    default: break;
  }
}

// int8 weights (one scale per output row, applied by the caller): one tile of 8 output rows times T activation rows.
// Per block 8 chunks of 32 bytes; chunk c byte 4k + i holds row k's input 4c + i. vpmaddubsw multiplies unsigned by
// signed bytes, so each weight's sign moves onto the activation (|w| times a * sign(w)); pairs stay below 2 x 127 x
// 127 = 32,258, within int16, but two chunks would not, so each chunk is widened to int32 at once
template <int T>
void int8_tile_product(const int8_t* tile, const int8_t* values, const float* steps, int64_t in, float* out,
                       int64_t out_stride) {
  const int64_t blocks = in / BLOCK;
  const __m256i ones = _mm256_set1_epi16(1);
  __m256 total[T];
  for (int t = 0; t < T; ++t) total[t] = _mm256_setzero_ps();
  for (int64_t b = 0; b < blocks; ++b) {
    __m256i dot[T];
    for (int t = 0; t < T; ++t) dot[t] = _mm256_setzero_si256();
    for (int c = 0; c < 8; ++c) {
      const __m256i w = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(tile + b * INT8_BLOCK_BYTES + c * 32));
      const __m256i magnitude = _mm256_sign_epi8(w, w);
      for (int t = 0; t < T; ++t) {
        const __m256i a = _mm256_sign_epi8(broadcast_four(values + t * in + b * BLOCK + 4 * c), w);
        dot[t] = _mm256_add_epi32(dot[t], _mm256_madd_epi16(_mm256_maddubs_epi16(magnitude, a), ones));
      }
    }
    for (int t = 0; t < T; ++t)
      total[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot[t]), _mm256_set1_ps(steps[t * blocks + b]), total[t]);
  }
  for (int t = 0; t < T; ++t) _mm256_storeu_ps(out + t * out_stride, total[t]);
}

// the activation rows rounded to 8 bits, in one scratch buffer: the int8 values (N, in), then each block's step and
// exact sum (N, blocks) each
struct RoundedRows {
  at::Tensor scratch;
  int8_t* values;
  float* steps;
  float* sums;
};

RoundedRows round_all(const at::Tensor& x) {
  const int64_t n = x.size(0), in = x.size(1), blocks = in / BLOCK;
  RoundedRows rounded;
  rounded.scratch = at::empty({n * in + 2 * n * blocks * static_cast<int64_t>(sizeof(float))}, x.options().dtype(at::kByte));
  rounded.values = reinterpret_cast<int8_t*>(rounded.scratch.data_ptr<uint8_t>());
  rounded.steps = reinterpret_cast<float*>(rounded.scratch.data_ptr<uint8_t>() + n * in);
  rounded.sums = rounded.steps + n * blocks;
  round_rows(x.data_ptr<float>(), n, in, rounded.values, rounded.steps, rounded.sums);
  return rounded;
}

}  // namespace

// rows (N, in) float32 times the weights of avx2_kernels.pack_int4, (out / 8, in / 32, 160) uint8: (N, out) float32
at::Tensor int4_product(const at::Tensor& rows, const at::Tensor& weights) {
  TORCH_CHECK(rows.dim() == 2 && rows.scalar_type() == at::kFloat, "int4_product: rows must be (N, in) float32");
  TORCH_CHECK(weights.dim() == 3 && weights.scalar_type() == at::kByte && weights.size(2) == BLOCK_BYTES &&
                  weights.is_contiguous(), "int4_product: weights must be contiguous (out / 8, in / 32, 160) uint8");
  TORCH_CHECK(rows.size(1) == weights.size(1) * BLOCK, "int4_product: rows and weights differ in inputs");
  const auto x = rows.contiguous();
  const int64_t n = x.size(0), in = x.size(1), blocks = in / BLOCK, tiles = weights.size(0), out = tiles * TILE;
  const RoundedRows a = round_all(x);
  auto result = at::empty({n, out}, x.options());
  const uint8_t* w = weights.data_ptr<uint8_t>();
  float* r = result.data_ptr<float>();
  at::parallel_for(0, tiles, 4, [&](int64_t begin, int64_t end) {
    for (int64_t tile = begin; tile < end; ++tile)
      in_row_groups(n, [&](auto group, int64_t row) {
        tile_product<decltype(group)::value>(w + tile * blocks * BLOCK_BYTES, a.values + row * in,
                                             a.steps + row * blocks, a.sums + row * blocks, in,
                                             r + row * out + tile * TILE, out);
      });
  });
  return result;
}

// rows (N, in) float32 times the weights of avx2_kernels.pack_int8, (out / 8, in / 32, 256) int8, each output
// row then scaled by `scales` (out,) float32: (N, out) float32
at::Tensor int8_product(const at::Tensor& rows, const at::Tensor& weights, const at::Tensor& scales) {
  TORCH_CHECK(rows.dim() == 2 && rows.scalar_type() == at::kFloat, "int8_product: rows must be (N, in) float32");
  TORCH_CHECK(weights.dim() == 3 && weights.scalar_type() == at::kChar && weights.size(2) == INT8_BLOCK_BYTES &&
                  weights.is_contiguous(), "int8_product: weights must be contiguous (out / 8, in / 32, 256) int8");
  TORCH_CHECK(rows.size(1) == weights.size(1) * BLOCK, "int8_product: rows and weights differ in inputs");
  TORCH_CHECK(scales.scalar_type() == at::kFloat && scales.is_contiguous() && scales.numel() == weights.size(0) * TILE,
              "int8_product: scales must be (out,) float32");
  const auto x = rows.contiguous();
  const int64_t n = x.size(0), in = x.size(1), blocks = in / BLOCK, tiles = weights.size(0), out = tiles * TILE;
  const RoundedRows a = round_all(x);
  auto result = at::empty({n, out}, x.options());
  const int8_t* w = weights.data_ptr<int8_t>();
  const float* scale = scales.data_ptr<float>();
  float* r = result.data_ptr<float>();
  at::parallel_for(0, tiles, 4, [&](int64_t begin, int64_t end) {
    for (int64_t tile = begin; tile < end; ++tile) {
      in_row_groups(n, [&](auto group, int64_t row) {
        int8_tile_product<decltype(group)::value>(w + tile * blocks * INT8_BLOCK_BYTES, a.values + row * in,
                                                  a.steps + row * blocks, in, r + row * out + tile * TILE, out);
      });
      const __m256 s = _mm256_loadu_ps(scale + tile * TILE);
      for (int64_t row = 0; row < n; ++row) {
        float* o = r + row * out + tile * TILE;
        _mm256_storeu_ps(o, _mm256_mul_ps(_mm256_loadu_ps(o), s));
      }
    }
  });
  return result;
}

TORCH_LIBRARY(textsvc, m) {
  m.def("int4_product(Tensor rows, Tensor weights) -> Tensor");
  m.def("int8_product(Tensor rows, Tensor weights, Tensor scales) -> Tensor");
}

TORCH_LIBRARY_IMPL(textsvc, CPU, m) {
  m.impl("int4_product", &int4_product);
  m.impl("int8_product", &int8_product);
}
