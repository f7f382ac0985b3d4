"""docs/answers.md is exactly what tools/exercise_answers.py prints (answers never drift)."""
import importlib.util
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _tool():
    spec = importlib.util.spec_from_file_location("exercise_answers",
                                                  os.path.join(ROOT, "tools", "exercise_answers.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_answers_file_matches_the_script():
    tool = _tool()
    with open(tool.OUT, encoding="utf-8") as f:
        committed = f.read()
    assert committed == tool.render(), (
        "docs/answers.md is out of date: run PYTHONPATH=. .venv/bin/python tools/exercise_answers.py --write")


def test_every_exercise_has_its_answer_and_reason():
    tool = _tool()
    text = tool.render()
    for k in tool.NOTEBOOKS:
        mod = importlib.import_module(f"kit.exercises.ex{k:02d}")
        assert len(tool.checks_in_order(mod)) == len(mod.QUESTIONS)
    n = sum(len(importlib.import_module(f"kit.exercises.ex{k:02d}").QUESTIONS) for k in tool.NOTEBOOKS)
    assert text.count("### Exercise") == text.count("**Answer.**") == text.count("**Why.**") == n
    assert "you said" not in text
