"""`ood-perception run` over images, a folder and a generated video, through cli.main."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from tiny_model import export_tiny_model

from ood_perception.cli.main import main


def write_scene(path: Path, height: int = 120, width: int = 160, offset: int = 0) -> None:
    rgb = np.full((height, width, 3), 128, np.uint8)
    rgb[30 + offset:70 + offset, 40:90] = (255, 0, 255)
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def test_images_and_folder(tiny_model_path: Path, tmp_path: Path, capsys):
    folder = tmp_path / "frames"
    folder.mkdir()
    for index in range(3):
        write_scene(folder / f"f{index}.png", offset=index * 5)
    single = tmp_path / "single.png"
    write_scene(single, 240, 320)
    output = tmp_path / "out"
    code = main(["run", "--model", str(tiny_model_path), str(single), str(folder),
                 "--output", str(output), "--batch", "2", "--save-semantic"])
    assert code == 0
    summary = capsys.readouterr().out
    assert "4 frames" in summary and "obstacles found: 4" in summary
    for stem in ["single", "f0", "f1", "f2"]:
        for suffix in ["_score.npy", "_mask.png", "_overlay.png", "_semantic.png"]:
            assert (output / f"{stem}{suffix}").is_file()
    score = np.load(output / "single_score.npy")
    assert score.shape == (240, 320) and score.dtype == np.float32
    mask = cv2.imread(str(output / "f2_mask.png"), cv2.IMREAD_UNCHANGED)
    assert mask.shape == (120, 160) and mask[50 + 10, 65] == 255 and mask[5, 5] == 0
    overlay = cv2.imread(str(output / "single_overlay.png"))
    assert overlay.shape == (240, 320, 3)


def test_video(tiny_model_path: Path, tmp_path: Path, capsys):
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (160, 120))
    assert writer.isOpened()
    for index in range(5):
        rgb = np.full((120, 160, 3), 128, np.uint8)
        rgb[30:70, 10 + 10 * index:60 + 10 * index] = (255, 0, 255)
        writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    writer.release()
    output = tmp_path / "out"
    assert main(["run", "--model", str(tiny_model_path), str(video),
                 "--output", str(output), "--threshold", "0.3", "--min-area", "50"]) == 0
    assert "5 frames" in capsys.readouterr().out
    masks = [cv2.imread(str(output / f"clip_{i:06d}_mask.png"), cv2.IMREAD_UNCHANGED)
             for i in range(5)]
    assert all(m[50, 35 + 10 * i] == 255 for i, m in enumerate(masks))
    assert not (output / "clip_000000_semantic.png").exists()


def test_threshold_required_without_score_range(tmp_path: Path, capsys):
    model = export_tiny_model(tmp_path / "plain.onnx", with_metadata=False)
    image = tmp_path / "a.png"
    write_scene(image)
    code = main(["run", "--model", str(model), str(image), "--output", str(tmp_path / "o")])
    assert code == 2 and "--threshold" in capsys.readouterr().err


@pytest.mark.parametrize("bad", ["missing.png", "notes.txt"])
def test_bad_inputs(tiny_model_path: Path, tmp_path: Path, capsys, bad: str):
    (tmp_path / "notes.txt").write_text("hello")
    code = main(["run", "--model", str(tiny_model_path), str(tmp_path / bad),
                 "--output", str(tmp_path / "o")])
    assert code == 2 and bad in capsys.readouterr().err


def test_output_that_would_overwrite_inputs_is_refused(tiny_model_path: Path, tmp_path: Path,
                                                       capsys):
    folder = tmp_path / "frames"
    folder.mkdir()
    write_scene(folder / "x.png")
    write_scene(folder / "x_mask.png")  # would be replaced by x.png's mask before it is read
    before = (folder / "x_mask.png").read_bytes()
    code = main(["run", "--model", str(tiny_model_path), str(folder), "--output", str(folder)])
    assert code == 2 and "holds input files" in capsys.readouterr().err
    assert (folder / "x_mask.png").read_bytes() == before
    assert sorted(p.name for p in folder.iterdir()) == ["x.png", "x_mask.png"]
    (tmp_path / "file").write_text("")
    code = main(["run", "--model", str(tiny_model_path), str(folder / "x.png"),
                 "--output", str(tmp_path / "file")])
    assert code == 2 and "exists and is not a folder" in capsys.readouterr().err
