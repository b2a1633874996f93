"""Checkpoint branch names: what training pushes is what evaluation and the demo read back."""

import pytest

from hub_tools.branches import checkpoint_branch, checkpoint_step


@pytest.mark.parametrize("step", [1, 150, 2000, 123456])
def test_a_checkpoint_branch_gives_back_its_step(step):
    assert checkpoint_branch(step) == f"checkpoint-{step}" and checkpoint_step(checkpoint_branch(step)) == step


@pytest.mark.parametrize("name", ["main", "checkpoint-", "checkpoint-12-old", "checkpoint-x", "my-checkpoint-3", ""])
def test_other_names_have_no_step(name):
    assert checkpoint_step(name) is None


def test_branches_sort_by_step_not_by_text():
    names = ["checkpoint-1000", "checkpoint-150", "checkpoint-2000", "checkpoint-300"]
    expected = ["checkpoint-150", "checkpoint-300", "checkpoint-1000", "checkpoint-2000"]
    assert sorted(names, key=checkpoint_step) == expected
