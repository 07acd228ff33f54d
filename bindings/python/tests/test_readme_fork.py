"""The README's "Fork a database" recipe, run as written but on the golden replica
(sql-tests/replica: TXID 1 is the schema, TXID 2 the changes) and on directories: its
source and target URLs and its TXID are the only things replaced."""

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).parents[3]
REPLICA = Path(os.environ.get("LTXVFS_TEST_REPLICA", REPO / "sql-tests" / "replica"))


def recipe() -> str:
    readme = (REPO / "README.md").read_text()
    found = re.search(r"<!-- recipe: fork -->\n```python\n(.*?)```", readme, re.S)
    assert found, "the README's fork recipe"
    return found.group(1)


def test_the_readme_fork_recipe(tmp_path):
    code = (
        recipe()
        .replace("s3://bucket/prod.db", f"file://{REPLICA.resolve()}")
        .replace("s3://bucket/staging.db", f"file://{tmp_path / 'staging'}")
        .replace('txid="4b"', 'txid="1"')
    )
    assert "s3://" not in code
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["0000000000000001", "0000000000000002"]
