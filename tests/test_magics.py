"""The magics in a real IPython TerminalInteractiveShell against a real cluster."""
from __future__ import annotations

import io
import os
import re
import signal
import sys
import threading
import time
from contextlib import redirect_stdout

import pytest
from IPython.terminal.interactiveshell import TerminalInteractiveShell
from IPython.utils.io import capture_output

from pxmagic import AsyncResult, Client, CompositeError
from pxmagic.magics import UsageError, parse_px_line
from conftest import N_ENGINES


@pytest.fixture(scope="module")
def shell(rc):
    shell = TerminalInteractiveShell.instance(simple_prompt=True, colors="nocolor")
    shell.run_line_magic("load_ext", "pxmagic")
    return shell


@pytest.fixture
def dv(rc, shell):
    view = rc[:]
    view.block = True
    view.activate()
    return view


def px(shell, line: str):
    with capture_output() as captured:
        value = shell.run_line_magic("px", line)
    return value, captured.stdout


def test_without_a_client_the_magic_says_how_to_start_one(shell, monkeypatch):
    monkeypatch.setattr(Client, "_latest", None)
    from pxmagic.magics import ParallelMagics

    with pytest.raises(UsageError, match="no pxmagic cluster is connected.*pxcluster start"):
        ParallelMagics(shell).px("a = 1")


def test_load_ext_alone_uses_the_latest_client(rc, shell):
    from pxmagic.magics import ParallelMagics

    magics = ParallelMagics(shell)
    with capture_output() as captured:
        magics.px("implicit = 3")
    assert f"Parallel execution on engines: {rc.ids}" in captured.stdout
    assert rc[:].pull("implicit", block=True) == [3] * N_ENGINES


def test_px_runs_code_and_prints_engine_tagged_output(dv, shell):
    _, out = px(shell, "a = 5")
    assert out.startswith(f"Parallel execution on engines: {list(range(N_ENGINES))}")
    assert dv["a"] == [5] * N_ENGINES
    _, out = px(shell, "print('hi', a)")
    for engine_id in range(N_ENGINES):
        assert f"[stdout:{engine_id}] hi 5\n" in out
    with capture_output() as captured:
        shell.run_line_magic("px", "import sys; print('oops', file=sys.stderr)")
    assert "[stderr:2] oops" in captured.stderr
    _, out = px(shell, "6 * 7")
    for engine_id in range(N_ENGINES):
        assert f"Out[{engine_id}:" in out and "]: 42" in out


def test_px_sends_the_line_as_typed_not_the_clients_variables(dv, shell):
    shell.user_ns["a"] = "LOCAL"
    dv.execute("a = 'REMOTE'")
    _, out = px(shell, 'print(f"{a}")')
    assert "REMOTE" in out and "LOCAL" not in out
    _, out = px(shell, "print('$a', '{a}')")
    assert f"[stdout:0] $a {{a}}\n" in out
    with capture_output() as captured:
        shell.run_cell_magic("px", "--targets 0", 'print(f"{a}")')
    assert "REMOTE" in captured.stdout and "LOCAL" not in captured.stdout


def test_px_timeout_interrupts_and_bad_values_are_refused(dv, shell):
    dv.execute("kept = 'yes'")
    started = time.monotonic()
    with pytest.raises(CompositeError) as raised:
        with capture_output():
            shell.run_line_magic("px", "--timeout 0.5 import time; time.sleep(30)")
    assert time.monotonic() - started < 10
    assert {e.ename for _, e in raised.value.elist} == {"TaskTimeout"}
    assert dv["kept"] == ["yes"] * N_ENGINES
    for bad in ("0", "-2", "soon"):
        with pytest.raises(UsageError, match="--timeout takes a positive number of seconds"):
            shell.run_line_magic("px", f"--timeout {bad} 1")
    with pytest.raises(UsageError, match="--timeout"):
        shell.run_line_magic("px", "--no-such-option 1")


def test_start_and_connect_sync_with_activate_binds_px_to_the_new_client(cluster, shell):
    client = cluster.start_and_connect_sync(activate=True)
    client.wait_for_engines(N_ENGINES, timeout=30)
    result, _ = px(shell, "--noblock x = 6 * 7")
    assert result.msg_ids[0] in client.results, "%px went through another client"
    result.get(timeout=30)
    assert client[:].pull("x", block=True) == [42] * N_ENGINES


def test_spec_magic_session(dv, shell):
    with capture_output() as captured:
        with dv.sync_imports():
            import numpy  # noqa: F401
    assert "importing numpy on engine(s)" in captured.stdout
    px(shell, "a = numpy.random.rand(2,2)")
    px(shell, "ev = numpy.linalg.eigvals(a)")
    evs = dv["ev"]
    assert len(evs) == N_ENGINES and all(ev.shape == (2,) for ev in evs)
    dv.apply_async(lambda: ev)  # noqa: F821
    result = shell.run_line_magic("result", "")
    assert all((got == want).all() for got, want in zip(result, evs))


def test_cell_magic_with_targets_and_noblock(dv, shell):
    with capture_output() as captured:
        shell.run_cell_magic("px", "--targets 0::2", "where = 'even'\nprint(where)")
    assert "Parallel execution on engines: [0, 2]" in captured.stdout
    assert "[stdout:0] even" in captured.stdout and "[stdout:1]" not in captured.stdout
    ar, out = px(shell, "--noblock --targets 1 where = 'one'")
    assert isinstance(ar, AsyncResult) and out == ""
    ar.get(30)
    assert dv.pull("where", targets=1) == "one"


def test_local_also_runs_here(dv, shell):
    px(shell, "--local both_places = 11")
    assert shell.user_ns["both_places"] == 11 and dv["both_places"] == [11] * N_ENGINES


def test_group_outputs_by_engine_and_type(dv, shell):
    code = "import time, os\ntime.sleep(0.05 * (3 - int(os.environ['PXMAGIC_ENGINE_ID'])))\nprint('p')\n'r'"
    with capture_output() as captured:
        shell.run_cell_magic("px", "--group-outputs engine", code)
    tagged = [re.match(r"\[stdout:(\d+)\] p$|Out\[(\d+):\d+\]: 'r'$", line) for line in captured.stdout.splitlines()]
    engines = [int(m.group(1) or m.group(2)) for m in tagged if m]
    assert engines == sorted(engines) and len(engines) == 2 * N_ENGINES, captured.stdout
    with capture_output() as captured:
        shell.run_cell_magic("px", "--group-outputs=type", code)
    kinds = [line[:4] for line in captured.stdout.splitlines() if line.startswith(("[stdout", "Out["))]
    assert kinds == ["[std"] * N_ENGINES + ["Out["] * N_ENGINES


def test_errors_show_a_summary_and_debug_works(dv, shell):
    with pytest.raises(CompositeError):
        shell.run_line_magic("px", "1/0")
    with capture_output() as captured:
        shell.run_cell("%px 1/0")
    assert "CompositeError: one or more exceptions from call to method: execute" in captured.stdout
    assert f"[{N_ENGINES - 1}:apply]: ZeroDivisionError: division by zero" in captured.stdout
    assert "magics.py" not in captured.stdout, "no client-side pxmagic stack"
    assert isinstance(sys.last_value, CompositeError)


def test_streaming_shows_output_while_the_code_runs(dv, shell):
    stamps = []

    class Recorder(io.StringIO):
        def write(self, text):
            stamps.append((time.monotonic(), text))
            return super().write(text)

    with redirect_stdout(Recorder()):
        shell.run_cell_magic("px", "--targets 0", "import time\nfor i in range(3):\n    print(i, flush=True)\n"
                                                  "    time.sleep(1)")
    arrivals = [t for t, text in stamps if text.startswith("[stdout:0]")]
    assert len(arrivals) == 3
    assert arrivals[1] - arrivals[0] > 0.7 and arrivals[2] - arrivals[1] > 0.7


def test_autopx(dv, shell):
    dv.block = False
    with capture_output() as captured:
        shell.run_line_magic("autopx", "")
    assert "Auto Parallel Enabled\nType %autopx to disable" in captured.stdout
    with capture_output():
        shell.run_cell("max_evals = []")
        shell.run_cell("for i in range(3):\n    max_evals.append(i)\n")
    assert "max_evals" not in shell.user_ns
    with capture_output() as captured:
        shell.run_cell("%autopx")
    assert "Auto Parallel Disabled" in captured.stdout
    dv.block = True
    shell.run_cell("%px ans = 'Average is: %f' % (sum(max_evals) / len(max_evals))")
    assert dv["ans"] == ["Average is: 1.000000"] * N_ENGINES


def test_second_view_with_a_suffix(rc, dv, shell):
    evens = rc[::2]
    evens.block = True
    evens.activate(suffix="2")
    with capture_output() as captured:
        shell.run_line_magic("px2", "suffixed = 1")
        shell.run_line_magic("px", "print('all')")
    assert "Parallel execution on engines: [0, 2]" in captured.stdout
    assert captured.stdout.count("[stdout:") == N_ENGINES
    assert rc[:].apply_sync(lambda: "suffixed" in globals()) == [True, False, True, False]


def test_bad_options_are_named():
    with pytest.raises(UsageError, match="unknown option --fast"):
        parse_px_line("--fast a = 1")
    with pytest.raises(UsageError, match="--targets takes"):
        parse_px_line("--targets x a = 1")
    with pytest.raises(UsageError, match="--group-outputs takes"):
        parse_px_line("--group-outputs=color a = 1")
    options, code = parse_px_line("--targets 1,3 --noblock --local x = '--not an option'")
    assert (options.targets, options.block, options.local, code) == ([1, 3], False, True, "x = '--not an option'")


def test_ipyparallel_options_of_px(dv, shell):
    result, _ = px(shell, "-o kept_result --noblock x = 1")
    assert shell.user_ns["kept_result"] is result and isinstance(result, AsyncResult)
    _, out = px(shell, "--out=blocking_result --verbose y = 2")
    kept = shell.user_ns["blocking_result"]
    assert kept.done() and f"%px: sent {', '.join(kept.msg_ids)}" in out and "%px: done in" in out
    with capture_output() as captured:
        shell.run_line_magic("px", "--progress-after 0 import time; time.sleep(0.5)")
    assert "%px" in captured.stderr, "a bar at once with --progress-after 0"
    with pytest.raises(UsageError, match="--out takes a Python variable name, not 'not-a-name'"):
        parse_px_line("-o not-a-name 1")
    options, code = parse_px_line("-x + 1")
    assert code == "-x + 1" and options.out is None, "code starting with '-' is code"


class TimedWrites(io.StringIO):
    """stdout that notes when each piece of text was written."""

    def __init__(self) -> None:
        super().__init__()
        self.times: dict[str, float] = {}

    def write(self, text: str) -> int:
        for word in ("early", "late"):
            if word in text:
                self.times.setdefault(word, time.monotonic())
        return super().write(text)


@pytest.mark.parametrize("stream", [True, False])
def test_stream_shows_output_as_it_comes_no_stream_at_the_end(dv, shell, stream):
    written = TimedWrites()
    with redirect_stdout(written):
        shell.run_line_magic("px", f"--targets 0 {'--stream' if stream else '--no-stream'} "
                                   "import time; print('early', flush=True); time.sleep(1.5); print('late')")
    gap = written.times["late"] - written.times["early"]
    assert gap > 1.0 if stream else gap < 0.5, written.getvalue()


def test_pxconfig_sets_the_defaults_of_px(dv, shell):
    magics = shell.magics_manager.magics["line"]["pxconfig"].__self__
    try:
        shell.run_line_magic("pxconfig", "--targets 1 --noblock")
        result, _ = px(shell, "z = 3")
        assert isinstance(result, AsyncResult) and result.engine_ids == [1]
        result.get(timeout=30)
        _, out = px(shell, "--block --targets 0,2 print('said')")
        assert "[stdout:0] said" in out and "[stdout:2] said" in out and "[stdout:1]" not in out
        with pytest.raises(UsageError, match="%pxconfig takes only options"):
            shell.run_line_magic("pxconfig", "--noblock a = 1")
        with pytest.raises(UsageError, match="unknown option --colour"):
            shell.run_line_magic("pxconfig", "--colour")
    finally:
        magics.defaults = type(magics.defaults)()


def test_ctrl_c_interrupts_the_engines(dv, shell):
    timer = threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGINT))
    start = time.monotonic()
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        shell.run_line_magic("px", "import time; time.sleep(30)")
    assert time.monotonic() - start < 5
    assert dv.apply_sync(lambda: "free again") == ["free again"] * N_ENGINES
    assert time.monotonic() - start < 8, "the engines were interrupted, not left sleeping"


def test_long_waits_show_a_progress_bar(dv, shell):
    with capture_output() as captured:
        shell.run_line_magic("px", "import time; time.sleep(1.6)")
    assert "%px" in captured.stderr and f"/{N_ENGINES}" in captured.stderr
    with capture_output() as quick:
        shell.run_line_magic("px", "quick = 1")
    assert quick.stderr == "", "no bar for a wait shorter than a second"
    with capture_output() as mapped:
        dv.map_sync(lambda x: __import__("time").sleep(0.4) or x, range(4 * N_ENGINES))
    assert "<lambda>" in mapped.stderr


def test_noninteractive_turns_bars_and_streaming_off(dv, shell, monkeypatch):
    monkeypatch.setenv("PXMAGIC_NONINTERACTIVE", "1")
    with capture_output() as captured:
        shell.run_line_magic("px", "import time; time.sleep(1.3); print('done')")
    assert captured.stderr == ""
    assert captured.stdout.count("] done") == N_ENGINES


def test_result_by_index_and_msg_id(dv, shell):
    first = dv.apply_async(lambda: "first")
    second = dv.apply_async(lambda: "second")
    second.get(30)
    assert shell.run_line_magic("result", "") == ["second"] * N_ENGINES
    assert shell.run_line_magic("pxresult", "-2") == ["first"] * N_ENGINES
    assert shell.run_line_magic("result", first.msg_ids[0]) == ["first"] * N_ENGINES
    shell.run_line_magic("px", "print('kept')")
    with capture_output() as captured:
        shell.run_line_magic("result", "")
    assert captured.stdout.count("] kept") == N_ENGINES


def test_another_extensions_px_is_not_replaced_silently(rc, shell):
    def foreign_px(line):
        return "foreign"

    foreign_px.__module__ = "some_other_extension"
    shell.register_magic_function(foreign_px, "line", "px9")
    with pytest.warns(UserWarning, match="replaces the %px9 magic of some_other_extension"):
        rc[:].activate(suffix="9")
    ar = shell.run_line_magic("px9", "x9 = 1")
    assert isinstance(ar, AsyncResult) and ar.get(30) == [None] * N_ENGINES, "a non-blocking view's %px"
