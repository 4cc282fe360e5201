"""Each engine is a real Jupyter kernel: plain jupyter_client tools can start it,
attach to it and call its apply_request handler."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from jupyter_client import BlockingKernelClient, KernelManager

from pxmagic import connection, serialize
from pxmagic.error import RemoteError
from pxmagic.tags import tag_frames


def run_in_kernel(kc: BlockingKernelClient, code: str) -> dict:
    reply = kc.execute_interactive(code, timeout=30, output_hook=lambda msg: None)
    assert reply["content"]["status"] == "ok", reply["content"]
    return reply


def test_kernelspec_is_installed():
    jupyter = Path(sys.executable).with_name("jupyter")
    listing = subprocess.run([str(jupyter), "kernelspec", "list"], capture_output=True, text=True, timeout=60)
    assert "pxmagic-engine" in listing.stdout


def test_console_attached_to_an_engine_shares_the_view_namespace(rc):
    rc[0].push({"from_view": 123}, block=True)
    kc = BlockingKernelClient(connection_file=rc.engine_connection_file(0))
    kc.load_connection_file()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=30)
        run_in_kernel(kc, "from_console = from_view + 1")
    finally:
        kc.stop_channels()
    assert rc[0].pull("from_console", block=True) == 124


@pytest.fixture(scope="module")
def lone_engine():
    """An engine started by jupyter_client alone, no hub involved."""
    km = KernelManager(kernel_name="pxmagic-engine")
    km.start_kernel()
    kc = km.client()
    kc.start_channels()
    kc.wait_for_ready(timeout=60)
    yield kc
    kc.stop_channels()
    km.shutdown_kernel(now=True)


def apply_on(kc: BlockingKernelClient, func, *args) -> dict:
    buffers = serialize.pack_call(func, args, {})
    msg = kc.session.msg("apply_request", {}, metadata={"buffer_tags": tag_frames(kc.session.key, buffers)})
    msg["buffers"] = buffers
    kc.shell_channel.send(msg)
    while True:
        reply = kc.get_shell_msg(timeout=30)
        if reply["parent_header"].get("msg_id") == msg["header"]["msg_id"]:
            return reply


def test_apply_request_returns_a_serialized_result(lone_engine):
    run_in_kernel(lone_engine, "offset = 100")
    reply = apply_on(lone_engine, lambda x: x + offset, 1)  # noqa: F821
    assert reply["msg_type"] == "apply_reply" and reply["content"]["status"] == "ok"
    assert serialize.unpack(reply["buffers"]) == 101


def test_apply_request_reports_errors_with_traceback(lone_engine):
    def broken():
        return undefined_name  # noqa: F821

    reply = apply_on(lone_engine, broken)
    content = reply["content"]
    assert content["status"] == "error" and content["ename"] == "NameError"
    assert "undefined_name" in content["evalue"]
    assert any("return undefined_name" in line for line in content["traceback"])


def test_execute_request_is_the_standard_one(lone_engine):
    outputs = []
    reply = lone_engine.execute_interactive("print('hello from the engine')", timeout=30,
                                            output_hook=outputs.append)
    assert reply["content"]["status"] == "ok"
    streams = [m["content"]["text"] for m in outputs if m["msg_type"] == "stream"]
    assert streams == ["hello from the engine\n"]


def test_hub_republishes_engine_output_tagged_with_engine_and_request(rc):
    import json

    import zmq
    from jupyter_client.session import Session

    info = json.loads(rc.connection_file.read_text())
    session = Session(key=info["key"].encode(), signature_scheme=info["signature_scheme"])
    with zmq.Context() as context, context.socket(zmq.SUB) as sub:
        sub.setsockopt(zmq.SUBSCRIBE, b"engine.3.stream.stdout")
        sub.connect(connection.hub_addresses(info)[1])
        sub.rcvtimeo = 1000
        deadline = 20
        while True:  # a SUB socket only hears what is published after it joined
            ar = rc[3].execute("print('tagged')", block=False)
            ar.get(30)
            try:
                frames = sub.recv_multipart()
                break
            except zmq.Again:
                deadline -= 1
                assert deadline > 0, "no output republished"
    topic, parts = session.feed_identities(frames)
    msg = session.deserialize(parts)
    assert topic == [b"engine.3.stream.stdout"]
    assert msg["content"]["text"] == "tagged\n"
    assert msg["parent_header"]["msg_id"].endswith("/3")


def test_a_cell_with_top_level_await_runs_and_an_apply_sent_after_it_waits_for_it(rc):
    """An apply is served at once only when no earlier request is queued or still awaiting."""
    cell = rc[0].execute("import asyncio\nawait asyncio.sleep(0.5)\nset_by_async_cell = 'done'", block=False)
    assert rc[0].apply_sync(lambda: set_by_async_cell) == "done"  # noqa: F821
    assert cell.get(30) is None


def test_interrupt_cancels_a_cell_awaiting_on_the_engine(rc):
    cell = rc[2].execute("import asyncio\nawait asyncio.sleep(30)", block=False)
    time.sleep(0.5)
    start = time.monotonic()
    rc[2].interrupt()
    with pytest.raises(RemoteError):
        cell.get(10)
    assert time.monotonic() - start < 5
    assert rc[2].apply_sync(lambda: "usable") == "usable"


def test_apply_sees_context_variables_set_by_a_cell(rc):
    rc[1].execute("import contextvars\nengine_var = contextvars.ContextVar('engine_var')\n"
                  "engine_var.set('from the cell')", block=True)
    assert rc[1].apply_sync(lambda: engine_var.get()) == "from the cell"  # noqa: F821


def test_applies_interleaved_with_plain_and_awaiting_cells_see_each_cell_before_them(rc):
    view = rc[3]
    expected, results = [], []
    for i in range(60):
        if i % 2:
            view.execute(f"order_mark = {i}", block=False)
        else:
            view.execute(f"import asyncio\nawait asyncio.sleep(0)\norder_mark = {i}", block=False)
        expected.append(i)
        results.append(view.apply_async(lambda: order_mark))  # noqa: F821
    assert [ar.get(60) for ar in results] == expected
