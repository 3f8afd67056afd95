"""Tiled detection: boxes back in frame coordinates, seam duplicates removed."""

import numpy as np
import pytest

from edge.node.tiling import TiledDetector, tile_grid
from edge_node_helpers import ColourKeyedDetector


def test_tile_grid_covers_the_frame_with_overlap():
    tiles = tile_grid(1920, 1080, 2, 2, 0.1)
    assert len(tiles) == 4
    assert tiles[0][:2] == (0, 0) and tiles[-1][2:] == (1920, 1080)
    assert tiles[0][2] > tiles[1][0]  # neighbours overlap
    assert tile_grid(640, 360, 1, 1) == [(0, 0, 640, 360)]


def test_tiled_detections_in_frame_coordinates_without_seam_duplicates():
    frame = np.full((360, 640, 3), 90, np.uint8)
    frame[50:66, 100:140] = (40, 255, 120)  # inside the top-left tile only
    frame[200:216, 300:340] = (93, 218, 191)  # on the vertical seam: whole in both left and right tiles
    (d,) = TiledDetector(ColourKeyedDetector(), 2, 2, overlap=0.2).predict([frame])
    boxes = sorted(d.boxes.tolist())
    assert boxes == [[100, 50, 140, 66], [300, 200, 340, 216]]
    with pytest.raises(ValueError):
        TiledDetector(ColourKeyedDetector(), 0, 1)
