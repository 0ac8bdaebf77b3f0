"""Issue 18 item 5: an interrupted ``meshsync coklit import`` resumes. A real process is
interrupted with SIGINT mid-way; running the same import again skips the rows stored,
says so (in Indonesian here), and ends with the store a one-shot import gives. All
people are made up."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from helpers import records_stored
from meshsync.coklit.dpt_csv import import_csv
from meshsync.coklit.resume import META

from meshsync.host.local import open_node


def meshsync(*args: str | Path, lang: str = "en") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MESHSYNC_LANG": lang}
    env.pop("MESHSYNC_HOME", None)
    return subprocess.run([sys.executable, "-m", "meshsync.cli.main", *map(str, args)],
                          capture_output=True, text=True, env=env, timeout=300, check=False)


def voters(home: Path) -> list[tuple[str, str, dict[str, Any], bool]]:
    """Every voter as (partition, key, visible fields, has a conflict)."""
    with open_node(home) as node:
        return sorted((r.partition, r.key, r.fields, bool(r.conflicts))
                      for r in node.records("voters"))


def test_an_interrupted_import_resumes_and_says_so(tmp_path: Path) -> None:
    csv_path = tmp_path / "dpt.csv"
    assert meshsync("coklit", "generate", "--seed", "4", "--distrik", "Jila", "-o",
                    csv_path).returncode == 0
    total = len(csv_path.read_text("utf-8").splitlines()) - 1
    home, whole = tmp_path / "central", tmp_path / "one-shot"
    for h in (home, whole):
        assert meshsync("init", "--home", h).returncode == 0
    proc = subprocess.Popen(
        [sys.executable, "-m", "meshsync.cli.main", "coklit", "import", str(csv_path),
         "--home", str(home), "--batch-size", "40"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "MESHSYNC_LANG": "en"})
    deadline = time.monotonic() + 120
    while records_stored(home) < 400 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.01)  # until some batches are stored
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, (proc.returncode, stderr)
    done = int(stderr.split("Ctrl-C): ", 1)[1].split(" of ", 1)[0])
    assert 0 < done < total and records_stored(home) == done, stderr

    again = meshsync("coklit", "import", csv_path, "--home", home, lang="id")
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines()[0].startswith(
        f"Melanjutkan impor: {done} baris sudah tersimpan"), again.stdout
    one_shot = json.loads(meshsync("coklit", "import", csv_path, "--home", whole,
                                   "--json").stdout)
    assert (one_shot["new"], one_shot["resumed"]) == (total, 0)
    assert voters(home) == voters(whole) and len(voters(home)) == total

    third = json.loads(meshsync("coklit", "import", csv_path, "--home", home,
                                "--json").stdout)  # complete: nothing to resume
    assert (third["resumed"], third["unchanged"], third["changes"]) == (0, total, 0)


def test_a_stale_marker_of_another_file_is_ignored(make_device: Any, tmp_path: Path) -> None:
    """A marker of another file (or of rows judged otherwise) never skips a row."""
    path = tmp_path / "b.csv"
    assert meshsync("coklit", "generate", "--seed", "2", "--distrik", "Agimuga",
                    "--voters-per-tps", "5", "--tps-per-kampung", "1", "-o",
                    path).returncode == 0
    device = make_device("central", kind="sqlite")
    with device.node.store.transaction():
        device.node.store.set_meta(META, json.dumps(
            {"file": "0" * 64, "rows": "0" * 64, "done": 20}).encode())
    report = import_csv(device.node, path)
    assert report.resumed == 0 and report.new == report.rows > 20
    assert device.node.store.get_meta(META) == b""  # cleared once complete
