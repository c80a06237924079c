import json

import pytest

from benchmarks import bench
from dejavu.training import callbacks


@pytest.mark.slow
def test_bench_quick_reports_every_section(tmp_path):
    bench.main(["--quick", "--out", str(tmp_path), "--rounds", "1"])
    result = json.loads((tmp_path / "bench.json").read_text())
    assert result["inference"]["ok"] and result["inference"]["same_outputs"]
    assert result["inference"]["baseline"] == result["inference"]["exported"]
    variants = [r["variant"] for r in result["overhead"]]
    assert variants[0] == "baseline" and len(variants) == 3
    assert all(r["s_per_step"] > 0 and r["memory_mb"] > 0 for r in result["overhead"])
    loss = {r["variant"]: r for r in result["loss"]}
    assert loss["CRM-R 20, LPIPS"]["operators"] < loss["CRM-R 20 batch norm, LPIPS"]["operators"]
    assert all(r["host_syncs"] == 0 and r["ms"] > 0 for r in result["loss"])
    assert loss["training step, CRM-R 20 steps, random blocks"]["operators"] > loss["training step, baseline"][
        "operators"]
    cases = {r["case"] for r in result["redaction"]["rows"]}
    assert {"clone (bandwidth floor)", "BandStop b=32", "scipy.fft.dctn band-stop b=32"} <= cases
    assert result["data"]["scenes_per_s_64x64_one_core"] > 0
    assert (tmp_path / "bench.md").is_file()


def test_bench_fails_when_the_export_carries_the_crm(tmp_path, monkeypatch):
    real = callbacks.export_inference_model

    def leaky(module, run_dir):  # the CRM in the inference model
        paths = real(module, run_dir)
        import torch

        torch.save({k: v for k, v in module.state_dict().items()}, paths["pt"])
        return paths

    monkeypatch.setattr(callbacks, "export_inference_model", leaky)
    with pytest.raises(SystemExit, match="BROKEN"):
        bench.main(["--quick", "--only", "inference", "--out", str(tmp_path)])


def test_saved_activations_leave_out_parameters():
    """Weights that autograd keeps for backward are resident anyway: only activations count."""
    import torch

    net = torch.nn.Conv2d(3, 19, 31, padding=15)  # 212 KiB of weights, a few KiB of activations
    step = bench.TrainStep(net, 19, None, torch.device("cpu"), amp=False, lpips=False, channels_last=False)
    x, y = torch.rand(1, 3, 4, 4), torch.randint(0, 19, (1, 4, 4))
    assert 0 < bench.saved_activation_bytes(step, x, y) < net.weight.numel() * 4 / 10


def test_dejavu_bench_from_an_installation_without_the_checkout_says_where_the_harness_is(tmp_path, monkeypatch):
    from dejavu.cli import benchmarks

    monkeypatch.setattr(benchmarks, "HARNESS", tmp_path / "benchmarks" / "bench.py")
    with pytest.raises(SystemExit, match=r"benchmarks/bench\.py of a source checkout"):
        benchmarks.bench(["--quick"])
