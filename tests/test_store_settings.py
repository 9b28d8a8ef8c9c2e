"""The store keeps every keyword an attack ran with (defaults included), so that resuming or
merging after the library's defaults changed is an error, not a silent mix."""
from __future__ import annotations

import pytest

from strattack.evaluation.store import ResultStore, StoreError, merge_stores

OLD = {"tau": 2.0, "max_iterations": 200}
NEW = {"tau": 1.0, "max_iterations": 200}


def test_same_settings_resume_and_other_settings_are_refused(tmp_path):
    with ResultStore(tmp_path / "r.sqlite", {"dataset": "mnist"}) as store:
        key = store.add_attack("str_attack", {}, "StrAttack", settings=OLD)
        assert store.add_attack("str_attack", {}, settings=OLD) == key
        with pytest.raises(StoreError, match=r"tau: 2\.0 -> 1\.0"):
            store.add_attack("str_attack", {}, settings=NEW)
        assert store.settings() == {key: OLD}          # nothing was overwritten


def test_an_attack_registered_without_settings_gets_them_on_the_next_run(tmp_path):
    with ResultStore(tmp_path / "r.sqlite", {"dataset": "mnist"}) as store:
        key = store.add_attack("str_attack", {})
        assert store.settings() == {}
        store.add_attack("str_attack", {}, settings=NEW)
        assert store.settings() == {key: NEW}


def shard(path, settings):
    with ResultStore(path, {"dataset": "mnist"}) as store:
        return store.add_attack("str_attack", {}, "StrAttack", settings=settings)


def test_merging_shards_run_with_other_settings_is_refused(tmp_path):
    key = shard(tmp_path / "a.sqlite", OLD)
    shard(tmp_path / "b.sqlite", OLD)
    shard(tmp_path / "c.sqlite", NEW)
    merge_stores(tmp_path / "m.sqlite", [tmp_path / "a.sqlite", tmp_path / "b.sqlite"])
    with ResultStore(tmp_path / "m.sqlite", read_only=True) as merged:
        assert merged.settings() == {key: OLD}
    with pytest.raises(StoreError, match=r"c\.sqlite.*tau: 2\.0 -> 1\.0"):
        merge_stores(tmp_path / "m.sqlite", [tmp_path / "c.sqlite"])


def test_merging_fills_settings_an_older_shard_lacked(tmp_path):
    with ResultStore(tmp_path / "old.sqlite", {"dataset": "mnist"}) as store:
        key = store.add_attack("str_attack", {})
    shard(tmp_path / "new.sqlite", NEW)
    merge_stores(tmp_path / "m.sqlite", [tmp_path / "old.sqlite", tmp_path / "new.sqlite"])
    with ResultStore(tmp_path / "m.sqlite", read_only=True) as merged:
        assert merged.settings() == {key: NEW}


def test_the_recorded_settings_expand_defaults_and_presets():
    from strattack.attacks.presets import AUTHORS_CODE
    from strattack.evaluation.attack_spec import AttackSpec

    plain = AttackSpec("str_attack", {"tau": 0.5}).settings
    assert plain["tau"] == 0.5 and plain["max_iterations"] == 100 and plain["preset"] is None
    assert "targeted" not in plain and "true_labels" not in plain
    preset = AttackSpec("str_attack", {"preset": "authors_code", "max_iterations": 7}).settings
    assert preset["preset"] == "authors_code" and preset["max_iterations"] == 7
    assert {k: v for k, v in preset.items() if k not in ("preset", "max_iterations")} == {
        k: v for k, v in AUTHORS_CODE.record().items() if k != "max_iterations"}
    assert "preset" not in AttackSpec("str_attack_linf", {"epsilon": 0.3}).settings


def test_an_evaluation_records_the_settings_and_refuses_to_resume_with_other_ones(tmp_path,
                                                                                   monkeypatch):
    import torch
    from helpers import CountingModel

    from strattack.evaluation import runner
    from strattack.evaluation.examples import make_examples

    torch.manual_seed(0)
    model = CountingModel(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3)))
    x = torch.rand(4, 1, 4, 4)
    y = model(x).argmax(1)
    examples = make_examples(range(4), y.tolist(), "next", 3)
    spec = runner.AttackSpec("fgm", {"norm": "l2"})
    with ResultStore(tmp_path / "r.sqlite") as store:
        runner.run_evaluation(model, x, y, examples, [spec], store, batch_size=2, progress=False)
        (settings,) = store.settings().values()
    assert settings == spec.config.record() == {"epsilon": None, "grid_steps": 10, "loss": "ce",
                                                "max_epsilon": None, "norm": "l2", "rtol": 1e-3,
                                                "search_steps": 10}

    changed = dict(settings, loss="ce" if settings["loss"] != "ce" else "cw")
    monkeypatch.setattr(runner.AttackSpec, "settings", property(lambda self: changed))
    calls = model.calls
    with ResultStore(tmp_path / "r.sqlite") as store, pytest.raises(StoreError, match="loss"):
        runner.run_evaluation(model, x, y, examples, [spec], store, batch_size=2, progress=False)
    assert model.calls == calls                        # refused before any model call


def test_examples_stored_before_settings_were_kept_are_not_vouched_for(tmp_path):
    """An old store (settings NULL) with examples: today's settings are not recorded for them,
    neither by a resume nor by a merge (they may have been computed with other defaults)."""
    import numpy as np

    from strattack.evaluation.store import ExampleRecord

    with ResultStore(tmp_path / "old.sqlite", {"dataset": "mnist"}) as store:
        key = store.add_attack("str_attack", {})
        store.write(key, [ExampleRecord(0, 1, 0, True, 1.0, 1.0, 1.0, 1.0, 1.0, 2, 2, 0.1, 1,
                                        np.zeros((1, 2, 2), np.float32), "cpu")])
        store.add_attack("str_attack", {}, settings=NEW)
        assert store.settings() == {}
    shard(tmp_path / "new.sqlite", NEW)
    merge_stores(tmp_path / "old.sqlite", [tmp_path / "new.sqlite"])
    with ResultStore(tmp_path / "old.sqlite", read_only=True) as merged:
        assert merged.settings() == {}


def test_keywords_added_later_are_recorded_only_away_from_their_old_behaviour():
    """A store written before scale_eta / z_candidate existed must still resume and merge: at
    the value that is the old behaviour they are left out of the record (which is then the old
    record), at any other value they are recorded."""
    import inspect

    from strattack import str_attack, str_attack_linf
    from strattack.attacks import ADMMConfig

    later = ADMMConfig.UNRECORDED_DEFAULTS
    for attack in (str_attack, str_attack_linf):
        signature = inspect.signature(attack).parameters
        assert all(signature[k].default == v for k, v in later.items())
        config = attack.configure(epsilon=0.3)
        record = config.record()
        assert not set(later) & set(record)
        assert set(record) == {k for k, p in signature.items() if p.kind is p.KEYWORD_ONLY
                               and k not in ("targeted", "true_labels", "preset")} - set(later)
        assert config.replace(z_candidate=True).record()["z_candidate"] is True
        assert config.replace(scale_eta=False).record() == record
