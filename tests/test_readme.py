"""Every code block of the README runs, as a new user would run it, with tiny sizes.

* ```python blocks run as written, each in a fresh interpreter in a scratch folder.
* ```bash blocks run command by command, in order, in one scratch folder that has the repository's
  ``configs`` link (so later commands find what earlier ones made). Set-up lines (pip, apt-get, the test
  command itself, torchrun, cd) are skipped: CI runs those. ``holdsgm`` commands get tiny sizes: training
  a few steps, a handful of samples, a two-utterance speech corpus; the README's placeholder paths
  (``/path/to/...``) are replaced by small generated data.
* ```text / ```yaml blocks are output or configuration shown, not run.
"""

import re
import shlex
import subprocess
import sys

import numpy as np
import pytest

from run_helpers import REPO, cli_env

pytestmark = pytest.mark.slow

README = (REPO / "README.md").read_text()
BLOCKS = [(m.group(1), m.group(2)) for m in re.finditer(r"^```(\w*)\n(.*?)^```", README, re.S | re.M)]
SKIP = ("pip", "apt-get", "(apt-get", "torchrun", "cd", "bash", "git")


def _commands(block: str) -> list[str]:
    """The shell commands of a block: continuation lines joined, comments and blank lines dropped."""
    joined = re.sub(r"\\\n\s*", " ", block)
    out = []
    for line in joined.splitlines():
        line = line.split(" #")[0].strip() if not line.strip().startswith("#") else ""
        if line:
            out.append(line)
    return out


def _tiny(argv: list[str], tmp) -> list[str]:
    """A README command with tiny sizes (the same command otherwise)."""
    argv = [a.replace("/path/to/images", str(tmp / "my-images")).replace("/path/to/points.npy",
                                                                          str(tmp / "points.npy")) for a in argv]
    sub = argv[1] if len(argv) > 1 else ""
    rest = argv[2:]
    if "--n" in rest:
        i = rest.index("--n")
        rest[i + 1] = str(min(int(rest[i + 1]), 16))
    if sub == "demo":
        rest += ["--quick", "--steps", "20"]
    elif sub == "train":
        rest += ["--set", "train.steps=3", "--set", "train.ckpt_every=3", "--set", "train.log_every=1",
                 "--set", "train.warmup_steps=1", "--set", "train.tensorboard=false", "--quiet"]
        if "--dry-run" not in rest and any(k in a for a in rest for k in ("vocoder", "tts-", "resgrad")):
            rest += ["--set", "data.limit=2", "--set", "train.batch_size=2"]
    elif sub == "eval":
        rest += ["--n", "16", "--nll-n", "4", "--bound-n", "8"]
    elif sub == "fid":  # the 10 000 test images' features take ~30 min on 2 cores (cached after): 32 of them
        rest += ["--ref-n", "32"]
    elif sub == "likelihood":
        rest += ["--n", "4"]
    elif sub == "bench" and "--quick" in rest:
        rest += ["--sdes", "hold", "--samplers", "sscs", "--nfe", "10", "--n", "100"]
    elif sub == "data":
        i = rest.index("--n")
        rest[i + 1] = "2"
    return [sys.executable, "-m", "holdsgm.cli.main", sub, *rest]


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    from PIL import Image

    tmp = tmp_path_factory.mktemp("readme")
    (tmp / "configs").symlink_to(REPO / "configs")
    rng = np.random.default_rng(0)
    for cls in ("cats", "dogs"):  # "your own images": one sub-folder per class
        (tmp / "my-images" / cls).mkdir(parents=True)
        for i in range(4):
            Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(tmp / "my-images" / cls / f"{i}.png")
    np.save(tmp / "points.npy", rng.normal(size=(300, 2)).astype(np.float32))
    return tmp


def test_the_readme_has_runnable_blocks():
    kinds = [k for k, _ in BLOCKS]
    assert kinds.count("python") >= 1 and kinds.count("bash") >= 3
    assert all(k in ("bash", "python", "text", "yaml") for k in kinds), kinds  # every block says what it is


@pytest.mark.parametrize("i", [i for i, (k, _) in enumerate(BLOCKS) if k == "python"])
def test_python_block_runs_as_written(i, scratch):
    p = subprocess.run([sys.executable, "-c", BLOCKS[i][1]], cwd=scratch, env=cli_env(), capture_output=True,
                       text=True, timeout=600)
    assert p.returncode == 0, f"README python block {i}:\n{BLOCKS[i][1]}\n{p.stderr[-3000:]}"


def test_bash_blocks_run_in_order(scratch):
    ran = []
    for kind, block in BLOCKS:
        if kind != "bash":
            continue
        for line in _commands(block):
            argv = shlex.split(line)
            if argv[0] in SKIP or (argv[0] == "python" and "pytest" in argv):
                continue
            if argv[1:2] == ["eval"] and "fmnist" in line:
                # its FID reference is all 10 000 test images (~30 min on 2 cores, no CLI switch to shorten it);
                # tests/runs/test_runs_evaluation_images.py runs eval on images against 200 of them
                continue
            assert argv[0] == "holdsgm", f"README command that is not holdsgm: {line}"
            p = subprocess.run(_tiny(argv, scratch), cwd=scratch, env=cli_env(), capture_output=True, text=True,
                               timeout=900)
            assert p.returncode == 0, f"README command failed: {line}\n{p.stderr[-3000:]}"
            ran.append(argv[1])
    assert {"demo", "train", "sample", "eval", "likelihood", "bench", "data", "vocode", "tts", "config"} <= set(ran)
