"""The one settings object: typed fields with defaults, persisted as JSON in the data folder."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bastion.models.engine_types import LoadOptions, Sampling

if TYPE_CHECKING:
    from bastion.desktop.grounding import RetrievalPolicy

DEFAULT_SYSTEM_PROMPT = "You are Bastion, a helpful assistant. Answer clearly and concisely."
# Secret settings (the remote server's token) live in this file beside settings.json, 0600, one
# JSON object; settings.json never holds them.
SECRETS_FILE = "secrets.json"


@dataclass
class Settings:
    """Every setting, with its default; a number's ``range`` metadata is its inclusive
    (lowest, highest) value, shared by the window's form, ``bastion settings set`` and the CLI's
    options (``bastion.desktop.configuration`` checks values against it)."""

    default_model: str | None = field(
        default=None, metadata={"help": "Model id or path; None = the embedded SmolLM2."}
    )
    n_threads: int | None = field(
        default=None, metadata={"help": "CPU threads; None = all cores.", "range": (1, 1024)}
    )
    n_ctx: int = field(
        default=4096, metadata={"help": "Context window in tokens.", "range": (512, 131072)}
    )
    n_gpu_layers: int = field(
        default=0, metadata={"help": "Layers offloaded to a GPU.", "range": (0, 999)}
    )
    cpu_kernels: str = field(
        default="auto",
        metadata={"help": "llama.cpp CPU kernels: auto, baseline or a variant (bastion doctor lists them)."},
    )
    temperature: float = field(default=0.2, metadata={"help": "0 = greedy.", "range": (0.0, 2.0)})
    top_p: float = field(default=0.95, metadata={"help": "Nucleus sampling.", "range": (0.0, 1.0)})
    top_k: int = field(default=40, metadata={"help": "Top-k sampling; 0 = off.", "range": (0, 1000)})
    repeat_penalty: float = field(
        default=1.1, metadata={"help": "Penalty on repeated tokens; 1 = none.", "range": (0.5, 2.0)}
    )
    max_tokens: int = field(
        default=512, metadata={"help": "Longest answer, in tokens.", "range": (1, 32768)}
    )
    max_file_mb: int = field(
        default=200,
        metadata={"help": "Documents larger than this are skipped (their size and the limit named).",
                  "range": (1, 1_000_000)},
    )
    index_hidden: bool = field(
        default=False,
        metadata={"help": "Also index hidden folders and files (.git, dotfiles); off, they are "
                          "skipped and counted in the library status."},
    )
    system_prompt: str = field(default=DEFAULT_SYSTEM_PROMPT, metadata={"help": "System prompt."})
    grounded_adapter: bool = field(
        # On since the adapter trained on trimmed passages helped on the SQuAD test half (+22
        # points contains-gold) and on an invented-facts file (+8) (README, "The grounded adapter").
        default=True,
        metadata={"help": "Answers from documents (docs and both mode) use the grounded adapter "
                          "that ships with Bastion (cites every answer as [n] and copies the "
                          "sentence that answers), when it fits the model and the chat chose no "
                          "adapter; off: the model as it is."},
    )
    passage_sentences: int = field(
        default=2,
        metadata={"help": "Sentences of each retrieved passage that reach the model: the ones "
                          "sharing the most words with the question, plus the sentence after the "
                          "best (a small model copies the right sentence more often); 0 = whole "
                          "passages. The sources still show the whole passage.",
                  "range": (0, 50)},
    )
    use_service: bool = field(
        default=True,
        metadata={"help": "`bastion search` and `bastion ask` use a resident service (started "
                          "when needed) that keeps the models loaded; off: each command loads "
                          "them itself."},
    )
    service_idle_minutes: int = field(
        default=5,
        metadata={"help": "A service started by a command stops after this many idle minutes.",
                  "range": (1, 1440)},
    )
    remote_url: str | None = field(
        default=None,
        metadata={"help": "An on-prem OpenAI-compatible server (llama.cpp's server, vLLM) for "
                          "models named remote:NAME, e.g. http://gpu-box:8080/v1; none = no "
                          "remote engine. Bastion may connect to this host and port only."},
    )
    remote_token: str | None = field(
        default=None, repr=False,
        metadata={"help": "The remote server's bearer token ('-' reads it from standard input); "
                          "kept in its own file only you can read, never shown.",
                  "secret": SECRETS_FILE},
    )
    remote_timeout_s: float = field(
        default=120.0,
        metadata={"help": "Seconds the remote server may stay silent (before the first token "
                          "or between tokens) before the request is given up.",
                  "range": (1.0, 3600.0)},
    )

    def load_options(self) -> LoadOptions:
        return LoadOptions(
            n_ctx=self.n_ctx,
            n_threads=self.n_threads,
            n_gpu_layers=self.n_gpu_layers,
            cpu_kernels=self.cpu_kernels,
        )

    def retrieval_policy(self) -> RetrievalPolicy:
        from bastion.desktop.grounding import RetrievalPolicy

        return RetrievalPolicy(sentences=self.passage_sentences)

    def sampling(self) -> Sampling:
        return Sampling(
            max_tokens=self.max_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            top_k=self.top_k,
            repeat_penalty=self.repeat_penalty,
        )

    @classmethod
    def load(cls, path: Path) -> Settings:
        """Read settings; unknown keys are ignored and a damaged file falls back to defaults."""
        try:
            raw: Any = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return cls()
        if not isinstance(raw, dict):
            raw = {}
        raw = {k: v for k, v in raw.items() if k not in _secret_keys()}
        raw.update(_read_secrets(path.parent / SECRETS_FILE))
        known = {f.name for f in fields(cls)}
        defaults = cls()
        values = {}
        for key, value in raw.items():
            if key not in known:
                continue
            default = getattr(defaults, key)
            if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if default is None or value is None or type(value) is type(default):
                values[key] = value
        return cls(**values)

    def save(self, path: Path) -> None:
        """Write atomically: a crash mid-write never leaves a half file. Secrets go to their
        own file (0600), written only when they change. Only values that differ from the
        defaults are written, so a default improved in a later release reaches every setting
        the user never changed."""
        path.parent.mkdir(parents=True, exist_ok=True)
        values = asdict(self)
        defaults = asdict(Settings())
        for key in [key for key, value in values.items() if value == defaults[key] and key not in _secret_keys()]:
            del values[key]
        secrets = {key: values.pop(key) for key in _secret_keys()}
        secrets = {key: value for key, value in secrets.items() if value is not None}
        secrets_path = path.parent / SECRETS_FILE
        if secrets != _read_secrets(secrets_path):
            if secrets:
                _write_atomically(secrets_path, secrets)
            else:
                secrets_path.unlink(missing_ok=True)
        _write_atomically(path, values)


def _secret_keys() -> list[str]:
    return [f.name for f in fields(Settings) if f.metadata.get("secret")]


def _read_secrets(path: Path) -> dict[str, Any]:
    """The secrets file's values (only string values of secret keys); {} if none or damaged."""
    try:
        raw: Any = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(raw, dict):
        return {}
    return {k: v for k, v in raw.items() if k in _secret_keys() and isinstance(v, str)}


def _write_atomically(path: Path, values: dict[str, Any]) -> None:
    # mkstemp creates the file 0600: settings and secrets are private to the user.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=".json")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(values, out, indent=2)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
