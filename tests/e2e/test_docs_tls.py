"""The TLS commands docs/operations.md shows work as written."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.cluster import Cluster, wait_until

DOC = Path(__file__).resolve().parents[2] / "docs" / "operations.md"


def tls_commands() -> str:
    text = DOC.read_text()
    block = re.search(r"<!-- tls-commands -->\s*```sh\n(.*?)```", text, re.DOTALL)
    assert block, "docs/operations.md lost its tls-commands block"
    return block.group(1)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_the_documented_ca_secures_a_real_cluster(cluster: Cluster) -> None:
    certs = cluster.root / "certs"
    certs.mkdir()
    subprocess.run(["bash", "-euo", "pipefail", "-c", tls_commands()], cwd=certs, check=True,
                   capture_output=True, timeout=60)
    cluster.start_server("--tls-cert", str(certs / "server.pem"),
                         "--tls-key", str(certs / "server.key"))
    cluster.start_agent("secure", "::1", extra=("--tls-ca", str(certs / "ca.pem")))
    wait_until(lambda: '"online":true' in cluster.lotc(
        "console", "--server", f"127.0.0.1:{cluster.admin_port}", "--tls-ca",
        str(certs / "ca.pem"), "--json", "-c", "agents",
        env={"LOTC_TOKEN": cluster.admin_token}).stdout, timeout=20, what="online over TLS")
