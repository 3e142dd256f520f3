"""The training engine: the loop around a :class:`~holdsgm.engine.task.Task`.

AdamW (fused) with warm-up and a learning-rate schedule, gradient accumulation and clipping, an EMA of the
weights, flat parameter/gradient buffers, DDP under torchrun, AMP on CUDA, crash-safe checkpoints with
auto-resume, SIGTERM/SIGINT, and a stop at the first non-finite loss or gradient. What is trained, on what
data and with which loss is the task's (EDM2's training loop takes its loss the same way).

Determinism. A step's randomness comes from the task's streams, pure functions of (seed, step), and from
the global torch RNG (dropout only), seeded per rank; all are checkpointed, so on the CPU with a fixed thread
count a resumed run reproduces the losses of an uninterrupted one bit for bit, and a DDP run of N ranks sees
exactly the batches of a single process with the same global batch.

Reliability. A checkpoint is written (atomically, then verified) every ``ckpt_every`` steps, at the end and
when a signal arrives; rotation removes only verified older checkpoints. A run folder whose checkpoints all
fail to load is not started over: it is a CheckpointError that says how to recover.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from ..errors import CheckpointError, ConfigError, NumericsError
from .checkpoint import FORMAT, list_checkpoints, load_checkpoint, load_weights_into, prune_checkpoints, save_checkpoint
from .distributed import (
    DistInfo,
    all_reduce_max,
    all_reduce_mean,
    barrier,
    broadcast_object,
    init_distributed,
    resolve_device,
    restore_rng_states,
    rng_states,
    shutdown_distributed,
)
from .ema import EMA
from .faults import Faults
from .flat import FlatParameters, join_optimizer_state, split_optimizer_state
from .options import Options, adamw, derive_seed, lr_at
from .rundir import find_resume_point, move_aside, prepare_run_dir
from .stats import STATS_FILE, StatsWriter
from .task import Task

log = logging.getLogger("holdsgm.train")


@dataclass
class TrainResult:
    """What :meth:`Engine.fit` did."""

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
    """Runs the wrapped network under autocast (CUDA: bf16 or fp16; CPU: bf16) and returns float32."""

    def __init__(self, net: nn.Module, dtype: torch.dtype, device_type: str = "cuda"):
        super().__init__()
        self.net, self.dtype, self.device_type = net, dtype, device_type

    def forward(self, *args, **kwargs):
        with torch.autocast(self.device_type, dtype=self.dtype):
            return self.net(*args, **kwargs).float()


class Engine:
    """Train ``task.net`` in ``run_dir`` (created, or resumed from its newest valid checkpoint).

    Args:
        task: what is trained and how (:class:`~holdsgm.engine.task.Task`).
        options: steps, batch, optimiser, schedule, EMA, logging, checkpoints, device (:class:`Options`).
        run_dir: the run folder.
        metadata: written into every checkpoint's state beside the engine's and the task's (the run's config,
            SDE, network description, data: whatever loading the run needs).
        resume_check: ``f(state, source)`` raising CheckpointError when a checkpoint does not belong to this
            run (another SDE, network or data); called before its weights are loaded.
        verbose: a tqdm bar (on a terminal) or one line per log step (otherwise), rank 0 only.
        restart: start from step 0 even if the folder holds checkpoints; they, the logs and the config are
            first moved to ``run_dir/old-<time>/`` (nothing is deleted).
        faults: the crash-safety tests' fault points (:class:`~holdsgm.engine.faults.Faults`), else None.
        on_start: ``f(run_dir, step)`` called on rank 0 once the folder is ready and the run resumed (at
            ``step``), e.g. to write the config.

    Use ``result = engine.fit()`` then ``engine.close()`` (or :func:`train`, which does both).
    """

    def __init__(self, task: Task, options: Options, run_dir, *, metadata: dict | None = None,
                 resume_check: Callable[[dict, Path], None] | None = None, verbose: bool = True,
                 restart: bool = False, faults: Faults | None = None,
                 on_start: Callable[[Path, int], None] | None = None):
        self.task, self.opt, self.metadata, self.faults = task, options, dict(metadata or {}), faults
        self.dist = DistInfo.from_env()
        self._owns_group = False
        self.stats: StatsWriter | None = None
        try:
            self._setup(Path(run_dir), verbose, restart, resume_check, on_start)
        except BaseException:
            self.close()
            raise

    def _setup(self, run_dir: Path, verbose: bool, restart: bool, resume_check, on_start) -> None:
        o = self.opt
        self.device = resolve_device(o.device, self.dist)
        self._owns_group = init_distributed(self.dist, self.device)
        self.run_dir, self.verbose = run_dir, verbose and self.dist.is_main
        if o.batch_size % (self.dist.world_size * o.grad_accum):
            raise ConfigError(f"config key train.batch_size: the global batch {o.batch_size} must be divisible by "
                              f"the number of ranks x micro-batches, {self.dist.world_size} x {o.grad_accum}")
        if self.dist.is_main:
            prepare_run_dir(run_dir)
            if restart and (list_checkpoints(run_dir) or (run_dir / STATS_FILE).exists()):
                log.warning("--restart: moved the previous checkpoints and logs of %s to %s", run_dir,
                            move_aside(run_dir))
        if self.dist.enabled:
            barrier()
        self.net = self.task.net.to(self.device)
        self.task.bind(self.device, self.dist.rank, self.dist.world_size)
        self._params = [p for p in self.net.parameters() if p.requires_grad]
        try:  # one buffer for the values, one for the gradients: AdamW, norm, clipping and EMA in one op each
            self.flat: FlatParameters | None = FlatParameters(self._params)
        except ValueError:  # mixed dtypes or devices: per-tensor updates
            self.flat = None
        self.n_params = sum(p.numel() for p in self.net.parameters())
        self.ema = EMA(self.net, o.ema_decay, o.ema_warmup)
        if self.flat is not None:
            self.ema.use_flat(self.flat)
        self.optimizer = adamw([self.flat.param] if self.flat is not None else self._params, o)
        # CPU autocast runs bf16 only (its fp16 kernels are few and slow). bf16 there is ~1.6x faster on CPUs
        # with native bf16 (AVX512-BF16/AMX; a 1.2M U-Net on 28x28 at batch 128, 2 cores: 0.89 vs 1.39 s/step)
        # but ~1.5x slower on CPUs without it (emulated; AVX-512 without BF16: 2.7 vs 1.78 s/step); amp=auto
        # takes bf16 only where the hardware runs it natively
        amp = o.amp
        if amp == "auto":
            amp = "bf16" if native_bf16(self.device) else "none"
            log.info("train.amp=auto: %s on this %s", "bf16 autocast" if amp == "bf16" else
                     "float32 (no native bf16)", self.device.type)
        elif amp == "bf16" and self.device.type == "cpu" and not native_bf16(self.device):
            log.warning("train.amp=bf16 on a CPU without native bf16 (avx512_bf16 / amx_bf16): autocast is "
                        "emulated there and usually slower than float32; train.amp=auto picks for you")
        amp_on = (amp == "bf16" and self.device.type == "cpu") or (amp != "none" and self.device.type == "cuda")
        if amp != "none" and not amp_on:
            log.info("train.amp=%s has no effect on %s; training in float32", amp, self.device.type)
        self.amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp) if amp_on else None
        self.scaler = torch.amp.GradScaler("cuda") if self.amp_dtype == torch.float16 else None
        self.train_net: nn.Module = self.net
        self._no_sync: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ddp = DDP(self.net, device_ids=[self.device.index] if self.device.type == "cuda" else None)
            self.train_net, self._no_sync = ddp, ddp.no_sync
        self.forward: nn.Module = (_Autocast(self.train_net, self.amp_dtype, self.device.type)
                                   if self.amp_dtype is not None
                                   else self.train_net)
        torch.manual_seed(derive_seed(o.seed, 2, self.dist.rank))  # dropout etc., per rank
        self.step, self.elapsed = 0, 0.0
        self.resumed_from: int | None = None
        self._acc = {"loss": 0.0, "grad_norm": 0.0, "count": 0}
        self.last_checkpoint: Path | None = None
        self._stop: str | None = None
        self._resume(resume_check)
        if self.dist.is_main and on_start is not None:
            on_start(run_dir, self.step)

    # ------------------------------------------------------------------ checkpoints
    def _state(self) -> dict:
        rng = rng_states(self.dist, self.device)  # collective under DDP
        from .. import __version__

        state = {
            **self.metadata,
            "format": FORMAT,
            "step": self.step,
            "optimizer": self._optimizer_state(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "rng": rng,
            "log": dict(self._acc),
            "elapsed": self.elapsed,
            "world_size": self.dist.world_size,
            "versions": {"holdsgm": str(__version__), "torch": str(torch.__version__)},
        }
        for key, value in self.task.state_dict().items():  # merged one level deep (the task's rng streams)
            state[key] = {**state[key], **value} if isinstance(value, dict) and isinstance(state.get(key), dict) \
                else value
        return state

    def _optimizer_state(self) -> dict:
        """The optimiser's state in the per-parameter layout (whether or not the parameters are flat)."""
        state = self.optimizer.state_dict()
        return split_optimizer_state(state, self.flat) if self.flat is not None else state

    def save(self) -> Path | None:
        """Write a checkpoint of the current step (rank 0 writes; all ranks must call it)."""
        state = self._state()  # collective under DDP
        weights = [*self.net.parameters(), *self.ema.model.parameters()]
        if not all(bool(torch.isfinite(p).all()) for p in weights):  # never write a poisoned checkpoint
            raise NumericsError(f"non-finite weights at step {self.step}; not writing a checkpoint "
                                f"(last good checkpoint: {self.last_checkpoint or 'none'})")
        path = None
        if self.dist.is_main:
            path = save_checkpoint(self.run_dir, self.step, self.net.state_dict(), self.ema.state_dict(), state,
                                   hooks=self.faults)
            prune_checkpoints(self.run_dir, self.opt.keep_checkpoints, path)
        if self.dist.enabled:
            path = broadcast_object(str(path) if path else None)
            path = Path(path) if path else None
        self.last_checkpoint = path
        return path

    def _resume(self, resume_check) -> None:
        found = find_resume_point(self.run_dir) if self.dist.is_main else None
        if self.dist.enabled:
            found = broadcast_object(str(found) if found else None)
            found = Path(found) if found else None
        if found is None:
            weights = self.task.init_weights()
            if weights is not None:
                load_weights_into(self.net, weights, "the task's initial weights")
                load_weights_into(self.ema.model, weights, "the task's initial weights")
            self.stats = StatsWriter(self.run_dir, None, self.opt.tensorboard) if self.dist.is_main else None
            return
        ck = load_checkpoint(found)
        st, src = ck.state, ck.path / "state.pt"
        if resume_check is not None:
            resume_check(st, src)
        load_weights_into(self.net, ck.model, ck.path / "model.safetensors")
        load_weights_into(self.ema.model, ck.ema, ck.path / "ema.safetensors")
        try:
            opt_state = st["optimizer"]
            self.optimizer.load_state_dict(join_optimizer_state(opt_state, self.flat) if self.flat else opt_state)
            if self.scaler is not None and st.get("scaler"):
                self.scaler.load_state_dict(st["scaler"])
            if not restore_rng_states(st["rng"], st.get("world_size", 1), self.dist, self.device):
                log.warning("resuming with %d rank(s) instead of %d: dropout randomness is re-seeded",
                            self.dist.world_size, st.get("world_size", 1))
                torch.manual_seed(derive_seed(self.opt.seed, 3, self.dist.rank, ck.step))
            self.task.load_state_dict(st, ck.step)
        except (KeyError, TypeError, ValueError, RuntimeError) as e:
            raise CheckpointError(f"{src} has an incompatible training state: {' '.join(str(e).split())}") from None
        self.step = self.resumed_from = ck.step
        self.elapsed = float(st.get("elapsed", 0.0))
        self._acc = dict(st.get("log", self._acc))
        self.last_checkpoint = ck.path
        self.stats = StatsWriter(self.run_dir, ck.step, self.opt.tensorboard) if self.dist.is_main else None
        if self.verbose:
            log.info("resuming %s from step %d (%s)", self.run_dir, ck.step, ck.path.name)

    # ------------------------------------------------------------------ one step
    def lr(self, step: int) -> float:
        o = self.opt
        return lr_at(step, o.lr, o.warmup_steps, o.lr_schedule, o.steps, o.lr_min)

    def train_step(self) -> tuple[float, float]:
        """One optimiser update; returns (loss, gradient norm before clipping)."""
        step = self.step
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr(step)
        parts = self.task.split(self.task.batch(step), self.opt.grad_accum)
        total: Tensor | None = None
        for j, part in enumerate(parts):
            loss = self.task.loss(part, self.forward)
            if self.faults is not None:
                loss = self.faults.loss(step, loss)
            if len(parts) > 1:
                loss = loss / len(parts)
            sync = self.dist.enabled and j < len(parts) - 1  # DDP averages once, after the last micro-batch
            with self._no_sync() if sync else contextlib.nullcontext():
                self._backward(loss, accumulate=j > 0)
            total = loss.detach() if total is None else total + loss.detach()
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        params = [self.flat.param] if self.flat is not None else self._params
        if self.flat is not None:
            gnorm = torch.linalg.vector_norm(self.flat.grad)
        else:
            gnorm = torch.nn.utils.get_total_norm([p.grad for p in params if p.grad is not None])
        assert total is not None  # split() returns at least one part
        loss_v, gnorm_v = torch.stack([total.float(), gnorm.float()]).tolist()
        if not math.isfinite(loss_v) or (not math.isfinite(gnorm_v) and self.scaler is None):
            what, value = ("loss", loss_v) if not math.isfinite(loss_v) else ("gradient norm", gnorm_v)
            raise NumericsError(f"non-finite {what} ({value}) at step {step + 1}; training stopped without writing "
                                f"a checkpoint; last good checkpoint: {self.last_checkpoint or 'none'}")
        if self.opt.grad_clip > 0 and gnorm_v + 1e-6 > self.opt.grad_clip:  # below it the factor is exactly 1
            torch.nn.utils.clip_grads_with_norm_(params, self.opt.grad_clip, gnorm)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.ema.update(step)
        self.step = step + 1
        return loss_v, gnorm_v

    def _backward(self, loss: torch.Tensor, accumulate: bool = False) -> None:
        """The gradients of ``loss`` in the parameters' ``.grad``, replacing the last step's (``accumulate``:
        added): with flat buffers straight into the flat gradient buffer, under DDP by backward's accumulation
        into its zeroed views (whose hooks average the gradients between ranks)."""
        if self.scaler is not None:
            loss = self.scaler.scale(loss)
        if self.flat is None:
            if not accumulate:
                self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
        elif self.dist.enabled:
            if not accumulate:
                self.flat.zero_grad()
            loss.backward()
            self.flat.gather()
        else:
            self.flat.backward(loss, accumulate=accumulate)

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

    def _log(self, interval_steps: int, interval_seconds: float) -> dict:
        acc = self._acc
        vals = [acc["loss"] / max(acc["count"], 1), acc["grad_norm"] / max(acc["count"], 1)]
        if self.dist.enabled:
            vals = all_reduce_mean(vals, self.device)
        rec = {"step": self.step, "loss": vals[0], "lr": self.lr(self.step - 1), "grad_norm": vals[1],
               "it/s": interval_steps / interval_seconds if interval_seconds > 0 else float("nan"),
               "seconds": round(self.elapsed, 3)}
        for k in sorted(k for k in acc if k.startswith("loss/")):  # the task's terms (this rank's)
            rec[k] = acc[k] / max(acc["count"], 1)
        self._acc = {"loss": 0.0, "grad_norm": 0.0, "count": 0}
        if self.stats is not None:
            self.stats.write(rec)
        return rec

    def fit(self) -> TrainResult:
        """Train to ``options.steps`` (or until SIGTERM/SIGINT); returns a :class:`TrainResult`."""
        o = self.opt
        start_step, session_start, last_loss = self.step, time.perf_counter(), None
        bar = None
        if self.verbose and self.step < o.steps and sys.stderr.isatty():
            from tqdm.auto import tqdm

            bar = tqdm(total=o.steps, initial=self.step, unit="step", dynamic_ncols=True, leave=True,
                       desc=self.run_dir.name)
        with self._signals():
            t_mark, s_mark = time.perf_counter(), self.step
            try:
                while self.step < o.steps:
                    t0 = time.perf_counter()
                    last_loss, gnorm = self.train_step()
                    self.elapsed += time.perf_counter() - t0
                    self._acc["loss"] += last_loss
                    self._acc["grad_norm"] += gnorm
                    self._acc["count"] += 1
                    for k, v in getattr(self.task, "loss_parts", {}).items():  # a task's named loss terms
                        self._acc[f"loss/{k}"] = self._acc.get(f"loss/{k}", 0.0) + v
                    if bar is not None:
                        bar.update(1)
                    if self.faults is not None:
                        self.faults.after_step()
                    stop = self._stop is not None
                    if self.dist.enabled:
                        stop = all_reduce_max(float(stop), self.device) > 0
                    if self.step % o.log_every == 0 or self.step == o.steps:
                        now = time.perf_counter()
                        rec = self._log(self.step - s_mark, now - t_mark)
                        t_mark, s_mark = now, self.step
                        if bar is not None:
                            bar.set_postfix(loss=f"{rec['loss']:.4f}", refresh=False)
                        elif self.verbose:
                            terms = "".join(f" {k[5:]} {v:.4f}" for k, v in rec.items() if k.startswith("loss/"))
                            terms = f" ({terms[1:]})" if terms else ""
                            print(f"step {self.step}/{o.steps}  loss {rec['loss']:.4f}{terms}"
                                  f"  lr {rec['lr']:.3g}  grad {rec['grad_norm']:.3g}  {rec['it/s']:.1f} it/s",
                                  file=sys.stderr)
                    if stop or self.step % o.ckpt_every == 0 or self.step == o.steps:
                        self.save()
                    if stop:
                        self._stop = self._stop or "signal"
                        break
            finally:
                if bar is not None:
                    bar.close()
                if self.stats is not None:
                    self.stats.close()
        if self.verbose and start_step == self.step and self.step >= o.steps:
            log.info("%s is already trained to step %d", self.run_dir, self.step)
        return TrainResult(self.run_dir, self.step, o.steps, self.last_checkpoint, time.perf_counter() - session_start,
                           self.elapsed, self.resumed_from, self._stop, last_loss, self.n_params)

    def close(self) -> None:
        """Release the model and optimizer, then leave the process group (the gloo teardown fix)."""
        for name in ("train_net", "_no_sync", "forward", "optimizer", "ema", "flat", "net", "scaler", "task"):
            if hasattr(self, name):
                delattr(self, name)
        stats = getattr(self, "stats", None)
        if stats is not None:
            stats.close()
        shutdown_distributed(getattr(self, "_owns_group", False))


def train(task: Task, options: Options, run_dir, **kwargs) -> TrainResult:
    """Build an :class:`Engine`, fit, and release it (also on errors); keyword arguments as for the engine."""
    engine = Engine(task, options, run_dir, **kwargs)
    try:
        return engine.fit()
    finally:
        engine.close()


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes in bf16 natively: a CUDA GPU that supports it (Ampere on), or a CPU whose
    flags (Linux /proc/cpuinfo) list avx512_bf16, amx_bf16 or, on Arm, bf16. False where it cannot tell."""
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    if device.type != "cpu":
        return False
    return bool(_cpu_flags() & {"avx512_bf16", "amx_bf16", "bf16"})


@functools.lru_cache(maxsize=1)
def _cpu_flags() -> frozenset[str]:
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return frozenset()
    flags: set[str] = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            flags.update(value.split())
    return frozenset(flags)
