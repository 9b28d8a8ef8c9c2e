"""Bad input to the command line about the model and the options that choose the work: a user
model without weights, one given as a file path or failing in its own code, a model that does
not fit the images, options that contradict each other or would be ignored, bad attack labels,
an interrupt during start-up. Each is a clear message and an exit code before any work, never a
traceback, and nothing is written."""
from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner, Result

from strattack.cli import main
from strattack.errors import ConfigError, ModelError
from strattack.evaluation.evaluate import weights_used
from strattack.evaluation.store import ResultStore
from strattack.models.loading import load_model

TESTS = Path(__file__).resolve().parent

#: A user module whose network takes the bundled MNIST images.
NET = "import torch\nfrom torch import nn\n\n\ndef build():\n    torch.manual_seed(0)\n" \
      "    return nn.Sequential(nn.Flatten(), nn.Linear(784, 10))\n"


def _eval(tmp_path: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["eval", "--bundled", "-a", "fgm", "--no-progress",
                                     "-o", str(tmp_path / "out"), *args])


def _refused(res: Result, code: int, *messages: str) -> None:
    assert res.exit_code == code, res.output
    for message in messages:
        assert message in res.output, res.output
    assert "Traceback" not in res.output


def _user_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str,
                 source: str) -> Path:
    """``name``.py holding ``source`` in an importable folder (each test its own name: a module
    stays imported)."""
    folder = tmp_path / "code"
    folder.mkdir(exist_ok=True)
    path = folder / f"{name}.py"
    path.write_text(source)
    monkeypatch.syspath_prepend(str(folder))
    return path


# ------------------------------------------------------------------ a user model's weights
def test_a_user_model_without_weights_is_refused(tmp_path, monkeypatch):
    _user_module(tmp_path, monkeypatch, "unweighted_net", NET)
    res = _eval(tmp_path, "--model", "unweighted_net:build")
    _refused(res, 2, "'unweighted_net:build' without --weights would attack the network as "
             "the callable builds it", "give --weights FILE", "--no-weights")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("args, message", [
    (("--model", "anything:build", "--no-weights", "--weights", "w.pt"),
     "--no-weights and --weights contradict each other"),
    (("--model", "mnist", "--no-weights"), "--no-weights applies to a module:callable --model"),
    (("--no-weights",), "--no-weights applies to a module:callable --model"),
])
def test_no_weights_with_weights_or_a_bundled_model_is_refused(tmp_path, args, message):
    _refused(_eval(tmp_path, *args), 2, message)
    assert not (tmp_path / "out").exists()


def test_no_weights_attacks_the_built_network_and_report_says_so(tmp_path, monkeypatch):
    _user_module(tmp_path, monkeypatch, "built_net", NET)
    res = _eval(tmp_path, "--model", "built_net:build", "--no-weights", "-n", "1",
                "--targets", "next")
    assert res.exit_code == 0, res.output
    with ResultStore(tmp_path / "out" / "results.sqlite", read_only=True) as store:
        assert store.meta()["weights"] is None and store.meta()["init"] == "callable"
    res = CliRunner().invoke(main, ["report", str(tmp_path / "out"), "--no-figures"])
    assert res.exit_code == 0, res.output
    assert res.output.startswith("mnist (bundled images): model built_net:build, weights none "
                                 "(--no-weights: the network as the callable builds it")


def test_a_config_file_may_say_no_weights(tmp_path, monkeypatch):
    _user_module(tmp_path, monkeypatch, "config_net", NET)
    config = tmp_path / "c.toml"
    config.write_text('model = "config_net:build"\n[[attack]]\nname = "fgm"\n')
    res = CliRunner().invoke(main, ["eval", "--config", str(config), "--bundled",
                                    "-o", str(tmp_path / "out")])
    _refused(res, 2, "c.toml: model 'config_net:build' without --weights")
    config.write_text("no-weights = true\n" + config.read_text())
    res = CliRunner().invoke(main, ["eval", "--config", str(config), "--bundled", "-n", "1",
                                    "--targets", "next", "--no-progress",
                                    "-o", str(tmp_path / "out")])
    assert res.exit_code == 0 and "fgm: 1 attacked" in res.output, res.output


@pytest.mark.parametrize("meta, shown", [
    ({"model": "mnist", "weights": None}, "bundled"),
    ({"model": "mnist", "weights": "/w/mnist.safetensors"}, "/w/mnist.safetensors"),
    ({"model": "pkg.net:build", "weights": "w.pt"}, "w.pt"),
    ({"model": "pkg.net:build", "weights": None, "init": "callable"}, "none (--no-weights"),
    ({"model": "pkg.net:build", "weights": None}, "none given (the network as the callable"),
])
def test_the_weights_a_store_was_made_with(meta, shown):
    assert weights_used(meta).startswith(shown)


# ------------------------------------------------------------------ how a user model is named
@pytest.mark.parametrize("spec, folder, name", [
    ("./models/net.py:build", "models", "net"),
    ("models/deep/net.py:make", "models/deep", "net"),
    ("net.py:build", ".", "net"),
])
def test_a_file_path_as_model_says_how_to_make_it_importable(tmp_path, spec, folder, name):
    res = _eval(tmp_path, "--model", spec, "--no-weights")
    attr = spec.rpartition(":")[2]
    _refused(res, 2, "is a file path, but a model is a dotted, importable module",
             "e.g. mypkg.net:build", f"PYTHONPATH={folder} strattack ... --model {name}:{attr}")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("spec, message", [
    ("no_such_package_x.net:build", "No module named 'no_such_package_x'; a model is a dotted, "
     "importable module"),
    ("my-package.net:build", "is not a dotted module name and a callable"),
    ("mnist_net:", "is not a dotted module name and a callable"),
])
def test_a_model_module_that_is_not_importable_is_a_usage_error(tmp_path, spec, message):
    _refused(_eval(tmp_path, "--model", spec, "--no-weights"), 2, message)
    assert not (tmp_path / "out").exists()


def test_the_python_api_refuses_a_file_path_too():
    with pytest.raises(ConfigError, match="is a file path"):
        load_model("./net.py:build")


@pytest.mark.parametrize("source, where, reason", [
    ("def build(:\n    pass\n", "line 1", "SyntaxError: invalid syntax"),
    ("import torch\n\nraise RuntimeError('no GPU here')\n", "line 3 (in <module>)",
     "RuntimeError: no GPU here"),
    ("import no_such_dependency_x\n", "line 1 (in <module>)",
     "No module named 'no_such_dependency_x'"),
    ("def helper():\n    return {}['weights']\n\n\ndef build():\n    return helper()\n",
     "line 2 (in helper)", "KeyError: 'weights'"),
])
def test_a_failing_user_model_names_its_file_and_line(tmp_path, monkeypatch, source, where,
                                                      reason):
    name = f"failing_net_{abs(hash(source))}"
    path = _user_module(tmp_path, monkeypatch, name, source)
    res = _eval(tmp_path, "--model", f"{name}:build", "--no-weights")
    _refused(res, 1, f"model {name}:build: ", str(path), where, reason)
    assert not (tmp_path / "out").exists()
    with pytest.raises(ModelError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        load_model(f"{name}:build")


# ------------------------------------------------------------------ a model that does not fit
def test_a_model_for_other_images_is_named_with_their_shape(tmp_path):
    res = _eval(tmp_path, "--model", "cifar10", "-n", "2")
    _refused(res, 1, "the model failed on the inputs (shape (100, 1, 28, 28)",
             "Give images of the shape, channels and device the model expects")
    assert not (tmp_path / "out").exists()


def test_a_model_returning_a_tuple_is_named_before_any_attack(tmp_path, monkeypatch):
    _user_module(tmp_path, monkeypatch, "tuple_net", NET.replace(
        "    return nn.Sequential(nn.Flatten(), nn.Linear(784, 10))\n",
        "    net = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))\n"
        "    class Pair(nn.Module):\n"
        "        def forward(self, x):\n            return net(x), x\n"
        "    return Pair()\n"))
    res = _eval(tmp_path, "--model", "tuple_net:build", "--no-weights", "-n", "1")
    _refused(res, 1, "the model returns a tuple of 2")
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------ options that clash
@pytest.mark.parametrize("args, message", [
    (("-n", "2", "--indices", "5"), "--num-images and --indices both choose the images"),
    (("--targets", "all", "-k", "3"), "--num-targets applies only to --targets random "
     "(targets here: all)"),
    (("-k", "3",), "--num-targets applies only to --targets random (targets here: all)"),
    (("--targets", "3,5", "-k", "2"), "(targets here: 3,5)"),
])
def test_contradicting_or_ignored_options_are_usage_errors(tmp_path, args, message):
    _refused(_eval(tmp_path, *args), 2, message)
    assert not (tmp_path / "out").exists()


def test_clashing_values_from_a_config_file_name_it(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text('num_images = 5\n[[attack]]\nname = "fgm"\n')
    res = CliRunner().invoke(main, ["eval", "--config", str(config), "--bundled",
                                    "--indices", "1", "-o", str(tmp_path / "out")])
    _refused(res, 2, "c.toml: num_images and --indices both choose the images")


def test_fewer_images_than_asked_is_a_warning_naming_both_numbers(tmp_path):
    res = _eval(tmp_path, "-n", "1000000", "--targets", "next")
    assert res.exit_code == 0, res.output
    assert ("warning: -n 1000000: only 100 of the bundled mnist images are classified "
            "correctly by the model; attacking those 100") in res.stderr
    assert "fgm: 100 attacked" in res.output


@pytest.mark.parametrize("args, given", [
    (("--image", "0", "--target", "1"), "--image, --target apply"),
    (("--dataset", "mnist", "--bundled"), "--dataset, --bundled apply"),
    (("--model", "mnist"), "--model applies"),
    (("--image", "0"), "--image applies"),
])
def test_explain_with_a_run_folder_refuses_the_one_image_options(tmp_path, args, given):
    run = tmp_path / "run"
    res = CliRunner().invoke(main, ["explain", str(run), *args])
    _refused(res, 2, f"{given} only without RUN_DIR")
    assert not run.exists()


def test_explain_without_a_run_folder_refuses_attack_labels(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(main, ["explain", "--bundled", "--image", "0", "--target", "1",
                                    "-a", "StrAttack"])
    _refused(res, 2, "--attack chooses attacks of a RUN_DIR's store")
    assert not (tmp_path / "explain").exists()


# ------------------------------------------------------------------ attack labels
@pytest.mark.parametrize("label, shown", [('""', "''"), ('"  "', "'  '"), ("7", "7"),
                                          ("[1]", "[1]")])
def test_an_attack_label_must_be_a_visible_name(tmp_path, label, shown):
    config = tmp_path / "c.toml"
    config.write_text(f'[[attack]]\nname = "fgm"\nlabel = {label}\n')
    res = CliRunner().invoke(main, ["eval", "--config", str(config), "--bundled",
                                    "-o", str(tmp_path / "out")])
    _refused(res, 2, f"attack 'fgm': label must be a non-empty string, got {shown}")
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------ start-up and threads
def test_an_interrupt_while_the_command_line_imports_exits_quietly_with_130(tmp_path):
    # a real SIGINT as torch starts to import: the package's own import must not import it.
    # The child restores Python's handler: a runner started in the background (`cmd &` in a
    # script) passes SIGINT on as ignored, and the interrupt would then never arrive.
    script = tmp_path / "interrupt.py"
    script.write_text(
        "import builtins, os, signal, sys\n"
        "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        "real = builtins.__import__\n"
        "def interrupting(name, *args, **kwargs):\n"
        "    if name == 'torch':\n"
        "        os.kill(os.getpid(), signal.SIGINT)\n"
        "    return real(name, *args, **kwargs)\n"
        "builtins.__import__ = interrupting\n"
        "sys.argv = ['strattack', '--help']\n"
        "from strattack.__main__ import run\n"
        "run()\n")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 130, done.stderr
    assert done.stdout == "" and done.stderr == ""


def test_the_strattack_script_starts_through_the_interrupt_guard():
    (script,) = [e for e in importlib.metadata.entry_points(group="console_scripts")
                 if e.name == "strattack"]
    assert script.value == "strattack.__main__:run"


def test_demo_takes_threads(monkeypatch):
    import strattack.commands.demo as demo_module

    class Stop(Exception):
        pass

    def stop(*_args, **_kwargs):
        raise Stop

    threads = torch.get_num_threads()
    monkeypatch.setattr(demo_module, "load_pretrained", stop)
    try:
        with pytest.raises(Stop):
            demo_module.demo(threads=1)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)
    seen = {}
    monkeypatch.setattr(demo_module, "demo", lambda *args: seen.update(args=args) or stop())
    res = CliRunner().invoke(main, ["demo", "--threads", "1"])
    assert isinstance(res.exception, Stop) and seen["args"][-1] == 1
    _refused(CliRunner().invoke(main, ["demo", "--threads", "0"]), 2, "--threads")
