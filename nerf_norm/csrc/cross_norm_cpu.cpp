// Fused CPU kernels of CrossNorm (paper Eq. 24 and the authors' reference variant).
//
// Both variants are written in one parametrisation, for x [T, C] row-major:
//   z_ti   = alpha * x_ti - a_t - b_i                  (x minus the cross mean)
//   v_ti   = A_t + B_i + K * (mr_t - mc_i)^2            (the cross variance, eps included in A)
//   xhat   = z * rsqrt(v),   y = xhat * w + bias
// and the closed-form gradient
//   dx_ti  = alpha * u_ti + P_t + Q_i + x_ti * (lr * Cr_t + lc * Cc_i)
// with u = g * rstd, c = dL/dv = -u * xhat * rstd / 2, g = dy * w, and row/column sums Cr, Cc of c.
// The Python side (nerf_norm/cn_kernel.py) computes the [T] and [C] coefficient vectors; these kernels
// do the passes over [T, C]: forward one pass (stats are computed by the caller's first pass), backward
// two passes. Rows are split into one block per thread; column sums are reduced from per-block partials.
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <cmath>
#include <vector>

namespace {

// Column sums are accumulated in scalar_t over sub-blocks of this many rows, then added to float64
// partials: the inner loops stay in one precision (and vectorise) while long sums keep float64 accuracy.
constexpr int64_t kSubRows = 256;

int64_t num_blocks(int64_t T) { return std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), T)); }

template <typename scalar_t>
void row_col_sums_kernel(const scalar_t* x, int64_t T, int64_t C, bool columns, double* r1, double* r2,
                         double* s1, double* s2) {
  const int64_t nblocks = num_blocks(T);
  std::vector<double> part(nblocks * 2 * C, 0.0);
  at::parallel_for(0, nblocks, 1, [&](int64_t b0, int64_t b1) {
    std::vector<scalar_t> l1(C), l2(C);
    for (int64_t blk = b0; blk < b1; ++blk) {
      const int64_t t0 = T * blk / nblocks, t1 = T * (blk + 1) / nblocks;
      double* p1 = part.data() + blk * 2 * C;
      double* p2 = p1 + C;
      for (int64_t s0 = t0; s0 < t1; s0 += kSubRows) {
        const int64_t s1_ = std::min(t1, s0 + kSubRows);
        std::fill(l1.begin(), l1.end(), scalar_t(0));
        std::fill(l2.begin(), l2.end(), scalar_t(0));
        for (int64_t t = s0; t < s1_; ++t) {
          const scalar_t* row = x + t * C;
          scalar_t a = 0, q = 0;
          for (int64_t i = 0; i < C; ++i) {
            const scalar_t v = row[i];
            a += v;
            q += v * v;
            l1[i] += v;
            l2[i] += v * v;
          }
          r1[t] = a;
          r2[t] = q;
        }
        if (columns)
          for (int64_t i = 0; i < C; ++i) {
            p1[i] += l1[i];
            p2[i] += l2[i];
          }
      }
    }
  });
  if (columns) {
    std::fill(s1, s1 + C, 0.0);
    std::fill(s2, s2 + C, 0.0);
    for (int64_t blk = 0; blk < nblocks; ++blk)
      for (int64_t i = 0; i < C; ++i) {
        s1[i] += part[blk * 2 * C + i];
        s2[i] += part[blk * 2 * C + C + i];
      }
  }
}

template <typename scalar_t>
void forward_kernel(const scalar_t* x, const scalar_t* w, const scalar_t* bias, scalar_t* y, int64_t T,
                    int64_t C, double alpha_, double K_, const scalar_t* a, const scalar_t* A, const scalar_t* mr,
                    const scalar_t* b, const scalar_t* B, const scalar_t* mc) {
  const scalar_t alpha = static_cast<scalar_t>(alpha_), K = static_cast<scalar_t>(K_);
  at::parallel_for(0, T, 256, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const scalar_t* xr = x + t * C;
      scalar_t* yr = y + t * C;
      const scalar_t at_ = a[t], At = A[t], mrt = mr[t];
      for (int64_t i = 0; i < C; ++i) {
        const scalar_t d = mrt - mc[i];
        const scalar_t rstd = scalar_t(1) / std::sqrt(At + B[i] + K * d * d);
        yr[i] = (alpha * xr[i] - at_ - b[i]) * rstd * w[i] + bias[i];
      }
    }
  });
}

// Pass 1 of backward: u (written into dx), per-row sums of u, c and c * mc, per-column sums of u, c,
// c * mr, dy * xhat and dy.
template <typename scalar_t>
void backward_sums_kernel(const scalar_t* x, const scalar_t* dy, const scalar_t* w, scalar_t* dx, int64_t T,
                          int64_t C, double alpha_, double K_, const scalar_t* a, const scalar_t* A,
                          const scalar_t* mr, const scalar_t* b, const scalar_t* B, const scalar_t* mc,
                          double* Ur, double* Cr, double* CMr, double* col_out /* [5, C] */) {
  const scalar_t alpha = static_cast<scalar_t>(alpha_), K = static_cast<scalar_t>(K_);
  const int64_t nblocks = num_blocks(T);
  std::vector<double> part(nblocks * 5 * C, 0.0);
  at::parallel_for(0, nblocks, 1, [&](int64_t b0, int64_t b1) {
    std::vector<scalar_t> local(5 * C);
    scalar_t* lu = local.data();
    scalar_t* lc = lu + C;
    scalar_t* lcm = lc + C;
    scalar_t* lw = lcm + C;
    scalar_t* lb = lw + C;
    for (int64_t blk = b0; blk < b1; ++blk) {
      const int64_t t0 = T * blk / nblocks, t1 = T * (blk + 1) / nblocks;
      double* p = part.data() + blk * 5 * C;
      for (int64_t s0 = t0; s0 < t1; s0 += kSubRows) {
        const int64_t s1_ = std::min(t1, s0 + kSubRows);
        std::fill(local.begin(), local.end(), scalar_t(0));
        for (int64_t t = s0; t < s1_; ++t) {
          const scalar_t* xr = x + t * C;
          const scalar_t* gr = dy + t * C;
          scalar_t* ur = dx + t * C;
          const scalar_t at_ = a[t], At = A[t], mrt = mr[t];
          scalar_t su = 0, sc = 0, scm = 0;
          for (int64_t i = 0; i < C; ++i) {
            const scalar_t d = mrt - mc[i];
            const scalar_t rstd = scalar_t(1) / std::sqrt(At + B[i] + K * d * d);
            const scalar_t xhat = (alpha * xr[i] - at_ - b[i]) * rstd;
            const scalar_t u = gr[i] * w[i] * rstd;
            const scalar_t c = scalar_t(-0.5) * u * xhat * rstd;
            ur[i] = u;
            su += u;
            sc += c;
            scm += c * mc[i];
            lu[i] += u;
            lc[i] += c;
            lcm[i] += c * mrt;
            lw[i] += gr[i] * xhat;
            lb[i] += gr[i];
          }
          Ur[t] = su;
          Cr[t] = sc;
          CMr[t] = scm;
        }
        for (int64_t k = 0; k < 5 * C; ++k) p[k] += local[k];
      }
    }
  });
  std::fill(col_out, col_out + 5 * C, 0.0);
  for (int64_t blk = 0; blk < nblocks; ++blk)
    for (int64_t k = 0; k < 5 * C; ++k) col_out[k] += part[blk * 5 * C + k];
}

// Pass 2: dx = alpha * u + P_t + Q_i + x * (R_t + S_i), in place on dx (which holds u).
template <typename scalar_t>
void backward_apply_kernel(const scalar_t* x, scalar_t* dx, int64_t T, int64_t C, double alpha_,
                           const scalar_t* P, const scalar_t* R, const scalar_t* Q, const scalar_t* S) {
  const scalar_t alpha = static_cast<scalar_t>(alpha_);
  at::parallel_for(0, T, 256, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const scalar_t* xr = x + t * C;
      scalar_t* dr = dx + t * C;
      const scalar_t Pt = P[t], Rt = R[t];
      for (int64_t i = 0; i < C; ++i) dr[i] = alpha * dr[i] + Pt + Q[i] + xr[i] * (Rt + S[i]);
    }
  });
}

void check2d(const torch::Tensor& t, const char* name) {
  TORCH_CHECK(t.device().is_cpu() && t.dim() == 2 && t.is_contiguous(), name, " must be a contiguous CPU [T, C] tensor");
}

}  // namespace

// Returns (r1 [T], r2 [T], s1 [C], s2 [C]) in float64: row and (optionally) column sums of x and x^2
// (row sums are accumulated in x's dtype: C terms each).
std::vector<torch::Tensor> row_col_sums(torch::Tensor x, bool columns) {
  check2d(x, "x");
  const int64_t T = x.size(0), C = x.size(1);
  auto opts = x.options().dtype(torch::kFloat64);
  auto r1 = torch::empty({T}, opts), r2 = torch::empty({T}, opts);
  auto s1 = torch::zeros({C}, opts), s2 = torch::zeros({C}, opts);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "row_col_sums", [&] {
    row_col_sums_kernel<scalar_t>(x.data_ptr<scalar_t>(), T, C, columns, r1.data_ptr<double>(),
                                  r2.data_ptr<double>(), s1.data_ptr<double>(), s2.data_ptr<double>());
  });
  return {r1, r2, s1, s2};
}

torch::Tensor forward(torch::Tensor x, torch::Tensor w, torch::Tensor bias,
                      std::vector<int64_t> out_shape, double alpha, double K, torch::Tensor a, torch::Tensor A,
                      torch::Tensor mr, torch::Tensor b, torch::Tensor B, torch::Tensor mc) {
  check2d(x, "x");
  const int64_t T = x.size(0), C = x.size(1);
  auto y = torch::empty(out_shape, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "cross_norm_forward", [&] {
    forward_kernel<scalar_t>(x.data_ptr<scalar_t>(), w.data_ptr<scalar_t>(), bias.data_ptr<scalar_t>(),
                             y.data_ptr<scalar_t>(), T, C, alpha, K, a.data_ptr<scalar_t>(), A.data_ptr<scalar_t>(),
                             mr.data_ptr<scalar_t>(), b.data_ptr<scalar_t>(), B.data_ptr<scalar_t>(),
                             mc.data_ptr<scalar_t>());
  });
  return y;
}

// Returns (u [T, C] (to become dx), Ur [T], Cr [T], CMr [T], columns [5, C]: sum u, sum c, sum c*mr,
// sum dy*xhat, sum dy), sums in float64.
std::vector<torch::Tensor> backward_sums(torch::Tensor x, torch::Tensor dy, torch::Tensor w,
                                         double alpha, double K, torch::Tensor a, torch::Tensor A, torch::Tensor mr,
                                         torch::Tensor b, torch::Tensor B, torch::Tensor mc) {
  check2d(x, "x");
  check2d(dy, "dy");
  const int64_t T = x.size(0), C = x.size(1);
  auto u = torch::empty_like(x);
  auto opts = x.options().dtype(torch::kFloat64);
  auto Ur = torch::empty({T}, opts), Cr = torch::empty({T}, opts), CMr = torch::empty({T}, opts);
  auto cols = torch::empty({5, C}, opts);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "cross_norm_backward_sums", [&] {
    backward_sums_kernel<scalar_t>(x.data_ptr<scalar_t>(), dy.data_ptr<scalar_t>(), w.data_ptr<scalar_t>(),
                                   u.data_ptr<scalar_t>(), T, C, alpha, K, a.data_ptr<scalar_t>(),
                                   A.data_ptr<scalar_t>(), mr.data_ptr<scalar_t>(), b.data_ptr<scalar_t>(),
                                   B.data_ptr<scalar_t>(), mc.data_ptr<scalar_t>(), Ur.data_ptr<double>(),
                                   Cr.data_ptr<double>(), CMr.data_ptr<double>(), cols.data_ptr<double>());
  });
  return {u, Ur, Cr, CMr, cols};
}

torch::Tensor backward_apply(torch::Tensor x, torch::Tensor u, double alpha, torch::Tensor P, torch::Tensor R,
                             torch::Tensor Q, torch::Tensor S) {
  check2d(x, "x");
  check2d(u, "u");
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "cross_norm_backward_apply", [&] {
    backward_apply_kernel<scalar_t>(x.data_ptr<scalar_t>(), u.data_ptr<scalar_t>(), x.size(0), x.size(1), alpha,
                                    P.data_ptr<scalar_t>(), R.data_ptr<scalar_t>(), Q.data_ptr<scalar_t>(),
                                    S.data_ptr<scalar_t>());
  });
  return u;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("row_col_sums", &row_col_sums, "row and column sums of x and x^2 (float64)");
  m.def("forward", &forward, "CrossNorm forward (weight and bias required: pass ones / zeros)");
  m.def("backward_sums", &backward_sums, "CrossNorm backward, pass 1");
  m.def("backward_apply", &backward_apply, "CrossNorm backward, pass 2");
}
