# Copyright 2026 Orcasound and the OrcaHello contributors. MIT License.
"""
File-level OrcaHello detection as a transformers audio-classification pipeline.

A recording (path, bytes, array, `datasets` row, or an HLS stream: `.m3u8` playlist or folder of `.ts` segments) is
cut into 2-second windows every second, exactly as production OrcaHello does; the windows are featurized in blocks,
scored in batches (across files too), and the per-window probabilities are aggregated into production's file-level
decision. Reading the audio and cutting the windows is `audio_orcahello`'s job, resolving a call's parameters
`call_parameters_orcahello`'s, running the model `engines_orcahello`'s (with `padding_skipping_orcahello` and the
bfloat16 `fast_mode_orcahello`), building each recording's result `results_orcahello`'s; this module is the pipeline
that runs them around the model. Its `score_windows` is the one way to score a recording's windows outside a call
(`orcahello embed`, `live`; `orcahello batch` scores its own featurized blocks with `score_features`).
"""

import dataclasses
import os
from collections.abc import Generator, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from transformers.pipelines.base import ChunkPipeline
from transformers.utils import logging

try:
    from .audio_orcahello import (
        AudioInputError,
        featurized_blocks,
        open_recording,
        recording_info,
        scoring_windows,
    )
    from .call_parameters_orcahello import PipelineParameters, resolve_call_parameters
    from .engines_orcahello import (
        ModelScorers,
        OnnxRuntimeScorer,
        OpenVinoScorer,
        TorchScorer,
        check_embedding_layer,
        layer_outputs,
        resolve_engine,
    )
    from .fast_mode_orcahello import LOGIT_MARGINS, largest_logit_deviation, rescore_until_exact
    from .feature_extraction_orcahello import OrcaHelloFeatureExtractor, model_feature_extractor
    from .padding_skipping_orcahello import padded_frames
    from .results_orcahello import (
        DecisionParameters,
        ScoredWindows,
        WindowScores,
        build_file_result,
        recording_summary,
    )
    from .vocabulary_orcahello import (
        DEFAULT_BATCH_SIZE,
        ENGINES,
        PRECISIONS,
        SYNTHETIC_WEIGHTS_KEY,
        SYNTHETIC_WEIGHTS_WARNING,
    )
    from .whole_recording_orcahello import whole_recording_audio
except ImportError:  # imported as a plain module (tests, command line) rather than as Hub custom code
    from audio_orcahello import (
        AudioInputError,
        featurized_blocks,
        open_recording,
        recording_info,
        scoring_windows,
    )
    from call_parameters_orcahello import PipelineParameters, resolve_call_parameters
    from engines_orcahello import (
        ModelScorers,
        OnnxRuntimeScorer,
        OpenVinoScorer,
        TorchScorer,
        check_embedding_layer,
        layer_outputs,
        resolve_engine,
    )
    from fast_mode_orcahello import LOGIT_MARGINS, largest_logit_deviation, rescore_until_exact
    from feature_extraction_orcahello import OrcaHelloFeatureExtractor, model_feature_extractor
    from padding_skipping_orcahello import padded_frames
    from results_orcahello import (
        DecisionParameters,
        ScoredWindows,
        WindowScores,
        build_file_result,
        recording_summary,
    )
    from vocabulary_orcahello import (
        DEFAULT_BATCH_SIZE,
        ENGINES,
        PRECISIONS,
        SYNTHETIC_WEIGHTS_KEY,
        SYNTHETIC_WEIGHTS_WARNING,
    )
    from whole_recording_orcahello import whole_recording_audio

logger = logging.get_logger(__name__)

# What each window carries from `preprocess` through `_forward` to `postprocess`, besides its features.
WINDOW_BOOKKEEPING = ("window_index", "window_is_silent", "largest_float_sample", "recording", "is_last")


class OrcaHelloAudioClassificationPipeline(ChunkPipeline):
    """
    Killer-whale call detection over whole recordings, as production OrcaHello does it.

    ```python
    >>> from transformers import pipeline
    >>> detector = pipeline("audio-classification", model="orcasound/orcahello-srkw-detector-v1", trust_remote_code=True)
    >>> detector("hydrophone_minute.wav")                       # [{'label': 'positive', 'score': 0.87}, ...]
    >>> detector("hydrophone_minute.wav", return_timestamps=True)["local_predictions"]
    ```

    Inputs: a file path (WAV, FLAC, OGG, MP3), the bytes of such a file, a numpy array or torch tensor with
    `sampling_rate=`, a dict `{"array" or "raw", "sampling_rate"}` (a `datasets` Audio row), or a list of any of
    these. Any sample rate from 8 kHz up (`MIN_SAMPLING_RATE`), mono or multichannel, integer or float samples; below
    20 kHz (`FULL_BAND_SAMPLING_RATE`) with a warning in `warnings` naming the band of the model's 0-10 kHz the
    recording cannot carry (`results_orcahello.missing_band_warning`).

    HLS (what Orcasound hydrophones stream; needs `pip install av`): an `.m3u8` playlist (a path or an http(s) URL),
    a folder of `.ts` segments (ordered by the number in their names) or one `.ts` segment. The segments are decoded
    as one continuous AAC stream and converted to 16-bit PCM exactly as production's `ffmpeg -i clip.ts clip.wav`
    does, then scored as one recording. The start is absolute UTC from `#EXT-X-PROGRAM-DATE-TIME`, else from a
    folder named by a Unix epoch (Orcasound's `<node>/hls/<epoch>/`); otherwise no UTC is given. Gaps between or
    inside segments (missing segment numbers, `#EXT-X-DISCONTINUITY`, `#EXT-X-GAP`, program-date-time or timestamp
    jumps) are reported in `gaps` and `warnings`: the audio either side is butted together, as production's
    concatenation of the segments it has does, and windows that span a gap are flagged `spans_gap`; UTC times after a
    gap include what is missing (null where that is unknown).

    Call parameters (defaults from the model config: its preset, `"fastai"` = production's settings, or `"v1"`):
        preset (`str`):
            `"fastai"` (production 2020-2026) or `"v1"` (upstream's PyTorch port with its shipped config.yaml): sets
            every field below at once, from `configuration_orcahello.INFERENCE_PRESETS`; fields given with the same
            call override it. The result's `preset` and `parameters` record what was used.
        window_seconds (`float`, 2.0 / 3.0 for v1), hop_seconds (`float`, 1.0 / 2.0 for v1):
            How the recording is cut. Only whole windows are scored (production's `floor(duration) - 1` windows).
        whole_recording_frontend, peak_normalize, strict_segments, smoothing (`bool`):
            The port's whole-recording resampling, peak normalisation and millisecond segment cutting, its
            partial last segment (`strict_segments=False`), and production's smoothing into one-second rows; see
            `OrcaHelloConfig`.
        aggregation (`str`, `"orcahello"`):
            `"orcahello"` (production), `"mean_thresholded"` or `"mean_top_k"` (the upstream port); see
            `results_orcahello.aggregate_windows`.
        local_threshold (`float`, 0.5), global_count_threshold (`int`, 3), global_threshold (`float`, 0.6),
        top_k_windows (`int`, 3):
            Decision thresholds, see `results_orcahello.aggregate_windows`.
        min_global_confidence (`float`, 0.0):
            A floor on the file's global confidence (0-1): positive only when the rule says so **and** it reaches
            the floor (`results_orcahello.apply_confidence_floor`); 0 keeps production's decision.
        min_positive_seconds (`int`, 0):
            Seconds the positive rows must cover, merged, under every rule (`DecisionParameters`); 0: the rule's own.
        return_timestamps (`bool`, False):
            Return the full result dict (production's keys, windows, rows and merged detections) instead of the
            `[{"label", "score"}]` list. It always has `start_time_utc` (ISO 8601 `...Z`, or None when the input
            does not say when it started) and `gaps` (empty but for HLS); when the start is known, windows,
            submission rows and detections carry UTC times too (`start_utc`/`end_utc`, `start_time_utc`).
        top_k (`int`, *optional*):
            Keep only the first `top_k` entries of the label list (`top_k=1`: the decision alone).
        sampling_rate (`int`):
            Sample rate of array inputs. Every input must be sampled at `MIN_SAMPLING_RATE` (8 kHz) or more.
        allow_other_hosts (`bool`, False):
            HLS over HTTP: fetch segments, and follow redirects, on hosts other than the playlist's (refused by
            default: a playlist must not make us fetch from anywhere it likes).
        batch_size (`int`, 8 on CPU, 32 on GPUs):
            Windows per forward pass, across files when a list is given.
        engine (`str`, `"auto"`):
            `"openvino"`, `"onnxruntime"`, `"torch"`, or `"auto"`: on CPU with a float32 model, OpenVINO when it is
            installed (the fastest faithful engine; probabilities within ~1e-5 of PyTorch), else ONNX Runtime, else
            PyTorch; PyTorch on GPUs. Every engine skips the work that the spectrogram's padding alone determines
            (see `padding_skipping_orcahello.PaddingSkippingClassifier`).
        precision (`str`, `"float32"`):
            `"bfloat16"` (CPUs with native bfloat16, avx512_bf16 or AMX, else refused; GPUs): the fast mode, with
            float32's decisions: every window is scored in bfloat16, then every window whose score could change a
            local or global decision, given a measured bound on bfloat16's error
            (`fast_mode_orcahello.BFLOAT16_LOGIT_MARGINS`, per engine), is scored again in float32
            (`fast_mode_orcahello.windows_to_rescore`). The confidences of the windows not re-scored stay
            bfloat16-valued (within the margin of float32's), and each window's spectrogram is kept until its
            file's end (about 160 kB a window). Every re-scored window checks the bound: if one deviates by more
            than half the margin, the pipeline warns and scores in float32 from then on (and the whole file again,
            if the margin itself was exceeded); `fast_mode_withdrawn` then says why. `"int8"` (CPUs with int8 dot
            products, avx512_vnni, avx_vnni or AMX, else refused): the same fast mode with OpenVINO's int8 model,
            which `orcahello quantize` writes into the model folder first (`fast_mode_orcahello.INT8_LOGIT_MARGINS`).
            `"float16"` (GPUs): reduced precision without that guarantee.
            Production's numbers are float32.

    Default output: `[{"label": decision, "score": s}, {"label": other, "score": 1 - s}]`, sorted by score with the
    file-level decision first (`s >= 0.5`), so `result[0]` and `top_k=1` are the decision. A positive file's `s` is
    its global confidence (0-1 under every rule: production's `whaleFoundConfidence` / 100 for `"orcahello"`), at least
    0.5; a negative file's positive score is half of how far it got to the rule's bar (e.g. 2 of the 3 positive
    seconds needed: 1/3, however confident they were); see `results_orcahello.decision_label_scores`.

    Window by window: `detector.score_windows(recording, layer=None)` yields the recording's windows in blocks, with
    their probabilities and logits (or, with `layer="pooled"` or `"head"`, each window's embedding at that layer)
    and their rows of the window table (`results_orcahello.ScoredWindows`).
    """

    # transformers' Pipeline leaves these None (unannotated, so typed None) for subclasses to set to a bool.
    _load_processor = False  # type: ignore[assignment]
    _load_image_processor = False  # type: ignore[assignment]
    _load_feature_extractor = True  # type: ignore[assignment]
    _load_tokenizer = False  # type: ignore[assignment]
    feature_extractor: OrcaHelloFeatureExtractor  # the model folder's, or its defaults (`__init__`)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.feature_extractor is None:
            # transformers 4.51 does not hand a remote-code feature extractor to the pipeline.
            self.feature_extractor = model_feature_extractor(self.model.name_or_path)
        if self._batch_size is None:
            self._batch_size = DEFAULT_BATCH_SIZE["cpu" if self.device.type == "cpu" else "other"]
        # Why the bfloat16 fast mode was given up (its error bound failed a check), or None while it holds.
        self.fast_mode_withdrawn: str | None = None
        # The fraction of the last file's windows scored again in float32 by the fast mode (None outside it).
        self.last_rescored_fraction: float | None = None
        # Convolutions run markedly faster on channels-last tensors on CUDA; the weights keep their values, and
        # save_pretrained still writes them normally. (On CPU the exported engines choose their own layouts.)
        self._channels_last = self.device.type == "cuda"
        if self._channels_last:
            self.model.to(memory_format=torch.channels_last)  # type: ignore[call-arg]  # transformers wraps `to`
        # What every result says about the model itself: its weights are the synthetic stand-in
        # (`scripts/fetch_model.py` offline marks its config so). Said once here too, for the plain label list.
        self.model_warnings: list[str] = []
        if getattr(self.model.config, SYNTHETIC_WEIGHTS_KEY, False):
            self.model_warnings.append(SYNTHETIC_WEIGHTS_WARNING)
            logger.warning("%s: %s", self.model.name_or_path or "the model", SYNTHETIC_WEIGHTS_WARNING)
        padding_value = self.feature_extractor.padding_value
        model_folder = self.model.name_or_path if os.path.isdir(str(self.model.name_or_path)) else None
        self._scorers = ModelScorers(
            self.model, self.device, padding_value, channels_last=self._channels_last, int8_folder=model_folder
        )

    def resolve_parameters(self, **parameters: Any) -> PipelineParameters:
        """
        A call's `parameters` (the class docstring lists them) as the pipeline's three steps take them, the model
        config's preset and floor for those left out, validated: what a call with them would do (see
        `call_parameters_orcahello.resolve_call_parameters`). Raises `TypeError` for an unknown parameter and
        `ValueError` for a bad value.
        """
        return resolve_call_parameters(self.model.config, **parameters)

    def _sanitize_parameters(self, **parameters):
        # transformers' hook for the call parameters: `resolve_parameters` is its public form.
        return tuple(self.resolve_parameters(**parameters))

    @property
    def batch_size(self) -> int:
        """Windows per forward pass when a call names none: the pipeline's `batch_size` (8 on CPU, 32 on GPUs)."""
        return self._batch_size

    @property
    def scorers(self) -> list:
        """The scorers built so far (see `scorer`), one per engine, precision, thread count and padding geometry."""
        return list(self._scorers.built.values())

    def get_inference_context(self) -> type[torch.inference_mode]:
        return torch.inference_mode

    # ------------------------------------------------------------------------------------------------------------
    # Scoring windows: one path for the pipeline's call, `orcahello embed`, `live` and `batch`
    # ------------------------------------------------------------------------------------------------------------

    def score_windows(
        self,
        inputs: Any,
        *,
        layer: str | None = None,
        batch_size: int | None = None,
        first_window: int = 0,
        **parameters: Any,
    ) -> Iterator[ScoredWindows]:
        """
        Score every window of a recording, in order, a block of `batch_size` windows at a time: the windows, their
        preprocessing and their scoring are those of a pipeline call with the same `parameters`, read and
        featurized a few blocks ahead, so memory does not grow with the recording's length.

        Args:
            inputs: a recording, as a pipeline call takes it (a path, an HLS playlist or segment folder, bytes, an
                array with `sampling_rate=`, a `datasets` row).
            layer (`str`, *optional*):
                None: each window's probabilities and logits, from the engine a call would run (`engine`,
                `precision`). `"pooled"` or `"head"` (`vocabulary_orcahello.EMBEDDING_LAYERS`): also each window's
                embedding at that layer, with the probabilities of the same forward pass of the PyTorch model (see
                `score_features`).
            batch_size (`int`, *optional*): windows per forward pass; the pipeline's `batch_size` when None.
            first_window (`int`, *optional*, defaults to 0):
                Start at this window, leaving out those before it (already scored: `orcahello detect`'s journal):
                their audio is not read, except for what the v1 frontend's peak needs and an HLS input's decoding
                (both read the whole recording when it is opened). Batches then start at `first_window`: from a
                batch boundary of a run with the same `batch_size`, every window scores as in that run.
            parameters: the call parameters that choose the windows and the engine (`preset`, `window_seconds`,
                `hop_seconds`, `sampling_rate`, `engine`, `precision`...; see the class docstring).

        Yields:
            `results_orcahello.ScoredWindows`, with the blocks' rows of the recording's window table (`windows`:
            start, end, spans_gap, UTC where known) and its `recording_summary` (`recording`). Raises
            `AudioInputError` for input the pipeline cannot score; stopping early closes the recording.
        """
        if layer is not None:
            check_embedding_layer(layer)  # before the recording is opened
        resolved = self.resolve_parameters(**parameters)
        engine, precision = resolved.forward.get("engine"), resolved.forward.get("precision")
        recording, bounds, info = self._open_windows(inputs, **resolved.preprocess)
        if not 0 <= first_window <= len(bounds):
            recording.close()
            raise ValueError(
                f"first_window must be between 0 and the recording's {len(bounds)} windows, got {first_window}"
            )
        blocks = self.score_window_bounds(
            recording,
            bounds[first_window:],
            first_window=first_window,
            layer=layer,
            batch_size=batch_size,
            engine=engine,
            precision=precision,
        )
        summary = None
        try:
            for block in blocks:
                summary = summary or recording_summary(info)
                block.windows = [summary["windows"][index] for index in block.window_indices]
                block.recording = summary
                yield block
        finally:
            blocks.close()  # stops the frontend's thread before the recording it reads is closed
            recording.close()

    def score_window_bounds(
        self,
        recording: Any,
        bounds: list[tuple[int, int]],
        *,
        first_window: int = 0,
        layer: str | None = None,
        batch_size: int | None = None,
        engine: str | None = None,
        precision: str | None = None,
    ) -> Generator[ScoredWindows, None, None]:
        """
        Score the windows `bounds` (sample ranges `[(start, end), ...]`, as `audio_orcahello.scoring_windows` gives
        them) of an open `recording` (`audio_orcahello.open_recording`'s, or any object with its `read`) as
        `score_windows` does, for callers that cut the windows themselves (`orcahello live`, on a stream still
        being recorded). `first_window` is the index of the first window (the blocks' `window_indices`); the
        recording is left open, and the blocks carry no window table (`windows` and `recording` are None).
        """
        batch_size = int(batch_size or self.batch_size)
        blocks = self._featurized_blocks(recording, bounds)
        held_features, held_silent, next_window = [], [], first_window
        try:
            for block_start, features, silent in blocks:
                held_features.append(features)
                held_silent.extend(silent)
                last_block = block_start + len(silent) == len(bounds)
                # Batches of `batch_size` consecutive windows whatever the frontend's blocks, the last one shorter.
                while len(held_silent) >= batch_size or (last_block and held_silent):
                    batch = torch.cat(held_features) if len(held_features) > 1 else held_features[0]
                    count = min(batch_size, len(held_silent))
                    scores = self.score_features(batch[:count], layer=layer, engine=engine, precision=precision)
                    indices = list(range(next_window, next_window + count))
                    yield ScoredWindows(
                        indices, held_silent[:count], scores.probabilities, scores.logits, scores.embeddings
                    )
                    held_features, held_silent = [batch[count:]], held_silent[count:]
                    next_window += count
        finally:
            blocks.close()

    def score_features(
        self,
        input_features: torch.Tensor | np.ndarray,
        layer: str | None = None,
        engine: str | None = None,
        precision: str | None = None,
    ) -> WindowScores:
        """
        What the model gives for a batch of model inputs (`(windows, 1, 256, 312)`, as
        `audio_orcahello.featurize_windows` makes them) in one forward pass: each window's `[P(negative),
        P(positive)]` and logits, from the engine a pipeline call runs (`engine`, `precision` as its call parameters;
        the pipeline's own settings when None). With `layer` (`vocabulary_orcahello.EMBEDDING_LAYERS`), also each
        window's embedding at that layer, with the probabilities of the same forward pass of the PyTorch model in
        its own dtype (the exported engines give logits only, so `engine` and `precision` are then refused).
        `score_windows` scores each batch with it; `orcahello batch`'s model actors call it on the blocks its CPU
        workers featurized. `precision="bfloat16"` gives bfloat16 scores: the fast mode's float32 decisions need a
        whole file (a pipeline call).
        """
        if layer is not None and (engine, precision) != (None, None):
            raise ValueError("a layer's embedding comes from the PyTorch model in its own dtype: leave engine and "
                             f"precision out (got engine={engine!r}, precision={precision!r})")  # fmt: skip
        input_features = torch.as_tensor(input_features)
        if self.dtype is not None:
            input_features = input_features.to(self.dtype)
        if layer is None:
            forward_params = dict(self._forward_params)
            forward_params.update(self.resolve_parameters(engine=engine, precision=precision).forward)
        else:
            forward_params = {"layer": layer}
        # `forward` places the inputs on the device under the inference context, then `_forward` scores them (the
        # per-window bookkeeping it carries through for `postprocess`, `WINDOW_BOOKKEEPING`, is not needed here).
        outputs = self.forward({"input_features": input_features}, **forward_params)
        embeddings = outputs.get("embeddings")
        return WindowScores(
            probabilities=outputs["probabilities"].numpy(),
            logits=outputs["logits"].numpy(),
            embeddings=None if embeddings is None else embeddings.numpy(),
        )

    def embedding_size(self, layer: str) -> int:
        """The length of a window's embedding at `layer` (see `score_features`): 4096 `"pooled"`, 512 `"head"`."""
        return self.model.config.layer_size(layer)

    def _open_windows(
        self,
        inputs,
        sampling_rate=None,
        window_seconds=2.0,
        hop_seconds=1.0,
        whole_recording_frontend=False,
        peak_normalize=False,
        strict_segments=True,
        allow_other_hosts=False,
    ):
        """`(recording, bounds, info)`: `inputs` opened, the sample bounds of its windows, what its result needs."""
        recording = open_recording(inputs, sampling_rate=sampling_rate, allow_other_hosts=allow_other_hosts)
        try:
            bounds = scoring_windows(
                recording,
                window_seconds,
                hop_seconds,
                whole_recording_frontend=whole_recording_frontend,
                strict_segments=strict_segments,
                model_sampling_rate=self.feature_extractor.sampling_rate,
            )
        except AudioInputError:
            recording.close()
            raise
        if whole_recording_frontend:
            recording = whole_recording_audio(recording, self.feature_extractor, peak_normalize=peak_normalize)
        return recording, bounds, recording_info(recording, len(bounds), window_seconds, hop_seconds)

    def _featurized_blocks(self, recording, bounds):
        # On a GPU the STFT and the mel filterbank run there too (resampling stays with scipy, as production's).
        device = self.device if self.device.type != "cpu" else None
        return featurized_blocks(recording, bounds, self.feature_extractor, dtype=self.dtype, device=device)

    # A ChunkPipeline's preprocess yields its chunks (transformers types the base method as returning one dict).
    def preprocess(self, inputs: Any, **preprocess_params: Any) -> Iterator[dict[str, Any]]:  # type: ignore[override]
        recording, bounds, info = self._open_windows(inputs, **preprocess_params)
        blocks = self._featurized_blocks(recording, bounds)
        try:
            for block_start, features, silent in blocks:
                for offset in range(features.shape[0]):
                    window_index = block_start + offset
                    yield {
                        "input_features": features[offset : offset + 1],
                        "window_index": torch.tensor([window_index]),
                        "window_is_silent": torch.tensor([silent[offset]]),
                        # Of the samples read so far (this window's included): postprocess takes the largest.
                        "largest_float_sample": torch.tensor([recording.largest_float_sample], dtype=torch.float64),
                        "recording": info,
                        "is_last": window_index == len(bounds) - 1,
                    }
        finally:
            blocks.close()
            recording.close()

    # The call parameters reach `_forward` and `postprocess` as keywords (`_sanitize_parameters`), as transformers'
    # pipelines take them; its base methods are typed with a `**parameters` dict instead.
    def _forward(self, model_inputs, engine="auto", precision="float32", progress_callback=None, layer=None):  # type: ignore[override]
        if precision in LOGIT_MARGINS and self.fast_mode_withdrawn:
            precision = "float32"  # these windows are then exact as they are: postprocess re-scores none of them
        embeddings = None
        if layer is None:
            logits = self.window_logits(model_inputs["input_features"], engine=engine, precision=precision)
        else:  # a layer's output: only the PyTorch model gives one (see `score_features`)
            embeddings, logits = layer_outputs(self.model, model_inputs["input_features"], layer)
        if progress_callback is not None:
            info = model_inputs.get("recording")
            info = info[0] if isinstance(info, (list, tuple)) else info
            progress_callback(int(logits.shape[0]), info["num_windows"] if isinstance(info, dict) else None)
        outputs = {
            "probabilities": torch.softmax(logits.float(), dim=-1),
            "logits": logits.float(),
        }
        outputs.update((key, model_inputs[key]) for key in WINDOW_BOOKKEEPING if key in model_inputs)
        if embeddings is not None:
            outputs["embeddings"] = embeddings.float()
        if precision in LOGIT_MARGINS and layer is None:
            # The fast mode keeps each window's spectrogram up to its padding (about 160 kB) until the file's
            # decisions are known: postprocess scores again in float32 those that could change one.
            features = model_inputs["input_features"]
            content = max(1, padded_frames(features, float(self.feature_extractor.padding_value)))
            outputs["rescoring_features"] = features[..., :content].to("cpu", torch.float32).clone()
            # The engine "auto" stood for: its margin applies, and it scores these windows again in float32.
            resolved = resolve_engine(engine, self.device, getattr(self.model, "dtype", torch.float32), precision)
            outputs["rescoring_engine"] = torch.full((features.shape[0],), ENGINES.index(resolved))
            outputs["rescoring_precision"] = torch.full((features.shape[0],), PRECISIONS.index(precision))
        return outputs

    def window_logits(
        self, input_features: torch.Tensor, engine: str = "auto", precision: str = "float32"
    ) -> torch.Tensor:
        """Logits `(batch, 2)` of a batch of spectrograms `(batch, 1, 256, 312)`, from the engine's scorer."""
        return self.scorer(input_features, engine=engine, precision=precision)(input_features)

    def scorer(
        self, input_features: torch.Tensor, engine: str = "auto", precision: str = "float32"
    ) -> TorchScorer | OpenVinoScorer | OnnxRuntimeScorer:
        """The scorer for batches shaped like `input_features` (see `engines_orcahello.ModelScorers`)."""
        return self._scorers.scorer(input_features, engine=engine, precision=precision)

    def _rescored_in_float32(self, ordered_outputs, window_confidences, **decision_parameters):
        """The fast mode's window probabilities, float32 wherever bfloat16 could change a decision (see
        `fast_mode_orcahello.windows_to_rescore`); the others stay bfloat16-valued."""
        fast = [output for output in ordered_outputs if "rescoring_features" in output]
        engine = ENGINES[int(fast[0]["rescoring_engine"].reshape(-1)[0])]
        precision = PRECISIONS[int(fast[0]["rescoring_precision"].reshape(-1)[0])]
        margin = LOGIT_MARGINS[precision][engine]
        # Windows of a batch scored after the fast mode was withdrawn are float32 already.
        exact = np.array(["rescoring_features" not in output for output in ordered_outputs])
        extractor = self.feature_extractor

        def score_in_float32(indices):
            probabilities = []
            for start in range(0, len(indices), self._batch_size):
                chosen = [ordered_outputs[i]["rescoring_features"] for i in indices[start : start + self._batch_size]]
                features = torch.full(
                    (len(chosen), 1, extractor.feature_size, extractor.num_frames),
                    float(extractor.padding_value),
                    dtype=self.dtype or torch.float32,
                )
                for row, content in enumerate(chosen):
                    features[row, ..., : content.shape[-1]] = content.reshape(features.shape[1:-1] + (-1,))
                logits = self.window_logits(features.to(self.device), engine=engine, precision="float32")
                probabilities.append(torch.softmax(logits.float(), dim=-1)[:, 1].cpu())
            return torch.cat(probabilities).double().numpy()

        probabilities, rescored = rescore_until_exact(window_confidences, score_in_float32, margin=margin,
                                                      exact=exact, **decision_parameters)  # fmt: skip
        # The margin is a measured bound, so check it wherever both scores exist: the windows nearest a threshold.
        deviation = largest_logit_deviation(window_confidences[rescored], probabilities[rescored])
        if deviation > margin / 2:
            self.fast_mode_withdrawn = (
                f"a window's {precision} logit deviated from float32's by {deviation:.2f}, more than half the fast "
                f"mode's margin of {margin} for engine {engine!r}: these weights need a margin measured for them "
                "(benchmarks/fast_mode_margin.py); scoring in float32 from now on"
            )
            logger.warning(self.fast_mode_withdrawn)
            if deviation > margin:  # the bound itself failed: no reduced-precision score of this file can be trusted
                remaining = np.flatnonzero(~rescored & ~exact)
                if remaining.size:
                    probabilities[remaining] = score_in_float32(remaining)
                rescored[remaining] = True
        self.last_rescored_fraction = float(rescored.mean())
        return probabilities

    def postprocess(  # type: ignore[override]
        self,
        model_outputs: Sequence[dict[str, Any]],
        decision: DecisionParameters | None = None,
        return_timestamps: bool = False,
        top_k: int | None = None,
        inference: dict[str, Any] | None = None,
    ) -> dict | list[dict]:
        info = model_outputs[0]["recording"]
        order = np.argsort([int(output["window_index"]) for output in model_outputs])
        window_confidences = np.array(
            [float(model_outputs[i]["probabilities"].reshape(-1, 2)[0, 1]) for i in order], dtype=np.float64
        )
        silent_windows = sum(bool(output["window_is_silent"].reshape(-1)[0]) for output in model_outputs)
        largest_float_sample = max(float(output["largest_float_sample"].reshape(-1)[0]) for output in model_outputs)
        decision = decision or DecisionParameters()
        self.last_rescored_fraction = None
        if any("rescoring_features" in output for output in model_outputs):
            window_confidences = self._rescored_in_float32(
                [model_outputs[i] for i in order], window_confidences, **dataclasses.asdict(decision)
            )
        return build_file_result(
            info,
            window_confidences,
            silent_windows,
            decision=decision,
            return_timestamps=return_timestamps,
            top_k=top_k,
            inference=inference,
            model_warnings=self.model_warnings,
            largest_float_sample=largest_float_sample,
        )
