"""Demo 3, RGB dots: paint dots on frame 0 and see where the model carries them in frame 1.

As in the CWM talk: a red dot on a moving object, a green dot on the still background and a blue
dot on a surface that becomes hidden. The model predicts frame 1 from the dotted frame 0 and a few
revealed frame-1 patches (none of them at the dots). The red dot reappears displaced by the
object's flow, the green one stays, and the blue one fades: it is occluded. The response map is
the change each dot causes in the prediction (red, green and blue channels), a finite-difference
picture of the Jacobian that the flow and occlusion probes compute exactly; white circles mark
where the ground truth says each dot should land.

    python -m demos.rgb_dots --out demos_out/rgb_dots
"""
from __future__ import annotations

import sys

import numpy as np

from demos._common import load, parser, save
from demos.make_assets import sample_scene

GAP = 3  # frames apart
COLORS = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255)}


def track(scene, t: int, gap: int, x, y) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Follow pixels ``(x, y)`` (arrays or scalars) of frame ``t`` through ``gap`` ground-truth
    flow steps; returns their end points and whether each was occluded (or left the frame)."""
    px, py = np.asarray(x, np.float64), np.asarray(y, np.float64)
    hidden = np.zeros(px.shape, bool)
    h, w = scene.size
    for s in range(t, t + gap):
        i = np.rint(py.clip(0, h - 1)).astype(int)
        j = np.rint(px.clip(0, w - 1)).astype(int)
        hidden |= scene.occlusion[s][i, j]
        px, py = px + scene.flow[s][i, j, 0], py + scene.flow[s][i, j, 1]
    return px, py, hidden


def choose_dots(scene, t: int, gap: int, radius: int) -> dict[str, tuple[int, int]]:
    """Red: the fastest visible object pixel; green: the stillest background pixel away from
    objects; blue: the pixel most deeply inside a region that gets covered."""
    import cv2

    h, w = scene.size
    inner = np.zeros((h, w), bool)
    m = 2 * radius + 2
    inner[m:h - m, m:w - m] = True
    objects = scene.instances[t] > 0
    ys, xs = np.mgrid[0:h, 0:w]
    ex, ey, hidden = track(scene, t, gap, xs, ys)
    speed = np.hypot(ex - xs, ey - ys)
    covered = hidden & ~scene.out_of_frame[t] & inner
    depth_in = cv2.distanceTransform(covered.astype(np.uint8), cv2.DIST_L2, 5)
    far_from_objects = cv2.distanceTransform((~objects).astype(np.uint8), cv2.DIST_L2, 5) > 4 * radius
    def pick(score: np.ndarray, allowed: np.ndarray) -> tuple[int, int]:
        return np.unravel_index(np.argmax(np.where(allowed, score, -np.inf)), score.shape)

    red = pick(speed, objects & ~hidden & inner)
    green = pick(-speed, ~objects & ~hidden & inner & far_from_objects)
    blue = pick(depth_in, covered)
    return {name: (int(x), int(y)) for name, (y, x) in zip(COLORS, (red, green, blue))}


def busiest_pair(scene, gap: int) -> int:
    """The start frame whose next ``gap`` frames see the most covering (occlusion inside the frame)."""
    covered = (scene.occlusion & ~scene.out_of_frame).sum(axis=(1, 2))
    return int(np.argmax([covered[t:t + gap].sum() for t in range(scene.num_frames - gap)]))


def paint(image: np.ndarray, dots: dict[str, tuple[int, int]], radius: int) -> np.ndarray:
    import cv2

    out = image.copy()
    for name, (x, y) in dots.items():
        cv2.circle(out, (x, y), radius, COLORS[name], -1)
    return out


def patches_near(points, radius: int, grid: tuple[int, int], size: tuple[int, int]) -> set[int]:
    """Model patches touched by discs of ``radius`` around ``points`` (in ``size = (H, W)`` pixels)."""
    (gh, gw), (h, w) = grid, size
    out = set()
    for x, y in points:
        for yy in (y - radius, y, y + radius):
            for xx in (x - radius, x, x + radius):
                i = int(np.clip(np.floor(yy * gh / h), 0, gh - 1))
                j = int(np.clip(np.floor(xx * gw / w), 0, gw - 1))
                out.add(i * gw + j)
    return out


def main(argv: list[str] | None = None) -> int:
    import cv2
    import torch

    from cwm.viz import draw_patches
    from cwm.viz import side_by_side

    p = parser("rgb_dots", __doc__)
    p.add_argument("--visible", type=float, default=0.1, help="fraction of frame-1 patches revealed (default 0.1)")
    p.add_argument("--seed", type=int, default=0, help="which patches are revealed")
    args = p.parse_args(argv)
    predictor = load(args)
    scene = sample_scene()
    t = busiest_pair(scene, GAP)
    f0, f1 = scene.frames[t], scene.frames[t + GAP]
    h, w = scene.size
    radius = max(2, w // 40)
    dots = choose_dots(scene, t, GAP, radius)
    targets = {k: tuple(v.item() for v in track(scene, t, GAP, *xy)) for k, xy in dots.items()}

    # Reveal random frame-1 patches, but none where a dot starts or should land.
    grid, n = predictor.grid, predictor.grid[0] * predictor.grid[1]
    keep_hidden = patches_near([*dots.values(), *[(x, y) for x, y, _ in targets.values()]], radius, grid, (h, w))
    free = [i for i in range(n) if i not in keep_hidden]
    order = torch.randperm(len(free), generator=torch.Generator().manual_seed(args.seed)).tolist()
    revealed = [free[i] for i in order[:max(1, round(args.visible * n))]] if free else []
    mask = torch.ones(n, dtype=torch.bool)
    mask[revealed] = False

    plain = predictor.predict(f0, f1, mask=mask).astype(np.float32)
    response = np.zeros((h, w, 3), np.float32)
    for c, (name, xy) in enumerate(dots.items()):
        pred = predictor.predict(paint(f0, {name: xy}, radius), f1, mask=mask).astype(np.float32)
        r = cv2.GaussianBlur(np.linalg.norm(pred - plain, axis=2), (0, 0), radius / 2)
        response[..., c] = r
        y, x = np.unravel_index(np.argmax(r), r.shape)
        tx, ty, hidden = targets[name]
        truth = "occluded" if hidden else f"lands at ({tx:.0f}, {ty:.0f})"
        print(f"{name:>5} dot at {xy}: response peak at ({x}, {y}), strength {r.max():.1f}; truth: {truth}")
    dotted = predictor.predict(paint(f0, dots, radius), f1, mask=mask)
    shown = (255 * response / max(float(response[..., :2].max()), 1e-6)).clip(0, 255).astype(np.uint8)
    for tx, ty, hidden in targets.values():
        if not hidden:
            cv2.circle(shown, (round(tx), round(ty)), radius + 2, (255, 255, 255), 1)
    figure = side_by_side([paint(f0, dots, radius), draw_patches(f1, revealed, grid), dotted, shown],
                          ["frame 0 + dots", "frame 1", "prediction", "response"])
    save(args, "rgb_dots.png", figure)
    return 0


if __name__ == "__main__":
    sys.exit(main())
