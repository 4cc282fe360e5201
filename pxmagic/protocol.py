"""Message shapes and routing rules shared by the client, the hub and engines.

Nothing here touches a socket: these functions build and read the parts of
Jupyter messages (header, metadata, content) that pxmagic adds, so that the
hub, the client and the engine only move bytes and call these.

A request from a client names its targets in its signed metadata.  The hub
sends one copy to each target engine, with a per-engine ``msg_id`` derived
from the request's, so the client knows every engine's ``msg_id`` at once.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

APPLY_REQUEST = "apply_request"
APPLY_REPLY = "apply_reply"
EXECUTE_REQUEST = "execute_request"
EXECUTE_REPLY = "execute_reply"
INTERRUPT_REQUEST = "interrupt_request"
INTERRUPT_REPLY = "interrupt_reply"
#: requests the hub forwards to engines, and the reply each one gets
ENGINE_REQUESTS = {APPLY_REQUEST: APPLY_REPLY, EXECUTE_REQUEST: EXECUTE_REPLY, INTERRUPT_REQUEST: INTERRUPT_REPLY}
#: of those, the ones that go to an engine's control channel rather than its shell
CONTROL_REQUESTS = {INTERRUPT_REQUEST}

HUB_INFO_REQUEST = "hub_info_request"
HUB_INFO_REPLY = "hub_info_reply"
HUB_SHUTDOWN_REQUEST = "hub_shutdown_request"
HUB_SHUTDOWN_REPLY = "hub_shutdown_reply"
#: requests the hub answers itself
HUB_RESTART_REQUEST = "hub_restart_request"
HUB_RESTART_REPLY = "hub_restart_reply"
HUB_ABORT_REQUEST = "hub_abort_request"
HUB_ABORT_REPLY = "hub_abort_reply"
#: ask the hub for results it keeps (any client's), and to forget some of them
HUB_RESULT_REQUEST = "hub_result_request"
HUB_RESULT_REPLY = "hub_result_reply"
HUB_PURGE_REQUEST = "hub_purge_request"
HUB_PURGE_REPLY = "hub_purge_reply"
#: each engine's state, tasks and use, and the cluster's (``Client.status``; see ``pxmagic.hub.status``)
HUB_STATUS_REQUEST = "hub_status_request"
HUB_STATUS_REPLY = "hub_status_reply"
#: add local engines to a running cluster, or stop some (``Cluster.start_engines`` / ``stop_engines``)
HUB_START_ENGINES_REQUEST = "hub_start_engines_request"
HUB_START_ENGINES_REPLY = "hub_start_engines_reply"
HUB_STOP_ENGINES_REQUEST = "hub_stop_engines_request"
HUB_STOP_ENGINES_REPLY = "hub_stop_engines_reply"
#: requests the hub answers itself, and the reply each one gets
HUB_REQUESTS = {
    HUB_INFO_REQUEST: HUB_INFO_REPLY,
    HUB_SHUTDOWN_REQUEST: HUB_SHUTDOWN_REPLY,
    HUB_RESTART_REQUEST: HUB_RESTART_REPLY,
    HUB_ABORT_REQUEST: HUB_ABORT_REPLY,
    HUB_RESULT_REQUEST: HUB_RESULT_REPLY,
    HUB_PURGE_REQUEST: HUB_PURGE_REPLY,
    HUB_STATUS_REQUEST: HUB_STATUS_REPLY,
    HUB_START_ENGINES_REQUEST: HUB_START_ENGINES_REPLY,
    HUB_STOP_ENGINES_REQUEST: HUB_STOP_ENGINES_REPLY,
}


def reply_type(msg_type: str) -> str:
    """The type of the reply to a request of type ``msg_type``: from the tables above, or, for a type
    pxmagic does not know (refused, but answered), named as Jupyter names replies."""
    known = ENGINE_REQUESTS.get(msg_type) or HUB_REQUESTS.get(msg_type)
    return known or msg_type.removesuffix("_request") + "_reply"


#: iopub topic on which an engine reports its memory and CPU (``pxmagic.usage``) for the hub's status
USAGE_TOPIC = b"pxmagic.usage"
ENGINE_USAGE = "engine_usage"
#: the hub tells a client that its load-balanced task failed and goes for another try
TASK_RETRY = "task_retry"
#: what the hub knows of a result asked for: it holds it, it is still to come, or it has none
RESULT_DONE = "done"
RESULT_PENDING = "pending"
RESULT_MISSING = "missing"


@dataclass(frozen=True)
class Found:
    """What the hub knows of one result asked for: its state, and if done, its engine and signed frames."""

    msg_id: str
    state: str
    engine_id: int | None
    #: the reply's own frames (signature, header, parent, metadata, content, buffers); empty unless done
    parts: list
#: what the hub sends an engine's control channel to drop requests it has not started
ENGINE_ABORT_REQUEST = "abort_request"

#: environment variable through which the hub tells an engine its id
ENGINE_ID_ENV = "PXMAGIC_ENGINE_ID"

#: what a client sends first on its bulk stream to the hub (``pxmagic.hub.bulk``): its ZMQ routing id, signed
BULK_HELLO = "bulk_hello"
#: the frame before a reply's delimiter that says its buffers follow on the bulk stream, and their sizes
BULK_SIZES = b"pxmagic-bulk:"


def bulk_sizes_frame(sizes: Iterable[int]) -> bytes:
    return BULK_SIZES + b",".join(b"%d" % size for size in sizes)


def bulk_sizes(frame: Any) -> list[int] | None:
    """The buffer sizes a reply's first frame announces, or None if it announces none."""
    data = bytes(frame)
    if not data.startswith(BULK_SIZES):
        return None
    fields = data[len(BULK_SIZES):].split(b",")
    if not all(field.isdigit() for field in fields):
        raise ProtocolError(f"{data[:80]!r} is not a list of buffer sizes")
    return [int(field) for field in fields]


#: iopub topic of the hub's own announcements (engines coming and going)
HUB_TOPIC = b"hub.engines"
ENGINE_STATUS = "engine_status"
#: the hub says it is alive this often on iopub, so clients can tell when it is gone
HUB_HEARTBEAT_TOPIC = b"hub.heartbeat"
HUB_HEARTBEAT_PERIOD = 1.0

#: where a cluster's engines come from (``--engines``): see pxmagic.hub.launchers
ENGINE_KINDS = ("local", "mpi", "ssh", "slurm", "external")
#: what an engine the hub did not start sends the hub's registration socket, and the answer
REGISTRATION_REQUEST = "registration_request"
REGISTRATION_REPLY = "registration_reply"
#: ``profile_<p>/security/pxmagic-engine[-<cluster id>].json``: how such an engine reaches the hub
ENGINE_FILE_PREFIX = "pxmagic-engine"
#: a kernel's channels, each a ``<channel>_port`` in its connection info
KERNEL_CHANNELS = ("shell", "iopub", "stdin", "control", "hb")
#: a CurveZMQ key in Z85 text
CURVE_KEY_LENGTH = 40
#: environment variables that give a process's rank under common launchers, most specific first
RANK_ENV_VARS = ("OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK", "SLURM_PROCID")


class ProtocolError(ValueError):
    """A message that does not have the shape pxmagic expects."""


#: longest msg_id or msg_type the hub accepts (Jupyter's are uuids and short names)
MAX_NAME_LENGTH = 256


def check_header(header: dict) -> dict:
    """``header`` if it has the msg_id and msg_type the hub routes by; else ProtocolError."""
    for key in ("msg_id", "msg_type"):
        value = header.get(key)
        if not isinstance(value, str) or not value or len(value) > MAX_NAME_LENGTH:
            shown = repr(value) if len(repr(value)) < 60 else repr(value)[:60] + "..."
            raise ProtocolError(f"its header's {key} is {shown}, not a string of 1 to {MAX_NAME_LENGTH} characters")
    return header


def engine_msg_id(request_id: str, engine_id: int) -> str:
    """The msg_id of the copy of request ``request_id`` that engine ``engine_id`` gets."""
    return f"{request_id}/{engine_id}"


#: a result with this many bytes or more leaves the hub's memory once its client says it has it
RELEASE_MIN = 1024 * 1024


@dataclass(frozen=True)
class RequestTerms:
    """What a request's metadata asks of the hub besides routing, checked.

    ``timeout``: seconds it may run on an engine (None: no limit).
    ``retries``: further tries a balanced task gets if its engine dies, or,
    with ``retry_errors``, if it raises.  ``name`` (the function, or the
    first line of the code) and ``label`` say what it is wherever the hub
    lists tasks.
    """

    timeout: float | None = None
    retries: int = 0
    retry_errors: bool = False
    name: str = ""
    label: str = ""


#: longest ``name`` or ``label`` the hub keeps of a request
TERM_TEXT_MAX = 200


def request_metadata(
    targets: Iterable[int] | None, buffer_tags: list[str], balanced: bool = False, received: list[str] = (),
    shared_memory: str = "",
    terms: RequestTerms = RequestTerms(),
) -> dict:
    """Metadata a client puts on a request for engines.

    A direct request runs on every engine in ``targets``; a balanced one runs
    once, on whichever of ``targets`` (None: any engine) the hub picks.
    ``received`` names large results (:data:`RELEASE_MIN`) that the client
    has received since its last request, which the hub need not keep.
    ``shared_memory`` is the client's host id if large results may come
    back in shared memory segments (``pxmagic.sharedmem``).  ``terms``
    says what else the hub is to enforce and show (see :class:`RequestTerms`).
    """
    metadata: dict[str, Any] = {"targets": None if targets is None else list(targets)}
    if balanced:
        metadata["balanced"] = True
    metadata["buffer_tags"] = buffer_tags
    if received:
        metadata["received"] = list(received)
    if shared_memory:
        metadata["shared_memory"] = shared_memory
    if terms.timeout is not None:
        metadata["timeout"] = terms.timeout
    if terms.retries:
        metadata["retries"] = terms.retries
    if terms.retry_errors:
        metadata["retry_errors"] = True
    for key in ("name", "label"):
        if getattr(terms, key):
            metadata[key] = getattr(terms, key)[:TERM_TEXT_MAX]
    return metadata


def is_seconds(value: Any) -> bool:
    """Whether ``value`` is a positive number of seconds (the one check of timeouts, client and hub alike)."""
    return not isinstance(value, bool) and isinstance(value, (int, float)) and value > 0


def is_count(value: Any) -> bool:
    """Whether ``value`` is a whole count, 0 or more (the one check of retries, client and hub alike)."""
    return not isinstance(value, bool) and isinstance(value, int) and value >= 0


def request_terms(metadata: dict) -> RequestTerms:
    """A request's terms; raises ProtocolError naming what is malformed."""
    timeout = metadata.get("timeout")
    if timeout is not None and not is_seconds(timeout):
        raise ProtocolError(f"a request's timeout must be a positive number of seconds, not {timeout!r}")
    retries, retry_errors = metadata.get("retries", 0), metadata.get("retry_errors", False)
    if not is_count(retries):
        raise ProtocolError(f"a request's retries must be a count, 0 or more, not {retries!r}")
    if not isinstance(retry_errors, bool):
        raise ProtocolError(f"a request's retry_errors must be true or false, not {retry_errors!r}")
    if retries and not metadata.get("balanced"):
        raise ProtocolError("only a load-balanced task can be retried")
    texts = {key: metadata.get(key, "") for key in ("name", "label")}
    for key, text in texts.items():
        if not isinstance(text, str) or len(text) > TERM_TEXT_MAX:
            raise ProtocolError(f"a request's {key} must be a string of at most {TERM_TEXT_MAX} characters")
    return RequestTerms(None if timeout is None else float(timeout), retries, retry_errors, **texts)


def received_msg_ids(metadata: dict) -> list[str]:
    """The msg_ids of large results a request says its client has; raises ProtocolError if malformed."""
    return _msg_id_list(metadata.get("received", []), "a request's 'received' metadata")


def request_routing(metadata: dict) -> tuple[list[int] | None, bool]:
    """``(targets, balanced)`` of a request; raises ProtocolError if they are malformed."""
    targets = metadata.get("targets")
    balanced = metadata.get("balanced", False) is True
    if targets is None and balanced:
        return None, True
    if not isinstance(targets, list) or not targets:
        raise ProtocolError("a request for engines needs a non-empty 'targets' list in its metadata")
    if not all(isinstance(t, int) and not isinstance(t, bool) for t in targets):
        raise ProtocolError(f"engine targets must be integers, not {targets!r}")
    if len(set(targets)) != len(targets):
        raise ProtocolError(f"engine targets repeat an engine: {targets!r}")
    return targets, balanced


def abort_msg_ids(content: dict) -> list[str]:
    """The msg_ids a client asks to abort; raises ProtocolError if they are malformed."""
    return _msg_id_list(content.get("msg_ids"), "an abort request")


def result_msg_ids(content: dict) -> list[str]:
    """The msg_ids whose results a client asks the hub for; raises ProtocolError if malformed."""
    return _msg_id_list(content.get("msg_ids"), "a result request")


def _msg_id_list(msg_ids: Any, request: str) -> list[str]:
    if not isinstance(msg_ids, list) or not all(isinstance(m, str) for m in msg_ids):
        raise ProtocolError(f"{request} needs a list of msg_ids, not {msg_ids!r}")
    return msg_ids


def purge_selection(content: dict) -> tuple[bool, list[str], list[int]]:
    """``(everything, msg_ids, engine_ids)`` of a purge request; raises ProtocolError if malformed."""
    everything = content.get("all", False) is True
    msg_ids = _msg_id_list(content.get("msg_ids", []), "a purge request")
    engine_ids = content.get("engine_ids", [])
    if not isinstance(engine_ids, list) or not all(isinstance(e, int) and not isinstance(e, bool)
                                                   for e in engine_ids):
        raise ProtocolError(f"a purge request's engine_ids must be a list of integers, not {engine_ids!r}")
    return everything, msg_ids, engine_ids


def stored_results_message(found: Iterable[Found],
                           why_missing: Callable[[str], str] | None = None) -> tuple[dict, list]:
    """Content and buffers of a ``hub_result_reply``.

    The ``parts`` of each result found travel untouched as this reply's buffers, one result after another,
    so the client checks and reads them as it does any reply.  A missing
    result's entry says why (``why_missing(msg_id)``), for the client's error.
    """
    entries, buffers = [], []
    for result in found:
        entry = {"msg_id": result.msg_id, "state": result.state, "engine_id": result.engine_id,
                 "frames": len(result.parts)}
        if result.state == RESULT_MISSING and why_missing is not None:
            entry["reason"] = why_missing(result.msg_id)
        entries.append(entry)
        buffers.extend(result.parts)
    return {"status": "ok", "results": entries}, buffers


def split_stored_results(content: dict, frames: list) -> list[tuple[dict, list]]:
    """Each entry of a ``hub_result_reply`` with its frames; the inverse of :func:`stored_results_message`."""
    entries = content.get("results")
    if not isinstance(entries, list):
        raise ProtocolError(f"a result reply needs a 'results' list, not {entries!r}")
    split, offset = [], 0
    for entry in entries:
        count = entry.get("frames", 0) if isinstance(entry, dict) else None
        if not isinstance(count, int) or count < 0 or offset + count > len(frames):
            raise ProtocolError(f"a result reply's entry {entry!r} does not match its {len(frames)} frames")
        split.append((entry, frames[offset:offset + count]))
        offset += count
    return split


def per_engine_header(header: dict, engine_id: int) -> dict:
    """The header of the copy of a request sent to one engine."""
    return {**header, "msg_id": engine_msg_id(header["msg_id"], engine_id)}


def error_content(ename: str, evalue: str, traceback: list[str] | None = None, **extra: Any) -> dict:
    """Content of a reply that reports an error, as Jupyter replies do."""
    return {"status": "error", "ename": ename, "evalue": evalue, "traceback": traceback or [], **extra}


def engine_error_content(engine_id: int, msg_id: str, reason: str) -> dict:
    """Reply content the hub sends in an engine's name when the engine cannot answer."""
    return error_content(
        "EngineError",
        f"engine {engine_id} {reason}; request {msg_id} did not complete",
        engine_id=engine_id,
    )


def iopub_topic(engine_id: int, kernel_topic: bytes) -> bytes:
    """The topic under which the hub republishes an engine's iopub message.

    The kernel's own topic (``stream.stdout``, ``kernel.<id>.status``...) is
    kept after an ``engine.<id>.`` prefix, so subscribers can filter by engine.
    """
    return b"engine.%d.%s" % (engine_id, kernel_topic)


def topic_engine(topic: bytes) -> int | None:
    """The engine id of a topic made by :func:`iopub_topic`, else None."""
    parts = topic.split(b".", 2)
    if len(parts) >= 2 and parts[0] == b"engine" and parts[1].isdigit():
        return int(parts[1])
    return None


CONNECTION_KEYS = ("transport", "ip", "request_port", "iopub_port", "key", "signature_scheme")


def check_connection_info(info: Any, source: str) -> dict:
    """Validate a client connection file's content; the error names what is missing."""
    if not isinstance(info, dict):
        raise ProtocolError(f"{source} does not hold a JSON object")
    missing = [k for k in CONNECTION_KEYS if k not in info]
    if missing:
        raise ProtocolError(f"{source} lacks {', '.join(missing)}: is it a pxmagic-client.json?")
    return info


def hub_url(info: dict, port_key: str) -> str:
    """The ZMQ address of one of the hub's sockets."""
    if info["transport"] == "ipc":
        return f"ipc://{info['ip']}-{info[port_key]}"
    return f"{info['transport']}://{info['ip']}:{info[port_key]}"


def kernel_url(info: dict, channel: str) -> str:
    """The ZMQ address of one channel of a kernel, from its connection info."""
    port = info[f"{channel}_port"]
    if info["transport"] == "ipc":
        return f"ipc://{info['ip']}-{port}"
    return f"tcp://{info['ip']}:{port}"


def rank_from_env(environ: dict) -> int | None:
    """The rank a parallel launcher (mpiexec, srun) gave this process, if any."""
    for name in RANK_ENV_VARS:
        value = environ.get(name, "")
        if value.isdigit():
            return int(value)
    return None


def registration_content(
    connection_info: dict,
    rank: int | None,
    job: str | None,
    host: str,
    pid: int,
    connection_file: str,
    host_id: str = "",
) -> dict:
    """What an engine tells the hub about itself when it registers.

    ``connection_info`` is the kernel's connection file without its key (the
    hub has the key already).  ``rank`` asks for a place in the engine order
    (an MPI rank); ``job`` names the launch (an MPI job) the engine belongs to.
    ``host_id`` tells whether it shares the hub's shared memory (``pxmagic.sharedmem.host_id``).
    """
    channels = {f"{c}_port": connection_info[f"{c}_port"] for c in KERNEL_CHANNELS}
    # a kernel that encrypts gives its CurveZMQ public key; its secret key never leaves it
    curve = {"curve_publickey": connection_info["curve_publickey"]} if connection_info.get("curve_publickey") else {}
    return {
        "connection_info": {
            "transport": connection_info["transport"],
            "ip": connection_info["ip"],
            **channels,
            **curve,
        },
        "rank": rank,
        "job": job,
        "host_id": host_id,
        "host": host,
        "pid": pid,
        "connection_file": connection_file,
    }


def check_registration(content: Any) -> dict:
    """A registration request's content, validated; ProtocolError names what is wrong."""
    if not isinstance(content, dict):
        raise ProtocolError("a registration must be a JSON object")
    info = content.get("connection_info")
    if not isinstance(info, dict):
        raise ProtocolError("a registration needs a 'connection_info' object")
    if info.get("transport") not in ("tcp", "ipc") or not isinstance(info.get("ip"), str) or not info["ip"]:
        raise ProtocolError(f"connection_info needs transport 'tcp' or 'ipc' and an ip, not {info!r}")
    for channel in KERNEL_CHANNELS:
        port = info.get(f"{channel}_port")
        if not (isinstance(port, int) and not isinstance(port, bool) and 0 < port < 65536):
            raise ProtocolError(f"connection_info has no valid {channel}_port: {port!r}")
    curve_key = info.get("curve_publickey")
    if curve_key is not None and not (isinstance(curve_key, str) and len(curve_key) == CURVE_KEY_LENGTH):
        raise ProtocolError(f"connection_info's curve_publickey must be a {CURVE_KEY_LENGTH}-character Z85 key")
    rank = content.get("rank")
    if rank is not None and not (isinstance(rank, int) and not isinstance(rank, bool) and rank >= 0):
        raise ProtocolError(f"rank must be a non-negative integer or null, not {rank!r}")
    job = content.get("job")
    if job is not None and not isinstance(job, str):
        raise ProtocolError(f"job must be a string or null, not {job!r}")
    pid = content.get("pid")
    if not isinstance(pid, int) or isinstance(pid, bool):
        raise ProtocolError(f"pid must be an integer, not {pid!r}")
    if not isinstance(content.get("host_id", ""), str):
        raise ProtocolError(f"host_id must be a string, not {content['host_id']!r}")
    for key in ("host", "connection_file"):
        if not isinstance(content.get(key), str):
            raise ProtocolError(f"{key} must be a string, not {content.get(key)!r}")
    return content
