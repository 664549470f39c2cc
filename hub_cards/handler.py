"""Inference Endpoints custom handler: the AffectVerse pipeline behind `EndpointHandler.__call__(data)`.

Request: `{"inputs": {"video": ..., "audio": ..., "subtitle": "..."}, "parameters": {"task": "emotion", ...}}` where
`video` / `audio` are the file's bytes (raw, as the Hub widget sends them, or base64-encoded in JSON). Local paths are
read only when the endpoint is configured with a media folder (`AFFECTVERSE_MEDIA_ROOT` or `media_root=`) and only
inside it; no URL is ever fetched. Every refusal reads the same whether or not a path exists (no file-existence
oracle). Parameters: `task`, `label_set` (a list or a comma-separated string), `top_k`, `max_new_tokens` (integers or
their strings), `return_details` (a bool or "true" / "false"); anything else is an error. Response: the pipeline's
output, the video-classification list `[{"label", "score"}, ...]` (or the full answer with `return_details`). The
same code path as `pipeline(model=..., trust_remote_code=True)`: this handler only turns the request into files
and parameters.
"""

from __future__ import annotations

import base64
import binascii
import os
from typing import Any

from transformers import pipeline

TASKS = ("emotion", "sentiment", "open_vocabulary")  # the pipeline's (this file ships alone, beside the model)
MAX_NEW_TOKENS = 256


class EndpointHandler:
    def __init__(self, path: str = "", media_root: str | None = None):
        self.pipeline = pipeline(model=path or ".", trust_remote_code=True)
        root = media_root if media_root is not None else os.environ.get("AFFECTVERSE_MEDIA_ROOT")
        self.media_root = os.path.realpath(root) if root else None

    def _media(self, value, name: str) -> bytes | str:
        """A media field as the pipeline takes it: the file's bytes (sent raw or base64), or a path inside the
        configured media folder."""
        if isinstance(value, bytes | bytearray):
            data = bytes(value)
        elif isinstance(value, str):
            if value.startswith(("http://", "https://")):
                raise ValueError(f"inputs.{name}: URLs are not fetched; send the file's bytes")
            path = self._allowed_path(value)
            if path is not None:
                return path
            try:
                data = base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError) as err:
                hint = "" if self.media_root is None else " or a readable file under the endpoint's media folder"
                raise ValueError(f"inputs.{name}: not base64-encoded file bytes{hint}") from err
        else:
            raise ValueError(f"inputs.{name}: expected file bytes (raw or base64), got {type(value).__name__}")
        if not data:
            raise ValueError(f"inputs.{name}: empty file")
        return data

    def _allowed_path(self, value: str) -> str | None:
        """`value` as a file inside the media folder, or None (not configured, outside it, or not a file: the
        caller cannot tell which)."""
        if self.media_root is None or "\x00" in value:
            return None
        path = os.path.realpath(os.path.join(self.media_root, value))
        inside = os.path.commonpath([path, self.media_root]) == self.media_root
        return path if inside and os.path.isfile(path) else None

    @staticmethod
    def _parameters(parameters: dict) -> dict:
        """The pipeline's parameters, cast from the strings a JSON client may send; unknown names are errors."""
        if not isinstance(parameters, dict):
            raise ValueError(f"parameters must be an object, got {type(parameters).__name__}")
        known = {"task", "label_set", "top_k", "max_new_tokens", "return_details"}
        unknown = sorted(set(parameters) - known)
        if unknown:
            raise ValueError(f"unknown parameter(s) {unknown}; known: {', '.join(sorted(known))}")
        out = {}
        if parameters.get("task") is not None:
            if parameters["task"] not in TASKS:
                raise ValueError(f"parameters.task must be one of {TASKS}, got {parameters['task']!r}")
            out["task"] = parameters["task"]
        if parameters.get("label_set") is not None:
            labels = parameters["label_set"]
            labels = [x.strip() for x in labels.split(",")] if isinstance(labels, str) else labels
            if not isinstance(labels, list) or not all(isinstance(x, str) and x.strip() for x in labels):
                raise ValueError("parameters.label_set must be a list of labels or a comma-separated string")
            out["label_set"] = labels
        for name, limit in (("max_new_tokens", MAX_NEW_TOKENS), ("top_k", 1000)):
            if parameters.get(name) is None:
                continue
            try:
                value = int(str(parameters[name]).strip())
            except ValueError as err:
                raise ValueError(f"parameters.{name} must be an integer") from err
            if not 1 <= value <= limit:
                raise ValueError(f"parameters.{name} must lie in [1, {limit}], got {value}")
            out[name] = value
        if parameters.get("return_details") is not None:
            flag = parameters["return_details"]
            flag = {"true": True, "false": False}.get(flag.strip().lower()) if isinstance(flag, str) else flag
            if not isinstance(flag, bool):
                raise ValueError("parameters.return_details must be true or false")
            out["return_details"] = flag
        return out

    def __call__(self, data: dict[str, Any]) -> Any:
        inputs = data.get("inputs", data) if isinstance(data, dict) else data
        if isinstance(inputs, str | bytes | bytearray):
            inputs = {"video": inputs}
        if not isinstance(inputs, dict):
            raise ValueError(
                f"inputs must be file bytes or an object with video / audio / subtitle, got {type(inputs)}"
            )
        parameters = self._parameters((data.get("parameters") if isinstance(data, dict) else None) or {})
        subtitle = inputs.get("subtitle")
        if subtitle is not None and not isinstance(subtitle, str):
            raise ValueError("inputs.subtitle must be a string")
        request = {"subtitle": subtitle}
        for name in ("video", "audio"):
            if inputs.get(name):
                request[name] = self._media(inputs[name], name)  # bytes: the pipeline writes them to a private file
        if "audio_from_video" in inputs:
            request["audio_from_video"] = bool(inputs["audio_from_video"])
        return self.pipeline(request, **parameters)
