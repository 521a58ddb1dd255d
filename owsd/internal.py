"""The organization's internal model: from the cloud's output vector to the true label.

Features are the log of the cloud's probabilities (the softmax squashes the information
into the few top classes; the log restores the logits up to a per-image shift), optionally
concatenated with the embedding (as the authors' patent describes).  The classifier is an
MLP (default) or a logistic regression, trained on standardized features.  The same class,
fed raw pixels, is the "plaintext model of the same capacity" baseline.

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

from owsd.validation import as_matrix

log = logging.getLogger(__name__)

PROB_FLOOR = 1e-12


def output_features(probs: np.ndarray) -> np.ndarray:
    """Log-probabilities, floored at ``PROB_FLOOR`` (zeros from top-k truncation land there)."""
    p = as_matrix(probs, name="cloud outputs")
    return np.log(np.maximum(p, PROB_FLOOR)).astype(np.float32)


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


class InternalModel:
    """The internal model: cloud outputs (optionally plus the embedding) to labels."""

    def __init__(self, *, use_embedding: bool = False, **classifier_kwargs) -> None:
        self.use_embedding = use_embedding
        self.classifier = Classifier(**classifier_kwargs)

    def features(self, probs: np.ndarray, embeddings: Optional[np.ndarray] = None) -> np.ndarray:
        f = output_features(probs)
        if self.use_embedding:
            if embeddings is None:
                raise ValueError("this internal model uses the embedding: pass embeddings")
            e = as_matrix(embeddings, name="embeddings")
            if len(e) != len(f):
                raise ValueError(f"{len(f)} cloud outputs but {len(e)} embeddings")
            f = np.concatenate([f, e], axis=1)
        return f

    def fit(self, probs, labels, embeddings=None) -> "InternalModel":
        self.classifier.fit(self.features(probs, embeddings), labels)
        return self

    def predict(self, probs, embeddings=None) -> np.ndarray:
        return self.classifier.predict(self.features(probs, embeddings))

    def score(self, probs, labels, embeddings=None) -> float:
        return self.classifier.score(self.features(probs, embeddings), labels)
