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
