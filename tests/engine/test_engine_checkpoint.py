"""Checkpoint files, atomic writes and the loaders' errors: missing, empty, truncated, corrupt, another
architecture, another SDE, and a malicious pickle that must never run."""

import io
import json
import logging
import pathlib
import shutil

import pytest
import torch

from holdsgm.engine import find_checkpoint, load_checkpoint, verify_checkpoint
from holdsgm.engine.checkpoint import MANIFEST
from holdsgm.errors import CheckpointError
from holdsgm.files import atomic_write
from holdsgm.losses import EpsModel
from holdsgm.runs import load_run, make_engine
from holdsgm.runs import train as train_run
from run_helpers import tiny_config


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run = tmp_path_factory.mktemp("ckpt") / "run"
    train_run(tiny_config("train.keep_checkpoints=3", steps=10), run, verbose=False)
    return run


@pytest.fixture
def run_copy(trained, tmp_path):
    dst = tmp_path / "run"
    shutil.copytree(trained, dst)
    return dst


def _ckpt(run, step):
    return run / "checkpoints" / f"ckpt-{step:08d}"


def _rewrite_manifest(folder):
    """Make the manifest match the (tampered) files, as an attacker who controls the folder could."""
    import hashlib

    man = json.loads((folder / MANIFEST).read_text())
    for name in man["files"]:
        data = (folder / name).read_bytes()
        man["files"][name] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    (folder / MANIFEST).write_text(json.dumps(man))


def test_layout_and_manifest(trained):
    folder = _ckpt(trained, 10)
    assert sorted(p.name for p in folder.iterdir()) == [
        "ema.safetensors",
        MANIFEST,
        "model.safetensors",
        "state.pt",
    ]
    man = verify_checkpoint(folder)
    assert man["step"] == 10 and set(man["files"]) == {"ema.safetensors", "model.safetensors", "state.pt"}
    assert (trained / "config.yaml").exists() and (trained / "stats.jsonl").exists()
    assert not list(trained.rglob(".*.tmp-*"))
    ck = load_checkpoint(trained)
    assert ck.step == 10 and ck.path == folder
    assert ck.state["sampler"]["step"] == 10 and "generator" in ck.state["rng"]
    assert ck.state["network"]["kind"] == "mlp"


def test_load_run_gives_a_working_score(trained):
    run = load_run(trained)
    assert isinstance(run.eps_model, EpsModel) and run.step == 10 and run.which == "ema"
    assert run.sde.name == "hold" and run.dataset_info.mixture is not None
    assert not any(p.requires_grad for p in run.net.parameters())
    u = torch.randn(5, 6)
    t = torch.full((5,), 0.5, dtype=torch.float64)
    s = run.eps_model.score(u, t)
    assert s.shape == (5, 2) and torch.isfinite(s).all()
    raw = load_run(trained, which="model")
    assert not torch.equal(raw.eps_model.score(u, t), s)
    with pytest.raises(ValueError):
        load_run(trained, which="best")


def test_missing_and_empty(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="empty"):
        load_checkpoint(tmp_path / "empty")
    (tmp_path / "zero.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        load_checkpoint(tmp_path / "zero.pt")


@pytest.mark.parametrize(
    "damage, needle",
    [
        (lambda f: f.write_bytes(b""), "empty"),
        (lambda f: f.write_bytes(f.read_bytes()[: f.stat().st_size // 2]), "truncated"),
        (lambda f: f.write_bytes(bytes([f.read_bytes()[0] ^ 1]) + f.read_bytes()[1:]), "corrupt"),
        (lambda f: f.unlink(), "missing"),
    ],
)
@pytest.mark.parametrize("name", ["model.safetensors", "state.pt"])
def test_damaged_files(run_copy, damage, needle, name):
    folder = _ckpt(run_copy, 10)
    damage(folder / name)
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(folder)
    assert needle in str(e.value) and name in str(e.value) and "\n" not in str(e.value)


def test_unreadable_safetensors_with_matching_manifest(run_copy):
    folder = _ckpt(run_copy, 10)
    (folder / "ema.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{garbage")
    _rewrite_manifest(folder)
    with pytest.raises(CheckpointError, match="ema.safetensors.*not a readable safetensors"):
        load_checkpoint(folder)


def test_run_folder_skips_incomplete_and_corrupt_with_warning(run_copy, caplog):
    (_ckpt(run_copy, 10) / MANIFEST).unlink()  # killed before the manifest was written
    with caplog.at_level(logging.WARNING, logger="holdsgm"):
        ck = load_checkpoint(run_copy)
    assert ck.step == 5
    assert "ckpt-00000010" in caplog.text and "incomplete" in caplog.text
    f = _ckpt(run_copy, 5) / "state.pt"
    f.write_bytes(f.read_bytes()[:-10])
    with pytest.raises(CheckpointError, match="no valid checkpoint"):
        load_checkpoint(run_copy)
    assert find_checkpoint(run_copy, warn=False) is None


def test_resume_with_another_architecture_is_refused(run_copy):
    with pytest.raises(CheckpointError, match="another architecture.*shape mismatch"):
        make_engine(tiny_config("model.hidden=32", steps=20), run_copy, verbose=False)


def test_resume_with_another_sde_is_refused(run_copy):
    with pytest.raises(CheckpointError, match="another SDE"):
        make_engine(tiny_config("sde.name=cld", steps=20), run_copy, verbose=False)
    with pytest.raises(CheckpointError, match="another SDE"):
        make_engine(tiny_config("sde.T=4", steps=20), run_copy, verbose=False)


def test_checkpoint_whose_sde_disagrees_with_its_config(run_copy):
    folder = _ckpt(run_copy, 10)
    state = torch.load(folder / "state.pt", weights_only=True)
    state["sde"]["T"] = 3.0
    buf = io.BytesIO()
    torch.save(state, buf)
    (folder / "state.pt").write_bytes(buf.getvalue())
    _rewrite_manifest(folder)
    with pytest.raises(CheckpointError, match="SDE"):
        load_run(folder)


def test_checkpoint_whose_weights_are_of_another_architecture(run_copy):
    folder = _ckpt(run_copy, 10)
    from safetensors.torch import load_file, save_file

    w = load_file(folder / "ema.safetensors")
    w.pop(min(w))
    save_file(w, folder / "ema.safetensors")
    _rewrite_manifest(folder)
    with pytest.raises(CheckpointError, match="another architecture.*missing"):
        load_run(folder)


class _Evil:
    """Unpickling this calls ``Path.touch(marker)``: code execution on load."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def test_malicious_pickle_is_refused_and_never_runs(run_copy, tmp_path):
    marker = tmp_path / "pwned"
    folder = _ckpt(run_copy, 10)
    buf = io.BytesIO()
    torch.save({"format": "holdsgm-checkpoint", "step": 10, "payload": _Evil(marker)}, buf)
    (folder / "state.pt").write_bytes(buf.getvalue())
    _rewrite_manifest(folder)  # the manifest cannot protect against someone who rewrites it too
    with pytest.raises(CheckpointError, match="refusing"):
        load_checkpoint(folder)
    with pytest.raises(CheckpointError, match="refusing"):
        load_run(folder)
    assert not marker.exists()
    # the payload is live: an unsafe load would have run it
    torch.load(folder / "state.pt", weights_only=False)
    assert marker.exists()


def test_atomic_write_keeps_old_content_on_failure(tmp_path, monkeypatch):
    f = tmp_path / "file.bin"
    atomic_write(f, b"old")

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr("holdsgm.files.os.replace", boom)
    with pytest.raises(OSError, match="disk full"):
        atomic_write(f, b"new content")
    assert f.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.bin"]


def test_garbage_state_is_reported_as_corrupt_not_as_code(run_copy):
    """Bytes that are not a pickle at all are damage: the message says corrupt, not 'could run code'."""
    folder = _ckpt(run_copy, 10)
    for garbage in (b"garbage", b"PK\x03\x04" + b"x" * 64):
        (folder / "state.pt").write_bytes(garbage)
        _rewrite_manifest(folder)
        with pytest.raises(CheckpointError) as e:
            load_checkpoint(folder)
        msg = str(e.value)
        assert "state.pt is corrupt" in msg and "arbitrary code" not in msg and "\n" not in msg


def test_unloadable_checkpoints_are_never_overwritten_or_pruned(run_copy, caplog):
    """The data-loss bug: every checkpoint lacking its manifest made train start over from step 0, and its
    rotation then deleted them. Now train stops with a recovery hint and changes nothing; --restart moves
    them aside and starts over; nothing is ever deleted."""
    from holdsgm.engine import list_checkpoints

    steps = [s for s, _ in list_checkpoints(run_copy)]
    weights = {s: (p / "model.safetensors").read_bytes() for s, p in list_checkpoints(run_copy)}
    for _, p in list_checkpoints(run_copy):
        (p / MANIFEST).unlink()
    before = sorted(str(p.relative_to(run_copy)) for p in run_copy.rglob("*"))
    cfg = tiny_config("train.keep_checkpoints=1", "train.ckpt_every=2", steps=30)
    with pytest.raises(CheckpointError) as e:
        train_run(cfg, run_copy, verbose=False)
    msg = str(e.value)
    assert "none can be loaded" in msg and "--restart" in msg and "nothing was changed" in msg
    assert sorted(str(p.relative_to(run_copy)) for p in run_copy.rglob("*")) == before
    res = train_run(cfg, run_copy, verbose=False, restart=True)
    assert res.step == 30 and res.resumed_from is None
    old = [d for d in run_copy.iterdir() if d.name.startswith("old-")]
    assert len(old) == 1
    kept = {int(p.name.split("-")[1]): p for p in (old[0] / "checkpoints").iterdir()}
    assert sorted(kept) == steps and all((kept[s] / "model.safetensors").read_bytes() == w
                                         for s, w in weights.items())
    assert [s for s, _ in list_checkpoints(run_copy)] == [30]  # keep_checkpoints=1 of this run's own


def test_rotation_removes_only_verified_checkpoints(run_copy, caplog):
    """A damaged checkpoint older than the resume point is left in place (with a warning), never pruned;
    the valid ones rotate as keep_checkpoints says."""
    import logging

    from holdsgm.engine import list_checkpoints

    f = _ckpt(run_copy, 5) / "state.pt"
    f.write_bytes(f.read_bytes()[:-10])  # truncated: no longer matches its manifest
    with caplog.at_level(logging.WARNING, logger="holdsgm"):
        res = train_run(tiny_config("train.keep_checkpoints=1", "train.ckpt_every=5", steps=20), run_copy,
                        verbose=False)
    assert res.resumed_from == 10 and "ckpt-00000005 cannot be loaded" in caplog.text
    assert [s for s, _ in list_checkpoints(run_copy)] == [5, 20]


def test_an_interrupted_write_is_replaced_only_after_the_new_one_verifies(run_copy):
    """A folder of the step being written that does not verify (killed before its manifest) is replaced
    by the re-created checkpoint, which is written and verified beside it first."""
    from holdsgm.engine import save_checkpoint, verify_checkpoint

    folder = _ckpt(run_copy, 10)
    ck = load_checkpoint(folder)
    (folder / MANIFEST).unlink()
    (folder / "junk.tmp").write_bytes(b"left by a killed writer")
    path = save_checkpoint(run_copy, 10, ck.model, ck.ema, ck.state)
    assert path == folder and verify_checkpoint(folder)["step"] == 10
    assert sorted(p.name for p in folder.iterdir()) == ["ema.safetensors", MANIFEST, "model.safetensors",
                                                        "state.pt"]
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]
