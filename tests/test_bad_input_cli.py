"""Issue 12, "nothing silently wrong": bad input to the command line (options, config files,
weights, stores) is refused or warned about with a clear message, never counted as a result
and never a traceback."""
from __future__ import annotations

import sqlite3

import pytest
from click.testing import CliRunner

from strattack.cli import main
from strattack.evaluation.store import ResultStore

#: Bundled CIFAR-10 test images 24 and 32 are misclassified by the bundled CIFAR-10 model; 0 is not.
MISCLASSIFIED_CIFAR10 = (24, 32)


def _eval(tmp_path, *args: str, out: str = "out"):
    return CliRunner().invoke(main, ["eval", *args, "--no-progress", "-o", str(tmp_path / out)])


def _attacked(output: str, label: str) -> int:
    return int(output.split(f"{label}: ")[1].split(" attacked")[0])


# ------------------------------------------------------------------ 1. what enters the statistics
def test_misclassified_indices_are_skipped_with_a_warning(tmp_path):
    res = _eval(tmp_path, "--dataset", "cifar10", "--bundled", "--indices", "24,0,32",
                "--targets", "untargeted", "-a", "fgm")
    assert res.exit_code == 0, res.output
    assert "skipping 2 of 3 images that the model already misclassifies (--indices 24, 32)" \
        in res.output
    assert _attacked(res.output, "fgm") == 1
    with ResultStore(tmp_path / "out" / "results.sqlite") as store:
        (key,) = store.attacks()
        assert store.done(key) == {(0, -1)}


def test_only_misclassified_indices_is_an_error(tmp_path):
    res = _eval(tmp_path, "--dataset", "cifar10", "--bundled", "--indices", "24",
                "--targets", "untargeted", "-a", "fgm")
    assert res.exit_code == 2 and "misclassifies every chosen image" in res.output, res.output
    assert not (tmp_path / "out" / "results.sqlite").exists()


def test_drop_misclassified_library_function():
    from strattack.data.evaluation_data import load_evaluation_data
    from strattack.evaluation.selection import drop_misclassified
    from strattack.models import load_pretrained

    data = load_evaluation_data("cifar10", bundled=True, ids=[24, 0, 32, 1])
    kept, dropped = drop_misclassified(load_pretrained("cifar10"), data)
    assert kept.ids.tolist() == [0, 1] and dropped == list(MISCLASSIFIED_CIFAR10)


@pytest.mark.parametrize("option, value, message", [
    ("--indices", "0,0", "--indices: 0 given more than once"),
    ("--targets", "3,3", "--targets: 3 given more than once"),
    ("--indices", "3,abc", "--indices: 'abc' is not an integer"),
    ("--targets", "3,x", "--targets: 'x' is not an integer"),
    ("--targets", "sideways", "neither one of all, random, next, untargeted"),
    ("--indices", "1,,2", "--indices: '' is not an integer"),
])
def test_bad_index_and_target_lists_are_usage_errors(tmp_path, option, value, message):
    args = ["--dataset", "mnist", "--bundled", "-a", "fgm", option, value]
    if option == "--targets":
        args += ["--indices", "0"]
    res = _eval(tmp_path, *args)
    assert res.exit_code == 2 and message in res.output, res.output
    assert "Traceback" not in res.output
    assert not (tmp_path / "out" / "results.sqlite").exists()


def test_index_and_target_lists_from_a_config_file_are_checked_too(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text('dataset = "mnist"\nbundled = true\nindices = [0, 0]\n'
                      '[[attack]]\nname = "fgm"\n')
    res = CliRunner().invoke(main, ["eval", "--config", str(config), "-o", str(tmp_path / "out")])
    assert res.exit_code == 2 and "c.toml: indices: 0 given more than once" in res.output, res.output
    config.write_text('dataset = "mnist"\nbundled = true\nindices = [0, 1]\ntargets = [3, 5]\n'
                      '[[attack]]\nname = "fgm"\n')
    res = CliRunner().invoke(main, ["eval", "--config", str(config), "--no-progress",
                                    "-o", str(tmp_path / "out")])
    assert res.exit_code == 0 and "fgm: 4 attacked" in res.output, res.output


def test_targets_equal_to_the_true_class_are_reported(tmp_path):
    # bundled MNIST image 0 is a 7, image 1 a 2
    res = _eval(tmp_path, "--dataset", "mnist", "--bundled", "--indices", "0,1", "--targets", "7",
                "-a", "fgm")
    assert res.exit_code == 0, res.output
    assert "left out 1 (image, target) pairs whose target is the image's true class: (0, 7)" \
        in res.output
    assert _attacked(res.output, "fgm") == 1
    res = _eval(tmp_path, "--dataset", "mnist", "--bundled", "--indices", "0", "--targets", "7",
                "-a", "fgm", out="none")
    assert res.exit_code == 2 and "no (image, target) example left" in res.output, res.output
    assert not (tmp_path / "none" / "results.sqlite").exists()


def test_merge_counts_a_repeated_shard_once(tmp_path):
    res = _eval(tmp_path, "--dataset", "mnist", "--bundled", "--indices", "0,1,2", "--targets",
                "next", "-a", "fgm", out="s")
    assert res.exit_code == 0, res.output
    shard = tmp_path / "s" / "results.sqlite"
    res = CliRunner().invoke(main, ["merge", str(tmp_path / "m"), str(shard), str(shard)])
    assert res.exit_code == 0, res.output
    assert f"{shard}: 3 examples added" in res.output and "0 examples added" not in res.output
    assert "merged once" in res.output
    res = CliRunner().invoke(main, ["merge", str(tmp_path / "m"),
                                    str(tmp_path / "m" / "results.sqlite")])
    assert res.exit_code == 1 and "destination store itself" in res.output, res.output


# ------------------------------------------------------------------ 2. parameter types
@pytest.mark.parametrize("name, params, message", [
    ("str_attack", {"max_iterations": "abc"}, "max_iterations must be an integer, got 'abc'"),
    ("str_attack", {"max_iterations": 20.5}, "max_iterations must be an integer, got 20.5"),
    ("cw_l2", {"max_iterations": True}, "max_iterations must be an integer, got True"),
    ("cw_l2", {"abort_early": 1}, "abort_early must be True or False, got 1"),
    ("str_attack", {"tau": "2"}, "tau must be a finite number, got '2'"),
    ("str_attack", {"tau": float("nan")}, "tau must be a finite number, got nan"),
    ("fgm", {"norm": "l3"}, "norm must be one of 'linf', 'l2', got 'l3'"),
    ("fgm", {"epsilon": "0.1"}, "epsilon must be a finite number or None"),
    ("str_attack_linf", {}, "epsilon must be given"),
])
def test_attack_spec_checks_parameter_types(name, params, message):
    from strattack.evaluation.runner import AttackSpec

    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        AttackSpec(name, params)


@pytest.mark.parametrize("name, params", [
    ("str_attack", {"max_iterations": 2, "tau": 1, "refine_gamma": None, "distortion": "l1"}),
    ("fgm", {"epsilon": None, "norm": "l2", "rtol": 1e-2}),
    ("str_attack_linf", {"epsilon": 0.3}),
    ("cw_linf", {"epsilon": 0.1, "reduce_const": True}),
])
def test_attack_spec_accepts_well_typed_parameters(name, params):
    from strattack.evaluation.runner import AttackSpec

    assert AttackSpec(name, params).params == params


@pytest.fixture
def no_model_loading(monkeypatch):
    """Fails a test that loads a model: a bad configuration must be refused before that."""
    from strattack.models import loading

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the configuration was checked")

    monkeypatch.setattr(loading, "load_model", refuse)


@pytest.mark.parametrize("setting", ["str_attack.max_iterations=abc",
                                     "str_attack.max_iterations=20.5", "str_attack.refine=1"])
def test_a_wrongly_typed_set_is_refused_before_anything_loads(tmp_path, no_model_loading, setting):
    res = _eval(tmp_path, "--dataset", "mnist", "--bundled", "-n", "1", "-a", "str_attack",
                "--set", setting)
    assert res.exit_code == 2 and "str_attack: " in res.output and "must be" in res.output, res.output
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("value", ['"abc"', "20.5", "nan"])
def test_a_wrongly_typed_config_value_leaves_the_store_untouched(tmp_path, value):
    config = tmp_path / "c.toml"
    body = 'dataset = "mnist"\nbundled = true\ntargets = "next"\n[[attack]]\nname = "fgm"\n'
    config.write_text(body)
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["eval", "--config", str(config), "--indices", "0",
                                    "--no-progress", "-o", str(out)])
    assert res.exit_code == 0, res.output
    config.write_text(body + f'[[attack]]\nname = "cw_l2"\nmax_iterations = {value}\n')
    res = CliRunner().invoke(main, ["eval", "--config", str(config), "--indices", "0",
                                    "--no-progress", "-o", str(out)])
    assert res.exit_code == 2 and "cw_l2: max_iterations must be an integer" in res.output
    with ResultStore(out / "results.sqlite") as store:
        assert [name for name, _ in store.attacks().values()] == ["fgm"]


# ------------------------------------------------------------------ 3. weights files
class _MakesAFolder:
    """A malicious pickle: unpickling it would create a folder (any code could run)."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        import os

        return os.mkdir, (self.path,)


def _bad_weights(tmp_path, kind: str):
    import os
    import pickle

    import rgb_model
    import torch
    from safetensors.torch import save_file

    path = tmp_path / {"text": "w.safetensors", "truncated": "w.safetensors",
                       "whole model": "w.pt", "random": "w.bin", "malicious": "w.pkl",
                       "tensor": "w.pt", "wrong keys": "w.safetensors"}[kind]
    if kind == "text":
        path.write_text("these are not weights\n")
    elif kind == "truncated":
        save_file(rgb_model.build().state_dict(), str(path))
        path.write_bytes(path.read_bytes()[:200])
    elif kind == "whole model":
        torch.save(rgb_model.build(), path)
    elif kind == "random":
        path.write_bytes(bytes(range(7, 256)) + os.urandom(500))
    elif kind == "malicious":
        path.write_bytes(pickle.dumps(_MakesAFolder(tmp_path / "pwned")))
    elif kind == "tensor":
        torch.save(torch.zeros(3), path)
    else:
        save_file({"weight": torch.zeros(2)}, str(path))
    return path


@pytest.mark.parametrize("kind, message", [
    ("text", "is a text file, not weights"),
    ("truncated", "looks like a safetensors file but cannot be read"),
    ("whole model", "holds more than tensors (it refers to torch.nn.modules.container.Sequential)"),
    ("random", "is neither safetensors nor a PyTorch checkpoint"),
    ("malicious", "could run arbitrary code"),
    ("tensor", "holds a Tensor, not a state dict"),
    ("wrong keys", "does not fit model rgb_model:build"),
])
def test_unusable_weights_are_a_clear_error_naming_the_file(tmp_path, kind, message):
    from strattack.models.loading import load_model

    path = _bad_weights(tmp_path, kind)
    with pytest.raises(ValueError) as err:
        load_model("rgb_model:build", path)
    assert str(path) in str(err.value) and message in str(err.value), err.value
    if kind != "wrong keys":
        assert "safetensors" in str(err.value) and "state_dict()" in str(err.value)
    assert not (tmp_path / "pwned").exists()


def test_the_cli_refuses_bad_weights_without_a_traceback(tmp_path):
    path = _bad_weights(tmp_path, "whole model")
    res = _eval(tmp_path, "--dataset", "mnist", "--bundled", "--model", "rgb_model:build",
                "--weights", str(path), "-n", "1", "-a", "fgm")
    assert res.exit_code == 1 and f"Error: weights file {path} is a pickle" in res.output
    assert not (tmp_path / "out").exists()


def test_weights_are_recognised_by_content_not_by_suffix(tmp_path):
    import rgb_model
    import torch
    from safetensors.torch import save_file

    from strattack.models.loading import read_state_dict

    state = rgb_model.build().state_dict()
    save_file(state, str(tmp_path / "w.pt"))                      # safetensors named .pt
    torch.save(state, tmp_path / "w.safetensors")        # a torch pickle named .safetensors
    for name in ("w.pt", "w.safetensors"):
        loaded = read_state_dict(tmp_path / name)
        assert all(torch.equal(loaded[k], v) for k, v in state.items())


def test_damaged_bundled_weights_are_a_clear_error(tmp_path, monkeypatch):
    from strattack.models import pretrained

    (tmp_path / "mnist.safetensors").write_text("not weights")
    monkeypatch.setattr(pretrained, "_WEIGHTS_DIR", tmp_path)
    with pytest.raises(ValueError, match="pretrained weights .*mnist.safetensors cannot be read"):
        pretrained.load_pretrained("mnist")


# ------------------------------------------------------------------ 4. damaged and read-only stores
def _finished_run(tmp_path, name: str = "run"):
    """A small finished evaluation (3 images x next target, FGM) in tmp_path / name."""
    res = _eval(tmp_path, "--dataset", "mnist", "--bundled", "--indices", "0,1,2", "--targets",
                "next", "-a", "fgm", out=name)
    assert res.exit_code == 0, res.output
    return tmp_path / name


def _damage(path, how: str) -> None:
    if how == "truncated":
        path.write_bytes(path.read_bytes()[:4096])
    elif how == "random bytes":
        path.write_bytes(bytes(range(256)) * 20)
    else:
        path.write_text("not a database\n" * 100)


@pytest.mark.parametrize("how", ["truncated", "random bytes", "text"])
@pytest.mark.parametrize("command", ["eval", "report", "merge", "merge into", "explain"])
def test_a_damaged_store_is_a_clear_error_naming_it(tmp_path, how, command):
    run = _finished_run(tmp_path)
    store = run / "results.sqlite"
    _damage(store, how)
    if command == "eval":
        res = _eval(tmp_path, "--dataset", "mnist", "--bundled", "--indices", "0,1,2",
                    "--targets", "next", "-a", "fgm", out="run")
    elif command == "merge":                      # a damaged shard
        res = CliRunner().invoke(main, ["merge", str(tmp_path / "merged"), str(store)])
    elif command == "merge into":                 # a damaged destination
        other = _finished_run(tmp_path, "other") / "results.sqlite"
        res = CliRunner().invoke(main, ["merge", str(run), str(other)])
    else:
        res = CliRunner().invoke(main, [command, str(run)])
    assert res.exit_code == 1, res.output
    assert f"{store} is not a readable strattack result store" in res.output, res.output
    assert "Traceback" not in res.output


def test_a_sqlite_file_of_another_program_is_not_read_as_a_store(tmp_path):
    path = tmp_path / "results.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE songs (title TEXT)")
    res = CliRunner().invoke(main, ["report", str(tmp_path)])
    assert res.exit_code == 1 and "is another program's SQLite database (tables ['songs'])" \
        in res.output


def test_a_read_only_store_cannot_write(tmp_path):
    run = _finished_run(tmp_path)
    with ResultStore(run / "results.sqlite", read_only=True) as store:
        assert store.count() == 3
        with pytest.raises(ValueError, match="opened read-only"):
            store.add_attack("fgm", {"norm": "l2"})
        with pytest.raises(sqlite3.OperationalError, match="readonly"):   # SQLite itself refuses
            store._db.execute("INSERT INTO meta VALUES ('x', 'y')")
    with pytest.raises(FileNotFoundError, match="no store"):
        ResultStore(tmp_path / "nothing.sqlite", read_only=True)
    assert not (tmp_path / "nothing.sqlite").exists()


@pytest.fixture
def sqlite_opens(monkeypatch):
    """Every database name sqlite3.connect is called with during the test."""
    opened: list[str] = []
    original = sqlite3.connect

    def spy(database, *args, **kwargs):
        opened.append(str(database))
        return original(database, *args, **kwargs)

    monkeypatch.setattr(sqlite3, "connect", spy)
    return opened


def test_report_and_explain_open_the_store_read_only(tmp_path, sqlite_opens):
    run = _finished_run(tmp_path)
    sqlite_opens.clear()
    res = CliRunner().invoke(main, ["report", str(run), "--no-figures"])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(main, ["explain", str(run), "-a", "fgm", "--figures", "0"])
    assert res.exit_code in (0, 1), res.output
    assert sqlite_opens and all(name.endswith("?mode=ro") for name in sqlite_opens), sqlite_opens


def test_report_leaves_an_old_store_as_it_is(tmp_path):
    run = _finished_run(tmp_path)
    with sqlite3.connect(run / "results.sqlite") as db:      # as written before devices were kept
        db.execute("ALTER TABLE examples DROP COLUMN device")
    before = (run / "results.sqlite").read_bytes()
    res = CliRunner().invoke(main, ["report", str(run), "--no-figures"])
    assert res.exit_code == 0 and "not recorded" in res.output, res.output
    assert (run / "results.sqlite").read_bytes() == before          # not migrated by a reader


def test_report_into_an_unwritable_folder_says_so_and_out_chooses_another(tmp_path, monkeypatch):
    import os

    run = _finished_run(tmp_path)
    access = os.access
    # as root, chmod does not stop writes: pretend the run folder (and all in it) is read-only
    monkeypatch.setattr(os, "access", lambda p, mode: (False if os.fspath(p).startswith(str(run))
                                                       and mode == os.W_OK else access(p, mode)))
    res = CliRunner().invoke(main, ["report", str(run), "--no-figures"])
    assert res.exit_code == 1 and f"{run} is not writable" in res.output, res.output
    assert "-o/--out" in res.output and not (run / "report.csv").exists()
    res = CliRunner().invoke(main, ["report", str(run), "--no-figures",
                                    "-o", str(tmp_path / "rep")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "rep" / "report.csv").is_file() and not (run / "report.csv").exists()
    res = CliRunner().invoke(main, ["explain", str(run), "-a", "fgm", "--figures", "0"])
    assert res.exit_code == 1 and "is not writable" in res.output, res.output


def _without_write_override() -> list[str]:
    """A command prefix under which file permissions bind: nothing for a normal user; for root
    (who writes anywhere) setpriv dropping the capabilities that override them."""
    import os
    import shutil

    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: a read-only folder cannot be made")
    caps = "-dac_override,-dac_read_search"
    return ["setpriv", f"--bounding-set={caps}", f"--inh-caps={caps}"]


#: Run in one subprocess under the dropped capabilities: report to -o, report into the
#: read-only run folder, explain to -o; prints each exit code and output as JSON lines.
READ_ONLY_COMMANDS = """
import json, sys
from click.testing import CliRunner
from strattack.cli import main
run, out = sys.argv[1:3]
for args in (["report", run, "-o", out], ["report", run],
             ["explain", run, "-a", "fgm", "--figures", "0", "-o", out + "/explain"]):
    res = CliRunner().invoke(main, args)
    print(json.dumps([res.exit_code, res.output]))
"""


def test_report_and_explain_work_on_a_really_read_only_run_folder(tmp_path):
    import json
    import os
    import subprocess
    import sys

    run = _finished_run(tmp_path)
    out = tmp_path / "elsewhere"
    out.mkdir()
    prefix = _without_write_override()
    run.chmod(0o555)
    try:
        probe = subprocess.run([*prefix, "touch", str(run / "probe")], capture_output=True)
        if probe.returncode == 0:
            pytest.skip("cannot make a read-only folder here")
        env = os.environ | {"OMP_NUM_THREADS": "1", "MPLCONFIGDIR": str(out / "mpl")}
        done = subprocess.run([*prefix, sys.executable, "-c", READ_ONLY_COMMANDS, str(run),
                               str(out)], capture_output=True, text=True, env=env, timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
        (to_out, code_out), (into_run, code_run), (explained, code_explain) = (
            json.loads(line) for line in done.stdout.splitlines()[-3:])
        assert to_out == 0 and (out / "report.csv").is_file(), code_out
        assert into_run == 1 and f"{run} is not writable" in code_run, code_run
        assert explained == 0 and (out / "explain").is_dir(), code_explain
    finally:
        run.chmod(0o755)
    assert sorted(p.name for p in run.iterdir()) == ["results.sqlite"]


# ------------------------------------------------------------------ 5. the store remembers its data
def _mnist_root(folder):
    """An MNIST root whose test split is the 100 bundled images (test-set indices 0..99)."""
    import gzip
    import struct

    import numpy as np

    from strattack.data import load_samples

    images, labels, ids = load_samples("mnist")
    assert ids.tolist() == list(range(100))
    pixels = (images.numpy() * 255).round().astype(np.uint8).reshape(-1, 28, 28)
    folder.mkdir(parents=True)
    with gzip.open(folder / "t10k-images-idx3-ubyte.gz", "wb") as f:
        f.write(struct.pack(">IIII", 0x803, len(pixels), 28, 28) + pixels.tobytes())
    with gzip.open(folder / "t10k-labels-idx1-ubyte.gz", "wb") as f:
        f.write(struct.pack(">II", 0x801, len(labels)) + labels.numpy().astype(np.uint8).tobytes())
    return folder


def test_report_and_explain_find_the_data_eval_used(tmp_path, monkeypatch):
    _mnist_root(tmp_path / "work" / "data")
    monkeypatch.chdir(tmp_path / "work")
    monkeypatch.delenv("STRATTACK_DATA", raising=False)
    res = CliRunner().invoke(main, ["eval", "--dataset", "mnist", "--data-root", "data",
                                    "--indices", "0,1,2,3", "--targets", "next", "-a", "fgm",
                                    "-a", "ifgsm", "--set", "ifgsm.steps=3", "--no-progress",
                                    "-o", str(tmp_path / "run")])
    assert res.exit_code == 0, res.output
    with ResultStore(tmp_path / "run" / "results.sqlite", read_only=True) as store:
        assert store.meta()["data_root"] == str(tmp_path / "work" / "data")
    monkeypatch.chdir(tmp_path)                  # elsewhere: ./data is not there
    res = CliRunner().invoke(main, ["report", str(tmp_path / "run")])
    assert res.exit_code == 0 and "heatmaps without the images" not in res.output, res.output
    res = CliRunner().invoke(main, ["explain", str(tmp_path / "run"), "-a", "fgm", "-a", "ifgsm",
                                    "--figures", "0"])
    assert res.exit_code == 0, res.output
    # --data-root overrides the recorded folder
    res = CliRunner().invoke(main, ["explain", str(tmp_path / "run"), "--figures", "0",
                                    "--data-root", str(tmp_path / "nothing")])
    assert res.exit_code == 1 and str(tmp_path / "nothing") in res.output, res.output
    # a moved data folder: say where it was looked for and what to do
    (tmp_path / "work" / "data").rename(tmp_path / "moved")
    res = CliRunner().invoke(main, ["explain", str(tmp_path / "run"), "--figures", "0"])
    assert res.exit_code == 1 and "give --data-root where it is now" in res.output, res.output


def test_a_new_data_location_does_not_block_resuming(tmp_path, monkeypatch):
    root = _mnist_root(tmp_path / "data")
    base = ["eval", "--dataset", "mnist", "--indices", "0,1", "--targets", "next", "-a", "fgm",
            "--no-progress", "-o", str(tmp_path / "run")]
    res = CliRunner().invoke(main, [*base, "--data-root", str(root)])
    assert res.exit_code == 0, res.output
    root.rename(tmp_path / "elsewhere")
    res = CliRunner().invoke(main, [*base, "--data-root", str(tmp_path / "elsewhere")])
    assert res.exit_code == 0 and "2 already done" in res.output, res.output
    with ResultStore(tmp_path / "run" / "results.sqlite", read_only=True) as store:
        assert store.meta()["data_root"] == str(tmp_path / "elsewhere")


# ------------------------------------------------------------------ 6. --bundled alone
def test_bundled_alone_means_the_bundled_mnist_images(tmp_path):
    res = _eval(tmp_path, "--bundled", "-n", "1", "--targets", "next", "-a", "fgm")
    assert res.exit_code == 0 and res.output.startswith("mnist: 1 images"), res.output
    with ResultStore(tmp_path / "out" / "results.sqlite", read_only=True) as store:
        assert store.meta()["dataset"] == "mnist" and store.meta()["bundled"] is True
    res = _eval(tmp_path, "-n", "1", "-a", "fgm", out="none")
    assert res.exit_code == 2 and "with --bundled it defaults to mnist" in res.output
    res = CliRunner().invoke(main, ["eval", "--help"])
    assert "--dataset defaults to mnist" in " ".join(res.output.split())


# ------------------------------------------------------------------ 7. Python 3.10: tomli
def test_without_tomllib_config_files_are_read_with_tomli(tmp_path, monkeypatch):
    import importlib
    import sys

    pytest.importorskip("tomli", reason="tomli is in the test extra: pip install -e '.[test]'")
    import strattack.evaluation.config as config_module

    monkeypatch.setitem(sys.modules, "tomllib", None)     # as on Python 3.10: no tomllib
    try:
        reloaded = importlib.reload(config_module)
        assert reloaded.tomllib.__name__ == "tomli"
        config = tmp_path / "c.toml"
        config.write_text('dataset = "mnist"\nbundled = true\n[[attack]]\nname = "fgm"\n'
                          'grid_steps = 2.5\n')
        res = CliRunner().invoke(main, ["eval", "--config", str(config), "-o",
                                        str(tmp_path / "out")])
        assert res.exit_code == 2 and "grid_steps must be an integer, got 2.5" in res.output
        config.write_text("dataset = \n")
        res = CliRunner().invoke(main, ["eval", "--config", str(config), "-o",
                                        str(tmp_path / "out")])
        assert res.exit_code == 2 and f"{config}:" in res.output, res.output    # TOMLDecodeError
        assert reloaded.parse_value("[1, 2]") == [1, 2] and reloaded.parse_value("x") == "x"
    finally:
        monkeypatch.undo()
        importlib.reload(config_module)
    assert config_module.tomllib.__name__ == "tomllib"


# ------------------------------------------------------------------ config values (issue 13 §2)
@pytest.mark.parametrize("line, message", [
    ("batch_size = 0", "batch_size must be an integer >= 1, got 0"),      # hung eval forever
    ("num_images = -5", "num_images must be an integer >= 1, got -5"),    # ran 95 images
    ('bundled = "false"', "bundled must be true or false, got 'false'"),   # counted as true
    ('attack = "fgm"', "attack must be [[attack]] tables"),
    ("threads = -3", "threads must be an integer >= 1, got -3"),
    ('seed = "abc"', "seed must be an integer, got 'abc'"),
    ("shard = 3", 'shard must be a string I/N (e.g. "0/4"), got 3'),
    ('shard = "2/2"', "shard"),
    ('device = "gpu0"', "device: 'gpu0' is not a torch device"),
    ("progress = 1", "progress must be true or false, got 1"),
    ("colour = 1", "unknown keys ['colour']"),
])
def test_every_config_file_value_is_checked_before_anything_loads(tmp_path, no_model_loading,
                                                                  line, message):
    config = tmp_path / "c.toml"
    attack = "" if line.startswith("attack") else '\n[[attack]]\nname = "fgm"\n'
    config.write_text(f'dataset = "mnist"\n{line}\n{attack}')
    res = CliRunner().invoke(main, ["eval", "--config", str(config), "-o", str(tmp_path / "o")])
    assert res.exit_code == 2 and message in res.output, res.output
    assert f"{config}: " in res.output and not (tmp_path / "o").exists()


@pytest.mark.parametrize("option, value, message", [
    ("--batch-size", "0", "0 is not in the range x>=1"),
    ("-n", "-5", "-5 is not in the range x>=1"),
    ("--threads", "-3", "-3 is not in the range x>=1"),
])
def test_the_same_values_as_flags_are_refused_too(tmp_path, no_model_loading, option, value,
                                                  message):
    res = _eval(tmp_path, "--dataset", "mnist", "--bundled", "-a", "fgm", option, value)
    assert res.exit_code == 2 and message in res.output, res.output


def test_a_single_target_class_in_a_config_file_is_a_list_of_one(tmp_path):
    from strattack.evaluation.config import EvalConfig

    config = tmp_path / "c.toml"
    config.write_text('dataset = "mnist"\ntargets = 5\n[[attack]]\nname = "fgm"\n')
    assert EvalConfig.from_sources(config, {"out": tmp_path}).targets == (5,)


def test_flags_override_the_file_and_defaults_come_from_one_place(tmp_path):
    from strattack.evaluation.config import EvalConfig

    config = tmp_path / "c.toml"
    config.write_text('dataset = "cifar10"\nbatch_size = 8\n[[attack]]\nname = "fgm"\n')
    parsed = EvalConfig.from_sources(config, {"out": tmp_path, "batch_size": 16, "seed": None})
    assert (parsed.dataset, parsed.batch_size, parsed.seed, parsed.targets) == (
        "cifar10", 16, 0, "all")
    assert parsed.origin["batch_size"] == "--batch-size"
    assert parsed.origin["dataset"] == f"{config}: dataset"
