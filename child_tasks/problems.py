"""A task's data, network, loss and metric behind one small interface, so training is task-agnostic.

`make_problem(config, device)` loads the config's data once (the loaders cache it per process), moves
it to the device, and returns a `Problem`: ``build_model()``, ``loss(model, index, generator)`` for a
batch given by indices into the training split, and ``evaluate(model, split, metric)`` giving
(metric, mean loss) on a split. Accuracy is in percent and BLEU from sacrebleu (0-100, higher is better);
for translation and language models "accuracy" is next-token accuracy under teacher forcing. The
held-out panel's metrics are lower-is-better (`child_tasks.config.higher_is_better`): "mse" of a
regression (equal to its loss) and "perplexity" of a language model (exp of the mean loss per token).
"""

from __future__ import annotations

import math
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from child_tasks.config import (AddingData, Cifar10Data, DigitsData, LMData, Mnist1DData, NMTData,
                                OrderData, RegressionData, TabularData, TaskConfig)
from configuration.files import path_from_env
from child_tasks.models import (MLP, PAD, CausalTransformerLM, ConvNet, ConvNet1D, RecurrentNet,
                                TranslationTransformer, WideResNet)


class Problem(Protocol):
    n_train: int

    def build_model(self) -> nn.Module: ...

    def loss(self, model: nn.Module, index: torch.Tensor, generator: torch.Generator) -> torch.Tensor: ...

    def evaluate(self, model: nn.Module, split: str, metric: str) -> tuple[float, float]: ...


class ImageProblem:
    """Classification (images, signals, tables, the order problem's sequences): cross-entropy, accuracy;
    crop+flip when the data asks for augmentation."""

    def __init__(self, data: Any, config: TaskConfig, device: torch.device) -> None:
        self.data, self.config = data, config
        self.splits = {s: (getattr(data, f"x_{s}").to(device), getattr(data, f"y_{s}").to(device))
                       for s in ("train", "val", "test")}
        self.n_train = len(self.splits["train"][1])
        self.augment = bool(getattr(data, "augment", False))

    def build_model(self) -> nn.Module:
        m, shape, classes = self.config.model, self.data.input_shape, self.data.num_classes
        if m.name == "convnet":
            return ConvNet(shape, classes, width=m.width)
        if m.name == "cnn1d":
            return ConvNet1D(shape, classes, width=m.width)
        if m.name == "mlp":
            return MLP(shape, classes, hidden=m.hidden, layers=m.layers)
        if m.name == "rnn":
            return RecurrentNet(shape[-1], hidden=m.hidden, layers=m.layers, cell=m.cell, classes=classes)
        return WideResNet(m.depth, m.widen, self.data.num_classes, self.data.input_shape[0], m.dropout)

    def loss(self, model: nn.Module, index: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        x, y = self.splits["train"]
        index = index.to(x.device)
        batch = x[index]
        if self.augment:
            from child_tasks.datasets import augment_batch

            batch = augment_batch(batch, generator)
        return F.cross_entropy(model(batch), y[index])

    @torch.no_grad()
    def evaluate(self, model: nn.Module, split: str, metric: str) -> tuple[float, float]:
        x, y = self.splits[split]
        model.eval()
        correct, loss = 0, 0.0
        step = self.config.eval_batch_size
        for start in range(0, len(y), step):
            logits = model(x[start:start + step])
            loss += float(F.cross_entropy(logits, y[start:start + step], reduction="sum"))
            correct += int((logits.argmax(1) == y[start:start + step]).sum())
        model.train()
        n = max(1, len(y))
        return 100.0 * correct / n, loss / n


class RegressionProblem:
    """Regression of one value per example: mean-squared error, which is both the loss and the metric."""

    def __init__(self, data: Any, config: TaskConfig, device: torch.device) -> None:
        self.data, self.config = data, config
        self.splits = {s: (getattr(data, f"x_{s}").to(device), getattr(data, f"y_{s}").to(device))
                       for s in ("train", "val", "test")}
        self.n_train = len(self.splits["train"][1])

    def build_model(self) -> nn.Module:
        m, shape = self.config.model, self.data.input_shape
        if m.name == "rnn":
            return RecurrentNet(shape[-1], hidden=m.hidden, layers=m.layers, cell=m.cell)
        return _Squeezed(MLP(shape, 1, hidden=m.hidden, layers=m.layers))

    def loss(self, model: nn.Module, index: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        x, y = self.splits["train"]
        index = index.to(x.device)
        return F.mse_loss(model(x[index]), y[index])

    @torch.no_grad()
    def evaluate(self, model: nn.Module, split: str, metric: str) -> tuple[float, float]:
        x, y = self.splits[split]
        model.eval()
        total, step = 0.0, self.config.eval_batch_size
        for start in range(0, len(y), step):
            total += float(F.mse_loss(model(x[start:start + step]), y[start:start + step], reduction="sum"))
        model.train()
        mse = total / max(1, len(y))
        return mse, mse


class _Squeezed(nn.Module):
    """A network with one output unit, giving (N,) instead of (N, 1)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)


class LanguageModelProblem:
    """A causal language model over sentences: next-token cross-entropy (PAD ignored); perplexity is the
    exp of the mean loss per predicted token, "accuracy" the next-token accuracy."""

    def __init__(self, data: Any, config: TaskConfig, device: torch.device) -> None:
        self.data, self.config = data, config
        self.splits = {s: getattr(data, s).to(device) for s in ("train", "val", "test")}
        self.n_train = len(self.splits["train"])

    def build_model(self) -> nn.Module:
        m = self.config.model
        return CausalTransformerLM(len(self.data.vocab), d_model=m.d_model, heads=m.heads, layers=m.layers,
                                   ff=m.ff, dropout=m.dropout, max_len=self.data.max_len)

    @staticmethod
    def _logits(model: nn.Module, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and targets of the real (non-PAD) next tokens only: the softmax over the vocabulary is
        most of a step's cost, and padding is a third of a batch."""
        ids = TranslationProblem._trim(ids)
        target = ids[:, 1:]
        real = target != PAD
        return model(ids[:, :-1])[real], target[real]

    def loss(self, model: nn.Module, index: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        ids = self.splits["train"]
        return F.cross_entropy(*self._logits(model, ids[index.to(ids.device)]))

    @torch.no_grad()
    def evaluate(self, model: nn.Module, split: str, metric: str) -> tuple[float, float]:
        ids = self.splits[split]
        model.eval()
        total, correct, tokens, step = 0.0, 0, 0, self.config.eval_batch_size
        for start in range(0, len(ids), step):
            logits, target = self._logits(model, ids[start:start + step])
            total += float(F.cross_entropy(logits, target, reduction="sum"))
            correct, tokens = correct + int((logits.argmax(-1) == target).sum()), tokens + len(target)
        model.train()
        tokens = max(1, tokens)
        loss = total / tokens
        value = 100.0 * correct / tokens if metric == "accuracy" else math.exp(min(loss, 700.0))
        return value, loss


class TranslationProblem:
    """Translation: teacher-forced cross-entropy over target tokens; BLEU of greedy decodes."""

    def __init__(self, data: Any, config: TaskConfig, device: torch.device) -> None:
        self.data, self.config = data, config
        self.splits = {s: (getattr(data, f"src_{s}").to(device), getattr(data, f"tgt_{s}").to(device))
                       for s in ("train", "val", "test")}
        self.n_train = len(self.splits["train"][0])
        self.max_len = max(t.shape[1] for pair in self.splits.values() for t in pair)

    def build_model(self) -> nn.Module:
        m = self.config.model
        return TranslationTransformer(len(self.data.src_vocab.tokens), len(self.data.tgt_vocab.tokens),
                                      d_model=m.d_model, heads=m.heads, layers=m.layers, ff=m.ff,
                                      dropout=m.dropout, max_len=self.max_len + 1)

    @staticmethod
    def _trim(ids: torch.Tensor) -> torch.Tensor:
        # Batches are padded to the longest sentence of the corpus; compute only up to this batch's.
        length = int((ids != PAD).sum(1).max()) if ids.numel() else 1
        return ids[:, :max(1, length)]

    def _batch_loss(self, model: nn.Module, src: torch.Tensor, tgt: torch.Tensor,
                    reduction: str = "mean") -> tuple[torch.Tensor, torch.Tensor]:
        src, tgt = self._trim(src), self._trim(tgt)
        logits = model(src, tgt[:, :-1])
        target = tgt[:, 1:]
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=PAD,
                               reduction=reduction)
        correct = ((logits.argmax(-1) == target) & (target != PAD)).sum()
        return loss, correct

    def loss(self, model: nn.Module, index: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        src, tgt = self.splits["train"]
        index = index.to(src.device)
        return self._batch_loss(model, src[index], tgt[index])[0]

    @torch.no_grad()
    def evaluate(self, model: nn.Module, split: str, metric: str) -> tuple[float, float]:
        src, tgt = self.splits[split]
        model.eval()
        step = self.config.eval_batch_size
        total_loss, correct, tokens = 0.0, 0, int((tgt[:, 1:] != PAD).sum())
        for start in range(0, len(src), step):
            loss, hits = self._batch_loss(model, src[start:start + step], tgt[start:start + step], "sum")
            total_loss += float(loss)
            correct += int(hits)
        value = 100.0 * correct / max(1, tokens)
        if metric == "bleu":
            value = self.bleu(model, src, tgt)
        model.train()
        return value, total_loss / max(1, tokens)

    def bleu(self, model: nn.Module, src: torch.Tensor, tgt: torch.Tensor) -> float:
        from child_tasks.translation import bleu

        vocab = self.data.tgt_vocab
        limit = self.config.model.max_decode_len or tgt.shape[1]
        hypotheses: list[str] = []
        step = self.config.eval_batch_size
        for start in range(0, len(src), step):
            decoded = model.greedy_decode(self._trim(src[start:start + step]), max_len=limit)
            hypotheses += [" ".join(vocab.decode(row.tolist())) for row in decoded]
        references = [" ".join(vocab.decode(row[1:].tolist())) for row in tgt]  # row[0] is BOS
        return float(bleu(hypotheses, references))


def load_data(config: TaskConfig) -> Any:
    """The config's data: an ImageData (digits, mnist1d, cifar10), a TranslationData (nmt), an ArrayData
    (tabular, regression, adding, order) or a LanguageModelData (lm)."""
    d = config.data
    if isinstance(d, TabularData | RegressionData | AddingData | OrderData | LMData):
        return _load_generated(d)
    if isinstance(d, DigitsData):
        from child_tasks.datasets import load_image_task

        return load_image_task("digits", seed=d.split_seed, val_fraction=d.val_fraction,
                               test_fraction=d.test_fraction)
    if isinstance(d, Mnist1DData):
        from child_tasks.mnist1d import load_mnist1d

        return load_mnist1d(num_samples=d.num_samples, data_seed=d.data_seed, split_seed=d.split_seed,
                            val_fraction=d.val_fraction, test_fraction=d.test_fraction)
    if isinstance(d, Cifar10Data):
        from child_tasks.datasets import load_image_task

        # The loader reads the path (or the variable) and, when there is none, explains how to get it.
        return load_image_task("cifar10", path=d.path, variable=d.path_env, val_size=d.val_size,
                               seed=d.split_seed, augment=d.augment)
    return _load_translation(d)


def _load_generated(d: TabularData | RegressionData | AddingData | OrderData | LMData) -> Any:
    from child_tasks import generated  # the loaders cache their data per process

    options = d.model_dump(exclude={"kind"})
    if isinstance(d, TabularData):
        return generated.load_tabular(**options)
    if isinstance(d, RegressionData):
        return generated.load_regression(**options)
    if isinstance(d, AddingData):
        return generated.load_adding(**options)
    if isinstance(d, OrderData):
        return generated.load_order(**options)
    return generated.load_synthetic_lm(n_train=d.n_train, n_val=d.n_val, n_test=d.n_test, side=d.side,
                                       seed=d.split_seed, offset=d.offset)


def _load_translation(d: NMTData) -> Any:
    from child_tasks import translation  # the loaders cache their data per process

    if d.source == "synthetic":
        return translation.synthetic_translation(n_train=d.n_train, n_val=d.n_val, n_test=d.n_test,
                                                 seed=d.split_seed)
    directory = path_from_env(d.directory, d.path_env)
    if not directory:
        raise FileNotFoundError(f"the nmt task reads a parallel corpus: set data.directory in the config "
                                f"or the environment variable {d.path_env}")
    return translation.load_parallel_corpus(directory, d.src_lang, d.tgt_lang, min_freq=d.min_freq,
                                            max_len=d.max_len, lowercase=d.lowercase)


def make_problem(config: TaskConfig, device: torch.device, data: Any = None) -> Problem:
    """The Problem for ``config`` on ``device``; ``data`` replaces the config's data when given."""
    data = load_data(config) if data is None else data
    if config.task == "nmt":
        return TranslationProblem(data, config, device)
    if config.task in ("regression", "adding"):
        return RegressionProblem(data, config, device)
    if config.task == "lm":
        return LanguageModelProblem(data, config, device)
    return ImageProblem(data, config, device)  # digits, mnist1d, cifar10, tabular and order: classification
