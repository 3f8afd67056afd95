"""The synthetic scene renderer as a frame source, with per-frame ground truth.

`synthetic:<scenario>[?seed=N&duration=S&width=W&height=H&fps=F&vpm=V]`: the scenario is a YAML
file (see examples/scenarios/), `default` for the renderer's defaults, or the name of a file in
examples/scenarios/ without its extension. Query options override the scenario's duration (s),
resolution, frame rate and vehicles per minute, so a test or a sim can ask for small, short scenes.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Iterator

from edge.sources.base import Frame, FrameSource, PlateLabel, SourceError

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "scenarios"

_OVERRIDES = {
    "duration": ("duration_s", None, float),
    "width": ("width", "camera", int),
    "height": ("height", "camera", int),
    "fps": ("fps", "camera", float),
    "vpm": ("vehicles_per_minute", "traffic", float),
}


def load(scenario: str, overrides: dict[str, str]):
    from edge.synth.scene import Scenario, ScenarioError, load_scenario, parse_scenario

    try:
        if scenario in ("", "default"):
            s = Scenario()
        elif Path(scenario).is_file():
            s = load_scenario(scenario)
        elif (EXAMPLES / f"{scenario}.yaml").is_file():
            s = load_scenario(EXAMPLES / f"{scenario}.yaml")
        else:
            raise SourceError(f"synthetic scenario {scenario!r}: no such file (nor examples/scenarios/{scenario}.yaml)")
        unknown = set(overrides) - set(_OVERRIDES)
        if unknown:
            raise SourceError(f"synthetic source: unknown option(s) {sorted(unknown)}; known: {sorted([*_OVERRIDES, 'seed'])}")
        data = s.model_dump()
        for key, raw in overrides.items():
            field, section, cast = _OVERRIDES[key]
            try:
                value = cast(raw)
            except ValueError:
                kind = "a whole number" if cast is int else "a number"
                raise SourceError(f"synthetic source: option {key}={raw!r} is not {kind}") from None
            (data[section] if section else data)[field] = value
        return parse_scenario(data, source=f"synthetic:{scenario}")
    except ScenarioError as err:
        raise SourceError(str(err)) from None


class SyntheticSource(FrameSource):
    def __init__(self, scenario: str = "default", seed: int = 0, **overrides: str):
        super().__init__()
        self.scenario = load(scenario, overrides)
        self.seed = int(seed)
        if self.seed < 0:
            raise SourceError(f"synthetic source: seed={seed!r} must be 0 or more")
        self.name = scenario
        self.fps = float(self.scenario.camera.fps)
        self.length = int(round(self.scenario.duration_s * self.fps))
        self.size = (self.scenario.camera.width, self.scenario.camera.height)

    def describe(self) -> str:
        return f"synthetic {self.name} seed {self.seed} ({self.size[0]}x{self.size[1]} @ {self.fps:g} fps, {self.length} frames)"

    def __iter__(self) -> Iterator[Frame]:
        from edge.synth.scene import SceneRenderer

        renderer = SceneRenderer(self.scenario, self.seed)
        clock = self.capture_clock()
        for i in range(renderer.frames):
            t0 = time.perf_counter()
            image, truths = renderer.render_frame(i)
            ms = (time.perf_counter() - t0) * 1000
            ts = i / self.fps
            labels = [PlateLabel(t.plate.upper(), tuple(float(v) for v in t.box), int(t.vehicle_id)) for t in truths]
            yield Frame(i, image, ts, clock.at(ts), labels=labels, decode_ms=ms)
