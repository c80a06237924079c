import json

import pytest

from dejavu import bench
from dejavu.training import callbacks


def test_bench_quick_reports_every_section(tmp_path):
    bench.main(["--quick", "--out", str(tmp_path), "--rounds", "1"])
    result = json.loads((tmp_path / "bench.json").read_text())
    assert result["inference"]["ok"] and result["inference"]["same_outputs"]
    assert result["inference"]["baseline"] == result["inference"]["exported"]
    variants = [r["variant"] for r in result["overhead"]]
    assert variants[0] == "baseline" and len(variants) == 3
    assert all(r["s_per_step"] > 0 and r["memory_mb"] > 0 for r in result["overhead"])
    cases = {r["case"] for r in result["redaction"]["rows"]}
    assert {"clone (bandwidth floor)", "BandStop b=32", "scipy.fft.dctn band-stop b=32"} <= cases
    assert result["data"]["scenes_per_s_64x64_one_core"] > 0
    assert (tmp_path / "bench.md").is_file()


def test_bench_fails_when_the_export_carries_the_crm(tmp_path, monkeypatch):
    real = callbacks.export_inference_model

    def leaky(module, run_dir):  # a regression: the CRM ends up in the inference model
        paths = real(module, run_dir)
        import torch

        torch.save({k: v for k, v in module.state_dict().items()}, paths["pt"])
        return paths

    monkeypatch.setattr(callbacks, "export_inference_model", leaky)
    with pytest.raises(SystemExit, match="BROKEN"):
        bench.main(["--quick", "--only", "inference", "--out", str(tmp_path)])
