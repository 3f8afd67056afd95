"""Synthetic plates and camera scenes with ground truth.

* `edge.synth.plates`: `render_plates` (labelled, degraded OCR crops), `render_plate_images` (clean full
  plates), `composite_plate` / `plate_box` (perspective compositing, 2:1 label boxes), `Degradation`.
* `edge.synth.states`: the look of each state's plate (colours, header, slogan, serial formats).
* `edge.synth.scene`: `Scenario` (pydantic), `SceneRenderer`, `iter_scene_frames`, `render_scene_to_dir`.
* `edge.synth.commands`: `alpr-edge synth plates` and `alpr-edge synth scene`.
* `edge.synth.gallery`: the sample images in `docs/`.

Fonts in `fonts/`: Roboto Condensed and Roboto Slab (Apache-2.0), Lobster (OFL-1.1); licences alongside.
"""
