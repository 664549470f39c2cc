"""Issue 13, item 8: WETR's Fig. 3 (kept visual patches over a clip's frames) and its saved record."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest
from PIL import Image

from metrics import wetr_figure
from modeling_affectverse.data.manifest import load_manifest


def test_the_figure_and_its_record(demo_manifest, tmp_path):
    clip = load_manifest(demo_manifest)[0]["video"]
    output = tmp_path / "fig3.png"
    argv = ["--video", clip, "--p-visual", "0.1", "1.0", "--wetr-interval", "2", "--output", str(output)]
    assert wetr_figure.main(argv) == 0
    with Image.open(output) as image:
        assert image.size[0] > 100 and image.size[1] > 100
    saved = json.loads((tmp_path / "fig3.json").read_text())
    assert set(saved) == {"0.1", "1"}
    patches = {p: sum(map(sum, sum(entry["kept_patches"], []))) for p, entry in saved.items()}
    total = sum(len(row) for step in saved["1"]["kept_patches"] for row in step)
    assert patches == {"0.1": math.ceil(0.1 * total), "1": total}  # ceil(p x n) of the video's patches
    for entry in saved.values():
        assert entry["trigger_layers"] == [2] and entry["figure_layer"] == 2
        assert len(entry["kept_positions"][0]) == len(entry["gamma"][0]) > patches["0.1"]  # + text and instruction
    with pytest.raises(ValueError, match="triggers at layers"):
        wetr_figure.main([*argv[:-2], "--trigger", "1", "--output", os.fspath(tmp_path / "other.png")])


def test_each_token_step_is_drawn_with_its_first_frame():
    frames = np.arange(9, dtype=np.uint8)[:, None, None, None] * np.ones((1, 2, 2, 3), dtype=np.uint8)
    assert wetr_figure.step_frames(frames, 5, 2)[:, 0, 0, 0].tolist() == [0, 2, 4, 6, 8]  # 2 frames a step
    # the processor lowered the rate to fit its budget (3 steps for 9 frames): evenly spaced frames stand in
    assert wetr_figure.step_frames(frames, 3, 2)[:, 0, 0, 0].tolist() == [0, 4, 8]
