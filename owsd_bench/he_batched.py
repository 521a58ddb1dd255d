"""The amortized HE baseline: many images packed per ciphertext (CryptoNets / nGraph-HE2 batching).

:mod:`owsd_bench.ckks` encrypts ONE image per ciphertext (its im2col layout fills the slots with
that image's convolution windows): the single-image latency of HE, its worst case.  Here the
slots run along the *batch*: ciphertext ``i`` holds pixel ``i`` of up to ``slots`` (4,096 at
ring degree 8,192) images, one image a slot.  Every layer of
:class:`~owsd_bench.network.SquareConvNet` then becomes plaintext-scalar arithmetic on whole
ciphertexts, with no rotations (so no Galois keys): each convolution output is a sum of
``kernel^2`` pixel ciphertexts times a weight, the squares are ciphertext products, each
fully connected output a weighted sum of ciphertexts.  The cost of a batch does not depend on
how many slots are used; per image it falls as ``1 / batch``.

* :class:`BatchedHeClient` holds the secret key: encrypts a batch (one serialized ciphertext a
  pixel), decrypts the class scores (one ciphertext a class);
* :class:`BatchedHeServer` holds the public context and the plaintext weights.

Same CKKS parameters as the single-image baseline (:class:`~owsd_bench.ckks.CkksParams`: five of
six levels used).  Operation count of one batch: ``channels x windows x kernel^2`` scalar
products for the convolution, ``channels x windows`` squares, ``channels x windows x hidden``
scalar products for the first layer, ``hidden`` squares, ``hidden x classes`` for the last.

Example:
    >>> import numpy as np, torch
    >>> from owsd_bench.network import SquareConvNet, plaintext_logits
    >>> net = SquareConvNet(image_size=4, channels=1, hidden=2, num_classes=3).eval()
    >>> client = BatchedHeClient(net.geometry)
    >>> server = BatchedHeServer(net, client.public_context())
    >>> imgs = np.random.default_rng(0).integers(0, 256, (5, 1, 4, 4)).astype(np.uint8)
    >>> out = client.decrypt(server.infer(client.encrypt(imgs)), n=5)
    >>> out.shape, bool(np.abs(out - plaintext_logits(net, imgs)).max() < 5e-2)
    ((5, 3), True)
"""

from __future__ import annotations

import logging
import time
from typing import Optional

import numpy as np

from owsd import threads as owsd_threads
from owsd_bench.ckks import CkksParams, _tenseal, server_state
from owsd_bench.measure import accuracy
from owsd_bench.network import ConvGeometry, SquareConvNet, plaintext_logits

log = logging.getLogger(__name__)


def operation_count(net: SquareConvNet) -> dict:
    """Ciphertext operations of one batch: plaintext-scalar products and ciphertext squares."""
    g = net.geometry
    conv_out = net.channels * g.windows
    return {"scalar_products": conv_out * g.kernel ** 2 + conv_out * net.hidden + net.hidden * net.num_classes,
            "squares": conv_out + net.hidden, "rotations": 0}


class BatchedHeClient:
    """The data owner: one CKKS ciphertext per pixel, images along the slots."""

    def __init__(self, geometry: ConvGeometry, *, params: CkksParams = CkksParams(),
                 n_threads: Optional[int] = None) -> None:
        ts = _tenseal()
        self.geometry, self.params = geometry, params
        t0 = time.perf_counter()
        kw = {} if n_threads is None else {"n_threads": n_threads}
        self.context = ts.context(ts.SCHEME_TYPE.CKKS, params.poly_modulus_degree,
                                  coeff_mod_bit_sizes=list(params.coeff_mod_bit_sizes), **kw)
        self.context.global_scale = 2.0 ** params.scale_bits
        self.keygen_seconds = time.perf_counter() - t0

    def public_context(self) -> bytes:
        """The one-time upload: public and relinearization keys (no rotations, so no Galois keys)."""
        return self.context.serialize(save_public_key=True, save_secret_key=False,
                                      save_galois_keys=False, save_relin_keys=True)

    def encrypt(self, images: np.ndarray) -> list[bytes]:
        """``(B, 1, H, W)`` (or ``(B, H, W)``) grey images, uint8 or [0, 1], B <= slots: one ciphertext a pixel."""
        ts = _tenseal()
        a = np.asarray(images)
        s = self.geometry.image_size
        a = a.reshape(len(a), -1)
        if a.shape[1] != s * s or not 1 <= len(a) <= self.params.slots:
            raise ValueError(f"images: expected 1..{self.params.slots} images of {s}x{s}, got shape "
                             f"{np.asarray(images).shape}")
        a = a.astype(np.float64) / 255.0 if a.dtype == np.uint8 else a.astype(np.float64)
        return [ts.ckks_vector(self.context, a[:, i].tolist()).serialize() for i in range(a.shape[1])]

    def decrypt(self, payloads: list[bytes], *, n: int) -> np.ndarray:
        """The class scores ``(n, classes)`` of the first ``n`` images of the batch."""
        ts = _tenseal()
        return np.stack([np.asarray(ts.ckks_vector_from(self.context, p).decrypt()[:n]) for p in payloads], 1)


class BatchedHeServer:
    """The cloud: public context and plaintext weights; evaluates a whole batch at once."""

    STAGES = ("load", "conv", "square1", "fc1", "square2", "fc2", "serialize")

    def __init__(self, net: SquareConvNet, public_context: bytes) -> None:
        self.context, sd = server_state(net, public_context)
        self.geometry = net.geometry
        self.conv_w, self.conv_b = sd["conv.weight"][:, 0], sd["conv.bias"]
        self.w1, self.b1, self.w2, self.b2 = sd["fc1.weight"], sd["fc1.bias"], sd["fc2.weight"], sd["fc2.bias"]
        #: cumulative seconds per stage over all calls of :meth:`infer`
        self.stage_seconds = dict.fromkeys(self.STAGES, 0.0)

    @staticmethod
    def _weighted_sum(cts: list, weights: np.ndarray, bias: float):
        acc = None
        for ct, w in zip(cts, weights):
            term = ct * float(w)
            acc = term if acc is None else acc.add_(term)
        return acc.add_(float(bias))

    def infer(self, payloads: list[bytes]) -> list[bytes]:
        """Evaluate the network on one batch (a ciphertext a pixel); return a ciphertext a class, serialized."""
        ts = _tenseal()
        g = self.geometry
        marks = [time.perf_counter()]
        x = [ts.ckks_vector_from(self.context, p) for p in payloads]
        marks.append(time.perf_counter())
        h = []  # channel-major, like torch's flatten of (C, H', W')
        for c in range(len(self.conv_b)):
            for oy in range(g.out_size):
                for ox in range(g.out_size):
                    taps = [x[(oy * g.stride + ky) * g.image_size + ox * g.stride + kx]
                            for ky in range(g.kernel) for kx in range(g.kernel)]
                    h.append(self._weighted_sum(taps, self.conv_w[c].reshape(-1), self.conv_b[c]))
        marks.append(time.perf_counter())
        for v in h:
            v.square_()
        marks.append(time.perf_counter())
        h = [self._weighted_sum(h, self.w1[j], self.b1[j]) for j in range(len(self.b1))]
        marks.append(time.perf_counter())
        for v in h:
            v.square_()
        marks.append(time.perf_counter())
        out = [self._weighted_sum(h, self.w2[k], self.b2[k]) for k in range(len(self.b2))]
        marks.append(time.perf_counter())
        payload = [v.serialize() for v in out]
        marks.append(time.perf_counter())
        for name, a, b in zip(self.STAGES, marks, marks[1:]):
            self.stage_seconds[name] += b - a
        return payload


def plaintext_seconds(net: SquareConvNet, images: np.ndarray, *, repeats: int = 3) -> float:
    """Seconds an image of the plaintext network on ``images`` (best of ``repeats``, one thread)."""
    best = float("inf")
    with owsd_threads.limit(1):
        for _ in range(repeats):
            t0 = time.perf_counter()
            plaintext_logits(net, images)
            best = min(best, time.perf_counter() - t0)
    return best / len(images)


def batched_round(net: SquareConvNet, images: np.ndarray, labels: np.ndarray, *, plain_seconds: float) -> dict:
    """One batch through the amortized scheme, measured: seconds, bytes, accuracy, overhead factor.

    ``plain_seconds``: the plaintext network's seconds an image (:func:`plaintext_seconds`).
    """
    client = BatchedHeClient(net.geometry)
    public = client.public_context()
    server = BatchedHeServer(net, public)
    n = len(images)
    t0 = time.perf_counter()
    up = client.encrypt(images)
    t1 = time.perf_counter()
    down = server.infer(up)
    t2 = time.perf_counter()
    scores = client.decrypt(down, n=n)
    t3 = time.perf_counter()
    total = t3 - t0
    plain = plaintext_logits(net, images)
    return {
        "images": n, "slots": client.params.slots, "operations": operation_count(net),
        "seconds": {"encrypt": t1 - t0, "server": t2 - t1, "decrypt": t3 - t2, "total": total,
                    "server_stages": dict(server.stage_seconds), "keygen": client.keygen_seconds},
        "latency_seconds_per_image": total, "amortized_seconds_per_image": total / n,
        "amortized_images_per_s": n / total, "plaintext_seconds_per_image": plain_seconds,
        "overhead_vs_plaintext": (total / n) / plain_seconds,
        "bytes": {"client_to_server_per_image": sum(map(len, up)) / n,
                  "server_to_client_per_image": sum(map(len, down)) / n,
                  "client_to_server_per_batch": sum(map(len, up)), "server_to_client_per_batch": sum(map(len, down)),
                  "keys_one_time": len(public),
                  "definition": "serialized CKKS ciphertexts (one a pixel up, one a class down) over the batch's "
                                "images; keys: public and relinearization keys (no Galois keys: no rotations)"},
        "accuracy": accuracy(scores.argmax(1), labels),
        "argmax_agreement_with_plaintext": float((scores.argmax(1) == plain.argmax(1)).mean()),
        "max_abs_error_vs_plaintext": float(np.abs(scores - plain).max()),
    }
