"""Tier 2: helpers.cloud — the committed price file, the run-time estimate by hand, bad price rows."""

from __future__ import annotations

import pytest

from helpers import cloud, memory


def test_the_committed_price_file_loads_and_cites_every_price():
    prices = cloud.load_prices()
    priced = prices.dropna(subset=["usd_per_gpu_hour"])
    assert len(priced) >= 8
    assert priced["source_url"].str.startswith("http").all() and (priced["checked"] != "").all()
    assert prices.loc[prices["usd_per_gpu_hour"].isna(), "note"].str.contains("not verified").all()
    assert set(prices["gpu"]) <= set(cloud.CLOUD_GPUS)


def test_gpu_options_agree_with_the_memory_estimator():
    for gpu in memory.GPUS:
        assert cloud.CLOUD_GPUS[gpu.name].memory_gib == gpu.memory_gib
    assert [g.bf16 for g in cloud.CLOUD_GPUS.values()].count(False) == 1  # the T4 only


def test_run_hours_by_hand():
    # 7e9 parameters x 1e6 tokens x 6 FLOPs = 4.2e16 FLOPs; 312 TFLOPS x 0.5 = 1.56e14 FLOP/s -> 269.2 s.
    assert cloud.run_hours(7e9, 1e6, 312, 0.5) == pytest.approx(4.2e16 / 1.56e14 / 3600)
    assert cloud.run_hours(7e9, 2e6, 312, 0.5) == pytest.approx(2 * cloud.run_hours(7e9, 1e6, 312, 0.5))
    with pytest.raises(ValueError, match="MFU"):
        cloud.run_hours(7e9, 1e6, 312, 30)


def test_run_costs_multiply_hours_by_price_and_skip_unpriced_offers():
    prices = cloud.load_prices()
    costs = cloud.run_costs(prices, 7e9, 1e6, 0.3, {"H100 80 GB": "fits"})
    assert len(costs) == prices["usd_per_gpu_hour"].notna().sum()
    assert (costs["run_usd"] - costs["hours"] * costs["usd_per_hour"]).abs().max() < 1e-12
    assert set(costs.loc[costs["gpu"] == "H100 80 GB", "memory"]) == {"fits"}
    assert set(costs.loc[costs["gpu"] != "H100 80 GB", "memory"]) == {"not estimated"}


@pytest.mark.parametrize("row, message", [
    ("B200 192 GB,GPU cloud,X,x,5,https://x,2026-01-01,", "unknown gpu"),
    ("H100 80 GB,GPU cloud,X,x,$2.69/h,https://x,2026-01-01,", "not a number"),
    ("H100 80 GB,GPU cloud,X,x,2.69,,2026-01-01,", "source_url"),
    ("H100 80 GB,GPU cloud,X,x,,,,", "not verified"),
])
def test_bad_price_rows_name_the_line_and_the_fix(tmp_path, row, message):
    path = tmp_path / "prices.csv"
    path.write_text(",".join(cloud.COLUMNS) + "\n" + row + "\n")
    with pytest.raises(cloud.PriceError, match=message) as err:
        cloud.load_prices(path)
    assert "line 2" in str(err.value)


def test_plot_costs_draws_one_bar_per_priced_offer():
    import matplotlib

    matplotlib.use("Agg")
    costs = cloud.run_costs(cloud.load_prices(), 7e9, 1e6, 0.3, {})
    fig = cloud.plot_costs(costs)
    assert len(fig.axes[0].patches) == len(costs)
    assert any("min" in t.get_text() for t in fig.axes[0].texts)


# ---------------------------------------------------------------------------------------------------- notebook times


def test_the_readme_holds_the_t4_estimate_the_command_writes():
    readme = (cloud.REPO_ROOT / "README.md").read_text(encoding="utf-8")
    block = readme.split(cloud.README_BEGIN, 1)[1].split(cloud.README_END, 1)[0].strip()
    assert block == cloud.estimate_markdown(), "regenerate it: python -m helpers.cloud estimate --readme"


def test_the_estimate_counts_what_the_notebooks_run():
    from helpers import config

    t4 = config.PROFILES["t4"]
    work = cloud.notebook_work(t4)
    params = cloud._cells_parameters("05_iterate")
    # 05's runs as 05 itself made them for the shipped fallback: SWEEP_RUNS of SWEEP_STEPS and the overfit run
    shipped = {p.name for p in (config.FALLBACK_DIR / "cpu-tiny" / "runs").iterdir() if p.is_dir()}
    assert len(shipped - {"overfit"}) == cloud.SWEEP_RUNS and "overfit" in shipped
    assert work["05_iterate"]["train_rows"] == (cloud.SWEEP_RUNS * params["SWEEP_STEPS"] * 16
                                                + params["OVERFIT_STEPS"] * 4)
    assert work["03_qlora_training"]["train_rows"] == t4.max_steps * 16
    assert work["02_dataset"]["train_rows"] == work["02_dataset"]["decode_steps"] == 0
    # every split size the counts use is the committed split's
    for split, rows in cloud.SPLIT_ROWS.items():
        path = config.TICKETS_DIR / f"{split}.jsonl"
        assert sum(1 for line in path.read_text(encoding="utf-8").splitlines() if line.strip()) == rows, split
    # a parameter a learner changes changes the estimate: the shorter settings are shorter
    shorter = cloud.notebook_estimates(t4, changes=cloud.SHORTER)
    usual = cloud.notebook_estimates(t4)
    for name in cloud.SHORTER:
        assert shorter.loc[name, "total min"] < usual.loc[name, "total min"]
    slow = cloud.notebook_estimates(t4, assumptions=cloud.PESSIMISTIC)
    assert (slow["total min"] >= usual["total min"]).all()


def test_notebooks_05_and_07_print_their_t4_budget_before_training():
    import json

    from helpers import config

    for name in cloud.SHORTER:
        cells = json.loads((config.NOTEBOOKS_DIR / f"{name}.ipynb").read_text(encoding="utf-8"))["cells"]
        code = ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]
        budget = next(i for i, src in enumerate(code) if f'cloud.budget_line(cfg, "{name}")' in src)
        first_training = next(i for i, src in enumerate(code) if "train." in src and "precision" not in src
                              and i > budget)
        assert budget < first_training
        assert set(cloud.SHORTER[name]) <= set(cloud._cells_parameters(name)), "the settings are the notebook's own"
    line = cloud.budget_line(config.PROFILES["t4"], "05_iterate")
    assert "SWEEP_STEPS = 25" in line and "not measured" in line
