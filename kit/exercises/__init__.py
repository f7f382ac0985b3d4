"""Predict-then-check exercises for the notebooks: seeded scenarios and their checks.

One module per notebook (``ex01`` for ``01-...``).  A check takes the student's
prediction, computes the answer with the model and returns a short verdict;
``reveal(n)`` gives the answer itself and ``question(n)`` prints the question
with its unit and how close counts.  In the spirit of OSTEP's ``-c`` flag.

What a check accepts (the same in every notebook):

* a number: ``4096``, ``4096.0``, a numpy number;
* the number as text: ``"4096"``, ``"4,096"``, ``"4 096"`` or ``"4_096"`` (digits in
  groups of three), ``"1.5e3"``, optionally followed by the question's unit
  (``"4096 MiB"``); hex (``"0xc0000"`` or ``0xc0000``) only where the question says so;
* for a choice, one of the listed words, in any case.

Anything else gets one line saying what to write, never a traceback.  A wrong
number is told which way and by about how much it misses, and the exact answer
is left to ``reveal(n)``, so there is a second try.  A slip of unit (percent for
a fraction, ms for s, bits for bytes, KiB for MiB, bytes for pages, ...) is
recognised and named.
"""
from __future__ import annotations

import math
import numbers
import re
from dataclasses import dataclass, field

__all__ = ["Verdict", "Notice", "Question", "read_number", "judge_number", "judge_choice",
           "check_number", "check_choice", "Exercises"]


@dataclass
class Verdict:
    correct: bool
    message: str
    pending: bool = False      # no prediction yet: nothing to judge
    unreadable: bool = False   # the prediction could not be read as an answer

    @classmethod
    def ask(cls, message) -> "Verdict":
        """The verdict before the student has predicted anything."""
        return cls(False, message, pending=True)

    @classmethod
    def cannot_read(cls, message) -> "Verdict":
        """The verdict on an input that is no answer at all: says what to write instead."""
        return cls(False, message, unreadable=True)

    def __repr__(self):
        if self.pending:
            head = "Your turn: "
        elif self.unreadable:
            head = "Cannot read that: "
        else:
            head = "Correct: " if self.correct else "Not quite: "
        return head + self.message


class Notice(str):
    """A one-line message shown in place of a result (for example ``reveal(4)`` of three)."""

    def __repr__(self):
        return str(self)


ASK = "write your prediction first (the answer is hidden until you do)"

# -- units ---------------------------------------------------------------------
# Each unit a question may ask in, with the words a student may type after the number
# and the other units one might slip into: (name, factor), where a prediction in that
# unit is the answer times the factor.
_UNIT_WORDS = {
    "": (),
    "fraction": (),
    "bytes": ("b", "byte", "bytes"),
    "MiB": ("mib", "mb"),
    "s": ("s", "sec", "second", "seconds"),
    "ms": ("ms", "msec", "millisecond", "milliseconds"),
    "ns": ("ns", "nanosecond", "nanoseconds"),
    "pages": ("page", "pages"),
    "polls": ("poll", "polls"),
    "syncs": ("sync", "syncs"),
    "blocks": ("block", "blocks"),
}
_SLIPS = {
    "fraction": (("a percentage", 100.0),),
    "bytes": (("bits", 8.0), ("KiB", 1 / 1024), ("pages of 4 KiB", 1 / 4096)),
    "MiB": (("KiB", 1024.0), ("GiB", 1 / 1024), ("bytes", 1024.0 * 1024), ("pages of 4 KiB", 256.0),
            ("MB of 10^6 bytes", 1.048576)),
    "s": (("milliseconds", 1000.0), ("minutes", 1 / 60)),
    "ms": (("seconds", 1 / 1000), ("microseconds", 1000.0)),
    "ns": (("microseconds", 1 / 1000), ("seconds", 1e-9)),
    "pages": (("bytes", 4096.0), ("KiB", 4.0), ("MiB", 1 / 256), ("GiB", 1 / 262144)),
    "blocks": (("pages of 4 KiB", 1024.0), ("2 MiB blocks", 2.0)),
}
_OTHER_UNIT_WORDS = {
    "%": "a percentage", "percent": "a percentage", "kib": "KiB", "kb": "KiB", "gib": "GiB",
    "gb": "GiB", "bits": "bits", "bit": "bits", "us": "microseconds", "µs": "microseconds",
    "min": "minutes", "minutes": "minutes",
}


@dataclass(frozen=True)
class Question:
    """One exercise's question: what to give, in which unit, and how close counts.

    ``rel`` and ``abs_`` are the tolerances (the larger wins); both 0 means exact.
    ``integer``: the answer is a whole number, so 786432.5 is no answer.  ``hex_ok``:
    the question allows hex.  ``choices``: for a choice, the words accepted.
    """
    text: str
    unit: str = ""
    rel: float = 0.0
    abs_: float = 0.0
    integer: bool = False
    hex_ok: bool = False
    choices: tuple = ()
    example: str = ""
    notes: tuple = field(default=())

    def tolerance(self) -> str:
        """How close counts, in words: 'exact', 'within 10 %', 'within 0.02', 'one off counts'."""
        if self.choices:
            return "one of " + ", ".join(map(repr, self.choices))
        if not self.rel and not self.abs_:
            return "exact"
        if self.integer and self.abs_ == 1 and not self.rel:
            return "one off"
        parts = []
        if self.rel:
            parts.append(f"within {_pct(self.rel)}")
        if self.abs_:
            parts.append(f"within {_num(self.abs_)}{_unit_suffix(self.unit)}")
        return " or ".join(parts)

    def how_to_answer(self) -> str:
        if self.choices:
            return f"Answer {' or '.join(map(repr, self.choices))}."
        unit = {"": "a number", "fraction": "a fraction between 0 and 1"}.get(
            self.unit, f"a number of {self.unit}")
        kind = "a whole number" if self.integer and self.unit in ("", "fraction") else unit
        if self.integer and self.unit not in ("", "fraction"):
            kind = f"a whole number of {self.unit}"
        hexes = ", in decimal or in hex (0x...)" if self.hex_ok else ""
        close = self.tolerance()
        close = {"exact": "It must be exact.", "one off": "One off counts."}.get(
            close, f"Counts if {close} of the answer.")
        return f"Give {kind}{hexes}. {close}"

    def __str__(self):
        return f"{self.text}\n{self.how_to_answer()}"


def _pct(x: float) -> str:
    p = 100 * x
    return f"{p:.0f} %" if abs(p - round(p)) < 1e-9 else f"{p:g} %"


def _num(x: float) -> str:
    if float(x).is_integer():
        return f"{int(x):,}"
    return f"{x:g}"


def _unit_suffix(unit: str) -> str:
    return "" if unit in ("", "fraction") else f" {unit}"


def _example(q: Question) -> str:
    if q.example:
        return q.example
    return {"fraction": "0.5", "s": "2.5", "ms": "250"}.get(q.unit, "4096")


# -- reading a prediction -------------------------------------------------------
_GROUPED = re.compile(r"^[+-]?[1-9]\d{0,2}(?:[ ,_\u00a0\u202f]\d{3})+(?:\.\d*)?$")
_NUMBER = re.compile(r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$")
_HEX = re.compile(r"^[+-]?0[xX][0-9a-fA-F_]+$")


def read_number(prediction, q: Question):
    """``(value, None)`` if ``prediction`` reads as a number for question ``q``, else
    ``(None, message)`` with one line saying what to write."""
    give = f"give a number, e.g. {_example(q)}"
    if isinstance(prediction, bool):
        return None, f"{prediction} is a truth value; {give}"
    if isinstance(prediction, numbers.Number) and not isinstance(prediction, complex):
        value = float(prediction) if not isinstance(prediction, numbers.Integral) else int(prediction)
    elif isinstance(prediction, str):
        value, err = _read_text(prediction, q, give)
        if err:
            return None, err
    else:
        return None, f"{type(prediction).__name__} is not a number; {give}"
    if isinstance(value, float) and not math.isfinite(value):
        return None, f"{prediction!r} is not a finite number; {give}"
    if q.integer:
        if isinstance(value, float) and not value.is_integer():
            of = f" of {q.unit}" if q.unit not in ("", "fraction") else ""
            return None, (f"the answer is a whole number{of}, and {value!r} is not one; round it, "
                          f"or look again at what you counted")
        value = int(value)
    return value, None


def _read_text(text: str, q: Question, give: str):
    s = text.strip()
    if not s:
        return None, f"that is empty; {give}"
    low = s.lower()
    if re.match(r"^[+-]?0[xX]", s) and not _HEX.match(s):
        return None, f"cannot read {text.strip()!r} as hex; {give}"
    # a unit after the number: the question's own is fine, another is named
    m = re.match(r"^(.*?\d)\s*([a-zA-Zµ%]+)$", s)
    if m and not _HEX.match(s):
        s, word = m.group(1).strip(), m.group(2).lower()
        if word in _UNIT_WORDS.get(q.unit, ()):
            pass
        elif word in ("%", "percent") and q.unit == "fraction":
            return None, (f"{text.strip()!r} is a percentage; give a fraction between 0 and 1 "
                          f"(50 % is 0.5)")
        elif q.unit in ("", "fraction"):
            return None, f"{text.strip()!r} has a unit, and this answer has none; {give}"
        else:
            named = _OTHER_UNIT_WORDS.get(word) or next(
                (u for u, words in _UNIT_WORDS.items() if word in words), repr(word))
            return None, f"{text.strip()!r} is in {named}, but the question asks for {q.unit}; {give}"
        low = s.lower()
    if _HEX.match(s):
        if not q.hex_ok:
            return None, f"{text.strip()!r} is hex, and this question wants decimal; {give}"
        return int(s.replace("_", ""), 16), None
    if _GROUPED.match(s):
        s = re.sub(r"[ ,_\u00a0\u202f]", "", s)
    elif re.search(r"\d,\d", s):
        return None, (f"cannot read {text.strip()!r}: use a point for decimals (0.5) and "
                      f"group thousands by threes (4,096)")
    if _NUMBER.match(s):
        return float(s) if any(c in s for c in ".eE") else int(s), None
    if low in ("nan", "inf", "-inf", "infinity"):
        return None, f"{text.strip()!r} is not a finite number; {give}"
    return None, f"cannot read {text.strip()!r} as a number; {give}"


# -- judging --------------------------------------------------------------------
def _within(value, answer, q: Question) -> bool:
    return abs(value - answer) <= max(q.abs_, q.rel * abs(answer)) + 1e-12 * max(1.0, abs(answer))


def _miss(value, answer, q: Question) -> str:
    """Which way the prediction misses, and by about how much (never the answer itself)."""
    high = value > answer
    way = "too high" if high else "too low"
    if answer == 0:
        return f"{way}"
    exact_small = (not q.rel and not q.abs_ and abs(answer) < 20)
    if exact_small:
        return way
    if value != 0 and (value / answer >= 2 or value / answer <= 0.5) and value / answer > 0:
        f = value / answer if high else answer / value
        return f"{way} by a factor of about {_round_factor(f)}"
    r = abs(value - answer) / abs(answer)
    allowed = max(q.rel, q.abs_ / abs(answer))
    if allowed and r < 2 * allowed:
        return f"{way}, just outside what counts"
    if r < 0.01:
        return f"{way} by less than 1 %"
    if r < 0.1:
        return f"{way} by about {max(1, round(100 * r))} %"
    return f"{way} by about {round(10 * r) * 10} %"


def _round_factor(f: float) -> str:
    if f < 10:
        return f"{round(f * 2) / 2:g}"
    return f"{float(f'{f:.1g}'):,.0f}"


def _slip(value, answer, q: Question):
    """The unit the prediction would be right in, if it is one of the usual slips."""
    if answer == 0:
        return None
    probe = Question(q.text, q.unit, rel=max(q.rel, 0.02), abs_=0.0)
    for name, factor in _SLIPS.get(q.unit, ()):
        if _within(value, answer * factor, probe):
            return name
    return None


def _fmt(value, q: Question) -> str:
    if q.hex_ok and isinstance(value, int):
        return f"{value:#x} ({value:,})"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:,.6g}" if abs(value) < 1e6 else f"{value:,.0f}"


def judge_number(prediction, answer, q: Question, *, why: str = "", hint: str = "",
                 mistakes=(), reveal_hint: str = "reveal(n)") -> Verdict:
    """The verdict on a numeric prediction.

    ``why``: the reason, shown with a right answer (may give figures).  ``hint``: a
    nudge for a wrong answer, which must not give the answer away.  ``mistakes``:
    ``(predicate, message)`` pairs for known wrong roads, tried before the generic
    miss.  ``reveal_hint``: the call that shows the answer, e.g. ``"ex04.reveal(2)"``.
    """
    if prediction is None:
        return Verdict.ask(ASK)
    value, err = read_number(prediction, q)
    if err:
        return Verdict.cannot_read(err)
    unit = _unit_suffix(q.unit)
    if _within(value, answer, q):
        close = "" if value == answer else f" ({q.tolerance()} counts)"
        msg = f"the answer is {_fmt(answer, q)}{unit}; you said {_fmt(value, q)}{unit}{close}."
        return Verdict(True, msg + (f" {why}" if why else ""))
    for pred, text in mistakes:
        if pred(value):
            return Verdict(False, f"you said {_fmt(value, q)}{unit}. {text} "
                                  f"Try again, or see {reveal_hint}.")
    slip = _slip(value, answer, q)
    if slip:
        how = "as" if slip.startswith("a ") else "in"
        return Verdict(False, f"you said {_fmt(value, q)}{unit}, which looks like the answer {how} "
                              f"{slip}. The question asks for {_ask_unit(q)}; convert and try again.")
    msg = f"you said {_fmt(value, q)}{unit}, {_miss(value, answer, q)} ({_counts(q)})."
    if hint:
        msg += f" {hint}"
    return Verdict(False, msg + f" Try again, or see {reveal_hint}.")


def _counts(q: Question) -> str:
    t = q.tolerance()
    return "it must be exact" if t == "exact" else f"{t} counts"


def _ask_unit(q: Question) -> str:
    return {"fraction": "a fraction between 0 and 1", "": "a plain number"}.get(q.unit, q.unit)


def judge_choice(prediction, answer, q: Question, *, why: str = "", hint: str = "") -> Verdict:
    """The verdict on a choice: any case, surrounding spaces ignored; numbers may be text."""
    if prediction is None:
        return Verdict.ask(f"write your prediction first: {' or '.join(map(repr, q.choices))}")
    pick = _match_choice(prediction, q.choices)
    if pick is None:
        return Verdict.cannot_read(f"{prediction!r} is not one of the choices; answer "
                                   f"{' or '.join(map(repr, q.choices))}")
    if pick == answer:
        return Verdict(True, f"the answer is {answer!r}." + (f" {why}" if why else ""))
    msg = f"the answer is {answer!r}, not {pick!r}."
    return Verdict(False, msg + (f" {hint}" if hint else (f" {why}" if why else "")))


def _match_choice(prediction, choices):
    for c in choices:
        if isinstance(c, str) and isinstance(prediction, str) and prediction.strip().lower() == c.lower():
            return c
        if not isinstance(c, str) and not isinstance(prediction, bool):
            if isinstance(prediction, numbers.Number) and prediction == c:
                return c
            if isinstance(prediction, str):
                try:
                    if float(prediction.strip()) == c:
                        return c
                except ValueError:
                    pass
    return None


# -- the older helpers, kept for callers ----------------------------------------
def check_number(prediction, answer, *, rel=0.0, abs_=0.0, unit="") -> Verdict:
    """Compare a numeric prediction with ``answer`` within rel/abs tolerance (see :func:`judge_number`)."""
    unit = unit.strip()
    return judge_number(prediction, answer, Question("", unit, rel=rel, abs_=abs_))


def check_choice(prediction, answer, choices) -> Verdict:
    return judge_choice(prediction, answer, Question("", choices=tuple(choices)))


# -- one notebook's exercises -----------------------------------------------------
class Exercises:
    """The numbered exercises of one notebook: ``question(n)``, ``reveal(n)``, ``scenario(n)``.

    A number that is no exercise (``reveal(4)`` of three) or a number written as text
    (``reveal('2')``) gets a plain answer, not a KeyError.
    """

    def __init__(self, module: str, questions: dict, answers: dict, scenarios: dict | None = None):
        self.module, self.questions, self.answers = module, questions, answers
        self.scenarios = scenarios or {}

    def _n(self, n):
        if isinstance(n, str) and n.strip().isdigit():
            n = int(n.strip())
        if isinstance(n, bool) or not isinstance(n, numbers.Integral) or int(n) not in self.answers:
            have = sorted(self.answers)
            listed = ", ".join(map(str, have[:-1])) + f" and {have[-1]}" if len(have) > 1 else str(have[0])
            word = "exercises" if len(have) > 1 else "exercise"
            return None, Notice(f"{self.module} has {word} {listed}; there is no exercise {n!r}. "
                                f"Try {self.module}.reveal({have[0]}).")
        return int(n), None

    def reveal(self, n):
        k, notice = self._n(n)
        return notice if notice is not None else self.answers[k]()

    def question(self, n):
        k, notice = self._n(n)
        return notice if notice is not None else Notice(str(self.questions[k]))

    def scenario(self, n, fmt=None):
        k, notice = self._n(n)
        if notice is not None:
            return notice
        items = self.scenarios.get(k, {})
        show = fmt or (lambda key, v: str(v))
        width = max((len(key) for key in items), default=0)
        return Notice("\n".join(f"{key:>{width}}: {show(key, v)}" for key, v in items.items()))
