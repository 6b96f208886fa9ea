"""Stage times and frame rates of the frame path on this machine (`ood-perception benchmark`).

Each case feeds sensor-format camera frames (bgr8 bytes) through `codec.decode_image`,
`Pipeline.process` with the torch backend and `codec.encode_image` of the score and mask
messages, so its figures are the node's without ROS transport. The official UEM protocol
(sequential windows, two backbone passes each, fp32) runs in the same process on the same
weights and frames: the speed targets (docs/speed.md) are ratios to it. The S2M cases add SAM
refinement (box prompts from the score's components, SAM's encoder and decoder, the merge) to
the single-window UEM case and report those stages apart; the DOoD case scores the same
segmentor with the diffusion head instead. Weights are random.
"""

from __future__ import annotations

import contextlib
import copy
import platform
import sys
import time
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch

from ood_perception.backends.torch import CudaGraphRunner, TorchBackend, precision_context
from ood_perception.core.codec import decode_image, encode_image
from ood_perception.core.parity import compare
from ood_perception.core.pipeline import Pipeline
from ood_perception.core.postprocess import PostprocessConfig
from ood_perception.core.refine import REFINE_STAGES, RefineConfig, Refiner
from ood_perception.errors import ConfigurationError
from ood_perception.models.backbones.dinov2 import ViTConfig
from ood_perception.models.deploy import DeployModel
from ood_perception.models.registry import ExportRequest, build_model
from ood_perception.models.uem.official import official_protocol

STAGES = ("decode", "upload", "preprocess", "inference", "score", "postprocess",
          "message_build")
STAGE_NOTES = {
    "decode": "sensor_msgs/Image bgr8 bytes -> RGB array (codec.decode_image), all cameras",
    "upload": "frames into pinned staging and host -> GPU (0 on the CPU path)",
    "preprocess": "resize to the model input and batch (on the GPU with CUDA)",
    "inference": "the deploy graph: normalisation, network, windows, score head",
    "score": "score and class maps to frame size and to the host (Pipeline resize_back)",
    "postprocess": "threshold, blob filtering, connected components (CPU)",
    "message_build": "32FC1 score and mono8 mask byte buffers (codec.encode_image)",
}
# The official windows (modeling/segmentation.py of the UEM code).
UEM_WINDOW, UEM_STRIDE = (518, 1036), 140
TINY_WINDOW, TINY_STRIDE = (56, 84), 28
# Obstacles are rare: the threshold keeps the top 1% of the first frame's pixels.
THRESHOLD_PERCENTILE = 99.0
MIN_OBSTACLE_AREA = 100
# Dense fp16/bf16 tensor-core peaks from the vendor data sheets (TFLOP/s), by name part.
SPEC_PEAK_TFLOPS = (("H200", 989.4), ("H100 PCIe", 756.0), ("H100", 989.4), ("A100", 312.0))
CASE_NAMES = ("uem-tiled", "uem-official", "uem-single", "uem-single-cameras", "uno", "s2m",
              "s2m-mobile", "dood")
REFINE_NOTES = {
    "sam_encoder": "SAM's image encoder on the model's input batch (whole batch)",
    "box_prompts": "component boxes: margin, merged fragments, top-K (per frame, summed)",
    "sam_decoder": "prompt encoder + mask decoder for every box of the batch (one call)",
    "merge": "masks to frame size, the S2M merge, obstacles of the map (per frame, summed)",
}
# The S2M cases' SAM: name -> (full-size variant, tiny stand-in for --tiny runs).
S2M_SAM = {"s2m": "sam-vit-b", "s2m-mobile": "mobile-sam"}


@dataclass(frozen=True)
class Settings:
    """What to run; `tiny` swaps in small models and frames so a CPU run takes seconds."""

    device: str = "cpu"
    precision: str = "fp32"
    frame_size: tuple[int, int] = (1080, 1920)
    warmup: int = 3
    iterations: int = 20
    official_iterations: int = 2
    cameras: int = 3
    cases: tuple[str, ...] = CASE_NAMES
    tiny: bool = False
    cuda_graphs: bool = True
    backbone: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        if self.warmup < 1 or self.iterations < 1 or self.official_iterations < 1:
            raise ConfigurationError("warm-up and iteration counts must be >= 1 (the first "
                                     "warm-up sets the threshold)")
        if self.cameras < 1:
            raise ConfigurationError(f"cameras must be >= 1, got {self.cameras}")
        if not self.cases:
            raise ConfigurationError(f"no case to run; choose from {', '.join(CASE_NAMES)}")
        unknown = [name for name in self.cases if name not in CASE_NAMES]
        if unknown:
            raise ConfigurationError(f"unknown case(s) {', '.join(unknown)}; choose from "
                                     f"{', '.join(CASE_NAMES)}")


@dataclass(frozen=True)
class Case:
    """One measured configuration."""

    name: str
    request: ExportRequest
    precision: str
    cameras: int = 1
    official: bool = False
    cuda_graphs: bool = True
    # SAM variant refining the frames (S2M cases), None for none.
    refine: str | None = None


def tiny_sam(variant: str):
    """A few-layer SAM at 256x256 (ViT or TinyViT, as `variant`) for --tiny runs."""
    from ood_perception.models.sam.image_encoder import SamViTConfig
    from ood_perception.models.sam.sam import SamConfig
    from ood_perception.models.sam.tiny_vit import TinyViTConfig

    if variant == "mobile-sam":
        return SamConfig(TinyViTConfig(img_size=256, embed_dims=(16, 32, 48, 320),
                                       num_heads=(1, 2, 3, 5)))
    return SamConfig(SamViTConfig(embed_dim=64, depth=2, num_heads=2, global_attn_indexes=(1,),
                                  img_size=256))


def build_sam_runner(case: Case, settings: Settings, input_size: tuple[int, int]):
    """The case's SAM (random weights) as a torch runner on the benchmark's device."""
    from ood_perception.backends.sam_torch import TorchSamRunner
    from ood_perception.models.sam.sam import Sam, sam_config

    torch.manual_seed(settings.seed)
    cfg = tiny_sam(case.refine) if settings.tiny else sam_config(case.refine)
    return TorchSamRunner.from_model(Sam(cfg).eval(), case.refine, input_size,
                                     device=settings.device, precision=case.precision,
                                     cuda_graphs=case.cuda_graphs)


def build_cases(settings: Settings) -> dict[str, Case]:
    """Every case, selected or not: UEM tiled at native scale and the official protocol beside it,
    UEM single-window with one and several cameras, UNO Mask2Former, and the DOoD score
    (default time steps) on the single-window UEM segmentor."""
    height, width = settings.frame_size
    if settings.tiny:
        uem, window, stride = "uem-dinov2-s", TINY_WINDOW, TINY_STRIDE
        uno = ExportRequest(model="uno-m2f-swin-t", random_init=True, input_size=(64, 128),
                            seed=settings.seed)
    else:
        uem, window, stride = "uem-dinov2-b", UEM_WINDOW, UEM_STRIDE
        uno = ExportRequest(model="uno-m2f-swin-l", random_init=True, input_size=(1024, 2048),
                            seed=settings.seed)
    tiled = ExportRequest(model=uem, variant="dd", random_init=True, input_size=(height, width),
                          window=window, stride=stride, seed=settings.seed)
    single = replace(tiled, input_size=window, stride=None, single_window=True)
    precision, graphs = settings.precision, settings.cuda_graphs
    return {
        "uem-tiled": Case("uem-tiled", tiled, precision, cuda_graphs=graphs),
        "uem-official": Case("uem-official", tiled, "fp32", official=True, cuda_graphs=False),
        "uem-single": Case("uem-single", single, precision, cuda_graphs=graphs),
        "uem-single-cameras": Case("uem-single-cameras", single, precision,
                                   cameras=settings.cameras, cuda_graphs=graphs),
        "uno": Case("uno", uno, precision, cuda_graphs=graphs),
        **{name: Case(name, single, precision, cuda_graphs=graphs, refine=variant)
           for name, variant in S2M_SAM.items()},
        "dood": Case("dood", replace(single, model=f"dood-{uem}"), precision,
                     cuda_graphs=graphs),
    }


def camera_buffers(count: int, size: tuple[int, int], seed: int = 0) -> list[bytes]:
    """bgr8 `sensor_msgs/Image` data of `count` road-like frames (sky/road split, noise)."""
    rng = np.random.default_rng(seed)
    height, width = size
    buffers = []
    for _ in range(count):
        frame = np.empty((height, width, 3), np.uint8)
        frame[: height // 2] = (200, 160, 120)
        frame[height // 2:] = (90, 90, 90)
        noise = rng.integers(-30, 31, size=frame.shape)
        buffers.append(np.clip(frame + noise, 0, 255).astype(np.uint8).tobytes())
    return buffers


def vit_flops(cfg: ViTConfig, size: tuple[int, int]) -> int:
    """FLOPs (2 per multiply-add) of one ViT forward at `size`: patch embedding, and per
    block the qkv, attention (QK^T and AV), projection and MLP matmuls."""
    grid = (size[0] // cfg.patch_size) * (size[1] // cfg.patch_size)
    tokens = grid + 1 + cfg.num_register_tokens
    dim = cfg.embed_dim
    hidden = int(dim * cfg.mlp_ratio)
    if cfg.ffn == "swiglu":
        hidden = (int(hidden * 2 / 3) + 7) // 8 * 8
        mlp = 2 * tokens * (dim * 2 * hidden + hidden * dim)
    else:
        mlp = 2 * tokens * 2 * dim * hidden
    block = 2 * tokens * 4 * dim * dim + 4 * tokens * tokens * dim + mlp
    patch = 2 * grid * dim * 3 * cfg.patch_size ** 2
    return cfg.depth * block + patch


def flops_ms(flops: int, tflops: float) -> float:
    """Milliseconds `flops` take at `tflops` TFLOP/s: the compute floor."""
    return flops / (tflops * 1e12) * 1000.0


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_peak_tflops(device: torch.device, precision: str, iterations: int = 10) -> float:
    """Dense matmul rate this device reaches (8192^3 on CUDA, 512^3 on CPU), TFLOP/s."""
    n = 8192 if device.type == "cuda" else 512
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(precision, torch.float32)
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    exact = dtype == torch.float32
    with precision_context(device, "fp32") if exact else contextlib.nullcontext():
        for _ in range(3):
            a @ b
        _synchronize(device)
        start = time.perf_counter()
        for _ in range(iterations):
            a @ b
        _synchronize(device)
    return 2 * n ** 3 * iterations / (time.perf_counter() - start) / 1e12


def _time_callable(fn, x: torch.Tensor, device: torch.device, iterations: int) -> float:
    """Mean ms of `fn(x)` after a warm-up (the CUDA graph capture, when `fn` is graphed)."""
    fn(x)
    _synchronize(device)
    start = time.perf_counter()
    for _ in range(iterations):
        fn(x)
    _synchronize(device)
    return (time.perf_counter() - start) * 1000.0 / iterations


def measure_backbone(deploy: DeployModel, settings: Settings, peak_tflops: float,
                     spec_tflops: float | None = None) -> dict:
    """The ViT of a sliding-window UEM model on its windows: ms per window at batch 1 and with
    all windows of a frame in one batch, against the compute floor (FLOPs at the GPU's peak)."""
    coverage = deploy.network.coverage
    window, windows = coverage.window, len(coverage.windows)
    device = torch.device(settings.device)
    vit = copy.deepcopy(coverage.network.segmentor.backbone.dinov2).to(device).eval()
    runs = {}
    for label, batch, precision in (("batch1", 1, settings.precision),
                                    ("all_windows", windows, settings.precision),
                                    ("batch1_fp32", 1, "fp32")):

        def forward(x, precision=precision):
            with torch.no_grad(), precision_context(device, precision):
                return vit(x)[0]

        graphed = settings.cuda_graphs and device.type == "cuda"
        fn = CudaGraphRunner(forward, device) if graphed else forward
        x = torch.randn(batch, 3, *window, device=device)
        iterations = max(1, settings.iterations // (4 if batch > 1 else 1))
        ms = _time_callable(fn, x, device, iterations)
        runs[label] = {"batch": batch, "precision": precision, "cuda_graph": graphed,
                       "ms": ms, "ms_per_window": ms / batch}
        del fn, x
    flops = vit_flops(vit.cfg, window)
    floor_ms = flops_ms(flops, peak_tflops)
    best = runs["all_windows"]["ms_per_window"]
    low_precision = settings.precision != "fp32"
    return {"window": list(window), "windows_per_frame": windows, "flops_per_pass": flops,
            "peak_tflops_measured": peak_tflops, "floor_ms": floor_ms, "runs": runs,
            "efficiency": floor_ms / best,
            "efficiency_vs_spec": flops_ms(flops, spec_tflops) / best
            if spec_tflops and low_precision else None}


def _iteration(pipeline: Pipeline, buffers: list[bytes], size: tuple[int, int]):
    """One camera round: decode, process, message buffers -> (stage ms, core ms, results)."""
    height, width = size
    start = time.perf_counter()
    frames = [decode_image("bgr8", height, width, width * 3, data) for data in buffers]
    decoded = time.perf_counter()
    results = pipeline.process(frames)
    processed = time.perf_counter()
    for result in results:
        encode_image(result.anomaly_score, "32FC1")
        encode_image(result.mask, "mono8")
    done = time.perf_counter()
    first = results[0].timings
    refine = {stage: first[stage] if stage in ("sam_encoder", "sam_decoder")
              else sum(r.timings[stage] for r in results)
              for stage in REFINE_STAGES if stage in first}
    stages = {
        "decode": (decoded - start) * 1000.0,
        "upload": first.get("upload", 0.0),
        "preprocess": first["preprocess"],
        "inference": first["inference"],
        "score": sum(r.timings["resize_back"] for r in results),
        "postprocess": sum(r.timings["postprocess"] for r in results),
        "message_build": (done - processed) * 1000.0,
    }
    return stages | refine, (done - decoded) * 1000.0, results


def run_case(case: Case, deploy: DeployModel, settings: Settings,
             buffers: list[bytes]) -> tuple[dict, np.ndarray]:
    """Measure one case -> (its report entry, the last score map of camera 0)."""
    model = official_protocol(deploy) if case.official else deploy
    backend = TorchBackend(model, device=settings.device, precision=case.precision,
                           cuda_graphs=case.cuda_graphs)
    refiner = None
    try:
        if case.refine is not None:
            refiner = Refiner(build_sam_runner(case, settings, deploy.info.input_size),
                              RefineConfig(mode="s2m"), score_range=deploy.info.score_range)
        pipeline = Pipeline(backend, PostprocessConfig(score_threshold=0.0), refiner=refiner)
        warmup = 1 if case.official else settings.warmup
        iterations = settings.official_iterations if case.official else settings.iterations
        samples, cores, obstacles = [], [], []
        for step in range(warmup + iterations):
            stages, core_ms, results = _iteration(pipeline, buffers[:case.cameras],
                                                  settings.frame_size)
            if step == 0:
                threshold = float(np.percentile(results[0].anomaly_score,
                                                THRESHOLD_PERCENTILE))
                pipeline.update_config(PostprocessConfig(
                    score_threshold=threshold, min_obstacle_area=MIN_OBSTACLE_AREA))
            if step >= warmup:
                samples.append(stages)
                cores.append(core_ms)
                obstacles.append(np.mean([len(r.obstacles) for r in results]))
        graphs = backend.graphs_captured
    finally:
        backend.close()
        if refiner is not None:
            refiner.runner.close()
    stages_ms = {stage: float(np.median([s[stage] for s in samples])) for stage in STAGES}
    refine_ms = {stage: float(np.median([s[stage] for s in samples]))
                 for stage in REFINE_STAGES if stage in samples[0]}
    core_ms = float(np.median(cores))
    total_ms = core_ms + stages_ms["decode"]
    tiling = deploy.info.tiling
    windows = tiling.get("windows", 1)
    entry = {
        "model": deploy.info.model_name,
        "protocol": "official" if case.official else "product",
        "precision": case.precision, "cuda_graphs": graphs,
        "input_size": list(deploy.info.input_size), "tiling": tiling.get("mode", "single"),
        "windows": windows,
        "backbone_passes_per_frame": windows * (2 if case.official else 1),
        "cameras": case.cameras, "frame_size": list(settings.frame_size),
        "iterations": len(samples), "threshold": threshold,
        "obstacles_per_frame": float(np.mean(obstacles)),
        "stages_ms": stages_ms,
        "other_ms": core_ms - sum(v for k, v in stages_ms.items() if k != "decode")
        - sum(refine_ms.values()),
        "iteration_ms": core_ms, "iteration_ms_with_decode": total_ms,
        "frame_ms": core_ms / case.cameras,
        "fps": case.cameras * 1000.0 / core_ms,
        "fps_with_decode": case.cameras * 1000.0 / total_ms,
        "non_inference_share": 1.0 - stages_ms["inference"] / total_ms,
    }
    if refine_ms:
        entry |= {"sam_model": case.refine, "refine_ms": refine_ms}
    return entry, results[0].anomaly_score


def environment(device: torch.device) -> dict:
    """GPU, versions and host: what the figures depend on."""
    info = {"python": platform.python_version(), "torch": torch.__version__,
            "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
            "cpu": _cpu_name(), "cpu_threads": torch.get_num_threads(), "device": str(device),
            "gpu": None}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info |= {"gpu": props.name, "compute_capability": f"{props.major}.{props.minor}",
                 "multiprocessors": props.multi_processor_count,
                 "gpu_memory_gib": round(props.total_memory / 2**30, 1)}
    return info


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def spec_peak_tflops(gpu: str | None) -> float | None:
    """Data-sheet dense fp16 peak of a known GPU, None for others."""
    for part, tflops in SPEC_PEAK_TFLOPS:
        if gpu and part in gpu:
            return tflops
    return None


def run_benchmark(settings: Settings, log=None) -> dict:
    """All selected cases, the backbone efficiency and the targets, as one JSON-able dict."""
    log = log or (lambda line: print(line, file=sys.stderr, flush=True))
    device = torch.device(settings.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigurationError(f"device {settings.device!r} needs CUDA, which torch does "
                                 "not see; use --device cpu (with --tiny)")
    all_cases = build_cases(settings)
    cases = {name: all_cases[name] for name in CASE_NAMES if name in settings.cases}
    buffers = camera_buffers(max(c.cameras for c in cases.values()), settings.frame_size,
                             settings.seed)
    report = {"command": sys.argv, "environment": environment(device),
              "settings": asdict(settings), "stage_notes": STAGE_NOTES | REFINE_NOTES,
              "cases": {}}
    peak = measure_peak_tflops(device, settings.precision)
    report["environment"] |= {"peak_tflops_measured": peak,
                              "peak_tflops_spec": spec_peak_tflops(report["environment"]["gpu"])}
    deploys: dict[ExportRequest, DeployModel] = {}
    # The backbone first and UNO last: a Swin model whose CUDA graph capture fails (and
    # falls back to eager) cannot disturb the other measurements.
    if settings.backbone:
        log("benchmark: backbone efficiency")
        tiled = all_cases["uem-tiled"].request
        deploys[tiled] = build_model(tiled)
        report["backbone"] = measure_backbone(deploys[tiled], settings, peak,
                                              report["environment"]["peak_tflops_spec"])
    scores = {}
    for name, case in cases.items():
        if case.request not in deploys:
            deploys[case.request] = build_model(case.request)
        log(f"benchmark: {name} ({case.request.model}, {case.precision}, "
            f"{case.cameras} camera(s))")
        report["cases"][name], scores[name] = run_case(case, deploys[case.request], settings,
                                                       buffers)
        if device.type == "cuda":
            torch.cuda.empty_cache()
    if "uem-tiled" in scores and "uem-official" in scores:
        report["cases"]["uem-tiled"]["agreement_with_official"] = compare(
            scores["uem-official"], scores["uem-tiled"]).to_dict()
    report["targets"] = evaluate_targets(report)
    return report


def _largest_stage(entry: dict) -> str:
    stage, ms = max(entry["stages_ms"].items(), key=lambda item: item[1])
    return f"largest stage {stage} {ms:.1f} ms of {entry['iteration_ms_with_decode']:.1f} ms"


def evaluate_targets(report: dict) -> list[dict]:
    """The speed targets (docs/speed.md) from the measured figures; each says passed or by
    how much it missed."""
    cases, targets = report["cases"], []

    def add(name: str, value: float, target: float, higher: bool, unit: str, bound: str):
        passed = value >= target if higher else value <= target
        short = (target / value if higher else value / target) if value else float("inf")
        targets.append({"name": name, "value": value, "target": target,
                        "higher_is_better": higher, "unit": unit, "passed": passed,
                        "miss_factor": None if passed else short, "bound": bound})

    if "uem-tiled" in cases and "uem-official" in cases:
        tiled, official = cases["uem-tiled"], cases["uem-official"]
        add("uem tiled / official frame rate", tiled["fps"] / official["fps"], 15.0, True, "x",
            f"tiled {tiled['fps']:.2f} FPS, official {official['fps']:.3f} FPS; "
            + _largest_stage(tiled))
    if "backbone" in report:
        backbone = report["backbone"]
        add("backbone compute efficiency", backbone["efficiency"], 0.5, True, "of floor",
            f"{backbone['runs']['all_windows']['ms_per_window']:.2f} ms per window vs floor "
            f"{backbone['floor_ms']:.3g} ms at {backbone['peak_tflops_measured']:.3g} TFLOP/s")
    if "uem-single" in cases:
        single = cases["uem-single"]
        add("uem single-window frame rate", single["fps"], 100.0, True, "FPS",
            _largest_stage(single))
        add("uem single-window share outside inference", single["non_inference_share"], 0.15,
            False, "of frame time", _largest_stage(single))
    if "uno" in cases:
        add("uno frame rate", cases["uno"]["fps"], 10.0, True, "FPS", _largest_stage(cases["uno"]))
    return targets


def target_lines(report: dict) -> list[str]:
    """One PASS / MISS line per target."""
    lines = []
    note = " (tiny models: not the real targets)" if report["settings"]["tiny"] else ""
    for target in report["targets"]:
        relation = ">=" if target["higher_is_better"] else "<="
        space = "" if target["unit"] == "x" else " "
        text = (f"{target['name']}: {target['value']:.3g}{space}{target['unit']} "
                f"(target {relation} {target['target']:g}{space}{target['unit']})")
        if target["passed"]:
            lines.append(f"PASS {text}{note}")
        else:
            lines.append(f"MISS {text}, off by {target['miss_factor']:.2f}x; "
                         f"{target['bound']}{note}")
    return lines


def render_markdown(report: dict) -> str:
    """The markdown table (docs/speed.md): environment, one row per case, backbone, targets."""
    env, settings = report["environment"], report["settings"]
    height, width = settings["frame_size"]
    where = env["gpu"] or f"CPU ({env['cpu']}, {env['cpu_threads']} threads)"
    lines = [
        f"{where}; torch {env['torch']}, CUDA {env['cuda']}, cuDNN {env['cudnn']}, Python "
        f"{env['python']}; camera frames {width}x{height} bgr8; medians of "
        f"{settings['iterations']} iterations ({settings['official_iterations']} for the "
        f"official protocol) after {settings['warmup']} warm-up; random weights"
        + ("; tiny models" if settings["tiny"] else "") + ".",
        "",
        "| case | model | protocol | precision | input | windows x passes | cameras | "
        + " | ".join(STAGES).replace("_", " ") + " | frame ms | FPS | outside inference |",
        "| --- " * (11 + len(STAGES)) + "|",
    ]
    for name, case in report["cases"].items():
        stages = " | ".join(f"{case['stages_ms'][stage]:.2f}" for stage in STAGES)
        input_size = "x".join(str(v) for v in reversed(case["input_size"]))
        windows = f"{case['windows']} x {case['backbone_passes_per_frame'] // case['windows']}"
        lines.append(
            f"| {name} | {case['model']} | {case['protocol']} | {case['precision']}"
            f"{' graph' if case['cuda_graphs'] else ''} | {input_size} | {windows} | "
            f"{case['cameras']} | {stages} | {case['frame_ms']:.2f} | {case['fps']:.2f} | "
            f"{case['non_inference_share']:.0%} |")
    lines.append("")
    lines.append("Stage times are ms per camera round (all cameras); FPS counts frames from "
                 "decoded frame in to message buffers out (decode excluded).")
    for name, case in report["cases"].items():
        if "refine_ms" in case:
            stages = ", ".join(f"{stage.replace('_', ' ')} {ms:.2f}"
                               for stage, ms in case["refine_ms"].items())
            lines.append(f"{name} ({case['sam_model']}): S2M refinement ms per camera round: "
                         f"{stages} (included in its frame ms and FPS).")
    tiled = report["cases"].get("uem-tiled", {}).get("agreement_with_official")
    if tiled:
        lines.append(f"Tiled vs official protocol on the same frame: max score difference "
                     f"{tiled['max_abs']:.3g} ({tiled['max_rel']:.2%} of the spread), obstacle "
                     f"mask IoU {tiled['mask_iou']:.4f}.")
    if "backbone" in report:
        backbone = report["backbone"]
        runs = backbone["runs"]
        lines.append(
            f"Backbone (ViT, {backbone['window'][0]}x{backbone['window'][1]} windows, "
            f"{backbone['flops_per_pass'] / 1e9:.4g} GFLOP per pass): "
            f"{runs['batch1']['ms']:.2f} ms at batch 1, "
            f"{runs['all_windows']['ms_per_window']:.2f} ms per window with "
            f"{backbone['windows_per_frame']} windows batched "
            f"({runs['all_windows']['precision']}), {runs['batch1_fp32']['ms']:.2f} ms fp32 "
            f"batch 1; floor {backbone['floor_ms']:.3g} ms at the measured "
            f"{backbone['peak_tflops_measured']:.3g} TFLOP/s -> efficiency "
            f"{backbone['efficiency']:.0%}"
            + (f" ({backbone['efficiency_vs_spec']:.0%} of the data-sheet peak)."
               if backbone.get("efficiency_vs_spec") else "."))
    lines.append("")
    lines += [f"- {line}" for line in target_lines(report)]
    return "\n".join(lines) + "\n"


def profile_case(case: Case, settings: Settings, buffers: list[bytes], row_limit: int = 30) -> str:
    """Kernel/operator table of one eager iteration of `case` (CUDA graphs hide kernels)."""
    from torch.profiler import ProfilerActivity, profile

    deploy = build_model(case.request)
    model = official_protocol(deploy) if case.official else deploy
    backend = TorchBackend(model, device=settings.device, precision=case.precision,
                           cuda_graphs=False)
    try:
        pipeline = Pipeline(backend, PostprocessConfig(score_threshold=0.0))
        _iteration(pipeline, buffers[:case.cameras], settings.frame_size)
        activities = [ProfilerActivity.CPU]
        if settings.device.startswith("cuda"):
            activities.append(ProfilerActivity.CUDA)
        with profile(activities=activities) as prof:
            _iteration(pipeline, buffers[:case.cameras], settings.frame_size)
    finally:
        backend.close()
    key = "self_device_time_total" if settings.device.startswith("cuda") else "self_cpu_time_total"
    return prof.key_averages().table(sort_by=key, row_limit=row_limit)
