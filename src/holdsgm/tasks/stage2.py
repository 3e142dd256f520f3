"""Stage two, few-step fine-tuning of a trained vocoder (Lay et al. 2023, "Single and few-step diffusion for
generative speech enhancement"): draw u_T from the prior, take the reverse steps of a sampler that fit in K
score evaluations (all but the last without gradients), and compare the last evaluation's data prediction
E[x0 | u_t] with the true waveform (L2 + multi-resolution STFT)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from ..engine import derive_seed
from ..sde.base import LinearSDE
from .hsm import STREAM_NOISE
from .vocoder import SpeechSegments, VocoderTask, vocoder_sample


class StageTwoTask:
    """Fine-tune ``net`` so that the few-step vocoder pass of ``sampler`` on ``grid`` with ``nfe`` evaluations
    matches the waveform: ``l2_weight * L2 + mrstft_weight * MR-STFT``. A fresh run starts from the weights
    ``init()`` returns with a description of where they came from (a trained stage one of the same SDE,
    network and conditioning; kept in every checkpoint as ``stage2_origin``)."""

    def __init__(self, sde: LinearSDE, net: nn.Module, speech, *, batch_size: int, seed: int, segment_frames: int,
                 hop: int, nfe: int, sampler: str, grid: str, l2_weight: float, mrstft_weight: float,
                 init: Callable[[], tuple[dict[str, Tensor], dict]], priorgrad: dict | None = None,
                 mixed: bool = False, data_var: float = 1.0, precond: bool = False):
        self.sde, self.net, self.hop, self.batch_size = sde, net, hop, batch_size
        self.nfe, self.sampler, self.grid = nfe, sampler, grid
        self.l2_weight, self.mrstft_weight = l2_weight, mrstft_weight
        self.segments = SpeechSegments(speech, batch_size, segment_frames, seed)
        self.generator = torch.Generator().manual_seed(derive_seed(seed, STREAM_NOISE))
        self.vocoder = VocoderTask(sde, net, speech, batch_size=batch_size, seed=seed, segment_frames=segment_frames,
                                   priorgrad=priorgrad, mixed=mixed, data_var=data_var,
                                   precond=precond)  # for its eps model only
        self._init = init
        self.origin: dict | None = None
        self.rows = slice(0, batch_size)

    def bind(self, device: torch.device, rank: int, world_size: int) -> None:
        local = self.batch_size // world_size
        self.rows = slice(rank * local, (rank + 1) * local)
        self.segments.bind(device, self.rows)

    def batch(self, step: int) -> tuple[Tensor, Tensor, list[int]]:
        """(wave, log-mel, this rank's noise seeds) of update ``step``."""
        x0, mel = self.segments(step)
        seeds = torch.randint(0, 2**62, (self.batch_size,), generator=self.generator)
        return x0, mel, seeds[self.rows].tolist()

    def split(self, batch, parts: int) -> list:
        if parts != 1:
            raise ValueError("stage two does not accumulate gradients (train.grad_accum must be 1)")
        return [batch]

    def loss(self, batch, net: nn.Module) -> Tensor:
        from ..audio import l2_loss, mrstft_loss
        from ..samplers import PerSampleNoise

        x0, mel, seeds = batch
        x = vocoder_sample(self.vocoder.eps_model(net), self.sde, mel, hop=self.hop, nfe=self.nfe,
                           sampler=self.sampler, grid=self.grid, noise=PerSampleNoise(seeds), grad=True)
        loss = x0.new_zeros(())
        if self.l2_weight:
            loss = loss + self.l2_weight * l2_loss(x, x0)
        if self.mrstft_weight:
            loss = loss + self.mrstft_weight * mrstft_loss(x, x0)
        return loss

    def init_weights(self) -> dict[str, Tensor] | None:
        weights, self.origin = self._init()
        return weights

    def state_dict(self) -> dict:
        return {"rng": {"generator": self.generator.get_state()}, "stage2_origin": self.origin}

    def load_state_dict(self, state: dict, step: int) -> None:
        self.generator.set_state(state["rng"]["generator"])
        self.origin = state.get("stage2_origin")
