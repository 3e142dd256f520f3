"""The training loop: HSM/DSM on any linear SDE, AdamW + warm-up + clipping + EMA, crash-safe
checkpoints with auto-resume, DDP under torchrun, AMP on CUDA.

Determinism. All randomness of a step comes from (i) the batch sampler, a pure function of
(seed, step); (ii) one CPU generator that draws the *global* batch's diffusion times and noise, of
which each rank takes its slice; (iii) the global torch RNG (dropout only), seeded per rank. All three
are checkpointed, so on the CPU with a fixed thread count a resumed run reproduces the losses of an
uninterrupted one bit for bit, and a DDP run of N ranks sees exactly the times, noise and examples of a
single-process run with the same global batch (EDM-style: results do not depend on the device count).

Reliability. SIGTERM/SIGINT finish the current step, write a checkpoint and return. A non-finite loss
or gradient stops training with :class:`~holdsgm.errors.NumericsError` naming the step and the last
good checkpoint; nothing is written after it. Checkpoints are atomic (see :mod:`.checkpoint`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from ..errors import CheckpointError, ConfigError, NumericsError
from ..losses import EpsModel, hsm_loss, sample_times
from ..sde.base import Kernel
from . import faults
from .builders import build_components, conditioned_network
from .checkpoint import (
    FORMAT,
    list_checkpoints,
    load_checkpoint,
    load_weights_into,
    prune_checkpoints,
    save_checkpoint,
    scan_checkpoints,
    sde_dicts_equal,
)
from .config import Config, config_warnings, save_config
from .distributed import (
    DistInfo,
    all_gather_object,
    all_reduce_max,
    all_reduce_mean,
    broadcast_object,
    init_distributed,
    resolve_device,
    shutdown_distributed,
)
from .ema import EMA
from .flat import FlatParameters, join_optimizer_state, split_optimizer_state

log = logging.getLogger("holdsgm.train")

STATS_FILE = "stats.jsonl"
CONFIG_FILE = "config.yaml"
#: ``--restart`` moves a run's checkpoints and logs to ``RUN/<RESTART_PREFIX><time>/``
RESTART_PREFIX = "old-"


#: Training times (and their kernels) are drawn for about this many at once: a block of
#: TIME_BLOCK // batch_size steps (at least one); see Trainer._times.
TIME_BLOCK = 8192


def _derive_seed(*words: int) -> int:
    """A 63-bit seed from integers (numpy SeedSequence: independent streams for (seed, purpose, rank))."""
    a, b = np.random.SeedSequence([int(w) for w in words]).generate_state(2, dtype=np.uint32)
    return ((int(a) << 32) | int(b)) & (2**63 - 1)


def lr_at(step: int, lr: float, warmup_steps: int, schedule: str = "constant", steps: int = 0,
          lr_min: float = 0.0) -> float:
    """Learning rate of update ``step`` (0-based): a linear warm-up over ``warmup_steps``, then ``schedule``:
    ``constant``, or a ``cosine`` / ``linear`` decay from ``lr`` to ``lr_min`` over the remaining updates to
    ``steps`` (the schedules of score_sde / k-diffusion / diffusers' ``get_cosine_schedule_with_warmup``)."""
    if step < warmup_steps:
        return lr * ((step + 1) / warmup_steps)
    if schedule == "constant":
        return lr
    span = max(1, steps - warmup_steps)
    p = min(1.0, (step - warmup_steps) / span)
    if schedule == "cosine":
        return lr_min + (lr - lr_min) * 0.5 * (1.0 + math.cos(math.pi * p))
    if schedule == "linear":
        return lr - (lr - lr_min) * p
    raise ValueError(f"unknown learning-rate schedule {schedule!r}")


@dataclass
class TrainResult:
    """What :meth:`Trainer.fit` did."""

    run_dir: Path
    step: int
    steps: int
    checkpoint: Path | None
    seconds: float
    total_seconds: float
    resumed_from: int | None
    stopped_by: str | None
    last_loss: float | None
    n_params: int

    @property
    def complete(self) -> bool:
        return self.step >= self.steps


class _Autocast(nn.Module):
    """Runs the wrapped network under CUDA autocast and returns float32."""

    def __init__(self, net: nn.Module, dtype: torch.dtype):
        super().__init__()
        self.net = net
        self.dtype = dtype

    def forward(self, *args, **kwargs):
        with torch.autocast("cuda", dtype=self.dtype):
            out = self.net(*args, **kwargs)
        return out.float()


class StatsWriter:
    """``stats.jsonl`` (one JSON object per log step, appended and flushed) and TensorBoard scalars."""

    def __init__(self, run_dir: Path, resume_step: int | None, tensorboard: bool):
        self.path = run_dir / STATS_FILE
        if resume_step is not None:
            self._truncate(resume_step)
        elif self.path.exists():
            self.path.unlink()
        self.file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - kept open for the whole run
        self.tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(run_dir / "tb"), purge_step=resume_step)
            except Exception as e:  # noqa: BLE001 # pragma: no cover - tensorboard missing or broken
                log.warning("TensorBoard logging disabled: %s", e)

    def _truncate(self, step: int) -> None:
        """Drop records after ``step`` (and a torn last line): a resumed run's log reads as uninterrupted."""
        if not self.path.exists():
            return
        keep = []
        for line in self.path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(rec, dict) and isinstance(rec.get("step"), int) and rec["step"] <= step:
                keep.append(line + "\n")
        from .checkpoint import atomic_write

        atomic_write(self.path, "".join(keep).encode())

    def write(self, rec: dict) -> None:
        self.file.write(json.dumps(rec) + "\n")
        self.file.flush()
        if self.tb is not None:
            for k, v in rec.items():
                if k != "step" and isinstance(v, (int, float)):
                    self.tb.add_scalar(f"train/{k.replace('/', '_per_')}", v, rec["step"])

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.file.close()
        if self.tb is not None:
            with contextlib.suppress(Exception):
                self.tb.close()


class Trainer:
    """Train the model a :class:`Config` describes, in ``run_dir`` (created or resumed).

    Args:
        config: a validated config.
        run_dir: the run folder. If it holds checkpoints, training resumes from the newest valid one
            (another SDE or architecture -> :class:`CheckpointError`).
        verbose: show a tqdm bar (on a terminal) or one line per log step (otherwise), rank 0 only.
        restart: start from step 0 even if the folder holds checkpoints; they, the logs and the config are
            first moved to ``run_dir/old-<time>/`` (nothing is deleted).

    Use ``result = trainer.fit()`` then ``trainer.close()`` (or :func:`train`, which does both).
    """

    def __init__(self, config: Config, run_dir, *, verbose: bool = True, restart: bool = False):
        self.config = config
        self.restart = restart
        self.dist = DistInfo.from_env()
        self._owns_group = False
        self.stats: StatsWriter | None = None
        try:
            self._setup(run_dir, verbose)
        except BaseException:
            self.close()
            raise

    def _setup(self, run_dir, verbose: bool) -> None:
        config = self.config
        tc = config.train
        self.device = resolve_device(tc.device, self.dist)
        self._owns_group = init_distributed(self.dist, self.device)
        self.run_dir = Path(run_dir)
        self.verbose = verbose and self.dist.is_main
        if tc.batch_size % self.dist.world_size:
            raise ConfigError(
                f"config key train.batch_size: the global batch {tc.batch_size} must be divisible "
                f"by the number of ranks {self.dist.world_size}"
            )
        self.local_batch = tc.batch_size // self.dist.world_size
        # this rank's part of a global batch
        self._rank_rows = slice(self.dist.rank * self.local_batch, (self.dist.rank + 1) * self.local_batch)
        if self.local_batch % tc.grad_accum:
            raise ConfigError(f"config key train.grad_accum: each rank's batch {self.local_batch} must be "
                              f"divisible by the number of micro-batches {tc.grad_accum}")
        micro = self.local_batch // tc.grad_accum  # the rows of each micro-batch (gradient accumulation)
        self._micro_rows = [slice(i, i + micro) for i in range(0, self.local_batch, micro)]

        if self.dist.is_main:
            _prepare_run_dir(self.run_dir)
            if self.restart and (list_checkpoints(self.run_dir) or (self.run_dir / STATS_FILE).exists()):
                moved = _move_aside(self.run_dir)
                log.warning("--restart: moved the previous checkpoints and logs of %s to %s", self.run_dir, moved)
        if self.dist.enabled:
            from .distributed import barrier

            barrier()

        comp = build_components(config, seed=tc.seed)
        self.sde = comp.sde
        self.info = comp.info
        self.data_var = comp.data_var
        self.net = comp.net.to(self.device)
        self._params = [p for p in self.net.parameters() if p.requires_grad]
        try:  # one buffer for the values, one for the gradients: AdamW, norm, clipping and EMA in one op each
            self.flat: FlatParameters | None = FlatParameters(self._params)
        except ValueError:  # mixed dtypes or devices: per-tensor updates
            self.flat = None
        self.n_params = sum(p.numel() for p in self.net.parameters())
        self.speech = comp.train if comp.info.is_speech else None  # a SpeechDataset: segments per step
        self.train_x = self.train_y = None
        if self.speech is None:
            self.train_x = comp.train.x.to(self.device)
            self.train_y = (
                comp.train.y.to(self.device) if (comp.train.y is not None and comp.info.n_classes) else None
            )
        self.state_shape = self.sde.state_shape((1, *self.info.data_shape))[1:]

        self.ema = EMA(self.net, tc.ema_decay, tc.ema_warmup)
        if self.flat is not None:
            self.ema.use_flat(self.flat)
        self.optimizer = _adamw([self.flat.param] if self.flat is not None else self._params, tc)
        amp_on = tc.amp != "none" and self.device.type == "cuda"
        if tc.amp != "none" and not amp_on:
            log.info("train.amp=%s has no effect on %s; training in float32", tc.amp, self.device.type)
        self.amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(tc.amp) if amp_on else None
        self.scaler = torch.amp.GradScaler("cuda") if self.amp_dtype == torch.float16 else None

        self.train_net: nn.Module = self.net
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel as DDP

            self.train_net = DDP(
                self.net, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
        fwd = _Autocast(self.train_net, self.amp_dtype) if self.amp_dtype is not None else self.train_net
        fwd = conditioned_network(fwd, config, self.info)  # PriorGrad: the SDE runs on u / sigma
        self.priorgrad = fwd if config.model.conditioning == "priorgrad" else None
        self.eps_model = EpsModel(fwd, self.sde, mixed=config.model.mixed_score, data_var=self.data_var)
        self.stage2_origin: dict | None = None  # stage two: where its initial weights came from

        from ..data import InfiniteBatchSampler

        self.sampler = InfiniteBatchSampler(
            len(comp.train),
            self.local_batch,
            seed=tc.seed,
            rank=self.dist.rank,
            world_size=self.dist.world_size,
        )
        self.generator = torch.Generator().manual_seed(_derive_seed(tc.seed, 1))
        torch.manual_seed(_derive_seed(tc.seed, 2, self.dist.rank))  # dropout etc., per rank

        self.step = 0
        self._time_block: tuple[int, Tensor, Tensor, Tensor] | None = None  # see _times
        self.elapsed = 0.0  # training seconds over all sessions
        self._acc = {"loss": 0.0, "grad_norm": 0.0, "count": 0}
        self.last_checkpoint: Path | None = None
        self.resumed_from: int | None = None
        self._stop: str | None = None
        self._nan_step = faults.int_env(faults.NAN_AT_STEP)
        self._step_sleep = faults.float_env(faults.STEP_SLEEP)
        self._kill_hook = bool(os.environ.get(faults.KILL_AT))
        self._resume()
        if self.dist.is_main:
            save_config(config, self.run_dir / CONFIG_FILE)
            if self.step < tc.steps:
                for w in config_warnings(config):
                    log.warning("%s", w)
        if config.data.random_flip and len(self.info.data_shape) != 3:
            raise ConfigError(f"config key data.random_flip: flips are for images; {self.info.name!r} has items "
                              f"of shape {self.info.data_shape}")

    # ------------------------------------------------------------------ checkpoints
    def _state(self) -> dict:
        rng_cpu = torch.get_rng_state()
        rng_cuda = torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None
        if self.dist.enabled:
            per_rank = all_gather_object((rng_cpu, rng_cuda))
            rng_cpu_all = [r[0] for r in per_rank]
            rng_cuda_all = [r[1] for r in per_rank]
        else:
            rng_cpu_all, rng_cuda_all = [rng_cpu], [rng_cuda]
        from .. import __version__

        return {
            "format": FORMAT,
            "step": self.step,
            "config": self.config.to_dict(),
            "sde": self.sde.to_dict(),
            "network": {"kind": self.net.kind, "config": dict(self.net.config)},
            "eps_model": {"mixed": self.config.model.mixed_score, "data_var": self.data_var},
            "dataset": self.info.to_dict(),
            "optimizer": self._optimizer_state(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "rng": {
                "torch_cpu": rng_cpu_all,
                "torch_cuda": rng_cuda_all,
                "generator": self.generator.get_state(),
            },
            "sampler": self.sampler.state_dict() | {"step": self.step},
            "log": dict(self._acc),
            "elapsed": self.elapsed,
            "stage2_origin": self.stage2_origin,
            "world_size": self.dist.world_size,
            "versions": {"holdsgm": str(__version__), "torch": str(torch.__version__)},
        }

    def _optimizer_state(self) -> dict:
        """The optimiser's state in the per-parameter layout (whether or not the parameters are flat)."""
        state = self.optimizer.state_dict()
        return split_optimizer_state(state, self.flat) if self.flat is not None else state

    def _load_optimizer_state(self, state: dict) -> None:
        self.optimizer.load_state_dict(join_optimizer_state(state, self.flat) if self.flat is not None else state)

    def _all_finite(self) -> bool:
        return all(bool(torch.isfinite(p).all()) for p in self.net.parameters()) and all(
            bool(torch.isfinite(p).all()) for p in self.ema.model.parameters()
        )

    def save(self) -> Path | None:
        """Write a checkpoint of the current step (rank 0 writes; all ranks must call it)."""
        state = self._state()  # collective under DDP
        if not self._all_finite():  # never write a poisoned checkpoint (the ranks' weights are identical)
            raise NumericsError(
                f"non-finite weights at step {self.step}; not writing a checkpoint "
                f"(last good checkpoint: {self.last_checkpoint or 'none'})"
            )
        path = None
        if self.dist.is_main:
            path = save_checkpoint(
                self.run_dir, self.step, self.net.state_dict(), self.ema.state_dict(), state
            )
            prune_checkpoints(self.run_dir, self.config.train.keep_checkpoints, path)
            self.last_checkpoint = path
        if self.dist.enabled:
            path = broadcast_object(str(path) if path else None)
            path = Path(path) if path else None
            self.last_checkpoint = path
        return path

    def _find_resume_point(self) -> Path | None:
        """The newest valid checkpoint of the run folder (rank 0). A folder that holds checkpoints of
        which none can be loaded is not started over (that would soon overwrite or prune them): it is a
        CheckpointError that says how to recover. Unloadable folders beside a valid one are reported."""
        found, broken = scan_checkpoints(self.run_dir)
        if found is None and broken:
            names = "; ".join(f"{p.name}: {_reason(r, p)}" for p, r in broken[:3])
            more = f" (and {len(broken) - 3} more)" if len(broken) > 3 else ""
            raise CheckpointError(
                f"run folder {self.run_dir} holds {len(broken)} checkpoint(s) and none can be loaded ({names}"
                f"{more}); nothing was changed. To start over and keep them, run again with --restart (they "
                f"are moved to {self.run_dir}/{RESTART_PREFIX}<time>/), or train into another --out folder"
            )
        if found is not None:
            step = int(found.name.split("-")[-1])
            for p, r in broken:
                if int(p.name.split("-")[-1]) > step:
                    log.warning("checkpoint %s cannot be loaded (%s); resuming from %s: the run re-creates "
                                "this step and replaces the folder only then", p.name, _reason(r, p), found.name)
                else:
                    log.warning("checkpoint %s cannot be loaded (%s); left in place", p.name, _reason(r, p))
        return found

    def _resume(self) -> None:
        found = self._find_resume_point() if self.dist.is_main else None
        if self.dist.enabled:
            found = broadcast_object(str(found) if found else None)
            found = Path(found) if found else None
        if found is None:
            if self.config.stage2.enabled:
                self._init_from_stage_one()
            self.stats = (
                StatsWriter(self.run_dir, None, self.config.train.tensorboard) if self.dist.is_main else None
            )
            return
        ck = load_checkpoint(found)
        st = ck.state
        src = ck.path / "state.pt"
        if not sde_dicts_equal(st.get("sde", {}), self.sde.to_dict()):
            raise CheckpointError(
                f"{src} was trained with another SDE ({st.get('sde')}) than the config "
                f"({self.sde.to_dict()}); use a new --out folder"
            )
        desc = st.get("network", {})
        if desc.get("kind") != self.net.kind:
            raise CheckpointError(
                f"{src} holds a {desc.get('kind')!r} network but the config builds "
                f"{self.net.kind!r}; use a new --out folder"
            )
        load_weights_into(self.net, ck.model, ck.path / "model.safetensors")
        load_weights_into(self.ema.model, ck.ema, ck.path / "ema.safetensors")
        old = st.get("dataset", {})
        if (
            tuple(old.get("data_shape", ())) != tuple(self.info.data_shape)
            or old.get("name") != self.info.name
        ):
            raise CheckpointError(
                f"{src} was trained on data {old.get('name')!r} {tuple(old.get('data_shape', ()))}"
                f", the config loads {self.info.name!r} {self.info.data_shape}"
            )
        try:
            self._load_optimizer_state(st["optimizer"])
            if self.scaler is not None and st.get("scaler"):
                self.scaler.load_state_dict(st["scaler"])
            self.generator.set_state(st["rng"]["generator"])
            cpu_states = st["rng"]["torch_cpu"]
            if st.get("world_size", 1) == self.dist.world_size and len(cpu_states) == self.dist.world_size:
                torch.set_rng_state(cpu_states[self.dist.rank])
                cuda_state = st["rng"]["torch_cuda"][self.dist.rank]
                if cuda_state is not None and self.device.type == "cuda":
                    torch.cuda.set_rng_state(cuda_state, self.device)
            else:
                log.warning(
                    "resuming with %d rank(s) instead of %d: dropout randomness is re-seeded",
                    self.dist.world_size,
                    st.get("world_size", 1),
                )
                torch.manual_seed(_derive_seed(self.config.train.seed, 3, self.dist.rank, ck.step))
            self.sampler.load_state_dict({"seed": st["sampler"]["seed"], "step": ck.step})
        except (KeyError, TypeError, ValueError, RuntimeError) as e:
            raise CheckpointError(
                f"{src} has an incompatible training state: {' '.join(str(e).split())}"
            ) from None
        self.step = ck.step
        self.elapsed = float(st.get("elapsed", 0.0))
        self.stage2_origin = st.get("stage2_origin")
        self._acc = dict(st.get("log", self._acc))
        self.last_checkpoint = ck.path
        self.resumed_from = ck.step
        self.stats = (
            StatsWriter(self.run_dir, ck.step, self.config.train.tensorboard) if self.dist.is_main else None
        )
        if self.verbose:
            log.info("resuming %s from step %d (%s)", self.run_dir, ck.step, ck.path.name)

    def _init_from_stage_one(self) -> None:
        """Stage two starts from the weights of the trained run ``stage2.init`` (same SDE, network and
        conditioning); the EMA starts there too. Only at a fresh start: a resumed run has its own."""
        s2 = self.config.stage2
        try:
            ck = load_checkpoint(s2.init)
        except CheckpointError as e:
            raise CheckpointError(f"stage2.init: {e}") from None
        st = ck.state
        src = ck.path / "state.pt"
        if not sde_dicts_equal(st.get("sde", {}), self.sde.to_dict()):
            raise CheckpointError(
                f"stage2.init: {src} was trained with another SDE ({st.get('sde')}) than the config "
                f"({self.sde.to_dict()}); use the stage-one run's sde settings"
            )
        desc = st.get("network", {})
        if desc.get("kind") != self.net.kind or dict(desc.get("config", {})) != dict(self.net.config):
            raise CheckpointError(
                f"stage2.init: {src} holds a {desc.get('kind')!r} network {desc.get('config')}, the config "
                f"builds {self.net.kind!r} {self.net.config}; use the stage-one run's model settings"
            )
        old = (st.get("config") or {}).get("model", {}).get("conditioning", "plain")
        if old != self.config.model.conditioning:
            raise CheckpointError(
                f"stage2.init: {src} was trained with model.conditioning={old!r}, the config has "
                f"{self.config.model.conditioning!r}"
            )
        weights = ck.ema if s2.which == "ema" else ck.model
        load_weights_into(self.net, weights, ck.path)
        load_weights_into(self.ema.model, weights, ck.path)
        self.stage2_origin = {
            "init": str(ck.path.resolve()),
            "init_step": int(ck.step),
            "init_seconds": float(st.get("elapsed", 0.0)),
            "init_which": s2.which,
        }
        if self.verbose:
            log.info("stage two: starting from %s (step %d, %s weights)", ck.path, ck.step, s2.which)

    # ------------------------------------------------------------------ one step
    def _speech_batch(self, step: int) -> tuple[Tensor, Tensor]:
        """This rank's part of step ``step``'s global batch of (wave, log-mel) training segments: a pure
        function of (seed, step), like the batch sampler's indices."""
        from ..audio import random_segments

        tc = self.config.train
        wave, mel = random_segments(self.speech, tc.batch_size, self.info.audio["segment_frames"],
                                    seed=_derive_seed(tc.seed, 5, step))
        rows = self._rank_rows
        return wave[rows].to(self.device), mel[rows].to(self.device)

    def _stage2_loss(self, x0: Tensor, y: Tensor) -> Tensor:
        """Stage two's predictive loss of the few-step vocoder's output (see :class:`Stage2Config`)."""
        from ..audio import l2_loss, mrstft_loss
        from ..samplers import PerSampleNoise
        from .inference import vocoder_sample

        s2 = self.config.stage2
        seeds = torch.randint(0, 2**62, (self.config.train.batch_size,), generator=self.generator)
        x = vocoder_sample(self.eps_model, self.sde, y, hop=self.info.audio["hop"], nfe=s2.nfe,
                           sampler=s2.sampler, grid=s2.grid, noise=PerSampleNoise(seeds[self._rank_rows].tolist()),
                           grad=True)
        loss = x0.new_zeros(())
        if s2.l2_weight:
            loss = loss + s2.l2_weight * l2_loss(x, x0)
        if s2.mrstft_weight:
            loss = loss + s2.mrstft_weight * mrstft_loss(x, x0)
        return loss

    def _draw(self, step: int) -> tuple[Tensor, Tensor, Tensor | None, Kernel]:
        """Times, state noise, label-dropout mask and the times' kernels for this rank's part of step
        ``step``'s global batch."""
        tc = self.config.train
        g = self.generator
        n = tc.batch_size
        eps = torch.randn((n, *self.state_shape), generator=g)
        drop = torch.rand(n, generator=g) < tc.label_dropout if tc.label_dropout > 0 else None
        dev = self.device
        t, kernel = self._times(step)
        rows = self._rank_rows
        return t, eps[rows].to(dev, non_blocking=True), None if drop is None else drop[rows].to(dev), kernel

    def _times(self, step: int) -> tuple[Tensor, Kernel]:
        """This rank's training times at step ``step`` and their HSM kernels: a pure function of (seed, step).

        Times are drawn for a block of steps at once (each step's global batch stratified on its own, as
        :func:`sample_times`), and the block's kernels are computed in one call: a kernel's cost is mostly
        per operation, not per time (toy MLP at batch 512: one step's 512 kernels 0.84 ms, ~4 % of its step;
        a block of 16 steps' 8192 kernels ~3.7 ms, 0.23 ms per step).
        """
        tc = self.config.train
        rows = max(1, TIME_BLOCK // tc.batch_size)
        block, i = divmod(step, rows)
        if self._time_block is None or self._time_block[0] != block:
            g = torch.Generator().manual_seed(_derive_seed(tc.seed, 6, block))
            t = sample_times(tc.batch_size, self.sde, stratified=tc.stratified, generator=g, rows=rows)
            t = t[:, self._rank_rows].to(self.device)
            k = self.sde.marginal(t.reshape(-1))
            shape = (*t.shape, *k.phi.shape[-2:])
            self._time_block = (block, t, k.phi.reshape(shape), k.chol.reshape(shape))
        _, t, phi, chol = self._time_block
        return t[i], Kernel(phi[i], chol[i])

    def lr(self, step: int) -> float:
        """The learning rate of update ``step`` (0-based): warm-up, then the configured schedule."""
        tc = self.config.train
        return lr_at(step, tc.lr, tc.warmup_steps, tc.lr_schedule, tc.steps, tc.lr_min)

    def _flip(self, x0: Tensor, step: int) -> Tensor:
        """``data.random_flip``: each image mirrored left-right with probability 1/2, by a mask that is a pure
        function of (seed, step) over the global batch (resumes and DDP ranks agree)."""
        g = torch.Generator().manual_seed(_derive_seed(self.config.train.seed, 7, step))
        mask = (torch.rand(self.config.train.batch_size, generator=g) < 0.5)[self._rank_rows].to(x0.device)
        return torch.where(mask.view(-1, *([1] * (x0.dim() - 1))), x0.flip(-1), x0)

    def train_step(self) -> tuple[float, float]:
        """One optimiser update; returns (loss, gradient norm before clipping)."""
        tc = self.config.train
        step = self.step
        if self.speech is not None:
            x0, y = self._speech_batch(step)  # y: the log-mel condition
        else:
            idx = self.sampler.batch_at(step).to(self.device)
            x0, y = self.train_x.index_select(0, idx), None
            if self.config.data.random_flip:
                x0 = self._flip(x0, step)
        if self._nan_step is not None and step == self._nan_step:
            x0 = torch.full_like(x0, float("nan"))
        lr = self.lr(step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr

        if self.config.stage2.enabled:
            loss = self._stage2_loss(x0, y)
            self._backward(loss)
        else:
            t, eps, drop, kernel = self._draw(step)
            if self.train_y is not None:
                y = self.train_y.index_select(0, idx)
                if drop is not None:
                    y = torch.where(drop, torch.full_like(y, self.info.n_classes), y)
            if self.priorgrad is not None:
                x0 = x0 / self.priorgrad.std(y)  # the SDE runs on u / sigma
            loss = self._accumulate(x0, y, t, eps, kernel)
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        flat = self.flat
        if flat is not None:
            params = [flat.param]
            gnorm = torch.linalg.vector_norm(flat.param.grad)
        else:
            params = self._params
            gnorm = torch.nn.utils.get_total_norm([p.grad for p in params if p.grad is not None])
        loss_v, gnorm_v = torch.stack([loss.detach().float(), gnorm.float()]).tolist()
        if not math.isfinite(loss_v) or (not math.isfinite(gnorm_v) and self.scaler is None):
            what = "loss" if not math.isfinite(loss_v) else "gradient norm"
            value = loss_v if what == "loss" else gnorm_v
            raise NumericsError(
                f"non-finite {what} ({value}) at step {step + 1}; training stopped without "
                f"writing a checkpoint; last good checkpoint: {self.last_checkpoint or 'none'}"
            )
        if tc.grad_clip > 0 and gnorm_v + 1e-6 > tc.grad_clip:
            # below the threshold the clip factor is exactly 1 (a no-op multiply, skipped)
            torch.nn.utils.clip_grads_with_norm_(params, tc.grad_clip, gnorm)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.ema.update(step)
        self.step = step + 1
        return loss_v, gnorm_v

    def _accumulate(self, x0: Tensor, y: Tensor | None, t: Tensor, eps: Tensor, kernel: Kernel) -> Tensor:
        """The HSM loss of this rank's batch and its gradients, over ``train.grad_accum`` micro-batches (each
        micro-batch's mean loss weighted by its share of the batch, so the sum is the batch's mean loss)."""
        tc = self.config.train
        parts = self._micro_rows
        if len(parts) == 1:
            loss = hsm_loss(self.eps_model.eps, self.sde, x0, t=t, eps=eps, weighting=tc.weighting,
                            y=y, reduction="mean", kernel=kernel)
            self._backward(loss)
            return loss
        total = x0.new_zeros(())
        for j, rows in enumerate(parts):
            part = hsm_loss(self.eps_model.eps, self.sde, x0[rows], t=t[rows], eps=eps[rows],
                            weighting=tc.weighting, y=None if y is None else y[rows], reduction="mean",
                            kernel=Kernel(kernel.phi[rows], kernel.chol[rows])) / len(parts)
            sync = self.dist.enabled and j < len(parts) - 1  # DDP averages once, after the last micro-batch
            with self.train_net.no_sync() if sync else contextlib.nullcontext():
                self._backward(part, accumulate=j > 0)
            total = total + part.detach()
        return total

    def _backward(self, loss: Tensor, accumulate: bool = False) -> None:
        """The parameters' gradients of ``loss`` (scaled for float16 autocast) in their ``.grad``, replacing
        the last step's (``accumulate``: added to them): with flat buffers, straight into the flat gradient
        buffer (under DDP by backward's accumulation into its zeroed views, whose hooks average the
        gradients between ranks)."""
        if self.scaler is not None:
            loss = self.scaler.scale(loss)
        flat = self.flat
        if flat is None:
            if not accumulate:
                self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
        elif self.dist.enabled:
            if not accumulate:
                flat.zero_grad()
            loss.backward()
            flat.gather()
        else:
            flat.backward(loss, accumulate=accumulate)

    # ------------------------------------------------------------------ the loop
    def _on_signal(self, signum, frame) -> None:
        if self._stop is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self._stop = signal.Signals(signum).name

    @contextlib.contextmanager
    def _signals(self):
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        old = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
        for s in old:
            signal.signal(s, self._on_signal)
        try:
            yield
        finally:
            for s, h in old.items():
                signal.signal(s, h)

    def _log(self, lr: float, interval_steps: int, interval_seconds: float) -> dict:
        acc = self._acc
        vals = [acc["loss"] / max(acc["count"], 1), acc["grad_norm"] / max(acc["count"], 1)]
        if self.dist.enabled:
            vals = all_reduce_mean(vals, self.device)
        rec = {
            "step": self.step,
            "loss": vals[0],
            "lr": lr,
            "grad_norm": vals[1],
            "it/s": interval_steps / interval_seconds if interval_seconds > 0 else float("nan"),
            "seconds": round(self.elapsed, 3),
        }
        self._acc = {"loss": 0.0, "grad_norm": 0.0, "count": 0}
        if self.stats is not None:
            self.stats.write(rec)
        return rec

    def fit(self) -> TrainResult:
        """Train to ``config.train.steps`` (or until SIGTERM/SIGINT); returns a :class:`TrainResult`."""
        tc = self.config.train
        start_step = self.step
        session_start = time.perf_counter()
        last_loss = None
        bar = None
        if self.verbose and self.step < tc.steps and sys.stderr.isatty():
            from tqdm.auto import tqdm

            bar = tqdm(
                total=tc.steps,
                initial=self.step,
                unit="step",
                dynamic_ncols=True,
                leave=True,
                desc=self.run_dir.name,
            )
        with self._signals():
            t_mark, s_mark = time.perf_counter(), self.step
            try:
                while self.step < tc.steps:
                    t0 = time.perf_counter()
                    loss_v, gnorm_v = self.train_step()
                    self.elapsed += time.perf_counter() - t0
                    last_loss = loss_v
                    self._acc["loss"] += loss_v
                    self._acc["grad_norm"] += gnorm_v
                    self._acc["count"] += 1
                    if bar is not None:
                        bar.update(1)
                    if self._step_sleep:
                        time.sleep(self._step_sleep)
                    if self._kill_hook:
                        faults.reached("step")
                    stop = self._stop is not None
                    if self.dist.enabled:
                        stop = all_reduce_max(float(stop), self.device) > 0
                    if self.step % tc.log_every == 0 or self.step == tc.steps:
                        now = time.perf_counter()
                        rec = self._log(self.lr(self.step - 1), self.step - s_mark, now - t_mark)
                        t_mark, s_mark = now, self.step
                        if bar is not None:
                            bar.set_postfix(loss=f"{rec['loss']:.4f}", refresh=False)
                        elif self.verbose:
                            print(
                                f"step {self.step}/{tc.steps}  loss {rec['loss']:.4f}  lr {rec['lr']:.3g}  "
                                f"grad {rec['grad_norm']:.3g}  {rec['it/s']:.1f} it/s",
                                file=sys.stderr,
                            )
                    if stop or self.step % tc.ckpt_every == 0 or self.step == tc.steps:
                        self.save()
                    if stop:
                        self._stop = self._stop or "signal"
                        break
            finally:
                if bar is not None:
                    bar.close()
                if self.stats is not None:
                    self.stats.close()
        seconds = time.perf_counter() - session_start
        if self.verbose and start_step == self.step and self.step >= tc.steps:
            log.info("%s is already trained to step %d", self.run_dir, self.step)
        return TrainResult(
            self.run_dir,
            self.step,
            tc.steps,
            self.last_checkpoint,
            seconds,
            self.elapsed,
            self.resumed_from,
            self._stop,
            last_loss,
            self.n_params,
        )

    def close(self) -> None:
        """Release the model and optimizer, then leave the process group (the gloo teardown fix)."""
        for name in ("train_net", "eps_model", "optimizer", "ema", "flat", "net", "scaler"):
            if hasattr(self, name):
                delattr(self, name)
        if getattr(self, "stats", None) is not None:
            self.stats.close()
        shutdown_distributed(getattr(self, "_owns_group", False))


def _adamw(params, tc) -> torch.optim.Optimizer:
    """AdamW (Loshchilov & Hutter 2019); the fused kernel where torch has one (3-4x faster than the
    foreach version for small CPU models, and deterministic)."""
    kw = {"lr": tc.lr, "betas": tuple(tc.betas), "weight_decay": tc.weight_decay}
    try:
        return torch.optim.AdamW(params, fused=True, **kw)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.AdamW(params, **kw)


def _prepare_run_dir(run_dir: Path) -> None:
    """Create the run folder and check it is writable (one clear OSError otherwise)."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise OSError(f"cannot write to run folder {run_dir}: {e.strerror or e}") from None


def _reason(message: str, folder: Path) -> str:
    """A checkpoint error message without the folder's path (it is named beside it)."""
    return message.replace(f"checkpoint {folder} ", "").replace(f"{folder}{os.sep}", "")


def _move_aside(run_dir: Path) -> Path:
    """Move a run's checkpoints, logs and config into ``run_dir/old-<time>/`` (``--restart``)."""
    dest = run_dir / f"{RESTART_PREFIX}{time.strftime('%Y%m%d-%H%M%S')}"
    k = 1
    while dest.exists():
        k += 1
        dest = run_dir / f"{RESTART_PREFIX}{time.strftime('%Y%m%d-%H%M%S')}-{k}"
    dest.mkdir()
    for name in ("checkpoints", STATS_FILE, CONFIG_FILE, "tb"):
        if (run_dir / name).exists():
            os.replace(run_dir / name, dest / name)
    return dest


def train(config: Config, run_dir, *, verbose: bool = True, restart: bool = False) -> TrainResult:
    """Build a :class:`Trainer`, fit, and release it (also on errors). ``restart``: see :class:`Trainer`."""
    trainer = Trainer(config, run_dir, verbose=verbose, restart=restart)
    try:
        return trainer.fit()
    finally:
        trainer.close()
