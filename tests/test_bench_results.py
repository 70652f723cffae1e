"""bench/results.md: the shared writer, the GPU check's tokens/s and MFU arithmetic (fake timings, no GPU), the
throughput benchmark's token counting, and the course report that includes the figures."""

from __future__ import annotations

import pytest

from bench import gpu_check, results
from helpers import course


def test_a_section_is_added_then_replaced_and_the_others_are_kept(tmp_path):
    path = tmp_path / "results.md"
    results.write_section("alpha", "Alpha", ["| a |", "|---|", "| 1 |"], "python bench/a.py", path,
                          where="test machine", when="2026-01-02")
    results.write_section("beta", "Beta", ["beta 1"], "python bench/b.py --x 1", path, where="m2", when="2026-01-03")
    results.write_section("alpha", "Alpha", ["| a |", "|---|", "| 2 |"], "python bench/a.py", path,
                          where="test machine", when="2026-01-04")
    text = path.read_text()
    assert text.startswith("# Benchmark results")
    assert text.count("<!-- alpha:begin -->") == 1 and "| 1 |" not in text and "| 2 |" in text
    assert "2026-01-04 on test machine; command: `python bench/a.py`" in text
    assert "2026-01-03 on m2; command: `python bench/b.py --x 1`" in text and "beta 1" in text
    assert text.index("alpha:begin") < text.index("beta:begin")  # a replaced section keeps its place


def test_the_writer_stamps_this_machine_and_today_by_default(tmp_path):
    import time

    path = results.write_section("gamma", "Gamma", ["x"], "python bench/g.py", tmp_path / "r.md")
    text = path.read_text()
    assert time.strftime("%Y-%m-%d", time.gmtime()) in text and "cores" in text
    with pytest.raises(ValueError, match="section name"):
        results.write_section("Bad Name", "t", [], "c", tmp_path / "r.md")


def test_command_line_quotes_arguments():
    assert results.command_line(["--only", "a b"], "x.py") == "python bench/x.py --only 'a b'"


def test_peak_flops_are_looked_up_by_device_name_and_dtype():
    assert gpu_check.peak_flops("Tesla T4", "float16") == 65e12
    assert gpu_check.peak_flops("Tesla T4", "bfloat16") is None  # compute capability 7.5: no bf16 peak
    assert gpu_check.peak_flops("NVIDIA A100-SXM4-80GB", "bfloat16") == 312e12
    assert gpu_check.peak_flops("NVIDIA H100 PCIe", "bfloat16") == 756e12
    assert gpu_check.peak_flops("NVIDIA H100 80GB HBM3", "bfloat16") == 989e12
    assert gpu_check.peak_flops("NVIDIA L40S", "bfloat16") is None  # not an L4
    assert gpu_check.peak_flops("CPU", "float32") is None


@pytest.mark.parametrize("device, dtype, params, tokens_per_step, peak", [
    ("Tesla T4", "float16", 1.54e9, 4 * 4 * 768, 65e12),  # the t4 profile's shape
    ("NVIDIA A100-SXM4-40GB", "bfloat16", 7.62e9, 8 * 2 * 1024, 312e12),  # the a100 profile's shape
])
def test_tokens_per_second_and_mfu_from_fake_step_times(device, dtype, params, tokens_per_step, peak):
    steps = [9.0, 5.0, 2.0, 2.5, 3.0]  # two warm-up steps, then 2.5 s on average
    got = gpu_check.throughput(params, tokens_per_step, steps, device, dtype, warmup=2)
    assert got["steps_timed"] == 3 and got["s_per_step"] == 2.5
    assert got["train_tokens_per_s"] == pytest.approx(tokens_per_step / 2.5, abs=0.05)
    assert got["mfu"] == pytest.approx(6 * params * (tokens_per_step / 2.5) / peak, abs=1e-4)
    assert got["peak_tflops"] == peak / 1e12
    assert gpu_check.throughput(params, tokens_per_step, steps, "CPU", "float32")["mfu"] is None


def test_mfu_of_a_known_case():
    # 1e9 parameters at 1e4 tokens/s do 6e13 FLOP/s: 20% of a 300 TFLOP/s GPU
    assert gpu_check.mfu(1e9, 1e4, 300e12) == pytest.approx(0.2)


def test_the_throughput_benchmark_counts_real_and_padded_tokens():
    import torch

    from bench import bench_throughput
    from helpers.config import get_profile

    counts: list[tuple[int, int]] = []
    collate = bench_throughput.counting(lambda ex: {"input_ids": torch.tensor(ex)}, 0, counts)
    collate([[5, 6, 7, 0], [8, 0, 0, 0]])
    assert counts == [(4, 8, 2 * 4**2)]
    cfg = get_profile("cpu-tiny")
    assert bench_throughput.variant_settings("pad_to_max", cfg)[2] == {"pad_to_multiple_of": cfg.max_seq_length}
    assert bench_throughput.variant_settings("packing_bfd", cfg)[2]["packing_strategy"] == "bfd"
    assert bench_throughput.variant_settings("lora_bf16", cfg)[:2][1] is False
    with pytest.raises(ValueError, match="unknown variant"):
        bench_throughput.variant_settings("fast", cfg)


def test_the_course_report_includes_the_benchmarks_when_present(tmp_path):
    bench = tmp_path / "results.md"
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    done = [course.NotebookResult(name="00_setup", status="ok", seconds=3.0)]
    md, html = course.write_report(done, run_dir, "cpu-tiny", bench=bench)
    assert "Benchmarks" not in md.read_text() and "Benchmarks" not in html.read_text()
    results.write_section("throughput", "Training throughput", ["| v | 1.50x |"], "python bench/t.py", bench,
                          where="box", when="2026-01-05")
    md, html = course.write_report(done, run_dir, "cpu-tiny", bench=bench)
    assert "### Training throughput" in md.read_text() and "2026-01-05 on box" in md.read_text()
    assert "| v | 1.50x |" in html.read_text()


def test_one_section_is_read_back_by_name(tmp_path):
    bench = tmp_path / "results.md"
    assert course.bench_results(bench, "throughput") is None
    results.write_section("throughput", "Training throughput", ["body"], "c", bench, where="m", when="2026-01-06")
    results.write_section("other", "Other", ["x"], "c", bench, where="m", when="2026-01-06")
    section = course.bench_results(bench, "throughput")
    assert section.startswith("## Training throughput") and section.endswith("body") and "Other" not in section
    assert course.bench_results(bench, "missing") is None


def test_child_result_returns_the_last_result_line_and_names_a_failed_child():
    import sys

    from bench.results import child_result

    code = "print('noise'); print('RESULT {\"a\": 1}'); print('RESULT {\"a\": 2}')"
    assert child_result([sys.executable, "-c", code], "ok-case") == {"a": 2}
    with pytest.raises(RuntimeError, match=r"bad-case failed:\n.*boom"):
        child_result([sys.executable, "-c", "import sys; sys.exit('boom')"], "bad-case")
    with pytest.raises(RuntimeError, match="silent-case failed"):
        child_result([sys.executable, "-c", "print('no result')"], "silent-case")
