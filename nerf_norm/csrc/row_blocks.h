// Shared by the norm kernels (cross_norm_cpu.cpp, global_norm_cpu.cpp): the row-block layout of a pass over
// x [T, C] (row-major) that accumulates per-column sums while it walks the rows.
#pragma once

#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <vector>

namespace nerf_norm {

// Column sums are accumulated in scalar_t over sub-blocks of this many rows, then added to float64
// partials: the inner loops stay in one precision (and vectorise) while long sums keep float64 accuracy.
constexpr int64_t kSubRows = 256;

// One block of rows per thread (at most T).
inline int64_t num_blocks(int64_t T) {
  return std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), T));
}

inline void check2d(const torch::Tensor& t, const char* name) {
  TORCH_CHECK(t.device().is_cpu() && t.dim() == 2 && t.is_contiguous(), name,
              " must be a contiguous CPU [T, C] tensor");
}

// Calls row(t, acc) for every row t, rows in blocks (one per thread) and sub-blocks of kSubRows; acc holds k * C
// column accumulators in scalar_t, zeroed per sub-block and added to the block's float64 partials. Returns the
// k * C column sums in float64 (blocks added in order, so the result does not depend on the thread schedule).
template <typename scalar_t, typename RowFn>
std::vector<double> rows_with_column_sums(int64_t T, int64_t C, int k, RowFn row) {
  const int64_t nblocks = num_blocks(T);
  std::vector<double> part(nblocks * k * C, 0.0);
  at::parallel_for(0, nblocks, 1, [&](int64_t b0, int64_t b1) {
    std::vector<scalar_t> local(k * C);
    for (int64_t blk = b0; blk < b1; ++blk) {
      const int64_t t0 = T * blk / nblocks, t1 = T * (blk + 1) / nblocks;
      double* p = part.data() + blk * k * C;
      for (int64_t s0 = t0; s0 < t1; s0 += kSubRows) {
        const int64_t s1 = std::min(t1, s0 + kSubRows);
        std::fill(local.begin(), local.end(), scalar_t(0));
        for (int64_t t = s0; t < s1; ++t) row(t, local.data());
        for (int64_t j = 0; j < k * C; ++j) p[j] += local[j];
      }
    }
  });
  std::vector<double> out(k * C, 0.0);
  for (int64_t blk = 0; blk < nblocks; ++blk)
    for (int64_t j = 0; j < k * C; ++j) out[j] += part[blk * k * C + j];
  return out;
}

}  // namespace nerf_norm
