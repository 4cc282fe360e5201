"""``python -m pxmagic.demo``: start 4 engines, run the Direct interface tour, stop.

Each step prints the code it runs and what came back, following the
examples of IPython's parallel documentation.
"""
from __future__ import annotations

import time
from typing import Any

from pxmagic import Cluster, CompositeError


def show(code: str, result: Any = None) -> None:
    print(f">>> {code}")
    if result is not None:
        print(result)


def wait(t: float) -> float:
    import time

    tic = time.time()
    time.sleep(t)
    return time.time() - tic


def main() -> None:
    print("starting a cluster of 4 engines ...")
    started = time.monotonic()
    with Cluster(n=4) as rc:
        print(f"ready in {time.monotonic() - started:.1f} s\n")
        show("rc.ids", rc.ids)
        dview = rc[:]
        show("dview = rc[:]", dview)
        dview.block = True
        dview["a"] = 5
        dview["b"] = 10
        show("dview['a'] = 5; dview['b'] = 10")
        show("dview.apply(lambda x: a+b+x, 27)", dview.apply(lambda x: a + b + x, 27))  # noqa: F821
        rc[::2].execute("c=a+b")
        rc[1::2].execute("c=a-b")
        show("rc[::2].execute('c=a+b'); rc[1::2].execute('c=a-b')")
        show("dview['c']", dview["c"])
        ar = dview.apply_async(wait, 1)
        show("ar = dview.apply_async(wait, 1); ar.ready()", ar.ready())
        show("ar.get()", [round(t, 2) for t in ar.get()])
        show("dview.push(dict(a=1.03234, b=3453))", dview.push(dict(a=1.03234, b=3453)))
        show("dview.pull('a')", dview.pull("a"))
        show("dview.pull('b', targets=0)", dview.pull("b", targets=0))
        show("dview.pull(('a', 'b'))", dview.pull(("a", "b")))
        try:
            dview.execute("1/0")
        except CompositeError as error:
            show("dview.execute('1/0')", f"CompositeError: {error}")
    print("\ncluster stopped")


if __name__ == "__main__":
    main()
