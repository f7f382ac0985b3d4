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


def check_number(prediction, answer, *, rel=0.0, abs_=0.0, unit="") -> Verdict:
    """Compare a numeric prediction with the model's answer (within rel/abs tolerance)."""
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
