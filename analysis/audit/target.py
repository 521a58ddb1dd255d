"""What is audited: an OWSD key, a spec or preset with a fresh key, or any callable scrambler.

Example:
    >>> import warnings
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")
    ...     t = AuditTarget.coerce("linear", seed=0)
    >>> t.kind, t.name, t.describe()["linear"]
    ('owsd', 'linear', True)
"""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from analysis.audit.errors import AuditError
from attacks.victim import Victim
from owsd.channel import CallableChannel, Channel, OwsdChannel
from owsd.encoder import make_encoder
from owsd.keys import Key, generate_key
from owsd.presets import PRESETS, get_preset
from owsd.spec import ScramblerSpec


@dataclass
class AuditTarget:
    """The kernel under audit: an OWSD key, or any callable scrambler.

    Build it with :meth:`from_key_file`, :meth:`from_spec`, :meth:`from_preset`,
    :meth:`from_key` or :meth:`from_callable`.  Only the public description
    (:meth:`describe`: spec, fingerprint) is ever written by the audit.
    """

    kind: str
    name: str
    key_source: str
    key: Any = field(default=None, repr=False)
    scrambler: Optional[Callable] = field(default=None, repr=False)

    # -- constructors --
    @classmethod
    def from_key(cls, key: Key, *, source: str = "key object") -> "AuditTarget":
        return cls(kind="owsd", name=key.spec.name, key_source=source, key=key)

    @classmethod
    def from_key_file(cls, path: str | Path) -> "AuditTarget":
        path = Path(path)
        if not path.is_file():
            raise AuditError(f"key file {path} does not exist (make one with `owsd keygen`)")
        return cls.from_key(Key.load(path), source=f"key file {path.name}")

    @classmethod
    def from_spec(cls, spec: ScramblerSpec | str | Path, *, seed: Optional[int] = None) -> "AuditTarget":
        """A spec (or a spec JSON file) with a fresh key (seeded if ``seed``; never saved)."""
        where = "spec"
        if isinstance(spec, (str, Path)):
            where = f"spec file {Path(spec).name}"
            if not Path(spec).is_file():
                raise AuditError(f"spec file {spec} does not exist")
            spec = ScramblerSpec.load(spec)
        elif not isinstance(spec, ScramblerSpec):
            raise AuditError(f"expected a ScramblerSpec or a spec file, got {type(spec).__name__}")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            key = generate_key(spec, seed=seed)
        src = f"{where}, key derived from seed {seed} (not secret)" if seed is not None else \
            f"{where}, fresh random key (not saved)"
        return cls.from_key(key, source=src)

    @classmethod
    def from_preset(cls, name: str, *, seed: Optional[int] = None) -> "AuditTarget":
        t = cls.from_spec(get_preset(name), seed=seed)
        t.key_source = t.key_source.replace("spec", f"preset {name}", 1)
        return t

    @classmethod
    def from_callable(cls, fn: Callable, *, name: str) -> "AuditTarget":
        """Any scrambler: float images ``(N, C, H, W)`` in [0, 1] -> images in [0, 1]."""
        if not callable(fn):
            raise AuditError(f"scrambler must be callable, got {type(fn).__name__}")
        if not isinstance(name, str) or not name.strip():
            raise AuditError("a callable scrambler needs a non-empty name")
        return cls(kind="callable", name=name, key_source="callable", scrambler=fn)

    @classmethod
    def coerce(cls, obj: Any, *, seed: Optional[int] = None, name: Optional[str] = None) -> "AuditTarget":
        """An :class:`AuditTarget` from a Key, ScramblerSpec, preset name, key/spec file or callable."""
        if isinstance(obj, AuditTarget):
            return obj
        if isinstance(obj, Key):
            return cls.from_key(obj)
        if isinstance(obj, ScramblerSpec):
            return cls.from_spec(obj, seed=seed)
        if isinstance(obj, str) and obj in PRESETS:
            return cls.from_preset(obj, seed=seed)
        if isinstance(obj, (str, Path)):
            p = Path(obj)
            if not p.is_file():
                raise AuditError(f"{obj!r} is neither a preset ({sorted(PRESETS)}) nor an existing file")
            try:
                doc = json.loads(p.read_text())
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise AuditError(f"{p}: not a key or spec file (not valid JSON: {exc})") from None
            if isinstance(doc, dict) and doc.get("format") == "owsd-key":
                return cls.from_key_file(p)
            return cls.from_spec(p, seed=seed)
        if callable(obj):
            return cls.from_callable(obj, name=name or getattr(obj, "__name__", "scrambler"))
        raise AuditError(f"cannot audit a {type(obj).__name__}: pass a Key, spec, preset name, file or callable")

    # -- public description --
    @property
    def spec(self) -> Optional[ScramblerSpec]:
        return self.key.spec if self.key is not None else None

    @property
    def fingerprint(self) -> str:
        if self.key is not None:
            return self.key.fingerprint
        return hashlib.sha256(f"callable|{self.name}".encode()).hexdigest()[:16]

    def describe(self) -> dict:
        """What the report says about the target (no secret)."""
        return {"kind": self.kind, "name": self.name, "fingerprint": self.fingerprint,
                "key_source": self.key_source, "seeded": bool(getattr(self.key, "seeded", False)),
                "spec": self.spec.to_dict() if self.spec is not None else None,
                "secret_weights": self.spec.num_parameters() if self.spec is not None else None,
                "linear": bool(self.spec.is_linear()) if self.spec is not None else None}

    # -- deployment --
    def channel(self, fit_images: Optional[np.ndarray] = None, *, device: str = "cpu") -> Channel:
        """The channel of this target; OWSD targets fit their encoder on ``fit_images``."""
        if self.kind == "callable":
            return CallableChannel(self.scrambler, name=self.name)
        enc = make_encoder("pca", self.spec.embedding_dim).fit(fit_images)
        return OwsdChannel(self.key, enc, device=device)

    def build_victim(self, *, dataset: str | Path, data_dir: Optional[str | Path] = None, cloud: Any = None,
                     device: str = "cpu", image_size: Optional[int] = None, **sizes: int) -> Victim:
        """The victim deployment of this target on ``dataset`` (``sizes``: :meth:`Victim.build`'s)."""
        kw = dict(dataset=dataset, data_dir=data_dir, cloud=cloud, device=device, image_size=image_size, **sizes)
        if self.kind == "callable":
            return Victim.build(channel=CallableChannel(self.scrambler, name=self.name), **kw)
        return Victim.build(key=self.key, **kw)
