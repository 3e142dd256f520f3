"""``holdsgm fid``: two small folders, a features file, and bad input (one line, exit 2, nothing written)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from holdsgm.eval import fid
from run_helpers import cli

needs_inception = pytest.mark.skipif(not fid.inception_available(),
                                     reason="the standard Inception network is not installed (holdsgm[fid])")


def write_pngs(folder, images: np.ndarray) -> None:
    from PIL import Image

    folder.mkdir()
    for i, im in enumerate(images):
        Image.fromarray(im, "L").save(folder / f"{i:03d}.png")


@needs_inception
def test_fid_of_two_folders_and_features_file(tmp_path):
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (5, 12, 12), dtype=np.uint8)
    write_pngs(tmp_path / "a", base)
    write_pngs(tmp_path / "b", 255 - base)
    feats = tmp_path / "a-features.npz"
    r = cli("fid", tmp_path / "a", "--ref", tmp_path / "b", "--kid-subsets", "3", "--save-features", feats,
            "--out", tmp_path / "fid.json", "--quiet")
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert res["n"] == 5 and res["n_ref"] == 5 and res["fid"] > 1 and "N = 5" in res["note"]
    assert json.loads((tmp_path / "fid.json").read_text())["fid"] == res["fid"]
    same = cli("fid", feats, "--ref", tmp_path / "a", "--kid-subsets", "3", "--quiet")
    assert same.returncode == 0, same.stderr
    assert json.loads(same.stdout)["fid"] == pytest.approx(0, abs=1e-2)


@pytest.mark.parametrize("args, match", [
    (["missing-folder"], "missing-folder"),
    (["{a}", "--n", "0"], "--n must be a positive integer"),
    (["{a}", "--save-features", "{tmp}/f.txt"], "must name an .npz"),
])
def test_bad_input_one_line(tmp_path, args, match):
    write_pngs(tmp_path / "a", np.zeros((2, 8, 8), np.uint8))
    args = [a.format(a=tmp_path / "a", tmp=tmp_path) for a in args]
    r = cli("fid", *args, "--ref", tmp_path / "a", "--out", tmp_path / "out.json", "--quiet")
    assert r.returncode == 2 and match in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (tmp_path / "out.json").exists() and not (tmp_path / "f.txt").exists()


def test_missing_network_is_named(tmp_path):
    from run_helpers import cli_env

    write_pngs(tmp_path / "a", np.zeros((2, 8, 8), np.uint8))
    r = cli("fid", tmp_path / "a", "--ref", tmp_path / "a", env=cli_env(HOLDSGM_INCEPTION=tmp_path / "none.pt"))
    assert r.returncode == 2 and "HOLDSGM_INCEPTION" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_curve_is_reported_and_too_few_samples_refused(tmp_path, monkeypatch, capsys):
    """--curve reports holdsgm.eval.fid.fid_curve of the samples' and the reference's features (its maths is
    tested in tests/eval; replaced here by a recorder, since 2048-d curves take minutes); fewer than 20 samples
    is one line, exit 2, nothing written."""
    from holdsgm.cli.main import main

    rng = np.random.default_rng(0)
    smp, ref = tmp_path / "s.npz", tmp_path / "r.npz"
    fid.save_features(smp, rng.normal(size=(40, fid.FEATURE_DIM)), "s")
    fid.save_features(ref, rng.normal(size=(60, fid.FEATURE_DIM)), "r")
    seen = []
    monkeypatch.setattr(fid, "fid_curve", lambda a, b: seen.append((len(a), len(b))) or {"fid_inf": 1.5})
    monkeypatch.setattr(fid, "frechet_distance", lambda *a: 2.0)  # the plain FID: not what is tested here
    assert main(["fid", str(smp), "--ref", str(ref), "--curve", "--kid-subsets", "2", "--quiet"]) == 0
    assert seen == [(40, 60)] and json.loads(capsys.readouterr().out)["curve"] == {"fid_inf": 1.5}
    few = tmp_path / "few.npz"
    fid.save_features(few, rng.normal(size=(10, fid.FEATURE_DIM)), "few")
    bad = cli("fid", few, "--ref", ref, "--curve", "--kid-subsets", "2", "--out", tmp_path / "out.json", "--quiet")
    assert bad.returncode == 2 and "--curve needs at least 20" in bad.stderr, bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1 and not (tmp_path / "out.json").exists()
