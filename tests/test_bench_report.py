"""scripts/bench_report.py: each benchmark replaces only its own block of docs/BENCHMARKS.md, stamped."""

from __future__ import annotations

import datetime
import re
import sys

import pytest

from tests.conftest import REPO

sys.path.insert(0, str(REPO / "scripts"))
import bench_report

DOC = """# Benchmarks

Hand-written intro, kept.

<!-- bench:offline -->

old offline table

<!-- /bench:offline -->

## Start-up

Prose between the blocks, kept.

<!-- bench:startup -->
old startup
<!-- /bench:startup -->

Closing prose.
"""


@pytest.fixture
def doc(tmp_path):
    path = tmp_path / "BENCHMARKS.md"
    path.write_bytes(DOC.encode("utf-8"))
    return path


def outside(text: str, key: str) -> tuple[str, str]:
    before, rest = text.split(f"<!-- bench:{key} -->")
    return before, rest.split(f"<!-- /bench:{key} -->")[1]


def test_replaces_only_between_the_markers_and_keeps_the_rest_byte_for_byte(doc):
    bench_report.write_section(doc, "startup", "| new | table |\n|---|---|\n| 1 | 2 |\n")
    text = doc.read_bytes().decode("utf-8")
    assert outside(text, "startup") == outside(DOC, "startup")
    assert "<!-- bench:startup -->\n\n| new | table |\n|---|---|\n| 1 | 2 |\n\n<!-- /bench:startup -->" in text
    assert "old startup" not in text and text.count("bench:startup") == 2


def test_two_sections_are_independent(doc):
    bench_report.write_section(doc, "offline", "offline v2")
    bench_report.write_section(doc, "startup", "startup v2")
    bench_report.write_section(doc, "offline", "offline v3")  # again: the startup block is not touched
    text = doc.read_text(encoding="utf-8")
    assert "offline v3" in text and "offline v2" not in text and "startup v2" in text
    assert text.replace("offline v3", "old offline table").replace(
        "<!-- bench:startup -->\n\nstartup v2\n\n", "<!-- bench:startup -->\nold startup\n") == DOC


def test_appends_the_block_when_its_markers_are_absent(doc):
    bench_report.write_section(doc, "contention", "busy table")
    text = doc.read_text(encoding="utf-8")
    assert text == DOC + "\n<!-- bench:contention -->\n\nbusy table\n\n<!-- /bench:contention -->\n"
    bench_report.write_section(doc, "contention", "busy table v2")  # then replaced in place, not appended again
    assert doc.read_text(encoding="utf-8").count("bench:contention") == 2


def test_a_missing_doc_is_started(tmp_path):
    path = tmp_path / "docs" / "BENCHMARKS.md"
    bench_report.write_section(path, "live", "live table")
    expected = "# Benchmarks\n\n<!-- bench:live -->\n\nlive table\n\n<!-- /bench:live -->\n"
    assert path.read_text(encoding="utf-8") == expected


def test_line_endings_and_marker_lookalikes_outside_are_left_alone(tmp_path):
    path = tmp_path / "BENCHMARKS.md"
    crlf = "intro\r\n<!-- bench:live -->\r\nold\r\n<!-- /bench:live -->\r\nnot <!-- bench:live --> a marker\r\n"
    path.write_bytes(crlf.encode("utf-8"))
    bench_report.write_section(path, "live", "new")
    text = path.read_bytes().decode("utf-8")
    assert text == "intro\r\n<!-- bench:live -->\n\nnew\n\n<!-- /bench:live -->\r\nnot <!-- bench:live --> a marker\r\n"


def test_a_key_is_not_a_prefix_of_another(doc):
    """bench:speakers-pipeline-fp32 and bench:speakers-pipeline-int8 are two blocks, not one."""
    blocks = "\n<!-- bench:x-fp32 -->\na\n<!-- /bench:x-fp32 -->\n\n<!-- bench:x -->\nb\n<!-- /bench:x -->\n"
    doc.write_text(DOC + blocks, encoding="utf-8")
    bench_report.write_section(doc, "x", "new")
    text = doc.read_text(encoding="utf-8")
    assert "<!-- bench:x-fp32 -->\na\n<!-- /bench:x-fp32 -->" in text and "\nb\n" not in text


def test_broken_markers_are_refused_not_guessed(doc):
    doc.write_text(DOC + "<!-- bench:live -->\nno end\n", encoding="utf-8")
    with pytest.raises(ValueError, match="never closed"):
        bench_report.write_section(doc, "live", "new")
    doc.write_text(DOC + DOC.split("## Start-up")[1], encoding="utf-8")  # the startup block twice
    with pytest.raises(ValueError, match="2 times"):
        bench_report.write_section(doc, "startup", "new")
    assert doc.read_text(encoding="utf-8").count("old startup") == 2  # nothing written


def test_stamp_states_the_date_the_machine_and_the_command(monkeypatch):
    monkeypatch.setattr(bench_report, "machine", lambda: "Some CPU, 2 CPUs, 8 GiB RAM, no GPU")
    command = ".venv/bin/python scripts/bench.py --repeat 3"
    line = bench_report.stamp(command)
    today = datetime.date.today().isoformat()
    assert line == f"Measured {today} on Some CPU, 2 CPUs, 8 GiB RAM, no GPU. Command: `{command}`"
    assert "\n" not in line


def test_machine_names_cpus_ram_python_torch_and_gpu():
    described = bench_report.machine()
    pattern = r"\d+ CPUs, \d+ GiB RAM, Python 3\.\d+\.\d+, torch \S+, (no GPU|GPU |\d+ GPUs)"
    assert re.search(pattern, described), described


def test_invocation_is_the_command_line_a_user_types(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["/somewhere/scripts/bench_live.py", "--streams", "1,2", "--server-env", "A=b c"])
    assert bench_report.invocation() == ".venv/bin/python scripts/bench_live.py --streams 1,2 --server-env 'A=b c'"
    assert bench_report.invocation(["--smoke"]) == ".venv/bin/python scripts/bench_live.py --smoke"


def test_publish_prints_every_block_and_writes_only_when_asked(doc, capsys):
    bench_report.publish({"startup": "smoke table"}, doc, write=False)
    assert "<!-- bench:startup -->\n\nsmoke table\n\n<!-- /bench:startup -->" in capsys.readouterr().out
    assert doc.read_bytes() == DOC.encode("utf-8")
    bench_report.publish({"startup": "full table"}, doc, write=True)
    assert "full table" in doc.read_text(encoding="utf-8")


def test_the_docs_blocks_are_each_script_s_and_well_formed():
    """Every block in docs/BENCHMARKS.md opens and closes once, and rewriting one with its own text is a no-op."""
    path = REPO / "docs" / "BENCHMARKS.md"
    text = path.read_bytes().decode("utf-8")
    keys = re.findall(r"^<!-- bench:([a-z0-9-]+) -->$", text, flags=re.MULTILINE)
    assert {"offline", "startup", "live", "speakers-embeddings", "speakers-clustering", "hotwords-int8"} <= set(keys)
    assert len(keys) == len(set(keys))
    for key in keys:
        inner = text.split(f"<!-- bench:{key} -->\n")[1].split(f"\n<!-- /bench:{key} -->")[0]
        assert inner.strip().startswith("Measured 20"), key  # each block states its date, machine and command
        assert "Command: `" in inner.splitlines()[1], key
        assert bench_report.replace_block(text, key, inner) == text, key
