"""Encrypted inference of :class:`~owsd_bench.network.SquareConvNet` on CKKS ciphertexts (TenSEAL).

* the client (:class:`HeClient`) holds the CKKS secret key; it encodes one image in the
  *im2col* layout (one slot per pixel of every convolution window, the windows of each
  kernel position contiguous), encrypts it into one ciphertext and serializes it;
* the server (:class:`HeServer`) holds only the public context (public, relinearization
  and Galois keys) and the plaintext weights.  Each output channel of the convolution is a
  weighted sum of the ciphertext's kernel-position blocks (``conv2d_im2col``); the channels
  are packed into one vector, squared, multiplied by the first weight matrix (rotations),
  squared, and multiplied by the output matrix; the result is serialized back;
* the client decrypts the 10 scores.

Every byte count is the length of an actual serialized object: the ciphertext sent
(client to server), the ciphertext returned (server to client), and the public context
uploaded once (:meth:`HeClient.public_context`).

The CKKS parameters (:class:`CkksParams`) are those of the tutorial: ring degree 8192, a
218-bit coefficient modulus (31 + 6 x 26 + 31), scale 2^26: six multiplicative levels, the
five this network consumes and one spare, at the 128-bit security level of the
HomomorphicEncryption.org standard (whose bound for degree 8192 is 218 bits).  TenSEAL
comes with the ``[he]`` extra (``pip install 'owsd-toolkit[he]'``).

Example:
    >>> import numpy as np, torch
    >>> from owsd_bench.network import SquareConvNet
    >>> net = SquareConvNet(image_size=8).eval()
    >>> client = HeClient(net.geometry)
    >>> server = HeServer(net, client.public_context())
    >>> img = np.random.default_rng(0).random((8, 8))
    >>> out = client.decrypt(server.infer(client.encrypt(img)))
    >>> ref = net(torch.tensor(img, dtype=torch.float32)[None, None]).detach().numpy()[0]
    >>> bool(np.abs(out - ref).max() < 5e-2)  # CKKS is approximate: about 1e-2 here
    True
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from typing import Any, Optional

import numpy as np

from owsd_bench.network import ConvGeometry, SquareConvNet

log = logging.getLogger(__name__)

#: Largest coefficient modulus (bits) for 128-bit classical security, by ring degree
#: (HomomorphicEncryption.org security standard, as enforced by Microsoft SEAL).
HE_STANDARD_128 = {1024: 27, 2048: 54, 4096: 109, 8192: 218, 16384: 438, 32768: 881}


def _tenseal():
    """Import TenSEAL (the optional ``[he]`` extra), with an error that says how to get it."""
    try:
        import tenseal as ts
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("the HE baseline needs TenSEAL: pip install 'owsd-toolkit[he]' "
                          "(tenseal==0.3.18)") from exc
    return ts


@dataclass(frozen=True)
class CkksParams:
    """CKKS encryption parameters (TenSEAL's encrypted-MNIST tutorial values by default)."""

    poly_modulus_degree: int = 8192
    coeff_mod_bit_sizes: tuple[int, ...] = (31, 26, 26, 26, 26, 26, 26, 31)
    scale_bits: int = 26

    @property
    def slots(self) -> int:
        return self.poly_modulus_degree // 2

    @property
    def levels(self) -> int:
        """Multiplicative depth available (the middle primes)."""
        return len(self.coeff_mod_bit_sizes) - 2

    def security_bits(self) -> Optional[int]:
        """128 when the modulus is within the HE standard's 128-bit bound, else ``None``."""
        bound = HE_STANDARD_128.get(self.poly_modulus_degree)
        return 128 if bound is not None and sum(self.coeff_mod_bit_sizes) <= bound else None

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(coeff_mod_bit_sizes=list(self.coeff_mod_bit_sizes), slots=self.slots,
                 total_modulus_bits=sum(self.coeff_mod_bit_sizes), levels=self.levels,
                 security_bits=self.security_bits(),
                 security_note="HomomorphicEncryption.org standard, classical, ternary secret")
        return d


class HeClient:
    """The data owner: holds the CKKS secret key, encrypts images, decrypts scores."""

    def __init__(self, geometry: ConvGeometry, *, params: CkksParams = CkksParams(),
                 n_threads: Optional[int] = None) -> None:
        ts = _tenseal()
        self.geometry, self.params = geometry, params
        needed = geometry.kernel ** 2 * geometry.windows
        if needed > params.slots:
            raise ValueError(f"im2col layout needs {needed} slots, ring degree {params.poly_modulus_degree} "
                             f"gives {params.slots}")
        t0 = time.perf_counter()
        kw = {} if n_threads is None else {"n_threads": n_threads}
        self.context = ts.context(ts.SCHEME_TYPE.CKKS, params.poly_modulus_degree,
                                  coeff_mod_bit_sizes=list(params.coeff_mod_bit_sizes), **kw)
        self.context.global_scale = 2.0 ** params.scale_bits
        self.context.generate_galois_keys()
        self.keygen_seconds = time.perf_counter() - t0

    def public_context(self) -> bytes:
        """The one-time upload: public, relinearization and Galois keys (no secret key)."""
        return self.context.serialize(save_public_key=True, save_secret_key=False,
                                      save_galois_keys=True, save_relin_keys=True)

    def encrypt(self, image: np.ndarray) -> bytes:
        """Encode one grey image (H, W) in [0, 1] (or uint8) in im2col layout, encrypt, serialize."""
        ts = _tenseal()
        a = np.asarray(image)
        a = a.reshape(a.shape[-2:])
        if a.shape != (self.geometry.image_size,) * 2:
            raise ValueError(f"image: expected {self.geometry.image_size}x{self.geometry.image_size}, got {a.shape}")
        a = a.astype(np.float64) / 255.0 if a.dtype == np.uint8 else a.astype(np.float64)
        g = self.geometry
        enc, windows = ts.im2col_encoding(self.context, a.tolist(), g.kernel, g.kernel, g.stride)
        if windows != g.windows:
            raise RuntimeError(f"im2col gave {windows} windows, expected {g.windows}")
        return enc.serialize()

    def decrypt(self, payload: bytes) -> np.ndarray:
        """Deserialize and decrypt the server's reply into the score vector."""
        ts = _tenseal()
        return np.asarray(ts.ckks_vector_from(self.context, payload).decrypt(), dtype=np.float64)


def server_state(net: SquareConvNet, public_context: bytes) -> tuple[Any, dict[str, np.ndarray]]:
    """What an HE server holds: the public context (refused if it carries the secret key) and
    the network's plaintext weights as float64 arrays."""
    context = _tenseal().context_from(public_context)
    if context.is_private():
        raise ValueError("the server must not receive the secret key")
    return context, {k: v.detach().double().numpy() for k, v in net.state_dict().items()}


class HeServer:
    """The cloud: the public context and the plaintext weights; never sees a secret key."""

    STAGES = ("load", "conv", "square1", "fc1", "square2", "fc2", "serialize")

    def __init__(self, net: SquareConvNet, public_context: bytes) -> None:
        self.context, sd = server_state(net, public_context)
        self.geometry = net.geometry
        self.kernels = [sd["conv.weight"][c, 0].tolist() for c in range(net.channels)]
        self.conv_bias = [float(b) for b in sd["conv.bias"]]
        self.w1, self.b1 = sd["fc1.weight"].T.tolist(), sd["fc1.bias"].tolist()
        self.w2, self.b2 = sd["fc2.weight"].T.tolist(), sd["fc2.bias"].tolist()
        #: cumulative seconds per stage over all calls of :meth:`infer`
        self.stage_seconds = dict.fromkeys(self.STAGES, 0.0)

    def infer(self, payload: bytes) -> bytes:
        """Evaluate the network on one serialized im2col ciphertext; return the serialized scores."""
        ts = _tenseal()
        marks = [time.perf_counter()]
        x = ts.ckks_vector_from(self.context, payload)
        marks.append(time.perf_counter())
        chans = [x.conv2d_im2col(k, self.geometry.windows) + b for k, b in zip(self.kernels, self.conv_bias)]
        h = ts.CKKSVector.pack_vectors(chans)  # channel-major, like torch's flatten of (C, H', W')
        marks.append(time.perf_counter())
        h.square_()
        marks.append(time.perf_counter())
        h = h.mm(self.w1) + self.b1
        marks.append(time.perf_counter())
        h.square_()
        marks.append(time.perf_counter())
        h = h.mm(self.w2) + self.b2
        marks.append(time.perf_counter())
        out = h.serialize()
        marks.append(time.perf_counter())
        for name, a, b in zip(self.STAGES, marks, marks[1:]):
            self.stage_seconds[name] += b - a
        return out
