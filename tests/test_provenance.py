"""A result says which install made it: library versions and the CPU/GPU in `provenance`, reports that render
files with and without them, and the constraints file `make` installs with."""

import json
import re
import shutil
from importlib import metadata
from pathlib import Path

import torch

from negation_encoder.results import PROVENANCE_PACKAGES, provenance

ROOT = Path(__file__).resolve().parents[1]


def test_provenance_records_the_versions_and_the_hardware():
    p = provenance("negenc test")
    assert p["command"] == "negenc test" and p["torch_threads"] == torch.get_num_threads()
    versions = p["versions"]
    assert set(versions) == {"python", *PROVENANCE_PACKAGES}
    assert versions["torch"] == torch.__version__
    for name in ("transformers", "diffusers", "accelerate", "huggingface_hub", "safetensors", "numpy"):
        assert versions[name] == metadata.version(name), name
    assert re.fullmatch(r"3\.\d+\.\d+.*", versions["python"])
    hw = p["hardware"]
    assert isinstance(hw["cpu"], str) and hw["cpu"]
    assert hw["gpu"] == (torch.cuda.get_device_name(torch.cuda.current_device()) if torch.cuda.is_available() else None)
    json.dumps(p)  # it goes into result files as is


def test_reports_render_results_with_and_without_versions(tmp_path):
    """The committed result files carry provenance without versions; new ones carry them: both render."""
    from negation_testbed.reports import report

    data = tmp_path / "data"
    shutil.copytree(ROOT / "docs" / "results" / "data", data)
    for f in data.glob("*.json"):
        obj = json.loads(f.read_text())
        obj["provenance"] = {**obj.get("provenance", {}), "versions": provenance()["versions"],
                             "hardware": provenance()["hardware"]}
        f.write_text(json.dumps(obj))
    written = report(data, tmp_path / "docs", None)
    assert written and all(Path(w).is_file() for w in written)
    # the pages do not depend on the new keys: the same text as from the committed files
    report(ROOT / "docs" / "results" / "data", tmp_path / "old_docs", None)
    for page in (tmp_path / "docs").glob("*.md"):
        assert page.read_text() == (tmp_path / "old_docs" / page.name).read_text(), page.name


def test_constraints_pin_every_package_exactly_and_make_uses_them():
    lines = [x.strip() for x in (ROOT / "constraints.txt").read_text().splitlines()
             if x.strip() and not x.startswith("#")]
    names = set()
    for line in lines:
        m = re.fullmatch(r"([A-Za-z0-9_.-]+)==([A-Za-z0-9_.!+-]+)", line)
        assert m, f"constraints.txt: {line!r} is not an exact NAME==VERSION pin"
        names.add(m.group(1).lower().replace("_", "-"))
    assert not any(n.startswith("negation") for n in names), "the project itself is not pinned"
    for name in PROVENANCE_PACKAGES:
        assert name.replace("_", "-") in names, name
    torch_pin = next(x for x in lines if x.startswith("torch=="))
    assert "+" not in torch_pin, "torch is pinned by version only: TORCH_SPEC picks the build"
    makefile = (ROOT / "Makefile").read_text()
    assert "CONSTRAINTS ?= constraints.txt" in makefile
    assert makefile.count("$(PIN)") == 2, "both pip installs (torch and the package) go through the constraints"
