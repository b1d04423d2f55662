"""Every recipe is valid: training recipes parse through LightningCLI, study recipes (and every stage of a staged
one) build every model; so do the recipes of past experiments kept beside their reports."""
from pathlib import Path

import pytest
import yaml

from asr.cli import main
from asr.study.recipes import STAGE_OUTPUT, resolve_models
from asr.train.module import ASRModule

REPO = Path(__file__).resolve().parents[1]
RECIPES = REPO / "recipes"
ALL = sorted([*RECIPES.rglob("*.yaml"), *REPO.glob("reports/*/recipe.yaml")])


def holding(key: str) -> list[Path]:
    return [p for p in ALL if key in (yaml.safe_load(p.read_text()) or {})]


STUDIES, STAGED, TRAINING = holding("models"), holding("stages"), holding("model")


def study_id(path: Path) -> str:
    return str(path.relative_to(REPO))


@pytest.mark.parametrize("recipe", TRAINING, ids=study_id)
def test_training_recipe_parses(recipe, capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "-c", str(recipe), "--print_config"])
    assert e.value.code in (0, None)
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"]["cell"] == yaml.safe_load(recipe.read_text())["model"]["cell"]


def check_study(study: dict) -> None:
    configs = resolve_models(study, input_dim=240)
    # A study of one model (a size or regulariser tried alone) compares against nothing: no baseline.
    assert study.get("baseline", next(iter(configs))) in configs
    for name, config in configs.items():
        ASRModule(input_dim=240, **config["model"])  # raises on any invalid combination
        assert config["data"] == study["base"]["data"], name


@pytest.mark.parametrize("recipe", STUDIES, ids=study_id)
def test_study_recipe_builds_every_model(recipe):
    check_study(yaml.safe_load(recipe.read_text()))


@pytest.mark.parametrize("recipe", STAGED, ids=study_id)
def test_every_stage_builds_every_model_and_starts_from_an_earlier_stage(recipe):
    stages = yaml.safe_load(recipe.read_text())["stages"]
    assert len({stage["study"] for stage in stages}) == len(stages)  # each stage reports into its own folder
    for number, stage in enumerate(stages, 1):
        check_study(stage)
        for spec in [stage["base"], *stage["models"].values()]:
            source = ((spec or {}).get("model") or {}).get("init_from")
            found = STAGE_OUTPUT.fullmatch(source) if isinstance(source, str) else None
            assert not found or 1 <= int(found[1]) < number, (number, source)


SWEEPS = holding("radii")


@pytest.mark.parametrize("recipe", SWEEPS, ids=study_id)
def test_sweep_recipe_names_only_what_the_sweep_reads(recipe):
    from asr.study.sweep import DEFAULTS

    sweep = yaml.safe_load(recipe.read_text())
    assert set(sweep) <= set(DEFAULTS), set(sweep) - set(DEFAULTS)
    assert sweep["radii"] == sorted(sweep["radii"]) and all(r > 0 for r in sweep["radii"])


def test_every_recipe_is_one_that_a_test_above_parses():
    """A recipe of a new kind (neither a training recipe, a study nor the W_rec sweep) would be checked by
    nothing: this fails until a test parses it."""
    assert TRAINING and STUDIES and STAGED and SWEEPS
    assert ALL == sorted({*TRAINING, *STUDIES, *STAGED, *SWEEPS})
