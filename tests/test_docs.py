"""The README is part of the product: every command is documented, the two commands are real."""

from __future__ import annotations

import re
import subprocess
import sys

import typer.main

from engine.cli import COMMAND_MODULES, app, main  # noqa: F401
from tests.conftest import ROOT

README = (ROOT / "README.md").read_text()


def registered_commands() -> list[str]:
    import engine.cli.campaigns
    import engine.cli.daemon
    import engine.cli.data
    import engine.cli.demo
    import engine.cli.learning
    import engine.cli.preview
    import engine.cli.privacy
    import engine.cli.report
    import engine.cli.segments
    import engine.cli.serve  # noqa: F401

    group = typer.main.get_group(app)
    return sorted(group.commands)


def test_every_command_is_in_the_command_reference() -> None:
    commands = registered_commands()
    assert {"demo", "validate", "import", "plan", "send"} <= set(commands)
    for name in commands:
        assert re.search(rf"`kairos {name}\b", README), f"`kairos {name}` is not documented in README.md"


def test_each_command_is_registered_by_the_module_it_is_loaded_from() -> None:
    registered_commands()
    group = typer.main.get_group(app)
    found = {name: getattr(command.callback, "__module__", None) for name, command in group.commands.items()}
    for name in ("privacy", "segments"):  # groups: their subcommands' module
        subgroup = group.commands[name]
        assert isinstance(subgroup, typer.core.TyperGroup)
        found[name] = {getattr(c.callback, "__module__", None) for c in subgroup.commands.values()}.pop()
    assert found == {name: f"engine.cli.{module}" for name, module in COMMAND_MODULES.items()}


def test_a_command_loads_its_own_module_and_help_loads_every_one() -> None:
    probe = ("import sys\nfrom engine.cli import load_commands\nload_commands(sys.argv[1:])\n"
             "print(sorted(m for m in sys.modules if m.startswith('engine.cli.')))")

    def loaded(*argv: str) -> str:
        result = subprocess.run([sys.executable, "-c", probe, *argv], cwd=ROOT, capture_output=True, text=True,
                                check=True)
        return result.stdout.strip()

    assert loaded("send", "news", "--workers", "2") == "['engine.cli.campaigns', 'engine.cli.common']"
    assert "'engine.cli.daemon'" in loaded("daemon") and "'engine.cli.demo'" not in loaded("daemon")
    everything = sorted({f"engine.cli.{m}" for m in COMMAND_MODULES.values()} | {"engine.cli.common"})
    assert loaded("--help") == loaded("no-such-command") == loaded("--help", "send") == str(everything)
    result = subprocess.run([sys.executable, "-m", "engine", "send", "--help"], cwd=ROOT, capture_output=True,
                            text=True, check=True)
    assert "Example: kairos send" in " ".join(result.stdout.split())


def test_every_command_has_help_with_an_example() -> None:
    group = typer.main.get_group(app)
    for name, command in group.commands.items():
        assert command.help and "Example: kairos" in " ".join(command.help.split()), \
            f"kairos {name} needs help with an example"


def test_ci_runs_the_readme_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    assert "bash scripts/test.sh" in README
    assert re.search(r"^bash scripts/test\.sh$", ci, re.MULTILINE)
    assert "pip install -e . && kairos demo" in README


def test_every_config_key_is_documented() -> None:
    from engine.config import SCHEMA

    for section, keys in SCHEMA.items():
        for key in keys:
            if section.startswith("push."):
                assert f"`{section}.*`" in README
                continue
            assert f"`{section}.{key}`" in README, f"{section}.{key} not in README"


def test_every_campaign_key_is_documented() -> None:
    from engine.spec.load import SECTIONS

    for section, keys in SECTIONS.items():
        for key in keys:
            prefix = f"{section}[]" if section == "variants" else section
            assert f"`{prefix}.{key}`" in README, f"campaign key {prefix}.{key} not in README"
