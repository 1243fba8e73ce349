"""The README's set-up commands stay true: CI runs exactly its test command."""
from __future__ import annotations

from helpers import ROOT


def _first_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = text.split("```bash", 1)[1].split("```", 1)[0]
    return [line.strip() for line in block.strip().splitlines() if line.strip() and not line.startswith("#")]


def test_readme_opens_with_install_and_test_commands() -> None:
    install, tests = _first_commands()[:2]
    assert "pip install" in install and "archsim run arch_configs/trio.yaml --model efficientvit_b1" in install
    assert "pytest" in tests


def test_ci_runs_the_readme_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert _first_commands()[1] in [line.strip() for line in ci]
