"""The magics inside a real python3 kernel, driven as a notebook frontend drives it:
output streams into the cell as it is produced, %autopx works through
ipykernel's execution path, and the stop button interrupts the engines."""
from __future__ import annotations

import time

import pytest
from jupyter_client import KernelManager

from conftest import N_ENGINES


@pytest.fixture(scope="module")
def manager():
    km = KernelManager(kernel_name="python3")
    km.start_kernel()
    yield km
    km.shutdown_kernel(now=True)


@pytest.fixture(scope="module")
def kernel(rc, manager):
    """A client of a python3 kernel whose session has %load_ext pxmagic and rc[:] activated."""
    kc = manager.client()
    kc.start_channels()
    kc.wait_for_ready(timeout=60)
    run(kc, "from pxmagic import Client\n"
            f"rc = Client({str(rc.connection_file)!r})\n"
            "%load_ext pxmagic\n"
            "dv = rc[:]\n"
            "dv.block = True\n"
            "dv.activate()")
    yield kc
    run(kc, "rc.close()")
    kc.stop_channels()


def run(kc, code: str, timeout: float = 60) -> list[tuple[float, dict]]:
    """Execute ``code`` as a cell; the cell's iopub messages with their arrival times."""
    msg_id = kc.execute(code)
    arrived = []
    deadline = time.monotonic() + timeout
    while True:
        msg = kc.get_iopub_msg(timeout=max(0.1, deadline - time.monotonic()))
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            return arrived
        arrived.append((time.monotonic(), msg))


def streamed_text(messages: list[tuple[float, dict]]) -> str:
    return "".join(m["content"]["text"] for _, m in messages if m["msg_type"] == "stream")


def test_px_output_streams_into_the_cell(kernel):
    cell = "%%px --targets 0\nimport time\nfor i in range(3):\n    print('tick', i, flush=True)\n    time.sleep(1)"
    messages = run(kernel, cell)
    ticks = [t for t, m in messages if m["msg_type"] == "stream" and "[stdout:0] tick" in m["content"]["text"]]
    assert len(ticks) == 3, streamed_text(messages)
    assert ticks[1] - ticks[0] > 0.7 and ticks[2] - ticks[1] > 0.7


def test_autopx_in_a_kernel(kernel):
    assert "Auto Parallel Enabled" in streamed_text(run(kernel, "%autopx"))
    run(kernel, "auto_value = 6 * 7")
    out = streamed_text(run(kernel, "print('auto', auto_value)"))
    for engine_id in range(N_ENGINES):
        assert f"[stdout:{engine_id}] auto 42" in out
    assert "Auto Parallel Disabled" in streamed_text(run(kernel, "%autopx"))
    out = streamed_text(run(kernel, "print('auto_value' in globals())"))
    assert out == "False\n", "the cells ran on the engines, not in the kernel"


def test_stop_button_interrupts_the_engines(kernel, manager):
    msg_id = kernel.execute("%px import time; time.sleep(30)")
    time.sleep(2)
    start = time.monotonic()
    manager.interrupt_kernel()  # what a notebook's stop button does
    while True:
        reply = kernel.get_shell_msg(timeout=20)
        if reply["parent_header"].get("msg_id") == msg_id:
            break
    assert time.monotonic() - start < 5
    assert reply["content"]["status"] == "error" and reply["content"]["ename"] == "KeyboardInterrupt"
    out = streamed_text(run(kernel, "print(dv.apply_sync(lambda: 'free'))", timeout=10))
    assert out == f"{['free'] * N_ENGINES}\n"


def test_a_long_px_shows_a_progress_display_that_is_blanked_at_the_end(kernel):
    messages = run(kernel, "%px import time; time.sleep(1.6)")
    shown = [m for _, m in messages if m["msg_type"] == "display_data" and "text/html" in m["content"]["data"]]
    assert shown and "<progress" in shown[0]["content"]["data"]["text/html"]
    display_id = shown[0]["content"]["transient"]["display_id"]
    updates = [m for _, m in messages if m["msg_type"] == "update_display_data"
               and m["content"]["transient"]["display_id"] == display_id]
    assert updates and updates[-1]["content"]["data"] == {"text/plain": ""}


def test_await_in_a_notebook_cell(kernel):
    """ipykernel runs a cell with top-level ``await`` on its own event loop, as a notebook does."""
    messages = run(kernel, "value = await rc[0].apply_async(lambda: 6 * 7)\nprint('awaited', value)")
    assert "awaited 42" in streamed_text(messages)
    messages = run(kernel, "try:\n    await rc[0].apply_async(lambda: 1 / 0)\nexcept Exception as e:\n"
                           "    print('raised', type(e).__name__, e.ename)")
    assert "raised RemoteError ZeroDivisionError" in streamed_text(messages)


def test_progress_of_work_not_waited_for_advances_while_the_kernel_is_free(kernel):
    started = time.monotonic()
    messages = run(kernel, "import time, pxmagic\nar = rc[:].apply_async(time.sleep, 2)\npxmagic.progress(ar)")
    assert time.monotonic() - started < 1.5, "the cell waited for the work"
    [shown] = [m for _, m in messages if m["msg_type"] == "display_data"]
    display_id = shown["content"]["transient"]["display_id"]
    assert f"0/{N_ENGINES} tasks" in shown["content"]["data"]["text/plain"]
    free = run(kernel, "print('free to go on')")
    assert "free to go on" in streamed_text(free) and time.monotonic() - started < 2, "another cell ran meanwhile"
    updates = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        msg = kernel.get_iopub_msg(timeout=20)
        if msg["msg_type"] == "update_display_data" and msg["content"]["transient"]["display_id"] == display_id:
            updates.append(msg["content"]["data"]["text/plain"])
            if "done in" in updates[-1]:
                break
    assert updates and updates[-1].startswith(f"sleep: {N_ENGINES}/{N_ENGINES} tasks, done in 2.")
