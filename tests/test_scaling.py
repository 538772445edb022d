"""Scaling-law fits on synthetic sweeps from known laws: recovery at the stated interval coverage,
clear refusals of degenerate inputs, the held-out check, crossings, rankings and the CLI."""

import json
import math

import numpy as np
import pytest

from experiments import scaling
from experiments import scaling_fit as sf
from experiments.runtime import errors
from tests import fake_scaling

C = np.geomspace(1e11, 1e13, 8)
TRUE = {"E": 3.0, "A": 2.5, "alpha": 0.3}


def _law(c, e=3.0, a=2.5, alpha=0.3, c0=1e11):
  return e + a * (np.asarray(c) / c0) ** -alpha


def test_fit_recovers_the_law_at_the_stated_coverage():
  # 60 synthetic sweeps (8 points over 2 decades, noise 0.03 nats, the standard error given):
  # each parameter's 95% interval must hold the true value in >= 85% of them (binomial: a true
  # 95% rate falls below 85% with probability < 0.1%), and not in every one (intervals that never
  # miss would be too wide to mean anything at 60 draws only with probability 0.05^0... tested
  # by width below).
  hits = {k: 0 for k in TRUE}
  widths = []
  seeds = 60
  for s in range(seeds):
    rng = np.random.default_rng(100 + s)
    y = _law(C) + 0.03 * rng.normal(size=len(C))
    fit = sf.fit_compute(C, y, np.full(len(C), 0.03), c0=1e11, n_boot=200, seed=s)
    p = fit.params()
    for k, v in TRUE.items():
      hits[k] += p[k]["lo"] <= v <= p[k]["hi"]
    widths.append(p["alpha"]["hi"] - p["alpha"]["lo"])
  for k in TRUE:
    assert hits[k] / seeds >= 0.85, (k, hits[k])
  assert np.median(widths) < 0.2  # informative: alpha known to about +-0.1


def test_fit_without_noise_is_exact():
  fit = sf.fit_compute(C, _law(C), None, c0=1e11, n_boot=50)
  assert fit.alpha == pytest.approx(0.3, rel=1e-3)
  assert fit.e == pytest.approx(3.0, abs=1e-3) and fit.a == pytest.approx(2.5, rel=1e-3)


@pytest.mark.parametrize("c, y, match", [
    ([1e11, 1e12], [5.0, 4.0], r"2 point\(s\) cannot determine a law with 3 parameters"),
    ([1e11, 1e12, 1e13, 1e14], [5.0, 4.0, 4.5, 6.0], r"do not decrease with compute"),
    ([1e11, 1e12, 1e13, 1e14], [4.0, 4.0, 4.0, 4.0], r"do not decrease with compute"),
    ([1e11, 1e11, 1e11, 1e11], [5.0, 4.0, 3.0, 2.0], r"only 1 distinct compute values"),
    # Overall decreasing (Spearman -0.8) but one step up far beyond its standard errors.
    ([1e11, 1e12, 1e13, 1e14], [5.0, 4.0, 4.3, 3.5], r"rises from 4 at C=1e\+12 to 4.3 .* not a "
                                                     r"decreasing law within noise"),
    ([1e11, -1e12, 1e13], [5.0, 4.0, 3.0], r"compute must be positive"),
])
def test_degenerate_inputs_give_a_message_not_a_fit(c, y, match):
  with pytest.raises(sf.ScalingError, match=match):
    sf.fit_compute(c, y, np.full(len(c), 0.02))
  assert issubclass(sf.ScalingError, errors.ConfigError)  # exit status 2 on the command line


def test_three_points_fit_but_say_the_interval_is_measurement_noise_only():
  fit = sf.fit_compute(C[[0, 3, 7]], _law(C[[0, 3, 7]]), np.full(3, 0.01), c0=1e11, n_boot=100)
  assert any("interpolates them" in w for w in fit.warnings)


def test_nd_fit_recovers_the_exponents_and_the_compute_optimal_split():
  n = np.repeat(np.geomspace(1e5, 1e7, 4), 3)
  d = np.tile(np.geomspace(1e6, 1e8, 3), 4) * (n / 1e5) ** 0.3
  theta = (2.0, 3.0, 4.0, 0.35, 0.3)
  y = theta[0] + theta[1] * (n / n.min()) ** -theta[3] + theta[2] * (d / d.min()) ** -theta[4]
  y = y + 0.02 * np.random.default_rng(0).normal(size=len(y))
  fit = sf.fit_nd(n, d, y, np.full(len(y), 0.02), n_boot=100)
  p = fit.params()
  for k, v in zip(("E", "A", "B", "a", "b"), theta):
    assert p[k]["lo"] - 0.02 <= v <= p[k]["hi"] + 0.02, (k, p[k])
  # The closed-form optimum is the minimum of the fitted law along C = k N D.
  c, k = 1e15, 6.0
  opt = sf.compute_optimal(fit, [c], k)[0]
  grid_n = np.geomspace(opt["N"]["value"] / 10, opt["N"]["value"] * 10, 2001)
  best = grid_n[np.argmin(fit.predict(grid_n, c / (k * grid_n)))]
  assert best == pytest.approx(opt["N"]["value"], rel=0.01)
  assert opt["N"]["lo"] <= opt["N"]["value"] <= opt["N"]["hi"]


def test_nd_fit_refuses_a_sweep_with_one_tokens_per_parameter_ratio():
  n = np.geomspace(1e5, 1e7, 6)
  with pytest.raises(sf.ScalingError, match="not identified"):
    sf.fit_nd(n, 20 * n, _law(6 * n * 20 * n, c0=1e12))


def test_accuracy_fit_recovers_the_logit_slope_and_flags_chance():
  c = np.geomspace(1e11, 1e14, 7)
  p = 0.25 + 0.75 / (1 + np.exp(-(-1 + 0.8 * np.log10(c / 1e11))))
  rng = np.random.default_rng(1)
  acc = rng.binomial(2000, p) / 2000
  fit = sf.fit_accuracy(c, acc, np.sqrt(p * (1 - p) / 2000), 0.25, c0=1e11, n_boot=300)
  slope = fit.params()["b1_per_decade"]
  assert slope["lo"] <= 0.8 <= slope["hi"]
  flat = sf.fit_accuracy(c, np.full(7, 0.25), np.full(7, 0.02), 0.25, n_boot=50)
  assert any("within noise of chance" in w for w in flat.warnings)


def test_heldout_check_predicts_the_largest_size_on_synthetic_laws(tmp_path):
  root = fake_scaling.build(tmp_path / "g", noise=0.01, seed=3)
  points = scaling.load_points(str(root))
  report, _ = scaling.analyze(points, scaling.load_accuracy(str(root)), n_boot=300)
  for base, e in report["cells"].items():
    h = e["heldout"]
    assert h["held_out_size"] == "s5" and h["fit_sizes"] == ["s1", "s2", "s3", "s4"]
    (pt,) = h["points"]
    assert abs(pt["relative_error"]) < 0.02 and pt["inside_interval"], (base, pt)
    assert pt["predicted"]["pred_lo"] <= pt["predicted"]["value"] <= pt["predicted"]["pred_hi"]


def test_heldout_check_catches_a_law_that_breaks_at_the_largest_size(tmp_path):
  # The largest size is 0.3 nats worse than the law: far outside any honest interval.
  root = fake_scaling.build(tmp_path / "g", cells=("CD:FLM",), noise=0.01, seed=3)
  points = scaling.load_points(str(root))
  points.loc[points["size"] == "s5", "loss"] += 0.3
  report, _ = scaling.analyze(points, None, n_boot=300)
  (pt,) = report["cells"]["CD:FLM"]["heldout"]["points"]
  assert not pt["inside_interval"] and pt["error"] < -0.2


def test_crossings_and_ranking_match_the_true_laws(tmp_path):
  root = fake_scaling.build(tmp_path / "g", noise=0.005, seed=0)
  points = scaling.load_points(str(root))
  report, _ = scaling.analyze(points, None, n_boot=300)
  # True crossing of CD:FLM and ED:MLM: 3 + 2 x^-0.3 = 2.6 + 2.6 x^-0.22, x = C / 1e11.
  e1, a1, al1, _ = fake_scaling.LAWS["CD:FLM"]
  e2, a2, al2, _ = fake_scaling.LAWS["ED:MLM"]
  xs = np.geomspace(1, 1e6, 200001)
  diff = e1 + a1 * xs ** -al1 - (e2 + a2 * xs ** -al2)
  true_c = fake_scaling.C_REF * xs[np.nonzero(np.diff(np.sign(diff)))[0][0]]
  pair = next(p for p in report["crossings"]["pairs"] if set(p["cells"]) == {"CD:FLM", "ED:MLM"})
  ci = pair["first_crossing_log10_flops"]
  assert ci["lo"] - 0.05 <= math.log10(true_c) <= ci["hi"] + 0.05
  assert pair["share_resamples_crossing"] > 0.9
  assert pair["lower_loss_at_start"] == "CD:FLM" and pair["lower_loss_at_end"] == "ED:MLM"
  (change,) = [ch for ch in report["ranking_changes"]
                if set(ch["swapped"]) == {"CD:FLM", "ED:MLM"}]
  assert abs(math.log10(change["compute"]) - math.log10(true_c)) < 0.1
  assert change["crossing_log10_flops"] == ci
  rk = report["ranking_at_largest_budget"]
  c = rk["compute"]
  truth = sorted(fake_scaling.LAWS, key=lambda k: fake_scaling.LAWS[k][0] + fake_scaling.LAWS[k][1]
                 * (c / fake_scaling.C_REF) ** -fake_scaling.LAWS[k][2])
  assert rk["order"] == truth and rk["cells"][truth[0]]["p_best"] > 0.9


def test_a_budget_beyond_the_stated_factor_warns(tmp_path):
  root = fake_scaling.build(tmp_path / "g", cells=("CD:FLM", "ED:MLM"))
  points = scaling.load_points(str(root))
  far = points["C"].max() * 50
  report, _ = scaling.analyze(points, None, max_factor=10, budget=far, n_boot=100)
  assert any("50.0x beyond" in w and "stated limit of 10x" in w for w in report["warnings"])
  assert report["ranking_at_budget"]["extrapolation_factor"] == pytest.approx(50)
  near, _ = scaling.analyze(points, None, max_factor=10, budget=points["C"].max() * 2, n_boot=100)
  assert not any("beyond the largest compute" in w for w in near["warnings"])


def test_cli_writes_json_table_and_plots(tmp_path, capsys):
  root = fake_scaling.build(tmp_path / "g", tokens_per_param=(0.5, 2.0))
  assert scaling.main([f"--grid_dir={root}", "--json", "--n_boot=100"]) == 0
  out = json.loads(capsys.readouterr().out)
  cd = out["cells"]["CD:FLM"]
  alpha = cd["loss_vs_compute"]["alpha"]
  assert cd["n"] == 10 and alpha["lo"] < alpha["value"] < alpha["hi"]
  assert "a" in cd["loss_vs_nd"] and len(cd["compute_optimal"]["budgets"]) == 3
  assert cd["accuracy"]["fake"]["transform"] == sf.TRANSFORM
  files = {p.name for p in (root / "scaling").iterdir()}
  assert {"scaling.json", "scaling.md", "scaling_overlay.png", "scaling_cd_flm.png"} <= files
  md = (root / "scaling" / "scaling.md").read_text()
  assert "| CD:FLM | 10 |" in md and "Ranking at the largest budget" in md


def test_cli_names_what_is_missing(tmp_path):
  with pytest.raises(sf.ScalingError, match=r"No scale_points.csv .* grid with `sizes`"):
    scaling.main([f"--grid_dir={tmp_path}"])
  with pytest.raises(sf.ScalingError, match=r"--flops must be one of train, paper"):
    scaling.load_points(str(tmp_path), "hardware")
  one = fake_scaling.build(tmp_path / "one", sizes={"s1": 1e5, "s2": 2e5}, cells=("CD:FLM",))
  report, _ = scaling.analyze(scaling.load_points(str(one)), None, n_boot=50)
  assert "2 point(s) cannot determine" in report["cells"]["CD:FLM"]["loss_vs_compute"]["error"]


NOTEBOOK = "notebooks/scaling_laws"


def test_notebook_pair_is_in_sync():
  import jupytext  # pylint: disable=g-import-not-at-top
  from experiments.runtime import gin_utils  # pylint: disable=g-import-not-at-top
  py = jupytext.read(gin_utils.REPO_ROOT / f"{NOTEBOOK}.py")
  nb = jupytext.read(gin_utils.REPO_ROOT / f"{NOTEBOOK}.ipynb")
  assert [(c.cell_type, c.source) for c in py.cells] == [(c.cell_type, c.source) for c in nb.cells]


@pytest.mark.slow  # a kernel start and matplotlib: ~30-60 s on a loaded 2-core machine
def test_notebook_shows_the_overlay_and_the_table_on_a_tiny_sweep(tmp_path, monkeypatch):
  import io  # pylint: disable=g-import-not-at-top
  import nbclient  # pylint: disable=g-import-not-at-top
  import nbformat  # pylint: disable=g-import-not-at-top
  import pandas as pd  # pylint: disable=g-import-not-at-top
  from experiments.runtime import gin_utils  # pylint: disable=g-import-not-at-top
  root = fake_scaling.build(tmp_path / "g", cells=("CD:FLM", "ED:MLM"),
                            sizes={k: v for k, v in list(fake_scaling.SIZES.items())[:4]})
  monkeypatch.setenv("GRID_DIR", str(root))
  monkeypatch.setenv("SCALING_N_BOOT", "100")
  nb = nbformat.read(gin_utils.REPO_ROOT / f"{NOTEBOOK}.ipynb", as_version=4)
  nb.cells.append(nbformat.v4.new_code_cell("print(table.to_json(orient='split'))"))
  nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                          resources={"metadata": {"path": str(gin_utils.REPO_ROOT)}}).execute()
  table = pd.read_json(io.StringIO(nb.cells[-1].outputs[0]["text"]), orient="split")
  assert list(table["cell"]) == ["CD:FLM", "ED:MLM"] and (table["points"] == 4).all()
  assert table["alpha"].str.contains(r"\[").all()  # an interval, not a bare number
  images = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
            if "image/png" in o.get("data", {})]
  assert len(images) == 1
  printed = "".join(o.get("text", "") for o in nb.cells[-2].outputs)
  assert "Ranking at the largest budget" in printed


def test_a_stated_seed_spread_widens_the_intervals_of_one_seed_sweeps(tmp_path):
  root = fake_scaling.build(tmp_path / "g", cells=("CD:FLM",), noise=0.005)
  points = scaling.load_points(str(root))
  width = lambda r: (r["cells"]["CD:FLM"]["loss_vs_compute"]["alpha"]["hi"]
                     - r["cells"]["CD:FLM"]["loss_vs_compute"]["alpha"]["lo"])
  plain, _ = scaling.analyze(points, None, n_boot=200)
  wide, _ = scaling.analyze(points, None, n_boot=200, seed_sd=0.05)
  assert width(wide) > 2 * width(plain) and wide["seed_sd_assumed"] == 0.05
  assert "seed-to-seed sd of 0.05" in scaling.markdown(wide)
