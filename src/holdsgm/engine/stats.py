"""``stats.jsonl`` and TensorBoard: what a run logs every ``log_every`` steps."""

from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path

from ..files import atomic_write

log = logging.getLogger("holdsgm.train")

STATS_FILE = "stats.jsonl"


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
