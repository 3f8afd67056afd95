"""CTC decoding, confidences, pre-processing and bench scoring of the OCR stage (no model needed)."""

from __future__ import annotations

import numpy as np
import pytest

from edge.bench.ocr import _rapid_plate_text, confusions, edit_distance, score_reads
from edge.vision.ocr import ctc_greedy_decode, preprocess

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def logits_for(paths: list[list[str | None]], peak: float = 8.0) -> np.ndarray:
    """(N, T, C) scores whose best class per frame follows `paths` (None = blank)."""
    T = max(len(p) for p in paths)
    x = np.zeros((len(paths), T, len(ALPHABET) + 1), np.float32)
    for i, p in enumerate(paths):
        p = p + [None] * (T - len(p))
        for t, ch in enumerate(p):
            x[i, t, 0 if ch is None else ALPHABET.index(ch) + 1] = peak
    return x


def test_greedy_decode_collapses_repeats_and_drops_blanks():
    _ = None
    paths = [
        [_, "A", "A", _, "B", _, "B", "B", "7", _],  # ABB7: a blank separates the two Bs
        [_, _, _, _],  # nothing read
        ["0", "0", "0", "0"],  # one long 0 is one character
        ["1", _, "1", _, "1"],
    ]
    texts, conf, char_conf = ctc_greedy_decode(logits_for(paths), ALPHABET)
    assert texts == ["ABB7", "", "0", "111"]
    assert [len(c) for c in char_conf] == [4, 0, 1, 3]
    assert conf[1] == 0.0  # an empty read has no confidence
    assert all(c.dtype == np.float32 for c in char_conf)


def test_confidences_are_softmax_at_the_emitting_frame_and_plate_is_product():
    x = logits_for([["A", "B", None]], peak=0.0)
    x[0, 0, ALPHABET.index("A") + 1] = np.log(9.0)  # p(A) = 9 / (9 + 36) = 0.2
    x[0, 1, ALPHABET.index("B") + 1] = 5.0
    texts, conf, char_conf = ctc_greedy_decode(x, ALPHABET)
    assert texts == ["AB"]
    p_a = 9.0 / (9.0 + 36.0)
    p_b = np.exp(5.0) / (np.exp(5.0) + 36.0)
    np.testing.assert_allclose(char_conf[0], [p_a, p_b], rtol=1e-5)
    np.testing.assert_allclose(conf[0], p_a * p_b, rtol=1e-5)


def test_decode_rejects_a_class_count_that_does_not_fit_the_alphabet():
    with pytest.raises(ValueError, match="classes"):
        ctc_greedy_decode(np.zeros((1, 5, 10), np.float32), ALPHABET)
    with pytest.raises(ValueError, match=r"\(N, T, C\)"):
        ctc_greedy_decode(np.zeros((5, 37), np.float32), ALPHABET)


def test_preprocess_shapes_and_standardizes_each_crop():
    rng = np.random.default_rng(0)
    crops = [
        rng.integers(0, 255, (150, 320, 3), dtype=np.uint8),
        rng.integers(100, 120, (20, 40), dtype=np.uint8),  # small gray crop, upsampled
        np.full((30, 60, 3), 7, np.uint8),  # flat crop stays finite
    ]
    x = preprocess(crops, 48, 144)
    assert x.shape == (3, 1, 48, 144) and x.dtype == np.float32
    assert np.isfinite(x).all()
    np.testing.assert_allclose(x[0].mean(), 0.0, atol=1e-4)
    np.testing.assert_allclose(x[0].std(), 1.0, atol=1e-3)
    assert np.abs(x[2]).max() == 0.0


@pytest.mark.parametrize("bad", [np.zeros((0, 10, 3), np.uint8), np.zeros((10, 10, 4), np.uint8), "x"])
def test_preprocess_names_the_bad_crop(bad):
    ok = np.zeros((10, 20, 3), np.uint8)
    with pytest.raises(ValueError, match=r"crops\[1\]"):
        preprocess([ok, bad], 48, 144)


def test_scores_exact_o0_and_char_accuracy():
    s = score_reads(["ABC123", "0EC617", "XY", ""], ["ABC123", "OEC617", "XYZ", "Q1"])
    assert s["n"] == 4
    assert s["exact"] == 0.25
    # Wilson 95% for 1 of 4: centre 0.3725, half-width 0.3269
    assert s["exact_ci95"] == pytest.approx([0.0456, 0.6994], abs=1e-4)
    assert s["exact_o0"] == 0.5
    # edit distances 0 + 1 + 1 + 2 over 6 + 6 + 3 + 2 label characters
    assert s["char_acc"] == pytest.approx(1 - 4 / 17)
    assert edit_distance("KITTEN", "SITTING") == 3
    assert confusions(["8BC", "A8C"], ["BBC", "ABC"]) == [("B", "8", 2)]


def test_rapidocr_plate_line_is_the_tallest_lines_left_to_right():
    def box(x0, y0, x1, y1):
        return [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]

    result = [
        (box(10, 5, 200, 25), "New York", 0.9),
        (box(160, 40, 300, 100), "2345", 0.9),
        (box(10, 42, 140, 100), "ABC-", 0.9),
        (box(10, 110, 200, 130), "EMPIRE STATE", 0.9),
    ]
    assert _rapid_plate_text(result) == "ABC2345"
    assert _rapid_plate_text([]) == ""


def test_decode_of_an_empty_batch_is_empty():
    texts, conf, char_conf = ctc_greedy_decode(np.zeros((0, 36, 37), np.float32), ALPHABET)
    assert texts == [] and conf.shape == (0,) and char_conf == []
