"""The ``cxr-dash`` command (``cxr_dash/__main__.py``): its subcommands are the package's tools."""
from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from cxr_dash.__main__ import commands, main

ROOT = Path(__file__).resolve().parent.parent
TOOLS = ("train", "evaluate", "tune", "position", "recalibrate", "pack")


def test_every_tool_of_the_package_is_a_subcommand():
    table = commands()
    assert set(TOOLS) <= set(table)
    for name, (module, summary) in table.items():
        assert module == "cxr_dash." + name.replace("-", "_")
        assert summary and "``" not in summary and "\n" not in summary, (name, summary)
    assert table["train"][1] == "Train per-region U-Nets"
    assert not {"cli", "inference", "regions"} & set(table)     # helpers, not tools


def test_help_lists_each_subcommand_on_one_line(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    lines = capsys.readouterr().out.splitlines()
    for name, (_, summary) in commands().items():
        assert f"  {name} " in "\n".join(lines)
        assert any(line.split() == [name, *summary.split()] for line in lines), name


def test_a_subcommand_gets_every_argument_after_its_name(monkeypatch):
    import cxr_dash.pack

    seen = []
    monkeypatch.setattr(cxr_dash.pack, "main", lambda argv: seen.append(argv) or 3)
    assert main(["pack", "--region", "heart", "--out", "x"]) == 3
    assert seen == [["--region", "heart", "--out", "x"]]


def test_no_or_an_unknown_subcommand_is_a_usage_error(capsys):
    assert main([]) == 2
    assert "train" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_:
        main(["trian"])
    assert exit_.value.code == 2 and "invalid choice" in capsys.readouterr().err


def test_python_m_cxr_dash_runs_a_tool():
    result = subprocess.run([sys.executable, "-m", "cxr_dash", "pack", "--help"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: python -m cxr_dash.pack")


def test_the_console_script_is_this_main():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["scripts"] == {"cxr-dash": "cxr_dash.__main__:main"}
