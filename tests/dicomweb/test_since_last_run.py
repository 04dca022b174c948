"""`--since-last-run` against a real Orthanc: a second sweep takes only the study added since."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import requests

from screen.scan import ScanOptions, scan
from screen.synth.archive import write_archive

# Every series turned away on its tags: this test is about which studies are read, and a
# sweep that screens nothing shows it without the detector's time.
NOTHING_ELIGIBLE = '''
[[rule]]
name = "nothing"
facts = ["modality"]
allow = ["^NO SUCH MODALITY$"]
if_missing = "reject"
reason = "this sweep screens nothing"
'''


def _studies(inventory: Path) -> set[str]:
    return {r["study_instance_uid"] for r in pq.read_table(inventory).to_pylist()}


def test_a_second_sweep_takes_only_the_study_added_since(pacs, cluster: str,
                                                        tmp_path: Path) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(NOTHING_ELIGIBLE)
    out = tmp_path / "nightly" / "worklist.parquet"
    options = ScanOptions(scheduler=cluster, gpus=0, rules=rules, pacs=pacs.source(),
                          since_last_run=True)
    first = scan([], out, options=options)
    before = _studies(first.inventory)
    assert before and out.with_name("worklist.parquet.last-run.json").is_file()

    new = write_archive(tmp_path / "new", 1, seed=41, matrix=32, distractors=False)
    added = pacs.orthanc.upload(sorted(p for p in new.archive.rglob("*") if p.is_file()))
    assert added
    swept: set[str] = set()
    try:
        second = scan([], out, options=options)
        swept = _studies(second.inventory)
        assert swept and not swept & before
        third = scan([], out, options=options)
        assert _studies(third.inventory) == set() and third.series == 0
    finally:
        for uid in swept:  # leave the PACS as the other tests expect it
            found = requests.post(f"{pacs.orthanc.url}/tools/lookup", data=uid,
                                  auth=pacs.orthanc.auth, timeout=30).json()
            for item in found:
                requests.delete(f"{pacs.orthanc.url}{item['Path']}", auth=pacs.orthanc.auth,
                                timeout=30)
