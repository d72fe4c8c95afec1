"""``python -m radical.orbit.daemon`` and the ``orbit-globus-endpoint`` console script."""

from __future__ import annotations

import sys

from .main import main

__all__ = ["main"]

if __name__ == "__main__":
    import os
    if os.environ.get("TMP_TRACEMALLOC_OUT"):  # TEMPORARY memory investigation patch
        import threading, time, tracemalloc, gc
        tracemalloc.start(1)
        out = os.environ["TMP_TRACEMALLOC_OUT"]
        def _dump() -> None:
            time.sleep(30)
            gc.collect()
            filt = [tracemalloc.Filter(False, tracemalloc.__file__)]
            base = tracemalloc.take_snapshot().filter_traces(filt)
            n = 0
            while True:
                time.sleep(10)
                n += 1
                with open(out, "a") as f:
                    f.write(f"traced t={30 + 10 * n}s {tracemalloc.get_traced_memory()[0] / 2**20:.2f} MB\n")
                    if n % 6 == 0:
                        gc.collect()
                        snap = tracemalloc.take_snapshot().filter_traces(filt)
                        for st in snap.compare_to(base, "lineno")[:20]:
                            f.write(f"  {st}\n")
        threading.Thread(target=_dump, daemon=True).start()
    sys.exit(main())
