"""Server-side batching: concurrent requests for one version and signature run as one TensorFlow call.

Like TF Serving's batching (batching_parameters: max_batch_size, batch_timeout_micros,
num_batch_threads), a batch closes when it holds `max_batch_size` rows or `batch_timeout_ms` after its
first request arrived, and at most `num_batch_threads` batches run at once; requests that arrive while
those run wait and go together in the next batch, so under concurrency the TensorFlow calls grow in
size instead of in number. A request larger than `max_batch_size` runs alone as one call (TF Serving
rejects it unless large-batch splitting is on). Rows are split back by request, in order.

With no timeout (TF Serving's batch_timeout_micros=0) an idle batcher never waits: the requests that
reach it in one turn of the event loop form a batch at once. When that is a single request and nothing
else runs, it runs on the event loop's own thread, sparing the two thread hops (to a batch thread and
back) that cost about as much as the TensorFlow call of one row; requests that arrive meanwhile queue
up and run together in the batch threads once it returns. A request that fills a batch by itself runs on
the event loop's thread too when the caller says it is alone (no other request being read or run) and
nothing runs or waits here: no other request could join it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
from typing import Any, Callable, Optional

import numpy as np

from flywheel.server.errors import InvalidArgument
from flywheel.server.models import Servable
from flywheel.server.signatures import Signature


@dataclasses.dataclass
class _Task:
    columns: dict[str, np.ndarray]
    rows: int
    future: asyncio.Future


@dataclasses.dataclass
class _Queue:
    servable: Servable
    signature: Signature
    tasks: list = dataclasses.field(default_factory=list)
    rows: int = 0
    timer: Optional[asyncio.TimerHandle] = None


class Batcher:
    """Batches `submit` calls made on one event loop; `run(signature, columns)` makes the TensorFlow call."""

    def __init__(self, run: Callable[[Signature, dict[str, np.ndarray]], dict[str, np.ndarray]],
                 max_batch_size: int = 512, batch_timeout_ms: float = 0.0, num_batch_threads: int = 2,
                 on_batch: Optional[Callable[[Servable, Signature, int], None]] = None):
        if max_batch_size < 1:
            raise ValueError(f"serve: max_batch_size must be at least 1, got {max_batch_size}")
        if batch_timeout_ms < 0:
            raise ValueError(f"serve: batch_timeout_ms must be >= 0, got {batch_timeout_ms}")
        self.max_batch_size, self.batch_timeout = max_batch_size, batch_timeout_ms / 1000.0
        self._run, self._on_batch = run, on_batch
        self._executor = concurrent.futures.ThreadPoolExecutor(num_batch_threads, thread_name_prefix="serve-batch")
        self._slots = num_batch_threads
        self._running = 0
        self._queues: dict[tuple[int, int, str], _Queue] = {}
        self.calls = 0
        self.inline_calls = 0  # calls run on the event loop's thread (an idle batcher with no timeout)

    async def submit(self, servable: Servable, signature: Signature, columns: dict[str, np.ndarray],
                     rows: int, alone: bool = False, group: Any = None) -> dict[str, np.ndarray]:
        """The request's outputs. alone: the caller knows no other request is being read or run. A request that
        fills a batch by itself, alone, with nothing running or waiting here either, runs at once on this thread
        (no other request could join it; the hop to a batch thread and back is spared). group: only requests of
        one group are joined (`codec.batch_group`: None for inputs of one value per row; a new object runs the
        request alone)."""
        loop = asyncio.get_running_loop()
        key = (id(servable), servable.version, signature.name, group)
        if alone and rows >= self.max_batch_size and self._running == 0 and not self._queues:
            self.calls += 1
            self.inline_calls += 1
            outputs = self._run(signature, columns)
            if self._on_batch is not None:
                self._on_batch(servable, signature, rows)
            return outputs
        queue = self._queues.get(key)
        if queue is None:
            queue = self._queues[key] = _Queue(servable, signature)
        task = _Task(columns, rows, loop.create_future())
        queue.tasks.append(task)
        queue.rows += rows
        if queue.rows >= self.max_batch_size:
            self._dispatch(key, loop)
        elif queue.timer is None:
            if self.batch_timeout:
                queue.timer = loop.call_later(self.batch_timeout, self._dispatch, key, loop)
            elif self._running == 0:  # idle: the requests this turn of the loop reads join in first
                queue.timer = loop.call_soon(self._start_idle, key, loop)
            else:
                self._dispatch(key, loop)
        return await task.future

    def _start_idle(self, key: tuple, loop: asyncio.AbstractEventLoop) -> None:
        queue = self._queues.get(key)
        if queue is None:
            return
        queue.timer = None
        if self._running == 0 and len(self._queues) == 1 and len(queue.tasks) == 1:
            self._run_inline(key, queue)
        else:
            self._dispatch(key, loop)

    def _run_inline(self, key: tuple, queue: _Queue) -> None:
        """Runs the queue's only task now, on this thread: nothing runs and nothing else is waiting."""
        tasks = self._take(queue)
        del self._queues[key]
        self.calls += 1
        self.inline_calls += 1
        try:
            outputs = self._run(queue.signature, tasks[0].columns)
        except Exception as e:  # the request's own failure, answered to it as a batch thread's would be
            self._complete(tasks, queue, None, e)
        else:
            self._complete(tasks, queue, outputs, None)

    def _take(self, queue: _Queue) -> list[_Task]:
        taken, rows = [], 0
        while queue.tasks and (not taken or rows + queue.tasks[0].rows <= self.max_batch_size):
            task = queue.tasks.pop(0)
            taken.append(task)
            rows += task.rows
        queue.rows -= rows
        return taken

    def _dispatch(self, key: tuple, loop: asyncio.AbstractEventLoop) -> None:
        queue = self._queues.get(key)
        if queue is None:
            return
        if queue.timer is not None:
            queue.timer.cancel()
            queue.timer = None
        if self._running >= self._slots or not queue.tasks:
            return
        tasks = self._take(queue)
        if not queue.tasks:
            del self._queues[key]
        self._running += 1
        self.calls += 1
        columns = (tasks[0].columns if len(tasks) == 1 else
                   {name: np.concatenate([t.columns[name] for t in tasks]) for name in tasks[0].columns})
        future = loop.run_in_executor(self._executor, self._run, queue.signature, columns)
        future.add_done_callback(lambda done: self._finish(done, tasks, queue, loop))

    def _finish(self, done: asyncio.Future, tasks: list[_Task], queue: _Queue, loop) -> None:
        self._running -= 1
        error = done.exception()
        self._complete(tasks, queue, None if error else done.result(), error)
        for key in list(self._queues):
            if self._running >= self._slots:
                break
            self._dispatch(key, loop)

    def _complete(self, tasks: list[_Task], queue: _Queue, outputs: Optional[dict], error: Optional[BaseException]):
        if error is None and len(tasks) > 1:
            error = _unbatched_output(outputs, sum(t.rows for t in tasks))
        if error is None:
            if self._on_batch is not None:
                self._on_batch(queue.servable, queue.signature, sum(t.rows for t in tasks))
            if len(tasks) == 1:  # a request run alone gets its outputs whole, whatever their shapes
                if not tasks[0].future.done():
                    tasks[0].future.set_result(outputs)
                return
            start = 0
            for task in tasks:
                if not task.future.done():
                    task.future.set_result({name: value[start:start + task.rows] for name, value in outputs.items()})
                start += task.rows
        else:
            for task in tasks:
                if not task.future.done():
                    task.future.set_exception(error)

    def close(self) -> None:
        self._executor.shutdown(wait=True)


def _unbatched_output(outputs: dict[str, np.ndarray], rows: int) -> Optional[InvalidArgument]:
    """An error when an output of a joined batch has no row per input row (it could not be split back)."""
    for name, value in outputs.items():
        if value.ndim == 0 or value.shape[0] != rows:
            return InvalidArgument(f"Batched output {name} has shape {list(value.shape)}; expected its 0-th dimension "
                                   f"to be the batch's {rows} rows")
    return None

