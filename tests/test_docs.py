"""Executable documentation: every Python block of README.md and of the documentation site runs,
and every shell command of README.md runs at a small size, so that a document that drifts from
the code fails the suite.

* A ```python block runs in a fresh namespace, in a temporary folder, with one torch thread. A
  block whose first lines hold ``# doc-test: skip`` (with the reason) is not run: it needs data
  or libraries that are not shipped. README's own blocks may not be skipped.
* A ```bash line of README runs in a temporary folder through click's CliRunner: ``strattack``
  commands with the small-size overrides of :data:`SMALL` (the documented exceptions), ``pip
  install`` and ``python -m pytest`` are not run (they are the installation and this suite).
  ``PYTHONPATH=.`` puts the temporary folder on the import path, where :func:`user_model`
  writes the ``mypkg`` package and ``w.safetensors`` that README's own-model command names.
"""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", ROOT / "REPRODUCTION.md", ROOT / "BENCHMARKS.md",
         *sorted(p for p in (ROOT / "docs").rglob("*.md") if "_hooks" not in p.parts)]
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.S | re.M)
SKIP = "# doc-test: skip"

#: Small-size overrides of README's commands: (the command's first words, arguments replaced,
#: arguments added). The demo attacks one image instead of five; the own-model evaluation one
#: image, with C&W-l2 at 2 x 20 iterations instead of 9 x 1000.
SMALL: list[tuple[tuple[str, ...], dict[str, str], tuple[str, ...]]] = [
    (("demo",), {}, ("-n", "1")),
    (("eval",), {"-n": "1"}, ("--set", "cw_l2.max_iterations=20",
                              "--set", "cw_l2.binary_search_steps=2", "--no-progress")),
]
NOT_RUN = (("pip", "install"), ("python", "-m", "pytest"))


def blocks(path: Path, language: str) -> list[str]:
    return [body for lang, body in FENCE.findall(path.read_text()) if lang == language]


def python_blocks() -> list[pytest.param]:
    params = []
    for page in PAGES:
        for i, code in enumerate(blocks(page, "python")):
            skip = SKIP in "\n".join(code.splitlines()[:3])
            marks = [pytest.mark.skip(reason="marked: needs what is not shipped")] if skip else []
            params.append(pytest.param(code, id=f"{page.relative_to(ROOT)}-{i}", marks=marks))
    return params


def readme_commands() -> list[list[str]]:
    """README's shell commands, one word list each: continuations joined, comments dropped,
    ``&&`` chains split."""
    commands = []
    for body in blocks(ROOT / "README.md", "bash"):
        for line in body.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            while words:
                cut = words.index("&&") if "&&" in words else len(words)
                commands.append(words[:cut])
                words = words[cut + 1:]
    return commands


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield tmp_path
    torch.set_num_threads(threads)


@pytest.mark.parametrize("code", python_blocks())
def test_python_block_runs(code, in_tmp):
    exec(compile(code, "<doc block>", "exec"), {"__name__": "__doc_block__"})


def test_readme_python_blocks_are_not_skipped():
    assert blocks(ROOT / "README.md", "python")
    assert not any(SKIP in code for code in blocks(ROOT / "README.md", "python"))


def user_model(folder: Path) -> None:
    """README's own-model example: ``mypkg/models.py`` with ``build()`` and ``w.safetensors``
    (the architecture and weights of the bundled MNIST model, standing in for the user's)."""
    from safetensors.torch import save_file
    from strattack.models import load_pretrained
    (folder / "mypkg").mkdir()
    (folder / "mypkg" / "__init__.py").write_text("")
    (folder / "mypkg" / "models.py").write_text(
        "from strattack.models.pretrained import build_model\n\n\n"
        "def build():\n    return build_model('mnist')\n")
    state = {k: v.contiguous() for k, v in load_pretrained("mnist").state_dict().items()}
    save_file(state, str(folder / "w.safetensors"))


def small(words: list[str]) -> list[str]:
    args = list(words)
    for head, replaced, added in SMALL:
        if tuple(args[:len(head)]) == head:
            for flag, value in replaced.items():
                args[args.index(flag) + 1] = value
            args += added
    return args


def test_readme_commands_run(in_tmp, monkeypatch):
    from strattack.cli import main
    user_model(in_tmp)
    ran = []
    for words in readme_commands():
        if any(tuple(words[:len(skip)]) == skip for skip in NOT_RUN):
            continue
        while words and re.fullmatch(r"\w+=.*", words[0]):      # VAR=value before the command
            name, value = words.pop(0).split("=", 1)
            assert (name, value) == ("PYTHONPATH", "."), f"unexpected assignment {name}={value}"
            monkeypatch.syspath_prepend(str(in_tmp))
        assert words[0] == "strattack", f"README runs a command this test does not know: {words}"
        result = CliRunner().invoke(main, small(words[1:]), catch_exceptions=False)
        assert result.exit_code == 0, f"{' '.join(words)}:\n{result.output}"
        ran.append(words[1])
    assert {"demo", "eval", "report"} <= set(ran)
