# Copyright 2026 Orcasound and the OrcaHello contributors. MIT License.
"""
The scoring engines of the OrcaHello pipeline and the choice between them: the classifier's logits for a batch of
spectrograms, computed by OpenVINO, ONNX Runtime or PyTorch, and a named layer's embedding (PyTorch).

`resolve_engine` says which engine `"auto"` stands for here (OpenVINO, then ONNX Runtime, then PyTorch on CPU;
PyTorch on GPUs) and refuses one that cannot run; `build_scorer` builds that engine's scorer for a model, skipping
the spectrogram's constant padding (`padding_skipping_orcahello`). The exported engines give logits only, so a
layer's output (`layer_outputs`) always comes from the PyTorch model.
"""

from __future__ import annotations

import copy
import functools
import gc
import glob
import hashlib
import importlib
import os
import tempfile
import warnings
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

try:
    from .padding_skipping_orcahello import PaddingSkippingClassifier, padded_frames
    from .process_memory_orcahello import fixed_mmap_threshold, heap_reused_for_activations
    from .vocabulary_orcahello import EMBEDDING_LAYERS, ENGINES, PRECISIONS
except ImportError:  # imported as a plain module (tests, command line) rather than as Hub custom code
    from padding_skipping_orcahello import PaddingSkippingClassifier, padded_frames
    from process_memory_orcahello import fixed_mmap_threshold, heap_reused_for_activations
    from vocabulary_orcahello import EMBEDDING_LAYERS, ENGINES, PRECISIONS

if TYPE_CHECKING:  # for annotations only: the modeling module imports this one through the pipeline
    try:
        from .modeling_orcahello import OrcaHelloForAudioClassification
    except ImportError:
        from modeling_orcahello import OrcaHelloForAudioClassification


class LogitsOnly(nn.Module):
    """The classifier as a plain `input_features -> logits` function, the form an ONNX export needs."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_features: torch.Tensor) -> torch.Tensor:
        return self.model(input_features=input_features, return_dict=False)[0]


def weights_version(model: nn.Module) -> tuple:
    """Changes whenever any parameter or buffer is modified in place (an optimizer step, load_state_dict...)."""
    return tuple(tensor._version for tensor in model.state_dict(keep_vars=True).values())


@functools.cache  # asked for every batch
def _importable(*module_names):
    try:
        for module_name in module_names:
            importlib.import_module(module_name)
    except ImportError as error:
        if isinstance(error.__cause__, KeyboardInterrupt):  # Ctrl-C during a C extension's (pybind11's) set-up
            raise error.__cause__ from None
        return False
    return True


def openvino_is_available() -> bool:
    return _importable("onnx", "openvino")  # onnx: torch's exporter needs it


def onnxruntime_is_available() -> bool:
    return _importable("onnx", "onnxruntime")


@functools.cache  # asked for every batch
def cpu_supports_bfloat16() -> bool:
    """Whether OpenVINO can run bfloat16 natively on this CPU (AVX512_BF16 or AMX)."""
    if not openvino_is_available():
        return False
    import openvino

    return "BF16" in openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


@functools.cache
def _cpu_flags() -> frozenset:
    """The flags of /proc/cpuinfo (none where there is no such file: not Linux)."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            return frozenset(next((line for line in cpuinfo if line.startswith("flags")), ":").split(":", 1)[1].split())
    except OSError:
        return frozenset()


def cpu_has_native_bfloat16() -> bool:
    """Whether this CPU computes bfloat16 natively (the `avx512_bf16` or `amx_bf16` flag of /proc/cpuinfo)."""
    return bool({"avx512_bf16", "amx_bf16"} & _cpu_flags())


def cpu_has_int8_instructions() -> bool:
    """
    Whether this CPU has int8 dot products (`avx512_vnni`, `avx_vnni` or `amx_int8`): without them OpenVINO's int8
    kernels are no faster than float32, so an int8 model would be neither fast nor exact for free.
    """
    return bool({"avx512_vnni", "avx_vnni", "amx_int8"} & _cpu_flags())


def export_onnx(module: nn.Module, example_shape: tuple[int, ...], path: str) -> None:
    """Export `module` (`input_features -> logits`) to an ONNX file with a dynamic batch axis."""
    example = torch.zeros((2, *example_shape[1:]), dtype=torch.float32)
    # Tracing needs ordinary tensors: the pipeline calls this from inside torch.inference_mode.
    with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript-based exporter announces its deprecation
        torch.onnx.export(
            module,
            (example,),
            path,
            input_names=["input_features"],
            output_names=["logits"],
            dynamic_axes={"input_features": {0: "batch"}, "logits": {0: "batch"}},
            dynamo=False,
        )
    gc.collect()


def batch_norm_folded(model: nn.Module) -> nn.Module:
    """
    A copy of `model`, in eval mode, with each BatchNorm that follows a convolution folded into it (the
    `convolution` -> `normalization` pairs of transformers' ResNet layers): the same float32 function, up to
    rounding (|delta logit| ~5e-5, as OpenVINO's own fusion), and about 8% faster in PyTorch on CPU, which would
    otherwise run each BatchNorm as a separate pass over its activations. About 100 MB more for ResNet50.
    """
    folded = copy.deepcopy(model).eval().requires_grad_(False)
    for module in folded.modules():
        convolution = getattr(module, "convolution", None)
        normalization = getattr(module, "normalization", None)
        if isinstance(convolution, nn.Conv2d) and isinstance(normalization, nn.BatchNorm2d):
            module.convolution = fuse_conv_bn_eval(convolution, normalization)
            module.normalization = nn.Identity()
    return folded


class TorchScorer:
    """
    Logits from PyTorch, on the model's device and dtype (the engine for GPUs and for half-precision models).
    `precision="bfloat16"`/`"float16"` runs under autocast. On CPU, `process_mmap_threshold` (the fixed glibc
    mmap threshold the process runs with, if any) is lifted during each forward pass: see
    `heap_reused_for_activations`.
    """

    name = "torch"
    # Set by `ModelScorers` when it builds the scorer: the weights it was built from, the padding it skips after.
    weights_version: tuple
    content_frames: int | None

    def __init__(
        self,
        module: nn.Module,
        device: torch.device,
        precision: str = "float32",
        channels_last: bool = False,
        process_mmap_threshold: int | None = None,
    ) -> None:
        self.module = module
        self.device = device
        self.precision = precision
        self.channels_last = channels_last
        self.process_mmap_threshold = process_mmap_threshold if device.type == "cpu" else None
        parameter = next(module.parameters())
        self.dtype = parameter.dtype

    def __call__(self, input_features: torch.Tensor) -> torch.Tensor:
        input_features = input_features.to(self.device, self.dtype)
        if self.channels_last:
            input_features = input_features.contiguous(memory_format=torch.channels_last)
        with heap_reused_for_activations(self.process_mmap_threshold):
            if self.precision == "float32":
                return self.module(input_features).float()
            autocast_dtype = torch.bfloat16 if self.precision == "bfloat16" else torch.float16
            with torch.autocast(device_type=self.device.type, dtype=autocast_dtype):
                return self.module(input_features).float()


class OpenVinoScorer:
    """
    Logits from OpenVINO's CPU plugin, from an ONNX export of `module` (a few seconds for ResNet50, once per
    pipeline, thread count and precision). OpenVINO is only given the ONNX file: its model-conversion tools, which
    carry its telemetry, are never used. `precision="bfloat16"` needs a CPU with bfloat16 instructions.
    """

    name = "openvino"
    # Set by `ModelScorers` when it builds the scorer: the weights it was built from, the padding it skips after.
    weights_version: tuple
    content_frames: int | None

    def __init__(
        self,
        module: nn.Module | None,
        example_shape: tuple[int, ...],
        num_threads: int,
        precision: str = "float32",
        network: Any = None,
    ) -> None:
        import openvino

        core = openvino.Core()
        if precision == "bfloat16" and not cpu_supports_bfloat16():
            raise ValueError("precision='bfloat16' needs a CPU with bfloat16 instructions (AVX512_BF16 or AMX)")
        if precision == "float16":
            raise ValueError("precision='float16' is for GPUs; on CPU use 'float32', 'bfloat16' or 'int8'")
        if network is None:  # else an OpenVINO model made already (the int8 one of `orcahello.quantize`)
            assert module is not None  # given whenever no network is (`build_scorer`)
            with tempfile.TemporaryDirectory(prefix="orcahello-openvino-") as folder:
                onnx_path = os.path.join(folder, "model.onnx")
                export_onnx(module, example_shape, onnx_path)
                network = core.read_model(onnx_path)
        settings = {
            "INFERENCE_NUM_THREADS": int(num_threads),
            # Explicit: on CPUs with AMX OpenVINO would otherwise choose bfloat16 by itself.
            "INFERENCE_PRECISION_HINT": "bf16" if precision == "bfloat16" else "f32",
            "PERFORMANCE_HINT": "LATENCY",
            "NUM_STREAMS": 1,
            # The featurizing thread runs beside the model: pinned inference threads would fight it.
            "ENABLE_CPU_PINNING": False,
        }
        self.compiled = core.compile_model(network, "CPU", settings)
        self.request = self.compiled.create_infer_request()

    def __call__(self, input_features: torch.Tensor) -> torch.Tensor:
        features = input_features.detach().to("cpu", torch.float32).contiguous().numpy()
        logits = self.request.infer({0: features})[0]
        return torch.from_numpy(logits.copy())


class OnnxRuntimeScorer:
    """Logits from ONNX Runtime's CPU kernels, from an ONNX export of `module`."""

    name = "onnxruntime"
    # Set by `ModelScorers` when it builds the scorer: the weights it was built from, the padding it skips after.
    weights_version: tuple
    content_frames: int | None

    def __init__(
        self, module: nn.Module, example_shape: tuple[int, ...], num_threads: int, precision: str = "float32"
    ) -> None:
        import onnxruntime

        if precision != "float32":
            raise ValueError(f"engine='onnxruntime' runs float32 only; precision={precision!r} needs engine='openvino'")
        with tempfile.TemporaryDirectory(prefix="orcahello-onnx-") as folder:
            # Through a file, not bytes: the exporter's graph is freed before ONNX Runtime loads (a lower peak).
            onnx_path = os.path.join(folder, "model.onnx")
            export_onnx(module, example_shape, onnx_path)
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = int(num_threads)
            options.inter_op_num_threads = 1
            options.log_severity_level = 3
            # Without the arena ONNX Runtime returns activation memory after each batch instead of keeping its
            # peak (about 400 MB for ResNet50 at batch 16), at no measurable cost in speed for this network.
            options.enable_cpu_mem_arena = False
            self.session = onnxruntime.InferenceSession(onnx_path, options, providers=["CPUExecutionProvider"])

    def __call__(self, input_features: torch.Tensor) -> torch.Tensor:
        features = input_features.detach().to("cpu", torch.float32).contiguous().numpy()
        return torch.from_numpy(self.session.run(None, {"input_features": features})[0])


def resolve_engine(engine: str, device: torch.device, model_dtype: torch.dtype, precision: str) -> str:
    """
    The engine `"auto"` stands for: on CPU with a float32 model, OpenVINO when installed (the fastest faithful
    engine there), else ONNX Runtime, else PyTorch; PyTorch on GPUs and for half-precision models. An explicit
    engine that cannot run here is refused with the reason.
    """
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if device.type == "cpu" and precision == "bfloat16" and not cpu_has_native_bfloat16():
        # Emulated bfloat16 is slower than float32: the fast mode would be neither fast nor exact for free.
        raise ValueError("precision='bfloat16' needs a CPU with native bfloat16 (avx512_bf16 or amx_bf16 flags)")
    if device.type == "cpu" and precision == "float16":
        # No CPU engine computes float16 natively: PyTorch emulates it, about 3x a float32 request's CPU time.
        raise ValueError("precision='float16' is for GPUs; on CPU use 'float32' or 'bfloat16'")
    exportable = device.type == "cpu" and model_dtype == torch.float32
    if precision == "int8":
        if not (exportable and openvino_is_available()):
            raise ValueError("precision='int8' runs on OpenVINO's CPU plugin: a CPU device, a float32 model, `pip "
                             "install openvino onnx`")  # fmt: skip
        if not cpu_has_int8_instructions():
            raise ValueError("precision='int8' needs a CPU with int8 dot products (avx512_vnni, avx_vnni or amx_int8 "
                             "flags): without them it is slower than float32")  # fmt: skip
        if engine not in ("auto", "openvino"):
            raise ValueError(f"precision='int8' runs on engine='openvino' only, not {engine!r}")
        return "openvino"
    if engine == "auto":
        if exportable and openvino_is_available() and (precision == "float32" or cpu_supports_bfloat16()):
            return "openvino"
        if exportable and precision == "float32" and onnxruntime_is_available():
            return "onnxruntime"
        return "torch"
    if engine in ("openvino", "onnxruntime"):
        available = openvino_is_available() if engine == "openvino" else onnxruntime_is_available()
        if not (exportable and available):
            package = "openvino onnx" if engine == "openvino" else "onnxruntime onnx"
            raise ValueError(f"engine={engine!r} needs `pip install {package}`, a CPU device and a float32 model")
    return engine


def scoring_module(
    model: nn.Module, example_shape: tuple[int, ...], content_frames: int | None = None, padding_value: float = 0.0
) -> nn.Module:
    """`model` as `input_features -> logits`; with `content_frames`, skipping the padding after them."""
    if content_frames is None:
        return LogitsOnly(model)
    return PaddingSkippingClassifier(model, example_shape[-2], example_shape[-1], content_frames, padding_value)


def weights_sha256(model: nn.Module) -> str:
    """The sha256 of the model's parameters and buffers, in state-dict order (what an int8 model was made from)."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def int8_model_stem(model: nn.Module, example_shape: tuple[int, ...]) -> str:
    """
    The start of the name of `model`'s int8 side file (`orcahello quantize` writes it into the model folder): the
    weights' sha256, the input geometry and the OpenVINO version that reads it; the NNCF version that made it
    follows. The int8 model is always the whole window's network, padding included: see `orcahello.quantize`.
    """
    import openvino

    geometry = "x".join(str(size) for size in example_shape[1:]) + "-whole"
    return f"int8-{weights_sha256(model)[:16]}-{geometry}-openvino{openvino.get_version().split('-')[0]}"


def find_int8_model(folder: str | None, model: nn.Module, example_shape: tuple[int, ...]) -> str:
    """The int8 side file (OpenVINO IR) of `model` in `folder`; a one-line `ValueError` saying how to make it."""
    stem = int8_model_stem(model, example_shape)
    found = sorted(glob.glob(os.path.join(glob.escape(folder), f"{stem}-nncf*.xml"))) if folder else []
    if not found:
        raise ValueError(
            f"precision='int8' needs the model quantized for these weights and this OpenVINO first: run `orcahello "
            f"quantize {folder or 'MODEL_FOLDER'} --calibration RECORDINGS...` (NNCF, the int8 extra; it writes "
            f"{stem}-nncf*.xml into the folder)"
        )
    return found[-1]


def build_scorer(
    model: OrcaHelloForAudioClassification,
    engine: str,
    example_shape: tuple[int, ...],
    num_threads: int,
    precision: str = "float32",
    content_frames: int | None = None,
    padding_value: float = 0.0,
    channels_last: bool = False,
    process_mmap_threshold: int | None = None,
    int8_folder: str | None = None,
) -> TorchScorer | OpenVinoScorer | OnnxRuntimeScorer:
    """
    A scorer (`input_features -> float32 logits on CPU or the model's device`) for `model` with the resolved
    `engine`. With `content_frames`, the float32 and bfloat16 graphs skip the padding frames after them (see
    `PaddingSkippingClassifier`; the model must be in eval mode); inputs given to that scorer must have constant
    padding there. The exported engines always compute the model in eval mode; PyTorch uses the model as it is (a
    float32 model in eval mode with its BatchNorms folded: `batch_norm_folded`).
    `process_mmap_threshold`: the fixed glibc mmap threshold the calling process set, if any (see `TorchScorer`).
    `precision="int8"` reads the int8 model `orcahello quantize` wrote into `int8_folder` (`find_int8_model`).
    """
    if engine == "torch":
        parameter = next(model.parameters())
        # Folding needs BatchNorm's running statistics (eval mode); half-precision weights would round the folded
        # ones. A model being trained is scored as it is.
        foldable = not model.training and parameter.dtype == torch.float32
        module = scoring_module(batch_norm_folded(model) if foldable else model, example_shape, content_frames,
                                padding_value)  # fmt: skip
        return TorchScorer(module, parameter.device, precision, channels_last, process_mmap_threshold)
    if precision == "int8":
        import openvino

        # The whole window's network, whatever the padding (`orcahello.quantize` says why).
        network = openvino.Core().read_model(find_int8_model(int8_folder, model, example_shape))
        return OpenVinoScorer(None, example_shape, num_threads, precision, network=network)
    was_training = model.training
    model.eval()
    try:
        scorer_class = OpenVinoScorer if engine == "openvino" else OnnxRuntimeScorer
        module = scoring_module(model, example_shape, content_frames, padding_value).eval()
        return scorer_class(module, example_shape, num_threads, precision)
    finally:
        model.train(was_training)


class ModelScorers:
    """
    The scorers of one model (`build_scorer`), one for each engine, precision, thread count and padding geometry:
    built on first use (an ONNX export for OpenVINO and ONNX Runtime takes a few seconds for ResNet50), kept, and
    built again when the weights have changed in place since (e.g. fine-tuning).

    Args:
        model ([`OrcaHelloForAudioClassification`]): the classifier.
        device (`torch.device`): where it runs.
        padding_value (`float`): the value of the spectrograms' padding frames (the feature extractor's).
        channels_last (`bool`, *optional*, defaults to False): PyTorch is given channels-last tensors (CUDA).
        int8_folder (`str`, *optional*): where `orcahello quantize` wrote the int8 model (the model folder).
    """

    def __init__(
        self,
        model: OrcaHelloForAudioClassification,
        device: torch.device,
        padding_value: float,
        channels_last: bool = False,
        int8_folder: str | None = None,
    ) -> None:
        self.model = model
        self.device = device
        self.padding_value = float(padding_value)
        self.channels_last = channels_last
        self.int8_folder = int8_folder
        self.built: dict[tuple, TorchScorer | OpenVinoScorer | OnnxRuntimeScorer] = {}

    def scorer(
        self, input_features: torch.Tensor, engine: str = "auto", precision: str = "float32"
    ) -> TorchScorer | OpenVinoScorer | OnnxRuntimeScorer:
        """The scorer for batches shaped like `input_features`, with `engine` (`"auto"` resolved) and `precision`."""
        model_dtype = getattr(self.model, "dtype", torch.float32)
        engine = resolve_engine(engine, self.device, model_dtype, precision)
        content_frames = None
        if not self.model.training:
            # Padding is skipped when the batch has some: always, for 2-second windows from the feature extractor.
            frames = padded_frames(input_features, self.padding_value)
            if frames < input_features.shape[-1]:
                content_frames = frames
        threads = torch.get_num_threads()
        key = (engine, precision, tuple(input_features.shape[1:]), threads, content_frames is not None)
        scorer = self.built.get(key)
        version = weights_version(self.model)
        # A scorer that skips the padding after frame n serves any batch whose padding starts at n or earlier.
        # (Under the key's last item, True, every scorer skips padding: its content_frames is not None.)
        covers = scorer is not None and (
            content_frames is None or (scorer.content_frames is not None and content_frames <= scorer.content_frames)
        )
        if scorer is None or not covers or scorer.weights_version != version:
            scorer = build_scorer(
                self.model,
                engine,
                tuple(input_features.shape),
                threads,
                precision=precision,
                content_frames=content_frames,
                padding_value=self.padding_value,
                channels_last=self.channels_last,
                process_mmap_threshold=fixed_mmap_threshold(),
                int8_folder=self.int8_folder,
            )
            scorer.weights_version = version
            scorer.content_frames = content_frames
            self.built[key] = scorer
        return scorer


def check_embedding_layer(layer: str) -> None:
    """Refuse a `layer` that is not one of `EMBEDDING_LAYERS` with a one-line error."""
    if layer not in EMBEDDING_LAYERS:
        raise ValueError(f"layer must be one of {EMBEDDING_LAYERS}, got {layer!r}")


def layer_outputs(
    model: OrcaHelloForAudioClassification, input_features: torch.Tensor, layer: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """
    `(embeddings, logits)` of a batch of model inputs from one forward pass of the PyTorch `model` (an
    [`OrcaHelloForAudioClassification`] in eval mode), on its own device and in its own dtype.

    Args:
        layer (`str`):
            `"pooled"`: the body's concat-pooled features (`OrcaHelloModel`'s `pooler_output`, 4096 for ResNet50);
            `"head"`: the input of the head's last linear layer (512, after its ReLU and BatchNorm), read with a
            forward pre-hook.
    """
    check_embedding_layer(layer)
    parameter = next(model.parameters())
    captured: dict[str, torch.Tensor] = {}
    if layer == "head":
        hook = model.classifier.out_proj.register_forward_pre_hook(
            lambda module, inputs: captured.__setitem__("embedding", inputs[0])
        )
    else:
        hook = model.orcahello.pooler.register_forward_hook(
            lambda module, inputs, output: captured.__setitem__("embedding", output)
        )
    try:
        with torch.inference_mode():
            logits = model(input_features=input_features.to(parameter.device, parameter.dtype)).logits
    finally:
        hook.remove()
    return captured["embedding"], logits
