"""The Kubernetes API client of canary-step: the only module that imports `kubernetes`.

Owns: building the client configuration (in-cluster ServiceAccount, or a kubeconfig and context),
the ONE request function `Kube._request` that owns retries (tenacity, driven by `RetryPolicy`), the
mapping of every answer or exception to `step.errors`, per-verb request counting, and narrow typed
calls with timeouts on the few resources canary-step touches. Nothing from urllib3 or `kubernetes`
escapes this module: callers see `APIError` and its subclasses only.
Must not: know what a canary is, decide anything, or sleep except through the injected `sleep`.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import kubernetes.client
import kubernetes.config
import tenacity
import urllib3
from kubernetes.client.exceptions import ApiException, ApiValueError
from kubernetes.config.config_exception import ConfigException

from step.errors import APIError, Conflict, Invalid, UsageError, one_line
from step.kube.mapping import (
    Target,
    TransientAPIError,
    error_for,
    is_json_patch_not_applicable,
    server_message,
)
from step.kube.resources import (
    CANARIES,
    EVENTS,
    METRIC_TEMPLATES,
    REVISIONS,
    SECRETS,
    SERVICES,
    Resource,
)
from step.retrying import RetryPolicy, parse_retry_after, retrying
from step.spec.schema import suggest

log = logging.getLogger(__name__)

Obj = dict[str, Any]
"""A Kubernetes object as the API server sent it (decoded JSON)."""

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"

# Connect and read timeouts for ordinary (non-watch) requests.
DEFAULT_TIMEOUT = (5.0, 15.0)

IN_CLUSTER_TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token"


@dataclass(frozen=True, kw_only=True)
class WatchEvent:
    type: str  # ADDED, MODIFIED, DELETED, BOOKMARK, ERROR
    object: Obj


class WatchStream:
    """The events of one open watch request; iterate it once. `close()` may be called from any thread."""

    def __init__(self, response: urllib3.BaseHTTPResponse, *, target: Target, host: str) -> None:
        self._response = response
        self._target = target
        self._host = host
        self._closed = False

    def close(self) -> None:
        self._closed = True
        # Unblocks a read in another thread (urllib3 >= 2.3); a finished response needs nothing.
        with contextlib.suppress(AttributeError, ValueError, RuntimeError, OSError, NotImplementedError):
            self._response.shutdown()

    def __iter__(self) -> Iterator[WatchEvent]:
        buffer = b""
        try:
            for chunk in self._response.stream(65536, decode_content=True):
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    if line.strip() and not self._closed:
                        yield _watch_event(line, target=self._target, host=self._host)
            if buffer.strip() and not self._closed:
                yield _watch_event(buffer, target=self._target, host=self._host)
        except (urllib3.exceptions.HTTPError, OSError) as err:
            # A watch that breaks off (read timeout, reset, closed) simply ends: the caller re-reads
            # and re-watches within its own deadline.
            log.debug("watch on %s ended: %s", self._target.describe(), one_line(err))
        finally:
            with contextlib.suppress(Exception):
                self._response.release_conn()


@dataclass
class RequestCounter:
    """API requests sent, by RBAC verb; every attempt counts (a retried GET is two requests)."""

    by_verb: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, verb: str) -> None:
        with self._lock:
            self.by_verb[verb] = self.by_verb.get(verb, 0) + 1

    @property
    def total(self) -> int:
        with self._lock:
            return sum(self.by_verb.values())

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self.by_verb)


class Kube:
    """Narrow, typed calls on the resources canary-step needs. Build it with `connect()`."""

    def __init__(
        self,
        api: kubernetes.client.ApiClient,
        *,
        retry: RetryPolicy,
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._api = api
        self._retry = retry
        self._timeout = timeout
        self._sleep = sleep
        self.requests = RequestCounter()
        self._uids: dict[tuple[str, str, str], str] = {}  # (plural, namespace, name) -> uid seen

    @property
    def host(self) -> str:
        return str(self._api.configuration.host)

    def close(self) -> None:
        """Close the pooled connections too: ``ApiClient.close()`` leaves their sockets to the GC."""
        with contextlib.suppress(AttributeError):
            self._api.rest_client.pool_manager.clear()
        self._api.close()  # type: ignore[no-untyped-call]

    # ------------------------------------------------------------------ Knative Service

    def known_uid(self, resource: Resource, *, namespace: str, name: str) -> str | None:
        """The uid of an object this client has already read or written (no request)."""
        return self._uids.get((resource.plural, namespace, name))

    def get_service(self, *, namespace: str, name: str) -> Obj:
        return self._object(Target(verb="get", resource=SERVICES, namespace=namespace, name=name))

    def list_service_names(self, *, namespace: str) -> list[str]:
        """The names of the Knative Services in `namespace` (for a "did you mean"; needs verb list)."""
        answer = self._object(Target(verb="list", resource=SERVICES, namespace=namespace))
        return sorted(str((i.get("metadata") or {}).get("name")) for i in answer.get("items") or [])

    def patch_service(self, *, namespace: str, name: str, patch: Obj | list[Obj]) -> Obj:
        """A JSON patch (a list of ops, `test` ops make it conditional) or a merge patch (a dict).

        A failed `test` op comes back as `Conflict`, like a 409.
        """
        target = Target(verb="patch", resource=SERVICES, namespace=namespace, name=name)
        if not isinstance(patch, list):
            return self._object(target, method="PATCH", body=patch, content_type=MERGE_PATCH)
        try:
            return self._object(target, method="PATCH", body=patch, content_type=JSON_PATCH)
        except Invalid as err:
            if not is_json_patch_not_applicable(str(err)):
                raise
            # The API server answers a failed `test` op (or a path that no longer exists) with this
            # bare 422: the object is not as we last read it.
            raise Conflict(
                f"conflict: {target.describe()} is not as we last read it (a JSON-patch precondition failed)",
                status=err.status,
                verb="patch",
                resource=SERVICES.qualified,
            ) from None

    def watch_service(
        self, *, namespace: str, name: str, resource_version: str, timeout: float
    ) -> WatchStream:
        """Changes to one Service after `resource_version`, for at most `timeout` seconds.

        The iteration ends when the server closes the watch (after `timeout`), when no byte arrived
        for `timeout` seconds, or when `close()` is called from another thread; an `ERROR` event
        (e.g. 410 Gone when the resource version is too old) is yielded, not raised, so the caller
        can re-read and re-watch.
        """
        return self._watch(
            Target(verb="watch", resource=SERVICES, namespace=namespace, name=name),
            resource_version=resource_version,
            timeout=timeout,
        )

    # ------------------------------------------------------------------ Revisions, Secrets, Events

    def get_revision(self, *, namespace: str, name: str) -> Obj:
        return self._object(Target(verb="get", resource=REVISIONS, namespace=namespace, name=name))

    def get_secret(self, *, namespace: str, name: str) -> Obj:
        return self._object(Target(verb="get", resource=SECRETS, namespace=namespace, name=name))

    def get_secret_data(self, *, namespace: str, name: str) -> dict[str, str]:
        """The Secret's `data`, base64-decoded to text (and any `stringData` the server echoed)."""
        secret = self.get_secret(namespace=namespace, name=name)
        out: dict[str, str] = {}
        for key, value in (secret.get("data") or {}).items():
            try:
                out[str(key)] = base64.b64decode(str(value), validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError) as err:
                raise APIError(
                    f'secret "{name}" in namespace "{namespace}": key "{key}" is not'
                    " base64-encoded UTF-8 text"
                ) from err
        return out

    def create_event(self, *, namespace: str, event: Obj) -> Obj:
        """A core/v1 Event (what `kubectl describe` lists under Events)."""
        return self._object(
            Target(verb="create", resource=EVENTS, namespace=namespace),
            method="POST",
            body=event,
        )

    def patch_event(self, *, namespace: str, name: str, patch: Obj) -> Obj:
        """A merge patch on a core/v1 Event: how a repeated event counts up (`count`, `lastTimestamp`)."""
        return self._object(
            Target(verb="patch", resource=EVENTS, namespace=namespace, name=name),
            method="PATCH",
            body=patch,
            content_type=MERGE_PATCH,
        )

    # ------------------------------------------------------------------ Flagger resources

    def get_canary(self, *, namespace: str, name: str) -> Obj:
        return self._object(Target(verb="get", resource=CANARIES, namespace=namespace, name=name))

    def patch_canary_status(self, *, namespace: str, name: str, patch: Obj) -> Obj:
        """A merge patch on the `/status` subresource."""
        return self._object(
            Target(verb="patch", resource=CANARIES, namespace=namespace, name=name, subresource="status"),
            method="PATCH",
            body=patch,
            content_type=MERGE_PATCH,
        )

    def get_metric_template(self, *, namespace: str, name: str) -> Obj:
        return self._object(Target(verb="get", resource=METRIC_TEMPLATES, namespace=namespace, name=name))

    # ------------------------------------------------------------------ the one request function

    def _object(
        self,
        target: Target,
        *,
        method: str = "GET",
        body: Obj | list[Obj] | None = None,
        content_type: str = "application/json",
    ) -> Obj:
        response = self._request(target, method=method, body=body, content_type=content_type)
        try:
            raw = response.data
            decoded = json.loads(raw)
        except (ValueError, urllib3.exceptions.HTTPError, OSError) as err:
            raise APIError(
                f"the API server at {self.host} sent a response to {target.verb} {target.describe()}"
                f" that is not JSON: {err}",
                verb=target.verb,
                resource=target.resource.qualified,
            ) from None
        finally:
            response.release_conn()
        if isinstance(decoded, dict) and target.name:
            uid = (decoded.get("metadata") or {}).get("uid")
            if isinstance(uid, str) and uid:
                self._uids[(target.resource.plural, target.namespace, target.name)] = uid
        if not isinstance(decoded, dict):
            raise APIError(
                f"the API server at {self.host} sent a JSON {type(decoded).__name__} to {target.verb}"
                f" {target.describe()}, not an object",
                verb=target.verb,
                resource=target.resource.qualified,
            )
        return decoded

    def _request(
        self,
        target: Target,
        *,
        method: str,
        body: Obj | list[Obj] | None = None,
        content_type: str = "application/json",
        query: Mapping[str, str] | None = None,
        timeout: tuple[float, float] | None = None,
    ) -> urllib3.BaseHTTPResponse:
        """Send one request, retrying transient failures per `RetryPolicy`; return a 2xx response.

        The response is not read (watches stream it); the caller reads and releases it.
        """
        path = target.resource.path(
            namespace=target.namespace, name=target.name, subresource=target.subresource
        )
        if target.verb in ("list", "watch"):
            path = target.resource.path(namespace=target.namespace)

        def retry_after(state: tenacity.RetryCallState) -> float | None:
            err = state.outcome.exception() if state.outcome else None
            return err.retry_after if isinstance(err, TransientAPIError) else None

        loop = retrying(
            self._retry,
            retry=tenacity.retry_if_exception_type(TransientAPIError),
            sleep=self._sleep,
            retry_after=retry_after,
            before_sleep=lambda state: log.warning(
                "retrying %s %s (attempt %d failed: %s)",
                target.verb,
                target.describe(),
                state.attempt_number,
                state.outcome.exception() if state.outcome else "?",
            ),
        )
        try:
            return loop(
                self._attempt,
                target,
                method=method,
                path=path,
                body=body,
                content_type=content_type,
                query=query,
                timeout=timeout or self._timeout,
            )
        except TransientAPIError as err:
            attempts = loop.statistics.get("attempt_number", 1)
            raise APIError(
                f"{err} (gave up after {attempts} attempt(s))",
                status=err.status,
                verb=err.verb,
                resource=err.resource,
            ) from None

    def _attempt(
        self,
        target: Target,
        *,
        method: str,
        path: str,
        body: Obj | list[Obj] | None,
        content_type: str,
        query: Mapping[str, str] | None,
        timeout: tuple[float, float],
    ) -> urllib3.BaseHTTPResponse:
        self.requests.add(target.verb)
        headers = {"Accept": "application/json", "Content-Type": content_type}
        try:
            method, url, headers, serialized, _ = self._api.param_serialize(
                method=method,
                resource_path=path,
                query_params=list((query or {}).items()),
                header_params=headers,
                body=body,
                auth_settings=["BearerToken"],
            )
            rest = self._api.call_api(
                method, url, header_params=headers, body=serialized, _request_timeout=timeout
            )
        except (urllib3.exceptions.HTTPError, OSError, ApiException, ApiValueError, ConfigException) as err:
            raise TransientAPIError(
                f"cannot reach the API server at {self.host} to {target.verb} {target.describe()}:"
                f" {one_line(err)}",
                status=None,
                target=target,
                retry_after=None,
            ) from None
        response: urllib3.BaseHTTPResponse = rest.response
        if 200 <= response.status <= 299:
            return response
        try:
            data = response.data
        except (urllib3.exceptions.HTTPError, OSError):
            data = b""
        finally:
            response.release_conn()
        raise error_for(
            response.status,
            target=target,
            message=server_message(data),
            retry_after=parse_retry_after(response.headers.get("Retry-After"), now=time.time()),
        )

    def _watch(self, target: Target, *, resource_version: str, timeout: float) -> WatchStream:
        seconds = max(1, math.ceil(timeout))
        query = {
            "watch": "true",
            "fieldSelector": f"metadata.name={target.name}",
            "resourceVersion": resource_version,
            "timeoutSeconds": str(seconds),
            "allowWatchBookmarks": "true",
        }
        named = Target(verb="watch", resource=target.resource, namespace=target.namespace, name=target.name)
        response = self._request(
            named,
            method="GET",
            query=query,
            # The read timeout ends a quiet watch at the caller's deadline, not at the next whole second.
            timeout=(self._timeout[0], max(timeout, 0.05)),
        )
        return WatchStream(response, target=named, host=self.host)


def _watch_event(line: bytes, *, target: Target, host: str) -> WatchEvent:
    try:
        decoded = json.loads(line)
        return WatchEvent(type=str(decoded["type"]), object=dict(decoded["object"]))
    except (ValueError, KeyError, TypeError) as err:
        raise APIError(
            f"the API server at {host} sent a watch event for {target.describe()} that is not valid: {err}",
            verb="watch",
            resource=target.resource.qualified,
        ) from None


# ---------------------------------------------------------------------- connecting


def connect(
    *,
    kubeconfig: str | None,
    context: str | None,
    retry: RetryPolicy,
    timeout: tuple[float, float] = DEFAULT_TIMEOUT,
    sleep: Callable[[float], None] = time.sleep,
) -> Kube:
    """A `Kube` for the in-cluster ServiceAccount (no kubeconfig given, running in a pod), else a kubeconfig.

    With no `kubeconfig` outside a pod, the default kubeconfig ($KUBECONFIG or ~/.kube/config) is used.
    """
    configuration = kubernetes.client.Configuration()
    in_cluster = kubeconfig is None and context is None and _in_cluster()
    if not in_cluster:
        _check_kubeconfig(kubeconfig, context)
    try:
        if in_cluster:
            kubernetes.config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        else:
            kubernetes.config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=kubeconfig,
                context=context,
                client_configuration=configuration,
                persist_config=False,
            )
    except (ConfigException, OSError, ValueError, TypeError) as err:
        where = kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
        ctx = f', context "{context}"' if context else ""
        raise UsageError(
            f"cannot load the Kubernetes configuration ({where}{ctx}): {one_line(err)}; "
            "check the file, or pass another with --kubeconfig"
        ) from None
    # The one request function owns retries: urllib3's own (3 by default) and client-go style
    # read retries are switched off.
    configuration.retries = False
    configuration.client_go_retries = False
    return Kube(kubernetes.client.ApiClient(configuration), retry=retry, timeout=timeout, sleep=sleep)


def _check_kubeconfig(kubeconfig: str | None, context: str | None) -> None:
    """A kubeconfig that does not exist, or a context it does not have: say so (exit 2), with what exists."""
    if kubeconfig is not None:
        paths, named = [kubeconfig], "--kubeconfig"
    elif os.environ.get("KUBECONFIG"):
        paths, named = [p for p in os.environ["KUBECONFIG"].split(os.pathsep) if p], "$KUBECONFIG"
    else:
        paths, named = [os.path.expanduser("~/.kube/config")], "the default"
    existing = [p for p in paths if os.path.isfile(p)]
    if not existing:
        shown = ", ".join(paths) or "(empty)"
        raise UsageError(
            f"the kubeconfig file {shown} ({named}) does not exist; pass --kubeconfig PATH or set "
            "KUBECONFIG, or run in a pod with a ServiceAccount"
        )
    if context is None:
        return
    names: list[str] = []
    for path in existing:
        try:
            contexts, _ = kubernetes.config.list_kube_config_contexts(config_file=path)  # type: ignore[no-untyped-call]
        except (ConfigException, OSError, ValueError, TypeError, AttributeError):
            return  # loading it says what is wrong
        names += [str(c.get("name")) for c in contexts or []]
    if context not in names:
        raise UsageError(
            f'the kubeconfig {", ".join(existing)} has no context "{context}"{suggest(context, names)}; '
            f"its contexts are {', '.join(names) or '(none)'} (--context)"
        )


def _in_cluster() -> bool:
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and os.path.exists(IN_CLUSTER_TOKEN)
