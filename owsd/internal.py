"""The organization's internal model: from the cloud's output vector to the true label.

Features are the log of the cloud's probabilities (the softmax squashes the information
into the few top classes; the log restores the logits up to a per-image shift).  Classes a
top-k answer leaves out are filled with the mass it does not account for, spread evenly
(:func:`output_features`).  By default (``decoder="embedding"``) the internal model centers
each image's log-probabilities (the cloud's logits up to a constant), decodes the embedding
from them with a cross-validated ridge regression fitted on the organization's own
training pairs (:class:`owsd.decoder.EmbeddingDecoder`), and classifies the decoding; with
``decoder="none"`` it classifies the 1,000 log-probabilities directly.  Either can be
concatenated with the embedding itself (as the authors' patent describes).  The classifier
is an MLP (default) or a logistic regression, trained on standardized features.  The same
:class:`Classifier`, fed raw pixels, is the "plaintext model of the same capacity" baseline.

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(200, 5)).astype(np.float32); y = (x[:, 0] > 0).astype(int)
    >>> m = Classifier(kind="logreg", epochs=100, lr=1e-2, verbose=False).fit(x, y)
    >>> float(m.score(x, y)) > 0.9
    True
"""

from __future__ import annotations

import logging
from typing import Optional

import numpy as np
import torch
import torch.nn as nn
from tqdm.auto import tqdm

from owsd.decoder import EmbeddingDecoder
from owsd.validation import as_matrix

log = logging.getLogger(__name__)

PROB_FLOOR = 1e-12


SUM_TOLERANCE = 1e-3
"""How far above 1 a row of cloud probabilities may sum (float32 rounding) before it is refused."""


def output_features(probs: np.ndarray) -> np.ndarray:
    """Log-probabilities; zeros (classes a top-k answer left out) are imputed first.

    A zero gets the probability mass the returned classes leave over, shared evenly among
    the zeros of its row, capped at the row's smallest returned probability; where that
    left-over mass is below float32 resolution (``K * eps``: a reply that leaves out only
    tiny probabilities) it gets the smallest returned probability; floored at ``PROB_FLOOR``.
    (Flooring the zeros alone gave a class never returned in the training replies a constant
    feature of -27.6, whose standardized value on a test reply that did return it was 10^5 or
    more; rarely returned classes gave outliers of up to sqrt(n / times returned).  Top-10
    internal models collapsed to one class.)  Rows must be probabilities: non-negative,
    summing to at most ``1 + SUM_TOLERANCE``.

    Example:
        >>> [round(float(v), 2) for v in np.exp(output_features(np.array([[0.6, 0.3, 0.0, 0.0]])))[0]]
        [0.6, 0.3, 0.05, 0.05]
    """
    p = as_matrix(probs, name="cloud outputs").astype(np.float64)
    if (p < 0).any():
        raise ValueError("cloud outputs: probabilities must be non-negative")
    total = p.sum(1, keepdims=True)
    if (total > 1.0 + SUM_TOLERANCE).any():
        raise ValueError(f"cloud outputs: rows must be probabilities summing to at most 1, "
                         f"a row sums to {float(total.max()):.6g}")
    missing = p <= 0
    if missing.any():
        n_missing = missing.sum(1, keepdims=True)
        left = np.clip(1.0 - total, 0.0, None)
        smallest = np.where(missing, np.inf, p).min(1, keepdims=True)
        share = np.minimum(left / np.maximum(n_missing, 1), smallest)
        unresolved = (left <= p.shape[1] * np.finfo(np.float32).eps) & np.isfinite(smallest)
        fill = np.where(unresolved, smallest, share)
        p = np.where(missing, np.clip(fill, PROB_FLOOR, None), p)
    return np.log(np.maximum(p, PROB_FLOOR)).astype(np.float32)


def centered_logits(probs: np.ndarray) -> np.ndarray:
    """:func:`output_features` minus each row's mean: the cloud's logits up to a constant.

    The per-image log-normalizer of the softmax is a nonlinear function of the whole output;
    removing it leaves a vector that is linear in the logits.

    Example:
        >>> abs(float(centered_logits(np.array([[0.5, 0.25, 0.25]])).sum())) < 1e-6
        True
    """
    f = output_features(probs).astype(np.float64)
    return (f - f.mean(1, keepdims=True)).astype(np.float32)


class Classifier:
    """Standardize, then an MLP (``kind="mlp"``) or logistic regression (``kind="logreg"``).

    Trained with Adam and cross-entropy on CPU or GPU with an explicit seed; the last 10%
    of the training set is held out to pick the best epoch.
    """

    def __init__(self, *, kind: str = "mlp", hidden: int = 256, epochs: int = 40, batch_size: int = 256,
                 lr: float = 1e-3, weight_decay: float = 1e-4, dropout: float = 0.2, seed: int = 0,
                 device: str = "cpu", threads: Optional[int] = 1, verbose: bool = True) -> None:
        if kind not in ("mlp", "logreg"):
            raise ValueError(f"kind must be 'mlp' or 'logreg', got {kind!r}")
        self.kind, self.hidden, self.epochs, self.batch_size = kind, hidden, epochs, batch_size
        self.lr, self.weight_decay, self.dropout, self.seed = lr, weight_decay, dropout, seed
        self.device, self.threads, self.verbose = device, threads, verbose

    def _net(self, d: int, k: int) -> nn.Module:
        if self.kind == "logreg":
            return nn.Linear(d, k)
        return nn.Sequential(nn.Linear(d, self.hidden), nn.ReLU(), nn.Dropout(self.dropout),
                             nn.Linear(self.hidden, self.hidden), nn.ReLU(), nn.Dropout(self.dropout),
                             nn.Linear(self.hidden, k))

    def fit(self, x, y) -> "Classifier":
        """Train on features ``x`` and integer labels ``y``.

        ``threads`` caps torch's CPU threads during training (restored after): these small
        matrices gain little from a second thread, and lose badly to oversubscription.
        """
        old = torch.get_num_threads()
        if self.threads:
            torch.set_num_threads(self.threads)
        try:
            return self._fit(x, y)
        finally:
            torch.set_num_threads(old)

    @staticmethod
    def validation_positions(n: int, seed: int) -> np.ndarray:
        """Training positions held out to pick the best epoch (10%; none below 20 examples)."""
        if n < 20:
            return np.array([], dtype=np.int64)
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).numpy()
        return perm[: max(1, n // 10)]

    def _fit(self, x, y) -> "Classifier":
        a = as_matrix(x, name="features")
        y = np.asarray(y)
        if y.shape != (a.shape[0],):
            raise ValueError(f"labels: expected shape ({a.shape[0]},), got {y.shape}")
        self.mean, self.std = a.mean(0), np.maximum(a.std(0), 1e-6)
        self.num_classes = int(y.max()) + 1
        g = torch.Generator().manual_seed(self.seed)
        torch.manual_seed(self.seed)
        xt = torch.from_numpy((a - self.mean) / self.std)
        yt = torch.from_numpy(y.astype(np.int64))
        perm = torch.randperm(len(yt), generator=g)
        n_val = len(self.validation_positions(len(yt), self.seed))
        val, tr = perm[:n_val], perm[n_val:]
        self.net = self._net(a.shape[1], self.num_classes).to(self.device)
        try:  # fused: the same update in one kernel (the per-parameter loop dominated small nets)
            opt = torch.optim.AdamW(self.net.parameters(), lr=self.lr, weight_decay=self.weight_decay, fused=True)
        except (RuntimeError, TypeError, ValueError):  # no fused AdamW for this device / build
            opt = torch.optim.AdamW(self.net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=self.epochs)
        # small training sets get smaller batches (at least ~16 steps an epoch)
        batch = min(self.batch_size, max(16, len(tr) // 16))
        best, best_state = -1.0, None
        bar = tqdm(range(self.epochs), desc=f"internal {self.kind}", disable=not self.verbose, unit="epoch")
        for _ in bar:
            self.net.train()
            order = tr[torch.randperm(len(tr), generator=g)]
            for s in range(0, len(order), batch):
                idx = order[s:s + batch]
                loss = nn.functional.cross_entropy(self.net(xt[idx].to(self.device)), yt[idx].to(self.device))
                opt.zero_grad()
                loss.backward()
                opt.step()
            sched.step()
            if n_val:
                acc = float((self._logits(xt[val]).argmax(1).cpu() == yt[val]).float().mean())
                bar.set_postfix(val_acc=acc)
                if acc >= best:
                    best = acc
                    best_state = {k: v.detach().clone() for k, v in self.net.state_dict().items()}
        if best_state is not None:
            self.net.load_state_dict(best_state)
        self.net.eval()
        return self

    def _logits(self, xt: torch.Tensor) -> torch.Tensor:
        self.net.eval()
        with torch.no_grad():
            return torch.cat([self.net(xt[s:s + 4096].to(self.device)) for s in range(0, len(xt), 4096)])

    def predict_proba(self, x) -> np.ndarray:
        a = as_matrix(x, name="features", cols=len(self.mean))
        return torch.softmax(self._logits(torch.from_numpy((a - self.mean) / self.std)), 1).cpu().numpy()

    def predict(self, x) -> np.ndarray:
        return self.predict_proba(x).argmax(1)

    def score(self, x, y) -> float:
        return float((self.predict(x) == np.asarray(y)).mean())


DECODERS = ("embedding", "none")
"""What sits between the cloud's outputs and the classifier: a ridge decoder back to the
embedding (``"embedding"``), or nothing (``"none"``: the classifier reads the log-probabilities)."""


class InternalModel:
    """The internal model: cloud outputs (optionally plus the embedding) to labels.

    With ``decoder="embedding"`` (default) :meth:`fit` needs the training embeddings even
    when ``use_embedding`` is False: the decoder learns from them to read the embedding
    back out of the cloud's outputs, and prediction then needs the cloud outputs alone.
    The classifier trains on out-of-fold decodings (as noisy as the test set's).

    Example:
        >>> rng = np.random.default_rng(0)
        >>> e = rng.normal(size=(400, 3)).astype(np.float32); y = (e[:, 0] > 0).astype(int)
        >>> probs = np.exp(e @ rng.normal(size=(3, 50))); probs /= probs.sum(1, keepdims=True)
        >>> m = InternalModel(kind="logreg", epochs=50, lr=1e-2, verbose=False).fit(probs, y, e)
        >>> m.score(probs, y) > 0.9
        True
    """

    def __init__(self, *, use_embedding: bool = False, decoder: str = "embedding", **classifier_kwargs) -> None:
        if decoder not in DECODERS:
            raise ValueError(f"decoder must be one of {DECODERS}, got {decoder!r}")
        self.use_embedding, self.decoder = use_embedding, decoder
        self.classifier = Classifier(**classifier_kwargs)

    def _with_embedding(self, f: np.ndarray, embeddings) -> np.ndarray:
        if not self.use_embedding:
            return f
        if embeddings is None:
            raise ValueError("this internal model uses the embedding: pass embeddings")
        e = as_matrix(embeddings, name="embeddings")
        if len(e) != len(f):
            raise ValueError(f"{len(f)} cloud outputs but {len(e)} embeddings")
        return np.concatenate([f, e], axis=1)

    def features(self, probs: np.ndarray, embeddings: Optional[np.ndarray] = None) -> np.ndarray:
        """What the classifier reads for new cloud outputs (decoded, if there is a decoder)."""
        if self.decoder == "embedding":
            if not hasattr(self, "embedding_decoder"):
                raise RuntimeError("InternalModel: call fit first (the decoder is fitted there)")
            f = self.embedding_decoder.transform(centered_logits(probs))
        else:
            f = output_features(probs)
        return self._with_embedding(f, embeddings)

    def fit(self, probs, labels, embeddings=None, *,
            decoder_from: Optional["InternalModel"] = None) -> "InternalModel":
        """Fit the decoder (if any) and the classifier.

        ``decoder_from``: a model already fitted on the same ``probs`` and ``embeddings`` whose
        decoder (a deterministic fit) is reused instead of fitted again.
        """
        if self.decoder == "embedding":
            if embeddings is None:
                raise ValueError("decoder='embedding' learns to read the embedding back from the cloud's "
                                 "outputs: pass the training embeddings (or use decoder='none')")
            shared = getattr(decoder_from, "train_decoded_", None)
            if shared is not None and len(shared) == len(probs) and decoder_from.decoder == "embedding":
                self.embedding_decoder, f = decoder_from.embedding_decoder, shared
            else:
                self.embedding_decoder = EmbeddingDecoder(seed=self.classifier.seed)
                f = self.embedding_decoder.fit_transform(centered_logits(probs), embeddings)
            self.train_decoded_ = f
            f = self._with_embedding(f, embeddings)
        else:
            f = self.features(probs, embeddings)
        self.classifier.fit(f, labels)
        return self

    def predict(self, probs, embeddings=None) -> np.ndarray:
        return self.classifier.predict(self.features(probs, embeddings))

    def score(self, probs, labels, embeddings=None) -> float:
        return self.classifier.score(self.features(probs, embeddings), labels)
