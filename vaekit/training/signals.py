"""Pre-emption: SIGTERM and SIGINT become a flag the loop checks at step boundaries."""

from __future__ import annotations

import signal
import threading

import torch


class StopSignal:
    """While active, SIGTERM and SIGINT only set .signum: the loop then saves at the next step
    boundary and returns (pre-emption), instead of dying mid-step."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.signum: int | None = None
        self.previous: dict = {}

    def __enter__(self) -> StopSignal:
        if threading.current_thread() is threading.main_thread():  # signals need the main thread
            for s in self.SIGNALS:
                self.previous[s] = signal.signal(s, self.handle)
        return self

    def handle(self, signum: int, frame) -> None:
        self.signum = signum

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum else ""

    def flag(self, device: torch.device) -> torch.Tensor:
        """1.0 if this rank was signalled, as a tensor to all-reduce with the other ranks'."""
        return torch.tensor(float(bool(self.signum)), device=device)

    def join(self, signalled_ranks: float) -> None:
        """Under DDP: if any rank was signalled, all stop."""
        if signalled_ranks and not self.signum:
            self.signum = signal.SIGTERM

    def __exit__(self, *exc) -> None:
        for s, handler in self.previous.items():
            signal.signal(s, handler)
