// Fused CPU kernels of GlobalNorm (paper Eq. 23): one mean m and biased variance over all T x C elements of
// x [T, C] (row-major), rstd = 1 / sqrt(var + eps), and per channel
//   y_ti = (x_ti - m) * s_i + b_i        with s_i = rstd * w_i        (optionally relu(y))
// Closed-form gradient, with g the incoming gradient (masked where y <= 0 when the ReLU is fused),
// G_i = sum_t g_ti and S_i = sum_t g_ti (x_ti - m), TC = T * C:
//   db_i = G_i,   dw_i = rstd * S_i,
//   dx_ti = s_i g_ti + P + (x_ti - m) R,   P = -rstd (w . G) / TC,   R = -rstd^3 (w . S) / TC
// (P and R vanish when the statistics are running estimates instead of the batch's: then only s_i g_ti).
// The Python side (nerf_norm/norms/global_norm_function.py) forms s, P and R from these sums.
//
// Passes over [T, C]: the moments one (per-row shifted sums merged with Chan's formula in float64, so a large
// offset against the spread costs no accuracy at any T), the output one; backward two (the column sums, then dx).
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "row_blocks.h"

namespace {

using nerf_norm::check2d;
using nerf_norm::num_blocks;
using nerf_norm::rows_with_column_sums;

// Rows t0..t1 of x: (count, mean, M2) of their elements. Each row is summed shifted by its first element (C
// terms in scalar_t), the rows are merged in float64 around the block's mean of row means.
template <typename scalar_t>
void block_moments(const scalar_t* x, int64_t t0, int64_t t1, int64_t C, double* mean_out, double* m2_out) {
  std::vector<double> row_mean(t1 - t0);
  double m2 = 0.0, sum_means = 0.0;
  for (int64_t t = t0; t < t1; ++t) {
    const scalar_t* row = x + t * C;
    const scalar_t k = row[0];
    scalar_t a = 0, q = 0;
    for (int64_t i = 0; i < C; ++i) {
      const scalar_t d = row[i] - k;
      a += d;
      q += d * d;
    }
    const double da = double(a);
    row_mean[t - t0] = double(k) + da / C;
    m2 += std::max(double(q) - da * da / C, 0.0);
    sum_means += row_mean[t - t0];
  }
  const double mean = sum_means / double(t1 - t0);
  double spread = 0.0;
  for (double rm : row_mean) spread += (rm - mean) * (rm - mean);
  *mean_out = mean;
  *m2_out = m2 + C * spread;
}

template <typename scalar_t, bool kRelu>
void output_kernel(const scalar_t* x, scalar_t* y, int64_t T, int64_t C, scalar_t m, const scalar_t* s,
                   const scalar_t* b) {
  at::parallel_for(0, T, 256, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const scalar_t* xr = x + t * C;
      scalar_t* yr = y + t * C;
      for (int64_t i = 0; i < C; ++i) {
        const scalar_t v = (xr[i] - m) * s[i] + b[i];
        yr[i] = (!kRelu || v > scalar_t(0)) ? v : scalar_t(0);
      }
    }
  });
}

// One row of the backward's column sums: G += g, S += g (x - m), with g masked by the recomputed ReLU.
template <typename scalar_t, bool kRelu>
__attribute__((noinline)) void sums_row(const scalar_t* __restrict__ xr, const scalar_t* __restrict__ gr,
                                        const scalar_t* __restrict__ s, const scalar_t* __restrict__ b, scalar_t m,
                                        int64_t C, scalar_t* __restrict__ lg, scalar_t* __restrict__ ls) {
  for (int64_t i = 0; i < C; ++i) {
    const scalar_t d = xr[i] - m;
    const scalar_t g = (!kRelu || d * s[i] + b[i] > scalar_t(0)) ? gr[i] : scalar_t(0);
    lg[i] += g;
    ls[i] += g * d;
  }
}

template <typename scalar_t, bool kRelu>
void sums_kernel(const scalar_t* x, const scalar_t* g, int64_t T, int64_t C, scalar_t m, const scalar_t* s,
                 const scalar_t* b, double* out /* [2, C] */) {
  auto cols = rows_with_column_sums<scalar_t>(T, C, 2, [&](int64_t t, scalar_t* l) {
    sums_row<scalar_t, kRelu>(x + t * C, g + t * C, s, b, m, C, l, l + C);
  });
  std::copy(cols.begin(), cols.end(), out);
}

template <typename scalar_t, bool kRelu>
void grad_kernel(const scalar_t* x, const scalar_t* g, scalar_t* dx, int64_t T, int64_t C, scalar_t m,
                 const scalar_t* s, const scalar_t* b, scalar_t P, scalar_t R) {
  at::parallel_for(0, T, 256, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const scalar_t* xr = x + t * C;
      const scalar_t* gr = g + t * C;
      scalar_t* dr = dx + t * C;
      for (int64_t i = 0; i < C; ++i) {
        const scalar_t d = xr[i] - m;
        const scalar_t gi = (!kRelu || d * s[i] + b[i] > scalar_t(0)) ? gr[i] : scalar_t(0);
        dr[i] = s[i] * gi + P + d * R;
      }
    }
  });
}

void check_vector(const torch::Tensor& t, const torch::Tensor& x, const char* name) {
  TORCH_CHECK(t.dim() == 1 && t.size(0) == x.size(1) && t.scalar_type() == x.scalar_type() && t.is_contiguous(),
              name, " must be a contiguous [C] tensor of x's dtype");
}

}  // namespace

// (mean, biased variance) of all elements of x [T, C] as 0-d float64 tensors.
std::vector<torch::Tensor> global_norm_moments(torch::Tensor x) {
  check2d(x, "x");
  const int64_t T = x.size(0), C = x.size(1);
  TORCH_CHECK(T > 0 && C > 0, "x must not be empty");
  const int64_t nblocks = num_blocks(T);
  std::vector<double> means(nblocks), m2s(nblocks);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "global_norm_moments", [&] {
    const scalar_t* xp = x.data_ptr<scalar_t>();
    at::parallel_for(0, nblocks, 1, [&](int64_t b0, int64_t b1) {
      for (int64_t blk = b0; blk < b1; ++blk)
        block_moments<scalar_t>(xp, T * blk / nblocks, T * (blk + 1) / nblocks, C, &means[blk], &m2s[blk]);
    });
  });
  // Chan's merge of the blocks (counts in elements)
  double count = 0.0, mean = 0.0, m2 = 0.0;
  for (int64_t blk = 0; blk < nblocks; ++blk) {
    const double nb = double(T * (blk + 1) / nblocks - T * blk / nblocks) * C;
    const double delta = means[blk] - mean, total = count + nb;
    mean += delta * nb / total;
    m2 += m2s[blk] + delta * delta * count * nb / total;
    count = total;
  }
  auto opts = x.options().dtype(torch::kFloat64);
  return {torch::full({}, mean, opts), torch::full({}, m2 / count, opts)};
}

// y = (x - m) * s + b (relu(y) with relu), in out_shape.
torch::Tensor global_norm_output(torch::Tensor x, double m, torch::Tensor s, torch::Tensor b,
                                 std::vector<int64_t> out_shape, bool relu) {
  check2d(x, "x");
  check_vector(s, x, "s");
  check_vector(b, x, "b");
  auto y = torch::empty(out_shape, x.options());
  TORCH_CHECK(y.numel() == x.numel(), "out_shape must hold T * C elements");
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "global_norm_output", [&] {
    auto run = [&](auto kernel) {
      kernel(x.data_ptr<scalar_t>(), y.data_ptr<scalar_t>(), x.size(0), x.size(1), scalar_t(m),
             s.data_ptr<scalar_t>(), b.data_ptr<scalar_t>());
    };
    if (relu)
      run(output_kernel<scalar_t, true>);
    else
      run(output_kernel<scalar_t, false>);
  });
  return y;
}

// Column sums [2, C] in float64: G (sum of g) and S (sum of g (x - m)), g masked by the ReLU when fused.
torch::Tensor global_norm_grad_sums(torch::Tensor x, torch::Tensor g, double m, torch::Tensor s, torch::Tensor b,
                                    bool relu) {
  check2d(x, "x");
  check2d(g, "g");
  check_vector(s, x, "s");
  check_vector(b, x, "b");
  auto out = torch::empty({2, x.size(1)}, x.options().dtype(torch::kFloat64));
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "global_norm_grad_sums", [&] {
    auto run = [&](auto kernel) {
      kernel(x.data_ptr<scalar_t>(), g.data_ptr<scalar_t>(), x.size(0), x.size(1), scalar_t(m),
             s.data_ptr<scalar_t>(), b.data_ptr<scalar_t>(), out.data_ptr<double>());
    };
    if (relu)
      run(sums_kernel<scalar_t, true>);
    else
      run(sums_kernel<scalar_t, false>);
  });
  return out;
}

// dx = s g + P + (x - m) R, g masked by the ReLU when fused.
torch::Tensor global_norm_grad_input(torch::Tensor x, torch::Tensor g, double m, torch::Tensor s, torch::Tensor b,
                                     double P, double R, bool relu) {
  check2d(x, "x");
  check2d(g, "g");
  check_vector(s, x, "s");
  check_vector(b, x, "b");
  auto dx = torch::empty_like(x);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "global_norm_grad_input", [&] {
    auto run = [&](auto kernel) {
      kernel(x.data_ptr<scalar_t>(), g.data_ptr<scalar_t>(), dx.data_ptr<scalar_t>(), x.size(0), x.size(1),
             scalar_t(m), s.data_ptr<scalar_t>(), b.data_ptr<scalar_t>(), scalar_t(P), scalar_t(R));
    };
    if (relu)
      run(grad_kernel<scalar_t, true>);
    else
      run(grad_kernel<scalar_t, false>);
  });
  return dx;
}

void bind_global_norm(pybind11::module& m) {
  m.def("global_norm_moments", &global_norm_moments, "GlobalNorm: mean and biased variance of all elements");
  m.def("global_norm_output", &global_norm_output, "GlobalNorm forward pass: (x - m) * s + b, optional ReLU");
  m.def("global_norm_grad_sums", &global_norm_grad_sums, "GlobalNorm backward pass 1: column sums G and S");
  m.def("global_norm_grad_input", &global_norm_grad_input, "GlobalNorm backward pass 2: dx");
}
