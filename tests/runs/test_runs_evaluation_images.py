"""`holdsgm eval` on a Fashion-MNIST run: FID/KID against the held-out images, bits/dim, and for a
class-conditional run the accuracy of a classifier trained on the real data. A tiny run on 64 images of each
part; the classifier's data is cut to a few hundred images so it trains in seconds."""

from __future__ import annotations

import pytest
import torch

from holdsgm.data.mnist import fashion_mnist_dir
from holdsgm.eval import classifier, fid
from run_helpers import CONFIGS

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (fashion_mnist_dir() / "t10k-images-idx3-ubyte.gz").is_file(),
                       reason="Debian's dataset-fashion-mnist is not installed"),
    pytest.mark.skipif(not fid.inception_available(), reason="the fid extra is not installed"),
]


@pytest.fixture
def small_classifier_data(monkeypatch, tmp_path):
    from holdsgm.data import load_dataset

    monkeypatch.setenv("HOLDSGM_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(classifier, "_fashion_splits", lambda s: (load_dataset("fashion-mnist", n=600),
                                                                 load_dataset("fashion-mnist-test", n=200)))
    monkeypatch.setitem(classifier.FASHION_VARIANTS, "main", {**classifier.FASHION_VARIANTS["main"], "epochs": 3})


def test_fashion_classifier_trains_caches_and_judges(small_classifier_data):
    from holdsgm.data import load_dataset

    clf = classifier.image_classifier("fashion-mnist")
    assert not clf.from_cache and clf.test_accuracy > 0.5  # 10 classes: chance is 0.1
    again = classifier.image_classifier("fashion-mnist")
    assert again.from_cache and again.test_accuracy == clf.test_accuracy
    test = load_dataset("fashion-mnist-test", n=200)
    assert torch.equal(again.predict(test.x), clf.predict(test.x))
    with pytest.raises(Exception, match="28x28"):
        clf.predict(torch.zeros(2, 1, 8, 8))


def test_eval_of_a_conditional_fashion_mnist_run(tmp_path, small_classifier_data):
    from holdsgm.runs import load_config, load_run
    from holdsgm.runs import train as train_run
    from holdsgm.runs.evaluation import evaluate_run

    config = load_config(CONFIGS / "fmnist-cond-hold.yaml", [
        "data.n=64", "model.channels=8", "model.attn_resolutions=[]", "train.steps=3", "train.warmup_steps=1",
        "train.batch_size=16", "train.ckpt_every=3", "train.log_every=1", "train.tensorboard=false",
        "train.amp=none"])
    train_run(config, tmp_path / "run", verbose=False)
    res = evaluate_run(load_run(tmp_path / "run"), n=20, nfe=4, nll_n=2, batch_size=20)
    m = res["metrics"]
    assert m["n"] == 20 and m["n_ref"] == 64  # the held-out part, cut as the config cuts it
    assert m["fid"] > 0 and m["kid"] == m["kid"]
    assert 0 <= m["class_accuracy"] <= 1 and m["classifier_test_accuracy"] > 0.5
    assert res["likelihood"]["bits_per_dim"] > 0
    assert any("N = 20" in note for note in res["notes"])
