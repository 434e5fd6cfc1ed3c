"""One table of entry points: every CLI command's target is a function in `recnarr.stages`, and every
pipeline stage names a CLI command, so a target is written once (in `cli.COMMANDS`)."""

from __future__ import annotations

import pytest

from recnarr.cli import COMMANDS, command, load_target
from recnarr.stages.pipeline import STAGES


@pytest.mark.parametrize("cmd", COMMANDS, ids=lambda c: c.name)
def test_every_command_target_is_a_callable_in_recnarr_stages(cmd):
    module, _, func = cmd.target.partition(":")
    assert module.startswith("recnarr.stages.") and func, f"{cmd.name}: {cmd.target} is not recnarr.stages.<m>:<f>"
    assert callable(load_target(cmd.target)), f"{cmd.name}: {cmd.target} is not callable"


def test_command_names_are_unique():
    names = [c.name for c in COMMANDS]
    assert len(names) == len(set(names))


def test_every_pipeline_stage_names_an_existing_command():
    for stage in STAGES:
        assert command(stage.command).name == stage.command  # KeyError names the unknown command


def test_an_unknown_command_is_named():
    with pytest.raises(KeyError, match="no command 'nope'"):
        command("nope")
