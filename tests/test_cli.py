"""CLI error paths: clear messages, no tracebacks."""
from __future__ import annotations

from click.testing import CliRunner

from strattack.cli import main


def test_train_without_data_names_the_missing_files(tmp_path):
    result = CliRunner().invoke(main, ["train", "--dataset", "mnist", "--data-root", str(tmp_path),
                                       "--out", str(tmp_path / "w.safetensors")])
    assert result.exit_code == 1
    assert "train-images-idx3-ubyte.gz" in result.output and str(tmp_path) in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "w.safetensors").exists()


def test_demo_rejects_unknown_dataset():
    result = CliRunner().invoke(main, ["demo", "--dataset", "svhn"])
    assert result.exit_code == 2 and "svhn" in result.output
