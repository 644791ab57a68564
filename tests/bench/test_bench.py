"""`sigjax bench` on its tiny workload: every field present, the arithmetic right."""

import json

import numpy as np
import pytest

from sigjax import bench, cli

MACHINE = {"platform", "device_kind", "devices", "cpu_count", "processor", "jax_version"}
WORKLOAD = {
    "workload",
    "members",
    "widths",
    "steps",
    "batch",
    "precision",
    "mflop_per_model_step",
    "total_tflop",
    "strategy",
    "plan",
    "compile_s",
    "wall_s",
    "member_steps_per_s",
    "gflops",
    "share_of_peak",
    "diverged",
    "host_peak_rss_bytes",
    "probe_steps",
    "recording_overhead",
    "plain_vmap_wall_s",
    "plan_speedup_vs_plain_vmap",
    "probe_wall_s",
}
TORCH = {"threads", "compile_s", "max_loss_rel_diff", "equal", "note", "wall_s", "sigjax_speedup"}


def _bench(capsys, *args):
    assert cli.main(["bench", "--workload", "tiny", "--steps", "5", "--json", *args]) == 0
    return json.loads(capsys.readouterr().out)


def _check_workload(w, peak):
    assert WORKLOAD <= set(w), WORKLOAD - set(w)
    widths = [40, 8, 8, 10]
    n_weights = 40 * 8 + 8 * 8 + 8 * 10  # 464
    assert w["widths"] == widths and w["members"] == 16 and w["steps"] == 5
    assert w["mflop_per_model_step"] == pytest.approx(6 * n_weights * 128 / 1e6)
    assert w["total_tflop"] == pytest.approx(6 * n_weights * 128 * 16 * 5 / 1e12)
    assert w["member_steps_per_s"] == pytest.approx(16 * 5 / w["wall_s"])
    assert w["gflops"] == pytest.approx(w["total_tflop"] * 1e3 / w["wall_s"])
    assert w["share_of_peak"] == pytest.approx(w["gflops"] / peak)
    assert w["compile_s"] > 0 and w["host_peak_rss_bytes"] > 0 and w["diverged"] == 0


def test_bench_json_has_every_field(capsys):
    out = _bench(capsys)
    assert MACHINE <= set(out["machine"])
    peak = out["gemm_peak"]
    assert peak["size"] == 2048 and peak["xla_gflops"] > 0 and peak["numpy_gflops"] > 0
    (w,) = out["workloads"]
    _check_workload(w, peak["xla_gflops"])
    assert w["precision"] == "float32" and "torch" not in w


@pytest.mark.slow  # two more bench workloads compiled
def test_bench_bf16_measures_its_effect(capsys):
    (w,) = _bench(capsys, "--precision", "bf16")["workloads"]
    assert w["precision"] == "bf16"
    assert w["bf16_speedup"] == pytest.approx(w["float32_wall_s"] / w["wall_s"])
    # bf16 keeps 8 mantissa bits: losses agree to a few parts in a thousand, not exactly
    assert 0 < w["bf16_loss_rel_diff_median"] < 2e-2
    assert 0 < w["bf16_grad_norm_rel_diff_median"] < 5e-2


def test_bench_compare_torch_equal_trajectories(capsys):
    pytest.importorskip("torch")
    (w,) = _bench(capsys, "--compare", "torch")["workloads"]
    assert set(w["torch"]) == {"loop", "func_vmap", "bmm_compile"}
    for recipe, entry in w["torch"].items():
        assert TORCH <= set(entry), (recipe, TORCH - set(entry))
        assert entry["equal"] and entry["max_loss_rel_diff"] <= 1e-4
        assert entry["sigjax_speedup"] == pytest.approx(entry["wall_s"] / w["wall_s"])


def test_torch_sees_sigjax_minibatches():
    # the indices handed to PyTorch are the rows sigjax's own step draws
    from sigjax import data as data_lib
    from sigjax.engine import train

    cfg = bench.workload_config(bench.WORKLOADS["tiny"], 3)
    data = data_lib.load(cfg.data)
    prog = train.program(cfg, data)
    import jax

    key = jax.random.key(7)
    x, y = prog._batch(data, key, 2)
    idx = data_lib.batch_indices(train.Program.data_key(key, 2), data.x_train.shape[0], 128)
    np.testing.assert_array_equal(np.asarray(data.x_train)[np.asarray(idx)], x)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--workload", "nope"], "unknown workload"),
        (["--workload", "tiny", "--members", "10"], "multiple of 16"),
        (["--workload", "tiny", "--steps", "0"], "--steps must be positive"),
    ],
)
def test_bench_bad_input_one_line_error(capsys, args, message):
    assert cli.main(["bench", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sigjax: error:") and message in err and err.count("\n") == 1
