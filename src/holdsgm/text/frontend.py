"""Text -> symbol ids: normalisation, espeak-ng phonemes (through ``phonemizer``), a fixed symbol table and
blank tokens between symbols.

* :func:`normalize_text` spells out what a phonemiser reads badly or not at all: numbers (integers with or
  without thousands separators, decimals, ordinals, years are read as numbers), currency (``$5.50`` -> five
  dollars fifty cents), percentages, common abbreviations (Mr., Dr., St., etc.), ``&``; folds accented
  letters to ASCII and unifies quotes and dashes. :func:`unspeakable` names the characters left that the front
  end cannot speak (symbols, other scripts); :meth:`FrontEnd.encode` drops them with a warning.
* :class:`FrontEnd` phonemises with espeak-ng (``en-us``, stress marks, punctuation kept: pauses are spoken)
  and maps each character of the IPA string to an id of :data:`SYMBOLS` (0 is the blank). ``add_blank``
  intersperses the blank between symbols and at both ends (Grad-TTS, VITS: the alignment gets a place for
  transitions).
* :func:`split_sentences` cuts long input at sentence ends (then at commas, then at spaces) into parts the
  model can say in one go; the waves are joined afterwards.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from dataclasses import dataclass

from ..errors import HoldsgmError

log = logging.getLogger("holdsgm.text")

#: the blank token (id 0), also used to pad batches
BLANK = "_"
_PUNCT = " !'(),-.:;?\""
_IPA = ("abdefhijklmnopstuvwxzæçðøħŋœɐɑɒɓɔɕɖɗɘəɚɛɜɝɞɟɠɡɢɣɤɥɦɧɨɪɫɬɭɮɯɰɱɲɳɴɵɶɸɹɺɻɽɾʀʁʂʃʄʈʉʊʋʌʍʎʏʐʑʒʔʕʘʙʛʜʝʟʡʢ"
        "ʲʷʰˈˌːˑ˞ᵻθβχ\u0329\u0303")
#: the symbol table: blank, punctuation and space, then the IPA letters and marks espeak-ng writes (one symbol
#: per Unicode character). Runs save the table they were trained with; a model reads text through its own.
SYMBOLS: tuple[str, ...] = (BLANK, *_PUNCT, *_IPA)

_ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
         "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"]
_TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_SCALES = ["", " thousand", " million", " billion", " trillion"]
_ORDINAL_WORDS = {"one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth",
                  "nine": "ninth", "twelve": "twelfth"}


def number_to_words(n: int) -> str:
    """English words for a whole number 0 <= n < 10^15 (British 'and': ``one hundred and five``)."""
    if not 0 <= n < 10**15:
        raise ValueError(f"number_to_words covers 0 .. 10^15 - 1, got {n}")
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else "-" + _ONES[n % 10])
    if n < 1000:
        rest = n % 100
        return _ONES[n // 100] + " hundred" + ("" if rest == 0 else " and " + number_to_words(rest))
    groups, scale = [], 0
    while n:
        n, g = divmod(n, 1000)
        if g:
            groups.append((scale, g))
        scale += 1
    parts = []
    for scale, g in reversed(groups):
        parts.append(number_to_words(g) + _SCALES[scale])
    if groups[0][0] == 0 and groups[0][1] < 100 and len(groups) > 1:  # "two thousand and five"
        return " ".join(parts[:-1]) + " and " + parts[-1]
    return " ".join(parts)


def ordinal_words(n: int) -> str:
    """``21`` -> ``twenty-first``."""
    words = number_to_words(n)
    head, sep, last = words.rpartition("-" if "-" in words.split(" ")[-1] else " ")
    if last in _ORDINAL_WORDS:
        last = _ORDINAL_WORDS[last]
    elif last.endswith("y"):
        last = last[:-1] + "ieth"
    else:
        last += "th"
    return head + sep + last


_ABBREVIATIONS = {
    "mr": "mister", "mrs": "missus", "ms": "miz", "dr": "doctor", "prof": "professor", "st": "saint",
    "jr": "junior", "sr": "senior", "co": "company", "ltd": "limited", "inc": "incorporated", "vs": "versus",
    "etc": "et cetera", "e.g": "for example", "i.e": "that is", "no": "number", "approx": "approximately",
    "dept": "department", "gen": "general", "capt": "captain", "lt": "lieutenant", "col": "colonel",
    "mt": "mount", "ft": "feet", "min": "minutes", "sec": "seconds", "hr": "hours",
}
_CURRENCY = {"$": ("dollar", "dollars", "cent", "cents"), "£": ("pound", "pounds", "penny", "pence"),
             "€": ("euro", "euros", "cent", "cents")}
_NUM = r"\d[\d,]*"


def _int(s: str) -> int:
    return int(s.replace(",", ""))


def _money(m: re.Match) -> str:
    one, many, sub_one, sub_many = _CURRENCY[m.group(1)]
    whole = _int(m.group(2))
    out = f"{number_to_words(whole)} {one if whole == 1 else many}"
    if m.group(3):
        cents = int((m.group(3) + "0")[:2])
        if cents:
            out += f" {number_to_words(cents)} {sub_one if cents == 1 else sub_many}"
    return out


def _decimal(m: re.Match) -> str:
    return f"{number_to_words(_int(m.group(1)))} point {' '.join(_ONES[int(d)] for d in m.group(2))}"


def _abbreviation(m: re.Match) -> str:
    word = m.group(1)
    full = _ABBREVIATIONS[word.lower()]
    return full.capitalize() if word[0].isupper() else full


_ABBREV_RE = re.compile(r"\b(" + "|".join(re.escape(a) for a in sorted(_ABBREVIATIONS, key=len, reverse=True))
                        + r")\.(?=\s|$|,)", re.IGNORECASE)


def normalize_text(text: str) -> str:
    """Spell out numbers, currency, percentages, abbreviations and symbols; ASCII-fold letters; one space
    between words. Characters it cannot spell remain (see :func:`unspeakable`)."""
    t = unicodedata.normalize("NFKC", str(text))
    t = t.replace("\u2019", "'").replace("\u2018", "'").replace("\u201c", '"').replace("\u201d", '"')
    t = re.sub("[\u2013\u2014]", ", ", t)  # dashes read as a pause
    t = "".join(c for c in unicodedata.normalize("NFKD", t) if not unicodedata.combining(c))  # é -> e
    t = _ABBREV_RE.sub(_abbreviation, t)
    t = re.sub(r"([$£€])\s?(" + _NUM + r")(?:\.(\d{1,2}))?\b", _money, t)
    t = re.sub(r"(" + _NUM + r")\s?%", lambda m: number_to_words(_int(m.group(1))) + " percent", t)
    t = re.sub(r"\b(\d+)(st|nd|rd|th)\b", lambda m: ordinal_words(int(m.group(1))), t)
    t = re.sub(r"(\d+)\.(\d+)", _decimal, t)
    t = re.sub(r"\d{1,3}(?:,\d{3})+|\d+", lambda m: number_to_words(_int(m.group(0)) % 10**15), t)
    t = t.replace("&", " and ").replace("+", " plus ").replace("=", " equals ").replace("@", " at ")
    t = re.sub(r"[\[{]", "(", re.sub(r"[\]}]", ")", t))
    t = re.sub(r"[;:]", ",", t)
    t = re.sub(r"\s+([,.!?])", r"\1", re.sub(r"\s+", " ", t))
    return re.sub(r"^[,\s]+", "", t).strip()


_SPEAKABLE = re.compile(r"[A-Za-z0-9 !'(),\-.:;?\"\n\t]")


def unspeakable(text: str) -> list[str]:
    """The distinct characters of normalised ``text`` the front end cannot speak (in order of appearance)."""
    seen: dict[str, None] = {}
    for c in text:
        if not _SPEAKABLE.fullmatch(c):
            seen.setdefault(c, None)
    return list(seen)


def has_words(text: str) -> bool:
    return re.search(r"[A-Za-z0-9]", text) is not None


def split_sentences(text: str, max_chars: int = 200) -> list[str]:
    """``text`` cut at sentence ends (. ! ?) into parts of at most ``max_chars`` characters where it can be
    (a longer sentence is cut at commas, then at spaces); parts without a letter or digit are dropped."""
    parts: list[str] = []
    for sent in re.split(r"(?<=[.!?])\s+", text.strip()):
        pieces = [sent] if len(sent) <= max_chars else re.split(r"(?<=[,;:])\s+", sent)
        packed: list[str] = []
        for piece in pieces:  # commas: as many clauses per part as fit
            if packed and len(packed[-1]) + 1 + len(piece) <= max_chars:
                packed[-1] += " " + piece
            else:
                packed.append(piece)
        for piece in packed:
            while len(piece) > max_chars:
                cut = piece.rfind(" ", 0, max_chars)
                cut = cut if cut > 0 else max_chars
                parts.append(piece[:cut])
                piece = piece[cut:].strip()
            parts.append(piece)
    return [p.strip() for p in parts if has_words(p)]


def intersperse(ids: list[int], blank: int = 0) -> list[int]:
    """``[a, b]`` -> ``[blank, a, blank, b, blank]``."""
    out = [blank] * (2 * len(ids) + 1)
    out[1::2] = ids
    return out


@dataclass
class Phonemes:
    """One text through the front end: the normalised text, its IPA string and the symbol ids."""

    text: str
    ipa: str
    ids: list[int]


class FrontEnd:
    """Text -> symbol ids with espeak-ng (``language``) through phonemizer; ``symbols``: the table (a run's
    own, default :data:`SYMBOLS`); ``add_blank``: blanks between symbols."""

    def __init__(self, symbols=SYMBOLS, language: str = "en-us", add_blank: bool = True):
        self.symbols = tuple(symbols)
        if not self.symbols or self.symbols[0] != BLANK:
            raise HoldsgmError(f"a symbol table starts with the blank {BLANK!r}")
        self.index = {s: i for i, s in enumerate(self.symbols)}
        self.language, self.add_blank = language, add_blank
        self._backend = None

    def _phonemizer(self):
        if self._backend is None:
            try:
                from phonemizer.backend import EspeakBackend
            except ImportError as e:
                raise HoldsgmError(f"text-to-speech needs the package 'phonemizer' ({e}); install the audio "
                                   f"extras: pip install 'holdsgm[audio]'") from None
            logging.getLogger("phonemizer").setLevel(logging.ERROR)
            try:
                self._backend = EspeakBackend(self.language, preserve_punctuation=True, with_stress=True)
            except RuntimeError as e:
                raise HoldsgmError(f"phonemizer cannot use espeak-ng ({e}); install it: apt-get install "
                                   f"espeak-ng") from None
        return self._backend

    def phonemize(self, texts: list[str]) -> list[str]:
        """IPA strings of already normalised texts (one espeak-ng call for all of them)."""
        if not texts:
            return []
        out = self._phonemizer().phonemize(list(texts), strip=True, njobs=1)
        return [re.sub(r"\s+", " ", s).strip() for s in out]

    def ids(self, ipa: str, unknown: set[str] | None = None) -> list[int]:
        """Symbol ids of an IPA string (blanks added if on); characters outside the table are skipped and
        collected in ``unknown``."""
        out = []
        for c in ipa:
            i = self.index.get(c)
            if i is None or i == 0:
                if unknown is not None and c != BLANK:
                    unknown.add(c)
                continue
            out.append(i)
        return intersperse(out) if self.add_blank else out

    def encode_many(self, texts: list[str]) -> list[Phonemes]:
        """Normalise and phonemise ``texts`` (already checked to be speakable; corpus texts)."""
        norm = [normalize_text(t) for t in texts]
        unknown: set[str] = set()
        out = [Phonemes(n, ipa, self.ids(ipa, unknown)) for n, ipa in zip(norm, self.phonemize(norm))]
        if unknown:
            log.warning("phonemes outside the symbol table were skipped: %s", " ".join(sorted(unknown)))
        return out

    def encode(self, text: str) -> Phonemes:
        """One text a user gave: normalised; characters it cannot speak are dropped with a warning naming
        them; HoldsgmError when nothing speakable is left (empty text, only punctuation)."""
        norm = normalize_text(text)
        bad = unspeakable(norm)
        if bad:
            log.warning("dropped character(s) the front end cannot speak: %s",
                        " ".join(repr(c) for c in bad))
            norm = re.sub(r"\s+", " ", "".join(c for c in norm if c not in bad)).strip()
        if not has_words(norm):
            raise HoldsgmError(f"nothing to say in {text[:60]!r}: the text has no letters or digits")
        (ph,) = self.encode_many([norm])
        if len([i for i in ph.ids if i]) == 0:
            raise HoldsgmError(f"nothing to say in {text[:60]!r}: espeak-ng gave no phonemes")
        return ph
