"""Tracker association, per-character voting and motion gating (pure numpy, no models)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.vision.motion import MotionGate
from edge.vision.tracker import IouTracker, Observation, greedy_match, iou_matrix
from edge.vision.vote import ALPHABET, Reading, _aligned_confidence, vote


def R(text, conf=0.9, cc=None):
    cc = np.full(len(text), conf ** (1 / max(len(text), 1)), np.float32) if cc is None else np.asarray(cc)
    return Reading(text, conf, cc)


def test_iou_matrix_values():
    a = np.array([[0, 0, 10, 10], [100, 100, 110, 110]], np.float32)
    b = np.array([[5, 0, 15, 10], [0, 0, 10, 10], [200, 200, 210, 210]], np.float32)
    m = iou_matrix(a, b)
    assert m.shape == (2, 3)
    assert m[0, 1] == pytest.approx(1.0)
    assert m[0, 0] == pytest.approx(50 / 150)
    assert m[1].max() == 0.0
    assert iou_matrix(np.zeros((0, 4)), b).shape == (0, 3)


def test_greedy_match_takes_best_pairs_once():
    iou = np.array([[0.9, 0.8], [0.85, 0.1]], np.float32)
    assert sorted(greedy_match(iou, 0.2)) == [(0, 0)]  # row 1's only good column is taken
    iou = np.array([[0.5, 0.8], [0.7, 0.1]], np.float32)
    assert sorted(greedy_match(iou, 0.2)) == [(0, 1), (1, 0)]


def test_vote_recovers_plate_from_misread_frames():
    truth = "7ABC123"
    reads = [R(truth, 0.8)] * 4 + [R("7A8C123", 0.7), R("7ABC1Z3", 0.75), R("1ABC123", 0.6), R("7ABC12", 0.5)]
    v = vote(reads)
    assert v.plate == truth
    assert v.readings == 8 and v.agreeing == 4
    assert len(v.char_confidence) == len(truth)
    assert 0 < v.confidence <= 1
    assert truth not in [a for a, _ in v.alternatives]
    # The runner-up characters show up in the alternatives.
    assert {"7A8C123", "7ABC1Z3", "1ABC123"} & {a for a, _ in v.alternatives}


def test_vote_weights_by_confidence_not_count():
    # Two confident readings beat three unsure ones at the disputed position.
    reads = [R("ABC123", cc=[0.9, 0.95, 0.9, 0.9, 0.9, 0.9])] * 2 + [R("A8C123", cc=[0.9, 0.3, 0.9, 0.9, 0.9, 0.9])] * 3
    assert vote(reads).plate == "ABC123"


def test_framing_vote_counts_a_shifted_reading_where_it_agrees():
    # Framings of one crop (independent=False): one framing lost the first character and read a
    # bolt as an extra one (a real development frame: K4W31L beside two FK4W3L). Aligned, it
    # agrees on K, 4, W, 3 and L; position by position it disagreed everywhere and the plate's
    # confidence fell from about 0.6 to 0.12, under the node's publishing threshold.
    sure = [1.0] * 6
    reads = [R("K4W31L", cc=[0.9] * 6), R("FK4W3L", cc=sure), R("FK4W3L", cc=sure)]
    v = vote(reads, n_alternatives=0, independent=False)
    assert v.plate == "FK4W3L"
    np.testing.assert_allclose(v.char_confidence, [2 / 3] + [(0.9 + 2) / 3] * 5, rtol=1e-6)
    # a reading that differs only in characters still counts 0 where it differs, nothing more
    v = vote([R("FK4W8L", cc=[0.9] * 6), R("FK4W3L", cc=sure), R("FK4W3L", cc=sure)], n_alternatives=0, independent=False)
    np.testing.assert_allclose(v.char_confidence, [(0.9 + 2) / 3] * 4 + [2 / 3, (0.9 + 2) / 3], rtol=1e-6)


@pytest.mark.parametrize(
    "plate, text, expected",
    [
        ("FK4W3L", "K4W31L", [0, 1, 2, 3, 4, 6]),  # shifted left, a character added at the end
        ("383WJP", "83WJP", [0, 1, 2, 3, 4, 5]),  # the first character dropped
        ("378DXR", "3780XR", [1, 2, 3, 0, 5, 6]),  # one substitution: position by position
        ("ABC", "", [0, 0, 0]),
    ],
)
def test_aligned_confidence_pairs_characters_by_least_edits(plate, text, expected):
    conf = np.arange(1, len(text) + 1, dtype=np.float32)  # character k's value is k + 1 (0: unpaired)
    got = _aligned_confidence(plate, text, conf)
    assert got.tolist() == expected


def test_a_short_vote_gives_way_to_a_surer_whole_plate_that_holds_it():
    # A city pass (rendered scene): the plate read whole once, cut three times; the length vote
    # went to the 4-character piece HM42 (0.94), a plate no car carries.
    reads = [R("HMM2", 0.11), R("HM42", 0.94), R("2M2", 0.16), R("2FHM942", 0.75)]
    assert vote(reads).plate == "HM42"  # the rule is off unless the caller names its floor
    v = vote(reads, whole_plate_from=0.2)
    assert v.plate == "2FHM942" and v.confidence == pytest.approx(0.75, abs=1e-6)
    assert len(v.char_confidence) == 7 and v.agreeing == 1
    assert "HM42" in [a for a, _ in v.alternatives]  # the piece stays on record
    # ...but not when the vote itself is too unsure to publish (a van's lettering read in
    # disputed pieces: HVAYC / VAC55, and VACS5S5 once): the rule replaces, it never creates
    junk = [R("HVAYC", 0.48), R("VAC55", 0.71), R("VACS5S5", 0.4)]
    v = vote(junk, whole_plate_from=0.2)
    assert len(v.plate) == 5 and v.confidence < 0.2
    # a short vanity plate read many times keeps its vote against one longer misread holding it
    vanity = [R("SUNMS", 0.9)] * 6 + [R("1SUNMS", 0.8)]
    assert vote(vanity, whole_plate_from=0.2).plate == "SUNMS"
    # a plate-length vote is never replaced (a bolt read as an eighth character)
    v = vote([R("6WVC447", 0.8), R("6WVC44T", 0.8), R("16WVC447", 0.9)], whole_plate_from=0.2)
    assert v.plate in ("6WVC447", "6WVC44T") and v.confidence < 0.9
    # the longer reading must hold the piece in order and be at least as sure as the vote
    # (HM42 and HMM2 dispute a character: the vote on HM42 is about 0.52 sure)
    pieces = [R("HM42", 0.9), R("HMM2", 0.5)]
    assert vote(pieces + [R("2FMH942", 0.95)], whole_plate_from=0.2).plate == "HM42"
    assert vote(pieces + [R("2FHM942", 0.45)], whole_plate_from=0.2).plate == "HM42"
    assert vote(pieces + [R("2FHM942", 0.6)], whole_plate_from=0.2).plate == "2FHM942"


def test_vote_ignores_empty_and_garbage():
    assert vote([R("", 0.0, []), R("ab-c", 0.5, [0.5] * 4)]) is None
    v = vote([R("", 0.0, []), R("XYZ9", 0.9)])
    assert v.plate == "XYZ9" and v.readings == 1


@settings(max_examples=60, deadline=None)
@given(
    plate=st.text(alphabet=ALPHABET, min_size=5, max_size=8),
    n=st.integers(5, 15),
    seed=st.integers(0, 2**31 - 1),
)
def test_vote_property_majority_of_correct_chars_wins(plate, n, seed):
    """Each frame misreads at most one character (never the same wrong char twice at a position
    in a majority): with most frames right at every position, the vote returns the plate."""
    rng = np.random.default_rng(seed)
    reads = []
    for i in range(n):
        t = list(plate)
        if i % 3 == 2:  # one frame in three has one misread character
            p = int(rng.integers(len(t)))
            t[p] = ALPHABET[(ALPHABET.index(t[p]) + int(rng.integers(1, 36))) % 36]
        cc = rng.uniform(0.5, 1.0, len(t)).astype(np.float32)
        reads.append(Reading("".join(t), float(np.prod(cc)), cc))
    assert vote(reads).plate == plate


def _obs(i, t, box, text="ABC123"):
    return Observation(i, t, np.asarray(box, np.float32), 0.9, R(text))


def test_tracker_one_track_per_moving_plate_and_timeout():
    tr = IouTracker(iou_threshold=0.1, timeout_s=0.5)
    finished = []
    # Two plates moving in opposite directions fast enough that consecutive boxes barely overlap:
    # the velocity prediction keeps them on their tracks.
    for i in range(20):
        t = i / 10
        a = [10 + 18 * i, 50, 40 + 18 * i, 65]
        b = [400 - 18 * i, 200 + 2 * i, 430 - 18 * i, 215 + 2 * i]
        finished += tr.update(t, [_obs(i, t, a, "AAA111"), _obs(i, t, b, "BBB222")])
    assert finished == [] and len(tr) == 2
    finished += tr.update(2.0, [])
    assert finished == []  # 0.1 s after the last sighting: still alive
    finished += tr.update(2.7, [])
    assert len(finished) == 2 and len(tr) == 0
    for track in finished:
        texts = {o.reading.text for o in track.observations}
        assert len(texts) == 1 and len(track.observations) == 20
    dirs = sorted(t.direction() for t in finished)
    assert dirs == ["left", "right"]


def test_tracker_direction_approaching_and_best_crop_kept():
    tr = IouTracker()
    for i in range(6):
        s = 1 + 0.2 * i
        o = _obs(i, i * 0.04, [100, 100 + 10 * i, 100 + 60 * s, 100 + 10 * i + 20 * s])
        o.crop = np.full((4, 8, 3), i, np.uint8)
        o.reading = R("ABC123", 0.5 + 0.05 * i)
        tr.update(o.timestamp, [o])
    (track,) = tr.flush()
    assert track.direction() == "approaching"
    assert track.best is track.observations[-1] and track.best.crop is not None
    assert all(o.crop is None for o in track.observations[:-1])


def test_motion_gate_skips_static_frames():
    rng = np.random.default_rng(0)
    bg = rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)
    gate = MotionGate(threshold=0.01)
    assert gate(bg)  # first frame always passes
    noisy = np.clip(bg.astype(int) + rng.integers(-3, 4, bg.shape), 0, 255).astype(np.uint8)
    assert not gate(noisy)  # sensor noise is not motion
    moved = bg.copy()
    moved[100:160, 100:200] = 255
    assert gate(moved)
    assert not gate(moved)  # the reference follows the last processed frame
    with pytest.raises(ValueError):
        MotionGate(threshold=2)
