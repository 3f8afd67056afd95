"""Confidence-weighted per-character vote over every reading of one tracked plate.

A vehicle pass gives the OCR many looks at the same plate; single frames get characters wrong
(blur, glare, a partial crop). The vote turns those readings into one:

1. Length: the plate length with the largest total squared plate confidence wins (a reading that dropped
   or added a character cannot be aligned position by position, so it only votes on the length).
2. Characters: among readings of that length, each position accumulates the character confidence
   every reading gave its character there (one `np.add.at` over an (M, L) index array); the
   character with the largest sum wins.
3. Pieces (when the caller asks, `whole_plate_from`): a voted plate of 4-5 characters gives way to
   a surer reading of a plate's length that holds it in order (_whole_plate).

The reported confidence of a character combines two things: the share of the position's total
confidence that went to the winner (disagreement lowers it), times the chance that not all
agreeing readings are wrong, 1 - prod(1 - c_i) (agreement across frames raises it; one reading
alone keeps its own confidence). The plate confidence is the product over characters, as the OCR
reports for a single reading. Alternatives are the next most likely strings under the same
per-position scores (a small beam search), plus whole readings of other lengths.
"""

from __future__ import annotations

import math

from dataclasses import dataclass
from typing import Sequence

import numpy as np

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_INDEX = {c: i for i, c in enumerate(ALPHABET)}


@dataclass(frozen=True)
class Reading:
    """One OCR reading of a plate crop."""

    text: str
    confidence: float
    char_confidence: np.ndarray  # (len(text),) float
    weight: float = 1.0  # how much this look counts (e.g. less for a plate a few pixels tall)


@dataclass(frozen=True)
class VoteResult:
    plate: str
    confidence: float
    char_confidence: np.ndarray  # (len(plate),) float32
    alternatives: list[tuple[str, float]]  # best first, never containing `plate`
    readings: int  # readings that took part (non-empty, alphabet-only)
    agreeing: int  # readings whose text equals the voted plate


def _clean(readings: Sequence[Reading]) -> list[Reading]:
    out = []
    for r in readings:
        t = r.text.upper()
        if not t or any(c not in _INDEX for c in t):
            continue
        cc = np.asarray(r.char_confidence, np.float32).reshape(-1)
        if cc.shape[0] != len(t):  # a stage that gives no per-char values: spread the plate's
            cc = np.full(len(t), float(r.confidence) ** (1.0 / len(t)), np.float32)
        if not r.weight > 0:  # NaN too
            continue
        if not (math.isfinite(float(r.confidence)) and np.isfinite(cc).all()):
            # an OCR's NaN made every sum of the vote NaN: the whole pass voted NaN sure and was
            # never published. A reading with no usable confidence is no reading.
            continue
        out.append(Reading(t, float(r.confidence), np.clip(cc, 0.0, 1.0), float(r.weight)))
    return out


def vote(
    readings: Sequence[Reading], n_alternatives: int = 3, beam: int = 8, independent: bool = True,
    whole_plate_from: float | None = None,
) -> VoteResult | None:
    """Vote over the readings of one track; None when no reading has any text.

    whole_plate_from: a voted plate of at most FRAGMENT_MAX_CHARS characters, at least this
    confident, gives way to a longer reading that holds it (_whole_plate); None: never. The node
    passes its publishing threshold: the rule replaces a piece that would be published, and never
    lifts a vote too unsure to publish (a van's lettering read in disputed pieces) into a read.

    independent=False: the readings are not separate looks (e.g. several framings of one crop), so
    agreement does not raise confidence: a character's confidence is the mean confidence the
    readings of the voted length gave it (0 from those that disagree). A reading shifted by one
    character (a framing that lost the first character and picked up a bolt as a last one) is
    aligned to the voted plate first (_aligned_confidence), so the characters it shares count as
    agreement instead of every position as disagreement."""
    rs = _clean(readings)
    if not rs:
        return None
    lengths = np.array([len(r.text) for r in rs])
    # Squared confidence: a few confident looks outvote many junk ones (far, blurred plates read
    # as one or two characters with low confidence would otherwise win the length by numbers).
    weights = np.array([max(r.confidence, 1e-6) ** 2 * r.weight for r in rs], np.float64)
    uniq = np.unique(lengths)
    length_weight = np.array([weights[lengths == n].sum() for n in uniq])
    length_count = np.array([(lengths == n).sum() for n in uniq])
    # Most total confidence wins; ties go to the length seen more often, then the longer one.
    order = np.lexsort((uniq, length_count, length_weight))
    L = int(uniq[order[-1]])
    same = [r for r in rs if len(r.text) == L]
    M = len(same)

    idx = np.array([[_INDEX[c] for c in r.text] for r in same], np.int64)  # (M, L)
    cc = np.stack([r.char_confidence for r in same]).astype(np.float64)  # (M, L)
    scores = np.zeros((L, len(ALPHABET)), np.float64)
    pos = np.broadcast_to(np.arange(L), (M, L))
    look_w = np.array([r.weight for r in same], np.float64)[:, None]
    np.add.at(scores, (pos, idx), cc * look_w)
    # Ties at a position (rare with float confidences) go to the lowest alphabet index.
    best = scores.argmax(axis=1)
    share = scores[np.arange(L), best] / np.maximum(scores.sum(axis=1), 1e-12)
    agree = idx == best[None, :]  # (M, L): which readings agree with the winner
    all_wrong = np.prod(np.where(agree, 1.0 - np.clip(cc, 0.0, 0.999999), 1.0), axis=0)
    mean_conf = scores / float(look_w.sum())  # (L, 36): mean confidence each character got at each position
    plate = "".join(ALPHABET[i] for i in best)
    if independent:
        char_conf = (share * (1.0 - all_wrong)).astype(np.float32)
    else:
        aligned = np.stack([_aligned_confidence(plate, r.text, c) for r, c in zip(same, cc)])  # (M, L)
        char_conf = ((aligned * look_w).sum(axis=0) / float(look_w.sum())).astype(np.float32)
    confidence = float(np.prod(char_conf))
    alternatives = _beam_alternatives(mean_conf, plate, beam, n_alternatives)

    whole = _whole_plate(plate, confidence, rs) if whole_plate_from is not None and confidence >= whole_plate_from else None
    if whole is not None:  # the voted plate was a piece of this reading: it is an alternative now
        alternatives.append((plate, confidence))
        plate, confidence = whole.text, whole.confidence
        char_conf = np.asarray(whole.char_confidence, np.float32)
        L = len(plate)
    # Readings of another length are alternatives too, scaled by the share of confidence their
    # length received.
    total_w = float(weights.sum())
    for n in uniq:
        if n == L:
            continue
        share = float(weights[lengths == n].sum()) / total_w
        best_other = max((r for r in rs if len(r.text) == n), key=lambda r: r.confidence)
        alternatives.append((best_other.text, best_other.confidence * share))
    seen = {plate}
    uniq_alts = []
    for text, conf in sorted(alternatives, key=lambda a: -a[1]):
        if text in seen or conf <= 0:
            continue
        seen.add(text)
        uniq_alts.append((text, float(min(max(conf, 0.0), 1.0))))
    agreeing = sum(1 for r in rs if r.text == plate)
    return VoteResult(plate, confidence, char_conf, uniq_alts[:n_alternatives], len(rs), agreeing)


# A voted plate of at most this many characters may be a piece of a plate (US plates have 6-7):
# a box narrower than the plate, a plate entering the frame or half hidden. See _whole_plate.
FRAGMENT_MAX_CHARS = 5


def _contains_in_order(text: str, piece: str) -> bool:
    """Whether `piece`'s characters stand in `text` in the same order (not necessarily adjacent)."""
    rest = iter(text)
    return all(c in rest for c in piece)


def _whole_plate(plate: str, confidence: float, rs: Sequence[Reading]) -> Reading | None:
    """For a short voted plate (at most FRAGMENT_MAX_CHARS characters): the surest reading of a
    plate's length that holds it in order and is at least as confident as the vote; else None.

    A pass whose plate was read whole once (`2FHM942`, 0.75) and cut once (`HM42`, 0.94) voted
    the piece by the length vote's squared confidences, and published a plate no car carries. A
    short plate read many times keeps its vote: agreement makes the vote surer than a single
    longer misread holding it (a bolt read as a character beside a vanity plate)."""
    if len(plate) > FRAGMENT_MAX_CHARS:
        return None
    longer = [r for r in rs if len(r.text) > FRAGMENT_MAX_CHARS and r.confidence >= confidence
              and _contains_in_order(r.text, plate)]
    return max(longer, key=lambda r: r.confidence, default=None)


def _beam_alternatives(mean_conf: np.ndarray, plate: str, beam: int, n: int) -> list[tuple[str, float]]:
    """The top strings under per-position scores, best first, excluding the voted plate."""
    L = mean_conf.shape[0]
    # Only characters that some reading actually proposed at a position are candidates.
    cands: list[tuple[float, str]] = [(1.0, "")]
    for p in range(L):
        col = mean_conf[p]
        top = np.argsort(-col)[: max(2, min(beam, int((col > 0).sum())))]
        top = [int(i) for i in top if col[i] > 0]
        nxt = [(s * float(col[i]), t + ALPHABET[i]) for s, t in cands for i in top]
        nxt.sort(key=lambda x: -x[0])
        cands = nxt[: beam + 1]
    return [(t, s) for s, t in cands if t != plate][:n]


def _edit_table(a: str, b: str) -> list[list[int]]:
    """Levenshtein table: [i][j] is the least edits turning a[:i] into b[:j]."""
    table = [list(range(len(b) + 1))]
    for i, ca in enumerate(a, 1):
        prev, cur = table[-1], [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        table.append(cur)
    return table


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance between two plate strings."""
    return _edit_table(a, b)[-1][-1]


def _aligned_confidence(plate: str, text: str, conf: np.ndarray) -> np.ndarray:
    """For each character of `plate`, the confidence `text` gave the same character where a
    least-edits (Levenshtein) alignment of the two pairs them; 0 where it pairs another character
    or none. Equal-length strings that differ only in characters align position by position (a
    substitution costs less than a deletion and an insertion)."""
    if text == plate:
        return np.asarray(conf, np.float64)
    d = _edit_table(plate, text)
    out = np.zeros(len(plate), np.float64)
    i, j = len(plate), len(text)
    while i > 0 and j > 0:  # back from the end, preferring the diagonal (match or substitution)
        if d[i][j] == d[i - 1][j - 1] + (plate[i - 1] != text[j - 1]):
            if plate[i - 1] == text[j - 1]:
                out[i - 1] = conf[j - 1]
            i, j = i - 1, j - 1
        elif d[i][j] == d[i - 1][j] + 1:
            i -= 1
        else:
            j -= 1
    return out
