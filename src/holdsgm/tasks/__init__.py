"""Tasks: what one kind of model trains on and how (the batch it draws, its loss, what it checkpoints besides
the network), run by the training engine (:mod:`holdsgm.engine`), which knows nothing of them.

* :class:`GenerationTask`: vectors and images, unconditional or class-conditional (HSM / DSM);
* :class:`VocoderTask`: the SDE vocoder, speech segments conditioned on their log-mel (optionally PriorGrad);
* :class:`StageTwoTask`: few-step fine-tuning of a trained vocoder (Lay et al. 2023).

A new kind of model is a new task (and a config section and a command in :mod:`holdsgm.runs` and
:mod:`holdsgm.cli`); the engine does not change.
"""

from .generation import GenerationTask
from .hsm import TIME_BLOCK, HSMBatch, HSMDraws
from .stage2 import StageTwoTask
from .vocoder import SpeechSegments, VocoderTask, conditioned_network, vocoder_sample, vocoder_times

__all__ = [
    "GenerationTask", "HSMBatch", "HSMDraws", "SpeechSegments", "StageTwoTask", "TIME_BLOCK", "VocoderTask",
    "conditioned_network", "vocoder_sample", "vocoder_times",
]
