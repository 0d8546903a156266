// Fused CPU kernels of CrossNorm (paper Eq. 24 and the authors' reference variant).
//
// Both variants are written in one parametrisation, for x [T, C] row-major:
//   z_ti   = alpha * x_ti - a_t - b_i                  (x minus the cross mean)
//   v_ti   = A_t + B_i + K * (mr_t - mc_i)^2            (the cross variance, eps included in A)
//   xhat   = z * rsqrt(v),   y = xhat * w + bias
// and the closed-form gradient
//   dx_ti  = alpha * u_ti + P_t + Q_i + x_ti * (lr * Cr_t + lc * Cc_i)
// with u = g * rstd, c = dL/dv = -u * xhat * rstd / 2, g = dy * w, and row/column sums Cr, Cc of c.
// The Python side (nerf_norm/norms/kernel.py) computes the [T] and [C] coefficient vectors; these kernels
// do the passes over [T, C]: forward one pass (stats are computed by the caller's first pass), backward
// two passes, the paper variant's second derivative (fused_double_backward) three. Rows are split into one
// block per thread; column sums are reduced from per-block partials.
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "row_blocks.h"

namespace {

using nerf_norm::check2d;
using nerf_norm::rows_with_column_sums;

// Shifted sums for the moments: row t accumulates d = x_ti - x_t0 and d^2, column i accumulates
// e = x_ti - x_0i and e^2 (the shifts are the row's first and the column's first element). Plain sums of x
// and x^2 cancel catastrophically when the mean is large against the spread (at mean/std = 1e4 the output
// was off by more than 1000); with a shift drawn from the data the cancellation is bounded by
// (shift - mean)^2 / var, which is O(1), at any T. One row: its two sums, and the column accumulators l1, l2.
template <typename scalar_t>
__attribute__((noinline)) void row_col_sums_row(const scalar_t* __restrict__ row, const scalar_t* __restrict__ first,
                                                int64_t C, scalar_t* __restrict__ l1, scalar_t* __restrict__ l2,
                                                double* r1_out, double* r2_out) {
  const scalar_t k = row[0];
  scalar_t a = 0, q = 0;
  for (int64_t i = 0; i < C; ++i) {
    const scalar_t d = row[i] - k, e = row[i] - first[i];
    a += d;
    q += d * d;
    l1[i] += e;
    l2[i] += e * e;
  }
  *r1_out = a;
  *r2_out = q;
}

template <typename scalar_t>
void row_col_sums_kernel(const scalar_t* x, int64_t T, int64_t C, bool columns, double* r1, double* r2,
                         double* s1, double* s2) {
  auto cols = rows_with_column_sums<scalar_t>(T, C, 2, [&](int64_t t, scalar_t* l) {
    row_col_sums_row<scalar_t>(x + t * C, x, C, l, l + C, &r1[t], &r2[t]);
  });
  if (columns) {
    std::copy(cols.begin(), cols.begin() + C, s1);
    std::copy(cols.begin() + C, cols.end(), s2);
  }
}

template <typename scalar_t, bool kRelu>
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
        const scalar_t v = (alpha * xr[i] - at_ - b[i]) * rstd * w[i] + bias[i];
        if constexpr (kRelu)
          yr[i] = v > scalar_t(0) ? v : scalar_t(0);
        else
          yr[i] = v;
      }
    }
  });
}

// One row of backward pass 1. A separate non-inlined function with restrict-qualified pointers: inlined into
// the parallel lambda, GCC does not vectorise this loop (5 column accumulators, 3 row reductions).
// With kRelu the layer's output was relu(y): the incoming gradient is masked where y <= 0, y recomputed from
// xhat (the same expression as in forward_kernel), so no [T, C] mask is stored.
template <typename scalar_t, bool kRelu>
__attribute__((noinline)) void backward_sums_row(
    const scalar_t* __restrict__ xr, const scalar_t* __restrict__ gr, scalar_t* __restrict__ ur,
    const scalar_t* __restrict__ w, const scalar_t* __restrict__ bias, const scalar_t* __restrict__ b,
    const scalar_t* __restrict__ B,
    const scalar_t* __restrict__ mc, scalar_t* __restrict__ lu, scalar_t* __restrict__ lc,
    scalar_t* __restrict__ lcm, scalar_t* __restrict__ lw, scalar_t* __restrict__ lb, scalar_t alpha, scalar_t K,
    scalar_t at_, scalar_t At, scalar_t mrt, int64_t C, scalar_t* su_out, scalar_t* sc_out, scalar_t* scm_out) {
  scalar_t su = 0, sc = 0, scm = 0;
  for (int64_t i = 0; i < C; ++i) {
    const scalar_t d = mrt - mc[i];
    const scalar_t rstd = scalar_t(1) / std::sqrt(At + B[i] + K * d * d);
    const scalar_t xhat = (alpha * xr[i] - at_ - b[i]) * rstd;
    scalar_t g = gr[i];
    if constexpr (kRelu) g = xhat * w[i] + bias[i] > scalar_t(0) ? g : scalar_t(0);
    const scalar_t u = g * w[i] * rstd;
    const scalar_t c = scalar_t(-0.5) * u * xhat * rstd;
    ur[i] = u;
    su += u;
    sc += c;
    scm += c * mc[i];
    lu[i] += u;
    lc[i] += c;
    lcm[i] += c * mrt;
    lw[i] += g * xhat;
    lb[i] += g;
  }
  *su_out = su;
  *sc_out = sc;
  *scm_out = scm;
}

// Pass 1 of backward: u (written into dx), per-row sums of u, c and c * mc, per-column sums of u, c,
// c * mr, dy * xhat and dy.
template <typename scalar_t, bool kRelu>
void backward_sums_kernel(const scalar_t* x, const scalar_t* dy, const scalar_t* w, const scalar_t* bias,
                          scalar_t* dx, int64_t T,
                          int64_t C, double alpha_, double K_, const scalar_t* a, const scalar_t* A,
                          const scalar_t* mr, const scalar_t* b, const scalar_t* B, const scalar_t* mc,
                          double* Ur, double* Cr, double* CMr, double* col_out /* [5, C] */) {
  const scalar_t alpha = static_cast<scalar_t>(alpha_), K = static_cast<scalar_t>(K_);
  auto cols = rows_with_column_sums<scalar_t>(T, C, 5, [&](int64_t t, scalar_t* l) {
    scalar_t su, sc, scm;
    backward_sums_row<scalar_t, kRelu>(x + t * C, dy + t * C, dx + t * C, w, bias, b, B, mc, l, l + C, l + 2 * C,
                                       l + 3 * C, l + 4 * C, alpha, K, a[t], A[t], mr[t], C, &su, &sc, &scm);
    Ur[t] = su;
    Cr[t] = sc;
    CMr[t] = scm;
  });
  std::copy(cols.begin(), cols.end(), col_out);
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

}  // namespace

// Returns (r1 [T], r2 [T], s1 [C], s2 [C]) in float64: row and (optionally) column shifted sums of x and x^2
// (see row_col_sums_kernel)
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
                      torch::Tensor mr, torch::Tensor b, torch::Tensor B, torch::Tensor mc, bool relu) {
  check2d(x, "x");
  const int64_t T = x.size(0), C = x.size(1);
  auto y = torch::empty(out_shape, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "cross_norm_forward", [&] {
    auto run = [&](auto kernel) {
      kernel(x.data_ptr<scalar_t>(), w.data_ptr<scalar_t>(), bias.data_ptr<scalar_t>(), y.data_ptr<scalar_t>(), T, C,
             alpha, K, a.data_ptr<scalar_t>(), A.data_ptr<scalar_t>(), mr.data_ptr<scalar_t>(),
             b.data_ptr<scalar_t>(), B.data_ptr<scalar_t>(), mc.data_ptr<scalar_t>());
    };
    if (relu)
      run(forward_kernel<scalar_t, true>);
    else
      run(forward_kernel<scalar_t, false>);
  });
  return y;
}

// Returns (u [T, C] (to become dx), Ur [T], Cr [T], CMr [T], columns [5, C]: sum u, sum c, sum c*mr,
// sum dy*xhat, sum dy), sums in float64.
std::vector<torch::Tensor> backward_sums(torch::Tensor x, torch::Tensor dy, torch::Tensor w, torch::Tensor bias,
                                         double alpha, double K, torch::Tensor a, torch::Tensor A, torch::Tensor mr,
                                         torch::Tensor b, torch::Tensor B, torch::Tensor mc, bool relu) {
  check2d(x, "x");
  check2d(dy, "dy");
  const int64_t T = x.size(0), C = x.size(1);
  auto u = torch::empty_like(x);
  auto opts = x.options().dtype(torch::kFloat64);
  auto Ur = torch::empty({T}, opts), Cr = torch::empty({T}, opts), CMr = torch::empty({T}, opts);
  auto cols = torch::empty({5, C}, opts);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "cross_norm_backward_sums", [&] {
    auto run = [&](auto kernel) {
      kernel(x.data_ptr<scalar_t>(), dy.data_ptr<scalar_t>(), w.data_ptr<scalar_t>(), bias.data_ptr<scalar_t>(),
             u.data_ptr<scalar_t>(), T, C, alpha, K, a.data_ptr<scalar_t>(), A.data_ptr<scalar_t>(),
             mr.data_ptr<scalar_t>(), b.data_ptr<scalar_t>(), B.data_ptr<scalar_t>(), mc.data_ptr<scalar_t>(),
             Ur.data_ptr<double>(), Cr.data_ptr<double>(), CMr.data_ptr<double>(), cols.data_ptr<double>());
    };
    if (relu)
      run(backward_sums_kernel<scalar_t, true>);
    else
      run(backward_sums_kernel<scalar_t, false>);
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

namespace {

// Mean and variance (divisor count - correction, clamped at 0) of n entries from their shifted sums s1, s2
// (sums of x - shift and (x - shift)^2, see row_col_sums_kernel); shift[k * stride] is entry k's shift.
template <typename scalar_t>
void moments(const double* s1, const double* s2, int64_t n, double count, int correction, const scalar_t* shift,
             int64_t stride, double* mean, double* var) {
  const double div = std::max(count - correction, 1.0);
  for (int64_t k = 0; k < n; ++k) {
    const double d = s1[k] / count;
    mean[k] = d + double(shift[k * stride]);
    var[k] = std::max((s2[k] - s1[k] * d) / div, 0.0);
  }
}

// The [T] row coefficients of the forward, in x's dtype, from the row sums: mr (mean), a = mr C / N and A (the
// row part of the variance, eps included; scaled by C / N in the paper variant). Rows in parallel.
template <typename scalar_t>
void row_coefficients(const double* r1, const double* r2, const scalar_t* x, int64_t T, int64_t C, int correction,
                      bool paper, double N, double eps, scalar_t* a, scalar_t* A, scalar_t* mr) {
  const double div = std::max(double(C - correction), 1.0), cn = C / N, scale = paper ? C / N : 1.0;
  at::parallel_for(0, T, 4096, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const double d = r1[t] / C;
      const double mean = d + double(x[t * C]);
      const double var = std::max((r2[t] - r1[t] * d) / div, 0.0);
      mr[t] = scalar_t(mean);
      a[t] = scalar_t(mean * cn);
      A[t] = scalar_t(var * scale + eps);
    }
  });
}

torch::Tensor as_double(const torch::Tensor& t) { return t.to(torch::kFloat64).contiguous(); }

}  // namespace

// Statistics, coefficients, running-statistics update and output in one call (the whole forward).
// col_mean/col_var ([C], variance with the variant's correction) and n_given replace the batch's columns
// when col_mean is non-empty; run_* are updated with `factor` when factor > 0 (batch columns only).
// Returns {y, a, A, mr, b, B, mc, scalars}: the [T]/[C] coefficient vectors in x's dtype and the float64
// scalars (alpha, K, N, n, lam_row, lam_col), all kept for the backward.
std::vector<torch::Tensor> fused_forward(torch::Tensor x, torch::Tensor w, torch::Tensor bias,
                                         std::vector<int64_t> out_shape, bool paper, double eps, bool relu,
                                         torch::Tensor col_mean, torch::Tensor col_var, double n_given,
                                         torch::Tensor run_mean, torch::Tensor run_var, torch::Tensor run_n,
                                         double factor) {
  check2d(x, "x");
  const int64_t T = x.size(0), C = x.size(1);
  const bool batch_columns = col_mean.numel() == 0;
  auto sums = row_col_sums(x, batch_columns || factor > 0);
  const double* r1 = sums[0].data_ptr<double>();
  const double* r2 = sums[1].data_ptr<double>();
  const double* s1 = sums[2].data_ptr<double>();
  const double* s2 = sums[3].data_ptr<double>();
  const int corr = paper ? 0 : 1;
  auto dopt = x.options().dtype(torch::kFloat64);
  // columns ([C], float64): the batch's, or the given running statistics
  torch::Tensor mc, vc;
  double n;
  if (batch_columns) {
    mc = torch::empty({C}, dopt);
    vc = torch::empty({C}, dopt);
    n = double(T);
  } else {
    mc = as_double(col_mean);
    vc = as_double(col_var);
    n = n_given;
  }
  torch::Tensor mean_u, var_u;  // the batch's columns with the unbiased variance, for the running update
  if (factor > 0) {
    mean_u = torch::empty({C}, dopt);
    var_u = torch::empty({C}, dopt);
  }
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "cross_norm_column_moments", [&] {
    // the column shifts are row 0 (stride 1)
    const scalar_t* x0 = x.data_ptr<scalar_t>();
    if (batch_columns)
      moments<scalar_t>(s1, s2, C, double(T), corr, x0, 1, mc.data_ptr<double>(), vc.data_ptr<double>());
    if (factor > 0)
      moments<scalar_t>(s1, s2, C, double(T), 1, x0, 1, mean_u.data_ptr<double>(), var_u.data_ptr<double>());
  });
  if (factor > 0) {
    run_mean.lerp_(mean_u.to(run_mean.scalar_type()), factor);
    run_var.lerp_(var_u.to(run_var.scalar_type()), factor);
    run_n.lerp_(torch::full_like(run_n, double(T)), factor);
  }
  const double N = C + n;
  double alpha, K, lam_row, lam_col;
  if (paper) {
    alpha = 1.0;
    K = C * n / (N * N);
    lam_row = lam_col = 2.0 / N;
  } else {
    alpha = 1.0 + 1.0 / N;
    K = 0.0;
    lam_row = 2.0 / (C - 1);
    lam_col = n > 1 ? 2.0 / (n - 1) : 0.0;
  }
  const auto st = x.scalar_type();
  auto a_ = torch::empty({T}, x.options()), A_ = torch::empty({T}, x.options()), mr_ = torch::empty({T}, x.options());
  AT_DISPATCH_FLOATING_TYPES(st, "cross_norm_row_coefficients", [&] {
    row_coefficients<scalar_t>(r1, r2, x.data_ptr<scalar_t>(), T, C, corr, paper, N, eps, a_.data_ptr<scalar_t>(),
                               A_.data_ptr<scalar_t>(), mr_.data_ptr<scalar_t>());
  });
  // B: the column part of the variance (scaled by n / N in the paper variant)
  auto b_ = (mc * (n / N)).to(st), B_ = (paper ? vc * (n / N) : vc).to(st), mc_ = mc.to(st);
  auto scalars = torch::tensor({alpha, K, N, n, lam_row, lam_col}, dopt);
  auto y = forward(x, w, bias, out_shape, alpha, K, a_, A_, mr_, b_, B_, mc_, relu);
  return {y, a_, A_, mr_, b_, B_, mc_, scalars};
}

namespace {

// The [T] row coefficients of backward pass 2, in x's dtype (see the file's header): P and R from pass 1's row
// sums Ur, Cr, CMr and the row means mr. Rows in parallel.
template <typename scalar_t>
void backward_row_coefficients(const double* Ur, const double* Cr, const double* CMr, const scalar_t* mr, int64_t T,
                               int64_t C, double N, double K, double lam_row, scalar_t* P, scalar_t* R) {
  const double twoKC = 2.0 * K / C;
  at::parallel_for(0, T, 4096, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const double m = double(mr[t]);
      P[t] = scalar_t(-Ur[t] / N - lam_row * m * Cr[t] + twoKC * (m * Cr[t] - CMr[t]));
      R[t] = scalar_t(lam_row * Cr[t]);
    }
  });
}

}  // namespace

// The whole backward from fused_forward's saved coefficients: returns {dx, dweight, dbias}.
std::vector<torch::Tensor> fused_backward(torch::Tensor x, torch::Tensor dy, torch::Tensor w, torch::Tensor bias,
                                          std::vector<torch::Tensor> co, bool batch_columns, bool relu) {
  const int64_t T = x.size(0), C = x.size(1);
  const double* sc = co[6].data_ptr<double>();
  const double alpha = sc[0], K = sc[1], N = sc[2], n = sc[3], lam_row = sc[4], lam_col = sc[5];
  auto parts = backward_sums(x, dy, w, bias, alpha, K, co[0], co[1], co[2], co[3], co[4], co[5], relu);
  const double *Ur = parts[1].data_ptr<double>(), *Cr = parts[2].data_ptr<double>(),
               *CMr = parts[3].data_ptr<double>(), *cols = parts[4].data_ptr<double>();
  const double *Uc = cols, *Cc = cols + C, *CMc = cols + 2 * C;
  const auto st = x.scalar_type();
  auto P = torch::empty({T}, x.options()), R = torch::empty({T}, x.options());
  AT_DISPATCH_FLOATING_TYPES(st, "cross_norm_backward_row_coefficients", [&] {
    backward_row_coefficients<scalar_t>(Ur, Cr, CMr, co[2].data_ptr<scalar_t>(), T, C, N, K, lam_row,
                                        P.data_ptr<scalar_t>(), R.data_ptr<scalar_t>());
  });
  auto dopt = x.options().dtype(torch::kFloat64);
  auto Q = torch::zeros({C}, dopt), S = torch::zeros({C}, dopt);
  double *Qp = Q.data_ptr<double>(), *Sp = S.data_ptr<double>();
  if (batch_columns) {
    auto mc = as_double(co[5]);
    const double* mcp = mc.data_ptr<double>();
    for (int64_t i = 0; i < C; ++i) {
      Qp[i] = -Uc[i] / N - lam_col * mcp[i] * Cc[i] - (2.0 * K / n) * (CMc[i] - mcp[i] * Cc[i]);
      Sp[i] = lam_col * Cc[i];
    }
  }
  auto dx = backward_apply(x, parts[0], alpha, P, R, Q.to(st), S.to(st));
  auto dw = parts[4].select(0, 3).to(st), db = parts[4].select(0, 4).to(st);
  return {dx, dw, db};
}

namespace {

// ---- Second derivative (paper variant), see nerf_norm/norms/cross_norm_grad.py for the derivation ----------
// Per-row and per-column vectors prepared by the caller (in x's dtype): mr, mc (row and column means), mrs, mcs
// (the same shifted by a common value), A_t = C vr_t / N + eps, Bc_i = n vc_i / N; scalars N, n, K = C n / N^2.
// With running columns (batch = false) the column sums below are zero and the column terms vanish.
template <typename scalar_t>
struct DDArgs {
  const scalar_t *x, *gy, *v, *w, *bias, *gdw, *gdb, *mr, *mc, *mrs, *mcs, *A, *Bc;
  int64_t T, C;
  scalar_t N, n, K;
  bool batch;
};

// Pass 1, one row: row sums of v and (x - mr) v; column accumulators of v and (x - mc) v.
template <typename scalar_t>
__attribute__((noinline)) void dd_pass1_row(const scalar_t* __restrict__ xr, const scalar_t* __restrict__ vr,
                                            const scalar_t* __restrict__ mc, scalar_t m, int64_t C,
                                            scalar_t* __restrict__ lv, scalar_t* __restrict__ lxv, scalar_t* sv_out,
                                            scalar_t* sxv_out) {
  scalar_t sv = 0, sxv = 0;
  for (int64_t i = 0; i < C; ++i) {
    sv += vr[i];
    sxv += (xr[i] - m) * vr[i];
    lv[i] += vr[i];
    lxv[i] += (xr[i] - mc[i]) * vr[i];
  }
  *sv_out = sv;
  *sxv_out = sxv;
}

// Pass 2, one row: the gradient of gy (written), p (written into gx, finished in pass 3), row sums of p, q, r,
// q * mcs, r * Vc, and column accumulators of gy * Jv (the weight's gradient), p, q, r, q * mrs, r * Vr.
template <typename scalar_t, bool kRelu>
__attribute__((noinline)) void dd_pass2_row(
    const scalar_t* __restrict__ xr, const scalar_t* __restrict__ gyr, const scalar_t* __restrict__ vr,
    const scalar_t* __restrict__ w, const scalar_t* __restrict__ bias, const scalar_t* __restrict__ gdw,
    const scalar_t* __restrict__ gdb, const scalar_t* __restrict__ mcs, const scalar_t* __restrict__ Bc,
    const scalar_t* __restrict__ Vc, const scalar_t* __restrict__ XVc, scalar_t* __restrict__ ggyr,
    scalar_t* __restrict__ pr_out, scalar_t* __restrict__ lgw, scalar_t* __restrict__ lp, scalar_t* __restrict__ lq,
    scalar_t* __restrict__ lr, scalar_t* __restrict__ lqm, scalar_t* __restrict__ lrv, int64_t C, scalar_t mrt,
    scalar_t mrst, scalar_t At, scalar_t Vrt, scalar_t XVrt, scalar_t K, scalar_t f, scalar_t n, scalar_t invN,
    scalar_t* row5) {
  // six separate restrict-qualified column accumulators: pointers derived from one array may alias in GCC's view,
  // which keeps it from vectorising the loop
  const scalar_t half = scalar_t(0.5), two_invN = 2 * invN;
  scalar_t pr = 0, qr = 0, rr = 0, qm = 0, rv = 0;
  for (int64_t i = 0; i < C; ++i) {
    const scalar_t d = mrst - mcs[i];
    const scalar_t s = scalar_t(1) / std::sqrt(At + Bc[i] + K * d * d);
    const scalar_t D = (xr[i] - mrt) + f * d;
    const scalar_t xhat = D * s;
    const bool on = !kRelu || xhat * w[i] + bias[i] > scalar_t(0);
    const scalar_t ge = on ? gyr[i] : scalar_t(0);
    const scalar_t vm = vr[i] - (Vrt + Vc[i]) * invN;
    const scalar_t dV = (XVrt + XVc[i] + d * (n * Vrt - scalar_t(C) * Vc[i]) * invN) * two_invN;
    const scalar_t s2 = s * s, s3 = s2 * s;
    const scalar_t Jv = s * vm - half * D * s3 * dV;
    ggyr[i] = on ? w[i] * Jv + xhat * gdw[i] + gdb[i] : scalar_t(0);
    const scalar_t g = ge * w[i];
    const scalar_t p = g * s3 * dV * half * invN;
    const scalar_t q = g * (-half * s3 * vm + scalar_t(0.75) * D * s3 * s2 * dV) * two_invN;
    const scalar_t r = -g * D * s3 * invN;
    pr_out[i] = p;
    pr += p;
    qr += q;
    rr += r;
    qm += q * mcs[i];
    rv += r * Vc[i];
    lgw[i] += ge * Jv;
    lp[i] += p;
    lq[i] += q;
    lr[i] += r;
    lqm[i] += q * mrst;
    lrv[i] += r * Vrt;
  }
  row5[0] = pr;
  row5[1] = qr;
  row5[2] = rr;
  row5[3] = qm;
  row5[4] = rv;
}

template <typename scalar_t, bool kRelu>
void double_backward_kernel(const DDArgs<scalar_t>& a, scalar_t* gx, scalar_t* ggy, double* gw_out) {
  const int64_t T = a.T, C = a.C;
  const scalar_t invN = scalar_t(1) / a.N, f = a.n * invN, Cf = scalar_t(C) * invN;
  // pass 1: directional statistics of v: Vr, XVr (rows), Vc, XVc (columns; zero with running columns)
  std::vector<scalar_t> Vr(T), XVr(T), Vc(C, 0), XVc(C, 0);
  auto c1 = rows_with_column_sums<scalar_t>(T, C, 2, [&](int64_t t, scalar_t* l) {
    dd_pass1_row<scalar_t>(a.x + t * C, a.v + t * C, a.mc, a.mr[t], C, l, l + C, &Vr[t], &XVr[t]);
  });
  if (a.batch)
    for (int64_t i = 0; i < C; ++i) {
      Vc[i] = scalar_t(c1[i]);
      XVc[i] = scalar_t(c1[C + i]);
    }
  // pass 2
  std::vector<scalar_t> R5(5 * T);
  auto c2 = rows_with_column_sums<scalar_t>(T, C, 6, [&](int64_t t, scalar_t* l) {
    dd_pass2_row<scalar_t, kRelu>(a.x + t * C, a.gy + t * C, a.v + t * C, a.w, a.bias, a.gdw, a.gdb, a.mcs, a.Bc,
                                  Vc.data(), XVc.data(), ggy + t * C, gx + t * C, l, l + C, l + 2 * C, l + 3 * C,
                                  l + 4 * C, l + 5 * C, C, a.mr[t], a.mrs[t], a.A[t],
                                  Vr[t], XVr[t], a.K, f, a.n, invN, &R5[5 * t]);
  });
  for (int64_t i = 0; i < C; ++i) gw_out[i] = c2[i];
  // the [T] and [C] coefficients of H v (module docstring of cross_norm_grad.py)
  std::vector<scalar_t> Er(T), Qr(T), Rr(T), Ec(C, 0), Qc(C, 0), Rc(C, 0);
  for (int64_t t = 0; t < T; ++t) {
    const scalar_t* r5 = &R5[5 * t];  // Pr, Qr, Rr, q mcs, r Vc
    Qr[t] = r5[1];
    Rr[t] = r5[2];
    Er[t] = r5[0] + f * (a.mrs[t] * r5[1] - r5[3]) - (r5[2] * Vr[t] + r5[4]) * invN;
  }
  if (a.batch)
    for (int64_t i = 0; i < C; ++i) {
      Qc[i] = scalar_t(c2[2 * C + i]);
      Rc[i] = scalar_t(c2[3 * C + i]);
      Ec[i] = scalar_t(c2[C + i]) + Cf * (a.mcs[i] * Qc[i] - scalar_t(c2[4 * C + i])) -
              (scalar_t(c2[5 * C + i]) + Rc[i] * Vc[i]) * invN;
    }
  // pass 3: H v = -N p + E_t + E_i + (x - mr) Qr + (x - mc) Qc + v (Rr + Rc), p held in gx
  const scalar_t N = a.N;
  at::parallel_for(0, T, 256, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const scalar_t* __restrict__ xr = a.x + t * C;
      const scalar_t* __restrict__ vr = a.v + t * C;
      scalar_t* __restrict__ g = gx + t * C;
      const scalar_t Et = Er[t], Qt = Qr[t], Rt = Rr[t], mrt = a.mr[t];
      for (int64_t i = 0; i < C; ++i)
        g[i] = -N * g[i] + Et + Ec[i] + (xr[i] - mrt) * Qt + (xr[i] - a.mc[i]) * Qc[i] + vr[i] * (Rt + Rc[i]);
    }
  });
}

}  // namespace

// Gradients (x, weight, gy) of <v, dx> + <gdw, dw> + <gdb, db> where (dx, dw, db) is the paper variant's first
// backward of gy at x; the <gdw, dw> term's x part (a first backward with weight gdw) is the caller's. Vectors:
// see DDArgs. Returns {gx, gw, ggy}.
std::vector<torch::Tensor> fused_double_backward(torch::Tensor x, torch::Tensor gy, torch::Tensor v, torch::Tensor w,
                                                 torch::Tensor bias, torch::Tensor gdw, torch::Tensor gdb,
                                                 torch::Tensor mr, torch::Tensor mc, torch::Tensor mrs,
                                                 torch::Tensor mcs, torch::Tensor A, torch::Tensor Bc, double N,
                                                 double n, double K, bool batch, bool relu) {
  check2d(x, "x");
  check2d(gy, "gy");
  check2d(v, "v");
  auto gx = torch::empty_like(x), ggy = torch::empty_like(x);
  auto gw = torch::empty({x.size(1)}, x.options().dtype(torch::kFloat64));
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "cross_norm_double_backward", [&] {
    DDArgs<scalar_t> a{x.data_ptr<scalar_t>(), gy.data_ptr<scalar_t>(), v.data_ptr<scalar_t>(),
                       w.data_ptr<scalar_t>(), bias.data_ptr<scalar_t>(), gdw.data_ptr<scalar_t>(),
                       gdb.data_ptr<scalar_t>(), mr.data_ptr<scalar_t>(), mc.data_ptr<scalar_t>(),
                       mrs.data_ptr<scalar_t>(), mcs.data_ptr<scalar_t>(), A.data_ptr<scalar_t>(),
                       Bc.data_ptr<scalar_t>(), x.size(0), x.size(1), scalar_t(N), scalar_t(n), scalar_t(K), batch};
    if (relu)
      double_backward_kernel<scalar_t, true>(a, gx.data_ptr<scalar_t>(), ggy.data_ptr<scalar_t>(),
                                             gw.data_ptr<double>());
    else
      double_backward_kernel<scalar_t, false>(a, gx.data_ptr<scalar_t>(), ggy.data_ptr<scalar_t>(),
                                              gw.data_ptr<double>());
  });
  return {gx, gw.to(x.scalar_type()), ggy};
}

void bind_global_norm(pybind11::module& m);  // global_norm_cpu.cpp: GlobalNorm's kernels, same module
void bind_softplus(pybind11::module& m);     // softplus_cpu.cpp: NeuS' Softplus behind a norm

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("fused_forward", &fused_forward, "CrossNorm forward: statistics, coefficients, running update, output");
  m.def("fused_backward", &fused_backward, "CrossNorm backward: both passes and the coefficients between them");
  m.def("fused_double_backward", &fused_double_backward,
        "CrossNorm (paper variant) second derivative: gradients of the first backward's outputs");
  bind_global_norm(m);
  bind_softplus(m);
}
