# Copyright 2026 Orcasound and the OrcaHello contributors. MIT License.
"""
Padding skipping: the classifier's logits for spectrograms that end in constant padding, without recomputing what
the padding alone determines.

Half of every model input is padding: a 2-second window gives 157 spectrogram frames, and production pads them
with 0 dB frames to 312. Far enough to the right of the content, every activation of the ResNet is the same for
all windows, so `PaddingSkippingClassifier` computes those columns once per set of weights and, for each window,
only the columns the content can reach: the same float32 network, about 22% fewer multiply-adds for ResNet50.
`padded_frames` says where a batch's padding starts. Every engine (`engines_orcahello`) runs this graph in float32
and bfloat16; int8 runs the whole window's network (`orcahello.quantize` says why).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:  # for annotations only: the modeling module imports this one through the pipeline
    try:
        from .modeling_orcahello import OrcaHelloForAudioClassification
    except ImportError:
        from modeling_orcahello import OrcaHelloForAudioClassification


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


def resnet_units(model: OrcaHelloForAudioClassification) -> list[nn.Module]:
    """The spatial units of an `OrcaHelloForAudioClassification` body in order: stem convolution, max pool, then
    every residual layer of every stage."""
    resnet = model.orcahello.resnet
    return [resnet.embedder.embedder, resnet.embedder.pooler] + [
        layer for stage in resnet.encoder.stages for layer in stage.layers
    ]


def padded_frames(input_features: torch.Tensor, padding_value: float) -> int:
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

    def __init__(
        self,
        model: OrcaHelloForAudioClassification,
        num_mels: int,
        num_frames: int,
        content_frames: int,
        padding_value: float = 0.0,
    ) -> None:
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

    def forward(self, input_features: torch.Tensor) -> torch.Tensor:
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

    def multiply_adds_fraction(self) -> float:
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
