"""Predict-then-check exercises for the notebooks: seeded scenarios and their checks.

One module per notebook (``ex01`` for ``01-...``).  A check takes the student's
prediction, computes the answer with the model and returns a short verdict;
``reveal()`` gives the answer itself.  In the spirit of OSTEP's ``-c`` flag.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Verdict:
    correct: bool
    message: str
    pending: bool = False      # no prediction yet: nothing to judge

    @classmethod
    def ask(cls, message) -> "Verdict":
        """The verdict before the student has predicted anything."""
        return cls(False, message, pending=True)

    def __repr__(self):
        head = "Your turn: " if self.pending else ("Correct: " if self.correct else "Not quite: ")
        return head + self.message


def read_number(prediction):
    """A prediction as a number: numbers as they are, strings such as "4096", "4,096" or
    "1e3" read as numbers; None stays None.  Raises ValueError for anything else."""
    if prediction is None:
        return None
    if isinstance(prediction, bool):
        raise ValueError("True and False are not numbers here")
    if isinstance(prediction, str):
        text = prediction.strip().replace(",", "").replace("_", "")
        value = float(text)
        plain = "." not in text and "e" not in text.lower()
        return int(value) if plain and value.is_integer() else value
    float(prediction)                  # numbers and numpy numbers pass; anything else raises
    return prediction


def check_number(prediction, answer, *, rel=0.0, abs_=0.0, unit="") -> Verdict:
    """Compare a numeric prediction with the model's answer (within rel/abs tolerance).

    A string that reads as a number counts as that number; anything else is not judged."""
    try:
        prediction = read_number(prediction)
    except (TypeError, ValueError):
        return Verdict(False, "give a number, e.g. 4096")
    if prediction is None:
        return Verdict.ask("write your prediction first (the answer is hidden until you do)")
    ok = abs(prediction - answer) <= max(abs_, rel * abs(answer))
    tol = f" (within {rel:.0%})" if rel else ""
    return Verdict(ok, f"the model says {answer}{unit}; you said {prediction}{unit}{tol}")


def check_choice(prediction, answer, choices) -> Verdict:
    if prediction is None:
        return Verdict.ask(f"write your prediction first: one of {', '.join(map(repr, choices))}")
    if prediction not in choices:
        return Verdict(False, f"choose one of {', '.join(map(repr, choices))}")
    return Verdict(prediction == answer, f"the answer is {answer!r}; you said {prediction!r}")
