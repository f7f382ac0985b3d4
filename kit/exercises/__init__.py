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

    def __repr__(self):
        return ("Correct: " if self.correct else "Not quite: ") + self.message


def check_number(prediction, answer, *, rel=0.0, abs_=0.0, unit="") -> Verdict:
    """Compare a numeric prediction with the model's answer (within rel/abs tolerance)."""
    if prediction is None:
        return Verdict(False, f"write your prediction first (the answer is hidden until you do)")
    ok = abs(prediction - answer) <= max(abs_, rel * abs(answer))
    tol = f" (within {rel:.0%})" if rel else ""
    return Verdict(ok, f"the model says {answer}{unit}; you said {prediction}{unit}{tol}")


def check_choice(prediction, answer, choices) -> Verdict:
    if prediction not in choices:
        return Verdict(False, f"choose one of {', '.join(map(repr, choices))}")
    return Verdict(prediction == answer, f"the answer is {answer!r}; you said {prediction!r}")
