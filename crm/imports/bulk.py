"""
Handling a whole file at once: work in chunks of CHUNK rows, with the cyclic
garbage collector paused.
"""

import contextlib
import gc

CHUNK = 10_000


@contextlib.contextmanager
def _bulk_work():
    """Pause the cyclic garbage collector while handling a whole file.

    Planning makes a few hundred thousand small objects and no reference
    cycles; left on, the collector rescans them all again and again (a third
    of the import's CPU time). They are freed by reference counting as usual.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _chunks(items, size=CHUNK):
    items = list(items)
    for start in range(0, len(items), size):
        yield items[start : start + size]
