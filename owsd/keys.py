"""Secret keys: a 256-bit secret that determines the scrambler's deconvolution weights.

The secret is drawn with :mod:`secrets` by default.  Experiments may derive it from a seed
(:func:`generate_key` with ``seed=...``), which emits a :class:`SeededKeyWarning`: such keys
are reproducible, hence not secret.  Weights are expanded from the secret with SHAKE-256
(an extendable-output hash), so every bit of the secret matters and no general-purpose
PRNG state bounds the key space.

A key file is JSON (never pickle): the spec, the secret in hex, the ``seeded`` flag, a
fingerprint and (format version 2) a MAC.  The fingerprint is a one-way hash of the secret
and spec that identifies the key in logs and reports; the MAC, an HMAC-SHA256 under the
secret over every other field, makes any edit of the file (a flipped ``seeded`` flag, say)
fail on load.  It detects corruption and edits made without recomputing it; it cannot stop
someone who reads the secret from the file, who holds the key anyway.  Version-1 files (no
MAC; their ``seeded`` flag is unprotected) still load, with a note.  Key files are read with
a size and nesting limit.  The secret never leaves the key file; ``repr(key)`` shows only
the fingerprint.

Example:
    >>> from owsd.presets import get_preset
    >>> import warnings
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")
    ...     key = generate_key(get_preset("linear"), seed=0)
    >>> len(key.fingerprint), [tuple(w.shape) for w in key.weights()][:1]
    (16, [(16, 3, 112, 112)])
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import secrets
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from owsd.io import atomic_write_text
from owsd.safejson import loads, read_text
from owsd.spec import ScramblerSpec, SpecError

log = logging.getLogger(__name__)

KEY_FORMAT = "owsd-key"
KEY_VERSION = 2
SECRET_BYTES = 32
MAX_KEY_BYTES = 1 << 20
_V1_FIELDS = {"format", "version", "spec", "secret", "seeded", "fingerprint"}
_V2_FIELDS = _V1_FIELDS | {"mac"}


class KeyFileError(ValueError):
    """A key file is unreadable, corrupt or malformed."""


class KeySpecMismatchError(ValueError):
    """A key's spec is not the one the caller expects."""


class SeededKeyWarning(UserWarning):
    """A key was derived from a seed: reproducible, therefore not secret."""


#: contrast (pixel std) of the ``texture`` carrier around mid-grey
TEXTURE_STD = 0.15


def _gaussians(stream_key: bytes, n: int) -> np.ndarray:
    """``n`` standard normal float64 values from SHAKE-256(stream_key) (Box-Muller)."""
    m = (n + 1) // 2
    raw = np.frombuffer(hashlib.shake_256(stream_key).digest(16 * m), dtype="<u8").reshape(m, 2)
    u = ((raw >> np.uint64(11)).astype(np.float64) + 0.5) * 2.0 ** -53  # in (0, 1)
    r = np.sqrt(-2.0 * np.log(u[:, 0]))
    theta = 2.0 * np.pi * u[:, 1]
    return np.stack([r * np.cos(theta), r * np.sin(theta)], axis=1).reshape(-1)[:n]


@dataclass(frozen=True, repr=False)
class Key:
    """A scrambler key: public spec + 256-bit secret.  Treat instances as secrets."""

    spec: ScramblerSpec
    secret: bytes
    seeded: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.secret, bytes) or len(self.secret) != SECRET_BYTES:
            raise ValueError(f"secret must be {SECRET_BYTES} bytes")

    def __repr__(self) -> str:
        return f"Key(spec={self.spec.name!r}, fingerprint={self.fingerprint!r}, seeded={self.seeded})"

    __str__ = __repr__

    @property
    def fingerprint(self) -> str:
        """16 hex digits identifying the key (one-way; safe for logs and reports)."""
        h = hashlib.sha256(b"owsd-fingerprint-v1|" + self.secret + b"|" + self.spec.to_json().encode())
        return h.hexdigest()[:16]

    def _stream(self, label: str) -> bytes:
        return b"owsd-key-v1|" + self.secret + b"|" + label.encode()

    def weights(self, *, dtype: torch.dtype = torch.float32) -> list[torch.Tensor]:
        """The deconvolution weights ``(C_in, C_out, k, k)`` of every layer.

        Each is Gaussian with the variance-preserving scale of a transposed convolution
        (``fan = C_in * (k / stride)^2``), times the spec's ``weight_scale``.
        """
        out, cin = [], self.spec.input_shape[0]
        for i, lay in enumerate(self.spec.layers):
            shape = (cin, lay.out_channels, lay.kernel_size, lay.kernel_size)
            fan = cin * max(1.0, (lay.kernel_size / lay.stride) ** 2)
            g = _gaussians(self._stream(f"layer{i}/weight"), math.prod(shape)).reshape(shape)
            out.append(torch.from_numpy(g * self.spec.weight_scale / math.sqrt(fan)).to(dtype))
            cin = lay.out_channels
        return out

    def biases(self, *, dtype: torch.dtype = torch.float32) -> list[Optional[torch.Tensor]]:
        """Per-layer biases (``None`` where the layer has none), N(0, 0.1^2)."""
        return [torch.from_numpy(0.1 * _gaussians(self._stream(f"layer{i}/bias"), lay.out_channels)).to(dtype)
                if lay.bias else None for i, lay in enumerate(self.spec.layers)]

    def carrier(self, *, dtype: torch.dtype = torch.float32) -> Optional[torch.Tensor]:
        """The key-derived carrier image ``(3, H, W)`` in ``[0, 1]``, or ``None`` (``carrier="none"``).

        * ``"key"``: a smooth pattern, 3x8x8 Gaussian values bilinearly upsampled and squashed
          by a sigmoid into ``[0.25, 0.75]``;
        * ``"texture"``: a 1/f ("pink") noise texture, the amplitude spectrum of natural
          images: white Gaussian noise from the key, its Fourier amplitudes divided by the
          spatial frequency, scaled to std :data:`TEXTURE_STD` around 0.5 and clipped to
          ``[0, 1]``.  It keeps the cloud at a textured, natural-image-like operating point,
          where its response to the small scrambled signal is close to linear (see
          ``docs/utility-study.md``).
        """
        if self.spec.carrier == "none":
            return None
        c, h, w = self.spec.output_shape()
        if self.spec.carrier == "texture":
            white = _gaussians(self._stream("carrier/texture"), c * h * w).reshape(c, h, w)
            freq = np.sqrt(np.fft.fftfreq(h)[:, None] ** 2 + np.fft.rfftfreq(w)[None, :] ** 2)
            pink = np.fft.irfft2(np.fft.rfft2(white) / np.maximum(freq, 1.0 / max(h, w)), s=(h, w))
            img = np.clip(0.5 + TEXTURE_STD * pink / pink.std(), 0.0, 1.0)
            return torch.from_numpy(img).to(dtype)
        g = torch.from_numpy(_gaussians(self._stream("carrier"), c * 64).reshape(1, c, 8, 8))
        up = torch.nn.functional.interpolate(g, size=(h, w), mode="bilinear", align_corners=False)[0]
        return (0.25 + 0.5 * torch.sigmoid(up)).to(dtype)

    # --- storage ---------------------------------------------------------------------
    def to_json(self) -> str:
        doc = {"format": KEY_FORMAT, "version": KEY_VERSION, "spec": self.spec.to_dict(),
               "secret": self.secret.hex(), "seeded": self.seeded, "fingerprint": self.fingerprint}
        doc["mac"] = _mac(doc, self.secret)
        return json.dumps(doc, indent=2, sort_keys=True) + "\n"

    def save(self, path: str | Path) -> Path:
        """Write the key file atomically with owner-only permissions (0600)."""
        path = Path(path)
        atomic_write_text(path, self.to_json(), mode=0o600)
        log.info("wrote key %s to %s", self.fingerprint, path)
        return path

    @classmethod
    def from_json(cls, text: str, *, source: str = "<string>",
                  expected_spec: Optional[ScramblerSpec] = None) -> "Key":
        if len(text) > MAX_KEY_BYTES:
            raise KeyFileError(f"{source}: {len(text):,} characters, larger than any key file")
        try:
            doc = loads(text, source=source, error=KeyFileError)
        except KeyFileError as exc:
            raise KeyFileError(f"{source}: corrupt key file, {str(exc)[len(source) + 2:]}") from None
        if not isinstance(doc, dict) or doc.get("format") != KEY_FORMAT:
            raise KeyFileError(f"{source}: not an owsd key file (format field must be {KEY_FORMAT!r})")
        version = doc.get("version")
        if not isinstance(version, int) or isinstance(version, bool) or version not in (1, 2):
            raise KeyFileError(f"{source}: unsupported key file version {str(version)[:40]!r}")
        fields = _V2_FIELDS if version == 2 else _V1_FIELDS
        for field in sorted(fields - {"seeded"} if version == 1 else fields):
            if field not in doc:
                raise KeyFileError(f"{source}: key file lacks the {field!r} field")
        unknown = sorted(set(doc) - fields)
        if unknown:
            raise KeyFileError(f"{source}: unknown key file field(s) {str(unknown)[:80]}")
        seeded = doc.get("seeded", False)
        if not isinstance(seeded, bool):
            raise KeyFileError(f"{source}: the 'seeded' field must be true or false")
        try:
            secret = bytes.fromhex(doc["secret"]) if isinstance(doc["secret"], str) else b""
        except ValueError:
            secret = b""
        if len(secret) != SECRET_BYTES:
            raise KeyFileError(f"{source}: secret must be {2 * SECRET_BYTES} hex digits")
        try:
            spec = ScramblerSpec.from_dict(doc["spec"])
        except SpecError as exc:
            raise KeyFileError(f"{source}: invalid spec in key file: {exc}") from exc
        key = cls(spec=spec, secret=secret, seeded=seeded)
        if not isinstance(doc["fingerprint"], str) or not _same(doc["fingerprint"], key.fingerprint):
            raise KeyFileError(f"{source}: corrupt or tampered key file: the fingerprint does not match "
                               "the secret and spec it holds")
        if version == 2:
            body = {k: v for k, v in doc.items() if k != "mac"}
            if not isinstance(doc["mac"], str) or not _same(doc["mac"], _mac(body, secret)):
                raise KeyFileError(f"{source}: corrupt or tampered key file: the MAC does not match its "
                                   "fields (was the 'seeded' flag or another field edited?)")
        else:
            log.warning("note: %s is a version-1 key file: its 'seeded' flag (%s) is not covered by a MAC, so an "
                        "edit of it cannot be detected; re-save it to upgrade (owsd.keys.Key.load(p).save(p))",
                        source, "true" if seeded else "false")
        if expected_spec is not None and spec != expected_spec:
            raise KeySpecMismatchError(f"{source}: key is for spec {spec.name!r}, which differs from the "
                                       f"expected spec {expected_spec.name!r}")
        return key

    @classmethod
    def load(cls, path: str | Path, *, expected_spec: Optional[ScramblerSpec] = None) -> "Key":
        """Read and verify a key file; corrupt files and spec mismatches fail clearly."""
        path = Path(path)
        text = read_text(path, max_bytes=MAX_KEY_BYTES, what="key file", error=KeyFileError)
        return cls.from_json(text, source=str(path), expected_spec=expected_spec)


def _same(given: str, expected: str) -> bool:
    """Constant-time comparison of a field read from a file (any characters) with a hex digest."""
    return hmac.compare_digest(given.encode("utf-8", "surrogatepass"), expected.encode("ascii"))


def _mac(doc: dict, secret: bytes) -> str:
    """HMAC-SHA256 under the secret over the canonical JSON of ``doc`` (every field but ``mac``)."""
    body = json.dumps({k: v for k, v in doc.items() if k != "mac"}, sort_keys=True, separators=(",", ":"))
    return hmac.new(secret, b"owsd-key-mac-v2|" + body.encode(), hashlib.sha256).hexdigest()


def seed_secret(seed: int) -> bytes:
    """The (non-secret) 256-bit secret derived from an experiment seed."""
    return hashlib.sha256(f"owsd-seeded-key-v1|{int(seed)}".encode()).digest()


def generate_key(spec: ScramblerSpec, *, seed: Optional[int] = None) -> Key:
    """A new key for ``spec``: from :func:`secrets.token_bytes` unless ``seed`` is given.

    Seeded keys are for reproducible experiments only and raise :class:`SeededKeyWarning`.
    """
    if seed is None:
        return Key(spec=spec, secret=secrets.token_bytes(SECRET_BYTES))
    warnings.warn(f"key derived from seed {seed}: reproducible and NOT secret; use only for experiments",
                  SeededKeyWarning, stacklevel=2)
    return Key(spec=spec, secret=seed_secret(seed), seeded=True)
