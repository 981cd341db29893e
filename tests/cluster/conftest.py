"""Fixtures of the cluster test: the node that run.sh brought up, kubectl and helm against it,
the images in its registry, a Temporal dev server that pods reach, the team's store."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import story
from stores import S3Store


@pytest.fixture(scope="session")
def node() -> dict[str, str]:
    return story.node_env()


@pytest.fixture(scope="session")
def kube(node: dict[str, str]) -> story.Kube:
    return story.Kube(node)


@pytest.fixture(scope="session")
def images(node: dict[str, str]) -> dict[str, str]:
    return story.push_images(node)


@pytest.fixture(scope="session")
def temporal(node: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with story.temporal_server(node, tmp_path_factory.mktemp("temporal")) as address:
        yield address


@pytest.fixture(scope="session")
def store(node: dict[str, str]) -> S3Store:
    return story.team_store(node)
