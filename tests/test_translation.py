"""Translation data: the parallel text reader and corpus layout, vocabularies, the tensor layout, the
synthetic language pair (deterministic, reordered, agreeing), and BLEU."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
import torch

from child_tasks import synthetic_language as lang
from child_tasks.translation import (BOS, EOS, PAD, SPECIALS, UNK, ParallelTextError, Vocab,
                                     _synthetic_translation, bleu, load_parallel_corpus,
                                     load_translation_task, read_parallel_text, synthetic_translation)

CORPUS = {  # split -> (source lines, target lines), the IWSLT layout with "valid"
    "train": (["a b c", "a b", "", "a d e f g h"], ["x y", "x y z", "q", "x"]),
    "valid": (["a e", "b"], ["z", "y y"]),
    "test": (["c c", "a"], ["y", "x"]),
}


def write_corpus(directory: Path, corpus: dict = CORPUS, langs: tuple[str, str] = ("de", "en")) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for split, sides in corpus.items():
        for language, lines in zip(langs, sides):
            (directory / f"{split}.{language}").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return directory


# --- reader and corpus ---------------------------------------------------------------------------------

def test_read_parallel_text(tmp_path: Path):
    (tmp_path / "s.txt").write_text("Hello  World .\n\nA b\nonly source\n", encoding="utf-8")
    (tmp_path / "t.txt").write_text("Hallo Welt .\nleft out\nA B\n   \n", encoding="utf-8")
    pairs = read_parallel_text(tmp_path / "s.txt", tmp_path / "t.txt")
    assert pairs == [(["Hello", "World", "."], ["Hallo", "Welt", "."]), (["A", "b"], ["A", "B"])]
    lowered = read_parallel_text(str(tmp_path / "s.txt"), str(tmp_path / "t.txt"), lowercase=True)
    assert lowered[0] == (["hello", "world", "."], ["hallo", "welt", "."])


def test_line_count_mismatch_names_both_files_and_counts(tmp_path: Path):
    (tmp_path / "train.de").write_text("a\nb\nc\n")
    (tmp_path / "train.en").write_text("x\ny\n")
    with pytest.raises(ParallelTextError) as err:
        read_parallel_text(tmp_path / "train.de", tmp_path / "train.en")
    message = str(err.value)
    assert f"{tmp_path / 'train.de'} has 3 lines but {tmp_path / 'train.en'} has 2" in message


def test_unreadable_files(tmp_path: Path):
    (tmp_path / "s").write_bytes(b"\xff\xfe\xfa broken")
    (tmp_path / "t").write_text("ok\n")
    with pytest.raises(ParallelTextError, match=f"{tmp_path / 's'}: not utf-8 text"):
        read_parallel_text(tmp_path / "s", tmp_path / "t")
    with pytest.raises(FileNotFoundError, match=f"{tmp_path / 'missing'}: no such file"):
        read_parallel_text(tmp_path / "t", tmp_path / "missing")


def test_load_parallel_corpus_layout_vocab_and_tensors(tmp_path: Path):
    data = load_parallel_corpus(write_corpus(tmp_path / "iwslt"), "de", "en", min_freq=2, max_len=5)
    # "a d e f g h" (6 words) is longer than max_len and the blank line is left out: 2 training pairs.
    assert (len(data.src_train), len(data.src_val), len(data.src_test)) == (2, 2, 2)
    # Vocabulary from train only, words seen twice: a, b / x, y; the rest is UNK.
    assert data.src_vocab.tokens == [*SPECIALS, "a", "b"] and data.tgt_vocab.tokens == [*SPECIALS, "x", "y"]
    a, b, x, y = 4, 5, 4, 5
    assert data.src_train.tolist() == [[a, b, UNK, EOS], [a, b, EOS, PAD]]
    assert data.tgt_train.tolist() == [[BOS, x, y, EOS, PAD], [BOS, x, y, UNK, EOS]]
    assert data.src_val.tolist() == [[a, UNK, EOS], [b, EOS, PAD]]
    assert data.tgt_val.tolist() == [[BOS, UNK, EOS, PAD], [BOS, y, y, EOS]]
    assert data.max_len == 3 and data.src_train.dtype == torch.int64
    assert data.name == "iwslt.de-en"


def test_corpus_with_val_names_is_cached_and_reloaded_when_files_change(tmp_path: Path):
    corpus = {("val" if split == "valid" else split): sides for split, sides in CORPUS.items()}
    directory = write_corpus(tmp_path / "multi30k", corpus, ("en", "fr"))
    data = load_parallel_corpus(directory, "en", "fr")
    assert len(data.src_val) == 2 and len(data.src_train) == 3
    assert load_translation_task("parallel", directory=str(directory), src_lang="en", tgt_lang="fr") is data
    test_file = directory / "test.en"
    test_file.write_text("a\nb\n")
    stat = test_file.stat()
    os.utime(test_file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    reloaded = load_parallel_corpus(directory, "en", "fr")
    assert reloaded is not data and reloaded.src_test[:, 0].tolist() == [4, 5]


def test_corpus_errors(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="no such directory"):
        load_parallel_corpus(tmp_path / "nope", "de", "en")
    directory = write_corpus(tmp_path / "c", {"train": CORPUS["train"], "test": CORPUS["test"]})
    with pytest.raises(FileNotFoundError, match=r"no val split \(looked for valid.de/valid.en, val.de/"):
        load_parallel_corpus(directory, "de", "en")
    write_corpus(directory, {"valid": (["a", "b"], ["x"])})
    with pytest.raises(ParallelTextError, match="has 2 lines but .*valid.en has 1"):
        load_parallel_corpus(directory, "de", "en")
    with pytest.raises(ValueError, match="unknown translation task 'wmt'; known: parallel, synthetic"):
        load_translation_task("wmt")


# --- vocabulary ----------------------------------------------------------------------------------------

def test_vocab_round_trip_and_decode_rules():
    vocab = Vocab.build([["the", "cat"], ["the", "dog"], ["a", "cat", "the"]])
    assert vocab.tokens == [*SPECIALS, "the", "cat", "a", "dog"]  # by frequency, ties alphabetical
    words = ["the", "dog", "a", "cat"]
    assert vocab.decode(vocab.encode(words)) == words
    assert vocab.encode(["the", "bird"]) == [4, UNK] and vocab.decode([4, UNK]) == ["the", "<unk>"]
    assert vocab.decode([BOS, 4, PAD, 5, EOS, 6, 7]) == ["the", "cat"]  # stops at EOS, skips PAD/BOS
    assert vocab.decode(torch.tensor([BOS, 7, EOS, PAD])) == ["dog"]
    assert Vocab.build([["a", "a", "b"]], min_freq=2).tokens == [*SPECIALS, "a"]
    with pytest.raises(ValueError, match="starts with"):
        Vocab(["a", "b"])
    assert (PAD, BOS, EOS, UNK) == (0, 1, 2, 3)


# --- the synthetic language pair -----------------------------------------------------------------------

PRONOUN_PERSON = {src: person for src, _, person in lang.PRONOUNS}
SOURCE_NOUN = {n[1 if plural else 0]: plural for n in lang.NOUNS for plural in (False, True)}
SOURCE_VERB = {form: v for v, verb in enumerate(lang.VERBS) for form in verb[:2]}
SOURCE_ADJECTIVES = {a[0] for a in lang.ADJECTIVES}
# Target forms written out from the tables, independently of the module's rendering functions.
ENDINGS = {(False, "m"): "o", (False, "f"): "a", (True, "m"): "i", (True, "f"): "e"}
TARGET_NOUN = {n[2] + ENDINGS[p, n[3]]: (p, n[3]) for n in lang.NOUNS for p in (False, True)}
TARGET_ADJECTIVE = {a[1] + ENDINGS[p, g]: (p, g) for a in lang.ADJECTIVES for p in (False, True)
                    for g in "mf"}
TARGET_ARTICLE = {art: (plural, gender) for (_, plural, gender), art in lang.ARTICLES.items()}
MODIFIERS = {n[4] for n in lang.NOUNS if n[4]}


def subject_person(source: list[str]) -> str:
    if source[0] in PRONOUN_PERSON:
        return PRONOUN_PERSON[source[0]]
    noun = next(w for w in source if w in SOURCE_NOUN)
    return "3pl" if SOURCE_NOUN[noun] else "3sg"


PAIRS = lang.generate_pairs(600, seed=3)


def test_the_documented_example():
    assert " ".join(lang.render_target(lang.Sentence(
        lang.Phrase(noun=0, adjectives=(0,)), 0, lang.Phrase(noun=7, definite=False, adjectives=(2,)),
        0, lang.Phrase(noun=5)))) == "il kano grando il orto nu una poma ruba vidat"


def test_verb_agrees_with_the_subject_and_comes_last():
    persons = set()
    for source, target in PAIRS:
        person = subject_person(source)
        persons.add(person)
        verb_at = next(i for i, w in enumerate(source) if w in SOURCE_VERB and i > 0)
        verb = lang.VERBS[SOURCE_VERB[source[verb_at]]]
        assert source[verb_at] == (verb[1] if person == "3sg" else verb[0]), source  # the source agrees
        assert verb_at < len(source) - 1, source  # SVO: the object follows the verb in the source...
        assert target[-1] == verb[2] + lang.PERSON_ENDINGS[person], target  # ...the verb ends the target
        if verb[3]:  # a two-word verb
            assert target[-2] == verb[3], target
    assert persons == set(lang.PERSON_ENDINGS)


def test_articles_and_adjectives_agree_with_their_noun():
    checked = 0
    for _, target in PAIRS:
        for i, word in enumerate(target):
            if word not in TARGET_ARTICLE:
                continue
            assert TARGET_NOUN[target[i + 1]] == TARGET_ARTICLE[word], target  # number and gender
            j = i + 2 + (target[i + 2] in MODIFIERS if i + 2 < len(target) else 0)
            while j < len(target) and target[j] in TARGET_ADJECTIVE:
                assert TARGET_ADJECTIVE[target[j]] == TARGET_ARTICLE[word], target
                j, checked = j + 1, checked + 1
    assert checked > 100


def test_the_target_is_reordered_not_a_word_by_word_copy():
    adjective_first = sum(any(w in SOURCE_ADJECTIVES for w in s[:2]) for s, _ in PAIRS)
    with_pp = [(s, t) for s, t in PAIRS if any(w in {p[0] for p in lang.PREPOSITIONS} for w in s)]
    assert adjective_first > 20 and len(with_pp) > 100
    for source, target in PAIRS:
        # Adjectives precede their noun in the source and follow it in the target.
        for i, word in enumerate(source):
            if word in SOURCE_ADJECTIVES:
                assert any(w in SOURCE_NOUN for w in source[i + 1:i + 3])
        for i, word in enumerate(target):
            if word in TARGET_ADJECTIVE:
                assert target[i - 1] in TARGET_NOUN or target[i - 1] in MODIFIERS \
                    or target[i - 1] in TARGET_ADJECTIVE
    for source, target in with_pp:  # the prepositional phrase ends the source, precedes the object
        postposition = next(i for i, w in enumerate(target) if w in {p[1] for p in lang.PREPOSITIONS})
        assert postposition < len(target) - 3
    # A word-by-word dictionary translation in source order (each word to one fixed target form) is far
    # from the reference: the task needs reordering and agreement, not a lookup.
    dictionary = {"the": "il", "a": "un", "some": "unos", **{s: t for s, t, _ in lang.PRONOUNS},
                  **dict(lang.PREPOSITIONS), **{a: stem + "o" for a, stem in lang.ADJECTIVES}}
    for sg, pl, stem, gender, _ in lang.NOUNS:
        dictionary.update({sg: stem + ENDINGS[False, gender], pl: stem + ENDINGS[True, gender]})
    for base, third, stem, _ in lang.VERBS:
        dictionary.update({base: stem + "ant", third: stem + "at"})
    word_by_word = [" ".join(dictionary[w] for w in source) for source, _ in PAIRS]
    assert bleu(word_by_word, [" ".join(t) for _, t in PAIRS]) < 5


def test_lexicon_is_unambiguous_and_sized_as_intended():
    targets = lang.target_words()
    assert len(set(targets)) == len(targets)
    groups = [set(TARGET_NOUN), set(TARGET_ADJECTIVE), set(TARGET_ARTICLE), MODIFIERS,
              {p[1] for p in lang.PRONOUNS}, {p[1] for p in lang.PREPOSITIONS}, {lang.OBJECT_MARKER},
              {w for v in range(len(lang.VERBS)) for p in lang.PERSON_ENDINGS for w in lang.verb_forms(v, p)}]
    assert sum(map(len, groups)) == len(targets)  # no form is shared between two kinds of word
    assert 50 <= len(lang.source_words()) <= 150 and 50 <= len(targets) <= 150


def test_synthetic_translation_is_deterministic_and_splits_are_unseen():
    data = synthetic_translation(n_train=400, n_val=50, n_test=50, seed=0)
    assert synthetic_translation(400, 50, 50, 0) is data  # cached
    rebuilt = _synthetic_translation.__wrapped__(400, 50, 50, 0)  # built again, bypassing the cache
    for name in ("src_train", "tgt_train", "src_val", "tgt_val", "src_test", "tgt_test"):
        assert torch.equal(getattr(data, name), getattr(rebuilt, name))
    assert not torch.equal(synthetic_translation(400, 50, 50, seed=1).src_val, data.src_val)
    sources = [tuple(data.src_vocab.decode(row)) for split in ("train", "val", "test")
               for row in getattr(data, f"src_{split}")]
    assert len(set(sources)) == 500  # validation and test sentences never appear in training
    assert all(4 <= len(s) <= 12 for s in sources)
    # Every word is in the vocabulary (no UNK), and the vocabulary does not depend on sizes or seed.
    assert not any(bool((getattr(data, f"{side}_{split}") == UNK).any())
                   for side in ("src", "tgt") for split in ("train", "val", "test"))
    assert synthetic_translation(10, 5, 5, seed=7).tgt_vocab.tokens == data.tgt_vocab.tokens
    with pytest.raises(ValueError, match="must be >= 1"):
        synthetic_translation(n_train=0)


def test_synthetic_tensor_layout():
    data = load_translation_task("synthetic", n_train=300, n_val=20, n_test=20)
    tgt, src = data.tgt_train, data.src_train
    assert bool((tgt[:, 0] == BOS).all()) and bool(((tgt == EOS).sum(1) == 1).all())
    assert bool(((src == EOS).sum(1) == 1).all()) and bool((src == BOS).sum() == 0)
    lengths = (tgt != PAD).sum(1)
    assert torch.equal(tgt.gather(1, (lengths - 1)[:, None])[:, 0], torch.full_like(lengths, EOS))
    assert bool((lengths == tgt.shape[1]).any())  # padded to the longest row, no wider
    assert data.max_len == max(int((src != PAD).sum(1).max()) - 1, int(lengths.max()) - 2)
    pair = lang.generate_pairs(1, seed=0)[0]
    assert data.src_vocab.decode(src[0]) == pair[0] and data.tgt_vocab.decode(tgt[0]) == pair[1]


# --- BLEU ----------------------------------------------------------------------------------------------

def test_bleu():
    references = [" ".join(t) for _, t in PAIRS[:100]]
    assert bleu(references, references) == pytest.approx(100.0)
    rng = random.Random(0)
    words = lang.target_words()
    garbage = [" ".join(rng.choice(words) for _ in range(8)) for _ in references]
    assert bleu(garbage, references) < 5
    partly = [" ".join(r.split()[:-1]) for r in references]  # the verb dropped
    assert 30 < bleu(partly, references) < 100
    with pytest.raises(ValueError, match="2 hypotheses but 1 references"):
        bleu(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="no sentences"):
        bleu([], [])
