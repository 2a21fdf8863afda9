"""The embedded synthetic language pair for the NMT child task: an English-like source and an invented
target language, generated deterministically from a seeded random stream and a fixed grammar.

Source (SVO, adjectives before the noun):

    S   -> SUBJ VERB OBJ [PP]
    SUBJ-> PRONOUN | NP             (pronouns: i you he she we they)
    OBJ -> NP
    NP  -> DET ADJ{0,2} NOUN        (DET: the / a for a singular noun, the / some for a plural one)
    PP  -> PREP NP                  (in near with under behind)
    VERB: "see" or, after he / she / a singular noun, "sees" (English agreement)

    e.g.  "the big dog sees a red apple in the garden"     "we carry some old books"

Target (SOV, postpositions, adjectives after the noun, gender and number agreement):

    S   -> SUBJ [PP] OBJ [ak] VERB   the object moves before the verb and the PP before the object;
                                     "ak" marks a definite object (differential object marking)
    NP  -> ART NOUN [MODIFIER] ADJ*  adjectives follow the noun in mirror order ("big red dog" ->
                                     "kano rubo grando"); a compound noun keeps its modifier word
    PP  -> NP POSTP                  (in -> nu, near -> pres, with -> kun, under -> sub, behind -> dop)

    gender: every target noun is masculine or feminine (lexical, not predictable from the source)
    ART:    il / ela (definite sg m / f), ilos / elas (definite pl), un / una (a), unos / unas (some)
    NOUN:   stem + o / a (sg m / f), stem + i / e (pl m / f); teacher, doctor and car are compounds of
            two target words ("magistro skolu"), of which only the first inflects
    ADJ:    stem + o / a / i / e, agreeing with its noun's gender and number
    VERB:   stem + am / as / at / amus / ant for i / you / he, she, singular noun / we / they, plural noun;
            "like" and "want" are two words, a fixed noun and the conjugated light verb "fac-"
            ("amor facat")
    PRONOUN: mi tu eso esa nosi lori

    e.g.  "the big dog sees a red apple in the garden" -> "il kano grando il orto nu una poma ruba vidat"

So translating needs reordering over the whole sentence (the verb's form depends on the first words,
but it comes last), gender lookup, agreement inside noun phrases, and one-to-two word mappings, while
sentences stay 4-12 source words (up to ~18 target words) over ~80 source and ~140 target words.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["PRONOUNS", "NOUNS", "ADJECTIVES", "VERBS", "PREPOSITIONS", "ARTICLES", "PERSON_ENDINGS",
           "OBJECT_MARKER", "LIGHT_VERB", "MAX_SOURCE_WORDS", "Phrase", "Sentence", "random_sentence",
           "render_source", "render_target", "generate_pairs", "source_words", "target_words",
           "noun_form", "adjective_form", "verb_forms"]

# Pronoun: (source, target, person key). Person keys index PERSON_ENDINGS.
PRONOUNS = (("i", "mi", "1sg"), ("you", "tu", "2sg"), ("he", "eso", "3sg"), ("she", "esa", "3sg"),
            ("we", "nosi", "1pl"), ("they", "lori", "3pl"))
# Noun: (source singular, source plural, target stem, gender, compound modifier or None).
NOUNS = (
    ("dog", "dogs", "kan", "m", None), ("cat", "cats", "gat", "f", None),
    ("bird", "birds", "avel", "m", None), ("horse", "horses", "kaval", "m", None),
    ("house", "houses", "kas", "f", None), ("garden", "gardens", "ort", "m", None),
    ("book", "books", "libr", "m", None), ("apple", "apples", "pom", "f", None),
    ("river", "rivers", "riv", "f", None), ("city", "cities", "citad", "f", None),
    ("child", "children", "infant", "m", None), ("friend", "friends", "amik", "f", None),
    ("teacher", "teachers", "magistr", "m", "skolu"), ("doctor", "doctors", "medik", "f", "sanu"),
    ("car", "cars", "vetur", "f", "motu"),
)
# Adjective: (source, target stem).
ADJECTIVES = (("big", "grand"), ("small", "pikol"), ("red", "rub"), ("old", "vek"), ("new", "nov"),
              ("happy", "felik"), ("black", "negr"), ("white", "blank"), ("quick", "rapid"),
              ("quiet", "kalm"))
# Verb: (source base, source 3rd singular, target stem, fixed first word or None for a one-word verb).
VERBS = (("see", "sees", "vid", None), ("find", "finds", "trov", None), ("help", "helps", "ajut", None),
         ("follow", "follows", "segu", None), ("carry", "carries", "port", None),
         ("watch", "watches", "guard", None), ("know", "knows", "kon", None), ("call", "calls", "klam", None),
         ("meet", "meets", "inkontr", None), ("paint", "paints", "pingt", None),
         ("like", "likes", "fac", "amor"), ("want", "wants", "fac", "desir"))
PREPOSITIONS = (("in", "nu"), ("near", "pres"), ("with", "kun"), ("under", "sub"), ("behind", "dop"))
# Target article by (definite, plural, gender); source determiner by (definite, plural).
ARTICLES = {(True, False, "m"): "il", (True, False, "f"): "ela", (True, True, "m"): "ilos",
            (True, True, "f"): "elas", (False, False, "m"): "un", (False, False, "f"): "una",
            (False, True, "m"): "unos", (False, True, "f"): "unas"}
DETERMINERS = {(True, False): "the", (True, True): "the", (False, False): "a", (False, True): "some"}
PERSON_ENDINGS = {"1sg": "am", "2sg": "as", "3sg": "at", "1pl": "amus", "3pl": "ant"}
NOUN_ENDINGS = {(False, "m"): "o", (False, "f"): "a", (True, "m"): "i", (True, "f"): "e"}
OBJECT_MARKER = "ak"
LIGHT_VERB = "fac"
MAX_SOURCE_WORDS = 12


@dataclass(frozen=True)
class Phrase:
    """A noun phrase: a pronoun (index into PRONOUNS), or a noun (index into NOUNS) with its number,
    definiteness and adjectives (indices into ADJECTIVES, in source order)."""

    pronoun: int | None = None
    noun: int = 0
    plural: bool = False
    definite: bool = True
    adjectives: tuple[int, ...] = ()

    @property
    def person(self) -> str:
        """The PERSON_ENDINGS key the verb agrees with when this phrase is the subject."""
        if self.pronoun is not None:
            return PRONOUNS[self.pronoun][2]
        return "3pl" if self.plural else "3sg"


@dataclass(frozen=True)
class Sentence:
    subject: Phrase
    verb: int
    object: Phrase
    preposition: int | None = None  # index into PREPOSITIONS; None: no prepositional phrase
    place: Phrase | None = None


def noun_form(noun: int, plural: bool) -> list[str]:
    """The target words of a noun: inflected stem, then the compound's modifier if any."""
    _, _, stem, gender, modifier = NOUNS[noun]
    return [stem + NOUN_ENDINGS[plural, gender]] + ([modifier] if modifier else [])


def adjective_form(adjective: int, plural: bool, gender: str) -> str:
    return ADJECTIVES[adjective][1] + NOUN_ENDINGS[plural, gender]


def verb_forms(verb: int, person: str) -> list[str]:
    """The target words of a verb agreeing with `person`: [fixed word,] stem + ending."""
    *_, stem, first = VERBS[verb]
    return ([first] if first else []) + [stem + PERSON_ENDINGS[person]]


def _source_phrase(p: Phrase) -> list[str]:
    if p.pronoun is not None:
        return [PRONOUNS[p.pronoun][0]]
    noun = NOUNS[p.noun][1 if p.plural else 0]
    return [DETERMINERS[p.definite, p.plural], *(ADJECTIVES[a][0] for a in p.adjectives), noun]


def _target_phrase(p: Phrase) -> list[str]:
    if p.pronoun is not None:
        return [PRONOUNS[p.pronoun][1]]
    gender = NOUNS[p.noun][3]
    adjectives = [adjective_form(a, p.plural, gender) for a in reversed(p.adjectives)]
    return [ARTICLES[p.definite, p.plural, gender], *noun_form(p.noun, p.plural), *adjectives]


def render_source(s: Sentence) -> list[str]:
    base, third, *_ = VERBS[s.verb]
    verb = third if s.subject.person == "3sg" else base
    words = [*_source_phrase(s.subject), verb, *_source_phrase(s.object)]
    if s.place is not None and s.preposition is not None:
        words += [PREPOSITIONS[s.preposition][0], *_source_phrase(s.place)]
    return words


def render_target(s: Sentence) -> list[str]:
    words = _target_phrase(s.subject)
    if s.place is not None and s.preposition is not None:
        words += [*_target_phrase(s.place), PREPOSITIONS[s.preposition][1]]
    words += _target_phrase(s.object)
    if s.object.definite and s.object.pronoun is None:
        words.append(OBJECT_MARKER)
    return words + verb_forms(s.verb, s.subject.person)


def _random_phrase(rng: random.Random, allow_pronoun: bool) -> Phrase:
    if allow_pronoun and rng.random() < 0.3:
        return Phrase(pronoun=rng.randrange(len(PRONOUNS)))
    n_adjectives = rng.choices((0, 1, 2), weights=(0.55, 0.35, 0.10))[0]
    # Distinct adjectives: "the big big dog" would make the mirror order unobservable.
    return Phrase(noun=rng.randrange(len(NOUNS)), plural=rng.random() < 0.35, definite=rng.random() < 0.6,
                  adjectives=tuple(rng.sample(range(len(ADJECTIVES)), n_adjectives)))


def random_sentence(rng: random.Random) -> Sentence:
    """One sentence drawn from the grammar, of at most MAX_SOURCE_WORDS source words."""
    while True:  # rejection keeps the length distribution the grammar's, cut at the maximum
        subject = _random_phrase(rng, allow_pronoun=True)
        verb = rng.randrange(len(VERBS))
        obj = _random_phrase(rng, allow_pronoun=False)
        preposition = place = None
        if rng.random() < 0.4:
            preposition, place = rng.randrange(len(PREPOSITIONS)), _random_phrase(rng, allow_pronoun=False)
        sentence = Sentence(subject, verb, obj, preposition, place)
        if len(render_source(sentence)) <= MAX_SOURCE_WORDS:
            return sentence


def generate_pairs(n: int, seed: int = 0, exclude: set[str] | None = None
                   ) -> list[tuple[list[str], list[str]]]:
    """n (source words, target words) pairs with distinct source sentences, determined by `seed`;
    sources in `exclude` (joined with spaces) are skipped, and the new ones are added to it."""
    rng = random.Random(seed)
    seen = set() if exclude is None else exclude
    pairs = []
    while len(pairs) < n:
        sentence = random_sentence(rng)
        source = render_source(sentence)
        key = " ".join(source)
        if key not in seen:
            seen.add(key)
            pairs.append((source, render_target(sentence)))
    return pairs


def source_words() -> list[str]:
    """Every word the source side can use, sorted."""
    words = {p[0] for p in PRONOUNS} | set(DETERMINERS.values()) | {p[0] for p in PREPOSITIONS}
    words |= {a[0] for a in ADJECTIVES}
    words |= {w for n in NOUNS for w in n[:2]} | {w for v in VERBS for w in v[:2]}
    return sorted(words)


def target_words() -> list[str]:
    """Every word the target side can use, sorted."""
    words = {p[1] for p in PRONOUNS} | set(ARTICLES.values()) | {p[1] for p in PREPOSITIONS} | {OBJECT_MARKER}
    for noun, (*_, gender, _) in enumerate(NOUNS):
        for plural in (False, True):
            words.update(noun_form(noun, plural))
            words.update(adjective_form(a, plural, gender) for a in range(len(ADJECTIVES)))
    words.update(w for v in range(len(VERBS)) for person in PERSON_ENDINGS for w in verb_forms(v, person))
    return sorted(words)
