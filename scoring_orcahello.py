# Copyright 2026 Orcasound and the OrcaHello contributors. MIT License.
"""
Scoring engines of the OrcaHello pipeline: the classifier's logits for a batch of spectrograms, computed by
OpenVINO, ONNX Runtime or PyTorch, without recomputing what the spectrogram's constant padding alone determines.

Half of every model input is padding: a 2-second window gives 157 spectrogram frames, and production pads them
with 0 dB frames to 312. Far enough to the right of the content, every activation of the ResNet is the same for
all windows, so `PaddingSkippingClassifier` computes those columns once per set of weights and, for each window,
only the columns the content can reach: the same float32 network, about 22% fewer multiply-adds for ResNet50.

The bfloat16 fast mode keeps float32's decisions: `windows_to_rescore` says which windows' bfloat16 scores could
change one, given the engine's `BFLOAT16_LOGIT_MARGINS`, and `rescore_until_exact` scores those again in float32.
"""

import copy
import functools
import gc
import importlib
import os
import tempfile
import warnings

import numpy as np
import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

try:
    from .vocabulary_orcahello import ENGINES, PRECISIONS, heap_reused_for_activations
except ImportError:  # imported as a plain module (tests, command line) rather than as Hub custom code
    from vocabulary_orcahello import ENGINES, PRECISIONS, heap_reused_for_activations

# Per engine, the largest |bfloat16 - float32| deviation of a window's logit difference that the fast mode allows
# for: at least twice the largest `benchmarks/fast_mode_margin.py` measured with it on every fixture and real
# recording, both presets (OpenVINO 1.58, PyTorch 1.85; see `windows_to_rescore`). The pipeline checks this on every
# window it re-scores (`largest_logit_deviation`) and stops using bfloat16 past half the margin.
BFLOAT16_LOGIT_MARGINS = {"openvino": 3.2, "torch": 3.8}
BFLOAT16_LOGIT_MARGIN = max(BFLOAT16_LOGIT_MARGINS.values())  # the default of the functions below

# ----------------------------------------------------------------------------------------------------------------
# Skipping the padding
# ----------------------------------------------------------------------------------------------------------------


def _width_operations(module):
    """`(kernel, stride, padding)` along the time axis of every convolution and pooling in `module`, in order."""

    def along_time(value):
        return value if isinstance(value, int) else value[-1]

    operations = []
    for layer in module.modules():
        if isinstance(layer, (nn.Conv2d, nn.MaxPool2d)):
            operations.append((along_time(layer.kernel_size), along_time(layer.stride), along_time(layer.padding)))
    return operations


def _paths(unit):
    """The parallel paths of a ResNet unit: a residual layer has its main path and its shortcut."""
    if hasattr(unit, "shortcut"):
        return [_width_operations(unit.layer), _width_operations(unit.shortcut) or [(1, 1, 0)]]
    return [_width_operations(unit)]


def _columns_reached(paths, input_columns, output_width):
    """How many leading output columns the first `input_columns` input columns can influence."""
    reached = 0
    for path in paths:
        columns = input_columns
        for _kernel, stride, padding in path:
            columns = (columns - 1 + padding) // stride + 1
        reached = max(reached, columns)
    return min(reached, output_width)


def _columns_needed(paths, output_columns, input_width):
    """How many leading input columns the first `output_columns` output columns are computed from."""
    needed = 0
    for path in paths:
        columns = output_columns
        for kernel, stride, padding in reversed(path):
            columns = (columns - 1) * stride + kernel - padding
        needed = max(needed, columns)
    return min(needed, input_width)


def resnet_units(model):
    """The spatial units of an `OrcaHelloForAudioClassification` body in order: stem convolution, max pool, then
    every residual layer of every stage."""
    resnet = model.orcahello.resnet
    return [resnet.embedder.embedder, resnet.embedder.pooler] + [
        layer for stage in resnet.encoder.stages for layer in stage.layers
    ]


def padded_frames(input_features, padding_value):
    """
    Index of the first frame from which every frame of every spectrogram in the batch equals `padding_value` (the
    batch's width when the last frame does not). The skipping is exact for any such batch, whatever made the padding.
    """
    differs = (input_features != padding_value).reshape(-1, input_features.shape[-1]).any(dim=0)
    nonzero = torch.nonzero(differs)
    return int(nonzero[-1]) + 1 if nonzero.numel() else 0


class PaddingSkippingClassifier(nn.Module):
    r"""
    The logits of an [`OrcaHelloForAudioClassification`] for spectrograms whose frames from `content_frames` on all
    equal `padding_value`, computed without the columns that the padding alone determines.

    A convolution's output column depends on a few neighbouring input columns, so the content of the first
    `content_frames` frames reaches only the first few output columns of each ResNet unit (80 of 156 after the
    stem, 44 of 78 after the first stage, 26 of 39 after the second); the rest are the same for every input and are
    taken from one forward pass of an all-padding spectrogram. Each unit is evaluated on the columns it needs to
    produce the columns its content reaches, and the constant columns the next unit needs are appended to them. The
    result is the model's own float32 computation, up to summation-order noise (|delta logit| ~1e-5).

    Built once per set of weights (the model must be in eval mode: BatchNorm uses its running statistics) and
    exportable to ONNX, so the same reduced graph runs in OpenVINO, ONNX Runtime or PyTorch.

    Args:
        model ([`OrcaHelloForAudioClassification`]):
            The classifier; its weights are used, not copied.
        num_mels (`int`), num_frames (`int`):
            The spectrogram's size (256 x 312 for production).
        content_frames (`int`):
            Frames that may hold content (157 for a 2-second window); the rest must be `padding_value`.
        padding_value (`float`, *optional*, defaults to 0.0):
            The value of the padding frames (0 dB in production).
    """

    def __init__(self, model, num_mels, num_frames, content_frames, padding_value=0.0):
        super().__init__()
        if model.training:
            raise ValueError("PaddingSkippingClassifier needs the model in eval mode (BatchNorm running statistics)")
        self.model = model
        self.content_frames = int(content_frames)
        self.padding_value = float(padding_value)
        self.num_mels, self.num_frames = int(num_mels), int(num_frames)
        units = resnet_units(model)
        parameter = next(model.parameters())
        padding_image = torch.full(
            (1, model.config.num_channels, num_mels, num_frames),
            self.padding_value,
            dtype=parameter.dtype,
            device=parameter.device,
        )
        # On one thread: CPU convolution kernels round differently with the thread count, and batch jobs' 1-thread
        # workers and a 2-thread pipeline agree to 1e-6 only if the constant columns are the same in every process.
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            with torch.no_grad():
                padding_outputs, hidden = [], padding_image
                for unit in units:
                    hidden = unit(hidden)
                    padding_outputs.append(hidden)
        finally:
            torch.set_num_threads(threads)
        widths = [num_frames] + [output.shape[-1] for output in padding_outputs]

        # Columns each unit's output must hold exactly, from the end backwards: the head pools over all of them.
        reached, columns = [], self.content_frames
        for index, unit in enumerate(units):
            columns = _columns_reached(_paths(unit), columns, widths[index + 1])
            reached.append(columns)
        needed = [_columns_needed(_paths(unit), reached[index], widths[index]) for index, unit in enumerate(units)]
        self.input_columns = needed[0]
        # Per unit: how many of its output columns to compute, and the constant columns appended after them so
        # that the next unit sees all the columns it needs.
        self.computed_columns = reached
        self.constant_column_names = []
        for index in range(len(units)):
            next_needed = needed[index + 1] if index + 1 < len(units) else widths[-1]
            constant = padding_outputs[index][..., reached[index] : max(next_needed, reached[index])]
            self.register_buffer(f"constant_columns_{index}", constant.detach().clone())
            self.constant_column_names.append(f"constant_columns_{index}")
        self.units = units

    def forward(self, input_features):
        hidden = input_features[..., : self.input_columns]
        for unit, computed, name in zip(self.units, self.computed_columns, self.constant_column_names):
            hidden = unit(hidden)[..., :computed]
            constant = getattr(self, name).to(hidden.dtype)
            if constant.shape[-1]:
                # repeat, not expand: exported, expand becomes a multiplication by ones that OpenVINO runs as a pass
                # over the constant (3-4% of the model's time); the same values.
                hidden = torch.cat([hidden, constant.repeat(input_features.shape[0], 1, 1, 1)], dim=-1)
        pooled = self.model.orcahello.pooler(hidden)
        return self.model.logits_from_pooled(pooled)  # the fastai head, or an `orcahello adapt` head

    def multiply_adds_fraction(self):
        """Convolution multiply-adds of this forward over the model's own (reported by the benchmark)."""
        parameter = next(self.model.parameters())
        padding_image = torch.full(
            (1, self.model.config.num_channels, self.num_mels, self.num_frames),
            self.padding_value,
            dtype=parameter.dtype,
            device=parameter.device,
        )
        counts = {"count": 0}

        def count(layer, inputs, output):
            counts["count"] += output.numel() * layer.in_channels * layer.kernel_size[0] * layer.kernel_size[1]

        convolutions = [layer for layer in self.model.modules() if isinstance(layer, nn.Conv2d)]
        hooks = [layer.register_forward_hook(count) for layer in convolutions]
        try:
            with torch.no_grad():
                self(padding_image)
                skipping = counts["count"]
                counts["count"] = 0
                self.model(input_features=padding_image)
                full = counts["count"]
        finally:
            for hook in hooks:
                hook.remove()
        return skipping / full


class LogitsOnly(nn.Module):
    """The classifier as a plain `input_features -> logits` function, the form an ONNX export needs."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_features):
        return self.model(input_features=input_features, return_dict=False)[0]


def weights_version(model):
    """Changes whenever any parameter or buffer is modified in place (an optimizer step, load_state_dict...)."""
    return tuple(tensor._version for tensor in model.state_dict(keep_vars=True).values())


# ----------------------------------------------------------------------------------------------------------------
# Engines
# ----------------------------------------------------------------------------------------------------------------


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


def openvino_is_available():
    return _importable("onnx", "openvino")  # onnx: torch's exporter needs it


def onnxruntime_is_available():
    return _importable("onnx", "onnxruntime")


@functools.cache  # asked for every batch
def cpu_supports_bfloat16():
    """Whether OpenVINO can run bfloat16 natively on this CPU (AVX512_BF16 or AMX)."""
    if not openvino_is_available():
        return False
    import openvino

    return "BF16" in openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def export_onnx(module, example_shape, path):
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


def batch_norm_folded(model):
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

    def __init__(self, module, device, precision="float32", channels_last=False, process_mmap_threshold=None):
        self.module = module
        self.device = device
        self.precision = precision
        self.channels_last = channels_last
        self.process_mmap_threshold = process_mmap_threshold if device.type == "cpu" else None
        parameter = next(module.parameters())
        self.dtype = parameter.dtype

    def __call__(self, input_features):
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

    def __init__(self, module, example_shape, num_threads, precision="float32"):
        import openvino

        core = openvino.Core()
        if precision == "bfloat16" and not cpu_supports_bfloat16():
            raise ValueError("precision='bfloat16' needs a CPU with bfloat16 instructions (AVX512_BF16 or AMX)")
        if precision == "float16":
            raise ValueError("precision='float16' is for GPUs; on CPU use 'float32' or 'bfloat16'")
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

    def __call__(self, input_features):
        features = input_features.detach().to("cpu", torch.float32).contiguous().numpy()
        logits = self.request.infer({0: features})[0]
        return torch.from_numpy(logits.copy())


class OnnxRuntimeScorer:
    """Logits from ONNX Runtime's CPU kernels, from an ONNX export of `module`."""

    name = "onnxruntime"

    def __init__(self, module, example_shape, num_threads, precision="float32"):
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

    def __call__(self, input_features):
        features = input_features.detach().to("cpu", torch.float32).contiguous().numpy()
        return torch.from_numpy(self.session.run(None, {"input_features": features})[0])


# ----------------------------------------------------------------------------------------------------------------
# The exact fast mode: bfloat16 scores, float32 wherever they could change a decision
# ----------------------------------------------------------------------------------------------------------------


@functools.cache
def cpu_has_native_bfloat16():
    """Whether this CPU computes bfloat16 natively (the `avx512_bf16` or `amx_bf16` flag of /proc/cpuinfo)."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            flags = next((line for line in cpuinfo if line.startswith("flags")), ":").split(":", 1)[1].split()
    except OSError:  # not Linux
        return False
    return bool({"avx512_bf16", "amx_bf16"} & set(flags))


def _probability_bounds(probabilities, exact, margin):
    """Per window, the interval holding its float32 P(call), bfloat16 logit ± margin (a point where `exact`)."""
    clipped = np.clip(probabilities, 1e-300, 1.0 - 1e-16)
    logit = np.log(clipped) - np.log1p(-clipped)
    # 1e-6 more on each side: the pipeline's probabilities are float32 softmaxes, not exact sigmoids.
    low = np.clip(1.0 / (1.0 + np.exp(-(logit - margin))) - 1e-6, 0.0, 1.0)
    high = np.clip(1.0 / (1.0 + np.exp(-(logit + margin))) + 1e-6, 0.0, 1.0)
    return np.where(exact, probabilities, low), np.where(exact, probabilities, high)


def windows_to_rescore(
    window_probabilities,
    exact=None,
    margin=BFLOAT16_LOGIT_MARGIN,
    aggregation="orcahello",
    local_threshold=0.5,
    global_count_threshold=3,
    global_threshold=0.6,
    top_k_windows=3,
    smoothing=True,
    min_global_confidence=0.0,
):
    """
    Which windows to score again in float32 so that every decision of the file equals float32's, when the windows
    not in `exact` were scored in reduced precision, with a logit difference within `margin` of float32's.

    The decisions are those of `aggregate_windows` and `apply_confidence_floor` (pipeline): a row (a window, or with
    `"orcahello"` smoothing the mean of two neighbouring windows) is positive when `> local_threshold`; the file is
    positive when at least `global_count_threshold` rows are (`"orcahello"`), or when the mean of the positive rows
    (`"mean_thresholded"`) or of the `top_k_windows` highest (`"mean_top_k"`) is `>= global_threshold`; and a
    positive file stays positive when its confidence is `>= min_global_confidence`. Every window's float32
    probability lies in an interval around its reduced-precision one; every row's, and the confidence's, in the
    interval these give (means are monotone in each term). A decision whose interval straddles its threshold is
    uncertain: first the windows of every uncertain row are returned; once no row is uncertain, the windows of the
    confidence, when it is uncertain. Call again with the re-scored windows added to `exact` until nothing is
    returned: decisions are then float32's (windows in `exact` count as points).

    Args:
        window_probabilities (`np.ndarray`): P(call) of every window of one file, in order.
        exact (`np.ndarray` of bool, *optional*): the windows already scored in float32 (none by default).
        margin (`float`): the bound on |reduced - float32| of a window's logit difference.
        The others: the aggregation's parameters, as `aggregate_windows` and `build_file_result` take them.

    Returns:
        `np.ndarray` of bool: the windows to score in float32 now (none of them already in `exact`).
    """
    probabilities = np.asarray(window_probabilities, dtype=np.float64)
    exact = np.zeros(probabilities.shape, dtype=bool) if exact is None else np.asarray(exact, dtype=bool)
    low, high = _probability_bounds(probabilities, exact, margin)
    count = probabilities.size
    # The windows each row is made of (the first and last rows of a smoothed file are a single window).
    if aggregation == "orcahello" and smoothing:
        first = np.concatenate([[0], np.arange(count)])
        second = np.concatenate([np.arange(count), [count - 1]])
        row_low, row_high = (low[first] + low[second]) / 2.0, (high[first] + high[second]) / 2.0
    else:
        first = second = np.arange(count)
        row_low, row_high = low, high
    rescore = np.zeros(count, dtype=bool)
    uncertain_rows = (row_low <= local_threshold) & (row_high > local_threshold)
    if uncertain_rows.any():
        rescore[first[uncertain_rows]] = rescore[second[uncertain_rows]] = True
        return rescore & ~exact
    positive = row_low > local_threshold  # every row is now certain

    if aggregation == "orcahello":
        if positive.sum() < global_count_threshold or min_global_confidence <= 0.0:
            return rescore  # the count decides, and it is exact
        # The confidence floor compares the mean of the positive rows (0..1) with min_global_confidence.
        thresholds, confidence_rows = [min_global_confidence], positive
        confidence_low, confidence_high = row_low[positive].mean(), row_high[positive].mean()
    elif aggregation == "mean_thresholded":
        thresholds, confidence_rows = [global_threshold, min_global_confidence], positive
        confidence_low = row_low[positive].mean() if positive.any() else 0.0
        confidence_high = row_high[positive].mean() if positive.any() else 0.0
    elif aggregation == "mean_top_k":
        k = min(max(1, int(top_k_windows)), count)
        kth_low = np.sort(row_low)[::-1][k - 1]
        thresholds = [global_threshold, min_global_confidence]
        # Only a row that can reach the k-th highest lower bound can be among the top k.
        confidence_rows = row_high >= kth_low
        confidence_low = np.sort(row_low)[::-1][:k].mean()
        confidence_high = np.sort(row_high)[::-1][:k].mean()
    else:
        raise ValueError(f"unknown aggregation {aggregation!r}")
    if any(confidence_low < threshold <= confidence_high for threshold in thresholds):
        rescore[first[confidence_rows]] = rescore[second[confidence_rows]] = True
    return rescore & ~exact


def rescore_until_exact(
    window_probabilities, score_in_float32, margin=BFLOAT16_LOGIT_MARGIN, exact=None, **decision_parameters
):
    """
    The probabilities of a file's windows after scoring again in float32, with `score_in_float32(indices) ->
    probabilities`, every window that `windows_to_rescore` asks for, round after round until it asks for none: the
    file's decisions are then float32's. Windows not re-scored keep their reduced-precision probabilities; windows
    in `exact` (a boolean mask, optional) were scored in float32 already. `decision_parameters`: those of
    `windows_to_rescore`.

    Returns `(probabilities, rescored)`: float64 probabilities and the boolean mask of the windows re-scored.
    """
    probabilities = np.array(window_probabilities, dtype=np.float64)
    already = np.zeros(probabilities.shape, dtype=bool) if exact is None else np.asarray(exact, dtype=bool)
    rescored = np.zeros(probabilities.shape, dtype=bool)
    while True:
        wanted = windows_to_rescore(probabilities, rescored | already, margin, **decision_parameters)
        if not wanted.any():
            return probabilities, rescored
        indices = np.flatnonzero(wanted)
        probabilities[indices] = np.asarray(score_in_float32(indices), dtype=np.float64)
        rescored[indices] = True


def largest_logit_deviation(reduced_probabilities, float32_probabilities):
    """
    The largest |difference| between the logits of windows scored both ways, from their P(call): what the fast
    mode's margin must bound. The windows it re-scores are those nearest a threshold, where it matters most.
    """

    def logit(probabilities):
        clipped = np.clip(np.asarray(probabilities, dtype=np.float64), 1e-12, 1.0 - 1e-7)  # float32 softmaxes
        return np.log(clipped) - np.log1p(-clipped)

    if len(reduced_probabilities) == 0:
        return 0.0
    return float(np.abs(logit(reduced_probabilities) - logit(float32_probabilities)).max())


def resolve_engine(engine, device, model_dtype, precision):
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
    exportable = device.type == "cpu" and model_dtype == torch.float32
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


def build_scorer(
    model,
    engine,
    example_shape,
    num_threads,
    precision="float32",
    content_frames=None,
    padding_value=0.0,
    channels_last=False,
    process_mmap_threshold=None,
):
    """
    A scorer (`input_features -> float32 logits on CPU or the model's device`) for `model` with the resolved
    `engine`. With `content_frames`, the graph skips the padding frames after them (see
    `PaddingSkippingClassifier`; the model must be in eval mode); inputs given to that scorer must have constant
    padding there. The exported engines always compute the model in eval mode; PyTorch uses the model as it is (a
    float32 model in eval mode with its BatchNorms folded: `batch_norm_folded`).
    `process_mmap_threshold`: the fixed glibc mmap threshold the calling process set, if any (see `TorchScorer`).
    """

    def scoring_module(source):
        if content_frames is None:
            return LogitsOnly(source)
        return PaddingSkippingClassifier(source, example_shape[-2], example_shape[-1], content_frames, padding_value)

    if engine == "torch":
        parameter = next(model.parameters())
        # Folding needs BatchNorm's running statistics (eval mode); half-precision weights would round the folded
        # ones. A model being trained is scored as it is.
        foldable = not model.training and parameter.dtype == torch.float32
        module = scoring_module(batch_norm_folded(model) if foldable else model)
        return TorchScorer(module, parameter.device, precision, channels_last, process_mmap_threshold)
    was_training = model.training
    model.eval()
    try:
        scorer_class = OpenVinoScorer if engine == "openvino" else OnnxRuntimeScorer
        return scorer_class(scoring_module(model).eval(), example_shape, num_threads, precision)
    finally:
        model.train(was_training)
