"""Every shipped recipe is valid: training recipes parse through LightningCLI, study recipes build every model."""
from pathlib import Path

import pytest
import yaml

from asr.cli import main
from asr.study.recipes import resolve_models
from asr.train.module import ASRModule

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
STUDIES = sorted(p for p in RECIPES.glob("*.yaml") if "models" in (yaml.safe_load(p.read_text()) or {}))
TRAINING = sorted(p for p in RECIPES.glob("*.yaml") if "model" in (yaml.safe_load(p.read_text()) or {}))


@pytest.mark.parametrize("recipe", TRAINING, ids=lambda p: p.name)
def test_training_recipe_parses(recipe, capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "-c", str(recipe), "--print_config"])
    assert e.value.code in (0, None)
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"]["cell"] == yaml.safe_load(recipe.read_text())["model"]["cell"]


@pytest.mark.parametrize("recipe", STUDIES, ids=lambda p: p.name)
def test_study_recipe_builds_every_model(recipe):
    study = yaml.safe_load(recipe.read_text())
    configs = resolve_models(study, input_dim=240)
    # A study of one model (a size or regulariser tried alone) compares against nothing: no baseline.
    assert study.get("baseline", next(iter(configs))) in configs
    for name, config in configs.items():
        ASRModule(input_dim=240, **config["model"])  # raises on any invalid combination
        assert config["data"] == study["base"]["data"], name


SWEEPS = sorted(p for p in RECIPES.glob("*.yaml") if "radii" in (yaml.safe_load(p.read_text()) or {}))


@pytest.mark.parametrize("recipe", SWEEPS, ids=lambda p: p.name)
def test_sweep_recipe_names_only_what_the_sweep_reads(recipe):
    from asr.study.sweep import DEFAULTS

    sweep = yaml.safe_load(recipe.read_text())
    assert set(sweep) <= set(DEFAULTS), set(sweep) - set(DEFAULTS)
    assert sweep["radii"] == sorted(sweep["radii"]) and all(r > 0 for r in sweep["radii"])


def test_every_recipe_is_one_that_a_test_above_parses():
    """A recipe of a new kind (neither a training recipe, a study nor the W_rec sweep) would be checked by
    nothing: this fails until a test parses it."""
    assert TRAINING and STUDIES and SWEEPS
    assert sorted(RECIPES.glob("*.yaml")) == sorted({*TRAINING, *STUDIES, *SWEEPS})
