"""``owsd serve-cloud MODEL --port N``: a cloud model served over the Open Inference Protocol by MLServer.

The model (a built-in cloud, ``tiny`` or ``efficientnet-lite0``, or a ``PATH.onnx`` with its
settings JSON beside it) is opened once here to check it, then served by `MLServer
<https://mlserver.readthedocs.io>`_ through the custom runtime :mod:`owsd.serve_runtime`
(KServe V2 REST: ``GET /v2/models/NAME``, ``POST /v2/models/NAME/infer``), so that
``--cloud http://HOST:PORT/v2/models/NAME`` (:class:`owsd.kserve.KServeCloud`) reaches it as
it would reach any MLServer, Triton or KServe deployment.  Only the REST port is
meant for clients: MLServer's metrics server is off and its gRPC server, which MLServer always
starts, listens on a free port of the same host; one process, no parallel workers; quiet logs
(warnings on stderr; ``-v`` for MLServer's and uvicorn's INFO lines).  When the model answers,
one line goes to stdout: ``serving NAME at http://HOST:PORT/v2/models/NAME``.  Ctrl-C or
SIGTERM stops the server (exit code 0).

MLServer is an optional dependency: ``pip install 'owsd-toolkit[serve]'`` (``mlserver==1.7.1``;
it installs protobuf 6 and grpcio, fastapi, uvicorn, pandas).  Without it the command says so
in one line (exit code 2), as it does for an unknown model or a busy port.

Example:
    >>> served_name("models/pets-v2.onnx"), served_name("efficientnet-lite0")
    ('pets-v2', 'efficientnet-lite0')
    >>> port = free_port("127.0.0.1")
    >>> port_in_use("127.0.0.1", port), endpoint("0.0.0.0", port, "clf") == f"http://0.0.0.0:{port}/v2/models/clf"
    (False, True)
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import logging
import re
import signal
import socket
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Optional, TextIO

from owsd import argtypes
from owsd.errors import UsageError

log = logging.getLogger(__name__)

#: how to install what ``owsd serve-cloud`` needs
INSTALL_HINT = "pip install 'owsd-toolkit[serve]' (mlserver==1.7.1)"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_WILDCARD = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


def served_name(model: str) -> str:
    """The default model name of ``MODEL``: a built-in name as it is, a file's stem."""
    return Path(model).stem if str(model).lower().endswith(".onnx") else str(model)


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def endpoint(host: str, port: int, name: str) -> str:
    """The model's URL, as ``--cloud`` takes it."""
    return f"http://{_host(host)}:{port}/v2/models/{name}"


def _address(host: str, port: int) -> tuple[int, tuple]:
    try:
        family, _, _, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as exc:
        raise UsageError(f"--host {host}: {exc.strerror}") from None
    return family, addr


def port_in_use(host: str, port: int) -> bool:
    """Whether ``port`` on ``host`` is taken (bound as a server would bind it, ``SO_REUSEADDR``)."""
    family, addr = _address(host, port)
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(addr)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return True
            if exc.errno == errno.EACCES:
                raise UsageError(f"--port {port}: not allowed to listen there ({exc.strerror}); use a port above "
                                 "1023") from None
            raise UsageError(f"--host {host}: cannot listen there ({exc.strerror})") from None
    return False


def free_port(host: str = "127.0.0.1") -> int:
    """A port free on ``host`` now (the system's choice)."""
    family, addr = _address(host, 0)
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind(addr)
        return int(s.getsockname()[1])


def _port(text: str) -> int:
    n = argtypes.nonnegative_int(text)
    if n > 65535:
        raise argparse.ArgumentTypeError(f"expected a port number 0..65535 (0: any free port), got {text!r}")
    return n


def _model_source(text: str) -> str:
    from owsd.cloud import CLOUD_NAMES  # local: start-up speed (torch) while argparse builds the CLI

    if text.lower().endswith(".onnx"):
        return str(argtypes.input_file(text))
    if text not in CLOUD_NAMES:
        raise argparse.ArgumentTypeError(f"{text!r}: expected {', '.join(CLOUD_NAMES)} or a PATH.onnx (with its "
                                         "settings JSON beside it)")
    return text


def _model_name(text: str) -> str:
    if not _NAME.match(text):
        raise argparse.ArgumentTypeError(f"{text!r}: a model name is letters, digits, '.', '_' and '-' (it goes into "
                                         "the URL)")
    return text


def add_parser(sub: Any) -> None:
    """Add ``serve-cloud`` to the ``owsd`` subcommands."""
    s = sub.add_parser("serve-cloud", help="serve a cloud model over the Open Inference Protocol (KServe V2) with "
                                           "MLServer", description="Serve a cloud model over the Open Inference Protocol (KServe V2 REST) "
                                           "with MLServer, for --cloud http://HOST:PORT/v2/models/NAME.")
    s.add_argument("model", metavar="MODEL", type=_model_source,
                   help="tiny, efficientnet-lite0, or PATH.onnx (its settings JSON beside it, as --cloud PATH.onnx "
                        "reads them)")
    s.add_argument("--port", type=_port, required=True, help="REST port (0: any free port; the line printed names it)")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    s.add_argument("--name", type=_model_name, help="model name in the URL (default: the file's stem or the name)")
    s.add_argument("--threads", type=argtypes.positive_int,
                   help="threads of the model (onnxruntime intra-op, torch); default: the usable cores")
    s.add_argument("--cloud-config", type=argtypes.input_file,
                   help="settings JSON of an ONNX model kept elsewhere than beside it")
    s.set_defaults(func=cmd_serve_cloud)


def _logging(verbose: int) -> dict:
    """MLServer's and uvicorn's loggers: warnings only (INFO with ``-v``), on stderr."""
    level = "INFO" if verbose else "WARNING"
    return {"version": 1, "disable_existing_loggers": False,
            "formatters": {"plain": {"format": "%(levelname)s %(name)s: %(message)s"}},
            "handlers": {"stderr": {"class": "logging.StreamHandler", "stream": "ext://sys.stderr",
                                    "formatter": "plain"}},
            "loggers": {n: {"level": level, "handlers": ["stderr"], "propagate": False}
                        for n in ("mlserver", "uvicorn", "uvicorn.error", "uvicorn.access")}}


def cmd_serve_cloud(a: argparse.Namespace) -> int:
    """The ``owsd serve-cloud`` command (under the error policy of :mod:`owsd.errors`)."""
    try:
        import mlserver  # noqa: F401
    except ImportError as exc:
        if exc.name == "mlserver":
            raise UsageError(f"needs MLServer, which is not installed: {INSTALL_HINT}") from None
        raise UsageError(f"MLServer is installed but does not import ({exc}); reinstall it: {INSTALL_HINT}") from None
    from owsd.serve_runtime import open_served_cloud  # local: start-up speed (torch, onnxruntime)

    name = a.name or served_name(a.model)
    if a.name is None and not _NAME.match(name):
        raise UsageError(f"MODEL {a.model}: {name!r} cannot be a model name in a URL; give one with --name")
    config = str(a.cloud_config) if a.cloud_config else None
    source = a.model if not a.model.lower().endswith(".onnx") else str(Path(a.model).resolve())
    t0 = time.perf_counter()
    cloud = open_served_cloud(source, threads=a.threads, config=config)  # user errors: one line, exit 2
    digest = cloud.digest
    del cloud
    port = a.port or free_port(a.host)
    if port_in_use(a.host, port):
        raise UsageError(f"--port {port}: {a.host}:{port} is in use (another server?); pick a free port, or --port 0")
    return serve(source, name=name, host=a.host, port=port, version=digest, threads=a.threads, config=config,
                 verbose=a.verbose, started=t0)


def serve(source: str, *, name: str, host: str, port: int, version: Optional[str] = None,
          threads: Optional[int] = None, config: Optional[str] = None, verbose: int = 0,
          started: Optional[float] = None, out: TextIO = sys.stdout) -> int:
    """Serve ``source`` until a signal stops it; 0 then (or :class:`UsageError` when it cannot start)."""
    from mlserver.settings import ModelParameters, ModelSettings, Settings

    from owsd.serve_runtime import runtime_class  # local: start-up speed (torch, onnxruntime)

    with tempfile.TemporaryDirectory(prefix="owsd-serve-") as empty:
        # an empty model repository: MLServer's repository endpoints cannot load anything else
        settings = Settings(debug=False, host=host, http_port=port, grpc_port=free_port(host), metrics_endpoint=None,
                            parallel_workers=0, model_repository_root=empty, load_models_at_startup=False,
                            logging_settings=_logging(verbose), environments_dir=empty, metrics_dir=empty)
        model = ModelSettings(name=name, implementation=runtime_class(),
                              parameters=ModelParameters(uri=source, version=version,
                                                         extra={"threads": threads, "config": config}))
        url = endpoint(host, port, name)
        try:
            ready, stopped = asyncio.run(_serve(settings, model, url, endpoint(_WILDCARD.get(host, host), port, name),
                                                out=out, started=time.perf_counter() if started is None else started))
        except SystemExit as exc:  # uvicorn exits when it cannot bind (a port taken since the check)
            raise UsageError(f"--port {port}: MLServer could not listen on {host}:{port} (exit {exc.code}); is the "
                             "port in use?") from None
    if stopped is None:
        if not ready:
            raise UsageError(f"MLServer stopped before {url} answered (the model failed to load? see above)")
        raise RuntimeError(f"MLServer serving {url} ended without a signal (see the messages above)")
    sys.stderr.write(f"owsd serve-cloud: stopped {name} ({stopped})\n")
    return 0


async def _serve(settings: Any, model: Any, url: str, probe: str, *, out: TextIO,
                 started: float) -> tuple[bool, Optional[str]]:
    """Run MLServer until it stops; whether it was ready, and the signal that stopped it (``None``: none did)."""
    from mlserver import MLServer

    server = MLServer(settings)
    stopped: list[str] = []
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):  # MLServer's own handlers, noting which signal came
        # (stopped as by SIGTERM: uvicorn, having seen a SIGINT itself, takes a second one as "force exit")
        loop.add_signal_handler(sig, lambda s=sig: (stopped.append(signal.Signals(s).name),
                                                    asyncio.ensure_future(server.stop(sig=signal.SIGTERM))))
    task = asyncio.ensure_future(server.start([model]))
    ready = False
    while not task.done() and not stopped:
        if await asyncio.to_thread(_answers, probe + "/ready"):
            ready = True
            out.write(f"serving {model.name} at {url}\n")
            out.flush()
            log.info("MLServer ready in %.1f s", time.perf_counter() - started)
            break
        await asyncio.sleep(0.1)
    await task
    return ready, (stopped[0] if stopped else None)


def _answers(url: str) -> bool:
    """Whether ``GET url`` answers 200 (within a second)."""
    try:
        with urllib.request.urlopen(url, timeout=1.0) as r:
            return r.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False
