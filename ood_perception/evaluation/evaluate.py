"""The evaluate engine: exact pixel metrics and SMIYC component metrics over a score source.

Two passes: the first streams every frame into the exact pixel accumulator (AP, AUROC,
FPR95) and finds the best-F1 pixel threshold; the second computes the component metrics at
that threshold (SMIYC's own choice) from the same score maps (re-read from disk, or cached as
.npy while the model runs). A fixed `component_threshold` makes it one pass.
"""

from __future__ import annotations

import math
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ood_perception.errors import ConfigurationError
from ood_perception.evaluation.component_metrics import ComponentConfig, ComponentMetrics
from ood_perception.evaluation.datasets import (
    Dataset,
    LabelSpec,
    load_score_label,
    score_label_pairs,
)
from ood_perception.evaluation.pixel_metrics import PixelMetrics
from ood_perception.evaluation.report import WorstFrames
from ood_perception.evaluation.s2m_metrics import S2MMetrics

Frame = tuple[str, "np.ndarray | None", np.ndarray, np.ndarray]  # name, rgb, score, label
# A refined model run adds the frame's S2M map (float32 in [0, 1]).
RefinedFrame = tuple[str, "np.ndarray | None", np.ndarray, np.ndarray, np.ndarray]
# pixel_metrics follows the benchmarks (FPR95 1.0, sweep 0.0) on a set without anomaly
# pixels; the results say "undefined" instead.
UNDEFINED_WITHOUT_ANOMALIES = ("fpr95", "auiou", "mean_f1")
TRACKS = ("auto", "anomaly", "obstacle")


@dataclass(frozen=True)
class EvaluationConfig:
    """What to compute and keep; `component_threshold` None = the best pixel-F1 threshold."""

    component_threshold: float | None = None
    track: str = "auto"  # SMIYC size thresholds: "anomaly", "obstacle" or the source's own
    components: bool = True
    key_precision: str = "float32"  # score keys of the exact accumulator
    sweep_range: tuple[float, float] = (0.0, 1.0)  # the 100-threshold AuIoU / mean-F1 sweep
    report: Path | None = None  # report.md, curves and worst frames go here
    worst: int = 8  # worst frames shown in the report
    save_scores: Path | None = None  # keep a model's maps as <name>.npy here

    def validate(self, names: dict[str, str] | None = None) -> None:
        """Refuse settings that would give meaningless figures, before any frame is read;
        `names` maps field names to what the user wrote (CLI flags)."""
        names = names or {}
        threshold = self.component_threshold
        if threshold is not None and not math.isfinite(threshold):
            raise ConfigurationError(f"{names.get('component_threshold', 'component_threshold')}"
                                     f" must be a finite number, not {threshold}")
        lo, hi = self.sweep_range
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise ConfigurationError(f"{names.get('sweep_range', 'sweep_range')} needs finite "
                                     f"LO < HI, not {lo} {hi}")
        if self.track not in TRACKS:
            raise ConfigurationError(f"{names.get('track', 'track')} must be one of "
                                     f"{', '.join(TRACKS)}, got {self.track!r}")


@dataclass
class Source:
    """Frames of scores and labels, iterable more than once (`frames()` starts over)."""

    name: str
    track: str
    count: int
    frames: Callable[[], Iterator[Frame]]
    dataset: Dataset | None = None  # the labels of a model run's second pass
    refined_frames: Callable[[], Iterator[RefinedFrame]] | None = None  # with S2M maps
    # Seconds a model run spent on each frame (scoring, refinement; decoding excluded).
    seconds: list[float] = field(default_factory=list)


def saved_source(scores: Path, labels: Path, spec: LabelSpec, label_suffix: str = "") -> Source:
    """Precomputed `.npy` score maps of any method with their label PNGs."""
    pairs = score_label_pairs(scores, labels, spec, label_suffix)

    def saved() -> Iterator[Frame]:
        for name, score_path, label_path in pairs:
            score, label = load_score_label(score_path, label_path, spec)
            yield name, None, score, label

    return Source(str(scores), "anomaly", len(pairs), saved)


def model_source(name: str, dataset: Dataset,
                 score: Callable[[np.ndarray], np.ndarray]) -> Source:
    """A dataset scored frame by frame by `score` (RGB uint8 HxWx3 -> float32 HxW)."""
    seconds: list[float] = []

    def scored() -> Iterator[Frame]:
        for frame_name, rgb, label in dataset:
            start = time.perf_counter()
            frame_score = np.asarray(score(rgb), np.float32)
            seconds.append(time.perf_counter() - start)
            yield frame_name, rgb, frame_score, label

    return Source(model_source_name(name, dataset), dataset.track, len(dataset), scored,
                  dataset, seconds=seconds)


def model_source_name(name: str, dataset: Dataset) -> str:
    """What the results call a model run on a dataset (the same for every way it runs)."""
    return f"{name} on {dataset.root} ({dataset.format})"


@dataclass
class ScoreCache:
    """A model's pass-one score maps on disk, listed in frame order for the second pass."""

    folder: Path
    named: bool  # save_scores: <name>.npy; otherwise <index>.npy, which never collide
    paths: list[Path] = field(default_factory=list)

    def path_for(self, index: int, name: str) -> Path:
        """Where the map of the `index`-th frame, called `name`, is kept."""
        return self.folder / f"{name if self.named else index}.npy"

    def save(self, name: str, score: np.ndarray) -> None:
        """Keep one frame's map; pass two reads `paths` in this order, never by name."""
        path = self.path_for(len(self.paths), name)
        with writing(path):
            np.save(path, score)
        self.paths.append(path)


@contextmanager
def writing(path: Path) -> Iterator[None]:
    """An OSError while writing an output ends the run with one line naming the output."""
    try:
        yield
    except OSError as error:
        raise ConfigurationError(f"cannot write {path}: {error}") from error


def _progress(iterable, total: int, desc: str):
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, unit="frame", file=sys.stderr)


def frame_ap(score: np.ndarray, label: np.ndarray) -> float:
    """AP of one frame alone (NaN without anomaly pixels), to rank the worst frames."""
    single = PixelMetrics()
    single.update(score, label)
    return single.ap()


def refined_model_source(name: str, dataset: Dataset,
                         process: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]) -> Source:
    """A dataset scored and refined by S2M frame by frame: `process(rgb)` -> (score, S2M map)."""

    seconds: list[float] = []

    def refined() -> Iterator[RefinedFrame]:
        for frame_name, rgb, label in dataset:
            start = time.perf_counter()
            score, s2m_map = process(rgb)
            seconds.append(time.perf_counter() - start)
            yield frame_name, rgb, np.asarray(score, np.float32), label, s2m_map

    def scored() -> Iterator[Frame]:
        for frame in refined():
            yield frame[:4]

    return Source(model_source_name(name, dataset), dataset.track, len(dataset), scored,
                  dataset, refined, seconds)


class RefinedMetrics:
    """The S2M maps' metrics: pixel (AP, AUROC, FPR95), SMIYC components of the obstacle mask
    (map > 0) and S2M's own over [0, 1]."""

    def __init__(self, config: EvaluationConfig, track: str):
        self.pixels = PixelMetrics(key_dtype=config.key_precision)
        self.components = (ComponentMetrics(ComponentConfig.for_track(track, 0.0))
                           if config.components else None)
        self.s2m = S2MMetrics(0.0, 1.0)

    def update(self, s2m_map: np.ndarray, label: np.ndarray) -> None:
        self.pixels.update(s2m_map, label)
        self.s2m.update(s2m_map, label)
        if self.components is not None:
            self.components.update(s2m_map, label)

    def summary(self) -> dict:
        pixels = self.pixels.summary()
        result = {key: pixels[key] for key in ("ap", "auroc", "fpr95")}
        if pixels["positive_pixels"] == 0:
            result["fpr95"] = float("nan")
        result["s2m"] = self.s2m.summary() | {"range": [0.0, 1.0]}
        if self.components is not None:
            result["components"] = self.components.summary()
        return result


def _split_refined(frames: Iterable[RefinedFrame], refined: RefinedMetrics) -> Iterator[Frame]:
    """The raw-score frames of a refined run; their S2M maps go into `refined`."""
    for name, rgb, score, label, s2m_map in frames:
        refined.update(s2m_map, label)
        yield name, rgb, score, label


def evaluate(source: Source, config: EvaluationConfig) -> dict:
    """Both passes; returns the results dict (also what `--json` writes)."""
    config.validate()
    if config.save_scores is not None and source.dataset is None:
        raise ConfigurationError("saving scores keeps a model's score maps; precomputed maps "
                                 "have none to keep")
    pixels = PixelMetrics(key_dtype=config.key_precision)
    worst = worst_frames(config)
    track = source.track if config.track == "auto" else config.track
    inline = inline_components(config, track)
    s2m = S2MMetrics(*config.sweep_range)
    refined = None if source.refined_frames is None else RefinedMetrics(config, track)
    frames = (source.frames() if refined is None
              else _split_refined(source.refined_frames(), refined))
    with _score_cache(source, config) as cache:
        first_pass(_progress(frames, source.count, "evaluate"), pixels, s2m, worst, inline,
                   cache)
        components = inline
        if needs_second_pass(config):
            components = ComponentMetrics(second_pass_config(track, pixels))
            frames = source.frames() if cache is None else cached_frames(cache, source.dataset)
            second_pass(_progress(frames, source.count, "components"), components)
    results = finish(pixels, s2m, components, worst, source.name, config, track, refined)
    if source.seconds:
        results["speed"] = speed(source.seconds)
    return results


def speed(seconds: list[float]) -> dict:
    """Frames per second of a model run; the first frame (the runtime's warm-up) is left out
    when there are others."""
    steady = seconds[1:] or seconds
    total = sum(steady)
    return {"frames_per_second": len(steady) / total if total > 0 else float("inf"),
            "ms_per_frame": 1000 * total / len(steady)}


def worst_frames(config: EvaluationConfig, start: int = 0) -> WorstFrames:
    """The report's worst-frame keeper (keeps none without a report); `start`: the index of
    the first frame it will see, so keepers of several shards merge as one would have kept."""
    return WorstFrames(config.worst if config.report else 0, start=start)


def inline_components(config: EvaluationConfig, track: str) -> ComponentMetrics | None:
    """Component metrics gathered in pass one, where the threshold is fixed beforehand."""
    if config.components and config.component_threshold is not None:
        return ComponentMetrics(ComponentConfig.for_track(track, config.component_threshold))
    return None


def needs_second_pass(config: EvaluationConfig) -> bool:
    """Components at the best-F1 threshold, known only once every frame is in."""
    return config.components and config.component_threshold is None


def second_pass_config(track: str, pixels: PixelMetrics) -> ComponentConfig:
    """SMIYC's choice: the pixel threshold of the best F1 (none without anomalies)."""
    best = pixels.best_f1_point()
    return ComponentConfig.for_track(track, best.threshold if best is not None else float("inf"))


def first_pass(frames: Iterable[Frame], pixels: PixelMetrics, s2m: S2MMetrics,
               worst: WorstFrames, inline: ComponentMetrics | None,
               cache: ScoreCache | None) -> None:
    """Every frame into the exact pixel accumulator and S2M's per-image metrics (and the
    worst frames, the inline components, the score cache)."""
    for name, rgb, score, label in frames:
        pixels.update(score, label)
        s2m.update(score, label)
        if worst.count:
            worst.offer(name, frame_ap(score, label), rgb, score, label)
        if inline is not None:
            inline.update(score, label)
        if cache is not None:
            cache.save(name, score)


def second_pass(frames: Iterable[Frame], components: ComponentMetrics) -> None:
    for _, _, score, label in frames:
        components.update(score, label)


def finish(pixels: PixelMetrics, s2m: S2MMetrics, components: ComponentMetrics | None,
           worst: WorstFrames, source: str, config: EvaluationConfig, track: str,
           refined: RefinedMetrics | None = None) -> dict:
    """The results of accumulated metrics, and the report where one is asked for."""
    from ood_perception.evaluation.report import write_markdown

    results = results_dict(pixels, components, source, config)
    results["s2m"] = {**s2m.summary(), "range": list(config.sweep_range)}
    if components is not None:
        results["components"]["track"] = track
    if refined is not None:
        results["refined"] = refined.summary() | {"track": track}
    if config.report:
        with writing(config.report):
            write_markdown(results, pixels.curve(), worst, config.report)
    return results


@contextmanager
def _score_cache(source: Source, config: EvaluationConfig) -> Iterator[ScoreCache | None]:
    """Where a model run keeps its maps for pass two: `save_scores` or a temporary folder.

    None for precomputed maps, which pass two reads again from their folder.
    """
    second_pass = config.components and config.component_threshold is None
    if source.dataset is None or (config.save_scores is None and not second_pass):
        yield None
    elif config.save_scores is not None:
        with writing(config.save_scores):
            config.save_scores.mkdir(parents=True, exist_ok=True)
        yield ScoreCache(config.save_scores, named=True)
    else:
        with tempfile.TemporaryDirectory(
            prefix="ood_eval_scores_", ignore_cleanup_errors=True
        ) as folder:
            yield ScoreCache(Path(folder), named=False)


def cached_frames(cache: ScoreCache, dataset: Dataset) -> Iterator[Frame]:
    """Second pass of a model run: pass one's maps in frame order, labels read again."""
    for (name, _, label_path), path in zip(dataset.items, cache.paths, strict=True):
        yield name, None, np.load(path), dataset.label(label_path)


def results_dict(pixels: PixelMetrics, components: ComponentMetrics | None, source: str,
                 config: EvaluationConfig) -> dict:
    """The figures of accumulated metrics as the JSON results (NaN where undefined)."""
    summary = pixels.summary()
    at95 = pixels.point_at_tpr(0.95)
    best = pixels.best_f1_point()
    results = {
        "source": source,
        "ap": summary["ap"],
        "auroc": summary["auroc"],
        "fpr95": summary["fpr95"],
        "best_iou": summary["best_iou"],
        **pixels.threshold_sweep(*config.sweep_range),
        "thresholds": {
            "tpr95": at95.threshold if at95 else None,
            "best_f1": best.threshold if best else None,
            "best_f1_value": best.f1 if best else None,
        },
        "counts": {k: summary[k] for k in ("frames", "positive_pixels", "negative_pixels",
                                           "ignored_pixels", "distinct_scores")},
        "key_precision": config.key_precision,
    }
    if summary["positive_pixels"] == 0:
        results.update(dict.fromkeys(UNDEFINED_WITHOUT_ANOMALIES, float("nan")))
    if components is not None:
        results["components"] = components.summary()
    return results
