"""The shared figure writer: folders made, a readable PNG written, the figure closed, matplotlib lazy."""

import subprocess
import sys

from PIL import Image

from holdsgm.plotting import pyplot, save_figure


def test_save_figure_writes_png_and_closes(tmp_path):
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(2, 1.5))
    ax.plot([0, 1], [1, 0])
    path = save_figure(fig, tmp_path / "a" / "b" / "fig.png", dpi=50, tight=False)
    assert path == tmp_path / "a" / "b" / "fig.png"
    with Image.open(path) as im:
        assert im.format == "PNG"
        assert im.size == (100, 75)  # 2 x 1.5 inches at 50 dpi, uncropped
    assert fig.number not in plt.get_fignums()


def test_tight_crop_changes_size(tmp_path):
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(2, 1.5))
    ax.plot([0, 1], [1, 0])
    with Image.open(save_figure(fig, tmp_path / "t.png", dpi=50)) as im:
        assert im.size != (100, 75)


def test_importing_holdsgm_does_not_import_matplotlib():
    code = "import sys, holdsgm, holdsgm.plotting, holdsgm.runs; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
