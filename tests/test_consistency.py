"""One scenario, one run: every entry point gives the same figures for the same scenario.

Each case is run through every door whose parameters can express it: ``kit.scenario.run``,
``migration.migrate``, ``python -m kit migrate --json`` (in-process), ``beyond.run_point``
and ``beyond.make``, ``viz.performance.run_point``, ``viz.player.make_migration``, the lab
model, the calibration's runner, the exercises' runners and the races' ``make_race``.
run()'s cache is cleared before each door, so that every door really runs the model.

Then: a run never changes what it is given (the Scenario, a Guest handed to Migration),
and run()'s cache is keyed by the whole scenario value and hands out copies.
"""
import io
import json
from contextlib import redirect_stdout
from dataclasses import dataclass

import numpy as np
import pytest

from kit import beyond, calibrate
from kit import scenario as sc
from kit.cli import main
from kit.costmodel import get_preset
from kit.exercises import ex02, ex03, ex04
from kit.guest import get_workload
from kit.lab import model as lm
from kit.migration import Migration, migrate
from kit.scenario import Scenario, build, run
from kit.units import GiB, MiB, parse_size
from kit.viz import beyond as bv
from kit.viz import performance as perf
from kit.viz import player, races

SEED_2016 = "seed-2016"
SLOW_LINK = get_preset(SEED_2016).with_(wire_bytes_per_s=1e8)      # changed with with_(), same name


@dataclass(frozen=True)
class Case:
    ram: str
    workload: str
    mode: str
    cost: object = SEED_2016

    @property
    def seed_preset(self) -> bool:
        return self.cost == SEED_2016

    def __str__(self):
        name = self.cost if isinstance(self.cost, str) else "seed-2016 with wire 1e8 B/s"
        return f"{self.ram} {self.workload} {self.mode} on {name}"


CASES = [
    Case("1G", "idle", "original"),
    Case("2G", "hog", "hint"),
    Case("1G", "idle", "original", "tcg-loopback"),
    Case("1G", "hog", "original", SLOW_LINK),
    Case("8G", "hog", "pv"),                      # the seed's size: the calibration's runner too
]

FIGURES = ("total-time", "setup-time", "downtime", "transferred", "normal", "duplicate")


def figures(stats: dict) -> dict:
    """The compared figures of query-migrate statistics."""
    ram = stats["ram"]
    return {"total-time": stats["total-time"], "setup-time": stats["setup-time"],
            "downtime": stats["downtime"], "transferred": ram["transferred"],
            "normal": ram["normal"], "duplicate": ram["duplicate"]}


def beyond_figures(r: dict) -> dict:
    return {"total-time": r["total-ms"], "setup-time": r["setup-ms"], "downtime": r["downtime-ms"],
            "transferred": r["transferred"], "normal": r["normal"], "duplicate": r["duplicate"]}


def perf_figures(r: dict) -> dict:
    return {"total-time": r["total-time-ms"], "setup-time": r["setup-time-ms"],
            "downtime": r["downtime-ms"], "transferred": r["transferred"], "normal": r["normal"],
            "duplicate": r["duplicate"]}


def cli_stats(c: Case) -> dict:
    out = io.StringIO()
    with redirect_stdout(out):
        rc = main(["migrate", "--ram", c.ram, "--workload", c.workload, "--mode", c.mode,
                   "--preset", c.cost, "--json"])
    assert rc == 0
    return json.loads(out.getvalue())


def doors(c: Case) -> dict:
    """{door: a function giving its figures for case ``c``}, for every door that can express it."""
    mib, gib = parse_size(c.ram) // MiB, parse_size(c.ram) // GiB
    d = {
        "kit.scenario.run": lambda: figures(run(Scenario(ram=c.ram, workload=c.workload, mode=c.mode,
                                                         cost=c.cost)).stats),
        "migration.migrate": lambda: figures(migrate(c.ram, c.workload, c.mode, preset=c.cost).stats),
        "beyond.run_point": lambda: beyond_figures(beyond.run_point(c.ram, c.workload, c.mode,
                                                                    preset=c.cost)),
        "beyond.make": lambda: figures(beyond.make(c.ram, c.workload, c.mode, preset=c.cost).run().stats),
        "player.make_migration": lambda: figures(player.make_migration(c.ram, c.workload, c.mode,
                                                                       preset=c.cost).run().stats),
        "lab.model.model_run_mode": lambda: figures(lm.model_run_mode(c.cost, mib, c.workload, c.mode)),
    }
    if isinstance(c.cost, str):
        d["cli migrate --json"] = lambda: figures(cli_stats(c))
    if c.mode in ("original", "hint"):
        d["lab.model.model_run"] = lambda: figures(lm.model_run(c.cost, mib, c.workload, c.mode == "hint"))
    if c.ram == "8G":
        wl = {c.workload: get_workload(c.workload)}
        d["calibrate.run_case"] = lambda: figures(
            calibrate.run_case(get_preset(c.cost), wl, c.workload, c.mode).query_migrate())
    if c.seed_preset:
        d["performance.run_point"] = lambda: perf_figures(perf.run_point(gib, c.workload, c.mode))
        d["viz.beyond._tracked"] = lambda: (bv._TRACKED.clear(), figures(bv._tracked(gib, c.workload,
                                                                                      c.mode)[1]))[1]
        d["ex03._migration"] = lambda: figures(ex03._migration(c.mode, dict(
            ram=c.ram, machine="pc", workload=c.workload, seed=0)).run().stats)
        if c.ram == ex04.RAM:
            d["ex04._run"] = lambda: figures(ex04._run(c.workload, c.mode).query_migrate())
        if c.mode == "pv":
            d["ex02._migration"] = lambda: figures(ex02._migration(dict(
                ram=c.ram, machine="pc", workload=c.workload, seed=0)).run().stats)
            d["races.make_race"] = lambda: figures(races.make_race(c.ram, c.workload, races.RIGHT, seed=0,
                                                                   track_pages=False).run().stats)
    return d


@pytest.mark.parametrize("case", CASES, ids=str)
def test_every_door_gives_the_same_figures(case):
    got = {}
    for name, door in doors(case).items():
        sc.clear_cache()
        got[name] = door()
    want = got["kit.scenario.run"]
    assert set(want) == set(FIGURES)
    differ = {name: f for name, f in got.items() if f != want}
    assert not differ, f"{case}: run() gives {want}; these doors differ: {differ}"


def test_the_cases_reach_every_door():
    reached = set().union(*(doors(c) for c in CASES))
    assert reached == {"kit.scenario.run", "migration.migrate", "cli migrate --json", "beyond.run_point",
                       "beyond.make", "player.make_migration", "lab.model.model_run_mode",
                       "lab.model.model_run", "calibrate.run_case", "performance.run_point",
                       "viz.beyond._tracked", "ex03._migration", "ex04._run", "ex02._migration",
                       "races.make_race"}


def test_the_guest_image_and_the_wire_rate_reach_every_door():
    """The two old bugs: a door that ignored guest_sizes, and one that cached by preset name."""
    idle = lambda cost: beyond.run_point("1G", "idle", "original", preset=cost)
    tcg = get_preset("tcg-loopback")
    assert idle(tcg)["transferred"] < idle(tcg.with_(guest_sizes={}))["transferred"]
    assert idle(tcg)["transferred"] == run(Scenario(ram="1G", cost=tcg))["ram"]["transferred"]
    assert idle(SLOW_LINK)["total-ms"] > 2 * idle(SEED_2016)["total-ms"]
    assert idle(SLOW_LINK)["total-ms"] == run(Scenario(ram="1G", cost=SLOW_LINK))["total-time"]


# -- a run never changes its inputs ---------------------------------------------------------
def guest_state(g) -> dict:
    return {"zero": g.memory.zero.copy(), "version": g.memory.version.copy(), "free": g.buddy.free.copy(),
            "cursor": g.buddy.cursor, "nr_free": g.buddy.nr_free_pages, "time": g.time,
            "working_set": g.working_set.copy(), "rng": g.rng.bit_generator.state}


def assert_same_state(a: dict, b: dict):
    assert a.keys() == b.keys()
    for k in a:
        if isinstance(a[k], np.ndarray):
            assert np.array_equal(a[k], b[k]), k
        else:
            assert a[k] == b[k], k


def test_a_run_does_not_change_its_scenario():
    cost = get_preset("tcg-loopback")
    sizes = dict(cost.guest_sizes)
    s = Scenario(ram="512M", workload="dirtying", mode="pv", cost=cost, verify=True, track_pages=True,
                 inject="guest-reports-used-pages-free", balloon_target="384M")
    before = s.to_json()
    run(s)
    build(s).run()
    run(s, cache=False)
    assert s.to_json() == before
    assert cost.guest_sizes == sizes and get_preset("tcg-loopback").guest_sizes == sizes


@pytest.mark.parametrize("mode,inject", [("pv", "guest-reports-used-pages-free"), ("hint", None),
                                         ("report", None), ("original", None)])
def test_a_migration_does_not_change_a_guest_it_is_handed(mode, inject):
    g = sc.guest(Scenario(ram="256M", workload="dirtying"))
    before = guest_state(g)
    m = Migration(g, mode, verify=True, inject=inject)
    m.run()
    assert m.guest is not g
    assert m.guest.time > 0 and g.time == 0.0               # the copy ran, the guest handed over did not
    assert g.lie_frames is None                              # the lie stays in the migration's copy
    assert (m.guest.lie_frames is not None) == (inject is not None)
    assert_same_state(before, guest_state(g))
    # the same through build(guest=...)
    m2 = build(Scenario(ram="256M", workload="dirtying", mode=mode, verify=True, inject=inject), guest=g)
    m2.run()
    assert m2.guest is not g and g.lie_frames is None
    assert_same_state(before, guest_state(g))
    assert m2.query_migrate()["ram"] == m.query_migrate()["ram"]


# -- the cache is keyed by the whole value ----------------------------------------------------
def test_cost_models_that_differ_only_in_guest_sizes_or_wire_rate_do_not_share_a_result():
    tcg = get_preset("tcg-loopback")
    a, b = Scenario(ram="1G", cost=tcg), Scenario(ram="1G", cost=tcg.with_(guest_sizes={}))
    assert a.key() != b.key()
    assert run(a)["ram"]["transferred"] != run(b)["ram"]["transferred"]
    c, d = Scenario(ram="1G", cost=SEED_2016), Scenario(ram="1G", cost=SLOW_LINK)
    assert SLOW_LINK.name == get_preset(SEED_2016).name and c.key() != d.key()
    assert run(c)["total-time"] != run(d)["total-time"]


def test_the_same_value_gives_the_same_result():
    by_name = Scenario(ram="1G", workload="hog", mode="hint", cost=SEED_2016)
    by_value = Scenario(ram=GiB, workload=get_workload("hog"), mode="hint", cost=get_preset(SEED_2016))
    assert by_name.key() == by_value.key()
    fresh = run(by_value, cache=False)
    assert run(by_name).stats == run(by_value).stats == fresh.stats
    assert run(by_name).timeline == fresh.timeline
    assert Scenario.from_json(by_name.to_json()).key() == by_name.key()


def test_changing_a_result_does_not_change_the_next_one():
    s = Scenario(ram="256M", workload="hog", mode="pv", track_pages=True)
    r = run(s)
    want = (r["ram"]["transferred"], len(r.timeline), r["breakdown-ms"]["setup"])
    r.stats["ram"]["transferred"] = -1
    r.stats["breakdown-ms"]["setup"] = -1.0
    r.timeline.clear()
    with pytest.raises(ValueError):
        r.page_state[0] = 0                                  # read-only
    again = run(s)
    assert (again["ram"]["transferred"], len(again.timeline), again["breakdown-ms"]["setup"]) == want
    p = beyond.run_point("256M", "hog", "pv")
    p["breakdown-ms"]["setup"] = -1.0
    p["transferred"] = -1
    assert beyond.run_point("256M", "hog", "pv")["transferred"] == want[0]
    assert beyond.run_point("256M", "hog", "pv")["breakdown-ms"]["setup"] == want[2]
