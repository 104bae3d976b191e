"""Serving configuration: what `textsvc serve` loads and its limits (flags, config file or TEXTSVC_* variables)."""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from textsvc.config.common import field_types, require, setting
from textsvc.errors import ConfigError

DTYPES = ("auto", "float32", "bfloat16", "float16")  # what `devices.pick_dtype` turns into a torch dtype
QUANTIZATIONS = ("none", "int8", "int4")  # of a generator's weights, by `quantization.quantize_weight_only`
CLASSIFIER_BACKENDS = ("auto", "torch", "onnxruntime")  # what `devices.pick_classifier_backend` chooses from
CLASSIFIER_QUANTIZATIONS = ("none", "int8")  # of a classifier's ONNX export, by `onnx_classifier.quantized_export`
ALLOCATORS = ("auto", "jemalloc", "system")  # what `serving.allocator.use_allocator` chooses from
ENV_PREFIX = "TEXTSVC_"  # TEXTSVC_API_KEYS=k1,k2 sets `api_keys`: keys stay out of argv and shell history


@dataclass(frozen=True)
class ServingConfig:
    """What `textsvc serve` loads and the limits it enforces on requests, batches and queues."""

    models_dir: str | None = setting(None, "folder of model directories, each served under its folder name "
                                           "(default: the default models, SmolLM2-135M and a BBC News classifier, "
                                           "prepared under --home on the first run)")
    home: str | None = setting(None, "textsvc's cache folder, where the default models are prepared (default: "
                                     "$TEXTSVC_HOME, else ~/.cache/textsvc)")
    default_classifier: str | None = setting(None, "model for requests that name none (default: the only "
                                                   "classifier, if there is one)")
    default_generator: str | None = setting(None, "model for requests that name none (default: the only "
                                                  "generator, if there is one)")
    chat_template: str | None = setting(None, "a Jinja chat template file for /v1/chat/completions, used by the "
                                              "generators that have no template of their own")
    device: str | None = setting(None, "cpu, cuda or cuda:N (default: cuda when present)")
    dtype: str = setting("auto", "float32, bfloat16, float16, or auto: bfloat16 on GPUs that have it and on CPUs "
                                 "with AVX-512 BF16 or AMX, else float32")
    quantize: str = setting("none", "generators, on the CPU: none; int8 (weight-only, one scale per output "
                                    "channel); or int4 (blocks of 32 with a scale and zero each, llama.cpp's Q4_1 "
                                    "layout; the output projection int8): decoding one or a few streams faster, "
                                    "and with --compile_decoding on CPUs with int8 instructions (VNNI, AMX) larger "
                                    "batches too, their activations rounded to 8 bits; for a small loss of accuracy "
                                    "(see the README)")
    classifier_backend: str = setting("auto", "what runs the classifiers' forward passes: torch, onnxruntime (the "
                                              "CPU only, float32, from an export kept under --home), or auto: on "
                                              "the CPU, when the dtype in use is float32 (float32, or auto on CPUs "
                                              "without bf16 instructions), onnxruntime for every pass of the models "
                                              "that export; else torch")
    classifier_quantize: str = setting("none", "classifiers, on the CPU: none, or int8: ONNX Runtime runs every "
                                               "pass on an int8 copy of the export (dynamic quantization: weights "
                                               "in int8, activations quantized per pass); faster, for a small loss "
                                               "of accuracy (see the README)")
    allocator: str = setting("auto", "memory allocator of the server process: jemalloc (its memory stays flat "
                                     "under long loads; `serve` starts itself again with it preloaded), system "
                                     "(the C library's malloc), or auto: jemalloc where it is installed, else "
                                     "system")
    host: str = setting("127.0.0.1", "address to listen on")
    port: int = setting(8000, "port to listen on")
    threads: int | None = setting(None, "HTTP worker threads, streams included (default: enough for every seat the "
                                        "engine can fill, see http_threads)")
    max_batch_size: int = setting(32, "texts per classifier forward pass")
    max_batch_tokens: int | None = setting(None, "padded tokens per classifier forward pass (TEI's "
                                                 "max_batch_tokens; default: see devices.classifier_batch_tokens, "
                                                 "1,024 on the CPU and 16,384 on a GPU; ONNX Runtime's unpadded "
                                                 "passes: none)")
    max_wait_ms: float = setting(0.0, "how long a classifier batch waits for more texts; at 0 a text that finds the "
                                      "model idle runs at once, and texts that arrive while it is busy form the "
                                      "next batch")
    max_generation_batch_size: int = setting(16, "sequences one generator decodes together; waiting requests join "
                                                 "between steps")
    stream_interval: int = setting(1, "tokens a stream's events are sent in, after its first token, which goes at "
                                      "once: above 1, fewer and larger writes, for more tokens/s when many streams "
                                      "keep the server busy, and text that arrives in bursts")
    max_queue_size: int = setting(256, "texts waiting per classifier, and requests waiting per generator, before "
                                       "503 overloaded")
    max_inputs: int = setting(64, "texts per /classify request")
    max_content_length: int = setting(1_000_000, "largest request body, in bytes")
    max_new_tokens_limit: int = setting(512, "the largest max_new_tokens a request may ask for")
    retry_after_s: int = setting(1, "the Retry-After header of an `overloaded` answer, in seconds")
    api_keys: tuple[str, ...] | None = setting(None, "comma-separated Bearer keys (or `sha256:HEX` hashes) for the "
                                                     "inference routes (better: TEXTSVC_API_KEYS, or api_keys_file); "
                                                     "unset: open")
    api_keys_file: str | None = setting(None, "file of inference keys' hashes, one `sha256:HEX` a line, as "
                                              "`textsvc hash-key` prints them ('#' starts a comment)")
    admin_keys: tuple[str, ...] | None = setting(None, "Bearer keys (or hashes) for /admin/*, apart from the "
                                                       "inference keys (better: TEXTSVC_ADMIN_KEYS); unset: /admin "
                                                       "refuses every call")
    admin_keys_file: str | None = setting(None, "file of admin keys' hashes, as api_keys_file")
    max_concurrent_per_key: int = setting(0, "inference requests in flight per client key, streams included, "
                                             "before 429 too_many_requests (0: no limit)")
    request_timeout_s: float = setting(300.0, "a request's deadline from its arrival, in seconds: a generation "
                                              "still running then is cancelled, 504 deadline_exceeded (0: none)")
    max_input_chars: int = setting(100_000, "characters per text or prompt")
    max_stop_sequences: int = setting(8, "stop sequences per request")
    max_stop_chars: int = setting(256, "characters per stop sequence")
    require_all_models: bool = setting(False, "/ready only when every model loaded (default: when the default "
                                              "models and at least one model of each kind found are up)")
    shutdown_grace_s: float = setting(90.0, "on SIGTERM or SIGINT, how long requests in flight may take to finish "
                                            "before the process exits (TGI's default: 90)")
    cors_origins: tuple[str, ...] | None = setting(None, "origins whose browser pages may call the API ('*': any); "
                                                         "unset: no CORS headers, so browsers allow this origin only")
    log_texts: bool = setting(False, "put prompts and texts in the per-request log line")
    warmup: bool = setting(True, "one tiny request per model before /ready says yes")
    compile_decoding: bool = setting(False, "transformer generators: compile the decoding step with "
                                            "torch.compile, during warm-up "
                                            "(up to a few minutes per model on 2 cores; a C++ compiler on the "
                                            "CPU): one or a few streams decode about twice as fast (SmolLM2 int4 on 2 "
                                            "cores: 13 ms a token against 26)")
    cuda_graphs: bool = setting(False, "transformer generators on a GPU: replay each decoding step as a CUDA graph "
                                       "(one launch a step instead of one per kernel; a graph per power-of-two "
                                       "batch size, recorded during warm-up), of the compiled step with "
                                       "--compile_decoding; on the CPU it changes nothing")
    load_in_background: bool = setting(False, "answer /health (and 503 on /ready) while models load")

    def __post_init__(self):
        require(self.models_dir is None or bool(self.models_dir), "models_dir",
                "must not be empty (leave it unset to serve the default models)")
        require(self.home is None or bool(self.home), "home", "must not be empty")
        require(self.chat_template is None or Path(self.chat_template).is_file(), "chat_template",
                f"{self.chat_template} is not a file")
        require(self.threads is None or self.threads > 0, "threads", "must be positive")
        for name in ("port", "max_batch_size", "max_generation_batch_size", "stream_interval", "max_queue_size",
                     "max_inputs", "max_content_length", "max_new_tokens_limit", "max_input_chars",
                     "max_stop_sequences", "max_stop_chars"):
            require(getattr(self, name) > 0, name, "must be positive")
        require(self.max_batch_tokens is None or self.max_batch_tokens > 0, "max_batch_tokens", "must be positive")
        require(self.port < 65536, "port", "must be below 65536")
        require(self.dtype in DTYPES, "dtype", f"must be one of {', '.join(DTYPES)}")
        require(self.quantize in QUANTIZATIONS, "quantize", f"must be one of {', '.join(QUANTIZATIONS)}")
        require(self.classifier_quantize in CLASSIFIER_QUANTIZATIONS, "classifier_quantize",
                f"must be one of {', '.join(CLASSIFIER_QUANTIZATIONS)}")
        require(self.allocator in ALLOCATORS, "allocator", f"must be one of {', '.join(ALLOCATORS)}")
        require(self.classifier_backend in CLASSIFIER_BACKENDS, "classifier_backend",
                f"must be one of {', '.join(CLASSIFIER_BACKENDS)}")
        require(0 <= self.max_wait_ms <= 10_000, "max_wait_ms", "must be in [0, 10000]")
        require(self.retry_after_s >= 0, "retry_after_s", "must be >= 0")
        for name in ("api_keys", "admin_keys"):
            require(getattr(self, name) is None or all(getattr(self, name)), name, "must not contain empty keys")
        for name in ("max_concurrent_per_key", "request_timeout_s", "shutdown_grace_s"):
            require(getattr(self, name) >= 0, name, "must be >= 0")


def http_threads(config: ServingConfig) -> int:
    """The HTTP server's threads: `threads`, else enough that they never cap the engine. A request holds its thread
    while it waits (a stream until its last token), so every generator seat, as many streams waiting for one, and a
    full classifier batch each get a thread, plus a few for health checks and metrics."""
    return config.threads or 2 * config.max_generation_batch_size + config.max_batch_size + 8


def max_in_flight(config: ServingConfig) -> int:
    """Inference requests admitted at once: the HTTP threads less a few kept free. A request that finds every thread
    busy waits, unseen, in waitress's queue for as long as the work ahead takes; with threads to spare, one past
    the limit gets a quick 503 `overloaded` with Retry-After instead (and /health, /ready, /metrics still answer)."""
    threads = http_threads(config)
    return threads - min(8, max(1, threads // 8))


def serving_env_values(environ: typing.Mapping[str, str] | None = None) -> dict[str, Any]:
    """ServingConfig fields set as TEXTSVC_<FIELD> environment variables, converted to the fields' types."""
    import os  # read here, at call time, never on import

    environ = os.environ if environ is None else environ
    hints, values = field_types(ServingConfig), {}
    for field in dataclasses.fields(ServingConfig):
        raw = environ.get(ENV_PREFIX + field.name.upper())
        if raw is None:
            continue
        kinds = typing.get_args(hints[field.name]) or (hints[field.name],)
        base = next(kind for kind in kinds if kind is not type(None))
        try:
            if base is bool:
                values[field.name] = {"1": True, "true": True, "0": False, "false": False}[raw.strip().lower()]
            elif base in (int, float):
                values[field.name] = base(raw)
            else:
                values[field.name] = raw  # tuples: comma-separated, split by `build_configs`
        except (KeyError, ValueError) as error:
            raise ConfigError(f"{ENV_PREFIX}{field.name.upper()}: cannot read {raw!r} as {base.__name__}",
                              field=field.name) from error
    return values


def textsvc_home(home: str | None = None, environ: typing.Mapping[str, str] | None = None) -> Path:
    """textsvc's cache folder: `home`, else $TEXTSVC_HOME, else $XDG_CACHE_HOME/textsvc or ~/.cache/textsvc."""
    import os  # read here, at call time, never on import

    environ = os.environ if environ is None else environ
    chosen = home or environ.get(ENV_PREFIX + "HOME")
    if chosen:
        return Path(chosen).expanduser()
    return Path(environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "textsvc"
