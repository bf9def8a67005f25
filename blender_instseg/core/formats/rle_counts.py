"""Compressed COCO RLE strings read with numpy: a validity check and a cropped decode.

pycocotools' C code trusts ``counts`` strings: a malformed one decodes to garbage or writes past
its buffer. ``check_rle_counts`` parses every string the way pycocotools' ``rleFrString`` does
(6-bit chars from '0', 5 data bits + a continuation bit, a sign bit on a number's last char,
counts from the 4th on delta-coded against counts[m-2]), all strings in one vectorised pass.

``decode_crop`` decodes only a window of the masks. Boundary IoU needs masks only around the
objects, and pycocotools decodes every mask at full size, which dominated evaluation time.
"""

from __future__ import annotations

import numpy as np

__all__ = ["check_rle_counts", "parse_counts", "decode_windows", "decode_crop"]


def parse_counts(counts: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Parse compressed RLE strings. Returns (bad, runs, owner, position).

    ``runs`` are all run lengths of all strings back to back, ``owner[i]`` the string a run comes
    from and ``position[i]`` its index in that string (even: zeros, odd: ones, column-major).
    ``bad[s]`` is True where string ``s`` has a char out of range, an unfinished last number, a
    number too long to be real or a negative run. Run totals are not checked here.
    """
    n = len(counts)
    bad = np.zeros(n, bool)
    empty = np.zeros(0, np.int64)
    if n == 0:
        return bad, empty, empty, empty
    if not all(c.isascii() for c in counts):
        bad |= np.array([not c.isascii() for c in counts])
        counts = [c if c.isascii() else "" for c in counts]
    lengths = np.fromiter((len(c) for c in counts), np.int64, count=n)
    buf = np.frombuffer("".join(counts).encode("ascii"), np.uint8).astype(np.int64) - 48
    if buf.size == 0:
        return bad, empty, empty, empty
    sid = np.repeat(np.arange(n), lengths)
    bad[np.unique(sid[(buf < 0) | (buf > 63)])] = True
    c = np.clip(buf, 0, 63)
    more = (c & 0x20) != 0
    nonempty = lengths > 0
    last = (np.cumsum(lengths) - 1)[nonempty]
    bad[np.flatnonzero(nonempty)[more[last]]] = True
    end = ~more
    end[last] = True  # a number never runs into the next string
    pos = np.arange(buf.size)
    start = np.r_[True, end[:-1]]
    k = pos - np.maximum.accumulate(np.where(start, pos, 0))  # char index within its number
    bad[np.unique(sid[k > 11])] = True  # > 60 bits: no real run length needs that
    k = np.minimum(k, 11)
    vals = np.add.reduceat((c & 0x1F) << (5 * k), np.flatnonzero(start))
    gend = np.flatnonzero(end)
    neg = (c[gend] & 0x10) != 0
    vals = vals - np.where(neg, np.left_shift(1, 5 * (k[gend] + 1)), 0)
    owner = sid[gend]
    first = np.r_[0, np.cumsum(np.bincount(owner, minlength=n))[:-1]]
    m = np.arange(len(gend)) - first[owner]
    # counts 0, 1, 2 are raw; from m == 3 on count[m] = x[m] + count[m - 2]: odd counts are a
    # running sum of the odd x, even counts from m == 2 on a running sum of the even x.
    runs = vals.copy()
    for series in (m % 2 == 1, (m % 2 == 0) & (m >= 2)):
        a = np.where(series, vals, 0)
        ca = np.cumsum(a)
        before = ca - a
        runs = np.where(series, ca - before[first[owner]], runs)
    bad[np.unique(owner[runs < 0])] = True
    return bad, runs, owner, m


def check_rle_counts(counts: list[str], n_pixels: list[int] | np.ndarray) -> np.ndarray:
    """True where a compressed RLE string is malformed or does not cover exactly ``n_pixels``."""
    bad, runs, owner, _ = parse_counts(counts)
    total = np.bincount(owner, weights=runs.astype(np.float64), minlength=len(counts))
    return bad | (total != np.asarray(n_pixels, np.float64))


def decode_windows(rles: list[dict], windows: np.ndarray | list) -> list[np.ndarray]:
    """Decode window ``windows[i] = (x0, y0, x1, y1)`` (end-exclusive) of each valid RLE ``rles[i]``.

    Returns uint8 ``(y1 - y0, x1 - x0)`` arrays, each equal to
    ``pycocotools.mask.decode(rles[i])[y0:y1, x0:x1]``. Runs of ones (column-major) are split at
    column ends, clipped to their window and painted into one flat buffer holding every window
    (a difference array and one cumulative sum), so the work is proportional to the windows, not
    to the frames, and all masks go through one parse.
    """
    n = len(rles)
    win = np.asarray(windows, np.int64).reshape(n, 4)
    x0, y0 = win[:, 0], win[:, 1]
    x1, y1 = np.maximum(win[:, 2], x0), np.maximum(win[:, 3], y0)
    ncol, wh = x1 - x0, y1 - y0 + 1  # one spare row per column takes the -1 of runs ending at the bottom
    sizes = ncol * wh
    offset = np.concatenate([[0], np.cumsum(sizes)])
    if n == 0:
        return []
    heights = np.array([int(r["size"][0]) for r in rles], np.int64)
    counts = [r["counts"] if isinstance(r["counts"], str) else r["counts"].decode("ascii") for r in rles]
    _, runs, owner, m = parse_counts(counts)
    first = np.concatenate([[0], np.cumsum(np.bincount(owner, minlength=n))[:-1]])
    ends = np.cumsum(runs)
    ends = ends - np.concatenate([[0], ends])[first[owner]]  # cumulative within each string
    ones = (m % 2 == 1) & (runs > 0)
    e, who = ends[ones], owner[ones]
    s = e - runs[ones]
    h = heights[who]
    keep = (e > x0[who] * h) & (s < x1[who] * h)
    s, e, who, h = s[keep], e[keep], who[keep], h[keep]
    c0 = np.maximum(s // h, x0[who])
    c1 = np.minimum((e - 1) // h, x1[who] - 1)
    span = c1 - c0 + 1
    rep = np.repeat(np.arange(len(s)), span)
    col = c0[rep] + (np.arange(len(rep)) - np.repeat(np.cumsum(span) - span, span))
    who, h = who[rep], h[rep]
    top, bottom = y0[who], y1[who]
    r0 = np.clip(s[rep] - col * h, top, bottom) - top
    r1 = np.clip(e[rep] - col * h, top, bottom) - top
    ok = r0 < r1
    who, col, r0, r1 = who[ok], col[ok], r0[ok], r1[ok]
    base = offset[who] + (col - x0[who]) * wh[who]
    total = int(offset[-1])
    flat = np.cumsum(np.bincount(base + r0, minlength=total) - np.bincount(base + r1, minlength=total))
    flat = flat.astype(np.uint8)
    return [flat[offset[i]:offset[i + 1]].reshape(ncol[i], wh[i])[:, :-1].T for i in range(n)]


def decode_crop(rles: list[dict], box: tuple[int, int, int, int]) -> np.ndarray:
    """The same window of several same-size RLEs as one uint8 ``(y1 - y0, x1 - x0, N)`` stack."""
    x0, y0, x1, y1 = (int(v) for v in box)
    if not rles:
        return np.zeros((max(0, y1 - y0), max(0, x1 - x0), 0), np.uint8)
    return np.stack(decode_windows(rles, [box] * len(rles)), axis=2)
