"""The evaluation harness: a fixed synthetic suite and runners that score any method on it.

Methods are plain callables, passed in a dict ``{name: callable}`` (no registry), so a CWM probe
is scored the same way as a baseline::

    from cwm.evaluation import default_suite, make_suite_scenes, run_flow_suite
    scenes = make_suite_scenes(default_suite())
    report = run_flow_suite({"dis": dis_flow, "cwm": lambda f0, f1: predictor.flow(f0, f1).flow},
                            scenes)

- flow methods: ``(frame0, frame1) -> flow [H, W, 2]`` float ``(dx, dy)``;
- occlusion methods: ``(frame0, frame1) -> [H, W]`` bool (True = not visible in frame 1);
- depth methods: ``(frame0, frame1) -> inverse depth [H, W]`` (larger = nearer), scored on
  the stereo scenes only (frame1 is the right view);
- segment methods: ``(frame0, frame1, points [N, 2]) -> masks [N, H, W]`` bool, one mask per
  ``(x, y)`` prompt: the most interior pixel of each object (:func:`prompt_points`).

Scores are averaged per scene (each scene weighs the same, whatever its size), except occlusion
precision/recall/F1, which pool pixel counts over the suite.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from cwm import metrics
from cwm.errors import ConfigError
from cwm.synthetic import PRESETS, Scene, make_scene

PairMethod = Callable[[np.ndarray, np.ndarray], np.ndarray]
SegmentMethod = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]

SUITE_NAME = "synthetic-v1"
# The fixed suite: 100 scenes = 5 motion presets x 2 sizes x 10 scenes, each scene with its own
# seed from SUITE_SEEDS, in that order. Changing these constants changes every number reported
# against the suite: bump SUITE_NAME if you do.
SUITE_PRESETS = ("camera", "objects", "roll_zoom", "parts", "stereo")
SUITE_SIZES = ((64, 64), (128, 128))
SCENES_PER_CELL = 10
SUITE_SEEDS = tuple(range(1000, 1100))
QUICK_SCENES_PER_CELL = 2


@dataclass(frozen=True)
class SuiteEntry:
    """One scene of a suite: ``make_scene(seed, size, preset=preset)``, two frames."""

    seed: int
    size: tuple[int, int]
    preset: str


def default_suite(quick: bool = False) -> tuple[SuiteEntry, ...]:
    """The fixed 100-scene suite, in a stable order; ``quick`` keeps 2 scenes per cell (20)."""
    per_cell = QUICK_SCENES_PER_CELL if quick else SCENES_PER_CELL
    cells = [(preset, size) for preset in SUITE_PRESETS for size in SUITE_SIZES]
    seeds = iter(SUITE_SEEDS)
    entries = []
    for preset, size in cells:
        cell_seeds = [next(seeds) for _ in range(SCENES_PER_CELL)]
        entries += [SuiteEntry(seed, size, preset) for seed in cell_seeds[:per_cell]]
    return tuple(entries)


def suite_description(entries: Sequence[SuiteEntry]) -> dict:
    """JSON-ready description of a suite, for reports."""
    return {"name": SUITE_NAME, "num_scenes": len(entries),
            "presets": sorted({e.preset for e in entries}),
            "sizes": [list(size) for size in sorted({e.size for e in entries})],
            "seeds": sorted({e.seed for e in entries})}


def make_suite_scenes(entries: Sequence[SuiteEntry]) -> list[Scene]:
    """Generate the scenes of a suite (deterministic)."""
    for entry in entries:
        if entry.preset not in PRESETS:
            raise ConfigError(f"suite entry {asdict(entry)} names unknown preset {entry.preset!r}")
    return [make_scene(e.seed, e.size, preset=e.preset) for e in entries]


def _timed(method: PairMethod, frame0: np.ndarray, frame1: np.ndarray) -> tuple[np.ndarray, float]:
    start = time.perf_counter()
    out = method(frame0, frame1)
    return np.asarray(out), time.perf_counter() - start


def run_flow_suite(methods: Mapping[str, PairMethod], scenes: Sequence[Scene]) -> dict[str, dict]:
    """Score flow methods on the first pair of each scene.

    Returns ``{name: {"epe", "epe_noc", "epe_occ", "fl_all", "acc_1px", "acc_3px", "acc_5px",
    "ms_per_pair"}}``, each the mean over scenes (see :func:`cwm.metrics.flow_metrics`).
    """
    report = {}
    for name, method in methods.items():
        per_scene, seconds = [], 0.0
        for scene in scenes:
            flow, spent = _timed(method, *scene.pair(0))
            seconds += spent
            per_scene.append(metrics.flow_metrics(flow, scene.flow[0], scene.occlusion[0]))
        report[name] = metrics.mean_metrics(per_scene)
        report[name]["ms_per_pair"] = 1000.0 * seconds / max(len(scenes), 1)
    return report


def run_occlusion_suite(methods: Mapping[str, PairMethod],
                        scenes: Sequence[Scene]) -> dict[str, dict]:
    """Score occlusion methods: ``{name: {"precision", "recall", "f1"}}`` over pooled pixels."""
    report = {}
    for name, method in methods.items():
        tp = fp = fn = 0
        for scene in scenes:
            pred = np.asarray(method(*scene.pair(0)), bool)
            counts = metrics.confusion_counts(pred, scene.occlusion[0])
            tp, fp, fn = tp + counts[0], fp + counts[1], fn + counts[2]
        report[name] = metrics.precision_recall_f1(tp, fp, fn)
    return report


def run_depth_suite(methods: Mapping[str, PairMethod], scenes: Sequence[Scene],
                    num_pairs: int = 2000) -> dict[str, dict]:
    """Score inverse-depth methods on the stereo scenes: ``{name: {"ordinal", "spearman",
    "ms_per_pair", "num_scenes"}}``.

    Ordinal accuracy uses ``num_pairs`` random pairs per scene, seeded by the scene's seed.
    """
    stereo = [s for s in scenes if s.stereo]
    report = {}
    for name, method in methods.items():
        ordinal, spearman, seconds = [], [], 0.0
        for scene in stereo:
            pred, spent = _timed(method, *scene.pair(0))
            pred, seconds = pred.astype(np.float64), seconds + spent
            seed = scene.seed if scene.seed is not None else 0
            ordinal.append(metrics.depth_ordinal_accuracy(pred, scene.depth[0],
                                                          num_pairs=num_pairs, seed=seed))
            spearman.append(metrics.depth_spearman(pred, scene.depth[0]))
        report[name] = {"ordinal": float(np.nanmean(ordinal)) if stereo else float("nan"),
                        "spearman": float(np.nanmean(spearman)) if stereo else float("nan"),
                        "ms_per_pair": 1000.0 * seconds / max(len(stereo), 1), "num_scenes": len(stereo)}
    return report


def generator_speed(size: tuple[int, int], min_seconds: float = 1.0, repeats: int = 3,
                    first_seed: int = 10_000) -> float:
    """Scenes (two-frame pairs) generated per CPU-second at ``size``, on one thread.

    OpenCV is held to one thread meanwhile, and time is this process's CPU time, so other jobs on
    the machine do not lower the figure. The best of ``repeats`` runs is reported, as timeit does.
    """
    import cv2

    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    rates, seed = [], first_seed
    try:
        for _ in range(repeats):
            count, start = 0, time.process_time()
            while count < 3 or time.process_time() - start < min_seconds / repeats:
                make_scene(seed, size)
                count, seed = count + 1, seed + 1
            rates.append(count / (time.process_time() - start))
    finally:
        cv2.setNumThreads(threads)
    return max(rates)


def prompt_points(instances: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Object ids ``[N]`` (background 0 left out) and one prompt ``(x, y)`` per object ``[N, 2]``:
    its most interior pixel (largest distance to the object's edge; ties: the first in raster order)."""
    import cv2

    ids = np.array([i for i in np.unique(instances) if i != 0], dtype=np.int64)
    points = np.zeros((len(ids), 2), np.float64)
    for k, i in enumerate(ids):
        dist = cv2.distanceTransform((instances == i).astype(np.uint8), cv2.DIST_L2, 5)
        y, x = np.unravel_index(np.argmax(dist), dist.shape)
        points[k] = (x, y)
    return ids, points


def run_segment_suite(methods: Mapping[str, SegmentMethod],
                      scenes: Sequence[Scene]) -> dict[str, dict]:
    """Score point-prompted segment methods on frame 0 of every scene with objects.

    Returns ``{name: {"miou", "ar", "iou", "ms_per_scene", "num_scenes"}}``: mIoU and AR of the
    masks against the objects (Hungarian-matched, :func:`cwm.metrics.segment_metrics`) and the
    mean IoU of each prompt's mask with its own object, averaged over scenes.
    """
    report = {}
    for name, method in methods.items():
        rows, seconds = [], 0.0
        for scene in scenes:
            ids, points = prompt_points(scene.instances[0])
            if not len(ids):
                continue
            start = time.perf_counter()
            masks = np.asarray(method(*scene.pair(0), points), bool)
            seconds += time.perf_counter() - start
            truth = scene.instances[0][None] == ids[:, None, None]
            row = metrics.segment_metrics(masks, truth)
            row["iou"] = float(np.mean([metrics.mask_iou(m, t) for m, t in zip(masks, truth)]))
            rows.append(row)
        nan = float("nan")
        report[name] = {"miou": nan, "ar": nan, "recall_50": nan, "iou": nan, **metrics.mean_metrics(rows),
                        "ms_per_scene": 1000.0 * seconds / max(len(rows), 1), "num_scenes": len(rows)}
    return report


#: Segment baselines: grow from the prompt through pixels whose DIS flow is within this many
#: pixels of the prompt's, or whose Lab colour is within this distance of the prompt's.
FLOW_CC_TOLERANCE = 1.0
COLOUR_CC_TOLERANCE = 20.0


def _component_at(mask: np.ndarray, point) -> np.ndarray:
    import cv2

    _, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=4)
    x, y = round(point[0]), round(point[1])
    return labels == labels[y, x] if mask[y, x] else np.zeros_like(mask, bool)


def flow_cc_segments(frame0: np.ndarray, frame1: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Baseline: the connected component of DIS-flow-similar pixels around each point ``[N, H, W]``."""
    from cwm.baselines import dis_flow

    flow = dis_flow(frame0, frame1)
    out = []
    for x, y in np.asarray(points, np.float64).reshape(-1, 2):
        ref = np.median(flow[max(0, int(y) - 1):int(y) + 2, max(0, int(x) - 1):int(x) + 2].reshape(-1, 2), 0)
        out.append(_component_at(np.linalg.norm(flow - ref, axis=-1) <= FLOW_CC_TOLERANCE, (x, y)))
    return np.asarray(out, bool).reshape(-1, *frame0.shape[:2])


def colour_cc_segments(frame0: np.ndarray, frame1: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Baseline: the connected component of pixels of similar Lab colour around each point."""
    import cv2

    lab = cv2.cvtColor(cv2.GaussianBlur(frame0, (3, 3), 0), cv2.COLOR_RGB2LAB).astype(np.float64)
    out = []
    for x, y in np.asarray(points, np.float64).reshape(-1, 2):
        near = np.linalg.norm(lab - lab[round(y), round(x)], axis=-1) <= COLOUR_CC_TOLERANCE
        out.append(_component_at(near, (x, y)))
    return np.asarray(out, bool).reshape(-1, *frame0.shape[:2])


SEGMENT_BASELINES = {"dis_flow_cc": flow_cc_segments, "colour_cc": colour_cc_segments}


def run_benchmark(flow_methods: Mapping[str, PairMethod] | None = None,
                  occlusion_methods: Mapping[str, PairMethod] | None = None,
                  depth_methods: Mapping[str, PairMethod] | None = None,
                  quick: bool = False, speed_seconds: float = 1.0,
                  segment_methods: Mapping[str, SegmentMethod] | None = None) -> dict:
    """Baselines plus any extra methods on the default suite, as one JSON-ready report.

    Extra methods are merged after the baselines (same name replaces a baseline). Returns
    ``{"suite", "generator", "flow", "occlusion", "depth", "segments"}``; each flow row also holds
    ``epe_vs_zero``, its EPE over the zero-flow EPE.
    """
    from cwm import baselines

    entries = default_suite(quick)
    start = time.perf_counter()
    scenes = make_suite_scenes(entries)
    suite = suite_description(entries)
    suite["generation_seconds"] = time.perf_counter() - start
    speed = {f"pairs_per_s_{h}x{w}": generator_speed((h, w), speed_seconds)
             for h, w in SUITE_SIZES}
    flow = run_flow_suite({**baselines.FLOW_BASELINES, **(flow_methods or {})}, scenes)
    for row in flow.values():                        # docs/design.md §7: report ratios too
        row["epe_vs_zero"] = row["epe"] / flow["zero"]["epe"] if flow["zero"]["epe"] else np.nan
    return {
        "suite": suite,
        "generator": speed,
        "flow": flow,
        "occlusion": run_occlusion_suite(
            {**baselines.OCCLUSION_BASELINES, **(occlusion_methods or {})}, scenes),
        "depth": run_depth_suite({**baselines.DEPTH_BASELINES, **(depth_methods or {})}, scenes),
        "segments": run_segment_suite({**SEGMENT_BASELINES, **(segment_methods or {})}, scenes),
    }


_FLOW_COLUMNS = (("epe", "EPE", "{:.3f}"), ("epe_noc", "EPE-noc", "{:.3f}"),
                 ("fl_all", "Fl-all%", "{:.1%}"), ("acc_1px", "<1px", "{:.1%}"),
                 ("acc_3px", "<3px", "{:.1%}"), ("acc_5px", "<5px", "{:.1%}"),
                 ("ms_per_pair", "ms/pair", "{:.1f}"), ("epe_vs_zero", "EPE/zero", "{:.3f}"))


def format_report(report: dict) -> str:
    """Plain-text tables of a :func:`run_benchmark` report."""
    lines = [f"suite {report['suite']['name']}: {report['suite']['num_scenes']} scenes"]
    lines += [f"generator: {k.replace('pairs_per_s_', '')} {v:.0f} pairs/s (one core)"
              for k, v in report["generator"].items()]
    header = f"{'flow method':<16}" + "".join(f"{title:>10}" for _, title, _ in _FLOW_COLUMNS)
    lines += ["", header]
    for name, row in report["flow"].items():
        cells = "".join(f"{fmt.format(row[key]):>10}" for key, _, fmt in _FLOW_COLUMNS)
        lines.append(f"{name:<16}{cells}")
    lines += ["", f"{'occlusion':<16}{'precision':>10}{'recall':>10}{'F1':>10}"]
    lines += [f"{name:<16}{row['precision']:>10.3f}{row['recall']:>10.3f}{row['f1']:>10.3f}"
              for name, row in report["occlusion"].items()]
    lines += ["", f"{'depth (stereo)':<16}{'ordinal':>10}{'spearman':>10}{'ms/pair':>10}"]
    lines += [f"{name:<16}{row['ordinal']:>10.3f}{row['spearman']:>10.3f}{row.get('ms_per_pair', float('nan')):>10.1f}"
              for name, row in report["depth"].items()]
    if "segments" in report:
        lines += ["", f"{'segments (point)':<16}{'mIoU':>10}{'AR':>10}{'IoU':>10}{'ms/scene':>10}"]
        lines += [f"{name:<16}{row['miou']:>10.3f}{row['ar']:>10.3f}{row['iou']:>10.3f}{row['ms_per_scene']:>10.1f}"
                  for name, row in report["segments"].items()]
    return "\n".join(lines)
