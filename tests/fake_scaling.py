"""A scaling GRID_DIR from known laws (no training): scale_points.csv, continuation.csv and
results.csv as experiments.grid writes them, for the fits, the CLI and the notebook."""

import pathlib

import numpy as np

from experiments import grid_scale
from experiments import results

# base cell -> (E, A, alpha) of L(C) = E + A (C / 1e11)^-alpha, and the accuracy logit slope.
LAWS = {"CD:FLM": (3.0, 2.0, 0.30, 1.2), "ED:MLM": (2.6, 2.6, 0.22, 0.6),
        "ND:PLM": (3.2, 2.2, 0.35, 0.9)}
ARCH = {"CD:FLM": ("causal_decoder", "full_lm"), "ED:MLM": ("encoder_decoder", "span_corruption"),
        "ND:PLM": ("non_causal_decoder", "prefix_lm")}
C_REF = 1e11
SIZES = {"s1": 1e5, "s2": 2.5e5, "s3": 6e5, "s4": 1.5e6, "s5": 3.5e6}  # non-embedding N


def build(root: pathlib.Path, cells=("CD:FLM", "ED:MLM", "ND:PLM"), sizes=SIZES,
          tokens_per_param=(1.0,), noise=0.01, seed=0, laws=None, accuracy=True) -> pathlib.Path:
  """Writes a GRID_DIR whose continuation loss follows LAWS (C = 6 N D) plus N(0, noise)."""
  laws = laws or LAWS
  rng = np.random.default_rng(seed)
  points, cont, rows = [], [], []
  for size, n in sizes.items():
    for tpp in tokens_per_param:
      d = tpp * n
      for base in cells:
        arch, objective = ARCH.get(base, ("causal_decoder", "full_lm"))
        e, a, alpha, slope = laws[base]
        c = 6.0 * n * d
        budget = f"{tpp:g}tpp"
        cell = grid_scale.point_name(base, size, budget)
        points.append(dict(cell=cell, base=base, size=size, budget=budget, arch=arch,
                           objective=objective, stage="pretrain", steps=int(d // 1280),
                           end_step=int(d // 1280), tokens=int(d), params=int(n * 1.3),
                           non_embedding_params=int(n), stage_flops=c, flops=c, paper_flops=c))
        labels = dict(grid="fake_scaling", cell=cell, arch=arch, objective=objective,
                      stage="pretrain", phase="zero_shot", step=int(d // 1280))
        loss = e + a * (c / C_REF) ** -alpha + noise * rng.normal()
        cont.append(dict(labels, suite="fake", nats_per_token=loss, stderr=noise,
                         ci95_lo=loss - 1.96 * noise, ci95_hi=loss + 1.96 * noise, tokens=16384,
                         windows=256, ids_sha256="x", eval_dir=f"cells/{cell}"))
        if accuracy:
          z = -1.0 + slope * np.log10(c / C_REF)
          p = 0.25 + 0.75 / (1 + np.exp(-z))
          for task in ("t1", "t2"):
            for prompt in ("p1", "p2", "p3"):
              acc = rng.binomial(400, p) / 400
              rows.append(dict(labels, suite="fake", task=task, prompt=prompt, accuracy=acc,
                               acc_norm=acc, n=400, random_baseline=0.25, eval_dir=""))
  root.mkdir(parents=True, exist_ok=True)
  import pandas as pd  # pylint: disable=g-import-not-at-top
  pd.DataFrame(points, columns=grid_scale.POINT_COLUMNS).to_csv(root / grid_scale.POINTS_CSV,
                                                                index=False)
  results.write_continuation_csv(cont, str(root / results.CONTINUATION_CSV))
  results.write_csv(rows, str(root / results.RESULTS_CSV))
  return root
