"""A thread pool whose threads never hold up the exit of the process.

`concurrent.futures.ThreadPoolExecutor` joins its threads when the interpreter exits, so a
refresh stuck in a socket read of a dripping API keeps a stopped exporter alive until the
read ends. These threads are daemons and nothing joins them: on exit they are dropped
mid-call, which is harmless for threads that only read from the API.
"""

from __future__ import annotations

import concurrent.futures
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

_Work = tuple[concurrent.futures.Future[Any], Callable[..., Any], tuple[Any, ...]] | None


class DaemonExecutor:
    """Runs submitted calls on up to `max_workers` daemon threads, started as needed."""

    def __init__(self, max_workers: int, thread_name_prefix: str) -> None:
        if max_workers < 1:
            raise ValueError("max_workers must be at least 1")
        self._max_workers = max_workers
        self._prefix = thread_name_prefix
        self._work: queue.SimpleQueue[_Work] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads = 0
        self._idle = 0
        self._closed = False

    def submit(self, fn: Callable[..., T], *args: Any) -> concurrent.futures.Future[T]:
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("cannot submit after shutdown")
            self._work.put((future, fn, args))
            if self._idle == 0 and self._threads < self._max_workers:
                self._threads += 1
                threading.Thread(
                    target=self._serve, name=f"{self._prefix}_{self._threads}", daemon=True
                ).start()
            else:
                self._idle = max(0, self._idle - 1)  # that idle thread takes this call
        return future

    def _serve(self) -> None:
        while True:
            item = self._work.get()
            if item is None:
                return
            future, fn, args = item
            if future.set_running_or_notify_cancel():
                try:
                    result = fn(*args)
                except BaseException as exc:
                    future.set_exception(exc)
                else:
                    future.set_result(result)
            with self._lock:
                if self._closed:
                    return
                self._idle += 1

    def shutdown(self, wait: bool = False, cancel_futures: bool = True) -> None:
        """Stop taking calls; cancel the queued ones. Running calls are never waited for."""
        del wait  # the point of this executor: nothing is joined
        with self._lock:
            self._closed = True
            threads = self._threads
        while cancel_futures:
            try:
                item = self._work.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                item[0].cancel()
        for _ in range(threads):
            self._work.put(None)
