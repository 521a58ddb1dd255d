"""Encoders: the organization's own map from an image to an embedding.

* :class:`PCAEncoder` (cheap): principal components, whitened;
* :class:`AutoEncoder`: an MLP autoencoder trained on the organization's training split.

Both produce embeddings with zero mean and unit variance per coordinate on the training
split (the scale the scrambler's weights are calibrated for), and save to / load from a
single ``.npz`` file (arrays and a JSON header; no pickle).

Example:
    >>> import numpy as np
    >>> x = np.random.default_rng(0).random((50, 64)).astype(np.float32)
    >>> enc = PCAEncoder(dim=8).fit(x)
    >>> enc.encode(x).shape
    (50, 8)
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn as nn
from tqdm.auto import tqdm

from owsd.encoder_check import check_arrays, read_header
from owsd.io import load_npz, save_npz
from owsd.validation import as_matrix

log = logging.getLogger(__name__)

ENCODER_FORMAT = "owsd-encoder"


class Encoder:
    """Base class: ``fit`` on flattened images in [0, 1], ``encode`` to embeddings."""

    kind: str = "base"
    dim: int
    input_dim: Optional[int] = None

    def fit(self, x) -> "Encoder":
        raise NotImplementedError

    def _encode_raw(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def encode(self, x) -> np.ndarray:
        """Embeddings ``(N, dim)`` float32 for flattened images ``(N, input_dim)`` in [0, 1]."""
        if self.input_dim is None:
            raise RuntimeError(f"{type(self).__name__} is not fitted")
        a = as_matrix(x, name="images", cols=self.input_dim)
        return ((self._encode_raw(a) - self.code_mean) / self.code_std).astype(np.float32)

    def _set_code_stats(self, codes: np.ndarray) -> None:
        """Per-coordinate mean and scale; dead coordinates (variance ~0) keep scale 1, not a blow-up."""
        self.code_mean = codes.mean(0).astype(np.float32)
        std = codes.std(0)
        self.code_std = np.where(std > 1e-4 * max(float(std.max()), 1e-12), std, 1.0).astype(np.float32)

    # --- storage ---------------------------------------------------------------------
    def _arrays(self) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def _header(self) -> dict:
        return {"format": ENCODER_FORMAT, "kind": self.kind, "dim": self.dim, "input_dim": self.input_dim}

    def digest(self) -> str:
        """Content hash of the fitted encoder (for cache keys)."""
        h = hashlib.sha256(json.dumps(self._header(), sort_keys=True).encode())
        for k, v in sorted(self._arrays().items()):
            h.update(k.encode())
            h.update(np.ascontiguousarray(v).tobytes())
        return h.hexdigest()[:16]

    def save(self, path: str | Path) -> None:
        header = np.frombuffer(json.dumps(self._header()).encode(), dtype=np.uint8)
        save_npz(Path(path), header=header, code_mean=self.code_mean, code_std=self.code_std, **self._arrays())

    @staticmethod
    def load(path: str | Path) -> "Encoder":
        """Load any saved encoder; unreadable, foreign or inconsistent files fail with one ``ValueError``."""
        z = load_npz(Path(path))
        header = read_header(z, source=str(path), format_=ENCODER_FORMAT)
        cls = {"pca": PCAEncoder, "autoencoder": AutoEncoder}[header["kind"]]
        shapes = _AE.parameter_shapes(header["input_dim"], header["dim"], tuple(header["hidden"])) \
            if header["kind"] == "autoencoder" else None
        check_arrays(header, z, source=str(path), parameter_shapes=shapes)
        try:
            enc = cls._from_arrays(header, z)
        except (RuntimeError, KeyError, TypeError) as exc:  # a state dict that does not fit the network
            raise ValueError(f"{path}: encoder arrays do not fit the network ({str(exc)[:200]})") from None
        enc.code_mean, enc.code_std = z["code_mean"].astype(np.float32), z["code_std"].astype(np.float32)
        return enc


class PCAEncoder(Encoder):
    """Whitened principal components (the cheap option)."""

    kind = "pca"

    def __init__(self, dim: int = 64) -> None:
        if dim < 1:
            raise ValueError(f"dim must be positive, got {dim}")
        self.dim = dim

    def fit(self, x) -> "PCAEncoder":
        a = as_matrix(x, name="images").astype(np.float64)
        if a.shape[0] < 2 or min(a.shape) < self.dim:
            raise ValueError(f"PCA to {self.dim} dims needs at least {self.dim} samples and features, got {a.shape}")
        self.input_dim = a.shape[1]
        self.mean = a.mean(0)
        _, _, vt = np.linalg.svd(a - self.mean, full_matrices=False)
        self.components = vt[: self.dim].astype(np.float32)
        self.mean = self.mean.astype(np.float32)
        self._set_code_stats(self._encode_raw(a.astype(np.float32)))
        return self

    def _encode_raw(self, x: np.ndarray) -> np.ndarray:
        return (x - self.mean) @ self.components.T

    def decode(self, emb: np.ndarray) -> np.ndarray:
        """Approximate images (flattened) from embeddings."""
        return (emb * self.code_std + self.code_mean) @ self.components + self.mean

    def _arrays(self) -> dict[str, np.ndarray]:
        return {"mean": self.mean, "components": self.components}

    @classmethod
    def _from_arrays(cls, header: dict, z: dict) -> "PCAEncoder":
        enc = cls(int(header["dim"]))
        enc.input_dim, enc.mean, enc.components = int(header["input_dim"]), z["mean"], z["components"]
        return enc


class _AE(nn.Module):
    def __init__(self, input_dim: int, dim: int, hidden: tuple[int, ...]) -> None:
        super().__init__()
        enc, d = [], input_dim
        for h in hidden:
            enc += [nn.Linear(d, h), nn.ReLU()]
            d = h
        enc.append(nn.Linear(d, dim))
        dec, d = [], dim
        for h in reversed(hidden):
            dec += [nn.Linear(d, h), nn.ReLU()]
            d = h
        dec += [nn.Linear(d, input_dim), nn.Sigmoid()]
        self.encoder, self.decoder = nn.Sequential(*enc), nn.Sequential(*dec)

    @staticmethod
    def parameter_shapes(input_dim: int, dim: int, hidden: tuple[int, ...]) -> dict[str, tuple]:
        """``{state-dict name: shape}`` of the network (built on the ``meta`` device: nothing allocated)."""
        with torch.device("meta"):
            net = _AE(input_dim, dim, hidden)
        return {k: tuple(v.shape) for k, v in net.state_dict().items()}


class AutoEncoder(Encoder):
    """MLP autoencoder trained with MSE on the organization's training split."""

    kind = "autoencoder"

    def __init__(self, dim: int = 64, *, hidden: tuple[int, ...] = (512, 256), epochs: int = 20,
                 batch_size: int = 256, lr: float = 1e-3, seed: int = 0, device: str = "cpu",
                 verbose: bool = True) -> None:
        self.dim, self.hidden, self.epochs = dim, tuple(hidden), epochs
        self.batch_size, self.lr, self.seed, self.device, self.verbose = batch_size, lr, seed, device, verbose

    def fit(self, x) -> "AutoEncoder":
        a = torch.from_numpy(as_matrix(x, name="images"))
        self.input_dim = a.shape[1]
        g = torch.Generator().manual_seed(self.seed)
        torch.manual_seed(self.seed)
        self.net = _AE(self.input_dim, self.dim, self.hidden).to(self.device)
        opt = torch.optim.Adam(self.net.parameters(), lr=self.lr)
        bar = tqdm(range(self.epochs), desc="autoencoder", disable=not self.verbose, unit="epoch")
        for _ in bar:
            perm = torch.randperm(a.shape[0], generator=g)
            total = 0.0
            for s in range(0, a.shape[0], self.batch_size):
                xb = a[perm[s:s + self.batch_size]].to(self.device)
                loss = nn.functional.mse_loss(self.net.decoder(self.net.encoder(xb)), xb)
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += float(loss) * xb.shape[0]
            bar.set_postfix(mse=total / a.shape[0])
        self.net.eval()
        self._set_code_stats(self._encode_raw(a.numpy()))
        return self

    def _encode_raw(self, x: np.ndarray) -> np.ndarray:
        out = []
        with torch.no_grad():
            for s in range(0, x.shape[0], 4096):
                out.append(self.net.encoder(torch.from_numpy(x[s:s + 4096]).to(self.device)).cpu().numpy())
        return np.concatenate(out)

    def decode(self, emb: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            z = torch.from_numpy((emb * self.code_std + self.code_mean).astype(np.float32)).to(self.device)
            return self.net.decoder(z).cpu().numpy()

    def _header(self) -> dict:
        return {**super()._header(), "hidden": list(self.hidden)}

    def _arrays(self) -> dict[str, np.ndarray]:
        return {f"param.{k}": v.detach().cpu().numpy() for k, v in self.net.state_dict().items()}

    @classmethod
    def _from_arrays(cls, header: dict, z: dict) -> "AutoEncoder":
        enc = cls(int(header["dim"]), hidden=tuple(header["hidden"]), verbose=False)
        enc.input_dim = int(header["input_dim"])
        enc.net = _AE(enc.input_dim, enc.dim, enc.hidden)
        state = {k[len("param."):]: torch.from_numpy(v) for k, v in z.items() if k.startswith("param.")}
        enc.net.load_state_dict(state)
        enc.net.eval()
        return enc


def make_encoder(kind: str, dim: int, **kwargs) -> Encoder:
    """``pca`` or ``autoencoder``."""
    if kind == "pca":
        return PCAEncoder(dim)
    if kind == "autoencoder":
        return AutoEncoder(dim, **kwargs)
    raise ValueError(f"unknown encoder {kind!r}; expected 'pca' or 'autoencoder'")
