"""Scaling-law fits with bootstrap intervals (numpy + scipy, seeded, vectorised over resamples).

- `fit_compute`: L(C) = E + A (C / C0)^-alpha. For a fixed alpha the law is linear in (E, A), so
  the fit profiles them out (weighted least squares, E >= 0, A > 0) and searches alpha on a log
  grid refined by a parabola: the same code fits the data and every bootstrap resample at once.
- `fit_nd`: L(N, D) = E + A (N / N0)^-a + B (D / D0)^-b, profiled the same way over (a, b) on a
  grid, refined by scipy's bounded L-BFGS-B. Needs points that vary N and D separately.
- `compute_optimal`: the N and D that minimise L(N, D) at C = k N D (k: FLOPs per parameter and
  token, measured from the runs), closed form, per bootstrap resample.
- `fit_accuracy`: accuracy is bounded by chance below and 1 above, so it is fitted in the logit of
  the chance-normalised accuracy, p = (acc - chance) / (1 - chance), linear in log10 C.

Intervals: a parametric bootstrap. Each resample redraws every point around the fitted curve with
its own noise: its measured standard error (the continuation loss over windows, the accuracy over
examples) plus, when there are more points than parameters, the residual scatter the standard
errors do not explain (model misfit, seed-to-seed variation). Percentile intervals at CONFIDENCE
(experiments/stats.py's 95%), every parameter and prediction reported as
{'value', 'lo', 'hi', 'se'}. With exactly as many points as parameters the fit interpolates and
the interval reflects measurement noise only: `warnings` says so.

Bad input raises ScalingError (a ConfigError) with what was expected, before any fitting.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import numpy as np
from scipy import stats as sp_stats

from experiments import stats
from experiments.runtime import errors

CONFIDENCE = stats.CONFIDENCE
N_BOOT = 1000
ALPHA_GRID = np.geomspace(1e-3, 3.0, 600)  # exponent search range of L(C)
ND_GRID = np.geomspace(0.02, 2.0, 40)  # exponent search range of L(N, D), per axis
MONOTONE_RHO = -0.5  # loss must fall with compute: Spearman rho at most this,
RISE_Z = 3.0  # and no step up between neighbours in compute beyond this many standard errors


class ScalingError(errors.ConfigError):
  """Points that cannot be fitted (too few, not decreasing, not varying N and D separately)."""


def interval(samples: np.ndarray, value: float, confidence: float = CONFIDENCE) -> dict:
  """{'value', 'lo', 'hi', 'se'} of a point estimate and its bootstrap samples (finite ones)."""
  s = np.asarray(samples, np.float64)
  s = s[np.isfinite(s)]
  if len(s) < 2:
    return {"value": float(value), "lo": math.nan, "hi": math.nan, "se": math.nan}
  lo, hi = np.quantile(s, [(1 - confidence) / 2, (1 + confidence) / 2])
  return {"value": float(value), "lo": float(lo), "hi": float(hi), "se": float(s.std(ddof=1))}


def _noise(y: np.ndarray, fitted: np.ndarray, se: np.ndarray, n_params: int) -> tuple[np.ndarray,
                                                                                     float]:
  """Per-point standard deviation for the resamples: se, plus the residual scatter beyond it."""
  dof = len(y) - n_params
  extra = 0.0
  if dof > 0:
    s2 = float(np.sum((y - fitted) ** 2) / dof)
    extra = max(0.0, s2 - float(np.mean(se ** 2)))
  return np.sqrt(se ** 2 + extra), extra


def _check(c: np.ndarray, y: np.ndarray, se: np.ndarray | None, n_params: int, what: str,
           need_decrease: bool = True) -> np.ndarray:
  if len(c) != len(y) or (se is not None and len(se) != len(y)):
    raise ScalingError(f"{what}: compute, values and standard errors differ in length "
                       f"({len(c)}, {len(y)}, {None if se is None else len(se)}).")
  if len(c) < n_params:
    raise ScalingError(f"{what}: {len(c)} point(s) cannot determine a law with {n_params} "
                       f"parameters; need at least {n_params} (sizes x budgets), better "
                       f"{n_params + 2} for an interval that includes the scatter.")
  if not (np.all(np.isfinite(c)) and np.all(c > 0) and np.all(np.isfinite(y))):
    raise ScalingError(f"{what}: compute must be positive and values finite, got C={c.tolist()}, "
                       f"values={y.tolist()}.")
  if len(np.unique(c)) < min(n_params, len(c)):
    raise ScalingError(f"{what}: only {len(np.unique(c))} distinct compute values; need "
                       f"{n_params}.")
  if need_decrease:
    rho = sp_stats.spearmanr(c, y)[0] if len(np.unique(y)) > 1 else 0.0
    if not rho <= MONOTONE_RHO:
      order = np.argsort(c)
      pairs = ", ".join(f"{c[i]:.3g}: {y[i]:.4g}" for i in order)
      raise ScalingError(f"{what}: the values do not decrease with compute (Spearman rho "
                         f"{rho:+.2f}, need <= {MONOTONE_RHO}); a power law with an irreducible "
                         f"term cannot describe them. Points (C: value): {pairs}.")
    se_ = np.zeros(len(y)) if se is None else np.where(np.isfinite(se), se, 0.0)
    order = np.argsort(c, kind="stable")
    rise = np.diff(y[order])
    noise = np.sqrt(se_[order][1:] ** 2 + se_[order][:-1] ** 2)
    jumps = np.nonzero((noise > 0) & (rise > RISE_Z * noise))[0]
    if len(jumps):
      i = int(jumps[0])
      a, b = order[i], order[i + 1]
      raise ScalingError(f"{what}: the value rises from {y[a]:.4g} at C={c[a]:.3g} to {y[b]:.4g} "
                         f"at C={c[b]:.3g}, {rise[i] / noise[i]:.1f} standard errors (more than "
                         f"{RISE_Z:g}): not a decreasing law within noise.")
  return np.full(len(y), 0.0) if se is None else np.where(np.isfinite(se), se, 0.0)


# ---------------------------------------------------------------------------------------------
# L(C) = E + A (C / C0)^-alpha


def _profile_compute(x_KxN: np.ndarray, w_N: np.ndarray, y_NxB: np.ndarray):
  """Per alpha (rows of x = (C/C0)^-alpha) and resample: (E, A, weighted RSS); E >= 0, A > 0."""
  sw = w_N.sum()
  sx = x_KxN @ w_N
  sxx = (x_KxN ** 2) @ w_N
  wy = w_N[:, None] * y_NxB
  sy = wy.sum(0)
  syy = (wy * y_NxB).sum(0)
  sxy = x_KxN @ wy
  det = sw * sxx - sx ** 2
  with np.errstate(divide="ignore", invalid="ignore"):
    a = (sw * sxy - sx[:, None] * sy[None, :]) / det[:, None]
    e = (sy[None, :] - a * sx[:, None]) / sw
    a0 = sxy / sxx[:, None]  # E clipped at 0
    neg = e < 0
    a = np.where(neg, a0, a)
    e = np.where(neg, 0.0, e)
    rss = (syy[None, :] - 2 * e * sy[None, :] - 2 * a * sxy + e ** 2 * sw
           + 2 * e * a * sx[:, None] + a ** 2 * sxx[:, None])
  rss = np.where((a > 0) & np.isfinite(rss), np.maximum(rss, 0.0), np.inf)
  return e, a, rss


def _solve_compute(logx: np.ndarray, w: np.ndarray, y_NxB: np.ndarray, grid: np.ndarray):
  """(E, A, alpha, at_bound) per resample: grid search, parabolic refinement in log alpha."""
  x = np.exp(-grid[:, None] * logx[None, :])
  _, _, rss = _profile_compute(x, w, y_NxB)
  k = np.argmin(rss, axis=0)
  ok = np.isfinite(rss[k, np.arange(rss.shape[1])])
  la = np.log(grid)
  kk = np.clip(k, 1, len(grid) - 2)
  cols = np.arange(rss.shape[1])
  r0, r1, r2 = rss[kk - 1, cols], rss[kk, cols], rss[kk + 1, cols]
  step = la[1] - la[0]
  with np.errstate(divide="ignore", invalid="ignore"):
    denom = r0 - 2 * r1 + r2
    shift = np.where(np.isfinite(denom) & (denom > 0), 0.5 * (r0 - r2) / denom, 0.0)
  shift = np.clip(np.nan_to_num(shift), -1, 1)
  alpha = np.exp(la[kk] + shift * step)
  at_bound = (k == 0) | (k == len(grid) - 1)
  alpha = np.where(at_bound, grid[k], alpha)
  # E and A at the refined alpha, per resample.
  xb = np.exp(-alpha[:, None] * logx[None, :])  # [B, N]
  yb = y_NxB.T  # [B, N]
  sw, sx, sxx = w.sum(), xb @ w, (xb ** 2) @ w
  sy, sxy = yb @ w, (xb * yb) @ w
  with np.errstate(divide="ignore", invalid="ignore"):
    a = (sw * sxy - sx * sy) / (sw * sxx - sx ** 2)
    e = (sy - a * sx) / sw
    neg = e < 0
    a = np.where(neg, sxy / sxx, a)
    e = np.where(neg, 0.0, e)
  bad = ~ok
  alpha[bad], e[bad], a[bad] = np.nan, np.nan, np.nan
  return e, a, alpha, at_bound & ok


@dataclasses.dataclass
class ComputeFit:
  """A fitted L(C): the point estimate, the resampled parameters and what to predict with."""

  c0: float
  e: float
  a: float
  alpha: float
  e_B: np.ndarray
  a_B: np.ndarray
  alpha_B: np.ndarray
  noise_sd: np.ndarray  # per fitted point
  extra_var: float  # variance of the scatter beyond the standard errors (0: the fit interpolates)
  c_max: float  # largest fitted compute
  c_min: float
  n: int
  warnings: list[str]

  def predict(self, c) -> np.ndarray:
    c = np.asarray(c, np.float64)
    return self.e + self.a * (c / self.c0) ** -self.alpha

  def predict_B(self, c) -> np.ndarray:
    """[B, len(c)] predictions of the resampled laws."""
    c = np.atleast_1d(np.asarray(c, np.float64))
    return self.e_B[:, None] + self.a_B[:, None] * (c[None, :] / self.c0) ** -self.alpha_B[:, None]

  def params(self, confidence: float = CONFIDENCE) -> dict:
    return {"E": interval(self.e_B, self.e, confidence),
            "A": interval(self.a_B, self.a, confidence),
            "alpha": interval(self.alpha_B, self.alpha, confidence)}

  def prediction(self, c: float, point_sd: float = 0.0, confidence: float = CONFIDENCE,
                 seed: int = 0) -> dict:
    """The law at c with the interval of the curve, and of a new measurement there (+ its noise
    and the scatter): {'value', 'lo', 'hi', 'se', 'pred_lo', 'pred_hi'}."""
    curve = self.predict_B([c])[:, 0]
    out = interval(curve, float(self.predict(c)), confidence)
    rng = np.random.default_rng(seed)
    sd = math.sqrt(point_sd ** 2 + self.extra_var)
    new = interval(curve + rng.normal(size=len(curve)) * sd, out["value"], confidence)
    out["pred_lo"], out["pred_hi"] = new["lo"], new["hi"]
    return out


def fit_compute(c, y, se=None, c0: float | None = None, n_boot: int = N_BOOT, seed: int = 0,
                what: str = "L(C)") -> ComputeFit:
  """Fits L(C) = E + A (C/C0)^-alpha to points (C, loss, standard error of the loss)."""
  c, y = np.asarray(c, np.float64), np.asarray(y, np.float64)
  se = _check(c, y, None if se is None else np.asarray(se, np.float64), 3, what)
  c0 = float(c.min()) if c0 is None else float(c0)
  logx = np.log(c / c0)
  # Weights: inverse variance where every point has a standard error, else equal.
  w = 1.0 / se ** 2 if np.all(se > 0) else np.ones_like(y)
  w = w / w.mean()
  e, a, alpha, bound = _solve_compute(logx, w, y[:, None], ALPHA_GRID)
  if not np.isfinite(alpha[0]):
    raise ScalingError(f"{what}: no decreasing power law fits these points (every exponent gives "
                       f"a non-positive amplitude): C={c.tolist()}, values={y.tolist()}.")
  warnings = []
  if bound[0]:
    warnings.append(f"{what}: alpha at the edge of its search range [{ALPHA_GRID[0]}, "
                    f"{ALPHA_GRID[-1]}] ({alpha[0]:.3g}): the points barely bend or fall too "
                    "steeply; the exponent is not determined.")
  fitted = e[0] + a[0] * np.exp(-alpha[0] * logx)
  sd, extra = _noise(y, fitted, se, 3)
  if len(y) <= 3:
    warnings.append(f"{what}: {len(y)} points for 3 parameters: the law interpolates them and "
                    "its interval reflects measurement noise only, not the scatter of the law.")
  if not np.any(sd > 0):
    warnings.append(f"{what}: no standard errors and no residual degrees of freedom: intervals "
                    "are zero-width.")
  rng = np.random.default_rng(seed)
  y_NxB = fitted[:, None] + sd[:, None] * rng.normal(size=(len(y), n_boot))
  e_B, a_B, alpha_B, _ = _solve_compute(logx, w, y_NxB, ALPHA_GRID)
  failed = int(np.sum(~np.isfinite(alpha_B)))
  if failed > 0.05 * n_boot:
    warnings.append(f"{what}: {failed} of {n_boot} resamples admit no decreasing law; the "
                    "interval covers the others.")
  return ComputeFit(c0=c0, e=float(e[0]), a=float(a[0]), alpha=float(alpha[0]), e_B=e_B,
                    a_B=a_B, alpha_B=alpha_B, noise_sd=sd, extra_var=extra,
                    c_max=float(c.max()), c_min=float(c.min()), n=len(y), warnings=warnings)


# ---------------------------------------------------------------------------------------------
# L(N, D) = E + A (N/N0)^-a + B (D/D0)^-b


def covers_n_and_d(n, d) -> bool:
  """Whether points vary N and D separately (not one tokens-per-parameter ratio for all)."""
  n, d = np.asarray(n, np.float64), np.asarray(d, np.float64)
  if len(np.unique(n)) < 2 or len(np.unique(d)) < 2:
    return False
  ratio = np.log(d / n)
  return float(np.ptp(ratio)) > 1e-6 and len(n) >= 5


def _profile_nd(ln_n, ln_d, w, y_NxB, a_K, b_K):
  """Per (a, b) pair and resample: (theta [K, 3, B], weighted RSS [K, B]), E >= 0 A, B > 0."""
  xn = np.exp(-a_K[:, None] * ln_n[None, :])  # [K, N]
  xd = np.exp(-b_K[:, None] * ln_d[None, :])
  X = np.stack([np.ones_like(xn), xn, xd], axis=-1)  # [K, N, 3]
  XtW = X.transpose(0, 2, 1) * w[None, None, :]
  G = XtW @ X  # [K, 3, 3]
  rhs = XtW @ y_NxB  # [K, 3, B]
  theta = np.linalg.solve(G + 1e-12 * np.eye(3), rhs)
  resid = y_NxB[None] - X @ theta  # [K, N, B]
  rss = np.einsum("knb,n->kb", resid ** 2, w)
  ok = (theta[:, 0] >= 0) & (theta[:, 1] > 0) & (theta[:, 2] > 0)
  return theta, np.where(ok, rss, np.inf)


@dataclasses.dataclass
class NDFit:
  n0: float
  d0: float
  theta: np.ndarray  # E, A, B, a, b
  theta_B: np.ndarray  # [B, 5]
  n: int
  warnings: list[str]

  def predict(self, n, d, theta=None) -> np.ndarray:
    e, a, b, ea, eb = self.theta if theta is None else theta
    return e + a * (np.asarray(n) / self.n0) ** -ea + b * (np.asarray(d) / self.d0) ** -eb

  def params(self, confidence: float = CONFIDENCE) -> dict:
    return {k: interval(self.theta_B[:, i], self.theta[i], confidence)
            for i, k in enumerate(("E", "A", "B", "a", "b"))}


def _solve_nd(ln_n, ln_d, w, y_NxB):
  """[B, 5] (E, A, B, a, b): a log grid over (a, b), then three zooms of a 7 x 7 local grid
  around the best pair (each a third of the previous spacing), per resample."""
  aa, bb = np.meshgrid(ND_GRID, ND_GRID, indexing="ij")
  a_K, b_K = aa.ravel(), bb.ravel()
  lo, hi = math.log(ND_GRID[0]), math.log(ND_GRID[-1])
  step0 = math.log(ND_GRID[1] / ND_GRID[0])
  offsets = np.linspace(-1, 1, 7)
  oa, ob = (o.ravel() for o in np.meshgrid(offsets, offsets, indexing="ij"))
  out = np.full((y_NxB.shape[1], 5), np.nan)
  for start in range(0, y_NxB.shape[1], 64):
    yb = y_NxB[:, start:start + 64]
    _, rss = _profile_nd(ln_n, ln_d, w, yb, a_K, b_K)
    k = np.argmin(rss, axis=0)
    for j in range(yb.shape[1]):
      if not np.isfinite(rss[k[j], j]):
        continue
      y1 = yb[:, j:j + 1]
      va, vb, step = math.log(a_K[k[j]]), math.log(b_K[k[j]]), step0
      for _ in range(3):
        ca = np.clip(va + step * oa, lo, hi)
        cb = np.clip(vb + step * ob, lo, hi)
        _, r = _profile_nd(ln_n, ln_d, w, y1, np.exp(ca), np.exp(cb))
        i = int(np.argmin(r[:, 0]))
        if np.isfinite(r[i, 0]):
          va, vb = ca[i], cb[i]
        step /= 3
      t, _ = _profile_nd(ln_n, ln_d, w, y1, np.exp([va]), np.exp([vb]))
      out[start + j] = [t[0, 0, 0], t[0, 1, 0], t[0, 2, 0], math.exp(va), math.exp(vb)]
  return out


def fit_nd(n, d, y, se=None, n_boot: int = N_BOOT, seed: int = 0, what: str = "L(N, D)") -> NDFit:
  """Fits L(N, D) = E + A (N/N0)^-a + B (D/D0)^-b (N0, D0: the smallest N and D)."""
  n, d, y = (np.asarray(v, np.float64) for v in (n, d, y))
  if not covers_n_and_d(n, d):
    raise ScalingError(f"{what}: the points do not vary parameters and tokens separately (>= 2 "
                       "sizes, >= 2 token budgets, >= 5 points, not one tokens-per-parameter "
                       "ratio): L(N, D) is not identified; L(C) is fitted instead.")
  se = _check(n * d, y, None if se is None else np.asarray(se, np.float64), 5, what,
              need_decrease=False)
  n0, d0 = float(n.min()), float(d.min())
  ln_n, ln_d = np.log(n / n0), np.log(d / d0)
  w = 1.0 / se ** 2 if np.all(se > 0) else np.ones_like(y)
  w = w / w.mean()
  theta = _solve_nd(ln_n, ln_d, w, y[:, None])[0]
  if not np.all(np.isfinite(theta)):
    raise ScalingError(f"{what}: no law with positive A, B and E >= 0 fits these points.")
  warnings = []
  fitted = theta[0] + theta[1] * np.exp(-theta[3] * ln_n) + theta[2] * np.exp(-theta[4] * ln_d)
  sd, _ = _noise(y, fitted, se, 5)
  if len(y) <= 5:
    warnings.append(f"{what}: {len(y)} points for 5 parameters: intervals reflect measurement "
                    "noise only.")
  for i, k in ((3, "a"), (4, "b")):
    if theta[i] <= ND_GRID[0] * 1.001 or theta[i] >= ND_GRID[-1] * 0.999:
      warnings.append(f"{what}: exponent {k} at the edge of its range ({theta[i]:.3g}).")
  rng = np.random.default_rng(seed)
  y_NxB = fitted[:, None] + sd[:, None] * rng.normal(size=(len(y), n_boot))
  theta_B = _solve_nd(ln_n, ln_d, w, y_NxB)
  return NDFit(n0=n0, d0=d0, theta=theta, theta_B=theta_B, n=len(y), warnings=warnings)


def compute_optimal(fit: NDFit, budgets: Sequence[float], flops_per_nd: float,
                    confidence: float = CONFIDENCE) -> list[dict]:
  """Per compute budget C: N_opt and D_opt = C / (k N_opt) minimising L(N, D) on C = k N D."""

  def n_opt(theta, c):
    e, a, b, ea, eb = theta
    scale = c / (flops_per_nd * fit.n0 * fit.d0)
    return fit.n0 * (ea * a / (eb * b)) ** (1 / (ea + eb)) * scale ** (eb / (ea + eb))

  out = []
  for c in budgets:
    point = n_opt(fit.theta, c)
    samples = np.array([n_opt(t, c) if np.all(np.isfinite(t)) else np.nan for t in fit.theta_B])
    d_point, d_samples = c / (flops_per_nd * point), c / (flops_per_nd * samples)
    out.append({"compute": float(c), "N": interval(samples, point, confidence),
                "D": interval(d_samples, d_point, confidence),
                "tokens_per_param": interval(d_samples / samples, d_point / point, confidence)})
  return out


# ---------------------------------------------------------------------------------------------
# Accuracy: logit of the chance-normalised accuracy, linear in log10 C.


TRANSFORM = "logit((accuracy - chance) / (1 - chance)) = b0 + b1 * log10(C / C0)"


@dataclasses.dataclass
class AccuracyFit:
  c0: float
  b: np.ndarray  # b0, b1
  b_B: np.ndarray  # [B, 2]
  chance: float
  n: int
  warnings: list[str]

  def predict(self, c, b=None) -> np.ndarray:
    b0, b1 = self.b if b is None else b
    z = b0 + b1 * np.log10(np.asarray(c, np.float64) / self.c0)
    return self.chance + (1 - self.chance) / (1 + np.exp(-z))

  def params(self, confidence: float = CONFIDENCE) -> dict:
    return {"b0": interval(self.b_B[:, 0], self.b[0], confidence),
            "b1_per_decade": interval(self.b_B[:, 1], self.b[1], confidence)}

  def prediction(self, c: float, confidence: float = CONFIDENCE) -> dict:
    return interval(np.array([self.predict(c, b) for b in self.b_B]), float(self.predict(c)),
                    confidence)


def _logit_norm(acc, chance, eps):
  p = np.clip((acc - chance) / (1 - chance), eps, 1 - eps)
  return np.log(p / (1 - p)), p


def fit_accuracy(c, acc, se, chance: float, c0: float | None = None, n_boot: int = N_BOOT,
                 seed: int = 0, what: str = "accuracy") -> AccuracyFit:
  """Weighted least squares of the transformed accuracy on log10 compute (TRANSFORM)."""
  c, acc, se = (np.asarray(v, np.float64) for v in (c, acc, se))
  se = _check(c, acc, se, 2, what, need_decrease=False)
  if len(c) < 3:
    raise ScalingError(f"{what}: {len(c)} points; need at least 3 for a slope with an interval.")
  if not 0 <= chance < 1:
    raise ScalingError(f"{what}: chance accuracy must be in [0, 1), got {chance}.")
  c0 = float(c.min()) if c0 is None else float(c0)
  warnings = []
  if np.all(acc <= chance + 2 * np.maximum(se, 1e-9)):
    warnings.append(f"{what}: every point is within noise of chance ({chance:.3f}); the slope "
                    "says nothing about scale.")
  eps = 0.005
  lx = np.log10(c / c0)
  X = np.stack([np.ones_like(lx), lx], 1)

  def solve(a_NxB):
    z, p = _logit_norm(a_NxB, chance, eps)
    dz = np.maximum(se[:, None], 1e-4) / ((1 - chance) * p * (1 - p))  # delta method
    w = 1 / dz ** 2
    out = np.empty((a_NxB.shape[1], 2))
    for j in range(a_NxB.shape[1]):
      W = w[:, j]
      out[j] = np.linalg.lstsq(X * np.sqrt(W)[:, None], z[:, j] * np.sqrt(W), rcond=None)[0]
    return out

  b = solve(acc[:, None])[0]
  z_fit = b[0] + b[1] * lx
  fitted = chance + (1 - chance) / (1 + np.exp(-z_fit))
  sd, _ = _noise(acc, fitted, se, 2)
  rng = np.random.default_rng(seed)
  b_B = solve(fitted[:, None] + sd[:, None] * rng.normal(size=(len(acc), n_boot)))
  return AccuracyFit(c0=c0, b=b, b_B=b_B, chance=chance, n=len(c), warnings=warnings)


# ---------------------------------------------------------------------------------------------
# Comparing cells: crossings and rankings.


def _crossings(diff_K: np.ndarray, c_K: np.ndarray) -> list[float]:
  """Compute values where a difference of two curves on a log grid changes sign."""
  s = np.sign(diff_K)
  idx = np.nonzero(s[:-1] * s[1:] < 0)[0]
  out = []
  for i in idx:
    t = diff_K[i] / (diff_K[i] - diff_K[i + 1])
    out.append(float(np.exp(np.log(c_K[i]) + t * (np.log(c_K[i + 1]) - np.log(c_K[i])))))
  return out


def crossings(fits: dict[str, ComputeFit], c_lo: float, c_hi: float, observed_max: float,
              confidence: float = CONFIDENCE, points: int = 400) -> list[dict]:
  """Per pair of cells: where their L(C) curves cross in [c_lo, c_hi] (from the larger of the
  two cells' smallest runs: below it one curve is extrapolated backwards), and how sure that is.

  The point estimate comes from the fitted laws; the uncertainty from the resampled laws (cells
  resampled independently, resample i of one against resample i of the other): `share` is the
  fraction of resampled pairs that cross in the range, the interval is over those that do (their
  first crossing). `extrapolated`: the crossing lies beyond the largest observed compute.
  """
  names = list(fits)
  out = []
  for i, x in enumerate(names):
    for y in names[i + 1:]:
      fx, fy = fits[x], fits[y]
      lo = max(c_lo, fx.c_min, fy.c_min)
      grid = np.geomspace(lo, c_hi, points)
      at = _crossings(fx.predict(grid) - fy.predict(grid), grid)
      bx, by = fx.predict_B(grid), fy.predict_B(grid)
      m = min(len(bx), len(by))
      firsts = []
      for k in range(m):
        d = bx[k] - by[k]
        if np.all(np.isfinite(d)):
          cs = _crossings(d, grid)
          firsts.append(cs[0] if cs else np.nan)
      firsts = np.array(firsts)
      share = float(np.mean(np.isfinite(firsts))) if len(firsts) else math.nan
      lead_lo = x if fx.predict(lo) < fy.predict(lo) else y
      lead_hi = x if fx.predict(c_hi) < fy.predict(c_hi) else y
      entry = {"cells": [x, y], "range": [lo, c_hi], "crossings": at, "share_resamples_crossing": share,
               "lower_loss_at_start": lead_lo, "lower_loss_at_end": lead_hi}
      if at:
        ci = interval(np.log10(firsts), math.log10(at[0]), confidence)
        entry["first_crossing_log10_flops"] = ci
        entry["extrapolated"] = bool(at[0] > observed_max)
      out.append(entry)
  return out


def ranking(fits: dict[str, ComputeFit], c: float, confidence: float = CONFIDENCE) -> dict:
  """Cells ranked by predicted loss at compute c (1 = lowest), with each cell's bootstrap share of
  rank 1 and the interval of its rank."""
  names = list(fits)
  pred = {k: float(f.predict(c)) for k, f in fits.items()}
  m = min(len(f.e_B) for f in fits.values())
  samples = np.stack([fits[k].predict_B([c])[:m, 0] for k in names])  # [cells, B]
  samples = np.where(np.isfinite(samples), samples, np.inf)
  ranks = samples.argsort(0).argsort(0) + 1
  order = sorted(names, key=pred.get)
  cells = {}
  for i, k in enumerate(names):
    lo, hi = np.quantile(ranks[i], [(1 - confidence) / 2, (1 + confidence) / 2])
    cells[k] = {"rank": order.index(k) + 1, "loss": interval(samples[i], pred[k], confidence),
                "p_best": float(np.mean(ranks[i] == 1)), "rank_lo": int(lo), "rank_hi": int(hi)}
  return {"compute": float(c), "order": order, "cells": cells}


def ranking_changes(fits: dict[str, ComputeFit], c_lo: float, c_hi: float,
                    points: int = 400) -> list[dict]:
  """The compute values in [c_lo, c_hi] where the order of the fitted curves changes (from the
  largest of the cells' smallest runs, where every curve is fitted or extrapolated forwards)."""
  grid = np.geomspace(max([c_lo] + [f.c_min for f in fits.values()]), c_hi, points)
  names = list(fits)
  preds = np.stack([fits[k].predict(grid) for k in names])
  orders = [tuple(names[j] for j in np.argsort(preds[:, i])) for i in range(points)]
  out = []
  for i in range(1, points):
    if orders[i] != orders[i - 1]:
      moved = [c for j, c in enumerate(orders[i]) if orders[i - 1][j] != c]
      out.append({"compute": float(math.sqrt(grid[i - 1] * grid[i])), "before": list(orders[i - 1]),
                  "after": list(orders[i]), "swapped": moved})
  return out
