"""Inference Endpoints custom handler: the AffectVerse pipeline behind `EndpointHandler.__call__(data)`.

Request: `{"inputs": {"video": ..., "audio": ..., "subtitle": "..."}, "parameters": {"task": "emotion", ...}}` where
`video` / `audio` are base64-encoded file bytes (or paths to files the endpoint can read; no URLs are fetched).
Response: the pipeline's output, `{"label", "scores", "generated_text", "matched_label"}`. The same code path as
`pipeline(model=..., trust_remote_code=True)`: this handler only turns the request into files and parameters.
"""

from __future__ import annotations

import base64
import binascii
import os
import tempfile
from typing import Any

from transformers import pipeline


class EndpointHandler:
    def __init__(self, path: str = ""):
        self.pipeline = pipeline(model=path or ".", trust_remote_code=True)

    @staticmethod
    def _to_file(value: str, folder: str, name: str) -> str:
        """A readable path for a media field: an existing local path as is, else base64 bytes written to a file."""
        if os.path.isfile(value):
            return value
        if value.startswith(("http://", "https://")):
            raise ValueError(f"inputs.{name}: URLs are not fetched; send the file's bytes base64-encoded")
        try:
            data = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError) as err:
            raise ValueError(f"inputs.{name}: neither an existing file nor valid base64") from err
        path = os.path.join(folder, name)
        with open(path, "wb") as handle:
            handle.write(data)
        return path

    def __call__(self, data: dict[str, Any]) -> dict[str, Any]:
        inputs = data.get("inputs", data)
        if isinstance(inputs, str):
            inputs = {"video": inputs}
        parameters = data.get("parameters") or {}
        with tempfile.TemporaryDirectory() as folder:
            request = {"subtitle": inputs.get("subtitle")}
            for name in ("video", "audio"):
                if inputs.get(name):
                    request[name] = self._to_file(inputs[name], folder, name)
            if "audio_from_video" in inputs:
                request["audio_from_video"] = bool(inputs["audio_from_video"])
            return self.pipeline(request, **parameters)
