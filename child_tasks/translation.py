"""Translation data for the NMT child task: vocabularies, the in-memory tensors, the reader for parallel
text (IWSLT / Multi30k layout), the embedded synthetic language pair, and BLEU.

Tensor layout (`TranslationData`): int64 (N, L), one sentence per row, padded on the right with PAD.
A source row is its word ids then EOS; a target row is BOS, its word ids, then EOS. Each split is padded
to its own longest row. Special ids are the same in every vocabulary: PAD=0, BOS=1, EOS=2, UNK=3.

The synthetic pair (grammar in `child_tasks.synthetic_language`) is the embedded default: nothing is
downloaded. Loaders are cached per arguments (and file versions), so the tensors they return are shared:
never modify them in place.
"""

from __future__ import annotations

import functools
import os
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from child_tasks import synthetic_language

__all__ = ["PAD", "BOS", "EOS", "UNK", "SPECIALS", "Vocab", "TranslationData", "ParallelTextError",
           "read_parallel_text", "load_parallel_corpus", "synthetic_translation", "bleu",
           "load_translation_task", "TRANSLATION_TASKS"]

PAD, BOS, EOS, UNK = 0, 1, 2, 3
SPECIALS = ("<pad>", "<s>", "</s>", "<unk>")
VALIDATION_NAMES = ("valid", "val", "dev")  # IWSLT (fairseq's preparation) says valid, Multi30k val

Pair = tuple[list[str], list[str]]


class ParallelTextError(ValueError):
    """Parallel text that cannot be used as it is (misaligned or unreadable); the message names files."""


@dataclass(frozen=True)
class Vocab:
    """Word <-> id. tokens[i] is the word of id i; the first four are SPECIALS (PAD, BOS, EOS, UNK)."""

    tokens: list[str]
    _index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if tuple(self.tokens[:len(SPECIALS)]) != SPECIALS:
            raise ValueError(f"a Vocab starts with {SPECIALS}, got {self.tokens[:len(SPECIALS)]}")
        index = {word: i for i, word in enumerate(self.tokens)}
        if len(index) != len(self.tokens):
            raise ValueError("a Vocab's tokens must be distinct")
        object.__setattr__(self, "_index", index)

    @classmethod
    def build(cls, sentences: Iterable[Sequence[str]], min_freq: int = 1) -> Vocab:
        """The words seen at least `min_freq` times, most frequent first (ties alphabetical)."""
        counts = Counter(word for sentence in sentences for word in sentence)
        words = sorted((w for w, c in counts.items() if c >= min_freq and w not in SPECIALS),
                       key=lambda w: (-counts[w], w))
        return cls([*SPECIALS, *words])

    def __len__(self) -> int:
        return len(self.tokens)

    def encode(self, words: list[str]) -> list[int]:
        """Ids of the words, UNK for words not in the vocabulary (no BOS/EOS added)."""
        return [self._index.get(word, UNK) for word in words]

    def decode(self, ids: Iterable[int] | torch.Tensor) -> list[str]:
        """Words of the ids up to the first EOS, leaving out PAD and BOS; UNK decodes to "<unk>"."""
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        words = []
        for i in ids:
            if i == EOS:
                break
            if i not in (PAD, BOS):
                words.append(self.tokens[i])
        return words


@dataclass(frozen=True, eq=False)  # eq=False: comparing tensors elementwise is neither cheap nor a bool
class TranslationData:
    """A translation task in memory (layout in the module docstring). `max_len` is the longest sentence in
    words (without BOS/EOS) on either side of any split: decoding needs at most max_len + 1 steps."""

    name: str
    src_train: torch.Tensor
    tgt_train: torch.Tensor
    src_val: torch.Tensor
    tgt_val: torch.Tensor
    src_test: torch.Tensor
    tgt_test: torch.Tensor
    src_vocab: Vocab
    tgt_vocab: Vocab
    max_len: int

    def __repr__(self) -> str:
        return (f"TranslationData({self.name!r}, vocab={len(self.src_vocab)}/{len(self.tgt_vocab)}, "
                f"train={len(self.src_train)}, val={len(self.src_val)}, test={len(self.src_test)}, "
                f"max_len={self.max_len})")


def _tensor(rows: list[list[int]]) -> torch.Tensor:
    width = max((len(r) for r in rows), default=1)
    out = torch.full((len(rows), width), PAD, dtype=torch.int64)
    for i, row in enumerate(rows):  # once per load, not per step
        out[i, :len(row)] = torch.tensor(row, dtype=torch.int64)
    return out


def make_translation_data(name: str, splits: dict[str, list[Pair]], src_vocab: Vocab, tgt_vocab: Vocab
                          ) -> TranslationData:
    """Tensors of the "train", "val" and "test" pairs in the module's layout."""
    tensors = {}
    for split, pairs in splits.items():
        tensors[f"src_{split}"] = _tensor([src_vocab.encode(s) + [EOS] for s, _ in pairs])
        tensors[f"tgt_{split}"] = _tensor([[BOS] + tgt_vocab.encode(t) + [EOS] for _, t in pairs])
    longest = max((max(len(s), len(t)) for pairs in splits.values() for s, t in pairs), default=0)
    return TranslationData(name=name, src_vocab=src_vocab, tgt_vocab=tgt_vocab, max_len=longest, **tensors)


def _read_lines(file: Path, encoding: str) -> list[str]:
    try:
        return file.read_text(encoding=encoding).splitlines()
    except FileNotFoundError:
        raise FileNotFoundError(f"{file}: no such file (parallel text is one sentence per line, in a source "
                                "and a target file with the same number of lines)") from None
    except UnicodeDecodeError as err:
        raise ParallelTextError(f"{file}: not {encoding} text ({err})") from None


def read_parallel_text(src_file: str | os.PathLike, tgt_file: str | os.PathLike, *, lowercase: bool = False,
                       encoding: str = "utf-8") -> list[Pair]:
    """Sentence pairs from two aligned files, one sentence per line, split on whitespace (lower-cased if
    asked). Lines where either side is blank are left out. Files of different line counts raise
    ParallelTextError naming both files and their counts."""
    src_file, tgt_file = Path(src_file), Path(tgt_file)
    src_lines, tgt_lines = _read_lines(src_file, encoding), _read_lines(tgt_file, encoding)
    if len(src_lines) != len(tgt_lines):
        raise ParallelTextError(f"{src_file} has {len(src_lines)} lines but {tgt_file} has {len(tgt_lines)}: "
                                "parallel files must be aligned line by line")
    pairs = []
    for src, tgt in zip(src_lines, tgt_lines):
        if lowercase:
            src, tgt = src.lower(), tgt.lower()
        src_words, tgt_words = src.split(), tgt.split()
        if src_words and tgt_words:
            pairs.append((src_words, tgt_words))
    return pairs


def _split_files(directory: Path, split: str, src_lang: str, tgt_lang: str) -> tuple[Path, Path]:
    names = VALIDATION_NAMES if split == "val" else (split,)
    for name in names:
        src, tgt = directory / f"{name}.{src_lang}", directory / f"{name}.{tgt_lang}"
        if src.is_file() or tgt.is_file():
            return src, tgt
    tried = ", ".join(f"{n}.{src_lang}/{n}.{tgt_lang}" for n in names)
    raise FileNotFoundError(f"{directory}: no {split} split (looked for {tried}); a parallel corpus "
                            f"directory holds train.{src_lang}, train.{tgt_lang}, valid.* (or val.*, dev.*) "
                            "and test.*, one sentence per line")


def load_parallel_corpus(directory: str | os.PathLike, src_lang: str, tgt_lang: str, *, min_freq: int = 1,
                         max_len: int = 50, lowercase: bool = False) -> TranslationData:
    """A parallel corpus in the IWSLT / Multi30k layout: train.{src_lang} and train.{tgt_lang}, valid.*
    (or val.*, dev.*), test.*. The vocabularies come from the training split (words seen at least
    `min_freq` times; the others become UNK); pairs with a side longer than `max_len` words are left out
    of every split. Cached per arguments and file versions."""
    directory = Path(directory).expanduser().resolve()
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory}: no such directory (a parallel corpus directory holds "
                                f"train.{src_lang}, train.{tgt_lang}, valid.* and test.*)")
    files = {split: _split_files(directory, split, src_lang, tgt_lang) for split in ("train", "val", "test")}
    versions = tuple((f.stat().st_mtime_ns, f.stat().st_size) if f.is_file() else None
                     for pair in files.values() for f in pair)
    return _load_parallel_corpus(str(directory), src_lang, tgt_lang, int(min_freq), int(max_len),
                                 bool(lowercase), versions)


@functools.lru_cache(maxsize=4)
def _load_parallel_corpus(directory: str, src_lang: str, tgt_lang: str, min_freq: int, max_len: int,
                          lowercase: bool, _versions: tuple) -> TranslationData:
    splits = {}
    for split in ("train", "val", "test"):
        pairs = read_parallel_text(*_split_files(Path(directory), split, src_lang, tgt_lang),
                                   lowercase=lowercase)
        splits[split] = [(s, t) for s, t in pairs if len(s) <= max_len and len(t) <= max_len]
        if not splits[split]:
            raise ParallelTextError(f"{directory}: the {split} split has no sentence pair of at most "
                                    f"{max_len} words on both sides")
    src_vocab = Vocab.build((s for s, _ in splits["train"]), min_freq)
    tgt_vocab = Vocab.build((t for _, t in splits["train"]), min_freq)
    name = f"{Path(directory).name}.{src_lang}-{tgt_lang}"
    return make_translation_data(name, splits, src_vocab, tgt_vocab)


def synthetic_translation(n_train: int = 4000, n_val: int = 300, n_test: int = 300, seed: int = 0
                          ) -> TranslationData:
    """The embedded synthetic language pair (see `child_tasks.synthetic_language`): n_train, n_val and
    n_test pairs with distinct source sentences across all splits (validation and test are unseen), drawn
    from the grammar with `seed`. The vocabularies hold every word of the grammar, so ids do not depend on
    the sizes or the seed. Cached per arguments."""
    if min(n_train, n_val, n_test) < 1:
        raise ValueError(f"n_train, n_val and n_test must be >= 1, got {n_train}, {n_val}, {n_test}")
    return _synthetic_translation(int(n_train), int(n_val), int(n_test), int(seed))


@functools.lru_cache(maxsize=4)
def _synthetic_translation(n_train: int, n_val: int, n_test: int, seed: int) -> TranslationData:
    pairs = synthetic_language.generate_pairs(n_train + n_val + n_test, seed)
    splits = {"train": pairs[:n_train], "val": pairs[n_train:n_train + n_val],
              "test": pairs[n_train + n_val:]}
    return make_translation_data("synthetic", splits, Vocab([*SPECIALS, *synthetic_language.source_words()]),
                                 Vocab([*SPECIALS, *synthetic_language.target_words()]))


def bleu(hypotheses: list[str], references: list[str], tokenize: str = "13a") -> float:
    """Corpus BLEU (0-100) of the hypotheses against one reference each, with sacrebleu's default
    tokenisation ("13a"; pass "none" for text that is already tokenised as wanted)."""
    import sacrebleu

    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references")
    if not hypotheses:
        raise ValueError("BLEU of no sentences is undefined")
    return float(sacrebleu.corpus_bleu(list(hypotheses), [list(references)], tokenize=tokenize).score)


TRANSLATION_TASKS: dict[str, Callable[..., TranslationData]] = {"synthetic": synthetic_translation,
                                                                "parallel": load_parallel_corpus}


def load_translation_task(name: str, **options) -> TranslationData:
    """The translation task `name`: "synthetic" (options of synthetic_translation) or "parallel" (options
    of load_parallel_corpus: directory, src_lang, tgt_lang, ...)."""
    try:
        loader = TRANSLATION_TASKS[name]
    except KeyError:
        known = ", ".join(sorted(TRANSLATION_TASKS))
        raise ValueError(f"unknown translation task {name!r}; known: {known}") from None
    return loader(**options)
