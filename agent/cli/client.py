"""HTTP client of the local API over its Unix socket, for the `sems` commands.

Errors a technician can act on become `AgentUnreachable` with one readable line (socket
missing, permission denied, agent not answering); the commands turn that into exit 69.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

DEFAULT_SOCKET = "/run/sems/api.sock"
EX_UNAVAILABLE = 69  # sysexits: the agent (a service we need) is not reachable


class AgentUnreachable(Exception):
    """The agent cannot be reached through its socket; the message says why."""


class ApiFailure(Exception):
    """The agent answered with an error status; the message is its error text."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def add_client_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--socket",
        default=os.environ.get("SEMS_API_SOCKET", DEFAULT_SOCKET),
        help=f"agent API socket (default $SEMS_API_SOCKET or {DEFAULT_SOCKET})",
    )
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")


class ApiClient:
    def __init__(self, socket_path: str, *, timeout_s: float = 5.0) -> None:
        # httpx (~0.3 s to import) only once a command talks to the agent: every `sems`
        # start builds the parser, which imports this module for add_client_arguments.
        import httpx

        self._errors = (httpx.ConnectError, httpx.TimeoutException)
        self.socket_path = socket_path
        self._http = httpx.Client(
            transport=httpx.HTTPTransport(uds=socket_path), base_url="http://sems", timeout=timeout_s
        )

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.close()

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        connect_error, timeout = self._errors
        try:
            response = self._http.request(method, path, **kwargs)
        except connect_error as exc:
            raise AgentUnreachable(self._why(exc)) from None
        except timeout:
            raise AgentUnreachable(f"the agent at {self.socket_path} did not answer in time") from None
        if response.status_code >= 400:
            try:
                message = response.json().get("error", response.text)
            except ValueError:
                message = response.text
            raise ApiFailure(response.status_code, str(message))
        if response.status_code == 204 or not response.content:
            return None
        if response.headers.get("content-type", "").startswith("application/json"):
            return response.json()
        return response.text

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params or None)

    def post(self, path: str, body: Any = None) -> Any:
        return self.request("POST", path, json=body)

    def _why(self, exc: Exception) -> str:
        path = self.socket_path
        if not os.path.exists(path):
            return f"no agent socket at {path} (is sems-agent running? see --socket)"
        if not os.access(path, os.R_OK | os.W_OK):
            return f"permission denied on {path} (is your user in the socket's group?)"
        return f"cannot reach the agent at {path}: {exc}"
