"""Where a `generate`'s time goes: the tower, the prefill, the decode.

`StageClock` is given to `SteeringEngine(clock=...)`. It takes a timestamp when a call begins
(`begin`), when the tower's work for a batch is done (`tower_done`, just before `generate`), and at
every generation step: it is also a stopping criterion that never stops, which transformers calls
after each step's token is chosen. So for each batch: tower = tower_done - the batch's start (the
call's begin, or the previous batch's last step: a shared prefix is counted in the first batch),
prefill = first step - tower_done (the prefill forward and the first token), decode = last step -
first step (the other new tokens). On CUDA the timestamps are CUDA events recorded in the stream,
so nothing waits for the device while it runs; `batches()` synchronises once at the end.
"""
from __future__ import annotations

import time

import torch
from transformers import StoppingCriteria


class StageClock(StoppingCriteria):
    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self._batches: list[tuple[object, object, list[object], int]] = []
        self._last: object | None = None
        self._tower: object | None = None
        self._steps: list[object] = []
        self._rows = 0

    def reset(self) -> None:
        """Forgets every batch so far (a warm-up's)."""
        self._batches, self._last, self._tower, self._steps = [], None, None, []

    def begin(self) -> None:
        """A call's start: its first batch's tower time counts from here."""
        self._close()
        self._last = self._now()

    def tower_done(self, rows: int) -> None:
        """The batch's image features are ready; `rows` rows go to `generate` next."""
        self._close()
        self._tower, self._steps, self._rows = self._now(), [], rows

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs) -> torch.BoolTensor:
        self._steps.append(self._now())
        return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)

    def batches(self) -> list[dict]:
        """Per batch: rows, seconds of tower, prefill and decode, and decode steps."""
        self._close()
        if self.cuda:
            torch.cuda.synchronize()
        return [{"rows": rows, "tower_s": self._seconds(start, tower), "prefill_s": self._seconds(tower, steps[0]),
                 "decode_s": self._seconds(steps[0], steps[-1]), "decode_steps": len(steps) - 1}
                for start, tower, steps, rows in self._batches]

    def _close(self) -> None:
        """Files the batch in progress (if its `generate` ran) and starts the next one's tower time."""
        if self._tower is not None and self._steps:
            self._batches.append((self._last, self._tower, self._steps, self._rows))
            self._last = self._steps[-1]
        self._tower, self._steps = None, []

    def _now(self) -> object:
        if not self.cuda:
            return time.perf_counter()
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event

    def _seconds(self, start: object, stop: object) -> float:
        return start.elapsed_time(stop) / 1e3 if self.cuda else stop - start
