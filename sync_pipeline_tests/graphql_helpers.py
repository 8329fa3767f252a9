"""Talking to a running Dagster webserver as its UI does: GraphQL over HTTP."""

import socket

import requests

LAUNCH = """
mutation Launch($executionParams: ExecutionParams!) {
  launchRun(executionParams: $executionParams) {
    __typename
    ... on LaunchRunSuccess { run { runId status } }
    ... on PythonError { message }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}
"""

LOCATION = {"repositoryLocationName": "sync_pipeline", "repositoryName": "__repository__"}

PARTITION_TAGS = """
query Tags($repo: RepositorySelector!, $set: String!, $partition: String!) {
  partitionSetOrError(repositorySelector: $repo, partitionSetName: $set) {
    __typename
    ... on PartitionSet { partition(partitionName: $partition) { tagsOrError {
      __typename ... on PartitionTags { results { key value } } } } }
  }
}
"""
"""The tags the launchpad gives a run of one partition (its partitioned config's)."""

RUN_STATUS = """
query Status($runId: ID!) {
  runOrError(runId: $runId) { __typename ... on Run { status tags { key value } } }
}
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def graphql(url: str, query: str, variables: dict) -> dict:
    """The `data` of one GraphQL answer; an answer with `errors` fails the test."""
    response = requests.post(url, json={"query": query, "variables": variables}, timeout=30)
    response.raise_for_status()
    body = response.json()
    assert "errors" not in body, body
    return body["data"]
