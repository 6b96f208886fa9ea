"""A transcription of detectron2's Faster R-CNN inference path and of S2M's official merge,
for fidelity tests: plain functions over a detectron2 state dict, written after
facebookresearch/detectron2 (`GeneralizedRCNN.inference`, `ResNet`, `FPN`, `RPN`,
`find_top_rpn_proposals`, `ROIPooler`, `fast_rcnn_inference`, `detector_postprocess`),
torchvision's CPU kernels (`nms`, `roi_align`) and WenjieZhao1/S2M `tools/inference.py`.
Loops where the originals loop; nothing shared with the implementation under test.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


def _bn(x, state, prefix):
    return F.batch_norm(x, state[f"{prefix}.running_mean"], state[f"{prefix}.running_var"],
                        state[f"{prefix}.weight"], state[f"{prefix}.bias"], False, eps=1e-5)


def _conv_norm(x, state, prefix, stride=1, padding=0):
    return _bn(F.conv2d(x, state[f"{prefix}.weight"], None, stride, padding), state,
               f"{prefix}.norm")


def resnet(x, state, depths=(3, 4, 6, 3)):
    x = F.relu(_conv_norm(x, state, "backbone.bottom_up.stem.conv1", 2, 3))
    x = F.max_pool2d(x, kernel_size=3, stride=2, padding=1)
    outs = {}
    for stage, blocks in zip(range(2, 6), depths, strict=True):
        for block in range(blocks):
            prefix = f"backbone.bottom_up.res{stage}.{block}"
            stride = 2 if block == 0 and stage > 2 else 1
            out = F.relu(_conv_norm(x, state, f"{prefix}.conv1", stride))  # stride_in_1x1
            out = F.relu(_conv_norm(out, state, f"{prefix}.conv2", 1, 1))
            out = _conv_norm(out, state, f"{prefix}.conv3")
            shortcut = (_conv_norm(x, state, f"{prefix}.shortcut", stride)
                        if f"{prefix}.shortcut.weight" in state else x)
            x = F.relu(out + shortcut)
        outs[f"res{stage}"] = x
    return outs


def fpn(x, state):
    bottom_up = resnet(x, state)

    def conv(name, t, padding=0):
        return F.conv2d(t, state[f"backbone.{name}.weight"], state[f"backbone.{name}.bias"],
                        1, padding)

    prev = conv("fpn_lateral5", bottom_up["res5"])
    results = [conv("fpn_output5", prev, 1)]
    for stage in (4, 3, 2):
        top_down = F.interpolate(prev, scale_factor=2.0, mode="nearest")
        prev = conv(f"fpn_lateral{stage}", bottom_up[f"res{stage}"]) + top_down
        results.insert(0, conv(f"fpn_output{stage}", prev, 1))
    results.append(F.max_pool2d(results[-1], kernel_size=1, stride=2, padding=0))
    return results


def generate_cell_anchors(size, aspect_ratios):
    anchors = []
    area = size ** 2.0
    for aspect_ratio in aspect_ratios:
        w = math.sqrt(area / aspect_ratio)
        h = aspect_ratio * w
        anchors.append([-w / 2.0, -h / 2.0, w / 2.0, h / 2.0])
    return torch.tensor(anchors).float()


def grid_anchors(feature, stride, base, offset):
    grid_height, grid_width = feature.shape[-2:]
    shifts_x = torch.arange(offset * stride, grid_width * stride, step=stride,
                            dtype=torch.float32)
    shifts_y = torch.arange(offset * stride, grid_height * stride, step=stride,
                            dtype=torch.float32)
    shift_y, shift_x = torch.meshgrid(shifts_y, shifts_x, indexing="ij")
    shift_x, shift_y = shift_x.reshape(-1), shift_y.reshape(-1)
    shifts = torch.stack((shift_x, shift_y, shift_x, shift_y), dim=1)
    return (shifts.view(-1, 1, 4) + base.view(1, -1, 4)).reshape(-1, 4)


def apply_deltas(deltas, boxes, weights, scale_clamp=math.log(1000.0 / 16)):
    deltas = deltas.float()
    boxes = boxes.to(deltas.dtype)
    widths = boxes[:, 2] - boxes[:, 0]
    heights = boxes[:, 3] - boxes[:, 1]
    ctr_x = boxes[:, 0] + 0.5 * widths
    ctr_y = boxes[:, 1] + 0.5 * heights
    wx, wy, ww, wh = weights
    dx = deltas[:, 0::4] / wx
    dy = deltas[:, 1::4] / wy
    dw = torch.clamp(deltas[:, 2::4] / ww, max=scale_clamp)
    dh = torch.clamp(deltas[:, 3::4] / wh, max=scale_clamp)
    pred_ctr_x = dx * widths[:, None] + ctr_x[:, None]
    pred_ctr_y = dy * heights[:, None] + ctr_y[:, None]
    pred_w = torch.exp(dw) * widths[:, None]
    pred_h = torch.exp(dh) * heights[:, None]
    x1 = pred_ctr_x - 0.5 * pred_w
    y1 = pred_ctr_y - 0.5 * pred_h
    x2 = pred_ctr_x + 0.5 * pred_w
    y2 = pred_ctr_y + 0.5 * pred_h
    return torch.stack((x1, y1, x2, y2), dim=-1).reshape(deltas.shape)


def clip(boxes, size):
    h, w = size
    return torch.stack((boxes[:, 0].clamp(min=0, max=w), boxes[:, 1].clamp(min=0, max=h),
                        boxes[:, 2].clamp(min=0, max=w), boxes[:, 3].clamp(min=0, max=h)), -1)


def nonempty(boxes, threshold=0.0):
    return ((boxes[:, 2] - boxes[:, 0]) > threshold) & ((boxes[:, 3] - boxes[:, 1]) > threshold)


def nms(dets, scores, iou_threshold):
    """torchvision's CPU kernel, the inner loop over later boxes vectorised."""
    if dets.numel() == 0:
        return torch.empty(0, dtype=torch.long)
    x1, y1, x2, y2 = dets.unbind(1)
    areas = (x2 - x1) * (y2 - y1)
    order = scores.sort(dim=0, descending=True, stable=True)[1]
    suppressed = torch.zeros(len(dets), dtype=torch.bool)
    keep = []
    for _i in range(len(order)):
        i = order[_i]
        if suppressed[i]:
            continue
        keep.append(int(i))
        later = order[_i + 1:]
        xx1 = torch.maximum(x1[i], x1[later])
        yy1 = torch.maximum(y1[i], y1[later])
        xx2 = torch.minimum(x2[i], x2[later])
        yy2 = torch.minimum(y2[i], y2[later])
        inter = (xx2 - xx1).clamp(min=0) * (yy2 - yy1).clamp(min=0)
        ovr = inter / (areas[i] + areas[later] - inter)
        suppressed[later[ovr > iou_threshold]] = True
    return torch.tensor(keep, dtype=torch.long)


def batched_nms(boxes, scores, idxs, iou_threshold):
    """torchvision `_batched_nms_vanilla`."""
    keep_mask = torch.zeros_like(scores, dtype=torch.bool)
    for class_id in torch.unique(idxs):
        curr_indices = torch.where(idxs == class_id)[0]
        curr_keep_indices = nms(boxes[curr_indices], scores[curr_indices], iou_threshold)
        keep_mask[curr_indices[curr_keep_indices]] = True
    keep_indices = torch.where(keep_mask)[0]
    return keep_indices[scores[keep_indices].sort(descending=True, stable=True)[1]]


def rpn(features, sizes, state, cfg):
    logits, deltas = [], []
    for x in features:
        t = F.relu(F.conv2d(x, state["proposal_generator.rpn_head.conv.weight"],
                            state["proposal_generator.rpn_head.conv.bias"], 1, 1))
        logits.append(F.conv2d(t, state["proposal_generator.rpn_head.objectness_logits.weight"],
                               state["proposal_generator.rpn_head.objectness_logits.bias"]))
        deltas.append(F.conv2d(t, state["proposal_generator.rpn_head.anchor_deltas.weight"],
                               state["proposal_generator.rpn_head.anchor_deltas.bias"]))
    logits = [score.permute(0, 2, 3, 1).flatten(1) for score in logits]
    deltas = [x.view(x.shape[0], -1, 4, x.shape[-2], x.shape[-1]).permute(0, 3, 4, 1, 2)
              .flatten(1, -2) for x in deltas]
    strides = (4, 8, 16, 32, 64)
    anchors = [grid_anchors(f, s, generate_cell_anchors(size, cfg.aspect_ratios),
                            cfg.anchor_offset)
               for f, s, size in zip(features, strides, cfg.anchor_sizes, strict=True)]
    n = deltas[0].shape[0]
    proposals = []
    for anchors_i, deltas_i in zip(anchors, deltas, strict=True):
        b = anchors_i.size(1)
        expanded = anchors_i.unsqueeze(0).expand(n, -1, -1).reshape(-1, b)
        proposals.append(apply_deltas(deltas_i.reshape(-1, b), expanded, (1.0, 1.0, 1.0, 1.0))
                         .view(n, -1, b))
    topk_scores, topk_proposals, level_ids = [], [], []
    batch_idx = torch.arange(n)
    for level_id, (proposals_i, logits_i) in enumerate(zip(proposals, logits, strict=True)):
        num = min(logits_i.shape[1], cfg.pre_nms_topk)
        scores_i, idx = logits_i.topk(num, dim=1)
        topk_proposals.append(proposals_i[batch_idx[:, None], idx])
        topk_scores.append(scores_i)
        level_ids.append(torch.full((num,), level_id, dtype=torch.int64))
    topk_scores = torch.cat(topk_scores, 1)
    topk_proposals = torch.cat(topk_proposals, 1)
    level_ids = torch.cat(level_ids)
    results = []
    for i, size in enumerate(sizes):
        boxes, scores_i, lvl = topk_proposals[i], topk_scores[i], level_ids
        valid = torch.isfinite(boxes).all(dim=1) & torch.isfinite(scores_i)
        boxes, scores_i, lvl = boxes[valid], scores_i[valid], lvl[valid]
        boxes = clip(boxes, size)
        keep = nonempty(boxes, cfg.rpn_min_box_size)
        boxes, scores_i, lvl = boxes[keep], scores_i[keep], lvl[keep]
        keep = batched_nms(boxes, scores_i, lvl, cfg.rpn_nms_thresh)[: cfg.post_nms_topk]
        results.append(boxes[keep])
    return results


def _bilinear(feature, height, width, y, x):
    if not (-1.0 <= y <= height and -1.0 <= x <= width):
        return 0.0
    y, x = max(y, 0.0), max(x, 0.0)
    y_low, x_low = int(y), int(x)
    if y_low >= height - 1:
        y_high = y_low = height - 1
        y = float(y_low)
    else:
        y_high = y_low + 1
    if x_low >= width - 1:
        x_high = x_low = width - 1
        x = float(x_low)
    else:
        x_high = x_low + 1
    ly, lx = y - y_low, x - x_low
    hy, hx = 1.0 - ly, 1.0 - lx
    return (hy * hx * feature[:, y_low, x_low] + hy * lx * feature[:, y_low, x_high]
            + ly * hx * feature[:, y_high, x_low] + ly * lx * feature[:, y_high, x_high])


def roi_align(feature, box, scale, pooled=7):
    """torchvision's `roi_align` (aligned=True, sampling_ratio=0) of one box, in float64."""
    feature = feature.double().numpy()
    _, height, width = feature.shape
    start_w, start_h = float(box[0]) * scale - 0.5, float(box[1]) * scale - 0.5
    end_w, end_h = float(box[2]) * scale - 0.5, float(box[3]) * scale - 0.5
    roi_w, roi_h = end_w - start_w, end_h - start_h
    bin_h, bin_w = roi_h / pooled, roi_w / pooled
    grid_h, grid_w = math.ceil(roi_h / pooled), math.ceil(roi_w / pooled)
    count = max(grid_h * grid_w, 1)
    out = np.zeros((feature.shape[0], pooled, pooled))
    for ph in range(pooled):
        for pw in range(pooled):
            total = np.zeros(feature.shape[0])
            for iy in range(grid_h):
                y = start_h + ph * bin_h + (iy + 0.5) * bin_h / grid_h
                for ix in range(grid_w):
                    x = start_w + pw * bin_w + (ix + 0.5) * bin_w / grid_w
                    total += _bilinear(feature, height, width, y, x)
            out[:, ph, pw] = total / count
    return torch.from_numpy(out).float()


def roi_heads(features, proposals, sizes, state, cfg):
    results = []
    for image, (boxes, size) in enumerate(zip(proposals, sizes, strict=True)):
        areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        levels = torch.floor(4 + torch.log2(torch.sqrt(areas) / 224 + 1e-8))
        levels = torch.clamp(levels, min=2, max=5).to(torch.int64) - 2
        pooled = torch.stack([roi_align(features[int(lvl)][image], box, 0.5 ** (int(lvl) + 2))
                              for box, lvl in zip(boxes, levels, strict=True)])
        x = F.relu(F.linear(pooled.flatten(1), state["roi_heads.box_head.fc1.weight"],
                            state["roi_heads.box_head.fc1.bias"]))
        x = F.relu(F.linear(x, state["roi_heads.box_head.fc2.weight"],
                            state["roi_heads.box_head.fc2.bias"]))
        scores = F.linear(x, state["roi_heads.box_predictor.cls_score.weight"],
                          state["roi_heads.box_predictor.cls_score.bias"])
        deltas = F.linear(x, state["roi_heads.box_predictor.bbox_pred.weight"],
                          state["roi_heads.box_predictor.bbox_pred.bias"])
        pred = apply_deltas(deltas, boxes, (10.0, 10.0, 5.0, 5.0))
        probs = F.softmax(scores, dim=-1)[:, :-1]
        classes = pred.shape[1] // 4
        pred = clip(pred.reshape(-1, 4), size).view(-1, classes, 4)
        mask = probs > cfg.score_thresh
        inds = mask.nonzero()
        pred, probs = pred[mask], probs[mask]
        keep = batched_nms(pred, probs, inds[:, 1], cfg.nms_thresh)[: cfg.detections_per_image]
        pred, probs, inds = pred[keep], probs[keep], inds[keep]
        kept = nonempty(pred)  # detector_postprocess at scale 1
        results.append((pred[kept], probs[kept], inds[kept, 1]))
    return results


def detect(scores, state, cfg):
    """detectron2's inference on score maps [H, W] as the official S2M code feeds them."""
    sizes = [tuple(s.shape) for s in scores]
    mean = torch.tensor(cfg.pixel_mean).view(-1, 1, 1)
    std = torch.tensor(cfg.pixel_std).view(-1, 1, 1)
    images = [(s.unsqueeze(0).expand(3, -1, -1) - mean) / std for s in scores]
    max_h = max(i.shape[1] for i in images)
    max_w = max(i.shape[2] for i in images)
    max_h, max_w = (max_h + 31) // 32 * 32, (max_w + 31) // 32 * 32
    batch = torch.stack([F.pad(i, (0, max_w - i.shape[2], 0, max_h - i.shape[1]))
                         for i in images])
    features = fpn(batch, state)
    proposals = rpn(features, sizes, state, cfg)
    return roi_heads(features[:4], proposals, sizes, state, cfg)


def official_merge(masks: np.ndarray, scores: list[float]) -> np.ndarray:
    """WenjieZhao1/S2M `do_test_score`: masks in the detector's (descending) order, later ones
    overwriting earlier ones with their score."""
    anomaly = torch.zeros(masks.shape[1], masks.shape[2])
    for mask, score in zip(torch.from_numpy(masks)[:, None], scores, strict=True):
        anomaly[mask[0].cpu().numpy() == True] = score  # noqa: E712 (as written upstream)
    return anomaly.numpy()
