"""COCOeval's matching and accumulation for given IoU matrices, vectorised over all images.

Boundary AP and the occlusion buckets re-run COCO's protocol on IoU matrices we already have
(min(mask IoU, boundary IoU), or mask IoU with other ground truth ignored). Stock
``COCOeval.evaluate`` + ``accumulate`` spend their time in per-(image, category, area) Python
loops, which made those re-runs cost more than the pycocotools segm evaluation itself.
Here every image and category is matched at once:

* Only pairs with IoU >= the lowest threshold can match, so matching works on that sparse list.
* COCO's greedy matching is sequential over a cell's detections (in score order), but cells are
  independent: step j matches the j-th detection (among those with any candidate) of every cell,
  for all areas and IoU thresholds together.
* A detection takes, among the candidates still free (crowd regions are never used up), the one
  that is not ignored if there is one, then the highest IoU, then the later ground truth: exactly
  what the stock loop's ``break``/``continue`` rules select (ignored ground truth is sorted last,
  and equal IoU replaces the current choice).
* Accumulation is stock ``accumulate`` with its per-detection precision envelope loop replaced
  by a reversed running maximum; all arithmetic is the same, so results are bit-identical
  (tests compare precision, recall, scores and stats with stock COCOeval on fuzzed matrices
  with crowd regions, ignored ground truth, tied scores and tied IoUs).

Only ``useCats=1`` segm/bbox-style evaluation is covered (what ``metrics`` uses).
"""

from __future__ import annotations

from typing import Iterable

import numpy as np
from pycocotools.cocoeval import COCOeval

__all__ = ["GivenIoUEvaluator"]


class GivenIoUEvaluator:
    """Prepared once from a finished stock run; ``run`` evaluates other IoU matrices / ignore sets.

    The IoU matrices must have the layout stock ``computeIoU`` produces for that run: detections
    by descending score (stable), at most ``maxDets[-1]``; ground truth in ``_gts`` order.
    """

    def __init__(self, stock: COCOeval) -> None:
        p = stock.params
        if not p.useCats:
            raise ValueError("GivenIoUEvaluator needs params.useCats = 1")
        self.stock = stock
        self.img_ids = list(p.imgIds)
        self.cat_ids = list(p.catIds)
        max_det = int(p.maxDets[-1])
        keys: list[tuple[int, int]] = []
        g_cell: list[int] = []
        g_id: list[int] = []
        g_area: list[float] = []
        g_crowd: list[bool] = []
        d_cell: list[int] = []
        d_rank: list[int] = []
        d_id: list[int] = []
        d_score: list[float] = []
        d_area: list[float] = []
        cell_cat: list[int] = []
        self.cell_slices: list[tuple[int, int, int, int]] = []  # (g0, g1, d0, d1)
        for k, cat in enumerate(self.cat_ids):
            for img in self.img_ids:
                gts = stock._gts[img, cat]
                dts = stock._dts[img, cat]
                if not gts and not dts:
                    continue  # stock evaluateImg returns None: the cell does not exist
                c = len(keys)
                keys.append((img, cat))
                cell_cat.append(k)
                order = np.argsort([-d["score"] for d in dts], kind="mergesort")[:max_det]
                dts = [dts[i] for i in order]
                g0, d0 = len(g_id), len(d_id)
                for g in gts:
                    g_cell.append(c)
                    g_id.append(g["id"])
                    g_area.append(g["area"])
                    g_crowd.append(bool(g.get("iscrowd", 0)))
                for r, d in enumerate(dts):
                    d_cell.append(c)
                    d_rank.append(r)
                    d_id.append(d["id"])
                    d_score.append(d["score"])
                    d_area.append(d["area"])
                self.cell_slices.append((g0, len(g_id), d0, len(d_id)))
        self.keys = keys
        self.cell_cat = np.asarray(cell_cat, np.int64)
        self.g_cell = np.asarray(g_cell, np.int64)
        self.g_id = np.asarray(g_id, np.float64)  # float, as stock stores ids in its match arrays
        self.g_area = np.asarray(g_area, np.float64)
        self.g_crowd = np.asarray(g_crowd, bool)
        self.g_cat = self.cell_cat[self.g_cell] if len(g_cell) else np.zeros(0, np.int64)
        self.d_cell = np.asarray(d_cell, np.int64)
        self.d_rank = np.asarray(d_rank, np.int64)
        self.d_id = np.asarray(d_id, np.float64)
        self.d_score = np.asarray(d_score, np.float64)
        self.d_area = np.asarray(d_area, np.float64)
        self.d_cat = self.cell_cat[self.d_cell] if len(d_cell) else np.zeros(0, np.int64)
        self.gt_index = {int(i): n for n, i in enumerate(g_id)}

    # ------------------------------------------------------------------ matching
    def _pairs(self, ious: dict, floor: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(detection index, ground-truth index, IoU) of every pair with IoU >= floor."""
        dl, gl, vl = [], [], []
        for c, key in enumerate(self.keys):
            g0, g1, d0, d1 = self.cell_slices[c]
            if g1 == g0 or d1 == d0:
                continue
            m = np.asarray(ious[key], np.float64)
            if m.shape != (d1 - d0, g1 - g0):
                raise ValueError(f"IoU matrix of image {key[0]}, category {key[1]} has shape {m.shape}, "
                                 f"expected {(d1 - d0, g1 - g0)}")
            r, q = np.nonzero(m >= floor)
            dl.append(r + d0)
            gl.append(q + g0)
            vl.append(m[r, q])
        if not dl:
            e = np.zeros(0, np.int64)
            return e, e, np.zeros(0)
        return np.concatenate(dl), np.concatenate(gl), np.concatenate(vl)

    def _match(self, ious: dict, ignore: np.ndarray, area_rngs: list, thrs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per (area, threshold, detection): the matched ground truth's id (0: none) and dtIgnore."""
        A, T, ND, NG = len(area_rngs), len(thrs), len(self.d_id), len(self.g_id)
        lo = np.array([a[0] for a in area_rngs], np.float64)[:, None]
        hi = np.array([a[1] for a in area_rngs], np.float64)[:, None]
        g_ig = ignore[None, :] | (self.g_area[None, :] < lo) | (self.g_area[None, :] > hi)  # A x NG
        d_out = (self.d_area[None, :] < lo) | (self.d_area[None, :] > hi)  # A x ND
        dtm = np.zeros((A, T, ND))
        dt_ig = np.zeros((A, T, ND), bool)
        pd, pg, pv = self._pairs(ious, float(thrs.min()))
        if len(pd):
            # pairs grouped by detection; within a detection by (IoU, ground-truth index) ascending,
            # so the rank q orders equal-preference candidates as the stock loop does
            order = np.lexsort((pg, pv, pd))
            pd, pg, pv = pd[order], pg[order], pv[order]
            first = np.r_[True, pd[1:] != pd[:-1]]
            start = np.flatnonzero(first)
            q = np.arange(len(pd)) - np.repeat(start, np.diff(np.r_[start, len(pd)]))
            # step of a detection = its position among the detections with candidates in its cell
            dets = pd[start]
            cell = self.d_cell[dets]
            cstart = np.flatnonzero(np.r_[True, cell[1:] != cell[:-1]])
            step_of_det = np.arange(len(dets)) - np.repeat(cstart, np.diff(np.r_[cstart, len(dets)]))
            step = np.repeat(step_of_det, np.diff(np.r_[start, len(pd)]))
            used = np.zeros((A, T, NG), bool)  # taken by an earlier detection (crowd never is)
            big = float(len(pd) + 1)
            avail_iou = pv[None, :] >= thrs[:, None]  # T x P
            for j in range(int(step.max()) + 1):
                sel = np.flatnonzero(step == j)
                sd, sg, sq = pd[sel], pg[sel], q[sel]
                seg = np.flatnonzero(np.r_[True, sd[1:] != sd[:-1]])
                free = avail_iou[None, :, sel] & ~used[:, :, sg]  # A x T x S
                key = np.where(free, (~g_ig[:, None, sg]) * big + sq[None, None, :], -1.0)
                best = np.maximum.reduceat(key, seg, axis=2)  # A x T x dets of this step
                win = (key == np.repeat(best, np.diff(np.r_[seg, len(sel)]), axis=2)) & (key >= 0)
                a_i, t_i, s_i = np.nonzero(win)
                g_w, d_w = sg[s_i], sd[s_i]
                used[a_i, t_i, g_w] = ~self.g_crowd[g_w]
                dtm[a_i, t_i, d_w] = self.g_id[g_w]
                dt_ig[a_i, t_i, d_w] = g_ig[a_i, g_w]
        dt_ig |= (dtm == 0) & d_out[:, None, :]
        return dtm, dt_ig

    # ------------------------------------------------------------------ accumulation
    def run(self, ious: dict, ignore_gt_ids: Iterable[int] = (), all_areas: bool = True) -> COCOeval:
        """COCO evaluation of ``ious`` (stock layout) with ``ignore_gt_ids`` also ignored.

        Returns a COCOeval whose ``eval`` (precision, recall, scores) and, for the four stock
        area ranges, ``stats`` are what stock evaluate + accumulate + summarize would give.
        """
        p = self.stock.params
        area_rngs = [list(a) for a in p.areaRng] if all_areas else [[0.0, 1e10]]
        thrs = np.minimum(np.asarray(p.iouThrs, np.float64), 1 - 1e-10)
        ignore = self.g_crowd.copy()
        for i in ignore_gt_ids:
            n = self.gt_index.get(int(i))
            if n is not None:
                ignore[n] = True
        dtm, dt_ig = self._match(ious, ignore, area_rngs, thrs)
        T, R, K, A, M = len(p.iouThrs), len(p.recThrs), len(self.cat_ids), len(area_rngs), len(p.maxDets)
        precision = -np.ones((T, R, K, A, M))
        recall = -np.ones((T, K, A, M))
        scores = -np.ones((T, R, K, A, M))
        rec_thrs = np.asarray(p.recThrs)
        lo = np.array([a[0] for a in area_rngs])[:, None]
        hi = np.array([a[1] for a in area_rngs])[:, None]
        g_ig = ignore[None, :] | (self.g_area[None, :] < lo) | (self.g_area[None, :] > hi)
        has_cell = np.bincount(self.cell_cat, minlength=K) > 0
        for k in range(K):
            if not has_cell[k]:
                continue
            dsel = np.flatnonzero(self.d_cat == k)  # already in (image, score rank) order
            gsel = self.g_cat == k
            for a in range(A):
                npig = int(np.count_nonzero(~g_ig[a, gsel]))
                if npig == 0:
                    continue
                for m, max_det in enumerate(p.maxDets):
                    ds = dsel[self.d_rank[dsel] < max_det]
                    inds = np.argsort(-self.d_score[ds], kind="mergesort")
                    ds = ds[inds]
                    sc = self.d_score[ds]
                    dm, ig = dtm[a][:, ds], dt_ig[a][:, ds]
                    tp_sum = np.cumsum(np.logical_and(dm, ~ig), axis=1).astype(float)
                    fp_sum = np.cumsum(np.logical_and(np.logical_not(dm), ~ig), axis=1).astype(float)
                    nd = len(ds)
                    rc = tp_sum / npig
                    pr = tp_sum / (fp_sum + tp_sum + np.spacing(1))
                    recall[:, k, a, m] = rc[:, -1] if nd else 0
                    if nd == 0:
                        precision[:, :, k, a, m] = 0
                        scores[:, :, k, a, m] = 0
                        continue
                    pr = np.maximum.accumulate(pr[:, ::-1], axis=1)[:, ::-1]
                    for t in range(T):
                        pi = np.searchsorted(rc[t], rec_thrs, side="left")
                        ok = pi < nd
                        precision[t, :, k, a, m] = np.where(ok, pr[t][np.minimum(pi, nd - 1)], 0.0)
                        scores[t, :, k, a, m] = np.where(ok, sc[np.minimum(pi, nd - 1)], 0.0)
        ev = COCOeval(self.stock.cocoGt, self.stock.cocoDt, iouType=p.iouType)
        ev.params.imgIds, ev.params.catIds = list(p.imgIds), list(p.catIds)
        ev.params.maxDets = list(p.maxDets)
        ev.params.areaRng = area_rngs
        ev.params.areaRngLbl = list(p.areaRngLbl) if all_areas else ["all"]
        ev.ious = ious
        ev.eval = {"params": ev.params, "counts": [T, R, K, A, M], "precision": precision, "recall": recall,
                   "scores": scores}
        return ev
