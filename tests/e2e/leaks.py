"""The store secrets a test run used, and the logs of the run that show one.

cluster.sh writes each environment's secrets to the `env` file of its directory; every other
log under the run's directory (proxies, workers, SDK scenarios, the soak's) must show none.
The emulators' own logs, beside that `env` file, are theirs: MinIO prints its root password.
"""

from __future__ import annotations

from pathlib import Path

from stores import read_env

SECRET_KEYS = ("S3_SECRET_ACCESS_KEY", "AZURE_STORAGE_KEY")


def environments(root: Path) -> list[Path]:
    """The directories under `root` where cluster.sh wrote an environment."""
    return [env_file.parent for env_file in root.rglob("env") if env_file.is_file()]


def secrets_used(directories: list[Path]) -> dict[str, str]:
    """Each secret value of those environments, with the name it goes by."""
    found = {}
    for directory in directories:
        env = read_env(directory / "env")
        found.update({env[key]: key for key in SECRET_KEYS if env.get(key)})
    return found


def leaks(root: Path) -> list[str]:
    """`log: SECRET_NAME` for every log under `root` that shows a secret."""
    emulators = environments(root)
    secrets = secrets_used(emulators)
    found = []
    for log in sorted(root.rglob("*.log")):
        if log.parent in emulators or not log.is_file():
            continue
        text = log.read_text(errors="replace")
        found += [f"{log}: {name}" for value, name in secrets.items() if value in text]
    return found
