"""Reads the one image of an OCI image layout, for tests/image/check.sh.

    oci.py LAYOUT digest    the manifest's digest
    oci.py LAYOUT layers    the path of each layer blob, base first
    oci.py LAYOUT summary   what a runtime takes from the config, one sorted `key=value` line each:
                            platform, user, entrypoint, cmd, and every label as label.NAME
"""

import json
import sys
from pathlib import Path


def blob(layout: Path, digest: str) -> Path:
    algorithm, hex_digest = digest.split(":", 1)
    return layout / "blobs" / algorithm / hex_digest


def main(layout: Path, what: str) -> None:
    manifests = json.loads((layout / "index.json").read_text())["manifests"]
    if len(manifests) != 1:
        sys.exit(f"{layout}: {len(manifests)} manifests in index.json, expected one image")
    digest = manifests[0]["digest"]
    manifest = json.loads(blob(layout, digest).read_text())
    if what == "digest":
        print(digest)
    elif what == "layers":
        for layer in manifest["layers"]:
            print(blob(layout, layer["digest"]))
    elif what == "summary":
        config = json.loads(blob(layout, manifest["config"]["digest"]).read_text())
        runtime = config.get("config") or {}
        lines = [
            f"platform={config.get('os')}/{config.get('architecture')}",
            f"user={runtime.get('User')}",
            f"entrypoint={json.dumps(runtime.get('Entrypoint'))}",
            f"cmd={json.dumps(runtime.get('Cmd'))}",
        ]
        lines += [f"label.{k}={v}" for k, v in (runtime.get("Labels") or {}).items()]
        print("\n".join(sorted(lines)))
    else:
        sys.exit(f"unknown query {what!r}: digest, layers or summary")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(Path(sys.argv[1]), sys.argv[2])
