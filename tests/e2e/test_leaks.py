"""The run-wide secret scan (conftest's no_secret_in_any_log) finds what it must, and only that.

Its files are planted outside the run's directory, which the scan itself searches."""

import tempfile
from pathlib import Path

from leaks import leaks


def test_a_secret_in_any_log_is_found_but_not_in_the_emulators_own() -> None:
    with tempfile.TemporaryDirectory() as planted:
        root = Path(planted)
        (root / "cluster").mkdir()
        (root / "cluster" / "env").write_text("S3_SECRET_ACCESS_KEY='s3cr3t-value'\nS3_BUCKET='payloads'\n")
        (root / "cluster" / "minio.log").write_text("RootPass: s3cr3t-value\n")
        (root / "test_x0").mkdir()
        (root / "test_x0" / "proxy-0.log").write_text('{"level":"WARN","bucket":"payloads"}\n')
        assert leaks(root) == []

        (root / "test_x0" / "go-worker.log").write_text("signature failed for key s3cr3t-value\n")
        assert leaks(root) == [f"{root}/test_x0/go-worker.log: S3_SECRET_ACCESS_KEY"]
