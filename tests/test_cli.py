"""The command line: thin, helpful, and clear about bad input."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
from typer.testing import CliRunner

from screen.cli import app
from tests.conftest import need

runner = CliRunner()


def said(result) -> str:
    """The output as one line of words, without the frame rich draws around errors."""
    return " ".join(result.output.replace("│", " ").split())


def test_every_command_has_help_text() -> None:
    for command in app.registered_commands:
        assert command.callback.__doc__, f"{command.name} has no help text"
        result = runner.invoke(app, [command.name, "--help"])
        assert result.exit_code == 0, result.output


def test_index_writes_inventory_and_errors(tmp_path: Path, corpus: Path) -> None:
    out = tmp_path / "inv.parquet"
    result = runner.invoke(app, ["index", str(need(corpus / "dcm_qa_ct")), "--out", str(out),
                                 "--workers", "1"])
    assert result.exit_code == 0, result.output
    assert pq.read_table(out).num_rows >= 1
    assert pq.read_table(tmp_path / "errors.parquet").num_rows >= 1
    assert "eligible" in result.output


def test_a_bad_rules_file_fails_before_crawling(tmp_path: Path, corpus: Path) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text('[[rule]]\nname = "x"\nfacts = ["colour"]\nallow = ["red"]\nreason = "r"\n')
    result = runner.invoke(app, ["index", str(corpus), "--rules", str(rules),
                                 "--out", str(tmp_path / "i.parquet")])
    assert result.exit_code == 2
    assert "rule 'x': unknown facts ['colour']" in said(result)
    assert not (tmp_path / "i.parquet").exists()


def test_a_missing_archive_is_refused(tmp_path: Path) -> None:
    result = runner.invoke(app, ["index", str(tmp_path / "nowhere")])
    assert result.exit_code == 2
    assert "does not exist" in said(result)


def test_scan_refuses_a_worker_memory_that_is_not_a_size(tmp_path: Path) -> None:
    result = runner.invoke(app, ["scan", str(tmp_path), "--worker-memory", "lots",
                                 "--out", str(tmp_path / "w.parquet")])
    assert result.exit_code == 2
    assert "--worker-memory: 'lots' is not a size such as 4GiB" in said(result)
    assert not (tmp_path / "w.parquet").exists()


def test_worker_memory_is_for_local_workers_only(tmp_path: Path) -> None:
    result = runner.invoke(app, ["scan", str(tmp_path), "--worker-memory", "4GiB",
                                 "--scheduler", "tcp://127.0.0.1:1",
                                 "--out", str(tmp_path / "w.parquet")])
    assert result.exit_code == 2
    assert "--memory-limit" in said(result)


def test_scan_with_an_unknown_model_says_so(tmp_path: Path) -> None:
    (tmp_path / "archive").mkdir()
    result = runner.invoke(app, ["scan", str(tmp_path / "archive"), "--model", "no-such-model",
                                 "--out", str(tmp_path / "w.parquet")])
    assert result.exit_code == 2
    assert "no-such-model" in said(result)


def test_build_engine_needs_exactly_one_precision() -> None:
    result = runner.invoke(app, ["build-engine"])
    assert result.exit_code == 2
    assert "exactly one of --fp16 and --int8" in said(result)


def test_scan_backend_and_precision_are_choices(tmp_path: Path) -> None:
    # Issue reproduction: --backend cuda-magic and --precision fp8 were taken, and every series
    # became an error row, with exit status 0.
    from screen.backends import PRECISIONS, names
    from screen.backends.service import TRANSITS
    from screen.cli import Backend, Precision, Transit

    assert [b.value for b in Backend] == ["auto", *names()]
    assert [p.value for p in Precision] == list(PRECISIONS)
    assert [t.value for t in Transit] == list(TRANSITS)
    for option, value in (("--backend", "cuda-magic"), ("--precision", "fp8"),
                          ("--gpu-transit", "int4")):
        result = runner.invoke(app, ["scan", str(tmp_path), option, value,
                                     "--out", str(tmp_path / "w.parquet")])
        assert result.exit_code == 2
        assert f"'{value}' is not one of" in said(result)
        assert not (tmp_path / "w.parquet").exists()
