"""The one command line: every component is listed, even one whose import fails."""

from __future__ import annotations

import sys

import pytest

from canary_guard import cli


@pytest.fixture
def broken_components(monkeypatch, tmp_path):
    (tmp_path / "cg_broken_component.py").write_text(
        "import json\nraise RuntimeError('bad 100% config at import')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("cg_broken_component", None)
    monkeypatch.setattr(cli, "COMMANDS", {
        **cli.COMMANDS,
        "missing": ("canary_guard.not_installed_component", "a component that is not installed"),
        "broken": ("cg_broken_component", "a component that fails at import"),
    })


def test_a_failed_import_is_listed_and_explained(broken_components, capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    text = capsys.readouterr().out
    assert "missing" in text and "broken" in text
    assert "[unavailable: ModuleNotFoundError: No module named 'canary_guard.not_installed_component']" \
        in " ".join(text.split())
    assert "[unavailable: RuntimeError: bad 100% config at import]" in " ".join(text.split())

    assert cli.main(["broken", "--plan", "x.yaml", "render"]) == 2
    err = capsys.readouterr().err
    assert "canary-guard broken: unavailable: importing cg_broken_component failed: " \
           "RuntimeError: bad 100% config at import" in err
    assert "pip install -e ." in err
    assert cli.main(["missing"]) == 2
    assert "No module named 'canary_guard.not_installed_component'" in capsys.readouterr().err


def test_the_other_commands_still_work(broken_components, capsys):
    assert cli.main(["plan", "check"]) == 0
    assert "OK" in capsys.readouterr().out


def test_every_shipped_command_imports():
    for name, (module, _) in cli.COMMANDS.items():
        __import__(module)  # a shipped component never falls back to "unavailable"
        assert name
