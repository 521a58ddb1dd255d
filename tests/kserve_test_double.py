"""TEST DOUBLE: a minimal KServe V2 (Open Inference Protocol) HTTP server around an ONNX model.

This is NOT a serving framework and not part of the toolkit.  Real serving is tested with MLServer:
``owsd serve-cloud`` (tests/test_serve_cloud.py, the ``serve`` extra).  This stand-in, built on
Flask, is kept for fault injection, which a real server does not offer on demand, and so that the
client's tests run without MLServer.  It implements the endpoints the client
uses (``GET /v2/health/ready``, ``GET /v2/models/NAME``, ``POST /v2/models/NAME/infer``, JSON
tensors), plus faults for the tests: ``--die-after N`` (the process exits abruptly after N
inference requests, like a killed server), ``--delay S`` (slow answers), ``--bad-shape`` (answers
one row too few), ``--version V`` (the model version reported).

Run: ``python tests/kserve_test_double.py --model m.onnx --name m --port 0`` prints ``PORT <n>``.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time

import numpy as np
import onnxruntime as ort
from flask import Flask, jsonify, request
from werkzeug.serving import make_server


def build_app(model: str, name: str, *, version: str = "1", die_after: int = 0, delay: float = 0.0,
              bad_shape: bool = False) -> Flask:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
    inp, out = sess.get_inputs()[0], sess.get_outputs()[0]
    dims = lambda shape: [d if isinstance(d, int) else -1 for d in shape]  # noqa: E731
    app = Flask(__name__)
    count = {"infer": 0}

    @app.get("/v2/health/ready")
    def ready():
        return "", 200

    @app.get(f"/v2/models/{name}")
    def metadata():
        return jsonify({"name": name, "versions": [version] if version else [], "platform": "onnxruntime_onnx",
                        "inputs": [{"name": inp.name, "datatype": "FP32", "shape": dims(inp.shape)}],
                        "outputs": [{"name": out.name, "datatype": "FP32", "shape": dims(out.shape)}]})

    @app.post(f"/v2/models/{name}/infer")
    def infer():
        count["infer"] += 1
        if die_after and count["infer"] > die_after:
            os._exit(3)  # a killed server: the connection drops without an answer
        if delay:
            time.sleep(delay)
        body = request.get_json(force=True)
        t = body["inputs"][0]
        if t.get("datatype") != "FP32" or len(t.get("shape", [])) != 4:
            return jsonify({"error": f"expected an FP32 tensor of 4 dimensions, got {t.get('shape')}"}), 400
        x = np.asarray(t["data"], np.float32).reshape(t["shape"])
        try:
            y = sess.run(None, {inp.name: x})[0]
        except Exception as exc:  # noqa: BLE001 - the model's complaint goes back to the client
            return jsonify({"error": str(exc)[:300]}), 400
        if bad_shape:
            y = y[:-1] if len(y) > 1 else np.concatenate([y, y])
        return jsonify({"model_name": name, "model_version": version,
                        "outputs": [{"name": out.name, "datatype": "FP32", "shape": list(y.shape),
                                     "data": y.ravel().tolist()}]})

    return app


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--name", default="model")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--version", default="1")
    ap.add_argument("--die-after", type=int, default=0)
    ap.add_argument("--delay", type=float, default=0.0)
    ap.add_argument("--bad-shape", action="store_true")
    a = ap.parse_args()
    app = build_app(a.model, a.name, version=a.version, die_after=a.die_after, delay=a.delay, bad_shape=a.bad_shape)
    srv = make_server("127.0.0.1", a.port, app, threaded=True)
    sys.stdout.write(f"PORT {srv.server_port}\n")
    sys.stdout.flush()
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        srv.shutdown()


if __name__ == "__main__":
    main()
