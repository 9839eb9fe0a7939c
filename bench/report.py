"""Printing of benchmark figures: a header with the machine, aligned figure lines, and one verdict per goal."""

from __future__ import annotations

import json
import shlex
import sys

from . import machine


class Report:
    def __init__(self, title: str):
        self.title = title
        self.goals: list[dict] = []
        print(f"== {title}")
        print(f"command: {shlex.join([sys.executable.rsplit('/', 1)[-1], '-m', _module_name(), *sys.argv[1:]])}")
        print(f"machine: {machine.describe()}")

    def section(self, name: str) -> None:
        print(f"-- {name}")

    def figure(self, name: str, value: str, baseline: str = "") -> None:
        """Print one figure, with the baseline measured in the same run beside it when there is one."""
        line = f"  {name:<44} {value:>16}"
        if baseline:
            line += f"   baseline {baseline}"
        print(line, flush=True)

    def goal(self, name: str, measured: float, limit: float, unit: str, *, at_least: bool = False) -> bool:
        """Print the verdict of one goal: measured against limit (a maximum, or a minimum with at_least)."""
        met = measured >= limit if at_least else measured <= limit
        relation = ">=" if at_least else "<="
        verdict = "met" if met else "MISSED"
        print(f"goal: {name}: {measured:.3f} {unit} (goal {relation} {limit:.3f} {unit}) {verdict}", flush=True)
        self.goals.append({"goal": name, "measured": round(measured, 4), "limit": round(limit, 4),
                           "unit": unit, "met": met})
        return met

    def finish(self) -> None:
        print("summary: " + json.dumps({"benchmark": self.title, "goals": self.goals}), flush=True)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


def _module_name() -> str:
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    return spec.name if spec is not None else sys.argv[0]
