"""Running the live layer's coroutines from synchronous code.

Engines and scorers are async first (``agenerate``, ``ascore_last_detail`` ...): the server awaits
them on its own event loop.  Their synchronous methods, for the batch commands, run the coroutine
with :func:`run_sync` on a private event loop of the calling thread, kept for the thread's life so
that the HTTP clients' connections (bound to a loop) last the whole run.  Called from a thread that
already runs a loop (Jupyter, or a sync backend called from inside an async caller), the coroutine
runs on one helper loop thread instead: a loop cannot be entered from inside another.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")
_local = threading.local()


class _PrivateLoop:
    """The calling thread's own loop; closed when the thread's locals go (the thread ends)."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()

    def __del__(self):
        try:
            if not self.loop.is_closed() and not self.loop.is_running():
                self.loop.close()
        except Exception:  # interpreter shutdown: nothing left to tidy
            pass


class _LoopThread:
    """One event loop in a daemon thread, for sync calls made from inside a running loop."""

    _lock = threading.Lock()
    _instance: _LoopThread | None = None

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="trim_rl-aio", daemon=True)
        self.thread.start()

    @classmethod
    def get(cls) -> _LoopThread:
        with cls._lock:
            if cls._instance is None or not cls._instance.thread.is_alive():
                cls._instance = cls()
            return cls._instance


def _private_loop() -> asyncio.AbstractEventLoop:
    holder = getattr(_local, "holder", None)
    if holder is None or holder.loop.is_closed():
        holder = _local.holder = _PrivateLoop()
    return holder.loop


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run one coroutine to its end from synchronous code and return its result (or raise its error).

    An interrupt (Ctrl-C, a signal handler's exception) cancels the coroutine, waits for it to unwind
    (its requests are cancelled, their connections released) and goes on up to the caller."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        return _on_helper_thread(coro)
    loop = _private_loop()
    task = loop.create_task(coro)
    try:
        return loop.run_until_complete(task)
    except BaseException as exc:
        for _ in range(3):  # a second interrupt while it unwinds leaves it pending: cancel again
            if task.done():
                break
            task.cancel()
            try:
                loop.run_until_complete(task)
            except BaseException:  # its cancellation, or what it raised while unwinding: the first error wins
                pass
        interrupt = _interrupt_in(exc)
        if interrupt is not None and interrupt is not exc:
            # a signal handler's exception raised inside a task group (httpx's connect) comes wrapped in
            # an exception group; the caller catches the interrupt itself
            raise interrupt from None
        raise


def _interrupt_in(exc: BaseException) -> BaseException | None:
    """The first KeyboardInterrupt or SystemExit in ``exc`` or, depth first, in its exception groups."""
    if isinstance(exc, (KeyboardInterrupt, SystemExit)):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _interrupt_in(inner)
            if found is not None:
                return found
    return None


def _on_helper_thread(coro: Coroutine[Any, Any, T]) -> T:
    runner = _LoopThread.get()
    if threading.current_thread() is runner.thread:
        coro.close()
        raise RuntimeError("run_sync called from the helper loop thread; await the coroutine instead")
    fut = asyncio.run_coroutine_threadsafe(coro, runner.loop)
    try:
        return fut.result()
    except BaseException:
        fut.cancel()
        raise


def run_inline(coro: Coroutine[Any, Any, T]) -> T:
    """The result of a coroutine that never suspends, run without an event loop (a sync function
    wrapped by :func:`awaitable` and awaited in place)."""
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value
    coro.close()
    raise RuntimeError("the coroutine suspended: run it on an event loop")


def awaitable(fn: Callable[..., T]) -> Callable[..., Awaitable[T]]:
    """``fn`` as a coroutine function that calls it in place."""

    async def call(*args, **kwargs) -> T:
        return fn(*args, **kwargs)

    return call
