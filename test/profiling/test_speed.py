"""`ood-perception benchmark` on tiny models: figures, files, targets, FLOP count, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from ood_perception.cli import main as cli
from ood_perception.models.backbones.dinov2 import DinoVisionTransformer, ViTConfig
from ood_perception.profiling.speed import (
    CASE_NAMES,
    STAGES,
    evaluate_targets,
    render_markdown,
    target_lines,
    vit_flops,
)

FAST = ["--tiny", "--warmup", "1", "--iterations", "1", "--official-iterations", "1",
        "--cameras", "2"]


@pytest.fixture
def benchmark_command(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(cli.COMMANDS, "benchmark", ("benchmark", "stage times, frame rates"))
    return lambda *args: cli.main(["benchmark", *args])


@pytest.fixture(scope="module")
def tiny_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, str, Path]:
    folder = tmp_path_factory.mktemp("benchmark")
    cli.COMMANDS.setdefault("benchmark", ("benchmark", "stage times, frame rates"))
    code = cli.main(["benchmark", *FAST, "--device", "cpu", "--json", str(folder / "b.json"),
                     "--markdown", str(folder / "b.md"), "--profile", "uem-single",
                     "--profile-output", str(folder / "profile.txt")])
    assert code == 0
    return json.loads((folder / "b.json").read_text()), (folder / "b.md").read_text(), folder


def test_every_case_has_positive_stage_times(tiny_report) -> None:
    report, _, _ = tiny_report
    assert list(report["cases"]) == list(CASE_NAMES)
    for name, case in report["cases"].items():
        assert set(case["stages_ms"]) == set(STAGES), name
        for stage in ("decode", "preprocess", "inference", "score", "postprocess",
                      "message_build"):
            assert case["stages_ms"][stage] > 0, (name, stage)
        assert case["stages_ms"]["upload"] == 0.0  # CPU: no host -> device copy
        assert case["fps"] > 0 and case["fps_with_decode"] < case["fps"]
        assert 0 < case["non_inference_share"] < 1
        assert case["iteration_ms"] >= case["stages_ms"]["inference"]
    cases = report["cases"]
    assert cases["uem-official"]["backbone_passes_per_frame"] == 2 * cases["uem-tiled"]["windows"]
    assert cases["uem-tiled"]["windows"] == 6 and cases["uem-tiled"]["input_size"] == [70, 126]
    assert cases["uem-official"]["precision"] == "fp32"
    assert cases["uem-single-cameras"]["cameras"] == 2
    assert cases["uno"]["model"] == "uno-m2f-swin-t"
    assert cases["dood"]["model"] == "dood-uem-dinov2-s"
    agreement = cases["uem-tiled"]["agreement_with_official"]
    assert agreement["max_rel"] < 1e-3 and agreement["mask_iou"] > 0.99


def test_environment_backbone_and_targets(tiny_report) -> None:
    report, markdown, folder = tiny_report
    env = report["environment"]
    assert env["torch"] == torch.__version__ and env["device"] == "cpu"
    assert env["peak_tflops_measured"] > 0
    backbone = report["backbone"]
    assert backbone["flops_per_pass"] == vit_flops(ViTConfig(embed_dim=384, num_heads=6),
                                                   (56, 84))
    assert backbone["windows_per_frame"] == 6 and backbone["runs"]["all_windows"]["batch"] == 6
    assert backbone["efficiency"] > 0
    assert [t["name"] for t in report["targets"]] == [
        "uem tiled / official frame rate", "backbone compute efficiency",
        "uem single-window frame rate", "uem single-window share outside inference",
        "uno frame rate"]
    assert "| uem-tiled | uem-dinov2-s-dd | product | fp32 |" in markdown
    assert markdown.count("\n| ") == 2 + len(CASE_NAMES)
    assert "(tiny models: not the real targets)" in markdown
    assert "aten::" in (folder / "profile.txt").read_text()
    assert render_markdown(report) == markdown  # the table can be rebuilt from the JSON


def test_targets_pass_and_miss_with_the_bound() -> None:
    def case(fps: float, inference: float, share: float) -> dict:
        stages = dict.fromkeys(STAGES, 0.1) | {"inference": inference}
        return {"fps": fps, "non_inference_share": share, "stages_ms": stages,
                "iteration_ms_with_decode": inference + 0.7}

    report = {"settings": {"tiny": False}, "cases": {
        "uem-tiled": case(9.0, 110.0, 0.01), "uem-official": case(0.8, 1250.0, 0.0),
        "uem-single": case(120.0, 7.0, 0.2), "uno": case(8.0, 125.0, 0.05)}}
    report["targets"] = evaluate_targets(report)
    passed = {t["name"]: t["passed"] for t in report["targets"]}
    assert passed == {"uem tiled / official frame rate": False,
                      "uem single-window frame rate": True,
                      "uem single-window share outside inference": False,
                      "uno frame rate": False}
    lines = target_lines(report)
    assert lines[0].startswith("MISS uem tiled / official frame rate: 11.2x (target >= 15x)")
    assert "off by 1.33x" in lines[0] and "largest stage inference 110.0 ms" in lines[0]
    assert lines[1] == "PASS uem single-window frame rate: 120 FPS (target >= 100 FPS)"
    assert "off by 1.33x" in lines[2]


@pytest.mark.parametrize("cfg", [ViTConfig(embed_dim=32, depth=2, num_heads=2, pos_grid=4),
                                 ViTConfig(embed_dim=48, depth=1, num_heads=2, pos_grid=4,
                                           ffn="swiglu", num_register_tokens=0)])
def test_vit_flops_equal_torch_flop_counter(cfg: ViTConfig) -> None:
    model = DinoVisionTransformer(cfg, (28, 42)).eval()
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as count:
        model(torch.randn(1, 3, 28, 42))
    assert count.get_total_flops() == vit_flops(cfg, (28, 42))


def test_official_vit_b_window_is_the_design_figure() -> None:
    assert vit_flops(ViTConfig(), (518, 1036)) / 1e12 == pytest.approx(0.746, abs=0.005)


@pytest.mark.parametrize("args, message", [
    (["--cases", "uem-tiled,bogus"], "unknown case(s) bogus"),
    (["--cases", ""], "no case to run"),
    (["--warmup", "0"], "warm-up"),
    (["--profile", "nope"], "--profile 'nope'"),
    (["--device", "cuda:7"] if not torch.cuda.is_available() else ["--cameras", "0"],
     "CUDA" if not torch.cuda.is_available() else "cameras"),
])
def test_bad_options_exit_2_with_one_line(benchmark_command, capsys, args, message) -> None:
    assert benchmark_command("--tiny", *args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and err[0].startswith("ood-perception benchmark")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_tiny_benchmark_on_cuda(benchmark_command, tmp_path: Path) -> None:
    assert benchmark_command(*FAST, "--device", "cuda", "--json", str(tmp_path / "b.json")) == 0
    report = json.loads((tmp_path / "b.json").read_text())
    assert report["environment"]["gpu"]
    tiled = report["cases"]["uem-tiled"]
    assert tiled["precision"] == "fp16" and tiled["cuda_graphs"]
    assert tiled["stages_ms"]["upload"] > 0
    assert report["cases"]["uem-official"]["cuda_graphs"] is False


def test_s2m_cases_report_their_refinement_stages(tiny_report) -> None:
    report, markdown, _ = tiny_report
    for name, variant in (("s2m", "sam-vit-b"), ("s2m-mobile", "mobile-sam")):
        case = report["cases"][name]
        assert case["sam_model"] == variant
        assert set(case["refine_ms"]) == {"sam_encoder", "box_prompts", "sam_decoder", "merge"}
        assert case["refine_ms"]["sam_encoder"] > 0
        assert case["iteration_ms"] > case["stages_ms"]["inference"] + case["refine_ms"][
            "sam_encoder"]
        assert f"{name} ({variant}): S2M refinement" in markdown
