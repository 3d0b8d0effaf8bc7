"""Inputs run with every infer request busy, their outputs taken in input order, on the calling thread.

Input k goes to request k mod R, so the oldest request in flight is always the next input to take: the
caller waits for it, hands it to `take`, then gives it the next input. OpenVINO gets no Python callback:
a callback's last reference can be dropped on an OpenVINO thread, which then needs the interpreter lock
while the caller, freeing the compiled model, waits for that thread to end (a deadlock seen after a
raising metric). Used by the evaluation and by the in-flight statistics collection.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable

import openvino as ov


class InferenceFailed(RuntimeError):
    """The inference of input `index` failed (OpenVINO's message is the cause)."""

    def __init__(self, index: int, cause: RuntimeError):
        super().__init__(str(cause))
        self.index = index


def in_flight(compiled: ov.CompiledModel) -> int:
    """How many requests keep the device busy (the plugin's own figure)."""
    try:
        return max(1, int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
    except RuntimeError:  # a plugin that does not say
        return 2


def run_in_turn(compiled: ov.CompiledModel, inputs: Iterable[Any],
                take: Callable[[int, ov.InferRequest], None], requests: int | None = None) -> int:
    """Infers every input; `take(k, request)` gets input k's finished request, in input order. Returns
    how many inputs ran. An exception (from `inputs`, `take` or an inference) travels up once the
    requests still running have ended (they read the caller's inputs)."""
    pool = [compiled.create_infer_request() for _ in range(requests or in_flight(compiled))]
    started = 0

    def finish(k: int) -> None:
        request = pool[k % len(pool)]
        try:
            request.wait()
        except RuntimeError as exc:
            raise InferenceFailed(k, exc) from None
        take(k, request)

    try:
        for data in inputs:
            if started >= len(pool):
                finish(started - len(pool))
            # share_inputs=False: the request must not keep a view of an array the caller may overwrite.
            pool[started % len(pool)].start_async(data, share_inputs=False)
            started += 1
        for k in range(max(0, started - len(pool)), started):
            finish(k)
    except BaseException:
        for request in pool[:started]:
            try:
                request.wait()
            except RuntimeError:  # its failure is not the error travelling up
                pass
        raise
    return started
