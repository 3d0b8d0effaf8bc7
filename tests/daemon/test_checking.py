"""checking.py in process: the checker processes' answers, limits and lifetime."""
from __future__ import annotations

import asyncio
import gc
import inspect
import sys
import time

from conftest import copy_example
from int8wb.daemon import server
from int8wb.daemon.config import Settings


def test_shutdown_leaves_no_checker_pipe_to_the_garbage_collector(tmp_path):
    """The pipes of the checker processes were closed by the garbage collector after the loop was gone:
    "Exception ignored ... Event loop is closed" on the daemon's stderr, now and then, as it exited."""
    spec = copy_example(tmp_path)
    ignored = []
    hook, sys.unraisablehook = sys.unraisablehook, ignored.append
    try:
        async def run():
            ls = server.create_server(Settings())
            checked = await ls.checker.spec(spec, None)
            assert checked.problems == [] and ls.checker.all  # a checker process runs
            done = server.shutdown(ls, None)
            if inspect.isawaitable(done):
                await done
            return ls

        ls = asyncio.run(run())
        del ls
        time.sleep(1.0)  # asyncio's child watcher threads let go of the processes they waited for
        gc.collect()
    finally:
        sys.unraisablehook = hook
    assert [str(u.exc_value) for u in ignored] == []
